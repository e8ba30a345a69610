"""Legal's publishing in the admin, through the test client: no silent undo, deliberate publish and
withdraw with a reason, error summaries, and an audit log in words with filters, pages and CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from html import unescape

import pytest

from keksi.notices import MAX_SOURCE_BYTES
from keksi.store import open_store

from .conftest import BOTH, add_user, csrf, sign_in, signed_in
from .test_admin import previewed, textarea, version_form

BACKENDS = BOTH

NEW = "/admin/notices/privacy/new"
SURVEYS = "- **Customer feedback surveys** – consent."


@pytest.fixture
def app(make_app):
    app = make_app(FIXED_TODAY="2026-12-02")
    add_user(app, "legal@example.fi", "legal")
    add_user(app, "admin@example.fi", "admin")
    return app


@pytest.fixture
def legal(app):
    client = app.test_client()
    sign_in(client, "legal@example.fi")
    return client


def current_bodies(app, version: str = "2026-04-09") -> dict[str, str]:
    store = open_store(app.config["DATABASE"])
    try:
        return {lang: store.notice_version("privacy", version, lang)["body"] for lang in ("fi", "sv", "en")}
    finally:
        store.close()


def version_data(token: str, date: str, bodies: dict[str, str], step: str = "preview", **extra) -> dict:
    data = version_form(token, date=date, step=step)
    for lang, body in bodies.items():
        data[f"body_{lang}"] = body
    data.update(extra)
    return {key: value for key, value in data.items() if value is not None}


def preview_then_publish(client, date: str, bodies: dict[str, str], **extra):
    token = csrf(client, NEW)
    preview = client.post(NEW, data=version_data(token, date, bodies))
    assert preview.status_code == 200, preview.get_data(as_text=True)[:2000]
    return preview, client.post(NEW, data=version_data(token, date, bodies, step="publish",
                                                       previewed=previewed(preview), **extra))


def stored_langs(app, version: str) -> list[str]:
    store = open_store(app.config["DATABASE"])
    try:
        return [v["lang"] for v in store.notice_versions(slug="privacy") if v["version"] == version]
    finally:
        store.close()


def audit(app) -> list[dict]:
    store = open_store(app.config["DATABASE"])
    try:
        return store.audit_log(limit=10_000)
    finally:
        store.close()


# -- 12.1 no silent undo --------------------------------------------------------------------


def test_the_undo_scenario_is_shown_and_needs_its_own_tick(app, legal):
    old = current_bodies(app)
    # January's version is written from the text in effect and published first.
    january = {lang: body + "\nSupport messages are deleted after 36 months.\n" for lang, body in old.items()}
    _, done = preview_then_publish(legal, "2027-01-15", january)
    assert done.status_code == 302
    # The form now starts from January's text, the latest by date, and offers the current one.
    form = legal.get(NEW).get_data(as_text=True)
    assert "starts from the upcoming version of 15 January 2027, the latest by date" in form
    assert textarea(form, "body_en") == january["en"]
    assert 'href="/admin/notices/privacy/new?from=2026-04-09"' in form
    assert textarea(legal.get(NEW + "?from=2026-04-09").get_data(as_text=True), "body_en") == old["en"]
    assert textarea(legal.get(NEW + "?from=2099-01-01").get_data(as_text=True), "body_en") == january["en"]
    # A version after January is compared with January, as the public diff will compare them.
    after = legal.post(NEW, data=version_data(csrf(legal, NEW), "2027-02-01", january)).get_data(as_text=True)
    assert "Changes from the version of 15 January 2027" in after

    # A material version dated today adds the surveys to the old text.
    surveys = {lang: body + "\n" + SURVEYS + "\n" for lang, body in old.items()}
    preview, refused = preview_then_publish(legal, "2026-12-02", surveys)
    warning = preview.get_data(as_text=True).split('id="undo-warning"')[1].split("</section>")[0]
    assert "The version of 15 January 2027" in warning
    assert warning.count("drops the added line") == 3
    assert warning.count("<ins><strong>Customer feedback surveys</strong> – consent.</ins>") == 3, "as read"
    assert "**" not in warning
    assert 'id="allow_undo"' in preview.get_data(as_text=True)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert re.search(r'<p class="error" id="allow_undo-error">The later versions listed above would undo', html)
    assert '<a href="#allow_undo">' in html.split('class="error-summary"')[1].split("</div>")[0]
    assert stored_langs(app, "2026-12-02") == [], "nothing published without the tick"

    _, published = preview_then_publish(legal, "2026-12-02", surveys, allow_undo="y")
    assert published.status_code == 302
    assert stored_langs(app, "2026-12-02") == ["en", "fi", "sv"]


def test_a_version_that_undoes_nothing_asks_for_no_undo_tick(app, legal):
    _, done = preview_then_publish(legal, "2027-01-15", current_bodies(app))
    assert done.status_code == 302
    preview = legal.post(NEW, data=version_data(csrf(legal, NEW), "2026-12-03", current_bodies(app)))
    html = preview.get_data(as_text=True)
    assert 'id="undo-warning"' not in html and 'id="allow_undo"' not in html
    # its diff is against the version it follows by date, the one in effect
    assert "Changes from the version of 9 April 2026" in html


# -- 12.3 deliberate actions ----------------------------------------------------------------


@pytest.mark.parametrize("missing, message", [
    ({"reason": ""}, "Write the reason: it is kept in the audit log."),
    ({"reason": "   "}, "Write the reason: it is kept in the audit log."),
    ({"confirm": None}, "Tick the box to confirm."),
])
def test_publishing_needs_a_reason_and_a_confirming_tick(app, legal, missing, message):
    _, refused = preview_then_publish(legal, "2027-01-15", current_bodies(app), **missing)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    field = next(iter(missing))
    assert f'<p class="error" id="{field}-error">{message}</p>' in html
    assert 'id="preview-heading"' in html, "the preview stays on the page"
    assert stored_langs(app, "2027-01-15") == []


def test_the_reason_is_kept_and_the_message_names_the_title_and_a_date_in_the_admins_language(app, legal):
    _, done = preview_then_publish(legal, "2027-01-15", current_bodies(app), reason="New processor: Chatwise.")
    flashed = legal.get("/admin/notices").get_data(as_text=True)
    assert "“Title en”: the version of 15 January 2027 is published." in unescape(flashed)
    assert "2027-01-15" not in flashed.split('class="flash"')[1].split("</div>")[0]
    publications = [e for e in audit(app) if e["action"] == "notice.publish" and "2027-01-15" in e["subject"]]
    assert len(publications) == 3 and {e["detail"]["reason"] for e in publications} == {"New processor: Chatwise."}

    legal.get("/admin/?lang=fi")
    url = "/admin/notices/privacy/2027-01-15/withdraw"
    page = legal.get(url).get_data(as_text=True)
    assert "Title fi" in page and "15.1.2027" in page
    withdrawn = legal.post(url, data={"csrf_token": csrf(legal, url), "reason": "Liian aikaisin.", "confirm": "y"},
                           follow_redirects=True)
    message = withdrawn.get_data(as_text=True).split('class="flash"')[1].split("</div>")[0]
    assert "Title fi" in unescape(message) and "15.1.2027" in message and "2027-01-15" not in message
    assert audit(app)[0]["detail"]["reason"] == "Liian aikaisin."


@pytest.mark.parametrize("data, fields", [
    ({}, ["reason", "confirm"]),
    ({"reason": "Too early."}, ["confirm"]),
    ({"confirm": "y"}, ["reason"]),
    ({"reason": "<script>alert(1)</script>", "confirm": "y"}, ["reason"]),
    ({"reason": "x" * 2001, "confirm": "y"}, ["reason"]),
])
def test_withdrawing_needs_a_reason_and_a_tick_and_withdraws_nothing_without(app, legal, data, fields):
    _, done = preview_then_publish(legal, "2027-01-15", current_bodies(app))
    url = "/admin/notices/privacy/2027-01-15/withdraw"
    response = legal.post(url, data={"csrf_token": csrf(legal, url), **data})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "<script>alert" not in html
    summary = html.split('class="error-summary"')[1].split("</div>")[0]
    for field in fields:
        assert f'<a href="#{field}">' in summary and f'id="{field}-error"' in html
    assert stored_langs(app, "2027-01-15") == ["en", "fi", "sv"]


def test_withdraw_pages_of_unknown_or_past_versions(legal):
    assert legal.get("/admin/notices/privacy/2027-03-03/withdraw").status_code == 404
    assert legal.get("/admin/notices/nosuch/2027-03-03/withdraw").status_code == 404
    assert legal.get("/admin/notices/privacy/2026-04-09/withdraw").status_code == 409


def test_the_first_version_is_labelled_first_version(app, legal):
    page = app.test_client().get("/en/privacy/versions").get_data(as_text=True)
    items = page.split('<ol class="versions"')[1].split("</ol>")[0].split("<li>")
    first, later = items[-1], items[-2]
    assert "2025-03-01" in first and "Material change" in later
    assert "First version" in first and "Wording change" not in first and "Material change" not in first
    preview = legal.post("/admin/notices/brand-new/new", data=version_form(csrf(legal, NEW), date="2027-01-15"))
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "First version" in html


# -- 12.4 error summaries -------------------------------------------------------------------


def test_every_problem_is_listed_at_the_top_with_a_link_and_the_missing_language(app, legal):
    data = version_form(csrf(legal, NEW), date="2020-01-01")
    data.update(title_sv="", summary_en="", body_fi="")
    response = legal.post(NEW, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    summary = html.split('class="error-summary"')[1].split("</div>")[0]
    assert 'tabindex="-1" autofocus' in html.split('class="error-summary"')[1][:200]
    links = re.findall(r'<a href="#([a-z_]+)">([^<]*)</a>', summary)
    assert [field for field, _ in links] == ["effective_date", "body_fi", "title_sv", "summary_en"]
    assert "The date is in the past" in dict(links)["effective_date"]
    texts = dict(links)
    assert "The title in Svenska is missing" in texts["title_sv"]
    assert "The change summary in English is missing" in texts["summary_en"]
    assert "The text in Suomi is missing" in texts["body_fi"]


@pytest.mark.parametrize("lang, words", [("fi", "Teksti on liian pitkä"), ("en", "This text is too long")])
def test_a_text_too_long_as_a_file_is_refused_in_the_admins_language(app, lang, words):
    """Under the form's character limit, but over the file's byte limit in UTF-8 (ä takes two)."""
    client = signed_in(app, "laura@example.fi", "legal", lang=lang)
    long_text = "ä" * (MAX_SOURCE_BYTES // 2 + 100)
    response = client.post(NEW, data=version_data(csrf(client, NEW), "2026-12-20", {"fi": long_text}))
    assert response.status_code == 400
    page = unescape(response.get_data(as_text=True))
    assert words in page and "larger than" not in page
    assert stored_langs(app, "2026-12-20") == []


# -- 12.5 the audit log -----------------------------------------------------------------------


def test_the_audit_log_reads_in_words(app, legal):
    preview_then_publish(legal, "2027-01-15", current_bodies(app), reason="New processor.")
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    admin.post("/admin/users", data={"csrf_token": csrf(admin, "/admin/users"), "email": "m@example.fi",
                                     "roles": ["marketing", "legal"]})
    html = unescape(legal.get("/admin/audit").get_data(as_text=True))
    table = html.split("<tbody>")[1]
    for words in ("Published a notice version", "Added a user", "Title en, 15 January 2027 (English)",
                  "Material change</dt><dd>yes", "Reason</dt><dd>New processor.", "Roles</dt><dd>legal, marketing"):
        assert words in table, words
    for python in ("True", "False", "['", "notice.publish", "{"):
        assert python not in table, python
    legal.get("/admin/?lang=fi")
    finnish = unescape(legal.get("/admin/audit").get_data(as_text=True)).split("<tbody>")[1]
    assert "Published a notice version" not in finnish and "15.1.2027" in finnish


def test_user_changes_read_in_words_too(app, legal):
    add_user(app, "other@example.fi", "legal")
    store = open_store(app.config["DATABASE"])
    try:
        user = store.user_by_email("other@example.fi")
        store.set_user_roles(user["id"], ["legal", "marketing"], "admin@example.fi")
    finally:
        store.close()
    html = unescape(legal.get("/admin/audit?action=user.roles").get_data(as_text=True))
    table = html.split("<tbody>")[1]
    assert "Changed a user's roles" in table and "Before</dt><dd>legal" in table
    assert "After</dt><dd>legal, marketing" in table and "['" not in table and "user.roles" not in table
    legal.get("/admin/?lang=sv")
    swedish = unescape(legal.get("/admin/audit?action=user.roles").get_data(as_text=True)).split("<tbody>")[1]
    assert "Ändrade en användares roller" in swedish and "Efter</dt><dd>juridik, marknadsföring" in swedish


def add_entries(app, count: int, actor: str = "bot@example.fi", action: str = "user.password") -> None:
    store = open_store(app.config["DATABASE"])
    try:
        for i in range(count):
            store.audit(actor, action, str(i), None)
    finally:
        store.close()


def rows(html: str) -> int:
    return html.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")


def test_filters_and_pages(app, legal):
    add_entries(app, 120)
    everything = legal.get("/admin/audit").get_data(as_text=True)
    total = len(audit(app))
    assert f"{total} entries" in everything and rows(everything) == 50
    assert 'href="/admin/audit?page=2"' in everything
    assert 100 < total < 150
    last = legal.get("/admin/audit?page=3").get_data(as_text=True)
    assert rows(last) == total - 100 and 'rel="next"' not in last and "page 3 of 3" in last
    by_actor = legal.get("/admin/audit?actor=tests").get_data(as_text=True)
    assert "bot@example.fi</td>" not in by_actor and rows(by_actor) == len([e for e in audit(app) if e["actor"] == "tests"])
    by_action = legal.get("/admin/audit?action=user.password&page=3").get_data(as_text=True)
    assert "120 entries" in by_action and rows(by_action) == 20
    assert 'href="/admin/audit?page=2&amp;action=user.password"' in by_action or \
        'href="/admin/audit?action=user.password&amp;page=2"' in by_action
    day = datetime.now(ZoneInfo("Europe/Helsinki")).date()  # entries carry the real time, not the fixed day
    today_only = legal.get(f"/admin/audit?since={day}&until={day}").get_data(as_text=True)
    assert f"{total} entries" in today_only
    before = legal.get(f"/admin/audit?until={day - timedelta(days=1)}").get_data(as_text=True)
    assert "0 entries" in before
    none = legal.get("/admin/audit?since=2000-01-01&until=2000-01-02").get_data(as_text=True)
    assert "0 entries" in none and "No entries match these filters." in none


@pytest.mark.parametrize("query", [
    "page=99999999999999999999999", "page=-5", "page=abc", "actor=" + "x" * 100_000, "action=%00%ff",
    "since=not-a-date", "since=2026-12-05&until=2026-12-01", "since=99999-01-01", "until[]=x&page=2.5",
    "until=9999-12-31", "since=0001-01-01", "since=2026-02-30",
])
def test_odd_filters_get_a_page_or_a_clear_400_never_a_500(legal, query):
    response = legal.get(f"/admin/audit?{query}")
    assert response.status_code in (200, 400)
    if response.status_code == 400:  # the filter's own error, or the one every page gives a NUL
        page = response.get_data(as_text=True)
        assert 'class="error"' in page or "holds a NUL character (U+0000)" in page, page


def test_the_csv_export_needs_a_post_with_its_token_and_is_logged(app, legal):
    preview_then_publish(legal, "2027-01-15", current_bodies(app))
    add_entries(app, 1, actor="=HYPERLINK(\"http://evil.example\")", action="notice.publish")
    assert legal.get("/admin/audit/export.csv").status_code == 405
    assert legal.post("/admin/audit/export.csv", data={"action": "notice.publish"}).status_code == 400
    before = len(audit(app))
    response = legal.post("/admin/audit/export.csv",
                          data={"csrf_token": csrf(legal, "/admin/audit"), "action": "notice.publish"})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert table[0][:4] == ["at_utc", "actor", "action", "action_name"]
    body = table[1:]
    publications = [e for e in audit(app) if e["action"] == "notice.publish"]
    assert len(body) == len(publications) == 16 and {row[2] for row in body} == {"notice.publish"}
    assert body[0][1] == "'=HYPERLINK(\"http://evil.example\")", "a formula stays text"
    assert {row[3] for row in body} == {"Published a notice version"}
    assert all(row[6].startswith("{") for row in body[1:]), "the detail as stored, for checking"
    hashes = {e["id"]: e["row_hash"] for e in audit(app)}
    assert [row[8] for row in body] == [hashes[e["id"]] for e in publications], "each entry's chain link"
    log = audit(app)
    assert len(log) == before + 1 and log[0]["action"] == "audit.export"
    assert log[0]["detail"] == {"action": "notice.publish"}
    dated = legal.post("/admin/audit/export.csv", data={"csrf_token": csrf(legal, "/admin/audit"),
                                                        "since": "2026-12-01", "until": "2026-12-02"})
    assert dated.status_code == 200
    assert audit(app)[0]["detail"] == {"since": "2026-12-01", "until": "2026-12-02"}, "the days as chosen"
    shown = unescape(legal.get("/admin/audit?action=audit.export").get_data(as_text=True))
    assert "What</dt><dd>Published a notice version" in shown and "To</dt><dd>2 December 2026" in shown


def test_marketing_cannot_read_or_export_the_audit_log(app):
    add_user(app, "marketing@example.fi", "marketing")
    client = app.test_client()
    sign_in(client, "marketing@example.fi")
    assert client.get("/admin/audit").status_code == 403
    token = csrf(client, "/admin/")
    assert client.post("/admin/audit/export.csv", data={"csrf_token": token}).status_code == 403
