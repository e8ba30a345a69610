"""The cookie notice follows the declaration (issue 14.6): the draft's tables in fi, sv and en, legal's
prose kept around them, a declaration change as a diff line, and the draft through the admin and the CLI
to the public page."""

from __future__ import annotations

import copy
import re

import pytest

from keksi import cookie_notice, diffs, notices, scan, scan_results, sites

from keksi.store import open_store

from .conftest import SAMPLE_NOTICES, SHIPPED_NOTICES, add_user, csrf, from_store, sign_in
from .ledger import DEMO_SITE, add_site
from .test_admin import input_value, previewed, textarea

LANGS = ("fi", "sv", "en")
OPERATOR = "Tiimityö Oy"
# Words the tables say in each language: a duration, a party, where marketing data goes.
WORDS = {
    "fi": ("13 kuukautta", "Ensimmäinen osapuoli", "Kolmas osapuoli", "Yhdysvallat, suojatoimena vakiosopimuslausekkeet"),
    "sv": ("13 månader", "Förstapart", "Tredjepart", "USA, med stöd av standardavtalsklausuler"),
    "en": ("13 months", "First party", "Third party", "United States, under standard contractual clauses"),
}
EVERY_COOKIE = ("keksi_consent", "keksi_queue", "tt_session", "tt_csrf", "tt_lang", "tt_theme",
                "_pk_id.*", "_pk_ses.*", "_gcl_au", "li_fat_id")


@pytest.fixture
def site():
    return sites.validate(copy.deepcopy(DEMO_SITE), list(LANGS))


def body_of(path) -> str:
    return notices.read_source(path, path.parent.parent).body


def shipped(lang: str) -> str:
    return body_of(SHIPPED_NOTICES / "cookies" / f"2026-12-02.{lang}.md")


def draft(app, site, lang, base):
    with app.app_context():
        return cookie_notice.draft([site], lang, base, OPERATOR)


def table_rows(body: str, category: str) -> list[list[str]]:
    block = re.search(rf"<!-- keksi:cookies {category} -->\n(.*?)\n<!-- /keksi:cookies {category} -->", body, re.S)
    assert block, f"no {category} block"
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in block[1].splitlines()]


def outside_tables(body: str) -> list[str]:
    return [line for line in body.splitlines() if line.strip() and not line.startswith(("|", "<!--"))]


# -- the generator -----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_draft_from_the_shipped_notice_keeps_legals_prose_and_writes_every_declared_cookie(app, site, lang):
    base = shipped(lang)
    written = draft(app, site, lang, base)
    assert written.adopted == ["necessary", "preferences", "analytics", "marketing"], "the unmarked tables are adopted"
    assert written.added == written.removed == []
    assert outside_tables(written.body) == outside_tables(base), "legal's words are all kept, in their order"
    months, first, third, transfer = WORDS[lang]
    analytics = table_rows(written.body, "analytics")
    assert analytics[2][0] == "`_pk_id.*`" and analytics[2][3] == months and analytics[2][4] == first
    marketing = table_rows(written.body, "marketing")
    assert len(marketing[0]) == 6, "a category with a declared transfer has the column"
    assert marketing[3][4] == first and marketing[3][5] == transfer  # li_fat_id: on the site's own domain
    assert len(table_rows(written.body, "necessary")[0]) == 5, "and one without has not"
    html = notices.render(written.body)
    assert all(f"<code>{name}</code>" in html for name in EVERY_COOKIE)
    assert "keksi:cookies" not in html, "the marks are never shown"
    assert draft(app, site, lang, written.body).body == written.body, "drafting again changes nothing"


def test_the_draft_and_the_site_audit_agree_on_first_and_third_party(app, site):
    """_ga is written by a tag on the site's own domain: first party in the scan and in the notice;
    YouTube's VISITOR_INFO1_LIVE lives on youtube.com: third party in both (issue 14's review)."""
    for service_id in ("google-analytics", "youtube"):
        site = scan_results.add_service(site, service_id, None, OPERATOR)
    rows = {row[0]: row[4] for cid in ("analytics", "marketing")
            for row in table_rows(draft(app, site, "en", None).body, cid)[2:]}
    assert rows["`_ga`"] == "First party" and rows["`VISITOR_INFO1_LIVE`"] == "Third party"
    seen = {"name": "_ga", "domain": ".example.fi", "path": "/", "expires": -1, "httpOnly": False, "secure": True}
    assert scan._cookie(seen, "www.example.fi", {})["party"] == "first"
    youtube = dict(seen, name="VISITOR_INFO1_LIVE", domain=".youtube.com")
    assert scan._cookie(youtube, "www.example.fi", {})["party"] == "third"


def test_a_declaration_change_is_one_changed_line_of_the_diff(app, site):
    before = draft(app, site, "en", shipped("en")).body
    site["categories"][3]["services"][0]["cookies"][0]["duration"] = "P60D"
    after = draft(app, site, "en", before).body
    changed = [line for line in diffs.diff(before, after) if line.kind != "same"]
    assert [(line.kind, line.block) for line in changed] == [("before", "tr"), ("after", "tr")], "one row changed"
    assert "<del>90</del>" in str(changed[0].html) and "<ins>60</ins>" in str(changed[1].html)
    assert "_gcl_au" in str(changed[1].html)


def test_a_new_category_gets_its_section_and_a_dropped_one_loses_its_table(app, site):
    base = draft(app, site, "fi", shipped("fi")).body
    chat = {"id": "chat", "label": {"fi": "Chat", "sv": "Chatt", "en": "Chat"},
            "purpose": {"fi": "Asiakaspalvelun chat.", "sv": "Kundtjänstens chatt.", "en": "The support chat."},
            "services": [{"name": "Intercom", "provider": "Intercom R&D Unlimited Company",
                          "cookies": [{"name": "intercom-id-*", "provider": "Intercom R&D Unlimited Company",
                                       "purpose": "Tunnistaa keskustelun.", "duration": "P9M"}]}]}
    site["categories"] = [c for c in site["categories"] if c["id"] != "preferences"] + [chat]
    written = draft(app, site, "fi", base)
    assert written.added == ["chat"] and written.removed == ["preferences"]
    assert "<!-- keksi:cookies preferences -->" not in written.body and "tt_theme" not in written.body
    assert "## Asetusevästeet" in written.body, "legal's section stays for legal to rewrite"
    section = written.body.split("## Chat\n\n", 1)[1]
    assert section.startswith("Asiakaspalvelun chat.\n\n<!-- keksi:cookies chat -->")
    assert table_rows(written.body, "chat")[2][1:5] == [
        "Intercom R&D Unlimited Company", "Tunnistaa keskustelun.", "9 kuukautta", "Ensimmäinen osapuoli"]
    assert written.body.index("## Chat") > written.body.index("<!-- /keksi:cookies marketing -->")
    assert written.body.index("## Chat") < written.body.index("## Selosteen muutokset"), "before legal's closing"


@pytest.mark.parametrize("lang, heading", [("fi", "## Välttämättömät evästeet"), ("sv", "## Nödvändiga kakor"),
                                           ("en", "## Necessary cookies")])
def test_without_a_version_the_draft_starts_from_the_template(app, site, lang, heading):
    written = draft(app, site, lang, None)
    assert written.added == ["necessary", "preferences", "analytics", "marketing"]
    assert written.body.count("<!-- /keksi:cookies ") == 4 and heading in written.body
    assert "Tiimityö (demo)" in written.body.splitlines()[0]
    assert not notices.check_rendering([written.body])[0]


def test_declared_text_is_shown_as_written_never_as_markup(app, site):
    cookie = site["categories"][0]["services"][0]["cookies"][0]
    cookie["purpose"] = {lang: "A | B <script>alert(1)</script> **bold** [link](javascript:alert(1))" for lang in LANGS}
    cookie["name"] = "odd`name|x"
    html = notices.render(draft(app, site, "en", None).body)
    row = re.search(r"<tr>\s*<td><code>odd`name\|x</code></td>(.*?)</tr>", html, re.S)
    assert row, html
    cells = re.findall(r"<td>(.*?)</td>", row[1], re.S)
    assert len(cells) == 4, "a pipe in the text splits no cell"
    assert cells[1] == "A | B &lt;script&gt;alert(1)&lt;/script&gt; **bold** [link](javascript:alert(1))"


def test_the_frozen_fixture_notice_is_adopted_too(app, site):
    written = draft(app, site, "sv", body_of(SAMPLE_NOTICES / "cookies" / "2025-09-15.sv.md"))
    assert "necessary" in written.adopted and written.body.count("<!-- keksi:cookies ") == 4


# -- the admin ---------------------------------------------------------------------------------

NEW = "/admin/notices/cookies/new"


@pytest.fixture
def legal(app):
    add_site(app)
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    sign_in(client, "legal@example.fi")
    return client


def drafted_form(page: str) -> dict[str, str]:
    data = {}
    for lang in LANGS:
        data[f"title_{lang}"] = input_value(page, f"title_{lang}")
        data[f"summary_{lang}"] = textarea(page, f"summary_{lang}")
        data[f"body_{lang}"] = textarea(page, f"body_{lang}")
    return data


def preview_and_publish(legal, data: dict[str, str], date: str = "2026-11-22"):
    """Preview the drafted form as posted, then publish what was previewed, with a reason."""
    form = {"csrf_token": csrf(legal, NEW), "effective_date": date, "step": "preview", **data}
    preview = legal.post(f"{NEW}?site=demo", data=form)
    assert preview.status_code == 200, preview.get_data(as_text=True)[:2000]
    return preview, legal.post(f"{NEW}?site=demo", data=dict(
        form, step="publish", previewed=previewed(preview), reason="Tables from the declaration.", confirm="y"))


def test_legal_drafts_from_the_declaration_previews_the_diff_and_publishes(app, legal, client):
    listing = legal.get("/admin/notices").get_data(as_text=True)
    assert f'href="{NEW}?site=demo">Draft from the declaration of Tiimityö (demo)' in listing
    form = legal.get(NEW).get_data(as_text=True)
    assert f'href="{NEW}?site=demo&amp;from=2025-09-15">Draft from the declaration of Tiimityö (demo)' in form
    page = legal.get(f"{NEW}?site=demo").get_data(as_text=True)
    assert "Drafted from the declaration of Tiimityö (demo)" in page
    assert "between the marks &lt;!-- keksi:cookies … --&gt; that the page does not show" in page
    data = drafted_form(page)
    assert data["summary_fi"] == "Evästetaulukot vastaavat sivuston Tiimityö (demo) evästeilmoitusta."
    for lang in LANGS:
        assert "<!-- keksi:cookies marketing -->" in data[f"body_{lang}"]
        assert WORDS[lang][3] in data[f"body_{lang}"]
    preview, done = preview_and_publish(legal, data)
    shown = preview.get_data(as_text=True)
    assert "Changes from the version of 15 September 2025" in shown
    assert '<span class="diff-cell">First party</span>' in shown.split('class="diff-added diff-tr"')[-1]
    assert "Drafted from the declaration" not in shown, "the note is for the drafted form only"
    assert done.status_code == 302, done.get_data(as_text=True)[:2000]
    entry = next(e for e in from_store(app, "audit_log", 50) if e["action"] == "notice.publish")
    assert entry["subject"].startswith("cookies/2026-11-22") and "Tables from the declaration." in str(entry)
    for lang in LANGS:
        public = client.get(f"/{lang}/cookies").get_data(as_text=True)
        assert all(f"<code>{name}</code>" in public for name in EVERY_COOKIE)
        months, first, third, transfer = WORDS[lang]
        assert f"<td>{months}</td>" in public and f"<td>{first}</td>" in public and f"<td>{transfer}</td>" in public
        assert "keksi:cookies" not in public


def test_the_draft_note_names_new_and_dropped_categories_in_the_admins_language(app, legal):
    _, done = preview_and_publish(legal, drafted_form(legal.get(f"{NEW}?site=demo").get_data(as_text=True)))
    assert done.status_code == 302  # a version whose tables are marked
    chat = dict(copy.deepcopy(DEMO_SITE["categories"][1]), id="chat", label="Chat", purpose="The support chat.")
    changed = dict(copy.deepcopy(DEMO_SITE), categories=[
        *(c for c in DEMO_SITE["categories"] if c["id"] != "analytics"), chat])
    store = open_store(app.config["DATABASE"])
    try:
        store.save_site(sites.validate(changed, list(LANGS)), "tests", create=False)
    finally:
        store.close()
    legal.get("/admin/?lang=fi")
    page = legal.get(f"{NEW}?site=demo").get_data(as_text=True)
    assert "Luonnos on laadittu sivuston Tiimityö (demo) evästeilmoituksesta" in page
    assert "Uudet osiot luokille, joita teksti ei kattanut: Chat." in page
    assert "Poistetut taulukot, luokista joita sivusto ei enää ilmoita: Analytiikka." in page
    assert "_pk_id" not in textarea(page, "body_fi") and "## Chat" in textarea(page, "body_sv")


def test_a_draft_from_an_unknown_or_unlinked_site_is_a_clear_404(app, legal):
    missing = legal.get(f"{NEW}?site=nope")
    assert missing.status_code == 404 and "There is no site with the id nope." in missing.get_data(as_text=True)
    other = legal.get("/admin/notices/privacy/new?site=demo")
    assert other.status_code == 404
    assert "does not link this notice as its cookie notice" in other.get_data(as_text=True)
    for page in (missing, other):  # each leads back to the notice's section of the notices page
        assert '<a href="/admin/notices#notice-' in page.get_data(as_text=True)


def test_marketing_cannot_draft_a_notice(app):
    add_site(app)
    add_user(app, "marketing@example.fi", "marketing")
    client = app.test_client()
    sign_in(client, "marketing@example.fi")
    assert client.get(f"{NEW}?site=demo").status_code == 403


# -- the CLI -----------------------------------------------------------------------------------


def test_the_cli_writes_a_draft_that_check_and_publish_take_like_any_version(app, runner, notices_dir, client):
    add_site(app)
    result = runner.invoke(args=["notices", "draft-cookies", "demo"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (notices_dir / "cookies").glob("2026-11-22.*.md"))
    assert written == ["2026-11-22.en.md", "2026-11-22.fi.md", "2026-11-22.sv.md"]
    source = (notices_dir / "cookies" / "2026-11-22.sv.md").read_text(encoding="utf-8")
    assert source.startswith("---\ntitle: ") and "material: false" in source and WORDS["sv"][3] in source
    again = runner.invoke(args=["notices", "draft-cookies", "demo"])
    assert again.exit_code == 1 and "exists already" in again.output
    assert runner.invoke(args=["notices", "check"]).exit_code == 0
    assert runner.invoke(args=["notices", "publish", "--reason", "Declaration"]).exit_code == 0
    assert "<td>Förstapart</td>" in client.get("/sv/cookies").get_data(as_text=True)
    # The next draft, after analytics left the declaration, says what legal must rewrite.
    store = open_store(app.config["DATABASE"])
    try:
        store.save_site(sites.validate(dict(copy.deepcopy(DEMO_SITE), categories=[
            c for c in DEMO_SITE["categories"] if c["id"] != "analytics"]), list(LANGS)), "tests", create=False)
    finally:
        store.close()
    later = runner.invoke(args=["notices", "draft-cookies", "demo"])
    assert "wrote " in later.output and "2026-11-23.fi.md" in later.output, "the day after the latest version"
    assert "Tables taken out, of categories no longer declared: analytics." in later.output


def test_the_cli_writes_elsewhere_with_out_and_refuses_what_it_cannot_do(app, runner, tmp_path):
    add_site(app)
    out = tmp_path / "elsewhere"
    result = runner.invoke(args=["notices", "draft-cookies", "demo", "--out", str(out), "--date", "2027-01-15"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "cookies").iterdir()) == [f"2027-01-15.{lang}.md" for lang in ("en", "fi", "sv")]
    unknown = runner.invoke(args=["notices", "draft-cookies", "nope"])
    assert unknown.exit_code == 1 and "there is no site 'nope'" in unknown.output
    bad = runner.invoke(args=["notices", "draft-cookies", "demo", "--date", "20270115"])
    assert bad.exit_code == 2 and "is not a date (YYYY-MM-DD)" in bad.output


# -- material: a new recipient or category asks again ------------------------------------------------

HUBSPOT = {"name": "HubSpot", "provider": "HubSpot Ireland Ltd", "own_purposes": True, "cookies": [
    {"name": "hubspotutk", "provider": "HubSpot Ireland Ltd", "duration": "P180D",
     "purpose": {"fi": "Tunnistaa kävijän.", "sv": "Känner igen besökaren.", "en": "Recognises the visitor."}}]}


def save_demo(app, categories) -> None:
    store = open_store(app.config["DATABASE"])
    try:
        store.save_site(sites.validate(dict(copy.deepcopy(DEMO_SITE), categories=categories), list(LANGS)),
                        "tests", create=False)
    finally:
        store.close()


def with_new_provider() -> list[dict]:
    categories = copy.deepcopy(DEMO_SITE["categories"])
    categories[-1]["services"].append(copy.deepcopy(HUBSPOT))
    return categories


def test_the_cli_marks_a_draft_material_and_names_the_provider_it_adds(app, runner, notices_dir):
    add_site(app)
    assert runner.invoke(args=["notices", "draft-cookies", "demo"]).exit_code == 0
    assert runner.invoke(args=["notices", "publish", "--reason", "Declaration"]).exit_code == 0
    unchanged = runner.invoke(args=["notices", "draft-cookies", "demo"])
    assert "New providers" not in unchanged.output and "Marked material" not in unchanged.output
    assert "material: false" in (notices_dir / "cookies" / "2026-11-23.fi.md").read_text(encoding="utf-8")
    save_demo(app, with_new_provider())
    added = runner.invoke(args=["notices", "draft-cookies", "demo", "--date", "2026-12-01"])
    assert added.exit_code == 0, added.output
    assert "New providers (recipients) the latest version did not list: HubSpot Ireland Ltd." in added.output
    assert "Marked material" in added.output
    for lang in LANGS:
        assert "material: true" in (notices_dir / "cookies" / f"2026-12-01.{lang}.md").read_text(encoding="utf-8")
    assert runner.invoke(args=["notices", "check"]).exit_code == 0


def test_a_new_category_of_known_providers_is_material_too(app, site):
    with app.app_context():
        base = cookie_notice.draft([site], "en", None, OPERATOR).body
        chat = dict(copy.deepcopy(site["categories"][1]), id="chat", label="Chat", purpose="The support chat.")
        grown = dict(site, categories=[*site["categories"], chat])
        same, more = (cookie_notice.draft([s], "en", base, OPERATOR) for s in (site, grown))
    assert not same.material and same.new_providers == [] and same.new_categories == []
    assert more.material and more.new_categories == ["chat"] and more.new_providers == []


def test_the_admins_draft_ticks_material_and_names_the_new_provider_in_its_language(app, legal):
    _, done = preview_and_publish(legal, drafted_form(legal.get(f"{NEW}?site=demo").get_data(as_text=True)))
    assert done.status_code == 302
    page = legal.get(f"{NEW}?site=demo").get_data(as_text=True)
    assert "New providers" not in page and re.search(r'<input[^>]*checked[^>]*name="material"', page) is None
    save_demo(app, with_new_provider())
    legal.get("/admin/?lang=sv")
    page = legal.get(f"{NEW}?site=demo").get_data(as_text=True)
    assert "HubSpot Ireland Ltd" in page.split('id="draft-heading"')[1].split("</section>")[0]
    assert re.search(r'<input[^>]*(checked[^>]*name="material"|name="material"[^>]*checked)', page)
