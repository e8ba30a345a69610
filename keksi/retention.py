"""Retention on a schedule inside Keksi: a daily purge with no cron.

Each worker, at most every `CHECK_SECONDS` and only when a request arrives, looks in a
background thread at when the last purge ran; when that is a day or more ago, it claims the
purge in the store (one `maintenance` row, claimed by a conditional UPDATE under SQLite's
write lock), so that one worker of all the processes runs it. No request waits for the check
or the purge. A claim expires after `CLAIM`, so a worker that dies mid-purge does not stop
the next one. `/healthz` and the admin warn when the last purge is over `OVERDUE` old.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask

from . import consents
from .clock import utc_text
from .store import Store, StoreError, database_path, open_store

INTERVAL = timedelta(days=1)
OVERDUE = timedelta(days=2)
CLAIM = timedelta(hours=1)
CHECK_SECONDS = 600
ACTOR = "keksi (scheduled purge)"
_log = logging.getLogger(__name__)


def purge_if_due(store: Store, days: int, zone: tzinfo, now: datetime | None = None) -> int | None:
    """Run the purge if a day has passed since the last one and no other process holds it;
    return how many records it removed, or None when it was not this process's turn."""
    now = now or datetime.now(timezone.utc)
    status = store.task_status("purge")
    if status is not None and status["last_run_at"] and status["last_run_at"] >= utc_text(now - INTERVAL):
        return None  # the common case, answered by a read: no write lock taken
    if not store.claim_task("purge", utc_text(now), utc_text(now - INTERVAL), utc_text(now + CLAIM)):
        return None
    try:
        count, _ = consents.purge(store, days, ACTOR, zone, now)
    except BaseException:
        store.release_task("purge")
        raise
    return count


def status(store: Store, now: datetime | None = None) -> dict[str, Any]:
    """When the last purge ran, and whether the next one is overdue."""
    now = now or datetime.now(timezone.utc)
    row = store.task_status("purge") or {}
    last = row.get("last_run_at")
    return {"last_purge_at": last, "last_purged": row.get("last_count"),
            "overdue": last is None or last < utc_text(now - OVERDUE)}


def _check(path: str, busy_timeout_ms: int, days: int, zone: str) -> None:
    """The background thread: its own connection, never the request's."""
    try:
        store = open_store(path, busy_timeout_ms)
    except StoreError as exc:
        _log.warning("the scheduled purge could not open the database: %s", exc)
        return
    try:
        count = purge_if_due(store, days, ZoneInfo(zone))
        if count is not None:
            _log.info("scheduled purge removed %d consent records", count)
    except Exception:  # logged and retried at the next check; /healthz shows when it is overdue
        _log.exception("the scheduled purge failed")
    finally:
        store.close()


def init_app(app: Flask) -> None:
    """Check for a due purge after requests, in the background (unless KEKSI_AUTO_PURGE is off)."""
    if not app.config["AUTO_PURGE"]:
        return
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0.0, "thread": None}

    @app.before_request
    def _start_check() -> None:
        now = time.monotonic()
        if now < state["next"] or not lock.acquire(blocking=False):
            return
        try:
            running = state["thread"] is not None and state["thread"].is_alive()
            if now < state["next"] or running:
                return
            state["next"] = now + CHECK_SECONDS
            args = (database_path(app), app.config["BUSY_TIMEOUT_MS"], app.config["RETENTION_DAYS"],
                    app.config["TIMEZONE"])
            state["thread"] = threading.Thread(target=_check, args=args, name="keksi-purge", daemon=True)
            state["thread"].start()
        finally:
            lock.release()
