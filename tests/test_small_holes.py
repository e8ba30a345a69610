"""Issue 10.6, the smaller holes: each as the attacker or the user meets it."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from playwright.sync_api import Page, expect

from keksi import auth, sites
from keksi.ratelimit import address_key
from keksi.store import open_store

from .conftest import BOTH, ROOT, csrf, signed_in, write_version
from .ledger import DEMO_SITE, ORIGIN, add_site, choice, config, count_rows, post

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL


def _store(app):
    return open_store(app.config["DATABASE"])


# -- IPv6 addresses are throttled per /64 ------------------------------------------------------


@pytest.mark.parametrize("address, key", [
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"), ("192.0.2.7", "192.0.2.7"), ("", ""), ("not an address", "not an address")])
def test_an_ipv6_address_counts_as_its_64(address, key):
    assert address_key(address) == key


def test_changing_address_within_one_ipv6_64_does_not_escape_the_limit(make_app):
    app = make_app(RATE_LIMIT=3)  # a burst of one
    add_site(app)
    client = app.test_client()
    cfg = config(client)

    def post_from(address: str) -> int:
        return client.post("/api/v1/consents", data=json.dumps(choice(cfg)), content_type="application/json",
                           headers={"Origin": ORIGIN}, environ_base={"REMOTE_ADDR": address}).status_code

    assert post_from("2001:db8:1:2::1") == 201
    assert post_from("2001:db8:1:2:ffff:ffff:ffff:fffe") == 429, "another address of the same /64"
    assert post_from("2001:db8:1:3::1") == 201, "the next /64 is someone else"
    assert count_rows(app) == 2


# -- the CSV export cannot be started by another site --------------------------------------------


@pytest.mark.parametrize("headers, status", [
    ({"Sec-Fetch-Site": "cross-site"}, 403), ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Referer": "https://evil.example/page"}, 403), ({"Origin": "https://evil.example"}, 403),
    ({"Sec-Fetch-Site": "same-origin"}, 200), ({"Sec-Fetch-Site": "none"}, 200),
    ({"Referer": "http://localhost/admin/sites/demo/figures"}, 200), ({}, 200)])
def test_the_export_answers_only_the_admins_own_pages(make_app, headers, status):
    app = make_app()
    add_site(app)
    client = signed_in(app, "legal@example.fi", "legal")
    response = client.get("/admin/sites/demo/export.csv", headers=headers)
    assert response.status_code == status
    store = _store(app)
    try:
        exports = [e for e in store.audit_log(limit=50) if e["action"] == "consents.export"]
    finally:
        store.close()
    assert len(exports) == (1 if status == 200 else 0), "a refused export is not started, nor logged"
    if status == 403:
        assert "Exports start only from this admin's own pages" in unescape(response.get_data(as_text=True))


# -- origins are compared and echoed in canonical form -----------------------------------------------


@pytest.mark.parametrize("written, canonical", [
    ("HTTPS://WWW.Example.FI:443/", "https://www.example.fi"), ("http://localhost:80", "http://localhost"),
    ("https://bücher.example", "https://xn--bcher-kva.example"), ("https://BÜCHER.example.", "https://xn--bcher-kva.example"),
    ("https://[2001:DB8::1]:8443", "https://[2001:db8::1]:8443"), ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ("https://exa mple.fi", None), ("ftp://example.fi", None), ("https://example.fi/path", None)])
def test_origins_are_canonical(written, canonical):
    assert sites.canonical_origin(written) == canonical


def test_a_site_written_with_a_unicode_host_takes_choices_from_the_browsers_punycode_origin(make_app):
    app = make_app()
    add_site(app, origins=["https://Bücher.example/"])
    client = app.test_client()
    cfg = config(client)
    answer = post(client, choice(cfg), origin="https://xn--bcher-kva.example")
    assert answer.status_code == 201
    assert answer.headers["Access-Control-Allow-Origin"] == "https://xn--bcher-kva.example"
    assert post(client, choice(cfg), origin="https://bucher.example").status_code == 403


def test_the_echoed_origin_is_the_canonical_one(make_app):
    app = make_app()
    add_site(app)
    client = app.test_client()
    answer = post(client, choice(config(client)), origin=ORIGIN.upper() + "/")
    assert answer.status_code == 201 and answer.headers["Access-Control-Allow-Origin"] == ORIGIN


# -- a replayed event_id --------------------------------------------------------------------------------


def test_a_replayed_event_id_is_idempotent_with_the_same_choice_and_409_with_another(make_app):
    app = make_app()
    add_site(app)
    client = app.test_client()
    body = choice(config(client))
    first = post(client, body).get_json()
    again = post(client, body)
    assert again.status_code == 201 and again.get_json()["consent_id"] == first["consent_id"]
    forged = post(client, dict(body, action="reject_all", choices={k: k == "necessary" for k in body["choices"]}))
    assert forged.status_code == 409 and forged.get_json()["field"] == "event_id"
    assert "action, choices differ" in forged.get_json()["message"]
    assert post(client, dict(body, ui_surface="panel")).status_code == 409
    assert post(client, dict(body, subject_id=first["subject_id"])).status_code == 201, "a retry that learnt its subject"
    assert count_rows(app) == 1


# -- notice versions that were never in effect ----------------------------------------------------------


def test_only_versions_that_were_in_effect_are_accepted(make_app, notices_dir):
    write_version(notices_dir, "privacy", "2026-12-24")  # upcoming on the tests' day, 2026-11-22
    write_version(notices_dir, "privacy", "2027-01-15")  # upcoming, then withdrawn
    app = make_app()
    store = _store(app)
    try:
        store.withdraw_notice_version("privacy", "2027-01-15", "tests", "2026-11-22")
    finally:
        store.close()
    add_site(app)
    client = app.test_client()
    cfg = config(client)
    assert post(client, choice(cfg, notice_version="2025-03-01")).status_code == 201, "superseded, seen before"
    for version in ("2026-12-24", "2027-01-15", "2026-04-10"):
        refused = post(client, choice(cfg, notice_version=version))
        assert refused.status_code == 400 and refused.get_json()["field"] == "notice_version", version
    assert post(client, choice(cfg, cookie_notice_version="2026-12-24")).get_json()["field"] == "cookie_notice_version"
    assert count_rows(app) == 1


# -- the Host header -------------------------------------------------------------------------------------


def test_a_host_that_is_not_configured_gets_a_400_and_no_links_to_it(make_app):
    app = make_app(SERVER_NAMES=["consent.example.fi", ".keksi.example"])
    client = app.test_client()
    for host in ("consent.example.fi", "consent.example.fi:8443", "a.keksi.example"):
        assert client.get("/en/privacy", base_url=f"http://{host}").status_code == 200, host
    for host in ("evil.example", "consent.example.fi.evil.example"):
        response = client.get("/en/privacy", base_url=f"http://{host}")
        assert response.status_code == 400 and "evil.example" not in response.get_data(as_text=True), host
        assert client.post("/api/v1/consents", base_url=f"http://{host}", data="{}").status_code == 400
    assert make_app(publish=False).test_client().get("/en/", base_url="http://anything.example").status_code == 200


def test_server_names_are_read_from_the_environment(monkeypatch, tmp_path):
    from app import create_app
    monkeypatch.setenv("KEKSI_SERVER_NAMES", "Consent.Example.fi, .keksi.example")
    app = create_app({"TESTING": True, "DATABASE": str(tmp_path / "k.db"), "SECRET_KEY": "x"})
    assert app.config["TRUSTED_HOSTS"] == ["consent.example.fi", ".keksi.example"]


# -- passwords ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["password1234", "qwertyuiop123", "123456789012", "iloveyou1234"])
def test_a_common_password_is_refused_however_long(make_app, password):
    app = make_app()
    with pytest.raises(auth.AuthError) as refused:
        auth.hash_password(password)
    assert refused.value.code == "password_common"
    result = app.test_cli_runner().invoke(args=["users", "add", "x@example.fi", "--role", "legal"],
                                          input=f"{password}\n{password}\n")
    assert result.exit_code == 1 and "list of common passwords" in result.output


@pytest.mark.parametrize("lang, message", [
    ("en", "This password is on a list of common passwords"),
    ("fi", "Tämä salasana on yleisimpien salasanojen luettelossa"),
])
def test_setting_a_common_password_from_the_link_is_refused_in_the_users_language(make_app, lang, message):
    app = make_app()
    admin = signed_in(app, "admin@example.fi", "admin")
    html = admin.post("/admin/users", data={"csrf_token": csrf(admin, "/admin/users"), "email": "new@example.fi",
                                            "roles": ["legal"]}).get_data(as_text=True)
    link = re.search(r"http://localhost(/admin/set-password/[\w-]+)", html).group(1)
    newcomer = app.test_client()
    token = csrf(newcomer, f"{link}?lang={lang}")
    refused = newcomer.post(link, data={"csrf_token": token, "password": "password1234", "confirm": "password1234"})
    assert refused.status_code == 200 and message in refused.get_data(as_text=True)
    store = _store(app)
    try:
        assert not store.user_by_email("new@example.fi")["password_hash"]
    finally:
        store.close()
    accepted = newcomer.post(link, data={"csrf_token": token, "password": "kolme outoa sanaa",
                                         "confirm": "kolme outoa sanaa"})
    assert accepted.status_code == 302


# -- the README's nginx example --------------------------------------------------------------------------------


def test_the_readme_nginx_example_redirects_plain_http_to_https():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    config = readme.split("```nginx", 1)[1].split("```", 1)[0]
    plain = [block for block in config.split("server {")[1:] if re.search(r"listen 80;", block)]
    assert plain, "a server block on port 80"
    assert re.search(r"return 301 https://consent\.example\.fi\$request_uri;", plain[0])
    assert "proxy_pass" not in plain[0], "plain http serves nothing but the redirect"


# -- the widget's text templating --------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_category_name_with_dollar_patterns_is_shown_as_written(page: Page, make_app):
    from .conftest import LiveServer
    from .widget_host import HostServer, host_page
    app = make_app()
    name = "Videos $& $1 $$ $`"
    with HostServer() as host, LiveServer(app) as server:
        definition = json.loads(json.dumps(DEMO_SITE))
        definition["categories"].append({"id": "video", "label": name, "purpose": "Embedded videos.",
                                         "services": []})
        add_site(app, definition, origins=[host.url])
        url = host.add("/", host_page(f"{server.url}/widget/v1/consent.js", site="demo", body=(
            '<iframe data-consent="video" data-src="/embed.html" title="Video"></iframe>')))
        page.goto(url)
        expect(page.get_by_role("button", name=f"Allow {name} cookies")).to_be_visible()
        expect(page.get_by_text(f"This content is blocked until you allow {name} cookies.")).to_be_visible()
