"""The admin's accounts and legal's publishing, through the test client."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import pytest

from keksi import auth
from keksi.store import open_store

from .conftest import BOTH, PASSWORD, add_staff, add_user, csrf, sign_in

BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    return add_staff(make_app(FIXED_TODAY="2026-11-22"))


def version_form(token: str, date: str = "2027-01-15", step: str = "preview", material: bool = True,
                 body: str = "New text.\n\n## Part\n", langs=("fi", "sv", "en"),
                 reason: str = "A new processor.") -> dict:
    """The new-version form as posted; a publish carries its reason and the confirming tick."""
    data = {"csrf_token": token, "effective_date": date, "step": step}
    if step == "publish":
        data.update(reason=reason, confirm="y")
    if material:
        data["material"] = "y"
    for lang in langs:
        data[f"title_{lang}"] = f"Title {lang}"
        data[f"summary_{lang}"] = f"Summary {lang}"
        data[f"body_{lang}"] = body
    return data


def textarea(page: str, field_id: str) -> str:
    """The text of a textarea, as the browser shows it (WTForms starts it with a line break)."""
    match = re.search(rf'<textarea[^>]* id="{field_id}"[^>]*>\r?\n?(.*?)</textarea>', page, re.DOTALL)
    assert match, f"no textarea {field_id}"
    return unescape(match.group(1)).replace("\r\n", "\n")


def input_value(page: str, field_id: str) -> str:
    match = re.search(rf'<input[^>]* id="{field_id}"[^>]* value="([^"]*)"', page)
    assert match, f"no input {field_id}"
    return unescape(match.group(1))


def previewed(response) -> str:
    """The hidden SHA-256 of what a preview page showed."""
    match = re.search(r'name="previewed" type="hidden" value="([0-9a-f]{64})"', response.get_data(as_text=True))
    assert match, "no preview digest on the page"
    return match.group(1)


def publish(client, token: str, **fields):
    """Preview a version, then publish exactly what was previewed, as the form's buttons do."""
    preview = client.post("/admin/notices/privacy/new", data=version_form(token, **fields))
    data = version_form(token, step="publish", **fields)
    data["previewed"] = previewed(preview)
    return client.post("/admin/notices/privacy/new", data=data)


def test_every_admin_page_needs_sign_in(client):
    for url in ("/admin/", "/admin/notices", "/admin/notices/privacy/new", "/admin/audit", "/admin/users"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")


def test_sign_in_and_out(client):
    assert sign_in(client, "legal@example.fi").headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
    assert client.get("/admin/").status_code == 302


def test_wrong_password_and_unknown_email_look_the_same(client):
    wrong = sign_in(client, "legal@example.fi", "wrong password!")
    unknown = sign_in(client, "nobody@example.fi", "wrong password!")
    assert wrong.status_code == unknown.status_code == 401
    assert "The email or password is wrong." in wrong.get_data(as_text=True)
    assert "The email or password is wrong." in unknown.get_data(as_text=True)


def test_session_cookie_is_httponly_and_samesite(client):
    response = sign_in(client, "legal@example.fi")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_session_cookie_is_secure_behind_https(make_app):
    app = make_app(HTTPS=True)
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    response = sign_in(client, "legal@example.fi")
    assert all("Secure" in cookie for cookie in response.headers.getlist("Set-Cookie"))
    assert "max-age" in response.headers["Strict-Transport-Security"]


def test_repeated_failures_are_slowed_down_per_account(app, client):
    for _ in range(auth.FREE_FAILURES):
        assert sign_in(client, "legal@example.fi", "wrong password!").status_code == 401
    slowed = sign_in(client, "legal@example.fi", PASSWORD)
    assert slowed.status_code == 429
    assert "Too many failed sign-ins" in slowed.get_data(as_text=True)
    # another account from another address is unaffected
    other = app.test_client()
    assert sign_in(other, "marketing@example.fi", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 302


def test_wrong_role_gets_403(client):
    sign_in(client, "marketing@example.fi")
    for url in ("/admin/notices", "/admin/notices/privacy/new", "/admin/audit", "/admin/users"):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "does not have the role" in response.get_data(as_text=True)


EXPIRED = "Nothing was saved because the form had expired."


def test_a_form_posted_without_its_csrf_token_is_refused(app, client):
    sign_in(client, "legal@example.fi")
    data = version_form("", step="publish")
    del data["csrf_token"]
    response = client.post("/admin/notices/privacy/new", data=data)
    assert response.status_code == 400 and EXPIRED in response.get_data(as_text=True)
    client.get("/admin/?lang=fi")
    forged = client.post("/admin/notices/privacy/new", data=dict(data, csrf_token="forged"))
    assert forged.status_code == 400
    assert "Mitään ei tallennettu, koska lomake oli vanhentunut." in forged.get_data(as_text=True)
    store = open_store(app.config["DATABASE"])
    assert store.notice_version("privacy", "2027-01-15", "fi") is None
    store.close()
    assert client.post("/admin/login", data={"email": "legal@example.fi", "password": PASSWORD}).status_code == 400
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    refused = admin.post("/admin/users", data={"email": "new@example.fi", "roles": ["legal"]})
    assert refused.status_code == 400 and EXPIRED in refused.get_data(as_text=True)
    store = open_store(app.config["DATABASE"])
    assert store.user_by_email("new@example.fi") is None
    store.close()


def test_legal_publishes_a_version_in_every_language_with_preview_and_diff(app, client):
    sign_in(client, "legal@example.fi")
    form = client.get("/admin/notices/privacy/new").get_data(as_text=True)
    store = open_store(app.config["DATABASE"])
    current = {lang: store.notice_version("privacy", "2026-04-09", lang) for lang in ("fi", "sv", "en")}
    store.close()
    for lang, row in current.items():  # the form starts from the current version's text
        assert textarea(form, f"body_{lang}") == row["body"]
        assert input_value(form, f"title_{lang}") == row["title"]
    token = csrf(client, "/admin/notices/privacy/new")
    preview = client.post("/admin/notices/privacy/new", data=version_form(token))
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200
    assert 'id="preview-heading"' in html and 'class="diff"' in html
    assert 'value="publish"' in html
    store = open_store(app.config["DATABASE"])
    assert store.notice_version("privacy", "2027-01-15", "fi") is None, "a preview publishes nothing"
    published = client.post("/admin/notices/privacy/new",
                            data=dict(version_form(token, step="publish"), previewed=previewed(preview)))
    assert published.status_code == 302
    rows = [store.notice_version("privacy", "2027-01-15", lang) for lang in ("fi", "sv", "en")]
    log = store.audit_log()
    store.close()
    assert all(rows) and rows[0]["published_by"] == "legal@example.fi" and rows[0]["material"] == 1
    assert rows[0]["source"].startswith("---\ntitle: Title fi\nsummary: Summary fi\nmaterial: true\n---\n")
    assert [e["subject"] for e in log[:3]] == ["privacy/2027-01-15.en", "privacy/2027-01-15.sv",
                                               "privacy/2027-01-15.fi"]
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert rows[0]["sha256"] in audit and "legal@example.fi" in audit
    # live on its date, not before
    page = client.get("/en/privacy").get_data(as_text=True)
    assert "A new version takes effect on 15 January 2027" in page
    app.config["FIXED_TODAY"] = "2027-01-15"
    assert "<h1>Title en</h1>" in client.get("/en/privacy").get_data(as_text=True)


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def audit_entries(app) -> int:
    store = open_store(app.config["DATABASE"])
    try:
        return len(store.audit_log(limit=10_000))
    finally:
        store.close()


@pytest.mark.parametrize("change, message", [
    ({"effective_date": "2020-01-01"}, "in the past"),
    ({"effective_date": "2026-04-09"}, "in the past"),
    ({"effective_date": "not a date"}, "Not a valid date value"),
    ({"title_sv": ""}, "The title in Svenska is missing"),
    ({"summary_en": "   "}, "The change summary in English is missing"),
    ({"body_fi": ""}, "The text in Suomi is missing"),
    ({"title_fi": "x" * 201}, "200"),
    ({"summary_sv": "x" * 2001}, "2000"),
    ({"title_fi": "<script>alert(2)</script>"}, "Write plain text without HTML tags"),
    ({"summary_en": "Now with <b>bold</b> news"}, "Write plain text without HTML tags"),
    ({"body_fi": "<script>alert(1)</script>\n\nText.\n"}, "removed when the notice is shown: &lt;script&gt;."),
    ({"body_sv": "Text.\n\n<iframe src=\"https://evil.example\"></iframe>\n"}, "shown: &lt;iframe&gt;."),
    ({"body_en": 'Text <b onclick="alert(1)">bold</b>.\n'}, "removed when the notice is shown: onclick."),
    ({"body_en": "[Click](javascript:alert(1)) and [more](JavaScript:void(0))\n"},
     "removed when the notice is shown: javascript:alert(1), JavaScript:void(0)."),
])
def test_bad_versions_are_refused_beside_the_field(app, client, notices_dir, change, message):
    sign_in(client, "legal@example.fi")
    before = files(notices_dir), audit_entries(app)
    data = version_form(csrf(client, "/admin/notices/privacy/new"), step="publish")
    data.update(change)
    response = client.post("/admin/notices/privacy/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    name = next(iter(change))
    error = re.search(rf'<p class="error" id="{name}-error">([^<]*)</p>', html)
    assert error and message in error.group(1), f"no error beside {name}"
    assert re.search(rf'id="{name}"[^>]* aria-invalid="true"|aria-invalid="true"[^>]* id="{name}"', html)
    assert re.search(rf'aria-describedby="[^"]*\b{name}-error"', html), "the error is tied to its field"
    summary = html.split('class="error-summary"')[1].split("</div>")[0]
    assert re.search(rf'<a href="#{name}">[^<]*{re.escape(message)}', summary), "listed at the top, linked"
    store = open_store(app.config["DATABASE"])
    assert len(store.notice_versions(slug="privacy")) == 6, "nothing saved"
    store.close()
    assert (files(notices_dir), audit_entries(app)) == before, "nothing written to notices/ or logged"


def test_hostile_markdown_and_titles_are_refused_and_shown_back_as_text(client):
    sign_in(client, "legal@example.fi")
    data = version_form(csrf(client, "/admin/notices/privacy/new"),
                        body='<script>alert(1)</script><img src=x onerror=alert(1)>[x](javascript:alert(1))\n')
    data["title_en"] = "<script>alert(2)</script>"
    response = client.post("/admin/notices/privacy/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="preview-heading"' not in html
    assert "<script>alert" not in html and "<img" not in html and 'href="javascript:' not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    for lang in ("fi", "sv", "en"):
        assert (f'id="body_{lang}-error">This text has HTML or links that are removed when the notice is '
                "shown: &lt;script&gt;, &lt;img&gt;, javascript:alert(1).") in html


def test_markdown_that_renders_as_written_is_not_refused(client):
    sign_in(client, "legal@example.fi")
    body = ("Write `<script>` in code, a < b, <abbr title=\"General Data Protection Regulation\">GDPR</abbr>.\n\n"
            "| Cookie | Days |\n|:--|--:|\n| keksi_consent | 365 |\n\n"
            "See the [cookie notice](../cookies), <https://example.fi> or [mail us](mailto:dpo@example.fi).\n")
    response = client.post("/admin/notices/privacy/new",
                           data=version_form(csrf(client, "/admin/notices/privacy/new"), body=body))
    assert response.status_code == 200 and 'id="preview-heading"' in response.get_data(as_text=True)


NOT_PREVIEWED = "Nothing was published: only a previewed text can be."


def assert_not_published(app, response) -> None:
    """Refused at the top of the form, with the preview of the text as posted shown again."""
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    summary = html.split('class="error-summary"')[1].split("</div>")[0]
    assert NOT_PREVIEWED in summary and html.index("error-summary") < html.index('id="preview-heading"')
    assert 'id="preview-heading"' in html and 'value="publish"' in html
    assert 'class="error"' not in html, "no field is at fault"
    store = open_store(app.config["DATABASE"])
    assert store.notice_version("privacy", "2027-01-15", "fi") is None, "nothing saved"
    store.close()


def test_publishing_without_a_preview_shows_the_preview_instead(app, client):
    sign_in(client, "legal@example.fi")
    token = csrf(client, "/admin/notices/privacy/new")
    refused = client.post("/admin/notices/privacy/new", data=version_form(token, step="publish"))
    assert_not_published(app, refused)
    forged = client.post("/admin/notices/privacy/new",
                         data=dict(version_form(token, step="publish"), previewed="0" * 64))
    assert_not_published(app, forged)
    # the page that refused is itself a preview: its Publish button publishes
    again = client.post("/admin/notices/privacy/new",
                        data=dict(version_form(token, step="publish"), previewed=previewed(refused)))
    assert again.status_code == 302


@pytest.mark.parametrize("change", [
    {"body_sv": "New text.\n\n## Part\n\nAdded after the preview.\n"},
    {"title_en": "Another title"},
    {"summary_fi": "Another summary"},
    {"effective_date": "2027-01-16"},
    {"material": None},
])
def test_text_changed_after_the_preview_is_previewed_again_not_published(app, client, change):
    sign_in(client, "legal@example.fi")
    token = csrf(client, "/admin/notices/privacy/new")
    preview = client.post("/admin/notices/privacy/new", data=version_form(token))
    data = dict(version_form(token, step="publish"), previewed=previewed(preview), **change)
    data = {key: value for key, value in data.items() if value is not None}
    refused = client.post("/admin/notices/privacy/new", data=data)
    assert_not_published(app, refused)
    store = open_store(app.config["DATABASE"])
    assert store.notice_version("privacy", "2027-01-16", "fi") is None
    store.close()
    assert previewed(refused) != previewed(preview)
    if "body_sv" in change:
        preview_section = refused.get_data(as_text=True).split('id="preview-heading"')[1].split("<form")[0]
        assert "Added after the preview." in preview_section


def test_a_second_version_on_the_same_date_is_refused(app, client):
    sign_in(client, "legal@example.fi")
    token = csrf(client, "/admin/notices/privacy/new")
    preview = client.post("/admin/notices/privacy/new", data=version_form(token))
    data = dict(version_form(token, step="publish"), previewed=previewed(preview))
    assert client.post("/admin/notices/privacy/new", data=data).status_code == 302
    again = client.post("/admin/notices/privacy/new", data=data)
    assert again.status_code == 400 and "exists already" in again.get_data(as_text=True)


def test_upcoming_versions_can_be_withdrawn_but_versions_in_effect_never(app, client):
    sign_in(client, "legal@example.fi")
    token = csrf(client, "/admin/notices/privacy/new")
    assert publish(client, token).status_code == 302
    listing = client.get("/admin/notices").get_data(as_text=True)
    assert 'href="/admin/notices/privacy/2027-01-15/withdraw">Withdraw the version of 15 January 2027</a>' in listing
    url = "/admin/notices/privacy/2027-01-15/withdraw"
    token = csrf(client, url)
    withdrawn = client.post(url, data={"csrf_token": token, "reason": "Sent too early.", "confirm": "y"})
    assert withdrawn.status_code == 302
    store = open_store(app.config["DATABASE"])
    assert store.notice_version("privacy", "2027-01-15", "en") is None
    entry = store.audit_log()[0]
    assert entry["action"] == "notice.withdraw" and entry["detail"]["reason"] == "Sent too early."
    store.close()
    refused = client.post("/admin/notices/privacy/2026-04-09/withdraw", data={"csrf_token": token})
    assert refused.status_code == 409 and "never be withdrawn" in refused.get_data(as_text=True)
    assert client.post("/admin/notices/privacy/2027-02-01/withdraw", data={}).status_code == 400


def test_admin_adds_a_user_who_sets_a_password_from_the_link(app, client):
    sign_in(client, "admin@example.fi")
    token = csrf(client, "/admin/users")
    response = client.post("/admin/users", data={"csrf_token": token, "email": "New@Example.fi",
                                                 "roles": ["legal", "marketing"]})
    html = response.get_data(as_text=True)
    link = re.search(r"http://localhost(/admin/set-password/[\w-]+)", html).group(1)
    other = app.test_client()
    form = other.get(link)
    assert form.status_code == 200 and "new@example.fi" in form.get_data(as_text=True)
    token2 = csrf(other, link)
    short = other.post(link, data={"csrf_token": token2, "password": "short", "confirm": "short"})
    assert short.status_code == 200 and "12" in short.get_data(as_text=True)
    done = other.post(link, data={"csrf_token": token2, "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 302
    assert other.get(link).status_code == 404, "the link works once"
    assert sign_in(other, "new@example.fi").status_code == 302


@pytest.mark.parametrize("email, roles, message", [
    ("not an email", ["legal"], "Enter an email address"),
    ("<script>@x.fi", ["legal"], "Enter an email address"),
    ("legal@example.fi", ["legal"], "already exists"),
    ("ok@example.fi", [], "Choose at least one role"),
    ("ok@example.fi", ["root"], "not a valid choice"),
])
def test_bad_users_are_refused(app, client, email, roles, message):
    sign_in(client, "admin@example.fi")
    response = client.post("/admin/users", data={"csrf_token": csrf(client, "/admin/users"),
                                                 "email": email, "roles": roles})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    store = open_store(app.config["DATABASE"])
    assert len(store.users()) == 3
    store.close()


def test_changing_the_password_ends_other_sessions(app, client):
    sign_in(client, "legal@example.fi")
    store = open_store(app.config["DATABASE"])
    user = store.user_by_email("legal@example.fi")
    store.set_password(user["id"], auth.hash_password("another long password"), "tests")
    store.close()
    assert client.get("/admin/").status_code == 302


def test_users_cli(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "add", "cli@example.fi", "--role", "legal", "--link"])
    assert result.exit_code == 0 and "/admin/set-password/" in result.output
    result = runner.invoke(args=["users", "add", "pw@example.fi", "--role", "marketing"],
                           input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0
    listing = runner.invoke(args=["users", "list"]).output
    assert "cli@example.fi\tlegal\tno password yet" in listing
    assert "pw@example.fi\tmarketing\tpassword set" in listing
    bad = runner.invoke(args=["users", "add", "x@example.fi", "--role", "legal"], input="short\nshort\n")
    assert bad.exit_code == 1 and "at least 12" in bad.output
    dup = runner.invoke(args=["users", "add", "cli@example.fi", "--role", "legal", "--link"])
    assert dup.exit_code == 1 and "already exists" in dup.output


def _section_pages(app) -> list[str]:
    """Every admin page without parameters that a signed-in admin opens (not the sign-in pages)."""
    return sorted({rule.rule for rule in app.url_map.iter_rules()
                   if rule.rule.startswith("/admin") and not rule.arguments and "GET" in (rule.methods or ())
                   and not rule.endpoint.startswith("slash:") and "." not in rule.rule.rsplit("/", 1)[-1]
                   and rule.endpoint not in ("admin.login", "admin.logout")})


def test_each_admin_section_opens_with_or_without_a_trailing_slash(app):
    client = app.test_client()
    sign_in(client, "admin@example.fi")
    pages = _section_pages(app)
    assert {"/admin/", "/admin/notices", "/admin/sites/", "/admin/users", "/admin/audit"} <= set(pages)
    for page in pages:
        other = page[:-1] if page.endswith("/") else page + "/"
        assert client.get(page).status_code == 200, page
        moved = client.get(other)
        assert moved.status_code == 308 and moved.headers["Location"].endswith(page), other
    listed = client.get("/admin/notices/", follow_redirects=True)
    assert listed.status_code == 200 and "<h1>Notices</h1>" in listed.get_data(as_text=True)


def test_a_trailing_slash_keeps_the_pages_address_and_query(app):
    client = app.test_client()
    sign_in(client, "admin@example.fi")
    moved = client.get("/admin/audit/?actor=legal%40example.fi&action=publish")
    assert moved.status_code == 308
    assert unquote(moved.headers["Location"]) == "/admin/audit?actor=legal@example.fi&action=publish"
    assert client.get("/admin/sites/demo/scans/").headers["Location"] == "/admin/sites/demo/scans"
    assert client.get("/admin/sites/demo/scans/1/findings.csv/").status_code == 404  # a download, not a page
