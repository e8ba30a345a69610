"""4xx, never 500: hostile strings in every route's path, query, form and JSON body.

The strings are the ones that broke routes before (a lone surrogate, CR/LF, dates at the ends of
the calendar) mixed with whatever Hypothesis makes up. Sent signed in with every role and with a
valid CSRF token, so that the admin's views get past sign-in and CSRF to the code behind them.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import BOTH, PASSWORD, add_user, csrf, sign_in
from .ledger import ORIGIN, add_site, choice, config, count_rows, post

NASTY = ["\ud800", "\udfff", "x\ud800y", "\r\n", "/admin/\r\nX-Injected: 1", "/admin\\..\\x", "\x00",
         "0001-01-01", "9999-12-31", "0000-00-00", "2026-02-30", "-1", "1e309", "9" * 30, "", " ",
         "[" * 200, "%00", "%0d%0a", "../../etc/passwd", "<script>", "ä" * 300, "\u202e", "\ufeff"]
STRINGS = st.sampled_from(NASTY) | st.text(max_size=30)
FORM_FIELDS = ["email", "password", "confirm", "roles", "effective_date", "material", "previewed", "step",
               "title_en", "summary_en", "body_en", "title_fi", "body_fi", "from", "to", "next", "lang",
               "name", "site_id", "origins", "consent_days", "default_language", "action", "add"]
# Path arguments that exist, so that hostile query strings and forms reach the view behind them.
REAL = {"lang": "en", "slug": "privacy", "version": "2026-04-09", "old": "2025-03-01", "new": "2026-04-09",
        "site_id": "demo", "consent_id": "0" * 32, "token": "x" * 43, "filename": "site.css"}
QUERY_FIELDS = ["next", "lang", "from", "to", "format", "page", "q"]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | STRINGS,
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(STRINGS, children, max_size=4), max_leaves=12)
# The tests that build their app with make_app run on SQLite and PostgreSQL; `target` is SQLite's.
BACKENDS = BOTH
HOSTILE = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _quoted(value: str) -> str:
    """Percent-encoded as a browser would send it; a lone surrogate goes as its (invalid) UTF-8 bytes."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _form(fields: dict[str, str]) -> bytes:
    return "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in fields.items()).encode("ascii")


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """One signed-in admin with every role on an app with a site and a recorded choice."""
    from .conftest import SAMPLE_NOTICES, TODAY, publish_all
    import shutil

    from app import create_app
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copytree(SAMPLE_NOTICES, folder / "notices")
    app = create_app({"TESTING": True, "DATABASE": str(folder / "keksi.db"), "SECRET_KEY": "test-secret",
                      "NOTICES_DIR": str(folder / "notices"), "FIXED_TODAY": TODAY, "RATE_LIMIT": 1_000_000})
    publish_all(app)
    return _everywhere(app)


def _everywhere(app):
    """`target` on `app` (its notices published): a site, a recorded choice, and a client signed in
    with every role; with the routes to send to and the valid choice."""
    add_site(app)
    add_user(app, "everyone@example.fi", "legal", "marketing", "admin")
    client = app.test_client()
    valid = choice(config(client))
    answer = post(client, valid).get_json()
    assert sign_in(client, "everyone@example.fi").status_code == 302
    token = csrf(client, "/admin/users")
    rules = sorted(((rule.rule, method, rule.endpoint) for rule in app.url_map.iter_rules()
                    for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
                    if rule.endpoint != "admin.logout"), key=str)  # signing out would end the run early
    REAL.update(consent_id=answer["consent_id"], banner_hash=valid["banner_hash"])
    return app, client, token, rules, valid


def _send(target, rule: tuple[str, str, str], segment: str | None, query: dict[str, str],
          form: dict[str, str], body) -> int:
    """One request; path arguments get `segment`, or a value that exists when it is None."""
    app, client, token, _rules, _choice = target
    path, method, _endpoint = rule
    url = path
    while "<" in url:  # every path argument, whatever its converter
        start, end = url.index("<"), url.index(">")
        name = url[start + 1:end].split(":")[-1]
        url = url[:start] + _quoted(REAL.get(name, "x") if segment is None else segment) + url[end + 1:]
    url += "?" + _form(query).decode() if query else ""
    headers = {"Origin": ORIGIN}
    if method == "GET":
        response = client.get(url, headers=headers)
    elif body is not None:
        response = client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)
    else:
        response = client.post(url, data=_form({"csrf_token": token, **form}),
                               content_type="application/x-www-form-urlencoded", headers=headers)
    response.close()
    return response.status_code


def test_every_route_answers_the_known_hostile_strings_without_a_500(target):
    app, client, token, rules, valid = target
    for rule in rules:
        for value in NASTY:
            query = dict.fromkeys(QUERY_FIELDS, value)
            form = dict.fromkeys(FORM_FIELDS, value)
            bodies = [None, {value: value}] + [dict(valid, **{field: value}) for field in valid]
            for segment in (None, value):
                for body in bodies if rule[1] == "POST" else [None]:
                    status = _send(target, rule, segment, query, form, body)
                    assert status < 500, (rule, segment, value, body)


@HOSTILE
@given(data=st.data())
def test_any_strings_anywhere_get_an_answer_below_500(target, data):
    valid = target[4]
    rule = data.draw(st.sampled_from(target[3]), label="route")
    segment = data.draw(st.none() | STRINGS, label="path segment (None: one that exists)")
    query = data.draw(st.dictionaries(st.sampled_from(QUERY_FIELDS) | STRINGS, STRINGS, max_size=4), label="query")
    form = data.draw(st.dictionaries(st.sampled_from(FORM_FIELDS) | STRINGS, STRINGS, max_size=6), label="form")
    field = data.draw(st.sampled_from(sorted(valid)), label="field of a valid choice")
    body = data.draw(st.none() | JSON | JSON.map(lambda value: dict(valid, **{field: value})), label="JSON body")
    assert _send(target, rule, segment, query, form, body) < 500


# -- the cases that were 500s, each as the user or attacker sends it ------------------------------


def test_a_nul_in_any_path_query_or_form_is_a_400_on_either_backend(make_app):
    """PostgreSQL's TEXT holds no NUL: a lookup or a write with one failed in the database (a 500
    for a site id in the config's path, or an email signing in). Answered 400 on both backends."""
    everywhere = _everywhere(make_app(RATE_LIMIT=1_000_000))
    app, client, token, rules, valid = everywhere
    nul = "a\x00b"
    for rule in rules:
        for segment in (None, nul):
            bodies = [None, {nul: nul}, dict(valid, page=nul)] if rule[1] == "POST" else [None]
            for body in bodies:
                status = _send(everywhere, rule, segment, dict.fromkeys(QUERY_FIELDS, nul),
                               dict.fromkeys(FORM_FIELDS, nul), body)
                assert status < 500, (rule, segment, body)
    response = client.get("/api/v1/sites/de%00mo/config?lang=en", headers={"Origin": ORIGIN})
    assert response.status_code == 400 and response.get_json()["status"] == 400
    other = app.test_client()
    answer = other.post("/admin/login", data={"csrf_token": csrf(other, "/admin/login?lang=en"),
                                              "email": "everyone\x00@example.fi", "password": PASSWORD})
    assert answer.status_code == 400 and "holds a NUL character (U+0000)" in answer.get_data(as_text=True)
    assert sign_in(other, "everyone@example.fi").status_code == 302, "the real address still signs in"



@pytest.mark.parametrize("field", ["site", "event_id", "page", "lang", "widget_version", "choices"])
def test_a_lone_surrogate_in_any_json_string_is_a_400_naming_the_body(make_app, field):
    app = make_app()
    add_site(app)
    client = app.test_client()
    body = choice(config(client), page="/pricing")
    raw = json.dumps(body)
    if field == "choices":  # in a key, not a value
        raw = raw.replace('"choices": {', '"choices": {"\\ud800": true, ')
    else:
        raw = raw.replace(f'"{field}": "', f'"{field}": "\\ud800')
    assert "\\ud800" in raw
    response = post(client, raw)
    assert response.status_code == 400
    assert response.get_json()["field"] == "body" and "surrogate" in response.get_json()["message"]
    assert count_rows(app) == 0


@pytest.mark.parametrize("query, rows", [
    ("from=0001-01-01&to=9999-12-31", 1), ("from=0001-01-01&to=0001-01-02", 0),
    ("from=9999-12-30&to=9999-12-31", 0), ("from=2026-11-22&to=9999-12-31", 1)])
def test_export_dates_at_the_ends_of_the_calendar_export_what_lies_between(make_app, query, rows):
    app = make_app()
    add_site(app)
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    assert post(client, choice(config(client))).status_code == 201
    sign_in(client, "legal@example.fi")
    response = client.get(f"/admin/sites/demo/export.csv?{query}")
    assert response.status_code == 200
    assert len(response.get_data(as_text=True).splitlines()) == 1 + rows


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_cli_export_refuses_a_moment_outside_the_calendar_by_name(make_app, since):
    app = make_app()
    add_site(app)
    result = app.test_cli_runner().invoke(args=["consents", "export", "--site", "demo", "--since", since])
    assert result.exit_code == 2 and "--since" in result.output and result.exception.__class__ is SystemExit


@pytest.mark.parametrize("target_path", ["/admin/\r\nSet-Cookie: x=1", "/admin/users\n", "/admin\\\\evil.example",
                                         "//evil.example/admin", "https://evil.example/admin"])
def test_sign_in_with_a_hostile_next_lands_on_the_dashboard(make_app, target_path):
    app = make_app()
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    client.get("/admin/login?lang=en")
    token = csrf(client, "/admin/login")
    response = client.post(f"/admin/login?next={_quoted(target_path)}",
                           data={"csrf_token": token, "email": "legal@example.fi", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"


def test_sign_in_keeps_a_plain_next_inside_the_admin(make_app):
    app = make_app()
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    assert client.get("/admin/audit").headers["Location"] == "/admin/login?next=/admin/audit"
    token = csrf(client, "/admin/login")
    response = client.post("/admin/login?next=/admin/audit",
                           data={"csrf_token": token, "email": "legal@example.fi", "password": PASSWORD})
    assert response.headers["Location"] == "/admin/audit"
