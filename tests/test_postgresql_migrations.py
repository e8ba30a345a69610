"""PostgreSQL's migrations: applied in order, once, under a lock; and the schema they make is SQLite's
(tables, columns, types, keys, indexes, and which tables refuse UPDATE and DELETE, found by trying)."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable

import pytest

from keksi.store import open_store
from tests.postgresql import connect, postgresql_backend, with_database

# Each backend's record of its migrations, and the chain heads only PostgreSQL needs (SQLite's
# BEGIN IMMEDIATE lets one writer in at a time; see 0003_chain_heads.sql).
SQLITE_ONLY = {"_sqlite_migrations"}
POSTGRESQL_ONLY = {"keksi_migrations", "chain_heads"}
TYPES = {"integer": "integer", "bigint": "integer", "text": "text"}  # anything else is a difference


def test_migrations_apply_in_order_once_and_are_recorded(empty_postgresql):
    backend = postgresql_backend()
    names = [path.stem for path in backend.migration_files()]
    assert names == sorted(names) and names[0].startswith("0001_")
    with connect(empty_postgresql) as conn:
        assert backend.pending_migrations(conn) == names
        assert backend.applied_migrations(conn) == []
        assert backend.migrate(conn) == names
        assert backend.pending_migrations(conn) == []
        assert backend.migrate(conn) == []
        assert backend.applied_migrations(conn) == names
        # The lock is released: another session can take it at once.
        with connect(empty_postgresql) as other:
            assert other.execute("SELECT pg_try_advisory_lock(%s)", [backend._MIGRATION_LOCK]).fetchone()[0]


def test_workers_starting_together_apply_each_migration_once(empty_postgresql):
    backend = postgresql_backend()
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker() -> None:
        try:
            with connect(empty_postgresql) as conn:
                start.wait()
                results.append(backend.migrate(conn))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    names = [path.stem for path in backend.migration_files()]
    assert sorted(results, key=len) == [[]] * 5 + [names]


def test_a_failing_migration_leaves_nothing_behind(empty_postgresql, tmp_path, monkeypatch):
    backend = postgresql_backend()
    for path in backend.migration_files()[:1]:
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half_done (x TEXT);\nSELECT no_such_function();\n")
    monkeypatch.setattr(backend, "MIGRATIONS_DIR", tmp_path)
    with connect(empty_postgresql) as conn:
        with pytest.raises(Exception, match="no_such_function"):
            backend.migrate(conn)
        assert backend.applied_migrations(conn) == [backend.migration_files()[0].stem]
        assert conn.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert backend.pending_migrations(conn) == ["0002_broken"]


@pytest.fixture
def language_ordered_postgresql(postgresql_url: str):
    """A new, empty database whose collation is a language's (ICU en-US), as a managed server's
    default often is; dropped afterwards."""
    import psycopg
    name = f"keksi_icu_{os.getpid()}"
    with connect(postgresql_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        try:
            conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                         "LOCALE 'C.UTF-8'")
        except psycopg.Error as exc:
            pytest.skip(f"this server makes no ICU database: {exc}")
    yield with_database(postgresql_url, name)
    with connect(postgresql_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_and_copy_refuse_a_database_that_does_not_order_text_byte_by_byte(
        language_ordered_postgresql, tmp_path):
    """Times and ids are compared and sorted as text, as SQLite does byte by byte; a language's
    collation puts "a" before "B". Refused with the createdb command to use, nothing applied."""
    from app import create_app
    app = create_app({"DATABASE": language_ordered_postgresql, "SECRET_KEY": "test-secret"})
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 1 and "createdb --locale=C --template=template0" in result.output
    source = create_app({"DATABASE": str(tmp_path / "keksi.db"), "SECRET_KEY": "test-secret"})
    copied = source.test_cli_runner().invoke(args=["db", "copy", "--to", language_ordered_postgresql])
    assert copied.exit_code == 1 and "byte by byte" in copied.output
    with connect(language_ordered_postgresql) as conn:
        assert postgresql_backend().applied_migrations(conn) == []


def test_a_misnamed_migration_file_is_refused(tmp_path, monkeypatch):
    backend = postgresql_backend()
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "2_second.sql").write_text("SELECT 1;")
    monkeypatch.setattr(backend, "MIGRATIONS_DIR", tmp_path)
    with pytest.raises(ValueError, match="NNNN_name.sql"):
        backend.migration_files()


# -- the schema is the same on both -----------------------------------------------------


def _sqlite_schema(conn: sqlite3.Connection) -> dict[str, dict]:
    schema = {}
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    for table in tables:
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()  # cid, name, type, notnull, default, pk
        indexes, unique_constraints = {}, []
        for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
            columns = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
            if origin == "c":  # made by CREATE INDEX, not a key's own
                indexes[name] = (bool(unique), columns, bool(partial))
            elif origin == "u":  # a UNIQUE in the table's definition (its index has no name of ours)
                unique_constraints.append(columns)
        schema[table] = {
            "columns": {name: (TYPES.get(type_.lower(), type_), bool(notnull or pk)) for _, name, type_, notnull, _, pk in info},
            "primary_key": tuple(name for *_, name in sorted((pk, name) for _, name, _, _, _, pk in info if pk)),
            "indexes": indexes,
            "unique_constraints": sorted(unique_constraints),
            "foreign_keys": sorted((r[3], r[2], r[4]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")),
        }
    return schema


def _postgresql_schema(conn) -> dict[str, dict]:
    schema = {}
    tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
    for table in tables:
        columns = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", [table]).fetchall()
        index_rows = conn.execute(
            "SELECT i.relname, x.indisunique, x.indisprimary, "
            "array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
            "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n ORDER BY k.o), "
            "x.indpred IS NOT NULL, EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid "
            "AND c.contype = 'u') FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass", [table]).fetchall()
        foreign_keys = conn.execute(
            "SELECT a.attname, c.confrelid::regclass::text, f.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "JOIN pg_attribute f ON f.attrelid = c.confrelid AND f.attnum = c.confkey[1] "
            "WHERE c.contype = 'f' AND c.conrelid = %s::regclass", [table]).fetchall()
        schema[table] = {
            "columns": {name: (TYPES.get(type_, type_), nullable == "NO") for name, type_, nullable in columns},
            "primary_key": next((tuple(cols) for _, _, primary, cols, _, _ in index_rows if primary), ()),
            "indexes": {name: (unique, tuple(cols), partial)
                        for name, unique, primary, cols, partial, constraint in index_rows
                        if not primary and not constraint},
            "unique_constraints": sorted(tuple(cols) for *_, cols, _, constraint in index_rows if constraint),
            "foreign_keys": sorted(foreign_keys),
        }
    return schema


def _migrated_sqlite(tmp_path: Path) -> sqlite3.Connection:
    store = open_store(str(tmp_path / "parity.db"))
    store.migrate()
    store.close()
    conn = sqlite3.connect(tmp_path / "parity.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def test_both_backends_migrate_to_the_same_tables_columns_types_keys_and_indexes(tmp_path, fresh_postgresql):
    sqlite = _sqlite_schema(_migrated_sqlite(tmp_path))
    with connect(fresh_postgresql) as conn:
        postgresql = _postgresql_schema(conn)
    assert set(sqlite) - SQLITE_ONLY == set(postgresql) - POSTGRESQL_ONLY
    for table in sorted(set(sqlite) - SQLITE_ONLY):
        assert sqlite[table] == postgresql[table], table


def test_a_hashed_text_reads_back_exactly_as_written(fresh_postgresql):
    """No column turns a written time or JSON text into something else (timestamptz, jsonb would)."""
    with connect(fresh_postgresql) as conn:
        types = {r[0] for r in conn.execute(
            "SELECT DISTINCT data_type FROM information_schema.columns WHERE table_schema = 'public'")}
        assert types <= {"text", "bigint"}
        written = ("2026-12-02T06:00:00.000000+00:00", '{"b": true,  "a":false}')
        conn.execute("INSERT INTO banner_versions (hash, site, lang, content, first_served_at) "
                     "VALUES ('h', 's', 'fi', %s, %s)", [written[1], written[0]])
        assert conn.execute("SELECT first_served_at, content FROM banner_versions").fetchone() == written


# -- append-only rules, found by trying ------------------------------------------------------


def _row_sql(table: str, columns: dict[str, tuple[str, bool]]) -> str:
    values = ", ".join("1" if type_ == "integer" else "'x'" for type_, _ in columns.values())
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


Attempt = Callable[[list[str], str], bool]  # (setup statements, statement) -> whether it was refused


def _refusals(schema: dict[str, dict], attempt: Attempt) -> dict[str, set[str]]:
    """For each table, which of UPDATE and DELETE on a row of it the database refuses."""
    found = {}
    for table, info in schema.items():
        setup = ([_row_sql("users", schema["users"]["columns"])] if table != "users" else [])
        setup.append(_row_sql(table, info["columns"]))
        column = next(iter(info["columns"]))
        found[table] = {statement for statement, sql in (
            ("update", f"UPDATE {table} SET {column} = {column}"), ("delete", f"DELETE FROM {table}"))
            if attempt(setup, sql)}
    return found


def _sqlite_attempt(conn: sqlite3.Connection) -> Attempt:
    def attempt(setup: list[str], statement: str) -> bool:
        conn.execute("BEGIN")
        try:
            for sql in setup:
                conn.execute(sql)
            conn.execute(statement)
            return False
        except sqlite3.IntegrityError as exc:
            assert "FOREIGN KEY" not in str(exc)
            return True
        finally:
            conn.execute("ROLLBACK")
    return attempt


def _postgresql_attempt(conn) -> Attempt:
    import psycopg

    def attempt(setup: list[str], statement: str) -> bool:
        with conn.transaction():
            for sql in setup:
                conn.execute(sql)
            try:
                with conn.transaction():  # a savepoint: the refusal rolls back this statement only
                    conn.execute(statement)
            except psycopg.errors.IntegrityConstraintViolation:  # 23000, raised by keksi_refuse()
                refused = True
            else:
                refused = False
            raise psycopg.Rollback()
        return refused
    return attempt


APPEND_ONLY = {
    "audit_log": {"update", "delete"}, "banner_versions": {"update", "delete"},
    "consent_chain": {"update", "delete"}, "consent_removals": {"update"}, "consents": {"update", "delete"},
    "notice_versions": {"update"}, "removal_category_counts": {"update", "delete"},
    "removal_counts": {"update", "delete"}, "removal_links": {"update", "delete"},
    "removal_ranges": {"update", "delete"}, "widget_builds": {"update", "delete"},
}


def test_both_backends_refuse_the_same_updates_and_deletes(tmp_path, fresh_postgresql):
    sqlite_conn = _migrated_sqlite(tmp_path)
    sqlite_schema = {t: s for t, s in _sqlite_schema(sqlite_conn).items() if t not in SQLITE_ONLY}
    sqlite = _refusals(sqlite_schema, _sqlite_attempt(sqlite_conn))
    with connect(fresh_postgresql) as conn:
        schema = {t: s for t, s in _postgresql_schema(conn).items() if t not in POSTGRESQL_ONLY}
        postgresql = _refusals(schema, _postgresql_attempt(conn))
    assert {t: s for t, s in sqlite.items() if s} == APPEND_ONLY
    assert postgresql == sqlite


def test_a_consent_is_deleted_on_both_once_its_removal_is_recorded(tmp_path, fresh_postgresql):
    sqlite_conn = _migrated_sqlite(tmp_path)
    schema = _sqlite_schema(sqlite_conn)
    setup = [_row_sql("consents", schema["consents"]["columns"]),
             "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (1, 'erase', 'x')"]
    assert not _sqlite_attempt(sqlite_conn)(setup, "DELETE FROM consents")
    with connect(fresh_postgresql) as conn:
        assert not _postgresql_attempt(conn)(setup, "DELETE FROM consents")


def test_postgresql_refuses_truncate_wherever_it_refuses_delete(fresh_postgresql):
    import psycopg
    with connect(fresh_postgresql) as conn:
        for table, refused in APPEND_ONLY.items():
            if "delete" in refused:
                with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
                    conn.execute(f"TRUNCATE {table} CASCADE")
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="never removed"):
            conn.execute("DELETE FROM chain_heads")
