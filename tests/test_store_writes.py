"""A write through the store's backend outside `transaction()` is committed at once on both backends
(PostgreSQL's connections are autocommit; SQLite's issue no implicit BEGIN), so closing the store
never loses it; inside a transaction, a failure still keeps nothing."""

from __future__ import annotations

import contextlib

import pytest

from keksi.store import open_store

from .conftest import BOTH, raw_sql

BACKENDS = BOTH


def _generation(app, name: str) -> int:
    return raw_sql(app, "SELECT value FROM generations WHERE name = ?", [name])[0]["value"]


def test_a_write_outside_a_transaction_survives_close(make_app, backend):
    app = make_app(publish=False)
    before = _generation(app, "sites")
    with contextlib.closing(open_store(app.config["DATABASE"])) as store:
        changed = store.backend.execute("UPDATE generations SET value = value + 1 WHERE name = ?", ["sites"])
        assert changed == 1 and not store.backend.in_transaction
        store.backend.executemany("UPDATE generations SET value = value + 1 WHERE name = ?", [["notices"]])
        assert not store.backend.in_transaction
    assert _generation(app, "sites") == before + 1, "the UPDATE was committed, not lost on close"


def test_a_failed_transaction_still_keeps_nothing(make_app, backend):
    app = make_app(publish=False)
    before = _generation(app, "sites")
    with contextlib.closing(open_store(app.config["DATABASE"])) as store:
        with pytest.raises(RuntimeError), store.backend.transaction():
            store.backend.execute("UPDATE generations SET value = value + 1 WHERE name = ?", ["sites"])
            raise RuntimeError("the caller fails mid-transaction")
        assert not store.backend.in_transaction
    assert _generation(app, "sites") == before
