"""Bad input at scale: property-based tests of the consent API and fuzzing from its OpenAPI document."""

from __future__ import annotations

import json

import jsonschema
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keksi.openapi import OPENAPI

from .ledger import ORIGIN, add_site, choice, config, count_rows

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=30,
)
FIELDS = ["site", "event_id", "subject_id", "action", "choices", "notice_version", "cookie_notice_version",
          "banner_hash", "lang", "ui_surface", "page", "widget_version", "gpc", "unknown"]
ALLOWED = {201, 400, 403, 404, 409, 413, 429}
REQUEST_SCHEMA = {"$ref": "#/components/schemas/ConsentRequest", "components": OPENAPI["components"]}
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def ledger(make_app):
    app = make_app(RATE_LIMIT=1_000_000)
    add_site(app)
    client = app.test_client()
    return app, client, config(client)


def _post(client, data, content_type="application/json", headers=None):
    return client.post("/api/v1/consents", data=data, content_type=content_type,
                       headers={"Origin": ORIGIN, **(headers or {})})


@FUZZ
@given(body=JSON)
def test_any_json_value_gets_a_4xx_and_writes_nothing(ledger, body):
    app, client, _cfg = ledger
    before = count_rows(app)
    response = _post(client, json.dumps(body))
    assert response.status_code in ALLOWED - {201}
    assert response.get_json()["message"]
    assert count_rows(app) == before


@FUZZ
@given(field=st.sampled_from(FIELDS), value=JSON, content_type=st.sampled_from(
    ["application/json", "text/plain;charset=UTF-8", "text/plain", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "", "application/json; charset=latin-1"]))
def test_a_valid_choice_with_one_field_replaced_is_either_recorded_or_refused(ledger, field, value,
                                                                               content_type):
    app, client, cfg = ledger
    body = choice(cfg)
    body[field] = value
    before = count_rows(app)
    response = _post(client, json.dumps(body), content_type=content_type)
    assert response.status_code in ALLOWED, response.get_data(as_text=True)
    assert count_rows(app) == before + (1 if response.status_code == 201 else 0)
    if response.status_code == 201:  # only what the published schema allows is ever recorded
        jsonschema.validate(body, REQUEST_SCHEMA, format_checker=jsonschema.FormatChecker())


@FUZZ
@given(raw=st.binary(max_size=5000), headers=st.dictionaries(
    st.sampled_from(["Sec-GPC", "User-Agent", "X-Forwarded-For", "Content-Encoding", "Accept-Language"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60), max_size=3))
def test_any_bytes_and_headers_never_cause_a_5xx(ledger, raw, headers):
    app, client, _cfg = ledger
    before = count_rows(app)
    response = _post(client, raw, content_type="text/plain", headers=headers)
    assert response.status_code in ALLOWED - {201}
    assert count_rows(app) == before


@pytest.fixture
def api_schema(make_app):
    app = make_app(RATE_LIMIT=1_000_000)
    add_site(app)
    config(app.test_client())  # serve a banner, so that valid hashes exist
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def test_the_api_keeps_its_openapi_promises(api_schema):
    """Generated requests get documented statuses and bodies that match the schemas; never a 5xx.

    Driven by hand rather than through schemathesis' pytest plugin, which does not run
    under pytest 9.
    """
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 6
    for operation in operations:

        @settings(max_examples=60, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            # Schema-valid is not enough to be accepted here: a random site, banner hash or
            # notice version is refused with 400/404 by design, so that one check is off.
            case.call_and_validate(headers={"Origin": ORIGIN}, excluded_checks=[positive_data_acceptance])

        run()
