"""Notice sources, publishing, reading and rendering, down to the edges mutation testing probes.

Written against issue 10 point 7: each test here kills mutants of keksi/notices.py that the
rest of the suite let live (`scripts/mutate notices`); tests/MUTANTS.md lists those left alive.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from keksi import notices
from keksi.store import open_store

from .conftest import LANGS, write_version

TODAY = date(2026, 11, 22)


@pytest.fixture
def store(make_app):
    app = make_app(publish=False)  # runs the migrations
    db = open_store(app.config["DATABASE"])
    yield db
    db.close()


@pytest.fixture
def root(tmp_path) -> Path:
    """An empty notices folder."""
    folder = tmp_path / "empty" / "notices"
    folder.mkdir(parents=True)
    return folder


def problems(root: Path, store, languages=LANGS, today=None) -> list[str]:
    return [str(p) for p in notices.check(root, languages, store, today).problems]


def source_text(title="Title", summary="Changed things.", material="false", body="Some text.\n") -> str:
    return f"---\ntitle: {title}\nsummary: {summary}\nmaterial: {material}\n---\n\n{body}"


# -- reading one source ----------------------------------------------------------------


def test_a_source_is_read_with_its_text_trimmed_and_its_exact_bytes_hashed(root, store):
    text = source_text(title="  Tietosuoja  ", summary="Two\n  lines  of   summary.", material="true",
                       body="\n\nBody text.\n\n\n")
    (root / "privacy").mkdir()
    (root / "privacy" / "2026-05-01.fi.md").write_text(text, encoding="utf-8")
    [source] = notices.check(root, ["fi"], store).sources
    assert source == notices.Source(
        path="notices/privacy/2026-05-01.fi.md", slug="privacy", version="2026-05-01", lang="fi",
        title="Tietosuoja", summary="Two lines of summary.", material=True, body="Body text.\n",
        source=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), body_line=10)  # after 2 blank lines
    assert notices.sha256(text) == source.sha256
    assert source.row() == {
        "slug": "privacy", "version": "2026-05-01", "lang": "fi", "title": "Tietosuoja",
        "summary": "Two lines of summary.", "material": 1, "body": "Body text.\n", "source": text,
        "sha256": source.sha256}


def test_a_file_outside_the_notices_folder_is_named_by_its_full_path(tmp_path):
    folder = tmp_path / "privacy"
    folder.mkdir()
    path = folder / "2026-05-01.fi.md"
    path.write_text("no front matter", encoding="utf-8")
    result = notices.read_source(path, tmp_path / "elsewhere" / "notices")
    assert result.path == str(path)


def test_each_kind_of_bad_source_is_told_exactly_what_to_fix(root, store):
    folder = root / "privacy"
    folder.mkdir()
    files = {
        "2026-02-30.fi.md": source_text(),
        "26-02-01.fi.md": source_text(),
        "2026-05-01.fi.md": "no front matter",
        "2026-05-02.fi.md": "---\ntitle: [unclosed\n---\nx",
        "2026-05-03.fi.md": "---\ntitle: '  '\nmaterial: maybe\nzeta: 1\nalpha: 2\n---\n  \n",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "2026-05-04.fi.md").write_bytes(b"---\ntitle: \xff\n")
    (root / "Bad_Slug").mkdir()
    (root / "Bad_Slug" / "2026-05-01.fi.md").write_text(source_text(), encoding="utf-8")
    found = problems(root, store, ["fi"])
    yaml_problem = next(p for p in found if "2026-05-02" in p)
    assert yaml_problem.startswith("notices/privacy/2026-05-02.fi.md: the front matter is not valid YAML: ")
    assert "\n" not in yaml_problem
    assert [p for p in found if p != yaml_problem] == [
        "notices/Bad_Slug/2026-05-01.fi.md: the folder name 'Bad_Slug' is not a valid notice slug "
        "(lower-case letters, digits and hyphens)",
        "notices/privacy/2026-02-30.fi.md: 2026-02-30 is not a real date (YYYY-MM-DD)",
        "notices/privacy/2026-05-01.fi.md: front matter is missing: start the file with a '---' block "
        "holding title, summary and material",
        "notices/privacy/2026-05-03.fi.md: front matter 'title' must be non-empty text; front matter "
        "'summary' must be non-empty text; front matter 'material' must be true or false; unknown front "
        "matter keys: alpha, zeta; the body is empty",
        "notices/privacy/2026-05-04.fi.md: the file is not UTF-8 text (byte 11)",
        "notices/privacy/26-02-01.fi.md: the file name must be <YYYY-MM-DD>.<lang>.md, for example "
        "2026-04-09.fi.md",
    ]


def test_a_source_may_be_512_kb_and_not_a_byte_more(root, store):
    folder = root / "privacy"
    folder.mkdir()
    head = source_text(body="")
    (folder / "2026-05-01.fi.md").write_text(head + "x" * (512 * 1024 - len(head)), encoding="utf-8")
    (folder / "2026-05-02.fi.md").write_text(head + "x" * (512 * 1024 + 1 - len(head)), encoding="utf-8")
    result = notices.check(root, ["fi"], store)
    assert [s.version for s in result.sources] == ["2026-05-01"]
    assert [str(p) for p in result.problems] == [
        "notices/privacy/2026-05-02.fi.md: the file is larger than 512 KB"]


def test_a_version_written_in_the_admin_is_the_file_publish_would_read():
    source = notices.compose_source("privacy", "2026-12-01", "fi", "  Otsikko ", "Yksi\n  kaksi", True,
                                    "Rivi 1\r\nRivi 2\r\n\r\n")
    text = "---\ntitle: Otsikko\nsummary: Yksi kaksi\nmaterial: true\n---\n\nRivi 1\nRivi 2\n"
    assert source == notices.Source(
        path="privacy/2026-12-01.fi.md", slug="privacy", version="2026-12-01", lang="fi", title="Otsikko",
        summary="Yksi kaksi", material=True, body="Rivi 1\nRivi 2\n", source=text, sha256=notices.sha256(text),
        body_line=7)
    bad = notices.compose_source("privacy", "2026-12-01", "fi", "T", "S", False, "   ")
    assert str(bad) == "privacy/2026-12-01.fi.md: the body is empty"


# -- checking and publishing a folder ------------------------------------------------------


def test_a_missing_folder_is_a_problem(tmp_path, store):
    result = notices.check(tmp_path / "nowhere", LANGS, store)
    assert (result.sources, result.unpublished) == ([], [])
    assert [str(p) for p in result.problems] == [f"{tmp_path / 'nowhere'}: the notices folder does not exist"]


def test_hidden_files_and_folders_inside_a_notice_are_skipped(root, store):
    write_version(root, "privacy", "2026-05-01")
    (root / "privacy" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / "privacy" / "images").mkdir()
    (root / "privacy" / ".2026-06-01.fi.md.swp").write_text("x", encoding="utf-8")
    result = notices.check(root, LANGS, store)
    assert result.problems == []
    assert [(s.version, s.lang) for s in result.sources] == [("2026-05-01", lang) for lang in LANGS]


def test_a_version_with_one_language_that_fails_to_parse_is_not_published(root, store):
    write_version(root, "privacy", "2026-05-01")
    (root / "privacy" / "2026-05-01.sv.md").write_text("no front matter", encoding="utf-8")
    write_version(root, "cookies", "2026-05-01")
    result = notices.check(root, LANGS, store)
    assert [str(p) for p in result.problems] == [
        "notices/privacy/2026-05-01.sv.md: front matter is missing: start the file with a '---' block "
        "holding title, summary and material"], "the broken file is named once, not also as missing"
    assert {s.slug for s in result.sources} == {"cookies"}
    published, _ = notices.publish(root, LANGS, store, "aino")
    assert [(s.slug, s.lang) for s in published] == [("cookies", lang) for lang in LANGS]
    assert store.notice_version("privacy", "2026-05-01", "fi") is None


def test_an_unconfigured_language_is_named_with_the_configured_ones(root, store):
    write_version(root, "privacy", "2026-05-01", langs=("fi", "de"))
    assert problems(root, store, ["fi"]) == [
        "notices/privacy/2026-05-01.de.md: language 'de' is not one of the configured languages (fi)"]


def test_a_version_is_published_in_the_configured_order_of_languages(root, store):
    write_version(root, "privacy", "2026-05-01")
    published, found = notices.publish(root, ["sv", "en", "fi"], store, "aino")
    assert found == [] and [s.lang for s in published] == ["sv", "en", "fi"]
    again, _ = notices.publish(root, ["sv", "en", "fi"], store, "aino")
    assert again == [], "published versions are not published twice"
    assert [s.lang for s in notices.check(root, ["sv", "en", "fi"], store).sources] == ["sv", "en", "fi"]


def test_a_published_version_stays_when_a_language_is_added(root, store):
    write_version(root, "privacy", "2026-05-01", langs=("fi", "sv"))
    notices.publish(root, ["fi", "sv"], store, "aino")
    result = notices.check(root, LANGS, store)
    assert result.problems == [] and result.unpublished == []
    assert [s.lang for s in result.sources] == ["fi", "sv"]


def test_an_edited_published_file_is_refused_with_its_publication_date(root, store):
    write_version(root, "privacy", "2026-05-01")
    notices.publish(root, LANGS, store, "aino")
    published_on = store.notice_version("privacy", "2026-05-01", "sv")["published_at"][:10]
    write_version(root, "privacy", "2026-05-01", body="Edited.\n", langs=("sv",))
    result = notices.check(root, LANGS, store)
    assert [str(p) for p in result.problems] == [
        f"notices/privacy/2026-05-01.sv.md: edited after it was published on {published_on}: published "
        "versions are immutable, so put the correction in a new version with a new date"]
    assert result.sources == []


def test_a_version_cannot_be_dated_before_the_one_in_effect_today(root, store):
    write_version(root, "privacy", "2026-05-01")
    write_version(root, "privacy", TODAY.isoformat())
    write_version(root, "privacy", "2027-01-01")  # upcoming: not yet in effect
    notices.publish(root, LANGS, store, "aino")
    write_version(root, "privacy", "2026-06-01")
    write_version(root, "privacy", "2026-12-01")
    write_version(root, "cookies", "2026-01-01")  # another notice: nothing of its own in effect
    assert problems(root, store, today=TODAY) == [
        f"notices/privacy/2026-06-01.en.md: version 2026-06-01 is dated before {TODAY}, the version in "
        "effect: a new version takes effect today or later"]
    assert problems(root, store) == [], "without today, history is not judged"


def test_a_new_language_for_the_version_in_effect_is_not_dated_before_it(root, store):
    write_version(root, "privacy", TODAY.isoformat(), langs=("fi",))
    notices.publish(root, ["fi"], store, "aino")
    write_version(root, "privacy", TODAY.isoformat(), langs=("sv",))
    assert problems(root, store, ["sv"], today=TODAY) == [
        f"notices/privacy/{TODAY}.fi.md: language 'fi' is not one of the configured languages (sv)"]


def test_a_version_must_be_material_in_every_language_or_in_none(root, store):
    write_version(root, "privacy", "2026-05-01", material=True, langs=("fi", "sv"))
    write_version(root, "privacy", "2026-05-01", material=False, langs=("en",))
    result = notices.check(root, LANGS, store)
    assert [str(p) for p in result.problems] == [
        "notices/privacy/2026-05-01.en.md: version 2026-05-01 of 'privacy' is marked material in some "
        "languages and not others"]
    assert result.sources == []


def test_problem_reads_as_path_and_message():
    assert str(notices.Problem("notices/a/b.md", "it is wrong")) == "notices/a/b.md: it is wrong"


# -- reading published versions -------------------------------------------------------------


def test_a_notice_knows_its_current_upcoming_and_latest_material_versions(root, store):
    write_version(root, "privacy", "2026-01-01", material=True)
    write_version(root, "privacy", "2026-05-01", material=False, langs=("fi", "en"))
    write_version(root, "privacy", TODAY.isoformat(), material=False, langs=("fi", "en"))
    write_version(root, "privacy", "2027-01-01", material=True)
    notices.publish(root, ["fi", "en", "sv"], store, "aino")  # 2026-05-01 and today lack sv: not published
    notices.publish(root, ["fi", "en"], store, "aino")
    notice = notices.load_notice(store, "privacy", "en", TODAY)
    assert [v.version for v in notice.versions] == ["2026-01-01", "2026-05-01", TODAY.isoformat(), "2027-01-01"]
    assert [v.version for v in notice.in_effect] == ["2026-01-01", "2026-05-01", TODAY.isoformat()]
    assert notice.current.version == TODAY.isoformat()
    assert [v.version for v in notice.upcoming] == ["2027-01-01"]
    assert notice.latest_material.version == "2026-01-01"
    assert notice.languages == {"2026-01-01": ["en", "fi", "sv"], "2026-05-01": ["en", "fi"],
                                TODAY.isoformat(): ["en", "fi"], "2027-01-01": ["en", "fi", "sv"]}
    first = notice.get("2026-01-01")
    assert first.effective == date(2026, 1, 1) and first.material is True and first.lang == "en"
    assert first.title == "Title en" and first.summary == "Changed things. (en)"
    assert len(first.sha256) == 64 and first.published_at
    assert notice.previous(first) is None
    assert notice.previous(notice.get("2026-05-01")) is first
    assert notice.get("2026-02-02") is None
    assert notices.load_notice(store, "privacy", "de", TODAY) is None


def test_a_notice_before_any_version_takes_effect(root, store):
    write_version(root, "privacy", "2027-01-01", material=True)
    notices.publish(root, LANGS, store, "aino")
    notice = notices.load_notice(store, "privacy", "fi", TODAY)
    assert notice.current is None and notice.latest_material is None and notice.in_effect == []
    assert notices.load_notices(store, "fi", TODAY) == [], "the index lists notices in effect only"
    assert [n.current.version for n in notices.load_notices(store, "fi", date(2027, 1, 1))] == ["2027-01-01"]


def test_the_index_lists_each_notice_with_its_versions_in_one_language(root, store):
    write_version(root, "privacy", "2026-01-01")
    write_version(root, "privacy", "2026-05-01")
    write_version(root, "cookies", "2026-03-01")
    notices.publish(root, LANGS, store, "aino")
    listed = {n.slug: n for n in notices.load_notices(store, "sv", TODAY)}
    assert set(listed) == {"privacy", "cookies"}
    assert [v.version for v in listed["privacy"].versions] == ["2026-01-01", "2026-05-01"]
    assert {v.lang for n in listed.values() for v in n.versions} == {"sv"}
    assert listed["privacy"].today == TODAY and listed["privacy"].lang == "sv"


# -- rendering ---------------------------------------------------------------------------------


def test_every_allowed_tag_and_attribute_survives_rendering():
    kept = ["abbr", "b", "blockquote", "code", "dd", "del", "dl", "dt", "em", "i", "ins", "li", "ol", "p", "pre",
            "strong", "sub", "sup", "ul", "h3", "h4", "h5", "h6"]
    body = "\n\n".join(f"<{tag}>{tag} text</{tag}>" for tag in kept)
    body += ('\n\n<p>a<br>b</p>\n\n<hr>\n\n<p><a href="https://x.fi" title="T">l</a> '
             '<abbr title="Abbreviation">ab</abbr></p>\n\n'
             '<table><thead><tr><th align="left">h</th></tr></thead>'
             '<tbody><tr><td align="right">d</td></tr></tbody></table>\n\n'
             '<h2 id="two">2</h2>\n\n<h3 id="three">3</h3>\n\n<h4 id="four">4</h4>\n\n<h5 id="five">5</h5>\n')
    html = str(notices.render(body))
    for tag in kept:
        assert f"<{tag}>{tag} text</{tag}>" in html, tag
    for fragment in ("<br>", "<hr>", 'href="https://x.fi"', 'title="T"', 'title="Abbreviation"',
                     '<th align="left">', '<td align="right">', '<table tabindex="0">', "<thead>", "<tbody>", "<tr>",
                     'id="two"', 'id="three"', 'id="four"', "<h5>5</h5>"):
        assert fragment in html, fragment


def test_markdown_structure_headings_lists_and_tables():
    html = str(notices.render("# Top\n\n## Second part\n\n1. one\n2. two\n\n* a\n* b\n\n"
                              "| x | y |\n|---|---|\n| 1 | 2 |\n"))
    assert '<h2 id="top">Top</h2>' in html and '<h2 id="second-part">Second part</h2>' in html
    assert "<h1" not in html and "</h1>" not in html and "¶" not in html
    assert "<ol>\n<li>one</li>" in html and "<ul>\n<li>a</li>" in html
    assert "<th>x</th>" in html and "<td>2</td>" in html


def test_links_to_other_notices_resolve_and_others_keep_their_scheme():
    html = str(notices.render("[a](../cookies#osa) [b](./cookies/) [c](cookies) [d](tel:+3589123) "
                              "[e](http://x.fi) [f](mailto:a@b.fi) [g](ftp://x.fi) [h](../Cookies)", "/fi/"))
    for href in ("/fi/cookies#osa", "/fi/cookies", "tel:+3589123", "http://x.fi", "mailto:a@b.fi"):
        assert f'href="{href}" rel="noopener noreferrer"' in html, href
    assert html.count('href="/fi/cookies"') == 2
    assert "ftp:" not in html and ">g</a>" in html
    assert 'href="../Cookies"' in html, "not a slug: left as written"
    assert 'href="/cookies"' in str(notices.render("[c](cookies)")), "the root is / unless given"


def test_what_rendering_would_remove_is_named_once_each():
    body = ('<h1 id="x">T</h1>\n\n<script>x</script>\n\n<p onclick="y" style="z" title="t">p</p>\n\n'
            '<script>x</script>\n\n<abbr title="ok">a</abbr>\n\n'
            "[a](javascript:alert(1)) [b](https://ok.fi) [c](../cookies) [a](javascript:alert(1))\n")
    assert notices.removed_markup(body) == ["<script>", "onclick", "style", "title", "javascript:alert(1)"]
    assert notices.removed_markup("# Title\n\n[x](https://ok.fi)\n\n| a |\n|---|\n| b |\n") == []
