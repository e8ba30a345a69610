"""Embedding sites: validate their definitions and build what the widget shows.

A site definition is plain JSON, exactly what `flask sites show ID --format json`
prints and `flask sites add FILE` reads:

    {"id": "demo", "name": "…", "origins": ["https://www.example.fi"],
     "default_language": "fi", "consent_days": 365, "cookie_domain": null,
     "notices": {"privacy": "privacy", "cookies": "cookies"},
     "categories": [{"id": "analytics", "services": [{"name": "Matomo",
        "provider": "…", "cookies": [{"name": "_pk_id.*", "provider": "…",
        "purpose": {"fi": "…", "sv": "…", "en": "…"}, "duration": "P13M"}]}]}]}

Texts that a visitor reads are either one string or an object with one string per
configured language. The four standard categories take their label and purpose
from the translation catalogs; any other category must give its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable
from urllib.parse import urlsplit

import idna
from babel.units import format_unit
from flask_babel import force_locale
from flask_babel import gettext as _

STANDARD_CATEGORIES = ("necessary", "preferences", "analytics", "marketing")
HOST_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$")
ID_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
COOKIE_NAME_RE = re.compile(r"^[!#$%&'+\-.^_`|~0-9A-Za-z]+\*?$")
DURATION_RE = re.compile(r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
                         r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?)?$")
MAX_TEXT = 500
MAX_ITEMS = 50
MAX_CATEGORIES = 20  # of any kind, standard or not
MAX_CONSENT_DAYS = 395  # 13 months, the longest a consent may last (CNIL 2020-092; Traficom follows it)


class InvalidSite(ValueError):
    """A site definition that cannot be stored; `errors` maps each field to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))


def category_label(category_id: str) -> str:
    labels = {
        "necessary": _("Necessary"),
        "preferences": _("Preferences"),
        "analytics": _("Analytics"),
        "marketing": _("Marketing"),
    }
    return labels[category_id]


def category_purpose(category_id: str) -> str:
    purposes = {
        "necessary": _("Needed for the site to work and to remember your cookie choice. "
                       "They cannot be switched off."),
        "preferences": _("Remember your settings, such as language and theme."),
        "analytics": _("Count visits and see how the site is used, so that we can improve it."),
        "marketing": _("Measure and target advertising on other sites. These are off unless you "
                       "switch them on."),
    }
    return purposes[category_id]


def standard_texts(category_id: str, languages: list[str]) -> dict[str, dict[str, str]]:
    """A standard category's label and purpose from the catalogs, one text per language: what
    the banner shows when its definition gives none."""
    texts: dict[str, dict[str, str]] = {"label": {}, "purpose": {}}
    for lang in languages:
        with force_locale(lang):
            texts["label"][lang] = category_label(category_id)
            texts["purpose"][lang] = category_purpose(category_id)
    return texts


def banner_texts() -> dict[str, str]:
    """Every text the widget shows, in the current locale."""
    return {
        "region": _("Cookie consent"),
        "title": _("Cookies on this site"),
        "intro": _("We use necessary cookies to run this site. With your consent we also use "
                   "cookies for preferences, analytics and marketing. You can change your choice at "
                   "any time from the “Cookie settings” link."),
        "accept_all": _("Accept all"),
        "reject_all": _("Reject all"),
        "choose": _("Choose"),
        "save": _("Save choices"),
        "close": _("Close"),
        "panel_title": _("Cookie settings"),
        "always_on": _("Always on"),
        "services": _("Services and cookies"),
        "cookie": _("Cookie"),
        "provider": _("Provider"),
        "purpose": _("Purpose"),
        "duration": _("Duration"),
        "privacy_link": _("Privacy notice"),
        "cookies_link": _("Cookie notice"),
        "last_updated": _("last updated %(date)s"),
        "gpc_honoured": _("Your browser sent a Global Privacy Control signal, so marketing "
                          "cookies are off."),
        "changed": _("Our privacy notice has changed since you last chose. Please choose again."),
        "cookies_changed": _("Our cookie notice has changed since you last chose. Please choose again."),
        "see_changes": _("See what changed"),
        "consent_id": _("Your consent ID"),
        "receipt": _("View your receipt"),
        "saved": _("Your choice has been saved."),
        "pending": _("Your choice applies on this page and will be saved when the connection "
                     "returns."),
        "placeholder": _("This content is blocked until you allow %(category)s cookies."),
        "allow": _("Allow %(category)s cookies"),
        "placeholder_service": _("This content from %(service)s (%(provider)s) is blocked until you allow "
                                 "%(category)s cookies."),
        "reload_needed": _("Something you no longer allow is still running on this page. Reload the page "
                           "to complete the change."),
        "reload": _("Reload the page"),
        "session": _("Until the browser is closed"),
    }


# -- validation ---------------------------------------------------------------


def _text(value: Any, field: str, languages: list[str], errors: dict[str, str],
          required: bool = True) -> Any:
    if value is None and not required:
        return None
    if isinstance(value, str):
        if not value.strip():
            errors[field] = "must not be empty"
        elif len(value) > MAX_TEXT:
            errors[field] = f"must be at most {MAX_TEXT} characters"
        return value.strip()
    if isinstance(value, dict):
        missing = [lang for lang in languages if not isinstance(value.get(lang), str)
                   or not value[lang].strip()]
        extra = sorted(set(value) - set(languages))
        if missing:
            errors[field] = f"needs a text in every language; missing: {', '.join(missing)}"
        elif extra:
            errors[field] = f"has languages that are not served: {', '.join(extra)}"
        elif any(len(v) > MAX_TEXT for v in value.values()):
            errors[field] = f"each text must be at most {MAX_TEXT} characters"
        return {lang: value[lang].strip() for lang in languages if isinstance(value.get(lang), str)}
    errors[field] = "must be a text or an object with one text per language"
    return value


def canonical_origin(value: Any) -> str | None:
    """`scheme://host[:port]` in canonical form, or None if it is not an http(s) origin: the scheme
    and host lower-case, the host in IDNA (as browsers send it in Origin), no default port, no
    trailing slash. Origins are compared, stored and echoed in this form only."""
    if not isinstance(value, str) or len(value) > 200:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        return None
    if "*" in value:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    else:
        try:
            host = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
        if not HOST_RE.match(host):
            return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def parse_duration(value: Any) -> tuple[str, int] | str | None:
    """`session`, or an ISO 8601 duration with one unit such as P13M or PT30M."""
    if value == "session":
        return "session"
    if not isinstance(value, str):
        return None
    match = DURATION_RE.match(value)
    if not match:
        return None
    parts = [(unit, int(n)) for unit, n in match.groupdict().items() if n is not None]
    if len(parts) != 1 or parts[0][1] <= 0:
        return None
    return parts[0]


def validate(data: Any, languages: list[str], notice_slugs: Iterable[str] | None = None) -> dict[str, Any]:
    """Check a site definition and return it normalised; raise InvalidSite naming each bad field."""
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        raise InvalidSite({"site": "must be a JSON object"})
    known = {"id", "name", "origins", "default_language", "consent_days", "cookie_domain",
             "notices", "categories"}
    for key in sorted(set(data) - known):
        errors[key] = "is not a site field"

    site_id = data.get("id")
    if not isinstance(site_id, str) or not ID_RE.match(site_id) or len(site_id) > 64:
        errors["id"] = "must be lower-case letters, digits, - or _, at most 64 characters"
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = "must be a non-empty text of at most 200 characters"

    origins = data.get("origins")
    clean_origins: list[str] = []
    if not isinstance(origins, list) or not origins or len(origins) > MAX_ITEMS:
        errors["origins"] = f"must be a list of 1 to {MAX_ITEMS} origins such as https://www.example.fi"
    else:
        for i, origin in enumerate(origins):
            canonical = canonical_origin(origin)
            if canonical is None:
                errors[f"origins[{i}]"] = (f"{origin!r} is not an origin: use scheme and host only, "
                                           "like https://www.example.fi (no path, no wildcard)")
            elif canonical in clean_origins:
                errors[f"origins[{i}]"] = f"{origin!r} is listed twice"
            else:
                clean_origins.append(canonical)

    default_language = data.get("default_language", languages[0])
    if default_language not in languages:
        errors["default_language"] = f"must be one of {', '.join(languages)}"
    consent_days = data.get("consent_days", 365)
    if not isinstance(consent_days, int) or isinstance(consent_days, bool) or not 1 <= consent_days <= MAX_CONSENT_DAYS:
        errors["consent_days"] = (f"must be a whole number of days from 1 to {MAX_CONSENT_DAYS}: a consent "
                                  "lasts at most 13 months")
    cookie_domain = data.get("cookie_domain")
    if cookie_domain is not None and (not isinstance(cookie_domain, str) or not re.match(
            r"^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", cookie_domain)):
        errors["cookie_domain"] = "must be a domain such as example.fi, or null"

    site_notices = data.get("notices", {"privacy": "privacy", "cookies": "cookies"})
    if not isinstance(site_notices, dict) or set(site_notices) != {"privacy", "cookies"}:
        errors["notices"] = "must name the privacy and cookies notices: {\"privacy\": …, \"cookies\": …}"
    else:
        slugs = set(notice_slugs) if notice_slugs is not None else None
        for key, slug in site_notices.items():
            if not isinstance(slug, str) or (slugs is not None and slug not in slugs):
                errors[f"notices.{key}"] = f"{slug!r} is not a published notice"

    categories = data.get("categories")
    clean_categories: list[dict[str, Any]] = []
    if not isinstance(categories, list) or not categories or len(categories) > MAX_CATEGORIES:
        errors["categories"] = f"must be a list of 1 to {MAX_CATEGORIES} categories"
        categories = []
    seen: set[str] = set()
    for i, category in enumerate(categories):
        clean_categories.append(_validate_category(category, f"categories[{i}]", languages, errors, seen))
    if categories and "necessary" not in seen:
        errors["categories"] = "must include the 'necessary' category"

    if errors:
        raise InvalidSite(errors)
    return {
        "id": site_id, "name": name.strip(), "origins": clean_origins,
        "default_language": default_language, "consent_days": consent_days,
        "cookie_domain": cookie_domain, "notices": dict(site_notices),
        "categories": clean_categories,
    }


def _validate_category(category: Any, field: str, languages: list[str], errors: dict[str, str],
                       seen: set[str]) -> dict[str, Any]:
    if not isinstance(category, dict):
        errors[field] = "must be an object"
        return {}
    for key in sorted(set(category) - {"id", "label", "purpose", "services"}):
        errors[f"{field}.{key}"] = "is not a category field"
    cat_id = category.get("id")
    if not isinstance(cat_id, str) or not ID_RE.match(cat_id) or len(cat_id) > 40:
        errors[f"{field}.id"] = "must be lower-case letters, digits, - or _"
    elif cat_id in seen:
        errors[f"{field}.id"] = f"{cat_id!r} is listed twice"
    else:
        seen.add(cat_id)
    standard = cat_id in STANDARD_CATEGORIES
    label = _text(category.get("label"), f"{field}.label", languages, errors, required=not standard)
    purpose = _text(category.get("purpose"), f"{field}.purpose", languages, errors, required=not standard)
    services = category.get("services", [])
    clean_services = []
    if not isinstance(services, list) or len(services) > MAX_ITEMS:
        errors[f"{field}.services"] = f"must be a list of at most {MAX_ITEMS} services"
        services = []
    for j, service in enumerate(services):
        sfield = f"{field}.services[{j}]"
        if not isinstance(service, dict):
            errors[sfield] = "must be an object"
            continue
        for key in sorted(set(service) - {"name", "provider", "cookies"}):
            errors[f"{sfield}.{key}"] = "is not a service field"
        clean_cookies = []
        cookies = service.get("cookies", [])
        if not isinstance(cookies, list) or len(cookies) > MAX_ITEMS:
            errors[f"{sfield}.cookies"] = f"must be a list of at most {MAX_ITEMS} cookies"
            cookies = []
        for k, cookie in enumerate(cookies):
            cfield = f"{sfield}.cookies[{k}]"
            if not isinstance(cookie, dict):
                errors[cfield] = "must be an object"
                continue
            for key in sorted(set(cookie) - {"name", "provider", "purpose", "duration"}):
                errors[f"{cfield}.{key}"] = "is not a cookie field"
            cname = cookie.get("name")
            if not isinstance(cname, str) or not COOKIE_NAME_RE.match(cname) or len(cname) > 100:
                errors[f"{cfield}.name"] = ("must be a cookie name, or a name prefix ending in * "
                                            "such as _pk_id.*")
            if parse_duration(cookie.get("duration")) is None:
                errors[f"{cfield}.duration"] = ("must be 'session' or an ISO 8601 duration with one "
                                                "unit, such as P13M, P90D or PT30M")
            clean_cookies.append({
                "name": cname,
                "provider": _text(cookie.get("provider", service.get("provider")), f"{cfield}.provider",
                                  languages, errors),
                "purpose": _text(cookie.get("purpose"), f"{cfield}.purpose", languages, errors),
                "duration": cookie.get("duration"),
            })
        clean_services.append({
            "name": _text(service.get("name"), f"{sfield}.name", languages, errors),
            "provider": _text(service.get("provider"), f"{sfield}.provider", languages, errors),
            "cookies": clean_cookies,
        })
    result: dict[str, Any] = {"id": cat_id}
    if label is not None:
        result["label"] = label
    if purpose is not None:
        result["purpose"] = purpose
    result["services"] = clean_services
    return result


# -- what the widget shows ------------------------------------------------------


def _in(value: Any, lang: str) -> Any:
    return value.get(lang) if isinstance(value, dict) else value


def format_duration(value: str, lang: str) -> str:
    parsed = parse_duration(value)
    if parsed == "session" or parsed is None:
        return banner_texts()["session"]
    unit, amount = parsed
    babel_unit = {"years": "duration-year", "months": "duration-month", "days": "duration-day",
                  "hours": "duration-hour", "minutes": "duration-minute"}[unit]
    return format_unit(amount, babel_unit, length="long", locale=lang)


def banner(site: dict[str, Any], lang: str) -> dict[str, Any]:
    """The texts and choices a visitor sees, in one language: what `banner_hash` covers."""
    with force_locale(lang):
        categories = []
        for category in site["categories"]:
            cid = category["id"]
            standard = cid in STANDARD_CATEGORIES
            categories.append({
                "id": cid,
                "required": cid == "necessary",
                "label": _in(category.get("label"), lang) or (category_label(cid) if standard else cid),
                "purpose": _in(category.get("purpose"), lang) or (category_purpose(cid) if standard else ""),
                "services": [{
                    "name": _in(service["name"], lang),
                    "provider": _in(service["provider"], lang),
                    "cookies": [{
                        "name": cookie["name"],
                        "provider": _in(cookie["provider"], lang),
                        "purpose": _in(cookie["purpose"], lang),
                        "duration": format_duration(cookie["duration"], lang),
                    } for cookie in service["cookies"]],
                } for service in category["services"]],
            })
        return {
            "site": site["id"],
            "lang": lang,
            "consent_days": site["consent_days"],
            "cookie_domain": site["cookie_domain"],
            "texts": banner_texts(),
            "categories": categories,
        }


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def banner_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def choice_hash(site: dict[str, Any]) -> str:
    """A hash of what a visitor consents to, in every language at once: categories, their
    services and cookies with all their texts, and the consent lifetime. The widget asks again
    when it changes, whichever language the visitor chose in (`banner_hash` covers one language)."""
    return banner_hash({"categories": site["categories"], "consent_days": site["consent_days"]})


def cookie_patterns(site: dict[str, Any]) -> dict[str, list[str]]:
    """Category id to the cookie names (or prefixes ending in *) the widget deletes on refusal."""
    return {category["id"]: [cookie["name"] for service in category["services"]
                             for cookie in service["cookies"]]
            for category in site["categories"]}


def origin_allowed(site: dict[str, Any], origin: str | None) -> bool:
    return origin is not None and canonical_origin(origin) in site["origins"]
