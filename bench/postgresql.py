"""Consent posts on PostgreSQL against SQLite at the same durability, and two hosts against one
(issue 13.7), in one run:

    .venv/bin/python bench/postgresql.py     # --posts N --clients N --rounds N --workers N --seed-chain N

1. Starts a private PostgreSQL cluster (scripts/pg-cluster, in a temporary folder; stopped at the end,
   also on error) and makes sure it syncs every commit: fsync, synchronous_commit and full_page_writes
   on, as a production server runs (the run stops if the server does not show them). SQLite syncs
   every commit with `PRAGMA synchronous = FULL`, as Keksi always sets it. Both live on the same disk.
2. Copies the project (without .venv and .git) into three folders, so each gunicorn "host" has its own
   instance folder: one on SQLite, two (host A and host B, two ports) on the same PostgreSQL database.
   Each runs gunicorn with the production config and the same worker count.
3. Each round posts `--posts` consents from `--clients` concurrent clients (each a thread opening a
   connection per post, as gunicorn's sync workers close it) to: SQLite; PostgreSQL host A alone;
   PostgreSQL hosts A and B with the clients split across both. The order rotates each round, so
   whatever else the machine does falls on every side alike. Throughput is posts over the wall time
   of the round; latency is per post, from connect to the last byte of the answer.
4. Checks that every 201 has its row and nothing else was written, and verifies both chains.
5. In this process, through the Flask test client, posts one at a time and times the store's append
   (the transaction that holds the chain's lock, from its BEGIN to the commit returning), and on
   PostgreSQL counts the statements each post sends and the times it waits for the server.
   That per-append time is what bench/notes.md turns into the single-primary ceiling.

Only loopback addresses are used; every server and the cluster this script starts are stopped by it,
by process id. Results go to stdout as a table; bench/README.md's figures are copied from a run by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from run import BIN, HOST, ORIGIN, Server, cpu_seconds, log, machine  # noqa: E402
from keksi.store import open_store  # noqa: E402

DURABILITY = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
ACTIONS = (("accept_all", True, True, True), ("reject_all", False, False, False),
           ("custom", True, False, False))


# -- the cluster and the hosts ---------------------------------------------------------------


@contextlib.contextmanager
def cluster(folder: Path) -> Iterator[str]:
    """A private PostgreSQL cluster that syncs every commit; its libpq URL. Stopped on the way out."""
    script = str(ROOT / "scripts" / "pg-cluster")
    try:  # a start that fails half-way (after the server started) is stopped too
        url = subprocess.run([script, "start", str(folder)], check=True, capture_output=True,
                             text=True).stdout.strip()
        settings = durable(url)
        log(f"PostgreSQL {settings['server_version']}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
        yield url
    finally:
        subprocess.run([script, "stop", str(folder)], capture_output=True)


def durable(url: str) -> dict[str, str]:
    """Turn on every setting that makes a commit survive a power cut, and show that they are on."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in DURABILITY.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the postmaster passes the reload on to the backends
        names = [*DURABILITY, "wal_sync_method", "server_version"]
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}
    wrong = {name: shown[name] for name, value in DURABILITY.items() if shown[name] != value}
    if wrong:
        raise SystemExit(f"the cluster does not sync every commit: {wrong}")
    return shown


def host_folder(work: Path, name: str) -> Path:
    """A copy of the project for one host: its own instance folder, the same code."""
    folder = work / name
    shutil.copytree(ROOT, folder, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "node_modules", "instance", "__pycache__", ".pytest_cache", "mutants"))
    return folder


def prepare(database: str) -> dict[str, str]:
    """Migrate, publish the sample notices and add the demo site; the environment for its hosts."""
    env = dict(os.environ, KEKSI_DATABASE=database, KEKSI_SECRET_KEY="bench",
               KEKSI_RATE_LIMIT="1000000000", FLASK_APP="app.py")
    env.pop("WEB_CONCURRENCY", None)
    for args in (["db", "upgrade"], ["notices", "publish", "--by", "bench"], ["sites", "add", "sites/demo.json"]):
        subprocess.run([str(BIN / "flask"), *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return env


def start_host(name: str, folder: Path, env: dict[str, str], workers: int) -> Server:
    return Server(name, "wsgi:app", env, "/healthz", workers=workers, cwd=folder)


# -- posting ---------------------------------------------------------------------------------


def post_fields(server: Server) -> dict[str, str]:
    """The versions a widget on the demo site would post with, as this host serves them."""
    status, _, body = server.request("GET", "/api/v1/sites/demo/config?lang=fi", headers={"Origin": ORIGIN})
    assert status == 200, body
    cfg = json.loads(body)
    return {"notice_version": cfg["notices"]["privacy"]["version"],
            "cookie_notice_version": cfg["notices"]["cookies"]["version"], "banner_hash": cfg["banner_hash"]}


def consent_body(fields: dict[str, str], n: int) -> str:
    action, preferences, analytics, marketing = ACTIONS[n % len(ACTIONS)]
    return json.dumps({
        "site": "demo", "event_id": str(uuid.uuid4()), "action": action,
        "choices": {"necessary": True, "preferences": preferences, "analytics": analytics, "marketing": marketing},
        "lang": "fi", "ui_surface": "banner", "page": "/pricing", "widget_version": "bench", "gpc": False,
        **fields})


def post_one(server: Server, body: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        conn.request("POST", "/api/v1/consents", body=body,
                     headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def load(hosts: list[Server], fields: list[dict[str, str]], posts: int, clients: int) -> dict[str, Any]:
    """`posts` consents from `clients` threads, client i posting to hosts[i % len(hosts)]; every
    thread stops when the count is reached (bounded)."""
    remaining = iter(range(posts))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def client(i: int) -> None:
        host, host_fields = hosts[i % len(hosts)], fields[i % len(hosts)]
        while True:
            with lock:
                n = next(remaining, None)
            if n is None:
                return
            status, seconds = post_one(host, consent_body(host_fields, n))
            with lock:
                latencies.append(seconds)
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {"rps": posts / wall, "wall": wall, "statuses": statuses, "created": statuses.get(201, 0),
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p90_ms": 1000 * latencies[int(len(latencies) * 0.9)]}


def side_cpu(hosts: list[Server], database: str, postmaster: int) -> tuple[float, float]:
    """CPU seconds so far of the hosts' gunicorn processes, and of PostgreSQL's (none for SQLite,
    which runs inside the workers)."""
    return sum(host.cpu_seconds() for host in hosts), cpu_seconds(postmaster) if "://" in database else 0.0


def count(database: str) -> int:
    with contextlib.closing(open_store(database)) as store:
        return store.count_consents()


def verify(database: str) -> str:
    from keksi import consents
    with contextlib.closing(open_store(database)) as store:
        result = consents.verify(store)
    return f"ok, {result.checked:,} records" if result.ok else f"FAILED: {result.problem}"


# -- one post at a time, in this process ----------------------------------------------------------


class Counter:
    """Counts what a psycopg connection does: statements sent (each `execute`, each row of an
    `executemany`, each BEGIN and COMMIT) and waits, the times the client blocked until the server
    answered (a round trip; an answer that arrives in two parts, as the writes' results and then
    the COMMIT's after the disk sync, counts twice)."""

    def __init__(self) -> None:
        self.statements = self.waits = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import psycopg
        from psycopg._enums import Wait
        originals = {"execute": psycopg.Cursor.execute, "executemany": psycopg.Cursor.executemany,
                     "_exec_command": psycopg.Connection._exec_command, "wait": psycopg.Connection.wait}
        counter = self

        def execute(cursor, query, params=None, **kwargs):
            counter.statements += 1
            return originals["execute"](cursor, query, params, **kwargs)

        def executemany(cursor, query, rows, **kwargs):
            rows = list(rows)
            counter.statements += len(rows)
            return originals["executemany"](cursor, query, rows, **kwargs)

        def exec_command(conn, command, *args, **kwargs):  # BEGIN, COMMIT, ROLLBACK
            counter.statements += 1
            return originals["_exec_command"](conn, command, *args, **kwargs)

        def counting(gen):
            try:
                state = next(gen)
                while True:
                    counter.waits += state == Wait.R
                    state = gen.send((yield state))
            except StopIteration as stop:
                return stop.value

        def wait(conn, gen, *args, **kwargs):
            return originals["wait"](conn, counting(gen), *args, **kwargs)

        psycopg.Cursor.execute, psycopg.Cursor.executemany = execute, executemany
        psycopg.Connection._exec_command, psycopg.Connection.wait = exec_command, wait
        try:
            yield
        finally:
            psycopg.Cursor.execute, psycopg.Cursor.executemany = originals["execute"], originals["executemany"]
            psycopg.Connection._exec_command, psycopg.Connection.wait = originals["_exec_command"], originals["wait"]


def serial_appends(database: str, posts: int) -> dict[str, Any]:
    """Post `posts` consents one at a time through the Flask test client; time each post and the
    store's append inside it (the transaction that holds the chain's lock)."""
    from app import create_app
    from keksi.store.queries import Store
    app = create_app({"DATABASE": database, "SECRET_KEY": "bench", "RATE_LIMIT": 1_000_000_000})
    client = app.test_client()
    cfg = client.get("/api/v1/sites/demo/config?lang=fi", headers={"Origin": ORIGIN}).get_json()
    fields = {"notice_version": cfg["notices"]["privacy"]["version"],
              "cookie_notice_version": cfg["notices"]["cookies"]["version"], "banner_hash": cfg["banner_hash"]}
    appends: list[float] = []
    whole: list[float] = []
    original = Store.append_consent

    def timed(store, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(store, *args, **kwargs)
        finally:
            appends.append(time.perf_counter() - started)

    def post(n: int) -> None:
        started = time.perf_counter()
        answer = client.post("/api/v1/consents", data=consent_body(fields, n),
                             headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        whole.append(time.perf_counter() - started)

    for n in range(20):  # warm-up: caches, the pool's connection
        post(n)
    counter = Counter()
    is_postgresql = database.startswith("postgresql://")
    Store.append_consent = timed
    try:
        with counter.installed() if is_postgresql else contextlib.nullcontext():
            appends.clear(), whole.clear()
            for n in range(posts):
                post(n)
    finally:
        Store.append_consent = original
    if is_postgresql:
        from keksi.store import postgresql
        postgresql.close_pool(database)
    result = {"append_ms": 1000 * statistics.median(appends), "append_p90_ms": 1000 * quantile(appends, 0.9),
              "post_ms": 1000 * statistics.median(whole)}
    if is_postgresql:
        result.update({"statements": counter.statements / posts, "waits": counter.waits / posts})
    return result


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sqlite_db = str(work / "keksi.db")
    with cluster(work / "pg") as pg_url:
        sqlite_env, pg_env = prepare(sqlite_db), prepare(pg_url)
        folders = {name: host_folder(work, name) for name in ("sqlite-host", "host-a", "host-b")}
        servers: list[Server] = []
        try:
            for name, env in (("sqlite-host", sqlite_env), ("host-a", pg_env), ("host-b", pg_env)):
                servers.append(start_host(name, folders[name], env, args.workers))
            lite, host_a, host_b = servers
            postmaster = int((work / "pg" / "data" / "postmaster.pid").read_text().split()[0])
            sides: dict[str, tuple[list[Server], str]] = {
                "SQLite, one host": ([lite], sqlite_db),
                "PostgreSQL, one host": ([host_a], pg_url),
                "PostgreSQL, two hosts": ([host_a, host_b], pg_url),
            }
            fields = {server.name: post_fields(server) for server in servers}
            results: dict[str, list[dict]] = {side: [] for side in sides}
            log(f"warming up; then {args.rounds} rounds of {args.posts:,} posts from {args.clients} clients, "
                f"{args.workers} workers a host")
            for hosts, _ in sides.values():
                load(hosts, [fields[h.name] for h in hosts], 100, args.clients)
            order = list(sides)
            for round_ in range(args.rounds):
                for side in order[round_ % len(order):] + order[:round_ % len(order)]:
                    hosts, database = sides[side]
                    before, cpu = count(database), side_cpu(hosts, database, postmaster)
                    result = load(hosts, [fields[h.name] for h in hosts], args.posts, args.clients)
                    result["rows_added"] = count(database) - before
                    result["host_cpu_ms"], result["db_cpu_ms"] = (
                        1000 * (after - spent) / args.posts
                        for after, spent in zip(side_cpu(hosts, database, postmaster), cpu))
                    result["cpu_ms"] = result["host_cpu_ms"] + result["db_cpu_ms"]
                    results[side].append(result)
                    log(f"  round {round_ + 1}  {side:22} {result['rps']:7.1f} posts/s  p50 {result['p50_ms']:6.1f} ms  "
                        f"p90 {result['p90_ms']:6.1f} ms  cpu {result['host_cpu_ms']:.2f} + {result['db_cpu_ms']:.2f} ms/post  answers {result['statuses']}  rows +{result['rows_added']}")
        finally:
            for server in servers:
                server.stop()
        chains = {"SQLite": verify(sqlite_db), "PostgreSQL": verify(pg_url)}
        log(f"chains: {chains}")
        serial = {"SQLite": serial_appends(sqlite_db, args.serial),
                  "PostgreSQL": serial_appends(pg_url, args.serial)}
        log(f"one post at a time: {serial}")
    return {"results": results, "chains": chains, "serial": serial}


def report(args: argparse.Namespace, found: dict[str, Any], about: dict[str, str]) -> str:
    results = found["results"]
    lite = results["SQLite, one host"]
    one = results["PostgreSQL, one host"]
    two = results["PostgreSQL, two hosts"]
    lines = [f"{about['date']}, commit {about['commit']}, load {about['load']}; {about['nproc']} CPUs "
             f"({about['cpu']}); {args.workers} gunicorn workers a host, {args.clients} clients, "
             f"{args.rounds} rounds of {args.posts:,} posts per side", "",
             "| side | posts/s (median) | posts/s per round | p50 ms | p90 ms | CPU ms per post: hosts + "
             "database | 201s / rows added |", "|---|---:|---|---:|---:|---:|---:|"]
    for side, runs in results.items():
        lines.append(f"| {side} | {statistics.median(r['rps'] for r in runs):,.0f} | "
                     f"{', '.join(format(r['rps'], '.0f') for r in runs)} | "
                     f"{statistics.median(r['p50_ms'] for r in runs):.1f} | "
                     f"{statistics.median(r['p90_ms'] for r in runs):.1f} | "
                     f"{statistics.median(r['host_cpu_ms'] for r in runs):.2f} + "
                     f"{statistics.median(r['db_cpu_ms'] for r in runs):.2f} | "
                     f"{sum(r['created'] for r in runs):,} / {sum(r['rows_added'] for r in runs):,} |")
    pg_ratio = [p["rps"] / s["rps"] for p, s in zip(one, lite)]
    host_ratio = [t["rps"] / o["rps"] for t, o in zip(two, one)]
    lines += ["", "| ratio | median | per round | target |", "|---|---:|---|---|",
              f"| PostgreSQL / SQLite, posts/s | {statistics.median(pg_ratio):.2f} | "
              f"{', '.join(f'{r:.2f}' for r in pg_ratio)} | ≥ 1.0 |",
              f"| two hosts / one host (PostgreSQL), posts/s | {statistics.median(host_ratio):.2f} | "
              f"{', '.join(f'{r:.2f}' for r in host_ratio)} | |",
              f"| PostgreSQL / SQLite, CPU per post (hosts and database) | "
              f"{statistics.median(p['cpu_ms'] / s['cpu_ms'] for p, s in zip(one, lite)):.2f} | | |",
              f"| PostgreSQL / SQLite, the hosts' CPU per post | "
              f"{statistics.median(p['host_cpu_ms'] / s['host_cpu_ms'] for p, s in zip(one, lite)):.2f} | | |",
              f"| PostgreSQL / SQLite, p50 latency | "
              f"{statistics.median(p['p50_ms'] / s['p50_ms'] for p, s in zip(one, lite)):.2f} | | |",
              "", "| one post at a time, in-process | append transaction ms, median | p90 | whole post ms | "
              "statements per post | waits on the server per post |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in found["serial"].items():
        counts = f"{s['statements']:.1f} | {s['waits']:.1f}" if "statements" in s else "– | –"
        lines.append(f"| {name} | {s['append_ms']:.2f} | {s['append_p90_ms']:.2f} | {s['post_ms']:.2f} | {counts} |")
    lines += ["", f"Chains after the run: " + "; ".join(f"{k} {v}" for k, v in found["chains"].items())]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1500, help="posts per side per round")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers a host")
    parser.add_argument("--serial", type=int, default=300, help="posts one at a time, in-process")
    args = parser.parse_args()
    about = machine()
    with tempfile.TemporaryDirectory(prefix="keksi-pg-bench-") as work:
        os.chmod(work, 0o755)  # the cluster runs as the postgres user when this runs as root
        found = run(args, Path(work))
    print(report(args, found, about))


if __name__ == "__main__":
    main()
