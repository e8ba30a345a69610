"""The foundation: settings, their documentation, migrations, the store's lifecycle, the secret key and the notices CLI."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import stat
import threading
import traceback
from collections import Counter
from types import SimpleNamespace

import click
import pytest
import sqlite_utils
from flask import Flask

from app import _secret_key, create_app
from keksi import settings, store
from keksi.store import open_store
from keksi.store.migrations.sqlite import migrations as sqlite_migrations

from .conftest import ROOT, raw_sql, write_version

README = (ROOT / "README.md").read_text(encoding="utf-8")


# -- settings ---------------------------------------------------------------------------


def test_settings_are_parsed_from_the_environment():
    config = settings.from_environ({
        "KEKSI_LANGUAGES": "fi, en", "KEKSI_DATABASE": "/x.db", "KEKSI_HTTPS": "true",
        "KEKSI_DATE_FORMATS": "fi:d.M.y, en:d MMM y", "OTHER": "ignored",
    })
    assert config["LANGUAGES"] == ["fi", "en"]
    assert config["DATABASE"] == "/x.db"
    assert config["HTTPS"] is True
    assert config["DATE_FORMATS"] == {"fi": "d.M.y", "en": "d MMM y"}
    assert config["DEFAULT_LANGUAGE"] == "fi", "unset variables keep their defaults"
    assert "OTHER" not in config


@pytest.mark.parametrize("name, value", [
    ("KEKSI_HTTPS", "maybe"),
    ("KEKSI_LANGUAGES", " , "),
    ("KEKSI_DATE_FORMATS", "fi=d.M.y"),
    # Accepted as is, a misspelt zone would start the app and turn every page into a 500.
    ("KEKSI_TIMEZONE", "Europe/Helsingfors"),
])
def test_an_invalid_value_stops_with_the_variables_name(name, value):
    with pytest.raises(SystemExit) as stopped:
        settings.from_environ({name: value})
    assert name in str(stopped.value.code) and repr(value) in str(stopped.value.code)


def test_defaults_are_the_documented_ones():
    config = settings.from_environ({})
    assert config["DATABASE"] == "instance/keksi.db"
    assert config["LANGUAGES"] == ["fi", "sv", "en"]
    assert config["DEFAULT_LANGUAGE"] == "fi"
    assert config["TIMEZONE"] == "Europe/Helsinki"
    assert config["NOTICES_DIR"] == "notices"
    assert config["HTTPS"] is False
    assert config["SECRET_KEY"] is None


def test_environment_is_read_when_the_app_is_made_and_test_config_wins(make_app, monkeypatch):
    monkeypatch.setenv("KEKSI_ORGANIZATION", "Esimerkki Oy")
    monkeypatch.setenv("KEKSI_TIMEZONE", "Europe/Stockholm")
    app = make_app(publish=False, TIMEZONE="UTC")
    assert app.config["ORGANIZATION"] == "Esimerkki Oy"
    assert app.config["TIMEZONE"] == "UTC"


def test_default_language_must_be_served(make_app):
    with pytest.raises(SystemExit, match="KEKSI_DEFAULT_LANGUAGE"):
        make_app(publish=False, DEFAULT_LANGUAGE="de")


# -- the README documents every setting and command --------------------------------------


def _readme_rows() -> dict[str, list[str]]:
    """Table rows of the README whose first cell is code, by that cell's text."""
    rows = {}
    for line in README.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def _as_environment_value(value) -> str:
    """A default written the way it would be set in the environment."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return ",".join(f"{key}:{val}" for key, val in value.items())
    return str(value)


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_in_the_readme_with_its_default(setting):
    rows = _readme_rows()
    assert setting.env in rows, f"README.md's configuration table has no row for {setting.env}"
    documented = rows[setting.env][1]
    if setting.default is None:  # made at start-up: the README says so in a word, not a value
        assert documented == "generated", f"README.md gives {setting.env} the default {documented}"
        return
    if setting.default == "":
        assert documented == "(empty)", f"README.md gives {setting.env} the default {documented}"
        return
    assert documented == f"`{_as_environment_value(setting.default)}`", (
        f"README.md gives {setting.env} the default {documented}, the code {setting.default!r}")
    assert setting.parse(_as_environment_value(setting.default)) == setting.default, \
        "the documented default, set in the environment, gives the same value"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), command


def test_every_cli_command_and_option_is_in_the_readme(app):
    commands = dict(_commands(app.cli))
    assert {"notices check", "notices publish"} <= set(commands)
    rows = _readme_rows()
    for name, command in commands.items():
        row = next((cells for key, cells in rows.items() if key == name or key.startswith(name + " ")), None)
        assert row, f"README.md's CLI table does not name `{name}`"
        for param in command.params:
            if isinstance(param, click.Option):
                assert any(opt in row[0] for opt in param.opts), f"README.md omits {name} {param.opts[0]}"


# -- migrations and the store -------------------------------------------------------------

ALL_MIGRATIONS = [m.name for m in sqlite_migrations.pending(sqlite_utils.Database(memory=True))]


def _applied(path: str) -> list[str]:
    db = sqlite_utils.Database(path)
    try:
        return [m.name for m in sqlite_migrations.applied(db)]
    finally:
        db.close()


@pytest.mark.sqlite_only
def test_a_new_database_gets_every_migration_and_wal(make_app):
    app = make_app(publish=False)
    path = app.config["DATABASE"]
    assert ALL_MIGRATIONS and _applied(path) == ALL_MIGRATIONS
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        applied_at = conn.execute("SELECT name, applied_at FROM _sqlite_migrations").fetchall()
    make_app(publish=False)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name, applied_at FROM _sqlite_migrations").fetchall() == applied_at, \
            "making the app again applies nothing"


@pytest.mark.sqlite_only
def test_a_database_from_before_the_generations_row_upgrades_and_keeps_working(make_app, notices_dir):
    """Migration 0011 on a database that has everything before it: the generations start at 1 and
    the next publication raises the notices' one."""
    app = make_app()
    raw_sql(app, "DROP TABLE generations; DELETE FROM _sqlite_migrations WHERE name = '0011_generations';",
            script=True)
    upgraded = make_app(publish=False)  # the app migrates on start
    assert sorted(_applied(upgraded.config["DATABASE"])) == ALL_MIGRATIONS
    assert store.generation(upgraded, "notices", "sites") == (1, 1)
    write_version(notices_dir, "privacy", "2027-01-15")
    assert upgraded.test_cli_runner().invoke(args=["notices", "publish"]).exit_code == 0
    assert store.generation(upgraded, "notices", "sites") == (2, 1)


@pytest.mark.sqlite_only
def test_failed_sign_ins_keep_their_numbers_when_the_table_gains_an_id_column(make_app):
    """Migration 0012 on the table as 0004 made it (rows numbered by SQLite's rowid only)."""
    app = make_app(publish=False)
    raw_sql(app, "DROP TABLE login_failures; CREATE TABLE login_failures (key TEXT NOT NULL, at TEXT NOT NULL);"
            "INSERT INTO login_failures (rowid, key, at) VALUES (7, 'a', '2026-11-01'), (9, 'b', '2026-11-02');"
            "DELETE FROM _sqlite_migrations WHERE name = '0012_login_failure_ids';", script=True)
    upgraded = make_app(publish=False)  # the app migrates on start
    assert [tuple(r.values()) for r in raw_sql(upgraded, "SELECT id, key, at FROM login_failures ORDER BY id")] == [
        (7, "a", "2026-11-01"), (9, "b", "2026-11-02")]
    store = open_store(upgraded.config["DATABASE"])
    try:
        assert store.login_failures("a", "2026-01-01", before=8) == ["2026-11-01"]
        [new] = store.record_login_failure(["a"], "2026-11-03", "2026-01-01")
        assert new > 9
    finally:
        store.close()


def _make_app_in_a_process(database: str, notices: str, barrier, errors) -> None:
    try:
        barrier.wait(timeout=60)  # every process creates the app at the same moment
        create_app({"TESTING": True, "DATABASE": database, "NOTICES_DIR": notices,
                    "SECRET_KEY": "test-secret"})
    except BaseException:
        errors.put(traceback.format_exc())
        raise SystemExit(1)


@pytest.mark.sqlite_only
def test_workers_starting_together_migrate_once(tmp_path, notices_dir):
    database = str(tmp_path / "shared" / "keksi.db")
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_make_app_in_a_process,
                                 args=(database, str(notices_dir), barrier, errors)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    problems = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert [p.exitcode for p in processes] == [0, 0, 0, 0], problems
    applied = _applied(database)
    assert Counter(applied) == Counter(ALL_MIGRATIONS), "each migration exactly once"


@pytest.mark.sqlite_only
def test_a_thread_keeps_its_store_between_requests_with_no_transaction_left_open(app):
    seen = []

    @app.get("/_probe")
    def probe():
        kept = store.get_store()
        assert store.get_store() is kept, "one store per request"
        seen.append(kept)
        kept.backend.db.execute("BEGIN IMMEDIATE")
        kept.backend.db.execute("INSERT INTO audit_log (at, actor, action, subject) VALUES ('t', 'probe', 'x', 'y')")
        raise RuntimeError("the request fails half-way through a write")

    client = app.test_client()
    assert client.get("/_probe").status_code == 500
    assert client.get("/_probe").status_code == 500
    assert seen[0] is seen[1], "the thread's store is kept between requests"
    assert not seen[0].backend.db.conn.in_transaction, "the failed request's transaction was rolled back"
    assert seen[0].backend.db.execute("SELECT count(*) FROM audit_log WHERE actor = 'probe'").fetchone()[0] == 0

    thread = threading.Thread(target=lambda: client.get("/_probe"))
    thread.start()
    thread.join()
    assert len(seen) == 3 and seen[2] is not seen[0], "each thread has its own connection"


class _RollbackFails:
    """A connection whose rollback fails (a disk error at the worst moment)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn, self.closed = conn, False

    in_transaction = True

    def rollback(self) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        self.closed = True
        self.conn.close()

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


@pytest.mark.sqlite_only
def test_a_store_whose_rollback_fails_is_closed_and_not_kept(app):
    seen = []

    @app.get("/_probe")
    def probe():
        kept = store.get_store()
        seen.append(kept)
        if len(seen) == 1:
            kept.backend.db.conn = _RollbackFails(kept.backend.db.conn)
        return "ok"

    client = app.test_client()
    assert client.get("/_probe").status_code == 200
    broken = seen[0].backend.db.conn
    assert broken.closed, "the connection in an unknown state was closed"
    assert client.get("/_probe").status_code == 200
    assert seen[1] is not seen[0], "the next request got a new store"
    assert not seen[1].backend.db.conn.in_transaction


# -- the secret key -----------------------------------------------------------------------


def test_secret_key_is_made_once_and_kept_private(tmp_path):
    holder = SimpleNamespace(instance_path=str(tmp_path / "instance"))
    key = _secret_key(holder)
    assert len(key) >= 32 and _secret_key(holder) == key
    path = tmp_path / "instance" / "secret_key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _secret_key(SimpleNamespace(instance_path=str(tmp_path / "elsewhere"))) != key


def test_apps_without_a_secret_key_share_the_generated_one(make_app, monkeypatch, tmp_path):
    monkeypatch.delenv("KEKSI_SECRET_KEY", raising=False)
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(tmp_path / "instance"))
    first = make_app(publish=False, SECRET_KEY=None)
    second = make_app(publish=False, SECRET_KEY=None)
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["SECRET_KEY"] == (tmp_path / "instance" / "secret_key").read_text().strip()


# -- the notices CLI ----------------------------------------------------------------------


def _summary_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_check_passes_on_the_samples(make_app):
    result = make_app(publish=False).test_cli_runner().invoke(args=["notices", "check"])
    assert result.exit_code == 0, result.output
    assert _summary_line(result.output) == "4 valid versions, 4 not yet published, 0 problems."


def test_check_refuses_a_published_file_that_was_edited(runner, notices_dir):
    path = notices_dir / "privacy" / "2025-03-01.sv.md"
    path.write_text(path.read_text(encoding="utf-8").replace("Tiimityö", "Tiimityo", 1), encoding="utf-8")
    result = runner.invoke(args=["notices", "check"])
    assert result.exit_code == 1
    assert re.search(r"notices/privacy/2025-03-01\.sv\.md: edited after it was published", result.output)
    assert "1 problems" in result.output
    assert runner.invoke(args=["notices", "publish"]).exit_code == 1


def test_check_names_the_missing_language_file(runner, notices_dir):
    write_version(notices_dir, "privacy", "2027-01-15", langs=("fi", "en"))
    result = runner.invoke(args=["notices", "check"])
    assert result.exit_code == 1
    assert "notices/privacy/2027-01-15.sv.md: missing" in result.output
    publish = runner.invoke(args=["notices", "publish"])
    assert publish.exit_code == 1 and "Nothing new to publish." in publish.output


def test_publish_publishes_a_complete_version_once(app, runner, notices_dir):
    write_version(notices_dir, "privacy", "2027-01-15", material=True)
    result = runner.invoke(args=["notices", "publish", "--by", "Aino Virtanen"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["published privacy 2027-01-15", "1 versions published."]
    rows = raw_sql(app, "SELECT lang, published_by FROM notice_versions WHERE version = '2027-01-15' ORDER BY lang")
    assert [tuple(row.values()) for row in rows] == [("en", "Aino Virtanen"), ("fi", "Aino Virtanen"), ("sv", "Aino Virtanen")]
    again = runner.invoke(args=["notices", "publish"])
    assert again.exit_code == 0 and again.output.strip() == "Nothing new to publish."


def test_publish_publishes_the_valid_versions_and_exits_1_for_the_rest(runner, notices_dir, app):
    write_version(notices_dir, "privacy", "2027-01-15")
    (notices_dir / "cookies" / "2027-02-01.fi.md").write_text("no front matter", encoding="utf-8")
    result = runner.invoke(args=["notices", "publish"])
    assert result.exit_code == 1
    assert "published privacy 2027-01-15" in result.output
    assert "notices/cookies/2027-02-01.fi.md: front matter is missing" in result.output


# -- the README's Layout is true today -------------------------------------------------------


def _layout() -> str:
    return README.split("## Layout", 1)[1].split("```")[1]


def test_the_readme_layout_names_every_module_and_only_what_exists():
    layout = _layout()
    modules = [p for p in (ROOT / "keksi").rglob("*.py") if p.name != "__init__.py"]
    missing = [str(p.relative_to(ROOT)) for p in modules if not re.search(rf"(?<![\w/]){re.escape(p.name)}\b", layout)]
    assert not missing, f"README.md's Layout does not name {missing}"
    named = re.findall(r"^(\S+)", layout, re.M)  # the top-level entries: app.py, keksi/, notices/ …
    gone = [name for name in named if not (ROOT / name.rstrip("/")).exists()]
    assert not gone, f"README.md's Layout names what does not exist: {gone}"
    for line in re.findall(r"^  (\S+\.py)", layout, re.M):  # the modules of keksi/, one a line
        assert (ROOT / "keksi" / line).exists(), f"README.md's Layout names keksi/{line}, which does not exist"
