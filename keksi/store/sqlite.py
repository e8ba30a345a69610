"""The SQLite backend: connections and their pragmas, transactions, errors, migrations under a
file lock, online backup, and the connections each thread keeps between requests.

`keksi.store.queries.Store` asks this backend for everything that depends on SQLite: it writes
its queries with `?` placeholders, which sqlite3 takes as they are.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import sqlite3
import threading
from typing import Any, Iterable, Iterator

import sqlite_utils

from .errors import StoreBusy, StoreError, StoreUnavailable
from .migrations.sqlite import migrations
from .queries import Store, insert_statement

BUSY_TIMEOUT_MS = 5000  # the default; KEKSI_BUSY_TIMEOUT_MS changes it
# How long emptying the write-ahead log after an erasure waits for readers; writers wait meanwhile.
CHECKPOINT_WAIT_MS = 1000
SQLITE_VERSION = sqlite3.sqlite_version  # of the library Python links, for reports (bench/run.py)


def _dict_row(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, row)}


class SQLiteBackend:
    """One SQLite connection with Keksi's pragmas; a read-only disk still serves reads."""

    name = "sqlite"
    Error = sqlite3.Error  # any failure of the database, for callers that degrade gracefully
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.read_only = False
        try:
            self.db = _connect(path, busy_timeout_ms, read_only=False)
        except sqlite3.OperationalError as read_write_error:
            # A read-only disk: keep serving reads (notices) and answer writes with 503.
            for mode in ("ro", "immutable"):
                try:
                    self.db = _connect(path, busy_timeout_ms, read_only=mode)
                    self.read_only = True
                    break
                except sqlite3.OperationalError:
                    continue
            else:
                raise StoreUnavailable(f"the database cannot be opened ({read_write_error})",
                                       code="unavailable") from None

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    def close(self) -> None:
        self.db.close()

    # -- statements -----------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Every row of a query (or of a write with RETURNING), as dicts."""
        cursor = self.conn.cursor()
        cursor.row_factory = _dict_row
        return cursor.execute(sql, list(params)).fetchall()

    def iterate(self, sql: str, params: Iterable[Any] = (), batch: int = 2000) -> Iterator[dict[str, Any]]:
        """The rows of a query as dicts, fetched `batch` at a time so memory stays flat."""
        cursor = self.conn.cursor()
        cursor.row_factory = _dict_row
        cursor.execute(sql, list(params))
        while rows := cursor.fetchmany(batch):
            yield from rows

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one write; return how many rows it changed. Outside `transaction()` it commits at once."""
        return self.conn.execute(sql, list(params)).rowcount

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def executescript(self, sql: str) -> None:
        """Several statements at once (tests' tampering; never with values from outside)."""
        self.conn.executescript(sql)

    def insert_many(self, table: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
        """Insert `rows` (values in the order of `columns`) into `table`: one prepared INSERT, run for each."""
        self.conn.executemany(insert_statement(table, columns), rows)

    # -- transactions -----------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def rollback(self) -> None:
        self.conn.rollback()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction that takes SQLite's write lock at once (BEGIN IMMEDIATE).

        Taking the lock up front means a read inside the transaction (the chain's last hash, an
        existing event id) cannot go stale before the write. Nested calls join the outer one.
        """
        if self.conn.in_transaction:
            yield
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.rollback()
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.conn.in_transaction:
                self.conn.rollback()
            mapped = unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def lock_chain(self, chain: str, read: str | None = None, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Hold `chain` ("consents" or "audit") until the transaction ends: BEGIN IMMEDIATE already
        holds the whole database, so there is nothing more to take. Then run `read`, if given, and
        return its rows."""
        return self.query(read, params) if read else []

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Writes inside run one by one as they come: SQLite is in this process, with no round trips
        to save (see the PostgreSQL backend's `batch`)."""
        return contextlib.nullcontext()

    # -- schema and copies ------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; return their names."""
        pending = self.pending_migrations()
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
            self.conn.backup(target, pages=1024)
        finally:
            target.close()

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def tables(self) -> dict[str, tuple[list[str], set[str]]]:
        """Each table of the schema: its columns in order, and the tables its foreign keys name."""
        names = [row["name"] for row in self.query("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                   "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {name: ([row["name"] for row in self.query("SELECT name FROM pragma_table_info(?)", [name])],
                       {row["table"] for row in self.query('SELECT "table" FROM pragma_foreign_key_list(?)', [name])})
                for name in names}

    def follow_copied_ids(self, table: str) -> None:
        """After rows were copied in with their ids: nothing to do, SQLite's next id is the largest + 1."""

    def clear_removed(self) -> bool:
        """After an erasure or purge: empty the write-ahead log into the database file and cut it to
        nothing (a TRUNCATE checkpoint). secure_delete overwrites removed records in the database
        file, but the log's earlier frames still held them, even after an ordinary checkpoint
        (measured). Writers wait while it runs, so it waits at most CHECKPOINT_WAIT_MS for readers (a
        long export); False if they kept it busy (the log then keeps its frames until they are
        overwritten or the next erasure, purge or compaction empties it)."""
        if self.read_only or self.conn.in_transaction:
            return False
        self.conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        try:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        return busy == 0

    def compact(self) -> None:
        """What `flask db compact` does: here the same as after each erasure; StoreBusy if readers
        kept the log busy."""
        if not self.clear_removed():
            raise StoreBusy("readers kept the write-ahead log busy; try again in a moment", code="busy")

    # -- the benchmarks (bench/) ---------------------------------------------------

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Loading many rows into a new database (the benchmarks' ledgers): commits do not wait for the
        disk (synchronous OFF) and a 1 GB page cache keeps the random-key indexes in memory. Afterwards
        commits are durable again and the WAL is written back into the file."""
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("PRAGMA cache_size = -1000000")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA cache_size = -2000")  # SQLite's default
            self.conn.execute("PRAGMA synchronous = FULL")
        self.checkpoint()

    def version(self) -> str:
        """The database and its version, for reports: SQLite as Python links it."""
        return f"SQLite {sqlite3.sqlite_version}"

    def checkpoint(self) -> None:
        """Write the WAL back into the database file and empty it, so the file's size is the data's."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size(self) -> int:
        """Bytes the database takes on disk: the file and its WAL."""
        return sum(os.path.getsize(self.path + suffix) for suffix in ("", "-wal")
                   if os.path.exists(self.path + suffix))

    def space_by_object(self) -> list[dict[str, Any]]:
        """Bytes each table and index takes (SQLite's dbstat): name, table, is_index, bytes; none when
        the library lacks dbstat."""
        try:
            return self.query('SELECT s.name AS name, coalesce(m.tbl_name, s.name) AS "table", '
                              "coalesce(m.type = 'index', 0) AS is_index, sum(s.pgsize) AS bytes "
                              "FROM dbstat s LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY s.name")
        except sqlite3.OperationalError:
            return []

    @staticmethod
    def json_flag(column: str, key: str) -> str:
        """An SQL expression: 1 where the JSON object in `column` holds true under `key`, else 0."""
        return f"json_extract({column}, '$.{key}')"

    def explain(self, sql: str, params: Iterable[Any] = ()) -> str:
        """SQLite's query plan for `sql`, its steps on one line."""
        return "; ".join(row["detail"] for row in self.query("EXPLAIN QUERY PLAN " + sql, params))

    @contextlib.contextmanager
    def index_held(self, sql: str, table: str, index: str | None) -> Iterator[str]:
        """`sql` with SQLite's planner held to reading `table` through `index`, or through no index at
        all (a full scan) when `index` is None: an INDEXED BY or NOT INDEXED hint after its FROM."""
        hint = "NOT INDEXED" if index is None else f"INDEXED BY {index}"
        yield sql.replace(f"FROM {table} ", f"FROM {table} {hint} ", 1)


def _connect(path: str, busy_timeout_ms: int, read_only: str | bool) -> sqlite_utils.Database:
    if read_only:
        # "immutable" is the last resort when even the WAL index cannot be created: the
        # filesystem is read-only, so nobody can be changing the file under us.
        query = "mode=ro" if read_only == "ro" else "mode=ro&immutable=1"
        conn = sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=busy_timeout_ms / 1000,
                               isolation_level=None)
    else:
        # isolation_level None: no implicit BEGIN. A statement outside `transaction()` commits at
        # once, as on PostgreSQL (its connections are autocommit), rather than opening a
        # transaction that close() would silently roll back.
        conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
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


def unavailable(exc: sqlite3.OperationalError) -> StoreError | None:
    """The store error an SQLite failure means for the caller, or None if it is a bug."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreBusy("the database is busy; try again in a moment", code="busy")
    if any(word in text for word in ("full", "readonly", "read-only", "disk i/o", "unable to open")):
        return StoreUnavailable(f"the database cannot be written ({exc}); nothing was saved", code="unavailable")
    return None


def open_store(path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
    """A store on a connection of its own, for the caller to close."""
    return Store(SQLiteBackend(path, busy_timeout_ms))


@contextlib.contextmanager
def _migration_lock(path: str) -> Iterator[None]:
    """Serialise migrations across processes (gunicorn workers start together)."""
    with open(path + ".migrate-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(path: str) -> list[str]:
    """Create or upgrade the schema at `path`; safe to call from many processes at once."""
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


def kept_store(path: str, busy_timeout_ms: int) -> Store:
    """The store this thread keeps for the database at `path`, opened if it has none."""
    stores = _kept_stores()
    store = stores.get(path)
    if store is not None:
        stores.move_to_end(path)
        return store
    store = open_store(path, busy_timeout_ms)
    if not store.read_only:
        stores[path] = store
        while len(stores) > _MAX_KEPT:  # dropped, not closed: an outer request may use it
            stores.popitem(last=False)
    return store


def release_store(store: Store) -> None:
    """End of request: leave a kept store with no transaction open; close one that is not kept."""
    if store.read_only:
        store.close()
        return
    backend = store.backend
    try:
        if backend.in_transaction:
            backend.rollback()
        healthy = not backend.in_transaction
    except sqlite3.Error:
        healthy = False
    if not healthy:  # never hand the next request a connection in an unknown state
        stores = _kept_stores()
        if stores.get(backend.path) is store:
            del stores[backend.path]
        with contextlib.suppress(sqlite3.Error):
            store.close()
