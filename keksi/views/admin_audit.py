"""The audit log under /admin/audit: who did what and when, in words, filtered and paged,
and exported as CSV for an auditor.

The log stores action codes and JSON details; this module turns them into the admin's
language (an action name, each value in words) where they are shown. The CSV keeps the
codes and the JSON as stored, beside the words, so an auditor can check them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from typing import Any, Iterable

from flask import Blueprint, Response, abort, current_app, g, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError

from ..forms import ActionForm, AuditFilterForm
from ..clock import day_start, parse_utc, today
from ..i18n import format_date, format_moment, language_name
from ..store import get_store
from .admin import _actor, _load_user, _no_cache, form_expired, role_required
from .admin_notices import title_of

bp = Blueprint("admin_audit", __name__, url_prefix="/admin/audit")
bp.before_request(_load_user)
bp.after_request(_no_cache)
bp.register_error_handler(CSRFError, form_expired)

PER_PAGE = 50
MAX_FILTER = 254  # an email address at most

ACTIONS = {
    "notice.publish": _l("Published a notice version"),
    "notice.withdraw": _l("Withdrew an upcoming notice version"),
    "site.add": _l("Added a site"),
    "site.edit": _l("Changed a site"),
    "site.remove": _l("Removed a site"),
    "user.add": _l("Added a user"),
    "user.password": _l("Set a password"),
    "user.roles": _l("Changed a user's roles"),
    "user.disable": _l("Disabled a user"),
    "user.enable": _l("Enabled a user"),
    "user.remove": _l("Removed a user"),
    "user.link": _l("Made a one-time password link"),
    "user.sessions_ended": _l("Signed out everywhere else"),
    "consents.export": _l("Exported consent records"),
    "consents.erase": _l("Erased a visitor's consent records"),
    "consents.purge": _l("Deleted expired consent records"),
    "audit.export": _l("Exported the audit log"),
    "scan.start": _l("Started a site audit"),
    "scan.declare": _l("Declared a cookie a site audit found"),
}

DETAILS = {
    "sha256": _l("SHA-256"),
    "material": _l("Material change"),
    "reason": _l("Reason"),
    "roles": _l("Roles"),
    "rows": _l("Records"),
    "from": _l("From"),
    "to": _l("To"),
    "actor": _l("Who"),
    "action": _l("What"),
    "since": _l("From"),
    "until": _l("To"),
    "before": _l("Before"),
    "after": _l("After"),
    "sessions": _l("Sessions ended"),
    "scan": _l("Scan"),
    "urls": _l("Pages to scan"),
    "pages": _l("Pages at most"),
    "cookie": _l("Cookie"),
    "service": _l("Service"),
    "category": _l("Category"),
}

ROLES = {"legal": _l("legal"), "marketing": _l("marketing"), "admin": _l("admin")}

_NOTICE_SUBJECT = re.compile(r"^(?P<slug>[a-z0-9-]+)/(?P<version>\d{4}-\d{2}-\d{2})(?:\.(?P<lang>[a-z]{2,3}))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def action_name(code: str) -> str:
    """An action in the admin's language; a code this version does not know, as stored."""
    return str(ACTIONS[code]) if code in ACTIONS else code


def _value(key: str, value: Any) -> str:
    """One detail's value in words: yes/no, lists joined, dates as the language writes them."""
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if value is None:
        return _("none")
    if isinstance(value, list):
        # Lists in the log are lists of roles (a user's, or before and after a change).
        return ", ".join(str(ROLES[v]) if v in ROLES else _value(key, v) for v in value) or _("none")
    if isinstance(value, dict):
        return "; ".join(f"{_key(k)}: {_value(k, v)}" for k, v in sorted(value.items()))
    if isinstance(value, str) and _DATE.match(value):
        try:
            return format_date(value)
        except ValueError:  # what someone typed into a filter, shaped like a date but none (2025-02-30)
            return value
    if key == "action" and isinstance(value, str):
        return action_name(value)
    return str(value)


def _key(key: str) -> str:
    if key in DETAILS:
        return str(DETAILS[key])
    if len(key) <= 3 and key.isalpha():  # a language code: the SHA-256 of that language
        return _("SHA-256 (%(language)s)", language=language_name(key))
    return key


def details(detail: Any) -> list[tuple[str, str, bool]]:
    """(label, value in words, whether it is a hash shown as code) for each detail."""
    if detail is None:
        return []
    if not isinstance(detail, dict):
        return [("", _value("", detail), False)]
    rows = []
    for key, value in sorted(detail.items(), key=lambda item: (item[0] == "reason", item[0])):
        is_hash = isinstance(value, str) and bool(re.fullmatch(r"[0-9a-f]{64}", value))
        rows.append((_key(key), _value(key, value), is_hash))
    return rows


def _titles() -> dict[tuple[str, str, str], str]:
    """Every published version's title by (slug, version, language): one query per page."""
    if "audit_titles" not in g:
        g.audit_titles = {(v["slug"], v["version"], v["lang"]): v["title"]
                          for v in get_store().notice_versions()}
    return g.audit_titles


def subject(entry: dict[str, Any]) -> str:
    """What an entry is about, in words: a notice version by its title, date and language
    (the title in that language; a withdrawn version, no longer stored, by its slug)."""
    match = _NOTICE_SUBJECT.match(entry["subject"]) if entry["action"].startswith("notice.") else None
    if not match:
        return entry["subject"]
    slug, version, lang = match["slug"], match["version"], match["lang"]
    title = _titles().get((slug, version, lang)) if lang else title_of(slug, version)
    words = f"{title or slug}, {format_date(version)}"
    return f"{words} ({language_name(lang)})" if lang else words


def when(at: str) -> str:
    """A stored UTC time in KEKSI_TIMEZONE as the admin's language writes it, with its offset."""
    return format_moment(parse_utc(at))


# -- filters and pages ---------------------------------------------------------------


def _filters(form: AuditFilterForm) -> dict[str, str | None]:
    """The store's filters from a valid form; an invalid date is left out (the form says why)."""
    since: date | None = form.since.data if not form.since.errors else None
    until: date | None = form.until.data if not form.until.errors else None
    zone = current_app.config["TIMEZONE"]
    return {
        "actor": form.actor.data or None,
        "action": form.action.data or None,
        # Days in KEKSI_TIMEZONE, as the times are shown; the last day counts whole.
        "since": day_start(since, zone) if since else None,
        "until": day_start(until, zone, next_day=True) if until else None,
    }


def _filter_form(source: Any) -> tuple[AuditFilterForm, bool]:
    """The filter form with every actor and action in the log as choices, and whether it is valid."""
    actors, actions = get_store().audit_names()
    form = AuditFilterForm(source)
    form.actor.choices = [("", _("Anyone"))] + [(a, a) for a in actors]
    form.action.choices = [("", _("Any action"))] + sorted(
        ((a, action_name(a)) for a in actions), key=lambda choice: choice[1].casefold())
    for name in ("actor", "action"):  # no stored name is this long or holds a NUL (PostgreSQL refuses one)
        if len(form[name].data or "") > MAX_FILTER or "\x00" in (form[name].data or ""):
            form[name].data = ""
    valid = form.validate()
    if form.since.data and form.until.data and form.until.data < form.since.data:
        form.until.errors = [_("The end date is before the start date.")]
        valid = False
    return form, valid


def _page_number(count: int) -> tuple[int, int]:
    pages = max(1, -(-count // PER_PAGE))
    try:
        number = int(request.args.get("page", "1")[:9])
    except ValueError:
        number = 1
    return min(max(number, 1), pages), pages


@bp.get("")
@role_required("legal")
def audit():
    """Who published or withdrew what, and when, with each version's SHA-256; filtered and paged."""
    form, valid = _filter_form(request.args)
    filters = _filters(form)
    store = get_store()
    count = store.count_audit(**filters)
    number, pages = _page_number(count)
    entries = store.audit_log(limit=PER_PAGE, offset=(number - 1) * PER_PAGE, **filters)
    query = {k: v for k, v in request.args.items() if k in ("actor", "action", "since", "until") and v}
    return render_template(
        "admin/audit.html", entries=entries, form=form, count=count, page=number, pages=pages,
        query=query, export_form=ActionForm(), action_name=action_name, details=details,
        subject=subject, when=when), 200 if valid else 400


@bp.post("/export.csv")
@role_required("legal")
def export_csv():
    """The entries the filters select, as CSV for an auditor: codes and JSON as stored, and words.

    A POST with the CSRF token, so that no other site can make a signed-in admin's browser
    download (and log) an export."""
    form, valid = _filter_form(request.form)
    if not valid:
        abort(400, " ".join(str(e) for f in form for e in f.errors))
    filters = _filters(form)
    store = get_store()
    chosen = {"actor": form.actor.data, "action": form.action.data,  # as the admin chose them
              "since": form.since.data and form.since.data.isoformat(),
              "until": form.until.data and form.until.data.isoformat()}
    store.audit(_actor(), "audit.export", "audit log", {k: v for k, v in chosen.items() if v})
    entries = store.audit_log(limit=store.count_audit(**filters), **filters)
    response = Response(_csv(entries), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="keksi-audit-{today().isoformat()}.csv"'
    return response


def spreadsheet_cell(value: str) -> str:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: keep it text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def spreadsheet(header: list[str], rows: Iterable[Iterable[Any]], separator: str = ",") -> str:
    """A CSV that a spreadsheet opens as written: UTF-8 with a BOM (so that Excel reads it as UTF-8),
    CRLF line ends, and no cell that it would run as a formula."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([spreadsheet_cell(str(v)) for v in row] for row in rows)
    return "\ufeff" + out.getvalue()


def _csv(entries: list[dict[str, Any]]) -> str:
    """Codes and JSON as stored beside the words, comma-separated: an auditor's file, read by tools too."""
    return spreadsheet(["at_utc", "actor", "action", "action_name", "subject", "subject_name", "detail_json",
                        "detail", "row_hash"], (_audit_row(entry) for entry in entries))


def _audit_row(entry: dict[str, Any]) -> list[str]:
    words = "; ".join(f"{label}: {value}" if label else value for label, value, _ in details(entry["detail"]))
    return [entry["at"], entry["actor"], entry["action"], action_name(entry["action"]), entry["subject"],
            subject(entry), json.dumps(entry["detail"], ensure_ascii=False, sort_keys=True), words,
            entry.get("row_hash") or ""]  # the entry's link in the audit log's hash chain
