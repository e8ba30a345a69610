"""Marketing in a real browser: create a site, copy its embed code, see the figures; axe on every page."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from keksi.i18n import LANGUAGE_NAMES

from .conftest import add_user, assert_accessible, browser_sign_in
from .ledger import ORIGIN, add_site, choice

pytestmark = pytest.mark.browser

@pytest.fixture
def app(make_app):
    app = make_app(RATE_LIMIT=1_000_000)
    add_user(app, "marketing@example.fi", "marketing")
    return app


def open_category(page: Page, category: str) -> None:
    """Open a category's group in the site form, as a person does to edit it (closed, it only says
    whether visitors are asked and how many cookies it has)."""
    group = page.locator(f"details:has(#category-{category})")
    if group.get_attribute("open") is None:
        group.locator("summary").click()
    expect(group).to_have_attribute("open", "")


def fill_row(page: Page, category: str, index: int, **values: str) -> None:
    open_category(page, category)
    for name, value in values.items():
        page.locator(f"#rows_{category}-{index}-{name}").fill(value)


def post_choices(page: Page, base: str, site: str) -> None:
    """Choices as the widget would post them: 2 accept all, 1 reject all, 1 custom."""
    api = page.context.request
    cfg = api.get(f"{base}/api/v1/sites/{site}/config?lang=fi", headers={"Origin": ORIGIN}).json()
    bodies = [choice(cfg, "accept_all"), choice(cfg, "accept_all"), choice(cfg, "reject_all")]
    custom = choice(cfg, "custom")
    custom["choices"]["analytics"] = True
    for body in bodies + [custom]:
        response = api.post(f"{base}/api/v1/consents", data=json.dumps(body),
                            headers={"Origin": ORIGIN, "Content-Type": "application/json"})
        assert response.status == 201, response.text()


def test_marketing_creates_a_site_copies_the_snippet_and_sees_the_figures(page: Page, live_server, app):
    base = live_server.url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    browser_sign_in(page, base, "marketing@example.fi")
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Sites").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sites")
    page.get_by_role("link", name="Add a site").click()

    page.get_by_label("Name", exact=True).fill("Verkkokauppa")
    page.get_by_label("Id", exact=True).fill("web-shop")
    page.get_by_label("Origins").fill(f"{ORIGIN}\nhttps://www.example.fi")
    page.get_by_label("Consent lasts (days)").fill("180")
    fill_row(page, "necessary", 0, service="Verkkokauppa", provider="Kauppa Oy", name="session",
             duration="session", purpose_fi="Ostoskori.", purpose_sv="Kundvagn.", purpose_en="The cart.")
    fill_row(page, "analytics", 0, service="Matomo", provider="Kauppa Oy", name="_pk_id.*",
             duration="P13M", purpose_fi="Käynnit.", purpose_sv="Besök.", purpose_en="Visits.")
    page.get_by_role("button", name="Add the site").click()

    # The embed code page: copy the snippet, hear "Copied".
    expect(page.get_by_role("heading", level=1)).to_have_text("Embed code: Verkkokauppa")
    expect(page.locator(".flash")).to_contain_text("Verkkokauppa was added")
    page.get_by_role("button", name="Copy the embed code").click()
    status = page.locator("#snippet-script").locator("xpath=ancestor::div[@data-copy]").locator("[aria-live]")
    expect(status).to_have_text("Copied")
    snippet = f'<script src="{base}/widget/v1/consent.js" data-site="web-shop" async></script>'
    assert page.evaluate("navigator.clipboard.readText()") == snippet
    for lang in ("fi", "sv", "en"):
        frame = page.locator(f'iframe[title="Banner preview in {LANGUAGE_NAMES[lang]}"]')
        expect(frame).to_have_attribute("src", f"/admin/sites/web-shop/preview?lang={lang}")
        frame.scroll_into_view_if_needed()
        expect(frame.content_frame.locator("html")).to_have_attribute("lang", lang)

    # The figures: nothing yet, then the choices made through the API. They are filed under the
    # real day, so the figures' default period must end on it, not on the fixture's fixed day.
    day = datetime.now(ZoneInfo(app.config["TIMEZONE"])).date()
    app.config["FIXED_TODAY"] = day.isoformat()
    page.goto(f"{base}/admin/sites/")
    page.get_by_role("link", name="Figures – Verkkokauppa").click()
    expect(page.locator("svg.chart").first).to_contain_text("No choices in this period.")
    post_choices(page, base, "web-shop")
    page.reload()
    page.get_by_text("Choices per day as a table").click()
    row = page.locator("#daily-table tbody tr").filter(has=page.locator(f'time[datetime="{day}"]'))
    expect(row.locator("td")).to_have_text(["2", "1", "1", "0", "4"])
    expect(page.locator("#daily-table tfoot td")).to_have_text(["2", "1", "1", "0", "4"])
    analytics = page.locator("#opt-in-table tbody tr").filter(has_text="Analytics")
    expect(analytics.locator("td")).to_have_text(["3", "4", "75%"])
    with page.expect_download() as download:
        page.get_by_role("link", name="Download these figures (CSV)").click()
    text = open(download.value.path(), encoding="utf-8").read()
    assert re.search(rf"^{day},2,1,1,0,4,", text, re.M)


@pytest.mark.parametrize("lang", ["fi", "en"])
def test_every_marketing_page_is_accessible(page: Page, live_server, app, lang):
    base = live_server.url
    add_site(app)
    browser_sign_in(page, base, "marketing@example.fi", lang)
    page.goto(f"{base}/admin/sites/")
    assert_accessible(page, "site list")
    page.goto(f"{base}/admin/sites/new")
    assert_accessible(page, "new site")
    page.goto(f"{base}/admin/sites/demo/edit")
    assert_accessible(page, "edit site")
    for category in ("necessary", "preferences", "analytics", "marketing"):
        open_category(page, category)
    assert_accessible(page, "edit site with every category open")
    page.locator("#origins").fill("javascript:alert(1)\n*")
    page.locator("#rows_analytics-0-duration").fill("forever")
    page.locator("#rows_marketing-0-purpose_sv").fill("")
    page.locator("#name").fill("<script>alert(1)</script>")
    page.locator("button[name=step][value=save]").click()
    expect(page.locator(".error-summary")).to_be_visible()
    assert page.locator("p.error").count() == 4
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    assert_accessible(page, "edit site with errors")
    page.goto(f"{base}/admin/sites/demo/snippet")
    page.locator("iframe").last.scroll_into_view_if_needed()
    assert_accessible(page, "embed code")
    page.goto(f"{base}/admin/sites/demo/preview?lang={lang}")
    expect(page.locator("[data-keksi]")).to_be_attached()  # the widget's banner, in its shadow root
    page.wait_for_load_state("networkidle")
    assert_accessible(page, "banner preview")
    post_choices(page, base, "demo")
    page.goto(f"{base}/admin/sites/demo/figures")
    for summary in page.locator("details summary").all():
        summary.click()
    assert_accessible(page, "figures")
    page.goto(f"{base}/admin/sites/demo/figures?from=2026-11-30&to=2026-11-01")
    expect(page.locator("#from-error")).to_be_visible()
    assert_accessible(page, "figures with a bad range")
    page.goto(f"{base}/admin/sites/demo/figures?from=2025-11-23&to=2026-11-22")
    assert_accessible(page, "figures for a year")


# Text that passes the forms' checks (no tags) but would run if any page or the widget put it in
# HTML or an attribute unescaped, decoded entities, or evaluated templates. Each sets __xss if run.
PASSES_THE_FORMS = {
    "attribute": '" onmouseover="window.__xss=1" autofocus onfocus="window.__xss=1" x="',
    "single": "' autofocus onfocus='window.__xss=1' x='",
    "entities": "&lt;img src=x onerror=window.__xss=1&gt;",
    "numeric": "&#60;img src=x onerror=window.__xss=1&#62;",
    "url": "javascript:window.__xss=1",
    "template": "{{ 7*7 }} ${window.__xss=1} %(site)s {% raw %}",
}


def test_hostile_text_that_passes_the_forms_never_runs_where_it_is_shown(page: Page, live_server, app):
    """Saved through the real form, then shown in every admin page, the banner preview, the widget
    on a host page (panel open, every service expanded) and the visitor's receipt: shown as text,
    never run."""
    from .widget_host import HostServer, host_page
    p = PASSES_THE_FORMS
    base = live_server.url
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    with HostServer() as host:
        browser_sign_in(page, base, "marketing@example.fi")
        page.goto(f"{base}/admin/sites/new")
        page.get_by_label("Name", exact=True).fill(p["attribute"])
        page.get_by_label("Id", exact=True).fill("hostile")
        page.get_by_label("Origins").fill(host.url)
        fill_row(page, "necessary", 0, service=p["entities"], provider=p["single"], name="sid",
                 duration="session", purpose_fi=p["template"], purpose_sv=p["numeric"], purpose_en=p["url"])
        fill_row(page, "analytics", 0, service=p["numeric"], provider=p["url"], name="_pk_id.*",
                 cookie_provider=p["attribute"], duration="P13M", purpose_fi=p["single"],
                 purpose_sv=p["entities"], purpose_en=p["template"])
        page.get_by_role("button", name="Add the site").click()
        expect(page.locator(".flash")).to_contain_text("was added")

        def harmless(where: str) -> None:
            page.mouse.move(5, 5)
            page.mouse.move(200, 300)
            page.keyboard.press("Tab")
            page.wait_for_timeout(50)
            for frame in page.frames:
                assert frame.evaluate("window.__xss") is None, f"{where}: {frame.url}"
            assert page.evaluate("document.querySelectorAll('[onmouseover], [onfocus], [onerror]').length") == 0

        for path in ("/admin/sites/", "/admin/sites/hostile/edit", "/admin/sites/hostile/snippet",
                     "/admin/sites/hostile/figures"):
            page.goto(base + path)
            harmless(path)
        page.goto(f"{base}/admin/sites/hostile/snippet")
        for frame in page.locator("iframe").all():
            frame.scroll_into_view_if_needed()
            expect(frame.content_frame.locator("[data-keksi]")).to_be_attached()
        harmless("banner previews")

        page.goto(host.add("/", host_page(f"{base}/widget/v1/consent.js", site="hostile", lang="en")))
        region = page.get_by_role("region", name="Cookie consent")
        region.get_by_role("button", name="Choose").click()
        panel = page.get_by_role("dialog")
        for summary in panel.locator("summary").all():
            summary.click()
        expect(panel).to_contain_text(p["template"])  # shown as text: no template was evaluated
        expect(panel).to_contain_text(p["entities"])  # entities shown as typed, not decoded into a tag
        harmless("widget panel")
        panel.get_by_role("button", name="Accept all").click()
        acknowledged = """() => (decodeURIComponent(document.cookie).match(/"i":"([0-9a-f]{32})"/) || [])[1]"""
        consent_id = page.wait_for_function(acknowledged).json_value()
        page.goto(f"{base}/en/receipt/{consent_id}")
        expect(page.get_by_role("heading", level=1)).to_have_text("Consent receipt")
        expect(page.locator("main")).to_contain_text(p["attribute"])
        harmless("receipt")
    assert dialogs == []


def test_marketing_edits_a_purpose_and_adds_a_category_in_the_form(page: Page, live_server, app):
    """Without any script of ours: "Add a category" posts the form and gets it back with one more
    block; a bad id is answered beside it; the saved texts reach the widget's config."""
    base = live_server.url
    add_site(app)
    browser_sign_in(page, base, "marketing@example.fi")
    page.goto(f"{base}/admin/sites/demo/edit")
    open_category(page, "analytics")
    analytics = page.locator("#category-analytics")
    expect(analytics.get_by_label("Category name (Svenska)")).to_have_value("Analys")
    analytics.get_by_label("Category purpose (Svenska)").fill("Räknar besök på våra egna servrar.")
    page.get_by_role("button", name="Add a category").click()

    status = page.get_by_role("status")
    expect(status).to_contain_text("A new category was added")
    expect(analytics.get_by_label("Category purpose (Svenska)")).to_have_value(
        "Räknar besök på våra egna servrar.")  # kept, though nothing was saved
    status.get_by_role("link").click()
    block = page.get_by_role("group", name="New category", exact=True)
    block.get_by_label("Category id").fill("Customer Chat")
    names = {"fi": "Asiakaspalvelun chat", "sv": "Kundtjänstens chatt", "en": "Customer chat"}
    purposes = {"fi": "Muistaa keskustelusi.", "sv": "Minns ditt samtal.", "en": "Remembers your chat."}
    for lang, language in LANGUAGE_NAMES.items():
        block.get_by_label(f"Category name ({language})").fill(names[lang])
        block.get_by_label(f"Category purpose ({language})").fill(purposes[lang])
    for name, value in {"service": "Chat", "provider": "Tiimityö Oy", "name": "chat_id", "duration": "P30D",
                        "purpose_fi": "Tunniste.", "purpose_sv": "Id.", "purpose_en": "The id."}.items():
        page.locator(f"#custom-0-rows-0-{name}").fill(value)
    assert_accessible(page, "edit site with a new category")
    page.get_by_role("button", name="Save").click()

    id_field = page.locator("#custom-0-category_id")
    expect(page.locator(".error-summary")).to_contain_text("Customer chat: Category id")
    expect(page.locator("#custom-0-category_id-error")).to_contain_text("lower-case letters")
    expect(id_field).to_have_attribute("aria-invalid", "true")
    assert "custom-0-category_id-error" in id_field.get_attribute("aria-describedby")
    assert_accessible(page, "edit site with a bad category id")
    id_field.fill("customer-chat")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash").first).to_contain_text("were saved")

    cfg = page.context.request.get(f"{base}/api/v1/sites/demo/config?lang=sv", headers={"Origin": ORIGIN}).json()
    by_id = {c["id"]: c for c in cfg["categories"]}
    assert by_id["analytics"]["purpose"] == "Räknar besök på våra egna servrar."
    assert (by_id["customer-chat"]["label"], by_id["customer-chat"]["purpose"]) == (names["sv"], purposes["sv"])
    assert by_id["customer-chat"]["services"][0]["cookies"][0]["name"] == "chat_id"
    page.goto(f"{base}/admin/sites/demo/edit")
    page.locator("summary", has_text="Customer chat").click()
    expect(page.get_by_role("group", name="Customer chat", exact=True).get_by_label("Category id")).to_have_attribute(
        "readonly", "")
    assert_accessible(page, "edit site with a category of its own")


def test_marketing_adds_a_catalogue_service_on_a_phone(page: Page, live_server, app):
    """At 375 px, with JavaScript off: pick Microsoft Clarity from the catalogue, add it, find it in
    the analytics category with its cookies; the page never scrolls sideways."""
    base = live_server.url
    add_site(app)
    page.set_viewport_size({"width": 375, "height": 800})
    browser_sign_in(page, base, "marketing@example.fi")
    page.context.route("**/*.js", lambda route: route.abort())  # the form works without our script
    page.goto(f"{base}/admin/sites/demo/edit")
    form = page.get_by_role("form", name="Add a service from the catalogue")
    form.get_by_label("Service").select_option(label="Microsoft Clarity")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    form.get_by_role("button", name="Add the service").click()

    expect(page.get_by_text("Microsoft Clarity was added to Analytics with its cookies.")).to_be_visible()
    expect(page.locator("details:has(#category-analytics) summary")).to_contain_text("6 cookies")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_the_notice_pickers_show_titles_in_the_admins_language(page: Page, live_server, app):
    base = live_server.url
    add_site(app)
    browser_sign_in(page, base, "marketing@example.fi", "fi")
    page.goto(f"{base}/admin/sites/demo/edit")
    privacy = page.get_by_label("Tietosuojaseloste", exact=True)
    expect(privacy.locator("option:checked")).to_have_text("Tietosuojaseloste (privacy)")
    expect(privacy.locator("option")).to_have_text(["Evästeseloste (cookies)", "Tietosuojaseloste (privacy)"])
    cookies = page.get_by_label("Evästeseloste", exact=True)
    cookies.select_option(label="Tietosuojaseloste (privacy)")
    expect(cookies).to_have_value("privacy")  # the slug is what is saved
    assert_accessible(page, "the site form's notice pickers")
