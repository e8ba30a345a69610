"""Notice sources: validation, publishing, immutability and rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from keksi import notices
from keksi.store import open_store

from .conftest import SAMPLE_NOTICES, Refused, raw_sql

LANGS = ["fi", "sv", "en"]


def write_version(root: Path, slug: str, version: str, material: bool = False,
                  body: str = "Some text.\n", langs=LANGS, title: str = "Title") -> None:
    folder = root / slug
    folder.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        (folder / f"{version}.{lang}.md").write_text(
            f"---\ntitle: {title} {lang}\nsummary: Changed things.\nmaterial: {str(material).lower()}\n---\n\n{body}",
            encoding="utf-8")


@pytest.fixture
def store(tmp_path, make_app):
    app = make_app(publish=False)  # runs the migrations
    db = open_store(app.config["DATABASE"])
    yield db
    db.close()


def test_sample_content_is_valid_and_complete(store):
    result = notices.check(SAMPLE_NOTICES, LANGS, store)
    assert result.problems == []
    versions = {(s.slug, s.version) for s in result.sources}
    assert {"privacy", "cookies"} <= {slug for slug, _ in versions}
    privacy = sorted(v for s, v in versions if s == "privacy")
    assert len(privacy) >= 2
    latest = [s for s in result.sources if s.slug == "privacy" and s.version == privacy[-1]]
    assert {s.lang for s in latest} == set(LANGS)
    assert all(s.material for s in latest), "the later privacy version is the material one"


def test_cookie_notice_lists_each_category_and_cookie(store):
    result = notices.check(SAMPLE_NOTICES, LANGS, store)
    cookies = [s for s in result.sources if s.slug == "cookies"]
    for source in cookies:
        html = notices.render(source.body)
        assert html.count('<table tabindex="0">') == 4, source.path
        for name in ("keksi_consent", "tt_lang", "_pk_id.*", "_gcl_au", "li_fat_id"):
            assert name in html, (source.path, name)


def test_publish_stores_immutable_copies_once(store, notices_dir):
    published, problems = notices.publish(notices_dir, LANGS, store, "aino")
    assert problems == []
    assert len(published) == len(list(notices_dir.rglob("*.md")))
    row = store.notice_version("privacy", "2026-04-09", "sv")
    source = (notices_dir / "privacy" / "2026-04-09.sv.md").read_text(encoding="utf-8")
    assert row["source"] == source
    assert row["sha256"] == notices.sha256(source)
    assert row["published_by"] == "aino" and row["published_at"]
    again, problems = notices.publish(notices_dir, LANGS, store, "aino")
    assert again == [] and problems == []
    log = store.audit_log(limit=1000)
    assert len(log) == len(published)
    assert log[0]["action"] == "notice.publish" and log[0]["detail"]["sha256"]


def test_published_rows_refuse_update(store, notices_dir):
    notices.publish(notices_dir, LANGS, store, "aino")
    with pytest.raises(Refused, match="immutable"):
        raw_sql(store, "UPDATE notice_versions SET body = 'x' WHERE slug = 'privacy'")
    with pytest.raises(Refused, match="append-only"):
        raw_sql(store, "UPDATE audit_log SET actor = 'x'")


def test_edited_published_version_is_refused_by_name(store, notices_dir):
    notices.publish(notices_dir, LANGS, store, "aino")
    path = notices_dir / "privacy" / "2025-03-01.en.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nA sneaky edit.\n", encoding="utf-8")
    result = notices.check(notices_dir, LANGS, store)
    assert [p.path for p in result.problems] == ["notices/privacy/2025-03-01.en.md"]
    assert "edited after it was published" in result.problems[0].message
    assert "new version" in result.problems[0].message
    # the stored copy is unchanged
    assert "sneaky" not in store.notice_version("privacy", "2025-03-01", "en")["source"]


def test_missing_language_blocks_the_whole_version(store, notices_dir):
    write_version(notices_dir, "privacy", "2027-01-01", langs=["fi", "en"])
    result = notices.check(notices_dir, LANGS, store)
    assert [str(p) for p in result.problems] == [
        "notices/privacy/2027-01-01.sv.md: missing: version 2027-01-01 of 'privacy' has no sv text; "
        "a version is published only when it exists in every configured language"]
    write_version(notices_dir, "cookies", "2027-01-01", langs=["fi"])  # each missing file is named
    assert [p.path for p in notices.check(notices_dir, LANGS, store).problems] == [
        "notices/cookies/2027-01-01.sv.md", "notices/cookies/2027-01-01.en.md",
        "notices/privacy/2027-01-01.sv.md"]
    published, _ = notices.publish(notices_dir, LANGS, store, "aino")
    assert not [s for s in published if s.version == "2027-01-01"]
    assert store.notice_version("privacy", "2027-01-01", "fi") is None


@pytest.mark.parametrize("name, content, message", [
    ("2027-02-30.fi.md", "---\ntitle: T\nsummary: S\nmaterial: false\n---\nx", "not a real date"),
    ("27-02-01.fi.md", "---\ntitle: T\nsummary: S\nmaterial: false\n---\nx", "file name must be"),
    ("2027-02-01.fi.md", "no front matter here", "front matter is missing"),
    ("2027-02-01.fi.md", "---\ntitle: [unclosed\n---\nx", "not valid YAML"),
    ("2027-02-01.fi.md", "---\ntitle: T\nsummary: S\nmaterial: maybe\n---\nx", "'material' must be true or false"),
    ("2027-02-01.fi.md", "---\nsummary: S\nmaterial: true\n---\nx", "'title' must be non-empty"),
    ("2027-02-01.fi.md", "---\ntitle: T\nsummary: S\nmaterial: true\nauthor: me\n---\nx", "unknown front matter keys: author"),
    ("2027-02-01.fi.md", "---\ntitle: T\nsummary: S\nmaterial: true\n---\n   \n", "the body is empty"),
    ("2027-02-01.de.md", "---\ntitle: T\nsummary: S\nmaterial: true\n---\nx", "not one of the configured languages"),
])
def test_bad_sources_are_named(store, notices_dir, name, content, message):
    (notices_dir / "privacy" / name).write_text(content, encoding="utf-8")
    problems = notices.check(notices_dir, LANGS, store).problems
    assert len(problems) == 1, problems
    assert problems[0].path == f"notices/privacy/{name}"
    assert message in problems[0].message


def test_non_utf8_and_bad_slug(store, notices_dir):
    (notices_dir / "privacy" / "2027-02-01.fi.md").write_bytes(b"---\ntitle: \xff\n---\n")
    (notices_dir / "Bad_Slug").mkdir()
    (notices_dir / "Bad_Slug" / "2027-02-01.fi.md").write_text("x", encoding="utf-8")
    messages = {p.path: p.message for p in notices.check(notices_dir, LANGS, store).problems}
    assert "not UTF-8" in messages["notices/privacy/2027-02-01.fi.md"]
    assert "not a valid notice slug" in messages["notices/Bad_Slug/2027-02-01.fi.md"]


HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href="jav&#x61;script:alert(1)">click</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](  javascript:alert(1)  )",
    "<javascript:alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<svg onload="alert(1)"><script>alert(1)</script></svg>',
    '<div style="background:url(javascript:alert(1))" onclick="alert(1)">x</div>',
    '<p onmouseover="alert(1)">hover</p>',
    '<object data="data:text/html,<script>alert(1)</script>"></object>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<form action="https://evil.example"><input name=x><button>go</button></form>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "![x](javascript:alert(1))",
    '<a href="vbscript:msgbox(1)">x</a>',
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_markdown_never_reaches_the_page(payload):
    html = str(notices.render(f"Intro.\n\n{payload}\n\nOutro.\n"))
    lowered = html.lower()
    for forbidden in ("<script", "<iframe", "<object", "<svg", "<form", "<img", "<style", "<base",
                      "<meta", "javascript:", "vbscript:", "data:text", " on", "style="):
        if forbidden == " on":
            assert not any(f" {attr}=" in lowered for attr in ("onerror", "onload", "onclick", "onmouseover")), html
        else:
            assert forbidden not in lowered, (forbidden, html)
    assert "Outro." in html


def test_render_keeps_structure_and_resolves_notice_links():
    html = str(notices.render(
        "# Heading\n\n## Part\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[cookies](../cookies) "
        "[out](https://tietosuoja.fi/) [mail](mailto:dpo@example.org)\n", "/sv/"))
    assert "<h2" in html and "<h1" not in html
    assert '<table tabindex="0">' in html and "<td>1</td>" in html
    assert 'href="/sv/cookies"' in html
    assert 'href="https://tietosuoja.fi/"' in html and 'rel="noopener noreferrer"' in html
    assert 'href="mailto:dpo@example.org"' in html


def test_a_new_version_dated_before_the_one_in_effect_is_refused(store, notices_dir):
    from datetime import date
    notices.publish(notices_dir, LANGS, store, "aino")
    write_version(notices_dir, "privacy", "2026-01-01")
    problems = notices.check(notices_dir, LANGS, store, today=date(2026, 11, 22)).problems
    assert len(problems) == 1 and "dated before 2026-04-09, the version in effect" in problems[0].message
    published, _ = notices.publish(notices_dir, LANGS, store, "aino", today=date(2026, 11, 22))
    assert published == []
    # a fresh database may still take the whole history at once
    assert notices.check(SAMPLE_NOTICES, LANGS, store, today=date(2026, 11, 22)).problems == []
