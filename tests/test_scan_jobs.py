"""Site audits as jobs in the store: claiming is atomic (two workers never run one scan), a scan
left running by a dead worker is queued again once and then failed, and the worker fails a scan
whose process dies rather than leave it running."""

from __future__ import annotations

import os
import threading
from typing import Any

from keksi import scanjobs
from keksi.store import open_store

from .conftest import BOTH, from_store
from .ledger import add_site

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

OLD = "2020-01-01T00:00:00.000000+00:00"


def queue(app: Any, n: int, site: str = "demo") -> list[int]:
    return [from_store(app, "add_scan", site, "aino@example.fi", {"urls": [], "pages": 2}) for _ in range(n)]


def test_two_workers_never_claim_the_same_scan(app):
    add_site(app)
    ids = queue(app, 40)
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claim_all(name: str) -> None:
        store = open_store(app.config["DATABASE"])
        try:
            start.wait()
            while (job := store.claim_scan(name, scanjobs.utc_in())) is not None:
                claimed[name].append(job["id"])
        finally:
            store.close()

    threads = [threading.Thread(target=claim_all, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == ids  # every scan once, and none left queued
    assert {s["state"] for s in from_store(app, "site_scans", "demo", 100)} == {"running"}
    assert from_store(app, "claim_scan", "c", scanjobs.utc_in()) is None


def test_scans_are_claimed_oldest_first_and_only_their_worker_writes_them(app):
    add_site(app)
    first, second = queue(app, 2)
    job = from_store(app, "claim_scan", "host-a:1", scanjobs.utc_in())
    assert (job["id"], job["state"], job["worker"], job["attempts"]) == (first, "running", "host-a:1", 1)
    assert job["options"] == {"urls": [], "pages": 2}
    assert not from_store(app, "scan_progress", first, "host-b:2", {"done": 1}, scanjobs.utc_in())
    assert from_store(app, "scan_progress", first, "host-a:1", {"done": 1, "total": 2, "url": "u"},
                      scanjobs.utc_in())
    assert from_store(app, "finish_scan", first, "host-a:1", {"findings": []}, scanjobs.utc_in())
    assert not from_store(app, "fail_scan", first, "host-a:1", "late", scanjobs.utc_in())  # done stays done
    done = from_store(app, "scan", first)
    assert (done["state"], done["result"], done["error"]) == ("done", {"findings": []}, None)
    assert from_store(app, "previous_scan", "demo", second)["id"] == first
    listed = from_store(app, "site_scans", "demo")[1]  # a history reads findings, not every observation
    assert (listed["id"], listed["findings"], listed.get("result")) == (first, [], None)
    assert from_store(app, "previous_scan", "demo", first) is None


def test_a_scan_left_running_by_a_dead_worker_is_queued_again_once_then_failed(app):
    add_site(app)
    [scan_id] = queue(app, 1)
    from_store(app, "claim_scan", "dead:1", OLD)
    fresh = from_store(app, "claim_scan", "alive:2", scanjobs.utc_in())
    assert fresh is None  # nothing else queued: the running scan is not taken while its worker lives
    assert from_store(app, "recover_scans", "2019-01-01", scanjobs.utc_in(), scanjobs.STALE) == (0, 0)
    assert from_store(app, "recover_scans", scanjobs.utc_in(-15), scanjobs.utc_in(), scanjobs.STALE) == (1, 0)
    again = from_store(app, "claim_scan", "dead:3", OLD)
    assert (again["id"], again["attempts"]) == (scan_id, 2)
    assert from_store(app, "recover_scans", scanjobs.utc_in(-15), scanjobs.utc_in(), scanjobs.STALE) == (0, 1)
    failed = from_store(app, "scan", scan_id)
    assert (failed["state"], failed["error"]) == ("failed", "stale")
    assert from_store(app, "claim_scan", "alive:2", scanjobs.utc_in()) is None


def test_a_scan_given_back_by_a_stopping_worker_is_run_from_the_start(app):
    add_site(app)
    [scan_id] = queue(app, 1)
    from_store(app, "claim_scan", "stopping:1", scanjobs.utc_in())
    from_store(app, "scan_progress", scan_id, "stopping:1", {"done": 1}, scanjobs.utc_in())
    assert from_store(app, "requeue_scan", scan_id, "stopping:1")
    back = from_store(app, "scan", scan_id)
    assert (back["state"], back["worker"], back["progress"], back["attempts"]) == ("queued", None, None, 0)


def test_the_worker_fails_a_scan_whose_scanner_cannot_start(app, tmp_path):
    add_site(app)
    [scan_id] = queue(app, 1)
    result = app.test_cli_runner().invoke(args=["scans", "work", "--once", "--chromium",
                                                str(tmp_path / "no-chromium")])
    assert result.exit_code == 0, result.output
    assert "after 1 scan(s)" in result.output
    failed = from_store(app, "scan", scan_id)
    assert (failed["state"], failed["error"]) == ("failed", "crashed")
    assert failed["finished_at"] and failed["worker"].endswith(f":{os.getpid()}")  # this process ran the worker


def test_the_worker_fails_a_scan_of_a_removed_site(app):
    add_site(app)
    [scan_id] = queue(app, 1)
    from_store(app, "remove_site", "demo", "tests")
    result = app.test_cli_runner().invoke(args=["scans", "work", "--once"])
    assert result.exit_code == 0, result.output
    assert from_store(app, "scan", scan_id)["error"] == "site-removed"


def test_a_queued_scan_is_audited(app):
    add_site(app)
    [scan_id] = queue(app, 1)
    entry = from_store(app, "audit_log", 1)[0]
    assert (entry["action"], entry["subject"], entry["detail"]["scan"]) == ("scan.start", "demo", scan_id)


def test_the_worker_lets_a_page_begun_as_the_scans_time_ran_out_finish():
    """The child stops beginning pages after the scan's time (its findings kept, marked cut short);
    the worker ends it only after one more page at its longest, so the finish is the child's."""
    limits = scanjobs.limits({"pages": 3})
    assert (limits.pages, limits.seconds) == (3, scanjobs.SCAN_SECONDS)
    each_load = (limits.page_timeout_ms + limits.settle_ms) / 1000
    assert limits.page_seconds() >= 3 * 2 * 2 * each_load  # three visitors, tried twice, loading twice
    assert scanjobs.time_limit({"pages": 3}) > limits.seconds + limits.page_seconds()
    assert scanjobs.STALE_MINUTES * 60 > limits.page_seconds()  # a slow page is not a lost worker
