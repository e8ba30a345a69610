"""Issue 12 point 6: every admin page fits the screen, at 375 px and at 1280 px, in Chromium.

An admin with every role walks each page the admin blueprints serve (listed from the app's url_map,
so a new page is walked too, or this test fails naming it), filled with real content: a site with
categories and cookies, several notice versions, audit rows, users and consent records, and forms
sent back with errors. On each: no sideways scrolling, no field widened by its error, and every
textarea in the normal font and tall enough for its text.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from keksi import auth
from keksi.store import open_store

from .conftest import PASSWORD, add_user, from_store
from .ledger import DEMO_SITE, add_site, record_some
from .test_admin_notices_browser import publish_january_from_the_old_text

pytestmark = pytest.mark.browser

WIDTHS = [375, 1280]
EMAIL = "every-role@example.fi"
# Unbroken text as people paste it: an address, a cookie name, a reason with no spaces.
LONG_WORD = "x" * 90
LONG_SITE = dict(DEMO_SITE, id="long-names", name="Verkkokauppa " + "Pitkänimisenpalvelunomistaja" * 3,
                 origins=["https://" + "a" * 60 + ".example.fi", "https://shop.example.fi:8443"])
# The same pages with other content: a cookie notice drafted from a site's tables.
MORE_PAGES = [("admin_notices.notice_new", "/admin/notices/cookies/new?site=demo")]
# Admin pages that are no page: files to download, a stylesheet, a script.
NOT_PAGES = {"admin_audit.export_csv", "admin_sites.export_csv", "admin_sites.figures_csv",
             "admin_proof.widget_script", "admin_sites.theme_preview", "admin_scans.findings_json",
             "admin_scans.findings_csv"}
# A page that needs content this walk cannot make yet: a finished site audit (a scan in Chromium).
NOT_WALKED = {"admin_scans.scan_page"}


def _long_site() -> dict[str, Any]:
    site = copy.deepcopy(LONG_SITE)
    cookie = site["categories"][2]["services"][0]["cookies"][0]
    cookie["name"] = "_" + LONG_WORD + "*"
    return site


@pytest.fixture
def app(make_app):
    app = make_app(FIXED_TODAY="2026-12-02", RATE_LIMIT=1_000_000)
    add_user(app, EMAIL, "admin", "legal", "marketing")
    for email, role in (("aino@example.fi", "legal"), ("markus@example.fi", "marketing"),
                        (f"{LONG_WORD}@example.fi", "admin")):
        add_user(app, email, role)
    add_site(app)
    add_site(app, _long_site())
    publish_january_from_the_old_text(app)
    from_store(app, "audit", f"{LONG_WORD}@example.fi", "notice.withdraw", "privacy/2027-02-01.fi",
               {"reason": LONG_WORD * 3, "sha256": "f" * 64})
    client = app.test_client()
    record_some(client, 4)
    assert client.get("/widget/v1/consent.js").status_code == 200
    return app


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/admin/login?lang=fi")
    page.locator("#email").fill(EMAIL)
    page.locator("#password").fill(PASSWORD)
    page.locator("form.admin-form button[type=submit]").click()
    page.wait_for_url(f"{base}/admin/")


def page_urls(app: Any) -> dict[str, str]:
    """Every admin page, by endpoint, with real values for its parts."""
    banner = from_store(app, "banner_versions")[0]["hash"]
    build = from_store(app, "widget_builds")[0]["version"]
    other = from_store(app, "user_by_email", "aino@example.fi")["id"]
    store = open_store(app.config["DATABASE"])
    try:
        token = auth.make_password_token(store, other)
    finally:
        store.close()
    return {  # the set-password link last: it is opened signed out
        "admin.dashboard": "/admin/",
        "admin.login": "/admin/login",
        "admin_audit.audit": "/admin/audit",
        "admin_notices.notice_list": "/admin/notices",
        "admin_notices.notice_new": "/admin/notices/privacy/new",
        "admin_notices.notice_withdraw": "/admin/notices/privacy/2027-01-15/withdraw",
        "admin_proof.index": "/admin/proof/",
        "admin_proof.banner": f"/admin/proof/banners/{banner}",
        "admin_proof.widget": f"/admin/proof/widgets/{build}",
        "admin_records.records": "/admin/records/",
        "admin_records.erase": "/admin/records/erase",
        "admin_sites.site_list": "/admin/sites/",
        "admin_sites.site_new": "/admin/sites/new",
        "admin_sites.site_edit": "/admin/sites/long-names/edit",
        "admin_sites.snippet": "/admin/sites/long-names/snippet",
        "admin_sites.preview": "/admin/sites/long-names/preview",
        "admin_sites.figures_page": "/admin/sites/demo/figures",
        "admin_scans.scans": "/admin/sites/long-names/scans",
        "admin_users.user_list": "/admin/users",
        "admin_users.user_page": f"/admin/users/{other}",
        "admin_users.change_password": "/admin/password",
        "admin.set_password": f"/admin/set-password/{token}",
    }


def test_every_admin_page_is_walked(app):
    """A page added to an admin blueprint must be added to the walk (or named as no page)."""
    served = {rule.endpoint for rule in app.url_map.iter_rules()
              if rule.endpoint.startswith("admin") and "GET" in rule.methods}
    assert served - NOT_PAGES - NOT_WALKED == set(page_urls(app))


def fits(page: Page) -> list[str]:
    """What does not fit on the page as shown: sideways scrolling, a textarea in another font than
    the page's text or too short for its text, a field wider than the form it is in."""
    return page.evaluate("""() => {
        const problems = [];
        const root = document.documentElement;
        if (root.scrollWidth > window.innerWidth) {
            const wide = [...document.querySelectorAll('body *')].filter(e => {
                const r = e.getBoundingClientRect(); return r.right > window.innerWidth + 0.5 && r.width > 0;
            }).slice(-3).map(e => e.tagName + '.' + e.className + '#' + e.id);
            problems.push(`scrolls sideways: ${root.scrollWidth} > ${window.innerWidth} (${wide.join(', ')})`);
        }
        const bodyFont = getComputedStyle(document.body).fontFamily;
        for (const area of document.querySelectorAll('textarea')) {
            if (!area.getClientRects().length) continue;  // in a closed group
            const style = getComputedStyle(area);
            if (style.fontFamily !== bodyFont) problems.push(`#${area.id}: font ${style.fontFamily}`);
            const capped = area.clientHeight >= 0.6 * window.innerHeight;
            if (area.scrollHeight > area.clientHeight + 1 && !capped)
                problems.push(`#${area.id}: ${area.scrollHeight} px of text in ${area.clientHeight} px`);
        }
        for (const field of document.querySelectorAll('input, select, textarea')) {
            const box = field.getBoundingClientRect();
            if (!box.width || field.type === 'hidden') continue;
            const form = field.closest('form, main');
            if (box.right > form.getBoundingClientRect().right + 1)
                problems.push(`#${field.id}: wider than its form`);
        }
        return problems;
    }""")


def open_every_group(page: Page) -> None:
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")


def field_widths(page: Page) -> dict[str, float]:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        'input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea')]
        .filter(f => f.id && f.getClientRects().length).map(f => [f.id, f.getBoundingClientRect().width]))""")


@pytest.mark.parametrize("width", WIDTHS)
def test_every_admin_page_fits_the_screen(page: Page, live_server, app, console_errors, width):
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, live_server.url)
    urls = page_urls(app)
    problems = {}
    for endpoint, path in [*MORE_PAGES, *urls.items()]:  # set_password last
        if endpoint == "admin.set_password":
            page.context.clear_cookies()  # a link for someone signed out: walked last
        response = page.goto(live_server.url + path)
        assert response.status == 200, (path, response.status)
        open_every_group(page)
        problems[path] = fits(page)
    assert len(problems) == len(urls) + len(MORE_PAGES)
    failing = {path: found for path, found in problems.items() if found}
    assert not failing, f"at {width} px:\n" + "\n".join(f"{p}: {f}" for p, f in failing.items())


def _errors_keep_widths(page: Page, url: str, fill, label: str) -> None:
    """Open a form, send it back with errors, and check that no field changed width or broke out."""
    page.goto(url)
    open_every_group(page)
    before = field_widths(page)
    fill(page)
    page.wait_for_load_state()
    expect(page.locator(".error").first, f"{label}: no error shown ({page.url})").to_be_visible()
    open_every_group(page)
    after = field_widths(page)
    errors = page.evaluate("[...document.querySelectorAll('[aria-invalid=true]')].map(f => f.id)")
    assert errors, f"{label}: no field is marked invalid"
    widened = {f: (before[f], after[f]) for f in errors if f in before and f in after
               and abs(before[f] - after[f]) > 1}
    assert not widened, f"{label}: fields changed width with their error: {widened}"
    assert fits(page) == [], label


@pytest.mark.parametrize("width", WIDTHS)
def test_errors_never_stretch_a_field(page: Page, live_server, app, console_errors, width):
    console_errors.allow(r"status of 400 \(BAD REQUEST\) \[http://127\.0\.0\.1:\d+/admin/")  # the forms sent back
    page.set_viewport_size({"width": width, "height": 800})
    base = live_server.url
    sign_in(page, base)

    def bad_site(p: Page) -> None:
        p.locator("#origins").fill("https://" + "b" * 120 + ".example.fi/with/a/path\nnot an origin")
        p.locator("#consent_days").fill("400")
        p.locator("#name").fill("")
        p.locator("form.site-form button[name=step][value=save]").click()

    def bad_version(p: Page) -> None:
        p.locator("#effective_date").fill("2020-01-01")
        p.locator("#title_sv").fill("")
        p.locator("#summary_en").fill(LONG_WORD * 3)
        p.locator("#body_fi").fill("![kuva](https://example.fi/" + LONG_WORD + ".png)")
        p.locator("form.admin-form button[name=step][value=preview]").click()

    def bad_user(p: Page) -> None:
        p.locator("#email").fill(LONG_WORD * 2)  # no @: refused by auth, beside the field
        p.locator("input[name=roles][value=legal]").check()
        p.locator("form.admin-form button[type=submit]").first.click()

    def bad_withdrawal(p: Page) -> None:
        p.locator("form.admin-form button[type=submit]").first.click()

    def bad_erasure(p: Page) -> None:
        p.locator("#id").fill(LONG_WORD * 2)
        p.locator("form.admin-form button[type=submit]").first.click()

    def bad_password(p: Page) -> None:
        p.locator("#current").fill("wrong" * 20)
        p.locator("#password").fill("short")
        p.locator("#confirm").fill("other")
        p.locator("form.admin-form button[type=submit]").first.click()

    for path, fill in (("/admin/sites/long-names/edit", bad_site), ("/admin/notices/privacy/new", bad_version),
                       ("/admin/users", bad_user), ("/admin/notices/privacy/2027-01-15/withdraw", bad_withdrawal),
                       ("/admin/records/erase", bad_erasure), ("/admin/password", bad_password)):
        _errors_keep_widths(page, base + path, fill, f"{path} at {width} px")
