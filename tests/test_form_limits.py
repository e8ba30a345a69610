"""Admin forms cap their entries and size: an oversized post is refused with a 413 in the admin's
language before any form is built, and nothing is saved."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from keksi.site_forms import MAX_FORM_ENTRIES, MAX_FORM_ROWS, form_entries
from keksi.store import open_store

from .ledger import add_site
from .conftest import BOTH, csrf, signed_in
from .test_admin import version_form

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL


@pytest.fixture
def app(make_app):
    app = make_app()
    add_site(app)
    return app


def _signed_in(app, lang: str):
    return signed_in(app, "admin@example.fi", "admin", lang=lang)


def _site(app) -> dict:
    store = open_store(app.config["DATABASE"])
    try:
        return store.site("demo")
    finally:
        store.close()


def _site_post(client, extra: list[tuple[str, str]]):
    token = csrf(client, "/admin/sites/demo/edit")
    fields = [("csrf_token", token), ("name", "Changed"), ("origins", "https://www.example.fi"),
              ("consent_days", "365")] + extra
    return client.post("/admin/sites/demo/edit", data=urlencode(fields),
                       content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("lang, message", [
    ("en", "Nothing was saved: a site form can have at most 400 cookie rows and 20 categories."),
    ("fi", "Mitään ei tallennettu: sivuston lomakkeella voi olla enintään 400 evästeriviä ja 20 luokkaa."),
])
def test_nine_thousand_custom_categories_are_refused_before_any_form_is_built(app, lang, message):
    client = _signed_in(app, lang)
    before = _site(app)
    response = _site_post(client, [(f"custom-{i}-category_id", f"c{i}") for i in range(9000)])
    assert response.status_code == 413
    assert message in response.get_data(as_text=True)
    assert _site(app) == before


def test_cookie_rows_past_the_cap_are_refused_and_up_to_it_are_read(app):
    client = _signed_in(app, "en")
    rows = [(f"rows_analytics-{i}-name", f"c{i}") for i in range(MAX_FORM_ENTRIES + 1)]
    assert _site_post(client, rows).status_code == 413
    # At the cap the form is built and checked as usual: here it is refused for its content.
    assert _site_post(client, rows[:MAX_FORM_ROWS - 20]).status_code == 400


def test_form_entries_count_every_list_entry_at_any_depth():
    names = ["name", "custom-0-category_id", "custom-0-rows-0-name", "custom-0-rows-0-service",
             "custom-0-rows-1-name", "rows_analytics-7-name", "texts_analytics-label_fi", "custom-x-y"]
    assert form_entries(names) == 4  # custom-0, custom-0-rows-0, custom-0-rows-1, rows_analytics-7


def test_a_long_notice_in_three_languages_can_be_previewed(app):
    client = _signed_in(app, "en")
    body = ("A long paragraph of the notice, with ä and € in it. " * 2000)[:100_000] + "\n"
    response = client.post("/admin/notices/privacy/new",
                           data=version_form(csrf(client, "/admin/notices/privacy/new"), body=body))
    assert response.status_code == 200 and 'id="preview-heading"' in response.get_data(as_text=True)


@pytest.mark.parametrize("lang, message", [
    ("en", "Nothing was saved: what was sent is larger than 4,704 kB, the most this page accepts."),
    ("fi", "Mitään ei tallennettu: lähetetty on suurempi kuin 4\xa0704 kt, joka on tämän sivun enimmäiskoko."),
])
def test_a_notice_post_over_its_size_is_a_413_in_the_admins_language(app, lang, message):
    client = _signed_in(app, lang)
    body = "x" * (1700 * 1024)
    response = client.post("/admin/notices/privacy/new",
                           data=version_form(csrf(client, "/admin/notices/privacy/new"), body=body))
    assert response.status_code == 413
    assert message in response.get_data(as_text=True)
