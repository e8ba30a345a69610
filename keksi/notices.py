"""Notice versions: find and validate the sources, publish them, render and diff them.

A notice is a folder `notices/<slug>/`; a version is one Markdown file per language,
`<YYYY-MM-DD>.<lang>.md`, whose date is the day the version takes effect and is its
identifier. Published versions live in the store, immutable: pages are served from
that copy, never from the files, because the copy is what visitors were shown.

Nothing here touches a request: callers pass the store, languages and today's date.
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import re
import time
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Iterator

import frontmatter
import markdown
import markdown.treeprocessors
import nh3
import yaml
from markupsafe import Markup, escape

from .store import Store

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
FILE_RE = re.compile(r"^(?P<version>\d{4}-\d{2}-\d{2})\.(?P<lang>[a-z]{2,3})\.md$")
MAX_SOURCE_BYTES = 512 * 1024


class NoticeError(Exception):
    """A problem with notice sources; the message names the file."""


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None  # the line of the file, when the problem is at one
    code: str = ""  # for the admin's words (keksi/messages.py), where a form can cause it

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Source:
    """One language of one version, as read from its file."""

    path: str
    slug: str
    version: str
    lang: str
    title: str
    summary: str
    material: bool
    body: str
    source: str
    sha256: str
    body_line: int = 1  # the line of the file on which the body begins

    def row(self) -> dict[str, Any]:
        return {
            "slug": self.slug, "version": self.version, "lang": self.lang, "title": self.title,
            "summary": self.summary, "material": int(self.material), "body": self.body,
            "source": self.source, "sha256": self.sha256,
        }


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(path: Path, root: Path) -> Source | Problem:
    """Parse one file, or say what is wrong with it."""
    rel = str(path.relative_to(root.parent)) if root.parent in path.parents else str(path)
    slug = path.parent.name
    if not SLUG_RE.match(slug):
        return Problem(rel, f"the folder name {slug!r} is not a valid notice slug "
                            "(lower-case letters, digits and hyphens)")
    match = FILE_RE.match(path.name)
    if not match:
        return Problem(rel, "the file name must be <YYYY-MM-DD>.<lang>.md, for example 2026-04-09.fi.md")
    version, lang = match["version"], match["lang"]
    try:
        date.fromisoformat(version)
    except ValueError:
        return Problem(rel, f"{version} is not a real date (YYYY-MM-DD)")
    raw = path.read_bytes()
    if len(raw) > MAX_SOURCE_BYTES:
        return _too_large(rel)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(rel, f"the file is not UTF-8 text (byte {exc.start})")
    return parse_source(rel, slug, version, lang, text)


def parse_source(rel: str, slug: str, version: str, lang: str, text: str) -> Source | Problem:
    """Parse the text of one version's file (front matter, then Markdown)."""
    if not text.startswith("---"):
        return Problem(rel, "front matter is missing: start the file with a '---' block "
                            "holding title, summary and material")
    try:
        post = frontmatter.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        return Problem(rel, f"the front matter is not valid YAML: {str(exc).splitlines()[0]}")
    meta = post.metadata
    errors = []
    for key in ("title", "summary"):
        value = meta.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"front matter '{key}' must be non-empty text")
    if not isinstance(meta.get("material"), bool):
        errors.append("front matter 'material' must be true or false")
    unknown = sorted(set(meta) - {"title", "summary", "material"})
    if unknown:
        errors.append(f"unknown front matter keys: {', '.join(unknown)}")
    if not post.content.strip():
        errors.append("the body is empty")
    if errors:
        return Problem(rel, "; ".join(errors))
    body = post.content.strip()
    return Source(
        path=rel, slug=slug, version=version, lang=lang, title=meta["title"].strip(),
        summary=" ".join(meta["summary"].split()), material=meta["material"],
        body=body + "\n", source=text, sha256=sha256(text),
        body_line=text[:text.rfind(body)].count("\n") + 1,
    )


def compose_source(slug: str, version: str, lang: str, title: str, summary: str, material: bool,
                   body: str) -> Source | Problem:
    """A version written in the admin, as the same file text `flask notices publish` reads."""
    post = frontmatter.Post(body.replace("\r\n", "\n").strip() + "\n",
                            title=title.strip(), summary=" ".join(summary.split()), material=material)
    text = frontmatter.dumps(post, sort_keys=False) + "\n"
    rel = f"{slug}/{version}.{lang}.md"
    if len(text.encode("utf-8")) > MAX_SOURCE_BYTES:  # as `notices check` would refuse its file
        return _too_large(rel)
    return parse_source(rel, slug, version, lang, text)


def _too_large(rel: str) -> Problem:
    return Problem(rel, f"the file is larger than {MAX_SOURCE_BYTES // 1024} KB", code="too_large")


@dataclass
class CheckResult:
    sources: list[Source]  # valid sources of complete versions, published or not
    unpublished: list[Source]  # the subset not yet in the store
    problems: list[Problem]


def check(root: Path, languages: Iterable[str], store: Store, today: date | None = None) -> CheckResult:
    """Validate every source under `root` against the languages and the published copies, and
    render each one within the limits (`check_rendering`).

    With `today`, a new version dated before the version in effect is refused: history
    cannot gain a version that visitors were never shown.
    """
    languages = list(languages)
    if not root.is_dir():
        return CheckResult([], [], [Problem(str(root), "the notices folder does not exist")])
    sources, problems, broken = _read_all(root, languages)
    published = {(v["slug"], v["version"], v["lang"]): v for v in store.notice_versions()}
    by_version: dict[tuple[str, str], dict[str, Source]] = {}
    for source in sources:
        by_version.setdefault((source.slug, source.version), {})[source.lang] = source
    complete: list[Source] = []
    for (slug, version), langs in sorted(by_version.items()):
        found = _version_problems(root, slug, version, langs, languages, published, today)
        problems += found
        if not found and (slug, version) not in broken:
            complete.extend(langs[lang] for lang in languages if lang in langs)
    unpublished = [s for s in complete if (s.slug, s.version, s.lang) not in published]
    return CheckResult(complete, unpublished, problems)


def _read_all(root: Path, languages: list[str]) -> tuple[list[Source], list[Problem], set[tuple[str, str]]]:
    """Every source that parses and renders, the problems of the others, and the versions
    (slug, date) that have a file which did not."""
    problems: list[Problem] = []
    sources: list[Source] = []
    broken: set[tuple[str, str]] = set()
    for path in sorted(root.glob("*/*")):
        if path.is_dir() or path.name.startswith("."):
            continue
        result = read_source(path, root)
        if isinstance(result, Problem):
            problems.append(result)
            if match := FILE_RE.match(path.name):
                broken.add((path.parent.name, match["version"]))
        elif result.lang not in languages:
            problems.append(Problem(result.path, f"language {result.lang!r} is not one of the "
                                                 f"configured languages ({', '.join(languages)})"))
        else:
            sources.append(result)
    rendered: list[Source] = []
    for source, limits in zip(sources, check_rendering([s.body for s in sources])):
        problems += [Problem(source.path, limit.english(), source.body_line + limit.line - 1) for limit in limits]
        if limits:
            broken.add((source.slug, source.version))
        else:
            rendered.append(source)
    return rendered, problems, broken


def _version_problems(root: Path, slug: str, version: str, langs: dict[str, Source], languages: list[str],
                      published: dict[tuple[str, str, str], dict[str, Any]], today: date | None) -> list[Problem]:
    """What stops one version (all its languages) from being published."""
    problems: list[Problem] = []
    # A version published before a language was added to the settings stays as it was.
    already_published = any((slug, version, lang) in published for lang in langs)
    sample = next(iter(langs.values())).path
    for lang in languages:
        missing_path = Path(sample).with_name(f"{version}.{lang}.md")
        # Every missing file is named (a file that exists but did not parse has its own problem).
        if lang not in langs and not already_published and not (root / slug / missing_path.name).exists():
            problems.append(Problem(
                str(missing_path),
                f"missing: version {version} of '{slug}' has no {lang} text; "
                "a version is published only when it exists in every configured language"))
    for source in langs.values():
        stored = published.get((slug, version, source.lang))
        if stored and stored["sha256"] != source.sha256:
            problems.append(Problem(
                source.path,
                f"edited after it was published on {stored['published_at'][:10]}: published "
                "versions are immutable, so put the correction in a new version with a new date"))
    if today is not None and not already_published:
        in_effect = [v for (pslug, v, _lang) in published if pslug == slug and v <= today.isoformat()]
        if in_effect and version < max(in_effect):
            problems.append(Problem(
                sample, f"version {version} is dated before {max(in_effect)}, the version in effect: "
                        "a new version takes effect today or later"))
    if len({s.material for s in langs.values()}) > 1:
        problems.append(Problem(
            sample, f"version {version} of '{slug}' is marked material in some languages and not others"))
    return problems


@dataclass(frozen=True)
class Undo:
    """A line that a new version changes and that a later, already published version would change
    back: `kind` is "added" (the later version lacks it) or "removed" (the later version has it)."""

    upcoming: str  # the later version's date
    lang: str
    kind: str
    line: str


def _lines(body: str) -> list[str]:
    # Lines of the Markdown source: what an author edits, and what `publish` names.
    return [line for line in body.splitlines() if line.strip()]


def undone_by_later(store: Store, sources: list[Source]) -> list[Undo]:
    """What the already published versions dated after a new version would undo of its changes.

    A version written from an older text and published for a later date silently reverts a
    change dated in between: the public diff then shows the change as removed again.
    """
    if not sources:
        return []
    slug, version = sources[0].slug, sources[0].version
    dates = sorted({v["version"] for v in store.notice_versions(slug=slug)})
    before = [d for d in dates if d < version]
    later = [d for d in dates if d > version]
    undos: list[Undo] = []
    for source in sources:
        base = store.notice_version(slug, before[-1], source.lang) if before else None
        old, new = _lines(base["body"]) if base else [], _lines(source.body)
        old_set, new_set = set(old), set(new)
        added = [line for line in new if line not in old_set]
        removed = [line for line in old if line not in new_set]
        for upcoming in later:
            row = store.notice_version(slug, upcoming, source.lang)
            if row is None:
                continue
            kept = set(_lines(row["body"]))
            undos += [Undo(upcoming, source.lang, "added", line) for line in added if line not in kept]
            undos += [Undo(upcoming, source.lang, "removed", line) for line in removed if line in kept]
    return undos


def _by_version(sources: list[Source]) -> dict[tuple[str, str], list[Source]]:
    grouped: dict[tuple[str, str], list[Source]] = {}
    for source in sources:
        grouped.setdefault((source.slug, source.version), []).append(source)
    return grouped


def undo_problem(sources: list[Source], undos: list[Undo]) -> Problem:
    """A version held back from publishing, naming each later version and each line it would undo."""
    lines = []
    for undo in undos:
        sign = "+" if undo.kind == "added" else "-"
        what = "drops" if undo.kind == "added" else "brings back"
        lines.append(f"  {undo.upcoming} ({undo.lang}) {what}: {sign} {undo.line}")
    upcoming = ", ".join(sorted({u.upcoming for u in undos}))
    return Problem(
        f"{sources[0].slug}/{sources[0].version}",
        f"not published: the already published later version(s) {upcoming} would undo its changes "
        "(the diff to them would show these lines reverted):\n" + "\n".join(lines)
        + "\n  Carry the change into the later version(s) (flask notices withdraw, then publish them "
          "again with the change), or publish anyway with --allow-undo.")


def hold_undos(store: Store, unpublished: list[Source]) -> tuple[list[Source], list[Problem]]:
    """The versions no published later version would undo, and a problem for each of the others."""
    ready: list[Source] = []
    held: list[Problem] = []
    for sources in _by_version(unpublished).values():
        undos = undone_by_later(store, sources)
        if undos:
            held.append(undo_problem(sources, undos))
        else:
            ready += sources
    return ready, held


def publish(root: Path, languages: Iterable[str], store: Store, actor: str,
            today: date | None = None, *, allow_undo: bool = False,
            reason: str | None = None) -> tuple[list[Source], list[Problem]]:
    """Publish every valid version not yet in the store; return what was published and the problems.
    A version whose changes an already published later version would undo is held back as a
    problem, unless `allow_undo`."""
    result = check(root, languages, store, today)
    ready, held = (result.unpublished, []) if allow_undo else hold_undos(store, result.unpublished)
    problems = result.problems + held
    if ready:
        store.publish_notice_versions([s.row() for s in ready], actor, reason)
    return ready, problems


def export(root: Path, store: Store) -> tuple[list[Path], list[Problem]]:
    """Write each published version that has no file under `root` as its file, byte for byte as
    published (same SHA-256), so a team keeping notices in git keeps the admin's versions too.
    A file that exists with other text is left alone and named as a problem."""
    written: list[Path] = []
    problems: list[Problem] = []
    for meta in store.notice_versions():
        path = root / meta["slug"] / f"{meta['version']}.{meta['lang']}.md"
        rel = f"{meta['slug']}/{path.name}"
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(Problem(rel, "is not a regular file: remove it, then export again"))
            continue
        if path.exists():
            if sha256_bytes(path.read_bytes()) != meta["sha256"]:
                problems.append(Problem(rel, "differs from the version published on "
                                             f"{meta['published_at'][:10]}: left as it is"))
            continue
        row = store.notice_version(meta["slug"], meta["version"], meta["lang"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(row["source"].encode("utf-8"))
        os.replace(tmp, path)
        written.append(path)
    return written, problems + withdrawn_files(root, store)


def withdrawn_files(root: Path, store: Store) -> list[Problem]:
    """Files of versions withdrawn in the admin and not published since: `publish` would publish
    them again, so a team keeping notices in git is told to remove them."""
    published = {(v["slug"], v["version"]) for v in store.notice_versions()}
    problems = []
    for entry in store.audit_log(limit=store.count_audit(action="notice.withdraw"), action="notice.withdraw"):
        slug, _, version = entry["subject"].partition("/")
        files = sorted((root / slug).glob(f"{version}.*.md")) if SLUG_RE.match(slug) else []
        if files and (slug, version) not in published:
            published.add((slug, version))  # named once, for its latest withdrawal
            problems.append(Problem(
                f"{slug}/{version}", f"was withdrawn on {entry['at'][:10]} by {entry['actor']}: remove its "
                f"files ({', '.join(f.name for f in files)}), or the next publish publishes it again"))
    return problems


# -- reading published versions ------------------------------------------


@dataclass(frozen=True)
class Version:
    slug: str
    version: str
    lang: str
    title: str
    summary: str
    material: bool
    sha256: str
    published_at: str

    @property
    def effective(self) -> date:
        return date.fromisoformat(self.version)


@dataclass
class Notice:
    """Every published version of one notice in one language, oldest first."""

    slug: str
    lang: str
    versions: list[Version]
    today: date
    languages: dict[str, list[str]] = field(default_factory=dict)  # version -> its languages

    @property
    def in_effect(self) -> list[Version]:
        return [v for v in self.versions if v.effective <= self.today]

    @property
    def current(self) -> Version | None:
        in_effect = self.in_effect
        return in_effect[-1] if in_effect else None

    @property
    def upcoming(self) -> list[Version]:
        return [v for v in self.versions if v.effective > self.today]

    @property
    def latest_material(self) -> Version | None:
        material = [v for v in self.in_effect if v.material]
        return material[-1] if material else None

    def get(self, version: str) -> Version | None:
        return next((v for v in self.versions if v.version == version), None)

    def previous(self, version: Version) -> Version | None:
        index = self.versions.index(version)
        return self.versions[index - 1] if index > 0 else None


def _version(row: dict[str, Any]) -> Version:
    return Version(
        slug=row["slug"], version=row["version"], lang=row["lang"], title=row["title"],
        summary=row["summary"], material=bool(row["material"]), sha256=row["sha256"],
        published_at=row["published_at"],
    )


def load_notice(store: Store, slug: str, lang: str, today: date) -> Notice | None:
    """A notice's versions in one language, and which languages each version has."""
    rows = store.notice_versions(slug=slug)
    languages: dict[str, list[str]] = {}
    for row in rows:
        languages.setdefault(row["version"], []).append(row["lang"])
    versions = [_version(r) for r in rows if r["lang"] == lang]
    if not versions:
        return None
    return Notice(slug, lang, versions, today, languages)


def load_notices(store: Store, lang: str, today: date) -> list[Notice]:
    """Every notice that has a version in effect in `lang`."""
    grouped: dict[str, list[Version]] = {}
    for row in store.notice_versions(lang=lang):
        grouped.setdefault(row["slug"], []).append(_version(row))
    notices = [Notice(slug, lang, versions, today) for slug, versions in grouped.items()]
    return [n for n in notices if n.current is not None]


# -- rendering --------------------------------------------------------------

# What a notice may contain once rendered: text structure, links, tables. No
# scripts, styles, forms, frames, images or event handlers, whoever wrote the file.
ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "dl", "dt", "em", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "ins", "li", "ol", "p", "pre", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "td": {"align"},
    "th": {"align"},
    "h2": {"id"}, "h3": {"id"}, "h4": {"id"},
}
ALLOWED_SCHEMES = {"http", "https", "mailto", "tel"}


MARKDOWN: dict[str, Any] = {"extensions": ["tables", "sane_lists", "toc"],
                            "extension_configs": {"toc": {"permalink": False}}, "output_format": "html"}


# A link to another notice is written as its slug, relative: `[cookie notice](../cookies)`.
NOTICE_LINK_RE = re.compile(r"^(?:\.\./|\./)*(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)/?(?P<fragment>#[\w-]*)?$")


@functools.lru_cache(maxsize=512)
def render(body: str, notices_root: str = "/") -> Markup:
    """Markdown to sanitised HTML, notice links resolved under `notices_root` (e.g. `/fi/`).

    Cached: published bodies never change.
    """

    def resolve_links(tag: str, attribute: str, value: str) -> str | None:
        if tag == "a" and attribute == "href" and (match := NOTICE_LINK_RE.match(value)):
            return f"{notices_root}{match['slug']}{match['fragment'] or ''}"
        return value

    html = markdown.markdown(body, **MARKDOWN)
    # h1 is the page's own title: demote any the author wrote.
    html = re.sub(r"<(/?)h1\b", r"<\1h2", html)
    # A table wider than a phone scrolls in its own box (site.css): tabindex lets a keyboard scroll it.
    clean = nh3.clean(
        html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=ALLOWED_SCHEMES,
        link_rel="noopener noreferrer", attribute_filter=resolve_links,
        set_tag_attribute_values={"table": {"tabindex": "0"}},
    )
    return Markup(clean)


class _Tags(HTMLParser):
    """Each start and end tag of some HTML, with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append((tag, []))


def _tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def _link_kept(href: str) -> bool:
    # Ask nh3 itself, so that this check and `render` never disagree about a scheme.
    html = nh3.clean(f'<a href="{escape(href)}">x</a>', tags={"a"}, attributes={"a": {"href"}},
                     url_schemes=ALLOWED_SCHEMES)
    return "href=" in html


def removed_markup(body: str) -> list[str]:
    """What `render` would remove from what the author wrote, each named once: HTML tags
    (`<script>`) and attributes (`onerror`) outside the allow-list, and link addresses whose
    scheme is not allowed (`javascript:alert(1)`). What Markdown itself generates is not counted."""
    converter = markdown.Markdown(**MARKDOWN)
    html = converter.convert(body)
    found: list[str] = []
    for fragment in converter.htmlStash.rawHtmlBlocks:
        for tag, attrs in _tags(str(fragment)):
            if tag not in ALLOWED_TAGS and tag != "h1":  # h1 is demoted to h2, not removed
                found.append(f"<{tag}>")
                continue
            allowed = ALLOWED_ATTRIBUTES.get("h2" if tag == "h1" else tag, set())
            found += [name for name, _ in attrs if name not in allowed]
    for tag, attrs in _tags(html):
        if tag == "a":
            found += [value for name, value in attrs if name == "href" and value and not _link_kept(value)]
    return list(dict.fromkeys(found))


# -- rendering within limits --------------------------------------------------
#
# Python-Markdown's cost grows faster than the text for some shapes (8,000 "[" took 12 s) and
# deep emphasis overflows its recursion, so a published text could answer 500 forever. Every
# version is rendered before it is published: a scan refuses the known shapes at their line,
# and the rendering itself runs in a child process that is killed when it takes too long.

MAX_NESTING = 16  # brackets, parentheses, emphasis, block quotes, list levels
RENDER_SECONDS = 10.0  # for one language's text; the largest accepted (512 KB) took 4-5 s on a busy 2-core machine

RENDER_MESSAGES = {
    "brackets": "'[' or '(' nested more than {max} deep, or left open: close each one, or write \\[ for a "
                "bracket meant as text",
    "emphasis": "emphasis (* or _) nested more than {max} deep, or left open: close each one, or write "
                "\\* for a star meant as text",
    "quotes": "block quotes (>) nested more than {max} deep",
    "indent": "lists or indentation nested more than {max} levels deep",
    "recursion": "the Markdown from this line on is nested too deeply to render",
    "slow": "the Markdown from this line on takes longer than {seconds} seconds to render",
    "failed": "the Markdown from this line on cannot be rendered ({detail})",
    "image": "an image ({detail}) is not shown: notices show no images; link to it instead",
}


@dataclass(frozen=True)
class RenderProblem:
    """Why a text cannot be shown as written, at a line of the text (1 is its first). `code` is a
    key of RENDER_MESSAGES; the admin words it in its own language."""

    line: int
    code: str
    detail: str = ""

    @property
    def params(self) -> dict[str, Any]:
        return {"max": MAX_NESTING, "seconds": f"{RENDER_SECONDS:g}", "detail": self.detail}

    def english(self) -> str:
        return RENDER_MESSAGES[self.code].format(**self.params)


def check_rendering(bodies: list[str], seconds: float | None = None) -> list[list[RenderProblem]]:
    """Each body's problems: shapes too deep to render (found by a scan), images (which are not
    shown), and rendering that fails or takes longer than `seconds` (default RENDER_SECONDS)."""
    seconds = RENDER_SECONDS if seconds is None else seconds
    results = [_structure_problems(body) for body in bodies]
    sound = [index for index, found in enumerate(results) if not found]
    for index, problem in _render_bounded([bodies[i] for i in sound], seconds):
        results[sound[index]].append(problem)
    return results


_CODE_SPAN_RE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_EMPHASIS_RE = re.compile(r"(?<!\\)(\*+|_+)")
_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _structure_problems(body: str) -> list[RenderProblem]:
    """Lines where brackets, emphasis, quotes or lists nest deeper than MAX_NESTING, at most one
    of each kind per paragraph. Code spans are skipped: nothing in them is parsed. (Without the
    fenced_code extension a ``` line is text, so what follows it is counted too.)"""
    found: list[RenderProblem] = []
    depth = {"brackets": 0, "emphasis": 0}
    reported: set[str] = set()  # kinds already named in this paragraph
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            depth = dict.fromkeys(depth, 0)  # a blank line ends the paragraph, and what it left open
            reported.clear()
            continue
        expanded = line.expandtabs(4)
        prefix = re.match(r"[ >]*", expanded)[0]
        text = _CODE_SPAN_RE.sub("", line)
        depth["brackets"] = _bracket_depth(text, depth["brackets"])
        depth["emphasis"] = _emphasis_depth(text, depth["emphasis"])
        kinds = [kind for kind, value in depth.items() if value > MAX_NESTING]
        if prefix.count(">") > MAX_NESTING:
            kinds.append("quotes")
        if len(expanded) - len(expanded.lstrip()) > 4 * MAX_NESTING:
            kinds.append("indent")
        found += [RenderProblem(number, kind) for kind in kinds if kind not in reported]
        reported.update(kinds)
    return found


def _bracket_depth(text: str, depth: int) -> int:
    """`depth` after `text`: each unescaped [ or ( opens one, ] or ) closes one. Returns early
    once past the limit, so a line of a million brackets costs no more than a short one."""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "[(":
            depth += 1
            if depth > MAX_NESTING:
                return depth
        elif char in "])":
            depth = max(0, depth - 1)
    return depth


def _emphasis_depth(text: str, depth: int) -> int:
    """`depth` after `text`: a run of * or _ before a word opens as many levels as it is long,
    one after a word closes them (CommonMark's left- and right-flanking runs)."""
    for match in _EMPHASIS_RE.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end()] if match.end() < len(text) else " "
        opens = not after.isspace() and (before.isspace() or before in _PUNCTUATION)
        closes = not before.isspace() and (after.isspace() or after in _PUNCTUATION)
        if opens and not closes:
            depth += len(match[0])
            if depth > MAX_NESTING:
                return depth
        elif closes and not opens:
            depth = max(0, depth - len(match[0]))
    return depth


def _blocks(body: str) -> list[tuple[int, str]]:
    """The body's paragraphs (text between blank lines), each with the line it starts on."""
    blocks: list[tuple[int, str]] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        if blocks and blocks[-1][0] + blocks[-1][1].count("\n") == number - 1:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + "\n" + line)
        else:
            blocks.append((number, line))
    return blocks


class _Images(markdown.treeprocessors.Treeprocessor):
    """Collects the images Markdown makes (`![alt](src)`), which rendering removes."""

    def run(self, root: Any) -> None:
        self.md.keksi_images = [(img.get("alt") or "", img.get("src") or "") for img in root.iter("img")]


def _images(body: str) -> list[tuple[str, str]]:
    converter = markdown.Markdown(**MARKDOWN)
    converter.treeprocessors.register(_Images(converter), "keksi_images", 0)
    converter.convert(body)
    return converter.keksi_images


def _first_failing_block(body: str) -> int:
    """The line of the first paragraph that fails to render on its own (1 when none does)."""
    for number, block in _blocks(body):
        try:
            markdown.markdown(block, **MARKDOWN)
        except Exception:
            return number
    return 1


def _render_child(sender: Any, bodies: list[str]) -> None:
    """In the child: render each body, saying when each starts, what images it has, or where it failed."""
    for index, body in enumerate(bodies):
        sender.send(("start", index, None))
        try:
            sender.send(("images", index, _images(body)))
        except RecursionError:
            sender.send(("recursion", index, _first_failing_block(body)))
        except Exception as exc:  # any other failure is the text's too: say where, then go on
            sender.send(("failed", index, (_first_failing_block(body), type(exc).__name__)))
    sender.close()


def _render_bounded(bodies: list[str], seconds: float) -> Iterator[tuple[int, RenderProblem]]:
    """Render `bodies` in a child process; yield (index, problem) for each one that has images,
    fails, or takes longer than `seconds` (the child is then killed and a new one takes the rest)."""
    start = 0
    while start < len(bodies):
        timed_out = None
        unanswered: set[int] = set()  # started, with no word back yet
        for message, index, value in _child_messages(_render_child, bodies[start:], seconds):
            index += start
            if message == "timeout":
                timed_out = index
                break
            if message == "start":
                unanswered.add(index)
                continue
            unanswered.discard(index)
            if message == "images":
                yield from ((index, RenderProblem(_line_of_image(bodies[index], alt, src), "image",
                                                  f"![{alt}]({src})")) for alt, src in value)
            elif message == "recursion":
                yield index, RenderProblem(value, "recursion")
            elif message == "failed":
                yield index, RenderProblem(value[0], "failed", value[1])
        if timed_out is None:
            # A child that died on a text (out of memory, say) sent nothing more about it.
            yield from ((index, RenderProblem(1, "failed", "the renderer stopped")) for index in unanswered)
            return
        yield timed_out, RenderProblem(_slow_line(bodies[timed_out], seconds), "slow")
        start = timed_out + 1


def _slow_line(body: str, seconds: float) -> int:
    """The line of the paragraph that renders slowest on its own: the one still rendering after
    `seconds` (at least five, so that a tiny limit still finds it), else the one that took longest."""
    line, longest, current = 1, -1.0, 1
    for message, _index, value in _child_messages(_render_blocks_child, [body], max(seconds, 5.0)):
        if message == "timeout":
            return current
        if message == "start":
            current = value
        elif value[1] > longest:
            line, longest = value
    return line


def _render_blocks_child(sender: Any, bodies: list[str]) -> None:
    for number, block in _blocks(bodies[0]):
        sender.send(("start", 0, number))
        began = time.monotonic()
        try:
            markdown.markdown(block, **MARKDOWN)
        except Exception:
            pass  # only the time is measured here
        sender.send(("took", 0, (number, time.monotonic() - began)))
    sender.close()


def _child_messages(target: Any, bodies: list[str], seconds: float) -> Iterator[tuple[str, int, Any]]:
    """Run `target(sender, bodies)` in a forked child; yield what it sends, and ("timeout", index of
    the body it was on, None) when it sends nothing for `seconds`. The child never outlives this."""
    context = multiprocessing.get_context("fork")  # no start-up cost: the child has markdown loaded
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=target, args=(sender, bodies), daemon=True)
    child.start()
    sender.close()
    current = 0
    try:
        while True:
            if not receiver.poll(seconds):
                yield "timeout", current, None
                return
            try:
                message = receiver.recv()
            except EOFError:  # the child finished (or died: then it sent its last word already)
                return
            current = message[1]
            yield message
    finally:
        child.kill()
        child.join()
        receiver.close()


def _line_of_image(body: str, alt: str, src: str) -> int:
    lines = body.splitlines()
    for needle in (f"![{alt}]", src):
        for number, line in enumerate(lines, 1):
            if needle and needle in line:
                return number
    return 1
