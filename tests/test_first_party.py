"""First-party mode in Chromium, through a real nginx on loopback running the README's `location`
block: the customer's pages and Keksi on one origin, the stored choice set by the server with
Set-Cookie (which Safari and Brave keep for its whole lifetime), and the receipt's "change or
withdraw" link opening the panel on the page where the choice was made.

nginx rather than a Python proxy: the block the README tells operators to paste is the one tested,
and Debian's nginx-light is a 1 MB package that scripts/test installs as it installs Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import Page, expect


from .conftest import LiveServer, assert_accessible, raw_sql
from .ledger import ROOT, add_site
from .widget_host import HostServer, host_page

pytestmark = pytest.mark.browser

DAY = 86400
# Records every write of keksi_consent from script, so the test can tell the server's cookie apart.
WATCH_COOKIE_WRITES = """
(() => {
  const real = Object.getOwnPropertyDescriptor(Document.prototype, "cookie");
  window.cookieWrites = [];
  Object.defineProperty(document, "cookie", {configurable: true,
    get() { return real.get.call(document); },
    set(value) { if (value.startsWith("keksi_consent=")) window.cookieWrites.push(value); real.set.call(document, value); }});
})();
"""


def readme_location_block() -> str:
    found = re.search(r"```nginx\n(location /consent/ \{.*?\n\})\n```", (ROOT / "README.md").read_text(), re.S)
    assert found, "the README shows the first-party nginx location"
    return found.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.fail("nginx is missing: run 'apt-get install -y nginx-light' (scripts/test does it as root)")
    return found


@pytest.fixture
def site_origin(tmp_path: Path, make_app) -> Iterator[tuple[str, Any, HostServer]]:
    """nginx on a free loopback port: `/` is the customer's site (a host page server), `/consent/`
    is Keksi, exactly as the README's block passes it. Yields (origin, app, host); the app's
    `cookies_seen` lists the Cookie header of every request that reached Keksi."""
    app = make_app(TRUSTED_PROXIES=1, RATE_LIMIT=10_000, STORE_PAGE=True)  # the receipt links the page of the choice
    app.cookies_seen = []

    def keksi_app(environ: dict[str, Any], start_response: Callable) -> Any:
        app.cookies_seen.append(environ.get("HTTP_COOKIE"))
        return app(environ, start_response)

    with LiveServer(keksi_app) as keksi, HostServer() as host:
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        add_site(app, id="shop", origins=[origin], consent_days=30)
        location = readme_location_block().replace("http://127.0.0.1:8000/", f"{keksi.url}/")
        temp = tmp_path / "nginx"
        temp.mkdir()
        (temp / "nginx.conf").write_text(f"""
daemon off; master_process off; worker_processes 1;
pid {temp}/nginx.pid; error_log {temp}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass {host.url}; }}
    {location}
  }}
}}
""")
        nginx = subprocess.Popen([nginx_binary(), "-p", str(temp), "-c", str(temp / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: reachable(f"{origin}/consent/healthz"), "nginx to start", nginx)
            yield origin, app, host
        finally:
            nginx.terminate()
            nginx.wait(timeout=10)


def reachable(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def wait_until(check: Callable[[], Any], what: str, process: subprocess.Popen | None = None,
               timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: exited with {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.05)


def rows(app: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in raw_sql(app, "SELECT * FROM consents WHERE site = 'shop' ORDER BY seq")]


def wait_rows(app: Any, count: int) -> list[dict[str, Any]]:
    """Poll until the ledger holds `count` choices of the site; fail if it holds more."""
    found = wait_until(lambda: (lambda now: now if len(now) >= count else None)(rows(app)),
                       f"{count} consent records")
    assert len(found) == count, found
    return found


def server_cookie(page: Page, consent_id: str) -> dict[str, Any]:
    """The keksi_consent cookie once it holds `consent_id`: only the server's answer puts it there
    (the widget writes no consent id from script in first-party mode; checked below)."""
    def found() -> dict[str, Any] | None:
        for cookie in page.context.cookies():
            if cookie["name"] == "keksi_consent":
                value = json.loads(urllib.parse.unquote(cookie["value"]))
                if value.get("i") == consent_id:
                    return dict(cookie, state=value)
        return None
    return wait_until(found, f"the server's cookie for {consent_id}")


def lifetime_days(cookie: dict[str, Any]) -> float:
    return (cookie["expires"] - time.time()) / DAY


def test_the_server_sets_the_choice_for_its_whole_lifetime_and_the_receipt_reopens_it(
        page: Page, site_origin: tuple[str, Any, HostServer]):
    origin, app, host = site_origin
    for path in ("/", "/products"):
        host.add(path, host_page("/consent/widget/v1/consent.js", site="shop", lang="en"))
    host.add("/favicon.ico", "", "image/x-icon")  # so that every console error is the widget's
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.add_init_script(WATCH_COOKIE_WRITES)

    page.goto(f"{origin}/")
    page.get_by_role("button", name="Reject all").click()
    (refusal,) = wait_rows(app, 1)
    assert refusal["action"] == "reject_all" and refusal["widget_version"]
    cookie = server_cookie(page, refusal["consent_id"])
    assert 182.9 < lifetime_days(cookie) < 183.1, "a refusal stands 183 days, longer than consent_days (30)"
    assert cookie["sameSite"] == "Lax" and cookie["path"] == "/" and not cookie["httpOnly"]
    assert cookie["state"]["c"] == {"preferences": 0, "analytics": 0, "marketing": 0}
    writes = page.evaluate("window.cookieWrites")
    assert writes and not any(refusal["consent_id"] in w for w in writes), "the widget left it to the server"

    page.reload()
    page.wait_for_function("performance.getEntriesByName('keksi:ready').length > 0")
    expect(page.get_by_role("region", name="Cookie consent")).to_have_count(0)
    assert page.evaluate("keksi.get('analytics')") is False

    page.goto(f"{origin}/products#keksi-settings")  # as the receipt links it: the panel opens
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    panel.get_by_role("button", name="Accept all").click()
    consent = wait_rows(app, 2)[1]
    assert consent["action"] == "accept_all" and consent["page"] == "/products"
    assert 29.9 < lifetime_days(server_cookie(page, consent["consent_id"])) < 30.1, "Max-Age is consent_days"

    page.goto(f"{origin}/consent/en/receipt/{consent['consent_id']}")
    assert_accessible(page, "the receipt")
    page.get_by_role("link", name="The banner's text and cookie list as you saw them").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("The banner shown with your choice")
    assert_accessible(page, "the banner shown with the choice")
    page.go_back()
    change = page.get_by_role("link", name=f"Change or withdraw on 127.0.0.1:{origin.rsplit(':', 1)[1]}")
    expect(change).to_have_attribute("href", f"{origin}/products#keksi-settings")
    change.click()
    expect(page).to_have_url(f"{origin}/products#keksi-settings")
    page.get_by_role("dialog").get_by_role("button", name="Reject all").click()
    withdrawal = wait_rows(app, 3)[2]
    assert withdrawal["action"] == "withdraw" and withdrawal["ui_surface"] == "reopened"
    assert lifetime_days(server_cookie(page, withdrawal["consent_id"])) > 182.9
    page.goto(f"{origin}/consent/en/receipt/{withdrawal['consent_id']}")
    expect(page.get_by_text("Valid until")).to_have_count(0)
    assert not errors, errors
    assert len(app.cookies_seen) > 5 and not any(app.cookies_seen), "the site's cookies never reach Keksi"
