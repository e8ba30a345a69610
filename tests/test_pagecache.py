"""The per-worker page cache (keksi.pagecache): served without Flask, never stale, never shared wrongly."""

from __future__ import annotations

from typing import Any

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app import create_app
from keksi import notices, pagecache
from keksi import store as store_module
from keksi.store import StoreError, open_store

from .conftest import BOTH, publish_all, write_version

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

PAGE = "/en/privacy"


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The notices each request loaded: a request answered by the cache loads none."""
    loaded: list[str] = []
    real = notices.load_notice

    def counting(store: Any, slug: str, *args: Any, **kwargs: Any):
        loaded.append(slug)
        return real(store, slug, *args, **kwargs)

    monkeypatch.setattr(notices, "load_notice", counting)
    return loaded


def test_a_repeat_request_is_answered_from_the_cache_with_the_same_bytes_and_headers(client, renders):
    first = client.get(PAGE)
    second = client.get(PAGE)
    assert first.status_code == second.status_code == 200
    assert renders == ["privacy"]
    assert second.data == first.data
    assert dict(second.headers) == dict(first.headers)
    assert pagecache.MARK not in first.headers and pagecache.MARK not in second.headers
    assert "unsafe-inline" not in second.headers["Content-Security-Policy"]
    assert second.headers["Cache-Control"] == "public, no-cache"


def test_the_cache_answers_conditional_requests_with_304(client, renders):
    first = client.get(PAGE)
    etag = first.headers["ETag"]
    by_etag = client.get(PAGE, headers={"If-None-Match": etag})
    by_date = client.get(PAGE, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    other = client.get(PAGE, headers={"If-None-Match": '"something-else"'})
    assert renders == ["privacy"]
    assert by_etag.status_code == by_date.status_code == 304
    assert by_etag.data == b"" and by_etag.headers["ETag"] == etag
    assert "Content-Type" not in by_etag.headers and "Content-Length" not in by_etag.headers
    assert by_etag.headers["X-Content-Type-Options"] == "nosniff"
    assert other.status_code == 200 and other.data == first.data


def test_head_is_answered_from_the_cache_without_a_body(client, renders):
    page = client.get(PAGE)
    head = client.head(PAGE)
    assert renders == ["privacy"]
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == page.headers["Content-Length"]


def test_a_publication_by_another_process_shows_at_once(make_app, notices_dir, renders):
    """Another worker's app on the same database publishes: this worker's cache starts over."""
    app = make_app()
    client = app.test_client()
    before = client.get(PAGE)
    write_version(notices_dir, "privacy", "2026-11-01", material=True, body="Brand new wording.\n")
    other_worker = create_app(dict(app.config))
    publish_all(other_worker)
    after = client.get(PAGE)
    assert renders == ["privacy", "privacy"]
    assert b"Brand new wording." in after.data and b"Brand new wording." not in before.data
    assert after.headers["ETag"] != before.headers["ETag"]
    assert client.get(PAGE, headers={"If-None-Match": before.headers["ETag"]}).status_code == 200


def test_a_withdrawal_shows_at_once(make_app, notices_dir, renders):
    write_version(notices_dir, "privacy", "2027-03-01", body="Coming in March.\n")
    app = make_app()
    client = app.test_client()
    assert client.get("/en/privacy/2027-03-01").status_code == 200
    store = open_store(app.config["DATABASE"])
    try:
        assert store.withdraw_notice_version("privacy", "2027-03-01", "tests", "2026-11-22") == 3
    finally:
        store.close()
    assert client.get("/en/privacy/2027-03-01").status_code == 404


def test_the_day_changing_makes_the_next_version_current(make_app, notices_dir, renders):
    write_version(notices_dir, "privacy", "2026-12-01", body="December wording.\n")
    app = make_app()
    client = app.test_client()
    assert b"December wording." not in client.get(PAGE).data
    app.config["FIXED_TODAY"] = "2026-12-01"
    assert b"December wording." in client.get(PAGE).data
    assert renders == ["privacy", "privacy"]


def test_each_host_and_scheme_has_its_own_entry(client, renders):
    """Pages carry absolute links (alternates): a page made for one host is never sent to another."""
    one = client.get(PAGE, base_url="http://one.example")
    secure = client.get(PAGE, base_url="https://one.example")
    two = client.get(PAGE, base_url="https://two.example")
    assert b"http://one.example/" in one.data and b"http://one.example/" not in secure.data
    assert b"https://two.example/" in two.data and b"one.example" not in two.data
    assert renders == ["privacy"] * 3


def test_requests_with_a_query_or_a_session_cookie_go_to_flask(app, client, renders):
    client.get(PAGE)
    client.get(PAGE, query_string={"x": "1"})
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], "anything")
    client.get(PAGE)
    assert renders == ["privacy", "privacy", "privacy"]


def test_unmarked_and_failed_answers_are_not_kept(client, renders):
    for _ in range(2):
        assert client.get("/en/no-such-notice").status_code == 404
        client.get("/en/")  # the index is not marked shareable
        assert pagecache.MARK not in client.get("/admin/login").headers
    assert renders == ["no-such-notice", "no-such-notice"]


def test_a_publication_through_one_worker_reaches_a_second_worker_on_the_same_database(
        make_app, notices_dir, renders):
    """Two app objects on one database file, as two workers (or hosts): legal publishes with the
    CLI of the first; the second, already serving the old page, shows the new one at once."""
    first = make_app()
    second = create_app(dict(first.config))
    client = second.test_client()
    assert b"Brand new wording." not in client.get(PAGE).data
    write_version(notices_dir, "privacy", "2026-11-01", material=True, body="Brand new wording.\n")
    result = first.test_cli_runner().invoke(args=["notices", "publish", "--by", "legal@example.com"])
    assert result.exit_code == 0, result.output
    assert b"Brand new wording." in client.get(PAGE).data
    assert renders == ["privacy", "privacy"]


def test_a_failed_publication_leaves_the_generation_as_it_was(make_app, notices_dir):
    """The generation is raised in the publication's transaction: a refused one changes nothing."""
    app = make_app()
    before = store_module.generation(app, "notices", "sites")
    store = open_store(app.config["DATABASE"])
    try:
        row = store.notice_version("privacy", store.notice_versions("privacy")[0]["version"], "en")
        with pytest.raises(StoreError, match="already published"):
            store.publish_notice_versions([row], "tests")
        assert store_module.generation(app, "notices", "sites") == before
    finally:
        store.close()


def test_every_change_of_notices_or_sites_gives_a_new_generation(make_app, notices_dir):
    app = make_app()
    seen = [store_module.generation(app, "notices", "sites")]
    write_version(notices_dir, "privacy", "2027-03-01", body="Coming in March.\n")
    publish_all(app)
    seen.append(store_module.generation(app, "notices", "sites"))
    store = open_store(app.config["DATABASE"])
    try:
        store.withdraw_notice_version("privacy", "2027-03-01", "tests", "2026-11-22")
        seen.append(store_module.generation(app, "notices", "sites"))
        store.save_site({"id": "probe", "name": "Probe"}, "tests", create=True)
        seen.append(store_module.generation(app, "notices", "sites"))
        store.remove_site("probe", "tests")
        seen.append(store_module.generation(app, "notices", "sites"))
    finally:
        store.close()
    assert [a[0] < b[0] for a, b in zip(seen, seen[1:])] == [True, True, False, False]
    assert [a[1] < b[1] for a, b in zip(seen, seen[1:])] == [False, False, True, True]


def test_a_page_made_while_a_publication_happened_is_not_kept(make_app, notices_dir, monkeypatch):
    """Two threads of one worker: A renders the old page; meanwhile the publication commits and
    B, arriving after it, starts a new generation. A's old page must not land in B's generation."""
    app = make_app()
    client = app.test_client()
    real = notices.load_notice
    calls: list[str] = []

    def publish_during_the_first_render(store: Any, slug: str, *args: Any, **kwargs: Any):
        loaded = real(store, slug, *args, **kwargs)
        calls.append(slug)
        if len(calls) == 1:  # A has read the old text; now the publication lands, then B arrives
            write_version(notices_dir, "privacy", "2026-11-01", material=True, body="Brand new wording.\n")
            publish_all(create_app(dict(app.config)))
            builder = EnvironBuilder(path="/en/", base_url="http://localhost")
            run_wsgi_app(app.wsgi_app, builder.get_environ(), buffered=True)
        return loaded

    monkeypatch.setattr(notices, "load_notice", publish_during_the_first_render)
    assert b"Brand new wording." not in client.get(PAGE).data
    assert b"Brand new wording." in client.get(PAGE).data
    assert calls == ["privacy", "privacy"]


@pytest.mark.parametrize("header, value", [
    ("If-Match", '"anything"'), ("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Range", "bytes=0-9"),
])
def test_preconditions_and_ranges_the_cache_does_not_evaluate_go_to_flask(client, renders, header, value):
    client.get(PAGE)
    client.get(PAGE, headers={header: value})
    assert renders == ["privacy", "privacy"]



def test_pages_carry_no_date_of_their_own_so_a_kept_page_never_replays_an_old_one(client):
    """The server adds Date to each response (tests/test_hardening checks gunicorn's)."""
    for _ in range(2):
        assert "Date" not in client.get(PAGE).headers
