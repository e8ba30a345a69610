"""Legal's proof under /admin/proof: every banner version and widget build a consent record
can name, retrievable by its hash or version, so an auditor needs no SQL to see exactly what
text and code a visitor was shown (EDPB 05/2020 §108; CNIL 2020-092's code escrow).

Legal and admin only; the same data is JSON at /api/v1/banners/<hash> and
/api/v1/widget-builds/<version> for the same signed-in users.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from .. import consents
from ..http import not_found
from ..store import get_store
from .admin import _load_user, form_expired, role_required

bp = Blueprint("admin_proof", __name__, url_prefix="/admin/proof")
bp.before_request(_load_user)
bp.register_error_handler(CSRFError, form_expired)


def proof_links() -> Callable[[dict[str, Any]], tuple[str, str | None]]:
    """For the consent export: a record's links to its banner version and widget build here
    (needs a request context, for the host)."""
    banner_url = url_for("admin_proof.banner", banner_hash="HASH", _external=True)
    widget_url = url_for("admin_proof.widget", version="VERSION", _external=True)

    def links(row: dict[str, Any]) -> tuple[str, str | None]:
        version = row.get("widget_version")
        return (banner_url.replace("HASH", row["banner_hash"]),
                widget_url.replace("VERSION", version) if version else None)
    return links


@bp.get("/")
@role_required("legal")
def index():
    """Every banner version and widget build on record, newest first; find one by hash."""
    wanted = request.args.get("q", "").strip().lower()
    if wanted:
        store = get_store()
        if consents.HEX64.match(wanted) and store.banner_version(wanted):
            return redirect(url_for("admin_proof.banner", banner_hash=wanted))
        if consents.WIDGET_VERSION.match(wanted) and store.widget_build(wanted):
            return redirect(url_for("admin_proof.widget", version=wanted))
        flash(_("No banner version or widget build has the hash or version “%(wanted)s”.", wanted=wanted))
    store = get_store()
    return render_template("admin/proof.html", banners=store.banner_versions(),
                           builds=store.widget_builds(), wanted=wanted)


@bp.get("/banners/<banner_hash>")
@role_required("legal")
def banner(banner_hash: str):
    """One banner version in full, as visitors saw it."""
    row = get_store().banner_version(banner_hash) if consents.HEX64.match(banner_hash) else None
    if row is None:
        not_found(_("No banner version with this hash was ever served."), url_for("admin_proof.index"),
                  _("Proof of what visitors saw"))
    return render_template("admin/proof_banner.html", banner=row, content=json.loads(row["content"]))


def _widget_build_or_404(version: str) -> dict[str, Any]:
    row = get_store().widget_build(version) if consents.WIDGET_VERSION.match(version) else None
    if row is None:
        not_found(_("No widget build with this version was ever served."), url_for("admin_proof.index"),
                  _("Proof of what visitors saw"))
    return row


@bp.get("/widgets/<version>")
@role_required("legal")
def widget(version: str):
    """One widget build: its hash, when it was first served, and its script."""
    row = _widget_build_or_404(version)
    return render_template("admin/proof_widget.html", build=row, size=len(row["script"].encode("utf-8")))


@bp.get("/widgets/<version>.js")
@role_required("legal")
def widget_script(version: str):
    """The exact script of one widget build, as a download (never run by the admin)."""
    row = _widget_build_or_404(version)
    response = Response(row["script"], mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    name = "widget" if row["file"] == "consent.js" else row["file"].removesuffix(".js")
    response.headers["Content-Disposition"] = f'attachment; filename="keksi-{name}-{row["version"]}.js"'
    return response
