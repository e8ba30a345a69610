"""Legal's consent records under /admin/records: the export for an auditor, and a visitor's erasure.

Raw records (with subject ids, and addresses or pages where an operator keeps them) are for legal
and admins only; marketing keeps the figures. An erasure is found first, shown with what it would
remove, and done only once confirmed; the audit log keeps only the count.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError

from .. import erasure
from ..forms import EraseForm
from ..store import get_store
from .admin import _load_user, _no_cache, form_expired, role_required

bp = Blueprint("admin_records", __name__, url_prefix="/admin/records")
bp.before_request(_load_user)
bp.after_request(_no_cache)
bp.register_error_handler(CSRFError, form_expired)


@bp.get("/")
@role_required("legal")
def records():
    """Each site's records to export for an auditor, and the way to a visitor's erasure."""
    return render_template("admin/records.html", sites=get_store().sites())


def _not_found(form: EraseForm, reason: str) -> None:
    form.id.errors.append(
        _("This is not an id: an id has 32 digits and letters a–f.") if reason == "invalid"
        else _("No records have this id. They may have been erased or purged already, or the id was "
               "copied wrong."))


@bp.route("/erase", methods=["GET", "POST"])
@role_required("legal")
def erase():
    """Find a visitor's records by the id they quoted, show what would go, and erase once confirmed."""
    form = EraseForm()
    summary = None
    status = 200
    if form.validate_on_submit():
        store = get_store()
        try:
            summary = erasure.find_subject(store, form.kind.data, form.id.data)[1]
        except erasure.NotFound as exc:
            _not_found(form, exc.reason)
            status = 404 if exc.reason == "unknown" else 400
        else:
            # Erase only what was shown: the id found and confirmed, not one changed since.
            shown = request.form.get("found") == f"{form.kind.data}:{form.id.data.strip().lower()}"
            if request.form.get("step") == "erase" and shown and form.confirm.data:
                count = erasure.erase(store, form.kind.data, form.id.data, g.user["email"],
                                      ZoneInfo(current_app.config["TIMEZONE"]))
                flash(ngettext("%(num)s record of this visitor was erased. The audit log notes the count only.",
                               "%(num)s records of this visitor were erased. The audit log notes the count only.",
                               count))
                return redirect(url_for("admin_records.erase"))
            if request.form.get("step") == "erase" and shown:
                form.confirm.errors.append(_("Tick the box to confirm the erasure."))
                status = 400
    elif request.method == "POST":
        status = 400
    return render_template("admin/erase.html", form=form, summary=summary), status
