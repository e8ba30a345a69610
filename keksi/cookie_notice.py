"""The cookie notice written from the declarations of the sites that link it: a draft whose tables
are their cookies.

Legal's prose stays legal's. The draft starts from the text of the notice's latest version and
rewrites only the blocks between two markers, one block per category:

    <!-- keksi:cookies analytics -->
    | Cookie | Provider | Purpose | Duration | Party |
    |---|---|---|---|---|
    | `_pk_id.*` | Tiimityö Oy (Matomo) | … | 13 months | First party |
    <!-- /keksi:cookies analytics -->

The markers are HTML comments: the pages and diffs never show them. A draft is of a notice: it
covers every site that links the notice as its cookie notice (`covering`), and when there are
several, each table has a first column naming the site of each row, so that a draft for one site
never drops another's cookies. A category the sites declare and the text has no block for gets its
table at the end of legal's section under its heading, else a new section (heading, the banner's
purpose, its table) after the last block; a block of a category no site declares any longer is taken
out. A text without any marker (written before drafts existed) has each table whose cookie names are
mostly one category's, else that stands under a category's heading, taken as that category's block;
a cookie table that neither places is another declaration's and is taken out. A notice without any
version starts from a short template. Each cookie says what the banner's panel says of it (the same
words, from `sites.banner`), plus whether it is the site's own or a third party's, the provider's
privacy policy where declared and, where declared, under which safeguard its data leaves the EU/EEA.
Keksi's own items in the browser are always listed under necessary.

Nothing here touches a request or the store: callers pass the sites, the base text and the
operator (KEKSI_ORGANIZATION), inside an app context for the catalogs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from babel.lists import format_list
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _

from . import catalogue, consents, sites

BLOCK_RE = re.compile(r"^<!-- keksi:cookies (?P<id>[a-z0-9_-]+) -->\n.*?^<!-- /keksi:cookies (?P=id) -->$",
                      re.MULTILINE | re.DOTALL)
CODE_NAME_RE = re.compile(r"`+\s*([^`|]+?)\s*`+")
REMOVED = "\0keksi:removed\0"  # where a block of a category no longer declared was
# What the widget keeps in every visitor's browser (widget/consent.js: NAME and QUEUE).
OWN_COOKIE, OWN_QUEUE = "keksi_consent", "keksi_queue"


@dataclass
class Draft:
    """One language's drafted body, and what legal should look at besides the tables."""

    body: str
    added: list[str] = field(default_factory=list)  # categories given a new section: write its prose
    removed: list[str] = field(default_factory=list)  # categories no longer declared: their table is out
    adopted: list[str] = field(default_factory=list)  # unmarked tables now marked as these categories'
    unplaced: list[str] = field(default_factory=list)  # cookies of unmarked tables no category took: out
    new_providers: list[str] = field(default_factory=list)  # recipients the base's tables did not name
    new_categories: list[str] = field(default_factory=list)  # categories with cookies the base had no table of

    @property
    def material(self) -> bool:
        """A new recipient or category (GDPR Art. 13/14): visitors are asked again. Legal may change it."""
        return bool(self.new_providers or self.new_categories)


def covering(all_sites: Iterable[dict[str, Any]], slug: str) -> list[dict[str, Any]]:
    """The sites that link `slug` as their cookie notice, by id: a draft lists the cookies of each,
    so that drafting for one site never drops another's."""
    return sorted((s for s in all_sites if s["notices"].get("cookies") == slug), key=lambda s: s["id"])


def draft(covered: list[dict[str, Any]], lang: str, base: str | None, operator: str | None) -> Draft:
    """The cookie notice's body in `lang` with every table written from the declarations of the
    `covered` sites (every site that links the notice), from `base` (the latest version's body) or,
    without one, from the template."""
    with force_locale(lang):
        shown = _categories(covered, lang, operator)
        blocks = _blocks(covered, lang, operator)
        sections = {cid: _section(category, blocks[cid]) for cid, category in shown.items()}
        if base is None:
            return Draft(_template(covered, sections), added=list(blocks))
        result = _redraft(base.replace("\r\n", "\n"), covered, shown, blocks, sections)
        tables = "\n".join(line for line in base.split("\n") if line.lstrip().startswith("|"))
        result.new_providers = [p for p in _providers(covered) if _escape(p) not in tables]
        return result


def _redraft(body: str, covered: list[dict[str, Any]], shown: dict[str, dict[str, Any]],
             blocks: dict[str, str], sections: dict[str, str]) -> Draft:
    """`body` with its marked blocks rewritten, those of categories no longer declared taken out,
    and each declared category without a block placed under its heading or in a new section."""
    result = Draft(body)
    headings = _heading_ids(shown)
    if not BLOCK_RE.search(body):
        body, result.adopted, result.unplaced = _adopt(body, covered, headings)
    marked = [m["id"] for m in BLOCK_RE.finditer(body)]
    had_rows = {m["id"] for m in BLOCK_RE.finditer(body) if "\n|" in m[0]}
    result.new_categories = [cid for cid, block in blocks.items() if "\n|" in block and cid not in had_rows]
    result.removed = [cid for cid in dict.fromkeys(marked) if cid not in blocks]
    body = BLOCK_RE.sub(lambda m: blocks.get(m["id"], REMOVED), body)
    body = re.sub(rf"\n*{REMOVED}\n*", "\n\n", body)  # a block taken out leaves one blank line
    for cid in (cid for cid in blocks if cid not in marked):
        placed = _under_heading(body, cid, blocks[cid], headings)
        body = placed if placed is not None else body
        result.added += [] if placed is not None else [cid]
    result.body = _insert(body, "".join(sections[cid] for cid in result.added)).strip() + "\n"
    return result


# -- the tables --------------------------------------------------------------------


def _categories(covered: list[dict[str, Any]], lang: str, operator: str | None) -> dict[str, dict[str, Any]]:
    """Every category of the covered sites as the banner shows it (the first site declaring it
    gives its label and purpose), in the order they first appear."""
    shown: dict[str, dict[str, Any]] = {}
    for site in covered:
        for category in sites.banner(site, lang, operator)["categories"]:
            shown.setdefault(category["id"], category)
    return shown


def _providers(covered: list[dict[str, Any]]) -> list[str]:
    """Every provider (recipient) of a service with cookies that the covered sites declare, in order."""
    names = [service.get("provider") or cookie.get("provider") for site in covered for category in site["categories"]
             for service in category["services"] for cookie in service["cookies"]]
    return list(dict.fromkeys(name for name in names if name))


def _blocks(covered: list[dict[str, Any]], lang: str, operator: str | None) -> dict[str, str]:
    """Each category's marked block, in the current locale: one row per cookie of every covered
    site (a row the same on several sites once, naming them), with a Site column when the notice
    covers more than one site, and Keksi's own items first under necessary."""
    texts = sites.banner_texts()
    transfers = {c["id"] for site in covered for c in site["categories"] if any(s.get("transfer") for s in c["services"])}
    rows: dict[str, dict[tuple[str, ...], list[str]]] = {}
    for site in covered:
        for cid, cells in _site_rows(site, lang, operator, transfers):
            found = rows.setdefault(cid, {})
            if cells:
                found.setdefault(tuple(cells), []).append(_escape(site["name"]))
    several = len(covered) > 1
    blocks = {}
    for cid, found in rows.items():
        head = ([_("Site")] if several else []) + [texts["cookie"], texts["provider"], texts["purpose"],
                                                   texts["duration"], _("Party")]
        head += [_("Outside the EU/EEA")] if cid in transfers else []
        lines = [[", ".join(names)] * several + list(cells) for cells, names in found.items()]
        table = ([_line(head), "|" + "---|" * len(head)] + [_line(cells) for cells in lines] if lines
                 else [_("No cookies of this category are in use.")])
        blocks[cid] = "\n".join([f"<!-- keksi:cookies {cid} -->", *table, f"<!-- /keksi:cookies {cid} -->"])
    return blocks


def _site_rows(site: dict[str, Any], lang: str, operator: str | None,
               transfers: set[str]) -> Iterator[tuple[str, list[str]]]:
    """(category id, cells) of each cookie the site declares, each category first with no cells (to
    keep its place when it has no cookies); Keksi's own items lead the necessary ones."""
    shown = sites.banner(site, lang, operator)
    for declared, category in zip(site["categories"], shown["categories"], strict=True):
        cid = declared["id"]
        extra = cid in transfers
        yield cid, []
        yield from ((cid, cells) for cells in (_own_rows(site, lang, operator, extra) if cid == "necessary" else []))
        for service, shown_service in zip(declared["services"], category["services"], strict=True):
            for cookie, shown_cookie in zip(service["cookies"], shown_service["cookies"], strict=True):
                yield cid, _row(service, cookie, shown_service, shown_cookie, lang, extra)


def _row(service: dict[str, Any], cookie: dict[str, Any], shown_service: dict[str, Any],
         shown_cookie: dict[str, Any], lang: str, transfers: bool) -> list[str]:
    """One cookie's cells: the panel's words for it, its party and, in a table that has the column,
    where its data goes."""
    name = _code(cookie["name"])
    if cookie.get("storage") == "local":
        name = _("%(name)s (local storage)", name=name)
    provider = _escape(shown_cookie["provider"])
    if shown_service["name"] not in shown_cookie["provider"]:
        provider += f" ({_escape(shown_service['name'])})"
    if service.get("privacy_url"):
        provider += ", " + _link(_("privacy policy"), service["privacy_url"])
    party = _("First party") if catalogue.declared_party(service, cookie["name"]) == "first" else _("Third party")
    cells = [name, provider, _escape(shown_cookie["purpose"]), _escape(shown_cookie["duration"]), party]
    return cells + [_transfer(service.get("transfer"), lang)] if transfers else cells


def _own_rows(site: dict[str, Any], lang: str, operator: str | None, transfers: bool) -> list[list[str]]:
    """Keksi's own items in the visitor's browser (see widget/consent.js), which every site that
    embeds the widget sets whether or not it declares them: the stored choice and, until the
    server has recorded a choice, its queue. A site that declares one has its own row for it."""
    declared = {c["name"] for category in site["categories"] for s in category["services"] for c in s["cookies"]}
    provider = _escape(operator or site["name"])
    days = site["consent_days"]
    lifetime = sites.format_duration(f"P{days}D", lang)
    if days < consents.REFUSAL_DAYS:
        lifetime = _("%(duration)s; %(refusal)s after “Reject all”", duration=lifetime,
                     refusal=sites.format_duration(f"P{consents.REFUSAL_DAYS}D", lang))
    rows = [[_code(OWN_COOKIE), provider, _("Stores your cookie choice and its consent ID."), lifetime],
            [_("%(name)s (local storage)", name=_code(OWN_QUEUE)), provider,
             _("Holds your cookie choice until our server has recorded it, then is removed."),
             sites.format_duration("persistent", lang)]]
    cells = [row + [_("First party")] + ([_("Not transferred")] if transfers else []) for row in rows]
    return [row for row, name in zip(cells, (OWN_COOKIE, OWN_QUEUE)) if name not in declared]


def _transfer(transfer: dict[str, Any] | None, lang: str) -> str:
    if not transfer:
        return _("Not transferred")
    safeguard = sites.safeguard_name(transfer["safeguard"])
    if transfer.get("country"):
        return _("%(country)s, under %(safeguard)s", country=sites.country_name(transfer["country"], lang),
                 safeguard=safeguard)
    return _("Yes, under %(safeguard)s", safeguard=safeguard)


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _escape(text: str) -> str:
    """Declared text as one table cell that shows exactly that text: no Markdown, no HTML."""
    text = " ".join(str(text).split())
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", text).replace("<", "&lt;")


def _link(text: str, url: str) -> str:
    # `sites.validate` lets no space, bracket, pipe or quote into a privacy link.
    return f"[{_escape(text)}](<{url}>)"


def _code(name: str) -> str:
    # A cookie name may hold a backtick: then the code span is fenced with two.
    return f"`` {name} ``" if "`" in name else f"`{name}`"


# -- placing the blocks ----------------------------------------------------------------


def _adopt(body: str, covered: list[dict[str, Any]],
           headings: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """A text written before the markers: each table whose backticked cookie names are mostly one
    declared category's, else that stands under a category's heading, becomes that category's block
    (each category once). A cookie table that neither places is another declaration's: it is taken
    out, and its cookies returned, for the draft to hold only the covered sites' cookies."""
    owner = {c["name"]: cat["id"] for site in covered for cat in site["categories"]
             for s in cat["services"] for c in s["cookies"]}
    lines = body.split("\n")
    adopted: list[str] = []
    unplaced: list[str] = []
    for start, end in reversed(_tables(lines)):
        names = [m[1] for line in lines[start + 2:end] if (m := CODE_NAME_RE.search(line.split("|")[1]))]
        votes = [owner[n] for n in names if n in owner]
        best = max(set(votes), key=votes.count) if votes else None
        if not (best and votes.count(best) * 2 > len(names)):
            keys = (_heading_key(line) for line in _headings_above(lines, start))
            best = next((headings[key] for key in keys if key in headings), None) if names else None
        if best and best not in adopted:
            lines[start:end] = [f"<!-- keksi:cookies {best} -->", *lines[start:end], f"<!-- /keksi:cookies {best} -->"]
            adopted.append(best)
        elif names:
            lines[start:end] = [REMOVED]
            unplaced[:0] = names
    return "\n".join(lines), adopted[::-1], unplaced


def _headings_above(lines: list[str], start: int) -> Iterator[str]:
    """The headings that line `start` stands under, the nearest first: each one higher than the one
    before (a table under "### Google" under "## Marketing cookies" stands under both)."""
    level = 7
    for line in reversed(lines[:start]):
        depth = len(line) - len(line.lstrip("#"))
        if 0 < depth < level:
            level = depth
            yield line


def _heading_key(heading: str) -> str:
    """A heading as compared with a category's: no #, no numbering such as "3.", any case."""
    return re.sub(r"^#+\s*(\d+(\.\d+)*\.?\s+)?", "", heading).strip().casefold()


def _heading_ids(shown: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The headings (as `_heading_key` gives them) that name each category in the current locale:
    the standard categories' whether or not a covered site declares them, and each declared one's
    label and section heading."""
    headings = {_heading_key(_heading(cid, "")): cid for cid in sites.STANDARD_CATEGORIES}
    headings.update({_heading_key(sites.category_label(cid)): cid for cid in sites.STANDARD_CATEGORIES})
    for cid, category in shown.items():
        headings.setdefault(_heading_key(category["label"]), cid)
        headings.setdefault(_heading_key(_heading(cid, category["label"])), cid)
    return headings


def _under_heading(body: str, cid: str, block: str, headings: dict[str, str]) -> str | None:
    """`body` with `block` at the end of the section whose heading names the category (legal kept
    its words when its table went out), or None when no heading does: then it gets a new section."""
    lines = body.split("\n")
    found = next((n for n, line in enumerate(lines)
                  if line.startswith("#") and headings.get(_heading_key(line)) == cid), None)
    if found is None:
        return None
    level = len(lines[found]) - len(lines[found].lstrip("#"))
    end = next((n for n in range(found + 1, len(lines))
                if lines[n].startswith("#") and len(lines[n]) - len(lines[n].lstrip("#")) <= level), len(lines))
    section = "\n".join(lines[found:end]).rstrip("\n")
    return "\n".join(lines[:found] + [section + "\n\n" + block, ""] + lines[end:]).rstrip("\n") + "\n"


def _tables(lines: list[str]) -> list[tuple[int, int]]:
    """The Markdown tables among `lines`: each one's first line and the line after its last."""
    found, start = [], None
    for number, line in enumerate([*lines, ""]):
        is_row = line.lstrip().startswith("|")
        if is_row and start is None:
            start = number
        elif not is_row and start is not None:
            if number - start >= 2 and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[start + 1]):
                found.append((start, number))
            start = None
    return found


def _insert(body: str, sections: str) -> str:
    """`sections` after the last block (so before what legal wrote after the tables' sections'),
    or at the end of a text without blocks."""
    if not sections:
        return body
    last = None
    for last in BLOCK_RE.finditer(body):
        pass
    if last is None:
        return body.rstrip("\n") + "\n\n" + sections
    return body[:last.end()] + "\n\n" + sections.rstrip("\n") + body[last.end():]


def _section(category: dict[str, Any], block: str) -> str:
    """A new section for a category as the banner shows it: heading, purpose, table."""
    purpose = f"{_escape(category['purpose'])}\n\n" if category["purpose"] else ""
    return f"## {_heading(category['id'], category['label'])}\n\n{purpose}{block}\n\n"


def _heading(cid: str, label: str) -> str:
    headings = {
        "necessary": _("Necessary cookies"),
        "preferences": _("Preference cookies"),
        "analytics": _("Analytics cookies"),
        "marketing": _("Marketing cookies"),
    }
    return headings.get(cid) or _escape(label)


def _template(covered: list[dict[str, Any]], sections: dict[str, str]) -> str:
    """A first version: what the notice is, how to choose, then one section per category."""
    intro = [
        _("This notice lists the cookies and similar technologies that %(site)s uses, by category: who "
          "sets each one, why, and for how long.", site=_escape(site_names(covered))),
        _("Necessary cookies are always on. We use all other cookies only if you allow them, and you can "
          "change or withdraw your choice at any time from the “Cookie settings” link on every page."),
    ]
    closing = _("When we add a cookie category or a provider, we publish a new version of this notice and "
                "ask for your consent again.")
    return "\n\n".join(intro) + "\n\n" + "".join(sections.values()) + closing + "\n"


def site_names(covered: list[dict[str, Any]]) -> str:
    """The covered sites' names as one text in the current locale ("A, B and C")."""
    return format_list([s["name"] for s in covered], locale=str(get_locale()))


def title() -> str:
    """A new cookie notice's title, in the current locale."""
    return _("Cookie notice")


def summary(covered: list[dict[str, Any]]) -> str:
    """A draft's change summary, for legal to rewrite, in the current locale."""
    if len(covered) == 1:
        return _("The cookie tables follow the declaration of %(site)s.", site=covered[0]["name"])
    return _("The cookie tables follow the declarations of %(sites)s.", sites=site_names(covered))
