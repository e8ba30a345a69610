"""bench/ledger.py on each backend: a ledger generated through the store passes `flask consents verify`
(its chain and daily figures), and the candidate figures query gives one answer whichever way the
planner reads the table, the same answer as the daily figures the store keeps."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime, timezone

import pytest

from app import create_app
from keksi.store import open_store

from .conftest import BOTH, ROOT

sys.path.insert(0, str(ROOT / "bench"))
import ledger  # noqa: E402

BACKENDS = BOTH
END = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
ROWS = 1200


def _generated(database: str) -> None:
    ledger.generate(database, ROWS, END, log=lambda message: None)


def test_a_generated_ledger_verifies_with_its_daily_figures(database):
    _generated(database)
    app = create_app({"DATABASE": database, "SECRET_KEY": "bench", "TIMEZONE": "UTC",
                      "NOTICES_DIR": str(ROOT / "notices")})
    result = app.test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 0, result.output
    assert f"ok: {ROWS} records verified" in result.output and "figures ok" in result.output, result.output
    with contextlib.closing(open_store(database)) as store:
        space = ledger.space_by_object(store)
        assert store.backend.size() > 0
    assert space["consents table"] > 0 and space["consents indexes"] > 0 and space["consent_chain"] > 0


def test_the_figures_query_agrees_however_it_is_planned(database, backend):
    _generated(database)
    figures = ledger.figures_query(database, END)  # asserts the covering index changes no answer
    assert figures["rows_in_range"] == figures["rollup_total"] > 0
    assert "idx_consents" not in figures["scan_plan"] and ledger.INDEX_NAME not in figures["scan_plan"]
    if backend == "sqlite":  # held by its hints; PostgreSQL's planner chooses for itself
        assert "idx_consents_site_recorded_at" in figures["site_recorded_at_plan"]
        assert f"COVERING INDEX {ledger.INDEX_NAME}" in figures["covering_plan"]
    with contextlib.closing(open_store(database)) as store:  # the candidate index is gone again
        assert ledger.INDEX_NAME not in {row["name"] for row in store.backend.space_by_object()}


def test_a_postgresql_database_holding_choices_is_refused(fresh_postgresql):
    _generated(fresh_postgresql)
    with pytest.raises(SystemExit, match="already holds choices"):
        _generated(fresh_postgresql)
