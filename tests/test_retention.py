"""Retention: counted from when a consent stopped being in force; purged daily inside Keksi."""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app import create_app
from keksi import consents, retention
from keksi.store import PURGE_WHERE, open_store

from .conftest import BOTH, PASSWORD, TODAY, add_user, raw_sql, sign_in
from .ledger import ORIGIN, add_site, choice, config, count_rows, tamper
from .test_ledger_gunicorn import prepare, start

BACKENDS = BOTH

NOW = datetime.now(timezone.utc)
LONG_AGO = NOW - timedelta(days=745)  # RETENTION_DAYS (730) + 15


def record_at(app, cfg: dict, moment: datetime, action: str = "accept_all", **changes) -> dict:
    """Record a choice as if made at `moment` (records must be appended in time order)."""
    store = open_store(app.config["DATABASE"])
    try:
        checked = consents.check_choice(choice(cfg, action, **changes), store, ["fi", "sv", "en"],
                                        datetime.fromisoformat(TODAY).date(), ORIGIN)
        return consents.record(store, checked, None, None, now=moment)[0]
    finally:
        store.close()


def set_last_purge(app, moment: datetime) -> None:
    tamper(app, f"UPDATE maintenance SET last_run_at = '{moment.isoformat(timespec='microseconds')}' "
                "WHERE task = 'purge'")


def remaining(app) -> set[str]:
    store = open_store(app.config["DATABASE"])
    try:
        return {row["consent_id"] for row in store.iter_consents()}
    finally:
        store.close()


def purge_runs(app) -> list[dict]:
    store = open_store(app.config["DATABASE"])
    try:
        return [entry for entry in store.audit_log() if entry["action"] == "consents.purge"]
    finally:
        store.close()


@pytest.fixture
def app(make_app):
    app = make_app(AUTO_PURGE=False)
    add_site(app)
    add_site(app, id="other", name="Other")
    return app


def test_retention_of_a_replaced_or_withdrawn_consent_counts_from_then_not_from_its_expiry(app, client):
    demo, other = config(client), config(client, site="other")
    withdrawn = record_at(app, demo, LONG_AGO)
    untouched = record_at(app, demo, LONG_AGO)
    elsewhere = record_at(app, demo, LONG_AGO)
    # Ten days later: the first visitor withdraws on the same site; the third chooses on another site.
    withdrawal = record_at(app, demo, LONG_AGO + timedelta(days=10), "withdraw", subject_id=withdrawn["subject_id"])
    record_at(app, other, LONG_AGO + timedelta(days=10), subject_id=elsewhere["subject_id"])
    # All expire 365 days after they were made, about 380 days ago: under 730 days, so kept, except
    # the withdrawn one, out of force since its withdrawal 735 days ago.
    result = app.test_cli_runner().invoke(args=["consents", "purge"])
    assert result.exit_code == 0 and "purged 1 records" in result.output, result.output
    assert withdrawn["consent_id"] not in remaining(app)
    assert {untouched["consent_id"], elsewhere["consent_id"], withdrawal["consent_id"]} <= remaining(app)
    verified = app.test_cli_runner().invoke(args=["consents", "verify"])
    assert verified.exit_code == 0 and "figures ok" in verified.output, verified.output


@pytest.mark.sqlite_only
def test_the_purge_finds_each_records_successor_through_the_subject_index(app):
    """Through the (site, seq) index it read every later record of the site for each record."""
    plan = " ".join(row[-1] for row in raw_sql(
        app, f"EXPLAIN QUERY PLAN SELECT seq FROM consents c WHERE {PURGE_WHERE}", ["x", "x"]))
    assert "SEARCH n USING INDEX idx_consents_subject_id (subject_id=?)" in plan, plan


def test_healthz_and_the_dashboard_warn_in_the_readers_language_when_purging_is_overdue(app, client):
    assert client.get("/healthz").get_json()["status"] == "ok", "a new install is not overdue"
    set_last_purge(app, NOW - timedelta(days=3))
    answers = {lang: client.get("/healthz", headers={"Accept-Language": lang}) for lang in ("fi", "sv", "en")}
    bodies = {lang: answer.get_json() for lang, answer in answers.items()}
    assert all(answer.status_code == 200 for answer in answers.values()), "the site still works"
    assert {body["status"] for body in bodies.values()} == {"warning"}
    assert bodies["en"]["retention"]["overdue"] is True
    day = (NOW - timedelta(days=3)).date()
    assert f"since {day.day} {day.strftime('%B')} {day.year}" in bodies["en"]["warnings"][0]
    assert f"{day.day}.{day.month}.{day.year}" in bodies["fi"]["warnings"][0]
    assert len({body["warnings"][0] for body in bodies.values()}) == 3, "one text per language"
    add_user(app, "legal@example.fi", "legal")
    sign_in(client, "legal@example.fi")
    assert bodies["en"]["warnings"][0] in client.get("/admin/").get_data(as_text=True)
    set_last_purge(app, NOW)
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert 'id="purge-warning"' not in client.get("/admin/").get_data(as_text=True)


def test_the_scheduled_purge_runs_in_the_background_when_a_request_arrives(make_app):
    app = make_app()  # KEKSI_AUTO_PURGE is on by default
    add_site(app)
    client = app.test_client()
    old = record_at(app, config(client), LONG_AGO - timedelta(days=400))  # expired 780 days ago
    kept = record_at(app, config(client), NOW)
    time.sleep(0.2)  # let the first check (last purge: at install, so not due) finish
    assert count_rows(app) == 2
    set_last_purge(app, NOW - timedelta(days=3))
    scheduled = make_app(publish=False, DATABASE=app.config["DATABASE"])  # a worker started later
    assert scheduled.test_client().get("/fi/").status_code == 200
    deadline = time.monotonic() + 30
    while remaining(app) != {kept["consent_id"]} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert remaining(app) == {kept["consent_id"]}, old["consent_id"]
    runs = purge_runs(app)
    assert [(run["actor"], run["detail"]) for run in runs] == [(retention.ACTOR, {"rows": 1})]
    assert scheduled.test_client().get("/healthz").get_json()["status"] == "ok"


def test_of_several_processes_checking_at_once_one_purges(app, client):
    record_at(app, config(client), LONG_AGO - timedelta(days=400))
    set_last_purge(app, NOW - timedelta(days=3))
    barrier, results = threading.Barrier(6), []

    def worker() -> None:
        store = open_store(app.config["DATABASE"])
        try:
            barrier.wait(timeout=30)
            results.append(retention.purge_if_due(store, 730, ZoneInfo("Europe/Helsinki")))
        finally:
            store.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results, key=str) == [1] + [None] * 5
    assert len(purge_runs(app)) == 1
    store = open_store(app.config["DATABASE"])
    try:
        assert retention.purge_if_due(store, 730, timezone.utc) is None, "not due again"
    finally:
        store.close()


def test_a_claim_left_by_a_worker_that_died_expires(app, client):
    set_last_purge(app, NOW - timedelta(days=3))
    store = open_store(app.config["DATABASE"])
    try:
        claim = lambda now: store.claim_task("purge", retention.utc_text(now), retention.utc_text(now - retention.INTERVAL),
                                             retention.utc_text(now + retention.CLAIM))
        assert claim(NOW) and not claim(NOW + timedelta(minutes=5))
        assert claim(NOW + retention.CLAIM + timedelta(seconds=1))
    finally:
        store.close()


@pytest.mark.browser
def test_legal_sees_the_overdue_purge_on_the_dashboard_in_finnish(app, page, live_server):
    add_user(app, "legal@example.fi", "legal")
    set_last_purge(app, NOW - timedelta(days=5))
    page.goto(f"{live_server.url}/admin/login?lang=fi")
    page.locator("#email").fill("legal@example.fi")
    page.locator("#password").fill(PASSWORD)
    page.locator("form.admin-form button[type=submit]").click()
    page.wait_for_url(f"{live_server.url}/admin/")
    warning = page.locator("#purge-warning")
    day = (NOW - timedelta(days=5)).date()
    assert f"{day.day}.{day.month}.{day.year}" in warning.inner_text(timeout=15_000)
    assert warning.inner_text() == client_warning(app, "fi")


def client_warning(app, lang: str) -> str:
    return app.test_client().get("/healthz", headers={"Accept-Language": lang}).get_json()["warnings"][0]


def test_under_gunicorn_one_of_several_workers_purges_once(tmp_path):
    """The deployment as the README runs it: 3 workers, requests arriving at all of them at once."""
    env = prepare(tmp_path)
    setup = create_app({"TESTING": True, "DATABASE": env["KEKSI_DATABASE"], "SECRET_KEY": "x",
                        "FIXED_TODAY": TODAY, "AUTO_PURGE": False})
    record_at(setup, config(setup.test_client()), LONG_AGO - timedelta(days=400))
    set_last_purge(setup, NOW - timedelta(days=3))
    process = start(env, workers=3)  # its first request already checks
    try:
        port = int(env["PORT"])
        threads = [threading.Thread(target=_get_json, args=(port, "/healthz")) for _ in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        deadline = time.monotonic() + 30
        while count_rows(setup) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count_rows(setup) == 0
        assert _get_json(port, "/healthz")["status"] == "ok"
        assert len(purge_runs(setup)) == 1
    finally:
        process.terminate()
        process.wait(timeout=20)


def _get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


@pytest.mark.sqlite_only  # SQLite's migrations; PostgreSQL's: test_postgresql_backend.py
def test_healthz_names_a_pending_migration_before_reading_the_schedule(app, client):
    tamper(app, "DROP TABLE maintenance; DELETE FROM _sqlite_migrations WHERE name = '0008_ledger_proof';")
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json() == {"status": "error", "database": "ok", "pending_migrations": ["0008_ledger_proof"]}
