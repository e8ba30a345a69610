"""A per-worker cache of what is built from the sites and notices: the widget's configuration
responses and the set of origins that may post choices.

Building a configuration response reads the site, its banner and its linked notices; the
answer is the same for every visitor of that site, language and host until a site changes, a
notice version is published or withdrawn, or the day changes in KEKSI_TIMEZONE (which can make
another notice version current). Each lookup reads the generations of notices and sites
(`store.generation`, one small query, raised in the same commit as any change by any process of
any host: the CLI, the admin in another worker) and today's date; when any differs from what
the cache was made under, it starts over, as keksi.pagecache does for notice pages.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

from flask import Flask, current_app

from . import clock, store

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
        now = self._now()
        generation = self.generation
        if generation.made_under != now:
            generation = self.generation = _Generation(now)
        if key in generation.entries:
            return generation.entries[key]
        value = make()
        if value is not None and self._now() == generation.made_under:
            if len(generation.entries) >= MAX_ENTRIES:
                generation.entries.clear()
            generation.entries[key] = value
        return value


def cache() -> WorkerCache:
    """The current app's cache (one per worker process)."""
    extensions = current_app.extensions
    if "keksi.workercache" not in extensions:
        extensions["keksi.workercache"] = WorkerCache(current_app)
    return extensions["keksi.workercache"]
