"""Issue 12 point 7: what `auth`, `store` and `sites` refuse reaches the admin in the admin's language.

The domain raises codes with parameters; `keksi.messages` says each code in words (and each reason
a notice text cannot be shown), in the view layer. These tests find every code the code base raises,
render each in Finnish, Swedish and English in a request of a signed-in admin, and follow a few all
the way through the admin's forms; a code added without words, or words without translations, fails.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from flask_babel import force_locale, get_locale

from keksi import auth, messages, notices, scan, scanjobs, sites

from .conftest import BOTH, PASSWORD, add_user, csrf, sign_in, signed_in
from .test_admin_sites import NEW_SITE, definition_to_form, error_beside, form_values, stored_site

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

KEKSI = Path(__file__).resolve().parent.parent / "keksi"
LANGS = ["fi", "sv", "en"]
# How each domain names a code where it raises it.
RAISED = {
    "auth": re.compile(r'AuthError\(\s*"([a-z_]+)"'),
    "store": re.compile(r'(?:StoreError|StoreUnavailable|StoreBusy|LastAdmin)\([^()]*(?:\([^()]*\)[^()]*)*'
                        r'code="([a-z_]+)"', re.S),
    "site": re.compile(r'Problem\(\s*"([a-z_]+)"'),
}
# Codes with words that nothing raises: the sign-in wait (try_sign_in returns it), a
# StoreError raised without a code of its own and a page that loaded with an HTTP error status.
NOT_RAISED = {("auth", "wait"), ("store", "refused"), ("source", ""), ("page_error", "status")}
# Codes for the operator, in English, that no page words: `flask db copy`'s (run in a shell, where
# every command speaks English) and migrations not applied yet (named in the JSON 503; a page only says
# it cannot be shown right now).
FOR_OPERATORS = {("store", "target_not_empty"), ("store", "target_schema"), ("store", "copy_refused"),
                 ("store", "pending_migrations")}
# One value for every parameter any code takes.
PARAMS = {
    "roles": list(auth.ROLES), "n": 12, "max": 50, "languages": ["sv"], "origin": "ftp://shop.example",
    "slug": "terms", "site": "shop", "version": "2027-01-15", "email": "aino@example.fi", "user": 7,
    "seconds": 30, "colour": "text", "against": "background", "ratio": 4.47, "needed": 4.5, "id": "chat",
    "positions": list(sites.POSITIONS), "safeguards": list(sites.SAFEGUARDS), "line": 3,
    "detail": "https://example.fi/kuva.png", "example": "2026-12-02", "kb": 512, "url": "https://example.fi/a",
    "visitor": "reject", "address": "10.0.0.1", "status": 404,
}
CODES = [(domain, code) for domain, table in messages.DOMAINS.items() for code in table]


def raised_codes() -> dict[str, set[str]]:
    """Each domain's codes, as written where they are raised anywhere in keksi/."""
    found: dict[str, set[str]] = {domain: set() for domain in RAISED}
    for path in KEKSI.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for domain, pattern in RAISED.items():
            found[domain].update(pattern.findall(text))
    # A text that cannot be rendered: its codes are the keys of the CLI's English messages.
    found["render"] = set(notices.RENDER_MESSAGES)
    found["range"] = set(re.findall(r'(?:errors\[name\] = |RangeError\(\{"\w+": )"(\w+)"',
                                    (KEKSI / "figures.py").read_text(encoding="utf-8")))
    # A version written in the admin that cannot become its file.
    found["source"] = set(re.findall(r'Problem\([^\n]*code="(\w+)"', (KEKSI / "notices.py").read_text(encoding="utf-8")))
    assert found["source"], "no Problem(..., code=...) found in notices.py"
    found.update(_scan_codes())
    return found


def _scan_codes() -> dict[str, set[str]]:
    """Why a scan fails (scanjobs' codes), its visitors, each kind of finding scan.py makes, why a page
    did not load (scan.NotLoaded) and the refusal of an address the scanner may not visit (forms)."""
    text = (KEKSI / "scan.py").read_text(encoding="utf-8")
    kinds = set(re.findall(r'(?:Finding|_not_allowed)\(\s*"([a-z-]+)"', text))
    assert kinds and kinds <= set(scan.KINDS), f"scan.py makes findings of kinds outside scan.KINDS: {kinds}"
    failures = {scanjobs.STALE, scanjobs.TIMEOUT, scanjobs.CRASHED, scanjobs.NO_SITE, scanjobs.PAGE.rstrip(": ")}
    not_loaded = set(re.findall(r'(?:NotLoaded\(|error=)"([a-z]+)"', text))
    assert not_loaded, "no NotLoaded(...) or Observation(error=...) found in scan.py"
    refused = set(re.findall(r'raise ValidationError\(message\("scan_url", "(\w+)"',
                             (KEKSI / "forms.py").read_text(encoding="utf-8")))
    return {"scan": failures, "level": set(scan.LEVELS), "visitor": set(scan.VISITORS), "finding": set(scan.KINDS),
            "finding_help": set(scan.KINDS), "page_error": not_loaded, "scan_url": refused}


@pytest.fixture
def app(make_app):
    return make_app(FIXED_TODAY="2026-12-02")


def test_every_code_raised_has_words_and_every_word_has_a_code():
    found = raised_codes()
    assert all(found.values()), f"no codes found for some domain; is RAISED still right? {found}"
    assert {"email", "password_common", "link_used"} <= found["auth"]
    assert {"site_exists", "last_admin", "no_user"} <= found["store"]
    assert {"origin_twice", "duration", "transfer", "storage", "own_purposes"} <= found["site"]
    without_words = {(d, c) for d, codes in found.items() for c in codes if c not in messages.DOMAINS[d]} - FOR_OPERATORS
    assert not without_words, f"add these codes to keksi/messages.py, with translations: {without_words}"
    unused = {(d, c) for d, c in CODES if c not in found[d]} - NOT_RAISED
    assert not unused, f"keksi/messages.py has words for codes nothing raises: {unused}"


@pytest.mark.parametrize("lang", ["fi", "sv"])
def test_each_code_is_translated_in_the_admins_language(app, lang):
    client = signed_in(app, "admin@example.fi", "admin", lang=lang)
    with client:
        assert client.get("/admin/").status_code == 200  # the admin's request: its locale, from the session
        assert str(get_locale()) == lang
        shown = {(d, c): messages.message(d, c, PARAMS) for d, c in CODES}
        with force_locale("en"):
            english = {(d, c): messages.message(d, c, PARAMS) for d, c in CODES}
    untranslated = [key for key in CODES if shown[key] == english[key]]
    assert not untranslated, f"no {lang} translation (run scripts/catalogs, translate the .po): {untranslated}"
    for key, text in {**shown, **english}.items():
        assert text.strip() and "%(" not in text, (key, text)
        assert key[1] not in text or "_" not in key[1], f"{key} shows its raw key: {text}"
        assert not re.fullmatch(r"[a-z_.]+", text), f"{key} shows a key, not words: {text}"


@pytest.mark.parametrize("lang, one, many", [
    ("fi", "Odota 1 sekunti ja", "Odota 30 sekuntia ja"),
    ("sv", "om 1 sekund.", "om 30 sekunder."),
    ("en", "in 1 second.", "in 30 seconds."),
])
def test_a_count_takes_its_plural_in_each_language(app, lang, one, many):
    client = signed_in(app, "admin@example.fi", "admin", lang=lang)
    with client:
        client.get("/admin/")
        assert one in messages.message("auth", "wait", {"seconds": 1})
        assert many in messages.message("auth", "wait", {"seconds": 30})


def test_source_counts_use_ngettext():
    """A count written into a message with _() cannot take its plural; ngettext can."""
    counted = re.compile(r'_l?\(\s*"[^"]*%\((?:n|num|count|seconds|days|rows|total|minutes|hours)\)[sd]')
    offenders = [f"{path.name}: {match.group(0)}" for path in [*KEKSI.rglob("*.py"),
                                                               *KEKSI.parent.joinpath("templates").rglob("*.html")]
                 for match in counted.finditer(path.read_text(encoding="utf-8"))]
    assert not offenders, offenders


# -- all the way through the admin's forms -------------------------------------------------------


def text(response) -> str:
    """A page's text as a person reads it (entities such as &#39; as their characters)."""
    return html.unescape(response.get_data(as_text=True))


def _in(lang: str, client, domain: str, code: str, **params) -> str:
    """What the admin reads for `code` in `lang`, and a check that it is not the English."""
    with client:
        client.get("/admin/")
        words = messages.message(domain, code, params)
        with force_locale("en"):
            assert lang == "en" or words != messages.message(domain, code, params)
    return words


@pytest.mark.parametrize("lang", LANGS)
def test_account_errors_from_auth_and_store_are_shown_in_the_admins_language(app, lang):
    admin = signed_in(app, "admin@example.fi", "admin", lang=lang)
    bad_email = admin.post("/admin/users", data={"csrf_token": csrf(admin, "/admin/users"),
                                                 "email": "not-an-address", "roles": ["legal"]})
    assert bad_email.status_code == 400
    assert _in(lang, admin, "auth", "email") in text(bad_email)
    taken = admin.post("/admin/users", data={"csrf_token": csrf(admin, "/admin/users"),
                                             "email": "admin@example.fi", "roles": ["legal"]})
    assert taken.status_code == 400
    assert _in(lang, admin, "store", "user_exists", email="admin@example.fi") in text(taken)
    me = re.search(r'href="/admin/users/(\d+)"', admin.get("/admin/users").get_data(as_text=True)).group(1)
    last = admin.post(f"/admin/users/{me}/disable", data={"csrf_token": csrf(admin, f"/admin/users/{me}")})
    assert last.status_code == 409
    assert _in(lang, admin, "store", "last_admin") in text(last)


@pytest.mark.parametrize("lang", LANGS)
def test_a_common_password_is_refused_in_the_admins_language(app, lang):
    admin = signed_in(app, "admin@example.fi", "admin", lang=lang)
    refused = admin.post("/admin/password", data={
        "csrf_token": csrf(admin, "/admin/password"), "current": PASSWORD,
        "password": "password1234", "confirm": "password1234"})
    assert refused.status_code == 400
    assert _in(lang, admin, "auth", "password_common") in text(refused)


@pytest.mark.parametrize("lang", LANGS)
def test_site_form_errors_from_sites_are_shown_in_the_admins_language(app, lang):
    add_user(app, "marketing@example.fi", "marketing")
    client = app.test_client()
    sign_in(client, "marketing@example.fi")
    client.get(f"/admin/?lang={lang}")
    values = definition_to_form(form_values(client, "/admin/sites/new"), NEW_SITE, create=True)
    values["origins"] = "https://www.example.fi\nhttps://WWW.example.fi/"
    values["rows_necessary-0-duration"] = "forever"
    values["rows_necessary-1-duration"] = "persistent"  # kept until removed: accepted
    response = client.post("/admin/sites/new", data=values)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    twice = _in(lang, client, "site", "origin_twice", origin="https://WWW.example.fi/")
    assert twice in error_beside(page, "origins") and "origin_twice" not in page
    duration = _in(lang, client, "site", "duration")
    assert error_beside(page, "rows_necessary-0-duration") == duration and "persistent" in duration
    assert error_beside(page, "rows_necessary-1-duration") == ""
    assert stored_site(app, "web-shop") is None


@pytest.mark.parametrize("lang, url, words, href, link", [
    ("en", "/admin/sites/nowhere/edit", "There is no site with the id nowhere", "/admin/sites/", "All sites"),
    ("fi", "/admin/sites/nowhere/edit", "Sivustoa tunnuksella nowhere ei ole", "/admin/sites/", "Kaikki sivustot"),
    ("sv", "/admin/sites/nowhere/edit", "Det finns ingen webbplats med id:t nowhere", "/admin/sites/",
     "Alla webbplatser"),
    ("en", "/admin/users/999999", "There is no such user", "/admin/users", "All users"),
    ("fi", "/admin/users/999999", "Käyttäjää ei ole", "/admin/users", "Kaikki käyttäjät"),
    ("sv", "/admin/users/999999", "Användaren finns inte", "/admin/users", "Alla användare"),
])
def test_a_missing_site_or_user_is_named_with_a_link_to_the_list(app, lang, url, words, href, link):
    admin = signed_in(app, "admin@example.fi", "admin", lang=lang)
    missing = admin.get(url)
    page = text(missing)
    assert missing.status_code == 404 and words in page
    assert f'<a href="{href}">{link}</a>' in page, page


@pytest.mark.parametrize("lang, words, link", [
    ("en", "“Privacy notice” has no published version of 15 January 2027.",
     "Every version of “Privacy notice”"),
    ("fi", "Selosteella ”Tietosuojaseloste” ei ole julkaistua versiota 15.1.2027.",
     "Selosteen ”Tietosuojaseloste” kaikki versiot"),
    ("sv", "”Dataskyddsbeskrivning” har ingen publicerad version från 15.1.2027.",
     "Alla versioner av ”Dataskyddsbeskrivning”"),
])
def test_a_missing_notice_version_is_named_in_words_with_a_link_to_its_versions(app, lang, words, link):
    legal = signed_in(app, "legal@example.fi", "legal", lang=lang)
    missing = legal.get("/admin/notices/privacy/2027-01-15/withdraw")
    page = text(missing)
    assert missing.status_code == 404 and words in page, page
    href = re.search(rf'<a href="([^"]+)">{link}</a>', page).group(1)
    assert href == "/admin/notices#notice-privacy"
    assert 'id="notice-privacy"' in legal.get(href).get_data(as_text=True)
    unknown = legal.get("/admin/notices/nothing-here/2027-01-15/withdraw")
    assert unknown.status_code == 404 and '<a href="/admin/notices">' in unknown.get_data(as_text=True)
