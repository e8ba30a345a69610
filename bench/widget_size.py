"""The consent widget's size beside vanilla-cookieconsent 3.1.0's, and its time to a visible banner.

    .venv/bin/python bench/widget_size.py [--runs 31]

Size: the built widget (script with its styles inlined, what /widget/v1/consent.js serves),
and signals.js (other vendors' consent signals, loaded only for a site that declares such a service),
compressed with gzip -9 and brotli -q 11, beside vanilla-cookieconsent 3.1.0's
dist/cookieconsent.umd.js + dist/cookieconsent.css, fetched with `npm pack` in this run.

Time: headless Chromium loads a host page on one loopback origin that embeds the widget
from the consent server on another (the app under gunicorn with gunicorn.conf.py and two
workers, as deployed, with the sample notices and the demo site). The widget marks `keksi:start` when its script starts executing
and `keksi:visible` in the animation frame that first paints the banner; the time between
the two includes fetching the site's configuration. Each run is a new browser context (an
empty cache: a first visit); "repeat view" reloads in the same context, so the script and
the configuration come from the HTTP cache; "preloaded" is a first visit on a page whose <head>
has <link rel="preload" as="fetch" crossorigin> for the configuration. The baseline is a script that marks its start and
then the next animation frame: the floor of this measurement on the machine. Three warm-up
runs are not counted.

Server: the configuration response alone, fetched from Python over loopback (a new connection
each time, as a first visit makes one) beside /healthz, the floor of a request on the same server;
and in-process through Flask's test client, kept per worker (keksi/workercache.py) beside built
for every request (the cache bypassed), which is how it was made before issue 11.10.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Iterator

import brotli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from keksi import widget  # noqa: E402
from tests.conftest import CHROMIUM, SAMPLE_NOTICES, publish_all  # noqa: E402
from tests.ledger import add_site  # noqa: E402
from tests.widget_host import HostServer, host_page  # noqa: E402

PEER = "vanilla-cookieconsent@3.1.0"
PEER_FILES = ("package/dist/cookieconsent.umd.js", "package/dist/cookieconsent.css")
TARGET_GZIP = 6_000  # "6 KB" in issue 4; KB = 1000 bytes, as in docs/peers.md
TARGET_MS = 50.0  # p90 of the first visit (issue 11.10)
SERVER_REQUESTS = 200


def gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def br(data: bytes) -> int:
    return len(brotli.compress(data, quality=11))


def peer_files(folder: Path) -> list[bytes]:
    """vanilla-cookieconsent's browser files, from the npm registry with `npm pack`."""
    subprocess.run(["npm", "pack", PEER, "--silent", "--pack-destination", str(folder)], check=True,
                   stdout=subprocess.DEVNULL)
    (tarball,) = folder.glob("*.tgz")
    with tarfile.open(tarball) as archive:
        return [archive.extractfile(name).read() for name in PEER_FILES]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def consent_server(folder: Path, host_origin: str) -> Iterator[str]:
    """The app under gunicorn (as deployed), with the sample notices and the demo site; yields its URL."""
    shutil.copytree(SAMPLE_NOTICES, folder / "notices")
    env = dict(os.environ, KEKSI_DATABASE=str(folder / "keksi.db"), KEKSI_NOTICES_DIR=str(folder / "notices"),
               KEKSI_SECRET_KEY="bench", KEKSI_RATE_LIMIT="1000000", HOST="127.0.0.1", PORT=str(free_port()),
               WEB_CONCURRENCY="2")
    app = create_app({"DATABASE": env["KEKSI_DATABASE"], "NOTICES_DIR": env["KEKSI_NOTICES_DIR"],
                      "SECRET_KEY": "bench"})
    publish_all(app)
    add_site(app, origins=[host_origin])
    url = f"http://127.0.0.1:{env['PORT']}"
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/widget/v1/consent.js", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start")
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


MEASURE = """() => {
    const at = (name) => performance.getEntriesByName(name)[0].startTime;
    const configs = performance.getEntriesByType('resource').filter((r) => r.name.includes('/config'));
    if (configs.length > 1) throw new Error('the configuration was fetched twice');
    const config = configs[0];
    return [at('keksi:visible') - at('keksi:start'), config ? config.responseEnd - config.fetchStart : 0];
}"""
BASELINE = "performance.mark('keksi:start'); requestAnimationFrame(() => performance.mark('keksi:visible'));"


def server_times(server_url: str, origin: str) -> list[list[float]]:
    """[ms for the config response, ms for /healthz] per request pair, after 10 of each to warm up."""
    def fetch(url: str, headers: dict[str, str]) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            answer.read()
        return (time.perf_counter() - started) * 1000

    config_url = f"{server_url}/api/v1/sites/demo/config?lang=en"
    pairs = []
    for n in range(10 + SERVER_REQUESTS):
        pair = [fetch(config_url, {"Origin": origin}), fetch(f"{server_url}/healthz", {})]
        if n >= 10:
            pairs.append(pair)
    return pairs


def in_process_times(folder: Path, requests: int = 400) -> dict[str, list[float]]:
    """ms per config request through the test client: kept per worker, built per request, /healthz."""
    from keksi import workercache

    shutil.copytree(SAMPLE_NOTICES, folder / "notices")
    app = create_app({"DATABASE": str(folder / "keksi.db"), "NOTICES_DIR": str(folder / "notices"),
                      "SECRET_KEY": "bench"})
    publish_all(app)
    add_site(app, origins=["https://www.example.fi"])
    client = app.test_client()

    def timed(url: str, **headers: str) -> list[float]:
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            assert client.get(url, headers=headers).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
        return times

    config = "/api/v1/sites/demo/config?lang=en"
    kept = timed(config, Origin="https://www.example.fi")
    real = workercache.WorkerCache.get
    workercache.WorkerCache.get = lambda self, key, make: make()  # as before: built for every request
    try:
        built = timed(config, Origin="https://www.example.fi")
    finally:
        workercache.WorkerCache.get = real
    return {"config, kept per worker": kept, "config, built per request (before 11.10)": built,
            "/healthz (floor)": timed("/healthz")}


def time_to_visible(runs: int, warmup: int = 3) -> tuple[dict[str, list[list[float]]], str]:
    """Per case, [ms from script start to the banner's first frame, ms fetching the config] per run."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="keksi-bench-") as tmp, HostServer() as host, \
            consent_server(Path(tmp), host.url) as server_url:
        url = host.add("/", host_page(f"{server_url}/widget/v1/consent.js", lang="en"))
        preload = f'<link rel="preload" href="{server_url}/api/v1/sites/demo/config?lang=en" as="fetch" crossorigin>'
        preloaded = host.add("/preloaded", host_page(f"{server_url}/widget/v1/consent.js", lang="en", head=preload))
        host.script("/baseline.js", BASELINE)
        baseline = host.add("/baseline", host_page("/baseline.js", lang="en"))
        cases: dict[str, list[list[float]]] = {"first": [], "repeat": [], "preloaded": [], "baseline": []}
        server = server_times(server_url, host.url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            version = browser.version
            for run in range(warmup + runs):
                context = browser.new_context()
                page = context.new_page()
                for case in cases:
                    if case == "first":
                        page.goto(url)
                    elif case == "repeat":
                        page.reload()
                    elif case == "preloaded":  # a new context: an empty cache again
                        context.close()
                        context = browser.new_context()
                        page = context.new_page()
                        page.goto(preloaded)
                    else:
                        page.goto(baseline)
                    page.wait_for_function("performance.getEntriesByName('keksi:visible').length > 0")
                    if run >= warmup:  # the first runs warm up both gunicorn workers
                        cases[case].append(page.evaluate(MEASURE))
                context.close()
            browser.close()
        cases["server"] = server
        return cases, version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=31, help="page loads to take the median of (default 31)")
    args = parser.parse_args()

    build = widget.build(ROOT / "widget")
    ours = build.identity
    signals = widget.build(ROOT / "widget", widget.SIGNALS).identity
    with tempfile.TemporaryDirectory() as tmp:
        peer = peer_files(Path(tmp))
    peer_all = b"".join(peer)
    cases, chromium = time_to_visible(args.runs)
    with tempfile.TemporaryDirectory(prefix="keksi-bench-") as tmp:
        in_process = in_process_times(Path(tmp))

    def kb(n: int) -> str:  # kilobytes of 1000 bytes, as in docs/peers.md
        return f"{n / 1000:.1f} KB ({n:,} B)"

    print(f"Widget benchmark, {date.today().isoformat()}; {machine()}; Chromium {chromium}; "
          f"widget version {build.version}\n")
    print("| | gzip -9 | brotli -q 11 | minified |")
    print("|---|---:|---:|---:|")
    print(f"| Keksi widget (script + styles) | {kb(gz(ours))} | {kb(br(ours))} | {kb(len(ours))} |")
    print(f"| Keksi signals.js (only where a site needs it) | {kb(gz(signals))} | {kb(br(signals))} | "
          f"{kb(len(signals))} |")
    print(f"| {PEER} (umd.js + css) | {kb(gz(peer_all))} | {kb(br(peer_all))} | {kb(len(peer_all))} |")
    print(f"| Keksi / peer | {gz(ours) / gz(peer_all):.2f} | {br(ours) / br(peer_all):.2f} | "
          f"{len(ours) / len(peer_all):.2f} |")
    verdict = "meets" if gz(ours) <= TARGET_GZIP else "MISSES"
    print(f"\nSize target: at most 6 KB ({TARGET_GZIP:,} B) gzip: {verdict} it ({gz(ours):,} B); "
          f"a third of the peer would be {gz(peer_all) // 3:,} B.\n")

    def p90(times: list[float]) -> float:
        return sorted(times)[max(0, round(0.9 * len(times)) - 1)]

    def row(name: str, samples: list[list[float]], config: bool = True) -> str:
        times = sorted(total for total, _ in samples)
        fetch = f"{statistics.median(c for _, c in samples):.1f}" if config else "–"
        return (f"| {name} | {statistics.median(times):.1f} | {times[0]:.1f} | {p90(times):.1f} | "
                f"{times[-1]:.1f} | {fetch} | {len(times)} |")

    print("| script start → banner visible (ms) | median | min | p90 | max | of which config fetch (median) | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("first visit (script and config fetched)", cases["first"]))
    print(row("repeat view (both from the HTTP cache)", cases["repeat"]))
    print(row("first visit, config preloaded by the page's <head>", cases["preloaded"]))
    print(row("baseline: a script that only waits for the next frame", cases["baseline"], config=False))
    first = [total for total, _ in cases["first"]]
    verdict = "meets" if p90(first) <= TARGET_MS else "MISSES"
    print(f"\nTime target: banner visible within {TARGET_MS:.0f} ms (p90, first visit): {verdict} it "
          f"(p90 {p90(first):.1f} ms, median {statistics.median(first):.1f} ms).\n")
    print("| server, over loopback (ms) | median | p90 | requests |")
    print("|---|---:|---:|---:|")
    for name, index in (("GET /api/v1/sites/demo/config", 0), ("GET /healthz (floor)", 1)):
        times = [pair[index] for pair in cases["server"]]
        print(f"| {name} | {statistics.median(times):.2f} | {p90(times):.2f} | {len(times)} |")
    for name, times in in_process.items():
        print(f"| in-process: {name} | {statistics.median(times):.2f} | {p90(times):.2f} | {len(times)} |")


if __name__ == "__main__":
    main()
