"""Stored UTC times: each column keeps the spelling its rows were hashed with, and day bounds
written by `clock.day_start` put a record made at midnight on its own day in every range query."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from keksi import consents
from keksi.clock import day_start, record_text, utc_text
from keksi.store import audit_content_hash, open_store

from .conftest import from_store, signed_in
from .ledger import add_site, choice, config

HELSINKI = ZoneInfo("Europe/Helsinki")
MOMENTS = [datetime(2026, 11, 22, 0, 0, tzinfo=HELSINKI), datetime(2026, 3, 29, 3, 59, 59, 999999, tzinfo=HELSINKI),
           datetime(2027, 1, 1, 12, 0, 0, 7, tzinfo=timezone.utc), datetime(1999, 12, 31, 23, 59, tzinfo=ZoneInfo("America/New_York"))]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_times_are_written_as_the_rows_already_stored_and_hashed(moment):
    """What the code wrote before one clock function did it: records (strftime, `Z`) and the
    store (isoformat, `+00:00`). Texts under a hash must come out byte for byte the same."""
    utc = moment.astimezone(timezone.utc)
    assert record_text(moment) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert utc_text(moment) == utc.isoformat(timespec="microseconds")


def test_an_audit_entry_written_before_still_hashes_as_it_did():
    entry = {"id": 7, "at": utc_text(datetime(2026, 11, 22, 10, tzinfo=timezone.utc)), "actor": "legal@example.fi",
             "action": "notice.publish", "subject": "privacy/2026-04-09", "detail": "null"}
    assert entry["at"] == "2026-11-22T10:00:00.000000+00:00"
    assert audit_content_hash(entry) == "526dc5a5f1343f53ca499b80e77f16a06007dafe2d8f1a8f26a7a7f6ee919131"


def _record_at(app, moment: datetime) -> str:
    """Record one valid choice at `moment`, as the API would at that time; return its consent_id."""
    body = choice(config(app.test_client()))
    store = open_store(app.config["DATABASE"])
    try:
        checked = consents.check_choice(body, store, app.config["LANGUAGES"], date(2026, 11, 22),
                                        "http://localhost:8000")
        row, created = consents.record(store, checked, None, None, now=moment, zone=HELSINKI)
    finally:
        store.close()
    assert created
    return row["consent_id"]


# A microsecond before Helsinki's midnight, at it, at midnight UTC (02:00 there), and at noon.
AROUND_MIDNIGHT = [datetime(2026, 11, 21, 21, 59, 59, 999999, tzinfo=timezone.utc),
                   datetime(2026, 11, 22, 0, 0, tzinfo=HELSINKI),
                   datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc),
                   datetime(2026, 11, 22, 12, 0, tzinfo=HELSINKI)]


def test_records_at_a_day_boundary_fall_on_their_day_in_every_range_and_verify(app, runner):
    add_site(app)
    ids = [_record_at(app, moment) for moment in AROUND_MIDNIGHT]
    verified = runner.invoke(args=["consents", "verify"])
    assert verified.exit_code == 0 and "4 records verified" in verified.output, verified.output

    legal = signed_in(app, "legal@example.fi", "legal")
    def exported(query: str) -> list[str]:
        response = legal.get(f"/admin/sites/demo/export.csv?{query}")
        assert response.status_code == 200
        return [row[1] for row in csv.reader(io.StringIO(response.get_data(as_text=True)))][1:]
    assert exported("from=2026-11-22&to=2026-11-22") == ids[1:], "days in KEKSI_TIMEZONE"
    assert exported("from=2026-11-21&to=2026-11-21") == ids[:1]

    def cli(*bounds: str) -> list[str]:
        result = runner.invoke(args=["consents", "export", "--site", "demo", "--format", "jsonl", *bounds])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["consent_id"] for line in result.output.splitlines() if line.startswith("{")]
    assert cli("--since", "2026-11-22") == ids[2:], "days in UTC"
    assert cli("--until", "2026-11-22") == ids[:2]
    assert cli("--since", "2026-11-22T00:00+02:00", "--until", "2026-11-22T12:00+02:00") == ids[1:3]


def test_audit_entries_at_a_day_boundary_fall_on_their_day(app):
    legal = signed_in(app, "legal@example.fi", "legal")
    midnight = utc_text(datetime(2026, 11, 22, tzinfo=HELSINKI))
    assert midnight == day_start(date(2026, 11, 22), "Europe/Helsinki") == "2026-11-21T22:00:00.000000+00:00"
    from_store(app, "_audit", midnight, "clock@example.fi", "user.password", "midnight", None)
    def shown(query: str) -> bool:
        return "midnight" in legal.get(f"/admin/audit?actor=clock@example.fi&{query}").get_data(as_text=True)
    assert shown("since=2026-11-22&until=2026-11-22")
    assert not shown("until=2026-11-21") and not shown("since=2026-11-23")


def test_day_bounds_beyond_what_a_datetime_holds_are_no_bound():
    assert day_start(date.min, "Europe/Helsinki") is None
    assert day_start(date.max, "UTC", record_text, next_day=True) is None
    assert day_start(date(2026, 11, 22), "UTC", record_text, next_day=True) == "2026-11-23T00:00:00.000000Z"
