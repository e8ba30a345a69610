"""Site audits as jobs: the admin queues a scan in the store, `flask scans work` runs it.

The worker claims one queued scan at a time (the store's claim is atomic, so with a worker on each
of several hosts no scan runs twice) and runs it in a child process of its own, never inside a web
worker: Chromium, Playwright's event loop and a page that misbehaves stay out of the worker and the
web server. The child writes its progress as each page begins and its result when done; the worker
waits for it within a time limit, fails a scan whose child died or ran too long, and on SIGTERM
stops the child and gives the scan back to the queue. A scan left running by a worker that died
(no progress for `STALE_MINUTES`) is queued again once, then failed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from . import catalogue, scan, scan_network
from .clock import utc_text
from .store import Store, StoreUnavailable, open_store

_log = logging.getLogger(__name__)

MAX_PAGES = 50  # what the admin may ask for; the CLI allows more for a web team's CI
STALE_MINUTES = 15  # a running scan without progress this long lost its worker
SCAN_SECONDS = 30 * 60  # a scan begins no page after this; its findings so far are kept (`time-limit`)
# Why a scan failed, as its `error` column names it (the admin says each in the reader's
# language): its worker died, it ran past its time limit, its process stopped without a word (the
# worker's log has the traceback), or its site was removed. ("page: " and a page that never loaded
# began the error of scans failed before a page that does not load became a finding, `page-error`.)
STALE, TIMEOUT, CRASHED, NO_SITE, PAGE = "stale", "timeout", "crashed", "site-removed", "page: "


@dataclass(frozen=True)
class Job:
    """What a child process needs to run one scan: no app, only the database and the tools."""

    scan_id: int
    worker: str
    database: str
    busy_timeout_ms: int
    instance: str
    chromium: str
    allow_private: str = ""  # KEKSI_SCAN_ALLOW_PRIVATE


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def limits(options: dict[str, Any]) -> scan.Limits:
    return scan.Limits(pages=int(options.get("pages", 10)), seconds=SCAN_SECONDS)


def time_limit(options: dict[str, Any]) -> float:
    """Seconds after which the worker ends a scan's process (and fails the scan): Chromium's start,
    the scan's own time and the longest a page begun just before it ran out can take."""
    chosen = limits(options)
    return 60 + (chosen.seconds or 0) + chosen.page_seconds()


def utc_in(offset_minutes: float = 0) -> str:
    """The moment `offset_minutes` from now (negative: ago), as the store writes times."""
    return utc_text(datetime.now(timezone.utc) + timedelta(minutes=offset_minutes))


# -- the child: one scan ----------------------------------------------------------------


def run_scan(job: Job) -> None:
    """Run one claimed scan and store its result or its error (in the child process)."""
    store = open_store(job.database, job.busy_timeout_ms)
    try:
        claimed = store.scan(job.scan_id)
        site = store.site(claimed["site"]) if claimed else None
        if site is None:
            store.fail_scan(job.scan_id, job.worker, NO_SITE, utc_in())
            return
        options = claimed["options"]

        def progress(done: int, total: int, url: str) -> None:
            store.scan_progress(job.scan_id, job.worker, {"done": done, "total": total, "url": url}, utc_in())

        report = scan.scan(site, list(options.get("urls", [])), limits(options), job.chromium,
                           catalogue.load_ocd(Path(job.instance)), progress=progress,
                           targets=scan_network.Targets(scan_network.networks(job.allow_private)))
        store.finish_scan(job.scan_id, job.worker, report.as_json(), utc_in())
    finally:
        store.close()


# -- the worker: claims scans and watches their children --------------------------------


class Worker:
    """Claims scans from `store` one at a time and runs each in a child process."""

    def __init__(self, store: Store, job: Callable[[int], Job], poll_seconds: float = 2.0) -> None:
        self.store, self.job, self.poll_seconds = store, job, poll_seconds
        self.name = worker_name()
        self.stopping = threading.Event()
        self.context = multiprocessing.get_context("spawn")  # a fresh interpreter: no shared connection

    def stop(self, *_: Any) -> None:
        self.stopping.set()

    def work(self, once: bool = False) -> int:
        """Run scans until stopped (or, with `once`, until the queue is empty); return how many ran."""
        ran = 0
        while not self.stopping.is_set():
            try:
                self.store.recover_scans(utc_in(-STALE_MINUTES), utc_in(), STALE)
                claimed = self.store.claim_scan(self.name, utc_in())
            except StoreUnavailable as error:  # busy or read-only for now: look again later
                _log.warning("scan worker %s cannot reach the store: %s", self.name, error)
                claimed = None
            if claimed is None:
                if once:
                    break
                self.stopping.wait(self.poll_seconds)
                continue
            ran += self._run(claimed)
        return ran

    def _run(self, claimed: dict[str, Any]) -> bool:
        """Run one claimed scan to its end (True), or give it back when the worker is stopping (False)."""
        child = self.context.Process(target=run_scan, args=(self.job(claimed["id"]),), daemon=True)
        child.start()
        deadline = time.monotonic() + time_limit(claimed["options"])
        while child.is_alive() and time.monotonic() < deadline and not self.stopping.is_set():
            child.join(timeout=0.5)
        if child.is_alive():
            _end(child)
            if self.stopping.is_set():
                self.store.requeue_scan(claimed["id"], self.name)
                return False
            self.store.fail_scan(claimed["id"], self.name, TIMEOUT, utc_in())
            return True
        # A child that died without writing its end leaves the scan running: say so.
        self.store.fail_scan(claimed["id"], self.name, CRASHED, utc_in())
        return True


def _end(child: Any) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it does not go (Chromium goes with its driver)."""
    child.terminate()
    child.join(timeout=10)
    if child.is_alive():
        child.kill()
        child.join(timeout=10)


@contextlib.contextmanager
def signals_stop(worker: Worker) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT end the worker cleanly: the running scan goes back to the
    queue. Python takes signals in the main thread only; elsewhere (a test's thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, worker.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
