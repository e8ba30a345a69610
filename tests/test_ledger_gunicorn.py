"""Under gunicorn with 4 workers, thousands of concurrent choices: one row per acknowledgement.

`scripts/test --full -k concurrent` runs the load test at its full size (30,000 choices from
64 connections, 40 s here); CI runs 3,000 from 24.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from keksi import consents
from keksi.store import open_store

from .conftest import BOTH, raw_sql
from .ledger import ORIGIN, ROOT

BACKENDS = BOTH

POSTS, THREADS = 3000, 24
FULL_POSTS, FULL_THREADS = 30_000, 64
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(tmp_path: Path, database: str | None = None) -> dict[str, str]:
    """A database (a new SQLite file unless given) with the sample notices and the demo site, and
    the environment to serve it."""
    env = dict(os.environ, KEKSI_DATABASE=database or str(tmp_path / "keksi.db"), KEKSI_SECRET_KEY="x",
               KEKSI_RATE_LIMIT="1000000", FLASK_APP="app.py", PORT=str(free_port()), HOST="127.0.0.1")
    for args in (["notices", "publish"], ["sites", "add", "sites/demo.json"]):
        subprocess.run([str(BIN / "flask"), *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return env


def start(env: dict[str, str], workers: int = 4, access_log: str = "/dev/null",
          folder: Path = ROOT, log: Path | None = None) -> subprocess.Popen:
    """Start gunicorn with the production config in the project `folder` and wait until it answers.
    Its messages go to the file `log` if given (a long run under faults can say much), else to a pipe
    read only if it does not start."""
    port = int(env["PORT"])
    with open(log, "ab") if log else contextlib.nullcontext(subprocess.PIPE) as stderr:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--workers", str(workers),
             "--access-logfile", access_log, "wsgi:app"],
            cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            said = log.read_text(errors="replace") if log else process.stderr.read().decode()
            pytest.fail(f"gunicorn did not start: {said[-2000:]}")
        time.sleep(0.1)


@pytest.fixture
def gunicorn(tmp_path, database):
    env = prepare(tmp_path, database)
    process = start(env)
    yield int(env["PORT"]), env["KEKSI_DATABASE"]
    process.terminate()
    process.wait(timeout=20)


def test_concurrent_posts_each_have_exactly_one_row(gunicorn, full_size):
    port, database = gunicorn
    posts, threads_count = (FULL_POSTS, FULL_THREADS) if full_size else (POSTS, THREADS)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/api/v1/sites/demo/config?lang=fi", headers={"Origin": ORIGIN})
    cfg = json.loads(conn.getresponse().read())
    acknowledged: list[str] = []
    failures: list[int] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(count):
            event = str(uuid.uuid4())
            body = json.dumps({
                "site": "demo", "event_id": event, "action": "custom",
                "choices": {"necessary": True, "preferences": i % 2 == 0, "analytics": i % 3 == 0,
                            "marketing": False},
                "notice_version": cfg["notices"]["privacy"]["version"], "banner_hash": cfg["banner_hash"],
                "lang": "fi", "ui_surface": "panel", "page": "/", "gpc": False,
            })
            # Every fourth post is sent twice, as a widget retry would: still one row.
            for _attempt in range(2 if i % 4 == 0 else 1):
                client.request("POST", "/api/v1/consents", body=body,
                               headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
                response = client.getresponse()
                payload = response.read()
                with lock:
                    if response.status == 201:
                        acknowledged.append(json.loads(payload)["consent_id"])
                    else:
                        failures.append(response.status)

    threads = [threading.Thread(target=worker, args=(posts // threads_count,)) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    unique = set(acknowledged)
    assert len(unique) == posts // threads_count * threads_count
    store = open_store(database)
    try:
        stored = [row["consent_id"] for row in raw_sql(store, "SELECT consent_id FROM consents")]
        assert sorted(stored) == sorted(unique), "exactly one row per acknowledged choice"
        result = consents.verify(store)
        assert result.ok, result
        assert result.checked == len(unique)
    finally:
        store.close()
