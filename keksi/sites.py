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

Optional parts: `banner` (marketing's own `title` and `text` for the first layer), per service
`catalogue` (the id of the catalogue service it is: with a consent API, the widget sends it the
visitor's choice for the service's category; see `consent_signals`),
`own_purposes` (the provider also uses the data for its own purposes), `transfer` (data leaves
the EU/EEA: `{"safeguard": "adequacy" | "scc" | "bcr", "country": "US"}`, the country optional, as the
service catalogue writes it) and `privacy_url` (the provider's privacy policy, https, which the
cookie notice's tables link), per cookie `storage`
(`local` for an item in the browser's localStorage), and `theme` (colours, font, corner radius
and position of the banner; refused when a pair of its colours fails WCAG 2.2 AA contrast).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable
from urllib.parse import urlsplit

import idna
from babel import Locale
from babel.lists import format_list
from babel.units import format_unit
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import ngettext

from . import catalogue

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
SAFEGUARDS = ("adequacy", "scc", "bcr")
STORAGES = ("cookie", "local")
POSITIONS = ("bottom", "corner", "center")
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
FONT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{0,60}$")
GENERIC_FONTS = ("serif", "sans-serif", "monospace", "system-ui", "ui-sans-serif", "ui-serif",
                 "ui-rounded", "cursive")
MAX_RADIUS = 24
MAX_URL = 500
# A provider's privacy link: https, and only characters that need no escaping in a notice's
# Markdown link or table (no space, quote, bracket, backslash or pipe).
PRIVACY_URL_RE = re.compile(r"^https://(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?::\d{1,5})?"
                            r"(?:[/?#][A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]*)?$")
# The banner's look when a site sets none: what widget/consent.css holds.
THEME_DEFAULTS: dict[str, Any] = {
    "background": "#ffffff", "text": "#1b1f24", "link": "#0a58ca", "button": "#0b3d91",
    "button_text": "#ffffff", "focus": "#c2410c", "font": "system-ui, sans-serif", "radius": 6,
    "position": "bottom",
}
# WCAG 2.2 AA: 4.5:1 for text (1.4.3), 3:1 for a control's boundary and the focus ring (1.4.11).
CONTRAST_PAIRS = (("text", "background", 4.5), ("link", "background", 4.5),
                  ("button_text", "button", 4.5), ("button", "background", 3.0),
                  ("focus", "background", 3.0))


class Problem(str):
    """What is wrong with one field: English text (for the CLI, and what `str()` gives) with a
    `code` and `params`, which `keksi.messages` turns into the admin's language."""

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, message: str, **params: Any) -> "Problem":
        problem = super().__new__(cls, message)
        problem.code, problem.params = code, params
        return problem


class InvalidSite(ValueError):
    """A site definition that cannot be stored; `errors` maps each field to its `Problem`."""

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


def safeguard_name(safeguard: str) -> str:
    """How a transfer outside the EU/EEA is safeguarded, in words (GDPR Arts. 45-47)."""
    names = {
        "adequacy": _("an adequacy decision of the European Commission"),
        "scc": _("standard contractual clauses"),
        "bcr": _("binding corporate rules"),
    }
    return names[safeguard]


def first_layer(site: dict[str, Any], lang: str, operator: str | None) -> dict[str, str]:
    """The banner's title and text in `lang` (the current locale), built from the site itself:
    which categories it asks about, which third parties receive data, whether they use it for
    their own purposes and whether it leaves the EU/EEA (EDPB 03/2022, CNIL 2020-092).

    Marketing's own title and text (`banner`) replace the generated title and the sentence on
    categories; the facts about third parties are always added, so the first layer stays true
    whatever marketing writes. `operator` is the site's own organisation, which is no third party.
    """
    own = site.get("banner") or {}
    optional = [c for c in site["categories"] if c["id"] != "necessary"]
    generated = generated_first_layer(site, lang)
    title = _in(own.get("title"), lang) or generated["title"]
    intro = _in(own.get("text"), lang) or generated["text"]
    sentences = [intro, *_recipient_sentences(optional, lang, operator)]
    if optional:
        sentences.append(_("You can change your choice at any time from the “Cookie settings” link."))
    return {"title": title, "intro": " ".join(sentences)}


def generated_first_layer(site: dict[str, Any], lang: str) -> dict[str, str]:
    """Keksi's own title and sentence on categories, which marketing's `banner` texts replace."""
    optional = [c for c in site["categories"] if c["id"] != "necessary"]
    return {"title": _("Cookies on this site"), "text": _categories_sentence(optional, lang)}


def _label(category: dict[str, Any], lang: str) -> str:
    """A category's name inside a sentence: a standard one's in lower case, as the catalogs give
    it for headings; marketing's own as written."""
    own = _in(category.get("label"), lang)
    if own:
        return own
    return category_label(category["id"]).lower() if category["id"] in STANDARD_CATEGORIES else category["id"]


def _categories_sentence(optional: list[dict[str, Any]], lang: str) -> str:
    if not optional:
        return _("We use only cookies that this site needs to work, and they need no consent.")
    return _("We use necessary cookies to run this site. With your consent we also use these "
             "cookies: %(categories)s.",
             categories=format_list([_label(c, lang) for c in optional], locale=lang))


def _recipient_sentences(optional: list[dict[str, Any]], lang: str, operator: str | None) -> list[str]:
    """Who else receives data from the optional categories (in the site's order, each named once),
    whether they also use it for their own purposes, and whether it may leave the EU/EEA."""
    names: list[str] = []
    own_purposes: list[str] = []
    transfers: list[str] = []
    ours = (operator or "").strip().casefold()
    for category in optional:
        for service in category["services"]:
            provider = _in(service["provider"], lang)
            if provider in names or (provider.strip().casefold() == ours and not service.get("own_purposes")
                                     and not service.get("transfer")):
                continue
            names.append(provider)
            if service.get("own_purposes"):
                own_purposes.append(provider)
            if service.get("transfer"):
                transfers.append(provider)
    if not names:
        return []
    listed = format_list(names, locale=lang)
    if own_purposes == names:
        sentences = [ngettext("With your consent, %(recipients)s also receives data about your visit and uses it "
                              "for its own purposes too.",
                              "With your consent, %(recipients)s also receive data about your visit and use it "
                              "for their own purposes too.", len(names), recipients=listed)]
    else:
        sentences = [ngettext("With your consent, %(recipients)s also receives data about your visit.",
                              "With your consent, %(recipients)s also receive data about your visit.", len(names),
                              recipients=listed)]
        if own_purposes:
            sentences.append(ngettext("%(recipients)s also uses it for its own purposes.",
                                      "%(recipients)s also use it for their own purposes.", len(own_purposes),
                                      recipients=format_list(own_purposes, locale=lang)))
    if transfers == names:
        sentences.append(_("It may be transferred outside the EU/EEA."))
    elif transfers:
        sentences.append(ngettext("%(recipients)s may transfer it outside the EU/EEA.",
                                  "%(recipients)s may transfer it outside the EU/EEA.", len(transfers),
                                  recipients=format_list(transfers, locale=lang)))
    return sentences


# -- validation ---------------------------------------------------------------


def _text(value: Any, field: str, languages: list[str], errors: dict[str, str],
          required: bool = True) -> Any:
    if value is None and not required:
        return None
    if isinstance(value, str):
        if not value.strip():
            errors[field] = Problem("text_empty", "must not be empty")
        elif len(value) > MAX_TEXT:
            errors[field] = Problem("text_long", f"must be at most {MAX_TEXT} characters", max=MAX_TEXT)
        return value.strip()
    if isinstance(value, dict):
        missing = [lang for lang in languages if not isinstance(value.get(lang), str)
                   or not value[lang].strip()]
        extra = sorted(set(value) - set(languages))
        if missing:
            errors[field] = Problem("text_missing", f"needs a text in every language; missing: {', '.join(missing)}",
                                    languages=missing)
        elif extra:
            errors[field] = Problem("text_extra", f"has languages that are not served: {', '.join(extra)}",
                                    languages=extra)
        elif any(len(v) > MAX_TEXT for v in value.values()):
            errors[field] = Problem("text_long", f"each text must be at most {MAX_TEXT} characters", max=MAX_TEXT)
        return {lang: value[lang].strip() for lang in languages if isinstance(value.get(lang), str)}
    errors[field] = Problem("text_kind", "must be a text or an object with one text per language")
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
    """`session`, `persistent`, or an ISO 8601 duration with one unit such as P13M or PT30M."""
    if value in ("session", "persistent"):
        return value
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
        raise InvalidSite({"site": Problem("not_object", "must be a JSON object")})
    known = {"id", "name", "origins", "default_language", "consent_days", "cookie_domain",
             "notices", "categories", "banner", "theme"}
    for key in sorted(set(data) - known):
        errors[key] = Problem("unknown_field", "is not a site field")

    site_id = data.get("id")
    if not isinstance(site_id, str) or not ID_RE.match(site_id) or len(site_id) > 64:
        errors["id"] = Problem("site_id", "must be lower-case letters, digits, - or _, at most 64 characters", max=64)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = Problem("site_name", "must be a non-empty text of at most 200 characters", max=200)

    origins = data.get("origins")
    clean_origins: list[str] = []
    if not isinstance(origins, list) or not origins or len(origins) > MAX_ITEMS:
        errors["origins"] = Problem("origins", f"must be a list of 1 to {MAX_ITEMS} origins such as "
                                    "https://www.example.fi", max=MAX_ITEMS)
    else:
        for i, origin in enumerate(origins):
            canonical = canonical_origin(origin)
            if canonical is None:
                errors[f"origins[{i}]"] = Problem("origin", f"{origin!r} is not an origin: use scheme and host only, "
                                                   "like https://www.example.fi (no path, no wildcard)", origin=origin)
            elif canonical in clean_origins:
                errors[f"origins[{i}]"] = Problem("origin_twice", f"{origin!r} is listed twice", origin=origin)
            else:
                clean_origins.append(canonical)

    default_language = data.get("default_language", languages[0])
    if default_language not in languages:
        errors["default_language"] = Problem("language", f"must be one of {', '.join(languages)}",
                                              languages=languages)
    consent_days = data.get("consent_days", 365)
    if not isinstance(consent_days, int) or isinstance(consent_days, bool) or not 1 <= consent_days <= MAX_CONSENT_DAYS:
        errors["consent_days"] = Problem("consent_days", f"must be a whole number of days from 1 to "
                                         f"{MAX_CONSENT_DAYS}: a consent lasts at most 13 months", max=MAX_CONSENT_DAYS)
    cookie_domain = data.get("cookie_domain")
    if cookie_domain is not None and (not isinstance(cookie_domain, str) or not re.match(
            r"^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", cookie_domain)):
        errors["cookie_domain"] = Problem("cookie_domain", "must be a domain such as example.fi, or null")

    site_notices = data.get("notices", {"privacy": "privacy", "cookies": "cookies"})
    if not isinstance(site_notices, dict) or set(site_notices) != {"privacy", "cookies"}:
        errors["notices"] = Problem("notices", "must name the privacy and cookies notices: "
                                    "{\"privacy\": …, \"cookies\": …}")
    else:
        slugs = set(notice_slugs) if notice_slugs is not None else None
        for key, slug in site_notices.items():
            if not isinstance(slug, str) or (slugs is not None and slug not in slugs):
                errors[f"notices.{key}"] = Problem("notice", f"{slug!r} is not a published notice", slug=slug)

    categories = data.get("categories")
    clean_categories: list[dict[str, Any]] = []
    if not isinstance(categories, list) or not categories or len(categories) > MAX_CATEGORIES:
        errors["categories"] = Problem("categories", f"must be a list of 1 to {MAX_CATEGORIES} categories",
                                        max=MAX_CATEGORIES)
        categories = []
    seen: set[str] = set()
    for i, category in enumerate(categories):
        clean_categories.append(_validate_category(category, f"categories[{i}]", languages, errors, seen))
    if categories and "necessary" not in seen:
        errors["categories"] = Problem("necessary", "must include the 'necessary' category")

    own_banner = _validate_banner(data.get("banner"), languages, errors)
    theme = validate_theme(data.get("theme"), errors)

    if errors:
        raise InvalidSite(errors)
    clean = {
        "id": site_id, "name": name.strip(), "origins": clean_origins,
        "default_language": default_language, "consent_days": consent_days,
        "cookie_domain": cookie_domain, "notices": dict(site_notices),
        "categories": clean_categories,
    }
    if own_banner:
        clean["banner"] = own_banner
    if theme:
        clean["theme"] = theme
    return clean


def _valid_transfer(value: Any) -> bool:
    """A transfer outside the EU/EEA: its safeguard, and the country it goes to if known."""
    return (isinstance(value, dict) and value.get("safeguard") in SAFEGUARDS and set(value) <= {"safeguard", "country"}
            and (value.get("country") is None or (isinstance(value["country"], str)
                                                  and re.fullmatch(r"[A-Z]{2}", value["country"]) is not None)))


def _validate_banner(value: Any, languages: list[str], errors: dict[str, str]) -> dict[str, Any]:
    """Marketing's own title and text for the first layer; either may be left out."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["banner"] = Problem("not_object", "must be an object with a title and a text")
        return {}
    for key in sorted(set(value) - {"title", "text"}):
        errors[f"banner.{key}"] = Problem("unknown_field", "is not a banner field")
    clean = {}
    for key in ("title", "text"):
        text = _text(value.get(key), f"banner.{key}", languages, errors, required=False)
        if text is not None:
            clean[key] = text
    return clean


def validate_theme(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    """A banner theme with every key filled in from the defaults, or {} for none; each bad value
    and each colour pair that fails WCAG 2.2 AA contrast is named in `errors`."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        errors["theme"] = Problem("not_object", "must be an object")
        return {}
    for key in sorted(set(value) - set(THEME_DEFAULTS)):
        errors[f"theme.{key}"] = Problem("unknown_field", "is not a theme field")
    theme = dict(THEME_DEFAULTS, **{k: v for k, v in value.items() if k in THEME_DEFAULTS})
    bad = set()
    for key in THEME_DEFAULTS:
        problem = theme_value_problem(key, theme[key])
        if problem:
            errors[f"theme.{key}"] = problem
            bad.add(key)
        elif key in CONTRAST_COLOURS:
            theme[key] = theme[key].lower()
    for fg, bg, ratio, needed in contrast_failures(theme, skip=bad):
        errors[f"theme.{fg}"] = Problem("contrast", f"{fg} on {bg} has a contrast of {ratio:.2f}:1; WCAG 2.2 AA "
                                         f"needs {needed:g}:1", colour=fg, against=bg, ratio=ratio, needed=needed)
    return theme


CONTRAST_COLOURS = ("background", "text", "link", "button", "button_text", "focus")


def theme_value_problem(key: str, value: Any) -> Problem | None:
    """What is wrong with one value of a theme on its own, or None."""
    if key in CONTRAST_COLOURS:
        if not isinstance(value, str) or not COLOUR_RE.match(value):
            return Problem("colour", "must be a colour written as #rrggbb")
    elif key == "font":
        if font_family(value) is None:
            return Problem("font", "must be font family names separated by commas, such as Inter, system-ui, "
                                   "sans-serif")
    elif key == "radius":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_RADIUS:
            return Problem("radius", f"must be a whole number of pixels from 0 to {MAX_RADIUS}", max=MAX_RADIUS)
    elif value not in POSITIONS:
        return Problem("position", f"must be one of {', '.join(POSITIONS)}", positions=POSITIONS)
    return None


def _luminance(colour: str) -> float:
    """Relative luminance of a #rrggbb colour, as WCAG 2.2 defines it."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(int(colour[i:i + 2], 16) / 255) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours, from 1 to 21."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def contrast_failures(theme: dict[str, Any], skip: Iterable[str] = ()) -> list[tuple[str, str, float, float]]:
    """(foreground, background, ratio, ratio needed) for each pair of the theme's colours that
    fails WCAG 2.2 AA; pairs with a colour in `skip` (not a colour) are left out. The ratio is
    rounded down to two decimals, so that a ratio shown as passing never fails."""
    failures = []
    for fg, bg, needed in CONTRAST_PAIRS:
        if fg in skip or bg in skip:
            continue
        ratio = contrast(theme[fg], theme[bg])
        if ratio < needed:
            failures.append((fg, bg, int(ratio * 100) / 100, needed))
    return failures


def font_family(value: Any) -> str | None:
    """A CSS font-family list made safe to write into a stylesheet, or None if it is not one:
    names of letters, digits, spaces and hyphens, quoted unless generic."""
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        return None
    names = [name.strip().strip("'\"").strip() for name in value.split(",")]
    if not all(FONT_NAME_RE.match(name) for name in names):
        return None
    return ", ".join(name if name in GENERIC_FONTS else f'"{name}"' for name in names)


def theme_css(theme: dict[str, Any] | None) -> str:
    """The stylesheet that gives the banner a site's look (the defaults for a site without a
    theme): the custom properties that widget/consent.css reads, and where the banner sits."""
    theme = theme or THEME_DEFAULTS
    props = {"bg": theme["background"], "fg": theme["text"], "ln": theme["link"], "bt": theme["button"],
             "bf": theme["button_text"], "fc": theme["focus"], "ff": font_family(theme["font"]),
             "r": f'{theme["radius"]}px', "sh": theme["text"] + "66"}  # the text colour at 40%: a scroll shadow
    css = ".b,.d,.ph{" + ";".join(f"--k-{k}:{v}" for k, v in props.items()) + "}"
    return css + _POSITION_CSS[theme["position"]]


_BOX = ("max-width:calc(100vw - 2em);max-height:calc(100vh - 2em);padding:1em;"
        "border:2px solid var(--k-fg);border-radius:var(--k-r);box-shadow:0 4px 16px rgba(0,0,0,.25)")
# On a narrow screen a box would leave the page too little room above it: it stays a bottom bar.
_POSITION_CSS = {
    "bottom": "",
    "corner": "@media(min-width:40em){.b{left:auto;right:1em;bottom:1em;width:26em;" + _BOX + "}}",
    "center": ("@media(min-width:40em){.b{left:50%;right:auto;top:50%;bottom:auto;"
               "transform:translate(-50%,-50%);width:38em;" + _BOX + "}}"),
}


def _validate_category(category: Any, field: str, languages: list[str], errors: dict[str, str],
                       seen: set[str]) -> dict[str, Any]:
    if not isinstance(category, dict):
        errors[field] = Problem("not_object", "must be an object")
        return {}
    for key in sorted(set(category) - {"id", "label", "purpose", "services"}):
        errors[f"{field}.{key}"] = Problem("unknown_field", "is not a category field")
    cat_id = category.get("id")
    if not isinstance(cat_id, str) or not ID_RE.match(cat_id) or len(cat_id) > 40:
        errors[f"{field}.id"] = Problem("category_id", "must be lower-case letters, digits, - or _", max=40)
    elif cat_id in seen:
        errors[f"{field}.id"] = Problem("category_twice", f"{cat_id!r} is listed twice", id=cat_id)
    else:
        seen.add(cat_id)
    standard = cat_id in STANDARD_CATEGORIES
    label = _text(category.get("label"), f"{field}.label", languages, errors, required=not standard)
    purpose = _text(category.get("purpose"), f"{field}.purpose", languages, errors, required=not standard)
    services = category.get("services", [])
    clean_services = []
    if not isinstance(services, list) or len(services) > MAX_ITEMS:
        errors[f"{field}.services"] = Problem("services", f"must be a list of at most {MAX_ITEMS} services",
                                              max=MAX_ITEMS)
        services = []
    for j, service in enumerate(services):
        clean_service = _validate_service(service, f"{field}.services[{j}]", languages, errors)
        if clean_service is not None:
            clean_services.append(clean_service)
    result: dict[str, Any] = {"id": cat_id}
    if label is not None:
        result["label"] = label
    if purpose is not None:
        result["purpose"] = purpose
    result["services"] = clean_services
    return result



def _validate_service(service: Any, sfield: str, languages: list[str],
                      errors: dict[str, str]) -> dict[str, Any] | None:
    """One service of a category and its cookies, checked; None when it is not even an object."""
    if not isinstance(service, dict):
        errors[sfield] = Problem("not_object", "must be an object")
        return None
    for key in sorted(set(service) - {"name", "provider", "cookies", "catalogue", "own_purposes", "transfer",
                                      "privacy_url"}):
        errors[f"{sfield}.{key}"] = Problem("unknown_field", "is not a service field")
    listed = service.get("catalogue")
    if listed is not None and (not isinstance(listed, str) or catalogue.service(listed) is None):
        errors[f"{sfield}.catalogue"] = Problem("catalogue", "must be the id of a service in the catalogue "
                                                "(flask catalogue list), or left out")
    own_purposes = service.get("own_purposes", False)
    if not isinstance(own_purposes, bool):
        errors[f"{sfield}.own_purposes"] = Problem("own_purposes", "must be true or false")
    transfer = service.get("transfer")
    if transfer is not None and not _valid_transfer(transfer):
        errors[f"{sfield}.transfer"] = Problem(
            "transfer", f"must be null (the data stays in the EU/EEA) or {{\"safeguard\": …, \"country\": …}} "
            f"with a safeguard of {', '.join(SAFEGUARDS)} and, if known, an ISO 3166 country code",
            safeguards=SAFEGUARDS)
    privacy_url = service.get("privacy_url")
    if privacy_url is not None and not valid_privacy_url(privacy_url):
        errors[f"{sfield}.privacy_url"] = Problem(
            "privacy_url", f"must be an https address of at most {MAX_URL} characters, such as "
            "https://policies.google.com/privacy, or left out", max=MAX_URL)
    cookies = service.get("cookies", [])
    if not isinstance(cookies, list) or len(cookies) > MAX_ITEMS:
        errors[f"{sfield}.cookies"] = Problem("cookies", f"must be a list of at most {MAX_ITEMS} cookies",
                                              max=MAX_ITEMS)
        cookies = []
    clean_cookies = [clean for k, cookie in enumerate(cookies)
                     if (clean := _validate_cookie(cookie, f"{sfield}.cookies[{k}]", service.get("provider"),
                                                   languages, errors)) is not None]
    clean_service = {
        "name": _text(service.get("name"), f"{sfield}.name", languages, errors),
        "provider": _text(service.get("provider"), f"{sfield}.provider", languages, errors),
        "cookies": clean_cookies,
    }
    # Written only when set, so that a definition without them keeps its hash.
    if listed is not None:
        clean_service["catalogue"] = listed
    if own_purposes is True:
        clean_service["own_purposes"] = True
    if transfer is not None:
        clean_service["transfer"] = transfer
    if privacy_url is not None:
        clean_service["privacy_url"] = privacy_url
    return clean_service


def valid_privacy_url(value: Any) -> bool:
    """A link to a provider's privacy policy: https, a host, at most MAX_URL characters."""
    return isinstance(value, str) and len(value) <= MAX_URL and PRIVACY_URL_RE.match(value) is not None


def _validate_cookie(cookie: Any, cfield: str, service_provider: Any, languages: list[str],
                     errors: dict[str, str]) -> dict[str, Any] | None:
    """One declared cookie (or localStorage key), checked; its provider defaults to its service's."""
    if not isinstance(cookie, dict):
        errors[cfield] = Problem("not_object", "must be an object")
        return None
    for key in sorted(set(cookie) - {"name", "provider", "purpose", "duration", "storage"}):
        errors[f"{cfield}.{key}"] = Problem("unknown_field", "is not a cookie field")
    storage = cookie.get("storage", "cookie")
    if storage not in STORAGES:
        errors[f"{cfield}.storage"] = Problem("storage", "must be cookie or local (the browser's localStorage)")
    cname = cookie.get("name")
    if not isinstance(cname, str) or not COOKIE_NAME_RE.match(cname) or len(cname) > 100:
        errors[f"{cfield}.name"] = Problem("cookie_name", "must be a cookie name, or a name prefix "
                                           "ending in * such as _pk_id.*")
    if parse_duration(cookie.get("duration")) is None:
        errors[f"{cfield}.duration"] = Problem("duration", "must be 'session', 'persistent' (kept until "
                                               "removed) or an ISO 8601 duration with one unit, such as "
                                               "P13M, P90D or PT30M")
    clean_cookie = {
        "name": cname,
        "provider": _text(cookie.get("provider", service_provider), f"{cfield}.provider", languages, errors),
        "purpose": _text(cookie.get("purpose"), f"{cfield}.purpose", languages, errors),
        "duration": cookie.get("duration"),
    }
    if storage != "cookie":
        clean_cookie["storage"] = storage
    return clean_cookie

# -- what the widget shows ------------------------------------------------------


def _in(value: Any, lang: str) -> Any:
    return value.get(lang) if isinstance(value, dict) else value


def format_duration(value: str, lang: str) -> str:
    parsed = parse_duration(value)
    if parsed == "persistent":
        return _("Until it is removed")
    if parsed == "session" or parsed is None:
        return banner_texts()["session"]
    unit, amount = parsed
    babel_unit = {"years": "duration-year", "months": "duration-month", "days": "duration-day",
                  "hours": "duration-hour", "minutes": "duration-minute"}[unit]
    return format_unit(amount, babel_unit, length="long", locale=lang)


def banner(site: dict[str, Any], lang: str, operator: str | None = None) -> dict[str, Any]:
    """The texts and choices a visitor sees, in one language: what `banner_hash` covers.
    `operator` is the organisation that runs the site (KEKSI_ORGANIZATION): no third party."""
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
                    "provider": _provider_shown(service, lang),
                    "cookies": [{
                        "name": _stored_name(cookie),
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
            "texts": dict(banner_texts(), **first_layer(site, lang, operator)),
            "categories": categories,
        }


def _provider_shown(service: dict[str, Any], lang: str) -> str:
    """A service's provider as the panel names it, with what the first layer says about it: that it
    also uses the data for its own purposes, and the safeguard under which it leaves the EU/EEA."""
    parts = [_in(service["provider"], lang)]
    if service.get("own_purposes"):
        parts.append(_("also for its own purposes"))
    transfer = service.get("transfer")
    if transfer and transfer.get("country"):
        country = country_name(transfer["country"], lang)
        parts.append(_("outside the EU/EEA (%(country)s) under %(safeguard)s", country=country,
                       safeguard=safeguard_name(transfer["safeguard"])))
    elif transfer:
        parts.append(_("outside the EU/EEA under %(safeguard)s", safeguard=safeguard_name(transfer["safeguard"])))
    return "; ".join(parts)


def country_name(code: str, lang: str) -> str:
    """An ISO 3166 country code as `lang` names the country."""
    return Locale.parse(lang).territories.get(code, code)


def _stored_name(cookie: dict[str, Any]) -> str:
    """A cookie's name as the panel lists it; an item of localStorage says so."""
    if cookie.get("storage") == "local":
        return _("%(name)s (local storage)", name=cookie["name"])
    return cookie["name"]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def banner_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def choice_hash(site: dict[str, Any]) -> str:
    """A hash of what a visitor consents to, in every language at once: categories, their
    services and cookies with all their texts, and the consent lifetime. The widget asks again
    when it changes, whichever language the visitor chose in (`banner_hash` covers one language).
    Marketing's own banner title and text count too: a first layer that says something else is
    asked about again, in every language."""
    covered = {"categories": _without_catalogue(site["categories"]), "consent_days": site["consent_days"]}
    if site.get("banner"):
        covered["banner"] = site["banner"]
    return banner_hash(covered)


def _without_catalogue(categories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The categories without their services' catalogue links, which no visitor reads, and their
    privacy links, which the cookie notice shows and the banner does not: neither asks anybody again."""
    return [dict(category, services=[{k: v for k, v in service.items() if k not in ("catalogue", "privacy_url")}
                                     for service in category["services"]]) for category in categories]


def consent_signals(site: dict[str, Any]) -> dict[str, str]:
    """Consent API (of widget/signals.js: uet, clarity, matomo, meta) to the category the site
    declares its service in, for each declared service the catalogue knows a consent API of;
    a service declared in two categories follows the first."""
    signals: dict[str, str] = {}
    for category in site["categories"]:
        for service in category["services"]:
            api = (catalogue.service(service.get("catalogue", "")) or {}).get("consent_api")
            if api:
                signals.setdefault(api, category["id"])
    return signals


def cookie_patterns(site: dict[str, Any]) -> dict[str, list[str]]:
    """Category id to the cookie names (or prefixes ending in *) the widget deletes on refusal."""
    return {category["id"]: [cookie["name"] for service in category["services"]
                             for cookie in service["cookies"] if cookie.get("storage") != "local"]
            for category in site["categories"]}


def origin_allowed(site: dict[str, Any], origin: str | None) -> bool:
    return origin is not None and canonical_origin(origin) in site["origins"]
