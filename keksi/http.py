"""HTTP concerns shared by every blueprint: security headers, caching, errors."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import Flask, Response, abort, current_app, jsonify, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import BaseConverter, IntegerConverter

from . import __version__
from .store import StoreBusy, StoreUnavailable

# No inline script or style anywhere, so no 'unsafe-inline'; nothing from other hosts.
CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def security_headers(response: Response) -> Response:
    headers = response.headers
    # The server (gunicorn, werkzeug's) adds Date to every response; werkzeug's make_conditional
    # adds one too, which gunicorn would send as a second Date field.
    headers.pop("Date", None)
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config["HTTPS"]:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def conditional(response: Response, etag: str, last_modified: datetime | None,
                cache_control: str = "public, no-cache") -> Response:
    """Attach validators and answer 304 when the client's copy is still good."""
    response.set_etag(etag)
    if last_modified is not None:
        response.last_modified = last_modified
    response.headers["Cache-Control"] = cache_control
    response.vary.add("Accept-Encoding")
    return response.make_conditional(request)


def refuse_cross_site() -> None:
    """403 for a request that another site made the browser send, cookies and all (a link or an
    image there). Fetch Metadata says so (Sec-Fetch-Site); a browser too old to send it still
    sends Origin or Referer when another site is the source."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        foreign = fetch_site not in ("same-origin", "none")  # none: typed, bookmarked, reloaded
    else:
        source = urlsplit(request.headers.get("Origin") or request.headers.get("Referer") or "")
        foreign = bool(source.netloc) and (source.scheme, source.netloc) != (request.scheme, request.host)
    if foreign:
        abort(403, _("Exports start only from this admin's own pages. Open Consent records and export from there."))


def refuse_nul() -> None:
    """400 for a NUL character in the path, the query or a form's fields. No text a person writes
    holds one and no stored text can (PostgreSQL's TEXT refuses it), so looking one up or saving it
    would otherwise fail in the database (a 500) rather than be answered. The consent API's JSON
    body is checked field by field instead (keksi.consents), naming the field."""
    values = [request.path, *(text for item in request.args.items(multi=True) for text in item)]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values += [text for item in request.form.items(multi=True) for text in item]
    if any("\x00" in text for text in values):
        abort(400, _("The address or the form holds a NUL character (U+0000), which no text can hold."))


def wants_json() -> bool:
    return request.path.startswith("/api/")


def error_message(code: int) -> str:
    messages = {
        400: _("The request could not be understood."),
        403: _("You do not have access to this page."),
        404: _("There is no page at this address. Check the link, or start from the list of notices."),
        405: _("This address does not accept that kind of request."),
        413: _("The request is too large."),
        429: _("Too many requests. Wait a moment and try again."),
    }
    return messages.get(code, _("Something went wrong on our side. Try again in a moment."))


def error_page(code: int, title: str, message: str, link: tuple[str, str] | None = None) -> tuple[str, int]:
    """An error page in the visitor's language; its language switcher leads to each language's
    list of notices (the page that was asked for may exist in none of them). `link` (address,
    text) leads on to the list the missing thing belongs to, else to the list of notices."""
    indexes = [{"lang": lang, "url": url_for("site.index", lang=lang, _external=True)}
               for lang in current_app.config["LANGUAGES"]]
    return render_template("site/error.html", code=code, title=title, message=message, link=link,
                           alternates=indexes), code


def not_found(message: str, url: str, link_text: str) -> NoReturn:
    """Stop with a 404 page that says in words what was not found and links to the list it belongs to."""
    abort(current_app.make_response(error_page(404, "Not Found", message, (url, link_text))))


def handle_http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    # A specific description given with abort(code, message) wins over the generic one.
    specific = exc.description != type(exc).description
    description = exc.description if specific else error_message(code)
    if code == 413 and not specific and not wants_json() and request.max_content_length:
        description = _("Nothing was saved: what was sent is larger than %(size)s kB, the most this page "
                        "accepts. Shorten the texts, then send it again.",
                        size=format_decimal(request.max_content_length // 1024))
    if wants_json():
        return jsonify(error=exc.name, message=description, status=code), code
    return error_page(code, exc.name, description)


def handle_untrusted_host(exc: SecurityError) -> Any:
    """A Host header that is not one of KEKSI_SERVER_NAMES: 400, as plain text, with no link
    (nothing can be built on a host this server does not answer to)."""
    message = _("This server does not answer to that host name.")
    if wants_json():
        return jsonify(error="Bad Request", field="host", message=message, status=400), 400
    return Response(message + "\n", status=400, mimetype="text/plain")


def handle_unexpected(exc: Exception) -> Any:
    current_app.logger.exception("unhandled error on %s", request.path)
    if wants_json():
        return jsonify(error="Internal Server Error", message=error_message(500), status=500), 500
    return error_page(500, "Internal Server Error", error_message(500))


class BoundedIntConverter(IntegerConverter):
    """`<int:…>` up to SQLite's largest integer: a longer number is no page (404), not an
    OverflowError in the store (500)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


class LangConverter(BaseConverter):
    regex = r"[a-z]{2,3}"


class DateConverter(BaseConverter):
    regex = r"\d{4}-\d{2}-\d{2}"


class SlugConverter(BaseConverter):
    regex = r"[a-z0-9]+(?:-[a-z0-9]+)*"


def unavailable_reason(exc: StoreUnavailable) -> str:
    """What a public answer says of a database failure: its kind, never the driver's words, which can
    name hosts, users or paths (the log keeps them). Migrations not yet applied are named: Keksi's own words."""
    if exc.code == "pending_migrations":
        return str(exc)
    return "the database is busy" if isinstance(exc, StoreBusy) else "the database cannot be reached or written"


def handle_store_unavailable(exc: StoreUnavailable) -> Any:
    """The database failed (locked past the timeout, disk full, read-only, out of reach): 503, try
    again later. A page that only reads (GET) says it cannot be shown; a form sent says nothing was saved."""
    current_app.logger.warning("store unavailable on %s: %s", request.path, exc)
    if request.method in ("GET", "HEAD"):
        message = _("This page cannot be shown right now. Try again in a moment.")
    else:
        message = _("Saving is not possible right now. Nothing was saved. Try again in a moment.")
    if wants_json():
        response = jsonify(error="Service Unavailable", field="store", status=503,
                           message=f"{unavailable_reason(exc)}; nothing was saved. Try again in a moment.")
    else:
        response = current_app.make_response(error_page(503, "Service Unavailable", message))
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(StoreUnavailable, handle_store_unavailable)
    app.url_map.converters.update(int=BoundedIntConverter, lang=LangConverter, date=DateConverter,
                                  slug=SlugConverter)
    app.before_request(refuse_nul)
    app.after_request(security_headers)
    app.register_error_handler(SecurityError, handle_untrusted_host)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)


def build_id(root: str) -> str:
    """A hash of everything that shapes a rendered page but not the data: templates, catalogs, CSS.

    Part of every ETag, so a deployment with new templates or translations never
    answers 304 with a stale page.
    """
    digest = hashlib.sha256(__version__.encode())
    base = Path(root)
    for pattern in ("templates/**/*.html", "translations/*/LC_MESSAGES/*.po", "keksi/static/**/*"):
        for path in sorted(base.glob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(base).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
