"""The PostgreSQL backend: its migrations and the lock on each hash chain's head.

Migrations are the ordered SQL files in `migrations/postgresql/` (`NNNN_name.sql`), each applied in a
transaction of its own and recorded in `keksi_migrations`, under an advisory lock so that hosts and
workers starting together apply each file once. They are applied explicitly (`flask db upgrade`), never
by a starting worker. Connections are expected in autocommit mode: every write is an explicit transaction.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations" / "postgresql"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+$")
# pg_advisory_lock's key for migrating: any constant all Keksi processes share ("keksimig").
_MIGRATION_LOCK = int.from_bytes(b"keksimig", "big")


def migration_files() -> list[Path]:
    """The migration files in the order they apply; a misnamed or repeated number is an error."""
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    numbers = []
    for path in files:
        match = _MIGRATION_NAME.match(path.stem)
        if not match:
            raise ValueError(f"{path.name}: PostgreSQL migrations are named NNNN_name.sql")
        numbers.append(match.group(1))
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"two PostgreSQL migrations share a number in {MIGRATIONS_DIR}")
    return files


def applied_migrations(conn: psycopg.Connection) -> list[str]:
    """Names of the migrations applied to the database, in the order they were applied."""
    if conn.execute("SELECT to_regclass('keksi_migrations')").fetchone()[0] is None:
        return []
    return [row[0] for row in conn.execute("SELECT name FROM keksi_migrations ORDER BY name")]


def pending_migrations(conn: psycopg.Connection) -> list[str]:
    """Names of the migrations not yet applied, in the order they would apply."""
    applied = set(applied_migrations(conn))
    return [path.stem for path in migration_files() if path.stem not in applied]


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the pending migrations in order, each in one transaction; return their names. Safe to
    call from many processes at once: the others wait for the advisory lock, then find nothing to do."""
    conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS keksi_migrations "
                     "(name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)")
        applied = []
        pending = set(pending_migrations(conn))
        for path in migration_files():
            if path.stem in pending:
                _apply(conn, path)
                applied.append(path.stem)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK])


def _apply(conn: psycopg.Connection, path: Path) -> None:
    sql = path.read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute(sql)  # no parameters: the file's statements go as one simple query
        conn.execute("INSERT INTO keksi_migrations (name, sha256, applied_at) VALUES (%s, %s, %s)",
                     [path.stem, hashlib.sha256(sql.encode()).hexdigest(),
                      datetime.now(timezone.utc).isoformat(timespec="microseconds")])


def lock_chain(conn: psycopg.Connection, chain: str) -> None:
    """Hold `chain` ("consents" or "audit") until the caller's transaction ends, by advancing its head
    (one UPDATE ... RETURNING). Every other append waits here, so the chain's last link read after
    this call, and a check made after it (an event_id already stored), cannot go stale before the
    commit."""
    if conn.execute("UPDATE chain_heads SET appends = appends + 1 WHERE chain = %s RETURNING appends",
                    [chain]).fetchone() is None:
        raise ValueError(f"there is no chain {chain!r}")
