"""The embeddable consent widget: GET /widget/v1/consent.js (and signals.js), minified and precompressed."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, request

from .. import widget
from ..store import get_store

bp = Blueprint("widget", __name__, url_prefix="/widget/v1")


def _encoding() -> str:
    """The best encoding the client accepts: brotli, then gzip, else none."""
    accepted = request.accept_encodings
    for encoding in ("br", "gzip"):
        if accepted[encoding]:  # the quality it gives, 0 when refused or absent
            return encoding
    return "identity"


def _folder() -> Path:
    return Path(current_app.root_path) / "widget"


@bp.get("/consent.js")
def script():
    """The widget script for `<script src=… data-site=…>`; cacheable by any site."""
    return _serve(_kept(widget.current(_folder())))


@bp.get("/signals.js")
def signals():
    """Other vendors' consent signals, which the widget loads for a site that declares their services;
    its query string (from the site's configuration) says which. Cacheable by any site."""
    return _serve(_kept(widget.current(_folder(), widget.SIGNALS)))


def _kept(build: widget.Build) -> widget.Build:
    """`build`, kept in the store before it is served: what a visitor's page ran can always be
    shown. When the database is locked the script is refused (503) rather than served unkept."""
    widget.archive(build, get_store(), current_app.extensions.setdefault("keksi.widget_builds", set()))
    return build


def _serve(build: widget.Build) -> Response:
    encoding = _encoding()
    response = Response(build.body(encoding), mimetype="text/javascript")
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    if encoding != "identity":
        response.headers["Content-Encoding"] = encoding
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["X-Widget-Version"] = build.version
    # One validator per encoding: the bytes differ, and a cache may hold each.
    response.set_etag(f"{build.version}-{encoding}")
    return response.make_conditional(request)
