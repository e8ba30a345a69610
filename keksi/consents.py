"""Consent choices: parse and check a posted choice, build its proof record, verify the chain.

Everything here takes plain arguments and the store; the API view turns
`InvalidChoice` into a 4xx answer naming the field.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import ipaddress
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator

from . import sites as sites_mod
from .clock import record_text
from .store import Store
from .store.chain import GENESIS_HASH, chain_hash, leaves_head, removal_digest

if TYPE_CHECKING:
    from .workercache import PostReads

ACTIONS = ("accept_all", "reject_all", "custom", "withdraw")
# A refusal of every optional category is kept at least this long (6 months, as the EU's 2025 Digital
# Omnibus proposal asks), even where a site's consents last less: asking again sooner wears people down.
REFUSAL_DAYS = 183
SURFACES = ("banner", "panel", "reopened")
FIELDS = {"site", "event_id", "subject_id", "action", "choices", "notice_version", "cookie_notice_version",
          "banner_hash", "lang", "ui_surface", "page", "widget_version", "gpc"}
REQUIRED = FIELDS - {"subject_id", "cookie_notice_version", "widget_version", "page", "gpc"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
WIDGET_VERSION = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: no text a person reads holds them
# The page kept with a choice (KEKSI_STORE_PAGE): a longer path is cut to this, never refused for its
# length (it is context; the choice is the record). The widget sends no more (widget/consent.js).
PAGE_LENGTH = 512

# The columns a record's content hash covers, in this order. Never reorder: old
# rows must keep verifying.
HASHED_COLUMNS = (
    "consent_id", "event_id", "subject_id", "site", "action", "choices", "ui_surface", "lang",
    "page", "notice_slug", "notice_version", "notice_sha256", "banner_hash", "widget_version",
    "ip", "user_agent", "gpc", "recorded_at", "valid_until",
)
# Added later: hashed after the columns above only when one of them is set, so that rows
# recorded before they existed keep verifying.
LATER_HASHED_COLUMNS = ("cookie_notice_slug", "cookie_notice_version", "cookie_notice_sha256")
# Added later still, on the same rule: the origin the choice was posted from, so that a receipt
# links the site where it was made (not every origin a site lists, staging hosts included).
ORIGIN_COLUMNS = ("origin",)
HASH_TIERS = (LATER_HASHED_COLUMNS, ORIGIN_COLUMNS)
# Then where legal reads the banner and the widget code the record names (not hashed: derived).
PROOF_COLUMNS = ("banner_url", "widget_url")
EXPORT_COLUMNS = ("seq",) + HASHED_COLUMNS + LATER_HASHED_COLUMNS + ORIGIN_COLUMNS + ("content_hash",) + PROOF_COLUMNS


class InvalidChoice(ValueError):
    """A posted choice that cannot be recorded. `status` is the HTTP status to answer with."""

    def __init__(self, field: str, message: str, status: int = 400):
        self.field = field
        self.message = f"{field} {message}"  # reads as a sentence: "choices.ads is not a category …"
        self.status = status
        super().__init__(self.message)


def new_id() -> str:
    """A random 128-bit identifier as 32 hex digits."""
    return secrets.token_hex(16)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The posted JSON object, whatever the Content-Type (sendBeacon sends text/plain)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidChoice("body", "must be UTF-8 encoded JSON") from None
    if not text.strip():
        raise InvalidChoice("body", "is empty: send a JSON object describing the choice")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidChoice("body", f"is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InvalidChoice("body", "must be a JSON object")
    try:
        # JSON may escape a lone surrogate ("\ud800"), which no UTF-8 text can hold: the store
        # could not write it, so it is refused here, in whichever field or key it hides.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidChoice("body", "holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


@dataclass(frozen=True)
class Choice:
    """A checked choice, ready to become a record."""

    site: dict[str, Any]
    event_id: str
    subject_id: str | None
    action: str
    choices: dict[str, bool]
    notice_slug: str
    notice_version: str
    notice_sha256: str
    cookie_notice: tuple[str, str, str] | None  # slug, version, SHA-256
    banner_hash: str
    lang: str
    ui_surface: str
    page: str
    widget_version: str
    gpc: bool
    origin: str | None = None  # canonical, as the request's Origin header named it


def _string(data: dict[str, Any], field: str, max_length: int = 200) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise InvalidChoice(field, "must be a string" if field in data else "is required")
    if len(value) > max_length:
        raise InvalidChoice(field, f"must be at most {max_length} characters")
    _no_control(field, value)
    return value


def _no_control(field: str, value: str) -> None:
    if CONTROL.search(value):
        raise InvalidChoice(field, "must not hold control characters (U+0000-U+001F, U+007F-U+009F)")


def check_choice(data: dict[str, Any], store: Store | PostReads, languages: list[str], today: date,
                 origin: str | None, sec_gpc: bool = False,
                 own_pages: tuple[str, str] | None = None) -> Choice:
    """Validate a posted choice against the site, the notices and the banners actually served.

    `own_pages` is (Keksi's own origin, the site its own pages show): choices made there are
    accepted from that origin whatever the site's list says, so the demo works on any address.
    `store` is read for the site, the subject, the banner and the notice versions: the app passes
    its per-worker cache of them (keksi.workercache.PostReads)."""
    # In this order, so that the first field at fault is the one named.
    _check_fields(data)
    site = _check_site(data, store, origin, own_pages)
    event_id = _check_event_id(data)
    subject_id = _check_subject(data, store)
    action = _string(data, "action", 20)
    if action not in ACTIONS:
        raise InvalidChoice("action", f"must be one of {', '.join(ACTIONS)}")
    seen = _seen_banner(data, store, site["id"])
    choices = _check_choices(data, site, action, seen)
    lang = _string(data, "lang", 8)
    if lang not in languages:
        raise InvalidChoice("lang", f"must be one of {', '.join(languages)}")
    notice, cookie_notice = _check_versions(data, site, store, lang, today)
    banner_hash = _check_banner(data, seen, lang)
    return Choice(site=site, event_id=event_id, subject_id=subject_id, action=action, choices=choices,
                  notice_slug=notice[0], notice_version=notice[1], notice_sha256=notice[2],
                  cookie_notice=cookie_notice, banner_hash=banner_hash, lang=lang,
                  ui_surface=_check_surface(data), page=_check_page(data),
                  widget_version=_check_widget_version(data), gpc=_check_gpc(data) or sec_gpc,
                  origin=sites_mod.canonical_origin(origin))


def _check_fields(data: dict[str, Any]) -> None:
    for field in sorted(set(data) - FIELDS):
        raise InvalidChoice(field, "is not a field of a consent")
    for field in sorted(REQUIRED):
        if field not in data:
            raise InvalidChoice(field, "is required")


def _check_site(data: dict[str, Any], store: Store | PostReads, origin: str | None,
                own_pages: tuple[str, str] | None) -> dict[str, Any]:
    """The site, when the request's origin may record choices for it."""
    site_id = _string(data, "site", 64)
    site = store.site(site_id)
    if site is None:
        raise InvalidChoice("site", f"{site_id!r} is not a site on this server", status=404)
    canonical = sites_mod.canonical_origin(origin)
    own = canonical is not None and (canonical, site_id) == own_pages
    if not sites_mod.origin_allowed(site, origin) and not own:
        raise InvalidChoice("origin", f"{origin!r} may not record consents for site {site_id!r}; "
                                      "add it to the site's origins", status=403)
    return site


def _check_event_id(data: dict[str, Any]) -> str:
    try:
        return str(uuid.UUID(_string(data, "event_id", 64)))
    except ValueError:
        raise InvalidChoice("event_id", "must be a UUID made by the widget for this choice") from None


def _check_subject(data: dict[str, Any], store: Store | PostReads) -> str | None:
    """The browser's subject id, or None for a new one."""
    subject_id = data.get("subject_id")
    if subject_id is not None and (not isinstance(subject_id, str) or not HEX32.match(subject_id)):
        raise InvalidChoice("subject_id", "must be the 32 hex digits the server gave, or absent")
    if subject_id is not None and not store.subject_known(subject_id):
        # Not one this server gave (made up, or erased since): the choice is kept under a new
        # subject, so nobody can attach choices to a subject of their making or pull others'
        # records into an erasure. The answer carries the new one. (Sites that share a cookie
        # domain share the browser's subject, as they share its cookie.)
        return None
    return subject_id


@dataclass(frozen=True)
class _Banner:
    """A banner version this server showed for the site: its language and its categories' ids."""

    lang: str
    categories: tuple[str, ...]


def _seen_banner(data: dict[str, Any], store: Store | PostReads, site_id: str) -> _Banner | None:
    """The banner the visitor answered (by the banner_hash posted), or None when it is no banner
    this server showed for the site (`_check_banner` refuses it, after the fields before it)."""
    banner_hash = data.get("banner_hash")
    row = store.banner_version(banner_hash) if isinstance(banner_hash, str) and HEX64.match(banner_hash) else None
    if row is None or row["site"] != site_id:
        return None
    return _Banner(row["lang"], _banner_categories(row["content"]))


@functools.lru_cache(maxsize=64)
def _banner_categories(content: str) -> tuple[str, ...]:
    return tuple(category["id"] for category in json.loads(content)["categories"])


def _check_choices(data: dict[str, Any], site: dict[str, Any], action: str,
                   seen: _Banner | None) -> dict[str, bool]:
    """Every category of the banner the visitor answered, true or false, necessary on, agreeing
    with the action. That banner's categories, not the site's now: a page opened (or a choice
    queued) before marketing added or removed a category is recorded as made, with the banner
    hash saying what the visitor saw; the widget asks again, as the banner changed."""
    choices = data.get("choices")
    if not isinstance(choices, dict):
        raise InvalidChoice("choices", "must be an object of category id to true or false")
    categories = list(seen.categories) if seen else [c["id"] for c in site["categories"]]
    for key, value in choices.items():
        if key not in categories:
            raise InvalidChoice(f"choices.{key}", f"is not a category of the banner shown for site "
                                                  f"{site['id']!r} ({', '.join(categories)})")
        if not isinstance(value, bool):
            raise InvalidChoice(f"choices.{key}", "must be true or false")
    for key in categories:
        if key not in choices:
            raise InvalidChoice(f"choices.{key}", "is required: send every category of the banner shown")
    if choices.get("necessary") is not True:
        raise InvalidChoice("choices.necessary", "must be true: necessary cookies cannot be refused")
    optional = [choices[k] for k in categories if k != "necessary"]
    if action == "accept_all" and not all(optional):
        raise InvalidChoice("action", "accept_all needs every category true")
    if action in ("reject_all", "withdraw") and any(optional):
        raise InvalidChoice("action", f"{action} needs every optional category false")
    return {k: choices[k] for k in categories}


def _check_versions(data: dict[str, Any], site: dict[str, Any], store: Store | PostReads, lang: str,
                    today: date) -> tuple[tuple[str, str, str], tuple[str, str, str] | None]:
    """(slug, version, SHA-256) of the privacy notice the visitor saw, and of the cookie notice
    when the widget sends it (older widgets do not)."""
    slug = site["notices"]["privacy"]
    version = _string(data, "notice_version", 10)
    notice = (slug, version, _version_in_effect(store, "notice_version", slug, version, lang, today))
    if data.get("cookie_notice_version") is None:
        return notice, None
    cookie_slug = site["notices"]["cookies"]
    cookie_version = _string(data, "cookie_notice_version", 10)
    return notice, (cookie_slug, cookie_version, _version_in_effect(
        store, "cookie_notice_version", cookie_slug, cookie_version, lang, today))


def _check_banner(data: dict[str, Any], seen: _Banner | None, lang: str) -> str:
    banner_hash = _string(data, "banner_hash", 64)
    if seen is None or seen.lang != lang:
        raise InvalidChoice("banner_hash", "is not a banner this server showed for this site and language")
    return banner_hash


def _check_surface(data: dict[str, Any]) -> str:
    ui_surface = _string(data, "ui_surface", 20)
    if ui_surface not in SURFACES:
        raise InvalidChoice("ui_surface", f"must be one of {', '.join(SURFACES)}")
    return ui_surface


def _check_page(data: dict[str, Any]) -> str:
    """The page's path, without its query string or fragment (they carry personal data), cut to
    PAGE_LENGTH characters (never inside a %-escape). Checked whether or not it is kept."""
    page = data.get("page", "")
    if not isinstance(page, str):
        raise InvalidChoice("page", "must be a path starting with /")
    _no_control("page", page)
    page = page.split("?", 1)[0].split("#", 1)[0]
    if page and not page.startswith("/"):
        raise InvalidChoice("page", "must be a path starting with /")
    return re.sub(r"%[0-9A-Fa-f]?$", "", page[:PAGE_LENGTH])


def _check_widget_version(data: dict[str, Any]) -> str:
    widget_version = data.get("widget_version", "")
    if not isinstance(widget_version, str) or (widget_version and not WIDGET_VERSION.match(widget_version)):
        raise InvalidChoice("widget_version", "must be letters, digits, '.', '_' or '-', at most 64")
    return widget_version


def _check_gpc(data: dict[str, Any]) -> bool:
    gpc = data.get("gpc", False)
    if not isinstance(gpc, bool):
        raise InvalidChoice("gpc", "must be true or false")
    return gpc


def _version_in_effect(store: Store | PostReads, field: str, slug: str, version: str, lang: str,
                      today: date) -> str:
    """The SHA-256 of a published version of `slug` in `lang` that has taken effect."""
    sha256 = store.notice_version_hash(slug, version, lang)
    if sha256 is None or date.fromisoformat(version) > today:
        raise InvalidChoice(field, f"{version!r} is not a version of the '{slug}' notice that has been in effect")
    return sha256


def truncate_ip(address: str | None, keep: bool = True) -> str | None:
    """The address cut to its /24 (IPv4) or /48 (IPv6) network, or None."""
    if not keep or not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("SamsungBrowser/", "Samsung"),
             ("Chrome/", "Chrome"), ("Chromium/", "Chromium"), ("Version/", "Safari"))
_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iOS"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def coarse_user_agent(user_agent: str | None, keep: bool = True) -> str | None:
    """Browser family, major version and OS family only: "Chrome 156 / Linux"."""
    if not keep or not user_agent:
        return None
    browser = "Other"
    for marker, name in _BROWSERS:
        match = re.search(re.escape(marker) + r"(\d+)", user_agent)
        if match:
            browser = f"{name} {match.group(1)}"
            break
    system = next((name for marker, name in _SYSTEMS if marker in user_agent), "Other")
    return f"{browser} / {system}"


def content_hash(record: dict[str, Any]) -> str:
    values = [record.get(column) for column in HASHED_COLUMNS]
    for tier in HASH_TIERS:
        later = [record.get(column) for column in tier]
        if any(value is not None for value in later):
            values += later
    payload = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def lifetime_days(site: dict[str, Any], choices: dict[str, bool]) -> int:
    """How long a choice lasts: the site's consent_days, and a refusal of everything at least REFUSAL_DAYS."""
    refused_all = not any(on for category, on in choices.items() if category != "necessary")
    return max(site["consent_days"], REFUSAL_DAYS) if refused_all else site["consent_days"]


def build_record(choice: Choice, now: datetime, ip: str | None, user_agent: str | None,
                 zone: tzinfo = timezone.utc) -> dict[str, Any]:
    """The row to store: everything compliance.md asks a consent record to hold.

    `day` (the local date in `zone`) is for the daily figures only; it is not stored
    in the record itself nor covered by its hash.
    """
    valid_until = now + timedelta(days=lifetime_days(choice.site, choice.choices))
    record = {
        "consent_id": new_id(),
        "event_id": choice.event_id,
        "subject_id": choice.subject_id or new_id(),
        "site": choice.site["id"],
        "action": choice.action,
        "choices": json.dumps(choice.choices, separators=(",", ":")),
        "ui_surface": choice.ui_surface,
        "lang": choice.lang,
        "page": choice.page,
        "notice_slug": choice.notice_slug,
        "notice_version": choice.notice_version,
        "notice_sha256": choice.notice_sha256,
        **dict(zip(LATER_HASHED_COLUMNS, choice.cookie_notice or (None, None, None))),
        "banner_hash": choice.banner_hash,
        "widget_version": choice.widget_version,
        "ip": ip,
        "user_agent": user_agent,
        "gpc": int(choice.gpc),
        "recorded_at": record_text(now),
        "valid_until": record_text(valid_until),
        "origin": choice.origin,
    }
    record["content_hash"] = content_hash(record)
    record["day"] = now.astimezone(zone).date().isoformat()
    return record


# What a record holds of the posted body. A retry (the widget posts until it is acknowledged)
# repeats all of it; an event_id stored with other values is another choice under a used id.
REPLAYED_COLUMNS = ("action", "choices", "ui_surface", "lang", "page", "notice_version", "banner_hash",
                    "widget_version", "gpc", "cookie_notice_version")


def record(store: Store, choice: Choice, ip: str | None, user_agent: str | None,
           now: datetime | None = None, zone: tzinfo = timezone.utc) -> tuple[dict[str, Any], bool]:
    """Store the choice (once per event_id) and return (row, created). A replayed event_id
    answers with the stored row when the choice is the same, else InvalidChoice (409).

    The time is taken under the store's write lock, so records are chained in time order;
    should the clock step back, a record takes the time of the one before it."""
    def build(last_recorded_at: str | None) -> dict[str, Any]:
        moment = now or datetime.now(timezone.utc)
        if last_recorded_at and record_text(moment) < last_recorded_at:
            moment = datetime.fromisoformat(last_recorded_at)
        return build_record(choice, moment, ip, user_agent, zone)

    stored, created = store.append_consent(choice.event_id, build)
    if created:
        return stored, created
    if stored["site"] != choice.site["id"]:
        raise InvalidChoice("event_id", "was already used for another site", status=409)
    posted = build_record(choice, now or datetime.now(timezone.utc), ip, user_agent, zone)
    differ = [column for column in REPLAYED_COLUMNS if stored[column] != posted[column]]
    # A retry without a subject got one the first time; a retry names no other.
    if choice.subject_id is not None and stored["subject_id"] != choice.subject_id:
        differ.append("subject_id")
    if differ:
        raise InvalidChoice("event_id", f"was already used for a different choice ({', '.join(differ)} "
                                        "differ): make a new event_id for each choice", status=409)
    return stored, created


# -- verifying the chain ----------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    removed: int
    broken_at: int | None
    problem: str | None
    head: tuple[int, str] | None = None  # the last link (seq, row hash): worth writing down elsewhere

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(store: Store, expect: tuple[int, str] | None = None) -> VerifyResult:
    """Walk the chain from the start; report the first link that does not hold.

    A link is a consent record, or a removal (an erasure or purge) listing the ranges of
    records it removed and what they counted in the daily figures. A record that is gone must
    be in a range of a later removal link: a record deleted any other way is reported, even with
    consent_removals or removal_ranges rows written by hand. Records must be chained in time
    order. Memory stays flat: the removed ranges are read in order beside the chain.

    `expect` is a head recorded by an earlier run (seq, row hash): the chain must still pass
    through it. Whoever can write the database could rebuild the whole chain; a head kept
    elsewhere (by an auditor, in a ticket) shows that nothing before it was rewritten.
    """
    walk = _ChainWalk(store)
    for link in store.iter_chain():
        prev_seq = walk.head[0] if walk.head else 0
        problem = walk.step(link)
        if problem is None and expect is not None and leaves_head(prev_seq, link["seq"], link["row_hash"], expect):
            problem = "the chain no longer passes through the head recorded earlier: it was rewritten"
        if problem:
            return VerifyResult(walk.checked, walk.removed, link["seq"], problem)
    if expect is not None and (walk.head is None or walk.head[0] < expect[0]):
        return VerifyResult(walk.checked, walk.removed, expect[0], "the chain ends before the head recorded earlier")
    orphans = store.orphan_consents()
    if orphans:
        return VerifyResult(walk.checked, walk.removed, orphans[0], "a record was added outside the chain")
    stray = store.stray_removal_rows()
    if stray:
        return VerifyResult(walk.checked, walk.removed, stray[0], "a removal row belongs to no erasure or "
                                                                  "purge in the chain")
    return VerifyResult(walk.checked, walk.removed, None, None, walk.head)


class _ChainWalk:
    """One pass over the chain's links in order; `step` returns the problem with a link, or None."""

    def __init__(self, store: Store):
        self.store = store
        self.prev = GENESIS_HASH
        self.checked = self.removed = 0
        self.head: tuple[int, str] | None = None
        self.last_time: datetime | None = None
        self.ranges = store.removal_ranges()
        self.current = next(self.ranges, None)  # (first, last, link_seq) that may hold the next gone record

    def step(self, link: dict[str, Any]) -> str | None:
        if link["prev_hash"] != self.prev:
            return "its link to the previous record does not match"
        if chain_hash(link["prev_hash"], link["chain_content_hash"]) != link["row_hash"]:
            return "its chain hash does not match its content hash"
        if link["link_reason"] is not None:
            problem = self._removal(link)
        elif link["consent_id"] is None:
            problem = self._gone(link["seq"], link["removed"])
        else:
            problem = self._record(link)
        self.prev = link["row_hash"]
        self.head = (link["seq"], self.prev)
        return problem

    def _removal(self, link: dict[str, Any]) -> str | None:
        seq = link["seq"]
        listed = ((first, last) for first, last, _ in self.store.removal_ranges(seq))
        counts = self.store.removal_counts(seq)
        if removal_digest(link["link_reason"], link["link_removed_at"], listed, counts) != link["chain_content_hash"]:
            return "the removal's list of records was changed"
        count, highest = self.store.removal_extent(seq)
        if not count or highest >= seq:
            return "the removal lists no records, or records after itself"
        return None

    def _listed(self, seq: int) -> bool:
        """Whether a removal range lists record `seq` (called for each seq in ascending order)."""
        while self.current is not None and self.current[1] < seq:
            self.current = next(self.ranges, None)
        # The range must belong to a removal link later in the chain; verify() checks at the end
        # that every range's link is a removal link of the chain.
        return self.current is not None and self.current[0] <= seq < self.current[2]

    def _gone(self, seq: int, marked: str | None) -> str | None:
        if not marked:
            return "the record is missing and no erasure or purge removed it"
        if not self._listed(seq):
            return "the record was deleted, but no erasure or purge in the chain lists it"
        self.removed += 1
        self.checked += 1
        return None

    def _record(self, link: dict[str, Any]) -> str | None:
        if content_hash(link) != link["chain_content_hash"] or link["content_hash"] != link["chain_content_hash"]:
            return "the record's content was changed after it was recorded"
        if link["removed"] or self._listed(link["seq"]):
            return "the record is held, but an erasure or purge in the chain lists it as removed: it was put back"
        try:
            recorded = datetime.fromisoformat(link["recorded_at"])
        except (TypeError, ValueError):
            return "the record's time is not a valid time"
        if recorded.tzinfo is None or (self.last_time is not None and recorded < self.last_time):
            return "the record is dated before the record chained ahead of it: it was appended out of time order"
        self.last_time = recorded
        self.checked += 1
        return None


# -- erasure and retention ------------------------------------------------------------


def day_of_in(zone: tzinfo) -> Callable[[str], str]:
    """A record's recorded_at -> its day in `zone`, as `build_record` counts it in the daily figures."""
    def day_of(recorded_at: str) -> str:
        return datetime.fromisoformat(recorded_at).astimezone(zone).date().isoformat()
    return day_of


def erase(store: Store, subject_id: str, actor: str, zone: tzinfo) -> int:
    """Remove every record of one visitor; return how many."""
    return store.erase_subject(subject_id, actor, day_of_in(zone))


def purge(store: Store, days: int, actor: str, zone: tzinfo, now: datetime | None = None) -> tuple[int, str]:
    """Remove the records that stopped being in force more than `days` days ago; return (how many,
    the cutoff). A record stops being in force when it expires, or earlier when the same visitor's
    next choice on the same site replaces or withdraws it: retention counts from then."""
    cutoff = record_text((now or datetime.now(timezone.utc)) - timedelta(days=days))
    return store.purge_ended(cutoff, actor, day_of_in(zone)), cutoff


# -- export -------------------------------------------------------------------------


def export(rows: Iterable[dict[str, Any]], out: IO[str], fmt: str,
           links: Callable[[dict[str, Any]], tuple[str, str | None]]) -> Iterator[int]:
    """Write rows as CSV or JSON Lines, yielding after each so a caller can show progress.
    `links(row)` gives the URLs of the banner version and widget build the row names."""
    rows = (dict(row, **dict(zip(PROOF_COLUMNS, links(row)))) for row in rows)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow([row.get(column) for column in EXPORT_COLUMNS])
            yield 1
    elif fmt == "jsonl":
        for row in rows:
            item = {column: row.get(column) for column in EXPORT_COLUMNS}
            item["choices"] = json.loads(item["choices"])
            item["gpc"] = bool(item["gpc"])
            out.write(json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n")
            yield 1
    else:
        raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")


# The fragment that makes the widget open its panel on the page it is on (widget/consent.js).
OPEN_PANEL = "#keksi-settings"


def change_urls(row: dict[str, Any], origins: Iterable[str]) -> list[str]:
    """The page where a choice was made, on the origin it was posted from, opening the widget's
    panel: where the visitor changes or withdraws it. The site's home page when the record
    keeps no page path; each of `origins` (the site's) for a record older than its origin."""
    if row.get("origin"):
        origins = [row["origin"]]
    page = row.get("page") or "/"
    if not page.startswith("/") or page.startswith("//"):
        page = "/"
    return [origin + page + OPEN_PANEL for origin in origins]


def receipt(row: dict[str, Any]) -> dict[str, Any]:
    """What a visitor may see of their own record: no subject id, address or browser. A
    withdrawal has no `valid_until`: it consents to nothing that could expire."""
    return {
        "consent_id": row["consent_id"],
        "site": row["site"],
        "action": row["action"],
        "choices": json.loads(row["choices"]),
        "recorded_at": row["recorded_at"],
        "valid_until": None if row["action"] == "withdraw" else row["valid_until"],
        "lang": row["lang"],
        "ui_surface": row["ui_surface"],
        "notice": {"slug": row["notice_slug"], "version": row["notice_version"],
                   "sha256": row["notice_sha256"]},
        "cookie_notice": {"slug": row["cookie_notice_slug"], "version": row["cookie_notice_version"],
                          "sha256": row["cookie_notice_sha256"]} if row.get("cookie_notice_version") else None,
        "banner_hash": row["banner_hash"],
        "gpc": bool(row["gpc"]),
    }
