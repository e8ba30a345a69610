"""The consent API: recording choices, refusing every kind of bad input, receipts and CORS."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from app import create_app
from keksi import consents, sites
from keksi.openapi import OPENAPI
from keksi.store import open_store

from .conftest import BOTH, Refused, from_store, raw_sql, write_version
from .ledger import DEMO_SITE, ORIGIN, add_site, choice, config, count_rows, post

BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    app = make_app()
    add_site(app)
    return app


def schema(name: str) -> dict:
    """An OpenAPI component schema, resolvable on its own."""
    return {"$ref": f"#/components/schemas/{name}", "components": OPENAPI["components"]}


def test_config_has_what_the_widget_needs(client):
    response = client.get("/api/v1/sites/demo/config?lang=sv", headers={"Origin": ORIGIN})
    body = response.get_json()
    jsonschema.validate(body, schema("SiteConfig"))
    assert body["lang"] == "sv" and body["site"] == "demo"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["ETag"] and "max-age" in response.headers["Cache-Control"]
    assert [c["id"] for c in body["categories"]] == ["necessary", "preferences", "analytics", "marketing"]
    assert body["categories"][0]["required"] is True
    assert not any(c["required"] for c in body["categories"][1:])
    analytics = body["categories"][2]["services"][0]["cookies"][1]
    assert analytics == {"name": "_pk_ses.*", "provider": "Tiimityö Oy (Matomo)",
                         "purpose": "Knyter ihop sidvisningarna under samma besök.", "duration": "30 minuter"}
    assert body["notices"]["privacy"]["version"] == "2026-04-09"
    assert body["notices"]["privacy"]["last_updated"] == "9.4.2026"
    assert body["notices"]["privacy"]["url"].endswith("/sv/privacy/2026-04-09")
    assert body["notices"]["cookies"]["latest_material_version"] is None
    assert body["cookies"]["analytics"] == ["_pk_id.*", "_pk_ses.*"]
    assert response.status_code == 200
    again = client.get("/api/v1/sites/demo/config?lang=sv",
                       headers={"Origin": ORIGIN, "If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_config_texts_come_from_the_catalogs(client):
    fi, sv, en = (config(client, lang=lang) for lang in ("fi", "sv", "en"))
    assert en["texts"]["reject_all"] == "Reject all"
    assert fi["texts"]["reject_all"] != en["texts"]["reject_all"]
    assert sv["texts"]["reject_all"] != en["texts"]["reject_all"]
    assert len({fi["banner_hash"], sv["banner_hash"], en["banner_hash"]}) == 3


def test_config_refuses_foreign_origin_cors_and_unknown_things(client):
    response = client.get("/api/v1/sites/demo/config", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    assert response.get_json()["lang"] == "fi"  # the site's default language
    missing = client.get("/api/v1/sites/nope/config")
    assert missing.status_code == 404 and missing.get_json()["field"] == "site"
    unserved = client.get("/api/v1/sites/demo/config?lang=de")  # a page in German: the site's default
    assert unserved.status_code == 200 and unserved.get_json()["lang"] == "fi"
    bad_lang = client.get("/api/v1/sites/demo/config?lang=de-DE%3Cscript%3E")
    assert bad_lang.status_code == 400 and "lang" in bad_lang.get_json()["message"]


def test_each_banner_version_is_stored_once_in_full(app, client):
    cfg = config(client)
    config(client)
    rows = raw_sql(app, "SELECT hash, content FROM banner_versions")
    assert [r[0] for r in rows] == [cfg["banner_hash"]]
    content = json.loads(rows[0][1])
    assert content["texts"] == cfg["texts"] and content["categories"] == cfg["categories"]


def test_a_choice_is_recorded_with_everything_the_proof_needs(make_app):
    # The address and the page are kept only when an operator turns them on (not by default).
    app = make_app(STORE_IP="truncated", STORE_PAGE=True)
    add_site(app)
    client = app.test_client()
    cfg = config(client, lang="sv")
    body = choice(cfg, "custom", choices={"necessary": True, "preferences": True, "analytics": False,
                                          "marketing": False}, page="/pricing?email=a@b.fi#x")
    response = post(client, body, content_type="text/plain;charset=UTF-8",
                    **{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                     "Chrome/156.0.0.0 Safari/537.36", "Sec-GPC": "1"})
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    jsonschema.validate(answer, schema("ConsentAnswer"))
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    store = open_store(app.config["DATABASE"])
    try:
        row = store.consent(answer["consent_id"])
        privacy = store.notice_version("privacy", "2026-04-09", "sv")
    finally:
        store.close()
    assert row["subject_id"] == answer["subject_id"] and len(row["subject_id"]) == 32
    assert row["event_id"] == body["event_id"]
    assert json.loads(row["choices"]) == body["choices"]
    assert row["action"] == "custom" and row["ui_surface"] == "banner" and row["lang"] == "sv"
    assert row["notice_version"] == "2026-04-09" and row["notice_sha256"] == privacy["sha256"]
    assert row["banner_hash"] == cfg["banner_hash"] and row["widget_version"] == "test"
    assert row["page"] == "/pricing", "query strings and fragments are never stored"
    assert row["ip"] == "127.0.0.0", "the address is truncated to its /24"
    assert row["user_agent"] == "Chrome 156 / Linux"
    assert row["gpc"] == 1, "Sec-GPC: 1 is recorded"
    assert row["recorded_at"].endswith("Z") and row["valid_until"] > row["recorded_at"]
    assert row["valid_until"][:4] == str(int(row["recorded_at"][:4]) + 1)
    assert row["content_hash"] == consents.content_hash(row)


def test_the_subject_id_links_later_choices(client):
    cfg = config(client)
    first = post(client, choice(cfg)).get_json()
    second = post(client, choice(cfg, "withdraw", subject_id=first["subject_id"], ui_surface="reopened"))
    assert second.status_code == 201
    assert second.get_json()["subject_id"] == first["subject_id"]
    assert second.get_json()["consent_id"] != first["consent_id"]


def test_a_retried_event_is_recorded_once_and_answered_the_same(app, client):
    body = choice(config(client))
    first = post(client, body)
    again = post(client, body)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert count_rows(app) == 1


def test_refusals_are_recorded_too(app, client):
    response = post(client, choice(config(client), "reject_all"))
    assert response.status_code == 201
    assert count_rows(app) == 1


BAD = [
    # (change to a valid body, status, field)
    (lambda b: b.update(site="nope"), 404, "site"),
    (lambda b: b.update(site=5), 400, "site"),
    (lambda b: b.pop("site"), 400, "site"),
    (lambda b: b.update(event_id="not-a-uuid"), 400, "event_id"),
    (lambda b: b.update(event_id=None), 400, "event_id"),
    (lambda b: b.update(subject_id="1.2.3.4"), 400, "subject_id"),
    (lambda b: b.update(subject_id=123), 400, "subject_id"),
    (lambda b: b.update(action="maybe"), 400, "action"),
    (lambda b: b.update(action=["accept_all"]), 400, "action"),
    (lambda b: b.update(choices=[True]), 400, "choices"),
    (lambda b: b.update(choices="all"), 400, "choices"),
    (lambda b: b["choices"].update(ads=True), 400, "choices.ads"),
    (lambda b: b["choices"].update(analytics="yes"), 400, "choices.analytics"),
    (lambda b: b["choices"].update(analytics=1), 400, "choices.analytics"),
    (lambda b: b["choices"].pop("marketing"), 400, "choices.marketing"),
    (lambda b: b["choices"].update(necessary=False), 400, "choices.necessary"),
    (lambda b: b["choices"].update(marketing=False), 400, "action"),  # accept_all with one off
    (lambda b: b.update(notice_version="2020-01-01"), 400, "notice_version"),
    (lambda b: b.update(notice_version="2026-13-01"), 400, "notice_version"),
    (lambda b: b.update(notice_version=20260409), 400, "notice_version"),
    (lambda b: b.update(banner_hash="0" * 64), 400, "banner_hash"),
    (lambda b: b.update(banner_hash="../../etc"), 400, "banner_hash"),
    (lambda b: b.update(lang="de"), 400, "lang"),
    (lambda b: b.update(ui_surface="popup"), 400, "ui_surface"),
    (lambda b: b.update(page="https://other.example/x"), 400, "page"),
    (lambda b: b.update(page=["/"]), 400, "page"),
    (lambda b: b.update(widget_version="<script>"), 400, "widget_version"),
    (lambda b: b.update(gpc="true"), 400, "gpc"),
    (lambda b: b.update(extra=1), 400, "extra"),
]


@pytest.mark.parametrize("change, status, field", BAD, ids=[f"{f}-{i}" for i, (_, _, f) in enumerate(BAD)])
def test_bad_fields_are_refused_by_name_and_nothing_is_written(app, client, change, status, field):
    body = choice(config(client))
    change(body)
    response = post(client, body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()
    jsonschema.validate(error, schema("Error"))
    assert error["field"] == field
    assert error["message"].startswith(field)
    assert count_rows(app) == 0


def test_reject_all_with_a_category_on_is_refused(app, client):
    body = choice(config(client), "reject_all")
    body["choices"]["analytics"] = True
    response = post(client, body)
    assert response.status_code == 400 and response.get_json()["field"] == "action"


def test_banner_of_another_language_is_refused(app, client):
    body = choice(config(client, lang="fi"), banner_hash=config(client, lang="en")["banner_hash"])
    assert post(client, body).get_json()["field"] == "banner_hash"


@pytest.mark.parametrize("raw, message", [
    ("{not json", "not valid JSON"),
    ("", "empty"),
    ("[1, 2]", "JSON object"),
    ('"text"', "JSON object"),
    ("null", "JSON object"),
    ('{"a": NaN}', "not valid JSON"),
    ("[" * 100_000, None),  # over the size cap
    (b"\xff\xfe", "UTF-8"),
])
def test_malformed_bodies_get_400_or_413(app, client, raw, message):
    response = post(client, raw)
    if message is None:
        assert response.status_code == 413
    else:
        assert response.status_code == 400
        assert message in response.get_json()["message"]
    assert count_rows(app) == 0


def test_deeply_nested_json_under_the_cap_is_a_clean_400(app, client):
    response = post(client, "[" * 4000)
    assert response.status_code == 400
    assert count_rows(app) == 0


def test_a_body_over_4_kb_gets_413(app, client):
    body = choice(config(client), page="/" + "a" * 5000)
    response = post(client, body)
    assert response.status_code == 413 and response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "4096" in response.get_json()["message"]
    assert count_rows(app) == 0


def test_foreign_or_missing_origin_is_403_without_cors(app, client):
    body = choice(config(client))
    foreign = post(client, body, origin="https://evil.example")
    assert foreign.status_code == 403 and foreign.get_json()["field"] == "origin"
    assert "Access-Control-Allow-Origin" not in foreign.headers
    assert post(client, body, origin=None).status_code == 403
    assert post(client, body, origin="null").status_code == 403
    assert count_rows(app) == 0


def test_keksis_own_pages_record_choices_for_the_site_they_show_on_any_address(make_app):
    """scripts/serve shows the demo banner on Keksi's own pages, on whatever HOST and PORT."""
    app = make_app(WIDGET_SITE="demo")
    add_site(app)
    add_site(app, id="other")
    client = app.test_client()
    own = "http://keksi.lan:8765"
    body = choice(config(client))
    assert post(client, body, origin=own, base_url=own).status_code == 201
    foreign = post(client, choice(config(client)), origin="http://elsewhere.lan:8765", base_url=own)
    assert foreign.status_code == 403
    other = post(client, choice(config(client, site="other")), origin=own, base_url=own)
    assert other.status_code == 403, "only the site the pages show"
    app.config["WIDGET_SITE"] = ""
    assert post(client, choice(config(client)), origin=own, base_url=own).status_code == 403
    assert count_rows(app) == 1


def test_preflight_only_for_allowed_origins(client):
    allowed = client.options("/api/v1/consents", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert allowed.headers["Access-Control-Allow-Origin"] != "*"
    refused = client.options("/api/v1/consents", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_a_flood_from_one_address_gets_429_and_others_are_unaffected(make_app):
    app = make_app(RATE_LIMIT=6)
    add_site(app)
    client = app.test_client()
    cfg = config(client)
    statuses = [post(client, choice(cfg)).status_code for _ in range(10)]
    assert statuses.count(201) == 2 and statuses.count(429) == 8  # burst of 6 // 3
    limited = post(client, choice(cfg))
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    # The allowed page may read the answer and its Retry-After; a foreign one learns nothing.
    assert limited.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert limited.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Access-Control-Allow-Origin" not in post(client, choice(cfg), origin="https://evil.example").headers
    other = client.post("/api/v1/consents", data=json.dumps(choice(cfg)),
                        headers={"Origin": ORIGIN}, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 201
    assert count_rows(app) == 3


def test_ip_is_taken_from_trusted_proxies_only(make_app, another_database):
    plain = make_app(STORE_IP="truncated")
    add_site(plain)
    client = plain.test_client()
    post(client, choice(config(client)), **{"X-Forwarded-For": "203.0.113.77"})
    proxied = make_app(TRUSTED_PROXIES=1, STORE_IP="truncated", DATABASE=another_database)
    add_site(proxied)
    client2 = proxied.test_client()
    post(client2, choice(config(client2)), **{"X-Forwarded-For": "198.51.100.1, 203.0.113.77"})
    post(client2, choice(config(client2)), **{"X-Forwarded-For": "2001:db8:abcd:12::1"})
    ips = []
    for app in (plain, proxied):
        ips.append([r["ip"] for r in raw_sql(app, "SELECT ip FROM consents ORDER BY seq")])
    assert ips[0] == ["127.0.0.0"], "a raw X-Forwarded-For is ignored"
    assert ips[1] == ["203.0.113.0", "2001:db8:abcd::"]


def test_ip_and_user_agent_can_be_left_out(make_app):
    app = make_app(STORE_IP="none", STORE_USER_AGENT="none")
    add_site(app)
    client = app.test_client()
    answer = post(client, choice(config(client)), **{"User-Agent": "Firefox/130"}).get_json()
    store = open_store(app.config["DATABASE"])
    row = store.consent(answer["consent_id"])
    store.close()
    assert row["ip"] is None and row["user_agent"] is None


def test_rows_are_never_updated(app, client):
    post(client, choice(config(client)))
    with pytest.raises(Refused, match="never updated"):
        raw_sql(app, "UPDATE consents SET action = 'reject_all'")
    with pytest.raises(Refused, match="erasure or purge"):
        raw_sql(app, "DELETE FROM consents")
    with pytest.raises(Refused, match="append-only"):
        raw_sql(app, "DELETE FROM consent_chain")


def test_receipts_json_and_page(app, client):
    answer = post(client, choice(config(client, lang="en"), "custom", choices={
        "necessary": True, "preferences": False, "analytics": True, "marketing": False})).get_json()
    receipt = client.get(f"/api/v1/consents/{answer['consent_id']}")
    assert receipt.status_code == 200
    body = receipt.get_json()
    jsonschema.validate(body, schema("Receipt"))
    assert body["choices"]["analytics"] is True and body["notice"]["version"] == "2026-04-09"
    assert "subject_id" not in body and "ip" not in body and "user_agent" not in body
    page = client.get(f"/en/receipt/{answer['consent_id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert answer["consent_id"] in html
    assert 'href="/en/privacy/2026-04-09"' in html
    assert "Cookie settings" in html and "Withdraw" in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in page.headers["Cache-Control"]


def test_a_subject_id_the_server_did_not_give_is_replaced_by_a_new_one(app, client):
    cfg = config(client)
    first = post(client, choice(cfg)).get_json()
    again = post(client, choice(cfg, subject_id=first["subject_id"])).get_json()
    assert again["subject_id"] == first["subject_id"], "the server's own subject links the choices"
    made_up = "0123456789abcdef" * 2
    forged = post(client, choice(cfg, subject_id=made_up))
    assert forged.status_code == 201 and forged.get_json()["subject_id"] not in (made_up, first["subject_id"])
    add_site(app, id="other")  # a site sharing the cookie domain sends the same browser's subject
    elsewhere = post(client, choice(config(client, site="other"), subject_id=first["subject_id"])).get_json()
    assert elsewhere["subject_id"] == first["subject_id"]
    erase = app.test_cli_runner().invoke(args=["consents", "erase", "--subject", first["subject_id"]])
    assert "erased 3 records" in erase.output
    after = post(client, choice(cfg, subject_id=first["subject_id"])).get_json()
    assert after["subject_id"] != first["subject_id"], "an erased subject starts afresh"


def test_the_cookie_notice_version_the_visitor_chose_under_is_recorded(app, client):
    cfg = config(client, lang="en")
    assert cfg["notices"]["cookies"]["version"] == "2025-09-15"
    answer = post(client, choice(cfg, cookie_notice_version="2025-09-15")).get_json()
    body = client.get(f"/api/v1/consents/{answer['consent_id']}").get_json()
    jsonschema.validate(body, schema("Receipt"))
    assert body["cookie_notice"]["version"] == "2025-09-15"
    assert body["cookie_notice"]["url"] == "http://localhost/en/cookies/2025-09-15"
    assert len(body["cookie_notice"]["sha256"]) == 64
    older_widget = post(client, choice(cfg)).get_json()  # no cookie_notice_version: still recorded
    assert client.get(f"/api/v1/consents/{older_widget['consent_id']}").get_json()["cookie_notice"] is None
    for version, status in (("2030-01-01", 400), ("2026-04-09", 400), (20250915, 400)):
        refused = post(client, choice(cfg, cookie_notice_version=version))
        assert refused.status_code == status and refused.get_json()["field"] == "cookie_notice_version", version
    assert count_rows(app) == 2


def test_receipt_says_when_a_later_choice_replaced_it(client):
    cfg = config(client, lang="en")
    first = post(client, choice(cfg)).get_json()
    post(client, choice(cfg, "withdraw", subject_id=first["subject_id"], ui_surface="reopened"))
    html = client.get(f"/en/receipt/{first['consent_id']}").get_data(as_text=True)
    assert "A later choice" in html


@pytest.mark.parametrize("consent_id", ["0" * 32, "nothex", "A" * 32, "x" * 500])
def test_unknown_consent_ids_are_404s_that_reveal_nothing(client, consent_id):
    api = client.get(f"/api/v1/consents/{consent_id}")
    assert api.status_code == 404
    assert api.get_json()["message"] == "There is no consent with this ID."
    page = client.get(f"/en/receipt/{consent_id}")
    assert page.status_code == 404


def test_openapi_document_describes_the_api(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/notices/{slug}", "/sites/{site}/config", "/consents",
                                 "/consents/{consent_id}", "/banners/{banner_hash}",
                                 "/widget-builds/{widget_version}"}
    jsonschema.validate(client.get("/api/v1/notices/privacy?lang=fi").get_json(), schema("Notice"))
    cfg = config(client)
    body = choice(cfg)
    jsonschema.validate(body, schema("ConsentRequest"))
    # the schema rejects what the server rejects
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(body, action="maybe"), schema("ConsentRequest"))


def test_a_config_error_is_readable_by_an_allowed_page(client):
    response = client.get("/api/v1/sites/demo/config?lang=Deutsch", headers={"Origin": ORIGIN})
    assert response.status_code == 400 and response.get_json()["field"] == "lang"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    foreign = client.get("/api/v1/sites/demo/config?lang=Deutsch", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


# -- minimal by default ----------------------------------------------------------------


def test_a_new_install_keeps_no_address_and_no_page(app, client):
    answer = post(client, choice(config(client), page="/orders/1234")).get_json()
    row = from_store(app, "consent", answer["consent_id"])
    assert row["ip"] is None and row["page"] is None
    assert row["user_agent"] is not None, "the coarse browser is still kept"


def test_an_operator_can_turn_the_address_and_the_page_on(make_app):
    app = make_app(STORE_IP="truncated", STORE_PAGE=True)
    add_site(app)
    client = app.test_client()
    answer = post(client, choice(config(client), page="/orders/1234?x=1")).get_json()
    row = from_store(app, "consent", answer["consent_id"])
    assert row["ip"] == "127.0.0.0" and row["page"] == "/orders/1234"


def test_a_bad_page_is_still_refused_when_pages_are_not_kept(app, client):
    response = post(client, choice(config(client), page="https://other.example/x"))
    assert response.status_code == 400 and response.get_json()["field"] == "page"
    assert count_rows(app) == 0


def save_site(app, change) -> None:
    """Marketing saves the demo site as the sample has it, with `change` made to it."""
    site = copy.deepcopy(DEMO_SITE)
    change(site)
    store = open_store(app.config["DATABASE"])
    try:
        store.save_site(sites.validate(site, app.config["LANGUAGES"]), "tests", create=False)
    finally:
        store.close()


def without_preferences(site: dict) -> None:
    site["categories"] = [c for c in site["categories"] if c["id"] != "preferences"]


@pytest.mark.parametrize("change", ["removed", "added"])
def test_a_choice_is_checked_against_the_banner_the_visitor_saw(make_app, change):
    """Marketing removed (or added) a category after the banner was served: the choice names the
    banner it answered, and is recorded with that banner's categories and hash."""
    app = make_app(RATE_LIMIT=10_000)
    add_site(app)
    client = app.test_client()
    if change == "added":
        save_site(app, without_preferences)
    seen = config(client, lang="en")
    save_site(app, without_preferences if change == "removed" else lambda site: None)
    assert config(client, lang="en")["banner_hash"] != seen["banner_hash"]
    answer = post(client, choice(seen))
    assert answer.status_code == 201, answer.get_json()
    row = from_store(app, "consent", answer.get_json()["consent_id"])
    assert json.loads(row["choices"]) == {c["id"]: True for c in seen["categories"]}
    assert row["banner_hash"] == seen["banner_hash"]
    # The categories are those of that banner: neither the site's now nor any others.
    now = [c["id"] for c in config(client, lang="en")["categories"]]
    other = dict.fromkeys(now, True)
    refused = post(client, choice(seen, choices=other)).get_json()
    assert refused["field"].startswith("choices.") and "of the banner shown" in refused["message"]
    unknown = post(client, choice(seen, banner_hash="f" * 64, choices=other))  # a banner never shown
    assert unknown.status_code == 400 and unknown.get_json()["field"] == "banner_hash"
    assert count_rows(app) == 1


@pytest.mark.parametrize("page", ["/a\x00b", "/a\nb", "/a\x7fb", "/a\x85b", "/pricing?q=\x1b"])
def test_control_characters_in_the_page_get_a_clear_400(app, client, page):
    """The widget never sends them (browsers percent-encode a path); kept or not, they are refused."""
    response = post(client, choice(config(client), page=page))
    assert response.status_code == 400
    assert response.get_json() == {**response.get_json(), "field": "page"}
    assert "control characters" in response.get_json()["message"]
    assert count_rows(app) == 0


def test_a_long_page_is_cut_not_refused_whether_kept_or_not(app, client):
    """The page is context; the choice is the record. Its length never loses the choice."""
    assert post(client, choice(config(client), page="/" + "kengat-" * 400)).status_code == 201
    assert count_rows(app) == 1


# -- the per-worker reads a post validates against (keksi.workercache.PostReads) ---------------
# Two apps on one database are two hosts (or two workers): each keeps its own cache.


def second_host(app):
    return create_app(dict(app.config))


def test_a_site_saved_on_one_host_rules_the_next_post_on_another(make_app):
    host_a = make_app(RATE_LIMIT=10_000)
    add_site(host_a)
    host_b = second_host(host_a).test_client()
    cfg = config(host_b)
    assert post(host_b, choice(cfg)).status_code == 201  # the site is now kept by host B
    save_site(host_a, lambda site: site.update(origins=["https://elsewhere.example"]))
    refused = post(host_b, choice(cfg))
    assert refused.status_code == 403 and refused.get_json()["field"] == "origin"
    save_site(host_a, lambda site: None)
    assert post(host_b, choice(cfg)).status_code == 201
    assert count_rows(host_a) == 2


def test_a_version_withdrawn_on_one_host_is_refused_by_the_next_post_on_another(make_app, notices_dir):
    """Host B's day (December) has reached a version that host A's (November) has not, so A may still
    withdraw it: B accepted it a moment ago, and refuses it on the very next post."""
    write_version(notices_dir, "privacy", "2026-12-01", body="December wording.\n")
    host_a = make_app(RATE_LIMIT=10_000)
    add_site(host_a)
    host_b = create_app(dict(host_a.config, FIXED_TODAY="2026-12-01")).test_client()
    cfg = config(host_b)
    assert cfg["notices"]["privacy"]["version"] == "2026-12-01"
    assert post(host_b, choice(cfg)).status_code == 201
    result = host_a.test_cli_runner().invoke(args=["notices", "withdraw", "privacy", "2026-12-01",
                                                   "--reason", "Too early", "--yes"])
    assert result.exit_code == 0, result.output
    refused = post(host_b, choice(cfg))
    assert refused.status_code == 400 and refused.get_json()["field"] == "notice_version"
    assert count_rows(host_a) == 1


def test_a_banner_first_served_by_another_host_is_accepted_at_once(make_app, another_database):
    """Host B is asked about a banner nobody served yet (refused: its "not found" is not kept), then
    host A serves it: B accepts it on the next post, although serving a banner raises no generation."""
    host_a = make_app(RATE_LIMIT=10_000)
    add_site(host_a)
    host_b = second_host(host_a).test_client()
    elsewhere = make_app(DATABASE=another_database)  # the same site and texts on another database
    add_site(elsewhere)
    swedish = config(elsewhere.test_client(), lang="sv")
    assert post(host_b, choice(config(host_b))).status_code == 201  # B has kept the site and the notices
    unseen = post(host_b, choice(swedish))
    assert unseen.status_code == 400 and unseen.get_json()["field"] == "banner_hash"
    assert config(host_a.test_client(), lang="sv")["banner_hash"] == swedish["banner_hash"]
    assert post(host_b, choice(swedish)).status_code == 201
    assert count_rows(host_a) == 2
