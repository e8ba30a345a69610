"""`flask db copy --to URL`: a SQLite database moved into a new PostgreSQL database, every table, the
chains continuing there, checked at the end; a database that holds data refused, a tampered source
caught by the check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app import create_app
from keksi import consents
from keksi.store import copy_database, open_store

from .conftest import TODAY, add_user, raw_sql, sign_in
from .ledger import add_site, choice, config, post, printed, record_some, tamper


def _app(database: str, notices_dir):
    return create_app({"TESTING": True, "DATABASE": database, "NOTICES_DIR": str(notices_dir),
                       "SECRET_KEY": "test-secret", "FIXED_TODAY": TODAY})


@pytest.fixture
def app(make_app):
    app = make_app()  # SQLite, the sample notices published
    add_site(app)
    return app


def _record_long_ago(app, client) -> None:
    """A choice made long enough ago for `consents purge` to remove it."""
    store = open_store(app.config["DATABASE"])
    try:
        checked = consents.check_choice(choice(config(client)), store, ["fi", "sv", "en"],
                                        datetime.now().date(), "http://localhost:8000")
        consents.record(store, checked, None, None, now=datetime.now(timezone.utc) - timedelta(days=365 + 800))
    finally:
        store.close()


def _fill(app) -> None:
    """Records, an erasure, a purge, banner versions, the widget served, users, a set-password link,
    a session, a failed sign-in and a site audit queued: something in every table."""
    client = app.test_client()
    _record_long_ago(app, client)
    answers = record_some(client, 4, lang="fi") + record_some(client, 2, lang="sv")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["consents", "erase", "--subject", answers[1]["subject_id"]]).exit_code == 0
    assert "purged 1 records" in runner.invoke(args=["consents", "purge"]).output
    add_user(app, "legal@example.fi", "legal")
    add_user(app, "admin@example.fi", "admin")
    assert sign_in(app.test_client(), "legal@example.fi").status_code == 302
    assert sign_in(app.test_client(), "admin@example.fi", "not the password").status_code == 401
    store = open_store(app.config["DATABASE"])
    try:
        store.add_scan("demo", "admin@example.fi", {"pages": 1})
    finally:
        store.close()
    linked = runner.invoke(args=["users", "add", "marketing@example.fi", "--role", "marketing", "--link"])
    assert linked.exit_code == 0, linked.output
    assert client.get("/widget/v1/consent.js").status_code == 200


def _rows(database: str) -> dict[str, list[dict]]:
    """Every row of every Keksi table (not the backends' own), sorted, as stored."""
    store = open_store(database)
    try:
        tables = [t for t in store.backend.tables() if t not in ("_sqlite_migrations", "keksi_migrations",
                                                                 "chain_heads")]
        return {table: sorted((dict(row) for row in raw_sql(store, f"SELECT * FROM {table}")), key=repr)
                for table in tables}
    finally:
        store.close()


def test_a_sqlite_database_moves_to_postgresql_and_its_chains_go_on_there(app, empty_postgresql, notices_dir):
    _fill(app)
    runner = app.test_cli_runner()
    before = runner.invoke(args=["consents", "verify"])
    assert before.exit_code == 0, before.output

    result = runner.invoke(args=["db", "copy", "--to", empty_postgresql])
    assert result.exit_code == 0, result.output
    assert "copied consents: 5 rows" in result.output and "copied audit_log:" in result.output
    assert "ok: 7 records verified, 2 of them erased or purged" in result.output
    assert printed(result.output, "chain head") == printed(before.output, "chain head")
    assert printed(result.output, "audit head") == printed(before.output, "audit head")

    source, copy = _rows(app.config["DATABASE"]), _rows(empty_postgresql)
    generations = copy.pop("generations")
    assert copy == {table: rows for table, rows in source.items() if table != "generations"}
    assert all(row for table, row in source.items()), "every table had something to copy"
    assert all(g["value"] > s["value"] for g, s in zip(generations, source["generations"]))

    moved = _app(empty_postgresql, notices_dir)
    client = moved.test_client()
    assert post(client, choice(config(client))).status_code == 201
    assert sign_in(client, "legal@example.fi").status_code == 302, "users and their passwords came along"
    added = moved.test_cli_runner().invoke(args=["users", "add", "new@example.fi", "--role", "legal", "--link"])
    assert added.exit_code == 0, added.output  # a new id after the copied ones
    verify = moved.test_cli_runner().invoke(args=["consents", "verify"])
    assert verify.exit_code == 0 and "ok: 8 records verified" in verify.output, verify.output
    assert printed(verify.output, "chain head").startswith("10:")
    heads = {row["chain"]: row["appends"] for row in raw_sql(moved, "SELECT * FROM chain_heads")}
    assert heads == {"consents": 10, "audit": raw_sql(moved, "SELECT count(*) AS n FROM audit_log")[0]["n"]}


def test_a_database_that_holds_data_is_refused_and_left_as_it_was(app, fresh_postgresql, notices_dir):
    record_some(app.test_client(), 2)
    other = _app(fresh_postgresql, notices_dir)
    add_site(other)
    result = app.test_cli_runner().invoke(args=["db", "copy", "--to", fresh_postgresql])
    assert result.exit_code == 1
    assert "already holds data (in audit_log, sites)" in result.output and "new, empty database" in result.output
    assert raw_sql(other, "SELECT count(*) AS n FROM consents")[0]["n"] == 0
    assert raw_sql(other, "SELECT count(*) AS n FROM audit_log")[0]["n"] == 1


def test_a_tampered_source_is_copied_but_the_command_fails_at_the_check(app, empty_postgresql):
    record_some(app.test_client(), 3)
    tamper(app, "UPDATE consents SET page = '/rewritten' WHERE seq = 2", "consents_no_update")
    result = app.test_cli_runner().invoke(args=["db", "copy", "--to", empty_postgresql])
    assert result.exit_code == 1
    assert "copied consents: 3 rows" in result.output
    assert "broken at record 2" in result.output and "the copy failed its checks" in result.output


def test_the_target_must_be_postgresql_and_the_source_sqlite(app, tmp_path, fresh_postgresql, notices_dir):
    to_file = app.test_cli_runner().invoke(args=["db", "copy", "--to", str(tmp_path / "other.db")])
    assert to_file.exit_code == 2 and "postgresql://" in to_file.output
    moved = _app(fresh_postgresql, notices_dir)
    again = moved.test_cli_runner().invoke(args=["db", "copy", "--to", fresh_postgresql])
    assert again.exit_code == 1 and "moves a SQLite one" in again.output


def test_rows_go_over_a_batch_at_a_time_and_all_arrive(app, empty_postgresql):
    """Batches smaller than the tables: each table takes several, and nothing is lost at their edges."""
    record_some(app.test_client(), 5)
    source, target = open_store(app.config["DATABASE"]), open_store(empty_postgresql)
    try:
        target.migrate()
        counts = copy_database(source, target, batch=2)
    finally:
        source.close()
        target.close()
    assert counts["consents"] == 5 and counts["notice_versions"] > 2
    copied = _rows(empty_postgresql)
    copied.pop("generations")
    assert copied == {table: rows for table, rows in _rows(app.config["DATABASE"]).items() if table != "generations"}


class Interrupted(Exception):
    pass


def test_a_copy_that_fails_half_way_leaves_nothing_and_runs_again(app, empty_postgresql):
    record_some(app.test_client(), 3)

    def fail_after_consents(table, rows):
        if table == "consents":
            raise Interrupted

    source, target = open_store(app.config["DATABASE"]), open_store(empty_postgresql)
    try:
        target.migrate()
        with pytest.raises(Interrupted):
            copy_database(source, target, copied=fail_after_consents)
        assert not any(_rows(empty_postgresql)[table] for table in ("consents", "consent_chain", "audit_log"))
        assert copy_database(source, target)["consents"] == 3
    finally:
        source.close()
        target.close()


def test_a_value_the_target_refuses_names_its_table_and_copies_nothing(app, empty_postgresql):
    """PostgreSQL's text cannot hold a NUL character, which SQLite's can."""
    add_user(app, "legal\x00@example.fi", "legal")
    result = app.test_cli_runner().invoke(args=["db", "copy", "--to", empty_postgresql])
    assert result.exit_code == 1 and "the target refused a row of users (after 0 copied)" in result.output
    assert not _rows(empty_postgresql)["sites"]
