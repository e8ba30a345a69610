"""The site audit as a web team runs it: `flask sites scan` on a customer site served on loopback with
deliberate faults, reporting exactly those faults with their evidence."""

from __future__ import annotations

import json
import shutil
import threading
from typing import Any, Iterator

import pytest

from app import create_app
from keksi import scan

from .conftest import CHROMIUM, SAMPLE_NOTICES, TODAY, LiveServer, publish_all
from .ledger import add_site
from .widget_host import HostServer

pytestmark = pytest.mark.browser

EARLY = "document.cookie = '_pk_id.1.abcd=1; path=/; max-age=3600';"  # a tag that does not wait for consent
IGNORES = ("document.addEventListener('keksi:change', () => "
           "{ document.cookie = '_fbp=fb.1.2; path=/; max-age=3600'; });")  # sets its cookie whatever the choice
CLARITY = "document.cookie = '_clck=abc; path=/; max-age=3600';"  # waits for consent, but is not declared


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
                      "NOTICES_DIR": str(folder / "notices"), "FIXED_TODAY": TODAY, "RATE_LIMIT": 10_000})
    publish_all(app)
    with LiveServer(app) as keksi, HostServer() as site, HostServer("127.0.0.2") as tracker:
        add_site(app, id="shop", origins=[site.url])
        widget = f"{keksi.url}/widget/v1/consent.js"
        tracker.add("/pixel.gif", "GIF89a", "image/gif")
        site.script("/early.js", EARLY)
        site.script("/ignores.js", IGNORES)
        site.script("/clarity.js", CLARITY)
        site.add("/", page(widget, (
            '<script src="/early.js"></script>'
            f'<img src="{tracker.url}/pixel.gif" alt="">'
            '<p><a href="/about">About us</a> <a href="https://example.org/elsewhere">Elsewhere</a></p>')))
        site.add("/news", page(widget, (
            '<script src="/ignores.js"></script>'
            '<script type="text/plain" data-consent="analytics" src="/clarity.js"></script>')))
        site.add("/about", "<!doctype html><html lang='en'><title>About</title><p>No banner here.</p></html>")
        site.add("/sitemap.xml", f"<urlset><url><loc>{site.url}/news</loc></url></urlset>", "application/xml")
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
    assert set(report["pages"]) == {site + "/", site + "/about", site + "/news"}  # by link and by sitemap
    tracker_host = "127.0.0.2"
    assert _found(report) == {
        ("before-consent", "error", "", "none", "_pk_id.1.abcd"),
        ("before-consent", "warning", "", "none", tracker_host),
        ("after-reject", "error", "", "reject", "_pk_id.1.abcd"),
        ("after-reject", "warning", "", "reject", tracker_host),
        ("after-reject", "error", "news", "reject", "_fbp"),
        ("no-banner", "error", "about", "none", "page"),
        ("undeclared", "warning", "news", "reject", "_fbp"),
        ("undeclared", "warning", "news", "accept", "_clck"),
    }
    by_name = {(f["kind"], f["item"].get("name")): f for f in report["findings"]}
    early = by_name[("before-consent", "_pk_id.1.abcd")]
    assert early["source"] == site + "/early.js" and early["category"] == "analytics"
    assert early["item"]["party"] == "first" and 3500 < early["item"]["lifetime_seconds"] <= 3600
    clarity = by_name[("undeclared", "_clck")]
    assert (clarity["service"], clarity["category"], clarity["service_id"]) == (
        "Microsoft Clarity", "analytics", "microsoft-clarity")
    assert by_name[("after-reject", "_fbp")]["service"] == "Meta Pixel"
    unused = {f["item"]["name"] for f in report["findings"] if f["kind"] == "unused"}
    assert "_gcl_au" in unused and "_pk_id.*" not in unused and "keksi_consent" not in unused
    # other hosts are recorded, never crawled
    assert not any("example.org" in page for page in report["pages"])


def test_text_report_and_fail_on_levels():
    finding = scan.Finding("undeclared", "warning", "http://x/", "accept", {"type": "cookie", "name": "_clck"},
                           "http://x/c.js", "Microsoft Clarity", "analytics", "microsoft-clarity")
    report = scan.Report("shop", "2026-12-02T06:00:00Z", ["http://x/"], [finding], [])
    text = scan.as_text(report)
    assert "WARNING undeclared" in text and "cookie _clck, set by http://x/c.js – Microsoft Clarity (analytics)" in text
    assert report.worst() == "warning"
    assert scan.Report("shop", "t", [], [], []).worst() is None


def test_a_page_that_never_loads_is_named_not_a_traceback(customer):
    app, site, tracker = customer
    result = scan_command(app, "--url", "http://127.0.0.1:9/")
    assert result.exit_code == 1 and "http://127.0.0.1:9/ could not be loaded" in result.output
