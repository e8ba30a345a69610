"""Proof an auditor can use and receipts a person can read: banner versions and widget builds by
hash (admin, JSON, export), receipts in each language's own date and time, first-party cookies,
and the per-worker caches that keep the widget's first request fast."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.parse
from datetime import datetime, timezone
from html import unescape
from pathlib import Path

import jsonschema
import pytest

from keksi import consents, proof, widget
from keksi.i18n import format_moment
from keksi.openapi import OPENAPI
from keksi.store import open_store

from .conftest import BOTH, Refused, add_user, raw_sql, sign_in, write_version
from .ledger import ORIGIN, add_site, choice, config, post

BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    app = make_app(TIMEZONE="Europe/Helsinki")
    add_site(app)
    add_user(app, "legal@example.fi", "legal")
    add_user(app, "marketing@example.fi", "marketing")
    return app


def schema(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}", "components": OPENAPI["components"]}


def text(response) -> str:
    """A page's visible text, tags removed and spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


# -- receipts a person can read ---------------------------------------------------------------


@pytest.mark.parametrize("lang, expected", [
    ("fi", "2.12.2026 klo 7.55 (UTC+2)"),
    ("sv", "2.12.2026 kl. 07:55 (UTC+2)"),
    ("en", "2 December 2026 at 7:55\u202fAM (UTC+2)"),  # CLDR: a narrow no-break space
])
def test_a_moment_is_written_as_each_language_writes_it_with_its_time_zone(app, lang, expected):
    with app.test_request_context():
        assert format_moment(datetime(2026, 12, 2, 5, 55, tzinfo=timezone.utc), lang) == expected
        summer = format_moment(datetime(2026, 7, 1, 5, 55, tzinfo=timezone.utc), lang)
        assert "(UTC+3)" in summer, "summer time is UTC+3 in Helsinki"


def recorded_moment(app, consent_id: str, lang: str) -> str:
    store = open_store(app.config["DATABASE"])
    try:
        row = store.consent(consent_id)
    finally:
        store.close()
    with app.test_request_context():
        return format_moment(datetime.fromisoformat(row["recorded_at"].replace("Z", "+00:00")), lang)


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_the_receipt_dates_the_choice_in_the_language_and_names_what_was_shown(app, client, lang):
    cfg = config(client, lang=lang)
    answer = post(client, choice(cfg, cookie_notice_version=cfg["notices"]["cookies"]["version"])).get_json()
    page = client.get(f"/{lang}/receipt/{answer['consent_id']}")
    assert page.status_code == 200
    shown = text(page)
    moment = recorded_moment(app, answer["consent_id"], lang)
    assert " ".join(moment.split()) in shown and "(UTC+2)" in moment
    assert not re.search(r"\d{1,2}/\d{1,2}/\d{2}", shown), "never the US month/day order"
    html = page.get_data(as_text=True)
    assert f'href="/{lang}/cookies/{cfg["notices"]["cookies"]["version"]}"' in html, "the cookie notice version"
    assert f'href="/{lang}/receipt/{answer["consent_id"]}/banner"' in html, "a link to the banner text"


def test_a_withdrawal_receipt_has_no_valid_until(app, client):
    cfg = config(client, lang="en")
    first = post(client, choice(cfg)).get_json()
    withdrawal = post(client, choice(cfg, "withdraw", subject_id=first["subject_id"],
                                     ui_surface="reopened")).get_json()
    assert "Valid until" in text(client.get(f"/en/receipt/{first['consent_id']}"))
    assert "Valid until" not in text(client.get(f"/en/receipt/{withdrawal['consent_id']}"))
    body = client.get(f"/api/v1/consents/{withdrawal['consent_id']}").get_json()
    jsonschema.validate(body, schema("Receipt"))
    assert body["valid_until"] is None and body["valid_until_text"] is None
    assert client.get(f"/api/v1/consents/{first['consent_id']}").get_json()["valid_until"]


def test_the_receipt_links_the_page_where_the_choice_was_made_opening_the_settings(make_app):
    app = make_app(TIMEZONE="Europe/Helsinki", STORE_PAGE=True)  # pages are kept only when turned on
    client = app.test_client()
    add_site(app, id="shop", origins=["https://www.shop.example", "https://shop.example"])
    cfg = config(client, site="shop", lang="fi")
    answer = post(client, choice(cfg, page="/tuotteet/kengat"), origin="https://shop.example").get_json()
    page = client.get(f"/fi/receipt/{answer['consent_id']}")
    hrefs = re.findall(r'<a href="([^"]+)" rel="noreferrer">', page.get_data(as_text=True))
    # Only the origin it was posted from: not the site's other origins (staging hosts, say).
    assert hrefs == ["https://shop.example/tuotteet/kengat#keksi-settings"]
    assert "Muuta tai peru valintasi sivustolla shop.example" in text(page)
    body = client.get(f"/api/v1/consents/{answer['consent_id']}").get_json()
    assert body["change_urls"] == hrefs
    assert body["recorded_at_text"] == recorded_moment(app, answer["consent_id"], "fi")
    assert re.fullmatch(r"\d{1,2}\.\d{1,2}\.2026 klo \d{1,2}\.\d{2} \(UTC\+2\)", body["recorded_at_text"])
    assert body["banner_url"] == f"http://localhost/fi/receipt/{answer['consent_id']}/banner"


def test_a_page_path_that_is_not_a_path_links_the_home_page(app, client):
    cfg = config(client, lang="en")
    # "/pricing" is not kept on a new install (KEKSI_STORE_PAGE), so it links the home page too.
    for page in ("//evil.example/x", "", "javascript:alert(1)", "/pricing"):
        answer = post(client, choice(cfg, page=page))
        if answer.status_code != 201:  # the API may refuse it outright, which is as good
            continue
        body = client.get(f"/api/v1/consents/{answer.get_json()['consent_id']}").get_json()
        assert body["change_urls"] == [f"{ORIGIN}/#keksi-settings"]


def test_the_banner_behind_a_receipt_is_shown_as_the_visitor_saw_it(app, client):
    cfg = config(client, lang="sv")
    answer = post(client, choice(cfg)).get_json()
    page = client.get(f"/sv/receipt/{answer['consent_id']}/banner")
    assert page.status_code == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    shown = text(page)
    assert cfg["texts"]["title"] in shown and cfg["texts"]["intro"] in shown
    for category in cfg["categories"]:
        assert category["label"] in shown and category["purpose"] in shown
    assert cfg["categories"][2]["services"][0]["cookies"][0]["name"] in shown
    assert cfg["banner_hash"] in shown
    assert client.get(f"/sv/receipt/{'0' * 32}/banner").status_code == 404


# -- banner versions and widget builds, by hash -----------------------------------------------


def served_widget(client) -> str:
    response = client.get("/widget/v1/consent.js")
    assert response.status_code == 200
    return response.headers["X-Widget-Version"]


def test_every_widget_build_served_is_kept_byte_for_byte(app, client):
    version = served_widget(client)
    script = client.get("/widget/v1/consent.js", headers={"Accept-Encoding": "identity"}).get_data()
    store = open_store(app.config["DATABASE"])
    try:
        kept = store.widget_build(version)
        assert kept["script"].encode("utf-8") == script
        with pytest.raises(Refused, match="kept as first served"):
            raw_sql(store, "UPDATE widget_builds SET script = 'x'")
    finally:
        store.close()


def test_a_new_build_is_kept_beside_the_old_one(app, tmp_path):
    folder = tmp_path / "widget"
    folder.mkdir()
    for name in widget.SOURCES:
        (folder / name).write_text((Path(app.root_path) / "widget" / name).read_text(encoding="utf-8"),
                                   encoding="utf-8")
    first = widget.build(folder)
    (folder / "consent.css").write_text((folder / "consent.css").read_text() + "\n.k{color:red}\n")
    second = widget.build(folder)
    assert first.version != second.version
    store, kept = open_store(app.config["DATABASE"]), set()
    try:
        for build in (first, second, first):
            widget.archive(build, store, kept)
        assert {b["version"] for b in store.widget_builds()} == {first.version, second.version}
    finally:
        store.close()


def test_every_signals_build_served_is_kept_beside_the_widget_builds(app, client):
    """signals.js, which the widget loads on the pages of sites with other vendors' consent APIs,
    is kept byte for byte as it was served, like consent.js: what ran on a visitor's page can be shown."""
    served = client.get("/widget/v1/signals.js?uet=marketing", headers={"Accept-Encoding": "identity"})
    version = served.headers["X-Widget-Version"]
    widget_version = served_widget(client)
    store = open_store(app.config["DATABASE"])
    try:
        kept = store.widget_build(version)
        assert (kept["file"], kept["script"].encode("utf-8")) == ("signals.js", served.get_data())
        assert store.widget_build(widget_version)["file"] == "consent.js"
        assert proof.check_widget_builds(store) == []
        with pytest.raises(Refused, match="kept as first served"):
            raw_sql(store, f"DELETE FROM widget_builds WHERE version = '{version}'")
    finally:
        store.close()
    sign_in(client, "legal@example.fi")
    listing = text(client.get("/admin/proof/"))
    assert re.search(rf"{version}\s*signals\.js", listing) and re.search(rf"{widget_version}\s*consent\.js", listing)
    assert client.get(f"/admin/proof/?q={version}").headers["Location"].endswith(f"/admin/proof/widgets/{version}")
    page = text(client.get(f"/admin/proof/widgets/{version}"))
    assert "signals.js" in page and kept["sha256"] in page
    download = client.get(f"/admin/proof/widgets/{version}.js")
    assert download.headers["Content-Disposition"] == f'attachment; filename="keksi-signals-{version}.js"'
    assert download.get_data() == served.get_data()
    as_json = client.get(f"/api/v1/widget-builds/{version}").get_json()
    assert as_json["file"] == "signals.js" and as_json["script"].encode("utf-8") == served.get_data()
    jsonschema.validate(as_json, schema("WidgetBuild"))


def test_a_changed_signals_build_is_kept_and_a_rewritten_one_found(app, tmp_path):
    folder = tmp_path / "widget"
    folder.mkdir()
    source = (Path(app.root_path) / "widget" / "signals.js").read_text(encoding="utf-8")
    (folder / "signals.js").write_text(source, encoding="utf-8")
    first = widget.build(folder, widget.SIGNALS)
    (folder / "signals.js").write_text(source + "\nwindow.keksiSignalsChanged = 1;\n", encoding="utf-8")
    second = widget.build(folder, widget.SIGNALS)
    assert first.version != second.version and first.file == second.file == "signals.js"
    store, kept = open_store(app.config["DATABASE"]), set()
    try:
        for build in (first, second, first):
            widget.archive(build, store, kept)
        assert {(b["version"], b["file"]) for b in store.widget_builds()} == {
            (first.version, "signals.js"), (second.version, "signals.js")}
        assert proof.check_widget_builds(store) == []
        assert not widget.is_build_of(second.identity.decode("utf-8"), first.version, "signals.js")
    finally:
        store.close()


def test_legal_finds_a_record_s_banner_and_widget_by_hash(app, client):
    version = served_widget(client)
    cfg = config(client, lang="fi")
    post(client, choice(cfg, widget_version=version))
    sign_in(client, "legal@example.fi")
    listing = client.get("/admin/proof/")
    assert listing.status_code == 200
    assert cfg["banner_hash"] in text(listing) and version in text(listing)
    found = client.get(f"/admin/proof/?q={cfg['banner_hash']}")
    assert found.status_code == 302 and found.headers["Location"].endswith(f"/admin/proof/banners/{cfg['banner_hash']}")
    banner = client.get(f"/admin/proof/banners/{cfg['banner_hash']}")
    assert cfg["texts"]["title"] in text(banner) and cfg["categories"][1]["purpose"] in text(banner)
    assert client.get(f"/admin/proof/?q={version}").headers["Location"].endswith(f"/admin/proof/widgets/{version}")
    download = client.get(f"/admin/proof/widgets/{version}.js")
    assert download.headers["Content-Disposition"] == f'attachment; filename="keksi-widget-{version}.js"'
    assert download.mimetype == "text/plain"
    assert version.encode() in download.get_data() and b"keksi:visible" in download.get_data()
    missing = client.get("/admin/proof/?q=" + "f" * 64)
    assert "No banner version or widget build" in text(missing)
    assert client.get("/admin/proof/banners/" + "f" * 64).status_code == 404
    assert client.get("/admin/proof/widgets/nope").status_code == 404


def test_legal_reads_them_as_json_with_its_session(app, client):
    version = served_widget(client)
    cfg = config(client, lang="en")
    anonymous = client.get(f"/api/v1/banners/{cfg['banner_hash']}")
    assert anonymous.status_code == 401 and anonymous.get_json()["field"] == "session"
    sign_in(client, "marketing@example.fi")
    assert client.get(f"/api/v1/banners/{cfg['banner_hash']}").status_code == 403
    assert client.get(f"/api/v1/widget-builds/{version}").status_code == 403
    client.post("/admin/logout")
    legal = client.application.test_client()
    sign_in(legal, "legal@example.fi")
    banner = legal.get(f"/api/v1/banners/{cfg['banner_hash']}")
    body = banner.get_json()
    jsonschema.validate(body, schema("BannerVersion"))
    assert body["content"]["texts"] == cfg["texts"] and body["content"]["categories"] == cfg["categories"]
    assert "no-store" in banner.headers["Cache-Control"]
    build = legal.get(f"/api/v1/widget-builds/{version}").get_json()
    jsonschema.validate(build, schema("WidgetBuild"))
    assert build["script"] == client.get("/widget/v1/consent.js").get_data(as_text=True)
    for bad in ("0" * 64, "x" * 65, "%00", "a" * 5000):
        expected = 400 if bad == "%00" else 404  # a NUL is refused before anything is looked up
        assert legal.get(f"/api/v1/banners/{bad}").status_code == expected
        assert legal.get(f"/api/v1/widget-builds/{bad}").status_code == expected


def test_the_export_links_each_record_to_its_banner_and_widget(app, client, tmp_path):
    version = served_widget(client)
    cfg = config(client, lang="en")
    post(client, choice(cfg, widget_version=version))
    post(client, choice(cfg, widget_version=""))  # an older widget that sent none
    out = tmp_path / "audit.jsonl"
    result = app.test_cli_runner().invoke(args=["consents", "export", "--site", "demo", "--format", "jsonl",
                                                "--base-url", "https://consent.example.fi", "-o", str(out)])
    assert result.exit_code == 0, result.output
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["banner_url"] == f"https://consent.example.fi/admin/proof/banners/{cfg['banner_hash']}"
    assert first["widget_url"] == f"https://consent.example.fi/admin/proof/widgets/{version}"
    assert second["widget_url"] is None
    sign_in(client, "legal@example.fi")
    legal_follows = client.get(first["banner_url"].replace("https://consent.example.fi", ""))
    assert cfg["texts"]["title"] in text(legal_follows)
    sign_in(client, "marketing@example.fi")
    exported = client.get("/admin/sites/demo/export.csv")
    if exported.status_code == 200:  # who may export raw records is another issue's (15.5)
        rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
        assert rows[0]["banner_url"] == f"http://localhost/admin/proof/banners/{cfg['banner_hash']}"


# -- first-party mode: the server sets the stored choice --------------------------------------


FIRST_PARTY = "https://www.shop.example"


def first_party_post(client, body, **query: str):
    """A post through the site's own reverse proxy (KEKSI_TRUSTED_PROXIES=1), as the widget sends it."""
    url = "/api/v1/consents" + ("?" + urllib.parse.urlencode(query) if query else "")
    return client.post(url, data=json.dumps(body), content_type="text/plain;charset=UTF-8", headers={
        "Origin": FIRST_PARTY, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.shop.example",
        "X-Forwarded-Prefix": "/consent", "X-Forwarded-For": "192.0.2.7"})


def stored(response) -> tuple[dict, dict[str, str]]:
    header = response.headers["Set-Cookie"]
    name, _, rest = header.partition("=")
    value, *attributes = rest.split("; ")
    assert name == "keksi_consent"
    return (json.loads(urllib.parse.unquote(value)),
            {a.partition("=")[0].lower(): a.partition("=")[2] for a in attributes})


@pytest.fixture
def proxied(make_app):
    app = make_app(TRUSTED_PROXIES=1)
    add_site(app, id="shop", origins=[FIRST_PARTY], consent_days=30, cookie_domain="shop.example")
    return app


def test_first_party_posts_get_the_choice_as_a_server_cookie(proxied):
    client = proxied.test_client()
    cfg = client.get("/api/v1/sites/shop/config?lang=en", headers={
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.shop.example",
        "X-Forwarded-Prefix": "/consent"}).get_json()
    assert cfg["endpoint"] == "https://www.shop.example/consent/api/v1/consents"
    accepted = first_party_post(client, choice(cfg, cookie_notice_version=cfg["notices"]["cookies"]["version"]),
                                cookie="1")
    assert accepted.status_code == 201
    state, attributes = stored(accepted)
    answer = accepted.get_json()
    assert state["i"] == answer["consent_id"] and state["s"] == answer["subject_id"]
    assert state["c"] == {"preferences": 1, "analytics": 1, "marketing": 1}
    assert state["h"] == cfg["banner_hash"][:16] and state["k"] == cfg["choice_hash"][:16]
    assert state["v"] == cfg["notices"]["privacy"]["version"] and state["w"] == cfg["notices"]["cookies"]["version"]
    assert state["l"] == "en"
    assert abs(int(attributes["max-age"]) - 30 * 86400) < 120, "Max-Age is the consent lifetime"
    assert state["x"] == int(datetime.fromisoformat(answer["valid_until"].replace("Z", "+00:00")).timestamp())
    assert attributes["path"] == "/" and attributes["samesite"] == "Lax" and "secure" in attributes
    assert attributes["domain"] == "shop.example" and "httponly" not in attributes
    refused = first_party_post(client, choice(cfg, "reject_all", subject_id=answer["subject_id"]), cookie="1")
    state, attributes = stored(refused)
    assert state["c"] == {"preferences": 0, "analytics": 0, "marketing": 0}
    assert abs(int(attributes["max-age"]) - 183 * 86400) < 120, "a refusal stands at least 183 days"


def test_no_server_cookie_unless_asked_from_the_api_s_own_origin(proxied):
    client = proxied.test_client()
    cfg = config(client, site="shop", lang="en")
    assert "Set-Cookie" not in first_party_post(client, choice(cfg)).headers, "not asked: a queued older choice"
    cross = client.post("/api/v1/consents?cookie=1", data=json.dumps(choice(cfg)), content_type="text/plain",
                        headers={"Origin": FIRST_PARTY, "X-Forwarded-Host": "consent.example.fi",
                                 "X-Forwarded-Proto": "https"})
    assert cross.status_code == 201 and "Set-Cookie" not in cross.headers, "another origin's page"
    bad = first_party_post(client, choice(cfg, action="nonsense"), cookie="1")
    assert bad.status_code == 400 and "Set-Cookie" not in bad.headers
    forged = client.post("/api/v1/consents?cookie=1", data=json.dumps(choice(cfg)), content_type="text/plain",
                         headers={"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example",
                                  "X-Forwarded-Proto": "https"})
    assert forged.status_code == 403 and "Set-Cookie" not in forged.headers


# -- the widget's first request: built once per worker, not per request -------------------------


def test_the_configuration_is_built_once_and_rebuilt_when_a_site_or_notice_changes(app, client, monkeypatch,
                                                                                    notices_dir):
    from keksi.views import api

    built = []
    real = api._make_config
    monkeypatch.setattr(api, "_make_config", lambda *a: built.append(a) or real(*a))
    first = client.get("/api/v1/sites/demo/config?lang=en", headers={"Origin": ORIGIN})
    for _ in range(5):
        again = client.get("/api/v1/sites/demo/config?lang=en", headers={"Origin": ORIGIN})
        assert again.get_data() == first.get_data() and again.headers["ETag"] == first.headers["ETag"]
        assert again.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert len(built) == 1
    assert "Access-Control-Allow-Origin" not in client.get(
        "/api/v1/sites/demo/config?lang=en", headers={"Origin": "https://evil.example"}).headers
    other_host = client.get("/api/v1/sites/demo/config?lang=en", base_url="https://other.example")
    assert other_host.get_json()["endpoint"] == "https://other.example/api/v1/consents"
    assert len(built) == 2, "the URLs in it are the host's"
    store = open_store(app.config["DATABASE"])
    try:
        demo = store.site("demo")
        demo["name"] = "Renamed"
        demo["origins"] = ["https://new.example"]
        store.save_site(demo, "tests", create=False)  # what the admin and `sites edit` do
    finally:
        store.close()
    renamed = client.get("/api/v1/sites/demo/config?lang=en", headers={"Origin": "https://new.example"})
    assert renamed.get_json()["name"] == "Renamed"
    assert renamed.headers["Access-Control-Allow-Origin"] == "https://new.example"
    assert len(built) == 3
    write_version(notices_dir, "privacy", "2026-11-01", material=True)
    assert app.test_cli_runner().invoke(args=["notices", "publish"]).exit_code == 0
    published = client.get("/api/v1/sites/demo/config?lang=en").get_json()
    assert published["notices"]["privacy"]["version"] == "2026-11-01"
    assert len(built) == 4


def test_refusals_and_preflights_do_not_read_every_site(app, client, monkeypatch):
    from keksi.store import Store

    reads = []
    real = Store.sites
    monkeypatch.setattr(Store, "sites", lambda self: reads.append(1) or real(self))
    for _ in range(5):
        assert client.options("/api/v1/consents", headers={"Origin": ORIGIN}).status_code == 204
        assert client.options("/api/v1/consents", headers={"Origin": "https://evil.example"}).status_code == 403
        bad = post(client, "{", content_type="text/plain")
        assert bad.status_code == 400 and bad.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert len(reads) == 1
    add_site(app, id="second", origins=["https://second.example"])  # another process adds a site
    assert client.options("/api/v1/consents", headers={"Origin": "https://second.example"}).status_code == 204
    assert len(reads) == 2


def test_posts_over_the_rate_limit_do_not_read_any_site(make_app, monkeypatch):
    from keksi.store import Store

    app = make_app(RATE_LIMIT=2)
    add_site(app)
    client = app.test_client()
    cfg = config(client, lang="en")
    reads = []
    for method in ("sites", "site"):
        real = getattr(Store, method)
        monkeypatch.setattr(Store, method, lambda self, *a, real=real: reads.append(1) or real(self, *a))
    statuses = [post(client, choice(cfg)).status_code for _ in range(3)]
    assert statuses[0] == 201 and statuses[-1] == 429, statuses
    before = len(reads)
    assert before, "an accepted post reads its site (the counter counts)"
    answers = [post(client, choice(cfg)) for _ in range(5)]
    assert [a.status_code for a in answers] == [429] * 5 and all(a.headers.get("Retry-After") for a in answers)
    assert len(reads) == before, "a refused post costs no site definition"


def test_the_proof_pages_are_for_legal_and_admin_only_and_shrug_off_odd_input(app, client):
    assert client.get("/admin/proof/").status_code == 302, "signed out: to the sign-in page"
    sign_in(client, "marketing@example.fi")
    for url in ("/admin/proof/", "/admin/proof/banners/" + "a" * 64, "/admin/proof/widgets/x",
                "/admin/proof/widgets/x.js"):
        assert client.get(url).status_code == 403, url
    add_user(app, "admin@example.fi", "admin")
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    assert admin.get("/admin/proof/").status_code == 200
    for odd in ("x" * 100_000, "%00%ff", "ä" * 70, "../../etc/passwd", "A" * 64):
        assert admin.get("/admin/proof/", query_string={"q": odd}).status_code == 200
        expected = (400,) if "%00" in odd else (404, 414)  # a NUL is refused before anything is looked up
        assert admin.get(f"/admin/proof/banners/{odd}").status_code in expected
        assert admin.get(f"/en/receipt/{odd}/banner").status_code in expected
