"""A per-worker cache of what is built from the sites and notices: the widget's configuration
responses, the set of origins that may post choices, and what a consent post is checked against.

Building a configuration response reads the site, its banner and its linked notices; the
answer is the same for every visitor of that site, language and host until a site changes, a
notice version is published or withdrawn, or the day changes in KEKSI_TIMEZONE (which can make
another notice version current). Each lookup reads the generations of notices and sites
(`store.generation`, one small query, raised in the same commit as any change by any process of
any host: the CLI, the admin in another worker) and today's date; when any differs from what
the cache was made under, it starts over, as keksi.pagecache does for notice pages.

A consent post reads the generations once (`snapshot`) and takes the site, the notice versions'
hashes and the banner it validates against from the same cache (`PostReads`), instead of four
queries: a save, publication or withdrawal on any host is seen by the next post on every host.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from flask import Flask, current_app

from . import clock, store
from .store import Store

MAX_ENTRIES = 512


class _Generation:
    """What was made under one (notices generation, sites generation, day): replaced whole, so that a value
    made while something changed can only be stored into the generation it began under."""
    __slots__ = ("made_under", "entries")

    def __init__(self, made_under: tuple[Any, ...]):
        self.made_under = made_under
        self.entries: dict[Hashable, Any] = {}


class WorkerCache:
    def __init__(self, app: Flask):
        self.config = app.config
        self.app = app
        self.generation = _Generation(())

    def _now(self) -> tuple[Any, ...]:
        return (*store.generation(self.app, "notices", "sites"), clock.today(self.config))

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under `key`, else `make()`'s, kept unless it is None or something
        changed while it was being made."""
        return self.snapshot().get(key, make)

    def snapshot(self) -> Snapshot:
        """The cache as of now (the generations read once): for a request that looks up several values."""
        now = self._now()
        if self.generation.made_under != now:
            self.generation = _Generation(now)
        return Snapshot(self, self.generation)


class Snapshot:
    """One generation of a WorkerCache, as one request sees it."""
    __slots__ = ("cache", "generation")

    def __init__(self, cache: WorkerCache, generation: _Generation):
        self.cache = cache
        self.generation = generation

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """See WorkerCache.get; `make()`'s value is kept only if nothing changed since the snapshot."""
        entries = self.generation.entries
        if key in entries:
            return entries[key]
        value = make()
        if value is not None and self.cache._now() == self.generation.made_under:
            if len(entries) >= MAX_ENTRIES:
                entries.clear()
            entries[key] = value
        return value


class PostReads:
    """What keksi.consents.check_choice reads, for one post. The site and a notice version's hash
    come from this worker's cache, kept under the generations that every save, publication and
    withdrawal raises; a banner version too (it never changes: the store refuses UPDATE and DELETE).
    A "not found" is never kept, so a site or version added since is seen at once. Whether a
    subject is known is always read: an erasure raises no generation."""
    __slots__ = ("store", "snapshot")

    def __init__(self, store: Store, snapshot: Snapshot):
        self.store = store
        self.snapshot = snapshot

    def site(self, site_id: str) -> dict[str, Any] | None:
        return self.snapshot.get(("site", site_id), lambda: self.store.site(site_id))

    def notice_version_hash(self, slug: str, version: str, lang: str) -> str | None:
        return self.snapshot.get(("notice hash", slug, version, lang),
                                 lambda: self.store.notice_version_hash(slug, version, lang))

    def banner_version(self, banner_hash: str) -> dict[str, Any] | None:
        return self.snapshot.get(("banner", banner_hash), lambda: self.store.banner_version(banner_hash))

    def subject_known(self, subject_id: str) -> bool:
        return self.store.subject_known(subject_id)


def post_reads(store: Store) -> PostReads:
    """The reads for validating one consent post (keksi.consents.check_choice)."""
    return PostReads(store, cache().snapshot())


def cache() -> WorkerCache:
    """The current app's cache (one per worker process)."""
    extensions = current_app.extensions
    if "keksi.workercache" not in extensions:
        extensions["keksi.workercache"] = WorkerCache(current_app)
    return extensions["keksi.workercache"]
