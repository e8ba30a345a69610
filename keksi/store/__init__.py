"""The store: the only code that knows the database.

Everything Keksi keeps goes through `Store` (`queries.py`), whose methods take and return plain
dicts and whose SQL is written once for every backend. The rest of the package shows its parts:

- `chain.py`: the chain's pure hash functions, shared with `keksi.consents.verify` and `keksi.proof`
- `queries.py`: `Store`, every query, in portable SQL
- `sqlite.py`: the SQLite backend: connections, pragmas, transactions, migrations, backup, and
  the connections each thread keeps between requests
- `postgresql.py`: the PostgreSQL backend: a connection pool per worker, transactions, migrations
  applied under an advisory lock, and the lock on each chain's head
- `copy.py`: a database copied into another store, table by table (`flask db copy`)
- `migrations/`: each backend's schema changes
- `errors.py`: the errors callers catch

This module is the public face: code outside the store imports from `keksi.store` only.
KEKSI_DATABASE chooses the backend: a libpq URL (`postgresql://…`) PostgreSQL, a path SQLite. A
request's store (`get_store`) is one this thread keeps open between requests (SQLite) or one lent by
this worker's pool (PostgreSQL): a connection is never shared across gunicorn's forked workers or
across threads.
"""

from __future__ import annotations

import contextlib
import os

from typing import Any

from flask import Flask, current_app, g, has_app_context, has_request_context, request

from . import sqlite
from .copy import copy_database
from .chain import GENESIS_HASH, Counts, audit_content_hash, chain_hash, leaves_head, removal_digest
from .errors import LastAdmin, StoreBusy, StoreError, StoreUnavailable
from .queries import PURGE_WHERE, Store
from .sqlite import BUSY_TIMEOUT_MS, close_idle_connections

__all__ = [
    "BUSY_TIMEOUT_MS", "Counts", "GENESIS_HASH", "LastAdmin", "PURGE_WHERE", "Store", "StoreBusy", "StoreError",
    "StoreUnavailable", "audit_content_hash", "chain_hash", "close_idle_connections", "close_store",
    "copy_database", "database_path", "generation", "get_store", "init_app", "is_url", "leaves_head", "migrate", "open_store",
    "pending_migrations", "removal_digest",
]


def is_url(database: str) -> bool:
    """Whether KEKSI_DATABASE names a PostgreSQL server (a libpq URL) rather than a SQLite file."""
    return database.startswith(("postgresql://", "postgres://"))


def _postgresql() -> Any:
    """The PostgreSQL backend, imported only when used: psycopg is an optional dependency."""
    from . import postgresql
    return postgresql


def database_path(app: Flask) -> str:
    """The SQLite file (absolute) or the PostgreSQL URL the app's store is on."""
    path = app.config["DATABASE"]
    return path if is_url(path) or os.path.isabs(path) else os.path.join(app.root_path, path)


def open_store(database: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
    """A store on a connection of its own to `database` (a path or a URL), for the caller to close."""
    return _postgresql().open_store(database) if is_url(database) else sqlite.open_store(database, busy_timeout_ms)


def migrate(app: Flask) -> list[str]:
    """Create or upgrade the schema; safe to call from many processes at once."""
    database = database_path(app)
    if is_url(database):
        with contextlib.closing(open_store(database)) as store:
            return store.migrate()
    return sqlite.migrate(database)


def pending_migrations(app: Flask) -> list[str]:
    database = database_path(app)
    with contextlib.closing(open_store(database)) as store:
        return store.pending_migrations()


def _kept_store(app: Flask) -> Store:
    database = database_path(app)
    if is_url(database):
        return _postgresql().pooled_store(database)
    return sqlite.kept_store(database, app.config["BUSY_TIMEOUT_MS"])


def _release(store: Store) -> None:
    (_postgresql() if store.backend.name == "postgresql" else sqlite).release_store(store)


def get_store() -> Store:
    """The request's (or CLI command's) store: the one this thread keeps for the database, or one
    lent by this worker's pool."""
    if "store" not in g:
        g.store = _kept_store(current_app)
        if not has_request_context():  # a CLI command: requests are checked before they start
            _refuse_pending(current_app, g.store)
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    """End of request: leave a kept store with no transaction open; close one that is not kept,
    give a pooled one back."""
    store = g.pop("store", None)
    if store is not None:
        _release(store)


def generation(app: Flask, *names: str) -> tuple[object, ...]:
    """The generations of `names` ("notices", "sites"): values that change, for every worker of
    every host, in the same commit as any change to them. One small query on the connection this
    thread keeps, cheap enough for every request (keksi.pagecache, keksi.workercache). When the
    database cannot be read, each value is a new object equal to nothing, so no cache keeps
    anything made meanwhile."""
    # Inside a request that holds a pooled connection, that one: a second from the pool could wait
    # for ever once every connection is held by a request waiting for its second.
    database = database_path(app)
    lent = (g.get("store") if has_app_context() and is_url(database) and database_path(current_app) == database
            else None)
    try:
        store = lent or _kept_store(app)
    except StoreUnavailable:
        return tuple(object() for _ in names)
    try:
        found = store.generations()
        return tuple(found.get(name, object()) for name in names)
    except store.backend.Error:
        return tuple(object() for _ in names)
    finally:
        if store is not lent and (store.read_only or store.backend.name == "postgresql"):  # not kept
            _release(store)


def init_app(app: Flask) -> None:
    """SQLite migrates on start. PostgreSQL, shared by several hosts, is migrated explicitly (`flask
    db upgrade`): while migrations are pending, the app answers 503 naming them (and /healthz lists
    them), and checks again at each request until there are none."""
    app.teardown_appcontext(close_store)
    if not is_url(app.config["DATABASE"]):
        migrate(app)
        return
    app.extensions[_MIGRATED] = False

    @app.before_request
    def _refuse_with_pending_migrations() -> None:
        # Once none are pending, a request reaches the database only where its view asks (so a view
        # answers a database out of reach in its own way: the consent API's 503 the widget can read).
        if request.endpoint != "health.healthz" and not app.extensions.get(_MIGRATED, True):
            _refuse_pending(app, get_store())


_MIGRATED = "keksi.store.migrated"  # app.extensions: False until a PostgreSQL app found none pending


def _refuse_pending(app: Flask, store: Store) -> None:
    """StoreUnavailable naming the migrations a PostgreSQL database still needs (SQLite migrates on
    start); asked again each time until there are none."""
    if app.extensions.get(_MIGRATED, True):
        return
    pending = store.pending_migrations()
    if pending:
        raise StoreUnavailable(f"the database needs its migrations {', '.join(pending)}: run flask db upgrade",
                               code="pending_migrations")
    app.extensions[_MIGRATED] = True
