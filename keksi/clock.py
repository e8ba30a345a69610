"""Today's date where notices take effect, and UTC times as the database stores them.

Stored times come in two spellings, each fixed by hashes already written over it:
- consent records (`recorded_at`, `valid_until`, in each record's content hash) write
  `2026-12-02T06:00:00.000000Z`: `record_text`;
- everything else the store keeps (the audit log's `at` and the removal links' `removed_at`,
  both hashed too, then publications, sessions, tokens, maintenance) writes
  `2026-12-02T06:00:00.000000+00:00`: `utc_text`.
Both are fixed width, so the texts of one spelling compare in time order in SQL. Compare a
column only with a bound written by its own function (`day_start` takes which one).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from typing import Any, Callable, Mapping

from flask import current_app


def today(config: Mapping[str, Any] | None = None) -> date:
    """The date in KEKSI_TIMEZONE; `FIXED_TODAY` (YYYY-MM-DD, tests only) overrides it.
    `config` defaults to the current app's."""
    config = current_app.config if config is None else config
    fixed = config.get("FIXED_TODAY")
    if fixed:
        return date.fromisoformat(fixed)
    return datetime.now(ZoneInfo(config["TIMEZONE"])).date()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _utc_digits(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def utc_text(moment: datetime | None = None) -> str:
    """A moment (default now) as the store writes times outside consent records:
    2026-12-02T06:00:00.000000+00:00."""
    return _utc_digits(moment or utc_now()) + "+00:00"


def record_text(moment: datetime) -> str:
    """A moment as consent records write their times: 2026-12-02T06:00:00.000000Z."""
    return _utc_digits(moment) + "Z"


def day_start(day: date, zone: str, write: Callable[[datetime], str] = utc_text, *,
              next_day: bool = False) -> str | None:
    """When `day` (or the day after it) begins in `zone`, written by `write` (`utc_text` or
    `record_text`, as the column it bounds). None when that moment is beyond what a datetime holds
    (around 0001-01-01 or 9999-12-31): nothing stored is that old or that new, so no bound."""
    try:
        start = datetime.combine(day + timedelta(days=1) if next_day else day, time(0), tzinfo=ZoneInfo(zone))
        return write(start.astimezone(timezone.utc))
    except OverflowError:
        return None


def parse_utc(text: str) -> datetime:
    """A stored UTC time (`…Z` or `…+00:00`) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
