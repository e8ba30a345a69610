"""While the database cannot be reached at all (PostgreSQL refusing connections, an SQLite file that
cannot be opened): the widget on another origin can read the consent API's 503 and retries once it is
back, recording the choice once; a notice page says it cannot be shown, in the reader's language."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import pytest

from keksi.store import close_idle_connections

from .conftest import BOTH
from .ledger import ORIGIN, add_site, choice, config, count_rows, post
from .test_faults import refusing_connections

BACKENDS = BOTH


@pytest.fixture
def unreachable(backend: str, database: str, request: pytest.FixtureRequest):
    """A context in which the test's database cannot be reached, and can again afterwards."""
    if backend == "postgresql":
        return lambda: refusing_connections(request.getfixturevalue("postgresql_url"), database)
    return lambda: _unopenable(database)


@contextlib.contextmanager
def _unopenable(path: str) -> Iterator[None]:
    """The SQLite file cannot be opened, in any mode: a folder stands where it was."""
    close_idle_connections()
    os.rename(path, path + ".away")
    os.mkdir(path)
    try:
        yield
    finally:
        os.rmdir(path)
        os.rename(path + ".away", path)


def _assert_readable_503(answer: Any) -> None:
    assert answer.status_code == 503, answer.get_data(as_text=True)
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Retry-After" in answer.headers["Access-Control-Expose-Headers"] and int(answer.headers["Retry-After"]) > 0
    body = answer.get_json()
    assert body["field"] == "store" and body["status"] == 503
    # The kind of failure only: the driver's words can name hosts, users and paths (the log keeps them).
    assert body["message"] == "The choice was not recorded: the database cannot be reached or written. Retry shortly."


def test_a_choice_posted_while_the_database_is_out_of_reach_gets_a_503_the_page_can_read(
        make_app, backend, unreachable):
    app = make_app()
    add_site(app)
    client = app.test_client()
    body = choice(config(client))
    with unreachable():
        _assert_readable_503(post(client, body, content_type="text/plain;charset=UTF-8"))
        foreign = post(client, body, origin="https://elsewhere.example")
        assert foreign.status_code == 503 and "Access-Control-Allow-Origin" not in foreign.headers
        health = client.get("/healthz")
        assert (health.status_code, health.get_json()) == (503, {"status": "error", "database": "unavailable"})
    assert count_rows(app) == 0, "nothing was recorded"
    assert post(client, body).status_code == 201
    assert post(client, body).status_code in (200, 201), "the widget's retry of the same event"
    assert count_rows(app) == 1, "the choice retried after the outage is recorded once"


def test_a_worker_that_has_not_read_the_sites_lets_no_page_read_its_503(make_app, backend, unreachable):
    """Before a worker has known any site's origins it cannot tell an allowed page from a foreign one:
    it lets none read the answer (the widget retries all the same)."""
    app = make_app()
    add_site(app)
    body = choice(config(app.test_client()))
    fresh = make_app(publish=False)  # another worker process: it has read nothing yet
    with unreachable():
        answer = post(fresh.test_client(), body)
    assert answer.status_code == 503 and answer.get_json()["field"] == "store"
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.parametrize("lang, says, not_says", [
    ("en", "This page cannot be shown right now. Try again in a moment.", "Saving"),
    ("fi", "Sivua ei voi näyttää juuri nyt. Yritä hetken kuluttua uudelleen.", "Tallentaminen"),
    ("sv", "Sidan kan inte visas just nu. Försök igen om en stund.", "spara"),
])
def test_a_notice_page_says_it_cannot_be_shown_right_now(make_app, backend, unreachable, lang, says, not_says):
    app = make_app()
    client = app.test_client()
    assert client.get(f"/{lang}/privacy").status_code == 200
    with unreachable():
        answer = client.get(f"/{lang}/privacy")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert says in page and not_says not in page
    assert client.get(f"/{lang}/privacy").status_code == 200, "shown again once the database is back"
