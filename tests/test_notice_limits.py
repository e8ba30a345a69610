"""Markdown rendering within limits: what is too deep, too slow or has images is refused by name
and line in `notices check`, `notices publish` and the admin's preview, and never published."""

from __future__ import annotations

import pytest

from keksi import notices
from keksi.store import open_store

from .conftest import BOTH, csrf, signed_in, write_version
from .test_admin import version_form

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

# (body, the line of the body at fault, what the message says). Each of these took seconds or
# raised RecursionError in Python-Markdown before it was refused.
HOSTILE = {
    "brackets": ("Intro.\n\nMore.\n" + "[" * 8000 + "\n", 4, "'[' or '(' nested more than 16 deep"),
    "parentheses": ("Intro.\n\n" + "[x](" * 2000 + "\n", 3, "'[' or '(' nested more than 16 deep"),
    "emphasis": ("Intro.\n\n" + "*a _b " * 800 + "x" + " b_ a*" * 800 + "\n", 3, "emphasis (* or _) nested"),
    "underscores": ("_" * 2000 + "x" + "_" * 2000 + "\n", 1, "emphasis (* or _) nested"),
    "quotes": ("Intro.\n\n" + "> " * 1000 + "x\n", 3, "block quotes (>) nested"),
    "lists": ("".join("  " * i + "- x\n" for i in range(200)), 34, "lists or indentation nested"),
    "image": ("Intro.\n\nOur logo: ![Tiimityö](https://example.fi/logo.png).\n", 3,
              "an image (![Tiimityö](https://example.fi/logo.png)) is not shown"),
}
FILE_LINE = 7  # front matter (5 lines) and a blank line come first in write_version's files


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_check_names_the_file_and_line_and_publish_leaves_the_version_out(make_app, notices_dir, kind):
    body, line, message = HOSTILE[kind]
    write_version(notices_dir, "privacy", "2026-12-01", body="Fine text.\n", langs=("sv", "en"))
    write_version(notices_dir, "privacy", "2026-12-01", body=body, langs=("fi",))
    app = make_app(publish=False)
    runner = app.test_cli_runner()
    checked = runner.invoke(args=["notices", "check"])
    assert checked.exit_code == 1
    assert f"notices/privacy/2026-12-01.fi.md:{FILE_LINE + line - 1}: {message}" in checked.output
    assert "1 problems." in checked.output
    published = runner.invoke(args=["notices", "publish"])
    assert published.exit_code == 1 and "published privacy 2025-03-01" in published.output
    assert "2026-12-01" not in published.output.replace("2026-12-01.fi.md", "")
    store = open_store(app.config["DATABASE"])
    try:
        assert not [v for v in store.notice_versions() if v["version"] == "2026-12-01"], "no language of it"
    finally:
        store.close()
    client = app.test_client()
    assert client.get("/en/privacy/2026-12-01").status_code == 404
    assert client.get("/en/privacy").status_code == 200


def test_code_and_ordinary_text_are_not_refused():
    body = ("## Terms\n\nUse `[[[[[[[[[[[[[[[[[[[[` or snake_case_names_like_this and a * b * c.\n\n"
            "- one\n  - two (with (nested) parentheses)\n\n> quoted *and **strong***\n\n"
            "[a link](https://example.fi) and ***bold italic*** and **[bold link](../cookies)**.\n")
    assert notices.check_rendering([body]) == [[]]


def test_a_brace_left_open_in_one_paragraph_is_closed_by_the_blank_line():
    body = "".join(f"Paragraph {i} [left open\n\n" for i in range(100))
    assert notices.check_rendering([body]) == [[]]


def test_a_text_that_takes_too_long_is_refused_at_its_slow_paragraph():
    body = "Intro.\n\n" + "Ordinary words, " * 20_000 + "\n"
    [[problem]] = notices.check_rendering([body], seconds=0)
    assert (problem.code, problem.line) == ("slow", 3)
    assert notices.check_rendering([body]) == [[]], "within the real limit it renders"


def test_check_refuses_a_version_that_takes_longer_than_the_limit(make_app, notices_dir, monkeypatch):
    write_version(notices_dir, "privacy", "2026-12-01", body="Intro.\n\n" + "Long text, " * 20_000 + "\n")
    app = make_app(publish=False)
    monkeypatch.setattr(notices, "RENDER_SECONDS", 0)
    result = app.test_cli_runner().invoke(args=["notices", "check"])
    assert result.exit_code == 1
    assert ("notices/privacy/2026-12-01.fi.md:9: the Markdown from this line on takes longer than 0 seconds "
            "to render") in result.output


def test_the_child_reports_recursion_at_the_paragraph_that_overflows():
    # The scan refuses this shape first; past it, the renderer's own overflow is still caught.
    body = "Fine.\n\n" + "_" * 3000 + "x" + "_" * 3000 + "\n"
    problems = list(notices._render_bounded(["Fine.\n", body], seconds=10))
    assert problems == [(1, notices.RenderProblem(3, "recursion"))]


def test_the_sample_notices_render_within_the_limits(notices_dir):
    bodies = [notices.read_source(path, notices_dir).body for path in sorted(notices_dir.glob("*/*.md"))]
    assert bodies and notices.check_rendering(bodies) == [[]] * len(bodies)


@pytest.mark.parametrize("lang, message", [
    ("en", "Line 4: “[” or “(” is nested more than 16 deep, or left open."),
    ("fi", "Rivi 4: "),
])
def test_the_admin_preview_refuses_a_text_too_deep_to_render_in_the_admins_language(make_app, lang, message):
    app = make_app()
    client = signed_in(app, "legal@example.fi", "legal", lang=lang)
    data = version_form(csrf(client, "/admin/notices/privacy/new"), body="Intro.\n\nMore.\n" + "[" * 8000)
    response = client.post("/admin/notices/privacy/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and message in html
    assert 'id="preview-heading"' not in html


def test_the_admin_refuses_an_image_naming_it(make_app):
    app = make_app()
    client = signed_in(app, "legal@example.fi", "legal")
    data = version_form(csrf(client, "/admin/notices/privacy/new"), body="Intro.\n\n![Logo](/logo.png)\n")
    response = client.post("/admin/notices/privacy/new", data=dict(data, step="publish"))
    assert response.status_code == 400
    assert "Line 3: notices show no images, so ![Logo](/logo.png) would be left out." in response.get_data(as_text=True)
    store = open_store(app.config["DATABASE"])
    try:
        assert not [v for v in store.notice_versions() if v["version"] == "2027-01-15"]
    finally:
        store.close()
