"""The embeddable consent widget: build widget/consent.js into one minified, precompressed script,
and keep every build served in the store (code escrow). widget/signals.js, the other vendors'
consent signals that consent.js loads for the sites that need them, is minified, compressed and
kept the same way: no record names its version, but its builds and when each was first served show
what ran beside the widget on a visitor's page.

The build minifies the script (tdewolff/minify through minify-go, which also renames local
names, so the source keeps readable ones) and the stylesheet (rcssmin), puts the stylesheet into
the script as a string (the widget adopts it as a constructed stylesheet, which a strict host
page CSP allows), stamps the build hash in as the widget version, and compresses the result
with gzip and brotli once. It is cached per process and redone only when the sources change.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import brotli
import minify as tdewolff  # the PyPI package minify-go
import rcssmin

from .store import Store

CSS_MARK = '"__KEKSI_CSS__"'
VERSION_MARK = "__KEKSI_VERSION__"
PLACEHOLDER_VERSION = "0" * 12
SOURCES = ("consent.js", "consent.css")
SIGNALS = ("signals.js",)  # no styles and no version of its own: it is not what a record names


@dataclass(frozen=True)
class Build:
    """One build of the widget: the script in each encoding, its version and ETag."""

    file: str  # the source it was built from, and the name it is served as: consent.js or signals.js
    version: str  # first 12 hex of the SHA-256 of the script built with a zero version
    source_hash: str  # SHA-256 of the source files, what the cache is keyed by
    identity: bytes
    gzip: bytes
    br: bytes

    @property
    def etag(self) -> str:
        return self.version

    def body(self, encoding: str) -> bytes:
        return {"br": self.br, "gzip": self.gzip}.get(encoding, self.identity)


class BuildError(ValueError):
    """The widget sources cannot be built (a marker is missing)."""


def minify(script: str, css: str | None = None) -> tuple[str, str]:
    """The built script, and its version: the hash of the build before the version is stamped in.
    Without `css`, a script that neither inlines styles nor stamps its version (signals.js)."""
    if css is None:
        built = _minify_js(script)
        return built, _version(built)
    if CSS_MARK not in script or VERSION_MARK not in script:
        raise BuildError(f"consent.js must contain {CSS_MARK} and \"{VERSION_MARK}\"")
    css_min = rcssmin.cssmin(css)
    js_min = _minify_js(script)
    # json.dumps gives a valid JavaScript string literal; no "</script>" can occur in CSS we wrote.
    built = js_min.replace(CSS_MARK, json.dumps(css_min, ensure_ascii=False))
    version = _version(built.replace(VERSION_MARK, PLACEHOLDER_VERSION))
    return built.replace(VERSION_MARK, version), version


def _minify_js(script: str) -> str:
    try:
        return tdewolff.string("application/javascript", script)
    except tdewolff.MinifyError as exc:
        raise BuildError(f"the script does not parse: {exc}") from None


def _version(unstamped: str) -> str:
    return hashlib.sha256(unstamped.encode("utf-8")).hexdigest()[:12]


def is_build_of(script: str, version: str, file: str = SOURCES[0]) -> bool:
    """Whether `script` is the build of `file` that `version` names: with the version stamped in it
    replaced by the placeholder again (signals.js has none stamped in), it hashes to that version
    (and so a kept script cannot be rewritten)."""
    if file == SIGNALS[0]:
        return _version(script) == version
    return version in script and _version(script.replace(version, PLACEHOLDER_VERSION)) == version


def _sources(folder: Path, sources: tuple[str, ...] = SOURCES) -> tuple[list[str], str]:
    texts = [(folder / name).read_text(encoding="utf-8") for name in sources]
    return texts, hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()


def build(folder: Path, sources: tuple[str, ...] = SOURCES) -> Build:
    """Build the widget (or with `sources=SIGNALS`, signals.js) from the sources in `folder`."""
    texts, source_hash = _sources(folder, sources)
    return _build(sources[0], texts, source_hash)


def _build(file: str, texts: list[str], source_hash: str) -> Build:
    script, version = minify(*texts)
    data = script.encode("utf-8")
    return Build(file=file, version=version, source_hash=source_hash, identity=data,
                 gzip=gzip.compress(data, compresslevel=9, mtime=0),
                 br=brotli.compress(data, quality=11, mode=brotli.MODE_TEXT))


_lock = threading.Lock()
_seen: dict[str, tuple] = {}  # folder and sources -> the files' (name, mtime, size) when last read
_builds: dict[str, Build] = {}  # folder and sources -> its build, which knows the sources' hash


def current(folder: Path, sources: tuple[str, ...] = SOURCES) -> Build:
    """The build of the sources (the widget's, or SIGNALS) as they are now, made once per process.

    A build is keyed by the sources' contents. To keep a request to two stat calls, the
    files are read again only when their size or modification time changes, and rebuilt
    only when their contents did.
    """
    stamp = tuple((name, (st := (folder / name).stat()).st_mtime_ns, st.st_size) for name in sources)
    where = f"{folder}\0{sources[0]}"
    if _seen.get(where) != stamp or where not in _builds:
        with _lock:
            if _seen.get(where) != stamp or where not in _builds:
                texts, source_hash = _sources(folder, sources)
                old = _builds.get(where)
                if old is None or old.source_hash != source_hash:
                    _builds[where] = _build(sources[0], texts, source_hash)
                _seen[where] = stamp
    return _builds[where]


def archive(build: Build, store: Store, archived: set[str]) -> None:
    """Keep `build` (of consent.js or signals.js) in the store under its version the first time this
    process serves it.

    Every consent record names the widget version that posted it; with the exact script kept
    (CNIL 2020-092 asks for code escrow), the record shows which code the visitor ran, and the
    signals.js builds first served before it show what ran beside it.
    `archived` is the process's set of versions already kept: one query per build and process.
    """
    if build.version in archived:
        return
    store.remember_widget_build(build.version, build.identity.decode("utf-8"), build.file)
    archived.add(build.version)
