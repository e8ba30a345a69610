"""Diff cost: the public diff between two versions against rendering those versions, for hostile input.

Every diff page renders both versions anyway, so rendering them is the baseline measured in the same
run; the ratio says what the diff adds. Cases: the review's 30 KB paragraph with a fifth of its words
changed, the largest source accepted as one paragraph, one word repeated, and many identical paragraphs.
CPU time of this process, median of --runs (default 5); run it as `.venv/bin/python bench/diff.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keksi import diffs, notices  # noqa: E402
from tests.diff_cases import HOSTILE  # noqa: E402


def cpu(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        notices.render.cache_clear()
        diffs.diff.cache_clear()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    print("| case | source size | render both (baseline) | diff, render included | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, make in HOSTILE.items():
        old, new = make()
        render = cpu(lambda: (notices.render(old, "/"), notices.render(new, "/")), options.runs)
        diff = cpu(lambda: diffs.diff(old, new, "/"), options.runs)
        print(f"| {name} | {len(old.encode()):,} B | {render * 1000:.0f} ms | {diff * 1000:.0f} ms | {diff / render:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
