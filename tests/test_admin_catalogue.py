"""The site form's "Add a service from the catalogue" through the test client: the service lands in the
stored declaration with its cookies and catalogue link, the widget's configuration follows, a service
declared already is refused, and hostile posts get a clear 4xx."""

from __future__ import annotations

import html
from typing import Any

import pytest

from .conftest import BOTH, from_store, signed_in
from .ledger import add_site, config
from .test_admin import csrf

BACKENDS = BOTH  # every test that builds an app runs on SQLite and on PostgreSQL

EDIT = "/admin/sites/demo/edit"
ADD = "/admin/sites/demo/catalogue"


@pytest.fixture
def marketing(app) -> Any:
    add_site(app)
    return signed_in(app, "m@example.fi", "marketing")


def add(client: Any, service: str, category: str = "", **extra: Any) -> Any:
    data = {"csrf_token": csrf(client, EDIT), "catalogue-service": service, "catalogue-category": category}
    return client.post(ADD, data=dict(data, **extra), follow_redirects=True)


def services_in(app: Any, category_id: str) -> dict[str, dict[str, Any]]:
    site = from_store(app, "site", "demo")
    category = next(c for c in site["categories"] if c["id"] == category_id)
    return {s["name"]: s for s in category["services"]}


def test_the_edit_form_offers_the_catalogue_grouped_by_category(marketing):
    page = marketing.get(EDIT).get_data(as_text=True)
    assert "Add a service from the catalogue" in page
    analytics = page[page.index('<optgroup label="Analytics">'):]
    assert analytics.index("Microsoft Clarity") < analytics.index("</optgroup>")
    assert 'action="/admin/sites/demo/catalogue"' in page


def test_clarity_added_from_the_catalogue_is_declared_and_signalled(app, marketing, client):
    answer = add(marketing, "microsoft-clarity")
    assert answer.status_code == 200
    shown = html.unescape(answer.get_data(as_text=True))
    assert "Microsoft Clarity was added to Analytics with its cookies." in shown
    clarity = services_in(app, "analytics")["Microsoft Clarity"]
    assert clarity["catalogue"] == "microsoft-clarity"
    assert clarity["provider"] == "Microsoft Ireland Operations Ltd"
    assert {c["name"]: c["duration"] for c in clarity["cookies"]} == {"_clck": "P1Y", "_clsk": "P1D",
                                                                     "CLID": "P1Y", "MUID": "P1Y"}
    assert clarity["cookies"][0]["purpose"]["sv"].startswith("Känner igen webbläsaren")
    widget = config(client, lang="sv")
    analytics = next(c for c in widget["categories"] if c["id"] == "analytics")
    assert {"_clck", "_clsk", "CLID", "MUID"} <= {c["name"] for s in analytics["services"] for c in s["cookies"]}
    assert "clarity=analytics" in widget["signals"]
    audit = from_store(app, "audit_log", 50)
    assert any(e["action"] == "site.catalogue" and e["detail"] == {"service": "microsoft-clarity",
                                                                     "category": "analytics"} for e in audit)


def test_the_admin_may_pick_another_category(app, marketing, client):
    add(marketing, "microsoft-clarity", "marketing")
    assert "Microsoft Clarity" in services_in(app, "marketing")
    assert "Microsoft Clarity" not in services_in(app, "analytics")
    assert "clarity=marketing" in config(client)["signals"]


def test_a_service_declared_already_is_refused_and_nothing_changes(app, marketing):
    add(marketing, "microsoft-clarity")
    before = from_store(app, "site", "demo")
    answer = add(marketing, "microsoft-clarity", "marketing")
    shown = html.unescape(answer.get_data(as_text=True))
    assert "Microsoft Clarity is declared already, as Microsoft Clarity." in shown
    assert from_store(app, "site", "demo") == before


def test_the_refusal_speaks_finnish(app):
    add_site(app)
    client = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    add(client, "microsoft-clarity")
    answer = add(client, "microsoft-clarity")
    assert "Microsoft Clarity on jo evästeilmoituksessa" in html.unescape(answer.get_data(as_text=True))


@pytest.mark.parametrize("service, category", [("no-such-service", ""), ("x" * 100_000, ""),
                                               ("microsoft-clarity", "no-such-category"), ("", "")])
def test_hostile_posts_get_a_clear_4xx_and_change_nothing(app, marketing, service, category):
    before = from_store(app, "site", "demo")
    answer = add(marketing, service, category)
    assert 400 <= answer.status_code < 500
    assert from_store(app, "site", "demo") == before


def test_without_a_csrf_token_or_the_role_nothing_is_added(app, marketing):
    answer = marketing.post(ADD, data={"catalogue-service": "hotjar"})
    assert answer.status_code == 400
    legal = signed_in(app, "l@example.fi", "legal")
    forbidden = legal.post(ADD, data={"csrf_token": csrf(legal, "/admin/"), "catalogue-service": "hotjar"})
    assert forbidden.status_code == 403
    assert marketing.post("/admin/sites/nosuch/catalogue",
                          data={"csrf_token": csrf(marketing, EDIT), "catalogue-service": "hotjar"}).status_code == 404
    assert "Hotjar" not in services_in(app, "analytics")


def test_a_declaration_that_cannot_be_saved_says_why_in_finnish(app):
    """The site links a cookie notice that was never published: adding a service saves nothing and
    the 409 names the problem in the admin's language, not in the store's English."""
    add_site(app, notices={"privacy": "privacy", "cookies": "never-published"})
    client = signed_in(app, "fi@example.fi", "marketing", lang="fi")
    before = from_store(app, "site", "demo")
    answer = add(client, "microsoft-clarity")
    shown = html.unescape(answer.get_data(as_text=True))
    assert answer.status_code == 409
    assert ("Evästeilmoitusta ei voitu tallentaa: never-published ei ole julkaistu seloste. "
            "Valitse julkaistu seloste.") in shown
    assert "is not a published notice" not in shown and "must be" not in shown
    assert from_store(app, "site", "demo") == before
