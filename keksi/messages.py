"""Domain errors in the reader's language: the one place that says what each code means.

`auth`, `store` and `sites` raise codes with parameters (`AuthError.code`, `StoreError.code`,
`sites.Problem.code`, each with `params`), as `notices` does for a text it cannot render
(`RenderProblem.code`), for a version written in the admin that cannot become its file
(`Problem.code`), `figures` for a range of days (`RangeError`), `scanjobs` for a failed scan and
`scan_network` for an address the scanner may not visit (`Refused`), and keep English text for the
CLI and the logs. The views turn a code into words here, in the admin's language; nothing matches on
the English text. A scan's findings are worded here too, by kind.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from babel.lists import format_list
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_ngettext, ngettext

from .i18n import language_name
from .notices import MAX_NESTING, MAX_SOURCE_BYTES, RENDER_SECONDS, Problem, RenderProblem
from .sites import safeguard_name

Params = dict[str, Any]


def _list(items: Iterable[str]) -> str:
    return format_list([str(item) for item in items], style="or", locale=str(get_locale()))


def _languages(codes: Iterable[str]) -> str:
    return format_list([language_name(code) for code in codes], locale=str(get_locale()))


def at_most(n: int) -> Any:
    """"Use at most n characters", translated when shown: a form validator's message."""
    return lazy_ngettext("Use at most %(num)s character.", "Use at most %(num)s characters.", n)


def _characters(n: int) -> str:
    return str(at_most(n))


AUTH: dict[str, Callable[[Params], str]] = {
    "email": lambda p: _("Enter an email address such as name@example.fi."),
    "roles": lambda p: _("Choose one or more roles from: %(roles)s.", roles=", ".join(p["roles"])),
    "password_short": lambda p: ngettext("Use at least %(num)s character.", "Use at least %(num)s characters.",
                                         p["n"]),
    "password_long": lambda p: _characters(p["n"]),
    "password_common": lambda p: _("This password is on a list of common passwords, which guessing tries "
                                   "first. Choose another, such as a few unrelated words."),
    "link_used": lambda p: _("This link has expired or was already used. Ask an admin for a new one."),
    # Not raised: `auth.try_sign_in` returns how long to wait.
    "wait": lambda p: ngettext("Too many failed sign-ins. Try again in %(num)s second.",
                               "Too many failed sign-ins. Try again in %(num)s seconds.", p["seconds"]),
}

STORE: dict[str, Callable[[Params], str]] = {
    "refused": lambda p: _("The change could not be saved. Reload the page and try again."),
    "busy": lambda p: _("Saving is not possible right now. Nothing was saved. Try again in a moment."),
    "unavailable": lambda p: _("Saving is not possible right now. Nothing was saved. Try again in a moment."),
    "version_exists": lambda p: _("A version with this date exists already. Choose another date."),
    "site_exists": lambda p: _("A site with the id %(id)s exists already. Choose another id.", id=p["site"]),
    "no_site": lambda p: _("There is no site with the id %(id)s. It may have been removed.", id=p["site"]),
    "site_has_consents": lambda p: _("The site %(id)s has recorded consents, which are proof that must be kept. "
                                     "Remove its origins instead to stop it collecting new ones.", id=p["site"]),
    "version_in_effect": lambda p: _("This version has taken effect, so it can never be withdrawn."),
    "no_version": lambda p: _("There is no published version of this notice dated %(date)s.",
                              date=p["version"]),
    "user_exists": lambda p: _("A user with this email already exists."),
    "no_user": lambda p: _("There is no such user. They may have been removed."),
    "last_admin": lambda p: _("This is the last enabled admin: add or enable another admin first, so that "
                              "someone can still manage users."),
}

SITE: dict[str, Callable[[Params], str]] = {
    "not_object": lambda p: _("Write this as an object, in braces { }."),
    "unknown_field": lambda p: _("Remove this: there is no field by this name here."),
    "text_empty": lambda p: _("Fill this in."),
    "text_long": lambda p: _characters(p["max"]),
    "text_missing": lambda p: _("Write this in every language: %(languages)s is missing.",
                                languages=_languages(p["languages"])),
    "text_extra": lambda p: _("Remove the texts in %(languages)s: the site is not shown in them.",
                              languages=_languages(p["languages"])),
    "text_kind": lambda p: _("Write one text, or one text for each language."),
    "site_id": lambda p: ngettext("Use lower-case letters, digits, - and _ only, at most %(num)s character, "
                                  "such as web-shop.",
                                  "Use lower-case letters, digits, - and _ only, at most %(num)s characters, "
                                  "such as web-shop.", p["max"]),
    "site_name": lambda p: ngettext("Enter a name of at most %(num)s character.",
                                    "Enter a name of at most %(num)s characters.", p["max"]),
    "origins": lambda p: ngettext("Enter %(num)s origin, such as https://www.example.fi.",
                                  "Enter 1 to %(num)s origins, one per line, such as https://www.example.fi.",
                                  p["max"]),
    "origin": lambda p: _("%(origin)s is not an origin. Write the scheme and host only, such as "
                          "https://www.example.fi: no path and no wildcard.", origin=p["origin"]),
    "origin_twice": lambda p: _("%(origin)s is listed twice.", origin=p["origin"]),
    "language": lambda p: _("Choose one of the languages: %(languages)s.", languages=_languages(p["languages"])),
    "consent_days": lambda p: ngettext("Enter a whole number of days from 1 to %(num)s.",
                                       "Enter a whole number of days from 1 to %(num)s: a consent lasts at most "
                                       "13 months.", p["max"]),
    "cookie_domain": lambda p: _("Enter a domain such as example.fi, or leave this empty."),
    "notices": lambda p: _("Name the privacy notice and the cookie notice the site links to."),
    "notice": lambda p: _("%(slug)s is not a published notice. Choose a published notice.", slug=p["slug"]),
    "categories": lambda p: ngettext("A site can have %(num)s category.",
                                     "A site can have 1 to %(num)s categories.", p["max"]),
    "necessary": lambda p: _("Keep the Necessary category: every site has it."),
    "colour": lambda p: _("Choose a colour, written as #rrggbb."),
    "font": lambda p: _("Write font names separated by commas, using letters, digits, spaces and hyphens, "
                        "such as Inter, system-ui, sans-serif."),
    "radius": lambda p: _("Enter a whole number from 0 to %(max)s.", max=p["max"]),
    "position": lambda p: _("Choose one of the positions."),
    "contrast": lambda p: contrast_message(p["colour"], p["against"], p["ratio"], p["needed"]),
    "category_id": lambda p: ngettext("Use lower-case letters, digits, - and _ only, at most %(num)s "
                                      "character, such as customer-chat.",
                                      "Use lower-case letters, digits, - and _ only, at most %(num)s "
                                      "characters, such as customer-chat.", p["max"]),
    "category_twice": lambda p: _("Another category has this id. Choose another id."),
    "services": lambda p: ngettext("A category can have at most %(num)s service.",
                                   "A category can have at most %(num)s services.", p["max"]),
    "catalogue": lambda p: _("Choose a service from the catalogue, or leave the catalogue id out."),
    "own_purposes": lambda p: _("Say yes or no: does the provider also use the data for its own purposes?"),
    "transfer": lambda p: _("Say whether the data leaves the EU/EEA, and if it does, under %(safeguards)s.",
                            safeguards=_list(safeguard_name(c) for c in p["safeguards"])),
    "privacy_url": lambda p: ngettext("Enter an https address of at most %(num)s character, such as "
                                      "https://policies.google.com/privacy, or leave this empty.",
                                      "Enter an https address of at most %(num)s characters, such as "
                                      "https://policies.google.com/privacy, or leave this empty.", p["max"]),
    "cookies": lambda p: ngettext("A service can have at most %(num)s cookie.",
                                  "A service can have at most %(num)s cookies.", p["max"]),
    "storage": lambda p: _("Choose whether it is stored as a cookie or in the browser's local storage."),
    "cookie_name": lambda p: _("Enter the cookie's name, or a name prefix ending in *, such as _pk_id.*: no "
                               "spaces, at most 100 characters."),
    "duration": lambda p: _("Enter session, persistent (kept until it is removed), or an ISO 8601 duration "
                            "with one unit, such as P13M, P90D or PT30M."),
}


def theme_labels() -> dict[str, str]:
    """What the form calls each part of a theme, also in its contrast messages."""
    return {"background": _("Background"), "text": _("Text"), "link": _("Links"), "button": _("Buttons"),
            "button_text": _("Button text"), "focus": _("Keyboard focus ring")}


def contrast_message(fg: str, bg: str, ratio: float, needed: float) -> str:
    """Which pair fails, its ratio and what WCAG 2.2 AA asks, in the admin's language."""
    labels = theme_labels()
    return _("%(foreground)s on %(background)s: the contrast is %(ratio)s:1, and WCAG 2.2 AA needs "
             "%(needed)s:1 (%(short)s short). Make one of the two colours lighter or darker.",
             foreground=labels[fg], background=labels[bg], ratio=format_decimal(ratio, "0.00"),
             needed=format_decimal(needed, "0.0"), short=format_decimal(max(needed - ratio, 0.01), "0.00"))


RENDER: dict[str, Callable[[Params], str]] = {
    "brackets": lambda p: _("Line %(line)s: “[” or “(” is nested more than %(max)s deep, or left open. Close "
                            "each one, or write \\[ for a bracket meant as text.", line=p["line"], max=MAX_NESTING),
    "emphasis": lambda p: _("Line %(line)s: emphasis (* or _) is nested more than %(max)s deep, or left open. "
                            "Close each one, or write \\* for a star meant as text.", line=p["line"],
                            max=MAX_NESTING),
    "quotes": lambda p: _("Line %(line)s: block quotes (>) are nested more than %(max)s deep.",
                          line=p["line"], max=MAX_NESTING),
    "indent": lambda p: _("Line %(line)s: lists or indentation are nested more than %(max)s levels deep.",
                          line=p["line"], max=MAX_NESTING),
    "recursion": lambda p: _("Line %(line)s: the text from this line on is nested too deeply to show.",
                             line=p["line"]),
    "slow": lambda p: ngettext("Line %(line)s: the text from this line on takes longer than %(num)s second to "
                               "show. Simplify it or split it into shorter paragraphs.",
                               "Line %(line)s: the text from this line on takes longer than %(num)s seconds to "
                               "show. Simplify it or split it into shorter paragraphs.", round(RENDER_SECONDS),
                               line=p["line"]),
    "failed": lambda p: _("Line %(line)s: the text from this line on cannot be shown (%(detail)s).",
                          line=p["line"], detail=p["detail"]),
    "image": lambda p: _("Line %(line)s: notices show no images, so %(image)s would be left out. Link to the "
                         "image instead.", line=p["line"], image=p["detail"]),
}


# A range of days asked for (figures.RangeError); "too_long" only where the range has a maximum.
RANGE: dict[str, Callable[[Params], str]] = {
    "invalid": lambda p: _("Enter a date as YYYY-MM-DD, such as %(example)s.", example=p["example"]),
    "order": lambda p: _("The start is after the end. Choose a start on or before the end."),
    "too_long": lambda p: ngettext("Choose at most %(num)s day.", "Choose at most %(num)s days.", p["max"]),
}

# A version written in the admin that cannot become its file (notices.compose_source).
SOURCE: dict[str, Callable[[Params], str]] = {
    "too_large": lambda p: _("This text is too long: with its title and summary a version may be at most "
                             "%(kb)s KB in each language (letters such as ä and ö take two bytes).",
                             kb=format_decimal(p["kb"])),
    "": lambda p: _("This text cannot be saved as a notice version. Check its title, summary and text."),
}

# Why a scan failed: the codes `scanjobs` stores as the scan's error; "page" with the page that never
# loaded, for a scan failed before such a page became a `page-error` finding.
SCAN: dict[str, Callable[[Params], str]] = {
    "stale": lambda p: _("The scan worker running it stopped; it was tried twice."),
    "timeout": lambda p: _("It took longer than its time limit."),
    "site-removed": lambda p: _("The site was removed."),
    "crashed": lambda p: _("The scanner stopped unexpectedly. The scan worker's log says why."),
    "page": lambda p: _("A page could not be loaded: %(url)s", url=p["url"]),
}

# What went wrong with a page, a `page-error` finding's item: why it did not load (scan.NotLoaded's
# code, with its detail: the refused host and address, the other origin or Chromium's net::ERR_ code),
# or "status" for a page that loaded with an HTTP error status.
PAGE_ERROR: dict[str, Callable[[Params], str]] = {
    "refused": lambda p: _("Not visited: it leads to %(address)s, which is not a public address. An administrator "
                           "can allow private networks with KEKSI_SCAN_ALLOW_PRIVATE.", address=p["detail"]),
    "outside": lambda p: _("Not scanned: it went to another site, %(origin)s.", origin=p["detail"]),
    "timeout": lambda p: _("It did not load in time."),
    "unreachable": lambda p: _("It could not be reached.") + (f" ({p['detail']})" if p.get("detail") else ""),
    "status": lambda p: _("It answered with HTTP status %(status)s.", status=p["status"]),
}

# An address given to scan that leads where the scanner may not go (scan_network.Refused).
SCAN_URL: dict[str, Callable[[Params], str]] = {
    "refused": lambda p: _("%(url)s leads to %(address)s, which is not a public address: the scanner does not "
                           "visit it. An administrator can allow private networks with KEKSI_SCAN_ALLOW_PRIVATE.",
                           url=p["url"], address=p["address"]),
}

# A finding's level (scan.LEVELS), a scan's visitors (scan.VISITORS), and what each kind of finding
# (scan.KINDS) is called and means.
LEVEL: dict[str, Callable[[Params], str]] = {
    "error": lambda p: _("Error"),
    "warning": lambda p: _("Warning"),
    "info": lambda p: _("Note"),
}
VISITOR: dict[str, Callable[[Params], str]] = {
    "none": lambda p: _("No choice yet"),
    "reject": lambda p: _("Rejected all"),
    "accept": lambda p: _("Accepted all"),
}
FINDING: dict[str, Callable[[Params], str]] = {
    "before-consent": lambda p: _("Before a choice"),
    "after-reject": lambda p: _("After “Reject all”"),
    "no-banner": lambda p: _("No banner"),
    "undeclared": lambda p: _("Not declared"),
    "unused": lambda p: _("Declared, never seen"),
    "page-error": lambda p: _("Page error"),
    "time-limit": lambda p: _("Cut short"),
}
FINDING_HELP: dict[str, Callable[[Params], str]] = {
    "before-consent": lambda p: _("Set, stored or contacted before the visitor chose, though not necessary."),
    "after-reject": lambda p: _("Set, stored or contacted after the visitor rejected all, though not necessary."),
    "no-banner": lambda p: _("The consent banner never appeared on this page."),
    "undeclared": lambda p: _("Seen on the site, but not in its declaration."),
    "unused": lambda p: _("In the declaration, but no visitor's browser had it."),
    "page-error": lambda p: _("The page answered with an error, or could not be loaded; the other pages were scanned."),
    "time-limit": lambda p: _("The scan's time ran out: the findings are those of the pages scanned before; the "
                              "pages named were not scanned."),
}

DOMAINS: dict[str, dict[str, Callable[[Params], str]]] = {"auth": AUTH, "store": STORE, "site": SITE,
                                                           "render": RENDER, "range": RANGE,
                                                           "source": SOURCE, "scan": SCAN, "level": LEVEL,
                                                           "visitor": VISITOR, "finding": FINDING,
                                                           "finding_help": FINDING_HELP, "page_error": PAGE_ERROR,
                                                           "scan_url": SCAN_URL}


def message(domain: str, code: str, params: Params | None = None) -> str:
    """What `code` of `domain` (a key of DOMAINS) means, in the current locale."""
    return DOMAINS[domain][code](params or {})


def auth_message(exc: Any) -> str:
    """An `auth.AuthError` in the reader's language."""
    return message("auth", exc.code, exc.params)


def store_message(exc: Any) -> str:
    """A `store.StoreError` in the reader's language."""
    return message("store", exc.code, exc.params)


def site_message(problem: Any) -> str:
    """A `sites.Problem` in the reader's language."""
    return message("site", problem.code, problem.params)


def invalid_site_message(exc: Any) -> str:
    """Each problem of a `sites.InvalidSite` in the reader's language, one after another."""
    return " ".join(site_message(problem) for problem in exc.errors.values())


def source_problem_message(problem: Problem) -> str:
    """A `notices.Problem` of a version written in the admin, in the admin's language."""
    return message("source", problem.code if problem.code in SOURCE else "", {"kb": MAX_SOURCE_BYTES // 1024})


def render_problem_message(problem: RenderProblem) -> str:
    """A `notices.RenderProblem` (a notice text that cannot be shown as written) in the admin's language."""
    return message("render", problem.code, {"line": problem.line, "detail": problem.detail})


def scan_failure(error: str | None) -> str:
    """Why a scan failed (its stored `error`, a code of `scanjobs`), in the admin's language."""
    code, _colon, detail = (error or "").partition(": ")
    if code == "page":  # "page: URL could not be loaded…": only the URL, never the browser's log
        return message("scan", "page", {"url": detail.split(" ", 1)[0]})
    return message("scan", code if code in SCAN else "crashed")


def page_problem(item: dict[str, Any]) -> str:
    """What went wrong with a page (a `page-error` finding's item), in the admin's language."""
    error = item.get("error")
    code = (error if error in PAGE_ERROR else "unreachable") if error else "status"
    return message("page_error", code, {"detail": item.get("detail") or "", "status": item.get("status")})
