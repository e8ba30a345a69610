"""The PostgreSQL backend: connections from a pool per worker, transactions, errors, migrations, and
the lock on each hash chain's head. `keksi.store.queries.Store` asks it for everything that depends on
PostgreSQL; it takes the store's `?` placeholders and runs them as psycopg's `%s`.

A pool (psycopg_pool) is made per process on first use, after gunicorn has forked, so that no
connection is shared between workers. Connections are in autocommit mode: every write is an explicit
transaction (`transaction()`), as SQLite's BEGIN IMMEDIATE is.

Migrations are the ordered SQL files in `migrations/postgresql/` (`NNNN_name.sql`), each applied in a
transaction of its own and recorded in `keksi_migrations`, under an advisory lock so that hosts and
workers starting together apply each file once. They are applied explicitly (`flask db upgrade`), never
by a starting worker. """

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import os
import re
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.numeric import NumericLoader
from psycopg_pool import ConnectionPool

from ..clock import utc_text
from .errors import StoreBusy, StoreError, StoreUnavailable
from .migrations import POSTGRESQL_DIR as MIGRATIONS_DIR
from .queries import Store

# Connections per worker process: gunicorn's sync workers serve one request at a time, which holds
# one connection; the caches' generation check (keksi.store.generation) may take a second.
POOL_SIZE = 4
# How long `flask db compact` waits for the consents table's lock before giving up.
COMPACT_LOCK_WAIT = "5s"
# Seconds a request waits for a connection while the server cannot be reached (down, restarting, failing
# over) before it is answered 503 with Retry-After: well inside gunicorn's 30 s worker timeout, which
# would cut a request off with a 500 (a page waits twice: once for the caches' generation check).
# Also how long the pool keeps retrying one connection in the background, with growing pauses,
# before it gives up: the next request then tries at once, so the first one after the server is back
# connects rather than waiting for a pause that, after a long outage, could last minutes.
CONNECT_WAIT = 5
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


def changed_migrations(conn: psycopg.Connection) -> list[str]:
    """Names of applied migrations whose file no longer reads as it did when applied (its SHA-256
    differs): the schema may not be what the files say, so nothing more is applied on top of it."""
    if conn.execute("SELECT to_regclass('keksi_migrations')").fetchone()[0] is None:
        return []
    stored = dict(conn.execute("SELECT name, sha256 FROM keksi_migrations").fetchall())
    return [path.stem for path in migration_files()
            if path.stem in stored and stored[path.stem] != _sha256(path.read_text(encoding="utf-8"))]


def _sha256(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def check_collation(conn: psycopg.Connection) -> None:
    """StoreError unless the database orders text byte by byte, as SQLite does: Keksi compares and
    sorts times and ids as text. Asked of the database itself (a language's collation puts "a"
    before "B"), whatever its locale provider calls the collation."""
    if not conn.execute("SELECT 'B' < 'a' AND 'a-b' < 'ab'").fetchone()[0]:
        raise StoreError("the database does not order text byte by byte: create it with the C collation "
                         "(createdb --locale=C --template=template0 keksi)")


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply the pending migrations in order, each in one transaction; return their names. Safe to
    call from many processes at once: the others wait for the advisory lock, then find nothing to do.
    A database that does not order text byte by byte, or whose applied migration files were since
    edited, is refused before anything is applied."""
    check_collation(conn)
    conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS keksi_migrations "
                     "(name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, applied_at TEXT NOT NULL)")
        changed = changed_migrations(conn)
        if changed:
            raise StoreError(f"the migration files {', '.join(changed)} changed after they were applied: restore "
                             "them as released (a schema change is a new migration file)")
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
                     [path.stem, _sha256(sql), utc_text()])


def lock_chain(conn: psycopg.Connection, chain: str, read: str | None = None,
               params: Iterable[Any] = (), *, pipelined: bool = False) -> list[dict[str, Any]]:
    """Hold `chain` ("consents" or "audit") until the caller's transaction ends, by advancing its head
    (one UPDATE ... RETURNING). Every other append waits here, so the chain's last link read after
    this call, and a check made after it (an event_id already stored), cannot go stale before the
    commit. With `read` (a query, psycopg's placeholders), run it after the lock is taken and return
    its rows: both statements go to the server in one round trip (a pipeline), and the read, a
    statement of its own, takes its snapshot once the lock is held. `pipelined`: the connection is
    in a pipeline already (`PostgreSQLBackend.batch`), whose other statements go with these."""
    with contextlib.nullcontext() if pipelined or not read else conn.pipeline():
        head = conn.execute("UPDATE chain_heads SET appends = appends + 1 WHERE chain = %s RETURNING appends",
                            [chain])
        rows = conn.cursor(row_factory=dict_row).execute(read, list(params)) if read else None
        if head.fetchone() is None:  # fetching sends both and waits for both answers
            raise ValueError(f"there is no chain {chain!r}")
        return rows.fetchall() if rows else []


# -- the backend ---------------------------------------------------------------------------


class PostgreSQLBackend:
    """One pooled PostgreSQL connection, lent to one store; given back by `close`."""

    name = "postgresql"
    Error = psycopg.Error  # any failure of the database, for callers that degrade gracefully
    IntegrityError = psycopg.IntegrityError
    read_only = False  # a server that cannot take writes answers them with StoreUnavailable

    def __init__(self, conn: psycopg.Connection, pool: ConnectionPool | None = None):
        self.conn = conn
        self.pool = pool
        self._cursors = itertools.count(1)
        self._pipeline: psycopg.Pipeline | None = None  # inside `batch`

    def close(self) -> None:
        if self.pool is None:
            self.conn.close()
        else:
            self.pool.putconn(self.conn)

    # -- statements -----------------------------------------------------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Every row of a query (or of a write with RETURNING), as dicts."""
        with _mapped_errors(), self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(_pyformat(sql), list(params))
            if self._pipeline is not None:
                self._pipeline.sync()  # in a batch: the answer comes back only when asked for
            return cursor.fetchall() if cursor.description else []  # a statement without rows: none

    def iterate(self, sql: str, params: Iterable[Any] = (), batch: int = 2000) -> Iterator[dict[str, Any]]:
        """The rows of a query as dicts, `batch` at a time from a server-side cursor, so memory stays
        flat; WITH HOLD, so that it outlives a transaction and other queries can run meanwhile."""
        name = f"keksi_{next(self._cursors)}"
        with self.conn.cursor(name, row_factory=dict_row, withhold=True) as cursor:
            with _mapped_errors():
                cursor.execute(_pyformat(sql), list(params))
            while True:
                with _mapped_errors():
                    rows = cursor.fetchmany(batch)
                if not rows:
                    break
                yield from rows

    def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one write; return how many rows it changed. Outside `transaction()` it commits at once."""
        with _mapped_errors():
            return self.conn.execute(_pyformat(sql), list(params)).rowcount

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        with _mapped_errors(), self.conn.cursor() as cursor:
            cursor.executemany(_pyformat(sql), [list(row) for row in rows])

    def executescript(self, sql: str) -> None:
        """Several statements at once (tests' tampering; never with values from outside)."""
        self.conn.execute(sql)

    def insert_many(self, table: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
        """Insert `rows` (values in the order of `columns`) into `table` with COPY, PostgreSQL's bulk
        load: the rows stream to the server rather than going as a statement each."""
        with _mapped_errors(), self.conn.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    # -- transactions -----------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def rollback(self) -> None:
        self.conn.rollback()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction; nested calls join the outer one. A server that is unreachable, full
        or read-only raises StoreUnavailable, a deadlock or lock timeout StoreBusy: nothing was written."""
        if self.in_transaction:
            yield
            return
        with _mapped_errors(), self.conn.transaction():
            yield

    def lock_chain(self, chain: str, read: str | None = None, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Hold `chain` ("consents" or "audit") until the transaction ends, then run `read` and
        return its rows, in one round trip (see `lock_chain` above)."""
        with _mapped_errors():
            return lock_chain(self.conn, chain, _pyformat(read) if read else None, params,
                              pipelined=self._pipeline is not None)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Send the writes made inside (and the COMMIT of a transaction opened inside) together, in
        one round trip at the end, rather than one round trip each: a psycopg pipeline. A query
        inside still waits for its rows; `execute` cannot know its row count (-1); an error of any
        write is raised at the end, and the transaction rolled back."""
        with _mapped_errors(), self.conn.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    # -- schema and copies ------------------------------------------------------

    def migrate(self) -> list[str]:
        return migrate(self.conn)

    def applied_migrations(self) -> list[str]:
        return applied_migrations(self.conn)

    def pending_migrations(self) -> list[str]:
        return pending_migrations(self.conn)

    def backup(self, destination: str) -> None:
        raise StoreError("PostgreSQL is backed up with its own tools (pg_dump, or the server's base backups "
                         "and WAL archive), not with flask backup")

    def integrity_check(self) -> str:
        """PostgreSQL checks pages as it reads them; "ok" when the server answers."""
        self.conn.execute("SELECT 1")
        return "ok"

    def tables(self) -> dict[str, tuple[list[str], set[str]]]:
        """Each table of the schema: its columns in order, and the tables its foreign keys name."""
        tables: dict[str, tuple[list[str], set[str]]] = {}
        for row in self.query("SELECT table_name AS name, column_name AS col FROM information_schema.columns "
                              "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"):
            tables.setdefault(row["name"], ([], set()))[0].append(row["col"])
        for row in self.query("SELECT conrelid::regclass::text AS name, confrelid::regclass::text AS target "
                              "FROM pg_constraint WHERE contype = 'f' "
                              "AND connamespace = current_schema()::regnamespace"):
            tables[row["name"]][1].add(row["target"])
        return tables

    def follow_copied_ids(self, table: str) -> None:
        """After rows were copied in with their ids: the table's identity columns go on after the
        largest id, so the next row added gets a new one."""
        for row in self.query("SELECT column_name AS col FROM information_schema.columns WHERE table_schema = "
                              "current_schema() AND table_name = ? AND is_identity = 'YES'", [table]):
            self.query(f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max({row['col']}), 0) + 1, false) "
                       f"AS next FROM {table}", [table, row["col"]])

    # -- the benchmarks (bench/) ---------------------------------------------------

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Loading many rows into a new database (the benchmarks' ledgers): this session's commits do
        not wait for the WAL to reach the disk (synchronous_commit off); durable again afterwards, and
        the rows loaded vacuumed and counted (VACUUM ANALYZE: the visibility map that index-only scans
        need, the planner's statistics), as autovacuum would do soon after on a server."""
        self.conn.execute("SET synchronous_commit = off")
        try:
            yield
        finally:
            self.conn.execute("RESET synchronous_commit")
        self.conn.execute("VACUUM ANALYZE")

    def version(self) -> str:
        """The database and its version, for reports: the server's."""
        return "PostgreSQL " + self.query("SHOW server_version")[0]["server_version"]

    def checkpoint(self) -> None:
        """Nothing: the server writes its WAL back into the tables by itself."""

    def size(self) -> int:
        """Bytes the database takes on disk (pg_database_size: its catalogs included)."""
        return self.query("SELECT pg_database_size(current_database()) AS bytes")[0]["bytes"]

    def space_by_object(self) -> list[dict[str, Any]]:
        """Bytes each table (with its TOAST) and index takes: name, table, is_index, bytes."""
        return self.query(
            'SELECT c.relname AS name, coalesce(t.relname, c.relname) AS "table", '
            "(c.relkind = 'i')::int AS is_index, pg_table_size(c.oid) AS bytes FROM pg_class c "
            "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'i')")

    @staticmethod
    def json_flag(column: str, key: str) -> str:
        """An SQL expression: 1 where the JSON object in `column` (TEXT) holds true under `key`, else 0."""
        return f"(({column})::json ->> '{key}')::boolean::int"

    def explain(self, sql: str, params: Iterable[Any] = ()) -> str:
        """PostgreSQL's query plan for `sql`, its lines on one."""
        return "; ".join(row["QUERY PLAN"].strip() for row in self.query("EXPLAIN " + sql, params))

    @contextlib.contextmanager
    def index_held(self, sql: str, table: str, index: str | None) -> Iterator[str]:
        """`sql` to run with the planner reading `table` through no index (a full scan: index scans
        turned off for the transaction) when `index` is None. PostgreSQL takes no hint naming an
        index: given one, its planner chooses, and `explain` shows what it chose."""
        if index is not None:
            yield sql
            return
        with self.transaction():
            for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
                self.conn.execute(f"SET LOCAL {setting} = off")
            yield sql


    def clear_removed(self) -> bool:
        """After an erasure or purge: nothing at once. The removed rows stay in the table's and its
        indexes' files, and a plain VACUUM (autovacuum) does not always remove them: a row written
        last in its page stays in the page's free space (measured). Only a rewrite does, which
        locks the table (`compact`), so that is left to the operator: False."""
        return False

    def compact(self) -> None:
        """Rewrite the consents table and its indexes (VACUUM FULL), so that no removed record is
        left in their files. Holds an ACCESS EXCLUSIVE lock meanwhile: consent posts and reads of
        the table wait (measured: 8.6 s for 500,000 records, 389 MB). Waits at most COMPACT_LOCK_WAIT
        for the lock (a long reader would otherwise queue every post behind it); StoreBusy then."""
        with _mapped_errors():
            self.conn.execute(f"SET lock_timeout = '{COMPACT_LOCK_WAIT}'")
            try:
                self.conn.execute("VACUUM (FULL, ANALYZE) consents")
            finally:
                self.conn.execute("RESET lock_timeout")


def unavailable(exc: psycopg.Error) -> StoreError | None:
    """The store error a PostgreSQL failure means for the caller, or None if it is a bug."""
    if isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected, errors.LockNotAvailable,
                        errors.QueryCanceled)):
        return StoreBusy("the database is busy; try again in a moment")
    if isinstance(exc, (psycopg.OperationalError, errors.ReadOnlySqlTransaction, errors.DiskFull)):
        return StoreUnavailable(f"the database cannot be written ({exc}); nothing was saved")
    return None


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    """Raise a failure of the server (unreachable, restarted, full, read-only, busy) as the store
    error it means, so that the caller answers 503 rather than failing; a bug stays as it is."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = unavailable(exc)
        if mapped is None:
            raise
        raise mapped from exc


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s`, and every `%` (as in LIKE '%,admin,%') doubled
    so that psycopg takes it literally. A `?` inside a quoted literal stays as it is."""
    parts = sql.split("'")  # even parts are outside literals (an escaped '' gives an empty odd part)
    return "'".join(part.replace("%", "%%").replace("?", "%s") if i % 2 == 0 else part.replace("%", "%%")
                    for i, part in enumerate(parts))


class _IntegralNumericLoader(NumericLoader):
    """sum() of BIGINT columns is NUMERIC in PostgreSQL; give whole numbers back as int, as SQLite does."""

    def load(self, data: Any) -> Any:
        value = super().load(data)
        return int(value) if isinstance(value, Decimal) and value == value.to_integral_value() else value


def _configure(conn: psycopg.Connection) -> None:
    conn.adapters.register_loader("numeric", _IntegralNumericLoader)


def connect(url: str) -> psycopg.Connection:
    """A connection of its own (not pooled), configured as the pool's are."""
    conn = psycopg.connect(url, autocommit=True)
    _configure(conn)
    return conn


# -- a pool per worker process ---------------------------------------------------------

_pools: dict[str, ConnectionPool] = {}
_pools_pid = os.getpid()
_pools_lock = threading.Lock()


def pool(url: str) -> ConnectionPool:
    """This process's pool for the database at `url`, made on first use: after gunicorn's fork, a
    worker never touches a pool (or a connection) its parent made."""
    global _pools, _pools_pid
    with _pools_lock:
        if _pools_pid != os.getpid():
            _pools, _pools_pid = {}, os.getpid()  # the parent's pools are left alone
        found = _pools.get(url)
        if found is None:
            # min_size 0: no connection is opened before a request needs one. check: a connection
            # the server closed while it sat in the pool (a restart, a failover) is replaced before
            # it is lent, rather than failing the request.
            found = _pools[url] = ConnectionPool(
                url, min_size=0, max_size=POOL_SIZE, open=True, timeout=CONNECT_WAIT,
                reconnect_timeout=CONNECT_WAIT, kwargs={"autocommit": True, "connect_timeout": CONNECT_WAIT},
                configure=_configure, check=ConnectionPool.check_connection, name=f"keksi-{os.getpid()}")
        return found


def close_pool(url: str) -> None:
    """Close this process's pool for `url` and its connections (tests, before dropping a database)."""
    with _pools_lock:
        found = _pools.pop(url, None) if _pools_pid == os.getpid() else None
    if found is not None:
        found.close()


def open_store(url: str) -> Store:
    """A store on a connection of its own, for the caller to close; StoreUnavailable when the
    server cannot be reached."""
    with _mapped_errors():
        return Store(PostgreSQLBackend(connect(url)))


def pooled_store(url: str) -> Store:
    """A store on a connection from this process's pool; `close` gives the connection back."""
    try:
        conn = pool(url).getconn()
    except Exception as exc:  # the pool's timeout or a server that does not answer
        raise StoreUnavailable(f"the database cannot be reached ({exc})") from exc
    return Store(PostgreSQLBackend(conn, pool(url)))


def release_store(store: Store) -> None:
    """End of request: give the connection back with no transaction open (the pool discards a
    broken one)."""
    backend = store.backend
    with contextlib.suppress(psycopg.Error):
        if not backend.conn.closed and backend.in_transaction:
            backend.rollback()
    backend.close()
