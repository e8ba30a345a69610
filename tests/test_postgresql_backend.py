"""KEKSI_DATABASE=postgresql://…: migrated only by `flask db upgrade` (503 and /healthz say what is
pending until then), a secret key required, a pool per worker process that replaces connections the
server closed."""

from __future__ import annotations

import os

import pytest

from app import create_app
from keksi import store

from .conftest import TODAY, publish_all
from .ledger import add_site, choice, config, post
from .postgresql import connect, postgresql_backend


def _app(database: str, notices_dir, **config):
    return create_app({"TESTING": True, "DATABASE": database, "NOTICES_DIR": str(notices_dir),
                       "SECRET_KEY": "test-secret", "FIXED_TODAY": TODAY, **config})


def test_a_new_database_is_served_only_after_flask_db_upgrade(empty_postgresql, notices_dir):
    app = _app(empty_postgresql, notices_dir)
    client = app.test_client()
    names = [path.stem for path in postgresql_backend().migration_files()]
    assert client.get("/en/").status_code == 503
    api = client.get("/api/v1/sites/demo/config?lang=fi")
    assert api.status_code == 503 and api.headers["Retry-After"]
    assert ", ".join(names) in api.get_json()["message"] and "flask db upgrade" in api.get_json()["message"]
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["pending_migrations"] == names

    upgrade = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 0 and upgrade.output.strip() == "applied " + ", ".join(names)
    again = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert "nothing to apply" in again.output
    assert client.get("/healthz").status_code == 200  # the running app sees it without a restart
    assert client.get("/en/").status_code == 200


def test_a_command_on_a_database_not_yet_upgraded_says_to_run_flask_db_upgrade(empty_postgresql, notices_dir):
    """The operator who runs `notices publish` (as scripts/serve does) or any other command before
    `flask db upgrade` is told so, exit 1, rather than shown psycopg's traceback of a missing table."""
    app = _app(empty_postgresql, notices_dir)
    runner = app.test_cli_runner()
    for args in (["notices", "publish"], ["users", "list"], ["consents", "verify"], ["db", "compact"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (args, result.exception)
        assert "0001_schema" in result.output and "run flask db upgrade" in result.output, args
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    published = runner.invoke(args=["notices", "publish"])
    assert published.exit_code == 0 and "versions published" in published.output


def test_a_database_one_migration_behind_is_named_by_healthz_until_upgraded(empty_postgresql, notices_dir,
                                                                           monkeypatch):
    """A new version of Keksi deployed before `flask db upgrade` ran: only the new migration is pending."""
    backend = postgresql_backend()
    *earlier, newest = backend.migration_files()
    with monkeypatch.context() as patch, connect(empty_postgresql) as conn:
        patch.setattr(backend, "migration_files", lambda: earlier)
        backend.migrate(conn)
    client = _app(empty_postgresql, notices_dir).test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["status"] == "error" and health.get_json()["pending_migrations"] == [newest.stem]
    assert newest.stem in client.get("/api/v1/sites/demo/config?lang=fi").get_json()["message"]
    upgrade = client.application.test_cli_runner().invoke(args=["db", "upgrade"])
    assert upgrade.output.strip() == f"applied {newest.stem}"
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_an_applied_migration_file_edited_afterwards_stops_flask_db_upgrade(empty_postgresql, notices_dir):
    app = _app(empty_postgresql, notices_dir)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    first = postgresql_backend().migration_files()[0].stem
    with connect(empty_postgresql) as conn:
        conn.execute("UPDATE keksi_migrations SET sha256 = %s WHERE name = %s", ["0" * 64, first])
    upgrade = runner.invoke(args=["db", "upgrade"])
    assert upgrade.exit_code == 1 and f"migration files {first} changed after they were applied" in upgrade.output


def test_starting_never_migrates_postgresql(empty_postgresql, notices_dir):
    _app(empty_postgresql, notices_dir)
    with connect(empty_postgresql) as conn:
        assert postgresql_backend().applied_migrations(conn) == []


def test_postgresql_refuses_to_start_without_a_secret_key(fresh_postgresql, notices_dir):
    with pytest.raises(SystemExit, match="KEKSI_SECRET_KEY"):
        _app(fresh_postgresql, notices_dir, SECRET_KEY=None)


def test_sqlite_keeps_migrating_on_start(tmp_path, notices_dir):
    app = _app(str(tmp_path / "keksi.db"), notices_dir)
    assert store.pending_migrations(app) == []
    assert "nothing to apply" in app.test_cli_runner().invoke(args=["db", "upgrade"]).output


def test_a_connection_the_server_closed_is_replaced_before_it_is_lent(fresh_postgresql, notices_dir):
    """A PostgreSQL restart or failover closes every connection in the pools: the next choice is
    still recorded."""
    app = _app(fresh_postgresql, notices_dir)
    publish_all(app)
    add_site(app)
    client = app.test_client()
    cfg = config(client)
    assert post(client, choice(cfg)).status_code == 201
    with connect(fresh_postgresql) as conn:
        closed = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
    assert closed >= 1
    assert post(client, choice(cfg)).status_code == 201
    assert app.test_cli_runner().invoke(args=["consents", "verify"]).exit_code == 0


def test_a_forked_worker_makes_a_pool_of_its_own(fresh_postgresql):
    backend = postgresql_backend()
    parent = backend.pool(fresh_postgresql)
    with parent.connection() as conn:
        parent_pid = conn.info.backend_pid
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the worker: never the parent's pool or connections
        try:
            pool = backend.pool(fresh_postgresql)
            with pool.connection() as conn:
                mine = conn.info.backend_pid
            os.write(write, b"ok" if pool is not parent and mine != parent_pid else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 16) == b"ok"
    with parent.connection() as conn:  # the parent's pool still works
        assert conn.execute("SELECT 1").fetchone() == (1,)
