"""The proof has no side doors: tampering by someone who can write the database file is reported.

Each test changes the database as such a person could (dropping triggers where needed, or
writing only rows the triggers allow) and checks that `flask consents verify` names it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from keksi import consents
from keksi.store import open_store

from .conftest import BOTH, Refused, TODAY, raw_sql
from .ledger import add_site, choice, config, post, printed, record_some, tamper

BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    app = make_app()
    add_site(app)
    return app


def verify(app, *args: str):
    return app.test_cli_runner().invoke(args=["consents", "verify", *args])


def assert_reported(app, *expected: str) -> None:
    result = verify(app)
    assert result.exit_code == 1, result.output
    for text in expected:
        assert text in result.output, result.output


# -- removals -----------------------------------------------------------------------


@pytest.mark.parametrize("link_seq", [4, 99], ids=["a consent link", "past the end"])
def test_a_record_deleted_behind_a_hand_made_range_is_found(app, client, link_seq):
    """Without dropping any trigger: a removal mark and a range naming a link that is no removal."""
    record_some(client, 4)
    tamper(app, "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (2, 'erase', 'now');"
                f"INSERT INTO removal_ranges (first, last, link_seq) VALUES (2, 2, {link_seq});"
                "DELETE FROM consents WHERE seq = 2;")
    assert_reported(app, "a removal row belongs to no erasure or purge in the chain")


_COPY_RECORD = ("INSERT INTO consents SELECT {seq}, {consent_id}, {event_id}, subject_id, site, action, choices, "
                "ui_surface, lang, page, notice_slug, notice_version, notice_sha256, banner_hash, widget_version, "
                "ip, user_agent, gpc, recorded_at, valid_until, content_hash, cookie_notice_slug, "
                "cookie_notice_version, cookie_notice_sha256, origin FROM {source} WHERE seq = {from_seq};")


def test_a_record_forged_at_a_removal_link_s_place_is_found(app, client):
    """A removal link holds no record: a row put at its seq is outside the chain, even with the
    figures raised to match it."""
    answers = record_some(client, 3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consents", "erase", "--subject", answers[0]["subject_id"]]).exit_code == 0
    tamper(app, _COPY_RECORD.format(seq=4, consent_id="'forged-consent'",
                                    event_id="'forged-event'", source="consents", from_seq=2)
           + "UPDATE consent_daily SET n = n + 1 WHERE action = 'reject_all';"
             "UPDATE consent_daily_categories SET total = total + 1, "
             "granted = granted + CASE WHEN category = 'necessary' THEN 1 ELSE 0 END;")
    assert runner.invoke(args=["consents", "figures", "--check"]).exit_code == 0
    assert_reported(app, "record 4: a record was added outside the chain")


def test_an_erased_record_put_back_is_found(app, client):
    """Someone kept a copy of an erased record and restores it byte for byte: its content still
    hashes to its link, but an erasure in the chain lists it."""
    answers = record_some(client, 3)
    tamper(app, "CREATE TABLE kept AS SELECT * FROM consents WHERE seq = 1")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consents", "erase", "--subject", answers[0]["subject_id"]]).exit_code == 0
    tamper(app, _COPY_RECORD.format(seq="seq", consent_id="consent_id", event_id="event_id", source="kept",
                                    from_seq=1) + "DELETE FROM consent_removals WHERE seq = 1; DROP TABLE kept;"
                "UPDATE consent_daily SET n = n + 1 WHERE action = 'accept_all';"
                "UPDATE consent_daily_categories SET total = total + 1, granted = granted + 1;")
    assert runner.invoke(args=["consents", "figures", "--check"]).exit_code == 0
    assert_reported(app, "broken at record 1", "an erasure or purge in the chain lists it as removed")


def test_counts_of_a_removal_cannot_be_edited_or_added_beside_it(app, client):
    answers = record_some(client, 3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consents", "erase", "--subject", answers[0]["subject_id"]]).exit_code == 0
    assert verify(app).exit_code == 0
    tamper(app, "UPDATE removal_counts SET n = n + 1", "removal_counts_no_update")
    assert_reported(app, "broken at record 4", "list of records was changed")


def test_counts_pointing_at_no_removal_are_found(app, client):
    record_some(client, 2)
    tamper(app, f"INSERT INTO removal_counts (link_seq, site, day, action, n) VALUES (2, 'demo', '{TODAY}', "
                "'accept_all', 5)")
    assert_reported(app, "a removal row belongs to no erasure or purge")


# -- time order ---------------------------------------------------------------------


def _append_as_forger(app, cfg: dict, recorded_at: datetime) -> None:
    """Chain a record dated `recorded_at`, correctly hashed, behind the records already there."""
    store = open_store(app.config["DATABASE"])
    try:
        checked = consents.check_choice(choice(cfg), store, ["fi", "sv", "en"],
                                        datetime.fromisoformat(TODAY).date(), "http://localhost:8000")
        record = consents.build_record(checked, recorded_at, None, None)
        store.append_consent(checked.event_id, lambda last: record)
    finally:
        store.close()


def test_records_appended_out_of_time_order_are_found(app, client):
    cfg = config(client)
    record_some(client, 3)
    assert verify(app).exit_code == 0
    _append_as_forger(app, cfg, datetime.now(timezone.utc) - timedelta(days=30))
    assert_reported(app, "broken at record 4", "appended out of time order")


def test_a_clock_that_steps_back_keeps_the_ledger_in_time_order(app, client):
    """An honest server whose clock is set back (NTP) dates the record as the one before it."""
    cfg = config(client)
    store = open_store(app.config["DATABASE"])
    try:
        for moment in (datetime.now(timezone.utc), datetime.now(timezone.utc) - timedelta(minutes=5)):
            checked = consents.check_choice(choice(cfg), store, ["fi", "sv", "en"],
                                            datetime.fromisoformat(TODAY).date(), "http://localhost:8000")
            consents.record(store, checked, None, None, now=moment)
        times = [row["recorded_at"] for row in store.iter_consents()]
    finally:
        store.close()
    assert times[0] == times[1]
    assert verify(app).exit_code == 0


# -- notices, banners and the audit log -----------------------------------------------


def test_a_notice_rewritten_under_its_old_hash_is_found(app, client):
    record_some(client, 1)
    tamper(app, "UPDATE notice_versions SET body = 'We sell your data.' WHERE slug = 'privacy' AND lang = 'en'",
           "notice_versions_immutable")
    assert_reported(app, "notice privacy/", ".en: the text its pages show is not the text published")


def test_a_notice_source_rewritten_keeping_its_hash_is_found(app, client):
    tamper(app, "UPDATE notice_versions SET source = source || 'x' WHERE slug = 'cookies' AND lang = 'sv'",
           "notice_versions_immutable")
    assert_reported(app, "notice cookies/", "no longer has the SHA-256 recorded when it was published")


def test_a_notice_replaced_with_a_new_hash_is_found_by_the_records_and_the_audit_log(app, client):
    """Text and hash both rewritten: the hash verifies, but the records and the audit log hold the old one."""
    record_some(client, 2)
    row = raw_sql(app, "SELECT slug, version, source FROM notice_versions WHERE slug = 'privacy' "
                  "AND lang = 'en' ORDER BY version DESC LIMIT 1")[0]
    source = row[2].replace("\n\n", "\n\nWe also sell your data.\n\n", 1)
    from keksi.notices import parse_source, sha256
    parsed = parse_source("x", row[0], row[1], "en", source)
    tamper(app, f"UPDATE notice_versions SET source = '{source.replace(chr(39), chr(39) * 2)}', "
                f"body = '{parsed.body.replace(chr(39), chr(39) * 2)}', sha256 = '{sha256(source)}' "
                f"WHERE slug = 'privacy' AND version = '{row[1]}' AND lang = 'en'", "notice_versions_immutable")
    assert_reported(app, "the audit log does not record its publication with this SHA-256",
                    "record 1: a notice version or banner it refers to was replaced or removed")


def test_a_published_notice_deleted_without_a_withdrawal_is_found(app, client):
    """No record refers to the Swedish cookie notice, but the audit log says it was published."""
    store = open_store(app.config["DATABASE"])
    try:
        latest = max(row["version"] for row in store.notice_versions("cookies"))
        rows = [dict(store.notice_version("cookies", latest, lang), version="2099-01-01")
                for lang in app.config["LANGUAGES"]]
        for row in rows:
            row.pop("published_at"), row.pop("published_by")
        store.publish_notice_versions(rows, "tests")
        store.withdraw_notice_version("cookies", "2099-01-01", "tests", TODAY)
    finally:
        store.close()
    assert verify(app).exit_code == 0, "an upcoming version withdrawn through Keksi is no problem"
    tamper(app, "DELETE FROM notice_versions WHERE slug = 'cookies' AND lang = 'sv'")
    assert_reported(app, "notice cookies/", ".sv: it was published and never withdrawn, but is no longer stored")


@pytest.mark.parametrize("sql", [
    "UPDATE widget_builds SET script = replace(script, 'keksi', 'keksy')",
    "UPDATE widget_builds SET script = replace(script, 'keksi', 'keksy'), sha256 = 'f' || substr(sha256, 2)",
], ids=["script", "script and its sha256"])
def test_a_widget_build_rewritten_is_found(app, client, sql):
    """Code escrow: the script a record's widget_version names is the one that version was built as."""
    version = client.get("/widget/v1/consent.js").headers["X-Widget-Version"]
    assert verify(app).exit_code == 0
    tamper(app, sql, "widget_builds_no_update")
    assert_reported(app, f"widget build {version}: its script is not the build its version names")


def test_a_banner_rewritten_under_its_hash_is_found(app, client):
    record_some(client, 1)
    tamper(app, "UPDATE banner_versions SET content = replace(content, 'Accept', 'Okay')",
           "banner_versions_immutable")
    assert_reported(app, "banner ", "no longer has the hash it was stored under")


@pytest.mark.parametrize("statement", [
    "DELETE FROM banner_versions", "DELETE FROM audit_log", "UPDATE audit_log SET actor = 'someone'",
    "UPDATE banner_versions SET content = '{}'",
])
def test_banners_and_the_audit_log_refuse_delete_and_update(app, client, statement):
    record_some(client, 1)
    with pytest.raises(Refused):
        raw_sql(app, statement)


def test_a_deleted_banner_is_found_by_the_records_that_refer_to_it(app, client):
    record_some(client, 1)
    tamper(app, "DELETE FROM banner_versions", "banner_versions_no_delete")
    assert_reported(app, "record 1: a notice version or banner it refers to was replaced or removed")


def _audit_entries(app) -> int:
    return raw_sql(app, "SELECT count(*) AS n FROM audit_log")[0]["n"]


def test_the_audit_log_is_chained_and_an_edit_is_found(app, client):
    entries = _audit_entries(app)
    assert entries >= 3  # the sample notices' publications
    assert printed(verify(app).output, "audit head").startswith(f"{entries}:")
    tamper(app, "UPDATE audit_log SET actor = 'someone else' WHERE id = 2", "audit_log_no_update")
    assert_reported(app, "audit entry 2: its content was changed")


def test_an_audit_entry_removed_from_the_middle_is_found(app, client):
    tamper(app, "DELETE FROM audit_log WHERE id = 2", "audit_log_no_delete")
    assert_reported(app, "audit entry 3: its link to the previous entry does not match")


def test_audit_entries_cut_from_the_end_are_found_with_the_head_kept_outside(app, client):
    store = open_store(app.config["DATABASE"])
    try:
        store.audit("tests", "user.add", "someone@example.fi", {"roles": ["legal"]})
    finally:
        store.close()
    head = printed(verify(app).output, "audit head")
    last = int(head.split(":")[0])
    tamper(app, f"DELETE FROM audit_log WHERE id = {last}", "audit_log_no_delete")
    assert verify(app).exit_code == 0, "alone, a shorter log is still a chain"
    result = verify(app, "--audit-head", head)
    assert result.exit_code == 1 and "the audit log ends before the head recorded earlier" in result.output
    assert verify(app, "--audit-head", "1:nothex").exit_code == 2


# -- the daily figures ---------------------------------------------------------------


def test_figures_edited_by_hand_are_found(app, client):
    record_some(client, 3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consents", "figures", "--check"]).exit_code == 0
    tamper(app, "UPDATE consent_daily SET n = n + 40 WHERE action = 'accept_all'")
    check = runner.invoke(args=["consents", "figures", "--check"])
    assert check.exit_code == 1
    assert "accept_all is 42, the records give 2" in check.output, check.output
    assert_reported(app, "figures of demo on")


def test_a_removal_from_before_0008_leaves_only_the_figures_it_may_have_touched_unproven(app, client):
    """An erasure made before removals were counted (its counts gone, as before migration 0008)
    cannot prove the figures up to its day; it must not turn the check off for every other day."""
    answers = record_some(client, 3)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consents", "erase", "--subject", answers[0]["subject_id"]]).exit_code == 0
    tamper(app, "DELETE FROM removal_counts; DELETE FROM removal_category_counts;",
           "removal_counts_no_delete", "removal_category_counts_no_delete")
    check = runner.invoke(args=["consents", "figures", "--check"])
    assert check.exit_code == 0 and "figures not proven up to" in check.output, check.output
    tamper(app, "INSERT INTO consent_daily (site, day, action, n) VALUES ('demo', '2099-01-01', 'accept_all', 9)")
    check = runner.invoke(args=["consents", "figures", "--check"])
    assert check.exit_code == 1, check.output
    assert "figures of demo on 2099-01-01: accept_all is 9, the records give 0" in check.output
    tamper(app, "DELETE FROM consent_daily WHERE day = '2099-01-01';"
                "UPDATE consent_daily SET n = 0 WHERE action = 'reject_all'")
    check = runner.invoke(args=["consents", "figures", "--check"])
    assert check.exit_code == 1 and "reject_all is 0, the records give 1" in check.output, check.output


def test_category_figures_edited_by_hand_are_found(app, client):
    record_some(client, 2)
    tamper(app, "UPDATE consent_daily_categories SET granted = total WHERE category = 'marketing'")
    assert_reported(app, "marketing granted is 2, the records give 1")


def test_figures_stay_derivable_after_erasure_and_purge(app, client):
    """Removals keep the figures (no personal data) and count what they took out of them."""
    answers = record_some(client, 4)
    post(client, choice(config(client, lang="en"), "withdraw", subject_id=answers[2]["subject_id"]))
    runner = app.test_cli_runner()
    assert "erased 1 records" in runner.invoke(args=["consents", "erase", "--subject", answers[1]["subject_id"]]).output
    purged = runner.invoke(args=["consents", "purge", "--older-than", "0"])
    assert "purged 1 records" in purged.output, purged.output  # the choice withdrawn just now
    result = runner.invoke(args=["consents", "figures", "--check"])
    assert result.exit_code == 0 and "figures ok: every daily figure matches the 3 records" in result.output
    day = datetime.now(ZoneInfo(app.config["TIMEZONE"])).date().isoformat()
    csv_out = runner.invoke(args=["consents", "figures", "--site", "demo", "--from", day, "--to", day]).output
    assert csv_out.splitlines()[1].startswith(f"{day},2,2,0,1,5"), csv_out
    verified = verify(app)
    assert verified.exit_code == 0 and "figures ok" in verified.output, verified.output


def test_figures_of_a_forged_removal_of_no_records_are_refused(app, client):
    """Counts added to an honest removal change its hash."""
    answers = record_some(client, 2)
    app.test_cli_runner().invoke(args=["consents", "erase", "--subject", answers[0]["subject_id"]])
    tamper(app, "INSERT INTO removal_counts (link_seq, site, day, action, n) VALUES (3, 'demo', '2026-01-01', "
                "'custom', 7)")
    assert_reported(app, "broken at record 3", "list of records was changed")


def test_a_site_definition_changed_without_a_save_is_found(app, client):
    record_some(client, 1)
    assert verify(app).exit_code == 0
    tamper(app, """UPDATE sites SET definition = replace(definition, '"consent_days": 365', '"consent_days": 3650')""")
    assert_reported(app, "site demo: its definition is not the one its last audited save recorded")


def test_a_site_deleted_without_a_removal_is_found(app, client):
    """Its records stay and point at nothing; Keksi itself refuses to remove a site with records."""
    record_some(client, 1)
    tamper(app, "DELETE FROM sites WHERE id = 'demo'")
    assert_reported(app, "site demo: it was saved and never removed, but is no longer stored")


def test_a_site_removed_through_keksi_is_no_problem(app, client):
    assert app.test_cli_runner().invoke(args=["sites", "remove", "demo"]).exit_code == 0
    assert verify(app).exit_code == 0


@pytest.mark.sqlite_only  # SQLite's migration 0008; PostgreSQL's schema begins after it
def test_an_audit_log_from_before_migration_0008_is_chained_by_it(make_app):
    app = make_app()
    add_site(app)
    record_some(app.test_client(), 2)
    entries = _audit_entries(app)
    tamper(app, "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;"
                "DROP TRIGGER banner_versions_no_delete; DROP TABLE removal_counts;"
                "DROP TABLE removal_category_counts; DROP TABLE maintenance;"
                "ALTER TABLE audit_log DROP COLUMN prev_hash; ALTER TABLE audit_log DROP COLUMN row_hash;"
                "CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
                "DELETE FROM _sqlite_migrations WHERE name = '0008_ledger_proof';")
    migrated = make_app(publish=False, DATABASE=app.config["DATABASE"])  # the app migrates on start
    result = verify(migrated)
    assert result.exit_code == 0, result.output
    assert printed(result.output, "audit head").startswith(f"{entries}:")
    tamper(migrated, "UPDATE audit_log SET detail = '{}' WHERE id = 1", "audit_log_no_update")
    assert_reported(migrated, "audit entry 1: its content was changed")


# -- a head kept outside cannot be stepped around ------------------------------------


def _rechain(app, table: str, key: str, content) -> None:
    """Recompute every link of `table` in `key` order, as a forger who deleted a row would."""
    from keksi.store.chain import GENESIS_HASH, chain_hash
    prev = GENESIS_HASH
    for row in raw_sql(app, f"SELECT * FROM {table} ORDER BY {key}"):
        row_hash = chain_hash(prev, content(row))
        raw_sql(app, f"UPDATE {table} SET prev_hash = ?, row_hash = ? WHERE {key} = ?", [prev, row_hash, row[key]])
        prev = row_hash


def test_a_chain_rebuilt_without_the_kept_head_record_is_found(app, client):
    """The forger deletes the very record the kept head names and rechains the rest: no link
    has the head's seq any more, yet the chain goes on past it."""
    record_some(client, 3)
    head = printed(verify(app).output, "chain head")
    assert head.startswith("3:")
    record_some(client, 2)
    tamper(app, "DELETE FROM consents WHERE seq = 3; DELETE FROM consent_chain WHERE seq = 3;",
           "consents_delete_only_when_removed", "consent_chain_no_delete")
    tamper(app, "SELECT 1", "consent_chain_no_update")
    _rechain(app, "consent_chain", "seq", lambda row: row["content_hash"])
    result = verify(app, "--head", head)
    assert result.exit_code == 1, result.output
    assert "no longer passes through the head recorded earlier" in result.output


def test_an_audit_log_rebuilt_without_the_kept_head_entry_is_found(app, client):
    from keksi.store.chain import audit_content_hash
    head = printed(verify(app).output, "audit head")
    last = int(head.split(":")[0])
    store = open_store(app.config["DATABASE"])
    try:
        store.audit("tests", "user.add", "someone@example.fi", {"roles": ["legal"]})
    finally:
        store.close()
    tamper(app, f"DELETE FROM audit_log WHERE id = {last}", "audit_log_no_delete", "audit_log_no_update")
    _rechain(app, "audit_log", "id", audit_content_hash)
    result = verify(app, "--audit-head", head)
    assert result.exit_code == 1, result.output
    assert "the audit log no longer passes through the head recorded earlier" in result.output
