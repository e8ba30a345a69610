"""The public pages and the notice API over HTTP: languages, dates, versions, diffs, caching, errors and headers."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Iterator
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import frontmatter
import pytest

from keksi import clock, i18n

from .conftest import BOTH, LANGS, publish_all, write_version
from .test_notices import HOSTILE

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

# -- a small HTML reader, so assertions are about elements, not about whitespace ----------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Node | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def iter(self) -> Iterator["Node"]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def texts(self) -> list[str]:
        """Every non-blank text chunk inside, in document order."""
        out = []
        for child in self.children:
            if isinstance(child, str):
                if child.strip():
                    out.append(" ".join(child.split()))
            else:
                out.extend(child.texts())
        return out

    def has_class(self, name: str) -> bool:
        return name in (self.attrs.get("class") or "").split()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str | bool) -> list["Node"]:
        """Elements below this one; an attribute given as True only has to be present."""
        found = []
        for node in self.iter():
            if node is self or (tag and node.tag != tag) or (cls and not node.has_class(cls)):
                continue
            if all((name in node.attrs) if value is True else node.attrs.get(name) == value
                   for name, value in ((k.replace("_", "-"), v) for k, v in attrs.items())):
                found.append(node)
        return found

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str | bool) -> "Node":
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag or '*'}> with class={cls} {attrs}"
        return found[0]

    def link(self, href: str) -> "Node":
        """The first link to `href` (a path, or an absolute URL)."""
        return self.find("a", href=href)

    def hrefs(self) -> set[str]:
        return {a.attrs["href"] for a in self.find_all("a", href=True)}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, dict(attrs), self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node is not self.root and node.tag != tag:
            node = node.parent
        if node is not self.root:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str | bytes) -> Node:
    builder = _Builder()
    builder.feed(html.decode() if isinstance(html, bytes) else html)
    return builder.root


def get_page(client, url: str, status: int = 200, **headers: str) -> Node:
    response = client.get(url, headers=headers)
    assert response.status_code == status, (url, response.status_code)
    assert response.mimetype == "text/html"
    return parse(response.data)


# Expected text per language. Dates: fi and sv d.M.y, en "d MMMM y" (KEKSI_DATE_FORMATS).
UPDATED = {"fi": "Päivitetty 9.4.2026", "sv": "Senast uppdaterad 9.4.2026", "en": "Last updated 9 April 2026"}
COOKIES_UPDATED = {"fi": "Päivitetty 15.9.2025", "sv": "Senast uppdaterad 15.9.2025",
                   "en": "Last updated 15 September 2025"}
PRIVACY_TITLE = {"fi": "Tietosuojaseloste", "sv": "Dataskyddsbeskrivning", "en": "Privacy notice"}
COOKIES_TITLE = {"fi": "Evästeseloste", "sv": "Information om kakor", "en": "Cookie notice"}
LANGUAGE_NAMES = {"fi": "Suomi", "sv": "Svenska", "en": "English"}


# -- choosing a language ---------------------------------------------------------------


@pytest.mark.parametrize("accept, target", [
    ("sv-FI,sv;q=0.9", "/sv/"),
    ("en-GB", "/en/"),
    ("de-DE,de;q=0.9,en;q=0.5", "/en/"),
    ("fi;q=0.3,sv;q=0.8", "/sv/"),
    ("de", "/fi/"),
    (None, "/fi/"),
])
def test_root_redirects_by_accept_language(client, accept, target):
    response = client.get("/", headers={"Accept-Language": accept} if accept else {})
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == target
    assert "Accept-Language" in response.headers["Vary"]


def test_root_falls_back_to_the_configured_default(make_app):
    client = make_app(DEFAULT_LANGUAGE="en").test_client()
    assert urlsplit(client.get("/", headers={"Accept-Language": "de"}).location).path == "/en/"


# -- the index and a notice's current page -----------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_index_lists_each_notice_with_its_current_date(client, lang):
    doc = get_page(client, f"/{lang}/")
    assert doc.find("html").attrs["lang"] == lang
    items = doc.find("ul", cls="notice-list").find_all("li")
    assert [li.find("a").attrs["href"] for li in items] == [f"/{lang}/privacy", f"/{lang}/cookies"]
    assert [li.find("a").text() for li in items] == [PRIVACY_TITLE[lang], COOKIES_TITLE[lang]]
    assert UPDATED[lang] in items[0].texts()
    assert COOKIES_UPDATED[lang] in items[1].texts()
    assert f"/{lang}/privacy/versions" in items[0].hrefs()


@pytest.mark.parametrize("lang", LANGS)
def test_current_page_has_date_on_top_title_and_language_links(client, lang):
    doc = get_page(client, f"/{lang}/privacy")
    assert doc.find("html").attrs["lang"] == lang
    article = doc.find("article")
    first, second = article.texts()[:2]
    assert (first, second) == (UPDATED[lang], PRIVACY_TITLE[lang]), "the date comes first, above the h1"
    assert doc.find("h1").text() == PRIVACY_TITLE[lang]
    assert doc.find("title").text().startswith(PRIVACY_TITLE[lang])
    assert article.find("div", cls="notice-body").find_all("h2"), "the body is rendered"

    alternates = {link.attrs["hreflang"]: link.attrs["href"]
                  for link in doc.find("head").find_all("link", rel="alternate")}
    assert alternates == {other: f"http://localhost/{other}/privacy" for other in LANGS}

    switcher = doc.find("nav", cls="languages")
    links = {a.attrs["hreflang"]: a for a in switcher.find_all("a")}
    assert set(links) == set(LANGS)
    for other, a in links.items():
        assert urlsplit(a.attrs["href"]).path == f"/{other}/privacy"
        assert a.text() == LANGUAGE_NAMES[other] and a.attrs["lang"] == other
        assert ("aria-current" in a.attrs) == (other == lang)

    footer = doc.find("footer")
    consent = footer.find(data_consent_open=True)
    assert consent.text(), "the consent link has a visible name"


@pytest.mark.parametrize("lang, expected", [
    ("fi", ("9.4.2026", "31.12.2025")),
    ("sv", ("9.4.2026", "31.12.2025")),
    ("en", ("9 April 2026", "31 December 2025")),
])
def test_dates_are_written_the_way_each_language_writes_them(app, lang, expected):
    with app.test_request_context(f"/{lang}/"):
        assert (i18n.format_date("2026-04-09", lang), i18n.format_date("2025-12-31", lang)) == expected


def test_date_formats_follow_the_setting(make_app):
    app = make_app(DATE_FORMATS={"fi": "d.M.y", "sv": "y-MM-dd"})
    client = app.test_client()
    assert "Senast uppdaterad 2026-04-09" in get_page(client, "/sv/privacy").find("article").texts()
    # a language without a pattern gets Babel's long format
    assert "Last updated April 9, 2026" in get_page(client, "/en/privacy").find("article").texts()


# -- a version published in advance ------------------------------------------------------


def _publish_future_version(app, notices_dir, version: str = "2027-01-15") -> None:
    write_version(notices_dir, "privacy", version, material=True, title="New privacy notice",
                  summary="Adds a newsletter.", body="## 1. Controller\n\nNew text.\n")
    publish_all(app)


def test_version_published_in_advance_is_announced_not_shown(make_app, notices_dir):
    app = make_app(FIXED_TODAY="2026-11-22")
    _publish_future_version(app, notices_dir)
    client = app.test_client()

    current = get_page(client, "/en/privacy")
    assert current.find("article").texts()[0] == UPDATED["en"]
    assert current.find("h1").text() == PRIVACY_TITLE["en"]
    upcoming = current.find("p", cls="notice-upcoming")
    assert "A new version takes effect on 15 January 2027." in upcoming.texts()
    assert upcoming.link("/en/privacy/2027-01-15").text() == "Read the new version"
    assert "/en/privacy/diff/2026-04-09/2027-01-15" in upcoming.hrefs()
    assert "Uusi versio tulee voimaan 15.1.2027." in get_page(client, "/fi/privacy").texts()

    future = get_page(client, "/en/privacy/2027-01-15")
    assert future.find("article").texts()[0] == "Takes effect on 15 January 2027"
    note = future.find("p", cls="notice-upcoming")
    assert "This version takes effect on 15 January 2027. Until then the current version applies." in note.texts()
    assert note.link("/en/privacy").text() == "Read the current version"

    versions = get_page(client, "/en/privacy/versions")
    assert "Takes effect on 15 January 2027" in versions.find("ol", cls="versions").texts()

    api = client.get("/api/v1/notices/privacy?lang=en").get_json()
    assert api["version"] == "2026-04-09"
    assert [u["version"] for u in api["upcoming"]] == ["2027-01-15"]


def test_version_becomes_current_on_its_date(make_app, notices_dir):
    _publish_future_version(make_app(), notices_dir)
    client = make_app(publish=False, FIXED_TODAY="2027-01-15").test_client()

    doc = get_page(client, "/en/privacy")
    assert doc.find("article").texts()[:2] == ["Last updated 15 January 2027", "New privacy notice en"]
    assert not doc.find_all("p", cls="notice-upcoming")
    old = get_page(client, "/en/privacy/2026-04-09")
    assert "This version was replaced on 15 January 2027." in old.find("p", cls="notice-superseded").texts()
    api = client.get("/api/v1/notices/privacy?lang=en").get_json()
    assert (api["version"], api["latest_material_version"], api["upcoming"]) == ("2027-01-15", "2027-01-15", [])


class _Instant(datetime):
    """A clock stopped at 22:30 UTC on 14 January 2027: already the 15th in Helsinki."""

    @classmethod
    def now(cls, tz=None):
        return datetime(2027, 1, 14, 22, 30, tzinfo=timezone.utc).astimezone(tz)


@pytest.mark.parametrize("zone, shown", [("Europe/Helsinki", "2027-01-15"), ("UTC", "2026-04-09")])
def test_effective_date_begins_at_midnight_in_the_configured_zone(make_app, notices_dir, monkeypatch, zone, shown):
    _publish_future_version(make_app(), notices_dir)
    monkeypatch.setattr(clock, "datetime", _Instant)
    client = make_app(publish=False, FIXED_TODAY=None, TIMEZONE=zone).test_client()
    assert client.get("/api/v1/notices/privacy?lang=en").get_json()["version"] == shown


def test_today_is_the_date_in_the_configured_zone(make_app):
    # UTC+14 and UTC-12 are 26 hours apart: their dates always differ.
    seen = {}
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        app = make_app(publish=False, FIXED_TODAY=None, TIMEZONE=zone)
        with app.app_context():
            before = datetime.now(ZoneInfo(zone)).date()
            seen[zone] = clock.today()
            after = datetime.now(ZoneInfo(zone)).date()
        assert seen[zone] in (before, after)
    assert seen["Pacific/Kiritimati"] != seen["Etc/GMT+12"]
    with make_app(publish=False, FIXED_TODAY="2027-01-15").app_context():
        assert clock.today().isoformat() == "2027-01-15"


# -- history, permalinks and diffs ------------------------------------------------------


def _summary(notices_dir, version: str, lang: str = "en") -> str:
    return " ".join(frontmatter.load(notices_dir / "privacy" / f"{version}.{lang}.md")["summary"].split())


def test_versions_page_lists_dates_summaries_and_marks(client, notices_dir):
    doc = get_page(client, "/en/privacy/versions")
    items = doc.find("ol", cls="versions").find_all("li")
    assert [li.find("h2").text() for li in items] == ["9 April 2026", "1 March 2025"]
    assert [li.find("h2").find("a").attrs["href"] for li in items] == [
        "/en/privacy/2026-04-09", "/en/privacy/2025-03-01"]
    newest, oldest = items
    assert "Material change" in newest.texts() and "Current version" in newest.texts()
    assert "First version" in oldest.texts(), "the first version changed nothing: not a 'Wording change'"
    assert "Wording change" not in oldest.texts() and "Material change" not in oldest.texts()
    assert _summary(notices_dir, "2026-04-09") in newest.texts()
    assert _summary(notices_dir, "2025-03-01") in oldest.texts()
    assert "/en/privacy/diff/2025-03-01/2026-04-09" in newest.hrefs()


@pytest.mark.parametrize("lang, material, first, wording", [
    ("fi", "Olennainen muutos", "Ensimmäinen versio", "Sanamuodon muutos"),
    ("sv", "Väsentlig ändring", "Första versionen", "Språklig ändring"),
])
def test_material_marks_are_translated(client, lang, material, first, wording):
    texts = get_page(client, f"/{lang}/privacy/versions").find("ol", cls="versions").texts()
    assert material in texts and first in texts
    assert wording in get_page(client, f"/{lang}/cookies/versions").find("ol", cls="versions").texts()


def test_superseded_permalink_points_to_the_current_version_and_the_diff(client):
    doc = get_page(client, "/en/privacy/2025-03-01")
    assert doc.find("article").texts()[0] == "Last updated 1 March 2025"
    note = doc.find("p", cls="notice-superseded")
    assert "This version was replaced on 9 April 2026." in note.texts()
    assert note.link("/en/privacy").text() == "Read the current version"
    assert "/en/privacy/diff/2025-03-01/2026-04-09" in note.hrefs()
    assert "Data Protection Officer" not in doc.find("div", cls="notice-body").text(), "the old text"


def test_current_permalink_says_it_is_current(client):
    doc = get_page(client, "/en/privacy/2026-04-09")
    assert "This is the current version." in doc.find("p", cls="status").texts()
    assert not doc.find_all("p", cls="notice-superseded")
    assert "Data Protection Officer" in doc.find("div", cls="notice-body").text()


def test_diff_marks_changes_for_eyes_and_screen_readers(client, notices_dir):
    doc = get_page(client, "/en/privacy/diff/2025-03-01/2026-04-09")
    lines = doc.find("ol", cls="diff").find_all("li")
    added = [li for li in lines if li.has_class("diff-added")]
    removed = [li for li in lines if li.has_class("diff-removed")]
    assert added and removed
    for li in added + removed:
        sign = li.find("span", cls="diff-sign")
        assert sign.attrs.get("aria-hidden") == "true" and sign.text() in ("+", "−")
        label = li.find("span", cls="visually-hidden").text()
        assert label in ("Added:", "Removed:", "Changed line, before:", "Changed line, after:")
    # a whole new line, and a changed line with the changed words marked
    dpo = next(li for li in added if "Data Protection Officer" in li.text())
    assert dpo.find("span", cls="visually-hidden").text() == "Added:"
    assert "Data Protection Officer: Aino Virtanen" in dpo.find("ins").text()
    before = next(li for li in removed if "24" in li.text())
    after = next(li for li in added if "36" in li.text())
    assert "24" in [d.text() for d in before.find_all("del")]
    assert any("36" in i.text() for i in after.find_all("ins"))
    assert not [li for li in lines if li.has_class("diff-same") and li.find_all("span", cls="visually-hidden")]

    legend = doc.find("p", cls="legend").text()
    assert "struck through" in legend and "underlined" in legend
    summary = doc.find("section", cls="summary")
    assert _summary(notices_dir, "2026-04-09") in summary.texts()
    assert "Material change" in summary.texts()
    assert {"/en/privacy/2025-03-01", "/en/privacy/2026-04-09"} <= doc.find("main").hrefs()


def test_diff_labels_are_translated(client):
    labels = {s.text() for s in get_page(client, "/fi/privacy/diff/2025-03-01/2026-04-09")
              .find("ol", cls="diff").find_all("span", cls="visually-hidden")}
    assert labels == {"Lisätty:", "Muutettu rivi, aiempi:", "Muutettu rivi, uusi:"}


def test_diff_in_reverse_order_works(client):
    doc = get_page(client, "/en/privacy/diff/2026-04-09/2025-03-01")
    lines = doc.find("ol", cls="diff").find_all("li")
    dpo = next(li for li in lines if "Data Protection Officer: Aino" in li.text())
    assert dpo.has_class("diff-removed") and dpo.find("del")


@pytest.mark.parametrize("url, missing", [
    ("/en/privacy/diff/2020-01-01/2026-04-09", "1 January 2020"),
    ("/en/privacy/diff/2025-03-01/2030-01-01", "1 January 2030"),
    ("/en/privacy/diff/2025-02-30/2026-04-09", "2025-02-30"),
])
def test_diff_with_an_unknown_version_is_404(client, url, missing):
    doc = get_page(client, url, status=404)
    assert missing in doc.find("h1").text()


# -- conditional requests ---------------------------------------------------------------

CACHED = ["/en/privacy", "/en/privacy/2025-03-01", "/en/privacy/versions",
          "/en/privacy/diff/2025-03-01/2026-04-09", "/api/v1/notices/privacy?lang=en"]


@pytest.mark.parametrize("url", CACHED)
def test_conditional_requests_answer_304_until_something_is_published(make_app, notices_dir, url):
    app = make_app()
    client = app.test_client()
    first = client.get(url)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"]
    is_api = url.startswith("/api/")
    assert ("Last-Modified" in first.headers) is not is_api

    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag and again.headers["Content-Security-Policy"]
    assert client.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200

    if not is_api:
        last_modified = first.headers["Last-Modified"]
        assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
        earlier = format_datetime(parsedate_to_datetime(last_modified) - timedelta(seconds=1), usegmt=True)
        assert client.get(url, headers={"If-Modified-Since": earlier}).status_code == 200

    _publish_future_version(app, notices_dir)
    after = client.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["ETag"] != etag


@pytest.mark.parametrize("url", ["/en/privacy/2026-04-09", "/en/privacy/diff/2025-03-01/2026-04-09"])
def test_a_version_published_in_between_changes_the_validators(make_app, notices_dir, url):
    # The permalink links to its previous version and the diff lists the versions in between:
    # both change when a version dated between the two is published.
    app = make_app()
    client = app.test_client()
    etag = client.get(url).headers["ETag"]
    write_version(notices_dir, "privacy", "2025-09-01", summary="In between.")
    publish_all(app, allow_undo=True)  # its text is not in 2026-04-09's: that version undoes it
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert "2025-09-01" in str(parse(response.data).find("main").hrefs())


def test_last_modified_moves_when_a_version_takes_effect(make_app, notices_dir):
    # Published in advance (long before its date), a version changes the pages again on
    # that date: a client asking If-Modified-Since must not keep the old version.
    app = make_app()
    _publish_future_version(app, notices_dir, version="2099-01-15")
    before = app.test_client().get("/en/privacy")
    later = make_app(publish=False, FIXED_TODAY="2099-01-15").test_client()
    response = later.get("/en/privacy", headers={"If-Modified-Since": before.headers["Last-Modified"]})
    assert response.status_code == 200
    assert response.headers["Last-Modified"] == "Wed, 14 Jan 2099 22:00:00 GMT"  # midnight in Helsinki
    assert "Last updated 15 January 2099" in parse(response.data).find("article").texts()
    assert later.get("/en/privacy", headers={"If-None-Match": before.headers["ETag"]}).status_code == 200


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("url, accept, lang, text", [
    ("/de/", "sv", "sv", "Det finns ingen sida på den här adressen."),
    ("/de/privacy", "en-GB", "en", "There is no page at this address."),
    ("/fi/nope", "sv", "fi", "Selostetta ”nope” ei ole tällä kielellä."),
    ("/sv/privacy/nope", "fi", "sv", "Det finns ingen sida på den här adressen."),
    ("/en/privacy/diff/2025-03-01", "fi", "en", "There is no page at this address."),
])
def test_404_pages_speak_the_visitors_language(client, url, accept, lang, text):
    doc = get_page(client, url, status=404, **{"Accept-Language": accept})
    assert doc.find("html").attrs["lang"] == lang
    assert doc.find("h1").text().startswith(text)
    assert doc.find("main").link(f"/{lang}/")
    assert doc.find("footer").find(data_consent_open=True)
    switcher = doc.find("nav", cls="languages")
    assert [a.attrs["href"] for a in switcher.find_all("a")] == [
        f"http://localhost/{other}/" for other in ("fi", "sv", "en")]
    assert len(doc.find_all("link", rel="alternate")) == 3


@pytest.mark.parametrize("lang, text, link", [
    ("en", "has no version of 1 January 2020", "Every version of"),
    ("fi", "ei ole versiota 1.1.2020", "kaikki versiot"),
    ("sv", "har ingen version från 1.1.2020", "Alla versioner av"),
])
def test_404_for_a_missing_version_names_it_in_words_and_links_to_its_versions(client, lang, text, link):
    for url in (f"/{lang}/privacy/2020-01-01", f"/{lang}/privacy/diff/2020-01-01/2026-04-09"):
        doc = get_page(client, url, status=404)
        assert doc.find("html").attrs["lang"] == lang
        heading = doc.find("h1").text()
        assert text in heading and "privacy" not in heading and "2020-01-01" not in heading, heading
        versions = doc.find("main").link(f"/{lang}/privacy/versions")
        assert link in versions.text()
        assert doc.find("title").text().startswith({"en": "Error", "fi": "Virhe", "sv": "Fel"}[lang])


@pytest.mark.parametrize("url, status, fragment", [
    ("/api/v1/notices/nope?lang=en", 404, "nope"),
    ("/api/v1/notices/privacy?lang=de", 400, "lang"),
    ("/api/v1/nothing-here", 404, "no page"),
])
def test_api_errors_are_json(client, url, status, fragment):
    response = client.get(url, headers={"Accept-Language": "en"})
    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == status and fragment in body["message"]


def test_wrong_method_is_405_not_500(client):
    assert client.post("/en/privacy").status_code == 405
    response = client.post("/api/v1/notices/privacy?lang=en")
    assert response.status_code == 405 and response.get_json()["status"] == 405


# -- the API ----------------------------------------------------------------------------


def test_api_describes_the_current_version(client, notices_dir):
    body = client.get("/api/v1/notices/privacy?lang=fi").get_json()
    source = (notices_dir / "privacy" / "2026-04-09.fi.md").read_bytes()
    assert body["slug"] == "privacy" and body["lang"] == "fi"
    assert body["title"] == PRIVACY_TITLE["fi"]
    assert body["version"] == body["effective_date"] == "2026-04-09"
    assert body["url"] == "http://localhost/fi/privacy/2026-04-09"
    assert body["sha256"] == hashlib.sha256(source).hexdigest()
    assert body["latest_material_version"] == "2026-04-09"
    assert body["upcoming"] == []


def test_api_latest_material_version_is_null_without_one(client):
    body = client.get("/api/v1/notices/cookies?lang=en").get_json()
    assert body["version"] == "2025-09-15"
    assert body["latest_material_version"] is None


# -- security headers -------------------------------------------------------------------

EVERY_KIND = [("/en/privacy", 200), ("/", 302), ("/en/nope", 404), ("/de/", 404),
              ("/api/v1/notices/privacy?lang=en", 200), ("/api/v1/notices/nope", 404),
              ("/static/site.css", 200)]


def _csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


@pytest.mark.parametrize("url, status", EVERY_KIND)
def test_security_headers_on_every_kind_of_response(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    csp = _csp(response)
    assert "'unsafe-inline'" not in str(csp) and "'unsafe-eval'" not in str(csp)
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["default-src"] == "default-src 'self'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("no-referrer", "same-origin", "strict-origin",
                                                   "strict-origin-when-cross-origin")
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.parametrize("url, status", EVERY_KIND)
def test_hsts_only_over_https(make_app, url, status):
    response = make_app(HTTPS=True).test_client().get(url)
    assert response.status_code == status
    hsts = response.headers["Strict-Transport-Security"]
    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000


# -- hostile Markdown, end to end -------------------------------------------------------


def _assert_inert(doc: Node) -> None:
    for node in doc.iter():
        assert node.tag not in ("script", "iframe", "object", "embed", "svg", "math", "form", "img",
                                "style", "base", "input", "button"), node.tag
        if node.tag == "meta":
            assert "http-equiv" not in node.attrs
        for name, value in node.attrs.items():
            assert not name.startswith("on"), (node.tag, name)
            assert name != "style", node.tag
            if name in ("href", "src", "action") and value:
                assert value.strip().lower().split(":")[0] not in ("javascript", "vbscript", "data"), value


def test_hostile_markdown_is_inert_on_every_page_that_shows_it(make_app, notices_dir):
    app = make_app()
    # All but the Markdown image, which `notices check` refuses (tests/test_notice_limits.py).
    body = "Intro.\n\n" + "\n\n".join(p for p in HOSTILE if not p.startswith("![")) + "\n\nOutro.\n"
    write_version(notices_dir, "privacy", "2026-06-01", body=body, title="<script>alert(1)</script>",
                  summary="<img src=x onerror=alert(1)>")
    publish_all(app)
    client = app.test_client()

    page = client.get("/en/privacy")
    html = page.get_data(as_text=True).lower()
    for forbidden in ("<script", "<iframe", "<object", "<svg", "<form", "<img", "<style", "<base",
                      "http-equiv", "javascript:", "vbscript:", "data:text", "onerror=", "onload=",
                      "onclick=", "onmouseover=", "style="):
        assert forbidden not in html, forbidden
    doc = parse(page.data)
    assert "Outro." in doc.find("div", cls="notice-body").texts()
    assert doc.find("h1").text() == "<script>alert(1)</script> en", "the title is shown as text"
    for url in ("/en/privacy", "/en/privacy/versions", "/en/privacy/diff/2026-04-09/2026-06-01", "/en/"):
        _assert_inert(get_page(client, url))


def test_a_notice_with_only_an_upcoming_version_is_reachable(make_app, notices_dir):
    from .test_notices import write_version
    write_version(notices_dir, "terms", "2027-03-01", title="Terms")
    app = make_app()
    client = app.test_client()
    current = client.get("/en/terms")
    assert current.status_code == 302 and current.headers["Location"].endswith("/en/terms/2027-03-01")
    page = client.get("/en/terms/2027-03-01")
    assert page.status_code == 200 and "Takes effect on 1 March 2027" in page.get_data(as_text=True)
    assert client.get("/en/terms/versions").status_code == 200


def test_answers_that_depend_on_the_browser_language_vary_on_it(client):
    response = client.get("/api/v1/notices/privacy", headers={"Accept-Language": "sv"})
    assert response.get_json()["lang"] == "sv"
    assert "Accept-Language" in response.headers["Vary"] and "Accept-Encoding" in response.headers["Vary"]
    assert "Accept-Language" not in client.get("/api/v1/notices/privacy?lang=sv").headers["Vary"]
