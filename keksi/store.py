"""The store: the only module that talks to the database.

Everything Keksi keeps goes through `Store`, whose methods take and return plain
dicts. A PostgreSQL backend for deployments with several app hosts would be a
second class with the same methods, chosen in `open_store`; nothing outside this
module knows that SQLite is underneath.

Connections are opened per request on `flask.g` and closed on teardown: a
connection is never shared across gunicorn's forked workers or across threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from datetime import datetime, timezone
from typing import Any, Iterator

import sqlite_utils
from flask import Flask, current_app, g
from sqlite_utils.migrations import Migrations

BUSY_TIMEOUT_MS = 5000

migrations = Migrations("keksi")


@migrations(name="0001_wal", transactional=False)
def _wal(db: sqlite_utils.Database) -> None:
    # journal_mode can only change outside a transaction, hence its own step.
    db.enable_wal()


@migrations(name="0002_notice_versions")
def _notice_versions(db: sqlite_utils.Database) -> None:
    db["notice_versions"].create(
        {
            "slug": str,
            "version": str,  # the effective date, YYYY-MM-DD: the version's identifier
            "lang": str,
            "title": str,
            "summary": str,
            "material": int,
            "body": str,  # the Markdown body, front matter removed
            "source": str,  # the file exactly as published
            "sha256": str,  # of `source`, UTF-8
            "published_at": str,
            "published_by": str,
        },
        pk=("slug", "version", "lang"),
        not_null={"title", "summary", "material", "body", "source", "sha256", "published_at"},
    )
    db.execute(
        """CREATE TRIGGER notice_versions_immutable BEFORE UPDATE ON notice_versions
        BEGIN SELECT RAISE(ABORT, 'published notice versions are immutable'); END"""
    )
    db["audit_log"].create(
        {"id": int, "at": str, "actor": str, "action": str, "subject": str, "detail": str},
        pk="id",
        not_null={"at", "actor", "action", "subject"},
    )
    db.execute(
        """CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"""
    )


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class StoreError(Exception):
    """A write the store refused; the message says why."""


class Store:
    """The SQLite store. One instance per connection; not thread-safe."""

    def __init__(self, path: str):
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
        self.db = sqlite_utils.Database(conn)
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")

    def close(self) -> None:
        self.db.close()

    # -- schema -----------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; return their names."""
        pending = [m.name for m in migrations.pending(self.db)]
        if pending:
            migrations.apply(self.db)
        return pending

    def applied_migrations(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    # -- notices ----------------------------------------------------------

    _NOTICE_META = "slug, version, lang, title, summary, material, sha256, published_at, published_by"

    def notice_versions(self, slug: str | None = None, lang: str | None = None) -> list[dict[str, Any]]:
        """Published versions (without their text), oldest first."""
        where, params = [], []
        if slug is not None:
            where.append("slug = ?")
            params.append(slug)
        if lang is not None:
            where.append("lang = ?")
            params.append(lang)
        sql = f"SELECT {self._NOTICE_META} FROM notice_versions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY slug, version, lang"
        return [dict(row) for row in self._query(sql, params)]

    def notice_version(self, slug: str, version: str, lang: str) -> dict[str, Any] | None:
        """One published version with its text, or None."""
        rows = self._query(
            "SELECT * FROM notice_versions WHERE slug = ? AND version = ? AND lang = ?",
            [slug, version, lang],
        )
        return dict(rows[0]) if rows else None

    def publish_notice_versions(self, rows: list[dict[str, Any]], actor: str) -> None:
        """Store each language of new versions at once: all rows or none."""
        now = utcnow()
        try:
            with self.db.atomic():
                for row in rows:
                    record = dict(row, published_at=now, published_by=actor)
                    self.db["notice_versions"].insert(record)
                    self._audit(now, actor, "notice.publish",
                                f"{row['slug']}/{row['version']}.{row['lang']}",
                                {"sha256": row["sha256"], "material": bool(row["material"])})
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"a version was already published: {exc}") from exc

    # -- audit log --------------------------------------------------------

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", [limit])
        return [dict(row, detail=json.loads(row["detail"] or "null")) for row in rows]

    def _audit(self, at: str, actor: str, action: str, subject: str, detail: Any) -> None:
        self.db["audit_log"].insert(
            {"at": at, "actor": actor, "action": action, "subject": subject,
             "detail": json.dumps(detail, sort_keys=True)}
        )

    # -- helpers ----------------------------------------------------------

    def _query(self, sql: str, params: list[Any] | tuple = ()) -> list[sqlite3.Row]:
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()


def database_path(app: Flask) -> str:
    path = app.config["DATABASE"]
    return path if os.path.isabs(path) else os.path.join(app.root_path, path)


@contextlib.contextmanager
def _migration_lock(path: str) -> Iterator[None]:
    """Serialise migrations across processes (gunicorn workers start together)."""
    with open(path + ".migrate-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_store(path: str) -> Store:
    return Store(path)


def migrate(app: Flask) -> list[str]:
    """Create or upgrade the schema; safe to call from many processes at once."""
    path = database_path(app)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with _migration_lock(path):
        store = open_store(path)
        try:
            return store.migrate()
        finally:
            store.close()


def get_store() -> Store:
    """The request's (or CLI command's) store, opened on first use."""
    if "store" not in g:
        g.store = open_store(database_path(current_app))
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    store = g.pop("store", None)
    if store is not None:
        store.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_store)
    migrate(app)
