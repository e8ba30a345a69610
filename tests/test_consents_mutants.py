"""What a consent record holds and what `verify` catches, down to the edges mutation testing probes.

Written against issue 10 point 7: each test here kills mutants of keksi/consents.py that the
rest of the suite let live (`scripts/mutate consents`). tests/MUTANTS.md lists the ones left
alive on purpose, and why no test can tell them apart.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from keksi import consents
from keksi.clock import record_text
from keksi.store import open_store
from keksi.store.chain import GENESIS_HASH, chain_hash, removal_digest

from .conftest import TODAY, publish_all, raw_sql, write_version
from .ledger import ORIGIN, add_site, choice, config, count_rows, post

UTC_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def app(make_app):
    # Many refusals come from one address; the page and the address are kept, as a site may choose.
    app = make_app(RATE_LIMIT=10_000, STORE_PAGE=True, STORE_IP="truncated")
    add_site(app)
    add_site(app, id="other", name="Other")  # a second site on the same origin
    return app


def rows(app) -> list[dict]:
    store = open_store(app.config["DATABASE"])
    try:
        return [dict(r) for r in raw_sql(store, "SELECT * FROM consents ORDER BY seq")]
    finally:
        store.close()


def refusal(client, body, status: int = 400, **headers) -> tuple[str, str]:
    response = post(client, body, **headers)
    assert response.status_code == status, response.get_json()
    answer = response.get_json()
    return answer["field"], answer["message"]


# -- what a refused choice is told ------------------------------------------------


def test_malformed_bodies_are_refused_with_what_to_send(app, client):
    assert refusal(client, b"\xff\xfe") == ("body", "body must be UTF-8 encoded JSON")
    assert refusal(client, " \n ") == ("body", "body is empty: send a JSON object describing the choice")
    assert refusal(client, '{"site": NaN}') == ("body", "body is not valid JSON (NaN is not allowed)")
    assert refusal(client, "[1, 2]") == ("body", "body must be a JSON object")
    field, message = refusal(client, '{"site": ')
    assert field == "body" and message.startswith("body is not valid JSON (Expecting value")
    assert "\n" not in message
    assert count_rows(app) == 0


def _without(body: dict, *fields: str) -> dict:
    return {k: v for k, v in body.items() if k not in fields}


def test_each_refusal_names_the_field_and_says_what_is_wrong(app, client):
    cfg = config(client)
    good = choice(cfg)
    evil = "https://evil.example"
    cases = [
        (dict(good, zz=1, aa=2), "aa", "aa is not a field of a consent"),  # the first, in order
        (_without(good, "site", "action"), "action", "action is required"),
        (_without(good, "lang"), "lang", "lang is required"),
        (dict(good, site=5), "site", "site must be a string"),
        (dict(good, event_id="not-a-uuid"), "event_id", "event_id must be a UUID made by the widget for this choice"),
        (dict(good, subject_id="12"), "subject_id", "subject_id must be the 32 hex digits the server gave, or absent"),
        (dict(good, action="maybe"), "action", "action must be one of accept_all, reject_all, custom, withdraw"),
        (dict(good, choices=[True]), "choices", "choices must be an object of category id to true or false"),
        (dict(good, choices=dict(good["choices"], ads=True)), "choices.ads",
         "choices.ads is not a category of the banner shown for site 'demo' "
         "(necessary, preferences, analytics, marketing)"),
        (dict(good, choices=dict(good["choices"], analytics="yes")), "choices.analytics",
         "choices.analytics must be true or false"),
        (dict(good, choices=_without(good["choices"], "marketing")), "choices.marketing",
         "choices.marketing is required: send every category of the banner shown"),
        (dict(good, choices=dict(good["choices"], necessary=False)), "choices.necessary",
         "choices.necessary must be true: necessary cookies cannot be refused"),
        (dict(good, choices=dict(good["choices"], marketing=False)), "action", "action accept_all needs every category true"),
        (dict(choice(cfg, "reject_all"), choices=dict(good["choices"], necessary=True)), "action",
         "action reject_all needs every optional category false"),
        (dict(choice(cfg, "withdraw"), choices=dict(choice(cfg, "withdraw")["choices"], marketing=True)), "action",
         "action withdraw needs every optional category false"),
        (dict(good, lang="de"), "lang", "lang must be one of fi, sv, en"),
        (dict(good, notice_version="2020-01-01"), "notice_version",
         "notice_version '2020-01-01' is not a version of the 'privacy' notice that has been in effect"),
        (dict(good, cookie_notice_version="2030-01-01"), "cookie_notice_version",
         "cookie_notice_version '2030-01-01' is not a version of the 'cookies' notice that has been in effect"),
        (dict(good, banner_hash="0" * 64), "banner_hash",
         "banner_hash is not a banner this server showed for this site and language"),
        (dict(good, ui_surface="popup"), "ui_surface", "ui_surface must be one of banner, panel, reopened"),
        (dict(good, page=7), "page", "page must be a path starting with /"),
        (dict(good, page="/a\x00b"), "page",
         "page must not hold control characters (U+0000-U+001F, U+007F-U+009F)"),
        (dict(good, page="pricing"), "page", "page must be a path starting with /"),
        (dict(good, widget_version="1 0"), "widget_version",
         "widget_version must be letters, digits, '.', '_' or '-', at most 64"),
        (dict(good, gpc=1), "gpc", "gpc must be true or false"),
    ]
    for body, field, message in cases:
        assert refusal(client, body) == (field, message), body
    assert refusal(client, dict(good, site="nope"), 404) == ("site", "site 'nope' is not a site on this server")
    assert refusal(client, good, 403, origin=evil) == (
        "origin", f"origin {evil!r} may not record consents for site 'demo'; add it to the site's origins")
    assert count_rows(app) == 0


@pytest.mark.parametrize("field, longest, accepted_status, accepted_message", [
    ("site", "a" * 64, 404, "is not a site"),
    ("action", "a" * 20, 400, "must be one of"),
    ("lang", "a" * 8, 400, "must be one of"),
    ("banner_hash", "0" * 64, 400, "is not a banner"),
    ("ui_surface", "a" * 20, 400, "must be one of"),
    ("notice_version", "2099-01-01", 400, "is not a version"),
    ("cookie_notice_version", "2099-01-01", 400, "is not a version"),
])
def test_text_fields_are_capped_at_their_length_exactly(app, client, field, longest, accepted_status,
                                                        accepted_message):
    """At the cap the value is judged on its merits; one character more is refused for its length."""
    body = choice(config(client))
    at_cap = post(client, dict(body, **{field: longest}))
    assert at_cap.status_code == accepted_status and accepted_message in at_cap.get_json()["message"]
    over = refusal(client, dict(body, **{field: longest + "0"}))
    assert over == (field, f"{field} must be at most {len(longest)} characters")


def test_an_event_id_is_stored_in_canonical_form_and_capped_at_64_characters(app, client):
    body = choice(config(client))
    event = uuid.uuid4()
    spelled = "{" + event.hex[:8].upper() + "-" * 30 + event.hex[8:].upper() + "}"  # as uuid.UUID reads it
    assert len(spelled) == 64
    assert post(client, dict(body, event_id=spelled)).status_code == 201
    assert rows(app)[0]["event_id"] == str(event)
    longer = spelled.replace("-", "--", 1)  # still a UUID to uuid.UUID, but 65 characters
    assert refusal(client, dict(body, event_id=longer)) == (
        "event_id", "event_id must be a UUID made by the widget for this choice")


def test_optional_fields_left_out_are_recorded_as_nothing(app, client):
    """An older widget sends neither page, widget version, GPC, subject nor cookie notice."""
    body = _without(choice(config(client)), "page", "widget_version", "gpc", "subject_id")
    answer = post(client, dict(body, cookie_notice_version=None))
    assert answer.status_code == 201, answer.get_json()
    row = rows(app)[0]
    assert row["page"] == "" and row["widget_version"] == "" and row["gpc"] == 0
    assert row["cookie_notice_slug"] is row["cookie_notice_version"] is row["cookie_notice_sha256"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", row["subject_id"]) and row["subject_id"] != row["consent_id"]
    assert row["content_hash"] == consents.content_hash(row)


def test_gpc_is_recorded_from_the_body_or_the_header(app, client):
    cfg = config(client)
    post(client, choice(cfg, gpc=True))
    post(client, choice(cfg, gpc=False))
    post(client, choice(cfg, gpc=False), **{"Sec-GPC": "1"})
    assert [r["gpc"] for r in rows(app)] == [1, 0, 1]


def test_every_surface_and_action_is_recorded_as_sent(app, client):
    cfg = config(client)
    sent = [("accept_all", "banner"), ("reject_all", "panel"), ("custom", "reopened"), ("withdraw", "panel")]
    for action, surface in sent:
        assert post(client, choice(cfg, action, ui_surface=surface)).status_code == 201
    assert [(r["action"], r["ui_surface"]) for r in rows(app)] == sent


def test_page_keeps_the_path_only_and_at_most_512_characters(app, client):
    """A longer page is cut, never refused for its length (the body's 4,096 bytes bound it): the
    page is context, the choice is the record. A cut never ends inside a %-escape."""
    cfg = config(client)
    long = "/" + "p" * 999
    for page in ("/about#team", "/a?b=1#c", "/x#y?z", "/s?q=1?r=2", "/h#one#two", long, long + "p" * 2000,
                 "/" + "p" * 509 + "%C3%A4", "/" + "p" * 510 + "%C3%A4", "/" + "p" * 508 + "%C3%A4"):
        assert post(client, choice(cfg, page=page)).status_code == 201
    assert [r["page"] for r in rows(app)] == ["/about", "/a", "/x", "/s", "/h", "/" + "p" * 511, "/" + "p" * 511,
                                              "/" + "p" * 509, "/" + "p" * 510, "/" + "p" * 508 + "%C3"]


def test_widget_version_up_to_64_characters(app, client):
    cfg = config(client)
    assert post(client, choice(cfg, widget_version="v" * 64)).status_code == 201
    assert refusal(client, choice(cfg, widget_version="v" * 65))[0] == "widget_version"


def test_choices_are_stored_in_the_sites_category_order(app, client):
    cfg = config(client)
    body = choice(cfg, "custom", choices={"marketing": False, "analytics": True, "preferences": False,
                                          "necessary": True})
    assert post(client, body).status_code == 201
    assert rows(app)[0]["choices"] == '{"necessary":true,"preferences":false,"analytics":true,"marketing":false}'


def test_a_banner_of_another_site_is_refused(app, client):
    body = choice(config(client), banner_hash=config(client, site="other")["banner_hash"])
    assert refusal(client, body)[0] == "banner_hash"
    assert count_rows(app) == 0


def test_an_event_id_used_by_another_site_is_a_conflict(app, client):
    first = choice(config(client))
    assert post(client, first).status_code == 201
    reused = choice(config(client, site="other"), event_id=first["event_id"])
    assert refusal(client, reused, 409) == ("event_id", "event_id was already used for another site")
    assert [r["site"] for r in rows(app)] == ["demo"]


def test_a_version_in_effect_from_today_is_accepted_and_tomorrows_is_not(make_app, notices_dir):
    today = date.fromisoformat(TODAY)
    write_version(notices_dir, "privacy", TODAY)
    write_version(notices_dir, "privacy", (today + timedelta(days=1)).isoformat())
    app = make_app()
    add_site(app)
    client = app.test_client()
    cfg = config(client)
    assert post(client, choice(cfg, notice_version=TODAY)).status_code == 201
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert refusal(client, choice(cfg, notice_version=tomorrow))[0] == "notice_version"
    assert rows(app)[0]["notice_version"] == TODAY


# -- addresses and browsers ---------------------------------------------------------


@pytest.mark.parametrize("address, kept", [
    ("198.51.101.255", "198.51.101.0"),  # /24: not /23 (198.51.100.0), not /25 (…101.128)
    ("2001:db8:ffff:ffff::1", "2001:db8:ffff::"),  # /48: not /47 (…:fffe::), not /49 (…:ffff:8000::)
    ("::ffff:198.51.101.255", "198.51.101.0"),  # IPv4-mapped IPv6 is cut as IPv4
    ("not an address", None),
    ("", None),
    (None, None),
], ids=["ipv4", "ipv6", "ipv4-mapped", "not-an-address", "empty", "none"])
def test_addresses_are_cut_to_their_network(address, kept):
    assert consents.truncate_ip(address) == kept


def test_addresses_are_not_kept_when_the_setting_says_none():
    assert consents.truncate_ip("198.51.101.255", keep=False) is None


def test_the_ledger_keeps_an_ipv6_visitors_48_only(app, client):
    cfg = config(client)
    for address in ("2001:db8:ffff:ffff::1", "::ffff:198.51.101.255"):
        client.post("/api/v1/consents", data=json.dumps(choice(cfg)), content_type="application/json",
                    headers={"Origin": ORIGIN}, environ_base={"REMOTE_ADDR": address})
    assert [r["ip"] for r in rows(app)] == ["2001:db8:ffff::", "198.51.101.0"]


@pytest.mark.parametrize("agent, coarse", [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.56", "Edge 130 / Windows"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/129.0.0.0 Safari/537.36 OPR/114.0.0.0", "Opera 114 / Windows"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0", "Firefox 131 / Linux"),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "Samsung 26 / Android"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36", "Chrome 130 / ChromeOS"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/537.36 Chromium/128.0 Safari/537.36", "Chromium 128 / Linux"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.0 Mobile/15E148 Safari/604.1", "Safari 18 / iOS"),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", "Safari 17 / iOS"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Safari/605.1.15", "Safari 17 / macOS"),
    ("curl/8.5.0", "Other / Other"),
    ("", None),
    (None, None),
], ids=lambda value: None if value is None or "/" not in value or " / " in value else "agent")
def test_browsers_are_kept_as_family_major_version_and_system(agent, coarse):
    assert consents.coarse_user_agent(agent) == coarse


def test_browsers_are_not_kept_when_the_setting_says_none():
    assert consents.coarse_user_agent("Firefox/131.0", keep=False) is None


# -- the record and its content hash ----------------------------------------------------

PINNED = {
    "consent_id": "c" * 32, "event_id": "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f", "subject_id": "s" * 32,
    "site": "demo", "action": "custom", "choices": '{"necessary":true,"analytics":false}',
    "ui_surface": "panel", "lang": "fi", "page": "/hinnasto/ääkköset", "notice_slug": "privacy",
    "notice_version": "2026-04-09", "notice_sha256": "a" * 64, "banner_hash": "b" * 64,
    "widget_version": "1.4.0", "ip": "192.0.2.0", "user_agent": "Firefox 130 / Linux", "gpc": 1,
    "recorded_at": "2026-11-22T10:00:00.000000Z", "valid_until": "2027-11-22T10:00:00.000000Z",
}
COOKIE_NOTICE = {"cookie_notice_slug": "cookies", "cookie_notice_version": "2025-09-15",
                 "cookie_notice_sha256": "d" * 64}


def test_content_hashes_of_stored_records_never_change():
    """Records already in ledgers must keep verifying: the hash of a record is pinned, with and
    without the cookie notice columns (added later, hashed only when set)."""
    assert consents.content_hash(PINNED) == "dd72f31ac7c58bce10f5361a18812cc8f1c21ca3670a6471eed722f742c9520d"
    assert consents.content_hash(dict(PINNED, **COOKIE_NOTICE)) == \
        "6f1ce1a248a5e5326b6ab6584e7628a77c29bdd1b516742dbf684f549bcefc43"
    # The origin (added after the cookie notice), hashed last and only when set.
    origin = {"origin": "https://www.example.fi"}
    assert consents.content_hash(dict(PINNED, **origin)) == \
        "6ce0fa2d99888defcc73b8a7b51222f800cd5fe66866d76a14e54b24258ce551"
    assert consents.content_hash(dict(PINNED, **COOKIE_NOTICE, **origin)) == \
        "8a6a95e4d3664f374a20857c27d70b2f43268d17915841b5190e4fbcc3b40ca0"
    assert consents.content_hash(dict(PINNED, origin=None)) == consents.content_hash(PINNED)
    # Columns outside the proof (the row number, the stored hash itself) do not count.
    assert consents.content_hash(dict(PINNED, seq=9, content_hash="x")) == consents.content_hash(PINNED)


@pytest.mark.parametrize("cookie_notice", [{}, COOKIE_NOTICE, dict(COOKIE_NOTICE, origin="https://a.example")],
                         ids=["older-row", "with-cookie-notice", "with-origin"])
def test_every_column_of_a_record_is_covered_by_its_hash(cookie_notice):
    record = dict(PINNED, **cookie_notice)
    original = consents.content_hash(record)
    for column in record:
        changed = dict(record, **{column: "changed"})
        assert consents.content_hash(changed) != original, column
    if not cookie_notice:
        for column in COOKIE_NOTICE:  # one later column set is enough to hash all three
            assert consents.content_hash(dict(record, **{column: "x"})) != original, column


def _checked_choice(app, **changes) -> consents.Choice:
    client = app.test_client()
    body = choice(config(client), **changes)
    store = open_store(app.config["DATABASE"])
    try:
        return consents.check_choice(body, store, app.config["LANGUAGES"], date.fromisoformat(TODAY), ORIGIN)
    finally:
        store.close()


def test_a_record_is_stamped_in_utc_and_counted_on_the_local_day(app):
    checked = _checked_choice(app, cookie_notice_version="2025-09-15")
    helsinki = ZoneInfo("Europe/Helsinki")
    late_evening = datetime(2026, 11, 22, 22, 30, tzinfo=timezone.utc)  # already the 23rd in Helsinki
    record = consents.build_record(checked, late_evening.astimezone(helsinki), "192.0.2.0", "Other / Other",
                                   zone=helsinki)
    assert record["recorded_at"] == "2026-11-22T22:30:00.000000Z"
    assert record["valid_until"] == "2027-11-22T22:30:00.000000Z"  # the site's 365 days
    assert record["day"] == "2026-11-23"
    assert consents.build_record(checked, late_evening, None, None)["day"] == "2026-11-22", "UTC by default"
    assert (record["cookie_notice_slug"], record["cookie_notice_version"]) == ("cookies", "2025-09-15")
    assert record["ip"] == "192.0.2.0" and record["user_agent"] == "Other / Other"
    assert record["content_hash"] == consents.content_hash(record)


def test_a_choice_recorded_twice_is_stored_once(app):
    checked = _checked_choice(app)
    store = open_store(app.config["DATABASE"])
    try:
        first, created = consents.record(store, checked, None, None)
        again, created_again = consents.record(store, checked, None, None)
    finally:
        store.close()
    assert created and not created_again
    assert again["consent_id"] == first["consent_id"] and UTC_STAMP.match(first["recorded_at"])


def test_an_event_replayed_under_another_subject_is_a_conflict_that_names_it(app, client):
    cfg = config(client)
    first = choice(cfg)
    assert post(client, first).status_code == 201
    second = post(client, choice(cfg)).get_json()  # another visitor, with a subject of its own
    replay = dict(first, subject_id=second["subject_id"])
    assert refusal(client, replay, 409) == (
        "event_id", "event_id was already used for a different choice (subject_id differ): make a new "
                    "event_id for each choice")


def test_a_consent_lasts_the_sites_consent_days(make_app):
    app = make_app()
    add_site(app, consent_days=30)
    client = app.test_client()
    answer = post(client, choice(config(client))).get_json()
    recorded, until = (datetime.strptime(answer[k], "%Y-%m-%dT%H:%M:%S.%fZ")
                       for k in ("recorded_at", "valid_until"))
    assert until - recorded == timedelta(days=30)
    assert UTC_STAMP.match(answer["recorded_at"]) and UTC_STAMP.match(answer["valid_until"])


def test_the_receipt_shows_the_visitor_their_record_and_nothing_else(app, client):
    cfg = config(client, lang="en")
    answer = post(client, choice(cfg, "custom", cookie_notice_version="2025-09-15", gpc=True, ui_surface="panel",
                                 choices={"necessary": True, "preferences": True, "analytics": False,
                                          "marketing": False})).get_json()
    row = rows(app)[0]
    receipt = consents.receipt(row)
    assert receipt == {
        "consent_id": answer["consent_id"], "site": "demo", "action": "custom",
        "choices": {"necessary": True, "preferences": True, "analytics": False, "marketing": False},
        "recorded_at": answer["recorded_at"], "valid_until": answer["valid_until"], "lang": "en",
        "ui_surface": "panel",
        "notice": {"slug": "privacy", "version": cfg["notices"]["privacy"]["version"], "sha256": row["notice_sha256"]},
        "cookie_notice": {"slug": "cookies", "version": "2025-09-15", "sha256": row["cookie_notice_sha256"]},
        "banner_hash": cfg["banner_hash"], "gpc": True,
    }
    older = post(client, choice(cfg)).get_json()
    body = client.get(f"/api/v1/consents/{older['consent_id']}").get_json()
    assert body["cookie_notice"] is None and body["gpc"] is False


# -- export ---------------------------------------------------------------------------


def test_export_writes_every_proof_column_one_line_per_record(app, client):
    cfg = config(client)
    post(client, choice(cfg, gpc=True, cookie_notice_version="2025-09-15", page="/päivä"))
    post(client, choice(cfg, "reject_all"))
    store = open_store(app.config["DATABASE"])
    try:
        text, jsonl = io.StringIO(), io.StringIO()
        steps = list(consents.export(store.iter_consents("demo"), text, "csv", _links))
        list(consents.export(store.iter_consents("demo"), jsonl, "jsonl", _links))
        with pytest.raises(ValueError, match=r"^unknown format 'xml': use csv or jsonl$"):
            list(consents.export(store.iter_consents("demo"), io.StringIO(), "xml", _links))
    finally:
        store.close()
    assert sum(steps) == 2, "one step per record written, for the progress bar"
    assert "\r" not in text.getvalue() and text.getvalue().count("\n") == 3
    table = list(csv.reader(io.StringIO(text.getvalue())))
    assert tuple(table[0]) == consents.EXPORT_COLUMNS
    stored = rows(app)
    assert [row[table[0].index("content_hash")] for row in table[1:]] == [r["content_hash"] for r in stored]
    lines = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert [tuple(line) for line in lines] == [consents.EXPORT_COLUMNS] * 2
    assert [line["gpc"] for line in lines] == [True, False]
    assert lines[1]["choices"] == {"necessary": True, "preferences": False, "analytics": False, "marketing": False}
    assert lines[0]["cookie_notice_version"] == "2025-09-15" and lines[1]["cookie_notice_version"] is None
    assert lines[0]["page"] == "/päivä" and '"/päivä"' in jsonl.getvalue(), "UTF-8, not \\u escapes"
    assert [(line["banner_url"], line["widget_url"]) for line in lines] == [_links(r) for r in stored]


def _links(row: dict) -> tuple[str, None]:
    """Where the export says the banner and widget of a row are (the CLI and admin give real URLs)."""
    return f"https://consent.example/banners/{row['banner_hash']}", None


# -- verify: every way the chain can fail -----------------------------------------------


def _db(app):
    return open_store(app.config["DATABASE"])


def _sql(app, *statements: str, drop: tuple[str, ...] = ()) -> None:
    """Write the database behind the store's back, as someone with the file could."""
    for statement in [f"DROP TRIGGER {trigger}" for trigger in drop] + list(statements):
        raw_sql(app, statement)


def _verify(app, expect=None) -> consents.VerifyResult:
    store = _db(app)
    try:
        return consents.verify(store, expect)
    finally:
        store.close()


def _record(client, n: int, cookie_notice: bool = False) -> list[dict]:
    cfg = config(client)
    extra = {"cookie_notice_version": "2025-09-15"} if cookie_notice else {}
    return [post(client, choice(cfg, **extra)).get_json() for _ in range(n)]


def _head(app) -> tuple[int, str]:
    store = _db(app)
    try:
        return tuple(raw_sql(store, "SELECT seq, row_hash FROM consent_chain ORDER BY seq DESC LIMIT 1")[0].values())
    finally:
        store.close()


def _erase(app, subject_id: str) -> None:
    result = app.test_cli_runner().invoke(args=["consents", "erase", "--subject", subject_id])
    assert result.exit_code == 0, result.output


def _broken(checked: int, removed: int, at: int, problem: str) -> consents.VerifyResult:
    return consents.VerifyResult(checked, removed, at, problem)


MISSING = "the record was deleted, but no erasure or purge in the chain lists it"


def test_an_empty_ledger_verifies(app):
    result = _verify(app)
    assert result == consents.VerifyResult(0, 0, None, None, None) and result.ok


def test_verify_counts_records_and_removals_across_several_erasures(app, client):
    answers = _record(client, 6)
    _erase(app, answers[1]["subject_id"])  # link 7 lists record 2
    _erase(app, answers[4]["subject_id"])  # link 8 lists record 5
    result = _verify(app)
    assert result == consents.VerifyResult(6, 2, None, None, _head(app)) and result.ok
    assert result.head[0] == 8
    assert _verify(app, expect=result.head).ok, "the head just printed is accepted as it is"


def test_a_record_deleted_between_two_erasures_is_found(app, client):
    answers = _record(client, 5)
    _erase(app, answers[0]["subject_id"])
    _erase(app, answers[4]["subject_id"])
    _sql(app, "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (3, 'erase', 'now')",
         "DELETE FROM consents WHERE seq = 3")
    result = _verify(app)
    assert result == _broken(2, 1, 3, MISSING) and not result.ok


def test_a_record_deleted_after_the_last_erasure_is_found(app, client):
    answers = _record(client, 4)
    _erase(app, answers[0]["subject_id"])  # the only range: record 1
    _sql(app, "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (3, 'erase', 'now')",
         "DELETE FROM consents WHERE seq = 3")
    assert _verify(app) == _broken(2, 1, 3, MISSING)


def test_a_removal_range_pointing_at_the_record_itself_does_not_excuse_its_deletion(app, client):
    _record(client, 4)
    _sql(app, "INSERT INTO removal_ranges (first, last, link_seq) VALUES (3, 3, 3)",
         "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (3, 'erase', 'now')",
         "DELETE FROM consents WHERE seq = 3")
    assert _verify(app) == _broken(2, 0, 3, MISSING)


def test_a_stray_removal_row_is_found_after_every_record_was_checked(app, client):
    """Found once the walk is done: the result still says how many records it verified and how many
    an erasure removed."""
    answers = _record(client, 3)
    _erase(app, answers[0]["subject_id"])  # link 4 lists record 1
    _sql(app, f"INSERT INTO removal_counts (link_seq, site, day, action, n) VALUES (2, 'demo', '{TODAY}', "
              "'accept_all', 5)")
    assert _verify(app) == _broken(3, 1, 2, "a removal row belongs to no erasure or purge in the chain")


def test_a_deleted_record_whose_link_stays_is_found(app, client):
    _record(client, 3)
    _sql(app, "DELETE FROM consents WHERE seq = 2", drop=("consents_delete_only_when_removed",))
    assert _verify(app) == _broken(1, 0, 2, "the record is missing and no erasure or purge removed it")


def test_a_cut_link_is_found_at_the_next_one(app, client):
    _record(client, 4)
    _sql(app, "DELETE FROM consent_chain WHERE seq = 2", drop=("consent_chain_no_delete",))
    assert _verify(app) == _broken(1, 0, 3, "its link to the previous record does not match")


def test_an_edited_row_hash_is_found(app, client):
    _record(client, 3)
    _sql(app, f"UPDATE consent_chain SET row_hash = '{'0' * 64}' WHERE seq = 3", drop=("consent_chain_no_update",))
    assert _verify(app) == _broken(2, 0, 3, "its chain hash does not match its content hash")


@pytest.mark.parametrize("column", consents.HASHED_COLUMNS + consents.LATER_HASHED_COLUMNS)
def test_an_edit_of_any_column_of_a_record_with_a_cookie_notice_is_found(app, client, column):
    _record(client, 3, cookie_notice=True)
    value = "1" if column == "gpc" else "x"
    _sql(app, f"UPDATE consents SET {column} = '{value}' WHERE seq = 2", drop=("consents_no_update",))
    assert _verify(app) == _broken(1, 0, 2, "the record's content was changed after it was recorded")


def test_a_stored_content_hash_that_disagrees_with_the_chain_is_found(app, client):
    _record(client, 2, cookie_notice=True)
    _sql(app, f"UPDATE consents SET content_hash = '{'0' * 64}' WHERE seq = 2", drop=("consents_no_update",))
    assert _verify(app) == _broken(1, 0, 2, "the record's content was changed after it was recorded")


def _forge_removal_link(app, ranges: list[tuple[int, int]]) -> int:
    """Chain a removal link at the end, its hashes right, listing `ranges`: the forger's best effort."""
    seq, prev = _head(app)
    seq += 1
    content = removal_digest("erase", "2026-11-22T00:00:00.000000Z", ranges)
    _sql(app, f"INSERT INTO removal_links (seq, reason, removed_at, ranges) "
              f"VALUES ({seq}, 'erase', '2026-11-22T00:00:00.000000Z', {len(ranges)})",
         *[f"INSERT INTO removal_ranges (first, last, link_seq) VALUES ({first}, {last}, {seq})"
           for first, last in ranges],
         f"INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) "
         f"VALUES ({seq}, '{content}', '{prev}', '{chain_hash(prev, content)}')")
    return seq


@pytest.mark.parametrize("listing", ["nothing", "itself", "later"])
def test_a_removal_link_must_list_earlier_records(app, client, listing):
    _record(client, 2)
    ranges = {"nothing": [], "itself": [(3, 3)], "later": [(4, 5)]}[listing]
    seq = _forge_removal_link(app, ranges)
    assert _verify(app) == _broken(2, 0, seq, "the removal lists no records, or records after itself")


def test_a_removal_link_listing_earlier_records_verifies(app, client):
    """The forger's link above, listing a record that really was removed, is a well-formed link."""
    _record(client, 2)
    _sql(app, "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (2, 'erase', 'now')",
         "DELETE FROM consents WHERE seq = 2")
    _forge_removal_link(app, [(2, 2)])
    assert _verify(app) == consents.VerifyResult(2, 1, None, None, _head(app))


def test_a_record_added_outside_the_chain_is_found(app, client):
    _record(client, 2, cookie_notice=True)
    columns = [c for c in rows(app)[0] if c not in ("seq", "consent_id", "event_id")]
    listed = ", ".join(columns)
    _sql(app, f"INSERT INTO consents (seq, consent_id, event_id, {listed}) "
              f"SELECT 7, '{'e' * 32}', '{uuid.uuid4()}', {listed} FROM consents WHERE seq = 1")
    assert _verify(app) == _broken(2, 0, 7, "a record was added outside the chain")


def test_a_head_recorded_earlier_must_still_be_in_the_chain(app, client):
    _record(client, 4)
    earlier = _head(app)
    assert _verify(app, expect=(2, "0" * 64)) == _broken(
        2, 0, 2, "the chain no longer passes through the head recorded earlier: it was rewritten")
    # Cut back to record 2: what remains verifies on its own, but not against the head kept elsewhere.
    _sql(app, "DELETE FROM consent_chain WHERE seq > 2", "DELETE FROM consents WHERE seq > 2",
         drop=("consent_chain_no_delete", "consents_delete_only_when_removed"))
    assert _verify(app).ok
    ends = "the chain ends before the head recorded earlier"
    assert _verify(app, expect=earlier) == _broken(2, 0, 4, ends)
    _sql(app, "DELETE FROM consent_chain", "DELETE FROM consents")
    assert _verify(app, expect=earlier) == _broken(0, 0, 4, ends)


# -- verify: the exact problem named, and heads before a rebuilt start ---------------------
# (tests/test_ledger_proof.py checks the same tampering through the CLI, by a part of each message)


def _append_forged(app, client, **fields) -> int:
    """Chain a record whose fields are set as given and whose hashes are right: a forger's record."""
    cfg = config(client)
    store = _db(app)
    try:
        checked = consents.check_choice(choice(cfg), store, ["fi", "sv", "en"], date.fromisoformat(TODAY),
                                        ORIGIN)
        record = consents.build_record(checked, datetime.now(timezone.utc), None, None)
        record.update(fields)
        record["content_hash"] = consents.content_hash(record)
        return store.append_consent(checked.event_id, lambda last: record)[0]["seq"]
    finally:
        store.close()


def test_a_record_whose_time_is_no_time_is_found(app, client):
    _record(client, 2)
    seq = _append_forged(app, client, recorded_at="yesterday")
    assert _verify(app) == _broken(2, 0, seq, "the record's time is not a valid time")


@pytest.mark.parametrize("recorded_at", ["2026-01-01T00:00:00.000000Z", "2099-01-01T00:00:00"],
                         ids=["earlier", "without a zone"])
def test_a_record_dated_before_its_predecessor_or_without_a_zone_is_found(app, client, recorded_at):
    _record(client, 2)
    seq = _append_forged(app, client, recorded_at=recorded_at)
    assert _verify(app) == _broken(2, 0, seq, "the record is dated before the record chained ahead of it: "
                                              "it was appended out of time order")


def test_a_removal_whose_counts_were_edited_is_found(app, client):
    answers = _record(client, 3)
    _erase(app, answers[0]["subject_id"])  # link 4 lists record 1
    _sql(app, "UPDATE removal_counts SET n = n + 1", drop=("removal_counts_no_update",))
    assert _verify(app) == _broken(3, 1, 4, "the removal's list of records was changed")


def test_an_erased_record_put_back_is_found_at_its_place(app, client):
    answers = _record(client, 3)
    _sql(app, "CREATE TABLE kept AS SELECT * FROM consents WHERE seq = 1")
    _erase(app, answers[0]["subject_id"])
    _sql(app, "INSERT INTO consents SELECT * FROM kept", "DELETE FROM consent_removals WHERE seq = 1")
    assert _verify(app) == _broken(0, 0, 1, "the record is held, but an erasure or purge in the chain lists it "
                                            "as removed: it was put back")


def test_a_head_at_the_first_link_is_missed_by_a_chain_rebuilt_without_it(app, client):
    """Record 1 deleted and the rest rechained from the start: the chain verifies on its own, but
    not against a head kept at record 1 (the first link seen now is record 2, past that head)."""
    _record(client, 3)
    first = tuple(raw_sql(app, "SELECT seq, row_hash FROM consent_chain WHERE seq = 1")[0].values())
    links = raw_sql(app, "SELECT seq, content_hash FROM consent_chain ORDER BY seq")
    _sql(app, "DELETE FROM consent_chain WHERE seq = 1", "DELETE FROM consents WHERE seq = 1",
         drop=("consent_chain_no_delete", "consent_chain_no_update", "consents_delete_only_when_removed"))
    prev = GENESIS_HASH
    for link in links[1:]:
        row_hash = chain_hash(prev, link["content_hash"])
        _sql(app, f"UPDATE consent_chain SET prev_hash = '{prev}', row_hash = '{row_hash}' WHERE seq = {link['seq']}")
        prev = row_hash
    assert _verify(app).ok
    assert _verify(app, expect=first) == _broken(
        1, 0, 2, "the chain no longer passes through the head recorded earlier: it was rewritten")


# -- erasure and purge count the removed records on the day of the configured zone ---------------


HELSINKI = ZoneInfo("Europe/Helsinki")
LATE_EVENING = datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc)  # 2 March in Helsinki


def test_a_records_day_is_taken_in_the_zone_given():
    assert consents.day_of_in(HELSINKI)("2026-03-01T23:30:00.000000Z") == "2026-03-02"
    assert consents.day_of_in(timezone.utc)("2026-03-01T23:30:00.000000Z") == "2026-03-01"


def _removed_days(app, link_seq: int) -> list[tuple]:
    store = _db(app)
    try:
        return [tuple(row) for row in store.removal_counts(link_seq)[0]]
    finally:
        store.close()


def _record_late(app, client) -> dict:
    store = _db(app)
    try:
        checked = consents.check_choice(choice(config(client)), store, ["fi", "sv", "en"],
                                        date.fromisoformat(TODAY), ORIGIN)
        return consents.record(store, checked, None, None, now=LATE_EVENING, zone=HELSINKI)[0]
    finally:
        store.close()


def test_a_choice_is_counted_on_the_zones_day(app, client):
    _record_late(app, client)
    assert [tuple(r.values()) for r in raw_sql(app, "SELECT day, action, n FROM consent_daily")] == [
        ("2026-03-02", "accept_all", 1)]


def test_a_lone_surrogate_is_refused_in_so_many_words(app, client):
    assert refusal(client, '{"site": "\\ud800"}') == (
        "body", "body holds a lone surrogate (\\ud800-\\udfff), which is not text")


def test_an_erasure_takes_its_counts_off_the_zones_day(app, client):
    row = _record_late(app, client)
    store = _db(app)
    try:
        assert consents.erase(store, row["subject_id"], "tests", HELSINKI) == 1
    finally:
        store.close()
    assert _removed_days(app, 2) == [("demo", "2026-03-02", "accept_all", 1)]


def test_a_purge_takes_its_counts_off_the_zones_day(app, client):
    row = _record_late(app, client)
    store = _db(app)
    try:
        moved_on = datetime.fromisoformat(row["valid_until"]) + timedelta(days=1)
        assert consents.purge(store, 0, "tests", HELSINKI, now=moved_on) == (1, record_text(moved_on))
    finally:
        store.close()
    assert _removed_days(app, 2) == [("demo", "2026-03-02", "accept_all", 1)]


# -- small things a person reads -------------------------------------------------------


def test_a_refusal_reads_as_its_sentence():
    refusal_ = consents.InvalidChoice("page", "is too long")
    assert str(refusal_) == refusal_.message == "page is too long" and refusal_.status == 400


@pytest.mark.parametrize("page, kept", [(None, "/"), ("", "/"), ("/a/b?q=1", "/a/b?q=1"),
                                         ("a/b", "/"), ("//evil.example/x", "/")])
def test_the_change_link_opens_the_panel_on_the_page_or_the_home_page(page, kept):
    urls = consents.change_urls({"page": page}, ["https://a.example", "https://b.example"])
    assert urls == [f"https://a.example{kept}#keksi-settings", f"https://b.example{kept}#keksi-settings"]


def test_json_lines_are_compact_and_counted_one_step_a_record(app, client):
    _record(client, 2)
    store = _db(app)
    try:
        out = io.StringIO()
        steps = list(consents.export(store.iter_consents("demo"), out, "jsonl", _links))
    finally:
        store.close()
    assert steps == [1, 1]
    for line in out.getvalue().splitlines():
        assert line == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":"))
