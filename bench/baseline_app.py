"""The baselines Keksi is measured against: a bare Flask app doing only the essential work.

Run under the same gunicorn settings as Keksi, from the project folder (`bench/run.py` does this):

    BASELINE_DATABASE=/tmp/x.db BASELINE_PAGE_BYTES=9000 \
        .venv/bin/gunicorn -c gunicorn.conf.py --workers 4 --pythonpath bench baseline_app:app

- `POST /consents` inserts one row into a `consents` table with exactly Keksi's columns and
  indexes (the database is made by Keksi's own migrations), through the store's backend (the
  same connection settings as Keksi's: synchronous=FULL), committed before the 201, and nothing else: no parsing, no checks, no chain link. The row is
  precomputed; only its ids and timestamps are fresh.
- `GET /page` answers a constant HTML page of BASELINE_PAGE_BYTES bytes with an ETag,
  and 304 to a matching If-None-Match.

The connection is opened once per worker process, after the fork (BASELINE_CONNECT=request
opens one per request instead, as Keksi does, to measure what that costs).
"""

from __future__ import annotations

import os
import secrets
import uuid
from datetime import datetime, timedelta, timezone

from flask import Flask, Response, jsonify, request

from keksi.store import Store, open_store

DATABASE = os.environ.get("BASELINE_DATABASE", "baseline.db")
PAGE_BYTES = int(os.environ.get("BASELINE_PAGE_BYTES", "8192"))
PER_REQUEST = os.environ.get("BASELINE_CONNECT", "worker") == "request"

# A typical Keksi record (the demo site, an accept_all from the banner).
ROW = {
    "subject_id": None, "site": "demo", "action": "accept_all",
    "choices": '{"necessary":true,"preferences":true,"analytics":true,"marketing":true}',
    "ui_surface": "banner", "lang": "fi", "page": "/pricing", "notice_slug": "privacy",
    "notice_version": "2026-04-09", "notice_sha256": "5" * 64, "cookie_notice_slug": "cookies",
    "cookie_notice_version": "2025-09-15", "cookie_notice_sha256": "6" * 64, "banner_hash": "b" * 64,
    "widget_version": "1.0.0", "ip": "127.0.0.0", "user_agent": "Other / Other", "gpc": 0,
    "content_hash": "c" * 64,
}
PAGE = (b"<!doctype html><html lang=fi><title>Tietosuojaseloste</title><body>"
        + b"x" * PAGE_BYTES)[:PAGE_BYTES]
PAGE_ETAG = "0123456789abcdef0123456789abcdef"

app = Flask(__name__)
_store: Store | None = None
INSERT = f"INSERT INTO consents ({', '.join(ROW)}, consent_id, event_id, recorded_at, valid_until) " \
         f"VALUES ({', '.join('?' * (len(ROW) + 4))})"


def _connect() -> Store:
    return open_store(DATABASE, 5000)  # Keksi's connection: its pragmas, the same durability per insert


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@app.post("/consents")
def consents():
    global _store
    request.get_data(cache=False)  # read the body, as any endpoint must
    now = datetime.now(timezone.utc)
    row = dict(ROW, subject_id=secrets.token_hex(16), consent_id=secrets.token_hex(16),
               event_id=str(uuid.uuid4()), recorded_at=_iso(now), valid_until=_iso(now + timedelta(days=365)))
    store = _connect() if PER_REQUEST else (_store or _connect())
    if not PER_REQUEST:
        _store = store
    with store.backend.transaction():  # committed before answering
        store.backend.execute(INSERT, list(row.values()))
    if PER_REQUEST:
        store.close()
    response = jsonify(consent_id=row["consent_id"], recorded_at=row["recorded_at"])
    response.status_code = 201
    return response


@app.get("/page")
def page():
    response = Response(PAGE, mimetype="text/html")
    response.set_etag(PAGE_ETAG)
    return response.make_conditional(request)
