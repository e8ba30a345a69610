"""What the banner says and how it looks, per site: a first layer built from the site's own
categories and services (third parties, their own purposes, transfers outside the EU/EEA),
marketing's own title and text, the site's theme checked for WCAG 2.2 AA contrast, and the sample
cookie notice agreeing with the banner. Through the API, the CLI and the admin form."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from keksi import catalogue, sites

from .conftest import BOTH, SHIPPED_NOTICES, sign_in
from .ledger import DEMO_SITE, add_site, config
from .test_admin_sites import (EVERYONE_AGAIN, LANGS, app, error_beside, form_values,  # noqa: F401
                               marketing, stored_site)

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL


def demo(**changes: Any) -> dict[str, Any]:
    site = copy.deepcopy(DEMO_SITE)
    site.update(changes)
    return site


def intro(client: Any, site: str = "demo", lang: str = "en") -> str:
    return config(client, site, lang)["texts"]["intro"]


# -- the first layer tells the truth for each site (issues 11.2 and 15.1) ------------------------


def test_the_banner_lists_only_the_categories_the_site_has_in_each_language(app, client):
    necessary, analytics = DEMO_SITE["categories"][0], DEMO_SITE["categories"][2]
    add_site(app, demo(id="counts", categories=[necessary, analytics]))
    add_site(app, demo(id="plain", categories=[necessary]))
    words = {"fi": ("analytiikka", ("markkinointi", "mieltymykset")),
             "sv": ("analys", ("marknadsföring", "preferenser")),
             "en": ("analytics", ("marketing", "preferences"))}
    for lang, (present, absent) in words.items():
        text = intro(client, "counts", lang)
        assert present in text, (lang, text)
        assert not any(word in text for word in absent), (lang, text)
    assert intro(client, "plain") == "We use only cookies that this site needs to work, and they need no consent."
    assert "mieltymykset, analytiikka ja markkinointi" in intro(client, lang="fi")
    assert "preferenser, analys och marknadsföring" in intro(client, lang="sv")


def test_the_first_layer_names_the_third_parties_their_own_purposes_and_transfers(client):
    text = intro(client)
    assert ("With your consent, Google Ireland Ltd and LinkedIn Ireland Unlimited Company also receive data "
            "about your visit and use it for their own purposes too.") in text
    assert "It may be transferred outside the EU/EEA." in text
    assert "Tiimityö Oy" not in text  # the site's own organisation is no third party
    fi = intro(client, lang="fi")
    assert "Google Ireland Ltd ja LinkedIn Ireland Unlimited Company saavat tietoja" in fi
    assert "EU:n ja ETA:n ulkopuolelle" in fi
    # The panel names each provider's own purposes and the safeguard of its transfer.
    marketing = config(client, lang="en")["categories"][3]
    assert marketing["services"][0]["provider"] == ("Google Ireland Ltd; also for its own purposes; outside the "
                                                   "EU/EEA (United States) under an adequacy decision of the "
                                                   "European Commission")
    assert marketing["services"][1]["provider"].endswith("under standard contractual clauses")


def test_only_the_providers_that_do_so_are_said_to_use_data_for_themselves_or_to_send_it_abroad(app, client):
    site = demo(id="mixed")
    google, linkedin = site["categories"][3]["services"]
    del linkedin["own_purposes"], google["transfer"]
    site["categories"][2]["services"][0]["provider"] = "Matomo Cloud GmbH"  # a processor, named too
    add_site(app, site)
    text = intro(client, "mixed")
    assert ("With your consent, Matomo Cloud GmbH, Google Ireland Ltd, and LinkedIn Ireland Unlimited Company "
            "also receive data about your visit.") in text
    assert "Google Ireland Ltd also uses it for its own purposes." in text
    assert "LinkedIn Ireland Unlimited Company may transfer it outside the EU/EEA." in text
    assert "Google Ireland Ltd käyttää niitä myös omiin tarkoituksiinsa." in intro(client, "mixed", "fi")


def test_a_service_from_the_catalogue_brings_what_the_first_layer_says_about_its_provider(app, client):
    site = demo(id="catalogued")
    site["categories"][2]["services"] = [catalogue.site_service("microsoft-clarity", "Tiimityö Oy")]
    site["categories"][3]["services"] = [catalogue.site_service("meta-pixel", "Tiimityö Oy")]
    add_site(app, site)
    text = intro(client, "catalogued")
    assert ("Microsoft Ireland Operations Ltd and Meta Platforms Ireland Ltd also receive data about your visit "
            "and use it for their own purposes too.") in text
    assert "It may be transferred outside the EU/EEA." in text
    meta = config(client, "catalogued", "sv")["categories"][3]["services"][0]["provider"]
    assert meta.startswith("Meta Platforms Ireland Ltd; också för egna ändamål; utanför EU/EES (USA)")


def test_keksis_own_storage_is_declared_and_never_swept_as_a_cookie(client):
    cfg = config(client, lang="en")
    necessary = cfg["categories"][0]["services"][0]["cookies"]
    names = [c["name"] for c in necessary]
    assert names[:2] == ["keksi_consent", "keksi_queue (local storage)"]
    assert necessary[1]["duration"] == "Until it is removed"
    assert "keksi_queue" not in cfg["cookies"]["necessary"]  # localStorage, not a cookie to delete
    assert config(client, lang="sv")["categories"][0]["services"][0]["cookies"][1]["name"] == \
        "keksi_queue (lokal lagring)"


def test_the_sample_cookie_notice_says_what_the_banner_and_panel_say(make_app):
    """Each category's purpose and each cookie's purpose, in every language, as the widget shows
    them for the demo site, are in the sample cookie notice in effect from 2026-12-02."""
    app = make_app(FIXED_TODAY="2026-12-02", NOTICES_DIR=str(SHIPPED_NOTICES))
    add_site(app)
    client = app.test_client()
    for lang in LANGS:
        cfg = config(client, lang=lang)
        page = client.get(f"/{lang}/cookies").get_data(as_text=True)
        assert "2026-12-02" in page or "2.12.2026" in page or "2 December 2026" in page
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", page)).replace("&#39;", "'")
        for category in cfg["categories"]:
            assert category["purpose"] in text, (lang, category["id"])
            for service in category["services"]:
                for cookie in service["cookies"]:
                    assert cookie["purpose"] in text, (lang, cookie["name"])
                    assert cookie["name"].split(" ")[0] in text
        assert "keksi_queue" in text and "keksi_consent" in text


# -- validation of the new parts ------------------------------------------------------------------


@pytest.mark.parametrize("change,field", [
    (lambda s: s["categories"][3]["services"][0].update(own_purposes="yes"), "categories[3].services[0].own_purposes"),
    (lambda s: s["categories"][3]["services"][0].update(transfer="scc"), "categories[3].services[0].transfer"),
    (lambda s: s["categories"][3]["services"][0].update(transfer={"safeguard": "trust"}),
     "categories[3].services[0].transfer"),
    (lambda s: s["categories"][3]["services"][0].update(transfer={"safeguard": "scc", "country": "usa"}),
     "categories[3].services[0].transfer"),
    (lambda s: s["categories"][0]["services"][0]["cookies"][0].update(storage="indexeddb"),
     "categories[0].services[0].cookies[0].storage"),
    (lambda s: s.update(banner={"title": {"fi": "Evästeet"}}), "banner.title"),
    (lambda s: s.update(banner={"title": "T", "footer": "F"}), "banner.footer"),
    (lambda s: s.update(banner="text"), "banner"),
    (lambda s: s.update(theme={"background": "white"}), "theme.background"),
    (lambda s: s.update(theme={"font": "Arial;}body{display:none"}), "theme.font"),
    (lambda s: s.update(theme={"font": "url(https://evil.example/x.woff)"}), "theme.font"),
    (lambda s: s.update(theme={"radius": 99}), "theme.radius"),
    (lambda s: s.update(theme={"radius": True}), "theme.radius"),
    (lambda s: s.update(theme={"position": "top"}), "theme.position"),
    (lambda s: s.update(theme={"shadow": "none"}), "theme.shadow"),
    (lambda s: s.update(theme=["#fff"]), "theme"),
])
def test_a_bad_new_field_is_refused_by_name(change, field):
    site = demo()
    change(site)
    with pytest.raises(sites.InvalidSite) as refused:
        sites.validate(site, LANGS)
    assert field in refused.value.errors, refused.value.errors


def test_a_theme_failing_wcag_contrast_names_the_pair_and_the_ratio():
    grey = demo(theme={"text": "#777777"})  # 4.478:1 on white: just short of 4.5, shown rounded down
    with pytest.raises(sites.InvalidSite) as refused:
        sites.validate(grey, LANGS)
    assert refused.value.errors == {"theme.text": "text on background has a contrast of 4.47:1; WCAG 2.2 AA "
                                                  "needs 4.5:1"}
    assert sites.validate(demo(theme={"text": "#767676"}), LANGS)["theme"]["text"] == "#767676"  # 4.54:1
    pale = demo(theme={"button": "#f0f0f0", "button_text": "#ffffff", "focus": "#ffd0a0"})
    with pytest.raises(sites.InvalidSite) as refused:
        sites.validate(pale, LANGS)
    assert set(refused.value.errors) == {"theme.button", "theme.button_text", "theme.focus"}
    assert "3:1" in refused.value.errors["theme.button"]  # a button's edge: 3:1 is enough
    assert round(sites.contrast("#000000", "#ffffff"), 2) == 21.0


def test_the_cli_refuses_a_failing_theme_and_keeps_the_site(app, runner, tmp_path):
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(demo(theme={"background": "#1b1f24", "link": "#0a58ca"})), encoding="utf-8")
    result = runner.invoke(args=["sites", "edit", "demo", str(path)])
    assert result.exit_code == 1
    assert "theme.link: link on background has a contrast of" in result.output
    assert "theme.text" in result.output  # the default dark text on the dark background too
    assert "theme" not in stored_site(app, "demo")
    path.write_text(json.dumps(demo(theme={"background": "#1b1f24", "text": "#ffffff", "link": "#8cc4ff",
                                           "button": "#ffd166", "button_text": "#1b1f24",
                                           "focus": "#f5a524"})), encoding="utf-8")
    assert runner.invoke(args=["sites", "edit", "demo", str(path)]).exit_code == 0
    shown = json.loads(runner.invoke(args=["sites", "show", "demo", "--format", "json"]).output)
    assert shown["theme"]["button"] == "#ffd166" and shown["theme"]["position"] == "bottom"


def test_the_look_reaches_the_widget_as_custom_properties_and_asks_nobody_again(app, client):
    assert "--k-bg:#ffffff" in config(client)["style"]  # the default look, from the one place it is defined
    add_site(app, demo(id="look", theme={"button": "#7a1f5c", "font": "'Open Sans', Arial, sans-serif",
                                         "radius": 0, "position": "corner"}))
    style = config(client, "look")["style"]
    assert '--k-bt:#7a1f5c' in style and '--k-ff:"Open Sans", "Arial", sans-serif' in style
    assert "--k-r:0px" in style and "right:1em" in style
    assert style.count("{") == style.count("}")
    # A look is no part of what visitors consent to or of the banner's text: nobody is asked again.
    plain = add_site(app, demo(id="plain-look"))
    assert config(client, "plain-look")["choice_hash"] == config(client, "look")["choice_hash"]
    themed = dict(plain, theme=dict(sites.THEME_DEFAULTS, button="#7a1f5c"))
    with app.test_request_context():
        assert sites.banner_hash(sites.banner(themed, "en")) == sites.banner_hash(sites.banner(plain, "en"))


# -- the admin form ------------------------------------------------------------------------------


def save(client: Any, values: dict[str, str], site: str = "demo"):
    return client.post(f"/admin/sites/{site}/edit", data=dict(values, step="save"))


def test_saving_the_demo_unchanged_keeps_every_new_field(app, marketing):
    before = stored_site(app, "demo")
    values = form_values(marketing, "/admin/sites/demo/edit")
    assert values["rows_necessary-1-storage"] == "local" and values["rows_marketing-0-transfer"] == "adequacy"
    assert values["rows_marketing-0-own_purposes"] == "y"
    assert save(marketing, values).status_code == 302
    assert stored_site(app, "demo") == before


def test_marketing_writes_the_banner_title_and_text_and_everyone_is_asked_again(app, marketing):
    page = marketing.get("/admin/sites/demo/edit").get_data(as_text=True)
    assert 'placeholder="Cookies on this site"' in page  # Keksi's own text, shown where it applies
    assert "every visitor, in every language, is asked to choose again" in page
    before = config(marketing, lang="sv")
    values = form_values(marketing, "/admin/sites/demo/edit")
    values.update(banner_title_fi="Evästeet Tiimityössä", banner_title_sv="Kakor hos Tiimityö",
                  banner_title_en="Cookies at Tiimityö", banner_text_fi="Käytämme evästeitä harkiten.",
                  banner_text_sv="Vi använder kakor med omsorg.", banner_text_en="We use cookies with care.")
    response = marketing.post("/admin/sites/demo/edit", data=dict(values, step="save"), follow_redirects=True)
    assert EVERYONE_AGAIN in response.get_data(as_text=True)
    after = config(marketing, lang="sv")
    assert after["texts"]["title"] == "Kakor hos Tiimityö"
    assert after["texts"]["intro"].startswith("Vi använder kakor med omsorg. Med ditt samtycke får också "
                                              "Google Ireland Ltd och LinkedIn")  # the facts stay
    assert after["choice_hash"] != before["choice_hash"]
    assert stored_site(app, "demo")["banner"]["text"]["en"] == "We use cookies with care."
    # Emptied in every language: Keksi's own text again.
    for lang in LANGS:
        values[f"banner_title_{lang}"] = values[f"banner_text_{lang}"] = ""
    assert save(marketing, values).status_code == 302
    assert "banner" not in stored_site(app, "demo")
    assert config(marketing, lang="sv")["texts"]["title"] == before["texts"]["title"]


def test_a_banner_text_in_only_some_languages_is_refused_beside_the_empty_ones(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["banner_title_fi"] = "Evästeet"
    response = save(marketing, values)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "leave it empty in every language" in error_beside(page, "banner_title_sv")
    assert error_beside(page, "banner_title_fi") == ""
    assert "banner" not in stored_site(app, "demo")
    values["banner_text_en"] = "<script>alert(1)</script>"
    assert "without HTML tags" in error_beside(save(marketing, values).get_data(as_text=True), "banner_text_en")


def test_marketing_marks_a_provider_that_uses_data_for_itself_and_sends_it_abroad(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["rows_analytics-0-own_purposes"] = "y"  # Matomo: the first of its two rows says so
    values["rows_analytics-1-transfer"] = "scc"  # and the second says where it goes
    values["rows_analytics-0-provider"] = values["rows_analytics-1-provider"] = "Matomo Cloud GmbH"
    assert save(marketing, values).status_code == 302
    matomo = stored_site(app, "demo")["categories"][2]["services"][0]
    assert (matomo["own_purposes"], matomo["transfer"], len(matomo["cookies"])) == (True, {"safeguard": "scc"}, 2)
    assert "Matomo Cloud GmbH, Google Ireland Ltd, and LinkedIn" in intro(marketing)


def test_rows_of_one_service_that_disagree_on_the_transfer_are_refused(app, marketing):
    before = stored_site(app, "demo")
    values = form_values(marketing, "/admin/sites/demo/edit")
    values["rows_analytics-0-transfer"] = "scc"
    values["rows_analytics-1-transfer"] = "bcr"
    response = save(marketing, values)
    assert response.status_code == 400
    assert "Another row of this service says Yes, under standard contractual clauses" in \
        error_beside(response.get_data(as_text=True), "rows_analytics-1-transfer")
    assert stored_site(app, "demo") == before


def test_a_look_whose_contrast_fails_is_refused_in_the_form_naming_the_pair(app, marketing):
    values = form_values(marketing, "/admin/sites/demo/edit")
    values.update(theme_button="#f4d35e", theme_button_text="#ffffff")
    response = save(marketing, values)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    message = error_beside(page, "theme_button_text")
    assert message.startswith("Button text on Buttons: the contrast is 1.4")
    assert "WCAG 2.2 AA needs 4.5:1 (3.0" in message and "short" in message
    assert "Buttons on Background: the contrast is 1.46:1, and WCAG 2.2 AA needs 3.0:1" in \
        error_beside(page, "theme_button")
    assert 'href="#theme_button_text"' in page  # listed at the top, linking to the field
    assert "theme" not in stored_site(app, "demo")
    values["theme_button_text"] = "#1b1f24"
    values["theme_button"] = "#b8860b"  # 3.25:1 against white for its edge, 5.09:1 for dark text on it
    response = save(marketing, values)
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert stored_site(app, "demo")["theme"]["button"] == "#b8860b"


def test_the_form_speaks_the_admins_language_about_contrast(app, client):
    client.get("/admin/login?lang=fi")
    sign_in(client, "marketing@example.fi")
    client.get("/admin/?lang=fi")
    values = form_values(client, "/admin/sites/demo/edit")
    values["theme_text"] = "#aaaaaa"
    page = client.post("/admin/sites/demo/edit", data=dict(values, step="save")).get_data(as_text=True)
    assert error_beside(page, "theme_text").startswith("Teksti ja Tausta: kontrasti on 2,32:1, ja WCAG 2.2 AA "
                                                      "edellyttää 4,5:1")


def test_the_live_preview_answers_with_the_widgets_css_and_what_fails(app, marketing, client):
    url = "/admin/sites/theme-preview"
    answer = marketing.get(url, query_string={"site": "demo", "lang": "en", "text": "#b0b0b0",
                                              "button": "#7A1F5C", "position": "center"}).get_json()
    assert ":host{all:initial" in answer["css"] and "--k-bt:#7a1f5c" in answer["css"]
    assert "translate(-50%,-50%)" in answer["css"]
    assert answer["problems"] == ["Text on Background: the contrast is 2.16:1, and WCAG 2.2 AA needs 4.5:1 "
                                  "(2.34 short). Make one of the two colours lighter or darker."]
    assert answer["texts"]["accept_all"] == "Accept all" and "Google Ireland Ltd" in answer["texts"]["intro"]
    # Nonsense costs nothing: each bad value is named and replaced by the default, never echoed.
    odd = marketing.get(url, query_string={"font": "x;}*{display:none}" * 50, "radius": "-3",
                                           "background": "%" * 5000, "position": "<b>"})
    assert odd.status_code == 200
    body = odd.get_json()
    assert "display:none" not in body["css"] and "<b>" not in json.dumps(body)
    assert len(body["problems"]) == 4 and all("preview uses the default" in p for p in body["problems"])
    assert marketing.get(url, query_string={"site": "no-such-site"}).status_code == 200
    client.post("/admin/logout")
    sign_in(client, "legal@example.fi")
    assert client.get(url).status_code == 403


# -- review of issue 11.2 (failing on main) --------------------------------------------------------


def test_one_third_party_is_named_in_the_singular(app, client):
    """A site whose only third party is Google: "Google Ireland Ltd also receive data" (en) and
    "Google Ireland Ltd saavat tietoja" (fi) are wrong; the sentence needs ngettext."""
    site = demo(id="one-party")
    site["categories"][3]["services"] = site["categories"][3]["services"][:1]  # Google Ads only
    add_site(app, site)
    assert "Google Ireland Ltd also receives data about your visit and uses it for its own purposes too." \
        in intro(client, "one-party")
    assert "Google Ireland Ltd saa tietoja käynnistäsi" in intro(client, "one-party", "fi")




def test_two_third_parties_are_named_in_the_plural_in_each_language(app, client):
    """The demo's two third parties (the operator's own analytics is none): plural verbs."""
    assert "Google Ireland Ltd ja LinkedIn Ireland Unlimited Company saavat tietoja käynnistäsi ja käyttävät " \
        "niitä" in intro(client, "demo", "fi")
    assert "Google Ireland Ltd and LinkedIn Ireland Unlimited Company also receive data about your visit and use " \
        "it for their own purposes too." in intro(client, "demo")
    assert "får också Google Ireland Ltd och LinkedIn Ireland Unlimited Company uppgifter" in intro(client, "demo", "sv")
