"""The admin's site audit without a browser: who may start a scan, what a bad form gets, the progress
page while the worker runs, and hostile requests answered with a clear 4xx.
(tests/test_scan_jobs_browser.py walks the whole path with a real worker and Chromium.)"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from keksi import scanjobs

from .conftest import BOTH, csrf, from_store, signed_in
from .ledger import add_site

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

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


REMOVED = dict(UNKNOWN, kind="after-reject", level="error", visitor="reject", source=None,
               item={"type": "cookie", "name": "_fbp", "domain": "", "removed": True})
MISSING = {"kind": "page-error", "level": "warning", "page": "https://www.example.fi/old", "visitor": "none",
           "item": {"type": "page", "status": 404, "error": None, "detail": None},
           "source": None, "service": None, "category": None, "service_id": None}
REFUSED = dict(MISSING, level="error", page="http://10.0.0.1/",
               item={"type": "page", "status": None, "error": "refused", "detail": "10.0.0.1 (10.0.0.1)"})


def test_a_removed_cookie_and_a_page_error_read_as_such_on_the_page_and_in_the_csv(app, marketing):
    scan_id = finished(app, [REMOVED, MISSING, REFUSED])
    html = marketing.get(f"{START}/{scan_id}").get_data(as_text=True)
    assert "Removed again" in html and "Set, then deleted before the page finished" in html
    assert "It answered with HTTP status 404." in html and "No banner" not in html
    assert "Not visited: it leads to 10.0.0.1 (10.0.0.1), which is not a public address." in html
    body = marketing.get(f"{START}/{scan_id}/findings.csv").get_data(as_text=True).lstrip("\ufeff")
    table = {r["Page"]: r for r in csv.DictReader(io.StringIO(body))}
    assert table["https://www.example.fi/"]["Removed"] == "Removed again"
    missing = table["https://www.example.fi/old"]
    assert (missing["HTTP status"], missing["Removed"], missing["Why the page did not load"]) == ("404", "", "")
    assert table["http://10.0.0.1/"]["Why the page did not load"].startswith(
        "Not visited: it leads to 10.0.0.1 (10.0.0.1), which is not a public address.")
    finnish = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    html = finnish.get(f"{START}/{scan_id}").get_data(as_text=True)
    assert "Poistettu heti" in html and "HTTP-tilakoodilla 404" in html and "ei ole julkinen osoite" in html
    body = finnish.get(f"{START}/{scan_id}/findings.csv").get_data(as_text=True).lstrip("\ufeff")
    table = {r["Sivu"]: r for r in csv.DictReader(io.StringIO(body), delimiter=";")}
    assert table["https://www.example.fi/"]["Poistettu"] == "Poistettu heti"
    assert table["https://www.example.fi/old"]["HTTP-tilakoodi"] == "404"
    assert "ei ole julkinen osoite" in table["http://10.0.0.1/"]["Miksi sivu ei latautunut"]


def test_a_scan_that_failed_on_a_page_before_shows_the_page_not_the_browsers_log(app, marketing):
    scan_id = from_store(app, "add_scan", "demo", "m@example.fi", {"urls": [], "pages": 1})
    from_store(app, "claim_scan", "w:1", scanjobs.utc_in())
    from_store(app, "fail_scan", scan_id, "w:1", scanjobs.PAGE + "http://x/ could not be loaded for the 'none' "
               "visitor: Page.goto: net::ERR_CONNECTION_REFUSED\nCall log:\n  - navigating", scanjobs.utc_in())
    html = marketing.get(f"{START}/{scan_id}").get_data(as_text=True)
    assert "A page could not be loaded: http://x/" in html and "Call log" not in html


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/",
                                 "http://localhost/", "http://[::1]/", "http://10.1.2.3/", "http://[::ffff:10.0.0.1]/"])
def test_a_private_address_is_refused_before_it_is_queued(app, marketing, url):
    answer = marketing.post(START, data={"csrf_token": csrf(marketing, START), "urls": url, "pages": "1"})
    assert answer.status_code == 400 and "which is not a public address" in answer.get_data(as_text=True)
    assert from_store(app, "site_scans", "demo") == []


def test_the_refusal_speaks_finnish_and_an_allowed_network_is_queued(app, marketing):
    finnish = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    answer = finnish.post(START, data={"csrf_token": csrf(finnish, START), "urls": "http://10.1.2.3/", "pages": "1"})
    assert answer.status_code == 400 and "ei ole julkinen osoite" in answer.get_data(as_text=True)
    app.config["SCAN_ALLOW_PRIVATE"] = "10.1.0.0/16"  # a staging site on the intranet
    answer = marketing.post(START, data={"csrf_token": csrf(marketing, START), "urls": "http://10.1.2.3/", "pages": "1"})
    assert answer.status_code == 302
    assert from_store(app, "site_scans", "demo")[0]["options"]["urls"] == ["http://10.1.2.3/"]


@pytest.mark.parametrize("lang, words", [
    ("fi", ["Sivulle ei saatu yhteyttä. (net::ERR_NAME_NOT_RESOLVED)", "Hylkäsi kaikki", "Sivuvirhe"]),
    ("sv", ["(net::ERR_NAME_NOT_RESOLVED)", "Avvisade alla"]),
    ("en", ["It could not be reached. (net::ERR_NAME_NOT_RESOLVED)", "Rejected all", "Page error"]),
])
def test_a_page_that_never_loaded_is_told_in_the_admins_language(app, lang, words):
    add_site(app)
    client = signed_in(app, f"{lang}@example.fi", "marketing", lang=lang)
    unreachable = dict(MISSING, level="error", page="https://www.example.fi/x", visitor="reject",
                       item={"type": "page", "status": None, "error": "unreachable",
                             "detail": "net::ERR_NAME_NOT_RESOLVED"})
    html = client.get(f"{START}/{finished(app, [unreachable])}").get_data(as_text=True)
    assert all(w in html for w in words), html
    assert "page-error" not in html and "unreachable" not in html


@pytest.mark.parametrize("error, words", [
    (scanjobs.CRASHED, "The scanner stopped unexpectedly."),
    ("something-new", "The scanner stopped unexpectedly."),
])
def test_a_failure_stored_otherwise_is_still_told(app, marketing, error, words):
    scan_id = from_store(app, "add_scan", "demo", "m@example.fi", {"urls": [], "pages": 1})
    from_store(app, "claim_scan", "w:1", scanjobs.utc_in())
    from_store(app, "fail_scan", scan_id, "w:1", error, scanjobs.utc_in())
    assert words in marketing.get(f"{START}/{scan_id}").get_data(as_text=True)


def test_finding_kinds_and_visitors_are_worded_in_finnish(app):
    add_site(app)
    client = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    scan_id = finished(app, [dict(UNDECLARED, kind="after-reject", level="error", visitor="reject")])
    html = client.get(f"{START}/{scan_id}").get_data(as_text=True)
    assert "”Hylkää kaikki” -valinnan jälkeen" in html and "Hylkäsi kaikki" in html
    assert "after-reject" not in html and ">reject<" not in html


CUT_SHORT = {"kind": "time-limit", "level": "warning", "page": None, "visitor": None, "source": None,
             "service": None, "category": None, "service_id": None,
             "item": {"type": "scan", "seconds": 1800, "not_scanned": ["https://www.example.fi/hinnat"]}}


def test_a_scan_cut_short_says_so_and_names_the_pages_not_scanned_in_finnish(app):
    add_site(app)
    client = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    page = f"{START}/{finished(app, [UNDECLARED, CUT_SHORT])}"
    html = client.get(page).get_data(as_text=True)
    assert "Keskeytyi" in html and "Tarkistuksen aika loppui" in html and "time-limit" not in html
    assert "Tarkistamatta <code>https://www.example.fi/hinnat</code>" in html
    rows = client.get(f"{page}/findings.csv").get_data(as_text=True)
    assert "Keskeytyi;;;;Tarkistamatta;https://www.example.fi/hinnat" in rows


def _flash(html: str) -> str:
    found = re.search(r'<div class="flash" role="status">(.*?)</div>', html, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip() if found else ""


@pytest.mark.parametrize("lang, said, now", [
    ("fi", "Eväste _clck lisättiin evästeilmoitukseen osana palvelua Microsoft Clarity (Analytiikka). "
     "Kävijöiltä kysytään uudelleen. Evästeseloste ei mainitse sitä, ennen kuin lakiasiat laativat ja "
     "julkaisevat siitä uuden version.", "Nyt ilmoitettu"),
    ("sv", "Kakan _clck lades till i kakdeklarationen som en del av Microsoft Clarity (Analys). Besökarna "
     "tillfrågas igen. Informationen om kakor nämner den inte förrän juristerna utarbetar och publicerar en ny "
     "version av den.", "Nu i kakdeklarationen"),
    ("en", "The cookie _clck was added to the declaration as part of Microsoft Clarity (Analytics). Visitors are "
     "asked again. The cookie notice does not list it until legal drafts and publishes a new version of it.",
     "Declared now"),
])
def test_adding_a_cookie_says_where_and_the_finding_shows_it_declared(app, lang, said, now):
    add_site(app)
    client = signed_in(app, f"{lang}@example.fi", "marketing", lang=lang)
    scan_id = finished(app, [UNDECLARED, dict(UNDECLARED, visitor="reject")])  # one cookie, seen twice
    page = f"{START}/{scan_id}"
    assert now not in client.get(page).get_data(as_text=True)
    html = client.post(f"{page}/declare/0", data={"csrf_token": csrf(client, page)},
                       follow_redirects=True).get_data(as_text=True)
    assert said in _flash(html)
    assert html.count(now) == 2 and "Add to declaration<span" not in html  # both sightings: declared now
    assert "Microsoft Clarity (" in html.split(now, 1)[1]
    assert now in client.get(page).get_data(as_text=True)  # and so it stays, without the message


SEMICOLON = dict(UNDECLARED, page="https://www.example.fi/a;b", visitor="reject")  # a separator inside a cell


@pytest.mark.parametrize("lang, separator, header, row", [
    ("fi", ";", ["Vakavuus", "Havainto", "Edellisen tarkistuksen jälkeen", "Sivu", "Kävijä", "Kohteen laji", "Kohde",
                 "Verkkotunnus", "Asettaja", "Palvelu", "Luokka", "Palveluluettelon tunnus",
                 "Poistettu", "HTTP-tilakoodi", "Miksi sivu ei latautunut"],
     ["Varoitus", "Puuttuu evästeilmoituksesta", "", "https://www.example.fi/a;b", "Hylkäsi kaikki", "Eväste",
      "_clck", "www.example.fi", "https://www.example.fi/c.js", "Microsoft Clarity", "Analytiikka",
      "microsoft-clarity", "", "", ""]),
    ("sv", ";", ["Allvarlighet", "Fynd", "Sedan förra granskningen", "Sida", "Besökare", "Objekttyp", "Objekt",
                 "Domän", "Satt av", "Tjänst", "Kategori", "Id i tjänstekatalogen", "Borttagen", "HTTP-status",
                 "Varför sidan inte lästes in"], None),
    ("en", ",", ["Level", "Finding", "Since the previous scan", "Page", "Visitor", "Item type", "Item", "Domain",
                 "Set by", "Service", "Category", "Catalogue id", "Removed", "HTTP status", "Why the page did not load"],
     ["Warning", "Not declared", "", "https://www.example.fi/a;b", "Rejected all", "Cookie", "_clck",
      "www.example.fi", "https://www.example.fi/c.js", "Microsoft Clarity", "Analytics", "microsoft-clarity",
      "", "", ""]),
])
def test_the_csv_opens_in_the_admins_spreadsheet(app, lang, separator, header, row):
    """Excel opening a CSV splits it on the system's list separator: ";" in Finland and Sweden, where
    numbers take a decimal comma. The file is UTF-8 with a BOM, so that Excel reads ä as ä."""
    add_site(app)
    client = signed_in(app, f"{lang}@example.fi", "marketing", lang=lang)
    scan_id = finished(app, [SEMICOLON])
    answer = client.get(f"{START}/{scan_id}/findings.csv")
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    body = answer.get_data()
    assert body.startswith(b"\xef\xbb\xbf") and body.endswith(b"\r\n")
    table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline=""), delimiter=separator))
    assert table[0] == header and len(table) == 2 and len(table[1]) == len(header)
    assert row is None or table[1] == row
    other = "," if separator == ";" else ";"
    assert len(next(csv.reader([body.decode("utf-8-sig").splitlines()[0]], delimiter=other))) == 1
