"""Hostile pairs of notice texts for the diff: tests/test_diffs.py bounds the work each takes, and
bench/diff.py measures it. Each case is a function giving (old, new), built when called."""

from __future__ import annotations

import random

from keksi import notices


def _prose(words: int, seed: int) -> list[str]:
    """Words with the skewed frequencies of real text (a few very common, most rare)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(3000)]
    return rng.choices(vocab, weights=[1 / (i + 1) for i in range(3000)], k=words)


def _changed(words: list[str], fraction: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(words) if rng.random() < fraction else w for w in words]


HOSTILE = {
    # the review's case: a 30 KB paragraph with a fifth of its words changed
    "paragraph": lambda: (" ".join(p := _prose(5000, 1)), " ".join(_changed(p, 0.2, 2))),
    # the largest source accepted, as one paragraph
    "largest": lambda: (" ".join(p := _prose(notices.MAX_SOURCE_BYTES // 7, 3)),
                        " ".join(_changed(p, 0.2, 4))),
    # the same word again and again: no word is unique to anchor on
    "repetitive": lambda: ("x " * 40000, " ".join(random.Random(5).choice("xy") for _ in range(40000))),
    # as many identical paragraphs as fit
    "paragraphs": lambda: ("a\n\n" * 60000, "a\n\nb\n\n" * 30000),
}
