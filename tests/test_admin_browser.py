"""The admin in a real browser: legal signs in, publishes a version with preview and diff; axe on every page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from keksi.store import open_store

from .conftest import PASSWORD, add_staff, assert_accessible, browser_sign_in

pytestmark = pytest.mark.browser

@pytest.fixture
def app(make_app):
    return add_staff(make_app(FIXED_TODAY="2026-11-22"))


def preview_in_finnish(page, base: str, effective_date: str) -> None:
    """Legal, in Finnish, dates a new privacy version, writes its summaries and asks for a preview."""
    browser_sign_in(page, base, "legal@example.fi", lang="fi")
    page.goto(f"{base}/admin/notices/privacy/new")
    page.locator("#effective_date").fill(effective_date)
    for lang in ("fi", "sv", "en"):
        page.locator(f"#summary_{lang}").fill("Summary")
    page.locator("button[value=preview]").click()


def test_legal_publishes_a_version_and_sees_it_live_on_its_date(page, live_server, app):
    base = live_server.url
    page.goto(f"{base}/admin/login?lang=en")
    assert_accessible(page, "login")
    browser_sign_in(page, base, "legal@example.fi")
    assert_accessible(page, "dashboard")
    page.get_by_role("link", name="Notices", exact=True).first.click()
    assert_accessible(page, "notices")
    page.get_by_role("link", name="New version of Privacy notice").click()  # titles in the admin's language
    page.get_by_label("Effective date").fill("2027-01-15")
    page.get_by_label("Material change").check()
    for lang, name in (("fi", "Suomi"), ("sv", "Svenska"), ("en", "English")):
        page.get_by_label(f"Change summary ({name})").fill(f"We now use a new processor ({lang}).")
        body = page.get_by_label(f"Text in Markdown ({name})")
        body.fill(body.input_value() + f"\n\nA new paragraph in {lang}.\n")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Preview")).to_be_visible()  # waits for the preview page
    assert page.locator("ol.diff ins", has_text="A new paragraph in en").count() == 1
    assert_accessible(page, "preview")
    # a change after the preview is previewed again, not published unseen
    page.get_by_label("Change summary (English)").fill("We now use a new processor (en), edited.")
    page.get_by_role("button", name="Publish").click()
    assert "Nothing was published" in page.get_by_role("alert").inner_text()
    assert page.locator("details.preview", has_text="English").locator("dd").text_content() == \
        "We now use a new processor (en), edited."
    assert_accessible(page, "preview again")
    page.get_by_label("Why is this version published?").fill("A new processor.")
    page.get_by_label("Yes, publish this version in every language.").check()
    page.get_by_role("button", name="Publish").click()
    assert "is published" in page.locator(".flash").inner_text()
    assert_accessible(page, "notices with an upcoming version")
    page.get_by_role("link", name="Audit log").first.click()
    assert page.locator("table.data tbody tr").count() >= 3
    assert_accessible(page, "audit log")

    page.goto(f"{base}/en/privacy")
    assert "A new version takes effect on 15 January 2027" in page.inner_text("main")
    app.config["FIXED_TODAY"] = "2027-01-15"
    page.goto(f"{base}/en/privacy")
    assert "Last updated 15 January 2027" in page.inner_text("main")
    assert "A new paragraph in en." in page.inner_text("main")


def test_errors_are_announced_beside_the_field_and_pages_are_accessible_in_finnish(page, live_server):
    base = live_server.url
    preview_in_finnish(page, base, "2020-01-01")
    date_input = page.locator("#effective_date")
    assert date_input.get_attribute("aria-invalid") == "true"
    described = date_input.get_attribute("aria-describedby")
    assert "effective_date-error" in described
    assert page.locator("#effective_date-error").is_visible()
    assert page.locator(".error-summary").get_attribute("role") == "alert"
    assert_accessible(page, "form with errors (fi)")
    page.goto(f"{base}/admin/audit")
    assert_accessible(page, "audit (fi)")


def test_admin_pages_are_accessible_and_403_is_a_whole_page(page, live_server):
    base = live_server.url
    browser_sign_in(page, base, "admin@example.fi")
    page.goto(f"{base}/admin/users")
    assert_accessible(page, "users")
    page.get_by_label("Email").fill("new@example.fi")
    page.get_by_label("marketing").check()
    page.get_by_role("button", name="Add user").click()
    link = page.locator("code.copyable").inner_text()
    assert "/admin/set-password/" in link
    assert_accessible(page, "users with link")
    context = page.context.browser.new_context()
    other = context.new_page()
    other.goto(link)
    assert_accessible(other, "set password")
    other.get_by_label("New password", exact=True).fill(PASSWORD)
    other.get_by_label("Repeat the new password").fill(PASSWORD)
    other.get_by_role("button", name="Set password").click()
    other.wait_for_url(f"{base}/admin/login")
    other.get_by_label("Email").fill("new@example.fi")
    other.get_by_label("Password").fill(PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    response = other.goto(f"{base}/admin/notices")
    assert response.status == 403
    assert "does not have the role" in other.inner_text("main")
    assert_accessible(other, "403 page")
    context.close()


@pytest.mark.parametrize("email, url, lang, message", [
    ("legal@example.fi", "/admin/sites/", "fi", "Tililläsi ei ole tämän sivun vaatimaa roolia."),
    ("marketing@example.fi", "/admin/notices", "sv", "Ditt konto har inte den roll som krävs för den här sidan."),
])
def test_the_other_roles_pages_answer_403_in_the_users_language(page, live_server, email, url, lang, message):
    base = live_server.url
    browser_sign_in(page, base, email, lang=lang)
    response = page.goto(f"{base}{url}")
    assert response.status == 403
    assert page.locator("html").get_attribute("lang") == lang
    assert page.get_by_role("heading", level=1).inner_text() == message
    assert_accessible(page, f"403 page ({lang})")


def test_a_form_whose_csrf_token_was_removed_is_refused_and_nothing_is_saved(page, live_server, app):
    base = live_server.url
    preview_in_finnish(page, base, "2027-01-15")
    publish = page.locator("button[value=publish]")
    removed = publish.evaluate("""button => {
        const token = button.form.querySelector("input[name=csrf_token]");
        if (!token) return false;
        token.remove();
        return true;
    }""")
    assert removed, "the form had a CSRF token to remove"
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        publish.click()
    assert posted.value.status == 400
    assert page.get_by_role("heading", level=1).inner_text() == (
        "Mitään ei tallennettu, koska lomake oli vanhentunut. Kopioi kirjoittamasi teksti talteen, "
        "lataa lomake uudelleen ja lähetä se uudestaan.")
    assert_accessible(page, "form expired (fi)")
    store = open_store(app.config["DATABASE"])
    try:
        assert store.notice_version("privacy", "2027-01-15", "fi") is None
        assert not [e for e in store.audit_log(limit=10_000) if "2027-01-15" in e["subject"]]
    finally:
        store.close()
