"""Publishing from the files with `flask notices`: no silent undo by a later version, a reason in
the audit log, and `notices export` writing the admin's versions back as identical files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from keksi import notices
from keksi.store import open_store

from .conftest import BOTH, LANGS, add_user, csrf, sign_in
from .test_admin import publish

BACKENDS = BOTH

SURVEYS = "- **Customer feedback surveys** – consent (Art. 6(1)(a))."
ANALYTICS = "- **Product analytics**, to learn which features are used and where users get stuck – consent (Art. 6(1)(a))."


def body_of(notices_dir: Path, version: str, lang: str) -> tuple[str, str]:
    """The front matter and the body of a sample version's file."""
    text = (notices_dir / "privacy" / f"{version}.{lang}.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    return front, body


def write_from(notices_dir: Path, base: str, version: str, change, summary: str) -> None:
    """A new privacy version in every language, written from `base`'s text with `change` applied."""
    for lang in LANGS:
        front, body = body_of(notices_dir, base, lang)
        title = next(line for line in front.splitlines() if line.startswith("title:"))
        (notices_dir / "privacy" / f"{version}.{lang}.md").write_text(
            f"---\n{title}\nsummary: {summary}\nmaterial: true\n---\n{change(lang, body)}", encoding="utf-8")


def with_surveys(lang: str, body: str) -> str:
    """Adds a purpose after product analytics (in English; the same line in every language)."""
    lines = body.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("- **") and "analy" in line.lower())
    return "".join(lines[:at + 1] + [SURVEYS + "\n"] + lines[at + 1:])


def with_retention(lang: str, body: str) -> str:
    return body + "\nSupport messages are deleted after 36 months.\n"


@pytest.fixture
def app(make_app):
    return make_app(FIXED_TODAY="2026-12-02")


def stored(app, version: str) -> list[dict]:
    store = open_store(app.config["DATABASE"])
    try:
        return [v for v in store.notice_versions(slug="privacy") if v["version"] == version]
    finally:
        store.close()


def upcoming_from_the_old_text(app, runner, notices_dir: Path) -> None:
    """The scenario of issue 12: 2027-01-15 is written from the text in effect and published."""
    write_from(notices_dir, "2026-04-09", "2027-01-15", with_retention, "Retention stated.")
    result = runner.invoke(args=["notices", "publish", "--by", "aino"])
    assert result.exit_code == 0, result.output
    assert len(stored(app, "2027-01-15")) == 3


def test_a_version_that_a_published_later_one_would_undo_is_refused_naming_it_and_the_line(
        app, runner, notices_dir):
    upcoming_from_the_old_text(app, runner, notices_dir)
    write_from(notices_dir, "2026-04-09", "2026-12-02", with_surveys, "Feedback surveys.")
    checked = runner.invoke(args=["notices", "check"])
    assert checked.exit_code == 1 and f"2027-01-15 (en) drops: + {SURVEYS}" in checked.output
    result = runner.invoke(args=["notices", "publish", "--by", "aino"])
    assert result.exit_code == 1
    output = result.output
    assert "privacy/2026-12-02: not published" in output and "2027-01-15" in output
    for lang in LANGS:
        assert f"2027-01-15 ({lang}) drops: + {SURVEYS}" in output
    assert "--allow-undo" in output
    assert ANALYTICS not in output, "only the lines the later version would undo are named"
    assert stored(app, "2026-12-02") == [], "nothing of the version was published"

    allowed = runner.invoke(args=["notices", "publish", "--by", "aino", "--allow-undo",
                                  "--reason", "Surveys start now; January text follows."])
    assert allowed.exit_code == 0, allowed.output
    assert "published privacy 2026-12-02" in allowed.output
    assert len(stored(app, "2026-12-02")) == 3
    store = open_store(app.config["DATABASE"])
    try:
        entry = store.audit_log()[0]
    finally:
        store.close()
    assert entry["action"] == "notice.publish"
    assert entry["detail"]["reason"] == "Surveys start now; January text follows."


def test_a_later_version_that_carries_the_change_is_no_undo(app, runner, notices_dir):
    write_from(notices_dir, "2026-04-09", "2027-01-15", lambda lang, body: with_retention(lang, with_surveys(lang, body)),
               "Retention stated, surveys kept.")
    assert runner.invoke(args=["notices", "publish"]).exit_code == 0
    write_from(notices_dir, "2026-04-09", "2026-12-02", with_surveys, "Feedback surveys.")
    result = runner.invoke(args=["notices", "publish"])
    assert result.exit_code == 0, result.output
    assert len(stored(app, "2026-12-02")) == 3


def test_removing_a_line_that_the_later_version_still_has_is_named_too(app, runner, notices_dir):
    upcoming_from_the_old_text(app, runner, notices_dir)
    write_from(notices_dir, "2026-04-09", "2026-12-02",
               lambda lang, body: body.replace(ANALYTICS + "\n", "") if lang == "en" else body + "\nMore.\n",
               "No more analytics.")
    result = runner.invoke(args=["notices", "publish"])
    assert result.exit_code == 1
    assert f"2027-01-15 (en) brings back: - {ANALYTICS}" in result.output
    assert stored(app, "2026-12-02") == []


def test_undone_by_later_names_nothing_without_later_versions(app, runner, notices_dir):
    store = open_store(app.config["DATABASE"])
    try:
        write_from(notices_dir, "2026-04-09", "2026-12-02", with_surveys, "Feedback surveys.")
        result = notices.check(notices_dir, LANGS, store)
        new = [s for s in result.unpublished if s.version == "2026-12-02"]
        assert len(new) == 3 and notices.undone_by_later(store, new) == []
    finally:
        store.close()


# -- export: the admin's versions back into notices/ --------------------------------------


@pytest.fixture
def legal(app):
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    sign_in(client, "legal@example.fi")
    return client


def test_versions_published_in_the_admin_are_exported_as_identical_files(app, legal, runner, notices_dir):
    body = "Käsitelty **uudelleen**.\r\n\r\n## Osa: ”lainaus” – ja 'heittomerkki'\r\n\r\n- yksi\r\n- kaksi\r\n"
    response = publish(legal, csrf(legal, "/admin/notices/privacy/new"), date="2027-01-15", body=body)
    assert response.status_code == 302
    result = runner.invoke(args=["notices", "export"])
    assert result.exit_code == 0, result.output
    store = open_store(app.config["DATABASE"])
    try:
        for lang in LANGS:
            path = notices_dir / "privacy" / f"2027-01-15.{lang}.md"
            assert f"wrote {path}" in result.output
            row = store.notice_version("privacy", "2027-01-15", lang)
            assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
            assert path.read_bytes() == row["source"].encode("utf-8")
        # The files are the versions published: checking and publishing from them finds nothing new.
        checked = notices.check(notices_dir, LANGS, store)
        assert checked.problems == [] and checked.unpublished == []
    finally:
        store.close()
    assert "Nothing new to publish." in runner.invoke(args=["notices", "publish"]).output
    again = runner.invoke(args=["notices", "export"])
    assert again.exit_code == 0 and "Every published version has its file." in again.output


def test_export_never_overwrites_a_file_that_differs(app, legal, runner, notices_dir):
    assert publish(legal, csrf(legal, "/admin/notices/privacy/new"), date="2027-01-15").status_code == 302
    edited = notices_dir / "privacy" / "2027-01-15.en.md"
    edited.write_text("---\ntitle: Mine\n---\nLocal text.\n", encoding="utf-8")
    result = runner.invoke(args=["notices", "export"])
    assert result.exit_code == 1
    assert "privacy/2027-01-15.en.md: differs from the version published on" in result.output
    assert edited.read_text(encoding="utf-8") == "---\ntitle: Mine\n---\nLocal text.\n"
    assert (notices_dir / "privacy" / "2027-01-15.fi.md").exists(), "the other files are still written"


def test_export_names_the_files_of_a_version_withdrawn_in_the_admin(app, legal, runner, notices_dir):
    assert publish(legal, csrf(legal, "/admin/notices/privacy/new"), date="2027-01-15").status_code == 302
    assert runner.invoke(args=["notices", "export"]).exit_code == 0
    url = "/admin/notices/privacy/2027-01-15/withdraw"
    assert legal.post(url, data={"csrf_token": csrf(legal, url), "reason": "Too early.", "confirm": "y"}
                      ).status_code == 302
    result = runner.invoke(args=["notices", "export"])
    assert result.exit_code == 1
    assert "privacy/2027-01-15: was withdrawn on" in result.output and "by legal@example.fi" in result.output
    assert "2027-01-15.en.md, 2027-01-15.fi.md, 2027-01-15.sv.md" in result.output
    for path in (notices_dir / "privacy").glob("2027-01-15.*.md"):
        path.unlink()
    assert runner.invoke(args=["notices", "export"]).exit_code == 0


def test_the_cli_withdraws_after_a_confirmation_with_a_reason_then_the_change_can_be_carried(
        app, runner, notices_dir):
    upcoming_from_the_old_text(app, runner, notices_dir)
    assert runner.invoke(args=["notices", "withdraw", "privacy", "2027-01-15"]).exit_code == 2, "--reason needed"
    declined = runner.invoke(args=["notices", "withdraw", "privacy", "2027-01-15", "--reason", "Undoes Dec."],
                             input="n\n")
    assert declined.exit_code == 1 and len(stored(app, "2027-01-15")) == 3
    done = runner.invoke(args=["notices", "withdraw", "privacy", "2027-01-15", "--reason", "Undoes Dec.",
                               "--by", "aino"], input="y\n")
    assert done.exit_code == 0, done.output
    assert "withdrew privacy 2027-01-15 (en, fi, sv)" in done.output and "Remove its files" in done.output
    assert stored(app, "2027-01-15") == []
    store = open_store(app.config["DATABASE"])
    try:
        entry = store.audit_log()[0]
    finally:
        store.close()
    assert (entry["action"], entry["actor"], entry["detail"]["reason"]) == ("notice.withdraw", "aino", "Undoes Dec.")
    # December, then January again with December's change carried into it: nothing is undone.
    for path in (notices_dir / "privacy").glob("2027-01-15.*.md"):
        path.unlink()
    write_from(notices_dir, "2026-04-09", "2026-12-02", with_surveys, "Feedback surveys.")
    assert runner.invoke(args=["notices", "publish"]).exit_code == 0
    write_from(notices_dir, "2026-04-09", "2027-01-15", lambda lang, body: with_retention(lang, with_surveys(lang, body)),
               "Retention stated.")
    assert runner.invoke(args=["notices", "publish"]).exit_code == 0
    assert len(stored(app, "2027-01-15")) == 3


@pytest.mark.parametrize("args, message", [
    (["privacy", "2026-04-09"], "can never be withdrawn"),
    (["privacy", "2031-01-01"], "there is no published version"),
    (["../etc", "2031-01-01"], "there is no published version"),
])
def test_the_cli_refuses_to_withdraw_what_it_cannot(app, runner, args, message):
    result = runner.invoke(args=["notices", "withdraw", *args, "--reason", "x", "--yes"])
    assert result.exit_code == 1 and message in result.output
