"""What changed between two notice versions, shown as the reader sees the text.

Both bodies are rendered exactly as their pages are (sanitised HTML), cut into blocks (a
heading, a paragraph, a list item, a table row) and the blocks compared; a changed block is
compared word by word inside its own markup, so a reader sees headings, bold text, list items
and link text, never Markdown syntax.

The work is bounded for any input up to the largest notice accepted: difflib's matcher is
about quadratic, so it only ever sees ranges whose product of lengths is at most
`EXACT_LIMIT`. Longer ranges are first cut at the items that occur once in each side, in the
same order (patience diff); a long range with no such anchor is reported as replaced whole.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Hashable, NamedTuple, Sequence

from markupsafe import Markup, escape

from .notices import render

EXACT_LIMIT = 40_000  # len(a) * len(b) at or below which difflib compares two ranges exactly
MAX_DEPTH = 24  # anchor rounds before a range without progress is reported as replaced whole
PAIR_RATIO = 0.5  # two changed blocks are one changed block when this much of their words agree
PAIR_WINDOW = 8  # how many new blocks ahead an old block looks for its changed self

Opcode = tuple[str, int, int, int, int]


# -- a bounded sequence diff ---------------------------------------------------


def opcodes(a: Sequence[Hashable], b: Sequence[Hashable]) -> list[Opcode]:
    """difflib-style opcodes turning `a` into `b`, with bounded work for any input."""
    found: list[Opcode] = []
    _match(a, b, 0, len(a), 0, len(b), found, 0)
    return _merge(found)


def _match(a, b, alo: int, ahi: int, blo: int, bhi: int, out: list[Opcode], depth: int) -> None:
    start = alo
    while alo < ahi and blo < bhi and a[alo] == b[blo]:
        alo, blo = alo + 1, blo + 1
    if alo > start:
        out.append(("equal", start, alo, blo - (alo - start), blo))
    tail = 0
    while ahi - tail > alo and bhi - tail > blo and a[ahi - tail - 1] == b[bhi - tail - 1]:
        tail += 1
    ahi, bhi = ahi - tail, bhi - tail
    if alo < ahi or blo < bhi:
        _match_middle(a, b, alo, ahi, blo, bhi, out, depth)
    if tail:
        out.append(("equal", ahi, ahi + tail, bhi, bhi + tail))


def _match_middle(a, b, alo: int, ahi: int, blo: int, bhi: int, out: list[Opcode], depth: int) -> None:
    if alo == ahi or blo == bhi or (ahi - alo) * (bhi - blo) <= EXACT_LIMIT:
        matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
        out.extend((op, alo + i1, alo + i2, blo + j1, blo + j2) for op, i1, i2, j1, j2 in matcher.get_opcodes())
        return
    anchors = _anchors(a, b, alo, ahi, blo, bhi) if depth < MAX_DEPTH else []
    if not anchors:
        out.append(("replace", alo, ahi, blo, bhi))
        return
    for i, j in anchors:
        _match(a, b, alo, i, blo, j, out, depth + 1)
        out.append(("equal", i, i + 1, j, j + 1))
        alo, blo = i + 1, j + 1
    _match(a, b, alo, ahi, blo, bhi, out, depth + 1)


def _anchors(a, b, alo: int, ahi: int, blo: int, bhi: int) -> list[tuple[int, int]]:
    """The longest run, in order on both sides, of items that occur once in each range."""
    count_a, count_b = Counter(a[alo:ahi]), Counter(b[blo:bhi])
    where_b = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1 and count_a[b[j]] == 1}
    pairs = [(i, where_b[a[i]]) for i in range(alo, ahi) if a[i] in where_b and count_a[a[i]] == 1]
    # Longest increasing subsequence of the b positions (pairs are already in a's order).
    tails: list[int] = []  # tails[k]: b position ending the best run of length k + 1
    ends: list[int] = []  # index into pairs of that run's last pair
    back = [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        back[n] = ends[k - 1] if k else -1
        if k == len(tails):
            tails.append(j)
            ends.append(n)
        else:
            tails[k], ends[k] = j, n
    run, n = [], ends[-1] if ends else -1
    while n >= 0:
        run.append(pairs[n])
        n = back[n]
    return run[::-1]


def _merge(found: list[Opcode]) -> list[Opcode]:
    """Join neighbouring opcodes: runs of equal items, and runs of changes into one replace."""
    merged: list[list] = []
    for op, i1, i2, j1, j2 in found:
        if i1 == i2 and j1 == j2:
            continue
        kind = "equal" if op == "equal" else "change"
        if merged and merged[-1][0] == kind:
            merged[-1][2], merged[-1][4] = i2, j2
        else:
            merged.append([kind, i1, i2, j1, j2])
    result = []
    for kind, i1, i2, j1, j2 in merged:
        if kind == "change":
            kind = "replace" if i1 < i2 and j1 < j2 else "delete" if i1 < i2 else "insert"
        result.append((kind, i1, i2, j1, j2))
    return result


# -- rendered text cut into blocks ---------------------------------------------------


BLOCKS = {"h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "pre", "dt", "dd"}
CONTAINERS = {"ul", "ol", "dl", "table", "thead", "tbody", "blockquote", "hr"}
CELLS = {"td", "th"}
# A word, or a run of punctuation: "messages:" is two tokens, so a change next to a colon marks
# only what changed. Escaped entities (&amp;) stay whole.
WORD_RE = re.compile(r"(\s*)(&#?\w+;|\w+(?:['’-]\w+)*|[^\w\s&]+|&)")


class Token(NamedTuple):  # a tuple: cheap to make for each word of a long notice
    key: str  # what is compared: a word, or a tag as written
    space: str  # white space before it, kept outside any <ins>/<del> mark
    html: str  # the escaped word or the tag
    word: bool


@dataclass
class Block:
    kind: str  # h2…h6, p, li, tr, pre, dt, dd
    tokens: list[Token]

    @property
    def key(self) -> str:
        return self.kind + "\0" + " ".join(t.key for t in self.tokens)

    @property
    def words(self) -> list[str]:
        return [t.key for t in self.tokens if t.word and t.key[0].isalnum()]  # punctuation left out


class _Blocks(HTMLParser):
    """Cuts sanitised notice HTML into blocks of word and inline-tag tokens."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.current: Block | None = None
        self.space = ""

    def _flush(self) -> None:
        if self.current is not None and any(t.word for t in self.current.tokens):
            self.blocks.append(self.current)
        self.current, self.space = None, ""

    def _tag(self, html: str) -> None:
        if self.current is None:
            self.current = Block("p", [])
        self.current.tokens.append(Token(html, self.space, html, False))
        self.space = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCKS:
            # A paragraph inside a list item (a loose list) stays part of the item.
            if self.current is not None and not self.current.tokens and self.current.kind in ("li", "dt", "dd"):
                return
            self._flush()
            self.current = Block(tag, [])
        elif tag in CONTAINERS:
            self._flush()
        elif tag in CELLS:
            self._tag('<span class="diff-cell">')
        else:  # inline markup; ids are left out, since both sides of a change would repeat them
            kept = "".join(f' {name}="{escape(value or "")}"' for name, value in attrs if name in ("href", "title"))
            self._tag(f"<{tag}{kept}>" if tag != "a" else f'<a{kept} rel="noopener noreferrer">')

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._tag("<br>")
        else:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self.current is not None and tag == self.current.kind:
            self._flush()
        elif tag in CONTAINERS or tag in BLOCKS:
            self._flush()
        elif tag in CELLS:
            self._tag("</span>")
        elif tag != "br" and self.current is not None:
            self._tag(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        # Escaping never adds or removes white space, so the escaped words are the words.
        data = str(escape(data))
        words = WORD_RE.findall(data)
        if not words:
            self.space += data
            return
        if self.current is None:
            self.current = Block("p", [])
        words[0] = (self.space + words[0][0], words[0][1])
        self.current.tokens.extend([Token(word, space, word, True) for space, word in words])
        self.space = data[len(data.rstrip()):]


def blocks(html: str) -> list[Block]:
    parser = _Blocks()
    parser.feed(str(html))  # plain text: Markup would escape every piece joined to it
    parser.close()
    parser._flush()
    return parser.blocks


# -- the diff -------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: str  # same, added, removed (whole blocks); before, after (a changed block, words marked)
    html: Markup  # the block's rendered text; in before/after lines the changed words are in <del>/<ins>
    block: str = "p"  # h2…h6, p, li, tr, pre, dt, dd: how the line is shown


def _html(tokens: Sequence[Token]) -> Markup:
    return Markup("".join(t.space + t.html for t in tokens))


def _marked(tokens: Sequence[Token], changed: set[int], mark: str) -> Markup:
    """The tokens as HTML, each run of changed words inside one <mark>; tags are never wrapped."""
    out, open_ = [], False
    for n, token in enumerate(tokens):
        inside = n in changed and token.word
        if open_ and not inside:
            out.append(f"</{mark}>")
            open_ = False
        out.append(token.space)
        if inside and not open_:
            out.append(f"<{mark}>")
            open_ = True
        out.append(token.html)
    if open_:
        out.append(f"</{mark}>")
    return Markup("".join(out))


def _inline(old: Block, new: Block) -> tuple[DiffLine, DiffLine]:
    a, b = old.tokens, new.tokens
    removed: set[int] = set()
    added: set[int] = set()
    for op, i1, i2, j1, j2 in opcodes([t.key for t in a], [t.key for t in b]):
        if op != "equal":
            removed.update(range(i1, i2))
            added.update(range(j1, j2))
    return (DiffLine("before", _marked(a, removed, "del"), old.kind),
            DiffLine("after", _marked(b, added, "ins"), new.kind))


def _alike(old: Block, new: Block) -> bool:
    # Shared words regardless of order (difflib's quick_ratio): linear, and an upper bound of ratio().
    a, b = old.words, new.words
    shared = sum((Counter(a) & Counter(b)).values())
    return 2 * shared >= PAIR_RATIO * (len(a) + len(b))


def _changed(old_chunk: list[Block], new_chunk: list[Block]) -> list[DiffLine]:
    """Pair each old block with the next alike new block (a few ahead at most); the rest are
    whole blocks removed or added."""
    lines: list[DiffLine] = []
    j = 0
    for old in old_chunk:
        ahead = range(j, min(j + PAIR_WINDOW, len(new_chunk)))
        match = next((k for k in ahead if _alike(old, new_chunk[k])), None)
        if match is None:
            lines.append(DiffLine("removed", _html(old.tokens), old.kind))
            continue
        lines.extend(DiffLine("added", _html(new.tokens), new.kind) for new in new_chunk[j:match])
        lines.extend(_inline(old, new_chunk[match]))
        j = match + 1
    lines.extend(DiffLine("added", _html(new.tokens), new.kind) for new in new_chunk[j:])
    return lines


@functools.lru_cache(maxsize=32)
def diff(old_body: str, new_body: str, notices_root: str = "/") -> tuple[DiffLine, ...]:
    """Block-by-block diff of two Markdown bodies as rendered; changed blocks get a word-level diff.

    Cached: two published versions never change.
    """
    old, new = blocks(render(old_body, notices_root)), blocks(render(new_body, notices_root))
    lines: list[DiffLine] = []
    for op, i1, i2, j1, j2 in opcodes([blk.key for blk in old], [blk.key for blk in new]):
        if op == "equal":
            lines.extend(DiffLine("same", _html(blk.tokens), blk.kind) for blk in old[i1:i2])
        else:
            lines.extend(_changed(old[i1:i2], new[j1:j2]))
    return tuple(lines)
