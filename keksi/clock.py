"""Today's date where notices take effect. One function, so tests can fix the day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from typing import Any, Mapping

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


def utc_iso(moment: datetime | None = None) -> str:
    """A moment (default now) in UTC as the store writes times: 2026-12-02T06:00:00.000000+00:00.
    Fixed width, so such strings compare in time order."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def day_start_utc(day: date, config: Mapping[str, Any] | None = None) -> str:
    """The moment `day` begins in KEKSI_TIMEZONE, written as `utc_iso` writes times."""
    config = current_app.config if config is None else config
    return utc_iso(datetime.combine(day, time(0), tzinfo=ZoneInfo(config["TIMEZONE"])))


def parse_utc(text: str) -> datetime:
    """A UTC time as the ledger and the store write it (`…Z` or `…+00:00`), as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def record_day_start(day: date, zone: str, *, next_day: bool = False) -> str | None:
    """When `day` (or the day after it) begins in `zone`, written as consent records write times
    (UTC, `…T…Z`, so that strings sort as moments). None when that moment is beyond what a datetime
    holds (around 0001-01-01 or 9999-12-31): no record is that old or that new, so no bound."""
    try:
        start = datetime.combine(day + timedelta(days=1) if next_day else day, time(0), tzinfo=ZoneInfo(zone))
        moment = start.astimezone(timezone.utc)
    except OverflowError:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
