"""The service catalogue: complete in every language, valid as site services, and classifying what a browser sees."""

from __future__ import annotations

import json

import pytest

from keksi import catalogue, sites

from .conftest import LANGS, ROOT

SHARED_OCD = ROOT.parent / "shared" / "data" / "open-cookie-database" / "open-cookie-database.csv"
EXPECTED = {"matomo", "google-analytics", "google-tag-manager", "google-ads", "meta-pixel", "linkedin-insight",
            "microsoft-clarity", "microsoft-uet", "hotjar", "hubspot", "leadfeeder", "youtube", "vimeo",
            "google-maps", "intercom", "zendesk", "stripe", "cloudflare"}


def test_the_catalogue_has_the_services_finnish_sites_embed():
    ids = [s["id"] for s in catalogue.services()]
    assert EXPECTED <= set(ids) and len(ids) == len(set(ids))


@pytest.mark.parametrize("entry", catalogue.services(), ids=lambda e: e["id"])
def test_every_service_is_complete_in_every_language(entry):
    assert entry["category"] in sites.STANDARD_CATEGORIES
    assert entry["privacy_url"].startswith("https://")
    assert all(entry["purpose"].get(lang, "").strip() for lang in LANGS)
    assert entry["provider"] or entry["hosts"] == []  # only a service the site runs itself has no provider
    assert isinstance(entry["own_purposes"], bool)
    assert entry["transfer"] is None or entry["transfer"]["safeguard"] in ("adequacy", "scc")
    names = [c["name"] for c in entry["cookies"]]
    assert len(names) == len(set(names))
    for cookie in entry["cookies"]:
        assert sites.COOKIE_NAME_RE.match(cookie["name"]), cookie
        assert sites.parse_duration(cookie["duration"]) is not None, cookie
        assert all(cookie["purpose"].get(lang, "").strip() for lang in LANGS), cookie


def test_each_service_is_a_valid_service_of_a_site():
    """What the site form adds from the catalogue passes the same validation as any site."""
    definition = json.loads((ROOT / "sites" / "demo.json").read_text(encoding="utf-8"))
    for entry in catalogue.services():
        category = next(c for c in definition["categories"] if c["id"] == entry["category"])
        category.setdefault("services", []).append(catalogue.site_service(entry["id"], "Tiimityö Oy"))
    site = sites.validate(definition, list(LANGS))
    assert isinstance(site, dict), site
    matomo = catalogue.site_service("matomo", "Tiimityö Oy")
    assert matomo["provider"] == "Tiimityö Oy" and {c["provider"] for c in matomo["cookies"]} == {"Tiimityö Oy"}


@pytest.mark.parametrize(("name", "domain", "service", "category", "cookie"), [
    ("_ga", ".example.fi", "Google Analytics", "analytics", "_ga"),
    ("_ga_ABC123", "example.fi", "Google Analytics", "analytics", "_ga_*"),  # the longer prefix, not _ga
    ("_pk_id.1.1fff", "example.fi", "Matomo", "analytics", "_pk_id.*"),
    ("IDE", ".doubleclick.net", "Google Ads", "marketing", "IDE"),
    ("_fbp", ".example.fi", "Meta Pixel", "marketing", "_fbp"),
    ("MUID", ".bing.com", "Microsoft Advertising (UET)", "marketing", "MUID"),
    ("MUID", ".clarity.ms", "Microsoft Clarity", "analytics", "MUID"),
])
def test_cookies_are_classified_by_name_prefix_and_domain(name, domain, service, category, cookie):
    match = catalogue.classify_cookie(name, domain)
    assert (match.service, match.category, match.cookie, match.source) == (service, category, cookie, "catalogue")


def test_a_cookie_on_the_wrong_domain_or_unknown_is_not_claimed():
    assert catalogue.classify_cookie("IDE", "example.fi") is None  # IDE belongs to doubleclick.net only
    assert catalogue.classify_cookie("tt_session", "example.fi") is None


def test_hosts_are_classified_including_subdomains_but_not_lookalikes():
    assert catalogue.classify_host("www.google-analytics.com").service_id == "google-analytics"
    assert catalogue.classify_host("px.ads.linkedin.com").service_id == "linkedin-insight"
    assert catalogue.classify_host("bat.bing.com").service_id == "microsoft-uet"
    assert catalogue.classify_host("evilgoogle-analytics.com") is None


OCD_SAMPLE = (
    "ID,Platform,Category,Cookie / Data Key name,Domain,Description,Retention period,Data Controller,"
    "User Privacy & GDPR Rights Portals,Wildcard match\n"
    "1,Piwik Pro,Analytics,_pk_viz,,\"Visitor, with a comma\",13 months,Piwik PRO,https://piwik.pro/privacy-policy/,0\n"
    "2,Crazy Egg,Analytics,_ce.s,,Session,1 year,Crazy Egg,https://www.crazyegg.com/privacy,0\n"
    "3,Taboola,Marketing,t_gid,,Targeting,1 year,Taboola,https://www.taboola.com/policies/privacy-policy,0\n"
    "4,Example,Marketing,_ex_,,Prefix,1 year,Example,,1\n"
    "5,Odd,Unknown category,odd,,x,1 year,Odd,,0\n"
)


def test_an_imported_open_cookie_database_classifies_what_the_catalogue_lacks(tmp_path):
    rows = catalogue.parse_ocd(OCD_SAMPLE.encode())
    assert [r["name"] for r in rows] == ["_pk_viz", "_ce.s", "t_gid", "_ex_"]  # the unknown category left out
    catalogue.save_ocd(rows, tmp_path)
    extra = catalogue.load_ocd(tmp_path)
    match = catalogue.classify_cookie("t_gid", "example.fi", extra)
    assert (match.service, match.category, match.source) == ("Taboola", "marketing", "open-cookie-database")
    assert catalogue.classify_cookie("_ex_123", "example.fi", extra).cookie == "_ex_*"
    # the catalogue's own entry wins over an imported one
    assert catalogue.classify_cookie("_ga", "example.fi", extra).source == "catalogue"


@pytest.mark.parametrize(("data", "code"), [
    (b"a,b\n1,2\n", "missing_columns"),
    (b"\xff\xfe not text", "not_utf8"),
    (b"x" * (catalogue.MAX_OCD_BYTES + 1), "too_large"),
])
def test_a_file_that_is_not_the_database_is_refused_by_name(data, code):
    with pytest.raises(catalogue.CatalogueError) as error:
        catalogue.parse_ocd(data)
    assert error.value.code == code


def test_import_ocd_command_imports_the_real_database(app, runner, tmp_path):
    source = SHARED_OCD if SHARED_OCD.exists() else tmp_path / "ocd.csv"
    if not SHARED_OCD.exists():
        source.write_text(OCD_SAMPLE, encoding="utf-8")
    result = runner.invoke(args=["catalogue", "import-ocd", str(source)])
    assert result.exit_code == 0, result.output
    from pathlib import Path
    extra = catalogue.load_ocd(Path(app.instance_path))
    assert len(extra) >= 4 and "imported" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n", encoding="utf-8")
    refused = runner.invoke(args=["catalogue", "import-ocd", str(bad)])
    assert refused.exit_code == 1 and "lacks the columns" in refused.output


def test_catalogue_list_shows_purposes_in_the_language_asked(runner):
    result = runner.invoke(args=["catalogue", "list", "--lang", "fi"])
    assert result.exit_code == 0
    assert "google-analytics\tanalytics\tGoogle Ireland Ltd\t_ga, _ga_*, _gid, _gat*" in result.output
    assert "Kävijätilastot Googlen palvelussa" in result.output
