"""The consent widget in headless Chromium, embedded cross-origin as marketing will use it.

The consent server (live_server) and the host page (HostServer) listen on two loopback
ports, so every fetch the widget makes is cross-origin. Choices are checked in the
database, polled because the widget posts them asynchronously.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from app import create_app
from keksi import consents
from keksi.store import open_store

from .conftest import (ROOT, SAMPLE_NOTICES, TODAY, LiveServer, add_user, assert_accessible, browser_sign_in,
                       publish_all, raw_sql, write_lock_held, write_version)
from .ledger import DEMO_SITE, add_site
from .widget_host import ConsentFaults, HostServer, host_page

# Every test here fails on a console error (tests.conftest.console_errors).
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("console_errors")]

EN = {"accept": "Accept all", "reject": "Reject all", "choose": "Choose", "save": "Save choices"}
LOG_SCRIPT = "(window.ran = window.ran || []).push({name!r});"


@pytest.fixture(scope="module")
def host() -> Iterator[HostServer]:
    with HostServer() as server:
        yield server


@pytest.fixture(scope="module")
def consent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer, ConsentFaults]]:
    """One consent server for the module; each test has a site of its own on it."""
    folder = tmp_path_factory.mktemp("widget")
    shutil.copytree(SAMPLE_NOTICES, folder / "notices")
    app = create_app({"TESTING": True, "DATABASE": str(folder / "keksi.db"), "SECRET_KEY": "test-secret",
                      "NOTICES_DIR": str(folder / "notices"), "FIXED_TODAY": TODAY, "RATE_LIMIT": 10_000,
                      "STORE_PAGE": True})  # the tests check the page the widget reports
    publish_all(app)
    faults = ConsentFaults(app)
    with LiveServer(faults) as server:
        yield app, server, faults


class Widget:
    """The consent server, the host origin, this test's site and its choices in the database."""

    def __init__(self, app: Any, server: Any, host: HostServer, site: str,
                 faults: ConsentFaults | None = None, definition: dict[str, Any] | None = None):
        self.app, self.server, self.host, self.site, self.faults = app, server, host, site, faults
        add_site(app, definition, id=site, origins=[host.url])
        self.script_url = f"{server.url}/widget/v1/consent.js"
        for name in ("a", "b", "m"):
            host.script(f"/{name}.js", LOG_SCRIPT.format(name=name))
        host.add("/embed.html", "<!doctype html><title>Video</title><p>An embedded video.</p>")

    def page(self, path: str = "/", **options: Any) -> str:
        """Serve a host page at `path`; options go to widget_host.host_page (and `headers`)."""
        headers = options.pop("headers", {})
        return self.host.add(path, host_page(self.script_url, site=self.site, **options), **headers)

    def config(self, lang: str) -> dict[str, Any]:
        return self.app.test_client().get(f"/api/v1/sites/{self.site}/config?lang={lang}").get_json()

    def rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in raw_sql(self.app, "SELECT * FROM consents WHERE site = ? ORDER BY seq",
                                             [self.site])]

    def wait_rows(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """Poll until the database holds `count` choices; fail if it holds more or never gets there."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            if len(rows) >= count or time.monotonic() > deadline:
                assert len(rows) == count, rows
                return rows
            time.sleep(0.02)


_site_numbers = itertools.count(1)


@pytest.fixture
def widget(consent_server, host) -> Widget:
    app, server, faults = consent_server
    faults.reset()
    return Widget(app, server, host, f"site{next(_site_numbers)}", faults)


@pytest.fixture
def own_widget(make_app, host) -> Iterator[Widget]:
    """A consent server of the test's own, for a test that changes the day or the notices."""
    app = make_app()
    faults = ConsentFaults(app)
    with LiveServer(faults) as server:
        yield Widget(app, server, host, "demo", faults)


# -- helpers -----------------------------------------------------------------------------------


def banner(page: Page):
    return page.get_by_role("region", name="Cookie consent")


def dialog(page: Page):
    return page.get_by_role("dialog")


def wait_ready(page: Page) -> None:
    """Wait until the widget has its configuration and has decided whether to ask."""
    page.wait_for_function("performance.getEntriesByName('keksi:ready').length > 0")


def stored_choice(page: Page) -> dict[str, Any] | None:
    cookies = {c["name"]: c for c in page.context.cookies()}
    if "keksi_consent" not in cookies:
        return None
    return json.loads(urllib.parse.unquote(cookies["keksi_consent"]["value"]))


def cookie_names(page: Page) -> set[str]:
    return {pair.split("=")[0] for pair in page.evaluate("document.cookie").split("; ") if pair}


def ran(page: Page) -> list[str]:
    return page.evaluate("window.ran || []")


def wait_until(check: Callable[[], Any], timeout: float = 15) -> Any:
    """Poll `check` until it is true."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


def tagged(*scripts: tuple[str, str]) -> str:
    return "\n".join(f'<script type="text/plain" data-consent="{category}" src="/{name}.js"></script>'
                     for name, category in scripts)


TAGGED = tagged(("a", "analytics"), ("m", "marketing"), ("b", "analytics"))


def focused_text(page: Page) -> str | None:
    """The text (or aria-label) of the focused element, looking into the widget's shadow root."""
    return page.evaluate("""() => {
        let el = document.activeElement;
        while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
        return el && el !== document.body ? (el.textContent || el.getAttribute('aria-label') || el.id) : null;
    }""")


def focus_in(page: Page, selector: str) -> bool:
    """Whether the focused element inside the widget is inside `selector` (in its shadow root)."""
    return page.evaluate("""(selector) => {
        const host = document.querySelector('[data-keksi]');
        const active = host && host.shadowRoot.activeElement;
        return !!(active && active.closest(selector));
    }""", selector)


# -- the must-show list --------------------------------------------------------------------------


def test_nothing_runs_before_a_choice_then_accept_all_runs_scripts_in_order(page: Page, widget: Widget):
    page.goto(widget.page("/pricing", body=TAGGED + '<iframe data-consent="marketing" '
                                                      'data-src="/embed.html" title="Video"></iframe>'))
    expect(banner(page)).to_be_visible()
    wait_ready(page)
    # B1: no cookie, no storage write, no tagged script, no embed before the choice.
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("sessionStorage.length") == 0
    assert ran(page) == []
    assert page.locator("iframe").get_attribute("src") is None
    assert page.evaluate("keksi.get('analytics')") is False and page.evaluate("keksi.get('necessary')") is True
    # B2: Reject all is on the first layer, the same size and weight as Accept all.
    buttons = [banner(page).get_by_role("button", name=name, exact=True) for name in
               (EN["accept"], EN["reject"], EN["choose"])]
    boxes = [b.bounding_box() for b in buttons]
    assert len({(round(b["width"]), round(b["height"])) for b in boxes}) == 1, boxes
    looks = [b.evaluate("e => ['font-weight', 'background-color', 'color', 'border-color', 'font-size']"
                        ".map(p => getComputedStyle(e).getPropertyValue(p)).join()") for b in buttons]
    assert len(set(looks)) == 1, looks
    page.evaluate("document.addEventListener('keksi:change', e => window.changed = e.detail);"
                  "keksi.on('change', d => window.heard = d.action)")

    buttons[0].click()

    rows = widget.wait_rows(1)
    row = rows[0]
    assert row["action"] == "accept_all" and row["ui_surface"] == "banner"
    assert json.loads(row["choices"]) == {"necessary": True, "preferences": True, "analytics": True,
                                          "marketing": True}
    assert row["page"] == "/pricing" and row["lang"] == "en" and row["gpc"] == 0
    assert row["notice_version"] == "2026-04-09"
    assert row["widget_version"] == widget.app.test_client().get(
        "/widget/v1/consent.js").headers["X-Widget-Version"]
    expect(banner(page)).to_have_count(0)
    wait_until(lambda: ran(page) == ["a", "m", "b"])  # in document order, each once
    assert page.locator("iframe").get_attribute("src") == "/embed.html"
    assert page.evaluate("keksi.get('marketing')") is True
    assert page.evaluate("window.changed.action") == "accept_all" and page.evaluate("window.heard") == "accept_all"
    choice = wait_until(lambda: (stored_choice(page) or {}).get("i") and stored_choice(page))
    assert choice["i"] == row["consent_id"] and choice["s"] == row["subject_id"]
    assert choice["c"] == {"preferences": 1, "analytics": 1, "marketing": 1}
    assert choice["v"] == "2026-04-09" and choice["l"] == "en"
    cookie = next(c for c in page.context.cookies() if c["name"] == "keksi_consent")
    assert cookie["sameSite"] == "Lax" and cookie["path"] == "/" and len(cookie["value"]) < 400
    assert cookie["expires"] > time.time() + 360 * 86400
    assert page.evaluate("localStorage.length") == 0, "the queue is gone once acknowledged"

    page.reload()  # the stored choice applies at once, without asking again
    wait_ready(page)
    expect(banner(page)).to_have_count(0)
    wait_until(lambda: ran(page) == ["a", "m", "b"])
    assert widget.rows() == rows


def test_reject_all_runs_nothing_deletes_refused_cookies_and_shows_a_placeholder(page: Page, widget: Widget):
    page.goto(widget.page(body=TAGGED + '<iframe data-consent="marketing" data-src="/embed.html" '
                                        'title="Video"></iframe>'))
    wait_ready(page)
    placeholder = page.get_by_text("This content is blocked until you allow marketing cookies.")
    expect(placeholder).to_be_visible()
    expect(page.locator("iframe")).to_be_hidden()
    # Cookies some tag left behind (say, before the site used Keksi).
    page.evaluate("""for (const c of ['_pk_id.1=x', '_pk_ses.1=y', '_gcl_au=z', 'li_fat_id=w',
                                      'tt_lang=fi', 'tt_session=s', 'unrelated=1'])
                         document.cookie = c + '; path=/'""")

    banner(page).get_by_role("button", name=EN["reject"]).click()

    row = widget.wait_rows(1)[0]
    assert row["action"] == "reject_all" and row["ui_surface"] == "banner"
    assert json.loads(row["choices"]) == {"necessary": True, "preferences": False, "analytics": False,
                                          "marketing": False}
    # B8: the refused categories' cookies are gone, necessary and unlisted ones stay.
    assert cookie_names(page) == {"keksi_consent", "tt_session", "unrelated"}
    assert ran(page) == [] and page.evaluate("keksi.get('analytics')") is False
    expect(placeholder).to_be_visible()
    page.reload()
    wait_ready(page)
    expect(banner(page)).to_have_count(0)
    assert ran(page) == []


def test_custom_choice_in_the_panel_then_the_panel_shows_the_consent_id(page: Page, widget: Widget):
    page.goto(widget.page(body=TAGGED))
    banner(page).get_by_role("button", name=EN["choose"]).click()
    panel = dialog(page)
    expect(panel).to_be_visible()
    # B3, B4: optional categories off, necessary on and locked; purposes and cookies listed.
    necessary = panel.get_by_role("switch", name="Necessary")
    expect(necessary).to_be_checked()
    expect(necessary).to_be_disabled()
    for name in ("Preferences", "Analytics", "Marketing"):
        expect(panel.get_by_role("switch", name=name)).not_to_be_checked()
    expect(panel.get_by_text("Count visits and see how the site is used")).to_be_visible()
    panel.locator("summary").nth(3).click()
    cookie_row = panel.get_by_role("row", name="_gcl_au")
    expect(cookie_row).to_contain_text("Google Ireland Ltd")
    expect(cookie_row).to_contain_text("Measures whether ads lead to sign-ups.")
    expect(cookie_row).to_contain_text("90 days")

    panel.get_by_role("switch", name="Analytics").check()
    panel.get_by_role("button", name=EN["save"]).click()

    row = widget.wait_rows(1)[0]
    assert row["action"] == "custom" and row["ui_surface"] == "panel"
    assert json.loads(row["choices"]) == {"necessary": True, "preferences": False, "analytics": True,
                                          "marketing": False}
    expect(dialog(page)).to_have_count(0)
    expect(banner(page)).to_have_count(0)
    wait_until(lambda: ran(page) == ["a", "b"])
    wait_until(lambda: (stored_choice(page) or {}).get("i"))

    page.locator("#settings").click()
    panel = dialog(page)
    expect(panel.get_by_text(row["consent_id"])).to_be_visible()
    receipt = panel.get_by_role("link", name="View your receipt")
    expect(receipt).to_have_attribute("href", f"{widget.server.url}/en/receipt/{row['consent_id']}")
    customer_page = page.url
    with page.context.expect_page() as opened:  # in a tab of its own: the customer's page stays
        receipt.click()
    opened.value.wait_for_load_state()
    assert row["consent_id"] in opened.value.content()
    opened.value.close()
    assert page.url == customer_page
    expect(panel.get_by_role("switch", name="Analytics")).to_be_checked()
    expect(panel.get_by_role("switch", name="Marketing")).not_to_be_checked()


def test_refused_cookies_are_deleted_on_every_path_and_again_on_later_page_loads(page: Page, widget: Widget):
    url = widget.page("/shop/cart/index.html")
    page.goto(url)
    wait_ready(page)
    page.evaluate("""for (const [c, path] of [['_pk_id.1=a', '/shop'], ['_pk_ses.1=b', '/shop/'],
                                              ['_gcl_au=c', '/shop/cart'], ['li_fat_id=d', '/'],
                                              ['unrelated=1', '/shop']])
                         document.cookie = c + '; path=' + path""")
    banner(page).get_by_role("button", name=EN["reject"]).click()
    widget.wait_rows(1)
    assert cookie_names(page) == {"keksi_consent", "unrelated"}
    # A tag (or the server) sets a refused cookie again: the next page load deletes it.
    page.evaluate("document.cookie = '_gcl_au=again; path=/'")
    page.reload()
    wait_ready(page)
    assert cookie_names(page) == {"keksi_consent", "unrelated"}


def save_site(widget: Widget, change: Callable[[dict[str, Any]], None]) -> None:
    """Replace the test's site with the demo site changed by `change` (as `flask sites edit` does)."""
    site = json.loads(json.dumps(DEMO_SITE))
    site.update(id=widget.site, origins=[widget.host.url])
    change(site)
    store = open_store(widget.app.config["DATABASE"])
    try:
        store.save_site(site, "tests", create=False)
    finally:
        store.close()


def test_a_refusal_never_deletes_what_a_granted_category_also_lists_nor_the_choice_itself(
        page: Page, widget: Widget):
    """Marketing lists broad prefixes that overlap necessary cookies and our own."""
    def broad(site: dict[str, Any]) -> None:
        site["categories"][3]["services"][0]["cookies"].extend([
            dict(site["categories"][3]["services"][0]["cookies"][0], name=name) for name in ("tt_*", "keksi*")])

    save_site(widget, broad)
    page.goto(widget.page())
    wait_ready(page)
    page.evaluate("for (const c of ['tt_session=s', 'tt_promo=p', '_gcl_au=z']) document.cookie = c + '; path=/'")
    banner(page).get_by_role("button", name=EN["reject"]).click()
    widget.wait_rows(1)
    # tt_session is necessary, keksi_consent is the choice; tt_promo only marketing lists.
    assert cookie_names(page) == {"keksi_consent", "tt_session"}
    page.reload()
    wait_ready(page)
    expect(banner(page)).to_have_count(0)
    assert cookie_names(page) == {"keksi_consent", "tt_session"}


def test_withdraw_from_the_footer_link_deletes_cookies_and_is_recorded(page: Page, widget: Widget):
    page.goto(widget.page(body=TAGGED))
    banner(page).get_by_role("button", name=EN["accept"]).click()
    first = widget.wait_rows(1)[0]
    wait_until(lambda: (stored_choice(page) or {}).get("i"))
    page.evaluate("for (const c of ['_pk_id.1=x', '_pk_ses.1=y', '_gcl_au=z', 'tt_theme=dark', 'tt_csrf=t'])"
                  "  document.cookie = c + '; path=/'")

    page.locator("#settings").click()  # an <a href> with data-consent-open: the page stays
    panel = dialog(page)
    expect(panel).to_be_visible()
    assert page.url.endswith("/")
    for name in ("Preferences", "Analytics", "Marketing"):
        switch = panel.get_by_role("switch", name=name)
        expect(switch).to_be_checked()
        switch.uncheck()
    panel.get_by_role("button", name=EN["save"]).click()

    rows = widget.wait_rows(2)
    assert rows[1]["action"] == "withdraw" and rows[1]["ui_surface"] == "reopened"
    assert rows[1]["subject_id"] == first["subject_id"]
    assert json.loads(rows[1]["choices"]) == {"necessary": True, "preferences": False, "analytics": False,
                                              "marketing": False}
    assert cookie_names(page) == {"keksi_consent", "tt_csrf"}
    assert page.evaluate("keksi.get('analytics')") is False
    expect(dialog(page)).to_have_count(0)
    wait_until(lambda: focused_text(page) == "Cookie settings")  # focus is back on the link

    # Withdrawing is as easy as giving: "Reject all" in the reopened panel after a new consent.
    page.evaluate("keksi.open()")
    dialog(page).get_by_role("button", name=EN["accept"]).click()
    widget.wait_rows(3)
    page.evaluate("keksi.open()")
    dialog(page).get_by_role("button", name=EN["reject"]).click()
    rows = widget.wait_rows(4)
    assert [r["action"] for r in rows] == ["accept_all", "withdraw", "accept_all", "withdraw"]
    assert len({r["subject_id"] for r in rows}) == 1


def test_iframe_placeholder_allow_button_grants_its_category(page: Page, widget: Widget):
    page.goto(widget.page(body='<iframe data-consent="marketing" data-src="/embed.html" title="Video">'
                               '</iframe>'))
    wait_ready(page)
    page.get_by_role("button", name="Allow marketing cookies").click()
    row = widget.wait_rows(1)[0]
    assert row["action"] == "custom" and row["ui_surface"] == "banner"
    assert json.loads(row["choices"]) == {"necessary": True, "preferences": False, "analytics": False,
                                          "marketing": True}
    expect(page.locator("iframe")).to_have_attribute("src", "/embed.html")
    expect(page.locator("iframe")).to_be_visible()
    expect(page.get_by_role("button", name="Allow marketing cookies")).to_have_count(0)


def test_a_choice_made_while_the_server_is_down_is_kept_and_sent_later_once(page: Page, widget: Widget,
                                                                           console_errors):
    console_errors.allow(r"blocked by CORS policy", r"net::ERR_FAILED")  # the server made unreachable
    widget.faults.always = "unreachable"
    page.goto(widget.page(body=TAGGED))
    banner(page).get_by_role("button", name=EN["accept"]).click()
    # The choice applies on the page at once and waits in the queue.
    wait_until(lambda: ran(page) == ["a", "m", "b"])
    queued = wait_until(lambda: json.loads(page.evaluate("localStorage.getItem('keksi_queue')") or "[]"))
    assert [q["action"] for q in queued] == ["accept_all"]
    assert stored_choice(page)["c"]["analytics"] == 1 and stored_choice(page)["i"] is None
    page.locator("#settings").click()
    expect(dialog(page).get_by_text("will be saved when the connection returns")).to_be_visible()
    page.keyboard.press("Escape")
    assert widget.rows() == [] and widget.faults.served

    widget.faults.always = None
    page.reload()  # a later page load, with the server back: the queue is sent
    rows = widget.wait_rows(1)
    assert rows[0]["event_id"] == queued[0]["event_id"] and rows[0]["action"] == "accept_all"
    wait_until(lambda: stored_choice(page)["i"] == rows[0]["consent_id"])
    assert page.evaluate("localStorage.getItem('keksi_queue')") is None
    expect(banner(page)).to_have_count(0)

    # The server records a choice but its answer is lost: the retry must not record it twice.
    widget.faults.plan = ["lost"]
    page.evaluate("keksi.open()")
    dialog(page).get_by_role("button", name=EN["reject"]).click()
    rows = widget.wait_rows(2)
    wait_until(lambda: page.evaluate("localStorage.getItem('keksi_queue')"))
    page.reload()
    wait_until(lambda: page.evaluate("localStorage.getItem('keksi_queue')") is None)
    time.sleep(0.2)
    assert widget.faults.served[-1] == "lost" and set(widget.faults.served[:-1]) == {"unreachable"}
    assert len(widget.rows()) == 2 and rows[1]["action"] == "withdraw"
    assert rows[1]["subject_id"] == rows[0]["subject_id"]
    assert stored_choice(page)["i"] == rows[1]["consent_id"]


def test_choices_queued_after_an_erasure_share_the_new_subject(page: Page, widget: Widget, console_errors):
    """The visitor's subject was erased; two choices wait offline, each carrying the old one."""
    console_errors.allow(r"blocked by CORS policy", r"net::ERR_FAILED")  # the server made unreachable
    page.goto(widget.page(body=TAGGED))
    banner(page).get_by_role("button", name=EN["accept"]).click()
    first = widget.wait_rows(1)[0]
    wait_until(lambda: (stored_choice(page) or {}).get("i"))
    store = open_store(widget.app.config["DATABASE"])
    try:
        assert consents.erase(store, first["subject_id"], "tests", timezone.utc) == 1
    finally:
        store.close()
    widget.faults.always = "unreachable"
    for button in (EN["reject"], EN["accept"]):
        page.evaluate("keksi.open()")
        dialog(page).get_by_role("button", name=button).click()
    wait_until(lambda: len(json.loads(page.evaluate("localStorage.getItem('keksi_queue')") or "[]")) == 2)
    widget.faults.always = None
    page.reload()
    rows = widget.wait_rows(2)
    assert [row["action"] for row in rows] == ["withdraw", "accept_all"]
    assert rows[0]["subject_id"] == rows[1]["subject_id"] != first["subject_id"]
    wait_until(lambda: stored_choice(page)["s"] == rows[1]["subject_id"])


def test_server_errors_are_retried_and_refusals_are_dropped(page: Page, widget: Widget, console_errors):
    console_errors.allow(r"status of (503|429|400)", r"refused a choice \(HTTP 400\)")
    widget.faults.plan = [503, 429, 400]
    served = widget.faults.served
    page.goto(widget.page())
    banner(page).get_by_role("button", name=EN["reject"]).click()
    queue = "JSON.parse(localStorage.getItem('keksi_queue') || '[]').length"
    wait_until(lambda: served == [503])
    assert page.evaluate(queue) == 1  # 503: kept, and tried again on this page (after 1 s: no Retry-After)
    wait_until(lambda: served == [503, 429])
    assert page.evaluate(queue) == 1  # 429: kept, and tried again (after 2 s)
    wait_until(lambda: page.evaluate(queue) == 0)  # 400: never going to succeed, dropped
    assert served == [503, 429, 400] and widget.rows() == []
    # The refusal is a bug to fix, said in the console (and failing any test that does not expect it).
    refused = [e for e in console_errors.seen if e.startswith("keksi:")]
    assert len(refused) == 1 and refused[0].startswith("keksi: the server refused a choice (HTTP 400): "
                                                        "no reason given"), refused


def test_strict_csp_host_page_still_renders_styled_and_works(page: Page, widget: Widget):
    app_origin = widget.server.url
    csp = (f"default-src 'self'; script-src 'self' {app_origin}; connect-src {app_origin}; "
           "style-src 'self'")
    page.add_init_script("window.violations = []; document.addEventListener('securitypolicyviolation',"
                         " e => violations.push(e.violatedDirective + ' ' + e.blockedURI))")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(widget.page(body=TAGGED, headers={"Content-Security-Policy": csp}))
    region = banner(page)
    expect(region).to_be_visible()
    accept = region.get_by_role("button", name=EN["accept"])
    assert accept.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(11, 61, 145)"
    assert region.evaluate("e => getComputedStyle(e).position") == "fixed"
    region.get_by_role("button", name=EN["choose"]).click()
    expect(dialog(page)).to_be_visible()
    dialog(page).get_by_role("switch", name="Analytics").check()
    dialog(page).get_by_role("button", name=EN["save"]).click()
    row = widget.wait_rows(1)[0]
    assert row["action"] == "custom"
    wait_until(lambda: ran(page) == ["a", "b"])
    assert page.evaluate("violations") == []
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_host_page_css_cannot_hide_or_restyle_the_banner(page: Page, widget: Widget):
    hostile = ("<style>* { color: red !important; background: yellow !important; font-size: 40px !important; }"
               " div, button, [role=region] { display: none !important; }</style>")
    page.goto(widget.page(head=hostile))
    region = banner(page)
    expect(region).to_be_visible()
    accept = region.get_by_role("button", name=EN["accept"])
    expect(accept).to_be_visible()
    assert accept.evaluate("e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]") == [
        "rgb(255, 255, 255)", "rgb(11, 61, 145)"]
    accept.click()
    assert widget.wait_rows(1)[0]["action"] == "accept_all"


def test_cookie_domain_and_parent_domain_cookies_on_a_named_host(browser_type, browser_type_launch_args,
                                                                  widget: Widget):
    """A host page on www.keksi.test (mapped to loopback): the choice is kept on the cookie domain,
    refused cookies go from the host and its parent domain, and a non-secure page (no
    crypto.randomUUID) still makes valid event ids."""
    port = widget.host.url.rsplit(":", 1)[1]
    origin = f"http://www.keksi.test:{port}"
    site = json.loads(json.dumps(DEMO_SITE))
    site.update(id=widget.site, origins=[widget.host.url, origin], cookie_domain="keksi.test")
    store = open_store(widget.app.config["DATABASE"])
    try:
        store.save_site(site, "tests", create=False)
    finally:
        store.close()
    widget.page("/named")
    args = browser_type_launch_args["args"] + ["--host-resolver-rules=MAP *.keksi.test 127.0.0.1"]
    browser = browser_type.launch(**{**browser_type_launch_args, "args": args})
    try:
        page = browser.new_page()
        page.goto(f"{origin}/named")
        expect(banner(page)).to_be_visible()
        assert page.evaluate("typeof crypto.randomUUID") == "undefined"
        page.evaluate("document.cookie = '_gcl_au=1; path=/; domain=keksi.test';"
                      "document.cookie = '_pk_id.9=1; path=/'; document.cookie = 'li_fat_id=1; path=/; domain=www.keksi.test'")
        assert len(page.context.cookies()) == 3
        banner(page).get_by_role("button", name=EN["reject"]).click()
        row = widget.wait_rows(1)[0]
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", row["event_id"])
        wait_until(lambda: (stored_choice(page) or {}).get("i"))  # acknowledged, its id in the cookie
        assert [(c["name"], c["domain"]) for c in page.context.cookies()] == [("keksi_consent", ".keksi.test")]
    finally:
        browser.close()


def test_consent_mode_default_before_the_google_tag_and_updates(page: Page, widget: Widget):
    widget.host.script("/gtag-init.js", "window.dataLayer = window.dataLayer || [];"
                                        "function gtag(){dataLayer.push(arguments);}")
    widget.host.script("/gtag-config.js", "gtag('js', new Date()); gtag('config', 'G-TEST');")
    # The documented order: Google's dataLayer/gtag snippet, our tag (not async), then the Google tag.
    head = '<script src="/gtag-init.js"></script>'
    url = widget.page(head=head, tag_in_head=True, tag_attrs="",
                      body='<script src="/gtag-config.js"></script>')
    page.goto(url)
    layer = "dataLayer.map(e => Object.prototype.toString.call(e) === '[object Arguments]' ? Array.from(e) : e)"
    entries = page.evaluate(layer)
    denied = {"ad_storage": "denied", "ad_user_data": "denied", "ad_personalization": "denied",
              "analytics_storage": "denied", "functionality_storage": "denied",
              "personalization_storage": "denied", "security_storage": "granted"}
    assert entries[0] == ["consent", "default", {**denied, "wait_for_update": 500}]
    assert [e[0] for e in entries[1:]] == ["js", "config"]

    banner(page).get_by_role("button", name=EN["choose"]).click()
    dialog(page).get_by_role("switch", name="Analytics").check()
    dialog(page).get_by_role("switch", name="Marketing").check()
    dialog(page).get_by_role("button", name=EN["save"]).click()
    granted = {**denied, "analytics_storage": "granted", "ad_storage": "granted", "ad_user_data": "granted",
               "ad_personalization": "granted"}
    assert page.evaluate(layer)[-1] == ["consent", "update", granted]
    widget.wait_rows(1)

    page.reload()  # a stored choice: default, then its update, both before the Google tag
    entries = page.evaluate(layer)
    assert entries[:2] == [["consent", "default", {**denied, "wait_for_update": 500}],
                           ["consent", "update", granted]]
    assert [e[0] for e in entries[2:]] == ["js", "config"]


def test_consent_mode_defaults_wait_in_the_data_layer_for_a_google_tag_that_comes_later(
        page: Page, widget: Widget):
    """Our tag first on the page (as the embed page says), Google's usual snippet after it."""
    widget.host.script("/gtag-after.js", "window.dataLayer = window.dataLayer || [];"
                                         "function gtag(){dataLayer.push(arguments);}"
                                         "gtag('js', new Date()); gtag('config', 'G-TEST');")
    page.goto(widget.page(tag_in_head=True, tag_attrs="", body='<script src="/gtag-after.js"></script>'))
    first = page.evaluate("Array.from(dataLayer[0])")
    assert first[:2] == ["consent", "default"] and first[2]["ad_storage"] == "denied"
    assert page.evaluate("dataLayer.slice(1).map(e => e[0])") == ["js", "config"]


def test_consent_mode_with_only_a_data_layer(page: Page, widget: Widget):
    widget.host.script("/gtm.js", "window.dataLayer = [];")
    page.goto(widget.page(head='<script src="/gtm.js"></script>', tag_in_head=True, tag_attrs=""))
    assert page.evaluate("Object.prototype.toString.call(dataLayer[0])") == "[object Arguments]"
    assert page.evaluate("Array.from(dataLayer[0]).slice(0, 2)") == ["consent", "default"]
    banner(page).get_by_role("button", name=EN["reject"]).click()
    last = page.evaluate("Array.from(dataLayer[dataLayer.length - 1])")
    assert last[:2] == ["consent", "update"] and last[2]["ad_storage"] == "denied"


def test_global_privacy_control_is_honoured_and_recorded(page: Page, widget: Widget):
    page.add_init_script("Object.defineProperty(navigator, 'globalPrivacyControl', {get: () => true})")
    page.goto(widget.page(body=TAGGED))
    gpc_text = "Your browser sent a Global Privacy Control signal, so marketing cookies are off."
    expect(banner(page).get_by_text(gpc_text)).to_be_visible()
    banner(page).get_by_role("button", name=EN["choose"]).click()
    panel = dialog(page)
    expect(panel.get_by_role("switch", name="Marketing")).not_to_be_checked()
    panel.get_by_role("switch", name="Analytics").check()
    panel.get_by_role("button", name=EN["save"]).click()
    row = widget.wait_rows(1)[0]
    assert row["gpc"] == 1 and row["action"] == "custom"
    assert json.loads(row["choices"])["marketing"] is False
    wait_until(lambda: ran(page) == ["a", "b"])
    assert page.evaluate("keksi.get('marketing')") is False


def test_asked_again_after_a_material_notice_version_not_after_a_wording_fix(
        browser: Browser, own_widget: Widget, notices_dir):
    widget = own_widget
    url = widget.page(body=TAGGED)
    context, page = first_choice(browser, widget, url)
    state = context.storage_state()
    context.close()
    context, page = first_choice(browser, widget, url, "reject", rows=2)  # a second visitor refuses everything
    refused = context.storage_state()
    context.close()

    write_version(notices_dir, "privacy", "2026-11-25", material=False)
    write_version(notices_dir, "privacy", "2026-12-01", material=True)
    publish_all(widget.app)

    widget.app.config["FIXED_TODAY"] = "2026-11-30"  # the wording fix is in effect: nobody is asked
    context, page = visit(browser, url, state)
    expect(banner(page)).to_have_count(0)
    wait_until(lambda: ran(page) == ["a", "m", "b"])
    context.close()

    widget.app.config["FIXED_TODAY"] = "2026-12-01"  # the material version takes effect: ask again
    context, page = visit(browser, url, refused)  # ... those who consented to something, not those who refused all
    expect(banner(page)).to_have_count(0)
    context.close()
    context, page = visit(browser, url, state)
    region = banner(page)
    expect(region).to_be_visible()
    expect(region.get_by_text("Our privacy notice has changed since you last chose.")).to_be_visible()
    expect(region.get_by_text("Changed things. (en)")).to_be_visible()  # the version's own summary
    diff = region.get_by_role("link", name="See what changed")
    expect(diff).to_have_attribute("href", f"{widget.server.url}/en/privacy/diff/2026-04-09/2026-12-01")
    with context.expect_page() as opened:  # in a new tab: the visitor stays on the page
        diff.click()
    opened.value.wait_for_load_state()
    assert "/en/privacy/diff/2026-04-09/2026-12-01" in opened.value.url and page.url == url
    opened.value.close()
    region.get_by_role("button", name=EN["reject"]).click()
    rows = widget.wait_rows(3)
    assert rows[2]["notice_version"] == "2026-12-01" and rows[2]["action"] == "withdraw"
    assert rows[2]["subject_id"] == rows[0]["subject_id"]
    context.close()


def visit(browser: Browser, url: str, state: Any = None) -> tuple[Any, Page]:
    """A visitor's browser at `url`, with the cookies and storage `state` of an earlier visit, once
    the widget has decided whether to ask. A new context each time: the configuration response is
    cached for 5 minutes."""
    context = browser.new_context(storage_state=state)
    page = context.new_page()
    page.goto(url)
    wait_ready(page)
    return context, page


def first_choice(browser: Browser, widget: Widget, url: str, button: str = "accept",
                 rows: int = 1) -> tuple[Any, Page]:
    """A new visitor clicks `button` in the banner at `url` (the ledger then holds `rows` records);
    returns once the server has acknowledged the choice."""
    context, page = visit(browser, url)
    banner(page).get_by_role("button", name=EN[button]).click()
    widget.wait_rows(rows)
    wait_until(lambda: (stored_choice(page) or {}).get("i"))
    return context, page


def test_asked_again_after_a_material_cookie_notice_version(browser: Browser, own_widget: Widget,
                                                             notices_dir):
    widget = own_widget
    url = widget.page()
    context, page = first_choice(browser, widget, url)
    assert stored_choice(page)["w"] == "2025-09-15"
    state = context.storage_state()
    context.close()

    write_version(notices_dir, "cookies", "2026-12-01", material=True)
    publish_all(widget.app)
    widget.app.config["FIXED_TODAY"] = "2026-12-01"
    context, page = visit(browser, url, state)
    region = banner(page)
    expect(region.get_by_text("Our cookie notice has changed since you last chose.")).to_be_visible()
    diff = region.get_by_role("link", name="See what changed")
    expect(diff).to_have_attribute("href", f"{widget.server.url}/en/cookies/diff/2025-09-15/2026-12-01")
    region.get_by_role("button", name=EN["accept"]).click()
    rows = widget.wait_rows(2)
    assert [row["cookie_notice_version"] for row in rows] == ["2025-09-15", "2026-12-01"]
    wait_until(lambda: stored_choice(page)["w"] == "2026-12-01")
    context.close()


def test_a_choice_stored_by_an_older_widget_is_asked_again_when_it_cannot_show_what_it_covered(
        browser: Browser, own_widget: Widget, notices_dir):
    """Cookies written before the `w` (cookie notice version) and `k` (choice hash) fields."""
    widget = own_widget
    url = widget.page()
    context, page = first_choice(browser, widget, url)
    current = stored_choice(page)
    context.close()
    made_on_the_22nd = int(datetime(2026, 11, 22, 12, tzinfo=timezone.utc).timestamp())

    def come_back(*without: str, made: int = made_on_the_22nd) -> tuple[Any, Page]:
        """The visitor returns with the stored choice lacking the fields `without`, made at `made`."""
        choice = {k: v for k, v in current.items() if k not in without}
        choice["t"] = made
        context = browser.new_context()
        context.add_cookies([{"name": "keksi_consent", "value": urllib.parse.quote(json.dumps(choice)),
                              "url": widget.host.url}])
        visitor = context.new_page()
        visitor.goto(url)
        wait_ready(visitor)
        return context, visitor

    for missing, asked in (((), False), (("w",), False), (("k",), True)):
        visit_, visitor = come_back(*missing)
        expect(banner(visitor)).to_have_count(1 if asked else 0)
        visit_.close()

    # A material cookie notice version after the choice's date: asked, without a diff link,
    # since the version the visitor saw is not known.
    write_version(notices_dir, "cookies", "2026-12-01", material=True)
    publish_all(widget.app)
    widget.app.config["FIXED_TODAY"] = "2026-12-01"
    visit_, visitor = come_back("w")
    region = banner(visitor)
    expect(region.get_by_text("Our cookie notice has changed since you last chose.")).to_be_visible()
    expect(region.get_by_role("link", name="See what changed")).to_have_count(0)
    visit_.close()
    visit_, visitor = come_back()  # the version it saw is known: asked, with the diff
    expect(banner(visitor).get_by_role("link", name="See what changed")).to_have_count(1)
    visit_.close()
    # Chosen at 01:30 on 1 December in Helsinki (23:30 UTC the day before): the new version was
    # already in effect where versions take effect, so that choice covered it.
    just_after = int(datetime(2026, 11, 30, 23, 30, tzinfo=timezone.utc).timestamp())
    visit_, visitor = come_back("w", made=just_after)
    expect(banner(visitor)).to_have_count(0)
    visit_.close()


def test_a_change_in_another_language_than_the_one_chosen_in_still_asks_again(
        browser: Browser, widget: Widget):
    """A visitor chose in English and now reads the site in Finnish: a changed cookie purpose (here
    only its Finnish text) is still a new question; with nothing changed they are not asked."""
    context, page = first_choice(browser, widget, widget.page("/en.html", lang="en"), "reject")
    state = context.storage_state()
    context.close()

    in_finnish = widget.page("/fi.html", lang="fi")
    context, finnish = visit(browser, in_finnish, state)
    expect(banner(finnish)).to_have_count(0)
    context.close()

    def finnish_purpose(site: dict[str, Any]) -> None:
        cookie = site["categories"][2]["services"][0]["cookies"][0]
        cookie["purpose"] = {"fi": "Uusi tarkoitus.", "sv": "Nytt syfte.", "en": cookie["purpose"]["en"]}

    save_site(widget, finnish_purpose)
    context, finnish = visit(browser, in_finnish, state)
    expect(finnish.get_by_role("region")).to_be_visible()
    context.close()


def test_asked_again_when_the_banner_changes_or_the_choice_expired(browser: Browser, widget: Widget):
    url = widget.page()
    context, page = first_choice(browser, widget, url, "reject")
    state = context.storage_state()
    context.close()
    context, page = visit(browser, url, state)
    expect(banner(page)).to_have_count(0)
    context.close()

    # `flask sites edit`: a new purpose text is a new banner, so the visitor is asked again.
    save_site(widget, lambda site: site["categories"][2].update(
        purpose={"fi": "Uusi tarkoitus.", "sv": "Nytt syfte.", "en": "A new purpose."}))
    context, page = visit(browser, url, state)
    expect(banner(page)).to_be_visible()
    expect(banner(page)).to_contain_text("Cookies on this site")
    banner(page).get_by_role("button", name=EN["reject"]).click()
    second = widget.wait_rows(2)[1]

    # A choice whose expiry has passed (the cookie outlived it) asks again. (Wait for the
    # acknowledgement first: it rewrites the cookie.)
    acknowledged = wait_until(lambda: (stored_choice(page) or {}).get("i") == second["consent_id"])
    assert acknowledged
    expired = dict(stored_choice(page), x=int(time.time()) - 1)
    context.add_cookies([{"name": "keksi_consent", "value": urllib.parse.quote(json.dumps(expired)),
                          "url": widget.host.url}])
    page.reload()
    expect(banner(page)).to_be_visible()
    context.close()


def test_language_from_data_lang_then_html_lang_then_the_site_default(page: Page, widget: Widget):
    region = page.locator("[data-keksi]").locator("[role=region]")
    cases = [("/sv", "en", 'async data-lang="sv"', "sv"),  # data-lang wins over <html lang>
             ("/sv-fi", "en", 'async data-lang="SV-FI"', "sv"),  # ... in any case, its primary subtag
             ("/en", "en-GB", "async", "en"),  # <html lang>, its primary subtag
             ("/de", "de", "async", "fi"),  # a language the server does not serve: the site's default
             ("/none", "", "async", "fi")]  # no language on the page at all
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    for path, html_lang, attrs, expected in cases:
        texts = widget.config(expected)["texts"]
        requests.clear()
        page.goto(widget.page(path, lang=html_lang, tag_attrs=attrs))
        expect(region).to_have_attribute("lang", expected)
        expect(region).to_have_attribute("aria-label", texts["region"])
        expect(region.get_by_role("link").first).to_have_attribute("href", re.compile(f"/{expected}/privacy/"))
        # A first visit costs the script and one configuration request, whatever the language.
        to_keksi = [url for url in requests if url.startswith(widget.server.url)]
        assert len(to_keksi) == 2 and to_keksi[0] == widget.script_url, to_keksi
        assert "/config" in to_keksi[1], to_keksi


def test_keyboard_only(page: Page, widget: Widget):
    page.goto(widget.page())
    expect(banner(page)).to_be_visible()
    # B10: focus moves into the banner when it appears, and it is first in the tab order, before
    # the host page's own first link.
    wait_until(lambda: focus_in(page, "[role=region]"))
    page.keyboard.press("Tab")
    assert focus_in(page, "[role=region]"), focused_text(page)
    for _ in range(6):
        if focused_text(page) == EN["reject"]:
            break
        page.keyboard.press("Tab")
        assert focus_in(page, "[role=region]")
    assert focused_text(page) == EN["reject"]
    ring = page.evaluate("""() => {
        const el = document.querySelector('[data-keksi]').shadowRoot.activeElement;
        const style = getComputedStyle(el);
        return [el.matches(':focus-visible'), style.outlineStyle, style.outlineWidth];
    }""")
    assert ring == [True, "solid", "3px"], "focus is visible"
    page.keyboard.press("Enter")
    row = widget.wait_rows(1)[0]
    assert row["action"] == "reject_all"
    expect(banner(page)).to_have_count(0)
    page.keyboard.press("Tab")  # focus goes on from where the banner was, into the page
    assert focused_text(page) == "Home"

    page.focus("#settings")
    page.keyboard.press("Enter")
    expect(dialog(page)).to_be_visible()
    assert focus_in(page, "dialog")
    seen = set()
    for _ in range(12):  # past the last control, Tab wraps to the first: focus never leaves the dialog
        page.keyboard.press("Tab")
        assert focus_in(page, "dialog"), focused_text(page)
        seen.add(focused_text(page))
    assert {"Close", EN["save"], EN["accept"], EN["reject"]} <= seen
    page.keyboard.press("Shift+Tab")
    assert focus_in(page, "dialog")
    # Space switches a category; Escape closes and returns focus to the link that opened it.
    page.keyboard.press("Escape")
    expect(dialog(page)).to_have_count(0)
    assert focused_text(page) == "Cookie settings"
    page.keyboard.press("Enter")
    analytics = dialog(page).get_by_role("switch", name="Analytics")
    analytics.focus()
    page.keyboard.press("Space")
    expect(analytics).to_be_checked()
    for _ in range(12):
        page.keyboard.press("Tab")
        if focused_text(page) == EN["save"]:
            break
    page.keyboard.press("Enter")
    rows = widget.wait_rows(2)
    assert rows[1]["action"] == "custom" and json.loads(rows[1]["choices"])["analytics"] is True
    wait_until(lambda: focused_text(page) == "Cookie settings")


def test_the_banner_does_not_take_focus_from_a_field_the_visitor_is_in(page: Page, widget: Widget):
    page.goto(widget.page(body='<label>Search <input id="q" autofocus></label>'))
    expect(banner(page)).to_be_visible()
    wait_ready(page)
    assert page.evaluate("document.activeElement.id") == "q"
    assert not focus_in(page, "[role=region]")


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_axe_clean_in_each_language_also_320_pixels_wide(page: Page, widget: Widget, lang: str):
    texts = widget.config(lang)["texts"]
    page.goto(widget.page(f"/{lang}", lang=lang, body='<iframe data-consent="marketing" '
                                                      'data-src="/embed.html" title="Video"></iframe>'))
    region = page.get_by_role("region", name=texts["region"])
    expect(region).to_be_visible()
    expect(region.get_by_role("button", name=texts["reject_all"])).to_be_visible()
    expect(region).to_have_attribute("lang", lang)
    assert_accessible(page, f"{lang} first layer")

    region.get_by_role("button", name=texts["choose"]).click()
    for summary in dialog(page).locator("summary").all():
        summary.click()
    assert_accessible(page, f"{lang} panel")

    # 320 CSS pixels wide, as a 1280-pixel screen at 400 % zoom: no sideways scrolling, buttons stacked.
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 320, "height": 640})
    widths = region.evaluate("e => [e.scrollWidth, e.clientWidth, document.documentElement.scrollWidth]")
    assert widths[0] <= widths[1] and widths[2] <= 320, widths
    tops = [b.bounding_box()["y"] for b in region.get_by_role("button").all()]
    assert len(set(tops)) == 3, "the three buttons stack"
    assert_accessible(page, f"{lang} first layer at 320 px")
    page.set_viewport_size({"width": 320, "height": 180})  # the banner scrolls within the screen
    box = region.bounding_box()
    assert box["y"] >= 0 and box["height"] <= 180
    region.get_by_role("button", name=texts["choose"]).click()
    panel = dialog(page)
    sizes = panel.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert sizes[0] <= sizes[1], sizes
    assert_accessible(page, f"{lang} panel at 320 px")
    # Every control is at least 24 by 24 pixels.
    for control in panel.locator("button, input, summary").all():
        size = control.bounding_box()
        assert size["width"] >= 24 and size["height"] >= 24, (control.evaluate("e => e.outerHTML"), size)


def test_banner_texts_are_translated(widget: Widget):
    """B7: fi and sv banners differ from English in every text (fails until the catalogs translate them)."""
    texts = {lang: widget.config(lang)["texts"] for lang in ("fi", "sv", "en")}
    for lang in ("fi", "sv"):
        same = sorted(key for key, text in texts[lang].items() if text == texts["en"][key])
        assert not same, f"{lang} still shows these banner texts in English: {', '.join(same)}"


@pytest.mark.sqlite_only
def test_a_database_locked_past_the_timeout_delays_the_choice_but_loses_nothing(page: Page, make_app, host,
                                                                               console_errors):
    console_errors.allow(r"status of 503")
    app = make_app(BUSY_TIMEOUT_MS=100)
    faults = ConsentFaults(app)
    with LiveServer(faults) as server:
        widget = Widget(app, server, host, "demo", faults)
        page.goto(widget.page(body=TAGGED))
        wait_ready(page)
        with write_lock_held(app):  # held longer than the server's busy timeout
            banner(page).get_by_role("button", name=EN["accept"]).click()
            queued = wait_until(lambda: json.loads(page.evaluate("localStorage.getItem('keksi_queue')") or "[]"))
            assert [q["action"] for q in queued] == ["accept_all"]
            wait_until(lambda: faults.answered == [503])  # the lock outlasted the busy timeout
        assert widget.rows() == []
        page.reload()  # a later page load: the queued choice is delivered
        rows = widget.wait_rows(1)
        assert rows[0]["event_id"] == queued[0]["event_id"]
        wait_until(lambda: page.evaluate("localStorage.getItem('keksi_queue')") is None)
        assert len(widget.rows()) == 1


# -- every path that changes a choice ends in one ledger row (issue 11.1) ---------------------------

OFF = {"necessary": True, "preferences": False, "analytics": False, "marketing": False}
ON = {"necessary": True, "preferences": True, "analytics": True, "marketing": True}
FRAME = '<iframe data-consent="marketing" data-src="/embed.html" title="Video"></iframe>'


def settled(page: Page, widget: Widget, expected: list[tuple[str, str, dict[str, bool]]]) -> list[dict[str, Any]]:
    """The ledger holds exactly `expected` (action, surface, choices), each answered 201, and nothing waits."""
    rows = widget.wait_rows(len(expected))
    wait_until(lambda: page.evaluate("localStorage.getItem('keksi_queue')") is None)
    rows = widget.rows()
    assert [(r["action"], r["ui_surface"], json.loads(r["choices"])) for r in rows] == expected
    assert widget.faults.answered == [201] * len(expected)
    assert len({r["subject_id"] for r in rows}) == 1
    return rows


def reopen(page: Page, how: str) -> Any:
    if how == "link":
        page.locator("#settings").click()
    else:
        page.evaluate("keksi.open()")
    panel = dialog(page)
    expect(panel).to_be_visible()
    return panel


def banner_then(button: str) -> Callable[[Page], None]:
    return lambda page: banner(page).get_by_role("button", name=EN[button]).click()


def panel_save(page: Page) -> None:
    banner(page).get_by_role("button", name=EN["choose"]).click()
    dialog(page).get_by_role("switch", name="Analytics").check()
    dialog(page).get_by_role("button", name=EN["save"]).click()


def placeholder_first(page: Page) -> None:
    page.get_by_role("button", name="Allow marketing cookies").click()


def placeholder_after_reject(page: Page) -> None:
    """The walkthrough's bug: the stored choice holds 0 and 1, once posted as they were (400)."""
    banner(page).get_by_role("button", name=EN["reject"]).click()
    wait_until(lambda: (stored_choice(page) or {}).get("i"))
    page.get_by_role("button", name="Allow marketing cookies").click()
    expect(page.locator("iframe")).to_have_attribute("src", "/embed.html")


def reopen_then(how: str, button: str, first: str = "accept") -> Callable[[Page], None]:
    def path(page: Page) -> None:
        banner(page).get_by_role("button", name=EN[first]).click()
        wait_until(lambda: (stored_choice(page) or {}).get("i"))
        panel = reopen(page, how)
        if button == "save":  # switch every optional category off: a withdrawal
            for name in ("Preferences", "Analytics", "Marketing"):
                panel.get_by_role("switch", name=name).uncheck()
        panel.get_by_role("button", name=EN[button]).click()
    return path


PATHS = {
    "banner-accept": (banner_then("accept"), [("accept_all", "banner", ON)]),
    "banner-reject": (banner_then("reject"), [("reject_all", "banner", OFF)]),
    "panel-save": (panel_save, [("custom", "panel", dict(OFF, analytics=True))]),
    "placeholder-allow": (placeholder_first, [("custom", "banner", dict(OFF, marketing=True))]),
    "placeholder-allow-after-reject-all": (placeholder_after_reject, [
        ("reject_all", "banner", OFF), ("custom", "reopened", dict(OFF, marketing=True))]),
    "settings-link-then-withdraw": (reopen_then("link", "save"), [
        ("accept_all", "banner", ON), ("withdraw", "reopened", OFF)]),
    "keksi.open-then-reject-all": (reopen_then("api", "reject"), [
        ("accept_all", "banner", ON), ("withdraw", "reopened", OFF)]),
    "keksi.open-then-accept-all": (reopen_then("api", "accept", first="reject"), [
        ("reject_all", "banner", OFF), ("accept_all", "reopened", ON)]),
}


@pytest.mark.parametrize("path", PATHS, ids=list(PATHS))
def test_every_path_that_changes_a_choice_ends_in_one_ledger_row_per_choice(page: Page, widget: Widget,
                                                                              path: str):
    act, expected = PATHS[path]
    page.goto(widget.page(body=FRAME))
    wait_ready(page)
    act(page)
    settled(page, widget, expected)


def test_the_retry_queue_after_a_503_delivers_the_choice_once(page: Page, widget: Widget, console_errors):
    console_errors.allow(r"status of 503")
    widget.faults.plan = [503]
    page.goto(widget.page(body=FRAME))
    page.get_by_role("button", name="Allow marketing cookies").click()
    wait_until(lambda: widget.faults.served == [503])
    assert widget.rows() == []
    page.reload()  # the next page load sends the queue
    settled(page, widget, [("custom", "banner", dict(OFF, marketing=True))])


def test_a_choice_the_server_refuses_is_reported_in_the_console_with_its_message(
        page: Page, widget: Widget, console_errors):
    page.goto(widget.page())
    wait_ready(page)
    save_site(widget, lambda site: site.update(origins=["https://elsewhere.example"]))  # behind its back
    with page.expect_console_message(lambda m: m.text.startswith("keksi:")):
        banner(page).get_by_role("button", name=EN["accept"]).click()
    refused = [e for e in console_errors.unexpected() if e.startswith("keksi:")]
    assert len(refused) == 1 and "(HTTP 403)" in refused[0] and "may not record consents" in refused[0]
    console_errors.allow(r"status of 403", r"refused a choice \(HTTP 403\)")  # seen: the fixture would fail
    assert widget.rows() == []


# -- withdrawal takes effect at once (issue 11.6) ------------------------------------------------


def test_withdrawing_unloads_loaded_iframes_and_offers_a_reload_for_scripts(page: Page, widget: Widget):
    page.goto(widget.page(body=TAGGED + FRAME))
    banner(page).get_by_role("button", name=EN["accept"]).click()
    wait_until(lambda: ran(page) == ["a", "m", "b"])
    wait_until(lambda: any(f.url.endswith("/embed.html") for f in page.frames))
    expect(page.frame_locator("iframe").get_by_text("An embedded video.")).to_be_visible()

    page.evaluate("keksi.open()")
    dialog(page).get_by_role("switch", name="Marketing").uncheck()
    dialog(page).get_by_role("button", name=EN["save"]).click()
    rows = settled(page, widget, [("accept_all", "banner", ON),
                                  ("custom", "reopened", dict(ON, marketing=False))])
    # The embed is gone at once, its placeholder back; the frame's page no longer exists.
    expect(page.get_by_role("button", name="Allow marketing cookies")).to_be_visible()
    assert page.locator("iframe").get_attribute("src") is None
    assert not any(f.url.endswith("/embed.html") for f in page.frames)
    # A marketing script already ran and cannot be unloaded: the widget says so and offers a reload.
    note = page.get_by_role("alert")
    expect(note).to_contain_text("Reload the page to complete the change.")
    assert_accessible(page, "reload note")
    note.get_by_role("button", name="Reload the page").click()
    wait_ready(page)
    wait_until(lambda: ran(page) == ["a", "b"])  # after the reload only what is still granted runs
    assert page.locator("iframe").get_attribute("src") is None
    expect(page.get_by_role("alert")).to_have_count(0)
    assert len(widget.rows()) == len(rows)


def test_withdrawing_with_nothing_run_needs_no_reload(page: Page, widget: Widget):
    page.goto(widget.page(body=FRAME))
    placeholder_first(page)
    expect(page.locator("iframe")).to_have_attribute("src", "/embed.html")
    page.evaluate("keksi.open()")
    dialog(page).get_by_role("button", name=EN["reject"]).click()
    settled(page, widget, [("custom", "banner", dict(OFF, marketing=True)), ("withdraw", "reopened", OFF)])
    expect(page.get_by_role("button", name="Allow marketing cookies")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)  # an iframe is unloaded: nothing left to reload


# -- placeholders keep the iframe's size and name the service (issue 11.8) ------------------------


def test_placeholders_keep_the_iframes_size_and_name_the_service_and_provider(page: Page, widget: Widget):
    frames = ('<style>.wide { width: 400px; height: 225px; border: 0; }</style>'
              '<iframe id="attrs" data-consent="marketing" data-service="LinkedIn Insight" width="560" '
              'height="315" data-src="/embed.html" title="Video"></iframe>'
              '<iframe id="css" class="wide" data-consent="marketing" data-src="/embed.html" title="Map">'
              '</iframe>')
    page.goto(widget.page(body=frames))
    wait_ready(page)
    boxes = page.locator(".ph")  # each placeholder's box, in its shadow root
    expect(boxes).to_have_count(2)
    sizes = [boxes.nth(i).bounding_box() for i in range(2)]
    assert [(round(b["width"]), round(b["height"])) for b in sizes] == [(560, 315), (400, 225)]
    # The provider, then what the declaration says of it (own purposes, transfer): tests/test_site_banner.py.
    expect(boxes.nth(0)).to_contain_text("This content from LinkedIn Insight (LinkedIn Ireland Unlimited Company")
    expect(boxes.nth(0)).to_contain_text(") is blocked until you allow marketing cookies.")
    expect(boxes.nth(1)).to_contain_text("This content is blocked until you allow marketing cookies.")
    page.set_viewport_size({"width": 320, "height": 640})  # never wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 320


# -- the admin preview is a preview (issue 11.3) -----------------------------------------------


def test_admin_previews_post_nothing_write_nothing_and_keksis_own_pages_keep_their_banner(
        page: Page, make_app, console_errors):
    app = make_app(WIDGET_SITE="demo", RATE_LIMIT=10_000)
    add_site(app)
    add_user(app, "marketing@example.fi", "marketing")
    faults = ConsentFaults(app)
    with LiveServer(faults) as server:
        widget = Widget.__new__(Widget)  # the sample's demo site as it is, shown on Keksi's own pages
        widget.app, widget.site, widget.faults = app, "demo", faults
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/consents" in r.url else None)
        # The admin's own choice on Keksi's public pages: the real banner, recorded.
        page.goto(f"{server.url}/en/")
        banner(page).get_by_role("button", name=EN["reject"]).click()
        own = widget.wait_rows(1)
        own_cookie = wait_until(lambda: (stored_choice(page) or {}).get("i") and stored_choice(page))
        browser_sign_in(page, server.url, "marketing@example.fi")
        posts.clear()

        page.set_viewport_size({"width": 1280, "height": 2400})  # every preview on the screen at once
        page.goto(f"{server.url}/admin/sites/demo/snippet")
        frames = [page.frame_locator(f"iframe[title^='Banner preview']").nth(i) for i in range(3)]
        texts = {lang: widget.config(lang)["texts"] for lang in ("fi", "sv", "en")}
        for frame, lang in zip(frames, ("fi", "sv", "en")):
            frame.locator("body").scroll_into_view_if_needed()
            expect(frame.get_by_role("region", name=texts[lang]["region"])).to_be_visible()
        frames[0].get_by_role("button", name=texts["fi"]["accept_all"]).click()
        expect(frames[0].get_by_role("region", name=texts["fi"]["region"])).to_have_count(0)
        frames[0].get_by_role("button", name=texts["fi"]["panel_title"]).click()  # the settings button
        frames[0].get_by_role("dialog").get_by_role("button", name=texts["fi"]["reject_all"]).click()
        for frame, lang in zip(frames[1:], ("sv", "en")):  # the others keep their banners
            expect(frame.get_by_role("region", name=texts[lang]["region"])).to_be_visible()
        page.reload()  # and every preview shows the banner again: nothing was kept
        for frame, lang in zip(frames, ("fi", "sv", "en")):
            frame.locator("body").scroll_into_view_if_needed()
            expect(frame.get_by_role("region", name=texts[lang]["region"])).to_be_visible()
        page.wait_for_timeout(300)
        assert posts == [] and widget.rows() == own
        assert stored_choice(page) == own_cookie, "the admin's own choice is untouched"
        assert page.evaluate("localStorage.length") == 0

        page.goto(f"{server.url}/en/")  # the public pages still know the admin's choice
        wait_ready(page)
        expect(banner(page)).to_have_count(0)


# -- refusals respected (issue 15.4) ---------------------------------------------------------------


def test_a_refusal_lasts_at_least_six_months_where_consents_last_less(page: Page, widget: Widget):
    save_site(widget, lambda site: site.update(consent_days=30))
    page.goto(widget.page())
    banner(page).get_by_role("button", name=EN["reject"]).click()
    row = widget.wait_rows(1)[0]
    choice = wait_until(lambda: (stored_choice(page) or {}).get("i") and stored_choice(page))
    recorded = datetime.fromisoformat(row["recorded_at"].replace("Z", "+00:00"))
    until = datetime.fromisoformat(row["valid_until"].replace("Z", "+00:00"))
    assert (until - recorded).days == 183
    cookie = next(c for c in page.context.cookies() if c["name"] == "keksi_consent")
    assert cookie["expires"] > time.time() + 182 * 86400 and choice["x"] > time.time() + 182 * 86400
    page.evaluate("keksi.open()")  # a consent still lasts the site's 30 days
    dialog(page).get_by_role("button", name=EN["accept"]).click()
    rows = widget.wait_rows(2)
    recorded = datetime.fromisoformat(rows[1]["recorded_at"].replace("Z", "+00:00"))
    assert (datetime.fromisoformat(rows[1]["valid_until"].replace("Z", "+00:00")) - recorded).days == 30
    wait_until(lambda: stored_choice(page)["i"] == rows[1]["consent_id"])
    cookie = next(c for c in page.context.cookies() if c["name"] == "keksi_consent")
    assert time.time() + 29 * 86400 < cookie["expires"] < time.time() + 31 * 86400


# -- privacy tools can answer for the visitor (issue 11.12) ---------------------------------------

RULES = ROOT / "widget" / "rules"
AUTOCONSENT_CONFIG = {"enabled": True, "autoAction": "optOut", "disabledCmps": [], "enablePrehide": False,
                      "enableCosmeticRules": False, "enableGeneratedRules": True, "detectRetries": 20}


@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_duckduckgo_autoconsent_detects_the_banner_and_opts_out(page: Page, widget: Widget, lang: str):
    """DuckDuckGo's own engine (the PyPI package bundles it), with every upstream rule and ours."""
    from duckduckgo_autoconsent import bundle, rules_json

    rules = json.loads(rules_json()) + [json.loads((RULES / "keksi.autoconsent.json").read_text("utf-8"))]
    messages: list[dict[str, Any]] = []
    page.expose_function("autoconsentSendMessage", lambda message: messages.append(message))
    page.add_init_script(bundle())
    page.goto(widget.page(f"/{lang}", lang=lang))
    wait_until(lambda: page.wait_for_timeout(20) or any(m["type"] == "init" for m in messages))
    page.evaluate("([config, rules]) => autoconsentReceiveMessage({type: 'initResp', config, rules: "
                  "{autoconsent: rules}})", [AUTOCONSENT_CONFIG, rules])
    done = wait_until(lambda: page.wait_for_timeout(20) or [m for m in messages if m["type"] == "optOutResult"])
    detected = [m["cmp"] for m in messages if m["type"] == "cmpDetected"]
    assert detected == ["Keksi"] and done[0]["cmp"] == "Keksi" and done[0]["result"] is True, messages
    row = widget.wait_rows(1)[0]
    assert (row["action"], row["ui_surface"], row["lang"]) == ("reject_all", "banner", lang)
    assert json.loads(row["choices"]) == OFF
    expect(banner(page)).to_have_count(0)


def test_the_consent_o_matic_rule_finds_every_element_it_names(page: Page, widget: Widget):
    """Consent-O-Matic resolves `target` inside `parent`'s shadow root (its Tools.findElement)."""
    rule = json.loads((RULES / "keksi.consentomatic.json").read_text("utf-8"))["keksi"]
    targets: list[dict[str, Any]] = [rule["detectors"][0]["showingMatcher"]]
    for method in rule["methods"]:
        action = method["action"]
        targets += [c[k] for c in action.get("consents", []) for k in ("matcher", "toggleAction")] or [action]
    page.goto(widget.page())
    wait_ready(page)
    find = """([parent, target]) => {
        const base = parent ? document.querySelector(parent).shadowRoot : document;
        return base.querySelectorAll(target).length;
    }"""
    assert page.evaluate(find, [None, rule["detectors"][0]["presentMatcher"]["target"]["selector"]]) == 1
    for step in targets[:2]:  # the banner's reject button, and Choose
        assert page.evaluate(find, [step["parent"]["selector"], step["target"]["selector"]]) == 1, step
    banner(page).get_by_role("button", name=EN["choose"]).click()
    for step in targets[2:]:  # the panel's switches and its save button
        assert page.evaluate(find, [step["parent"]["selector"], step["target"]["selector"]]) == 1, step
    dialog(page).get_by_role("switch", name="Analytics").click()  # what its toggleAction does
    page.evaluate("""() => document.querySelector('#keksi-consent').shadowRoot
                           .querySelector('dialog [data-keksi-action=save]').click()""")
    assert widget.wait_rows(1)[0]["action"] == "custom"


# -- as an attacker: what the site's texts and the host page hold ----------------------------------


def test_dollar_patterns_in_a_service_name_and_provider_are_shown_as_written(page: Page, widget: Widget):
    """String.replace reads `$&`, `$'` and `$$` in a replacement string as patterns, not text."""
    def odd_names(site: dict[str, Any]) -> None:
        service = next(c for c in site["categories"] if c["id"] == "marketing")["services"][1]
        service.update(name="Tube $& $` Co", provider="Acme $' $$ Oy")
    save_site(widget, odd_names)
    page.goto(widget.page(body='<iframe data-consent="marketing" data-service="tube $& $` co" '
                               'data-src="/embed.html" title="Video"></iframe>'))
    wait_ready(page)
    expect(page.locator(".ph")).to_contain_text(
        "This content from Tube $& $` Co (Acme $' $$ Oy")


@pytest.mark.parametrize("name", ["constructor", "__proto__", "toString", "hasOwnProperty"])
def test_a_name_the_site_has_no_category_for_is_never_granted(page: Page, widget: Widget, name: str):
    """A stored choice is a plain object: its inherited members are not categories a visitor granted."""
    page.goto(widget.page(body=f'<iframe data-consent="{name}" data-src="/embed.html" title="Video"></iframe>'
                               f'<script type="text/plain" data-consent="{name}" src="/a.js"></script>'))
    banner(page).get_by_role("button", name=EN["accept"]).click()
    widget.wait_rows(1)
    wait_until(lambda: (stored_choice(page) or {}).get("i"))
    page.reload()
    wait_ready(page)
    assert page.evaluate(f"keksi.get({name!r})") is False
    assert page.locator("iframe").get_attribute("src") is None and ran(page) == []


@pytest.mark.parametrize("element", ['<div id="keksi"></div>', '<form name="keksi"><input name="on"></form>'])
def test_an_element_named_keksi_on_the_page_does_not_silence_the_widget(page: Page, widget: Widget, element: str):
    """An element's id or name is a property of window (a comment on the host page may carry one)."""
    page.goto(widget.page(body=element + TAGGED))
    banner(page).get_by_role("button", name=EN["accept"]).click()
    assert widget.wait_rows(1)[0]["action"] == "accept_all"
    wait_until(lambda: ran(page) == ["a", "m", "b"])
    assert page.evaluate("keksi.get('analytics')") is True


def test_spaces_and_capitals_in_data_consent_name_the_same_categories(page: Page, widget: Widget):
    page.goto(widget.page(body='<iframe data-consent=" Marketing  analytics " data-src="/embed.html" title="Video">'
                               '</iframe><iframe data-consent="" data-src="/embed.html" title="Map"></iframe>'))
    expect(page.locator(".ph").first).to_contain_text("blocked until you allow marketing cookies")
    banner(page).get_by_role("button", name=EN["accept"]).click()
    widget.wait_rows(1)
    expect(page.locator("iframe[title=Video]")).to_have_attribute("src", "/embed.html")
    assert page.locator("iframe[title=Map]").get_attribute("src") is None  # names nothing: never granted


def test_a_listener_cannot_change_what_the_others_see_nor_stop_them(page: Page, widget: Widget, console_errors):
    """A tag's listener that rewrites the choice or throws leaves other tags the visitor's choice."""
    console_errors.allow(r"a broken tag")
    page.goto(widget.page())
    wait_ready(page)
    page.evaluate("""() => {
        window.seen = [];
        keksi.on("change", d => { try { d.choices.marketing = true; d.action = "accept_all"; } catch (e) {}
                                  throw Error("a broken tag"); });
        keksi.on("change", d => seen.push(["on", d.action, d.choices.marketing]));
        document.addEventListener("keksi:change", e => seen.push(["event", e.detail.action, e.detail.choices.marketing]));
    }""")
    banner(page).get_by_role("button", name=EN["reject"]).click()
    wait_until(lambda: len(page.evaluate("seen")) == 2)
    assert page.evaluate("seen") == [["on", "reject_all", False], ["event", "reject_all", False]]
    assert page.evaluate("keksi.get('marketing')") is False
    assert json.loads(widget.wait_rows(1)[0]["choices"]) == OFF


def test_a_choice_is_recorded_where_the_browser_blocks_local_storage(page: Page, widget: Widget):
    """With site data blocked, localStorage throws: the choice still reaches the ledger, once."""
    page.add_init_script("Object.defineProperty(window, 'localStorage', "
                         "{get() { throw new DOMException('blocked', 'SecurityError'); }})")
    page.goto(widget.page(body=FRAME))
    page.get_by_role("button", name="Allow marketing cookies").click()
    row = widget.wait_rows(1)[0]
    assert (row["action"], json.loads(row["choices"])) == ("custom", dict(OFF, marketing=True))
    page.wait_for_timeout(500)
    assert len(widget.rows()) == 1


# -- review of issue 11.1: choices the server refuses, found by hand (failing on main) ---------------


def without_preferences(site: dict[str, Any]) -> None:
    site["categories"] = [c for c in site["categories"] if c["id"] != "preferences"]


@pytest.mark.parametrize("change", ["removed", "added"])
def test_a_choice_made_on_a_page_opened_before_marketing_changed_the_categories_is_recorded(
        page: Page, widget: Widget, change: str):
    """The visitor answers the banner they see; marketing saved the site meanwhile (or the choice
    waited in the queue across the change). The server refuses it (400) and the widget drops it."""
    if change == "added":
        save_site(widget, without_preferences)
    page.goto(widget.page())
    wait_ready(page)
    save_site(widget, without_preferences if change == "removed" else lambda site: None)
    banner(page).get_by_role("button", name=EN["accept"]).click()
    row = widget.wait_rows(1)[0]
    assert row["action"] == "accept_all"
    assert json.loads(row["choices"])["marketing"] is True


def test_a_stored_choice_with_a_malformed_subject_id_does_not_lose_the_next_choice(page: Page, widget: Widget):
    """A keksi_consent cookie whose "s" is not 32 hex digits (written by other code on the site's
    domain, or tampered with): every later choice is posted with it, refused (400) and dropped."""
    cfg = widget.config("en")
    state = {"s": "not-a-subject", "i": "x", "c": {"preferences": 0, "analytics": 0, "marketing": 0},
             "v": cfg["notices"]["privacy"]["version"], "w": cfg["notices"]["cookies"]["version"],
             "h": cfg["banner_hash"][:16], "k": cfg["choice_hash"][:16], "l": "en",
             "t": int(time.time()), "x": int(time.time()) + 100 * 86400}
    page.context.add_cookies([{"name": "keksi_consent", "url": widget.host.url,
                               "value": urllib.parse.quote(json.dumps(state))}])
    page.goto(widget.page())
    wait_ready(page)
    reopen(page, "api").get_by_role("button", name=EN["accept"]).click()
    row = widget.wait_rows(1)[0]
    assert row["action"] == "accept_all"


def test_a_choice_made_on_a_page_with_a_long_path_is_recorded(page: Page, widget: Widget):
    """location.pathname goes into the post as it is (ä written %C3%A4): past 1,000 characters the
    server refuses the page (400), past about 3,400 the whole body (413), and the widget drops the
    choice. The page is optional context; the choice is the record."""
    page.goto(widget.page("/tuotteet/" + "kengat-" * 150))
    banner(page).get_by_role("button", name=EN["reject"]).click()
    assert widget.wait_rows(1)[0]["action"] == "reject_all"


def test_a_choice_answered_503_is_retried_on_the_same_page(page: Page, widget: Widget, console_errors):
    """A visitor who makes a choice on the only page they visit (a bounce) while the database is
    busy (503 with Retry-After): the widget retries only on a later page load, the "online" event or
    the next choice, so this choice never reaches the ledger though the cookie says it was made."""
    console_errors.allow(r"status of 503")
    widget.faults.plan = [503]
    page.goto(widget.page())
    banner(page).get_by_role("button", name=EN["reject"]).click()
    wait_until(lambda: widget.faults.served == [503])
    assert widget.wait_rows(1, timeout=15)[0]["action"] == "reject_all"  # no reload, no other event
