"""In a real browser: sign-in and sign-out (the old cookie then refused), managing users, and erasure."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import add_staff, assert_accessible, browser_sign_in, from_store
from .ledger import add_site, choice, config, count_rows, post

pytestmark = pytest.mark.browser


@pytest.fixture
def app(make_app):
    app = make_app()
    add_site(app)
    return add_staff(app)


def stored_user(app, email: str) -> dict | None:
    return from_store(app, "user_by_email", email)


def test_after_signing_out_a_saved_cookie_is_refused(page, live_server):
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi")
    saved = [c for c in page.context.cookies() if c["name"] == "session"]
    assert saved
    page.get_by_role("link", name="Your password").click()
    expect(page.locator("#sessions tbody tr")).to_have_count(1)
    assert_accessible(page, "own password and sessions")
    page.get_by_role("button", name="Sign out (legal@example.fi)").click()
    page.wait_for_url(f"{base}/admin/login")
    context = page.context.browser.new_context()
    try:
        other = context.new_page()
        context.add_cookies(saved)
        other.goto(f"{base}/admin/notices")
        expect(other).to_have_url(f"{base}/admin/login?next=/admin/notices")
        expect(other.get_by_role("status")).to_have_text("Your session has ended. Sign in again.")
        assert_accessible(other, "login after the session ended")
    finally:
        context.close()


def test_admin_changes_roles_disables_enables_and_removes_a_user(page, live_server, app):
    base = live_server.url
    browser_sign_in(page, base, "admin@example.fi")
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Users").click()
    page.get_by_role("link", name="Manage marketing@example.fi").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("User marketing@example.fi")
    assert_accessible(page, "user page")
    page.get_by_label("legal").check()
    page.get_by_role("button", name="Save roles").click()
    expect(page.get_by_role("status")).to_contain_text("The roles of marketing@example.fi are saved.")
    assert stored_user(app, "marketing@example.fi")["roles"] == ["legal", "marketing"]
    page.get_by_role("button", name="Disable marketing@example.fi").click()
    expect(page.get_by_text("Disabled: cannot sign in.")).to_be_visible()
    page.get_by_role("button", name="Enable marketing@example.fi").click()
    expect(page.get_by_text("Can sign in.", exact=True)).to_be_visible()
    page.get_by_role("button", name="Remove the user").click()
    expect(page.get_by_role("alert")).to_contain_text("Tick the box")
    assert stored_user(app, "marketing@example.fi") is not None
    page.get_by_label("Remove marketing@example.fi for good").check()
    page.get_by_role("button", name="Remove the user").click()
    expect(page.get_by_role("status")).to_have_text("marketing@example.fi was removed.")
    expect(page.get_by_role("row", name="marketing@example.fi")).to_have_count(0)
    assert stored_user(app, "marketing@example.fi") is None
    # The last admin is refused, with the reason on the page.
    page.get_by_role("link", name="Manage admin@example.fi").click()
    page.get_by_role("button", name="Disable admin@example.fi").click()
    expect(page.get_by_role("alert")).to_contain_text("This is the last enabled admin")
    assert_accessible(page, "last admin refused")
    assert stored_user(app, "admin@example.fi")["disabled"] == 0


def test_legal_erases_a_visitors_records_in_finnish(page, live_server, app):
    client = app.test_client()
    cfg = config(client)
    mine = post(client, choice(cfg)).get_json()
    post(client, choice(cfg, "withdraw", subject_id=mine["subject_id"]))
    post(client, choice(cfg))
    base = live_server.url
    browser_sign_in(page, base, "legal@example.fi", lang="fi")
    page.goto(f"{base}/admin/records/")
    assert_accessible(page, "records (fi)")
    page.locator("a.button.primary").click()
    page.locator("#id").fill(mine["consent_id"])
    page.locator("button[value=find]").click()
    expect(page.locator("#erase-summary")).to_contain_text("2")
    assert_accessible(page, "erase summary (fi)")
    page.locator("button[value=erase]").click()
    expect(page.locator("#confirm-error")).to_be_visible()
    assert count_rows(app) == 3
    page.locator("#confirm").check()
    page.locator("button[value=erase]").click()
    expect(page.get_by_role("status")).to_contain_text("2")
    assert count_rows(app) == 1
