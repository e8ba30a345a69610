"""Cookie notice drafts and the sites behind them (issue 14.6, after review): a draft holds only the
declarations of the sites that link the notice, never another site's tables; no heading twice; Keksi's
own items always under necessary; a notice several sites link lists every one's cookies (admin and CLI
say so first); a service's privacy link, from the catalogue or the site form, in the tables."""

from __future__ import annotations

import copy
import re
import shutil

import pytest

from keksi import catalogue, cookie_notice, notices, sites

from .conftest import BOTH, SAMPLE_NOTICES, csrf, from_store, signed_in
from .ledger import DEMO_SITE, add_site
from .test_admin import textarea
from .test_admin_sites import error_beside, form_values

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

LANGS = ("fi", "sv", "en")
OPERATOR = "Tiimityö Oy"
DEMO_ONLY = ("tt_session", "tt_csrf", "tt_lang", "tt_theme", "_pk_id.*", "_gcl_au", "li_fat_id")
NECESSARY = {"fi": "## Välttämättömät evästeet", "sv": "## Nödvändiga kakor", "en": "## Necessary cookies"}
# Keksi's own cookie on a site whose consents last 90 days: a refusal stands 183.
OWN_LIFETIME = {"fi": "90 päivää; 183 päivää ”Hylkää kaikki” -valinnan jälkeen",
                "sv": "90 dygn; 183 dygn efter ”Avvisa alla”",
                "en": "90 days; 183 days after “Reject all”"}
PRIVACY = {"fi": "tietosuojakäytäntö", "sv": "integritetspolicy", "en": "privacy policy"}
SITE_COLUMN = {"fi": "Sivusto", "sv": "Webbplats", "en": "Site"}


def shop(cookies_notice: str = "shop-cookies") -> dict:
    """A second site: a cart cookie, Google Analytics from the catalogue, consents for 90 days, and
    none of Keksi's own items declared."""
    return {
        "id": "shop", "name": "Kauppa", "origins": ["https://kauppa.example.fi"], "consent_days": 90,
        "notices": {"privacy": "privacy", "cookies": cookies_notice},
        "categories": [
            {"id": "necessary", "services": [{"name": "Kauppa", "provider": OPERATOR, "cookies": [
                {"name": "shop_cart", "duration": "P7D", "purpose": {
                    "fi": "Muistaa ostoskorin.", "sv": "Kommer ihåg varukorgen.", "en": "Remembers the cart."}}]}]},
            {"id": "analytics", "services": [catalogue.site_service("google-analytics", OPERATOR)]},
        ]}


def fixture_body(lang: str) -> str:
    path = SAMPLE_NOTICES / "cookies" / f"2025-09-15.{lang}.md"
    return notices.read_source(path, path.parent.parent).body


def draft(app, covered, lang, base):
    with app.app_context():
        return cookie_notice.draft([sites.validate(copy.deepcopy(s), list(LANGS)) for s in covered],
                                   lang, base, OPERATOR)


def headings(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith("#")]


def rows(html: str, cookie: str) -> list[list[str]]:
    """The cells of every rendered table row that names `cookie`."""
    found = re.findall(rf"<tr>((?:(?!</tr>).)*?<code>{re.escape(cookie)}</code>.*?)</tr>", html, re.S)
    return [re.findall(r"<td>(.*?)</td>", row, re.S) for row in found]


def necessary_table(html: str, lang: str) -> str:
    heading = NECESSARY[lang][3:]
    return html.split(f">{heading}</h2>", 1)[1].split("</table>", 1)[0]


# -- 1. only the chosen site's declaration ------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_second_sites_draft_from_a_copy_of_the_demo_text_holds_only_its_own_cookies(app, lang):
    written = draft(app, [shop()], lang, fixture_body(lang))
    html = notices.render(written.body)
    assert [name for name in DEMO_ONLY if f"<code>{name}</code>" in html] == []
    assert rows(html, "shop_cart") and rows(html, "_ga") and rows(html, "keksi_consent")
    assert written.adopted == ["necessary", "preferences", "analytics", "marketing"], "placed by their headings"
    assert written.removed == ["preferences", "marketing"], "the demo's other tables are out, and named"
    assert headings(written.body) == headings(fixture_body(lang)), "legal's headings as they were, none twice"


# -- 2. no heading twice ------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_category_declared_again_gets_its_table_back_under_legals_heading(app, lang):
    demo = copy.deepcopy(DEMO_SITE)
    without = dict(demo, categories=[c for c in demo["categories"] if c["id"] != "preferences"])
    first = draft(app, [demo], lang, fixture_body(lang)).body
    gone = draft(app, [without], lang, first)
    assert "tt_theme" not in gone.body and gone.removed == ["preferences"]
    back = draft(app, [demo], lang, gone.body)
    assert back.added == [], "no new section: legal's kept one takes the table"
    assert headings(back.body) == headings(first) and len(set(headings(back.body))) == len(headings(back.body))
    section = back.body.split(headings(first)[3], 1)[1].split("\n## ", 1)[0]  # the preference section
    assert "<!-- keksi:cookies preferences -->" in section and "`tt_theme`" in section


def test_unplaced_cookie_tables_are_taken_out_and_named(app):
    base = "## Our cookies\n\n| Cookie | Provider |\n|---|---|\n| `old_one` | Someone |\n\nText after.\n"
    written = draft(app, [shop()], "en", base)
    assert written.unplaced == ["old_one"] and "old_one" not in written.body and "Text after." in written.body
    assert headings(written.body).count("## Necessary cookies") == 1


# -- 3. Keksi's own items -----------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_keksis_own_cookie_and_queue_are_always_under_necessary(app, lang):
    html = notices.render(draft(app, [shop()], lang, None).body)
    table = necessary_table(html, lang)
    assert "<code>keksi_consent</code>" in table and "<code>keksi_queue</code>" in table
    assert rows(html, "keksi_consent")[0][3] == OWN_LIFETIME[lang]
    assert rows(html, "keksi_consent")[0][1] == OPERATOR
    demo = notices.render(draft(app, [DEMO_SITE], lang, None).body)
    assert len(rows(demo, "keksi_consent")) == len(rows(demo, "keksi_queue")) == 1, "declared ones once"


def test_a_necessary_category_without_cookies_still_lists_keksis_own(app):
    bare = dict(shop(), categories=[{"id": "necessary", "services": []}])
    body = draft(app, [bare], "en", None).body
    assert "No cookies of this category are in use." not in body.split("<!-- /keksi:cookies necessary -->")[0]
    assert "`keksi_consent`" in body


# -- 4. one notice, several sites ---------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_notice_two_sites_link_lists_both_with_the_site_of_each_cookie(app, lang):
    written = draft(app, [DEMO_SITE, shop("cookies")], lang, fixture_body(lang))
    html = notices.render(written.body)
    assert all(rows(html, name) for name in (*DEMO_ONLY, "shop_cart", "_ga"))
    assert rows(html, "shop_cart")[0][0] == "Kauppa" and rows(html, "tt_lang")[0][0] == "Tiimityö (demo)"
    assert f"<th>{SITE_COLUMN[lang]}</th>" in html
    assert written.removed == [] and len(set(headings(written.body))) == len(headings(written.body))


@pytest.fixture
def two_sites(app):
    add_site(app)
    add_site(app, shop("cookies"))
    return app


def test_legal_is_told_before_drafting_that_the_notice_covers_two_sites(two_sites):
    legal = signed_in(two_sites, "legal@example.fi", "legal")
    listing = legal.get("/admin/notices").get_data(as_text=True)
    assert listing.count("Draft from the declaration") == 1
    assert ">Draft from the declarations of Tiimityö (demo) and Kauppa</a>" in listing
    assert "2 sites link this notice as their cookie notice: a draft lists the cookies of every one" in listing
    page = legal.get("/admin/notices/cookies/new?site=shop").get_data(as_text=True)
    assert "Drafted from the declarations of Tiimityö (demo) and Kauppa" in page
    for lang in LANGS:
        body = textarea(page, f"body_{lang}")
        assert "`shop_cart`" in body and "`li_fat_id`" in body and f"| {SITE_COLUMN[lang]} |" in body
    assert textarea(page, "summary_en") == "The cookie tables follow the declarations of Tiimityö (demo) and Kauppa."
    legal.get("/admin/?lang=fi")
    finnish = legal.get("/admin/notices").get_data(as_text=True)
    assert "2 sivustoa linkittää tämän ilmoituksen evästeilmoituksekseen" in finnish


def test_the_cli_says_so_and_drafts_both_sites(two_sites, runner, notices_dir):
    result = runner.invoke(args=["notices", "draft-cookies", "shop"])
    assert result.exit_code == 0, result.output
    assert "2 sites link the cookie notice 'cookies': demo, shop." in result.output
    for lang in LANGS:
        body = notices.read_source(notices_dir / "cookies" / f"2026-11-22.{lang}.md", notices_dir).body
        html = notices.render(body)
        assert rows(html, "shop_cart")[0][0] == "Kauppa" and rows(html, "_gcl_au")[0][0] == "Tiimityö (demo)"
    assert runner.invoke(args=["notices", "check"]).exit_code == 0


def test_a_site_with_a_notice_of_its_own_drafts_only_its_own(app, runner, notices_dir):
    shutil.copytree(notices_dir / "cookies", notices_dir / "shop-cookies")
    assert runner.invoke(args=["notices", "publish", "--reason", "Shop"]).exit_code == 0
    add_site(app)
    add_site(app, shop())
    result = runner.invoke(args=["notices", "draft-cookies", "shop"])
    assert result.exit_code == 0 and "sites link" not in result.output, result.output
    assert "Tables taken out, of categories no longer declared: marketing, preferences." in result.output
    for lang in LANGS:
        html = notices.render(notices.read_source(
            notices_dir / "shop-cookies" / f"2026-11-22.{lang}.md", notices_dir).body)
        assert [name for name in DEMO_ONLY if f"<code>{name}</code>" in html] == []
        assert rows(html, "shop_cart") and f"<th>{SITE_COLUMN[lang]}</th>" not in html


# -- 5. a privacy link per service --------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://example.fi/privacy", "https://example.fi/a b", "https://example.fi/a|b",
                                 "https://example.fi/" + "a" * 500, "javascript:alert(1)", "https://", 42,
                                 "https://example.fi/<script>", "https://example.fi/[x]"])
def test_a_privacy_link_must_be_a_bounded_https_address(url):
    site = shop()
    site["categories"][1]["services"][0]["privacy_url"] = url
    with pytest.raises(sites.InvalidSite) as caught:
        sites.validate(site, list(LANGS))
    assert list(caught.value.errors) == ["categories[1].services[0].privacy_url"]


def test_a_privacy_link_asks_nobody_again():
    site = sites.validate(shop(), list(LANGS))
    linked = copy.deepcopy(site)
    linked["categories"][0]["services"][0]["privacy_url"] = "https://kauppa.example.fi/tietosuoja"
    assert sites.validate(linked, list(LANGS))["categories"][0]["services"][0]["privacy_url"].endswith("/tietosuoja")
    assert sites.choice_hash(linked) == sites.choice_hash(site)


def test_the_catalogue_brings_the_privacy_link_of_a_third_party_only():
    assert catalogue.site_service("google-ads", OPERATOR)["privacy_url"] == "https://policies.google.com/privacy"
    assert "privacy_url" not in catalogue.site_service("matomo", OPERATOR), "self-hosted: the site's own notice"


@pytest.mark.parametrize("lang", LANGS)
def test_the_drafts_tables_link_each_providers_privacy_policy(app, lang):
    html = notices.render(draft(app, [shop()], lang, None).body)
    provider = rows(html, "_ga")[0][1]
    assert provider.startswith("Google Ireland Ltd (Google Analytics), ")
    assert (f'<a href="https://policies.google.com/privacy" rel="noopener noreferrer">{PRIVACY[lang]}</a>'
            in provider)
    assert "<a " not in rows(html, "shop_cart")[0][1], "no link where the service has none"


EDIT = "/admin/sites/demo/edit"


def test_marketing_adds_from_the_catalogue_and_edits_the_link_in_the_site_form(app):
    add_site(app)
    marketing = signed_in(app, "m@example.fi", "marketing")
    added = marketing.post("/admin/sites/demo/catalogue", data={
        "csrf_token": csrf(marketing, EDIT), "catalogue-service": "hotjar", "catalogue-category": ""})
    assert added.status_code == 302
    values = form_values(marketing, EDIT)
    hotjar = [k[:-len("service")] for k, v in values.items() if k.endswith("-service") and v == "Hotjar"]
    assert len(hotjar) == 5, "a row per cookie"
    assert {values[row + "privacy_url"] for row in hotjar} == {"https://www.hotjar.com/legal/policies/privacy/"}

    def every_row(url: str) -> dict[str, str]:
        return dict(values, step="save", **{row + "privacy_url": url for row in hotjar})

    refused = marketing.post(EDIT, data=every_row("http://hotjar.com"))
    assert refused.status_code == 400
    assert error_beside(refused.get_data(as_text=True), hotjar[0] + "privacy_url").startswith(
        "Enter an https address of at most 500 characters")
    one_row = marketing.post(EDIT, data=dict(every_row("https://hotjar.example/p"), **{hotjar[1] + "privacy_url": "https://x.fi"}))
    assert one_row.status_code == 400
    assert "Another row of this service links https://hotjar.example/p" in error_beside(
        one_row.get_data(as_text=True), hotjar[1] + "privacy_url")
    saved = marketing.post(EDIT, data=every_row("https://hotjar.example/p"))
    assert saved.status_code == 302, saved.get_data(as_text=True)[:3000]
    site = from_store(app, "site", "demo")
    hotjar = next(s for c in site["categories"] for s in c["services"] if s["name"] == "Hotjar")
    assert hotjar["privacy_url"] == "https://hotjar.example/p"
