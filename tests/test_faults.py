"""Faults: a locked database, a full or read-only disk, killed processes, a PostgreSQL server out of reach.
Nothing acknowledged is lost."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from keksi import consents
from keksi.store import close_idle_connections, open_store

from .conftest import raw_sql, write_lock_held
from .ledger import ORIGIN, add_site, choice, config, count_rows, post
from .postgresql import connect
from .test_ledger_gunicorn import prepare, start


@pytest.mark.sqlite_only
def test_a_database_locked_past_the_timeout_gets_503_and_a_retry_succeeds(make_app):
    app = make_app(BUSY_TIMEOUT_MS=100)
    add_site(app)
    client = app.test_client()
    body = choice(config(client))
    with write_lock_held(app):
        response = post(client, body)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # the page can read why
        assert response.get_json()["field"] == "store"
        assert "not recorded" in response.get_json()["message"]
        assert client.get("/en/privacy").status_code == 200, "WAL readers are not blocked by the writer"
    assert count_rows(app) == 0
    retry = post(client, body)
    assert retry.status_code == 201
    assert post(client, body).get_json() == retry.get_json()
    assert count_rows(app) == 1


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB filesystem the test can fill, where the machine allows mounting one."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here (needs root): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(descriptor)
    return filler


@pytest.mark.sqlite_only
def test_a_full_disk_gives_clear_errors_and_notices_keep_being_served(make_app, tiny_disk):
    app = make_app(DATABASE=str(tiny_disk / "keksi.db"), RATE_LIMIT=100_000)
    add_site(app)
    client = app.test_client()
    cfg = config(client)
    acknowledged = [post(client, choice(cfg)).get_json()["consent_id"] for _ in range(3)]
    filler = _fill(tiny_disk)
    statuses = []
    for _ in range(40):  # enough to need new pages
        response = post(client, choice(cfg, page="/" + "x" * 900))
        statuses.append(response.status_code)
        if response.status_code == 201:
            acknowledged.append(response.get_json()["consent_id"])
        else:
            assert response.status_code == 503, response.get_data(as_text=True)
            assert "Retry-After" in response.headers
    assert 503 in statuses, "the disk never filled up"
    assert client.get("/en/privacy").status_code == 200
    assert client.get("/api/v1/notices/privacy?lang=fi").status_code == 200
    filler.unlink()
    late = post(client, choice(cfg))
    assert late.status_code == 201
    acknowledged.append(late.get_json()["consent_id"])
    store = open_store(app.config["DATABASE"])
    try:
        stored = {row["consent_id"] for row in raw_sql(store, "SELECT consent_id FROM consents")}
        assert set(acknowledged) <= stored
        assert store.integrity_check() == "ok"
        assert consents.verify(store).ok
    finally:
        store.close()


@pytest.mark.sqlite_only
def test_a_read_only_database_answers_503_and_pages_still_work(make_app, tiny_disk):
    app = make_app(DATABASE=str(tiny_disk / "keksi.db"))
    add_site(app)
    client = app.test_client()
    cfg = config(client)
    assert post(client, choice(cfg)).status_code == 201
    close_idle_connections()  # a remount to read-only is refused while files are open for writing
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        response = post(client, choice(cfg))
        assert response.status_code == 503, response.get_data(as_text=True)
        assert client.get("/fi/privacy").status_code == 200
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    assert count_rows(app) == 1


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def test_killing_a_worker_and_then_the_master_loses_nothing_acknowledged(tmp_path):
    env = prepare(tmp_path)
    port = int(env["PORT"])
    process = start(env, workers=3)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/api/v1/sites/demo/config?lang=fi", headers={"Origin": ORIGIN})
    cfg = json.loads(conn.getresponse().read())
    acknowledged: dict[str, str] = {}  # event_id -> consent_id
    unacknowledged: set[str] = set()
    bodies: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    statuses: list[object] = []

    def send(event: str) -> None:
        try:
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            client.request("POST", "/api/v1/consents", body=bodies[event],
                           headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
            response = client.getresponse()
            payload = response.read()
            with lock:
                if response.status == 201:
                    acknowledged[event] = json.loads(payload)["consent_id"]
                    unacknowledged.discard(event)
                else:
                    unacknowledged.add(event)
                    statuses.append((response.status, payload[:200]))
        except (OSError, http.client.HTTPException) as exc:  # a killed worker: reset, cut-off answer
            with lock:
                unacknowledged.add(event)
                statuses.append(repr(exc))

    def load() -> None:
        sent = 0
        while not stop.is_set() and sent < 3000:
            event = str(uuid.uuid4())
            bodies[event] = json.dumps(choice(cfg, event_id=event))
            send(event)
            sent += 1

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _worker_pids(process.pid)
    assert workers, "no gunicorn workers found"
    os.kill(workers[0], signal.SIGKILL)
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _worker_pids(process.pid)  # including the one that replaced the killed worker
    os.kill(process.pid, signal.SIGKILL)
    for pid in workers:  # orphaned workers would exit on their own; do not wait for them
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    process.wait(timeout=10)
    assert len(acknowledged) >= 400

    # Restart on the same database; the widget would retry what was not acknowledged.
    process = start(env, workers=2)
    try:
        for _round in range(5):  # as the widget does on later page loads
            statuses.clear()
            for event in sorted(unacknowledged):
                send(event)
            if not unacknowledged:
                break
        assert not unacknowledged, statuses
    finally:
        process.terminate()
        process.wait(timeout=20)

    store = open_store(env["KEKSI_DATABASE"])
    try:
        rows = {row["event_id"]: row["consent_id"]
                for row in raw_sql(store, "SELECT event_id, consent_id FROM consents")}
        for event, consent_id in acknowledged.items():
            assert rows.get(event) == consent_id, "an acknowledged consent is missing or changed"
        assert len(rows) == len(set(rows.values())) == len(acknowledged), "one row per choice"
        assert store.integrity_check() == "ok"
        result = consents.verify(store)
        assert result.ok, result
    finally:
        store.close()


@contextlib.contextmanager
def refusing_connections(postgresql_url: str, database: str) -> Iterator[None]:
    """The PostgreSQL database at `database` refuses new connections and loses its open ones, as when
    its server is down, restarting or failing over; it takes them again afterwards."""
    name = urlsplit(database).path.lstrip("/")
    with connect(postgresql_url) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
    try:
        yield
    finally:
        with connect(postgresql_url) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def _request(port: int, method: str, path: str, body: str | None = None) -> tuple[int, str | None, bytes]:
    """Status, Retry-After and body of one request; the client waits longer than gunicorn lets a worker run."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
    response = conn.getresponse()
    return response.status, response.headers["Retry-After"], response.read()


def test_a_postgresql_server_out_of_reach_gets_503_and_the_next_choice_is_recorded(
        tmp_path, postgresql_url, fresh_postgresql):
    """Requests while the server cannot be reached are answered 503 with Retry-After, soon enough that
    gunicorn does not cut them off as a hung worker; once it is back, the pools connect again at once."""
    env = prepare(tmp_path, fresh_postgresql)
    port = int(env["PORT"])
    process = start(env, workers=1, log=tmp_path / "gunicorn.log")
    try:
        status, _, payload = _request(port, "GET", "/api/v1/sites/demo/config?lang=fi")
        body = json.dumps(choice(json.loads(payload)))
        with refusing_connections(postgresql_url, fresh_postgresql):
            for method, path, sent in (("GET", "/en/privacy", None), ("POST", "/api/v1/consents", body)):
                status, retry_after, _ = _request(port, method, path, sent)
                assert status == 503 and retry_after, f"{method} {path}"
        status, _, payload = _request(port, "POST", "/api/v1/consents", body)
        assert status == 201, payload
    finally:
        process.terminate()
        process.wait(timeout=20)
    store = open_store(fresh_postgresql)
    try:
        result = consents.verify(store)
        assert result.ok and result.checked == 1, "the choice retried after the outage is recorded once"
    finally:
        store.close()
