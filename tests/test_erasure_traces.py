"""What an erased record leaves where, on each backend, as the README says ("What erasure leaves"):
nothing any SQL reads, in any table or in PostgreSQL's statistics; on SQLite nothing in the database
file or its write-ahead log; on PostgreSQL its bytes in the table's and indexes' files until `flask db
compact` (a plain VACUUM is not enough), and in the WAL until its segments are reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keksi.store import open_store

from .conftest import BOTH, raw_sql
from .ledger import add_site, choice, config, post
from .test_retention import LONG_AGO, record_at

BACKENDS = BOTH
MARK = "a-page-only-this-visitor-saw"


def _visitor_among_others(app: Any) -> list[str]:
    """Others' choices, then one visitor's two, written last (as a new visitor's are): the values
    that identify the visitor, which erasure must take away."""
    client = app.test_client()
    cfg = config(client)
    for n in range(20):
        assert post(client, choice(cfg, page=f"/other-{n}")).status_code == 201
    first_body = choice(cfg, page=f"/{MARK}")
    first = post(client, first_body).get_json()
    later_body = choice(cfg, "withdraw", subject_id=first["subject_id"], page=f"/{MARK}")
    later = post(client, later_body).get_json()
    return [first["subject_id"], first["consent_id"], later["consent_id"], first_body["event_id"],
            later_body["event_id"], MARK]


def _erase(app: Any, subject_id: str) -> None:
    result = app.test_cli_runner().invoke(args=["consents", "erase", "--subject", subject_id])
    assert result.exit_code == 0 and "erased 2 records" in result.output, result.output


def _readable_by_sql(app: Any, backend: str) -> str:
    """Every row of every table, and on PostgreSQL the column statistics (pg_stats), as text."""
    if backend == "postgresql":
        tables = [row[0] for row in raw_sql(app, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        stats = raw_sql(app, "SELECT * FROM pg_stats WHERE schemaname = 'public'")
    else:
        tables = [row[0] for row in raw_sql(app, "SELECT name FROM sqlite_master WHERE type = 'table'")]
        stats = []
    rows = [row for table in tables for row in raw_sql(app, f'SELECT * FROM "{table}"')]
    return repr(rows + stats)


def test_no_sql_reads_an_erased_visitor_in_any_table_or_statistic(make_app, backend):
    app = make_app(STORE_PAGE=True, RATE_LIMIT=1_000_000)
    add_site(app)
    traces = _visitor_among_others(app)
    if backend == "postgresql":
        raw_sql(app, "ANALYZE", script=True)  # as autovacuum does by itself, before the erasure
    before = _readable_by_sql(app, backend)
    assert all(trace in before for trace in traces), "the search finds what is there"
    _erase(app, traces[0])
    after = _readable_by_sql(app, backend)
    assert [trace for trace in traces if trace in after] == []
    assert "/other-19" in after, "the others' records stay"


@pytest.mark.sqlite_only
def test_sqlite_keeps_no_erased_byte_in_the_database_file_or_its_log(make_app, backend):
    """secure_delete overwrites the records in the file; the erasure then empties the write-ahead
    log, whose earlier frames still held them (an ordinary checkpoint leaves them there)."""
    app = make_app(STORE_PAGE=True, RATE_LIMIT=1_000_000)
    add_site(app)
    traces = _visitor_among_others(app)
    files = [Path(app.config["DATABASE"]), Path(app.config["DATABASE"] + "-wal")]
    assert _found(files, traces) == traces, "the search finds what is there"
    _erase(app, traces[0])
    assert _found(files, traces) == []
    result = app.test_cli_runner().invoke(args=["db", "compact"])
    assert result.exit_code == 0 and "compacted" in result.output, result.output


def _found(files: list[Path], traces: list[str]) -> list[str]:
    """The traces whose bytes are in any of `files` (a missing file holds none)."""
    content = b"".join(path.read_bytes() for path in files if path.exists())
    return [trace for trace in traces if trace.encode() in content]


def _relation_files(app: Any) -> tuple[str, dict[str, Path]]:
    """The cluster's data folder, and the file of the consents table, its TOAST table and each of
    its indexes (after a checkpoint has written what the server holds in memory)."""
    raw_sql(app, "CHECKPOINT", script=True)
    data = raw_sql(app, "SHOW data_directory")[0][0]
    names = [row[0] for row in raw_sql(
        app, "SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = 'consents'::regclass "
             "OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'consents'::regclass) "
             "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'consents'::regclass)")]
    return data, {name: Path(data, raw_sql(app, "SELECT pg_relation_filepath(?)", [name])[0][0])
                  for name in names}


def test_postgresql_keeps_erased_bytes_in_its_files_until_flask_db_compact(make_app, backend):
    if backend != "postgresql":
        pytest.skip("PostgreSQL's files (SQLite's are checked above)")
    app = make_app(STORE_PAGE=True, RATE_LIMIT=1_000_000)
    add_site(app)
    traces = _visitor_among_others(app)
    subject_id, last_consent_id, last_event_id = traces[0], traces[2], traces[4]
    _erase(app, subject_id)
    data, files = _relation_files(app)
    try:
        files["consents"].read_bytes()
    except PermissionError:
        pytest.skip("the cluster's files are readable only by root or the cluster's own user")
    # The index entries written last in their page stay too (earlier ones may be overwritten).
    kept_in_indexes = {"idx_consents_subject_id": subject_id, "idx_consents_consent_id": last_consent_id,
                       "idx_consents_event_id": last_event_id}
    for step in ("erased", "after a plain VACUUM"):
        assert _found([files["consents"]], traces) == traces, step
        for index, trace in kept_in_indexes.items():
            assert _found([files[index]], [trace]) == [trace], (step, index)
        raw_sql(app, "VACUUM (INDEX_CLEANUP ON) consents", script=True)
        data, files = _relation_files(app)

    result = app.test_cli_runner().invoke(args=["db", "compact"])
    assert result.exit_code == 0 and "compacted" in result.output, result.output
    data, compacted = _relation_files(app)
    assert set(compacted.values()).isdisjoint(files.values()), "a rewrite: new files"
    database_folder = compacted["consents"].parent
    assert _found(sorted(database_folder.iterdir()), traces) == [], "in no file of the database"
    assert "/other-19".encode() in compacted["consents"].read_bytes(), "the others' records stay"
    wal = sorted(Path(data, "pg_wal").glob("0*"))
    assert _found(wal, traces) == traces, "the WAL keeps them until its segments are reused"


def test_a_long_reader_makes_flask_db_compact_give_up_and_say_so(make_app, backend, monkeypatch):
    """Compaction makes consent posts wait, so it waits only briefly for a reader holding the
    table (a long export) and says so; the erasure itself never waits for it. On SQLite the log
    keeps the erased rows until a compaction or the next erasure gets through."""
    monkeypatch.setattr("keksi.store.postgresql.COMPACT_LOCK_WAIT", "200ms")
    app = make_app(STORE_PAGE=True, RATE_LIMIT=1_000_000)
    add_site(app)
    traces = _visitor_among_others(app)
    sqlite_files = [Path(app.config["DATABASE"] + suffix) for suffix in ("", "-wal")] if backend == "sqlite" else []
    reader = open_store(app.config["DATABASE"])
    try:
        reader.backend.executescript("BEGIN")
        reader.consent(traces[1])  # holds its snapshot, and on PostgreSQL the table's share lock
        _erase(app, traces[0])
        assert _found(sqlite_files, traces) == (traces if sqlite_files else [])
        busy = app.test_cli_runner().invoke(args=["db", "compact"])
        assert busy.exit_code == 1 and "busy" in busy.output and "nothing was compacted" in busy.output
    finally:
        reader.close()
    assert app.test_cli_runner().invoke(args=["db", "compact"]).exit_code == 0
    assert _found(sqlite_files, traces) == []


HINT = 'the removed rows stay in the database files until flask db compact (see README "What erasure leaves")'


def test_erase_and_purge_say_on_postgresql_that_flask_db_compact_removes_the_rows(make_app, backend):
    """PostgreSQL keeps the removed rows' bytes in its files (above): the command says what removes them.
    SQLite overwrites them at once, so it says nothing more."""
    app = make_app(STORE_PAGE=True, RATE_LIMIT=1_000_000)
    add_site(app)
    record_at(app, config(app.test_client()), LONG_AGO)  # expired long ago: the purge's
    traces = _visitor_among_others(app)
    runner = app.test_cli_runner()
    erased = runner.invoke(args=["consents", "erase", "--subject", traces[0]])
    purged = runner.invoke(args=["consents", "purge", "--older-than", "0"])
    nothing = runner.invoke(args=["consents", "purge", "--older-than", "0"])
    assert erased.exit_code == purged.exit_code == nothing.exit_code == 0, (erased.output, purged.output)
    assert "erased 2 records" in erased.output and "purged 1 records" in purged.output, purged.output
    said = [HINT in result.output for result in (erased, purged)]
    assert said == ([True, True] if backend == "postgresql" else [False, False])
    assert "purged 0 " in nothing.output and HINT not in nothing.output, "nothing removed, nothing to compact"
