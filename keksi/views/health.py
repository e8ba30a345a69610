"""A health check for load balancers and monitoring: GET /healthz."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask_babel import gettext as _

from .. import retention
from ..i18n import format_date
from ..store import get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when the database answers and its schema is current, else 503; a purge overdue is a
    warning (still 200: the site works, but records are kept past their retention)."""
    try:
        store = get_store()
        pending = store.pending_migrations()
        if pending:
            return jsonify(status="error", database="ok", pending_migrations=pending), 503
        purge = retention.status(store)
    except Exception as exc:  # any failure to read the database means unhealthy; the log says which
        current_app.logger.warning("healthz: the database failed: %s", exc)
        return jsonify(status="error", database="unavailable"), 503
    body = {"status": "ok", "database": "ok", "retention": purge}
    if purge["overdue"]:
        body["status"] = "warning"
        body["warnings"] = [purge_overdue_message(purge)]
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def purge_overdue_message(purge: dict) -> str:
    """The warning shown when the daily purge has not run for over two days, in the reader's language."""
    if purge["last_purge_at"] is None:
        return _("Consent records past their retention have never been purged. Check that Keksi can write "
                 "its database, or run “flask consents purge”.")
    return _("Consent records past their retention have not been purged since %(day)s. Check that Keksi "
             "can write its database, or run “flask consents purge”.",
             day=format_date(purge["last_purge_at"][:10]))


@bp.app_context_processor
def _purge_warning() -> dict:
    """`purge_warning()` for templates (the admin dashboard): the warning, or None."""
    def purge_warning() -> str | None:
        purge = retention.status(get_store())
        return purge_overdue_message(purge) if purge["overdue"] else None
    return {"purge_warning": purge_warning}
