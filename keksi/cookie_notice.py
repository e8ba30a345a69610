"""The cookie notice written from a site's declaration: a draft whose tables are the site's cookies.

Legal's prose stays legal's. The draft starts from the text of the notice's latest version and
rewrites only the blocks between two markers, one block per category:

    <!-- keksi:cookies analytics -->
    | Cookie | Provider | Purpose | Duration | Party |
    |---|---|---|---|---|
    | `_pk_id.*` | Tiimityö Oy (Matomo) | … | 13 months | First party |
    <!-- /keksi:cookies analytics -->

The markers are HTML comments: the pages and diffs never show them. A category the site declares
and the text has no block for gets a new section (heading, the banner's purpose, its table) after
the last block, for legal to write its prose around; a block of a category the site no longer
declares is taken out. A text without any marker (written before drafts existed) has each table
whose cookie names are mostly one category's taken as that category's block; a notice without any
version starts from a short template. Each cookie says what the banner's panel says of it (the
same words, from `sites.banner`), plus whether it is the site's own or a third party's and, where
declared, under which safeguard its data leaves the EU/EEA.

Nothing here touches a request or the store: callers pass the site, the base text and the
operator (KEKSI_ORGANIZATION), inside an app context for the catalogs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _

from . import catalogue, sites

BLOCK_RE = re.compile(r"^<!-- keksi:cookies (?P<id>[a-z0-9_-]+) -->\n.*?^<!-- /keksi:cookies (?P=id) -->$",
                      re.MULTILINE | re.DOTALL)
CODE_NAME_RE = re.compile(r"`+\s*([^`|]+?)\s*`+")
REMOVED = "\0keksi:removed\0"  # where a block of a category no longer declared was


@dataclass
class Draft:
    """One language's drafted body, and what legal should look at besides the tables."""

    body: str
    added: list[str] = field(default_factory=list)  # categories given a new section: write its prose
    removed: list[str] = field(default_factory=list)  # categories no longer declared: their table is out
    adopted: list[str] = field(default_factory=list)  # unmarked tables now marked as these categories'


def draft(site: dict[str, Any], lang: str, base: str | None, operator: str | None) -> Draft:
    """The cookie notice's body in `lang` with every table written from `site`'s declaration,
    from `base` (the latest version's body) or, without one, from the template."""
    with force_locale(lang):
        shown = sites.banner(site, lang, operator)
        blocks = dict(zip([c["id"] for c in site["categories"]], _blocks(site, shown, lang, operator)))
        sections = {c["id"]: _section(c, blocks[c["id"]]) for c in shown["categories"]}
        if base is None:
            return Draft(_template(site, sections), added=list(blocks))
        body = base.replace("\r\n", "\n")
        result = Draft(body)
        if not BLOCK_RE.search(body):
            body, result.adopted = _adopt(body, site)
        marked = [m["id"] for m in BLOCK_RE.finditer(body)]
        result.removed = [cid for cid in dict.fromkeys(marked) if cid not in blocks]
        result.added = [cid for cid in blocks if cid not in marked]
        body = BLOCK_RE.sub(lambda m: blocks.get(m["id"], REMOVED), body)
        body = re.sub(rf"\n*{REMOVED}\n*", "\n\n", body)  # a block taken out leaves one blank line
        result.body = _insert(body, "".join(sections[cid] for cid in result.added)).strip() + "\n"
        return result


# -- the tables --------------------------------------------------------------------


def _blocks(site: dict[str, Any], shown: dict[str, Any], lang: str, operator: str | None) -> list[str]:
    """Each category's marked block, in the site's order, in the current locale; `shown` is the
    site's banner in `lang`, whose words the tables repeat."""
    texts = shown["texts"]
    blocks = []
    for declared, category in zip(site["categories"], shown["categories"], strict=True):
        transfers = any(s.get("transfer") for s in declared["services"])
        head = [texts["cookie"], texts["provider"], texts["purpose"], texts["duration"], _("Party")]
        head += [_("Outside the EU/EEA")] if transfers else []
        rows = [_row(service, cookie, shown_service, shown_cookie, lang, operator, transfers)
                for service, shown_service in zip(declared["services"], category["services"], strict=True)
                for cookie, shown_cookie in zip(service["cookies"], shown_service["cookies"], strict=True)]
        table = ([_line(head), "|" + "---|" * len(head)] + [_line(r) for r in rows] if rows
                 else [_("No cookies of this category are in use.")])
        cid = declared["id"]
        blocks.append("\n".join([f"<!-- keksi:cookies {cid} -->", *table, f"<!-- /keksi:cookies {cid} -->"]))
    return blocks


def _row(service: dict[str, Any], cookie: dict[str, Any], shown_service: dict[str, Any],
         shown_cookie: dict[str, Any], lang: str, operator: str | None, transfers: bool) -> list[str]:
    """One cookie's cells: the panel's words for it, its party and, in a table that has the column,
    where its data goes."""
    name = _code(cookie["name"])
    if cookie.get("storage") == "local":
        name = _("%(name)s (local storage)", name=name)
    provider = _escape(shown_cookie["provider"])
    if shown_service["name"] not in shown_cookie["provider"]:
        provider += f" ({_escape(shown_service['name'])})"
    party = _("First party") if catalogue.declared_party(service, cookie["name"]) == "first" else _("Third party")
    cells = [name, provider, _escape(shown_cookie["purpose"]), _escape(shown_cookie["duration"]), party]
    return cells + [_transfer(service.get("transfer"), lang)] if transfers else cells


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


def _code(name: str) -> str:
    # A cookie name may hold a backtick: then the code span is fenced with two.
    return f"`` {name} ``" if "`" in name else f"`{name}`"


# -- placing the blocks ----------------------------------------------------------------


def _adopt(body: str, site: dict[str, Any]) -> tuple[str, list[str]]:
    """A text written before the markers: each table whose backticked cookie names are mostly one
    declared category's becomes that category's block (each category once)."""
    owner = {c["name"]: cat["id"] for cat in site["categories"] for s in cat["services"] for c in s["cookies"]}
    lines = body.split("\n")
    adopted: list[str] = []
    for start, end in reversed(_tables(lines)):
        names = [m[1] for line in lines[start + 2:end] if (m := CODE_NAME_RE.search(line.split("|")[1]))]
        votes = [owner[n] for n in names if n in owner]
        best = max(set(votes), key=votes.count) if votes else None
        if best and best not in adopted and votes.count(best) * 2 > len(names):
            lines[start:end] = [f"<!-- keksi:cookies {best} -->", *lines[start:end], f"<!-- /keksi:cookies {best} -->"]
            adopted.append(best)
    return "\n".join(lines), adopted[::-1]


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


def _template(site: dict[str, Any], sections: dict[str, str]) -> str:
    """A first version: what the notice is, how to choose, then one section per category."""
    intro = [
        _("This notice lists the cookies and similar technologies that %(site)s uses, by category: who "
          "sets each one, why, and for how long.", site=_escape(site["name"])),
        _("Necessary cookies are always on. We use all other cookies only if you allow them, and you can "
          "change or withdraw your choice at any time from the “Cookie settings” link on every page."),
    ]
    closing = _("When we add a cookie category or a provider, we publish a new version of this notice and "
                "ask for your consent again.")
    return "\n\n".join(intro) + "\n\n" + "".join(sections.values()) + closing + "\n"


def title() -> str:
    """A new cookie notice's title, in the current locale."""
    return _("Cookie notice")


def summary(site: dict[str, Any]) -> str:
    """A draft's change summary, for legal to rewrite, in the current locale."""
    return _("The cookie tables follow the declaration of %(site)s.", site=site["name"])
