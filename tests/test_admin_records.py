"""Raw consent records are for legal and admins: the export, and a visitor's erasure in the admin."""

from __future__ import annotations

import json

import pytest

from .conftest import BOTH, add_staff, csrf, from_store, sign_in
from .ledger import add_site, choice, config, count_rows, post


BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    app = make_app()
    add_site(app)
    return add_staff(app)


def stored(app, consent_id: str) -> dict | None:
    return from_store(app, "consent", consent_id)


# -- raw records are legal's ------------------------------------------------------------


def test_marketing_keeps_the_figures_but_not_the_raw_records(app, client):
    post(client, choice(config(client)))
    sign_in(client, "marketing@example.fi")
    assert client.get("/admin/sites/demo/export.csv").status_code == 403
    assert client.get("/admin/records/").status_code == 403
    figures = client.get("/admin/sites/demo/figures")
    assert figures.status_code == 200 and "export.csv" not in figures.get_data(as_text=True)
    assert client.get("/admin/sites/demo/figures.csv").status_code == 200


@pytest.mark.parametrize("email", ["legal@example.fi", "admin@example.fi"])
def test_legal_and_admins_export_the_raw_records(app, client, email):
    answer = post(client, choice(config(client))).get_json()
    sign_in(client, email)
    page = client.get("/admin/records/").get_data(as_text=True)
    assert 'action="/admin/sites/demo/export.csv"' in page
    export = client.get("/admin/sites/demo/export.csv")
    assert export.status_code == 200 and answer["consent_id"] in export.get_data(as_text=True)


# -- erasure in the admin --------------------------------------------------------------------


def erase_form(client, kind: str, given: str, step: str = "find", **extra):
    data = {"csrf_token": csrf(client, "/admin/records/erase"), "kind": kind, "id": given, "step": step}
    data.update(extra)
    return client.post("/admin/records/erase", data=data)


def test_legal_erases_a_visitor_by_consent_id_after_confirming(app, client):
    cfg = config(client)
    first = post(client, choice(cfg)).get_json()
    later = post(client, choice(cfg, "withdraw", subject_id=first["subject_id"])).get_json()
    other = post(client, choice(cfg)).get_json()
    sign_in(client, "legal@example.fi")
    found = erase_form(client, "consent", later["consent_id"].upper())
    page = found.get_data(as_text=True)
    assert found.status_code == 200 and "2 records of this visitor, on demo" in page
    unconfirmed = erase_form(client, "consent", later["consent_id"], "erase",
                             found=f"consent:{later['consent_id']}")
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.get_data(as_text=True)
    assert count_rows(app) == 3
    switched = erase_form(client, "consent", other["consent_id"], "erase", confirm="y",
                          found=f"consent:{later['consent_id']}")
    assert switched.status_code == 200 and count_rows(app) == 3, "an id changed after the count is shown anew"
    done = erase_form(client, "consent", later["consent_id"], "erase", confirm="y",
                      found=f"consent:{later['consent_id']}")
    assert done.status_code == 302
    erased = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "2 records of this visitor were erased" in erased
    assert "Copies stay in database backups" in erased and "runs flask db compact" in erased, "what remains"
    assert stored(app, first["consent_id"]) is None and stored(app, other["consent_id"]) is not None
    entry = from_store(app, "audit_log", 1)[0]
    assert entry["action"] == "consents.erase" and entry["actor"] == "legal@example.fi"
    assert entry["detail"] == {"rows": 2}
    assert first["subject_id"] not in json.dumps(entry) and later["consent_id"] not in json.dumps(entry)
    assert app.test_cli_runner().invoke(args=["consents", "verify"]).exit_code == 0


def test_erasure_by_subject_id_and_ids_that_find_nothing(app, client):
    mine = post(client, choice(config(client))).get_json()
    sign_in(client, "admin@example.fi")
    assert erase_form(client, "subject", "0" * 32).status_code == 404
    for bad in ("not an id", "z" * 32, "a" * 65, "ä" * 32, "a" * 100_000):
        response = erase_form(client, "subject", bad)
        assert response.status_code in (400, 413), bad
    token = csrf(client, "/admin/records/erase")
    raw = client.post("/admin/records/erase", content_type="application/x-www-form-urlencoded",
                      data=f"csrf_token={token}&kind=subject&id=%ED%A0%80%FF&step=find".encode())
    assert raw.status_code == 400, "bytes that are not UTF-8"
    assert erase_form(client, "neither", mine["subject_id"]).status_code == 400
    done = erase_form(client, "subject", mine["subject_id"], "erase", confirm="y",
                      found=f"subject:{mine['subject_id']}")
    assert done.status_code == 302 and count_rows(app) == 0
    again = erase_form(client, "subject", mine["subject_id"])
    assert again.status_code == 404 and "erased or purged already" in again.get_data(as_text=True)


def test_marketing_cannot_erase(app, client):
    mine = post(client, choice(config(client))).get_json()
    sign_in(client, "marketing@example.fi")
    response = client.post("/admin/records/erase", data={
        "csrf_token": csrf(client, "/admin/"), "kind": "subject", "id": mine["subject_id"],
        "step": "erase", "confirm": "y", "found": f"subject:{mine['subject_id']}"})
    assert response.status_code == 403 and count_rows(app) == 1


def test_the_export_of_an_unknown_site_is_404_for_legal(app, client):
    sign_in(client, "legal@example.fi")
    assert client.get("/admin/sites/nope/export.csv").status_code == 404


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site"])
def test_another_site_cannot_make_legals_browser_export(app, client, fetch_site):
    """Issue 10.6: a link or form on another site would send legal's session cookie (SameSite=Lax lets a
    top-level GET through), download every record to their machine and note an export they never made."""
    post(client, choice(config(client)))
    sign_in(client, "legal@example.fi")
    before = len(from_store(app, "audit_log", 100))
    forged = client.get("/admin/sites/demo/export.csv", headers={"Sec-Fetch-Site": fetch_site})
    assert forged.status_code == 403 and "text/csv" not in forged.content_type
    assert "Exports start only from this admin" in forged.get_data(as_text=True)
    assert len(from_store(app, "audit_log", 100)) == before, "no export is noted"
    for own in ("same-origin", "none"):  # the admin's own form or link; a bookmark or typed address
        assert client.get("/admin/sites/demo/export.csv", headers={"Sec-Fetch-Site": own}).status_code == 200
