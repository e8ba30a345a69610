"""The SQLite schema: named, append-only sqlite-utils migrations, applied in order by
`keksi.store.sqlite` (at start, under a file lock). Never edit one that has shipped: add the next."""

from __future__ import annotations

import sqlite3

import sqlite_utils
from sqlite_utils.migrations import Migrations

from ...clock import utc_text
from ..chain import GENESIS_HASH, audit_content_hash, chain_hash, removal_digest, seq_ranges

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
    _chain_earlier_removals(db.conn)


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
    db.execute("INSERT INTO maintenance (task, last_run_at) VALUES ('purge', ?)", [utc_text()])


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


@migrations(name="0011_generations")
def _generations(db: sqlite_utils.Database) -> None:
    # What every worker's caches are made under: a number per kind of shared state, raised in
    # the same transaction as each change, so a publication on one host reaches every worker of
    # every host at its next request (it replaces the stamp files beside the database).
    db.executescript(
        """
        CREATE TABLE generations (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO generations (name, value) VALUES ('notices', 1), ('sites', 1);
        """)


@migrations(name="0012_login_failure_ids")
def _login_failure_ids(db: sqlite_utils.Database) -> None:
    # Sign-in throttling names its rows by a column of their own instead of SQLite's hidden rowid,
    # so that the store's queries run on PostgreSQL too. Each row keeps its number (rowid -> id).
    db.executescript(
        """
        CREATE TABLE login_failures_new (id INTEGER PRIMARY KEY, key TEXT NOT NULL, at TEXT NOT NULL);
        INSERT INTO login_failures_new (id, key, at) SELECT rowid, key, at FROM login_failures;
        DROP TABLE login_failures;
        ALTER TABLE login_failures_new RENAME TO login_failures;
        CREATE INDEX idx_login_failures_key_at ON login_failures (key, at);
        """)


@migrations(name="0013_consent_origin")
def _consent_origin(db: sqlite_utils.Database) -> None:
    # The origin a choice was posted from, hashed after the other columns when set (older records
    # have none and keep their hashes), so a receipt links the site where the choice was made.
    db.execute("ALTER TABLE consents ADD COLUMN origin TEXT")


@migrations(name="0014_scans")
def _scans(db: sqlite_utils.Database) -> None:
    # Site audits as jobs (issue 14.3): the admin queues one, `flask scans work` claims it on some
    # host and runs it in a process of its own. `attempts` lets a job left running by a dead worker
    # be queued again once, then failed; `seen_at` is the worker's last sign of life. `findings`
    # repeats the result's findings, so a site's history is read without every page's observations.
    db.executescript(
        """
        CREATE TABLE scans (
            id INTEGER PRIMARY KEY, site TEXT NOT NULL, requested_by TEXT NOT NULL,
            requested_at TEXT NOT NULL, options TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
            worker TEXT, attempts INTEGER NOT NULL DEFAULT 0, progress TEXT, started_at TEXT,
            seen_at TEXT, finished_at TEXT, result TEXT, findings TEXT, error TEXT);
        CREATE INDEX idx_scans_state ON scans (state, id);
        CREATE INDEX idx_scans_site ON scans (site, id);
        """)


@migrations(name="0015_signals_builds")
def _signals_builds(db: sqlite_utils.Database) -> None:
    # Code escrow for widget/signals.js too, which the widget loads on the pages of sites that declare
    # services with consent APIs: each build served is kept beside the widget's, named by its file.
    db.execute("ALTER TABLE widget_builds ADD COLUMN file TEXT NOT NULL DEFAULT 'consent.js'")


def _chain_earlier_removals(conn: sqlite3.Connection) -> None:
    """Migration 0007's one link for the removals made before it, as the store wrote links then
    (frozen here: a migration must do the same thing however the store changes later)."""
    seqs = [row[0] for row in conn.execute("SELECT seq FROM consent_removals ORDER BY seq")]
    if not seqs:
        return
    last = conn.execute("SELECT seq, row_hash FROM consent_chain ORDER BY seq DESC LIMIT 1").fetchone()
    link_seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    ranges = list(seq_ranges(seqs))
    conn.executemany("INSERT INTO removal_ranges (first, last, link_seq) VALUES (?, ?, ?)",
                     [(first, end, link_seq) for first, end in ranges])
    removed_at = utc_text()
    content = removal_digest("before-chaining", removed_at, ranges)
    conn.execute("INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) VALUES (?, ?, ?, ?)",
                 [link_seq, content, prev_hash, chain_hash(prev_hash, content)])
    conn.execute("INSERT INTO removal_links (seq, reason, removed_at, ranges) VALUES (?, ?, ?, ?)",
                 [link_seq, "before-chaining", removed_at, len(ranges)])
