"""Other vendors' consent signals in headless Chromium: Microsoft UET and Clarity, Matomo and Meta.

The host page (a second loopback origin) carries stand-ins for the vendors' tags, tagged with
data-consent as widget/README.md asks. Each stand-in takes over its vendor's queue as the real
script does and records exactly what it received, in order: first what waited in the queue when
it loaded, then every later call. Before any tag may run, the queues themselves show what was sent.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from .ledger import DEMO_SITE
from .test_widget_browser import EN, Widget, banner, consent_server, dialog, host, wait_ready, wait_until  # noqa: F401
from .test_widget_signals import declaring

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("console_errors")]

# Each stand-in keeps received[vendor] = [what was queued when it loaded..., "loaded", later calls...].
STAND_INS = {
    # bat.js: the queue is flat (push('consent', 'default', {...}) adds three items), read on load.
    "uet": """(() => { const got = (window.received = window.received || {}).uet = [];
        got.push(...(window.uetq || []), "loaded");
        window.uetq = {push: (...args) => got.push(...args)}; })();""",
    # clarity.js: the stub's queue holds each call's arguments.
    "clarity": """(() => { const got = (window.received = window.received || {}).clarity = [];
        got.push(...((window.clarity && window.clarity.q) || []).map(a => Array.from(a)), "loaded");
        window.clarity = (...args) => got.push(args); })();""",
    # matomo.js: _paq holds one array per call, and becomes an object with push once loaded.
    "matomo": """(() => { const got = (window.received = window.received || {}).matomo = [];
        got.push(...(window._paq || []), "loaded");
        window._paq = {push: (...calls) => got.push(...calls)}; })();""",
    # The Meta Pixel's snippet defines fbq only where there is none, then calls init and track.
    "meta": """(() => { if (window.fbq) return; const got = (window.received = window.received || {}).meta = [];
        got.push("loaded"); window.fbq = (...args) => got.push(args);
        fbq("init", "123"); fbq("track", "PageView"); })();""",
}
TAGS = "\n".join(f'<script type="text/plain" data-consent="{category}" src="/{vendor}.js"></script>'
                 for vendor, category in (("uet", "marketing"), ("clarity", "analytics"),
                                          ("matomo", "analytics"), ("meta", "marketing")))
ALL = (("microsoft-uet", "marketing"), ("microsoft-clarity", "analytics"), ("matomo", "analytics"),
       ("meta-pixel", "marketing"))

DEFAULT = ["consent", "default", {"ad_storage": "denied"}]
UET = {on: ["consent", "update", {"ad_storage": on}] for on in ("granted", "denied")}
CLARITY = {on: ["consentv2", {"ad_Storage": on, "analytics_Storage": on}] for on in ("granted", "denied")}
_numbers = itertools.count(1)


def site_widget(consent_server, host, definition: dict[str, Any]) -> Widget:
    app, server, faults = consent_server
    widget = Widget(app, server, host, f"signals{next(_numbers)}", faults, definition)
    for vendor, body in STAND_INS.items():
        host.script(f"/{vendor}.js", body)
    return widget


@pytest.fixture
def widget(consent_server, host) -> Widget:
    """A site that declares all four services from the catalogue."""
    return site_widget(consent_server, host, declaring(*ALL))


def received(page: Page) -> dict[str, list]:
    return page.evaluate("window.received || {}")


def queues(page: Page) -> dict[str, Any]:
    """What waits in each vendor's queue on the page (None where there is no queue)."""
    return page.evaluate("""() => ({uet: window.uetq || null, matomo: window._paq || null,
        clarity: window.clarity ? (window.clarity.q || []).map(a => Array.from(a)) : null,
        meta: typeof window.fbq})""")


def signals_ran(page: Page) -> None:
    """Wait until signals.js has run: it loads after the configuration, ahead of the tagged scripts."""
    wait_ready(page)
    page.wait_for_function("!!window._paq")


def test_defaults_before_a_choice_updates_reach_each_tag_before_it_runs_and_withdrawal_revokes(
        page: Page, widget: Widget):
    # The documented order: our tag first in <head>, without async; the vendors' tags tagged.
    page.goto(widget.page(tag_in_head=True, tag_attrs="", body=TAGS))
    signals_ran(page)
    assert queues(page) == {"uet": DEFAULT, "matomo": [["requireConsent"]],
                            "clarity": [CLARITY["denied"]], "meta": "undefined"}
    assert received(page) == {}, "no tag runs before a choice"

    banner(page).get_by_role("button", name=EN["accept"]).click()

    wait_until(lambda: len(received(page)) == 4)
    got = received(page)
    assert got["uet"] == DEFAULT + UET["granted"] + ["loaded"]  # the default before the tag, as UET requires
    assert got["clarity"] == [CLARITY["denied"], CLARITY["granted"], "loaded"]
    assert got["matomo"] == [["requireConsent"], ["setConsentGiven"], "loaded"]
    assert got["meta"] == ["loaded", ["init", "123"], ["track", "PageView"]]  # no revoke came before it
    widget.wait_rows(1)

    page.get_by_role("link", name="Cookie settings").click()  # withdraw everything
    dialog(page).get_by_role("button", name=EN["reject"]).click()
    got = received(page)
    assert got["uet"][-3:] == UET["denied"]
    assert got["clarity"][-1] == CLARITY["denied"]
    assert got["matomo"][-1] == ["requireConsent"]  # not forgetConsentGiven: no mtm_consent_removed cookie
    assert got["meta"][-1] == ["consent", "revoke"]
    widget.wait_rows(2)

    page.get_by_role("link", name="Cookie settings").click()  # and grant again on the same page
    dialog(page).get_by_role("button", name=EN["accept"]).click()
    assert received(page)["meta"][-1] == ["consent", "grant"]
    assert received(page)["matomo"][-1] == ["setConsentGiven"]
    widget.wait_rows(3)

    page.reload()  # a stored grant: the default and the update wait for each tag
    wait_until(lambda: len(received(page)) == 4)
    got = received(page)
    assert got["uet"] == DEFAULT + UET["granted"] + ["loaded"]
    assert got["clarity"] == [CLARITY["denied"], CLARITY["granted"], "loaded"]
    assert got["matomo"] == [["requireConsent"], ["setConsentGiven"], "loaded"]
    assert "mtm_consent_removed" not in page.evaluate("document.cookie")


def test_reject_all_sends_denials_and_runs_no_tag_also_on_the_next_page(page: Page, widget: Widget):
    page.goto(widget.page(body=TAGS))  # the widget's tag async, at the end of the page
    signals_ran(page)
    banner(page).get_by_role("button", name=EN["reject"]).click()
    assert queues(page) == {"uet": DEFAULT + UET["denied"], "matomo": [["requireConsent"], ["requireConsent"]],
                            "clarity": [CLARITY["denied"], CLARITY["denied"]], "meta": "undefined"}
    widget.wait_rows(1)

    page.reload()  # a stored refusal: the defaults only, which already deny
    signals_ran(page)
    assert queues(page) == {"uet": DEFAULT, "matomo": [["requireConsent"]],
                            "clarity": [CLARITY["denied"]], "meta": "undefined"}
    assert received(page) == {}


def test_clarity_ad_storage_also_needs_marketing(page: Page, widget: Widget):
    page.goto(widget.page(body=TAGS))
    signals_ran(page)
    banner(page).get_by_role("button", name=EN["choose"]).click()
    dialog(page).get_by_role("switch", name="Analytics").check()
    dialog(page).get_by_role("button", name=EN["save"]).click()
    wait_until(lambda: "clarity" in received(page) and "matomo" in received(page))
    assert received(page)["clarity"] == [CLARITY["denied"],
                                         ["consentv2", {"ad_Storage": "denied", "analytics_Storage": "granted"}],
                                         "loaded"]
    assert "uet" not in received(page) and queues(page)["uet"] == DEFAULT + UET["denied"]
    widget.wait_rows(1)


def test_a_pixel_already_on_the_page_is_revoked_before_a_choice_and_granted_on_accept(
        page: Page, consent_server, host):
    widget = site_widget(consent_server, host, declaring(("meta-pixel", "marketing")))
    page.goto(widget.page(head='<script src="/meta.js"></script>'))
    wait_ready(page)
    wait_until(lambda: received(page)["meta"][-1:] == [["consent", "revoke"]])
    banner(page).get_by_role("button", name=EN["accept"]).click()
    assert received(page)["meta"][-1] == ["consent", "grant"]
    assert page.evaluate("window.uetq === undefined && window._paq === undefined && window.clarity === undefined")
    widget.wait_rows(1)


def test_nothing_is_sent_nor_loaded_for_services_the_site_does_not_declare(page: Page, consent_server, host):
    widget = site_widget(consent_server, host, copy.deepcopy(DEMO_SITE))
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(widget.page(body=TAGS))
    wait_ready(page)
    assert queues(page) == {"uet": None, "matomo": None, "clarity": None, "meta": "undefined"}
    banner(page).get_by_role("button", name=EN["accept"]).click()
    wait_until(lambda: len(received(page)) == 4)
    assert received(page) == {"uet": ["loaded"], "clarity": ["loaded"], "matomo": ["loaded"],
                              "meta": ["loaded", ["init", "123"], ["track", "PageView"]]}
    assert not [url for url in requested if "signals.js" in url]
    widget.wait_rows(1)
    expect(banner(page)).to_have_count(0)


def test_without_the_configuration_tagged_scripts_still_run_on_the_stored_choice(
        page: Page, widget: Widget, console_errors):
    page.goto(widget.page(body=TAGS))
    signals_ran(page)
    banner(page).get_by_role("button", name=EN["accept"]).click()
    widget.wait_rows(1)
    wait_until(lambda: len(received(page)) == 4)

    console_errors.allow(r"^keksi: TypeError", r"ERR_FAILED")
    page.route("**/api/v1/sites/*/config*", lambda route: route.abort())  # the consent host is down
    page.reload()
    wait_until(lambda: len(received(page)) == 4)  # each tag ran, without any consent signal
    assert received(page)["uet"] == ["loaded"] and received(page)["matomo"] == ["loaded"]
    assert page.evaluate("keksi.get('marketing')") is True
