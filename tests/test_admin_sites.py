"""Marketing's admin pages through the test client: sites, embed code, figures, export."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from keksi import consents, figures, sites
from keksi.i18n import format_date
from keksi.store import open_store
from keksi.views import admin_sites

from .conftest import BOTH, TODAY, add_user, csrf, sign_in
from .ledger import DEMO_SITE, add_site, choice, config, post

BACKENDS = BOTH

LANGS = ["fi", "sv", "en"]
MARKETING_PAGES = ["/admin/sites/", "/admin/sites/new", "/admin/sites/demo/edit", "/admin/sites/demo/snippet",
                   "/admin/sites/demo/preview?lang=sv", "/admin/sites/demo/figures",
                   "/admin/sites/demo/figures.csv"]


# -- helpers ------------------------------------------------------------------------------


class FormReader(HTMLParser):
    """The values a browser would post from the page's first POST form: inputs, textareas, selects."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._textarea: str | None = None
        self._select: str | None = None
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("method") == "post" and not self._done and "admin-form" in a.get("class", ""):
            self._in_form = True
        if not self._in_form:
            return
        if tag == "input" and a.get("type") == "checkbox":
            if "checked" in a:
                self.values[a["name"]] = a.get("value") or "y"
        elif tag == "input" and a.get("name"):
            self.values[a["name"]] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea = a["name"]
            self.values[self._textarea] = ""
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and "selected" in a and self._select:
            self.values[self._select] = a["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea:
            self.values[self._textarea] = self.values[self._textarea].lstrip("\r\n")
            self._textarea = None
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def read_form(page: str) -> dict[str, str]:
    reader = FormReader()
    reader.feed(page)
    return reader.values


# A cookie row's choices, which a person emptying the row leaves as they are.
ROW_CHOICES = ("-storage", "-transfer", "-own_purposes")


def form_values(client: Any, url: str) -> dict[str, str]:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return read_form(response.get_data(as_text=True))


def definition_to_form(values: dict[str, str], site: dict[str, Any], create: bool) -> dict[str, str]:
    """Fill a site form's values from a definition, one row per cookie (as a person would)."""
    data = {k: v for k, v in values.items() if not k.startswith(("rows_", "show_"))}
    data.update(name=site["name"], origins="\n".join(site["origins"]),
                default_language=site["default_language"], consent_days=str(site["consent_days"]),
                cookie_domain=site["cookie_domain"] or "", notice_privacy=site["notices"]["privacy"],
                notice_cookies=site["notices"]["cookies"], step="save")
    if create:
        data["site_id"] = site["id"]
    for category in site["categories"]:
        if category["id"] != "necessary":
            data[f"show_{category['id']}"] = "y"
        i = 0
        for service in category["services"]:
            for cookie in service["cookies"]:
                row = f"rows_{category['id']}-{i}-"
                data[row + "service"] = service["name"]
                data[row + "provider"] = service["provider"]
                data[row + "name"] = cookie["name"]
                data[row + "duration"] = cookie["duration"]
                data[row + "cookie_provider"] = "" if cookie["provider"] == service["provider"] else cookie["provider"]
                data[row + "storage"] = cookie.get("storage", "cookie")
                data[row + "transfer"] = (service.get("transfer") or {}).get("safeguard", "")
                if service.get("own_purposes"):
                    data[row + "own_purposes"] = "y"
                for lang in LANGS:
                    purpose = cookie["purpose"]
                    data[row + f"purpose_{lang}"] = purpose[lang] if isinstance(purpose, dict) else purpose
                i += 1
    return data


def stored_site(app: Any, site_id: str) -> dict[str, Any] | None:
    store = open_store(app.config["DATABASE"])
    try:
        return store.site(site_id)
    finally:
        store.close()


def audit_actions(app: Any) -> list[str]:
    store = open_store(app.config["DATABASE"])
    try:
        return [e["action"] for e in store.audit_log()]
    finally:
        store.close()


def error_beside(page: str, field_id: str) -> str:
    """The error text shown beside a field, tied to it with aria-describedby; '' when none."""
    match = re.search(rf'<p class="error" id="{re.escape(field_id)}-error">(.*?)</p>', page, re.S)
    if not match:
        return ""
    tag = re.search(rf'<(?:input|textarea|select)[^>]*\bid="{re.escape(field_id)}"[^>]*>', page)
    assert tag and f"{field_id}-error" in tag.group(0), f"the error is not tied to #{field_id}"
    return html.unescape(match.group(1))


def local_today(app: Any) -> date:
    """The day the API files a choice under: the real clock, in KEKSI_TIMEZONE."""
    return datetime.now(ZoneInfo(app.config["TIMEZONE"])).date()


NEW_SITE = {
    "id": "web-shop",
    "name": "Verkkokauppa",
    "origins": ["https://www.example.fi", "https://shop.example.fi:8443"],
    "default_language": "sv",
    "consent_days": 180,
    "cookie_domain": "example.fi",
    "notices": {"privacy": "privacy", "cookies": "cookies"},
    "categories": [
        {"id": "necessary", "services": [
            {"name": "Verkkokauppa", "provider": "Kauppa Oy", "cookies": [
                {"name": "session", "provider": "Kauppa Oy", "duration": "session",
                 "purpose": {"fi": "Pitää ostoskorin.", "sv": "Håller kundvagnen.", "en": "Keeps the cart."}},
                {"name": "keksi_consent", "provider": "Kauppa Oy", "duration": "P6M",
                 "purpose": {"fi": "Muistaa valinnan.", "sv": "Minns valet.", "en": "Remembers the choice."}}]}]},
        {"id": "preferences", "services": []},
        {"id": "analytics", "services": [
            {"name": "Matomo", "provider": "Kauppa Oy", "cookies": [
                {"name": "_pk_id.*", "provider": "Kauppa Oy (Matomo)", "duration": "P13M",
                 "purpose": {"fi": "Erottaa käynnit.", "sv": "Skiljer besök åt.", "en": "Tells visits apart."}}]}]},
        {"id": "marketing", "services": [
            {"name": "Google Ads", "provider": "Google Ireland Ltd", "cookies": [
                {"name": "_gcl_au", "provider": "Google Ireland Ltd", "duration": "P90D",
                 "purpose": {"fi": "Mittaa mainoksia.", "sv": "Mäter annonser.", "en": "Measures ads."}}]},
            {"name": "LinkedIn", "provider": "LinkedIn Ireland", "cookies": [
                {"name": "li_fat_id", "provider": "LinkedIn Ireland", "duration": "PT12H",
                 "purpose": {"fi": "Mittaa.", "sv": "Mäter.", "en": "Measures."}}]}]},
    ],
}


@pytest.fixture
def app(make_app):
    app = make_app(RATE_LIMIT=1_000_000)
    add_site(app)
    add_user(app, "marketing@example.fi", "marketing")
    add_user(app, "legal@example.fi", "legal")
    return app


@pytest.fixture
def marketing(client):
    assert sign_in(client, "marketing@example.fi").status_code == 302
    return client


@pytest.fixture
def legal(client):
    """The raw records are legal's to export (and admins'), not marketing's."""
    assert sign_in(client, "legal@example.fi").status_code == 302
    return client


# -- creating and editing ------------------------------------------------------------------


def test_create_stores_what_the_cli_would(app, marketing, make_app, tmp_path):
    values = form_values(marketing, "/admin/sites/new")
    response = marketing.post("/admin/sites/new", data=definition_to_form(values, NEW_SITE, create=True))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/admin/sites/web-shop/snippet"

    # The same definition added with `flask sites add` to another database prints the same.
    source = tmp_path / "web-shop.json"
    source.write_text(json.dumps(NEW_SITE), encoding="utf-8")
    other = make_app(DATABASE=str(tmp_path / "other.db"))
    assert other.test_cli_runner().invoke(args=["sites", "add", str(source)]).exit_code == 0
    expected = other.test_cli_runner().invoke(args=["sites", "show", "web-shop", "--format", "json"]).output
    shown = app.test_cli_runner().invoke(args=["sites", "show", "web-shop", "--format", "json"]).output
    assert shown == expected
    assert json.loads(shown) == sites.validate(NEW_SITE, LANGS)
    assert "site.add" in audit_actions(app)
    page = marketing.get("/admin/sites/web-shop/snippet").get_data(as_text=True)
    assert "Verkkokauppa was added" in page


def test_the_form_shows_a_stored_site_and_saving_it_unchanged_changes_nothing(app, marketing):
    before = stored_site(app, "demo")
    hashes = {lang: config(marketing, lang=lang)["banner_hash"] for lang in LANGS}
    values = form_values(marketing, "/admin/sites/demo/edit")
    assert values["name"] == "Tiimityö (demo)"
    assert values["rows_analytics-0-cookie_provider"] == "Tiimityö Oy (Matomo)"
    assert values["rows_necessary-0-cookie_provider"] == ""  # the same as the service's provider
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"), follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.request.path == "/admin/sites/"
    assert stored_site(app, "demo") == before
    assert "The banner did not change: nobody is asked to choose again." in page
    assert "asked to choose again." not in page.replace("nobody is asked to choose again.", "")
    assert {lang: config(marketing, lang=lang)["banner_hash"] for lang in LANGS} == hashes


def test_saving_the_form_keeps_a_services_catalogue_link_which_it_does_not_show(app, marketing):
    linked = json.loads(json.dumps(DEMO_SITE))
    linked["categories"][2]["services"][0]["catalogue"] = "matomo"  # the demo's Matomo
    store = open_store(app.config["DATABASE"])
    try:
        store.save_site(sites.validate(linked, LANGS), "tests", create=False)
    finally:
        store.close()
    before = stored_site(app, "demo")
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["rows_analytics-0-purpose_en"] = "Tells visits apart."
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    assert response.status_code == 302, response.get_data(as_text=True)
    after = stored_site(app, "demo")
    assert after != before and after["categories"][2]["services"][0]["catalogue"] == "matomo"
    assert config(marketing)["signals"].endswith("/widget/v1/signals.js?matomo=analytics")


def test_the_edit_form_says_before_saving_that_visitors_may_be_asked_again(marketing):
    page = marketing.get("/admin/sites/demo/edit").get_data(as_text=True)
    note = re.search(r'<div class="banner-note" id="banner-note">(.*?)</div>', page, re.S).group(1)
    assert "Visitors may be asked again." in note and "every visitor is asked to choose again" in note
    assert 'aria-describedby="banner-note"' in page


EVERYONE_AGAIN = "Every visitor is asked to choose again, whatever language they chose in."


def hashes(client: Any) -> dict[str, tuple[str, str]]:
    """Each language's (banner hash, choice hash), as the widget gets them."""
    return {lang: (cfg["banner_hash"], cfg["choice_hash"]) for lang in LANGS
            for cfg in [config(client, lang=lang)]}


def test_a_text_changed_in_one_language_asks_every_visitor_again(app, marketing):
    """The choice hash covers every language's texts, and the widget asks everyone again when it
    changes: the message says so, not that only Finnish visitors are asked."""
    before = hashes(marketing)
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["texts_analytics-purpose_fi"] = "Laskee käyntejä Matomolla omilla palvelimillamme."
    page = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"),
                          follow_redirects=True).get_data(as_text=True)
    assert EVERYONE_AGAIN in page
    assert "nobody is asked" not in page and "The banner changed in" not in page
    after = hashes(marketing)
    assert all(after[lang][1] != before[lang][1] for lang in LANGS)  # every visitor, in any language
    assert after["fi"][0] != before["fi"][0]
    assert after["sv"][0] == before["sv"][0] and after["en"][0] == before["en"][0]


def test_a_change_visitors_see_makes_a_new_banner_only_where_it_shows(app, marketing):
    before = hashes(marketing)
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["rows_analytics-0-purpose_en"] = "Counts visits."
    values["name"] = "Tiimityö"  # not on the banner
    page = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"),
                          follow_redirects=True).get_data(as_text=True)
    assert EVERYONE_AGAIN in page
    site = stored_site(app, "demo")
    assert site["name"] == "Tiimityö"
    assert site["categories"][2]["services"][0]["cookies"][0]["purpose"]["en"] == "Counts visits."
    after = hashes(marketing)
    assert after["en"][0] != before["en"][0]
    assert after["fi"][0] == before["fi"][0] and after["sv"][0] == before["sv"][0]
    assert audit_actions(app)[0] == "site.edit"


def test_a_new_banner_without_a_new_choice_names_its_languages(app, marketing):
    """The cookie domain is on each language's banner but not in what visitors consent to."""
    before = hashes(marketing)
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["cookie_domain"] = "example.fi"
    page = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"),
                          follow_redirects=True).get_data(as_text=True)
    assert "The banner changed in these languages: Suomi, Svenska, and English." in page
    assert "Visitors who chose in them are asked to choose again. Nobody else is asked." in page
    assert EVERYONE_AGAIN not in page
    after = hashes(marketing)
    assert all(after[lang][1] == before[lang][1] and after[lang][0] != before[lang][0] for lang in LANGS)


def test_who_is_asked_again_names_the_one_language_whose_banner_changed(app, monkeypatch):
    """Only one language's banner texts changed (such as a catalog's, which the form does not edit)."""
    site = sites.validate(DEMO_SITE, LANGS)
    real_banner = sites.banner

    def banner(definition: dict[str, Any], lang: str, operator: str | None = None) -> dict[str, Any]:
        content = real_banner(definition, lang, operator)
        return dict(content, texts={}) if definition is site and lang == "sv" else content

    monkeypatch.setattr(sites, "banner", banner)
    with app.test_request_context("/admin/sites/demo/edit"):  # the default language, Finnish
        message = admin_sites.who_is_asked_again(site, dict(site), LANGS)
    assert message == ("Banneri muuttui yhdellä kielellä (Svenska): sillä kielellä valinneita kävijöitä "
                       "pyydetään valitsemaan uudelleen. Muita ei pyydetä.")


def test_emptying_a_row_removes_the_cookie_and_empty_rows_are_ignored(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    for key in [k for k in values if k.startswith("rows_marketing-1-") and not k.endswith(ROW_CHOICES)]:
        values[key] = "   "
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    assert response.status_code == 302
    services = stored_site(app, "demo")["categories"][3]["services"]
    assert [s["name"] for s in services] == ["Google Ads"]


def test_rows_of_one_service_are_grouped_and_a_new_row_adds_a_cookie(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    row = "rows_analytics-2-"  # the first empty row under analytics
    assert values[row + "name"] == ""
    values.update({row + "service": "Matomo", row + "provider": "Tiimityö Oy", row + "name": "_pk_ref.*",
                   row + "duration": "P6M", row + "cookie_provider": "Tiimityö Oy (Matomo)",
                   **{row + f"purpose_{lang}": f"Referrer ({lang})" for lang in LANGS}})
    assert marketing.post("/admin/sites/demo/edit", data=dict(values, step="save")).status_code == 302
    matomo = stored_site(app, "demo")["categories"][2]["services"]
    assert len(matomo) == 1 and [c["name"] for c in matomo[0]["cookies"]] == ["_pk_id.*", "_pk_ses.*", "_pk_ref.*"]


def test_more_rows_adds_empty_rows_and_saves_nothing(app, marketing):
    before = stored_site(app, "demo")
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["name"] = "Not saved"
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="more"))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="rows_preferences-7-name"' in page and 'name="rows_preferences-8-name"' not in page
    assert 'value="Not saved"' in page
    assert stored_site(app, "demo") == before


def test_a_large_site_fits_in_one_post(app, marketing):
    """Forty cookies with long purposes in three languages post more than the app's 64 KB default."""
    values = form_values(marketing, "/admin/sites/demo/edit")
    for i in range(40):
        row = f"rows_preferences-{i + 2}-"  # after the two stored cookies
        values.update({row + "service": f"Service {i // 10}", row + "provider": "Provider Oy",
                       row + "name": f"cookie_{i}", row + "duration": "P30D",
                       **{row + f"purpose_{lang}": "ä" * 490 for lang in LANGS}})
    assert len("&".join(f"{k}={v}" for k, v in values.items()).encode()) > 64 * 1024
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    services = stored_site(app, "demo")["categories"][1]["services"]
    assert sum(len(s["cookies"]) for s in services) == 40 + 2


def test_a_category_can_be_left_out_of_the_banner_only_without_cookies(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    values.pop("show_marketing")
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    assert response.status_code == 400
    assert "This category has cookies." in error_beside(response.get_data(as_text=True), "show_marketing")
    for key in [k for k in values if k.startswith("rows_marketing-") and not k.endswith(ROW_CHOICES)]:
        values[key] = ""
    assert marketing.post("/admin/sites/demo/edit", data=dict(values, step="save")).status_code == 302
    assert [c["id"] for c in stored_site(app, "demo")["categories"]] == ["necessary", "preferences", "analytics"]


def test_categories_made_with_the_cli_are_in_the_form_and_kept_as_they_are(app, marketing):
    custom = {"id": "support", "label": {"fi": "Tuki", "sv": "Stöd", "en": "Support"},
              "purpose": "Chat.", "services": []}
    add_site(app, dict(DEMO_SITE, id="custom", categories=[*DEMO_SITE["categories"][:2], custom,
                                                            DEMO_SITE["categories"][2]]))
    before = stored_site(app, "custom")
    values = form_values(marketing, "/admin/sites/custom/edit")
    assert values["custom-0-category_id"] == "support" and values["custom-0-label_sv"] == "Stöd"
    assert [values[f"custom-0-purpose_{lang}"] for lang in LANGS] == ["Chat."] * 3
    page = marketing.get("/admin/sites/custom/edit").get_data(as_text=True)
    assert re.search(r'<input[^>]*id="custom-0-category_id"[^>]*readonly', page)  # in every choice made
    # Saved unchanged, in the order it had: one purpose for every language stays one text.
    assert marketing.post("/admin/sites/custom/edit", data=dict(values, step="save")).status_code == 302
    assert stored_site(app, "custom") == before


# -- cookie purposes and services' names and providers as the CLI gave them ----------------------


MATOMO = {"name": {"fi": "Matomo-tilastot", "sv": "Matomo-statistik", "en": "Matomo statistics"},
          "provider": {"fi": "Tiimityö Oy", "sv": "Tiimityö Ab", "en": "Tiimityö Ltd"},
          "cookies": [
              {"name": "_pk_id.*", "duration": "P13M", "purpose": "Erottaa käynnit toisistaan."},
              # The same provider as the service's in the default language only: "Set by" shows empty.
              {"name": "_pk_ses.*", "duration": "PT30M", "purpose": "Yhdistää käynnin.\nKestää 30 min.",
               "provider": {"fi": "Tiimityö Oy", "sv": "Tiimityö Ab (Matomo)", "en": "Tiimityö Ltd"}}]}


@pytest.fixture
def texts_site(app) -> dict[str, Any]:
    """A site added as `flask sites add` would: a single-text cookie purpose for every language,
    a service's name and provider per language, and its cookies' providers taken from it."""
    analytics = dict(DEMO_SITE["categories"][2], services=[MATOMO])
    return add_site(app, dict(DEMO_SITE, id="texts", categories=[*DEMO_SITE["categories"][:2], analytics,
                                                                *DEMO_SITE["categories"][3:]]))


def as_posted(values: dict[str, str]) -> dict[str, str]:
    """The form's values as a browser posts them: a textarea's line breaks as CRLF."""
    return {k: v.replace("\n", "\r\n") if "purpose_" in k else v for k, v in values.items()}


def test_a_site_with_texts_as_the_cli_gave_them_is_saved_unchanged_exactly(app, marketing, texts_site):
    before = stored_site(app, "texts")
    assert before["categories"][2]["services"][0]["cookies"][0]["purpose"] == "Erottaa käynnit toisistaan."
    values = form_values(marketing, "/admin/sites/texts/edit")
    assert values["rows_analytics-0-service"] == "Matomo-tilastot"
    assert values["rows_analytics-0-provider"] == "Tiimityö Oy"
    purpose = [values[f"rows_analytics-0-purpose_{lang}"] for lang in LANGS]
    assert purpose == ["Erottaa käynnit toisistaan."] * 3
    assert values["rows_analytics-1-cookie_provider"] == ""
    response = marketing.post("/admin/sites/texts/edit", data=dict(as_posted(values), step="save"),
                              follow_redirects=True)
    assert response.request.path == "/admin/sites/", response.get_data(as_text=True)
    after = stored_site(app, "texts")
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert sites.choice_hash(after) == sites.choice_hash(before)
    assert "The banner did not change: nobody is asked to choose again." in response.get_data(as_text=True)
    # The texts shown were the stored default language's: changing it in the same save keeps them too.
    response = marketing.post("/admin/sites/texts/edit",
                              data=dict(as_posted(values), default_language="sv", step="save"))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert stored_site(app, "texts") == dict(before, default_language="sv")


def test_one_cookie_purpose_edited_changes_that_purpose_only(app, marketing, texts_site):
    before = stored_site(app, "texts")
    values = as_posted(form_values(marketing, "/admin/sites/texts/edit"))
    values["rows_analytics-0-purpose_sv"] = "Skiljer besök åt."
    page = marketing.post("/admin/sites/texts/edit", data=dict(values, step="save"),
                          follow_redirects=True).get_data(as_text=True)
    assert EVERYONE_AGAIN in page
    expected = json.loads(json.dumps(before))
    expected["categories"][2]["services"][0]["cookies"][0]["purpose"] = {
        "fi": "Erottaa käynnit toisistaan.", "sv": "Skiljer besök åt.", "en": "Erottaa käynnit toisistaan."}
    assert stored_site(app, "texts") == expected


def test_a_service_name_given_per_language_edited_keeps_the_other_languages(app, marketing, texts_site):
    before = stored_site(app, "texts")
    values = as_posted(form_values(marketing, "/admin/sites/texts/edit"))
    for row in (0, 1):  # the service's name is in each of its cookies' rows
        values[f"rows_analytics-{row}-service"] = "Matomo-kävijätilastot"
    assert marketing.post("/admin/sites/texts/edit", data=dict(values, step="save")).status_code == 302
    expected = json.loads(json.dumps(before))
    expected["categories"][2]["services"][0]["name"]["fi"] = "Matomo-kävijätilastot"
    assert stored_site(app, "texts") == expected


def test_a_new_provider_reaches_the_cookies_whose_set_by_is_empty_in_its_language(app, marketing, texts_site):
    values = as_posted(form_values(marketing, "/admin/sites/texts/edit"))
    for row in (0, 1):
        values[f"rows_analytics-{row}-provider"] = "Analyysi Oy"
    assert marketing.post("/admin/sites/texts/edit", data=dict(values, step="save")).status_code == 302
    matomo = stored_site(app, "texts")["categories"][2]["services"][0]
    provider = {"fi": "Analyysi Oy", "sv": "Tiimityö Ab", "en": "Tiimityö Ltd"}
    assert matomo["provider"] == provider and matomo["name"] == MATOMO["name"]
    assert matomo["cookies"][0]["provider"] == provider
    assert matomo["cookies"][1]["provider"] == {"fi": "Analyysi Oy", "sv": "Tiimityö Ab (Matomo)",
                                                "en": "Tiimityö Ltd"}
    # "Set by" filled in where it showed empty: the cookie's own provider, one text as typed.
    values = as_posted(form_values(marketing, "/admin/sites/texts/edit"))
    values["rows_analytics-0-cookie_provider"] = "Matomo Cloud"
    assert marketing.post("/admin/sites/texts/edit", data=dict(values, step="save")).status_code == 302
    cookies = stored_site(app, "texts")["categories"][2]["services"][0]["cookies"]
    assert cookies[0]["provider"] == "Matomo Cloud" and cookies[1]["provider"]["sv"] == "Tiimityö Ab (Matomo)"


# -- category names and purposes, and categories of marketing's own ------------------------------


CHAT = {"category_id": "customer-chat", "label_fi": "Asiakaspalvelun chat", "label_sv": "Kundtjänstens chatt",
        "label_en": "Customer chat", "purpose_fi": "Muistaa keskustelusi asiakaspalvelun kanssa.",
        "purpose_sv": "Minns ditt samtal med kundtjänsten.", "purpose_en": "Remembers your chat with us.",
        "rows-0-service": "Chat", "rows-0-provider": "Tiimityö Oy", "rows-0-name": "chat_id",
        "rows-0-duration": "P30D", "rows-0-purpose_fi": "Keskustelun tunniste.",
        "rows-0-purpose_sv": "Samtalets id.", "rows-0-purpose_en": "The chat's id."}


def with_new_categories(client: Any, url: str = "/admin/sites/demo/edit", count: int = 1,
                        **values: str) -> dict[str, str]:
    """The form's values after pressing "Add a category" `count` times (each a POST that saves
    nothing, as without JavaScript), then `values` filled in."""
    form = form_values(client, url)
    for number in range(count):
        response = client.post(url, data=dict(form, step="add-category"))
        page = response.get_data(as_text=True)
        assert response.status_code == 200, page
        assert f'<a href="#custom-{number}">A new category was added' in page
        form = read_form(page)
        assert form[f"custom-{number}-category_id"] == "" and f"custom-{number}-rows-2-name" in form
    return dict(form, **values)


def category(cfg: dict[str, Any], category_id: str) -> dict[str, Any]:
    return next(c for c in cfg["categories"] if c["id"] == category_id)


def standard(app: Any, category_id: str) -> dict[str, dict[str, str]]:
    """A standard category's label and purpose from the catalogs, per language."""
    with app.test_request_context():
        return sites.standard_texts(category_id, LANGS)


def test_each_category_name_and_purpose_is_in_the_form_in_every_language(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    assert values["texts_analytics-label_sv"] == "Analys"
    assert values["texts_necessary-label_fi"] == "Välttämättömät"
    assert values["texts_analytics-purpose_fi"] == standard(app, "analytics")["purpose"]["fi"]
    page = marketing.get("/admin/sites/demo/edit").get_data(as_text=True)
    assert "show_necessary" not in page and "texts_necessary-remove" not in page  # always on, never removed
    new = form_values(marketing, "/admin/sites/new")
    assert new["texts_marketing-label_en"] == "Marketing" and not any(k.startswith("custom-") for k in new)


def test_a_purpose_edited_in_swedish_reaches_the_widget_in_swedish_only(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["texts_analytics-purpose_sv"] = "Räknar besök med Matomo, på våra egna servrar."
    values["texts_necessary-label_sv"] = "Nödvändiga för webbplatsen"
    page = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"),
                          follow_redirects=True).get_data(as_text=True)
    assert EVERYONE_AGAIN in page
    analytics = category(config(marketing, lang="sv"), "analytics")
    assert analytics["purpose"] == "Räknar besök med Matomo, på våra egna servrar."
    assert analytics["label"] == "Analys"
    assert category(config(marketing, lang="sv"), "necessary")["label"] == "Nödvändiga för webbplatsen"
    assert category(config(marketing, lang="fi"), "analytics")["purpose"] == \
        standard(app, "analytics")["purpose"]["fi"]
    stored = {c["id"]: c for c in stored_site(app, "demo")["categories"]}
    assert stored["analytics"]["purpose"]["sv"].startswith("Räknar besök med Matomo")
    assert "label" not in stored["analytics"]  # unchanged: still the catalogs' text
    assert "purpose" not in stored["marketing"] and "label" not in stored["marketing"]


def test_marketing_adds_a_category_of_its_own_and_the_widget_shows_it(app, marketing):
    before = stored_site(app, "demo")
    values = with_new_categories(marketing, **{f"custom-0-{k}": v for k, v in CHAT.items()})
    assert stored_site(app, "demo") == before  # adding a block saves nothing
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    ids = [c["id"] for c in stored_site(app, "demo")["categories"]]
    assert ids == [c["id"] for c in before["categories"]] + ["customer-chat"]
    cfg = config(marketing, lang="sv")
    chat = category(cfg, "customer-chat")
    assert chat["label"] == "Kundtjänstens chatt" and chat["required"] is False
    assert chat["purpose"] == "Minns ditt samtal med kundtjänsten."
    assert chat["services"][0]["cookies"][0]["name"] == "chat_id"
    assert chat["services"][0]["cookies"][0]["purpose"] == "Samtalets id."
    assert cfg["cookies"]["customer-chat"] == ["chat_id"]  # deleted when refused
    # Visitors can choose it: a choice naming it is accepted.
    assert post(marketing, choice(cfg, "accept_all")).status_code == 201

    # Back in the form, its id cannot be changed; the removal box takes it off the banner.
    values = form_values(marketing, "/admin/sites/demo/edit")
    assert values["custom-0-label_en"] == "Customer chat" and values["custom-0-rows-0-name"] == "chat_id"
    values["custom-0-remove"] = "y"
    assert marketing.post("/admin/sites/demo/edit", data=dict(values, step="save")).status_code == 302
    assert [c["id"] for c in stored_site(app, "demo")["categories"]] == [c["id"] for c in before["categories"]]
    assert "customer-chat" not in [c["id"] for c in config(marketing, lang="sv")["categories"]]


def test_a_new_site_may_have_a_category_of_its_own(app, marketing):
    values = with_new_categories(marketing, "/admin/sites/new", **{f"custom-0-{k}": v for k, v in CHAT.items()})
    values = definition_to_form(values, NEW_SITE, create=True)
    assert marketing.post("/admin/sites/new", data=values).status_code == 302
    assert [c["id"] for c in stored_site(app, "web-shop")["categories"]][-1] == "customer-chat"


def test_an_added_category_left_empty_is_ignored(app, marketing):
    before = stored_site(app, "demo")
    values = with_new_categories(marketing, count=2)
    assert marketing.post("/admin/sites/demo/edit", data=dict(values, step="save")).status_code == 302
    assert stored_site(app, "demo") == before


REFUSED = [
    ("custom-0-category_id", "<script>alert(1)</script>", "lower-case letters"),
    ("custom-0-category_id", "Customer Chat", "lower-case letters"),
    ("custom-0-category_id", "", "lower-case letters"),
    ("custom-0-category_id", "x" * 41, "at most 40 characters"),
    ("custom-0-category_id", "analytics", "the id of a standard category"),
    ("custom-1-category_id", "customer-chat", "Another category has this id"),
    ("custom-0-label_sv", "<script>alert(1)</script>", "without HTML tags"),
    ("custom-0-label_sv", "", "Enter the name in this language"),
    ("custom-0-purpose_fi", "<img src=x onerror=alert(1)>", "without HTML tags"),
    ("custom-0-purpose_en", "ä" * 501, "at most 500 characters"),
    ("custom-0-purpose_en", " ", "Enter the purpose in this language"),
    ("custom-0-rows-0-duration", "forever", "Enter session"),
    ("texts_analytics-label_sv", "", "Enter the name in this language"),
    ("texts_necessary-purpose_fi", "<script>alert(1)</script>", "without HTML tags"),
    ("texts_preferences-label_fi", "<img src=x onerror=alert(1)>", "without HTML tags"),
    ("texts_marketing-label_en", "x" * 501, "at most 500 characters"),
]


def _ascii_id(text: str) -> str:
    """A test id in ASCII: pytest escapes other characters in ids, and the escaped id then
    cannot select the test on the command line (as mutmut does, scripts/mutate)."""
    return text.encode("ascii", "replace").decode("ascii")


@pytest.mark.parametrize("field_id, value, message", REFUSED, ids=[_ascii_id(f"{r[0]}={r[1][:20]!r}") for r in REFUSED])
def test_a_bad_category_is_answered_beside_its_field_and_nothing_is_saved(app, marketing, field_id, value,
                                                                        message):
    before = stored_site(app, "demo")
    second = {f"custom-1-{k}": v for k, v in CHAT.items() if k != "category_id"}
    second["custom-1-category_id"] = "second"
    values = with_new_categories(marketing, count=2, **{f"custom-0-{k}": v for k, v in CHAT.items()},
                                 **second)
    values[field_id] = value
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in error_beside(page, field_id), error_beside(page, field_id) or page[:3000]
    assert "Nothing was saved" in page and f'href="#{field_id}"' in page
    assert stored_site(app, "demo") == before
    assert "<script>alert(1)" not in page and "<img src=x" not in page


def test_no_more_categories_than_a_site_may_have(app, marketing):
    values = with_new_categories(marketing, count=16)  # the demo's four, and sixteen of its own
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="add-category"))
    page = response.get_data(as_text=True)
    assert "A site can have at most 20 categories. To add another, remove one." in page
    assert 'name="custom-16-category_id"' not in page
    # A block posted anyway is kept (as the 17th), never dropped: the empty ones are left out when
    # saving, so it fits.
    extra = {f"custom-99-{k}": v for k, v in CHAT.items()}
    values = read_form(marketing.post("/admin/sites/demo/edit",
                                      data=dict(values, **extra, step="more")).get_data(as_text=True))
    assert values["custom-16-category_id"] == "customer-chat"
    assert marketing.post("/admin/sites/demo/edit", data=dict(values, step="save")).status_code == 302
    assert [c["id"] for c in stored_site(app, "demo")["categories"]][-1] == "customer-chat"


def test_a_site_added_with_the_cli_at_the_limit_can_be_edited(app, marketing, tmp_path):
    """necessary and 19 categories of its own: more than the form's blocks used to allow."""
    own = [{"id": f"own-{i}", "label": {"fi": f"Oma {i}", "sv": f"Egen {i}", "en": f"Own {i}"},
            "purpose": f"Purpose {i}.", "services": []} for i in range(sites.MAX_CATEGORIES - 1)]
    own[-1]["services"] = [{"name": "Chat", "provider": "Tiimityö Oy", "cookies": [
        {"name": "chat_id", "purpose": {lang: f"The chat's id ({lang})." for lang in LANGS},
         "duration": "P30D"}]}]
    source = tmp_path / "full.json"
    source.write_text(json.dumps(dict(DEMO_SITE, id="full", categories=[DEMO_SITE["categories"][0], *own])),
                      encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["sites", "add", str(source)])
    assert result.exit_code == 0, result.output
    before = stored_site(app, "full")
    url = "/admin/sites/full/edit"

    values = form_values(marketing, url)
    assert values["custom-18-category_id"] == "own-18" and values["custom-18-rows-0-name"] == "chat_id"
    response = marketing.post(url, data=dict(values, step="save"))
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    assert stored_site(app, "full") == before

    # One more is refused, beside the button that would add it, and beside a category asked about.
    response = marketing.post(url, data=dict(values, step="add-category"))
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and 'name="custom-19-category_id"' not in page
    beside = re.search(r'<p class="error" id="add-category-error">(.*?)</p>', page, re.S).group(1)
    assert "A site can have at most 20 categories. To add another, remove one." in html.unescape(beside)
    assert re.search(r'<button[^>]*id="add-category"[^>]*aria-describedby="add-category-error"', page)
    response = marketing.post(url, data=dict(values, show_analytics="y", step="save"))
    assert response.status_code == 400
    assert "at most 20 categories" in error_beside(response.get_data(as_text=True), "show_analytics")
    response = marketing.post(url, data=dict(values, **{f"custom-19-{k}": v for k, v in CHAT.items()},
                                             step="save"))  # posted without the button
    assert response.status_code == 400
    assert "at most 20 categories" in error_beside(response.get_data(as_text=True), "custom-19-category_id")
    assert stored_site(app, "full") == before

    # Marking one for removal makes room for another.
    response = marketing.post(url, data=dict(values, **{"custom-0-remove": "y"}, step="add-category"))
    assert '<a href="#custom-19">A new category was added' in response.get_data(as_text=True)


# -- hostile input ------------------------------------------------------------------------------

HOSTILE = [
    ("name", "<script>alert(1)</script>", "name", "without HTML tags"),
    ("name", "x" * 201, "name", "at most 200 characters"),
    ("name", "   ", "name", "Enter a name"),
    ("site_id", "<script>alert(1)</script>", "site_id", "lower-case letters"),
    ("site_id", "Web Shop", "site_id", "lower-case letters"),
    ("site_id", "x" * 65, "site_id", "at most 64 characters"),
    ("site_id", "demo", "site_id", "A site with the id demo exists already"),
    ("site_id", "", "site_id", "lower-case letters"),
    ("origins", "javascript:alert(1)", "origins", "Line 1: javascript:alert(1) is not an origin"),
    ("origins", "*", "origins", "Line 1: * is not an origin"),
    ("origins", "https://*.example.fi", "origins", "is not an origin"),
    ("origins", "https://www.example.fi/path", "origins", "is not an origin"),
    ("origins", "https://www.example.fi\n\nhttps://WWW.example.fi/", "origins",
     "Line 3: https://WWW.example.fi/ is listed twice"),
    ("origins", "<script>alert(1)</script>", "origins", "is not an origin"),
    ("origins", "https://" + "a" * 300 + ".fi", "origins", "is not an origin"),
    ("origins", "", "origins", "Enter 1 to 50 origins"),
    ("origins", "\n".join(f"https://h{i}.example.fi" for i in range(51)), "origins", "Enter 1 to 50 origins"),
    ("default_language", "xx", "default_language", "Not a valid choice"),
    ("consent_days", "0", "consent_days", "from 1 to 395"),
    ("consent_days", "396", "consent_days", "at most 13 months"),
    ("consent_days", "99999", "consent_days", "from 1 to 395"),
    ("consent_days", "<script>", "consent_days", "integer"),
    ("cookie_domain", "<script>alert(1)</script>", "cookie_domain", "Enter a domain"),
    ("cookie_domain", "-bad-.fi", "cookie_domain", "Enter a domain"),
    ("cookie_domain", "a" * 254, "cookie_domain", "at most 253 characters"),
    ("notice_privacy", "no-such-notice", "notice_privacy", "Not a valid choice"),
    ("rows_necessary-0-service", "<img src=x onerror=alert(1)>", "rows_necessary-0-service", "without HTML tags"),
    ("rows_necessary-0-service", "x" * 501, "rows_necessary-0-service", "at most 500 characters"),
    ("rows_necessary-0-service", "", "rows_necessary-0-service", "Enter the service's name"),
    ("rows_necessary-0-provider", "</textarea><script>alert(1)</script>", "rows_necessary-0-provider",
     "without HTML tags"),
    ("rows_necessary-0-provider", "", "rows_necessary-0-provider", "Enter the service's provider"),
    ("rows_necessary-0-name", "bad name", "rows_necessary-0-name", "Enter the cookie's name"),
    ("rows_necessary-0-name", "<script>", "rows_necessary-0-name", "Enter the cookie's name"),
    ("rows_necessary-0-name", "x" * 101, "rows_necessary-0-name", "at most 100 characters"),
    ("rows_necessary-0-name", "", "rows_necessary-0-name", "Enter the cookie's name"),
    ("rows_necessary-0-duration", "forever", "rows_necessary-0-duration", "Enter session"),
    ("rows_necessary-0-duration", "P1Y2M", "rows_necessary-0-duration", "Enter session"),
    ("rows_necessary-0-duration", "javascript:alert(1)", "rows_necessary-0-duration", "Enter session"),
    ("rows_necessary-0-cookie_provider", "<b>x</b>", "rows_necessary-0-cookie_provider", "without HTML tags"),
    ("rows_necessary-0-purpose_sv", "", "rows_necessary-0-purpose_sv", "Enter the purpose in this language"),
    ("rows_necessary-0-purpose_en", "<script>alert(1)</script>", "rows_necessary-0-purpose_en",
     "without HTML tags"),
    ("rows_necessary-0-purpose_fi", "ä" * 501, "rows_necessary-0-purpose_fi", "at most 500 characters"),
]


@pytest.mark.parametrize("name, value, field_id, message", HOSTILE, ids=[_ascii_id(f"{h[0]}={h[1][:20]!r}") for h in HOSTILE])
def test_hostile_input_is_answered_beside_its_field_and_nothing_is_saved(app, marketing, name, value,
                                                                        field_id, message):
    values = definition_to_form(form_values(marketing, "/admin/sites/new"), NEW_SITE, create=True)
    values[name] = value
    before = audit_actions(app)
    response = marketing.post("/admin/sites/new", data=values)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in error_beside(page, field_id), error_beside(page, field_id) or page[:3000]
    assert "Nothing was saved" in page and f'href="#{field_id}"' in page  # the summary links to it
    assert stored_site(app, "web-shop") is None and audit_actions(app) == before
    assert "<script>alert(1)" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    if "<" in value and name != "consent_days":
        assert html.escape(value, quote=True).replace("&#x27;", "&#39;") in page or \
            html.escape(value, quote=False) in page  # shown back, escaped


def test_hostile_edit_saves_nothing(app, marketing):
    before = stored_site(app, "demo")
    values = form_values(marketing, "/admin/sites/demo/edit")
    values.update({"origins": "javascript:alert(1)", "rows_analytics-1-duration": "forever",
                   "name": "<script>alert(1)</script>", "site_id": "other"})
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert error_beside(page, "origins") and error_beside(page, "rows_analytics-1-duration")
    assert error_beside(page, "name")
    assert stored_site(app, "demo") == before


def test_a_form_without_its_csrf_token_is_refused_and_nothing_is_saved(app, marketing):
    values = definition_to_form(form_values(marketing, "/admin/sites/new"), NEW_SITE, create=True)
    del values["csrf_token"]
    response = marketing.post("/admin/sites/new", data=values)
    assert response.status_code == 400
    assert "Nothing was saved because the form had expired." in response.get_data(as_text=True)
    assert stored_site(app, "web-shop") is None
    values["csrf_token"] = "forged"
    assert marketing.post("/admin/sites/new", data=values).status_code == 400
    edit = form_values(marketing, "/admin/sites/demo/edit")
    edit.update(name="Changed", csrf_token="")
    assert marketing.post("/admin/sites/demo/edit", data=dict(edit, step="save")).status_code == 400
    assert stored_site(app, "demo")["name"] == "Tiimityö (demo)"


# -- roles ----------------------------------------------------------------------------------


def test_every_marketing_page_needs_sign_in(client):
    for url in MARKETING_PAGES + ["/admin/sites/demo/export.csv"]:
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login"), url


def test_legal_is_refused_every_marketing_page(app, client):
    sign_in(client, "legal@example.fi")
    for url in MARKETING_PAGES:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Verkkokauppa" not in response.get_data(as_text=True)
    values = definition_to_form({"csrf_token": csrf(client, "/admin/")}, NEW_SITE, create=True)
    assert client.post("/admin/sites/new", data=values).status_code == 403
    assert client.post("/admin/sites/demo/edit", data=values).status_code == 403
    assert stored_site(app, "web-shop") is None
    assert 'href="/admin/sites/"' not in client.get("/admin/").get_data(as_text=True)


def test_marketing_is_refused_legal_and_user_pages(marketing):
    for url in ("/admin/notices", "/admin/notices/privacy/new", "/admin/audit", "/admin/users"):
        assert marketing.get(url).status_code == 403, url
    dashboard = marketing.get("/admin/").get_data(as_text=True)
    assert 'href="/admin/sites/"' in dashboard and 'href="/admin/notices"' not in dashboard


def test_an_admin_may_use_the_marketing_pages(app, client):
    add_user(app, "admin@example.fi", "admin")
    sign_in(client, "admin@example.fi")
    assert client.get("/admin/sites/").status_code == 200


def test_unknown_sites_are_404(marketing):
    for url in ("/admin/sites/nope/edit", "/admin/sites/nope/snippet", "/admin/sites/nope/figures",
                "/admin/sites/nope/figures.csv", "/admin/sites/nope/preview"):
        assert marketing.get(url).status_code == 404, url


# -- list, embed code and preview --------------------------------------------------------------


def test_the_list_shows_each_site_with_its_links(marketing):
    page = marketing.get("/admin/sites/").get_data(as_text=True)
    assert "Tiimityö (demo)" in page and "http://localhost:8000" in page
    for link in ("/admin/sites/demo/edit", "/admin/sites/demo/snippet", "/admin/sites/demo/figures",
                 "/admin/sites/new"):
        assert f'href="{link}"' in page
    assert marketing.get("/admin/sites/").headers["Cache-Control"] == "no-store"


def test_the_snippet_names_this_host_and_the_site(app):
    client = app.test_client()
    host = {"base_url": "https://consent.example.fi",  # over https, flask-wtf also checks the Referer
            "headers": {"Referer": "https://consent.example.fi/admin/login"}}
    sign_in(client, "marketing@example.fi", **host)
    response = client.get("/admin/sites/demo/snippet", **host)
    page = response.get_data(as_text=True)
    code = html.unescape(re.search(r'<code id="snippet-script">(.*?)</code>', page, re.S).group(1))
    assert code == ('<script src="https://consent.example.fi/widget/v1/consent.js" data-site="demo" '
                    'async></script>')
    link = html.unescape(re.search(r'<code id="snippet-link">(.*?)</code>', page, re.S).group(1))
    assert link.startswith('<a href="https://consent.example.fi/fi/cookies" data-consent-open>')
    assert "<pre" in page and "data-copy" in page and 'aria-live="polite"' in page
    assert "<button" not in page.split("<main", 1)[1]  # the copy buttons come with admin.js, or not at all
    assert '<script src="/static/admin.js" defer></script>' in page
    frames = re.findall(r"<iframe[^>]*>", page)
    assert len(frames) == 3
    for frame, lang, name in zip(frames, LANGS, ("Suomi", "Svenska", "English")):
        assert f'src="/admin/sites/demo/preview?lang={lang}"' in frame
        assert f'title="Banner preview in {name}"' in frame


def test_the_preview_loads_the_widget_and_may_be_framed_by_the_admin_only(marketing):
    response = marketing.get("/admin/sites/demo/preview?lang=sv")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<script src="/widget/v1/consent.js" data-site="demo" data-lang="sv" data-preview async>' in page
    assert '<html lang="sv">' in page
    assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    # The preview's language is the banner's: the admin stays in English.
    assert '<html lang="en">' in marketing.get("/admin/sites/").get_data(as_text=True)
    other = marketing.get("/admin/sites/demo/snippet")
    assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"]
    assert other.headers["X-Frame-Options"] == "DENY"


def test_marketing_pages_have_no_inline_script_or_style(marketing):
    for url in MARKETING_PAGES[:5] + ["/admin/sites/demo/figures"]:
        page = marketing.get(url).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), url
        assert " style=" not in page and "<style" not in page, url
        assert not re.search(r"\son[a-z]+=", page), url


# -- figures ------------------------------------------------------------------------------------


def make_choices(client: Any) -> dict[str, int]:
    """Choices through the API: 3 accept all, 2 reject all, 1 custom (analytics only), 1 withdraw."""
    cfg = config(client)
    for action in ["accept_all"] * 3 + ["reject_all"] * 2 + ["withdraw"]:
        assert post(client, choice(cfg, action)).status_code == 201
    custom = choice(cfg, "custom")
    custom["choices"]["analytics"] = True
    assert post(client, custom).status_code == 201
    return {"accept_all": 3, "reject_all": 2, "custom": 1, "withdraw": 1}


def cells(page: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]


def test_figures_show_choices_made_through_the_api(app, marketing):
    made = make_choices(marketing)
    day = local_today(app)
    first, last = day - timedelta(days=2), day + timedelta(days=1)
    response = marketing.get(f"/admin/sites/demo/figures?from={first}&to={last}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    daily = cells(page, "daily-table")
    assert daily[0] == ["Day", "Accept all", "Reject all", "Custom", "Withdraw", "Total"]
    by_day = {row[0]: row[1:] for row in daily[1:]}
    with app.test_request_context("/admin/"):
        label = format_date(day, "en")
        empty = format_date(first, "en")
    assert by_day[label] == ["3", "2", "1", "1", "7"]
    assert by_day[empty] == ["0", "0", "0", "0", "0"]  # a day with no choices shows zero
    assert by_day["Total"] == ["3", "2", "1", "1", "7"]
    assert len(daily) == 1 + 4 + 1
    opt_in = {row[0]: row[1:] for row in cells(page, "opt-in-table")[1:]}
    assert opt_in["Analytics"] == ["4", "7", "57.1%"]
    assert opt_in["Marketing"] == ["3", "7", "42.9%"]
    assert opt_in["Necessary"] == ["7", "7", "100%"]
    # The charts: SVG with a title and description, and each series by pattern as well as colour.
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 2
    for svg in svgs:
        assert 'role="img"' in svg and re.search(r'aria-labelledby="([\w-]+)-title \1-desc"', svg)
    assert "<title id=\"chart-actions-title\">Choices per day" in svgs[0]
    assert "3 accept all, 2 reject all, 1 custom, 1 withdraw" in svgs[0]
    for action in made:
        assert f'fill="url(#chart-actions-{action})"' in svgs[0]
    assert "Analytics 57.1%" in svgs[1]
    assert "<caption" in page and 'scope="col"' in page and 'scope="row"' in page


def test_figures_csv_has_the_same_numbers(app, marketing):
    make_choices(marketing)
    day = local_today(app)
    first, last = day - timedelta(days=1), day
    response = marketing.get(f"/admin/sites/demo/figures.csv?from={first}&to={last}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="demo-figures-{first}-{last}.csv"')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["day"] for r in rows] == [first.isoformat(), last.isoformat(), "total"]
    assert rows[0]["total"] == "0" and rows[0]["analytics_total"] == "0"
    today_row = rows[1]
    assert {a: today_row[a] for a in consents.ACTIONS} == {"accept_all": "3", "reject_all": "2",
                                                            "custom": "1", "withdraw": "1"}
    assert today_row["total"] == "7"
    assert (today_row["analytics_granted"], today_row["analytics_total"]) == ("4", "7")
    assert (today_row["preferences_granted"], today_row["marketing_granted"]) == ("3", "3")
    assert rows[2]["total"] == "7"


def test_figures_default_to_the_last_30_days(marketing):
    page = marketing.get("/admin/sites/demo/figures").get_data(as_text=True)
    today = date.fromisoformat(TODAY)
    assert f'id="from" name="from" type="date" value="{today - timedelta(days=29)}"' in page
    assert f'id="to" name="to" type="date" value="{today}"' in page
    assert len(cells(page, "daily-table")) == 1 + 30 + 1
    assert "No choices in this period." in page


@pytest.mark.parametrize("query, field_id, message", [
    ("from=yesterday", "from", "Enter a date as YYYY-MM-DD"),
    ("from=2026-02-30", "from", "Enter a date as YYYY-MM-DD"),
    ("to=20261122", "to", "Enter a date as YYYY-MM-DD"),
    ("from=<script>alert(1)</script>", "from", "Enter a date as YYYY-MM-DD"),
    ("from=2026-11-10&to=2026-11-01", "from", "The start is after the end"),
    ("from=2025-01-01&to=2026-11-22", "to", "Choose at most 366 days"),
    ("from=2025-11-21&to=2026-11-22", "to", "Choose at most 366 days"),
])
def test_a_bad_range_is_answered_beside_the_field(marketing, query, field_id, message):
    response = marketing.get(f"/admin/sites/demo/figures?{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in error_beside(page, field_id)
    assert "<svg" not in page and "<script>alert(1)" not in page
    assert marketing.get(f"/admin/sites/demo/figures.csv?{query}").status_code == 400


def test_a_range_of_366_days_is_fine(marketing):
    assert marketing.get("/admin/sites/demo/figures?from=2025-11-22&to=2026-11-22").status_code == 200


# -- export -------------------------------------------------------------------------------------


def test_export_streams_every_record(app, legal):
    cfg = config(legal)
    ids = []
    for _ in range(25):
        response = post(legal, choice(cfg, "reject_all"))
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["consent_id"])
    response = legal.get("/admin/sites/demo/export.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"].startswith('attachment; filename="demo-consents-')
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(rows[0]) == consents.EXPORT_COLUMNS
    assert [r[1] for r in rows[1:]] == ids
    assert audit_actions(app)[0] == "consents.export"
    day = local_today(app)
    earlier = legal.get(f"/admin/sites/demo/export.csv?from={day - timedelta(days=9)}&to={day - timedelta(days=1)}")
    assert list(csv.reader(io.StringIO(earlier.get_data(as_text=True)))) == [list(consents.EXPORT_COLUMNS)]
    same_day = legal.get(f"/admin/sites/demo/export.csv?from={day}&to={day}")
    assert len(same_day.get_data(as_text=True).splitlines()) == 26
    assert legal.get("/admin/sites/demo/export.csv?from=nope").status_code == 400


def test_export_writes_in_chunks(app, legal, monkeypatch):
    monkeypatch.setattr(admin_sites, "EXPORT_CHUNK", 1000)
    cfg = config(legal)
    for _ in range(10):
        post(legal, choice(cfg, "accept_all"))
    response = legal.get("/admin/sites/demo/export.csv")
    chunks = list(response.response)
    assert len(chunks) > 3 and all(len(c) < 2000 for c in chunks)


# -- figures module -----------------------------------------------------------------------------


def test_parse_range():
    today = date(2026, 11, 22)
    assert figures.parse_range(None, None, today) == (date(2026, 10, 24), today)
    assert figures.parse_range("2026-01-01", None, today) == (date(2026, 1, 1), today)
    assert figures.parse_range(None, "2026-02-01", today) == (date(2026, 1, 3), date(2026, 2, 1))
    with pytest.raises(figures.RangeError) as caught:
        figures.parse_range("x", "2026-02-31", today)
    assert caught.value.errors == {"from": "invalid", "to": "invalid"}
    assert figures.parse_range("2020-01-01", "2026-01-01", today, max_days=None)[0] == date(2020, 1, 1)


def test_charts_escape_their_texts_and_scale():
    class Store:
        def daily_actions(self, *args):
            return [{"day": "2026-01-02", "action": "custom", "n": 7}]

        def daily_categories(self, *args):
            return [{"day": "2026-01-02", "category": "old", "granted": 1, "total": 7}]

    site = {"id": "s", "categories": [{"id": "necessary"}, {"id": "analytics"}]}
    fig = figures.load(Store(), site, date(2026, 1, 1), date(2026, 1, 3))
    assert [c.id for c in fig.categories] == ["necessary", "analytics", "old"]
    assert fig.actions[date(2026, 1, 1)] == {a: 0 for a in consents.ACTIONS} and fig.total == 7
    svg = figures.actions_chart(fig, chart_id="c", title="<b>", desc="d", labels={a: f"<{a}>" for a in consents.ACTIONS},
                                day_label=str, axis_label=str, number=str, empty="none")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&lt;custom&gt;" in svg
    assert figures.nice_ceiling(7) == 8 and figures.nice_ceiling(0) == 4 and figures.nice_ceiling(1234) == 2000
    svg = figures.opt_in_chart(fig, chart_id="o", title="t", desc="d", category_label=lambda c: f"<{c}>",
                               percent=lambda r: f"{r:.0%}", number=str, no_data="–")
    assert "&lt;old&gt;" in svg and "14% (1 / 7)" in svg
    year = figures.Figures("s", date(2025, 1, 1), date(2025, 12, 31),
                           [date(2025, 1, 1) + timedelta(days=i) for i in range(365)],
                           {date(2025, 1, 1) + timedelta(days=i): {a: 1 for a in consents.ACTIONS} for i in range(365)}, [])
    assert len(figures.bins(year)) == 53 and figures.bins(year)[0][2]["custom"] == 7


@pytest.mark.parametrize("lang, privacy, cookies", [
    ("fi", "Tietosuojaseloste (privacy)", "Evästeseloste (cookies)"),
    ("sv", "Dataskyddsbeskrivning (privacy)", "Information om kakor (cookies)"),
    ("en", "Privacy notice (privacy)", "Cookie notice (cookies)"),
])
def test_the_notice_pickers_name_each_notice_by_its_title_then_its_slug(app, client, lang, privacy, cookies):
    sign_in(client, "marketing@example.fi")
    client.get(f"/admin/?lang={lang}")
    for url in ("/admin/sites/new", "/admin/sites/demo/edit"):
        page = html.unescape(client.get(url).get_data(as_text=True))
        picker = re.search(r'<select[^>]*id="notice_privacy"[^>]*>(.*?)</select>', page, re.S).group(1)
        assert re.findall(r'<option[^>]*value="(\w+)"[^>]*>([^<]*)</option>', picker) == sorted(
            [("cookies", cookies), ("privacy", privacy)], key=lambda o: o[1].casefold()), url
        assert [attrs for attrs in re.findall(r"<option([^>]*)>", picker) if "selected" in attrs] == [
            ' selected value="privacy"'], picker
