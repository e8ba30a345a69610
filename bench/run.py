"""Keksi's benchmarks, each against a baseline measured in the same run: one command for all.

    .venv/bin/python bench/run.py            # the default run (about 7 minutes)
    .venv/bin/python bench/run.py --quick    # one 3 s run per HTTP figure, a small ledger (about 1 minute)
    .venv/bin/python bench/run.py --full     # also the ledger at 10,000,000 rows (about 10 GB of disk)

Diagnosis options: --only post|page|304 (repeatable), --workers N, --runs N, --seconds S,
--skip-http, --skip-ledger, --skip-widget, --skip-admin, --keep (keep the scratch databases),
--no-write.

1. Consent posts under gunicorn with the production config (gunicorn.conf.py, 4 workers)
   against bench/baseline_app.py under the same settings, whose endpoint only inserts the
   same row through the store's backend. wrk gives every request a unique body (bench/consent_post.lua).
   After each run the rows added are counted against wrk's 2xx answers.
2. The notice page /fi/privacy against a constant page of the same size, and If-None-Match
   answered with 304 on both sides.
3. The ledger at 100,000 and 1,000,000 rows (10,000,000 with --full): bytes per row,
   `flask consents export` rows/s and peak memory, `flask consents verify` rows/s, and a
   candidate admin figures query with and without an index (bench/ledger.py).
4. Then, as they are run alone: the widget's size beside vanilla-cookieconsent and its time to
   a visible banner (bench/widget_size.py), and the admin figures page at 1,000,000 choices
   (bench/admin_figures.py, 100,000 with --quick). Each prints its own table.

Only 127.0.0.1 is loaded. Every server this script starts is stopped by it, by process id.
The table is printed and written, with the machine and the date, to bench/README.md under
`## Server and ledger`, followed by bench/notes.md (how to read the table, the diagnosis);
--no-write leaves the file alone. Other sections of bench/README.md are left as they are.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import ledger  # noqa: E402
from keksi import consents  # noqa: E402
from keksi.store import open_store  # noqa: E402

BIN = ROOT / ".venv" / "bin"
WORKERS = 4
ORIGIN = "http://localhost:8000"  # one of the demo site's origins
HOST = "127.0.0.1"
SECTION = "## Server and ledger"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the machine ----------------------------------------------------------------------


def _database_version() -> str:
    """The database the figures were measured on (Keksi's default, SQLite), as the store names it."""
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(os.path.join(folder, "version.db"))
        try:
            return store.backend.version()
        finally:
            store.close()


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        kib = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    wrk = (subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
           if shutil.which("wrk") else "no wrk")  # --skip-http runs without it
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "keksi", "app.py",
                            "wsgi.py", "gunicorn.conf.py", "templates"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "database": _database_version(),
        "wrk": wrk,
        "commit": commit + (" with uncommitted app changes" if dirty else ""),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


# -- servers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(parent: int) -> float:
    """User + system CPU so far of the process `parent` and its children alive now (a gunicorn
    master and its workers, a PostgreSQL postmaster and its backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        if pid == parent or ppid == parent:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


class Server:
    """gunicorn with the production config and WORKERS workers, on a free loopback port."""

    def __init__(self, name: str, app: str, env: dict[str, str], ready_path: str, extra: list[str] = (),
                 workers: int = WORKERS, cwd: Path = ROOT):
        self.name, self.port = name, free_port()
        self.env = dict(env, HOST=HOST, PORT=str(self.port))
        self.stderr = tempfile.TemporaryFile()
        # The production config as is (its access log included, to stdout, discarded here);
        # only the worker count is fixed, the same for both sides.
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(cwd / "gunicorn.conf.py"), "--workers", str(workers),
             "--no-control-socket", "--bind", f"{HOST}:{self.port}", *extra, app],
            cwd=cwd, env=self.env, stdout=subprocess.DEVNULL, stderr=self.stderr,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.request("GET", ready_path)[0] < 500:
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                self.stderr.seek(0)
                raise RuntimeError(f"{name} did not start:\n{self.stderr.read().decode()[-3000:]}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User + system CPU of the gunicorn master and its workers so far (workers alive now)."""
        return cpu_seconds(self.process.pid)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the gunicorn master we started, by its pid
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only our processes
                self.process.wait(timeout=10)


# -- wrk --------------------------------------------------------------------------------


def wrk(url: str, seconds: float, connections: int, threads: int, script: Path,
        headers: dict[str, str] | None = None, args: list[str] | None = None) -> dict:
    assert url.startswith(f"http://{HOST}:"), "only the loopback address may be loaded"
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",  # wrk takes whole seconds
               "--timeout", "10s", "-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if args:
        command += ["--", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    # wrk counts answers with a status of 400 or more as errors; none of these routes redirects,
    # so everything below that is a 2xx (or the 304 asked for).
    result["ok"] = result["requests"] - result["status"]
    return result


def combine(parts: list[dict]) -> dict:
    """One run from its slices: summed counts, rate over the summed time, median slice percentiles."""
    total = {key: sum(p[key] for p in parts) for key in
             ("requests", "duration_us", "connect", "read", "write", "status", "timeout", "ok", "cpu_s")}
    if "rows_added" in parts[0]:
        total["rows_added"] = sum(p["rows_added"] for p in parts)
    total["rps"] = total["requests"] / (total["duration_us"] / 1e6)
    total["cpu_ms"] = total["cpu_s"] * 1000 / max(total["requests"], 1)
    for key in ("p50_us", "p90_us", "p99_us"):
        total[key] = statistics.median(p[key] for p in parts)
    return total


def settled_count(database: str) -> int:
    """The row count once the posts still in flight when wrk stopped have committed."""
    last, deadline = count_rows(database), time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.15)
        now = count_rows(database)
        if now == last:
            return now
        last = now
    return last


def count_rows(database: str) -> int:
    store = open_store(database, 30_000)
    try:
        return store.count_consents()
    finally:
        store.close()


# -- the HTTP benchmarks -------------------------------------------------------------


def http_benchmarks(work: Path, runs: int, seconds: float, connections: int, threads: int,
                    only: list[str] | None = None) -> dict:
    keksi_db = str(work / "keksi.db")
    base_db = str(work / "baseline.db")
    env = dict(os.environ, KEKSI_DATABASE=keksi_db, KEKSI_SECRET_KEY="bench",
               KEKSI_RATE_LIMIT="1000000000", FLASK_APP="app.py")
    env.pop("WEB_CONCURRENCY", None)
    for args in (["notices", "publish", "--by", "bench"], ["sites", "add", "sites/demo.json"]):
        subprocess.run([str(BIN / "flask"), *args], cwd=ROOT, env=env, check=True, capture_output=True)

    servers: list[Server] = []
    try:
        keksi = Server("keksi", "wsgi:app", env, "/api/v1/notices/privacy?lang=fi")
        servers.append(keksi)
        status, _, body = keksi.request("GET", "/api/v1/sites/demo/config?lang=fi", headers={"Origin": ORIGIN})
        assert status == 200, body
        cfg = json.loads(body)
        notice_version, banner_hash = cfg["notices"]["privacy"]["version"], cfg["banner_hash"]
        cookie_version = cfg["notices"]["cookies"]["version"]
        status, headers, page = keksi.request("GET", "/fi/privacy")
        assert status == 200, page[:300]
        etag = headers["etag"]
        status, _, _ = keksi.request("GET", "/fi/privacy", headers={"If-None-Match": etag})
        assert status == 304, f"/fi/privacy answered If-None-Match with {status}, not 304"
        # One real post through the same script's body shape, to fail early and clearly.
        probe = {"site": "demo", "event_id": "00000000-0000-4000-8000-000000000000", "action": "accept_all",
                 "choices": {"necessary": True, "preferences": True, "analytics": True, "marketing": True},
                 "notice_version": notice_version, "cookie_notice_version": cookie_version,
                 "banner_hash": banner_hash, "lang": "fi",
                 "ui_surface": "banner", "page": "/pricing", "widget_version": "bench", "gpc": False}
        status, _, body = keksi.request("POST", "/api/v1/consents", json.dumps(probe),
                                        {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
        assert status == 201, body

        store = open_store(base_db)  # the same consents table, columns and indexes as Keksi's
        store.migrate()
        store.close()
        base_env = dict(os.environ, BASELINE_DATABASE=base_db, BASELINE_PAGE_BYTES=str(len(page)))
        base_env.pop("WEB_CONCURRENCY", None)
        # From the project folder too, so the config's logger class (keksi.accesslog) loads alike.
        baseline = Server("baseline", "baseline_app:app", base_env, "/page", ["--pythonpath", str(BENCH)])
        servers.append(baseline)
        status, _, constant = baseline.request("GET", "/page")
        assert status == 200 and len(constant) == len(page)
        base_etag = baseline.request("GET", "/page")[1]["etag"]

        post_args = lambda: [secrets.token_hex(4), notice_version, banner_hash, ORIGIN, cookie_version]  # noqa: E731
        scenarios = {
            "post": {
                "keksi": lambda s: wrk(keksi.url("/api/v1/consents"), s, connections, threads,
                                       BENCH / "consent_post.lua", args=post_args()),
                "baseline": lambda s: wrk(baseline.url("/consents"), s, connections, threads,
                                          BENCH / "consent_post.lua", args=post_args() + ["/consents"]),
            },
            "page": {
                "keksi": lambda s: wrk(keksi.url("/fi/privacy"), s, connections, threads, BENCH / "get.lua"),
                "baseline": lambda s: wrk(baseline.url("/page"), s, connections, threads, BENCH / "get.lua"),
            },
            "304": {
                "keksi": lambda s: wrk(keksi.url("/fi/privacy"), s, connections, threads, BENCH / "get.lua",
                                       headers={"If-None-Match": etag}),
                "baseline": lambda s: wrk(baseline.url("/page"), s, connections, threads, BENCH / "get.lua",
                                          headers={"If-None-Match": base_etag}),
            },
        }
        scenarios = {name: sides for name, sides in scenarios.items() if not only or name in only}
        databases = {"keksi": keksi_db, "baseline": base_db}
        servers_by_side = {"keksi": keksi, "baseline": baseline}
        log(f"warming up ({len(page):,}-byte page, {WORKERS} workers each, wrk -t{threads} -c{connections})")
        for scenario in scenarios.values():
            for side in scenario.values():
                side(1)
        results: dict = {name: {"keksi": [], "baseline": []} for name in scenarios}
        integrity: dict = {"keksi": [], "baseline": []}
        # Each run of `seconds` per side is cut into slices of about 2 s, alternating between
        # the sides, so that whatever else the machine does at the time falls on both alike.
        slices = max(1, round(seconds / 2))
        for run in range(runs):
            for name, scenario in scenarios.items():
                parts: dict = {"keksi": [], "baseline": []}
                for part in range(slices):
                    for side in (("keksi", "baseline") if (run + part) % 2 == 0 else ("baseline", "keksi")):
                        before = count_rows(databases[side]) if name == "post" else 0
                        cpu = servers_by_side[side].cpu_seconds()
                        result = scenario[side](seconds / slices)
                        result["cpu_s"] = servers_by_side[side].cpu_seconds() - cpu
                        if name == "post":
                            result["rows_added"] = settled_count(databases[side]) - before
                        parts[side].append(result)
                for side in ("keksi", "baseline"):
                    result = combine(parts[side])
                    if name == "post":
                        # Every acknowledged post has its row: rows >= 2xx. Rows beyond the 2xx are
                        # posts in flight when wrk stopped (at most one per connection per slice)
                        # or timed out: committed, never read.
                        slack = result["rows_added"] - result["ok"]
                        result["rows_ok"] = 0 <= slack <= slices * connections + result["timeout"] + result["read"]
                        integrity[side].append(result)
                        extra = (f"2xx {result['ok']:,}  non-2xx {result['status']}  rows +{result['rows_added']:,}  "
                                 f"{'ok' if result['rows_ok'] else 'MISMATCH'}")
                    else:
                        extra = f"errors {result['status'] + result['connect'] + result['read'] + result['timeout']}"
                    log(f"  run {run + 1} {name:4} {side:8} {result['rps']:8,.0f} req/s  "
                        f"cpu {result['cpu_ms']:5.2f} ms/req  "
                        f"p50 {result['p50_us'] / 1000:6.1f} ms  p99 {result['p99_us'] / 1000:6.1f} ms  {extra}")
                    results[name][side].append(result)
    finally:
        for server in servers:
            server.stop()

    store = open_store(keksi_db)
    try:
        verified = consents.verify(store)
        integrity_check = store.integrity_check()
    finally:
        store.close()
    log(f"  Keksi's chain after the runs: {'ok' if verified.ok else verified.problem}, "
        f"{verified.checked:,} records; integrity_check {integrity_check}")
    return {"results": results, "integrity": integrity, "page_bytes": len(page),
            "chain_ok": verified.ok, "chain_records": verified.checked, "integrity_check": integrity_check}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- the table ------------------------------------------------------------------------


def build_rows(http: dict | None, ledgers: list[dict] | None) -> list[list[str]]:
    rows: list[list[str]] = []

    def add(figure, keksi, base, ratio, target="", met=None):
        rows.append([figure, keksi, base, ratio, target, "" if met is None else ("yes" if met else "**no**")])

    if http:
        r = http["results"]
        for name, label in (("post", "consent POST, requests/s"), ("page", "notice page /fi/privacy, requests/s"),
                            ("304", "If-None-Match → 304, requests/s")):
            if name not in r:
                continue
            k = median([x["rps"] for x in r[name]["keksi"]])
            b = median([x["rps"] for x in r[name]["baseline"]])
            add(label, f"{k:,.0f}", f"{b:,.0f}", f"{k / b:.2f}", "≥ 0.90", k / b >= 0.9)
            k = median([x["cpu_ms"] for x in r[name]["keksi"]])
            b = median([x["cpu_ms"] for x in r[name]["baseline"]])
            add(f"{label.split(',')[0]}, server CPU ms per request (ratio = baseline/Keksi)",
                f"{k:.2f}", f"{b:.2f}", f"{b / k:.2f}")
            if name in ("post", "page"):
                for pct in ("p50", "p99"):
                    k = median([x[f"{pct}_us"] for x in r[name]["keksi"]]) / 1000
                    b = median([x[f"{pct}_us"] for x in r[name]["baseline"]]) / 1000
                    add(f"{label.split(',')[0]}, {pct} latency ms", f"{k:.1f}", f"{b:.1f}", f"{k / b:.2f}")
    if http and http["integrity"]["keksi"]:
        k_ok = sum(x["ok"] for x in http["integrity"]["keksi"])
        k_rows = sum(x["rows_added"] for x in http["integrity"]["keksi"])
        b_ok = sum(x["ok"] for x in http["integrity"]["baseline"])
        b_rows = sum(x["rows_added"] for x in http["integrity"]["baseline"])
        all_ok = all(x["rows_ok"] for side in http["integrity"].values() for x in side)
        add("consent posts: 2xx answers / rows added", f"{k_ok:,} / {k_rows:,}", f"{b_ok:,} / {b_rows:,}", "",
            "rows ≥ 2xx", all_ok)
        non2xx = sum(x["status"] for x in http["integrity"]["keksi"])
        add("consent posts: non-2xx answers", f"{non2xx:,}",
            f"{sum(x['status'] for x in http['integrity']['baseline']):,}", "", "0", non2xx == 0)
        add("Keksi's chain verifies after the load", f"{http['chain_records']:,} records",
            "", "", "ok", http["chain_ok"] and http["integrity_check"] == "ok")
    if ledgers and len(ledgers) >= 2:
        small = ledgers[0]
        for big in ledgers[1:]:
            sz = f"{human(big['rows'])} vs {human(small['rows'])} rows"
            add(f"ledger bytes per row ({sz})", f"{big['bytes_per_row']:,.0f}", f"{small['bytes_per_row']:,.0f}",
                f"{big['bytes_per_row'] / small['bytes_per_row']:.2f}")
            add(f"export CSV rows per CPU-second ({sz})", f"{big['export_rows_per_cpu_s']:,.0f}",
                f"{small['export_rows_per_cpu_s']:,.0f}",
                f"{big['export_rows_per_cpu_s'] / small['export_rows_per_cpu_s']:.2f}")
            add(f"export CSV rows/s, wall ({sz})", f"{big['export_rows_per_s']:,.0f}",
                f"{small['export_rows_per_s']:,.0f}", f"{big['export_rows_per_s'] / small['export_rows_per_s']:.2f}")
            ratio = big["export_rss_kib"] / small["export_rss_kib"]
            add(f"export peak RSS MiB ({sz})", f"{big['export_rss_kib'] / 1024:,.0f}",
                f"{small['export_rss_kib'] / 1024:,.0f}", f"{ratio:.2f}", "≤ 1.10 (flat)", ratio <= 1.10)
            add(f"verify rows per CPU-second ({sz})", f"{big['verify_rows_per_cpu_s']:,.0f}",
                f"{small['verify_rows_per_cpu_s']:,.0f}",
                f"{big['verify_rows_per_cpu_s'] / small['verify_rows_per_cpu_s']:.2f}")
            add(f"verify rows/s, wall ({sz})", f"{big['verify_rows_per_s']:,.0f}", f"{small['verify_rows_per_s']:,.0f}",
                f"{big['verify_rows_per_s'] / small['verify_rows_per_s']:.2f}")
            ratio = big["verify_rss_kib"] / small["verify_rss_kib"]
            add(f"verify peak RSS MiB ({sz})", f"{big['verify_rss_kib'] / 1024:,.0f}",
                f"{small['verify_rss_kib'] / 1024:,.0f}", f"{ratio:.2f}")
            for key, label in (("site_recorded_at", "(site, recorded_at) index"), ("scan", "no index"),
                               ("covering", "covering index"), ("rollup", "daily figures tables")):
                if key not in big["figures"] or key not in small["figures"]:
                    continue
                k, b = big["figures"][key] * 1000, small["figures"][key] * 1000
                add(f"figures query ms, {label} ({sz})", f"{k:,.1f}", f"{b:,.1f}", f"{k / b:.1f}")
    return rows


def human(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (
        f"{n // 1000}k" if n % 1000 == 0 else str(n))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ledger_table(ledgers: list[dict]) -> str:
    header = ["rows"] + [f"{l['rows']:,}" for l in ledgers]
    spec = [
        ("generated in, s", lambda l: f"{l['generate_s']:.0f}"),
        ("file bytes per row", lambda l: f"{l['bytes_per_row']:,.0f}"),
        ("… consents table", lambda l: f"{l['space'].get('consents table', 0):,.0f}"),
        ("… its 5 indexes", lambda l: f"{l['space'].get('consents indexes', 0):,.0f}"),
        ("… consent_chain", lambda l: f"{l['space'].get('consent_chain', 0):,.0f}"),
        ("… daily figures tables", lambda l: f"{l['space'].get('daily figures', 0):,.0f}"),
        ("CLI start-up (export of 0 rows): s / CPU s / peak RSS MiB",
         lambda l: f"{l['cli_startup_s']:.2f} / {l['cli_startup_cpu_s']:.2f} / {l['cli_startup_rss_kib'] / 1024:.0f}"),
        ("export --format csv, s", lambda l: f"{l['export_s']:.1f}"),
        ("export rows/s, wall (start-up subtracted)", lambda l: f"{l['export_rows_per_s']:,.0f}"),
        ("export rows per CPU-second (start-up subtracted)", lambda l: f"{l['export_rows_per_cpu_s']:,.0f}"),
        ("export peak RSS, MiB", lambda l: f"{l['export_rss_kib'] / 1024:.0f}"),
        ("verify, s", lambda l: f"{l['verify_s']:.1f}"),
        ("verify rows/s, wall (start-up subtracted)", lambda l: f"{l['verify_rows_per_s']:,.0f}"),
        ("verify rows per CPU-second (start-up subtracted)", lambda l: f"{l['verify_rows_per_cpu_s']:,.0f}"),
        ("verify peak RSS, MiB", lambda l: f"{l['verify_rss_kib'] / 1024:.0f}"),
        ("figures query: rows in the 30 days", lambda l: f"{l['figures']['rows_in_range']:,}"),
        ("… no index (full scan), ms", lambda l: f"{l['figures']['scan'] * 1000:,.1f}"),
        ("… existing (site, recorded_at) index, ms", lambda l: f"{l['figures']['site_recorded_at'] * 1000:,.1f}"),
        ("… covering index (site, recorded_at, action, choices), ms",
         lambda l: f"{l['figures']['covering'] * 1000:,.1f}"),
        ("… the store's daily figures tables (daily_actions + daily_categories), ms",
         lambda l: f"{l['figures']['rollup'] * 1000:,.2f}" if "rollup" in l["figures"] else "n/a"),
        ("… covering index: build s / extra bytes per row",
         lambda l: f"{l['figures']['covering_build_s']:.1f} / {l['figures']['covering_bytes'] / l['rows']:.0f}"),
    ]
    return markdown_table(header, [[label] + [fn(l) for l in ledgers] for label, fn in spec])


# -- README ---------------------------------------------------------------------------


README_INTRO = """# Benchmarks

Keksi's benchmarks, each figure beside a baseline measured in the same run on the same machine.
Each section says how to run its part and records the latest results with the machine and the date.
"""


def write_readme(section: str) -> None:
    path = BENCH / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else README_INTRO
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        if not text.endswith("\n"):
            text += "\n"
        text += "\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(text, encoding="utf-8")


def section_text(info: dict, options: argparse.Namespace, summary: str, ledger_md: str | None,
                 http: dict | None, ledgers: list[dict] | None, notes: str) -> str:
    out = [SECTION, ""]
    out.append("`.venv/bin/python bench/run.py` (`--quick` for a short run, `--full` adds the ledger at "
               "10,000,000 rows). What it does and why is in the docstrings of `bench/run.py`, "
               "`bench/baseline_app.py` and `bench/ledger.py`.")
    out.append("")
    out.append(f"Last run: {info['date']}, `{' '.join(options.argv) or '(defaults)'}`, commit {info['commit']}. "
               f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, Python {info['python']}, "
               f"{info['database']}, {info['wrk']} on the same machine. Load average (1/5/15 min) "
               f"at the start {info['load']}, at the end {' / '.join(f'{x:.1f}' for x in os.getloadavg())}: "
               "other work shares this machine, which is why both sides run in alternating slices.")
    out.append("")
    if http:
        out.append(f"HTTP: gunicorn {WORKERS} sync workers with `gunicorn.conf.py` for both sides (access log "
                   f"on, as in production); wrk -t{options.threads} -c{options.connections}, "
                   f"median of {options.runs} runs of {options.seconds:g} s per side, each cut into ~2 s slices "
                   "alternating between the sides (rates over the summed slices, latency the median slice's); "
                   f"notice page {http['page_bytes']:,} bytes; KEKSI_RATE_LIMIT=1000000000. "
                   "For the ledger rows, *Keksi* is the larger ledger, *baseline* the smaller one and "
                   "*ratio* the growth.")
        out.append("")
    out.append(summary)
    out.append("")
    if ledger_md:
        out.append("### The ledger by size")
        out.append("")
        out.append("Rows spread over 365 days for the demo site; the figures query covers the last 30 days "
                   "(choices per day per action, and the opt-in rate per category with `json_extract`), "
                   "median of 3, warm cache.")
        out.append("")
        out.append(ledger_md)
        out.append("")
    if notes:
        out.append(notes.rstrip())
        out.append("")
    return "\n".join(out)


NOTES_FILE = BENCH / "notes.md"


def main() -> int:
    global WORKERS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 3 s run per figure; a ledger of 10k and 100k")
    parser.add_argument("--full", action="store_true", help="also the ledger at 10,000,000 rows")
    parser.add_argument("--runs", type=int, help="runs per HTTP figure (default 3, --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 8, --quick 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=WORKERS, help=f"gunicorn workers, both sides (default {WORKERS})")
    parser.add_argument("--only", choices=["post", "page", "304"], action="append",
                        help="run only these HTTP figures (diagnosis; repeatable)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-ledger", action="store_true")
    parser.add_argument("--skip-widget", action="store_true", help="do not run bench/widget_size.py")
    parser.add_argument("--skip-admin", action="store_true", help="do not run bench/admin_figures.py")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/README.md")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    options = parser.parse_args()
    options.argv = sys.argv[1:]
    WORKERS = max(1, min(options.workers, 16))
    options.runs = options.runs or (1 if options.quick else 3)
    options.seconds = options.seconds or (3 if options.quick else 8)
    options.runs = max(1, min(options.runs, 10))
    options.seconds = max(1.0, min(options.seconds, 60.0))
    if not shutil.which("wrk") and not options.skip_http:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    info = machine()
    log(f"{info['date']}: {info['nproc']} CPUs ({info['cpu']}), {info['ram']}")
    work = Path(tempfile.mkdtemp(prefix="keksi-bench-"))
    http = ledgers = None
    started = time.monotonic()
    try:
        if not options.skip_http:
            log("== HTTP: Keksi and the baseline under gunicorn")
            http = http_benchmarks(work, options.runs, options.seconds, options.connections, options.threads,
                                   options.only)
        if not options.skip_ledger:
            sizes = [10_000, 100_000] if options.quick else [100_000, 1_000_000]
            if options.full:
                sizes.append(10_000_000)
            ledgers = []
            end = datetime.now(timezone.utc)
            for rows in sizes:
                log(f"== the ledger at {rows:,} rows")
                path = str(work / f"ledger-{rows}.db")
                generated = ledger.generate(path, rows, end,
                                            log=lambda m, big=rows >= 1_000_000: log(m) if big else None)
                result = ledger.measure(path, rows, end, log=log)
                result["generate_s"] = generated
                ledgers.append(result)
                if not options.keep:
                    for suffix in ("", "-wal", "-shm", ".migrate-lock"):
                        if os.path.exists(path + suffix):
                            os.remove(path + suffix)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"scratch databases kept in {work}")

    rows = build_rows(http, ledgers)
    summary = markdown_table(["figure", "Keksi", "baseline", "ratio", "target", "met?"], rows)
    ledger_md = ledger_table(ledgers) if ledgers else None
    print()
    print(summary)
    if ledger_md:
        print()
        print(ledger_md)
    if ledgers:
        print()
        for l in ledgers:
            print(f"{l['rows']:,} rows: export plan: {l['export_plan']}; figures plans: "
                  f"{l['figures']['site_recorded_at_plan']} | {l['figures']['covering_plan']}")
    if not options.no_write:
        notes = NOTES_FILE.read_text(encoding="utf-8") if NOTES_FILE.exists() else ""
        write_readme(section_text(info, options, summary, ledger_md, http, ledgers, notes))
        log("wrote bench/README.md (## Server and ledger)")
    status = 0
    for skip, script, args in ((options.skip_widget, "widget_size.py", ["--runs", "11" if options.quick else "31"]),
                               (options.skip_admin, "admin_figures.py",
                                ["100000" if options.quick else "1000000"] + (["--no-write"] if options.no_write else []))):
        if not skip:
            log(f"== bench/{script} {' '.join(args)}")
            status |= subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT).returncode
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
