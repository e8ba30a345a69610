"""The service catalogue: services Finnish sites embed, with provider, cookies and purposes in fi, sv and en.

Marketing adds a service to a site from it, and the site audit names the service and category of
what it sees with it. `catalogue.json` is Keksi's own text, reviewed like code. An operator may widen
classification with the Open Cookie Database (Apache-2.0): `flask catalogue import-ocd FILE` keeps
its rows beside the database; they classify cookies the catalogue does not know, but are never
offered as declarations, since their purposes are in English only and unreviewed.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

CATALOGUE = Path(__file__).with_name("catalogue.json")
OCD_FILE = "open-cookie-database.json"  # in the instance folder, beside the database
MAX_OCD_BYTES = 16 * 1024 * 1024
MAX_OCD_ROWS = 100_000
OCD_COLUMNS = ("Platform", "Category", "Cookie / Data Key name", "Domain", "Retention period",
               "Data Controller", "User Privacy & GDPR Rights Portals", "Wildcard match")
# The Open Cookie Database's categories in Keksi's words.
OCD_CATEGORIES = {"functional": "preferences", "personalization": "preferences", "security": "necessary",
                  "analytics": "analytics", "marketing": "marketing"}


class CatalogueError(ValueError):
    """A file that cannot be imported; `code` names the problem for the caller to translate."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code, self.params = code, params


@functools.lru_cache(maxsize=1)
def services() -> tuple[dict[str, Any], ...]:
    """Every service of the catalogue, in its file's order."""
    return tuple(json.loads(CATALOGUE.read_text(encoding="utf-8"))["services"])


def service(service_id: str) -> dict[str, Any] | None:
    return next((s for s in services() if s["id"] == service_id), None)


def site_service(service_id: str, own_provider: str) -> dict[str, Any]:
    """A catalogue service in the shape of a site definition's service (`sites.validate` reads it).

    `own_provider` is the site owner's name, for services it runs itself (Matomo on its own server)."""
    entry = service(service_id)
    if entry is None:
        raise KeyError(service_id)
    provider = entry["provider"] or own_provider
    shaped = {
        "name": entry["name"],
        "provider": provider,
        "catalogue": entry["id"],  # what the widget's consent signals and the site audit know it by
        "cookies": [{"name": c["name"], "provider": provider, "duration": c["duration"],
                     "purpose": dict(c["purpose"])} for c in entry["cookies"]],
    }
    # What the banner's first layer says about the provider (sites.first_layer).
    if entry.get("own_purposes"):
        shaped["own_purposes"] = True
    if entry.get("transfer"):
        shaped["transfer"] = dict(entry["transfer"])
    # The provider's privacy policy, for the cookie notice's tables; a service the site runs itself
    # (Matomo on its own server) is under the site's own privacy notice instead.
    if entry["provider"] and entry.get("privacy_url"):
        shaped["privacy_url"] = entry["privacy_url"]
    return shaped


# -- classifying what a browser saw -------------------------------------------------------


@dataclass(frozen=True)
class Match:
    service: str  # the catalogue's service name, or the Open Cookie Database's platform
    category: str  # necessary, preferences, analytics, marketing
    provider: str | None
    cookie: str | None  # the declared name or prefix (ending in *) that matched
    source: str  # "catalogue" or "open-cookie-database"
    service_id: str | None = None  # the catalogue id, to add it to a site in one step


def _domain_matches(seen: str, expected: str | None) -> bool:
    if not expected:
        return True
    seen = seen.lstrip(".").lower()
    return seen == expected or seen.endswith("." + expected)


def name_matches(seen: str, pattern: str) -> bool:
    return seen.startswith(pattern[:-1]) if pattern.endswith("*") else seen == pattern


def classify_cookie(name: str, domain: str = "", extra: Iterable[dict[str, Any]] = ()) -> Match | None:
    """The catalogue's best match for a cookie seen in a browser: an exact name before the longest
    prefix, the catalogue before the Open Cookie Database rows in `extra` (see `load_ocd`)."""
    candidates: list[tuple[int, int, Match]] = []
    for entry in services():
        for cookie in entry["cookies"]:
            if name_matches(name, cookie["name"]) and _domain_matches(domain, cookie.get("domain")):
                candidates.append((not cookie["name"].endswith("*"), len(cookie["name"]), Match(
                    entry["name"], entry["category"], entry["provider"], cookie["name"], "catalogue", entry["id"])))
    if not candidates:
        for row in extra:
            pattern = row["name"] + ("*" if row["wildcard"] else "")
            if name_matches(name, pattern) and _domain_matches(domain, row.get("domain")):
                candidates.append((not row["wildcard"], len(pattern), Match(
                    row["platform"], row["category"], row["controller"], pattern, "open-cookie-database")))
    return max(candidates, key=lambda c: c[:2])[2] if candidates else None


def party(domain: str | None, site_host: str) -> str:
    """"first" for a cookie that lives on the site's own host or a parent domain of it, as what a tag
    on the site's pages writes does (Google Analytics' _ga, Matomo's _pk_id), whoever receives its data;
    "third" for one that lives on another domain (YouTube's on youtube.com). The one meaning of first
    and third party: the site audit says it of what a browser held, the cookie notice of the declaration."""
    domain = (domain or "").lstrip(".").lower()
    return "first" if not domain or site_host == domain or site_host.endswith("." + domain) else "third"


def cookie_domain(name: str, entry: dict[str, Any] | None = None) -> str | None:
    """The domain the catalogue says a cookie lives on (its provider's), or None when it lives on the
    site that embeds the service; looked up in the catalogue service `entry`, else in every service."""
    for candidate in [entry] if entry else services():
        for cookie in candidate["cookies"]:
            if cookie["name"] == name or name_matches(name, cookie["name"]):
                return cookie.get("domain")
    return None


def declared_party(site_service: dict[str, Any], name: str) -> str:
    """A declared cookie's party (`party`): on the catalogue's domain for it, else on the site's own.
    The site's service is the catalogue's it links to or is named as (else any that has the cookie)."""
    entry = service(site_service.get("catalogue") or "") or next(
        (s for s in services() if s["name"] == site_service["name"]), None)
    return party(cookie_domain(name, entry), "")


def classify_host(host: str) -> Match | None:
    """The catalogue service a request to `host` (a host name, no port) belongs to, if any."""
    best = None
    for entry in services():
        for known in entry["hosts"]:
            if _domain_matches(host, known) and (best is None or len(known) > len(best[0])):
                best = (known, entry)
    if best is None:
        return None
    entry = best[1]
    return Match(entry["name"], entry["category"], entry["provider"], None, "catalogue", entry["id"])


# -- the Open Cookie Database -------------------------------------------------------------


def _ocd_row(row: dict[str, str]) -> dict[str, Any] | None:
    name = (row.get("Cookie / Data Key name") or "").strip()
    category = OCD_CATEGORIES.get((row.get("Category") or "").strip().lower())
    if not name or category is None or len(name) > 200:
        return None
    domain = (row.get("Domain") or "").strip().lower().lstrip(".")
    return {"name": name, "wildcard": (row.get("Wildcard match") or "").strip() == "1",
            "domain": domain if domain and "(" not in domain and " " not in domain else None,
            "platform": (row.get("Platform") or "").strip()[:200], "category": category,
            "controller": (row.get("Data Controller") or "").strip()[:200] or None,
            "retention": (row.get("Retention period") or "").strip()[:200],
            "privacy_url": (row.get("User Privacy & GDPR Rights Portals") or "").strip()[:500]}


def parse_ocd(data: bytes) -> list[dict[str, Any]]:
    """The rows of an Open Cookie Database CSV export that Keksi can use for classification."""
    if len(data) > MAX_OCD_BYTES:
        raise CatalogueError("too_large", limit=MAX_OCD_BYTES)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CatalogueError("not_utf8", position=error.start) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in OCD_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CatalogueError("missing_columns", columns=", ".join(missing))
    rows = []
    try:
        for number, row in enumerate(reader, start=2):
            if number > MAX_OCD_ROWS + 1:
                raise CatalogueError("too_many_rows", limit=MAX_OCD_ROWS)
            if (parsed := _ocd_row(row)) is not None:
                rows.append(parsed)
    except csv.Error as error:
        raise CatalogueError("bad_csv", line=reader.line_num, reason=str(error)) from None
    return rows


def save_ocd(rows: list[dict[str, Any]], instance: Path) -> Path:
    """Keep imported rows in the instance folder, replacing an earlier import at once."""
    instance.mkdir(parents=True, exist_ok=True)
    target = instance / OCD_FILE
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    partial.replace(target)
    load_ocd.cache_clear()
    return target


@functools.lru_cache(maxsize=4)
def load_ocd(instance: Path) -> tuple[dict[str, Any], ...]:
    """The imported Open Cookie Database rows, or none if nobody imported them."""
    path = instance / OCD_FILE
    return tuple(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else ()
