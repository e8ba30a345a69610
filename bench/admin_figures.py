"""The admin's figures page on a ledger of 1,000,000 choices, against baselines from the same run.

    .venv/bin/python bench/admin_figures.py            # 1,000,000 choices, writes bench/README.md
    .venv/bin/python bench/admin_figures.py 100000 --no-write

What it does:
1. Makes a fresh database with Keksi's own migrations and the demo site, then inserts N choices
   spread evenly over 365 days straight into `consents` and `consent_chain` in batches through the
   store's backend (bench/ledger.py's `insert_batch` and `Daily`: each row with its real content
   hash and chain link, so `flask consents verify` passes), and the same choices counted into the
   daily aggregates `consent_daily` and `consent_daily_categories`, by local day in
   KEKSI_TIMEZONE, exactly as `Store.append_consent` counts them one by one.
2. Signs in a marketing user through the login form and times GET /admin/sites/demo/figures
   with the Flask test client for a 30-day and a 365-day range: the median of 5 after one warm-up.
3. Baselines, measured in the same run: the same page on an empty ledger (the same site, no
   choices), so the difference is what the ledger's size costs; and the naive alternative, one
   scan of `consents` grouping the range's rows by day and action and summing each category's
   opt-ins with json_extract, which is what the page would run without the aggregates.
Nothing here opens the database itself: it goes through keksi.store (open_store and its backend).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from app import create_app  # noqa: E402
from keksi import auth, sites  # noqa: E402
from keksi.clock import day_start, record_text  # noqa: E402
from keksi.consents import content_hash  # noqa: E402
from keksi.store import GENESIS_HASH, Store, chain_hash, open_store  # noqa: E402
from ledger import ACTIONS, CHOICE_FLAGS, CHOICES, HASHED_COLUMNS, MAX_ROWS, Daily, insert_batch  # noqa: E402

SITE = "demo"
DAYS = 365
BATCH = 50_000
REPEAT = 5
SECTION = "## Admin figures"
PASSWORD = "bench password 123"
TODAY = date(2026, 11, 22)  # the app's FIXED_TODAY: the ledger ends on this day
ZONE = "Europe/Helsinki"

# What the page would run without the aggregates: one pass over the range's rows.
NAIVE_BY_DAY = ("SELECT substr(recorded_at, 1, 10) AS day, action, count(*) AS n FROM consents "
                "WHERE site = ? AND recorded_at >= ? AND recorded_at < ? GROUP BY day, action")
# {preferences} and so on: the backend's json_flag of each category (json_extract on SQLite).
NAIVE_OPT_IN = ("SELECT substr(recorded_at, 1, 10) AS day, count(*) AS n, "
                "sum({preferences}) AS preferences, sum({analytics}) AS analytics, "
                "sum({marketing}) AS marketing FROM consents "
                "WHERE site = ? AND recorded_at >= ? AND recorded_at < ? GROUP BY day")


def opt_in_flags(store: Store) -> dict[str, str]:
    return {key: store.backend.json_flag("choices", key) for key in ("preferences", "analytics", "marketing")}


def make_app(path: Path):
    return create_app({"DATABASE": str(path), "SECRET_KEY": "bench", "FIXED_TODAY": TODAY.isoformat(),
                       "TIMEZONE": ZONE, "NOTICES_DIR": str(ROOT / "notices")})


def prepare(path: Path) -> None:
    """A fresh database with the schema, the demo site and a marketing user."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    app = make_app(path)  # runs the migrations
    store = open_store(app.config["DATABASE"])
    try:
        definition = json.loads((ROOT / "sites" / "demo.json").read_text(encoding="utf-8"))
        store.save_site(sites.validate(definition, app.config["LANGUAGES"]), "bench", create=True)
        store.add_user("marketing@example.fi", ["marketing"], auth.hash_password(PASSWORD), "bench")
    finally:
        store.close()


def generate(path: Path, rows: int) -> float:
    """`rows` choices over DAYS days ending on TODAY, with their chain and daily aggregates."""
    started = time.perf_counter()
    with contextlib.closing(open_store(str(path))) as store, store.backend.bulk_load():
        daily = Daily()
        for seq in _load(store, rows, daily):
            print(f"  {seq:,} / {rows:,} rows ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        daily.save(store, SITE)
        store.backend.execute("ANALYZE")
    return time.perf_counter() - started


def _load(store: Store, rows: int, daily: Daily) -> Iterator[int]:
    """Insert the choices and their links a BATCH at a time, counting them into `daily` by local day;
    yield the rows done after each batch."""
    zone = ZoneInfo(ZONE)
    end = datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(timezone.utc)
    start = end - timedelta(days=DAYS)
    step_us = DAYS * 86400 * 1_000_000 / rows
    start_us = int(start.timestamp() * 1_000_000)
    prev, seq = GENESIS_HASH, 0
    local_day_cache: dict[int, str] = {}
    while seq < rows:
        count = min(BATCH, rows - seq)
        rand = os.urandom(count * 48).hex()
        consent_rows, links = [], []
        for i in range(count):
            seq += 1
            r = rand[i * 96:(i + 1) * 96]
            moment_us = start_us + int((seq - 0.5) * step_us)  # all inside the DAYS days
            recorded = datetime.fromtimestamp(moment_us / 1_000_000, timezone.utc)
            hour = moment_us // 3_600_000_000  # the local day changes on an hour boundary
            day = local_day_cache.get(hour)
            if day is None:
                day = local_day_cache[hour] = recorded.astimezone(zone).date().isoformat()
            action = ACTIONS[seq % 100]
            if action == "accept_all":
                key = (True, True, True)
            elif action == "custom":
                key = (seq % 2 == 0, seq % 3 == 0, seq % 7 == 0)
            else:
                key = (False, False, False)
            record = {
                "consent_id": r[:32], "event_id": f"{r[32:40]}-{r[40:44]}-4{r[45:48]}-8{r[49:52]}-{r[52:64]}",
                "subject_id": r[64:96], "site": SITE, "action": action, "choices": CHOICES[key],
                "ui_surface": "banner", "lang": "fi", "page": "/", "notice_slug": "privacy",
                "notice_version": "2026-04-09", "notice_sha256": "0" * 64, "banner_hash": "1" * 64,
                "widget_version": "1.0.0", "ip": "198.51.100.0", "user_agent": "Chrome 156 / Linux",
                "gpc": 0, "recorded_at": record_text(recorded), "valid_until": record_text(recorded + timedelta(days=365)),
            }
            digest = content_hash(record)
            row_hash = chain_hash(prev, digest)
            consent_rows.append((seq, *(record[c] for c in HASHED_COLUMNS), digest))
            links.append((seq, digest, prev, row_hash))
            prev = row_hash
            daily.add(day, action, CHOICE_FLAGS[key])
        insert_batch(store, consent_rows, links)
        yield seq


def signed_in_client(app):
    client = app.test_client()
    page = client.get("/admin/login?lang=en").get_data(as_text=True)
    token = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = client.post("/admin/login", data={"csrf_token": token, "email": "marketing@example.fi",
                                                 "password": PASSWORD})
    assert response.status_code == 302, "sign-in failed"
    return client


def time_page(client, url: str) -> tuple[float, int]:
    """Median seconds of REPEAT requests after one warm-up, and the page's size."""
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    times = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        response = client.get(url)
        body = response.get_data()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return statistics.median(times), len(body)


def time_naive(path: Path, first: date, last: date) -> tuple[float, int]:
    """Median seconds of the naive scan (both queries) over the range, and the rows it read."""
    since = day_start(first, ZONE, record_text)
    until = day_start(last, ZONE, record_text, next_day=True)
    with contextlib.closing(open_store(str(path))) as store:
        opt_in = NAIVE_OPT_IN.format(**opt_in_flags(store))
        times, rows = [], 0
        for _ in range(3):
            started = time.perf_counter()
            by_day = store.backend.query(NAIVE_BY_DAY, [SITE, since, until])
            store.backend.query(opt_in, [SITE, since, until])
            times.append(time.perf_counter() - started)
            rows = sum(row["n"] for row in by_day)
        return statistics.median(times), rows


def aggregate_rows(path: Path) -> int:
    with contextlib.closing(open_store(str(path))) as store:
        return sum(store.backend.query(f"SELECT count(*) AS n FROM {t}")[0]["n"]
                   for t in ("consent_daily", "consent_daily_categories"))


def check(path: Path, rows: int) -> None:
    """The aggregates count every row, as a scan does."""
    with contextlib.closing(open_store(str(path))) as store:
        query = store.backend.query
        scanned = {r["action"]: r["n"] for r in query("SELECT action, count(*) AS n FROM consents GROUP BY action")}
        counted = {r["action"]: r["n"] for r in query("SELECT action, sum(n) AS n FROM consent_daily GROUP BY action")}
        opt_in = query(f"SELECT sum({opt_in_flags(store)['analytics']}) AS n FROM consents")[0]["n"]
        counted_opt_in = query("SELECT sum(granted) AS n FROM consent_daily_categories "
                               "WHERE category = 'analytics'")[0]["n"]
    assert scanned == counted and sum(counted.values()) == rows, (scanned, counted)
    assert opt_in == counted_opt_in, (opt_in, counted_opt_in)


def machine(database: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()}, "
            f"{database}")


def database_version(path: Path) -> str:
    with contextlib.closing(open_store(str(path))) as store:
        return store.backend.version()


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def write_readme(section: str) -> None:
    """Replace this benchmark's section of bench/README.md (or add it), leaving the others alone."""
    path = ROOT / "bench" / "README.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="do not update bench/README.md")
    parser.add_argument("--keep", action="store_true", help="keep the databases (printed at the end)")
    options = parser.parse_args()
    if not 1 <= options.rows <= MAX_ROWS:
        parser.error(f"rows: from 1 to {MAX_ROWS:,}")

    work = Path(tempfile.mkdtemp(prefix="keksi-admin-figures-"))
    full, empty = work / "full.db", work / "empty.db"
    try:
        prepare(empty)
        prepare(full)
        print(f"generating {options.rows:,} choices over {DAYS} days ...", file=sys.stderr)
        seconds = generate(full, options.rows)
        check(full, options.rows)
        aggregates = aggregate_rows(full)
        engine = database_version(full)
        print(f"generated in {seconds:.1f} s", file=sys.stderr)

        ranges = {"30 days": (TODAY - timedelta(days=29), TODAY),
                  "365 days": (TODAY - timedelta(days=364), TODAY)}
        results = []
        for label, (first, last) in ranges.items():
            url = f"/admin/sites/{SITE}/figures?from={first}&to={last}"
            page_full, size = time_page(signed_in_client(make_app(full)), url)
            page_empty, _ = time_page(signed_in_client(make_app(empty)), url)
            naive, scanned = time_naive(full, first, last)
            results.append((label, scanned, page_full, page_empty, naive, size))
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)

    header = ["range", "choices in range", f"figures page, {options.rows:,} choices",
              "baseline: same page, empty ledger", "ledger's cost", "naive scan query alone", "page size"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, scanned, full_s, empty_s, naive, size in results:
        table.append(f"| {label} | {scanned:,} | {full_s * 1000:.0f} ms | {empty_s * 1000:.0f} ms | "
                     f"{(full_s - empty_s) * 1000:+.0f} ms | {naive * 1000:.0f} ms | {size / 1024:.0f} KiB |")
    verdict = all(full_s < 1.0 for _, _, full_s, _, _, _ in results)
    summary = (f"Target: the page renders in under a second at 1,000,000 choices: "
               f"{'met' if verdict else 'NOT met'} at {options.rows:,}.")
    print("\n".join(table))
    print(summary)
    if options.keep:
        print(f"databases kept in {work}")
    if not options.no_write:
        section = "\n".join([
            SECTION, "",
            "`.venv/bin/python bench/admin_figures.py [ROWS]` (default 1,000,000; `--no-write` leaves this file "
            "alone). How the ledger is built and what is timed is in the script's docstring.", "",
            f"Last run: {datetime.now(timezone.utc):%Y-%m-%d}, {options.rows:,} choices over {DAYS} days, commit "
            f"{commit()}. Machine: {machine(engine)}. Ledger generated in {seconds:.0f} s "
            f"({aggregates:,} aggregate rows).", "",
            f"GET /admin/sites/demo/figures through the Flask test client, signed in as marketing, median of "
            f"{REPEAT} after a warm-up; the naive query is the median of 3.", "",
            *table, "",
            summary + " The page reads only the daily aggregates (one row per day and action, and per day "
            "and category), so its time follows the number of days shown, not the number of choices; "
            "the naive scan grows with the choices in the range.", "",
        ])
        write_readme(section)
        print("wrote bench/README.md (## Admin figures)", file=sys.stderr)
    return 0 if verdict else 1


if __name__ == "__main__":
    raise SystemExit(main())
