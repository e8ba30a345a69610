"""A per-worker cache of finished notice pages, in front of Flask.

A notice page is the same for every visitor until a version is published or withdrawn, or
the day changes (which can make another version current). Flask's request machinery alone
costs more than serving the bytes, so this middleware keeps the finished responses of the
pages a view marks as shareable (`mark()`), and answers repeat requests, 304s included,
without entering Flask.

Validity: each request reads the notices' generation from the database (`store.generation`, one
small query, raised in the same commit as every publication or withdrawal by any process of any
host: the CLI, the admin in another worker) and today's date in KEKSI_TIMEZONE. When either
differs from what the cached pages were made under, the cache starts over. Only GET and HEAD without a query
string, without the admin session cookie and without If-Match, If-Unmodified-Since or Range
are served from it; only 200s without Set-Cookie, made while the generation and the day
stayed the same, are stored. Responses carry no Date of their own (keksi.http removes it; the server
adds a fresh one), so a kept page never replays an old one. The cache sits inside ProxyFix,
so scheme and host are the client's.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from flask import Flask, Response
from werkzeug.http import is_resource_modified, parse_date, unquote_etag

from . import clock, store

# The view's sign that a response may be shared; removed before anything leaves the server.
MARK = "X-Keksi-Shared-Page"
MAX_ENTRIES = 512
# Representation headers that a 304 does not repeat (RFC 9110, 15.4.5).
_NOT_IN_304 = {"content-length", "content-type", "content-encoding", "content-language"}
# Preconditions and ranges the cache does not evaluate: Flask answers these requests.
_FOR_FLASK = ("HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE", "HTTP_IF_RANGE")


def mark(response: Response) -> Response:
    """Let the page cache keep this response for every visitor (public pages only)."""
    response.headers[MARK] = "1"
    return response


class _Entry:
    __slots__ = ("status", "headers", "body", "etag", "last_modified", "headers_304")

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes):
        self.status, self.headers, self.body = status, headers, body
        found = {name.lower(): value for name, value in headers}
        self.etag = unquote_etag(found["etag"])[0] if "etag" in found else None
        self.last_modified = parse_date(found.get("last-modified"))
        self.headers_304 = [(k, v) for k, v in headers if k.lower() not in _NOT_IN_304]


class _Generation:
    """The pages made under one (notices generation, day): replaced whole, never cleared in place, so
    that a request that began under an older generation can only ever store into that one."""
    __slots__ = ("made_under", "entries")

    def __init__(self, made_under: tuple[Any, ...]):
        self.made_under = made_under
        self.entries: dict[tuple[str, ...], _Entry] = {}


class PageCache:
    """WSGI middleware: `app.wsgi_app = PageCache(app.wsgi_app, app)`."""

    def __init__(self, wsgi_app: Callable, app: Flask):
        self.wsgi_app = wsgi_app
        self.config = app.config
        self.app = app
        self.generation = _Generation(())

    def _now(self) -> tuple[Any, ...]:
        return (*store.generation(self.app, "notices"), clock.today(self.config))

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        session_cookie = self.config["SESSION_COOKIE_NAME"] + "="
        if (method not in ("GET", "HEAD") or environ.get("QUERY_STRING")
                or session_cookie in environ.get("HTTP_COOKIE", "")
                or any(name in environ for name in _FOR_FLASK)):
            return self._forward(environ, start_response, None)
        now = self._now()
        generation = self.generation
        if generation.made_under != now:
            generation = self.generation = _Generation(now)
        key = (environ["wsgi.url_scheme"], environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""),
               environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""))
        entry = generation.entries.get(key)
        if entry is None:
            return self._forward(environ, start_response, (generation, key) if method == "GET" else None)
        if not is_resource_modified(environ, etag=entry.etag, last_modified=entry.last_modified):
            start_response("304 Not Modified", entry.headers_304)
            return []
        start_response(entry.status, entry.headers)
        return [] if method == "HEAD" else [entry.body]

    def _forward(self, environ: dict[str, Any], start_response: Callable,
                 slot: tuple[_Generation, tuple[str, ...]] | None) -> Iterable[bytes]:
        """Let Flask answer; with a `slot` (generation, key), keep the answer there when it is a
        shareable 200 and nothing changed while it was being made (a publication or a new day
        during the rendering would otherwise leave the old page cached under the new generation)."""
        seen: dict[str, Any] = {}

        def unmarked(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            seen["shared"] = any(name == MARK for name, _ in headers)
            seen["status"] = status
            seen["headers"] = [(name, value) for name, value in headers if name != MARK]
            return start_response(status, seen["headers"], exc_info)

        answer = self.wsgi_app(environ, unmarked)
        if (slot is None or not seen.get("shared")
                or not seen["status"].startswith("200 ")
                or any(name.lower() == "set-cookie" for name, _ in seen["headers"])):
            return answer
        try:
            body = b"".join(answer)
        finally:
            if hasattr(answer, "close"):
                answer.close()
        generation, key = slot
        if self._now() == generation.made_under:
            if len(generation.entries) >= MAX_ENTRIES:
                generation.entries.clear()
            generation.entries[key] = _Entry(seen["status"], seen["headers"], body)
        return [body]
