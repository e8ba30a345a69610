"""A second origin for the widget tests: a tiny HTTP server serving host pages that embed the widget.

The consent server runs on one loopback port (tests.conftest.LiveServer) and this one on
another, so the widget is embedded cross-origin exactly as marketing will use it.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .conftest import ServedInThread


class HostServer(ServedInThread):
    """Serves `pages` (path -> (body, content type, extra headers, status)) on a free loopback port;
    `hits` lists the paths asked for."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.pages: dict[str, tuple[str, str, dict[str, str], int]] = {}
        self.hits: list[str] = []
        self.delays: dict[str, float] = {}  # path -> seconds the server waits before answering
        pages, hits, delays = self.pages, self.hits, self.delays

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                hits.append(self.path)
                time.sleep(delays.get(self.path.split("?", 1)[0], 0))
                found = pages.get(self.path.split("?", 1)[0])
                body, content_type, headers, status = found or ("not found", "text/plain", {}, 404)
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((address, 0), Handler)
        server.daemon_threads = True
        super().__init__(server)
        self.url = f"http://{address}:{self.port}"

    def add(self, path: str, body: str, content_type: str = "text/html", **headers: str) -> str:
        """Serve `body` at `path`; return its full URL."""
        self.pages[path] = (body, content_type, headers, 200)
        return self.url + path

    def redirect(self, path: str, location: str) -> str:
        """Send `path` elsewhere with a 302; return its full URL."""
        self.pages[path] = ("", "text/plain", {"Location": location}, 302)
        return self.url + path

    def script(self, path: str, body: str) -> str:
        return self.add(path, body, "text/javascript")


def host_page(widget_url: str, *, site: str = "demo", lang: str = "en", head: str = "", body: str = "",
              tag_in_head: bool = False, tag_attrs: str = "async") -> str:
    """A plain, accessible host page with a first link, a footer "Cookie settings" link and the widget tag."""
    tag = f'<script src="{widget_url}" data-site="{site}" {tag_attrs}></script>'
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Host page</title>
{head}
{tag if tag_in_head else ""}
</head>
<body>
<header><a id="first" href="/elsewhere">Home</a></header>
<main>
<h1>A page that embeds the consent widget</h1>
<p>Some content of the host site.</p>
{body}
</main>
<footer><a id="settings" href="/cookies" data-consent-open>Cookie settings</a></footer>
{"" if tag_in_head else tag}
</body>
</html>
"""


class ConsentFaults:
    """WSGI middleware in front of the consent server that spoils answers to consent posts on cue.

    Faults are injected on the server rather than with Playwright's request interception, which
    does not reliably see `fetch(..., {keepalive: true})`, the way the widget posts. Each post
    takes the next planned fault, or `always` when the plan is empty; None lets it through. The
    status of every answer the server itself gave to a consent post is kept in `answered`.
    - an int: answer that status (with CORS headers, so the widget can read it), record nothing;
    - "unreachable": record nothing and answer without CORS headers, which the page sees exactly
      as it sees a refused connection (fetch rejects with a network error);
    - "lost": record the choice, then drop the CORS headers, as if the answer never arrived.
    """

    PATH = "/api/v1/consents"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.plan: list[int | str] = []
        self.always: int | str | None = None
        self.served: list[int | str] = []
        self.answered: list[int] = []

    def reset(self) -> None:
        self.plan, self.always, self.served, self.answered = [], None, [], []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] != "POST" or environ.get("PATH_INFO") != self.PATH:
            return self.app(environ, start_response)
        fault = self.plan.pop(0) if self.plan else self.always
        if fault is not None:
            self.served.append(fault)
        if fault is None or fault == "lost":
            def answer(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                self.answered.append(int(status.split()[0]))
                if fault == "lost":
                    headers = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
                return start_response(status, headers, *exc)
            return self.app(environ, answer)
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = [("Content-Type", "application/json")]
        if isinstance(fault, int):
            headers.append(("Access-Control-Allow-Origin", environ.get("HTTP_ORIGIN", "*")))
            start_response(f"{fault} Fault", headers)
        else:
            start_response("502 Unreachable", headers)
        return [b"{}"]
