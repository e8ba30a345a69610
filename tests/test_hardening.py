"""Production hardening: headers on every route, backups that restore, hostile content proved harmless."""

from __future__ import annotations


import pytest

from keksi import consents
from keksi.store import open_store

from .conftest import BOTH, add_user, raw_sql, sign_in
from .ledger import add_site, choice, config, post
from .test_notices import HOSTILE, write_version

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

SAMPLE_ARGS = {"lang": "en", "slug": "privacy", "version": "2026-04-09", "old": "2025-03-01",
               "new": "2026-04-09", "site_id": "demo", "consent_id": "0" * 32, "token": "x" * 43,
               "filename": "site.css", "site": "demo", "user_id": 1, "change": "enable", "scan_id": 1, "finding": 0}


@pytest.fixture
def app(make_app):
    app = make_app(HTTPS=True)
    add_site(app)
    return app


def every_url(app, method: str, redirects: bool = True) -> list[str]:
    """Every address served for `method`; `redirects=False` leaves out the admin's slash redirects."""
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if method not in rule.methods or (not redirects and rule.endpoint.startswith("slash:")):
                continue
            values = {arg: SAMPLE_ARGS.get(arg, "x") for arg in rule.arguments}
            urls.append(rule.build(values, append_unknown=False)[1])
    return sorted(set(urls))


def assert_hardened(response, what: str) -> None:
    assert response.status_code < 500, what
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    assert csp, what
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
    assert "frame-ancestors" in csp, what
    assert headers["X-Content-Type-Options"] == "nosniff", what
    assert headers.get("Referrer-Policy"), what
    assert "max-age=" in headers["Strict-Transport-Security"], what
    for cookie in headers.getlist("Set-Cookie"):
        assert "Secure" in cookie and "HttpOnly" in cookie, (what, cookie)


@pytest.mark.parametrize("signed_in", [False, True])
def test_every_route_sends_the_security_headers(app, signed_in):
    """Every GET, signed out and signed in with every role (so admin pages render, not redirect),
    every POST sent without its form (refused), and an unknown address."""
    client = app.test_client()
    base = "https://keksi.example"  # HTTPS: the session cookie is Secure
    if signed_in:
        add_user(app, "everyone@example.fi", "legal", "marketing", "admin")
        login = sign_in(client, "everyone@example.fi", base_url=base, headers={"Referer": f"{base}/admin/login"})
        assert login.status_code == 302, login.get_data(as_text=True)
    statuses = []
    for url in every_url(app, "GET"):
        response = client.get(url, base_url=base, headers={"Origin": "http://localhost:8000"})
        assert_hardened(response, f"GET {url}")
        statuses.append(response.status_code)
    admin_pages = [url for url in every_url(app, "GET", redirects=False)
                   if url.startswith("/admin/") and "login" not in url]
    if signed_in:
        assert statuses.count(200) >= len(admin_pages), "the admin pages were rendered, not redirected"
    for url in every_url(app, "POST"):
        assert_hardened(client.post(url, base_url=base, data={}), f"POST {url}")
    assert_hardened(client.get("/no/such/page", base_url=base), "404")


@pytest.mark.sqlite_only  # flask backup is SQLite's
def test_backup_while_running_restores_to_a_working_site(app, client, tmp_path, make_app):
    cfg = config(client)
    answers = [post(client, choice(cfg)).get_json() for _ in range(5)]
    destination = tmp_path / "backup.db"
    result = app.test_cli_runner().invoke(args=["backup", str(destination)])
    assert result.exit_code == 0 and "5 consent records verified" in result.output
    again = app.test_cli_runner().invoke(args=["backup", str(destination)])
    assert again.exit_code == 1 and "exists" in again.output
    restored = make_app(publish=False, DATABASE=str(destination))
    restored_client = restored.test_client()
    assert restored_client.get("/en/privacy").status_code == 200
    for answer in answers:
        assert restored_client.get(f"/api/v1/consents/{answer['consent_id']}").status_code == 200
    store = open_store(str(destination))
    try:
        assert store.integrity_check() == "ok" and consents.verify(store).ok
    finally:
        store.close()


def test_gunicorn_sends_one_date_and_logs_json_without_addresses_or_query_strings(tmp_path):
    import http.client
    import json as jsonlib

    from .test_ledger_gunicorn import prepare, start
    env = prepare(tmp_path)
    log = tmp_path / "access.log"
    process = start(env, workers=1, access_log=str(log))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", int(env["PORT"]))
        conn.request("GET", "/en/privacy?email=someone@example.fi",
                     headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"})
        response = conn.getresponse()
        response.read()
        assert response.getheader("Server") == "gunicorn", "no version in the banner"
        # Date is a single field, added by the server: the app's own (werkzeug's make_conditional
        # adds one) would be a second, and a cached page would replay a stale one.
        for path in ("/en/privacy", "/en/privacy", "/widget/v1/consent.js"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and len(response.msg.get_all("Date")) == 1, path
        # Secrets in paths: a set-password token and a consent id (a receipt) never reach the log.
        for path in ("/admin/set-password/SeCrEtToKeN-0123456789", "/api/v1/consents/" + "ab" * 16,
                     "/fi/receipt/" + "cd" * 16):
            conn.request("GET", path)
            conn.getresponse().read()
        # No proxy is configured: a client's forwarded headers change nothing (links stay http).
        conn.request("GET", "/sv/privacy", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
        response = conn.getresponse()
        page = response.read().decode()
        assert 'hreflang="fi" href="http://127.0.0.1:' in page and "https://127.0.0.1" not in page
        assert "evil.example" not in page
    finally:
        process.terminate()
        process.wait(timeout=20)
    lines = [jsonlib.loads(line) for line in log.read_text().splitlines() if line.strip()]
    entry = next(e for e in lines if e["path"] == "/en/privacy")
    assert entry["status"] == 200 and entry["method"] == "GET" and entry["browser"] == "Firefox 140 / Linux"
    text = log.read_text()
    assert "127.0.0.1" not in text and "someone@example.fi" not in text
    assert "SeCrEtToKeN" not in text and "ab" * 16 not in text and "cd" * 16 not in text
    paths = {e["path"] for e in lines}
    assert {"/admin/set-password/[token]", "/api/v1/consents/[consent_id]", "/fi/receipt/[consent_id]"} <= paths


def test_health_check(client):
    response = client.get("/healthz")
    body = response.get_json()
    assert response.status_code == 200 and (body["status"], body["database"]) == ("ok", "ok")
    assert body["retention"]["overdue"] is False and "warnings" not in body


@pytest.mark.browser
def test_hostile_notice_content_never_runs_in_a_browser(page, make_app, notices_dir):
    from .conftest import LiveServer
    # Each payload would set window.__xss or open a dialog if it ever ran.
    # All but the Markdown image, which `notices check` refuses (tests/test_notice_limits.py).
    payloads = [p.replace("alert(1)", "window.__xss=1") for p in HOSTILE if not p.startswith("![")] + [
        '<img src="x" onerror="window.__xss=1">',
        '<a href="javascript:window.__xss=1" id="js-link">click me</a>',
        "[click me](javascript:window.__xss=1)",
        "<details open ontoggle=window.__xss=1>x</details>",
        "<svg><animate onbegin=window.__xss=1 attributeName=x dur=1s>",
        "<iframe srcdoc='<script>parent.__xss=1</script>'></iframe>",
        '<a href="data:text/html,<script>alert(1)</script>">data link</a>',
    ]
    write_version(notices_dir, "privacy", "2026-11-01", body="\n\n".join(payloads) + "\n\nEnd.\n")
    app = make_app()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with LiveServer(app) as server:
        for path in ("/en/privacy", "/en/privacy/2026-11-01", "/en/privacy/diff/2026-04-09/2026-11-01",
                     "/en/privacy/versions"):
            page.goto(server.url + path)
            for link in page.locator("main a").all():
                href = link.get_attribute("href") or ""
                assert not href.lower().startswith(("javascript:", "data:", "vbscript:")), href
            page.mouse.move(10, 10)
            page.wait_for_timeout(50)
            assert page.evaluate("window.__xss") is None, path
    assert dialogs == []


@pytest.mark.browser
def test_keksis_own_pages_can_show_a_sites_banner_and_record_choices(page, make_app, another_database):
    from .conftest import LiveServer
    app = make_app(WIDGET_SITE="demo", STORE_PAGE=True)  # the page is what the test checks
    with LiveServer(app) as server:
        add_site(app, origins=[server.url])
        page.goto(server.url + "/en/privacy")
        page.get_by_role("button", name="Reject all").click()
        store = open_store(app.config["DATABASE"])
        try:
            for _ in range(50):
                rows = [tuple(row.values()) for row in raw_sql(store, "SELECT action, page FROM consents")]
                if rows:
                    break
                page.wait_for_timeout(100)
        finally:
            store.close()
        assert rows == [("reject_all", "/en/privacy")]
    plain = make_app(DATABASE=another_database).test_client()
    assert "consent.js" not in plain.get("/en/privacy").get_data(as_text=True), "off by default"
