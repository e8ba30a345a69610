"""Public pages: the notices, their versions and diffs, in each configured language."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, time, timezone
from typing import Any, Callable, NoReturn
from zoneinfo import ZoneInfo

from flask import (Blueprint, Response, abort, current_app, g, make_response, redirect,
                   render_template, url_for)
from flask_babel import gettext as _

from .. import clock, consents, diffs, notices, pagecache, sites
from ..clock import today
from ..http import conditional, not_found
from ..i18n import best_language, current_language, date_in_words, format_moment
from ..store import get_store
from . import api

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
    lang = current_language()
    return {"lang": lang, "languages": current_app.config["LANGUAGES"],
            "organization": current_app.config["ORGANIZATION"],
            "widget_site": current_app.config["WIDGET_SITE"]}


def _alternates(endpoint: str, available: list[str], **values: Any) -> list[dict[str, str]]:
    return [{"lang": lang, "url": url_for(endpoint, lang=lang, _external=True, **values)}
            for lang in current_app.config["LANGUAGES"] if lang in available]


# Settings that show on every page: a change to them must not be answered with 304.
_PAGE_SETTINGS = ("LANGUAGES", "DEFAULT_LANGUAGE", "DATE_FORMATS", "ORGANIZATION", "TIMEZONE")


def _etag(notice: notices.Notice, *parts: Any) -> str:
    """A validator for a page about `notice`: the build, the settings shown on pages, every
    version of the notice (a version published later can change a page's links and
    summaries) and which one is current (which changes at midnight, with no publication)."""
    config = current_app.config
    state = [config["BUILD_ID"], *(repr(config[name]) for name in _PAGE_SETTINGS), notice.slug,
             notice.lang, *(f"{v.version}:{v.sha256}" for v in notice.versions),
             notice.current.version if notice.current else "", *parts]
    return hashlib.sha256("|".join(map(str, state)).encode()).hexdigest()[:32]


def _last_modified(notice: notices.Notice) -> datetime:
    """When the notice's pages last changed: its latest publication, or the start of the day
    (in KEKSI_TIMEZONE) when its current version took effect, whichever is later.

    A version published in advance changes the pages again when it takes effect; without
    the second term a client asking If-Modified-Since would keep the old version.
    """
    moments = [datetime.fromisoformat(v.published_at) for v in notice.versions]
    if notice.current is not None:
        zone = ZoneInfo(current_app.config["TIMEZONE"])
        moments.append(datetime.combine(notice.current.effective, time(0), tzinfo=zone))
    return max(moments).astimezone(timezone.utc)


def _load(slug: str) -> notices.Notice:
    """A notice with at least one published version (maybe only an upcoming one), else 404."""
    notice = notices.load_notice(get_store(), slug, g.lang, today())
    if notice is None:
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


def _page(etag: str, last_modified: datetime, render: Callable[[], str],
          cache_control: str = "public, no-cache") -> Response:
    """Answer 304 before rendering anything when the client's copy is current; otherwise render
    the page, and let keksi.pagecache keep it for later requests (the ETag covers all it shows)."""
    probe = conditional(current_app.response_class(), etag, last_modified, cache_control)
    if probe.status_code == 304:
        return probe
    return pagecache.mark(conditional(make_response(render()), etag, last_modified, cache_control))


def _version_page(notice: notices.Notice, shown: notices.Version, endpoint: str, **values: Any):
    def render() -> str:
        row = get_store().notice_version(notice.slug, shown.version, g.lang)
        current = notice.current
        return render_template(
            "site/notice.html", notice=notice, version=shown,
            body=notices.render(row["body"], url_for("site.index")),
            current=current, is_current=current is not None and shown.version == current.version,
            alternates=_alternates(endpoint, notice.languages.get(shown.version, []), slug=notice.slug,
                                   **values),
            previous=notice.previous(shown),
        )

    return _page(_etag(notice, endpoint, shown.version), _last_modified(notice), render)


@bp.get("/<lang:lang>/<slug:slug>")
def notice_current(slug: str):
    """The version of a notice in effect today."""
    notice = _load(slug)
    if notice.current is None:  # a new notice published ahead of its first effective date
        return redirect(url_for("site.notice_version", slug=slug, version=notice.upcoming[0].version))
    return _version_page(notice, notice.current, "site.notice_current")


def no_such_version(notice: notices.Notice, version: str) -> NoReturn:
    """404 naming the notice by its title and the date in words, with a link to its list of versions."""
    title = (notice.current or notice.versions[-1]).title
    not_found(_("“%(title)s” has no version of %(date)s.", title=title, date=date_in_words(version)),
              url_for("site.notice_versions", lang=g.lang, slug=notice.slug),
              _("Every version of “%(title)s”", title=title))


@bp.get("/<lang:lang>/<slug:slug>/<date:version>")
def notice_version(slug: str, version: str):
    """The permanent page of one version."""
    notice = _load(slug)
    found = notice.get(version)
    if found is None:
        no_such_version(notice, version)
    return _version_page(notice, found, "site.notice_version", version=version)


@bp.get("/<lang:lang>/<slug:slug>/versions")
def notice_versions(slug: str):
    """Every published version with its date, summary and whether the change was material."""
    notice = _load(slug)
    return _page(_etag(notice, "versions"), _last_modified(notice), lambda: render_template(
        "site/versions.html", notice=notice, current=notice.current or notice.versions[-1],
        alternates=_alternates("site.notice_versions", current_app.config["LANGUAGES"], slug=slug)))


@bp.get("/<lang:lang>/<slug:slug>/diff/<date:old>/<date:new>")
def notice_diff(slug: str, old: str, new: str):
    """What changed between two versions, marked so that colour is not needed to see it."""
    notice = _load(slug)
    old_v, new_v = notice.get(old), notice.get(new)
    missing = [d for d, v in ((old, old_v), (new, new_v)) if v is None]
    if missing:
        no_such_version(notice, missing[0])
    store = get_store()
    old_row = store.notice_version(slug, old, g.lang)
    new_row = store.notice_version(slug, new, g.lang)
    lines = diffs.diff(old_row["body"], new_row["body"], url_for("site.index"))
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
    etag = _etag(notice, "diff", old, new)
    return conditional(response, etag, _last_modified(notice), "public, max-age=3600")


def _consent_or_404(consent_id: str) -> dict[str, Any]:
    row = get_store().consent(consent_id) if consents.HEX32.match(consent_id) else None
    if row is None:
        abort(404, _("There is no consent with this ID. Check that you copied the whole ID."))
    return row


def _private(response: Response) -> Response:
    """A page about one visitor's choice: the consent id in its URL is their key to it."""
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # never leak the id onwards
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _labelled_choices(row: dict[str, Any], site: dict[str, Any]) -> list[tuple[str, bool]]:
    labels = {c["id"]: c.get("label") for c in site["categories"]}
    with_labels = []
    for category, allowed in json.loads(row["choices"]).items():
        label = labels.get(category)
        if isinstance(label, dict):
            label = label.get(g.lang)
        if not label:
            label = sites.category_label(category) if category in sites.STANDARD_CATEGORIES else category
        with_labels.append((label, allowed))
    return with_labels


@bp.get("/<lang:lang>/receipt/<consent_id>")
def receipt(consent_id: str):
    """A visitor's receipt for one choice, and how to change or withdraw it."""
    store = get_store()
    row = _consent_or_404(consent_id)
    site = store.site(row["site"]) or {"id": row["site"], "name": row["site"], "origins": [],
                                        "categories": []}
    later = store.later_consent(row["site"], row["subject_id"], row["seq"])
    valid_until = clock.parse_utc(row["valid_until"])
    return _private(make_response(render_template(
        "site/receipt.html", row=row, site=site, choices=_labelled_choices(row, site), later=later,
        recorded_at=format_moment(clock.parse_utc(row["recorded_at"])),
        valid_until=None if row["action"] == "withdraw" else format_moment(valid_until),
        later_at=format_moment(clock.parse_utc(later["recorded_at"])) if later else None,
        expired=valid_until < datetime.now(timezone.utc),
        change_urls=api.receipt_change_urls(row),
        alternates=_alternates("site.receipt", current_app.config["LANGUAGES"], consent_id=consent_id),
    )))


@bp.get("/<lang:lang>/receipt/<consent_id>/banner")
def receipt_banner(consent_id: str):
    """The banner exactly as it was shown with one choice: its texts, categories and cookies."""
    row = _consent_or_404(consent_id)
    banner = get_store().banner_version(row["banner_hash"])
    if banner is None:
        abort(404, _("The banner shown with this choice is not on record."))
    return _private(make_response(render_template(
        "site/receipt_banner.html", row=row, banner=banner, content=json.loads(banner["content"]),
        alternates=_alternates("site.receipt_banner", current_app.config["LANGUAGES"], consent_id=consent_id),
    )))
