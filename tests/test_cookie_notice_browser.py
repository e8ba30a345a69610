"""The drafted cookie notice in Chromium at 375 px: its widest table (six columns) scrolls in its own box,
never the page, no word is broken, every column can be scrolled into view, and axe finds nothing; legal's
draft, from the button to the preview, fits the same screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import LiveServer, add_user, assert_accessible, browser_sign_in, publish_all
from .ledger import add_site
from .test_admin_notices_browser import no_sideways_scroll

pytestmark = pytest.mark.browser

# Each word of the table (a hyphen may end a line) that takes more than one line box, or that its
# cell cuts off.
BROKEN_WORDS = """t => {
  const found = [];
  for (const cell of t.querySelectorAll('th, td')) {
    if (cell.scrollWidth > cell.clientWidth + 1) found.push(cell.textContent);
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/[^\\s-]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if (range.getClientRects().length > 1) found.push(match[0]);
      }
    }
  }
  return found;
}"""


@pytest.fixture
def server(make_app):
    app = make_app()
    add_site(app)
    assert app.test_cli_runner().invoke(args=["notices", "draft-cookies", "demo"]).exit_code == 0
    publish_all(app)
    with LiveServer(app) as live:
        yield live


@pytest.mark.parametrize("lang", ["fi", "en"])
def test_the_drafted_tables_are_readable_at_375_px(server, page, lang):
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{server.url}/{lang}/cookies")
    assert no_sideways_scroll(page)
    table = page.locator(".notice-body table", has_text="li_fat_id")
    headers = table.locator("th")
    assert headers.count() == 6
    box = table.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    # No word is broken across lines, nor cut off by its cell.
    broken = table.evaluate(BROKEN_WORDS)
    assert broken == []
    size = float(table.locator("td").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    assert size >= 14
    # The last column scrolls into the table's box, and the first cell is still a cookie name.
    table.evaluate("t => t.scrollLeft = t.scrollWidth")
    last = headers.last.bounding_box()
    assert last["x"] >= 0 and last["x"] + last["width"] <= 375 + 1
    assert table.locator("td code").first.inner_text() == "_gcl_au"
    assert_accessible(page, f"the drafted cookie notice in {lang}")


def test_legal_drafts_and_previews_at_375_px(make_app, page):
    app = make_app()
    add_site(app)
    add_user(app, "legal@example.fi", "legal")
    with LiveServer(app) as server:
        page.set_viewport_size({"width": 375, "height": 800})
        browser_sign_in(page, server.url, "legal@example.fi")
        page.goto(f"{server.url}/admin/notices")
        page.get_by_role("link", name="Draft from the declaration of Tiimityö (demo)").click()
        expect(page.get_by_role("heading", name="Drafted from the declaration of Tiimityö (demo)")).to_be_visible()
        assert no_sideways_scroll(page), "the drafted form"
        assert_accessible(page, "the drafted form")
        page.get_by_label("Effective date").fill("2026-11-22")
        page.get_by_role("button", name="Preview").click()
        preview = page.locator("details.preview").first
        expect(preview.locator("table", has_text="li_fat_id")).to_be_visible()
        assert no_sideways_scroll(page), "the preview of the draft"
