"""Legal's publishing in a real browser: the undo warning and its tick, publish and withdraw with a
reason and a confirmation, error summaries that take focus, and the audit log at 375 and 1280 px."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from keksi import notices
from keksi.store import open_store

from .conftest import add_user, assert_accessible, browser_sign_in
from .test_admin_notices import stored_langs

pytestmark = pytest.mark.browser

SURVEYS = "- **Customer feedback surveys** – consent."


@pytest.fixture
def app(make_app):
    app = make_app(FIXED_TODAY="2026-12-02")
    add_user(app, "legal@example.fi", "legal")
    return app


def publish_january_from_the_old_text(app) -> None:
    """The upcoming version of issue 12's scenario, written from the text in effect."""
    store = open_store(app.config["DATABASE"])
    try:
        rows = []
        for lang in ("fi", "sv", "en"):
            old = store.notice_version("privacy", "2026-04-09", lang)
            source = notices.compose_source("privacy", "2027-01-15", lang, old["title"], "Retention stated.",
                                            False, old["body"] + "\nSupport messages are deleted after 36 months.\n")
            rows.append(source.row())
        store.publish_notice_versions(rows, "tests", "January text")
    finally:
        store.close()


def focused(page) -> str:
    return page.evaluate("document.activeElement.className || document.activeElement.id")


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_the_undo_warning_needs_its_tick_and_publishing_a_reason_and_a_confirmation(page, live_server, app):
    publish_january_from_the_old_text(app)
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi")
    page.get_by_role("link", name="Notices", exact=True).first.click()
    page.get_by_role("link", name="New version of Privacy notice").click()
    expect(page.locator(".start-from")).to_contain_text("the upcoming version of 15 January 2027, the latest by date")
    page.get_by_role("link", name="the current version, of 9 April 2026").click()
    page.get_by_label("Effective date").fill("2026-12-02")
    page.get_by_label("Material change").check()
    for lang, name in (("fi", "Suomi"), ("sv", "Svenska"), ("en", "English")):
        page.get_by_label(f"Change summary ({name})").fill(f"Feedback surveys ({lang}).")
        body = page.get_by_label(f"Text in Markdown ({name})")
        body.fill(body.input_value() + "\n" + SURVEYS + "\n")
    page.get_by_role("button", name="Preview").click()
    warning = page.locator("#undo-warning")
    expect(warning).to_contain_text("The version of 15 January 2027")
    expect(warning.locator("ins", has_text="Customer feedback surveys")).to_have_count(3)
    assert_accessible(page, "preview with the undo warning")

    # Publishing without a reason, a confirmation or the undo tick publishes nothing and says why.
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".error-summary")).to_be_focused()
    summary = page.locator(".error-summary")
    for text in ("Write the reason", "would undo", "Tick the box to confirm"):
        expect(summary).to_contain_text(text)
    assert stored_langs(app, "2026-12-02") == []
    assert_accessible(page, "publish refused")

    page.get_by_label("Why is this version published?").fill("Surveys start in December.")
    page.get_by_label("Yes, publish this version in every language.").check()
    page.get_by_role("button", name="Publish").click()
    expect(page.locator("#allow_undo-error")).to_be_visible()
    assert stored_langs(app, "2026-12-02") == [], "the undo tick is still missing"
    page.get_by_label("Publish anyway").check()
    page.get_by_label("Yes, publish this version in every language.").check()
    page.get_by_label("Why is this version published?").fill("Surveys start in December.")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".flash")).to_contain_text("“Privacy notice”: the version of 2 December 2026 is published.")
    assert stored_langs(app, "2026-12-02") == ["en", "fi", "sv"]


def test_the_error_summary_takes_focus_and_its_links_focus_the_field(page, live_server):
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi", lang="fi")
    page.goto(f"{base}/admin/notices/privacy/new")
    page.locator("#effective_date").fill("2027-01-15")
    page.locator("#title_sv").fill("")
    page.locator("#summary_fi").fill("Yhteenveto")
    page.locator("#summary_en").fill("Summary")
    page.locator("button[value=preview]").click()
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    links = summary.get_by_role("link")
    expect(links).to_have_count(2)
    expect(links.first).to_contain_text("Svenska")
    expect(links.nth(1)).to_contain_text("Svenska")
    links.first.click()
    expect(page.locator("#title_sv")).to_be_focused()
    assert_accessible(page, "notice form with errors (fi)")


def test_withdrawing_asks_for_a_reason_and_a_confirmation(page, live_server, app):
    publish_january_from_the_old_text(app)
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi")
    page.goto(f"{base}/admin/notices")
    page.get_by_role("link", name="Withdraw the version of 15 January 2027").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Withdraw the version of 15 January 2027: Privacy notice")
    assert_accessible(page, "withdraw")
    page.get_by_role("button", name="Withdraw").click()
    expect(page.locator(".error-summary")).to_be_focused()
    assert stored_langs(app, "2027-01-15") == ["en", "fi", "sv"]
    page.get_by_label("Why is this version withdrawn?").fill("Published too early.")
    page.get_by_label("Yes, withdraw this version").check()
    page.get_by_role("button", name="Withdraw").click()
    expect(page.locator(".flash")).to_contain_text("“Privacy notice”: the version of 15 January 2027 was withdrawn.")
    assert stored_langs(app, "2027-01-15") == []


@pytest.mark.parametrize("width", [375, 1280])
def test_the_audit_log_fits_the_screen_and_filters(page, live_server, app, width):
    publish_january_from_the_old_text(app)
    store = open_store(app.config["DATABASE"])
    try:
        for i in range(60):
            store.audit("a-rather-long-address.of-someone@legal-department.example.fi", "user.password", str(i))
    finally:
        store.close()
    page.set_viewport_size({"width": width, "height": 900})
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi")
    page.goto(f"{base}/admin/audit")
    expect(page.locator(".audit-count")).to_contain_text("entries")
    assert no_sideways_scroll(page), f"the audit log scrolls sideways at {width} px"
    page.get_by_label("What").select_option(label="Published a notice version")
    page.get_by_role("button", name="Show", exact=True).click()
    expect(page.locator(".audit-count")).to_contain_text("15 entries")
    cells = page.locator("table.audit-table tbody td:nth-child(3)")
    expect(cells).to_have_count(15)
    assert set(cells.all_inner_texts()) == {"Published a notice version"}
    assert no_sideways_scroll(page), f"the filtered audit log scrolls sideways at {width} px"
    display = page.locator("table.audit-table tbody tr").first.evaluate("row => getComputedStyle(row).display")
    assert display == ("block" if width == 375 else "table-row")
    assert_accessible(page, f"audit log at {width} px")
    page.get_by_role("link", name="Show everything").click()
    page.get_by_role("link", name="Older entries").click()
    expect(page.locator(".audit-count")).to_contain_text("page 2 of 2")
    assert no_sideways_scroll(page)


def test_legals_pages_fit_375_px(page, live_server, app):
    publish_january_from_the_old_text(app)
    page.set_viewport_size({"width": 375, "height": 800})
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi")
    for path in ("/admin/notices", "/admin/notices/privacy/2027-01-15/withdraw",
                 "/admin/notices/privacy/new?from=2026-04-09"):
        page.goto(base + path)
        assert no_sideways_scroll(page), path
    page.get_by_label("Effective date").fill("2026-12-02")
    for name in ("Suomi", "Svenska", "English"):
        page.get_by_label(f"Change summary ({name})").fill("Surveys.")
    body = page.get_by_label("Text in Markdown (English)")
    body.fill(body.input_value() + "\n" + SURVEYS + " " + "x" * 300 + "\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#undo-warning")).to_be_visible()
    assert no_sideways_scroll(page), "the preview with the undo warning"
