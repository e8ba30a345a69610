"""Other vendors' consent signals: which a site's declaration asks for, how the configuration names
them, and widget/signals.js served beside the widget (their effect in a browser:
test_widget_signals_browser.py)."""

from __future__ import annotations

import copy
import gzip

import pytest

from keksi import catalogue, sites

from .conftest import LANGS
from .ledger import DEMO_SITE, ORIGIN, add_site, config

URL = "/widget/v1/signals.js"


def declaring(*entries: tuple[str, str]) -> dict:
    """The demo site with catalogue services added: (catalogue id, category id) each."""
    site = copy.deepcopy(DEMO_SITE)
    for service_id, category_id in entries:
        category = next(c for c in site["categories"] if c["id"] == category_id)
        category["services"].append(catalogue.site_service(service_id, "Tiimityö Oy"))
    return site


def test_a_catalogue_service_added_to_a_site_names_its_catalogue_id():
    site = sites.validate(declaring(("microsoft-uet", "marketing")), list(LANGS))
    marketing = next(c for c in site["categories"] if c["id"] == "marketing")
    assert marketing["services"][-1]["catalogue"] == "microsoft-uet"


@pytest.mark.parametrize("value", ["no-such-service", "", 7, ["matomo"]])
def test_a_catalogue_link_to_no_catalogue_service_is_refused(value):
    site = copy.deepcopy(DEMO_SITE)
    site["categories"][2]["services"][0]["catalogue"] = value
    with pytest.raises(sites.InvalidSite) as refused:
        sites.validate(site, list(LANGS))
    assert refused.value.errors == {"categories[2].services[0].catalogue": "must be the id of a service in the "
                                    "catalogue (flask catalogue list), or left out"}


def test_signals_follow_the_category_the_site_declares_each_service_in():
    site = sites.validate(declaring(("microsoft-clarity", "analytics"), ("microsoft-uet", "marketing"),
                                    ("matomo", "preferences"), ("meta-pixel", "marketing"),
                                    ("google-ads", "marketing"), ("hotjar", "analytics")), list(LANGS))
    # Google Consent Mode is the widget's own; Hotjar has no consent API.
    assert sites.consent_signals(site) == {"clarity": "analytics", "uet": "marketing", "matomo": "preferences",
                                           "meta": "marketing"}
    assert sites.consent_signals(sites.validate(copy.deepcopy(DEMO_SITE), list(LANGS))) == {}


def test_linking_a_service_to_the_catalogue_asks_nobody_again():
    plain = sites.validate(copy.deepcopy(DEMO_SITE), list(LANGS))
    linked = copy.deepcopy(DEMO_SITE)
    linked["categories"][2]["services"][0]["catalogue"] = "matomo"  # the demo's own Matomo
    linked = sites.validate(linked, list(LANGS))
    assert sites.consent_signals(linked) == {"matomo": "analytics"}
    assert sites.choice_hash(linked) == sites.choice_hash(plain)


def test_the_configuration_names_signals_js_only_for_a_site_that_needs_it(app, client):
    add_site(app, declaring(("microsoft-uet", "marketing"), ("microsoft-clarity", "analytics")))
    add_site(app, copy.deepcopy(DEMO_SITE), id="plain")
    assert config(client)["signals"] == "http://localhost/widget/v1/signals.js?clarity=analytics&uet=marketing"
    assert "signals" not in config(client, "plain")


def test_signals_js_is_served_minified_and_cacheable_with_nothing_a_strict_csp_forbids(client):
    response = client.get(URL, headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = response.get_data(as_text=True)
    assert "\n" not in body and "consentv2" in body and "requireConsent" in body
    for forbidden in ("eval(", "new Function", "Function(", "innerHTML", "document.write", "http://", "https://"):
        assert forbidden not in body, forbidden
    gzipped = client.get(URL, headers={"Accept-Encoding": "gzip"})
    assert gzip.decompress(gzipped.get_data()) == body.encode()
    again = client.get(URL, headers={"Accept-Encoding": "gzip", "If-None-Match": gzipped.headers["ETag"]})
    assert again.status_code == 304


def test_signals_js_knows_every_consent_api_the_catalogue_names(client):
    body = client.get(URL, headers={"Accept-Encoding": "identity"}).get_data(as_text=True)
    apis = {entry["consent_api"] for entry in catalogue.services() if entry.get("consent_api")}
    assert apis == {"uet", "clarity", "matomo", "meta"}
    for api in apis:
        assert f"{api}:[" in body, api
