"""Marketing's site audits under /admin/sites/<site>/scans: start a scan, follow its progress, read
its findings against the previous scan, declare an undeclared cookie in one step, export findings.

A scan is a job in the store: this view only queues it; `flask scans work` runs it in a process of
its own (never in a web worker). Every view needs the marketing role (admins pass too).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError

from .. import scan_results
from ..forms import ScanForm
from ..i18n import format_moment, spreadsheet_separator
from ..messages import message, page_problem, scan_failure
from ..store import get_store
from .admin import _load_user, form_expired, role_required
from .admin_audit import spreadsheet
from .admin_sites import _site_or_404, category_name, save_declaration, shown_text

bp = Blueprint("admin_scans", __name__, url_prefix="/admin/sites")
bp.register_error_handler(CSRFError, form_expired)
bp.before_request(_load_user)

REFRESH_SECONDS = 5  # how often a scan's page reloads itself while the scan waits or runs
HISTORY = 20  # scans shown on a site's audit page

LEVELS = {"error": _l("Errors"), "warning": _l("Warnings"), "info": _l("Notes")}
ITEMS = {"cookie": _l("Cookie"), "localStorage": "localStorage", "sessionStorage": "sessionStorage",
         "request": _l("Request to"), "page": _l("Page"), "scan": _l("Not scanned")}
STATES = {"queued": _l("Waiting for the scan worker"), "running": _l("Running"), "done": _l("Done"),
          "failed": _l("Failed")}


@bp.after_request
def _no_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _scan_or_404(site: dict[str, Any], scan_id: int) -> dict[str, Any]:
    found = get_store().scan(scan_id)
    if found is None or found["site"] != site["id"]:
        abort(404, _("There is no scan %(id)s of this site.", id=scan_id))
    return found


def moment(value: str | None) -> str:
    return format_moment(datetime.fromisoformat(value)) if value else ""


def _counts(findings: list[dict[str, Any]] | None) -> dict[str, int]:
    findings = findings or []
    return {level: sum(f["level"] == level for f in findings) for level in LEVELS}


def _history(site_id: str) -> list[dict[str, Any]]:
    """The site's latest scans, each with its counts by level and what changed since the one before."""
    scans = get_store().site_scans(site_id, HISTORY + 1)
    done = [s for s in scans if s["state"] == "done"]
    for entry in scans[:HISTORY]:
        entry["counts"] = _counts(entry["findings"])
        if entry["state"] == "done":
            previous = next((s for s in done if s["id"] < entry["id"]), None)
            new, gone = scan_results.compare(entry["findings"], previous and previous["findings"])
            entry["new"], entry["gone"], entry["compared"] = len(new), len(gone), previous is not None
    return scans[:HISTORY]


@bp.route("/<site_id>/scans", methods=["GET", "POST"])
@role_required("marketing")
def scans(site_id: str):
    """The site's audit: a form to start a scan, and its scans, newest first."""
    site = _site_or_404(site_id)
    form = ScanForm()
    if form.validate_on_submit():
        options = {"urls": (form.urls.data or "").split(), "pages": form.pages.data}
        scan_id = get_store().add_scan(site["id"], g.user["email"], options)
        flash(_("The scan was started. This page shows its progress."))
        return redirect(url_for(".scan_page", site_id=site["id"], scan_id=scan_id))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/scans.html", site=site, form=form, history=_history(site["id"]),
                           states=STATES, moment=moment), status


@bp.get("/<site_id>/scans/<int:scan_id>")
@role_required("marketing")
def scan_page(site_id: str, scan_id: int):
    """One scan: its progress while it waits or runs (the page reloads itself), then its findings."""
    site = _site_or_404(site_id)
    found = _scan_or_404(site, scan_id)
    context: dict[str, Any] = {"site": site, "scan": found, "states": STATES, "moment": moment}
    if found["state"] == "done":
        previous = get_store().previous_scan(site["id"], scan_id)
        new, gone = scan_results.compare(found["findings"], previous and previous["findings"])
        numbered = [dict(f, index=i) for i, f in enumerate(found["findings"])]  # for "declare"
        context.update(previous=previous, new=new, gone=gone, groups=scan_results.by_level(numbered),
                       key=scan_results.key, declarable=scan_results.declarable, item_name=scan_results.item_name,
                       levels=LEVELS, words=message, page_problem=page_problem, items=ITEMS,
                       declared_now=_declared_now(site),
                       category_name=lambda c: category_name(site, c) if c else "")
    elif found["state"] == "failed":
        context["failure"] = scan_failure(found["error"])
    response = Response(render_template("admin/scan.html", **context))
    if found["state"] in ("queued", "running"):
        response.headers["Refresh"] = str(REFRESH_SECONDS)  # works without JavaScript
    return response


@bp.post("/<site_id>/scans/<int:scan_id>/declare/<int:finding>")
@role_required("marketing")
def declare(site_id: str, scan_id: int, finding: int):
    """Add an undeclared cookie to the site's declaration as the catalogue describes it (audited)."""
    site = _site_or_404(site_id)
    found = _scan_or_404(site, scan_id)
    findings = found["findings"] or []
    if not 0 <= finding < len(findings) or not scan_results.declarable(findings[finding]):
        abort(400, _("That finding cannot be added to the declaration in one step. Edit the site instead."))
    chosen = findings[finding]
    definition = scan_results.declare(site, chosen, current_app.config["ORGANIZATION"])
    name = scan_results.item_name(chosen)
    if definition is None:
        flash(_("The cookie %(name)s is declared already.", name=name))
        return redirect(url_for(".scan_page", site_id=site["id"], scan_id=scan_id))
    category_id, service = scan_results.declared_in(definition, name)  # declare() just put it there
    save_declaration(site, definition, "scan.declare",
                     {"scan": scan_id, "cookie": name, "service": chosen["service"], "category": category_id})
    flash(_("The cookie %(name)s was added to the declaration as part of %(service)s (%(category)s). "
            "Visitors are asked again.", name=name, service=shown_text(service["name"]),
            category=category_name(definition, category_id))
          + " " + _("The cookie notice does not list it until legal drafts and publishes a new version of it."))
    return redirect(url_for(".scan_page", site_id=site["id"], scan_id=scan_id))


def _declared_now(site: dict[str, Any]) -> Callable[[dict[str, Any]], str | None]:
    """For the findings: where the site's declaration now declares an undeclared cookie, in words."""
    def where(finding: dict[str, Any]) -> str | None:
        if finding["kind"] != "undeclared" or finding["item"]["type"] != "cookie":
            return None
        found = scan_results.declared_in(site, scan_results.item_name(finding))
        return found and f"{shown_text(found[1]['name'])} ({category_name(site, found[0])})"
    return where


def _finished(site_id: str, scan_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    site = _site_or_404(site_id)
    found = _scan_or_404(site, scan_id)
    if found["state"] != "done":
        abort(409, _("This scan has no findings yet."))
    return site, found


def _download(body: str, mimetype: str, name: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.get("/<site_id>/scans/<int:scan_id>/findings.json")
@role_required("marketing")
def findings_json(site_id: str, scan_id: int):
    """The scan's result exactly as `flask sites scan --format json` prints it."""
    site, found = _finished(site_id, scan_id)
    return _download(json.dumps(found["result"], ensure_ascii=False, indent=2), "application/json",
                     f"{site['id']}-scan-{scan_id}.json")


@bp.get("/<site_id>/scans/<int:scan_id>/findings.csv")
@role_required("marketing")
def findings_csv(site_id: str, scan_id: int):
    """The findings for a spreadsheet, worst first, each marked new when the previous scan lacked it:
    in the admin's language and with its spreadsheets' separator (the JSON is for tools)."""
    site, found = _finished(site_id, scan_id)
    previous = get_store().previous_scan(site["id"], scan_id)
    new, _gone = scan_results.compare(found["findings"], previous and previous["findings"])
    rows = (_csv_row(site, f, scan_results.key(f) in new) for f in scan_results.worst_first(found["findings"]))
    response = _download(spreadsheet(_csv_header(), rows, spreadsheet_separator()), "text/csv",
                         f"{site['id']}-scan-{scan_id}.csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    return response


def _csv_header() -> list[str]:
    return [_("Level"), _("Finding"), _("Since the previous scan"), _("Page"), _("Visitor"), _("Item type"),
            _("Item"), _("Domain"), _("Set by"), _("Service"), _("Category"), _("Catalogue id"), _("Removed"),
            _("HTTP status"), _("Why the page did not load")]


def _csv_row(site: dict[str, Any], f: dict[str, Any], new: bool) -> list[str]:
    """One finding as the CSV's row, in the admin's words (_csv_header names the columns)."""
    item = f["item"]
    return [message("level", f["level"]), message("finding", f["kind"]), _("New") if new else "", f["page"] or "",
            message("visitor", f["visitor"]) if f["visitor"] else "", str(ITEMS[item["type"]]),
            scan_results.item_name(f), item.get("domain") or "", f["source"] or "", f["service"] or "",
            category_name(site, f["category"]) if f["category"] else "", f["service_id"] or "", *_states(item)]


def _states(item: dict[str, Any]) -> list[str]:
    """The CSV's last columns: a cookie set and deleted again, a page's HTTP status, why it did not load."""
    return [_("Removed again") if item.get("removed") else "", str(item.get("status") or ""),
            page_problem(item) if item["type"] == "page" and item.get("error") else ""]

