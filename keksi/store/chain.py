"""The chain's pure hash functions, shared by the store (which writes links) and by
`keksi.consents.verify` and `keksi.proof` (which check them): one definition each, no database."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Iterator

GENESIS_HASH = "0" * 64

# What a removal took out of the daily figures: ([(site, day, action, n)],
# [(site, day, category, granted, total)]).
Counts = tuple[list[tuple[str, str, str, int]], list[tuple[str, str, str, int, int]]]


def chain_hash(prev_hash: str, content_hash: str) -> str:
    """A link's row hash: its content hash chained to the link before."""
    return hashlib.sha256(f"{prev_hash}:{content_hash}".encode()).hexdigest()


def audit_content_hash(row: dict[str, Any]) -> str:
    """An audit entry's content hash: its id and every field, in a fixed order."""
    values = [row["id"], row["at"], row["actor"], row["action"], row["subject"], row["detail"]]
    return hashlib.sha256(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def removal_digest(reason: str, removed_at: str, ranges: Iterable[tuple[int, int]],
                   counts: Counts | None = None) -> str:
    """A removal link's content hash: its reason, time and ranges (first, last) in order, then
    what it took out of the daily figures (links made before migration 0008 have no counts)."""
    digest = hashlib.sha256(f"removal {reason} {removed_at}\n".encode())
    for first, last in ranges:
        digest.update(f"{first}-{last}\n".encode())
    actions, categories = counts or ([], [])
    for site, day, action, n in sorted(actions):
        digest.update(f"n {site} {day} {action} {n}\n".encode())
    for site, day, category, granted, total in sorted(categories):
        digest.update(f"c {site} {day} {category} {granted} {total}\n".encode())
    return digest.hexdigest()


def seq_ranges(seqs: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Ascending seqs as ranges: 1, 2, 3, 7 -> (1, 3), (7, 7)."""
    first = last = None
    for seq in seqs:
        if last is not None and seq == last + 1:
            last = seq
            continue
        if first is not None:
            yield first, last
        first = last = seq
    if first is not None:
        yield first, last


def leaves_head(prev: int, position: int, row_hash: str, head: tuple[int, str]) -> bool:
    """Whether the link at `position` (following the one at `prev`, 0 for the first) shows that a
    chain no longer passes through `head` (position, row hash), kept from an earlier run: it holds
    the head's position with another hash, or steps over that position (its link was deleted and
    the links after it rechained)."""
    return (position == head[0] and row_hash != head[1]) or prev < head[0] < position
