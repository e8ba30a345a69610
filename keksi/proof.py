"""The proof beside the consent chain: notice texts, banners and the audit log.

`consents.verify` walks the consent chain and `figures.check` recomputes the daily
figures; the checks here cover what the records point at. Each returns a list of
problems, (where, what), empty when everything holds: a text rewritten under its old
hash, a text replaced together with its hash (the records and the audit log still hold
the old one), a widget build's script rewritten, an audit entry edited, removed or inserted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import notices, widget
from .store import Store
from .store.chain import GENESIS_HASH, audit_content_hash, chain_hash, leaves_head

Problem = tuple[str, str]


def check_notices(store: Store) -> list[Problem]:
    """Every published version: its text still has its SHA-256, and what the pages show (title,
    summary, material, body) is what that text says; the audit log recorded that SHA-256."""
    published = _published_hashes(store)
    problems, stored = [], set()
    for row in store.iter_notice_texts():
        where = f"notice {row['slug']}/{row['version']}.{row['lang']}"
        stored.add(where)
        if notices.sha256(row["source"]) != row["sha256"]:
            problems.append((where, "its text no longer has the SHA-256 recorded when it was published"))
            continue
        parsed = notices.parse_source(where, row["slug"], row["version"], row["lang"], row["source"])
        shown = ("title", "summary", "material", "body")
        if isinstance(parsed, notices.Problem) or any(parsed.row()[key] != row[key] for key in shown):
            problems.append((where, "the text its pages show is not the text published"))
        elif published.get(f"{row['slug']}/{row['version']}.{row['lang']}") != row["sha256"]:
            problems.append((where, "the audit log does not record its publication with this SHA-256"))
    return problems + [(where, "it was published and never withdrawn, but is no longer stored")
                       for where in (f"notice {subject}" for subject in published) if where not in stored]


def _published_hashes(store: Store) -> dict[str, str]:
    """What the audit log says is published: "slug/version.lang" -> SHA-256, less the versions it
    records as withdrawn (every language of "slug/version" at once)."""
    published: dict[str, str] = {}
    for entry in store.iter_audit():
        if entry["action"] == "notice.publish":
            published[entry["subject"]] = json.loads(entry["detail"] or "{}").get("sha256")
        elif entry["action"] == "notice.withdraw":
            for subject in [s for s in published if s.startswith(entry["subject"] + ".")]:
                del published[subject]
    return published


def check_banners(store: Store) -> list[Problem]:
    """Every stored banner still hashes to the hash it is stored (and referred to) under."""
    return [(f"banner {row['hash']}", "its text no longer has the hash it was stored under")
            for row in store.iter_banners()
            if hashlib.sha256(row["content"].encode("utf-8")).hexdigest() != row["hash"]]


def check_widget_builds(store: Store) -> list[Problem]:
    """Every widget build kept is the script its version was built as, and has its SHA-256."""
    return [(f"widget build {row['version']}", "its script is not the build its version names")
            for row in store.iter_widget_builds()
            if not widget.is_build_of(row["script"], row["version"], row["file"])
            or hashlib.sha256(row["script"].encode("utf-8")).hexdigest() != row["sha256"]]


def check_sites(store: Store) -> list[Problem]:
    """Every site's definition is the one its last audited save recorded (sites change by design,
    but only through a save, which the chained audit log records with the definition's SHA-256),
    and every site saved and not removed is still there."""
    saved: dict[str, str | None] = {}
    for entry in store.iter_audit():
        if entry["action"] in ("site.add", "site.edit"):
            saved[entry["subject"]] = json.loads(entry["detail"] or "{}").get("sha256")
        elif entry["action"] == "site.remove":
            saved.pop(entry["subject"], None)
    texts = dict(store.site_texts())
    return [(f"site {site_id}", "its definition is not the one its last audited save recorded")
            for site_id, text in texts.items()
            if saved.get(site_id) != hashlib.sha256(text.encode("utf-8")).hexdigest()] + [
        (f"site {site_id}", "it was saved and never removed, but is no longer stored")
        for site_id in saved if site_id not in texts]


def check_records_texts(store: Store) -> list[Problem]:
    """Every record's notice versions and banner are still stored with the hashes it holds."""
    return [(f"record {seq}", "a notice version or banner it refers to was replaced or removed")
            for seq in store.records_without_their_texts()]


def check_audit(store: Store, expect: tuple[int, str] | None = None) -> tuple[list[Problem], tuple[int, str] | None]:
    """Walk the audit log's hash chain; return its problems and its head (id, row hash)."""
    prev, head = GENESIS_HASH, None
    for entry in store.iter_audit():
        where = f"audit entry {entry['id']}"
        if entry["prev_hash"] != prev:
            return [(where, "its link to the previous entry does not match: an entry was removed, "
                            "inserted or reordered")], head
        if chain_hash(prev, audit_content_hash(entry)) != entry["row_hash"]:
            return [(where, "its content was changed after it was written")], head
        if expect is not None and leaves_head(head[0] if head else 0, entry["id"], entry["row_hash"], expect):
            return [(where, "the audit log no longer passes through the head recorded earlier")], head
        prev = head_hash = entry["row_hash"]
        head = (entry["id"], head_hash)
    if expect is not None and (head is None or head[0] < expect[0]):
        return [(f"audit entry {expect[0]}", "the audit log ends before the head recorded earlier")], head
    return [], head


def check_all(store: Store, audit_head: tuple[int, str] | None = None) -> tuple[list[Problem], Any]:
    """Every check here; returns (problems, the audit log's head)."""
    audit_problems, head = check_audit(store, audit_head)
    return (audit_problems + check_notices(store) + check_banners(store) + check_widget_builds(store)
            + check_sites(store) + check_records_texts(store)), head
