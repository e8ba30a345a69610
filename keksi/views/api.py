"""The JSON API, version 1."""

from __future__ import annotations

import hashlib

from flask import Blueprint, abort, current_app, g, jsonify, request, url_for

from .. import notices
from ..clock import today
from ..http import conditional
from ..i18n import best_language
from ..store import get_store

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _lang_arg() -> str:
    """The `lang` query argument, else the browser's language; 400 when it is not served."""
    lang = request.args.get("lang")
    languages = current_app.config["LANGUAGES"]
    if lang is None:
        return best_language()
    if lang not in languages:
        abort(400, f"lang: {lang!r} is not served here; use one of {', '.join(languages)}.")
    return lang


@bp.get("/notices/<slug:slug>")
def notice(slug: str):
    """The current version of a notice: its date, permanent link, hash and latest material change."""
    lang = g.lang = _lang_arg()
    found = notices.load_notice(get_store(), slug, lang, today())
    if found is None or found.current is None:
        abort(404, f"There is no notice {slug!r} in {lang}.")
    current = found.current
    material = found.latest_material
    body = {
        "slug": slug,
        "lang": lang,
        "title": current.title,
        "version": current.version,
        "effective_date": current.version,
        "url": url_for("site.notice_version", lang=lang, slug=slug, version=current.version,
                       _external=True),
        "current_url": url_for("site.notice_current", lang=lang, slug=slug, _external=True),
        "sha256": current.sha256,
        "material": current.material,
        "latest_material_version": material.version if material else None,
        "upcoming": [{"version": v.version, "material": v.material,
                      "url": url_for("site.notice_version", lang=lang, slug=slug, version=v.version,
                                     _external=True)}
                     for v in found.upcoming],
    }
    etag = hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()[:32]
    return conditional(jsonify(body), etag, None)
