"""The public diff as a reader sees it in Chromium: rendered text, one column that fits a phone, axe-clean."""

from __future__ import annotations

import pytest

from .conftest import LiveServer, assert_accessible, write_version

pytestmark = pytest.mark.browser

LONG = "https://tietosuoja.example/" + "hyvin-pitka-osoite-" * 8


@pytest.fixture
def server(make_app, notices_dir):
    write_version(notices_dir, "privacy", "2026-12-02", material=True, body=(
        "## 1. Rekisterinpitäjä\n\nTiimityö Oy, **Y-tunnus 1234567-8**.\n\n## 2. Käyttötarkoitukset\n\n"
        f"- Tilaukset\n- **Asiakaspalautekyselyt**, katso [{LONG}]({LONG})\n\n"
        "| Eväste | Palveluntarjoaja | Kesto |\n|---|---|---|\n| _pk_id | Matomo (oma palvelin) | 13 kuukautta |\n"))
    with LiveServer(make_app()) as live:
        yield live


@pytest.mark.parametrize("width", [375, 1280])
def test_the_diff_reads_as_text_fits_the_screen_and_passes_axe(server, page, width):
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(f"{server.url}/fi/privacy/diff/2026-04-09/2026-12-02")
    diff = page.locator("ol.diff")
    text = diff.inner_text()
    assert "Asiakaspalautekyselyt" in text
    for syntax in ("##", "**", "](", "|---"):
        assert syntax not in text
    # Headings look like headings and added text is underlined, not only coloured.
    heading = page.locator("ol.diff li.diff-h2", has_text="Käyttötarkoitukset").first
    assert int(heading.locator(".diff-text").evaluate("e => getComputedStyle(e).fontWeight")) >= 700
    added = page.locator("ol.diff li.diff-added", has_text="Asiakaspalautekyselyt").first
    assert "underline" in added.locator("ins").first.evaluate("e => getComputedStyle(e).textDecorationLine")
    assert added.locator(".diff-sign").inner_text() == "+"
    # One column, no sideways scrolling, even with a long address in a line.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert_accessible(page, f"the diff at {width} px")
