"""gunicorn's access log as JSON lines, without client addresses or query strings.

An access log is not proof of anything Keksi needs, so it keeps no personal data:
no address, no query string (which may carry emails or tracking ids), no set-password token
or consent id in a path, and only the browser's coarse family. Set as `logger_class` in gunicorn.conf.py.
"""

from __future__ import annotations

import json
import re
import traceback
from datetime import datetime, timezone

from gunicorn.glogging import Logger

from .consents import coarse_user_agent

# Path segments that are secrets or personal data: a set-password token signs in whoever holds
# it, and a consent id finds a visitor's choices (and is what they quote to have them erased).
_SECRET_SEGMENTS = (
    (re.compile(r"^(/admin/set-password/)[^/]+"), r"\1[token]"),
    (re.compile(r"^(/api/v1/consents/)[^/]+"), r"\1[consent_id]"),
    (re.compile(r"^(/[^/]+/receipt/)[^/]+"), r"\1[consent_id]"),
)


def redact(path: str | None) -> str | None:
    """The path with any token or consent id in it replaced by its name."""
    for pattern, replacement in _SECRET_SEGMENTS:
        path = pattern.sub(replacement, path) if path else path
    return path


class JsonAccessLogger(Logger):
    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        try:
            entry = {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "method": environ.get("REQUEST_METHOD"),
                "path": redact(environ.get("PATH_INFO")),
                "status": int(str(resp.status).split(None, 1)[0]),
                "bytes": getattr(resp, "sent", None),
                "ms": round(request_time.total_seconds() * 1000, 2),
                "browser": coarse_user_agent(environ.get("HTTP_USER_AGENT")),
            }
            self.access_log.info(json.dumps(entry, separators=(",", ":")))
        except Exception:
            self.error(traceback.format_exc())
