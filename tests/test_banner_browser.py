"""The banner as a visitor and marketing see it, in headless Chromium: it never hides the page,
its tables never break a word, the site's own look is applied under a strict CSP, and the admin
refuses (and previews) a look whose contrast fails WCAG 2.2 AA.

The customer's page is served from a second origin (tests/widget_host.py), as marketing embeds it.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Iterator

import pytest
from playwright.sync_api import Page, expect

from keksi.store import open_store

from .conftest import SHIPPED_NOTICES, LiveServer, add_user, browser_sign_in, sample_app
from .ledger import DEMO_SITE, add_site
from .widget_host import HostServer, host_page

pytestmark = pytest.mark.browser

SIZES = {375: 740, 1280: 800}  # viewport width -> height
# Many paragraphs with links, so that keyboard focus walks the whole page under the banner.
LONG_BODY = "\n".join(f'<p id="p{i}">Paragraph {i} of the customer\'s page, with '
                      f'<a href="#p{i}">link {i}</a> in it and enough words to wrap on a phone.</p>'
                      for i in range(30)) + '\n<p id="last">The last paragraph of the page.</p>'
STRICT_CSP = "default-src 'self'; script-src 'self' {app}; connect-src {app}; style-src 'self'"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer, HostServer]]:
    """One consent server and one customer origin for the module; each test adds its own site."""
    # The notices a new install publishes, on the day the cookie notice that lists keksi_queue takes effect.
    app = sample_app(tmp_path_factory.mktemp("banner"), SHIPPED_NOTICES, RATE_LIMIT=10_000, FIXED_TODAY="2026-12-02")
    add_user(app, "marketing@example.fi", "marketing")
    with LiveServer(app) as server, HostServer() as host:
        yield app, server, host


def customer_page(servers: Any, site_id: str, theme: dict[str, Any] | None = None, body: str = LONG_BODY,
                  lang: str = "en") -> str:
    """A customer's page embedding a site of its own (the demo's categories) under a strict CSP."""
    app, server, host = servers
    add_site(app, dict(DEMO_SITE, id=site_id, origins=[host.url], **({"theme": theme} if theme else {})))
    html = host_page(f"{server.url}/widget/v1/consent.js", site=site_id, lang=lang, body=body)
    return host.add(f"/{site_id}", html, **{"Content-Security-Policy": STRICT_CSP.format(app=server.url)})


def open_banner(page: Page, url: str) -> Any:
    page.add_init_script("window.violations = []; document.addEventListener('securitypolicyviolation',"
                         " e => violations.push(e.violatedDirective))")
    page.goto(url)
    region = page.get_by_role("region", name="Cookie consent")
    expect(region).to_be_visible()
    return region


def banner_top(page: Page) -> float:
    return page.evaluate("document.querySelector('[data-keksi]').shadowRoot.querySelector('.b')"
                         ".getBoundingClientRect().top")


# -- the banner never hides the page (issue 11.4) ----------------------------------------------


@pytest.mark.parametrize("width,position", [(375, "bottom"), (1280, "bottom"), (375, "center"),
                                            (1280, "corner")])
def test_the_end_of_the_page_scrolls_out_from_under_the_banner(page: Page, servers, width, position):
    page.set_viewport_size({"width": width, "height": SIZES[width]})
    theme = None if position == "bottom" else {"position": position}
    open_banner(page, customer_page(servers, f"end-{width}-{position}", theme))
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    page.wait_for_function("scrollY + innerHeight >= document.scrollingElement.scrollHeight - 1")
    top = banner_top(page)
    assert 0 < top < SIZES[width]
    for selector in ("#last", "#settings"):  # the last paragraph, the footer's "Cookie settings"
        box = page.locator(selector).bounding_box()
        assert box["y"] + box["height"] <= top + 0.5, f"{selector} is under the banner at {width} px"
        assert box["y"] >= 0
    # The settings link can be clicked where it is: nothing covers it.
    page.locator("#settings").click()
    expect(page.get_by_role("dialog")).to_be_visible()


@pytest.mark.parametrize("width,position", [(375, "bottom"), (1280, "bottom"), (1280, "center")])
def test_keyboard_focus_never_lands_behind_the_banner(page: Page, servers, width, position):
    page.set_viewport_size({"width": width, "height": SIZES[width]})
    theme = None if position == "bottom" else {"position": position}
    open_banner(page, customer_page(servers, f"focus-{width}-{position}", theme))
    page.wait_for_function("document.activeElement && document.activeElement.matches('[data-keksi]')")
    seen = []
    for _ in range(45):  # the banner's controls, then every link of the page, then the footer
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => {
            const a = document.activeElement;
            if (!a || a.matches('[data-keksi]') || a === document.body) return null;
            const r = a.getBoundingClientRect();
            return {id: a.id || a.textContent, top: r.top, bottom: r.bottom};
        }""")
        if focused is None:
            continue
        top = banner_top(page)
        seen.append(focused["id"])
        assert focused["bottom"] <= top + 0.5 and focused["top"] >= 0, \
            f"{focused['id']} has focus behind the banner at {width} px ({position})"
        if focused["id"] == "settings":
            break
    assert "settings" in seen and len(seen) > 30, seen


def test_the_page_gets_its_room_back_after_a_choice(page: Page, servers):
    page.set_viewport_size({"width": 375, "height": SIZES[375]})
    region = open_banner(page, customer_page(servers, "room-back"))
    padded = page.evaluate("document.scrollingElement.scrollHeight")
    region.get_by_role("button", name="Reject all").click()
    expect(region).to_be_hidden()
    page.wait_for_function(f"document.scrollingElement.scrollHeight < {padded}")
    assert page.evaluate("getComputedStyle(document.documentElement).paddingBottom") == "0px"


# -- no word broken in the middle (issue 11.5) --------------------------------------------------

# Every word of the text under `root` whose letters are laid out on more than one line. Words are
# split at spaces and at the places a browser may break without breaking a word (hyphens, slashes).
BROKEN_WORDS = """root => {
    const broken = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (!node.parentElement || !node.parentElement.getClientRects().length) continue;
        const re = /[^\\s\\-\\u2013/]+/g;
        for (let m = re.exec(node.data); m; m = re.exec(node.data)) {
            if (m[0].length < 2) continue;
            const range = document.createRange();
            range.setStart(node, m.index);
            range.setEnd(node, m.index + m[0].length);
            const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
            if (tops.size > 1) broken.push(m[0]);
        }
    }
    return broken;
}"""


@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("lang", ["fi", "en"])
def test_no_word_is_broken_in_the_panel(page: Page, servers, width, lang):
    page.set_viewport_size({"width": width, "height": SIZES[width]})
    url = customer_page(servers, f"words-{width}-{lang}", lang=lang, body="<p>Short page.</p>")
    page.goto(url)
    panel = page.get_by_role("dialog")
    # The widget takes the footer link's clicks once it has its configuration (and shows the banner).
    expect(page.locator("[data-keksi] .b")).to_be_visible()
    page.locator("#settings").click()
    expect(panel).to_be_visible()
    for summary in panel.locator("summary").all():
        summary.click()
    tables = panel.locator("table")
    expect(tables.first).to_be_visible()
    assert panel.evaluate(BROKEN_WORDS) == []
    for table in tables.all():
        fits = table.evaluate("t => t.scrollWidth <= t.clientWidth + 1")
        if not fits:  # a table wider than the screen scrolls in its own box, not the page
            assert table.evaluate("t => getComputedStyle(t).overflowX") == "auto"
            assert width == 375
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")


@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("lang", ["fi", "sv", "en"])
def test_no_word_is_broken_in_the_public_cookie_notice(page: Page, servers, width, lang):
    _app, server, _host = servers
    page.set_viewport_size({"width": width, "height": SIZES[width]})
    page.goto(f"{server.url}/{lang}/cookies")
    body = page.locator(".notice-body")
    expect(body.locator("table").first).to_be_visible()
    expect(body).to_contain_text("keksi_queue")  # Keksi's own item in localStorage is declared
    assert body.evaluate(BROKEN_WORDS) == []
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
    for table in body.locator("table").all():
        if not table.evaluate("t => t.scrollWidth <= t.clientWidth + 1"):
            assert table.evaluate("t => getComputedStyle(t).overflowX") == "auto"


# The pixels of a PNG, decoded by the browser on a blank page (no image library needed here).
PIXELS = """async src => { const i = new Image(); i.src = src; await i.decode();
    const c = document.createElement('canvas'); c.width = i.width; c.height = i.height;
    const x = c.getContext('2d'); x.drawImage(i, 0, 0); return [...x.getImageData(0, 0, i.width, i.height).data]; }"""


@pytest.mark.parametrize("look", ["dark", "light"])
def test_a_cookie_table_that_scrolls_shows_it_on_a_dark_look_as_on_a_light_one(page: Page, servers, look):
    """At 375 px a table wider than the panel scrolls; the shadow at its cut right edge is the only
    sign. It was black at 27 %: on a dark look it could not be seen, the table looked cut off."""
    theme = dict(DARK, position="bottom") if look == "dark" else None
    page.set_viewport_size({"width": 375, "height": SIZES[375]})
    page.goto(customer_page(servers, f"scroll-cue-{look}", theme, body="<p>Short page.</p>", lang="fi"))
    expect(page.locator("[data-keksi] .b")).to_be_visible()
    page.locator("#settings").click()
    panel = page.get_by_role("dialog")
    for summary in panel.locator("summary").all():
        summary.click()
    # In Finnish the first table is wider than the screen at 375 px.
    table = next(t for t in panel.locator("table").all() if t.evaluate("t => t.scrollWidth > t.clientWidth + 1"))
    # Only the backgrounds are compared: the text is made transparent (the cell borders stay put).
    table.evaluate("t => { t.querySelectorAll('th, td').forEach(c => c.style.color = 'transparent');"
                   " t.scrollIntoView({block: 'center'}); }")
    box = table.bounding_box()
    # The shadow is an ellipse on the right edge, strongest at its middle.
    strip = {"x": box["x"] + box["width"] - 10, "y": box["y"] + box["height"] / 2 - 30, "width": 8, "height": 60}

    def shot() -> list[int]:
        data = base64.b64encode(page.screenshot(clip=strip)).decode()
        return blank.evaluate(PIXELS, f"data:image/png;base64,{data}")

    blank = page.context.new_page()
    page.bring_to_front()
    cut = shot()  # scrolled to the start: more to the right
    table.evaluate("t => t.scrollLeft = t.scrollWidth")
    end = shot()  # scrolled to the end: nothing more, no shadow
    assert len(cut) == len(end)
    difference = max(abs(a - b) for a, b in zip(cut, end))
    assert difference >= 40, f"the scroll shadow differs from the page by {difference} of 255 at most"


# -- the site's own look (issue 11.11) ------------------------------------------------------------

DARK = {"background": "#14171c", "text": "#e6e9ee", "link": "#8cc4ff", "button": "#ffd166",
        "button_text": "#14171c", "focus": "#f5a524", "font": "Georgia, serif", "radius": 14,
        "position": "corner"}


def rgb(colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))


def test_a_site_look_is_applied_under_a_strict_csp(page: Page, servers):
    page.set_viewport_size({"width": 1280, "height": SIZES[1280]})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    region = open_banner(page, customer_page(servers, "dark", DARK))
    style = region.evaluate("""b => { const s = getComputedStyle(b); return {
        bg: s.backgroundColor, fg: s.color, font: s.fontFamily, right: s.right, bottom: s.bottom,
        radius: s.borderTopLeftRadius, width: b.getBoundingClientRect().width}; }""")
    assert (style["bg"], style["fg"]) == (rgb(DARK["background"]), rgb(DARK["text"]))
    assert style["font"].startswith('"Georgia"') or style["font"].startswith("Georgia")
    assert style["radius"] == "14px"
    assert style["right"] == style["bottom"] == "16px"  # a box in the corner, not a bar
    assert style["width"] < 1280 / 2
    accept = region.get_by_role("button", name="Accept all")
    assert accept.evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]") == \
        [rgb(DARK["button"]), rgb(DARK["button_text"])]
    assert region.get_by_role("link").first.evaluate("e => getComputedStyle(e).color") == rgb(DARK["link"])
    # The panel wears the same look.
    region.get_by_role("button", name="Choose").click()
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    assert panel.evaluate("d => getComputedStyle(d).backgroundColor") == rgb(DARK["background"])
    # No inline style anywhere, and nothing the strict CSP refused.
    assert page.evaluate("""() => [document, ...[...document.querySelectorAll('[data-keksi]')]
        .map(h => h.shadowRoot)].every(r => !r.querySelector('[style]'))""")
    assert page.evaluate("violations") == []
    assert not errors, errors


def test_marketing_sees_the_look_live_and_a_failing_contrast_is_refused(page: Page, servers):
    app, server, _host = servers
    add_site(app, dict(DEMO_SITE, id="looks"))
    page.set_viewport_size({"width": 1280, "height": 900})
    browser_sign_in(page, server.url, "marketing@example.fi")
    page.goto(f"{server.url}/admin/sites/looks/edit")
    preview = page.locator(".theme-preview > div")
    expect(preview.locator(".b")).to_contain_text("Accept all")

    # Live: a new button colour shows in the preview before anything is saved.
    page.locator("#theme_button").fill("#7a1f5c")
    expect(preview.locator("button").first).to_have_css("background-color", rgb("#7a1f5c"))
    page.get_by_label("Position").select_option("center")
    expect(preview.locator(".b")).to_have_css("transform", re.compile(r"^matrix\(1, 0, 0, 1, -"))

    # Pale grey text on white: the preview says which pair fails and by how much, then saving refuses.
    page.locator("#theme_text").fill("#b0b0b0")
    problems = page.locator("[data-theme-problems]")
    expect(problems).to_contain_text("Text on Background: the contrast is 2.")
    expect(problems).to_contain_text("WCAG 2.2 AA needs 4.5:1")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".error-summary")).to_contain_text("Text on Background")
    expect(page.locator("#theme_text-error")).to_contain_text("short")
    expect(page.locator("#theme_text")).to_have_attribute("aria-invalid", "true")
    assert get_site(app, "looks").get("theme") is None  # nothing saved

    page.locator("#theme_text").fill("#1b1f24")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash").first).to_contain_text("were saved")
    saved = get_site(app, "looks")["theme"]
    assert (saved["button"], saved["position"]) == ("#7a1f5c", "center")
    style = page.context.request.get(f"{server.url}/api/v1/sites/looks/config?lang=en").json()["style"]
    assert "--k-bt:#7a1f5c" in style and "translate(-50%,-50%)" in style


def get_site(app: Any, site_id: str) -> dict[str, Any]:
    store = open_store(app.config["DATABASE"])
    try:
        return store.site(site_id)
    finally:
        store.close()


# -- the site form fits the screen (issue 12.6, the site form) ------------------------------------

FIELD_BOX = "e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }"


@pytest.mark.parametrize("width", [375, 1280])
def test_the_site_form_can_be_scanned_and_never_scrolls_sideways(page: Page, servers, width):
    app, server, _host = servers
    add_site(app, dict(DEMO_SITE, id=f"form-{width}"))
    page.set_viewport_size({"width": width, "height": 900})
    browser_sign_in(page, server.url, "marketing@example.fi")
    page.goto(f"{server.url}/admin/sites/form-{width}/edit")
    # The categories are groups that say what is in them; closed, the whole form is short.
    groups = page.locator("details.category")
    expect(groups).to_have_count(4)
    expect(groups.nth(2).locator("summary")).to_have_text("Analytics visitors are asked, 2 cookies")
    if width == 1280:
        assert page.evaluate("document.scrollingElement.scrollHeight") < 4500
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")

    for group in groups.all():
        group.locator("summary").click()
    # Texts visitors read are in the normal font, in boxes as tall as the text.
    for area in page.locator("textarea[id*=purpose]").all()[:12]:
        assert "mono" not in area.evaluate("e => getComputedStyle(e).fontFamily")
        assert area.evaluate("e => e.scrollHeight <= e.clientHeight + 1"), area.get_attribute("id")
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")

    # An error is said beside the field without changing its size or the page's width.
    fields = ["#rows_analytics-0-duration", "#origins", "#theme_text", "#rows_marketing-0-purpose_sv"]
    page.locator("#origins").fill("https://www.example.fi/a/very/long/path/that/is/not/an/origin/at/all/" * 3)
    page.locator("#rows_analytics-0-duration").fill("forever-and-ever-and-ever-and-ever-and-ever-and-ever")
    page.locator("#rows_marketing-0-purpose_sv").fill("")
    page.locator("#theme_text").fill("#dddddd")
    before = [page.locator(f).evaluate(FIELD_BOX) for f in fields]
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".error-summary")).to_be_visible()
    expect(page.locator("p.error")).to_have_count(4)
    after = [page.locator(f).evaluate(FIELD_BOX) for f in fields]
    for field, (w0, h0), (w1, h1) in zip(fields, before, after):
        assert abs(w0 - w1) < 1 and abs(h0 - h1) < 1, f"{field} changed size with its error"
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_a_public_notice_table_that_scrolls_shows_a_shadow_at_its_cut_edge(page: Page, servers, scheme):
    """The public cookie notice's tables scroll on a phone; a shadow at the cut edge says so, and
    goes once scrolled to that end (the covers that hide it are as wide as the shadow)."""
    _app, server, _host = servers
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": 375, "height": SIZES[375]})
    page.goto(f"{server.url}/fi/cookies")
    table = page.locator(".notice-body table").first
    # A few pixels too wide: the case a wide fading cover used to hide.
    table.evaluate("t => { t.querySelectorAll('th, td').forEach(c => c.style.color = 'transparent');"
                   " t.querySelector('th').style.minWidth = (t.clientWidth + 12) + 'px';"
                   " t.scrollIntoView({block: 'center'}); }")
    assert table.evaluate("t => t.scrollWidth - t.clientWidth") >= 10
    box = table.bounding_box()
    strip = {"x": box["x"] + box["width"] - 8, "y": box["y"] + box["height"] / 2 - 10, "width": 6, "height": 20}
    blank = page.context.new_page()
    page.bring_to_front()

    def shot() -> list[int]:
        data = base64.b64encode(page.screenshot(clip=strip)).decode()
        return blank.evaluate(PIXELS, f"data:image/png;base64,{data}")

    cut = shot()
    table.evaluate("t => t.scrollLeft = t.scrollWidth")
    end = shot()
    difference = max(abs(a - b) for a, b in zip(cut, end))
    assert difference >= 40, f"the scroll shadow differs from the page by {difference} of 255 at most"
