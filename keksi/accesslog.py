"""gunicorn's access log as JSON lines, without client addresses or query strings.

An access log is not proof of anything Keksi needs, so it keeps no personal data:
no address, no query string (which may carry emails or tracking ids), and only the
browser's coarse family. Set as `logger_class` in gunicorn.conf.py.
"""

from __future__ import annotations

import json
import traceback
from datetime import datetime, timezone

from gunicorn.glogging import Logger

from .consents import coarse_user_agent


class JsonAccessLogger(Logger):
    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        try:
            entry = {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": int(str(resp.status).split(None, 1)[0]),
                "bytes": getattr(resp, "sent", None),
                "ms": round(request_time.total_seconds() * 1000, 2),
                "browser": coarse_user_agent(environ.get("HTTP_USER_AGENT")),
            }
            self.access_log.info(json.dumps(entry, separators=(",", ":")))
        except Exception:
            self.error(traceback.format_exc())
