"""Public pages: the notices, their versions and diffs, in each configured language."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from flask import (Blueprint, abort, current_app, g, make_response, redirect, render_template,
                   url_for)
from flask_babel import gettext as _

from .. import notices
from ..clock import today
from ..http import conditional
from ..i18n import best_language
from ..store import get_store

bp = Blueprint("site", __name__)


@bp.url_value_preprocessor
def _pull_lang(endpoint: str | None, values: dict[str, Any] | None) -> None:
    if values and "lang" in values:
        lang = values.pop("lang")
        if lang not in current_app.config["LANGUAGES"]:
            abort(404)
        g.lang = lang


@bp.url_defaults
def _add_lang(endpoint: str, values: dict[str, Any]) -> None:
    if "lang" not in values and g.get("lang") and current_app.url_map.is_endpoint_expecting(endpoint, "lang"):
        values["lang"] = g.lang


@bp.app_context_processor
def _page_context() -> dict[str, Any]:
    lang = g.get("lang") or best_language()
    return {"lang": lang, "languages": current_app.config["LANGUAGES"],
            "organization": current_app.config["ORGANIZATION"]}


def _alternates(endpoint: str, available: list[str], **values: Any) -> list[dict[str, str]]:
    return [{"lang": lang, "url": url_for(endpoint, lang=lang, _external=True, **values)}
            for lang in current_app.config["LANGUAGES"] if lang in available]


def _etag(*parts: Any) -> str:
    build = current_app.config["BUILD_ID"]
    return hashlib.sha256("|".join(map(str, (build, *parts))).encode()).hexdigest()[:32]


def _last_modified(notice: notices.Notice) -> datetime:
    return max(datetime.fromisoformat(v.published_at) for v in notice.versions).astimezone(timezone.utc)


def _load(slug: str) -> notices.Notice:
    notice = notices.load_notice(get_store(), slug, g.lang, today())
    if notice is None or notice.current is None:
        abort(404, _("There is no notice called “%(slug)s” in this language.", slug=slug))
    return notice


@bp.get("/")
def root():
    """Send the visitor to the notices in their browser's language."""
    response = redirect(url_for("site.index", lang=best_language()), code=302)
    response.headers["Vary"] = "Accept-Language"
    return response


@bp.get("/<lang:lang>/")
def index():
    """The list of notices with the dates of their current versions."""
    items = notices.load_notices(get_store(), g.lang, today())
    items.sort(key=lambda n: (n.slug != "privacy", n.slug))
    return render_template("site/index.html", notices=items,
                           alternates=_alternates("site.index", current_app.config["LANGUAGES"]))


def _version_page(notice: notices.Notice, shown: notices.Version, endpoint: str, **values: Any):
    row = get_store().notice_version(notice.slug, shown.version, g.lang)
    if row is None:  # pragma: no cover - versions come from the same table
        abort(404)
    current = notice.current
    etag = _etag("version", notice.slug, g.lang, shown.sha256, current.version if current else "",
                 ",".join(v.version for v in notice.upcoming), endpoint)
    response = make_response(render_template(
        "site/notice.html", notice=notice, version=shown, body=notices.render(row["body"], url_for("site.index")),
        current=current, is_current=current is not None and shown.version == current.version,
        alternates=_alternates(endpoint, notice.languages.get(shown.version, []), slug=notice.slug,
                               **values),
        previous=notice.previous(shown),
    ))
    return conditional(response, etag, _last_modified(notice))


@bp.get("/<lang:lang>/<slug:slug>")
def notice_current(slug: str):
    """The version of a notice in effect today."""
    notice = _load(slug)
    return _version_page(notice, notice.current, "site.notice_current")


@bp.get("/<lang:lang>/<slug:slug>/<date:version>")
def notice_version(slug: str, version: str):
    """The permanent page of one version."""
    notice = _load(slug)
    found = notice.get(version)
    if found is None:
        abort(404, _("“%(slug)s” has no version dated %(version)s. The list of versions shows every one.",
                     slug=slug, version=version))
    return _version_page(notice, found, "site.notice_version", version=version)


@bp.get("/<lang:lang>/<slug:slug>/versions")
def notice_versions(slug: str):
    """Every published version with its date, summary and whether the change was material."""
    notice = _load(slug)
    response = make_response(render_template(
        "site/versions.html", notice=notice, current=notice.current,
        alternates=_alternates("site.notice_versions", current_app.config["LANGUAGES"], slug=slug)))
    etag = _etag("versions", slug, g.lang, *(v.sha256 for v in notice.versions),
                 notice.current.version)
    return conditional(response, etag, _last_modified(notice))


@bp.get("/<lang:lang>/<slug:slug>/diff/<date:old>/<date:new>")
def notice_diff(slug: str, old: str, new: str):
    """What changed between two versions, marked so that colour is not needed to see it."""
    notice = _load(slug)
    old_v, new_v = notice.get(old), notice.get(new)
    missing = [d for d, v in ((old, old_v), (new, new_v)) if v is None]
    if missing:
        abort(404, _("“%(slug)s” has no version dated %(version)s. The list of versions shows every one.",
                     slug=slug, version=missing[0]))
    store = get_store()
    old_row = store.notice_version(slug, old, g.lang)
    new_row = store.notice_version(slug, new, g.lang)
    lines = notices.diff(old_row["body"], new_row["body"])
    between = [v for v in notice.versions if old_v.effective < v.effective <= new_v.effective] \
        if old_v.effective < new_v.effective else []
    response = make_response(render_template(
        "site/diff.html", notice=notice, old=old_v, new=new_v, lines=lines, between=between,
        title_changed=old_v.title != new_v.title, current=notice.current,
        alternates=_alternates("site.notice_diff", current_app.config["LANGUAGES"], slug=slug,
                               old=old, new=new),
        added=sum(1 for line in lines if line.kind in ("added", "after")),
        removed=sum(1 for line in lines if line.kind in ("removed", "before")),
    ))
    etag = _etag("diff", slug, g.lang, old_v.sha256, new_v.sha256, notice.current.version)
    return conditional(response, etag, _last_modified(notice), "public, max-age=3600")
