"""The consent ledger at scale: generate N rows fast, then measure what auditors and admins run.

Used by bench/run.py; also runnable alone:

    .venv/bin/python bench/ledger.py 100000 /tmp/ledger.db

Rows go straight into a fresh database made by Keksi's own migrations, in large executemany
batches. Each row's content_hash is computed with keksi.consents.content_hash and its chain
link with keksi.store.chain_hash, so `flask consents verify` passes on the result.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keksi import notices, sites  # noqa: E402
from keksi.clock import record_text  # noqa: E402
from keksi.consents import HASHED_COLUMNS, content_hash  # noqa: E402
from keksi.store import GENESIS_HASH, Store, chain_hash, open_store  # noqa: E402
from keksi.store.migrations.sqlite import migrations as store_migrations  # noqa: E402

SITE = "demo"
DAYS = 365  # the rows span this many days, whatever their number: more rows = busier days
BATCH = 100_000
FIGURES_DAYS = 30
INDEX_NAME = "bench_consents_figures"
LEDGER_MIGRATION = "0003_sites_and_consents"

# The candidate admin figures query: choices per day per action, and opt-in per category,
# for one site over a range of days.
FIGURES_BY_DAY = (
    "SELECT substr(recorded_at, 1, 10) AS day, action, count(*) AS n FROM consents {hint}"
    "WHERE site = :site AND recorded_at >= :since AND recorded_at < :until "
    "GROUP BY day, action ORDER BY day, action")
FIGURES_OPT_IN = (
    "SELECT count(*) AS n, sum(json_extract(choices, '$.preferences')) AS preferences, "
    "sum(json_extract(choices, '$.analytics')) AS analytics, "
    "sum(json_extract(choices, '$.marketing')) AS marketing FROM consents {hint}"
    "WHERE site = :site AND recorded_at >= :since AND recorded_at < :until")

ACTIONS = ["accept_all"] * 55 + ["reject_all"] * 25 + ["custom"] * 17 + ["withdraw"] * 3
LANGS = ["fi"] * 7 + ["sv"] + ["en"] * 2
SURFACES = ["banner"] * 85 + ["panel"] * 12 + ["reopened"] * 3
PAGES = ["/", "/pricing", "/blog", "/contact", "/about", "/careers", "/docs/start", "/docs/api",
         "/fi/hinnat", "/sv/priser", "/en/pricing", "/login", "/signup", "/blog/2026/keksi"]
AGENTS = ["Chrome 156 / Windows", "Chrome 156 / Android", "Safari 19 / iOS", "Firefox 150 / Linux",
          "Edge 156 / Windows", "Safari 19 / macOS", "Samsung 29 / Android", None]
CHOICES = {
    (p, a, m): json.dumps({"necessary": True, "preferences": p, "analytics": a, "marketing": m},
                          separators=(",", ":"))
    for p in (True, False) for a in (True, False) for m in (True, False)
}
COLUMNS = ("seq",) + HASHED_COLUMNS + ("content_hash",)
INSERT_CONSENT = f"INSERT INTO consents ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
INSERT_LINK = "INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) VALUES (?, ?, ?, ?)"


def time_range(end: datetime) -> tuple[datetime, datetime]:
    return end - timedelta(days=DAYS), end


def generate(path: str, rows: int, end: datetime, log=print) -> float:
    """A fresh ledger of `rows` consents for the demo site; returns the seconds it took."""
    started = time.perf_counter()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    store = open_store(path)
    # The schema up to the consent ledger (0003); the rows go in, then the later migrations
    # run over them, so whatever they derive from consents (the daily figures) is derived
    # by Keksi's own code, as on an upgraded server.
    later = [m.name for m in store_migrations.pending(store.backend.db) if m.name > LEDGER_MIGRATION]
    store_migrations.apply(store.backend.db, stop_before=later or None)
    store.close()

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")  # 1 GB: the random-key indexes stay in memory
    rng = random.Random(20260409)
    start, _ = time_range(end)
    step_us = DAYS * 86400 * 1_000_000 / rows
    start_us = int(start.timestamp() * 1_000_000)
    # Records refer to the sample notices and to banners stored after the rows (`_texts`), by
    # their real hashes, as `flask consents verify` checks.
    notice_hashes = {(path.name[:10], path.name[11:13]): notices.read_source(path, ROOT / "notices").sha256
                     for path in (ROOT / "notices" / "privacy").glob("*.md")}
    banners = {lang: sites.canonical_json({"bench banner": lang}) for lang in ("fi", "sv", "en")}
    ips = [f"198.51.{i}.0" for i in range(256)] + [f"2001:db8:{i:x}::" for i in range(64)]
    prev = GENESIS_HASH
    seq = 0
    subjects: list[str] = []
    while seq < rows:
        count = min(BATCH, rows - seq)
        rand = os.urandom(count * 48).hex()
        consent_rows, links = [], []
        for i in range(count):
            seq += 1
            r = rand[i * 96:(i + 1) * 96]
            recorded = datetime.fromtimestamp((start_us + int(seq * step_us)) / 1_000_000, timezone.utc)
            action = ACTIONS[seq % 100]
            if action == "accept_all":
                choice = (True, True, True)
            elif action == "custom":
                choice = (seq % 2 == 0, seq % 3 == 0, seq % 7 == 0)
            else:
                choice = (False, False, False)
            if subjects and seq % 5 == 0:  # one in five is a returning visitor
                subject = subjects[rng.randrange(len(subjects))]
            else:
                subject = r[64:96]
                if len(subjects) < 100_000:
                    subjects.append(subject)
            old = seq % 10 < 3
            record = {
                "consent_id": r[:32],
                "event_id": f"{r[32:40]}-{r[40:44]}-4{r[45:48]}-8{r[49:52]}-{r[52:64]}",
                "subject_id": subject,
                "site": SITE,
                "action": action,
                "choices": CHOICES[choice],
                "ui_surface": SURFACES[seq % 100],
                "lang": LANGS[seq % 10],
                "page": PAGES[seq % len(PAGES)],
                "notice_slug": "privacy",
                "notice_version": "2025-03-01" if old else "2026-04-09",
                "notice_sha256": notice_hashes[("2025-03-01" if old else "2026-04-09", LANGS[seq % 10])],
                "banner_hash": sites.banner_hash(json.loads(banners[LANGS[seq % 10]])),
                "widget_version": "1.0.0",
                "ip": ips[seq % len(ips)],
                "user_agent": AGENTS[seq % len(AGENTS)],
                "gpc": int(seq % 20 == 0),
                "recorded_at": record_text(recorded),
                "valid_until": record_text(recorded + timedelta(days=365)),
            }
            digest = content_hash(record)
            row_hash = chain_hash(prev, digest)
            consent_rows.append((seq, *(record[c] for c in HASHED_COLUMNS), digest))
            links.append((seq, digest, prev, row_hash))
            prev = row_hash
        conn.execute("BEGIN")
        conn.executemany(INSERT_CONSENT, consent_rows)
        conn.executemany(INSERT_LINK, links)
        conn.execute("COMMIT")
        log(f"  generated {seq:,} / {rows:,} rows ({time.perf_counter() - started:.0f} s)")
    conn.close()
    store = open_store(path)
    if later:
        log(f"  applying the later migrations over the rows: {', '.join(later)}")
        store.migrate()
    _texts(store, banners)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def _texts(store: Store, banners: dict[str, str]) -> None:
    """The site, the sample notices and the banners the rows refer to, saved as Keksi saves them."""
    definition = json.loads((ROOT / "sites" / "demo.json").read_text(encoding="utf-8"))
    store.save_site(sites.validate(definition, ["fi", "sv", "en"]), "bench", create=True)
    notices.publish(ROOT / "notices", ["fi", "sv", "en"], store, "bench")
    for lang, content in banners.items():
        store.remember_banner(sites.banner_hash(json.loads(content)), SITE, lang, content)


def file_bytes(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def space_by_object(path: str) -> dict[str, int]:
    """Bytes per table and index (SQLite's dbstat), grouped as consents / indexes / chain / other."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    groups = {"consents table": 0, "consents indexes": 0, "consent_chain": 0, "daily figures": 0, "other": 0}
    for name, size in rows:
        if name == "consents":
            groups["consents table"] += size
        elif name.startswith(("idx_consents", "sqlite_autoindex_consents", INDEX_NAME)):
            groups["consents indexes"] += size
        elif name == "consent_chain":
            groups["consent_chain"] += size
        elif "consent_daily" in name:
            groups["daily figures"] += size
        else:
            groups["other"] += size
    return groups


def _flask(args: list[str], database: str) -> dict:
    """Run `flask --app app ARGS` on `database`: its wall seconds, CPU seconds, exit code, peak RSS.

    The peak RSS and CPU come from GNU time (%M, %U, %S), not from this process's getrusage:
    a child that Python forks inherits this (large) process's RSS high-water mark across exec
    on Linux, so RUSAGE_CHILDREN would report the generator's memory, not the command's.
    CPU seconds matter because this machine is shared: wall time includes waiting for a CPU.
    """
    # UTC: migration 0004 derived the daily figures of the generated rows by UTC day, and verify
    # recomputes them by day in KEKSI_TIMEZONE.
    env = dict(os.environ, KEKSI_DATABASE=database, KEKSI_SECRET_KEY="bench", FLASK_APP="app.py",
               KEKSI_TIMEZONE="UTC")
    with tempfile.NamedTemporaryFile(suffix=".time") as measured, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", measured.name,
                                  str(ROOT / ".venv" / "bin" / "flask"), *args], cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
        seconds = time.perf_counter() - started
        err.seek(0)
        tail = err.read().decode(errors="replace")[-300:]
        fields = Path(measured.name).read_text().split()[-3:]
    try:
        rss, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
    except (ValueError, IndexError):
        rss, cpu = -1, float("nan")
    return {"s": seconds, "cpu_s": cpu, "code": process.returncode, "rss_kib": rss, "stderr": tail}


def _timed(conn: sqlite3.Connection, sql: str, params: dict, repeat: int = 3) -> tuple[float, list]:
    times, result = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        result = conn.execute(sql, params).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def figures_query(path: str, end: datetime) -> dict:
    """The candidate figures query, three ways: full scan, the existing (site, recorded_at)
    index, and a covering index (site, recorded_at, action, choices) made for it."""
    since = (end - timedelta(days=FIGURES_DAYS)).strftime("%Y-%m-%d")
    until = (end + timedelta(days=1)).strftime("%Y-%m-%d")
    params = {"site": SITE, "since": since, "until": until}
    conn = sqlite3.connect(path)
    out: dict = {}
    try:
        conn.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")
        for label, hint in (("scan", "NOT INDEXED "), ("site_recorded_at", "")):
            t1, by_day = _timed(conn, FIGURES_BY_DAY.format(hint=hint), params)
            t2, opt_in = _timed(conn, FIGURES_OPT_IN.format(hint=hint), params)
            out[label] = t1 + t2
            plan = conn.execute("EXPLAIN QUERY PLAN " + FIGURES_BY_DAY.format(hint=hint), params).fetchall()
            out[f"{label}_plan"] = "; ".join(row[-1] for row in plan)
        out["rows_in_range"] = opt_in[0][0]
        out["days"] = len({row[0] for row in by_day})
        before = file_bytes(path)
        started = time.perf_counter()
        conn.execute(f"CREATE INDEX {INDEX_NAME} ON consents (site, recorded_at, action, choices)")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["covering_build_s"] = time.perf_counter() - started
        out["covering_bytes"] = file_bytes(path) - before
        t1, by_day2 = _timed(conn, FIGURES_BY_DAY.format(hint=f"INDEXED BY {INDEX_NAME} "), params)
        t2, opt_in2 = _timed(conn, FIGURES_OPT_IN.format(hint=f"INDEXED BY {INDEX_NAME} "), params)
        assert by_day2 == by_day and opt_in2 == opt_in, "the covering index changed the answer"
        out["covering"] = t1 + t2
        plan = conn.execute("EXPLAIN QUERY PLAN " + FIGURES_BY_DAY.format(
            hint=f"INDEXED BY {INDEX_NAME} "), params).fetchall()
        out["covering_plan"] = "; ".join(row[-1] for row in plan)
        if hasattr(Store, "daily_actions") and hasattr(Store, "daily_categories"):
            # The admin's own design: daily figures kept by the store beside each consent.
            store = open_store(path)
            try:
                first, last = since, (end.strftime("%Y-%m-%d"))
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    actions = store.daily_actions(SITE, first, last)
                    categories = store.daily_categories(SITE, first, last)
                    times.append(time.perf_counter() - t0)
                out["rollup"] = statistics.median(times)
                out["rollup_rows"] = len(actions) + len(categories)
                out["rollup_total"] = sum(r["n"] for r in actions)
            finally:
                store.close()
        n = opt_in[0][0] or 1
        out["opt_in"] = {k: round(v / n, 3) for k, v in zip(("preferences", "analytics", "marketing"),
                                                             opt_in[0][1:])}
        conn.execute(f"DROP INDEX {INDEX_NAME}")
        conn.commit()
    finally:
        conn.close()
    return out


def measure(path: str, rows: int, end: datetime, log=print) -> dict:
    result: dict = {"rows": rows}
    size = file_bytes(path)
    result["file_bytes"] = size
    result["bytes_per_row"] = size / rows
    result["space"] = {k: v / rows for k, v in space_by_object(path).items()}

    conn = sqlite3.connect(path)
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM consents WHERE site = ? ORDER BY seq",
                        [SITE]).fetchall()
    conn.close()
    result["export_plan"] = "; ".join(row[-1] for row in plan)

    # Start-up cost of the CLI (the app factory, migrations check, catalogs): an export of no
    # rows, the cheaper of two, subtracted from the commands' times below.
    empty = ["consents", "export", "--site", SITE, "--since", "2999-01-01", "--format", "csv", "-o", "/dev/null"]
    startup = min((_flask(empty, path) for _ in range(2)), key=lambda r: r["s"])
    result["cli_startup_s"] = startup["s"]
    result["cli_startup_cpu_s"] = startup["cpu_s"]
    result["cli_startup_rss_kib"] = startup["rss_kib"]
    log(f"  CLI start-up {startup['s']:.2f} s ({startup['cpu_s']:.2f} CPU s), {startup['rss_kib'] / 1024:.0f} MiB")

    for name, args in (("export", ["consents", "export", "--site", SITE, "--format", "csv", "-o", "/dev/null"]),
                       ("verify", ["consents", "verify"])):
        run = _flask(args, path)
        if run["code"] != 0:
            raise RuntimeError(f"{name} failed ({run['code']}): {run['stderr']}")
        result[f"{name}_s"] = run["s"]
        result[f"{name}_cpu_s"] = run["cpu_s"]
        result[f"{name}_rows_per_s"] = rows / max(run["s"] - startup["s"], 1e-6)
        result[f"{name}_rows_per_cpu_s"] = rows / max(run["cpu_s"] - startup["cpu_s"], 1e-6)
        result[f"{name}_rss_kib"] = run["rss_kib"]
        log(f"  {name}: {run['s']:.1f} s, {result[f'{name}_rows_per_s']:,.0f} rows/s, "
            f"{result[f'{name}_rows_per_cpu_s']:,.0f} rows per CPU-second, {run['rss_kib'] / 1024:.0f} MiB")

    result["figures"] = figures_query(path, end)
    f = result["figures"]
    log(f"  figures query over {f['rows_in_range']:,} rows / {f['days']} days: scan {f['scan'] * 1000:.0f} ms, "
        f"(site, recorded_at) {f['site_recorded_at'] * 1000:.0f} ms, covering {f['covering'] * 1000:.0f} ms"
        + (f", daily figures tables {f['rollup'] * 1000:.1f} ms" if "rollup" in f else ""))
    return result


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    target = sys.argv[2] if len(sys.argv) > 2 else os.path.join(tempfile.gettempdir(), f"keksi-ledger-{n}.db")
    now = datetime.now(timezone.utc)
    print(f"generating {n:,} rows in {target}: {generate(target, n, now):.1f} s")
    print(json.dumps(measure(target, n, now), indent=2))
