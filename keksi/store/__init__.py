"""The store: the only code that knows the database.

Everything Keksi keeps goes through `Store` (`queries.py`), whose methods take and return plain
dicts and whose SQL is written once for every backend. The rest of the package shows its parts:

- `chain.py`: the chain's pure hash functions, shared with `keksi.consents.verify` and `keksi.proof`
- `queries.py`: `Store`, every query, in portable SQL
- `sqlite.py`: the SQLite backend: connections, pragmas, transactions, migrations, backup, and
  the connections each thread keeps between requests
- `migrations/`: each backend's schema changes
- `errors.py`: the errors callers catch

This module is the public face: code outside the store imports from `keksi.store` only. A
request's store (`get_store`) is one this thread keeps open between requests: a connection is
never shared across gunicorn's forked workers or across threads.
"""

from __future__ import annotations

import os

from flask import Flask, current_app, g

from . import sqlite
from .chain import GENESIS_HASH, Counts, audit_content_hash, chain_hash, leaves_head, removal_digest
from .errors import LastAdmin, StoreBusy, StoreError, StoreUnavailable
from .queries import PURGE_WHERE, Store, utcnow
from .sqlite import BUSY_TIMEOUT_MS, close_idle_connections, open_store

__all__ = [
    "BUSY_TIMEOUT_MS", "Counts", "GENESIS_HASH", "LastAdmin", "PURGE_WHERE", "Store", "StoreBusy", "StoreError",
    "StoreUnavailable", "audit_content_hash", "chain_hash", "close_idle_connections", "close_store",
    "database_path", "generation", "get_store", "init_app", "leaves_head", "migrate", "open_store",
    "removal_digest", "utcnow",
]


def database_path(app: Flask) -> str:
    path = app.config["DATABASE"]
    return path if os.path.isabs(path) else os.path.join(app.root_path, path)


def migrate(app: Flask) -> list[str]:
    """Create or upgrade the schema; safe to call from many processes at once."""
    return sqlite.migrate(database_path(app))


def get_store() -> Store:
    """The request's (or CLI command's) store: the one this thread keeps for the database."""
    if "store" not in g:
        g.store = sqlite.kept_store(database_path(current_app), current_app.config["BUSY_TIMEOUT_MS"])
    return g.store


def close_store(exc: BaseException | None = None) -> None:
    """End of request: leave a kept store with no transaction open; close one that is not kept."""
    store = g.pop("store", None)
    if store is not None:
        sqlite.release_store(store)


def generation(app: Flask, *names: str) -> tuple[object, ...]:
    """The generations of `names` ("notices", "sites"): values that change, for every worker of
    every host, in the same commit as any change to them. One small query on the connection this
    thread keeps, cheap enough for every request (keksi.pagecache, keksi.workercache). When the
    database cannot be read, each value is a new object equal to nothing, so no cache keeps
    anything made meanwhile."""
    try:
        store = sqlite.kept_store(database_path(app), app.config["BUSY_TIMEOUT_MS"])
    except StoreUnavailable:
        return tuple(object() for _ in names)
    try:
        found = store.generations()
        return tuple(found.get(name, object()) for name in names)
    except store.backend.Error:
        return tuple(object() for _ in names)
    finally:
        if store.read_only:  # not kept (see sqlite.kept_store)
            store.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_store)
    migrate(app)
