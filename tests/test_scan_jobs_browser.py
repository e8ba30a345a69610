"""Site audits run as jobs, end to end: marketing starts a scan in the admin, `flask scans work --once`
runs it in a process of its own against a customer site on loopback with deliberate faults, and the
admin shows the faults, declares the undeclared cookie in one step and exports the findings."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest
from playwright.sync_api import expect

from keksi import scanjobs

from .conftest import (CHROMIUM, ROOT, LiveServer, add_user, assert_accessible, browser_sign_in, csrf, from_store,
                       signed_in)
from .ledger import add_site
from .test_admin_scans import UNDECLARED
from .test_scan_browser import LOOPBACK, _found, customer  # noqa: F401  (the customer site with its faults)

pytestmark = pytest.mark.browser


def work_once(app: Any) -> Any:
    result = app.test_cli_runner().invoke(args=["scans", "work", "--once", "--chromium", CHROMIUM])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_the_worker_runs_a_queued_scan_and_stores_its_findings(customer):  # noqa: F811
    app, site, tracker = customer
    scan_id = from_store(app, "add_scan", "shop", "aino@example.fi", {"urls": [site + "/news"], "pages": 1})
    assert "after 1 scan(s)" in work_once(app).output
    done = from_store(app, "scan", scan_id)
    assert done["state"] == "done", done["error"]
    assert done["progress"] == {"done": 0, "total": 1, "url": site + "/news"}  # the last page it began
    assert done["result"]["pages"] == [site + "/news"]
    assert _found(done["result"]) == {
        ("after-reject", "error", "news", "reject", "_fbp"),
        ("after-reject", "error", "news", "reject", "_gcl_au"),
        ("after-reject", "warning", "news", "reject", tracker.split("//")[1].split(":")[0]),
        ("undeclared", "warning", "news", "reject", "_fbp"),
        ("undeclared", "warning", "news", "accept", "_clck"),
        ("undeclared", "warning", "news", "accept", "chat_draft"),
    }
    assert "after 0 scan(s)" in work_once(app).output  # the queue is empty: --once stops


def _findings_page(client: Any, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200 and "Refresh" not in page.headers
    return page.get_data(as_text=True)


def test_marketing_scans_declares_and_exports(customer):  # noqa: F811
    app, site, tracker = customer
    client = signed_in(app, "scans@example.fi", "marketing")
    start = f"/admin/sites/shop/scans"
    answer = client.post(start, data={"csrf_token": csrf(client, start), "urls": site + "/news", "pages": "1"})
    assert answer.status_code == 302
    scan_page = answer.headers["Location"]
    waiting = client.get(scan_page)
    assert waiting.headers["Refresh"] == "5" and "Waiting for the scan worker" in waiting.get_data(as_text=True)
    queued = from_store(app, "site_scans", "shop")[0]
    assert (queued["state"], queued["requested_by"], queued["options"]) == (
        "queued", "scans@example.fi", {"urls": [site + "/news"], "pages": 1})

    work_once(app)
    html = _findings_page(client, scan_page)
    assert "After “Reject all”" in html and "_fbp" in html and site + "/clarity.js" in html
    assert "Rejected all" in html and "Microsoft Clarity" in html
    assert html.count("Add to declaration") == 2  # _fbp (Meta Pixel) and _clck (Microsoft Clarity)

    clarity = next(i for i, f in enumerate(from_store(app, "scan", queued["id"])["result"]["findings"])
                   if f["kind"] == "undeclared" and f["item"]["name"] == "_clck")
    declared = client.post(f"{scan_page}/declare/{clarity}", data={"csrf_token": csrf(client, scan_page)})
    assert declared.status_code == 302
    shop = from_store(app, "site", "shop")
    analytics = next(c for c in shop["categories"] if c["id"] == "analytics")
    service = next(s for s in analytics["services"] if s.get("catalogue") == "microsoft-clarity")
    cookie = next(c for c in service["cookies"] if c["name"] == "_clck")
    assert cookie["duration"] and set(cookie["purpose"]) == {"fi", "sv", "en"}
    assert [e["action"] for e in from_store(app, "audit_log", 2)] == ["scan.declare", "site.edit"]
    refused = client.post(f"{scan_page}/declare/{clarity}", data={})
    assert refused.status_code == 400  # no CSRF token: nothing saved
    assert "declared already" in client.post(f"{scan_page}/declare/{clarity}", data={
        "csrf_token": csrf(client, scan_page)}, follow_redirects=True).get_data(as_text=True)

    exported = client.get(f"{scan_page}/findings.csv")
    assert exported.headers["Content-Type"] == "text/csv; charset=utf-8"
    table = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert {(r["Finding"], r["Item"], r["Visitor"]) for r in table} >= {
        ("After “Reject all”", "_fbp", "Rejected all"), ("Not declared", "_clck", "Accepted all")}
    assert all(r["Since the previous scan"] == "" for r in table)  # the first scan: nothing to compare with
    as_json = json.loads(client.get(f"{scan_page}/findings.json").get_data(as_text=True))
    assert as_json["site"] == "shop" and as_json["pages"] == [site + "/news"]

    # Scanned again: the declared cookie is no longer a finding, and the history says what changed.
    client.post(start, data={"csrf_token": csrf(client, start), "urls": site + "/news", "pages": "1"})
    work_once(app)
    history = client.get(start).get_data(as_text=True)
    assert "0 new, 1 gone" in history
    latest = from_store(app, "site_scans", "shop")[0]
    html = _findings_page(client, f"{start}/{latest['id']}")
    assert f"Gone since scan {queued['id']}" in html and html.count("Add to declaration") == 1


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers: a page that keeps loading."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_sigterm_stops_the_worker_and_gives_its_scan_back(customer):  # noqa: F811
    app, site, tracker = customer
    with silent_server() as slow:
        scan_id = from_store(app, "add_scan", "shop", "aino@example.fi", {"urls": [slow], "pages": 1})
        env = dict(os.environ, KEKSI_DATABASE=app.config["DATABASE"], KEKSI_SECRET_KEY="test-secret",
                   KEKSI_NOTICES_DIR=app.config["NOTICES_DIR"], KEKSI_CHROMIUM=CHROMIUM,
                   KEKSI_SCAN_ALLOW_PRIVATE=LOOPBACK)
        worker = subprocess.Popen([str(ROOT / ".venv" / "bin" / "flask"), "--app", "app", "scans", "work",
                                   "--poll", "0.2"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while from_store(app, "scan", scan_id)["progress"] is None and time.monotonic() < deadline:
                time.sleep(0.2)  # the child has begun the page, which never loads
            assert from_store(app, "scan", scan_id)["state"] == "running"
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    back = from_store(app, "scan", scan_id)
    assert (back["state"], back["worker"], back["attempts"]) == ("queued", None, 0)
    assert "stopped after 0 scan(s)" in worker.stderr.read()


def test_the_audit_pages_in_a_browser_pass_axe(make_app, page):
    app = make_app()
    add_site(app)
    add_user(app, "marketing@example.fi", "marketing")
    with LiveServer(app) as server:
        browser_sign_in(page, server.url, "marketing@example.fi")
        page.goto(f"{server.url}/admin/sites/")
        page.get_by_role("link", name="Site audit – Tiimityö (demo)").click()
        assert_accessible(page, "the site audit page")
        page.get_by_label("Pages at most").fill("3")
        page.get_by_role("button", name="Scan this site").click()
        expect(page.locator(".scan-progress")).to_contain_text("Waiting for the scan worker")
        assert_accessible(page, "a waiting scan")
        scan_id = from_store(app, "site_scans", "demo")[0]["id"]
        from_store(app, "claim_scan", "w:1", scanjobs.utc_in())
        from_store(app, "finish_scan", scan_id, "w:1", {
            "site": "demo", "started": "t", "pages": ["https://www.example.fi/"], "observations": [],
            "findings": [UNDECLARED, dict(UNDECLARED, kind="before-consent", level="error", visitor="none")]},
            scanjobs.utc_in())
        expect(page.get_by_role("heading", name="Errors (1)")).to_be_visible(timeout=30_000)  # it reloaded itself
        assert_accessible(page, "a scan's findings")
        page.get_by_role("button", name="Add to declaration – _clck").click()
        expect(page.locator(".flash")).to_contain_text(
            "The cookie _clck was added to the declaration as part of Microsoft Clarity (Analytics).")
        expect(page.locator(".flash")).to_contain_text("The cookie notice does not list it until legal drafts")
        row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="Not declared"))
        expect(row).to_contain_text("Declared now")
        expect(row.get_by_role("button")).to_have_count(0)  # nothing more to add
        assert_accessible(page, "a scan's findings after adding a cookie")


# These scan the customer site after the tests above, which expect the site's first scans to be theirs.


def test_a_page_that_does_not_load_is_a_finding_and_the_scan_still_ends_with_its_result(customer):  # noqa: F811
    app, site, tracker = customer
    scan_id = from_store(app, "add_scan", "shop", "aino@example.fi",
                         {"urls": ["http://127.0.0.1:9/", site + "/news"], "pages": 2})
    work_once(app)
    done = from_store(app, "scan", scan_id)
    assert done["state"] == "done", done["error"]
    assert ("page-error", "error", "", "none", "page") in _found(done["result"])
    assert ("after-reject", "error", "news", "reject", "_fbp") in _found(done["result"])  # the next page
    html = signed_in(app, "fi@example.fi", "marketing", lang="fi").get(
        f"/admin/sites/shop/scans/{scan_id}").get_data(as_text=True)
    assert "Sivuvirhe" in html and "Sivulle ei saatu yhteyttä." in html
    assert "Call log" not in html and "net::ERR_CONNECTION_REFUSED" not in html


def test_a_site_on_a_private_address_is_not_visited_without_the_setting(customer):  # noqa: F811
    app, site, tracker = customer
    scan_id = from_store(app, "add_scan", "shop", "aino@example.fi", {"urls": [], "pages": 1})  # the home page
    app.config["SCAN_ALLOW_PRIVATE"] = ""  # the default
    try:
        work_once(app)
    finally:
        app.config["SCAN_ALLOW_PRIVATE"] = LOOPBACK
    done = from_store(app, "scan", scan_id)
    assert done["state"] == "done", done["error"]
    assert [(f["kind"], f["item"]["error"], f["item"]["detail"]) for f in done["result"]["findings"]
            if f["kind"] != "unused"] == [("page-error", "refused", "127.0.0.1 (127.0.0.1)")]
    html = signed_in(app, "sv@example.fi", "marketing", lang="sv").get(
        f"/admin/sites/shop/scans/{scan_id}").get_data(as_text=True)
    assert "Inte besökt: sidan leder till 127.0.0.1 (127.0.0.1), som inte är en offentlig adress." in html
