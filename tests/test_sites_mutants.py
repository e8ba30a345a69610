"""Site definitions and the banner built from them, down to the edges mutation testing probes.

Written against issue 10 point 7: each test here kills mutants of keksi/sites.py that the
rest of the suite let live (`scripts/mutate sites`); tests/MUTANTS.md lists those left alive.
"""

from __future__ import annotations

import copy
import hashlib
import re

import pytest
from flask_babel import force_locale

from keksi import sites

from .ledger import DEMO_SITE, ROOT, add_site, config

LANGS = ["fi", "sv", "en"]


def minimal(**changes) -> dict:
    site = {"id": "shop", "name": "Shop", "origins": ["https://shop.example"], "categories": [{"id": "necessary"}]}
    site.update(changes)
    return site


def errors(data, languages=LANGS, notice_slugs=None) -> dict[str, str]:
    with pytest.raises(sites.InvalidSite) as caught:
        sites.validate(data, languages, notice_slugs)
    return caught.value.errors


def cookie(**changes) -> dict:
    return {"name": "_pk_id.*", "provider": "Matomo", "purpose": "Counts visits.", "duration": "P13M", **changes}


def with_cookies(*cookies, **service) -> dict:
    return minimal(categories=[{"id": "necessary", "services": [
        {"name": "Matomo", "provider": "InnoCraft", "cookies": list(cookies), **service}]}])


# -- a definition, normalised -------------------------------------------------------------


def test_a_minimal_site_gets_its_defaults():
    assert sites.validate(minimal(name="  Shop  "), LANGS) == {
        "id": "shop", "name": "Shop", "origins": ["https://shop.example"], "default_language": "fi",
        "consent_days": 365, "cookie_domain": None, "notices": {"privacy": "privacy", "cookies": "cookies"},
        "categories": [{"id": "necessary", "services": []}],
    }
    assert sites.validate(minimal(), ["sv", "fi"])["default_language"] == "sv", "the first language served"


def test_a_full_site_is_kept_as_given_with_texts_trimmed():
    data = minimal(default_language="en", consent_days=30, cookie_domain=".shop.example",
                   notices={"privacy": "tietosuoja", "cookies": "evasteet"},
                   categories=[
                       {"id": "necessary", "label": " Välttämättömät ", "services": [
                           {"name": " Shop ", "provider": "Shop Oy", "cookies": [
                               {"name": "sid", "purpose": {"fi": " fi ", "sv": "sv", "en": "en "},
                                "duration": "session"}]}]},
                       {"id": "social_media", "label": {"fi": "Some", "sv": "Sociala", "en": "Social"},
                        "purpose": "Share buttons."}])
    site = sites.validate(data, LANGS, notice_slugs=["tietosuoja", "evasteet"])
    assert site["categories"] == [
        {"id": "necessary", "label": "Välttämättömät", "services": [
            {"name": "Shop", "provider": "Shop Oy", "cookies": [
                {"name": "sid", "provider": "Shop Oy", "purpose": {"fi": "fi", "sv": "sv", "en": "en"},
                 "duration": "session"}]}]},
        {"id": "social_media", "label": {"fi": "Some", "sv": "Sociala", "en": "Social"},
         "purpose": "Share buttons.", "services": []}]
    assert (site["default_language"], site["consent_days"], site["cookie_domain"]) == ("en", 30, ".shop.example")
    assert site["notices"] == {"privacy": "tietosuoja", "cookies": "evasteet"}


def test_an_invalid_site_names_every_field_in_its_message():
    problem = sites.InvalidSite({"id": "is wrong", "name": "is missing"})
    assert str(problem) == "id: is wrong; name: is missing"
    assert errors([]) == {"site": "must be a JSON object"}


ID_MESSAGE = "must be lower-case letters, digits, - or _, at most 64 characters"
NAME_MESSAGE = "must be a non-empty text of at most 200 characters"


@pytest.mark.parametrize("change, expected", [
    ({"colour": "red", "alpha": 1}, {"alpha": "is not a site field", "colour": "is not a site field"}),
    ({"id": "a" * 65}, {"id": ID_MESSAGE}),
    ({"id": 5}, {"id": ID_MESSAGE}),
    ({"id": "Shop"}, {"id": ID_MESSAGE}),
    ({"name": "n" * 201}, {"name": NAME_MESSAGE}),
    ({"name": "   "}, {"name": NAME_MESSAGE}),
    ({"name": None}, {"name": NAME_MESSAGE}),
    ({"origins": []}, {"origins": "must be a list of 1 to 50 origins such as https://www.example.fi"}),
    ({"origins": "https://shop.example"}, {"origins": "must be a list of 1 to 50 origins such as https://www.example.fi"}),
    ({"origins": [f"https://s{i}.example" for i in range(51)]},
     {"origins": "must be a list of 1 to 50 origins such as https://www.example.fi"}),
    ({"origins": ["https://shop.example", "ftp://shop.example"]},
     {"origins[1]": "'ftp://shop.example' is not an origin: use scheme and host only, like "
                    "https://www.example.fi (no path, no wildcard)"}),
    ({"origins": ["https://shop.example", "https://SHOP.example:443/"]},
     {"origins[1]": "'https://SHOP.example:443/' is listed twice"}),
    ({"default_language": "de"}, {"default_language": "must be one of fi, sv, en"}),
    ({"consent_days": 0}, {"consent_days": "must be a whole number of days from 1 to 395: a consent lasts at most 13 months"}),
    ({"consent_days": 396}, {"consent_days": "must be a whole number of days from 1 to 395: a consent lasts at most 13 months"}),
    ({"consent_days": True}, {"consent_days": "must be a whole number of days from 1 to 395: a consent lasts at most 13 months"}),
    ({"consent_days": 30.0}, {"consent_days": "must be a whole number of days from 1 to 395: a consent lasts at most 13 months"}),
    ({"cookie_domain": "localhost"}, {"cookie_domain": "must be a domain such as example.fi, or null"}),
    ({"cookie_domain": 5}, {"cookie_domain": "must be a domain such as example.fi, or null"}),
    ({"cookie_domain": "-a.example"}, {"cookie_domain": "must be a domain such as example.fi, or null"}),
    ({"notices": {"privacy": "privacy"}},
     {"notices": "must name the privacy and cookies notices: {\"privacy\": …, \"cookies\": …}"}),
    ({"notices": ["privacy", "cookies"]},
     {"notices": "must name the privacy and cookies notices: {\"privacy\": …, \"cookies\": …}"}),
    ({"notices": {"privacy": "privacy", "cookies": 5}}, {"notices.cookies": "5 is not a published notice"}),
    ({"categories": []}, {"categories": "must be a list of 1 to 20 categories"}),
    ({"categories": {"id": "necessary"}}, {"categories": "must be a list of 1 to 20 categories"}),
    ({"categories": [{"id": "necessary"}] + [{"id": f"c{i}", "label": "L", "purpose": "P"} for i in range(20)]},
     {"categories": "must be a list of 1 to 20 categories"}),
    ({"categories": [{"id": "analytics"}]}, {"categories": "must include the 'necessary' category"}),
])
def test_each_bad_site_field_is_named_with_what_to_do(change, expected):
    assert errors(minimal(**change)) == expected


def test_the_limits_themselves_are_accepted():
    site = sites.validate(minimal(
        id="a" * 64, name="n" * 200, origins=[f"https://s{i}.example" for i in range(50)], consent_days=395,
        categories=[{"id": "necessary"}] + [{"id": f"c{i}", "label": "L", "purpose": "P"} for i in range(19)]),
        LANGS)
    assert len(site["id"]) == 64 and len(site["origins"]) == 50 and len(site["categories"]) == 20
    assert sites.validate(minimal(consent_days=1), LANGS)["consent_days"] == 1
    assert sites.validate(minimal(cookie_domain="shop.example"), LANGS)["cookie_domain"] == "shop.example"


def test_notices_must_be_published_ones_when_the_list_is_given():
    assert errors(minimal(notices={"privacy": "privacy", "cookies": "nope"}), notice_slugs=["privacy", "cookies"]) == {
        "notices.cookies": "'nope' is not a published notice"}
    assert sites.validate(minimal(notices={"privacy": "x", "cookies": "y"}), LANGS)["notices"] == {
        "privacy": "x", "cookies": "y"}, "without a list, any slug"


# -- categories, services and cookies ------------------------------------------------------


@pytest.mark.parametrize("categories, expected", [
    ([{"id": "necessary"}, "analytics"], {"categories[1]": "must be an object"}),
    ([{"id": "necessary", "colour": 1}], {"categories[0].colour": "is not a category field"}),
    ([{"id": "necessary"}, {"id": "a" * 41, "label": "L", "purpose": "P"}],
     {"categories[1].id": "must be lower-case letters, digits, - or _"}),
    ([{"id": "necessary"}, {"id": "Ads", "label": "L", "purpose": "P"}],
     {"categories[1].id": "must be lower-case letters, digits, - or _"}),
    ([{"id": "necessary"}, {"id": "necessary"}], {"categories[1].id": "'necessary' is listed twice"}),
    ([{"id": "necessary"}, {"id": "social"}],
     {"categories[1].label": "must be a text or an object with one text per language",
      "categories[1].purpose": "must be a text or an object with one text per language"}),
    ([{"id": "necessary", "services": {}}], {"categories[0].services": "must be a list of at most 50 services"}),
    ([{"id": "necessary", "services": [{}] * 51}], {"categories[0].services": "must be a list of at most 50 services"}),
    ([{"id": "necessary", "services": ["x"]}], {"categories[0].services[0]": "must be an object"}),
])
def test_each_bad_category_field_is_named(categories, expected):
    assert errors(minimal(categories=categories)) == expected


def test_a_category_id_may_be_40_characters():
    site = sites.validate(minimal(categories=[{"id": "necessary"}, {"id": "a" * 40, "label": "L", "purpose": "P"}]),
                          LANGS)
    assert site["categories"][1]["id"] == "a" * 40


@pytest.mark.parametrize("site, expected", [
    (with_cookies(url="x"), {"categories[0].services[0].url": "is not a service field"}),
    (with_cookies(cookies="x"), {"categories[0].services[0].cookies": "must be a list of at most 50 cookies"}),
    (with_cookies(*[cookie()] * 51), {"categories[0].services[0].cookies": "must be a list of at most 50 cookies"}),
    (with_cookies("x"), {"categories[0].services[0].cookies[0]": "must be an object"}),
    (with_cookies(cookie(secure=True)), {"categories[0].services[0].cookies[0].secure": "is not a cookie field"}),
    (with_cookies(cookie(name="a b")), {"categories[0].services[0].cookies[0].name":
                                       "must be a cookie name, or a name prefix ending in * such as _pk_id.*"}),
    (with_cookies(cookie(name="a" * 101)), {"categories[0].services[0].cookies[0].name":
                                           "must be a cookie name, or a name prefix ending in * such as _pk_id.*"}),
    (with_cookies(cookie(name=None)), {"categories[0].services[0].cookies[0].name":
                                      "must be a cookie name, or a name prefix ending in * such as _pk_id.*"}),
    (with_cookies(cookie(duration="forever")), {"categories[0].services[0].cookies[0].duration":
                                               "must be 'session', 'persistent' (kept until removed) or an ISO 8601 duration with one unit, "
                                               "such as P13M, P90D or PT30M"}),
    (with_cookies(cookie(purpose=None)), {"categories[0].services[0].cookies[0].purpose":
                                         "must be a text or an object with one text per language"}),
    (with_cookies(cookie(provider="")), {"categories[0].services[0].cookies[0].provider": "must not be empty"}),
])
def test_each_bad_service_or_cookie_field_is_named(site, expected):
    assert errors(site) == expected


def test_a_cookie_takes_its_services_provider_and_names_may_be_100_characters():
    site = sites.validate(with_cookies({"name": "a" * 100, "purpose": "P", "duration": "P1D"},
                                       *[cookie()] * 49), LANGS)
    cookies = site["categories"][0]["services"][0]["cookies"]
    assert cookies[0] == {"name": "a" * 100, "provider": "InnoCraft", "purpose": "P", "duration": "P1D"}
    assert len(cookies) == 50 and cookies[1]["provider"] == "Matomo"


def test_50_services_are_allowed():
    site = sites.validate(minimal(categories=[{"id": "necessary", "services": [
        {"name": f"S{i}", "provider": "P"} for i in range(50)]}]), LANGS)
    assert len(site["categories"][0]["services"]) == 50


@pytest.mark.parametrize("text, expected", [
    ("   ", "must not be empty"),
    ("x" * 501, "must be at most 500 characters"),
    ({"fi": "a", "sv": " "}, "needs a text in every language; missing: sv, en"),
    ({"fi": "a", "sv": "b", "en": 5}, "needs a text in every language; missing: en"),
    ({"fi": "a", "sv": "b", "en": "c", "de": "d", "da": "e"}, "has languages that are not served: da, de"),
    ({"fi": "a", "sv": "b", "en": "x" * 501}, "each text must be at most 500 characters"),
    (["a"], "must be a text or an object with one text per language"),
])
def test_texts_a_visitor_reads_are_checked_in_every_language(text, expected):
    site = minimal(categories=[{"id": "necessary", "services": [{"name": text, "provider": "P"}]}])
    assert errors(site) == {"categories[0].services[0].name": expected}


def test_texts_of_500_characters_are_accepted():
    site = sites.validate(minimal(categories=[{"id": "necessary", "services": [
        {"name": "x" * 500, "provider": {"fi": "y" * 500, "sv": "s", "en": "e"}}]}]), LANGS)
    service = site["categories"][0]["services"][0]
    assert service["name"] == "x" * 500 and service["provider"]["fi"] == "y" * 500


# -- origins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("given, canonical", [
    ("https://Shop.Example:443", "https://shop.example"),
    ("http://shop.example:80/", "http://shop.example"),
    ("http://shop.example:443", "http://shop.example:443"),
    ("https://shop.example:80", "https://shop.example:80"),
    ("https://shop.example:8443", "https://shop.example:8443"),
    ("  https://shop.example  ", "https://shop.example"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https://" + "a" * 184 + ".example", "https://" + "a" * 184 + ".example"),  # 200 characters
], ids=lambda value: value.replace(":", "-"))
def test_origins_are_stored_in_canonical_form(given, canonical):
    assert sites.validate(minimal(origins=[given]), LANGS)["origins"] == [canonical]


@pytest.mark.parametrize("given", [
    "ftp://shop.example", "ws://shop.example", "javascript://shop.example", "shop.example", "https://",
    "https://shop.example/path", "https://shop.example/?q=1", "https://shop.example/#top",
    "https://user@shop.example", "https://user:pw@shop.example", "https://:pw@shop.example",
    "https://*.shop.example", "https://shop.example:99999", "https://shop.example:port",
    "https://" + "a" * 185 + ".example", 5, None,
], ids=lambda value: str(value).replace(":", "-"))
def test_anything_but_an_http_origin_is_refused(given):
    assert list(errors(minimal(origins=[given]))) == ["origins[0]"]


def test_an_origin_is_allowed_in_any_spelling_of_a_listed_one():
    site = sites.validate(minimal(origins=["https://shop.example", "http://localhost:8000"]), LANGS)
    assert sites.origin_allowed(site, "https://SHOP.example:443")
    assert sites.origin_allowed(site, "http://localhost:8000")
    for other in ("https://shop.example:8443", "http://shop.example", "https://evil.example", "null", "", None):
        assert not sites.origin_allowed(site, other), other


# -- durations, banner and hashes --------------------------------------------------------------


@pytest.mark.parametrize("value, parsed", [
    ("session", "session"), ("P13M", ("months", 13)), ("P2Y", ("years", 2)), ("P90D", ("days", 90)),
    ("PT12H", ("hours", 12)), ("PT30M", ("minutes", 30)),
    ("P1Y2M", None), ("P0D", None), ("P", None), ("13M", None), ("P13m", None), ("", None), (13, None), (None, None),
])
def test_a_duration_is_session_or_one_iso_8601_unit(value, parsed):
    assert sites.parse_duration(value) == parsed


@pytest.mark.parametrize("value, lang, shown", [
    ("P13M", "en", "13 months"), ("P1Y", "en", "1 year"), ("P90D", "en", "90 days"), ("PT1H", "en", "1 hour"),
    ("PT30M", "en", "30 minutes"), ("P2Y", "fi", "2 vuotta"), ("P1D", "sv", "1 dygn"),
])
def test_durations_are_written_out_in_the_visitors_language(value, lang, shown):
    assert sites.format_duration(value, lang) == shown


def test_session_cookies_say_so_in_the_visitors_language(app):
    shown = {}
    with app.app_context():
        for lang in LANGS:
            with force_locale(lang):
                shown[lang] = sites.format_duration("session", lang)
    assert shown["en"] == "Until the browser is closed"
    assert len(set(shown.values())) == 3, shown


@pytest.fixture
def demo(app):
    return add_site(app)


def test_the_banner_shows_each_category_in_the_visitors_language(app, client, demo):
    cfg = config(client, lang="en")
    necessary, preferences, analytics, marketing = cfg["categories"]
    assert [c["required"] for c in cfg["categories"]] == [True, False, False, False]
    assert (necessary["label"], analytics["label"]) == ("Necessary", "Analytics")
    assert marketing["purpose"].startswith("Measure and target advertising")
    keksi_cookie = necessary["services"][0]["cookies"][0]
    assert keksi_cookie == {"name": "keksi_consent", "provider": "Tiimityö Oy", "duration": "12 months",
                            "purpose": "Stores your cookie choice and its consent ID."}
    durations = {c["name"]: c["duration"] for c in necessary["services"][0]["cookies"]}
    assert durations["tt_session"] == "Until the browser is closed"
    assert (cfg["consent_days"], cfg["cookie_domain"], cfg["site"], cfg["lang"]) == (365, None, "demo", "en")


def test_the_banner_is_built_from_the_definition_in_one_language(app):
    """Called directly: the API keeps each banner it built for the life of the process."""
    site = sites.validate(minimal(consent_days=30, cookie_domain="shop.example", categories=[
        {"id": "necessary", "services": [{"name": {"fi": "Kauppa", "sv": "Butik", "en": "Shop"}, "provider": "Shop Oy",
                                          "cookies": [cookie(name="sid", purpose={"fi": "Istunto", "sv": "Session",
                                                                                  "en": "Session"}),
                                                      cookie(duration="session")]}]},
        {"id": "marketing"}]), LANGS)
    with app.app_context():
        shown = sites.banner(site, "fi")
        with force_locale("fi"):
            texts = sites.banner_texts()
            necessary, marketing = (sites.standard_texts(c, ["fi"]) for c in ("necessary", "marketing"))
    # The title and intro are written for each site from its categories (tests/test_site_banner.py).
    assert {k: v for k, v in shown["texts"].items() if k not in ("title", "intro")} == \
        {k: v for k, v in texts.items() if k not in ("title", "intro")}
    shown = {k: v for k, v in shown.items() if k not in ("texts", "style")}
    assert shown == {
        "site": "shop", "lang": "fi", "consent_days": 30, "cookie_domain": "shop.example",
        "categories": [
            {"id": "necessary", "required": True, "label": necessary["label"]["fi"],
             "purpose": necessary["purpose"]["fi"],
             "services": [{"name": "Kauppa", "provider": "Shop Oy", "cookies": [
                 {"name": "sid", "provider": "Matomo", "purpose": "Istunto", "duration": "13 kuukautta"},
                 {"name": "_pk_id.*", "provider": "Matomo", "purpose": "Counts visits.",
                  "duration": texts["session"]}]}]},
            {"id": "marketing", "required": False, "label": marketing["label"]["fi"],
             "purpose": marketing["purpose"]["fi"], "services": []},
        ],
    }
    assert necessary["label"]["fi"] != "Necessary", "the catalog's Finnish, not the msgid"


def test_a_custom_category_shows_its_own_texts_or_its_id(app):
    site = sites.validate(minimal(categories=[
        {"id": "necessary", "label": {"fi": "Pakolliset", "sv": "Grundläggande", "en": "Required"}},
        {"id": "social", "label": {"fi": "Some", "sv": "Sociala", "en": "Social"}, "purpose": "Share buttons."},
        {"id": "analytics", "purpose": {"fi": "Oma", "sv": "Egen", "en": "Own"}}]), LANGS)
    site["categories"][1]["label"] = ""  # what an older definition could hold: the id stands in
    with app.app_context():
        shown = sites.banner(site, "sv")
    assert [(c["id"], c["label"], c["purpose"]) for c in shown["categories"]] == [
        ("necessary", "Grundläggande", shown["categories"][0]["purpose"]),
        ("social", "social", "Share buttons."),
        ("analytics", shown["categories"][2]["label"], "Egen")]
    assert shown["categories"][2]["label"] not in ("", "analytics"), "a standard label from the catalog"
    assert shown["categories"][0]["purpose"].startswith("Behövs")
    site["categories"][1]["purpose"] = ""
    with app.app_context():
        assert sites.banner(site, "en")["categories"][1]["purpose"] == ""


# The texts the widget reads: every `T.name` in widget/consent.js, and the two it picks by notice.
WIDGET_TEXTS = set(re.findall(r"\bT\.([a-z_]+)", (ROOT / "widget" / "consent.js").read_text(encoding="utf-8")))
WIDGET_TEXTS |= {"changed", "cookies_changed"}
WIDGET_TEXTS -= {"intro"}  # written for each site by sites.banner, from its categories (test_site_banner.py)


def test_every_text_the_widget_shows_is_served_and_translated(app):
    texts = {}
    with app.app_context():
        for lang in LANGS:
            with force_locale(lang):
                texts[lang] = sites.banner_texts()
                texts[lang].update({f"{c}.{k}": v for c in sites.STANDARD_CATEGORIES
                                    for k, v in sites.standard_texts(c, [lang]).items()
                                    for v in [v[lang]]})
    assert WIDGET_TEXTS <= set(texts["en"]), WIDGET_TEXTS - set(texts["en"])
    assert texts["en"]["accept_all"] == "Accept all" and texts["en"]["analytics.label"] == "Analytics"
    for key, english in texts["en"].items():
        for lang in ("fi", "sv"):
            # A msgid that no catalog knows would show the same (English) text in every language.
            assert texts[lang][key] != english, (lang, key)
        for placeholder in re.findall(r"%\(\w+\)s", english):
            assert placeholder in texts["fi"][key] and placeholder in texts["sv"][key], key


def test_standard_texts_give_each_language_its_own(app):
    with app.app_context():
        texts = sites.standard_texts("necessary", LANGS)
    assert texts["label"]["en"] == "Necessary" and texts["label"]["fi"] != texts["label"]["en"]
    assert texts["purpose"]["en"].startswith("Needed for the site to work")
    assert set(texts) == {"label", "purpose"} and set(texts["label"]) == set(texts["purpose"]) == set(LANGS)


def test_a_banner_hash_is_the_sha256_of_its_canonical_json():
    content = {"b": "ä", "a": [1, {"d": None, "c": True}]}
    assert sites.canonical_json(content) == '{"a":[1,{"c":true,"d":null}],"b":"ä"}'
    assert sites.banner_hash(content) == hashlib.sha256('{"a":[1,{"c":true,"d":null}],"b":"ä"}'.encode()).hexdigest()


def test_the_choice_hash_changes_with_what_a_visitor_consents_to_only():
    site = sites.validate(copy.deepcopy(DEMO_SITE), LANGS)
    before = sites.choice_hash(site)
    renamed = dict(site, name="Another name", origins=["https://other.example"])
    assert sites.choice_hash(renamed) == before
    assert sites.choice_hash(dict(site, consent_days=30)) != before
    changed = copy.deepcopy(site)
    changed["categories"][2]["services"][0]["cookies"][0]["purpose"]["sv"] = "Ny"
    assert sites.choice_hash(changed) != before


def test_cookie_patterns_list_each_categorys_cookies():
    site = sites.validate(copy.deepcopy(DEMO_SITE), LANGS)
    patterns = sites.cookie_patterns(site)
    assert list(patterns) == ["necessary", "preferences", "analytics", "marketing"]
    assert patterns["analytics"] == ["_pk_id.*", "_pk_ses.*"]
    assert patterns["necessary"] == ["keksi_consent", "tt_session", "tt_csrf"]
