"""The admin's figures page on a ledger of 1,000,000 choices, against baselines from the same run.

    .venv/bin/python bench/admin_figures.py            # 1,000,000 choices, writes bench/README.md
    .venv/bin/python bench/admin_figures.py 100000 --no-write

What it does:
1. Makes a fresh database with Keksi's own migrations and the demo site, then inserts N choices
   spread evenly over 365 days straight into `consents` and `consent_chain` with executemany
   (each row with its real content hash and chain link, so `flask consents verify` passes), and
   the same choices counted into the daily aggregates `consent_daily` and
   `consent_daily_categories`, by local day in KEKSI_TIMEZONE, exactly as `Store.append_consent`
   counts them one by one.
2. Signs in a marketing user through the login form and times GET /admin/sites/demo/figures
   with the Flask test client for a 30-day and a 365-day range: the median of 5 after one warm-up.
3. Baselines, measured in the same run: the same page on an empty ledger (the same site, no
   choices), so the difference is what the ledger's size costs; and the naive alternative, one
   scan of `consents` grouping the range's rows by day and action and summing each category's
   opt-ins with json_extract, which is what the page would run without the aggregates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from keksi import auth, sites  # noqa: E402
from keksi.clock import day_start, record_text  # noqa: E402
from keksi.consents import HASHED_COLUMNS, content_hash  # noqa: E402
from keksi.store import GENESIS_HASH, chain_hash, open_store  # noqa: E402

SITE = "demo"
DAYS = 365
BATCH = 50_000
REPEAT = 5
SECTION = "## Admin figures"
PASSWORD = "bench password 123"
TODAY = date(2026, 11, 22)  # the app's FIXED_TODAY: the ledger ends on this day
ZONE = "Europe/Helsinki"

ACTIONS = ["accept_all"] * 55 + ["reject_all"] * 25 + ["custom"] * 17 + ["withdraw"] * 3
CATEGORIES = ("necessary", "preferences", "analytics", "marketing")
CHOICES = {
    key: json.dumps({"necessary": True, "preferences": key[0], "analytics": key[1], "marketing": key[2]},
                    separators=(",", ":"))
    for key in [(p, a, m) for p in (True, False) for a in (True, False) for m in (True, False)]
}
COLUMNS = ("seq",) + HASHED_COLUMNS + ("content_hash",)
INSERT_CONSENT = f"INSERT INTO consents ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
INSERT_LINK = "INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) VALUES (?, ?, ?, ?)"
INSERT_DAILY = "INSERT INTO consent_daily (site, day, action, n) VALUES (?, ?, ?, ?)"
INSERT_DAILY_CATEGORY = ("INSERT INTO consent_daily_categories (site, day, category, granted, total) "
                         "VALUES (?, ?, ?, ?, ?)")
# What the page would run without the aggregates: one pass over the range's rows.
NAIVE_BY_DAY = ("SELECT substr(recorded_at, 1, 10) AS day, action, count(*) FROM consents "
                "WHERE site = ? AND recorded_at >= ? AND recorded_at < ? GROUP BY day, action")
NAIVE_OPT_IN = ("SELECT substr(recorded_at, 1, 10) AS day, count(*), "
                "sum(json_extract(choices, '$.preferences')), sum(json_extract(choices, '$.analytics')), "
                "sum(json_extract(choices, '$.marketing')) FROM consents "
                "WHERE site = ? AND recorded_at >= ? AND recorded_at < ? GROUP BY day")


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
    zone = ZoneInfo(ZONE)
    end = datetime.combine(TODAY + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(timezone.utc)
    start = end - timedelta(days=DAYS)
    step_us = DAYS * 86400 * 1_000_000 / rows
    start_us = int(start.timestamp() * 1_000_000)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    daily: Counter = Counter()
    daily_granted: Counter = Counter()
    daily_total: Counter = Counter()
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
            daily[(day, action)] += 1
            for category, granted in zip(CATEGORIES, (True, *key)):
                daily_total[(day, category)] += 1
                daily_granted[(day, category)] += granted
        conn.execute("BEGIN")
        conn.executemany(INSERT_CONSENT, consent_rows)
        conn.executemany(INSERT_LINK, links)
        conn.execute("COMMIT")
        print(f"  {seq:,} / {rows:,} rows ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    conn.execute("BEGIN")
    conn.executemany(INSERT_DAILY, [(SITE, d, a, n) for (d, a), n in sorted(daily.items())])
    conn.executemany(INSERT_DAILY_CATEGORY, [(SITE, d, c, daily_granted[(d, c)], n)
                                             for (d, c), n in sorted(daily_total.items())])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


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
    conn = sqlite3.connect(path)
    try:
        times, rows = [], 0
        for _ in range(3):
            started = time.perf_counter()
            by_day = conn.execute(NAIVE_BY_DAY, [SITE, since, until]).fetchall()
            conn.execute(NAIVE_OPT_IN, [SITE, since, until]).fetchall()
            times.append(time.perf_counter() - started)
            rows = sum(n for _, _, n in by_day)
        return statistics.median(times), rows
    finally:
        conn.close()


def aggregate_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                   for t in ("consent_daily", "consent_daily_categories"))
    finally:
        conn.close()


def check(path: Path, rows: int) -> None:
    """The aggregates count every row, as a scan does."""
    conn = sqlite3.connect(path)
    try:
        scanned = dict(conn.execute("SELECT action, count(*) FROM consents GROUP BY action").fetchall())
        counted = dict(conn.execute("SELECT action, sum(n) FROM consent_daily GROUP BY action").fetchall())
        opt_in = conn.execute("SELECT sum(json_extract(choices, '$.analytics')) FROM consents").fetchone()[0]
        counted_opt_in = conn.execute("SELECT sum(granted) FROM consent_daily_categories "
                                      "WHERE category = 'analytics'").fetchone()[0]
    finally:
        conn.close()
    assert scanned == counted and sum(counted.values()) == rows, (scanned, counted)
    assert opt_in == counted_opt_in, (opt_in, counted_opt_in)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem / 1024 / 1024:.0f} GiB RAM, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


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

    work = Path(tempfile.mkdtemp(prefix="keksi-admin-figures-"))
    full, empty = work / "full.db", work / "empty.db"
    try:
        prepare(empty)
        prepare(full)
        print(f"generating {options.rows:,} choices over {DAYS} days ...", file=sys.stderr)
        seconds = generate(full, options.rows)
        check(full, options.rows)
        aggregates = aggregate_rows(full)
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
            f"{commit()}. Machine: {machine()}. Ledger generated in {seconds:.0f} s "
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
