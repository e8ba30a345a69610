"""The notice site in headless Chromium: reading, switching language, history and diff, keyboard, axe-core, narrow screens."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .conftest import assert_accessible

pytestmark = [
    pytest.mark.browser,
    # pytest-playwright's base_url fixture, not ours; pytest 9 warns about its form.
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods"
                               ":pytest.PytestRemovedIn10Warning"),
]

LANGS = ("fi", "sv", "en")
DIFF = "/privacy/diff/2025-03-01/2026-04-09"
PAGES = {  # every kind of page, by a name for the test id
    "index": ("/", 200),
    "current": ("/privacy", 200),
    "cookies": ("/cookies", 200),  # tables
    "superseded": ("/privacy/2025-03-01", 200),
    "versions": ("/privacy/versions", 200),
    "diff": (DIFF, 200),
    "404": ("/no-such-notice", 404),
}


def test_read_switch_language_open_history_and_diff(page: Page, sample_server):
    page.goto(f"{sample_server.url}/en/privacy")
    updated, heading = page.locator("article .updated"), page.locator("h1")
    expect(updated).to_have_text("Last updated 9 April 2026")
    expect(updated).to_be_visible()
    assert updated.bounding_box()["y"] < heading.bounding_box()["y"], "the date is above the title"

    page.get_by_role("navigation", name="Language").get_by_role("link", name="Suomi").click()
    expect(page).to_have_url(f"{sample_server.url}/fi/privacy")
    expect(page.locator("html")).to_have_attribute("lang", "fi")
    expect(heading).to_have_text("Tietosuojaseloste")
    expect(updated).to_have_text("Päivitetty 9.4.2026")

    page.get_by_role("link", name="Versiohistoria", exact=True).click()
    expect(page).to_have_url(f"{sample_server.url}/fi/privacy/versions")
    expect(page.get_by_text("Olennainen muutos", exact=True)).to_be_visible()

    page.get_by_role("link", name="Vertaa 1.3.2025 versioon").click()
    expect(page).to_have_url(f"{sample_server.url}/fi{DIFF}")
    added = page.locator("li.diff-added").filter(has_text="Tietosuojavastaava: Aino Virtanen")
    expect(added).to_be_visible()
    expect(added.locator(".diff-sign")).to_have_text("+")
    changed = page.locator("li.diff-removed del").first
    expect(changed).to_be_visible()
    # Not colour alone: added text is underlined, removed text struck through.
    assert "underline" in added.locator("ins").evaluate("e => getComputedStyle(e).textDecorationLine")
    assert "line-through" in changed.evaluate("e => getComputedStyle(e).textDecorationLine")
    expect(page.locator("li.diff-removed .diff-sign").first).to_have_text("−")


def test_skip_link_comes_first_and_moves_focus_to_main(page: Page, sample_server):
    page.goto(f"{sample_server.url}/en/privacy")
    page.keyboard.press("Tab")
    skip = page.locator(":focus")
    expect(skip).to_have_text("Skip to content")
    expect(skip).to_have_class("skip-link")
    box = skip.bounding_box()
    assert box and box["y"] >= 0 and box["height"] > 0, "the focused skip link is on screen"
    page.keyboard.press("Enter")
    expect(page.locator(":focus")).to_have_id("main")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null"), "the next stop is in the content"


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", PAGES)
def test_no_accessibility_violations(page: Page, sample_server, lang, name):
    path, status = PAGES[name]
    response = page.goto(f"{sample_server.url}/{lang}{path}")
    assert response.status == status
    expect(page.locator("html")).to_have_attribute("lang", lang)
    assert_accessible(page)


@pytest.mark.parametrize("path", ["/en/privacy/2025-03-01", f"/sv{DIFF}"])
def test_no_accessibility_violations_in_dark_mode(page: Page, sample_server, path):
    page.emulate_media(color_scheme="dark")
    page.goto(sample_server.url + path)
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    assert_accessible(page)


@pytest.mark.parametrize("path", [f"/en{DIFF}", "/fi/cookies", "/en/cookies",
                                  "/sv/cookies/diff/2025-03-01/2025-09-15"])
def test_no_horizontal_scroll_at_320_px(page: Page, sample_server, path):
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(sample_server.url + path)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, f"{path} is {width} px wide at a 320 px viewport"
