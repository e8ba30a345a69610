"""The site audit as a web team runs it: `flask sites scan` on a customer site served on loopback with
deliberate faults, reporting exactly those faults with their evidence."""

from __future__ import annotations

import copy
import json
import shutil
import threading
from typing import Any, Iterator

import pytest

from app import create_app
from keksi import scan, scan_network

from .conftest import CHROMIUM, SAMPLE_NOTICES, TODAY, LiveServer, from_store, publish_all
from .ledger import DEMO_SITE, add_site
from .widget_host import HostServer

pytestmark = pytest.mark.browser

EARLY = ("document.cookie = '_pk_id.1.abcd=1; path=/; max-age=3600';"  # a tag that does not wait for consent
         "localStorage.setItem('shop_cart', '[]');")  # a necessary key the site declares: no finding
CART = {"name": "shop_cart", "storage": "local", "provider": "Shop Oy", "duration": "persistent",
        "purpose": {"fi": "Ostoskori.", "sv": "Varukorg.", "en": "The shopping cart."}}
IGNORES = ("document.addEventListener('keksi:change', () => { document.cookie = '_fbp=fb.1.2; path=/; max-age=3600';"
           "document.cookie = '_gcl_au=1.1; path=/; max-age=3600'; });")  # sets its cookies whatever the choice
LOOPBACK = "127.0.0.0/8"  # the setting KEKSI_SCAN_ALLOW_PRIVATE that lets these tests scan loopback
CLARITY = ("document.cookie = '_clck=abc; path=/; max-age=3600';"  # waits for consent, but is not declared
           "localStorage.setItem('chat_draft', '');"  # nor is its localStorage key
           "sessionStorage.setItem('chat_tab', '1');")  # a tab's sessionStorage: no declaration can list it
WISHLIST = dict(CART, name="wishlist")  # declared in localStorage, never written: unused


def scan_command(app: Any, *args: str) -> Any:
    """`flask sites scan …`, run as a web team runs it: the scanner's Playwright needs a thread without
    the event loop that the browser tests' own Playwright keeps in this one."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=app.test_cli_runner().invoke(
        args=["sites", "scan", "shop", *args, "--chromium", CHROMIUM])))
    thread.start()
    thread.join(timeout=600)
    return box["result"]


def page(widget: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>{body}'
            f'<script src="{widget}" data-site="shop" async></script></body></html>')


@pytest.fixture(scope="module")
def customer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, str]]:
    folder = tmp_path_factory.mktemp("scan")
    shutil.copytree(SAMPLE_NOTICES, folder / "notices")
    app = create_app({"TESTING": True, "DATABASE": str(folder / "keksi.db"), "SECRET_KEY": "test-secret",
                      "NOTICES_DIR": str(folder / "notices"), "FIXED_TODAY": TODAY, "RATE_LIMIT": 10_000,
                      "SCAN_ALLOW_PRIVATE": LOOPBACK})  # the customer site is on loopback
    publish_all(app)
    with LiveServer(app) as keksi, HostServer() as site, HostServer("127.0.0.2") as tracker:
        shop = copy.deepcopy(DEMO_SITE)
        shop["categories"][0]["services"][0]["cookies"] += [CART, WISHLIST]
        add_site(app, shop, id="shop", origins=[site.url])
        widget = f"{keksi.url}/widget/v1/consent.js"
        tracker.add("/pixel.gif", "GIF89a", "image/gif")
        site.script("/early.js", EARLY)
        # ... and calls its server as the visitor rejects
        site.script("/ignores.js", IGNORES + ("document.addEventListener('keksi:change', () => "
                                              f"{{ new Image().src = '{tracker.url}/pixel.gif?news'; }});"))
        site.script("/clarity.js", CLARITY)
        site.add("/", page(widget, (
            '<script src="/early.js"></script>'
            f'<img src="{tracker.url}/pixel.gif" alt="">'
            '<p><a href="/about">About us</a> <a href="/gone">Gone</a> <a href="/prices.pdf">Prices</a> '
            '<a href="https://example.org/elsewhere">Elsewhere</a></p>')))
        site.add("/news", page(widget, (
            '<script src="/ignores.js"></script>'
            '<script type="text/plain" data-consent="analytics" src="/clarity.js"></script>')))
        site.add("/prices.pdf", "%PDF-1.4", "application/pdf")  # a file, not a page: not scanned
        site.add("/about", "<!doctype html><html lang='en'><title>About</title><p>No banner here.</p></html>")
        # a sitemap index, as WordPress writes it: the scanner reads the sitemaps it names, not as pages
        site.add("/sitemap.xml", f'<?xml version="1.0"?><sitemapindex><sitemap><loc>{site.url}/page-sitemap.xml'
                 f'</loc></sitemap><sitemap><loc>{tracker.url}/sitemap.xml</loc></sitemap></sitemapindex>',
                 "application/xml")
        site.add("/page-sitemap.xml", f"<urlset><url><loc>{site.url}/news</loc></url></urlset>", "application/xml")
        yield app, site.url, tracker.url


def _found(report: dict[str, Any]) -> set[tuple]:
    return {(f["kind"], f["level"], (f["page"] or "").rsplit("/", 1)[-1], f["visitor"],
             f["item"].get("name") or f["item"].get("host") or f["item"]["type"])
            for f in report["findings"] if f["kind"] != "unused"}


def test_the_scan_reports_exactly_the_sites_faults(customer):
    app, site, tracker = customer
    result = scan_command(app, "--url", site + "/", "--format", "json")
    assert result.exit_code == 1, (result.output, result.exception)  # errors found: a web team's CI fails
    assert result.stdout.startswith("{"), (result.output[-2000:], result.exception)
    report = json.loads(result.stdout)
    assert set(report["pages"]) == {site + "/", site + "/about", site + "/gone", site + "/news"}  # by link, sitemap
    tracker_host = "127.0.0.2"
    assert _found(report) == {
        ("before-consent", "error", "", "none", "_pk_id.1.abcd"),
        ("before-consent", "warning", "", "none", tracker_host),
        ("after-reject", "error", "", "reject", "_pk_id.1.abcd"),
        ("after-reject", "warning", "", "reject", tracker_host),
        ("after-reject", "error", "news", "reject", "_fbp"),
        ("after-reject", "error", "news", "reject", "_gcl_au"),  # declared: the widget deleted it again
        ("after-reject", "warning", "news", "reject", tracker_host),  # called as the visitor rejected
        ("no-banner", "error", "about", "none", "page"),
        ("page-error", "warning", "gone", "none", "page"),  # a 404 is not a page without the banner
        ("undeclared", "warning", "news", "reject", "_fbp"),
        ("undeclared", "warning", "news", "accept", "_clck"),
        ("undeclared", "warning", "news", "accept", "chat_draft"),
    }
    by_name = {(f["kind"], f["item"].get("name")): f for f in report["findings"]}
    assert next(f for f in report["findings"] if f["kind"] == "page-error")["item"] == {
        "type": "page", "status": 404, "error": None, "detail": None}
    assert {(o["page"].rsplit("/", 1)[-1], o["status"]) for o in report["observations"]} == {
        ("", 200), ("about", 200), ("news", 200), ("gone", 404)}
    # The widget deleted the cookie the early tag wrote after "Reject all": it was set, then removed.
    removed = by_name[("after-reject", "_pk_id.1.abcd")]["item"]
    assert removed["removed"] is True and by_name[("before-consent", "_pk_id.1.abcd")]["item"]["removed"] is False
    early = by_name[("before-consent", "_pk_id.1.abcd")]
    assert early["source"] == site + "/early.js" and early["category"] == "analytics"
    assert early["item"]["party"] == "first" and 3500 < early["item"]["lifetime_seconds"] <= 3600
    clarity = by_name[("undeclared", "_clck")]
    assert (clarity["service"], clarity["category"], clarity["service_id"]) == (
        "Microsoft Clarity", "analytics", "microsoft-clarity")
    gclid = by_name[("after-reject", "_gcl_au")]
    assert (gclid["item"]["removed"], gclid["source"], gclid["service"]) == (True, site + "/ignores.js", "Google Ads")
    ignores = by_name[("after-reject", "_fbp")]
    # written when "Reject all" was clicked, before the reload that the visitor is observed on
    assert (ignores["service"], ignores["source"]) == ("Meta Pixel", site + "/ignores.js")
    unused = {f["item"]["name"] for f in report["findings"] if f["kind"] == "unused"}
    assert "li_fat_id" in unused and "_gcl_au" not in unused
    assert by_name[("undeclared", "chat_draft")]["item"] == {"type": "localStorage", "name": "chat_draft"}
    assert [(f["item"], f["category"]) for f in report["findings"]
            if f["kind"] == "unused" and f["item"]["type"] != "cookie"] == [
        ({"type": "localStorage", "name": "wishlist"}, "necessary")]  # shop_cart and keksi_queue were seen
    assert "_pk_id.*" not in unused and "keksi_consent" not in unused
    # other hosts are recorded, never crawled
    assert not any("example.org" in page for page in report["pages"])


def test_text_report_and_fail_on_levels():
    finding = scan.Finding("undeclared", "warning", "http://x/", "accept", {"type": "cookie", "name": "_clck"},
                           "http://x/c.js", "Microsoft Clarity", "analytics", "microsoft-clarity")
    report = scan.Report("shop", "2026-12-02T06:00:00Z", ["http://x/"], [finding], [])
    text = scan.as_text(report)
    assert "WARNING undeclared" in text and "cookie _clck, set by http://x/c.js – Microsoft Clarity (analytics)" in text
    removed = scan.Finding("after-reject", "error", "http://x/", "reject",
                           {"type": "cookie", "name": "_fbp", "domain": "", "removed": True})
    missing = scan.Finding("page-error", "warning", "http://x/old", "none",
                           {"type": "page", "status": 404, "error": None, "detail": None})
    refused = scan.Finding("page-error", "error", "http://10.0.0.1/", "none",
                           {"type": "page", "status": None, "error": "refused", "detail": "10.0.0.1 (10.0.0.1)"})
    text = scan.as_text(scan.Report("shop", "t", [], [removed, missing, refused], []))
    assert "http://x/ [reject]: cookie _fbp (removed again before the end)" in text
    assert "http://x/old [none]: page, HTTP 404" in text
    assert "http://10.0.0.1/ [none]: page not loaded: refused: not a public address" in text
    assert report.worst() == "warning"
    assert scan.Report("shop", "t", [], [], []).worst() is None


def test_a_page_that_never_loads_is_a_finding_and_the_other_pages_are_still_scanned(customer):
    app, site, tracker = customer
    result = scan_command(app, "--url", "http://127.0.0.1:9/", "--url", site + "/news", "--pages", "2")
    assert result.exit_code == 1, (result.output, result.exception)
    assert "ERROR   page-error      http://127.0.0.1:9/ [none]: page not loaded: could not be reached" in result.stdout
    assert "after-reject    " + site + "/news [reject]: cookie _fbp" in result.stdout  # the next page was scanned
    assert "Call log" not in result.output and "Traceback" not in result.output


def test_no_page_link_or_redirect_takes_the_scanner_to_a_private_address(customer):
    """Only 127.0.0.1 is allowed: a redirect and a pixel to 127.0.0.2 (standing for 169.254.169.254 or
    an intranet host) are refused, and that host never hears of them."""
    app, site, tracker = customer
    with HostServer("127.0.0.2") as inner, HostServer() as host:
        inner.add("/latest/meta-data/", "secret", "text/plain")
        host.redirect("/away", inner.url + "/latest/meta-data/")
        host.add("/", f'<!doctype html><title>Home</title><img src="{inner.url}/pixel.gif" alt="">')
        app.config["SCAN_ALLOW_PRIVATE"] = "127.0.0.1/32"
        try:
            result = scan_command(app, "--url", host.url + "/away", "--url", host.url + "/", "--pages", "2",
                                  "--format", "json")
        finally:
            app.config["SCAN_ALLOW_PRIVATE"] = LOOPBACK
        assert inner.hits == []  # neither the redirect nor the pixel reached it
    report = json.loads(result.stdout)
    refused = [f for f in report["findings"] if f["kind"] == "page-error"]
    assert [(f["page"], f["level"], f["item"]["error"], f["item"]["detail"]) for f in refused] == [
        (host.url + "/away", "error", "refused", "127.0.0.2 (127.0.0.2)")]
    home = next(o for o in report["observations"] if o["page"] == host.url + "/")
    assert home["status"] == 200 and "127.0.0.2" in {r["host"] for r in home["requests"]}  # tried, recorded


def in_thread(call: Any) -> Any:
    """`call()` in a thread of its own (the scanner's Playwright beside the tests' own), bounded."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=call()))
    thread.start()
    thread.join(timeout=600)
    return box["result"]


def test_a_page_that_hangs_past_the_time_limit_keeps_the_findings_so_far(customer):
    """A page that answers only after the page timeout: it is a page-error (timeout), then the scan's
    time is up, so the next page is not begun; the scan ends with its findings, marked cut short."""
    app, site, tracker = customer
    with HostServer() as host:
        host.add("/hangs", "<!doctype html><title>Slow</title>")
        host.delays["/hangs"] = 3  # bounded: longer than the page timeout below
        limits = scan.Limits(pages=5, page_timeout_ms=1_000, settle_ms=200, banner_timeout_ms=500, seconds=0.5)
        shop = from_store(app, "site", "shop")
        targets = scan_network.Targets(scan_network.networks(LOOPBACK))
        report = in_thread(lambda: scan.scan(shop, [host.url + "/hangs", site + "/news"], limits, CHROMIUM,
                                             targets=targets))
    assert report.pages == [host.url + "/hangs"]
    assert [(f.kind, f.level, f.item) for f in report.findings if f.kind in ("page-error", "time-limit")] == [
        ("page-error", "error", {"type": "page", "status": None, "error": "timeout", "detail": None}),
        ("time-limit", "warning", {"type": "scan", "seconds": 0.5, "not_scanned": [site + "/news"]})]
    assert "WARNING time-limit      the scan: time limit of 0.5 s reached; not scanned: " + site + "/news" \
        in scan.as_text(report)


def test_the_cli_scan_stops_at_its_time_limit_and_reports_what_it_saw(customer):
    app, site, tracker = customer
    with HostServer() as host:
        host.add("/slow", page(f"{site}/none.js", "<p>Slow, without the widget.</p>"))
        host.delays["/slow"] = 1.5  # each load of it alone outlasts the time limit
        result = scan_command(app, "--url", host.url + "/slow", "--url", site + "/news", "--time-limit", "1",
                              "--format", "json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["pages"] == [host.url + "/slow"]
    assert {(f["kind"], f["item"]["type"]) for f in report["findings"]} >= {("no-banner", "page"), ("time-limit", "scan")}
    cut = next(f for f in report["findings"] if f["kind"] == "time-limit")
    assert cut["item"] == {"type": "scan", "seconds": 1, "not_scanned": [site + "/news"]}
    bad = app.test_cli_runner().invoke(args=["sites", "scan", "shop", "--time-limit", "0"])
    assert bad.exit_code == 2 and "--time-limit" in bad.output
