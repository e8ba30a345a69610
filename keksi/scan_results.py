"""A finished scan's findings as the admin shows them: grouped by level, compared with the site's
previous scan (new and gone), and an undeclared cookie added to the declaration in one step from
the service catalogue (service, category, purpose in every language, lifetime); the site form adds a
whole catalogue service the same way (`add_service`)."""

from __future__ import annotations

import copy
from typing import Any

from . import catalogue, scan, sites

def key(finding: dict[str, Any]) -> tuple:
    """What makes two scans' findings the same finding: kind, page, visitor and item."""
    item = finding["item"]
    return (finding["kind"], finding["page"], finding["visitor"], item["type"],
            item.get("name") or item.get("host"))


def item_name(finding: dict[str, Any]) -> str:
    item = finding["item"]
    return item.get("name") or item.get("host") or " ".join(item.get("not_scanned", ()))


def compare(findings: list[dict[str, Any]],
            previous: list[dict[str, Any]] | None) -> tuple[set[tuple], list[dict[str, Any]]]:
    """(keys of the findings that are new since the `previous` scan's, its findings now gone).
    Without a previous scan nothing is new or gone: there is nothing to compare with."""
    if previous is None:
        return set(), []
    before = {key(f): f for f in previous}
    now = {key(f) for f in findings}
    return now - set(before), [f for k, f in before.items() if k not in now]


def by_level(findings: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The findings grouped by level, worst first, each group in kind and page order."""
    groups = []
    for level in reversed(scan.LEVELS):
        found = [f for f in findings if f["level"] == level]
        if found:
            groups.append((level, sorted(found, key=lambda f: (f["kind"], f["page"] or "", item_name(f)))))
    return groups


def worst_first(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings in the order the admin lists them: by level, worst first, then kind and page."""
    return [f for _, group in by_level(findings) for f in group]


def declarable(finding: dict[str, Any]) -> bool:
    """Whether the admin can add this finding's cookie to the declaration in one step."""
    return (finding["kind"] == "undeclared" and finding["item"]["type"] == "cookie"
            and catalogue.service(finding.get("service_id") or "") is not None)


def declared_in(site: dict[str, Any], name: str) -> tuple[str, dict[str, Any]] | None:
    """(category id, service) of the site's declaration that declares a cookie seen as `name`, if any."""
    for category in site["categories"]:
        for service in category["services"]:
            if any(cookie.get("storage") != "local" and catalogue.name_matches(name, cookie["name"])
                   for cookie in service["cookies"]):
                return category["id"], service
    return None


def _catalogue_cookie(entry: dict[str, Any], name: str) -> str | None:
    """The catalogue's name or prefix (ending in *) that a cookie seen as `name` is."""
    names = [c["name"] for c in entry["cookies"] if catalogue.name_matches(name, c["name"])]
    return max(names, key=lambda n: (not n.endswith("*"), len(n)), default=None)


def declare(site: dict[str, Any], finding: dict[str, Any], own_provider: str) -> dict[str, Any] | None:
    """The site's definition with the finding's cookie declared as the catalogue describes it: under
    the site's own entry for that service if it has one, else as the service in the catalogue's
    category (added if the site lacks it). None when the cookie is declared already."""
    entry = catalogue.service(finding["service_id"])
    pattern = _catalogue_cookie(entry, finding["item"]["name"]) if entry else None
    if pattern is None:
        raise LookupError(finding["item"]["name"])
    if any(pattern in names for names in sites.cookie_patterns(site).values()):
        return None
    shaped = catalogue.site_service(entry["id"], own_provider)
    cookie = next(c for c in shaped["cookies"] if c["name"] == pattern)
    definition = copy.deepcopy(site)
    declared = declared_service(definition, entry["id"])
    if declared is not None:
        declared["cookies"].append(cookie)
        return definition
    return _with_service(definition, entry["category"], dict(shaped, cookies=[cookie]))


def declared_service(site: dict[str, Any], service_id: str) -> dict[str, Any] | None:
    """The site's service that is the catalogue's `service_id` (linked to it, or named as the
    catalogue names it), if the site declares it."""
    entry = catalogue.service(service_id)
    for category in site["categories"]:
        for service in category["services"]:
            if service.get("catalogue") == service_id or (entry and service["name"] == entry["name"]):
                return service
    return None


def add_service(site: dict[str, Any], service_id: str, category_id: str | None,
                own_provider: str) -> dict[str, Any] | None:
    """The site's definition with the catalogue's service and all its cookies declared in
    `category_id` (else the category the catalogue suggests, added if the site lacks it).
    None when the site declares that service already."""
    if declared_service(site, service_id) is not None:
        return None
    shaped = catalogue.site_service(service_id, own_provider)
    category_id = category_id or catalogue.service(service_id)["category"]
    return _with_service(copy.deepcopy(site), category_id, shaped)


def _with_service(definition: dict[str, Any], category_id: str, service: dict[str, Any]) -> dict[str, Any]:
    """`definition` (changed in place) with `service` at the end of the category `category_id`."""
    category = next((c for c in definition["categories"] if c["id"] == category_id), None)
    if category is None:
        category = {"id": category_id, "services": []}
        definition["categories"].append(category)
    category["services"].append(service)
    return definition

