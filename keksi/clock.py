"""Today's date where notices take effect. One function, so tests can fix the day."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from flask import current_app


def today() -> date:
    """The date in KEKSI_TIMEZONE; `FIXED_TODAY` (YYYY-MM-DD, tests only) overrides it."""
    fixed = current_app.config.get("FIXED_TODAY")
    if fixed:
        return date.fromisoformat(fixed)
    return datetime.now(ZoneInfo(current_app.config["TIMEZONE"])).date()
