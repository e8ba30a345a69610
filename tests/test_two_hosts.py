"""Two hosts, one PostgreSQL, faults (issue 13.6).

Two gunicorn "hosts", each in a folder of its own (so an instance folder of its own) and on a port of
its own, take thousands of choices on one PostgreSQL server, which is a cluster of this test's own
(scripts/pg-cluster), never the one the other tests share, because the test restarts it. Mid-load one
host's master is killed with SIGKILL, and later the server restarts. Clients do what the widget does
behind a load balancer: a 503 or a lost connection is retried with the same event_id, on the other host
if need be, and only a 2xx answer counts as acknowledged. Afterwards every acknowledged choice is stored
once, under the consent_id its answer gave, nothing is stored twice, and `flask consents verify` passes.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from keksi import consents
from keksi.store import open_store

from .conftest import raw_sql
from .ledger import ORIGIN, ROOT, choice
from .test_faults import _worker_pids
from .test_ledger_gunicorn import BIN, free_port, prepare, start

POSTS, THREADS, WORKERS = 2000, 8, 2  # choices at least, client connections, workers per host
MOST_POSTS = 6000  # the clients go on past POSTS until each host has taken choices after the faults
KILL_AT, RESTART_AT = POSTS // 4, POSTS // 2  # acknowledged choices when each fault strikes
ATTEMPTS = 60  # tries per choice, 0.05 s apart at first and then at most 0.5 s: about 25 s in all
PATIENCE = 90  # seconds the test waits for any one step


@pytest.fixture
def own_cluster(postgresql_url: str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL cluster of this test's own, to restart: its folder and URL. Skipped, as every
    PostgreSQL test is, without KEKSI_TEST_POSTGRESQL."""
    folder = tempfile.mkdtemp(prefix="keksi-hosts-")  # not in tmp_path: the server's user must reach it
    started = subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "start", folder],
                             capture_output=True, text=True)
    try:
        if started.returncode != 0:
            pytest.fail(f"scripts/pg-cluster could not start a cluster: {started.stderr}")
        yield folder, started.stdout.strip()
    finally:
        subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "stop", folder], capture_output=True)


@dataclass
class Host:
    """One app host: the project's files linked into a folder of its own, with its own instance
    folder, served by gunicorn on a port of its own."""

    name: str
    folder: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None

    @classmethod
    def make(cls, tmp_path: Path, name: str, env: dict[str, str]) -> "Host":
        folder = tmp_path / name
        (folder / "instance").mkdir(parents=True)
        for entry in ROOT.iterdir():
            if entry.name not in ("instance", ".git"):
                (folder / entry.name).symlink_to(entry)
        return cls(name, folder, dict(env, PORT=str(free_port())))

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    def start(self) -> None:
        self.process = start(self.env, workers=WORKERS, folder=self.folder, log=self.folder / "gunicorn.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Load:
    """Clients posting choices across the hosts, each retried as the widget retries it (same body, same
    event_id) and as a load balancer would send it: to the other host after a failure."""

    hosts: list[Host]
    cfg: dict[str, Any]
    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)  # event_id -> consent_id, host
    unacknowledged: list[str] = field(default_factory=list)
    failures: collections.Counter = field(default_factory=collections.Counter)  # 503, reset, refused…
    unexpected: list[tuple[int, bytes]] = field(default_factory=list)  # anything but 2xx and 503
    retries: int = 0
    enough: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, number: int) -> None:
        event = str(uuid.uuid4())
        body = json.dumps(choice(self.cfg, "accept_all" if number % 2 else "reject_all", event_id=event))
        for attempt in range(ATTEMPTS):
            host = self.hosts[(number + attempt) % len(self.hosts)]
            answer = self._send(host, body)
            if answer is not None:
                with self.lock:
                    self.acknowledged[event] = (answer, host.name)
                return
            with self.lock:
                self.retries += 1
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        with self.lock:
            self.unacknowledged.append(event)

    def _send(self, host: Host, body: str) -> str | None:
        """The consent_id of a 2xx answer, or None (the failure counted)."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=40)
            conn.request("POST", "/api/v1/consents", body=body,
                         headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
            response = conn.getresponse()
            payload = response.read()
            conn.close()
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut off by a dying worker
            with self.lock:
                self.failures[type(exc).__name__] += 1
            return None
        if 200 <= response.status < 300:
            return json.loads(payload)["consent_id"]
        with self.lock:
            self.failures[response.status] += 1
            if response.status != 503:
                self.unexpected.append((response.status, payload[:300]))
        return None

    def run(self) -> threading.Thread:
        """Post from THREADS clients at once: at least POSTS choices, and then on until `enough` is set
        (at most MOST_POSTS). The thread returned ends when every client has."""
        numbers = itertools.count()

        def client() -> None:
            while (number := next(numbers)) < MOST_POSTS and (number < POSTS or not self.enough.is_set()):
                self.post(number)

        threads = [threading.Thread(target=client) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        waiter = threading.Thread(target=lambda: [thread.join() for thread in threads])
        waiter.start()
        return waiter

    def summary(self) -> str:
        with self.lock:
            hosts = collections.Counter(name for _, name in self.acknowledged.values())
            return (f"{len(self.acknowledged) + len(self.unacknowledged)} choices, {len(self.acknowledged)} "
                    f"acknowledged ({dict(hosts)}), {self.retries} retries; failed attempts: {dict(self.failures)}")

    def by(self, host: str) -> set[str]:
        with self.lock:
            return {event for event, (_, name) in self.acknowledged.items() if name == host}


def wait_for(what: str, condition: Callable[[], bool], load: Load) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {PATIENCE} s for {what}: {load.summary()}")
        time.sleep(0.05)


def taking_again(load: Load, host: str, choices: int = 50) -> None:
    """Wait until `host` has acknowledged `choices` more choices than it has now."""
    before = len(load.by(host))
    wait_for(f"host {host} to take choices again", lambda: len(load.by(host)) >= before + choices, load)


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "flask"), *args], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.fixture
def two_hosts(tmp_path: Path, own_cluster: tuple[str, str]) -> Iterator[list[Host]]:
    """Hosts a and b on the cluster's database, migrated (`flask db upgrade`), with the sample notices
    and the demo site, both serving."""
    url = own_cluster[1]
    upgrade = flask(dict(os.environ, KEKSI_DATABASE=url, KEKSI_SECRET_KEY="x", FLASK_APP="app.py"),
                    "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    env = prepare(tmp_path, url)
    hosts = [Host.make(tmp_path, name, env) for name in ("a", "b")]
    try:
        for host in hosts:
            host.start()
        yield hosts
    finally:
        for host in hosts:
            host.stop()


def test_two_hosts_lose_nothing_acknowledged_through_a_killed_master_and_a_database_restart(
        two_hosts, own_cluster):
    a, b = two_hosts
    began = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=10)
    conn.request("GET", "/api/v1/sites/demo/config?lang=fi", headers={"Origin": ORIGIN})
    load = Load(two_hosts, json.loads(conn.getresponse().read()))
    clients = load.run()

    wait_for(f"{KILL_AT} acknowledged choices", lambda: len(load.acknowledged) >= KILL_AT, load)
    orphans = _worker_pids(a.process.pid)
    assert orphans, "no gunicorn workers found on host a"
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=10)
    taken_before_kill = len(load.by("a"))
    # Host a's orphaned workers finish what they were doing and leave (gunicorn.conf.py's post_fork);
    # then host a starts again, as its supervisor would start it, and takes its share again.
    wait_for("host a's orphaned workers to exit", lambda: all(gone(pid) for pid in orphans), load)
    a.start()
    taking_again(load, "a")

    wait_for(f"{RESTART_AT} acknowledged choices", lambda: len(load.acknowledged) >= RESTART_AT, load)
    restart = subprocess.run([str(ROOT / "scripts" / "pg-cluster"), "restart", own_cluster[0]],
                             capture_output=True, text=True)
    assert restart.returncode == 0, restart.stderr
    for host in two_hosts:  # each host's pools connect again
        taking_again(load, host.name)
    load.enough.set()
    clients.join(timeout=PATIENCE)
    assert not clients.is_alive(), "the clients did not finish"
    print(f"\nin {time.monotonic() - began:.0f} s: {load.summary()}")

    assert load.unexpected == [], "faults are answered 503 (or cut off), never anything else"
    assert load.unacknowledged == [], "every choice is acknowledged once the faults are over"
    assert taken_before_kill > 0 and len(load.by("b")) > 0, "both hosts recorded choices"
    assert load.failures, "the faults were felt: some attempts failed and were retried"

    store = open_store(own_cluster[1])
    try:
        rows = raw_sql(store, "SELECT event_id, consent_id FROM consents")
        stored = {row["event_id"]: row["consent_id"] for row in rows}
        assert len(stored) == len(rows), "no choice is recorded twice"
        assert stored == {event: consent for event, (consent, _) in load.acknowledged.items()}, \
            "every acknowledged choice is stored under the consent_id its answer gave, and nothing else"
        assert raw_sql(store, "SELECT pid FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'") == [], \
            "no connection (an orphaned worker's) holds a transaction open"
        result = consents.verify(store)
        assert result.ok and result.checked == len(load.acknowledged), result
    finally:
        store.close()
    verify = flask(a.env, "consents", "verify")
    assert verify.returncode == 0 and f"ok: {len(stored)} records verified" in verify.stdout, verify.stderr
