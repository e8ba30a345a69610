"""The ledger's commands: sites, the hash chain, export, erasure and retention."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from keksi import consents
from keksi.store import open_store
from keksi.store.chain import chain_hash

from .conftest import BOTH, raw_sql
from .ledger import DEMO_SITE, ROOT, add_site, choice, config, count_rows, post, printed, record_some, tamper

BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    app = make_app()
    add_site(app)
    return app


def test_sites_round_trip_through_show_edit_and_add(make_app, tmp_path):
    app = make_app()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sites", "add", str(ROOT / "sites" / "demo.json")])
    assert result.exit_code == 0, result.output
    shown = runner.invoke(args=["sites", "show", "demo", "--format", "json"])
    assert json.loads(shown.output) == DEMO_SITE
    changed = dict(DEMO_SITE, name="Renamed", origins=["https://www.example.fi"])
    (tmp_path / "demo.json").write_text(json.dumps(changed), encoding="utf-8")
    assert runner.invoke(args=["sites", "edit", "demo", str(tmp_path / "demo.json")]).exit_code == 0
    assert json.loads(runner.invoke(args=["sites", "show", "demo", "--format", "json"]).output) == changed
    (tmp_path / "other.toml").write_text(
        'id = "other"\nname = "Other"\norigins = ["https://other.example"]\n'
        '[[categories]]\nid = "necessary"\n', encoding="utf-8")
    assert runner.invoke(args=["sites", "add", str(tmp_path / "other.toml")]).exit_code == 0
    listing = runner.invoke(args=["sites", "list"]).output
    assert "demo\tRenamed" in listing and "other\tOther" in listing
    text = runner.invoke(args=["sites", "show", "demo"]).output
    assert "analytics: _pk_id.*, _pk_ses.*" in text
    assert runner.invoke(args=["sites", "remove", "other"]).exit_code == 0
    assert "other" not in runner.invoke(args=["sites", "list"]).output


@pytest.mark.parametrize("change, message", [
    ({"origins": ["javascript:alert(1)"]}, "origins[0]"),
    ({"origins": ["*"]}, "origins[0]"),
    ({"origins": ["https://*.example.fi"]}, "origins[0]"),
    ({"origins": ["https://example.fi/path"]}, "origins[0]"),
    ({"origins": ["https://a.fi", "https://A.fi:443"]}, "listed twice"),
    ({"origins": []}, "origins"),
    ({"id": "Bad Id"}, "id:"),
    ({"consent_days": 0}, "consent_days"),
    ({"consent_days": 396}, "at most 13 months"),  # CNIL's 13 months, the longest a consent lasts
    ({"default_language": "de"}, "default_language"),
    ({"notices": {"privacy": "nope", "cookies": "cookies"}}, "notices.privacy"),
    ({"categories": [{"id": "analytics"}]}, "'necessary'"),
    ({"categories": [{"id": "necessary"}, {"id": "necessary"}]}, "listed twice"),
    ({"categories": [{"id": "necessary"}, {"id": "social"}]}, "categories[1].label"),
    ({"categories": [{"id": "necessary", "services": [{"name": "X", "provider": "Y", "cookies": [
        {"name": "a b", "provider": "Y", "purpose": "p", "duration": "forever"}]}]}]},
     "cookies[0].duration"),
    ({"categories": [{"id": "necessary", "services": [{"name": "X", "provider": "Y", "cookies": [
        {"name": "a", "provider": "Y", "purpose": {"fi": "p"}, "duration": "P1D"}]}]}]},
     "missing: sv, en"),
    ({"colour": "red"}, "colour: is not a site field"),
])
def test_invalid_site_definitions_are_refused_naming_the_field(make_app, tmp_path, change, message):
    app = make_app()
    path = tmp_path / "site.json"
    path.write_text(json.dumps(dict(DEMO_SITE, **change)), encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["sites", "add", str(path)])
    assert result.exit_code == 1
    assert message in result.output
    assert app.test_cli_runner().invoke(args=["sites", "list"]).output == ""


def test_duplicate_site_and_broken_file_are_refused(app, tmp_path):
    runner = app.test_cli_runner()
    duplicate = runner.invoke(args=["sites", "add", str(ROOT / "sites" / "demo.json")])
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    broken = runner.invoke(args=["sites", "add", str(tmp_path / "broken.json")])
    assert broken.exit_code == 1 and "not valid JSON" in broken.output


def test_a_site_with_consents_cannot_be_removed(app, client):
    record_some(client, 1)
    result = app.test_cli_runner().invoke(args=["sites", "remove", "demo"])
    assert result.exit_code == 1 and "recorded consents" in result.output


def test_verify_passes_on_an_honest_ledger(app, client):
    record_some(client, 5)
    result = app.test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 0 and "5 records verified" in result.output


def test_verify_finds_an_edited_row(app, client):
    record_some(client, 5)
    tamper(app, "UPDATE consents SET action = 'accept_all', choices = '{}' WHERE seq = 3",
            "consents_no_update")
    result = app.test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 1
    assert "broken at record 3" in result.output and "content was changed" in result.output


def test_records_with_and_without_a_cookie_notice_version_verify_and_an_edit_of_it_is_found(app, client):
    """The cookie notice columns came later: rows without them keep their original hash."""
    cfg = config(client)
    post(client, choice(cfg))
    post(client, choice(cfg, cookie_notice_version=cfg["notices"]["cookies"]["version"]))
    runner = app.test_cli_runner()
    assert "2 records verified" in runner.invoke(args=["consents", "verify"]).output
    tamper(app, "UPDATE consents SET cookie_notice_version = '2026-04-09' WHERE seq = 2", "consents_no_update")
    result = runner.invoke(args=["consents", "verify"])
    assert result.exit_code == 1 and "broken at record 2" in result.output


def test_verify_finds_a_deleted_row_and_a_rewritten_chain(app, client):
    record_some(client, 4)
    tamper(app, "DELETE FROM consent_chain WHERE seq = 2", "consent_chain_no_delete")
    result = app.test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 1 and "broken at record 3" in result.output


def test_a_head_recorded_earlier_shows_a_rebuilt_chain(app, client):
    """Someone with the database rewrites a record and rebuilds every hash after it."""
    record_some(client, 3)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["consents", "verify"])
    head = printed(first.output, "chain head")
    assert head.startswith("3:")
    later = record_some(client, 2)
    runner.invoke(args=["consents", "erase", "--subject", later[0]["subject_id"]])
    since = runner.invoke(args=["consents", "verify", "--head", head])
    assert since.exit_code == 0 and "removed since the head: link 6, erase of 1 records" in since.output
    # Record 2 rewritten, its content hash and the chain after it recomputed.
    tamper(app, "UPDATE consents SET page = '/rewritten' WHERE seq = 2", "consents_no_update", "consent_chain_no_update")
    prev = raw_sql(app, "SELECT row_hash FROM consent_chain WHERE seq = 1")[0]["row_hash"]
    for link in raw_sql(app, "SELECT seq, content_hash FROM consent_chain WHERE seq >= 2 ORDER BY seq"):
        row = next(iter(raw_sql(app, "SELECT * FROM consents WHERE seq = ?", [link["seq"]])), None)
        digest = consents.content_hash(row) if row else link["content_hash"]  # removals keep theirs
        if row:
            raw_sql(app, "UPDATE consents SET content_hash = ? WHERE seq = ?", [digest, row["seq"]])
        prev_new = chain_hash(prev, digest)
        raw_sql(app, "UPDATE consent_chain SET content_hash = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
                [digest, prev, prev_new, link["seq"]])
        prev = prev_new
    assert runner.invoke(args=["consents", "verify"]).exit_code == 0, "rebuilt: it verifies on its own"
    rewritten = runner.invoke(args=["consents", "verify", "--head", head])
    assert rewritten.exit_code == 1 and "rewritten" in rewritten.output
    assert runner.invoke(args=["consents", "verify", "--head", "3:nothex"]).exit_code == 2


def test_a_record_deleted_with_a_forged_removal_mark_is_found(app, client):
    """Without dropping any trigger: mark a record removed by hand, then delete it."""
    record_some(client, 4)
    raw_sql(app, "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (2, 'erase', 'now')")
    raw_sql(app, "DELETE FROM consents WHERE seq = 2")
    result = app.test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 1, result.output
    assert "broken at record 2" in result.output and "no erasure or purge in the chain lists it" in result.output


def test_an_edited_list_of_removed_records_is_found(app, client):
    answers = record_some(client, 4)
    runner = app.test_cli_runner()
    runner.invoke(args=["consents", "erase", "--subject", answers[1]["subject_id"]])
    assert "4 records verified, 1 of them erased" in runner.invoke(args=["consents", "verify"]).output
    tamper(app, "UPDATE removal_ranges SET last = last + 1", "removal_ranges_no_update")
    result = runner.invoke(args=["consents", "verify"])
    # Found at the first place it shows: record 3, still held, is now listed as removed.
    assert result.exit_code == 1 and "broken at record 3" in result.output
    assert "lists it as removed" in result.output


@pytest.mark.sqlite_only
def test_removals_made_before_they_were_chained_are_chained_by_the_migration(make_app):
    """A ledger from before migration 0007, with an erasure made the old way, still verifies."""
    app = make_app()
    add_site(app)
    client = app.test_client()
    record_some(client, 3)
    raw_sql(  # back to the schema before 0007, then an erasure as it was done then
        app, "DROP TABLE removal_links; DROP TABLE removal_ranges;"
        "DELETE FROM _sqlite_migrations WHERE name = '0007_chained_removals';"
        "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (2, 'erase', '2026-11-01');"
        "DELETE FROM consents WHERE seq = 2;", script=True)
    migrated = make_app(DATABASE=app.config["DATABASE"])  # the app migrates on start
    result = migrated.test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 0 and "3 records verified, 1 of them erased" in result.output, result.output
    assert [(r["reason"], r["ranges"]) for r in raw_sql(app, "SELECT * FROM removal_links")] == [
        ("before-chaining", 1)]
    store = open_store(app.config["DATABASE"])
    try:
        assert list(store.removal_ranges()) == [(2, 2, 4)]
    finally:
        store.close()
    assert post(migrated.test_client(), choice(config(migrated.test_client()))).status_code == 201


def test_erasure_removes_a_subject_and_keeps_the_chain_verifiable(app, client):
    cfg = config(client)
    mine = post(client, choice(cfg)).get_json()
    post(client, choice(cfg, "withdraw", subject_id=mine["subject_id"]))
    other = post(client, choice(cfg)).get_json()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consents", "erase", "--subject", mine["subject_id"]])
    assert result.exit_code == 0 and "erased 2 records" in result.output
    assert count_rows(app) == 1
    assert client.get(f"/api/v1/consents/{mine['consent_id']}").status_code == 404
    assert client.get(f"/api/v1/consents/{other['consent_id']}").status_code == 200
    verify = runner.invoke(args=["consents", "verify"])
    assert verify.exit_code == 0 and "2 of them erased" in verify.output
    store = open_store(app.config["DATABASE"])
    log = store.audit_log()
    store.close()
    assert log[0]["action"] == "consents.erase"
    assert mine["subject_id"] not in json.dumps(log), "the audit entry holds no personal data"
    bad = runner.invoke(args=["consents", "erase", "--subject", "not-an-id"])
    assert bad.exit_code == 2


def test_erasure_by_a_consent_id_the_visitor_quotes_removes_all_their_records(app, client):
    """The widget and the receipt show a visitor their consent id, not their subject id."""
    cfg = config(client)
    first = post(client, choice(cfg)).get_json()
    later = post(client, choice(cfg, "withdraw", subject_id=first["subject_id"])).get_json()
    other = post(client, choice(cfg)).get_json()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consents", "erase", "--consent", later["consent_id"]])
    assert result.exit_code == 0 and "erased 2 records" in result.output, result.output
    assert client.get(f"/api/v1/consents/{first['consent_id']}").status_code == 404
    assert client.get(f"/api/v1/consents/{other['consent_id']}").status_code == 200
    again = runner.invoke(args=["consents", "erase", "--consent", later["consent_id"]])
    assert again.exit_code == 1 and "there is no consent" in again.output
    both = runner.invoke(args=["consents", "erase", "--consent", other["consent_id"],
                               "--subject", other["subject_id"]])
    neither = runner.invoke(args=["consents", "erase"])
    assert both.exit_code == neither.exit_code == 2 and "exactly one" in both.output
    assert count_rows(app) == 1


def test_purge_deletes_only_records_expired_long_enough(app, client):
    store = open_store(app.config["DATABASE"])
    cfg = config(client)
    site = store.site("demo")
    long_ago = datetime.now(timezone.utc) - timedelta(days=365 + 800)
    recently = datetime.now(timezone.utc) - timedelta(days=365 + 100)
    for moment in (long_ago, recently, None):
        body = choice(cfg)
        checked = consents.check_choice(body, store, ["fi", "sv", "en"],
                                        datetime.now().date(), "http://localhost:8000")
        consents.record(store, checked, None, None, now=moment)
    store.close()
    assert site["consent_days"] == 365
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consents", "purge"])  # default: 730 days after expiry
    assert result.exit_code == 0 and "purged 1 records" in result.output
    assert count_rows(app) == 2
    result = runner.invoke(args=["consents", "purge", "--older-than", "30"])
    assert "purged 1 records" in result.output
    assert runner.invoke(args=["consents", "verify"]).exit_code == 0


def test_export_csv_and_jsonl(app, client, tmp_path):
    answers = record_some(client, 3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consents", "export", "--site", "demo", "--format", "csv"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["consent_id"] for r in rows] == [a["consent_id"] for a in answers]
    assert rows[0]["notice_sha256"] and rows[0]["content_hash"] and rows[0]["banner_hash"]
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(args=["consents", "export", "--site", "demo", "--format", "jsonl", "-o", str(out)])
    assert result.exit_code == 0 and "exported 3 records" in result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["action"] for line in lines] == ["accept_all", "reject_all", "accept_all"]
    assert lines[0]["choices"]["marketing"] is True and lines[1]["choices"]["marketing"] is False
    future = runner.invoke(args=["consents", "export", "--site", "demo", "--since", "2999-01-01"])
    assert future.exit_code == 0 and future.stdout.strip() == ",".join(consents.EXPORT_COLUMNS)
    past = runner.invoke(args=["consents", "export", "--site", "demo", "--until", "2000-01-01",
                               "--format", "jsonl"])
    assert past.stdout == ""
    bad = runner.invoke(args=["consents", "export", "--site", "demo", "--since", "yesterday"])
    assert bad.exit_code == 2 and "not a date" in bad.output
    unknown = runner.invoke(args=["consents", "export", "--site", "nope"])
    assert unknown.exit_code == 1 and "no site" in unknown.output
