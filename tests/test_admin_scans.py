"""The admin's site audit without a browser: who may start a scan, what a bad form gets, the progress
page while the worker runs, and hostile requests answered with a clear 4xx.
(tests/test_scan_jobs_browser.py walks the whole path with a real worker and Chromium.)"""

from __future__ import annotations

from typing import Any

import pytest

from keksi import scanjobs

from .conftest import csrf, from_store, signed_in
from .ledger import add_site

START = "/admin/sites/demo/scans"
UNDECLARED = {"kind": "undeclared", "level": "warning", "page": "https://www.example.fi/", "visitor": "accept",
              "item": {"type": "cookie", "name": "_clck", "domain": "www.example.fi"},
              "source": "https://www.example.fi/c.js", "service": "Microsoft Clarity", "category": "analytics",
              "service_id": "microsoft-clarity"}
UNKNOWN = dict(UNDECLARED, item={"type": "cookie", "name": "mystery", "domain": "www.example.fi"},
               service=None, category=None, service_id=None)


@pytest.fixture
def marketing(app) -> Any:
    add_site(app)
    return signed_in(app, "m@example.fi", "marketing")


def finished(app: Any, findings: list[dict[str, Any]]) -> int:
    scan_id = from_store(app, "add_scan", "demo", "m@example.fi", {"urls": [], "pages": 1})
    from_store(app, "claim_scan", "w:1", scanjobs.utc_in())
    from_store(app, "finish_scan", scan_id, "w:1", {"site": "demo", "started": "t", "pages": ["https://www.example.fi/"],
                                                    "findings": findings, "observations": []}, scanjobs.utc_in())
    return scan_id


def test_only_marketing_and_admins_scan(app):
    add_site(app)
    legal = signed_in(app, "l@example.fi", "legal")
    assert legal.get(START).status_code == 403
    admin = signed_in(app, "a@example.fi", "admin")
    assert admin.get(START).status_code == 200
    assert "Site audit" in admin.get("/admin/sites/").get_data(as_text=True)


@pytest.mark.parametrize("urls, pages, message", [
    ("javascript:alert(1)", "3", "is not a web address"),
    ("https://www.example.fi/ ftp://x/", "3", "ftp://x/ is not a web address"),
    ("", "0", "Scan from 1 to 50 pages."),
    ("", "500", "Scan from 1 to 50 pages."),
    ("", "many", "Scan from 1 to 50 pages."),
    (" ".join(f"https://www.example.fi/{i}" for i in range(21)), "3", "Give at most 20 addresses."),
])
def test_a_bad_scan_form_is_refused_naming_the_field(app, marketing, urls, pages, message):
    answer = marketing.post(START, data={"csrf_token": csrf(marketing, START), "urls": urls, "pages": pages})
    assert answer.status_code == 400 and message in answer.get_data(as_text=True)
    assert from_store(app, "site_scans", "demo") == []


def test_a_scan_without_a_csrf_token_is_not_queued(app, marketing):
    assert marketing.post(START, data={"pages": "3"}).status_code == 400
    assert from_store(app, "site_scans", "demo") == []


def test_the_progress_page_reloads_itself_until_the_scan_ends(app, marketing):
    answer = marketing.post(START, data={"csrf_token": csrf(marketing, START), "urls": "", "pages": "4"})
    page = answer.headers["Location"]
    scan_id = from_store(app, "site_scans", "demo")[0]["id"]
    from_store(app, "claim_scan", "w:1", scanjobs.utc_in())
    from_store(app, "scan_progress", scan_id, "w:1", {"done": 2, "total": 4, "url": "https://www.example.fi/x"},
               scanjobs.utc_in())
    running = marketing.get(page)
    assert running.headers["Refresh"] == "5"
    assert "2 of at most 4 pages scanned; now https://www.example.fi/x" in running.get_data(as_text=True)
    from_store(app, "fail_scan", scan_id, "w:1", scanjobs.TIMEOUT, scanjobs.utc_in())
    failed = marketing.get(page)
    assert "Refresh" not in failed.headers and "longer than its time limit" in failed.get_data(as_text=True)
    assert marketing.get(f"{page}/findings.csv").status_code == 409


def test_the_findings_speak_the_admins_language(app):
    add_site(app)
    client = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    scan_id = finished(app, [UNDECLARED])
    html = client.get(f"{START}/{scan_id}").get_data(as_text=True)
    assert "Puuttuu evästeilmoituksesta" in html and "Lisää evästeilmoitukseen" in html


def test_hostile_requests_get_a_clear_4xx(app, marketing):
    scan_id = finished(app, [UNDECLARED, UNKNOWN])
    token = csrf(marketing, f"{START}/{scan_id}")
    assert marketing.get(f"{START}/999").status_code == 404
    assert marketing.get("/admin/sites/nosuch/scans").status_code == 404
    add_site(app, id="other")
    assert marketing.get(f"/admin/sites/other/scans/{scan_id}").status_code == 404  # another site's scan
    for finding in ("1", "2", "99"):  # no catalogue service to add, or no such finding
        answer = marketing.post(f"{START}/{scan_id}/declare/{finding}", data={"csrf_token": token})
        assert answer.status_code == 400
    assert marketing.post(f"{START}/{scan_id}/declare/-1", data={"csrf_token": token}).status_code == 404
    assert marketing.get(f"{START}/{scan_id}").get_data(as_text=True).count("Add to declaration<span") == 1


def test_the_csv_keeps_a_cookie_named_like_a_formula_as_text(app, marketing):
    scan_id = finished(app, [dict(UNKNOWN, item={"type": "cookie", "name": "=cmd|x", "domain": "x"})])
    body = marketing.get(f"{START}/{scan_id}/findings.csv").get_data(as_text=True)
    assert "'=cmd|x" in body and ",=cmd" not in body
