"""Diffs between notice versions: rendered text a person reads, faithful, and bounded work for any input."""

from __future__ import annotations

import difflib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keksi import diffs

from .conftest import write_version
from .diff_cases import HOSTILE


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def _side(lines, kinds, tag) -> list[str]:
    """The words one side of a diff shows, marks removed: what the reader sees of that version."""
    words = []
    for line in lines:
        if line.kind in kinds:
            words += _text(str(line.html)).split()
    return words


def test_diff_marks_additions_removals_and_changed_words():
    old = "Same line.\n\nWe keep data for 24 months.\n\nGone line.\n"
    new = "Same line.\n\nWe keep data for 36 months.\n\nNew line here.\n"
    lines = diffs.diff(old, new)
    assert [line.kind for line in lines] == ["same", "before", "after", "removed", "added"]
    assert "<del>24</del>" in lines[1].html and "<ins>36</ins>" in lines[2].html
    assert lines[3].html == "Gone line." and lines[4].html == "New line here."


def test_diff_escapes_markup():
    lines = diffs.diff("a\n", "<script>alert(1)</script> &lt;b&gt;\n")
    assert all("<script>" not in line.html and "<b>" not in line.html for line in lines)


def test_diff_shows_rendered_text_never_markdown_syntax():
    old = ("## 1. Who we are\n\nWe are **Tiimityö Oy**.\n\n- Newsletter\n- Orders\n\n"
           "Write to [our office](https://example.fi/contact).\n\n| Cookie | Lasts |\n|---|---|\n| _ga | 13 months |\n")
    new = ("## 1. Who we are now\n\nWe are **Tiimityö Oy** and *partners*.\n\n- Newsletter\n- Orders\n"
           "- Customer feedback surveys\n\nWrite to [our DPO](https://example.fi/dpo).\n\n"
           "| Cookie | Lasts |\n|---|---|\n| _ga | 24 months |\n")
    lines = diffs.diff(old, new)
    html = "".join(str(line.html) for line in lines)
    for syntax in ("##", "**", "](", "|---", "- Newsletter", "*partners*"):
        assert syntax not in html
    by_kind = {(line.kind, line.block): str(line.html) for line in lines}
    assert by_kind[("after", "h2")] == "1. Who we are <ins>now</ins>"
    assert "<strong>Tiimityö Oy</strong> <ins>and</ins> <em><ins>partners</ins></em>" in by_kind[("after", "p")] \
        or "<ins>and</ins> <em><ins>partners</ins></em>" in html
    assert ("added", "li") in by_kind and by_kind[("added", "li")] == "Customer feedback surveys"
    assert '<a href="https://example.fi/dpo" rel="noopener noreferrer">our <ins>DPO</ins></a>' in html
    assert '<span class="diff-cell"><ins>24</ins> months</span>' in by_kind[("after", "tr")]


def test_diff_lines_are_valid_html_without_repeated_ids():
    old, new = "## Title\n\nText.\n", "## Title changed\n\nText.\n"
    html = "".join(str(line.html) for line in diffs.diff(old, new))
    assert "id=" not in html  # the heading's anchor id would stand twice, before and after


def test_a_published_diff_is_computed_once():
    old, new = "One.\n", "Two.\n"
    assert diffs.diff(old, new) is diffs.diff(old, new)


# -- bounded work: the hostile cases (tests/diff_cases.py, which bench/diff.py measures too) ------


@pytest.mark.parametrize("case", HOSTILE)
def test_no_comparison_is_larger_than_the_limit(case, monkeypatch):
    """difflib's matcher is about quadratic: each call it gets is small, whatever the input."""
    old, new = HOSTILE[case]()
    sizes = []
    real = difflib.SequenceMatcher

    class Recording(real):
        def set_seqs(self, a, b):
            sizes.append(len(a) * len(b))
            super().set_seqs(a, b)

    monkeypatch.setattr(diffs.difflib, "SequenceMatcher", Recording)
    lines = diffs.diff.__wrapped__(old, new)
    assert sizes and max(sizes) <= diffs.EXACT_LIMIT or all(s == 0 for s in sizes)
    # and the diff still tells the whole truth: each side reads as its version
    assert _side(lines, ("same", "removed", "before"), "del") == old.split()
    assert _side(lines, ("same", "added", "after"), "ins") == new.split()


# -- the matcher is exact: it turns one sequence into the other ---------------------


def _apply(a, b, ops):
    out = []
    for op, i1, i2, j1, j2 in ops:
        if op == "equal":
            assert a[i1:i2] == b[j1:j2]
        out.extend(b[j1:j2])
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abcdefg"), max_size=80), st.lists(st.sampled_from("abcdefg"), max_size=80),
       st.sampled_from([0, 4, 40, 40_000]))
def test_opcodes_turn_one_sequence_into_the_other(a, b, limit):
    original = diffs.EXACT_LIMIT
    diffs.EXACT_LIMIT = limit  # small limits force the anchored path on small inputs
    try:
        ops = diffs.opcodes(a, b)
    finally:
        diffs.EXACT_LIMIT = original
    assert _apply(a, b, ops) == b
    # the opcodes cover both sequences, in order, without gaps
    assert [(o[1], o[3]) for o in ops[:1]] in ([(0, 0)], [])
    for left, right in zip(ops, ops[1:]):
        assert (left[2], left[4]) == (right[1], right[3]) and left[0] != right[0] or left[0] != "equal"
    if ops:
        assert (ops[-1][2], ops[-1][4]) == (len(a), len(b))


def test_anchors_keep_the_unchanged_text_of_long_texts_equal(monkeypatch):
    monkeypatch.setattr(diffs, "EXACT_LIMIT", 100)
    a = [f"w{i}" for i in range(200)]
    b = a[:50] + ["new"] + a[50:150] + a[151:]
    ops = diffs.opcodes(a, b)
    assert [op[0] for op in ops] == ["equal", "insert", "equal", "delete", "equal"]


# -- the public page --------------------------------------------------------------


def test_public_diff_page_shows_rendered_headings_and_list_items(make_app, notices_dir):
    write_version(notices_dir, "privacy", "2026-12-02", material=True,
                  body="## 1. Controller\n\nTiimityö Oy.\n\n## 2. Purposes\n\n- Orders\n- **Customer feedback surveys**\n")
    app = make_app()
    page = app.test_client().get("/en/privacy/diff/2026-04-09/2026-12-02")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    diff_list = html[html.index('<ol class="diff"'):html.index("</ol>", html.index('<ol class="diff"'))]
    assert "##" not in diff_list and "**" not in diff_list
    assert 'class="diff-added diff-li"' in diff_list and "<strong>Customer feedback surveys</strong>" in diff_list
    assert 'class="diff-added diff-h2"' in diff_list or 'diff-changed diff-h2"' in diff_list
