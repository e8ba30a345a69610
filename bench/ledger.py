"""The consent ledger at scale: generate N rows fast, then measure what auditors and admins run.

Used by bench/run.py; also runnable alone, on SQLite or on an empty PostgreSQL database:

    .venv/bin/python bench/ledger.py 100000 /tmp/ledger.db
    .venv/bin/python bench/ledger.py 100000 'postgresql://postgres@/keksi?host=/tmp/pg&port=5432'

Rows go straight into a fresh database made by Keksi's own migrations, in large batches through the
store's backend (`insert_many`: executemany on SQLite, COPY on PostgreSQL, inside `bulk_load`, which
relaxes each commit's durability while loading). Each row's content_hash is computed with
keksi.consents.content_hash and its chain link with keksi.store.chain_hash, and the daily figures are
counted as the store counts them, so `flask consents verify` passes on the result. Nothing here opens
the database itself: what is SQLite's own (its file, dbstat, its index hints) is a method of the
store's backend (keksi/store/sqlite.py, keksi/store/postgresql.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keksi import notices, sites  # noqa: E402
from keksi.clock import record_text  # noqa: E402
from keksi.consents import HASHED_COLUMNS, content_hash  # noqa: E402
from keksi.store import GENESIS_HASH, Store, chain_hash, is_url, open_store  # noqa: E402

SITE = "demo"
DAYS = 365  # the rows span this many days, whatever their number: more rows = busier days
BATCH = 100_000
MAX_ROWS = 10_000_000  # bench/run.py --full's largest ledger; the scripts take no more
FIGURES_DAYS = 30
INDEX_NAME = "bench_consents_figures"

# The candidate admin figures query: choices per day per action, and opt-in per category,
# for one site over a range of days.
# {flag} is the backend's JSON test (json_flag), {preferences} and so on its expression for each.
FIGURES_BY_DAY = (
    "SELECT substr(recorded_at, 1, 10) AS day, action, count(*) AS n FROM consents "
    "WHERE site = ? AND recorded_at >= ? AND recorded_at < ? "
    "GROUP BY day, action ORDER BY day, action")
FIGURES_OPT_IN = (
    "SELECT count(*) AS n, sum({preferences}) AS preferences, sum({analytics}) AS analytics, "
    "sum({marketing}) AS marketing FROM consents "
    "WHERE site = ? AND recorded_at >= ? AND recorded_at < ?")

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
CHOICE_FLAGS = {key: json.loads(text) for key, text in CHOICES.items()}
COLUMNS = ["seq", *HASHED_COLUMNS, "content_hash"]
LINK_COLUMNS = ["seq", "content_hash", "prev_hash", "row_hash"]


class Daily:
    """The daily figures of generated choices, counted as the store counts each choice it records
    (consent_daily per day and action, consent_daily_categories per day and category)."""

    def __init__(self) -> None:
        self.actions: Counter = Counter()
        self.granted: Counter = Counter()
        self.total: Counter = Counter()

    def add(self, day: str, action: str, choices: dict[str, bool]) -> None:
        self.actions[(day, action)] += 1
        for category, granted in choices.items():
            self.total[(day, category)] += 1
            self.granted[(day, category)] += granted

    def save(self, store: Store, site: str) -> None:
        with store.backend.transaction():
            store.backend.insert_many("consent_daily", ["site", "day", "action", "n"],
                                      [(site, d, a, n) for (d, a), n in sorted(self.actions.items())])
            store.backend.insert_many("consent_daily_categories", ["site", "day", "category", "granted", "total"],
                                      [(site, d, c, self.granted[(d, c)], n) for (d, c), n in sorted(self.total.items())])


def insert_batch(store: Store, consent_rows: list[tuple], links: list[tuple]) -> None:
    """Generated records and their chain links, in one transaction."""
    with store.backend.transaction():
        store.backend.insert_many("consents", COLUMNS, consent_rows)
        store.backend.insert_many("consent_chain", LINK_COLUMNS, links)


def fresh_store(database: str) -> Store:
    """A store on a new database with Keksi's schema: a SQLite file made again, or a PostgreSQL
    database that must hold no choices yet."""
    if not is_url(database):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(database + suffix):
                os.remove(database + suffix)
    store = open_store(database)
    store.migrate()
    if store.backend.query("SELECT 1 AS found FROM consents LIMIT 1"):
        store.close()
        raise SystemExit(f"{database} already holds choices: give an empty database")
    return store


def time_range(end: datetime) -> tuple[datetime, datetime]:
    return end - timedelta(days=DAYS), end


def generate(database: str, rows: int, end: datetime, log=print) -> float:
    """A fresh ledger of `rows` consents for the demo site; returns the seconds it took."""
    started = time.perf_counter()
    store = fresh_store(database)
    try:
        banners = {lang: sites.canonical_json({"bench banner": lang}) for lang in ("fi", "sv", "en")}
        _texts(store, banners)
        with store.backend.bulk_load():
            daily = Daily()
            for seq in _load(store, rows, end, banners, daily):
                log(f"  generated {seq:,} / {rows:,} rows ({time.perf_counter() - started:.0f} s)")
            daily.save(store, SITE)
    finally:
        store.close()
    return time.perf_counter() - started


def _load(store: Store, rows: int, end: datetime, banners: dict[str, str], daily: Daily) -> Iterator[int]:
    """Insert the records and their links a BATCH at a time, counting them into `daily` (by UTC day);
    yield the rows done after each batch."""
    rng = random.Random(20260409)
    start, _ = time_range(end)
    step_us = DAYS * 86400 * 1_000_000 / rows
    start_us = int(start.timestamp() * 1_000_000)
    # Records refer to the sample notices and to the banners stored by `_texts`, by their real
    # hashes, as `flask consents verify` checks.
    notice_hashes = {(path.name[:10], path.name[11:13]): notices.read_source(path, ROOT / "notices").sha256
                     for path in (ROOT / "notices" / "privacy").glob("*.md")}
    banner_hashes = {lang: sites.banner_hash(json.loads(content)) for lang, content in banners.items()}
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
                "banner_hash": banner_hashes[LANGS[seq % 10]],
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
            daily.add(record["recorded_at"][:10], action, CHOICE_FLAGS[choice])
            prev = row_hash
        insert_batch(store, consent_rows, links)
        yield seq


def _texts(store: Store, banners: dict[str, str]) -> None:
    """The site, the sample notices and the banners the rows refer to, saved as Keksi saves them."""
    definition = json.loads((ROOT / "sites" / "demo.json").read_text(encoding="utf-8"))
    store.save_site(sites.validate(definition, ["fi", "sv", "en"]), "bench", create=True)
    notices.publish(ROOT / "notices", ["fi", "sv", "en"], store, "bench")
    for lang, content in banners.items():
        store.remember_banner(sites.banner_hash(json.loads(content)), SITE, lang, content)


def space_by_object(store: Store) -> dict[str, int]:
    """Bytes per table and index (the backend's space_by_object), grouped as consents / indexes / chain /
    other; none when the backend cannot tell."""
    groups = {"consents table": 0, "consents indexes": 0, "consent_chain": 0, "daily figures": 0, "other": 0}
    found = store.backend.space_by_object()
    for row in found:
        if row["table"] == "consents":
            groups["consents indexes" if row["is_index"] else "consents table"] += row["bytes"]
        elif row["table"] == "consent_chain":
            groups["consent_chain"] += row["bytes"]
        elif "consent_daily" in row["table"]:
            groups["daily figures"] += row["bytes"]
        else:
            groups["other"] += row["bytes"]
    return groups if found else {}


def _flask(args: list[str], database: str) -> dict:
    """Run `flask --app app ARGS` on `database`: its wall seconds, CPU seconds, exit code, peak RSS.

    The peak RSS and CPU come from GNU time (%M, %U, %S), not from this process's getrusage:
    a child that Python forks inherits this (large) process's RSS high-water mark across exec
    on Linux, so RUSAGE_CHILDREN would report the generator's memory, not the command's.
    CPU seconds matter because this machine is shared: wall time includes waiting for a CPU.
    """
    # UTC: `generate` counted the daily figures of the generated rows by UTC day, and verify
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


def _timed(store: Store, sql: str, params: list, repeat: int = 3) -> tuple[float, list]:
    times, result = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        result = [tuple(row.values()) for row in store.backend.query(sql, params)]
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _figures_timed(store: Store, params: list, index: str | None | bool) -> tuple[float, list, list, str]:
    """Both figures queries: their seconds together, their rows, and the by-day query's plan. `index`:
    True for the planner's own choice, else the index to read (None: none, a full scan) as the
    backend can hold its planner to it (`index_held`)."""
    flags = {key: store.backend.json_flag("choices", key) for key in ("preferences", "analytics", "marketing")}
    queries = [FIGURES_BY_DAY, FIGURES_OPT_IN.format(**flags)]
    held = [contextlib.nullcontext(sql) if index is True else store.backend.index_held(sql, "consents", index)
            for sql in queries]
    out: list = []
    for context in held:
        with context as sql:
            out.append(_timed(store, sql, params) + (store.backend.explain(sql, params),))
    (t1, by_day, plan), (t2, opt_in, _) = out
    return t1 + t2, by_day, opt_in, plan


def figures_query(database: str, end: datetime) -> dict:
    """The candidate figures query, three ways: full scan, the existing (site, recorded_at)
    index, and a covering index (site, recorded_at, action, choices) made for it. SQLite's planner is
    held to each with its index hints; PostgreSQL's is kept off indexes for the scan and otherwise
    chooses for itself (see the plans)."""
    since = (end - timedelta(days=FIGURES_DAYS)).strftime("%Y-%m-%d")
    until = (end + timedelta(days=1)).strftime("%Y-%m-%d")
    params = [SITE, since, until]
    store = open_store(database)
    out: dict = {}
    try:
        store.backend.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")
        for label, index in (("scan", None), ("site_recorded_at", True)):
            out[label], by_day, opt_in, out[f"{label}_plan"] = _figures_timed(store, params, index)
        out["rows_in_range"] = opt_in[0][0]
        out["days"] = len({row[0] for row in by_day})
        before = store.backend.size()
        started = time.perf_counter()
        store.backend.execute(f"CREATE INDEX {INDEX_NAME} ON consents (site, recorded_at, action, choices)")
        store.backend.checkpoint()
        out["covering_build_s"] = time.perf_counter() - started
        out["covering_bytes"] = store.backend.size() - before
        out["covering"], by_day2, opt_in2, out["covering_plan"] = _figures_timed(store, params, INDEX_NAME)
        assert by_day2 == by_day and opt_in2 == opt_in, "the covering index changed the answer"
        out.update(_rollup(store, since, end))
        n = opt_in[0][0] or 1
        out["opt_in"] = {k: round(v / n, 3) for k, v in zip(("preferences", "analytics", "marketing"),
                                                             opt_in[0][1:])}
        store.backend.execute(f"DROP INDEX {INDEX_NAME}")
    finally:
        store.close()
    return out


def _rollup(store: Store, first: str, end: datetime) -> dict:
    """The admin's own design: the daily figures the store keeps beside each consent, read back."""
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        actions = store.daily_actions(SITE, first, end.strftime("%Y-%m-%d"))
        categories = store.daily_categories(SITE, first, end.strftime("%Y-%m-%d"))
        times.append(time.perf_counter() - t0)
    return {"rollup": statistics.median(times), "rollup_rows": len(actions) + len(categories),
            "rollup_total": sum(r["n"] for r in actions)}


def measure(database: str, rows: int, end: datetime, log=print) -> dict:
    result: dict = {"rows": rows}
    with contextlib.closing(open_store(database)) as store:
        size = store.backend.size()
        result["space"] = {k: v / rows for k, v in space_by_object(store).items()}
        result["export_plan"] = store.backend.explain("SELECT * FROM consents WHERE site = ? ORDER BY seq", [SITE])
    result["file_bytes"] = size
    result["bytes_per_row"] = size / rows

    # Start-up cost of the CLI (the app factory, migrations check, catalogs): an export of no
    # rows, the cheaper of two, subtracted from the commands' times below.
    empty = ["consents", "export", "--site", SITE, "--since", "2999-01-01", "--format", "csv", "-o", "/dev/null"]
    startup = min((_flask(empty, database) for _ in range(2)), key=lambda r: r["s"])
    result["cli_startup_s"] = startup["s"]
    result["cli_startup_cpu_s"] = startup["cpu_s"]
    result["cli_startup_rss_kib"] = startup["rss_kib"]
    log(f"  CLI start-up {startup['s']:.2f} s ({startup['cpu_s']:.2f} CPU s), {startup['rss_kib'] / 1024:.0f} MiB")

    for name, args in (("export", ["consents", "export", "--site", SITE, "--format", "csv", "-o", "/dev/null"]),
                       ("verify", ["consents", "verify"])):
        run = _flask(args, database)
        if run["code"] != 0:
            raise RuntimeError(f"{name} failed ({run['code']}): {run['stderr']}")
        result[f"{name}_s"] = run["s"]
        result[f"{name}_cpu_s"] = run["cpu_s"]
        result[f"{name}_rows_per_s"] = rows / max(run["s"] - startup["s"], 1e-6)
        result[f"{name}_rows_per_cpu_s"] = rows / max(run["cpu_s"] - startup["cpu_s"], 1e-6)
        result[f"{name}_rss_kib"] = run["rss_kib"]
        log(f"  {name}: {run['s']:.1f} s, {result[f'{name}_rows_per_s']:,.0f} rows/s, "
            f"{result[f'{name}_rows_per_cpu_s']:,.0f} rows per CPU-second, {run['rss_kib'] / 1024:.0f} MiB")

    result["figures"] = figures_query(database, end)
    f = result["figures"]
    log(f"  figures query over {f['rows_in_range']:,} rows / {f['days']} days: scan {f['scan'] * 1000:.0f} ms, "
        f"(site, recorded_at) {f['site_recorded_at'] * 1000:.0f} ms, covering {f['covering'] * 1000:.0f} ms"
        + (f", daily figures tables {f['rollup'] * 1000:.1f} ms" if "rollup" in f else ""))
    return result


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    if not 1 <= n <= MAX_ROWS:
        raise SystemExit(f"rows: from 1 to {MAX_ROWS:,}")
    target = sys.argv[2] if len(sys.argv) > 2 else os.path.join(tempfile.gettempdir(), f"keksi-ledger-{n}.db")
    now = datetime.now(timezone.utc)
    print(f"generating {n:,} rows in {target}: {generate(target, n, now):.1f} s")
    print(json.dumps(measure(target, n, now), indent=2))
