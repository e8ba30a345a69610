"""The store: the only module that talks to the database.

Everything Keksi keeps goes through `Store`, whose methods take and return plain
dicts. A PostgreSQL backend for deployments with several app hosts would be a
second class with the same methods, chosen in `open_store`; nothing outside this
module knows that SQLite is underneath.

Connections are opened per request on `flask.g` and closed on teardown: a
connection is never shared across gunicorn's forked workers or across threads.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import threading
from typing import Any, Callable, Iterable, Iterator

import sqlite_utils
from flask import Flask, current_app, g
from sqlite_utils.migrations import Migrations

from .clock import utc_iso

_log = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 5000  # the default; KEKSI_BUSY_TIMEOUT_MS changes it

migrations = Migrations("keksi")


def _append_only(table: str, message: str, *, delete: bool = True, update: bool = True) -> str:
    """SQL for triggers that refuse UPDATE and DELETE (or one of them) on `table` with `message`."""
    statements = (["UPDATE"] if update else []) + (["DELETE"] if delete else [])
    return "".join(f"CREATE TRIGGER {table}_no_{statement.lower()} BEFORE {statement} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, '{message}'); END;\n" for statement in statements)


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


@migrations(name="0003_sites_and_consents")
def _sites_and_consents(db: sqlite_utils.Database) -> None:
    db["sites"].create(
        {"id": str, "name": str, "definition": str, "created_at": str, "updated_at": str},
        pk="id", not_null={"name", "definition", "created_at", "updated_at"},
    )
    # Each distinct banner a visitor could see, stored once and in full (EDPB 05/2020 §108).
    db["banner_versions"].create(
        {"hash": str, "site": str, "lang": str, "content": str, "first_served_at": str},
        pk="hash", not_null={"site", "lang", "content", "first_served_at"},
    )
    db.execute(
        """CREATE TRIGGER banner_versions_immutable BEFORE UPDATE ON banner_versions
        BEGIN SELECT RAISE(ABORT, 'banner versions are immutable'); END"""
    )
    # One row per choice, never updated. Its chain link lives in consent_chain, which
    # keeps no personal data, so that erasure and purging leave the chain verifiable.
    db["consents"].create(
        {
            "seq": int, "consent_id": str, "event_id": str, "subject_id": str, "site": str,
            "action": str, "choices": str, "ui_surface": str, "lang": str, "page": str,
            "notice_slug": str, "notice_version": str, "notice_sha256": str,
            "banner_hash": str, "widget_version": str, "ip": str, "user_agent": str,
            "gpc": int, "recorded_at": str, "valid_until": str, "content_hash": str,
        },
        pk="seq",
        not_null={"consent_id", "event_id", "subject_id", "site", "action", "choices",
                  "ui_surface", "lang", "notice_version", "notice_sha256", "banner_hash",
                  "gpc", "recorded_at", "valid_until", "content_hash"},
    )
    db["consents"].create_index(["consent_id"], unique=True)
    db["consents"].create_index(["event_id"], unique=True)
    db["consents"].create_index(["site", "recorded_at"])
    db["consents"].create_index(["subject_id"])
    db["consents"].create_index(["valid_until"])
    db["consent_chain"].create(
        {"seq": int, "content_hash": str, "prev_hash": str, "row_hash": str},
        pk="seq", not_null={"content_hash", "prev_hash", "row_hash"},
    )
    db["consent_removals"].create(
        {"seq": int, "reason": str, "removed_at": str},
        pk="seq", not_null={"reason", "removed_at"},
    )
    db.executescript(
        """
        CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
        BEGIN SELECT RAISE(ABORT, 'consent records are never updated: record a new choice'); END;
        CREATE TRIGGER consents_delete_only_when_removed BEFORE DELETE ON consents
        WHEN NOT EXISTS (SELECT 1 FROM consent_removals WHERE seq = OLD.seq)
        BEGIN SELECT RAISE(ABORT, 'consent records are removed only by erasure or purge'); END;
        """
        + _append_only("consent_chain", "the consent chain is append-only")
        + _append_only("consent_removals", "removal records are append-only", delete=False)
    )


@migrations(name="0004_admin")
def _admin(db: sqlite_utils.Database) -> None:
    db["users"].create(
        {"id": int, "email": str, "password_hash": str, "roles": str, "created_at": str,
         "created_by": str, "disabled": int},
        pk="id", not_null={"email", "roles", "created_at", "disabled"}, defaults={"disabled": 0},
    )
    db["users"].create_index(["email"], unique=True)
    # One-time links to set a password; only a hash of the token is kept.
    db["password_tokens"].create(
        {"token_hash": str, "user_id": int, "expires_at": str, "used_at": str},
        pk="token_hash", not_null={"user_id", "expires_at"}, foreign_keys=[("user_id", "users", "id")],
    )
    db["login_failures"].create({"key": str, "at": str}, not_null={"key", "at"})
    db["login_failures"].create_index(["key", "at"])
    # Daily figures, kept up to date in the same transaction as each consent, so the
    # admin's charts read a few hundred rows instead of scanning millions.
    db["consent_daily"].create(
        {"site": str, "day": str, "action": str, "n": int}, pk=("site", "day", "action"))
    db["consent_daily_categories"].create(
        {"site": str, "day": str, "category": str, "granted": int, "total": int},
        pk=("site", "day", "category"))
    db.execute(
        "INSERT INTO consent_daily (site, day, action, n) "
        "SELECT site, substr(recorded_at, 1, 10), action, count(*) FROM consents GROUP BY 1, 2, 3")
    db.execute(
        "INSERT INTO consent_daily_categories (site, day, category, granted, total) "
        "SELECT c.site, substr(c.recorded_at, 1, 10), j.key, sum(j.value = 1), count(*) "
        "FROM consents c, json_each(c.choices) j GROUP BY 1, 2, 3")


@migrations(name="0005_consents_by_site")
def _consents_by_site(db: sqlite_utils.Database) -> None:
    # Export reads one site's records in seq order: this index gives that order
    # without sorting every row first (the first row of 1M came after 2.3 s).
    db["consents"].create_index(["site", "seq"])


@migrations(name="0006_cookie_notice_in_consents")
def _cookie_notice_in_consents(db: sqlite_utils.Database) -> None:
    # The cookie notice version in effect when the visitor chose (the widget asks again when a
    # material one follows), so the record shows which cookie list the choice was made under.
    # Empty for rows recorded before, and for sites without a cookie notice.
    for column in ("cookie_notice_slug", "cookie_notice_version", "cookie_notice_sha256"):
        db.execute(f"ALTER TABLE consents ADD COLUMN {column} TEXT")


@migrations(name="0007_chained_removals")
def _chained_removals(db: sqlite_utils.Database) -> None:
    # Each erasure or purge becomes a link of the consent chain listing the records it removed,
    # so a record deleted by hand (with a forged consent_removals row) no longer verifies. The
    # list is kept as ranges of neighbouring records, one row each, so that neither writing
    # nor verifying it needs memory in proportion to the records removed.
    db.executescript(
        """
        CREATE TABLE removal_links (
            seq INTEGER PRIMARY KEY, reason TEXT NOT NULL, removed_at TEXT NOT NULL, ranges INTEGER NOT NULL);
        CREATE TABLE removal_ranges (
            first INTEGER PRIMARY KEY, last INTEGER NOT NULL, link_seq INTEGER NOT NULL);
        CREATE INDEX idx_removal_ranges_link ON removal_ranges (link_seq, first);
        """
        + _append_only("removal_links", "removal links are append-only")
        + _append_only("removal_ranges", "removal links are append-only")
    )
    # Removals made before this migration are chained now, in one link.
    removed = (row[0] for row in db.conn.execute("SELECT seq FROM consent_removals ORDER BY seq"))
    _append_removal_link(db.conn, "before-chaining", utcnow(), removed)


@migrations(name="0008_ledger_proof")
def _ledger_proof(db: sqlite_utils.Database) -> None:
    # Banners and the audit log are proof too: nothing deletes them. The audit log is chained
    # like the ledger (each entry's hash covers the one before), so an entry edited, removed or
    # inserted between two others no longer verifies.
    db.executescript(
        "DROP TRIGGER audit_log_append_only;"
        "ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;"
        "ALTER TABLE audit_log ADD COLUMN row_hash TEXT;")
    prev = GENESIS_HASH
    for row in list(db.query("SELECT * FROM audit_log ORDER BY id")):
        row_hash = chain_hash(prev, audit_content_hash(row))
        db.execute("UPDATE audit_log SET prev_hash = ?, row_hash = ? WHERE id = ?", [prev, row_hash, row["id"]])
        prev = row_hash
    # What each removal took out of the daily figures (which stay as they were: they hold no
    # personal data), so that the figures can be derived from the records still held plus these
    # counts. Covered by the removal link's hash.
    db.executescript(
        """
        CREATE TABLE removal_counts (
            link_seq INTEGER NOT NULL, site TEXT NOT NULL, day TEXT NOT NULL, action TEXT NOT NULL,
            n INTEGER NOT NULL, PRIMARY KEY (link_seq, site, day, action));
        CREATE TABLE removal_category_counts (
            link_seq INTEGER NOT NULL, site TEXT NOT NULL, day TEXT NOT NULL, category TEXT NOT NULL,
            granted INTEGER NOT NULL, total INTEGER NOT NULL, PRIMARY KEY (link_seq, site, day, category));
        CREATE TABLE maintenance (
            task TEXT PRIMARY KEY, last_run_at TEXT, last_count INTEGER, claimed_until TEXT);
        """
        + _append_only("audit_log", "the audit log is append-only")
        # banner_versions_immutable (0003) already refuses UPDATE.
        + _append_only("banner_versions", "banner versions are immutable", update=False)
        + _append_only("removal_counts", "removal links are append-only")
        + _append_only("removal_category_counts", "removal links are append-only")
    )
    # The first scheduled purge runs a day after this migration (see keksi.retention).
    db.execute("INSERT INTO maintenance (task, last_run_at) VALUES ('purge', ?)", [utcnow()])


@migrations(name="0009_widget_builds")
def _widget_builds(db: sqlite_utils.Database) -> None:
    # Code escrow (CNIL 2020-092): every widget build served, byte for byte, by the version each
    # consent record names, so that a record shows which code the visitor ran, not only its hash.
    db["widget_builds"].create(
        {"version": str, "sha256": str, "script": str, "first_served_at": str},
        pk="version", not_null={"sha256", "script", "first_served_at"},
    )
    db.executescript(_append_only("widget_builds", "widget builds are kept as first served"))


@migrations(name="0010_admin_sessions")
def _admin_sessions(db: sqlite_utils.Database) -> None:
    # Admin sessions live here, not only in the signed cookie, so that signing out, a new password,
    # a disabled account or new roles end a session on every worker, and a copied cookie stops working.
    # Only a hash of each session's token is kept.
    db["admin_sessions"].create(
        {"token_hash": str, "user_id": int, "created_at": str, "seen_at": str},
        pk="token_hash", not_null={"user_id", "created_at", "seen_at"},
        foreign_keys=[("user_id", "users", "id")])
    db["admin_sessions"].create_index(["user_id"])


def audit_content_hash(row: dict[str, Any]) -> str:
    """An audit entry's content hash: its id and every field, in a fixed order."""
    values = [row["id"], row["at"], row["actor"], row["action"], row["subject"], row["detail"]]
    return hashlib.sha256(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


Counts = tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str, int, int]]]


def removal_digest(reason: str, removed_at: str, ranges: Iterable[tuple[int, int]],
                   counts: Counts | None = None) -> str:
    """A removal link's content hash: its reason, time and ranges (first, last) in order, then
    what it took out of the daily figures (links made before migration 0008 have no counts)."""
    digest = hashlib.sha256(f"removal {reason} {removed_at}\n".encode())
    for first, last in ranges:
        digest.update(f"{first}-{last}\n".encode())
    actions, categories = counts or ([], [])
    for site, day, action, n in sorted(actions):
        digest.update(f"n {site} {day} {action} {n}\n".encode())
    for site, day, category, granted, total in sorted(categories):
        digest.update(f"c {site} {day} {category} {granted} {total}\n".encode())
    return digest.hexdigest()


def _tally(rows: Iterable[sqlite3.Row], day_of: Callable[[str], str]) -> Counts:
    """What `rows` count in the daily figures, as `_count` added them: (actions, categories)."""
    actions: collections.Counter = collections.Counter()
    categories: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        day = day_of(row["recorded_at"])
        actions[(row["site"], day, row["action"])] += 1
        for category, granted in json.loads(row["choices"]).items():
            counts = categories.setdefault((row["site"], day, category), [0, 0])
            counts[0] += int(granted)
            counts[1] += 1
    return ([(*key, n) for key, n in sorted(actions.items())],
            [(*key, granted, total) for key, (granted, total) in sorted(categories.items())])


def _seq_ranges(seqs: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Ascending seqs as ranges: 1, 2, 3, 7 -> (1, 3), (7, 7)."""
    first = last = None
    for seq in seqs:
        if last is not None and seq == last + 1:
            last = seq
            continue
        if first is not None:
            yield first, last
        first = last = seq
    if first is not None:
        yield first, last


def _chain_end(conn: sqlite3.Connection) -> tuple[int, str]:
    """The seq the next link takes, and the row hash it links to."""
    last = conn.execute("SELECT seq, row_hash FROM consent_chain ORDER BY seq DESC LIMIT 1").fetchone()
    return ((last[0] + 1, last[1]) if last else (1, GENESIS_HASH))


def _insert_chain_link(conn: sqlite3.Connection, seq: int, prev_hash: str, content: str) -> None:
    conn.execute("INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) VALUES (?, ?, ?, ?)",
                 [seq, content, prev_hash, chain_hash(prev_hash, content)])


def _append_chain_link(conn: sqlite3.Connection, content: str) -> int:
    """Append a link for `content` (a hex content hash) at the next seq; return that seq."""
    seq, prev_hash = _chain_end(conn)
    _insert_chain_link(conn, seq, prev_hash, content)
    return seq


def _append_removal_link(conn: sqlite3.Connection, reason: str, removed_at: str, seqs: Iterable[int],
                         counts: Counts | None = None) -> None:
    """Chain a removal of `seqs` (ascending) and what it took out of the daily figures, inside the
    caller's transaction; no seqs, no link."""
    link_seq, prev_hash = _chain_end(conn)
    written = 0

    def write(ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        nonlocal written
        for first, last in ranges:  # the ranges name the link's seq before it is appended
            conn.execute("INSERT INTO removal_ranges (first, last, link_seq) VALUES (?, ?, ?)",
                         [first, last, link_seq])
            written += 1
            yield first, last

    content = removal_digest(reason, removed_at, write(_seq_ranges(seqs)), counts)
    if not written:
        return
    if counts:
        conn.executemany("INSERT INTO removal_counts (link_seq, site, day, action, n) VALUES (?, ?, ?, ?, ?)",
                         [(link_seq, *row) for row in counts[0]])
        conn.executemany("INSERT INTO removal_category_counts (link_seq, site, day, category, granted, total) "
                         "VALUES (?, ?, ?, ?, ?, ?)", [(link_seq, *row) for row in counts[1]])
    _insert_chain_link(conn, link_seq, prev_hash, content)
    conn.execute("INSERT INTO removal_links (seq, reason, removed_at, ranges) VALUES (?, ?, ?, ?)",
                 [link_seq, reason, removed_at, written])


def utcnow() -> str:
    return utc_iso()


# Records out of force before the cutoff (given twice). The unary + keeps SQLite on the subject
# index: given the (site, seq) index instead, it scanned every later record of the site for each
# record (100k records: over 15 minutes instead of 1 s).
PURGE_WHERE = ("c.valid_until < ? OR EXISTS (SELECT 1 FROM consents n WHERE n.subject_id = c.subject_id "
               "AND +n.site = c.site AND +n.seq > c.seq AND n.recorded_at < ?)")


class StoreError(Exception):
    """A write the store refused; the message says why."""


class StoreUnavailable(StoreError):
    """The database cannot take writes right now (disk full, read-only); nothing was written."""


class LastAdmin(StoreError):
    """The change would leave no enabled admin who can sign in; nothing was changed."""


class StoreBusy(StoreUnavailable):
    """The database stayed locked longer than the busy timeout; try again shortly."""


def _unavailable(exc: sqlite3.OperationalError) -> StoreError | None:
    """The store error an SQLite failure means for the caller, or None if it is a bug."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreBusy("the database is busy; try again in a moment")
    if any(word in text for word in ("full", "readonly", "read-only", "disk i/o", "unable to open")):
        return StoreUnavailable(f"the database cannot be written ({exc}); nothing was saved")
    return None


GENESIS_HASH = "0" * 64


class Store:
    """The SQLite store. One instance per connection; not thread-safe."""

    def __init__(self, path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = path
        self.read_only = False
        try:
            self.db = self._connect(path, busy_timeout_ms, read_only=False)
        except sqlite3.OperationalError as read_write_error:
            # A read-only disk: keep serving reads (notices) and answer writes with 503.
            for mode in ("ro", "immutable"):
                try:
                    self.db = self._connect(path, busy_timeout_ms, read_only=mode)
                    self.read_only = True
                    break
                except sqlite3.OperationalError:
                    continue
            else:
                raise StoreUnavailable(f"the database cannot be opened ({read_write_error})") from None

    @staticmethod
    def _connect(path: str, busy_timeout_ms: int, read_only: str | bool) -> sqlite_utils.Database:
        if read_only:
            # "immutable" is the last resort when even the WAL index cannot be created: the
            # filesystem is read-only, so nobody can be changing the file under us.
            query = "mode=ro" if read_only == "ro" else "mode=ro&immutable=1"
            conn = sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=busy_timeout_ms / 1000)
        else:
            conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000)
        try:
            # connect(timeout=) already sets the busy timeout; no plugins or recursive
            # triggers are used, and every statement saved here is saved on every request.
            db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
            # FULL: a commit is on disk before it returns, so a consent answered 201 survives a
            # power cut too, not only a crash of the process (NORMAL in WAL mode may lose the
            # last commits). secure_delete: erased and purged records are overwritten, not
            # left readable in free pages of the file.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.OperationalError:
            conn.close()
            raise
        return db

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

    def pending_migrations(self) -> list[str]:
        return [m.name for m in migrations.pending(self.db)]

    def backup(self, destination: str) -> None:
        """Copy the live database with SQLite's online backup: consistent while writes go on."""
        target = sqlite3.connect(destination)
        try:
            self.db.conn.backup(target, pages=1024)
        finally:
            target.close()

    def integrity_check(self) -> str:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0]

    # -- notices ----------------------------------------------------------

    _NOTICE_META = "slug, version, lang, title, summary, material, sha256, published_at, published_by"

    def notice_versions(self, slug: str | None = None, lang: str | None = None) -> list[dict[str, Any]]:
        """Published versions (without their text), oldest first."""
        where, params = _where(("slug = ?", slug), ("lang = ?", lang))
        sql = f"SELECT {self._NOTICE_META} FROM notice_versions{where} ORDER BY slug, version, lang"
        return [dict(row) for row in self._query(sql, params)]

    def notice_version(self, slug: str, version: str, lang: str) -> dict[str, Any] | None:
        """One published version with its text, or None."""
        rows = self._query(
            "SELECT * FROM notice_versions WHERE slug = ? AND version = ? AND lang = ?",
            [slug, version, lang],
        )
        return dict(rows[0]) if rows else None

    def publish_notice_versions(self, rows: list[dict[str, Any]], actor: str,
                                reason: str | None = None) -> None:
        """Store each language of new versions at once: all rows or none. The audit log keeps
        `reason` (why legal published) beside each language's SHA-256."""
        now = utcnow()
        try:
            with self._write():
                for row in rows:
                    record = dict(row, published_at=now, published_by=actor)
                    self.db["notice_versions"].insert(record)
                    detail = {"sha256": row["sha256"], "material": bool(row["material"])}
                    if reason:
                        detail["reason"] = reason
                    self._audit(now, actor, "notice.publish",
                                f"{row['slug']}/{row['version']}.{row['lang']}", detail)
                self._changed("notices")
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"a version was already published: {exc}") from exc
        self._changed("notices", committed=True)

    # -- sites ------------------------------------------------------------

    def site_texts(self) -> list[tuple[str, str]]:
        """Every site's id and stored definition text, as saved."""
        return [tuple(row) for row in self.db.conn.execute("SELECT id, definition FROM sites ORDER BY id")]

    def sites(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT definition FROM sites ORDER BY id")
        return [json.loads(row["definition"]) for row in rows]

    def site(self, site_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT definition FROM sites WHERE id = ?", [site_id])
        return json.loads(rows[0]["definition"]) if rows else None

    def save_site(self, definition: dict[str, Any], actor: str, *, create: bool) -> None:
        """Add a new site (`create=True`) or replace an existing one's definition."""
        now = utcnow()
        site_id = definition["id"]
        with self._write():
            exists = bool(self._query("SELECT 1 FROM sites WHERE id = ?", [site_id]))
            if create and exists:
                raise StoreError(f"a site with id {site_id!r} already exists")
            if not create and not exists:
                raise StoreError(f"there is no site with id {site_id!r}")
            text = json.dumps(definition, ensure_ascii=False, sort_keys=True)
            if create:
                self.db["sites"].insert({"id": site_id, "name": definition["name"], "definition": text,
                                         "created_at": now, "updated_at": now})
            else:
                self.db.execute("UPDATE sites SET name = ?, definition = ?, updated_at = ? WHERE id = ?",
                                [definition["name"], text, now, site_id])
            self._audit(now, actor, "site.add" if create else "site.edit", site_id,
                        {"sha256": hashlib.sha256(text.encode()).hexdigest()})
            self._changed("sites")
        self._changed("sites", committed=True)

    def remove_site(self, site_id: str, actor: str) -> None:
        with self._write():
            if not self._query("SELECT 1 FROM sites WHERE id = ?", [site_id]):
                raise StoreError(f"there is no site with id {site_id!r}")
            if self._query("SELECT 1 FROM consents WHERE site = ? LIMIT 1", [site_id]):
                raise StoreError(f"site {site_id!r} has recorded consents, which are proof that must be "
                                 "kept; remove its origins instead to stop it collecting new ones")
            self.db.execute("DELETE FROM sites WHERE id = ?", [site_id])
            self._audit(utcnow(), actor, "site.remove", site_id, None)
            self._changed("sites")
        self._changed("sites", committed=True)

    # -- banner versions ----------------------------------------------------

    def remember_banner(self, banner_hash: str, site: str, lang: str, content: str) -> None:
        """Store a banner version the first time it is served."""
        if self._query("SELECT 1 FROM banner_versions WHERE hash = ?", [banner_hash]):
            return
        with self._write():
            self.db.execute(
                "INSERT OR IGNORE INTO banner_versions (hash, site, lang, content, first_served_at) "
                "VALUES (?, ?, ?, ?, ?)", [banner_hash, site, lang, content, utcnow()])

    def banner_origin(self, banner_hash: str) -> dict[str, Any] | None:
        """The site and language a banner version was shown for, without its content."""
        rows = self._query("SELECT site, lang FROM banner_versions WHERE hash = ?", [banner_hash])
        return dict(rows[0]) if rows else None

    def notice_version_hash(self, slug: str, version: str, lang: str) -> str | None:
        """A published version's SHA-256, without its text."""
        rows = self._query("SELECT sha256 FROM notice_versions WHERE slug = ? AND version = ? AND lang = ?",
                           [slug, version, lang])
        return rows[0]["sha256"] if rows else None

    def banner_version(self, banner_hash: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM banner_versions WHERE hash = ?", [banner_hash])
        return dict(rows[0]) if rows else None

    def banner_versions(self, site: str | None = None) -> list[dict[str, Any]]:
        """Every banner version (of one site), newest first, without its content."""
        clause, params = _where(("site = ?", site))
        rows = self._query("SELECT hash, site, lang, first_served_at FROM banner_versions"
                           f"{clause} ORDER BY first_served_at DESC, hash", params)
        return [dict(row) for row in rows]

    # -- widget builds --------------------------------------------------------

    def remember_widget_build(self, version: str, script: str) -> None:
        """Keep a widget build the first time it is served; a version is kept only once."""
        if self._query("SELECT 1 FROM widget_builds WHERE version = ?", [version]):
            return
        with self._write():
            self.db.execute(
                "INSERT OR IGNORE INTO widget_builds (version, sha256, script, first_served_at) "
                "VALUES (?, ?, ?, ?)",
                [version, hashlib.sha256(script.encode("utf-8")).hexdigest(), script, utcnow()])

    def widget_build(self, version: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM widget_builds WHERE version = ?", [version])
        return dict(rows[0]) if rows else None

    def iter_widget_builds(self) -> Iterator[dict[str, Any]]:
        """Every widget build kept, with its script."""
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        yield from (dict(row) for row in cursor.execute("SELECT * FROM widget_builds ORDER BY version"))

    def widget_builds(self) -> list[dict[str, Any]]:
        """Every widget build kept, newest first, without its script."""
        rows = self._query("SELECT version, sha256, length(CAST(script AS BLOB)) AS size, first_served_at "
                           "FROM widget_builds ORDER BY first_served_at DESC")
        return [dict(row) for row in rows]

    # -- consents -----------------------------------------------------------

    def consent_by_event(self, event_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM consents WHERE event_id = ?", [event_id])
        return dict(rows[0]) if rows else None

    def consent(self, consent_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM consents WHERE consent_id = ?", [consent_id])
        return dict(rows[0]) if rows else None

    def subject_known(self, subject_id: str) -> bool:
        """Whether this server issued `subject_id` and still holds a choice under it."""
        return bool(self._query("SELECT 1 FROM consents WHERE subject_id = ? LIMIT 1", [subject_id]))

    def append_consent(self, event_id: str,
                       build: Callable[[str | None], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """Append one choice and its chain link, committed before returning.

        `build(last_recorded_at)` makes the record under the write lock, so that records are
        chained in the order of their times (verify reports any that are not). Returns (row,
        created). A record whose event_id is already stored is not written again: the stored
        row comes back with created=False.
        """
        with self._write():
            existing = self.consent_by_event(event_id)
            if existing:
                return existing, False
            last = self.db.conn.execute("SELECT recorded_at FROM consents ORDER BY seq DESC LIMIT 1").fetchone()
            record = build(last[0] if last else None)
            # Plain INSERTs: sqlite-utils' insert() adds catalog queries and savepoints per call.
            seq = _append_chain_link(self.db.conn, record["content_hash"])
            row = dict(record, seq=seq)
            day = row.pop("day")
            columns = ", ".join(row)
            self.db.conn.execute(f"INSERT INTO consents ({columns}) VALUES ({', '.join('?' * len(row))})",
                                 list(row.values()))
            self._count(row["site"], day, row["action"], json.loads(row["choices"]))
        return row, True

    def _count(self, site: str, day: str, action: str, choices: dict[str, bool]) -> None:
        self.db.execute(
            "INSERT INTO consent_daily (site, day, action, n) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (site, day, action) DO UPDATE SET n = n + 1", [site, day, action])
        self.db.conn.executemany(
            "INSERT INTO consent_daily_categories (site, day, category, granted, total) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT (site, day, category) "
            "DO UPDATE SET granted = granted + excluded.granted, total = total + 1",
            [(site, day, category, int(granted)) for category, granted in choices.items()])

    def daily_actions(self, site: str, first_day: str, last_day: str) -> list[dict[str, Any]]:
        """Choices per day and action, days in KEKSI_TIMEZONE, both ends included."""
        return [dict(r) for r in self._query(
            "SELECT day, action, n FROM consent_daily WHERE site = ? AND day BETWEEN ? AND ? "
            "ORDER BY day, action", [site, first_day, last_day])]

    def daily_categories(self, site: str, first_day: str, last_day: str) -> list[dict[str, Any]]:
        """Per day and category: how many choices granted it, out of how many."""
        return [dict(r) for r in self._query(
            "SELECT day, category, granted, total FROM consent_daily_categories "
            "WHERE site = ? AND day BETWEEN ? AND ? ORDER BY day, category", [site, first_day, last_day])]

    def later_consent(self, site: str, subject_id: str, seq: int) -> dict[str, Any] | None:
        """The subject's next choice on the site after `seq`, if any."""
        rows = self._query(
            "SELECT * FROM consents WHERE site = ? AND subject_id = ? AND seq > ? ORDER BY seq LIMIT 1",
            [site, subject_id, seq])
        return dict(rows[0]) if rows else None

    def _consent_filter(self, site: str | None, since: str | None, until: str | None) -> tuple[str, list]:
        return _where(("site = ?", site), ("recorded_at >= ?", since), ("recorded_at < ?", until))

    def count_consents(self, site: str | None = None, since: str | None = None,
                       until: str | None = None) -> int:
        where, params = self._consent_filter(site, since, until)
        return self._query(f"SELECT count(*) AS n FROM consents{where}", params)[0]["n"]

    def iter_consents(self, site: str | None = None, since: str | None = None,
                      until: str | None = None, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Consents in recording order, read in batches so memory stays flat."""
        where, params = self._consent_filter(site, since, until)
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        cursor.execute(f"SELECT * FROM consents{where} ORDER BY seq", params)
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                break
            for row in rows:
                yield dict(row)

    def iter_chain(self, batch: int = 5000) -> Iterator[dict[str, Any]]:
        """Every chain link with its consent (None once removed) and removal record."""
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        cursor.execute(
            "SELECT ch.seq, ch.content_hash AS chain_content_hash, ch.prev_hash, ch.row_hash, "
            "r.reason AS removed, l.reason AS link_reason, l.removed_at AS link_removed_at, "
            "c.* FROM consent_chain ch "
            "LEFT JOIN consents c ON c.seq = ch.seq LEFT JOIN consent_removals r ON r.seq = ch.seq "
            "LEFT JOIN removal_links l ON l.seq = ch.seq ORDER BY ch.seq")
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                break
            for row in rows:
                yield dict(row)

    def removal_ranges(self, link_seq: int | None = None) -> Iterator[tuple[int, int, int]]:
        """(first, last, link_seq) of the removed ranges, of one removal link or of all, by first."""
        if link_seq is None:
            cursor = self.db.conn.execute("SELECT first, last, link_seq FROM removal_ranges ORDER BY first")
        else:
            cursor = self.db.conn.execute("SELECT first, last, link_seq FROM removal_ranges "
                                          "WHERE link_seq = ? ORDER BY first", [link_seq])
        yield from cursor

    def removal_extent(self, link_seq: int) -> tuple[int, int | None]:
        """How many ranges a removal link lists, and the last record it lists."""
        row = self.db.conn.execute("SELECT count(*), max(last) FROM removal_ranges WHERE link_seq = ?",
                                   [link_seq]).fetchone()
        return row[0], row[1]

    def removal_counts(self, link_seq: int) -> Counts:
        """What one removal link took out of the daily figures: (actions, categories)."""
        return ([tuple(r) for r in self.db.conn.execute(
                    "SELECT site, day, action, n FROM removal_counts WHERE link_seq = ?", [link_seq])],
                [tuple(r) for r in self.db.conn.execute(
                    "SELECT site, day, category, granted, total FROM removal_category_counts "
                    "WHERE link_seq = ?", [link_seq])])

    def stray_removal_rows(self) -> list[int]:
        """Removal rows (ranges, counts or links) that belong to no removal link of the chain: the
        first records their ranges claim, or their link's seq."""
        chained = ("(SELECT 1 FROM removal_links l JOIN consent_chain ch ON ch.seq = l.seq "
                   "WHERE l.seq = {}.link_seq)")
        rows = self.db.conn.execute(
            f"SELECT first FROM removal_ranges r WHERE NOT EXISTS {chained.format('r')} UNION "
            f"SELECT link_seq FROM removal_counts n WHERE NOT EXISTS {chained.format('n')} UNION "
            f"SELECT link_seq FROM removal_category_counts k WHERE NOT EXISTS {chained.format('k')} UNION "
            "SELECT seq FROM removal_links l WHERE NOT EXISTS (SELECT 1 FROM consent_chain ch WHERE ch.seq = l.seq) "
            "ORDER BY 1 LIMIT 10")
        return [row[0] for row in rows]

    def uncounted_removals(self) -> tuple[int, str | None]:
        """Removal links made before removals were counted (migration 0008): how many, and when
        the last of them was made."""
        row = self.db.conn.execute(
            "SELECT count(*), max(removed_at) FROM removal_links l WHERE NOT EXISTS "
            "(SELECT 1 FROM removal_counts n WHERE n.link_seq = l.seq)").fetchone()
        return row[0], row[1]

    def figure_rows(self) -> dict[str, list[tuple]]:
        """Every daily figure as kept, and every count removals took out of them."""
        def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in self.db.conn.execute(sql)]
        return {
            "actions": rows("SELECT site, day, action, n FROM consent_daily"),
            "categories": rows("SELECT site, day, category, granted, total FROM consent_daily_categories"),
            "removed_actions": rows("SELECT site, day, action, n FROM removal_counts"),
            "removed_categories": rows("SELECT site, day, category, granted, total FROM removal_category_counts"),
        }

    def iter_notice_texts(self) -> Iterator[dict[str, Any]]:
        """Every published notice version with its text."""
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        yield from (dict(row) for row in cursor.execute("SELECT * FROM notice_versions ORDER BY slug, version, lang"))

    def iter_banners(self) -> Iterator[dict[str, Any]]:
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        yield from (dict(row) for row in cursor.execute("SELECT * FROM banner_versions ORDER BY hash"))

    def records_without_their_texts(self) -> list[int]:
        """Records whose notice version, cookie notice version or banner is no longer stored under
        the SHA-256 the record holds (a text replaced together with its hash)."""
        rows = self.db.conn.execute(
            "SELECT c.seq FROM consents c "
            "LEFT JOIN notice_versions n ON n.slug = c.notice_slug AND n.version = c.notice_version "
            "AND n.lang = c.lang "
            "LEFT JOIN notice_versions k ON k.slug = c.cookie_notice_slug AND k.version = c.cookie_notice_version "
            "AND k.lang = c.lang "
            "LEFT JOIN banner_versions b ON b.hash = c.banner_hash "
            "WHERE n.sha256 IS NOT c.notice_sha256 OR b.hash IS NULL "
            "OR (c.cookie_notice_version IS NOT NULL AND k.sha256 IS NOT c.cookie_notice_sha256) "
            "ORDER BY c.seq LIMIT 10")
        return [row[0] for row in rows]

    def removal_links(self, after_seq: int = 0) -> list[dict[str, Any]]:
        """The erasures and purges chained after link `after_seq`, with how many records each removed."""
        return [dict(row) for row in self._query(
            "SELECT l.seq, l.reason, l.removed_at, sum(r.last - r.first + 1) AS records FROM removal_links l "
            "JOIN removal_ranges r ON r.link_seq = l.seq WHERE l.seq > ? GROUP BY l.seq ORDER BY l.seq",
            [after_seq])]

    def orphan_consents(self) -> list[int]:
        """Consent rows with no chain link of their own (none, or a removal's): inserted around the store."""
        rows = self._query("SELECT c.seq FROM consents c LEFT JOIN consent_chain ch ON ch.seq = c.seq "
                           "WHERE ch.seq IS NULL OR EXISTS (SELECT 1 FROM removal_links l WHERE l.seq = c.seq) "
                           "ORDER BY c.seq LIMIT 10")
        return [row["seq"] for row in rows]

    def remove_consents(self, where: str, params: list[Any], reason: str, actor: str,
                        day_of: Callable[[str], str]) -> int:
        """Delete the content of the consents `c` matching `where`, keeping their chain links; chain
        the removal with what it took out of the daily figures (`day_of` gives a recorded_at's
        day there); audit it without personal data."""
        now = utcnow()
        with self._write():
            rows = self._query("SELECT seq, site, action, choices, recorded_at FROM consents c "
                               f"WHERE {where} ORDER BY seq", params)
            seqs = [row["seq"] for row in rows]
            for start in range(0, len(seqs), 500):
                chunk = seqs[start:start + 500]
                self.db.conn.executemany(
                    "INSERT INTO consent_removals (seq, reason, removed_at) VALUES (?, ?, ?)",
                    [(seq, reason, now) for seq in chunk])
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"DELETE FROM consents WHERE seq IN ({marks})", chunk)
            _append_removal_link(self.db.conn, reason, now, seqs, _tally(rows, day_of))
            self._audit(now, actor, f"consents.{reason}", f"{len(seqs)} records", {"rows": len(seqs)})
            if reason == "purge":
                self.db.execute("UPDATE maintenance SET last_run_at = ?, last_count = ?, claimed_until = NULL "
                                "WHERE task = 'purge'", [now, len(seqs)])
        return len(seqs)

    def subject_summary(self, subject_id: str) -> dict[str, Any]:
        """How many records one visitor has, on which sites, first and last: what an erasure would remove."""
        row = self._query("SELECT count(*) AS records, group_concat(DISTINCT site) AS sites, "
                          "min(recorded_at) AS first, max(recorded_at) AS last "
                          "FROM consents WHERE subject_id = ?", [subject_id])[0]
        return dict(row, sites=sorted((row["sites"] or "").split(",")) if row["sites"] else [])

    def erase_subject(self, subject_id: str, actor: str, day_of: Callable[[str], str]) -> int:
        return self.remove_consents("c.subject_id = ?", [subject_id], "erase", actor, day_of)

    def purge_ended(self, before: str, actor: str, day_of: Callable[[str], str]) -> int:
        """Remove the records that stopped being in force before `before`: expired, or replaced or
        withdrawn by the same subject's next record on the same site. Marks the purge as run."""
        return self.remove_consents(PURGE_WHERE, [before, before], "purge", actor, day_of)

    # -- scheduled maintenance (keksi.retention) ------------------------------

    def claim_task(self, task: str, now: str, due_before: str, claim_until: str) -> bool:
        """Claim `task` for this process if its last run ended before `due_before` and nobody holds
        an unexpired claim: at most one worker of one host runs it at a time."""
        with self._write():
            cursor = self.db.execute(
                "UPDATE maintenance SET claimed_until = ? WHERE task = ? AND (last_run_at IS NULL "
                "OR last_run_at < ?) AND (claimed_until IS NULL OR claimed_until < ?)",
                [claim_until, task, due_before, now])
            return cursor.rowcount == 1

    def release_task(self, task: str) -> None:
        """Give up a claim after a failed run, so the next check may try again."""
        with self._write():
            self.db.execute("UPDATE maintenance SET claimed_until = NULL WHERE task = ?", [task])

    def task_status(self, task: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM maintenance WHERE task = ?", [task])
        return dict(rows[0]) if rows else None

    # -- notices: withdrawing an upcoming version --------------------------

    def withdraw_notice_version(self, slug: str, version: str, actor: str, today: str,
                                reason: str | None = None) -> int:
        """Delete every language of a version that has not taken effect; audit it with `reason`."""
        if version <= today:
            raise StoreError("a version that has taken effect can never be withdrawn")
        now = utcnow()
        with self._write():
            rows = self._query("SELECT lang, sha256 FROM notice_versions WHERE slug = ? AND version = ?",
                               [slug, version])
            if not rows:
                raise StoreError(f"there is no published version {version} of {slug!r}")
            self.db.execute("DELETE FROM notice_versions WHERE slug = ? AND version = ?", [slug, version])
            detail: dict[str, Any] = {row["lang"]: row["sha256"] for row in rows}
            if reason:
                detail["reason"] = reason
            self._audit(now, actor, "notice.withdraw", f"{slug}/{version}", detail)
            self._changed("notices")
        self._changed("notices", committed=True)
        return len(rows)

    def _changed(self, what: str, *, committed: bool = False) -> None:
        """Change the stamp of `what` ("notices" or "sites", see stamp()). Called inside the
        transaction, so that a stamp that cannot be written fails the change, and again after the
        commit, so that a page or configuration made between the two is not kept under the new stamp. After the commit the change
        has happened: a stamp that cannot be written then is logged, not reported as a failure
        (the first write already changed the stamp, so caches still start over)."""
        stamp = _stamp_file(self.path, what)
        try:
            # One appended line per change: the file only grows, so (inode, size) never repeats,
            # even when two changes fall in one tick of the file system's clock.
            with open(stamp, "a", encoding="utf-8") as log:
                log.write(f"{utcnow()} {os.getpid()}\n")
        except OSError as exc:
            if committed:
                _log.error("the %s stamp %s cannot be written after a committed change (%s); "
                           "caches may keep what they made before until the next change", what, stamp, exc)
                return
            raise StoreUnavailable(f"the {what.rstrip('s')} stamp {stamp} cannot be written ({exc})") from exc

    # -- users ----------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        return [self._user(r) for r in self._query("SELECT * FROM users ORDER BY email")]

    def user(self, user_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM users WHERE id = ?", [user_id])
        return self._user(rows[0]) if rows else None

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM users WHERE email = ?", [email.strip().lower()])
        return self._user(rows[0]) if rows else None

    @staticmethod
    def _user(row: sqlite3.Row) -> dict[str, Any]:
        user = dict(row)
        user["roles"] = [r for r in user["roles"].split(",") if r]
        return user

    def add_user(self, email: str, roles: list[str], password_hash: str | None, actor: str) -> int:
        now = utcnow()
        with self._write():
            if self._query("SELECT 1 FROM users WHERE email = ?", [email]):
                raise StoreError(f"a user with the email {email} already exists")
            user_id = self.db["users"].insert({
                "email": email, "password_hash": password_hash, "roles": ",".join(sorted(roles)),
                "created_at": now, "created_by": actor, "disabled": 0}).last_pk
            self._audit(now, actor, "user.add", email, {"roles": sorted(roles)})
        return user_id

    def set_password(self, user_id: int, password_hash: str, actor: str) -> None:
        """A new password ends every session of the user (signed in with the old one)."""
        with self._write():
            self.db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user_id])
            self._end_user_sessions(user_id)
            self._audit(utcnow(), actor, "user.password", str(user_id), None)

    def set_user_disabled(self, user_id: int, disabled: bool, actor: str) -> dict[str, Any]:
        """Disable (ending every session) or re-enable a user; never the last admin."""
        with self._write():
            user = self._user_or_error(user_id)
            if disabled:
                self._keep_an_admin(user_id)
                self._end_user_sessions(user_id)
            self.db.execute("UPDATE users SET disabled = ? WHERE id = ?", [int(disabled), user_id])
            self._audit(utcnow(), actor, "user.disable" if disabled else "user.enable", user["email"], None)
        return user

    def set_user_roles(self, user_id: int, roles: list[str], actor: str) -> dict[str, Any]:
        """Give a user new roles, ending their sessions; the last admin keeps the admin role."""
        with self._write():
            user = self._user_or_error(user_id)
            if "admin" not in roles:
                self._keep_an_admin(user_id)
            self.db.execute("UPDATE users SET roles = ? WHERE id = ?", [",".join(sorted(roles)), user_id])
            self._end_user_sessions(user_id)
            self._audit(utcnow(), actor, "user.roles", user["email"],
                        {"before": user["roles"], "after": sorted(roles)})
        return user

    def remove_user(self, user_id: int, actor: str) -> dict[str, Any]:
        """Remove a user, their sessions and unused links; never the last admin."""
        with self._write():
            user = self._user_or_error(user_id)
            self._keep_an_admin(user_id)
            self._end_user_sessions(user_id)
            self.db.execute("DELETE FROM password_tokens WHERE user_id = ?", [user_id])
            self.db.execute("DELETE FROM users WHERE id = ?", [user_id])
            self._audit(utcnow(), actor, "user.remove", user["email"], {"roles": user["roles"]})
        return user

    def _user_or_error(self, user_id: int) -> dict[str, Any]:
        user = self.user(user_id)
        if user is None:
            raise StoreError(f"there is no user {user_id}")
        return user

    def _keep_an_admin(self, user_id: int) -> None:
        """Refuse a change that takes `user_id` away from the admins who can sign in, if it is the last."""
        others = self._query(
            "SELECT 1 FROM users WHERE id != ? AND disabled = 0 AND password_hash IS NOT NULL "
            "AND ',' || roles || ',' LIKE '%,admin,%' LIMIT 1", [user_id])
        target = self.user(user_id)
        if not others and target and "admin" in target["roles"] and not target["disabled"]:
            raise LastAdmin("the last enabled admin cannot be removed, disabled or lose the admin role")

    # -- admin sessions -----------------------------------------------------

    def add_session(self, token_hash: str, user_id: int, now: str, forget_before: str) -> None:
        """Start a session; forget every session created before `forget_before` (past any lifetime)."""
        with self._write():
            self.db.execute("DELETE FROM admin_sessions WHERE created_at < ?", [forget_before])
            self.db["admin_sessions"].insert(
                {"token_hash": token_hash, "user_id": user_id, "created_at": now, "seen_at": now})

    def session(self, token_hash: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM admin_sessions WHERE token_hash = ?", [token_hash])
        return dict(rows[0]) if rows else None

    def touch_session(self, token_hash: str, now: str) -> None:
        with self._write():
            self.db.execute("UPDATE admin_sessions SET seen_at = ? WHERE token_hash = ?", [now, token_hash])

    def end_session(self, token_hash: str) -> None:
        with self._write():
            self.db.execute("DELETE FROM admin_sessions WHERE token_hash = ?", [token_hash])

    def user_sessions(self, user_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM admin_sessions WHERE user_id = ? ORDER BY seen_at DESC", [user_id])
        return [dict(row) for row in rows]

    def end_other_sessions(self, user_id: int, keep_hash: str, actor: str) -> int:
        """End every session of the user but the one whose hash is `keep_hash`; audit the count."""
        with self._write():
            ended = self.db.execute("DELETE FROM admin_sessions WHERE user_id = ? AND token_hash != ?",
                                    [user_id, keep_hash]).rowcount
            self._audit(utcnow(), actor, "user.sessions_ended", actor, {"sessions": ended})
        return ended

    def _end_user_sessions(self, user_id: int) -> None:
        self.db.execute("DELETE FROM admin_sessions WHERE user_id = ?", [user_id])

    def add_password_token(self, token_hash: str, user_id: int, expires_at: str) -> None:
        with self._write():
            self.db["password_tokens"].insert({"token_hash": token_hash, "user_id": user_id,
                                               "expires_at": expires_at, "used_at": None})

    def use_password_token(self, token_hash: str, now: str) -> int | None:
        """Mark a valid token used and return its user id; None if unknown, used or expired."""
        with self._write():
            rows = self._query("SELECT user_id FROM password_tokens WHERE token_hash = ? "
                               "AND used_at IS NULL AND expires_at > ?", [token_hash, now])
            if not rows:
                return None
            self.db.execute("UPDATE password_tokens SET used_at = ? WHERE token_hash = ?", [now, token_hash])
            return rows[0]["user_id"]

    def password_token_user(self, token_hash: str, now: str) -> int | None:
        rows = self._query("SELECT user_id FROM password_tokens WHERE token_hash = ? "
                           "AND used_at IS NULL AND expires_at > ?", [token_hash, now])
        return rows[0]["user_id"] if rows else None

    def record_login_failure(self, keys: list[str], now: str, forget_before: str) -> list[int]:
        """Count a failed sign-in against each key; the new rows' ids, in one block later tries follow."""
        with self._write():
            ids = [self.db.execute("INSERT INTO login_failures (key, at) VALUES (?, ?)", [key, now]).lastrowid
                   for key in keys]
            self.db.execute("DELETE FROM login_failures WHERE at < ?", [forget_before])
        return ids

    def login_failures(self, key: str, since: str, before: int | None = None) -> list[str]:
        """Times of the key's failed logins since `since` (recorded before row `before`), oldest first."""
        return [r["at"] for r in self._query(
            "SELECT at FROM login_failures WHERE key = ? AND at >= ? AND rowid < ? ORDER BY at",
            [key, since, before if before is not None else 2 ** 63 - 1])]

    def clear_login_failures(self, keys: list[str]) -> None:
        with self._write():
            self.db.conn.executemany("DELETE FROM login_failures WHERE key = ?", [(k,) for k in keys])

    def forget_login_tries(self, ids: list[int]) -> None:
        """Delete failures by row id: a try recorded ahead of its check that turned out right or had to wait."""
        with self._write():
            self.db.conn.executemany("DELETE FROM login_failures WHERE rowid = ?", [(i,) for i in ids])

    # -- audit log --------------------------------------------------------

    def audit(self, actor: str, action: str, subject: str, detail: Any = None) -> None:
        with self._write():
            self._audit(utcnow(), actor, action, subject, detail)

    def audit_log(self, limit: int = 100, offset: int = 0, **filters: str | None) -> list[dict[str, Any]]:
        """Entries, newest first; `filters` as in `count_audit`."""
        where, params = _audit_where(**filters)
        rows = self._query(f"SELECT * FROM audit_log{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                           [*params, limit, offset])
        return [dict(row, detail=json.loads(row["detail"] or "null")) for row in rows]

    def count_audit(self, **filters: str | None) -> int:
        """How many entries match: `actor`, `action`, and `since`/`until` (UTC times, `until` excluded)."""
        where, params = _audit_where(**filters)
        return self._query(f"SELECT count(*) AS n FROM audit_log{where}", params)[0]["n"]

    def audit_names(self) -> tuple[list[str], list[str]]:
        """Every actor and every action in the log, for the filters' choices."""
        actors = [r[0] for r in self._query("SELECT DISTINCT actor FROM audit_log ORDER BY actor")]
        actions = [r[0] for r in self._query("SELECT DISTINCT action FROM audit_log ORDER BY action")]
        return actors, actions

    def _audit(self, at: str, actor: str, action: str, subject: str, detail: Any) -> None:
        """Append an audit entry chained to the one before (under the write lock, as in the ledger)."""
        with self._write():
            last = self.db.conn.execute("SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
            row = {"id": last[0] + 1 if last else 1, "at": at, "actor": actor, "action": action,
                   "subject": subject, "detail": json.dumps(detail, sort_keys=True)}
            row["prev_hash"] = last[1] if last else GENESIS_HASH
            row["row_hash"] = chain_hash(row["prev_hash"], audit_content_hash(row))
            self.db.conn.execute(f"INSERT INTO audit_log ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                 list(row.values()))

    def iter_audit(self) -> Iterator[dict[str, Any]]:
        """Every audit entry with its chain hashes, oldest first."""
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        yield from (dict(row) for row in cursor.execute("SELECT * FROM audit_log ORDER BY id"))

    # -- helpers ----------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """A write transaction that takes SQLite's write lock at once (BEGIN IMMEDIATE).

        Taking the lock up front means a read inside the transaction (the chain's
        last hash, an existing event id) cannot go stale before the write.
        """
        if self.db.conn.in_transaction:
            yield
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.conn.rollback()
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.db.conn.in_transaction:
                self.db.conn.rollback()
            mapped = _unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _query(self, sql: str, params: list[Any] | tuple = ()) -> list[sqlite3.Row]:
        cursor = self.db.conn.cursor()
        cursor.row_factory = sqlite3.Row
        return cursor.execute(sql, params).fetchall()


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause from (condition, value) pairs, skipping those whose value is None."""
    used = [(sql, value) for sql, value in conditions if value is not None]
    clause = " WHERE " + " AND ".join(sql for sql, _ in used) if used else ""
    return clause, [value for _, value in used]


def _audit_where(actor: str | None = None, action: str | None = None, since: str | None = None,
                 until: str | None = None) -> tuple[str, list[Any]]:
    return _where(("actor = ?", actor), ("action = ?", action), ("at >= ?", since), ("at < ?", until))


def chain_hash(prev_hash: str, content_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{content_hash}".encode()).hexdigest()


def leaves_head(prev: int, position: int, row_hash: str, head: tuple[int, str]) -> bool:
    """Whether the link at `position` (following the one at `prev`, 0 for the first) shows that a
    chain no longer passes through `head` (position, row hash), kept from an earlier run: it holds
    the head's position with another hash, or steps over that position (its link was deleted and
    the links after it rechained)."""
    return (position == head[0] and row_hash != head[1]) or prev < head[0] < position


def _stamp_file(path: str, what: str = "notices") -> str:
    return f"{path}.{what}-changed"


def stamp(path: str, what: str) -> tuple[int, int, int]:
    """A value that changes whenever any process changes `what` in the database at `path`:
    "notices" (a version published or withdrawn) or "sites" (a site added, edited or removed).
    One stat() call, cheap enough for every request (keksi.pagecache, the widget's
    configuration). A backend shared by several hosts would keep this in the database instead."""
    try:
        found = os.stat(_stamp_file(path, what))
    except OSError:
        return (0, 0, 0)
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def notices_stamp(path: str) -> tuple[int, int, int]:
    """The notices' stamp (see stamp())."""
    return stamp(path, "notices")


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


def open_store(path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
    return Store(path, busy_timeout_ms)


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


# Each thread of each process keeps its open stores between requests. Opening a connection
# per request cost more than the rest of a consent post together (measured in-process: 0.97 ->
# 0.54 ms of CPU per post), and while one connection stays open SQLite never checkpoints
# and deletes the WAL at close. A store opened read-only (the disk was read-only) is not
# kept, so that writing resumes once the disk is writable again.
_MAX_KEPT = 4  # databases per thread; more only happens in tests, which make many
_kept = threading.local()
_inherited: list[Store] = []  # kept by a parent process before a fork: never touched here


def _kept_stores() -> "collections.OrderedDict[str, Store]":
    if getattr(_kept, "pid", None) != os.getpid():
        _inherited.extend(getattr(_kept, "stores", {}).values())
        _kept.pid, _kept.stores = os.getpid(), collections.OrderedDict()
    return _kept.stores


def close_idle_connections() -> None:
    """Close the stores this thread keeps (a test that remounts the disk read-only needs this)."""
    stores = _kept_stores()
    while stores:
        stores.popitem()[1].close()


def get_store() -> Store:
    """The request's (or CLI command's) store: the one this thread keeps for the database."""
    if "store" not in g:
        path = database_path(current_app)
        stores = _kept_stores()
        store = stores.get(path)
        if store is not None:
            stores.move_to_end(path)
        else:
            store = open_store(path, current_app.config["BUSY_TIMEOUT_MS"])
            if not store.read_only:
                stores[path] = store
                while len(stores) > _MAX_KEPT:  # dropped, not closed: an outer request may use it
                    stores.popitem(last=False)
        g.store = store
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    """End of request: leave a kept store with no transaction open; close one that is not kept."""
    store = g.pop("store", None)
    if store is None:
        return
    if store.read_only:
        store.close()
        return
    try:
        if store.db.conn.in_transaction:
            store.db.conn.rollback()
        healthy = not store.db.conn.in_transaction
    except sqlite3.Error:
        healthy = False
    if not healthy:  # never hand the next request a connection in an unknown state
        stores = _kept_stores()
        if stores.get(store.path) is store:
            del stores[store.path]
        with contextlib.suppress(sqlite3.Error):
            store.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_store)
    migrate(app)
