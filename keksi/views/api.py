"""The JSON API, version 1: notices, the widget's site configuration, and consents.

Only POST /consents is exempt from CSRF: it carries no cookie and checks the
request's Origin against the site's allow-list instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, url_for
from flask_babel import force_locale

from .. import consents, notices, sites
from ..clock import today
from ..http import conditional
from ..i18n import best_language, format_date
from ..openapi import OPENAPI
from ..ratelimit import RateLimiter
from ..store import StoreUnavailable, get_store

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_CONSENT_BODY = 4096
LANGUAGE_TAG = re.compile(r"[a-z]{2,3}")  # an ISO 639 code, as the widget takes it from <html lang>


def _lang_arg(default: str | None = None) -> str:
    """The `lang` query argument, else `default` or the browser's language; 400 when it is not served."""
    lang = request.args.get("lang")
    languages = current_app.config["LANGUAGES"]
    if lang is None:
        return default if default in languages else best_language()
    if lang not in languages:
        abort(400, f"lang: {lang!r} is not served here; use one of {', '.join(languages)}.")
    return lang


def error(status: int, field: str, message: str, **headers: str) -> Response:
    response = jsonify(error=_STATUS_NAMES.get(status, "Error"), field=field, message=message,
                       status=status)
    response.status_code = status
    response.headers.update(headers)
    return response


_STATUS_NAMES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
                 413: "Payload Too Large", 429: "Too Many Requests", 503: "Service Unavailable"}


def _notice_summary(slug: str, lang: str) -> dict[str, Any] | None:
    found = notices.load_notice(get_store(), slug, lang, today())
    if found is None or found.current is None:
        return None
    current, material = found.current, found.latest_material
    return {
        "slug": slug,
        "title": current.title,
        "version": current.version,
        "effective_date": current.version,
        "last_updated": format_date(current.version, lang),
        "url": url_for("site.notice_version", lang=lang, slug=slug, version=current.version,
                       _external=True),
        "current_url": url_for("site.notice_current", lang=lang, slug=slug, _external=True),
        "sha256": current.sha256,
        "material": current.material,
        "latest_material_version": material.version if material else None,
        "diff_url": url_for("site.notice_diff", lang=lang, slug=slug, old="0000-00-00",
                            new=current.version, _external=True).replace("0000-00-00", "{from}"),
    }


@bp.get("/notices/<slug:slug>")
def notice(slug: str):
    """The current version of a notice: its date, permanent link, hash and latest material change."""
    lang = g.lang = _lang_arg()
    found = notices.load_notice(get_store(), slug, lang, today())
    if found is None or found.current is None:
        abort(404, f"There is no notice {slug!r} in {lang}.")
    body = _notice_summary(slug, lang)
    body.pop("last_updated")
    body.pop("diff_url")
    body["lang"] = lang
    body["upcoming"] = [{"version": v.version, "material": v.material,
                         "url": url_for("site.notice_version", lang=lang, slug=slug, version=v.version,
                                        _external=True)}
                        for v in found.upcoming]
    etag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    response = conditional(jsonify(body), etag, None)
    if "lang" not in request.args:  # the answer then depends on the browser's language
        response.vary.add("Accept-Language")
    return response


def _cors(response: Response, origin: str | None) -> Response:
    response.vary.add("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


@bp.get("/sites/<site_id>/config")
def site_config(site_id: str):
    """Everything the widget needs for one site and language, in one cacheable response."""
    store = get_store()
    site = store.site(site_id)
    if site is None:
        return error(404, "site", f"There is no site {site_id!r}.")
    origin = request.headers.get("Origin")
    cors_origin = origin if sites.origin_allowed(site, origin) else None
    lang = request.args.get("lang", site["default_language"])
    if lang not in current_app.config["LANGUAGES"]:
        if LANGUAGE_TAG.fullmatch(lang):
            # A page in a language not served here (its <html lang>): the site's default, in the
            # same single request; the answer's `lang` says which language it is.
            lang = site["default_language"]
        else:  # CORS on the error too, so that the widget on an allowed page can read why.
            return _cors(error(400, "lang", f"lang {lang!r} is not a language code; use one of "
                                            f"{', '.join(current_app.config['LANGUAGES'])}."), cors_origin)
    g.lang = lang
    banner, content, banner_hash = _banner(sites.canonical_json(site), lang)
    remembered = current_app.extensions.setdefault("keksi.banners", set())
    if banner_hash not in remembered:  # one database round trip per banner and worker
        store.remember_banner(banner_hash, site_id, lang, content)
        remembered.add(banner_hash)
    with force_locale(lang):
        linked = {key: _notice_summary(slug, lang) for key, slug in site["notices"].items()}
    body = dict(
        banner,
        banner_hash=banner_hash,
        choice_hash=sites.choice_hash(site),
        name=site["name"],
        languages=current_app.config["LANGUAGES"],
        timezone=current_app.config["TIMEZONE"],
        notices=linked,
        cookies=sites.cookie_patterns(site),
        endpoint=url_for("api.record_consent", _external=True),
        receipt_url=url_for("site.receipt", lang=lang, consent_id="CONSENTID",
                            _external=True).replace("CONSENTID", "{consent_id}"),
    )
    etag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    response = conditional(jsonify(body), etag, None, "public, max-age=300")
    return _cors(response, cors_origin)


@functools.lru_cache(maxsize=256)
def _banner(site_json: str, lang: str) -> tuple[dict[str, Any], str, str]:
    """The banner for a site definition and language, its canonical text and hash.

    Cached by the definition's text: an edited site is a new key. Translations only
    change with a new deployment, which starts new processes.
    """
    banner = sites.banner(json.loads(site_json), lang)
    return banner, sites.canonical_json(banner), sites.banner_hash(banner)


def _rate_limiter() -> RateLimiter:
    """The app's own limiter (one per worker process)."""
    extensions = current_app.extensions
    if "keksi.ratelimit" not in extensions:
        extensions["keksi.ratelimit"] = RateLimiter(current_app.config["RATE_LIMIT"])
    return extensions["keksi.ratelimit"]


def _allowed_anywhere(origin: str | None) -> bool:
    return origin is not None and any(sites.origin_allowed(s, origin) for s in get_store().sites())


@bp.route("/consents", methods=["OPTIONS"])
def consent_preflight():
    """Answer the browser's CORS preflight, for origins some site allows."""
    origin = request.headers.get("Origin")
    allowed = _allowed_anywhere(origin)
    response = Response(status=204 if allowed else 403)
    if allowed:
        response.headers.update({
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "86400",
        })
    return _cors(response, origin if allowed else None)


@bp.post("/consents")
def record_consent():
    """Record one choice; 201 only after it is committed."""
    origin = request.headers.get("Origin")

    def refused(response: Response) -> Response:
        """Let an allowed page read why its post failed (Retry-After included); tell a foreign one nothing."""
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        return _cors(response, origin if _allowed_anywhere(origin) else None)

    wait = _rate_limiter().hit(request.remote_addr or "")
    if wait:
        return refused(error(429, "rate", "Too many choices from this address; wait and try again.",
                             **{"Retry-After": str(int(wait) + 1)}))
    def too_large() -> Response:
        return refused(error(413, "body", f"The body is larger than {MAX_CONSENT_BODY} bytes."))

    if request.content_length is not None and request.content_length > MAX_CONSENT_BODY:
        return too_large()
    raw = request.get_data(cache=False)
    if len(raw) > MAX_CONSENT_BODY:
        return too_large()
    store = get_store()
    config = current_app.config
    try:
        data = consents.parse_body(raw)
        own_pages = (request.host_url.rstrip("/"), config["WIDGET_SITE"]) if config["WIDGET_SITE"] else None
        choice = consents.check_choice(data, store, config["LANGUAGES"], today(), origin,
                                       sec_gpc=request.headers.get("Sec-GPC") == "1", own_pages=own_pages)
        row, created = consents.record(
            store, choice,
            ip=consents.truncate_ip(request.remote_addr, config["STORE_IP"] == "truncated"),
            user_agent=consents.coarse_user_agent(request.user_agent.string,
                                                  config["STORE_USER_AGENT"] == "coarse"),
            zone=ZoneInfo(config["TIMEZONE"]))
    except consents.InvalidChoice as exc:
        return refused(error(exc.status, exc.field, exc.message))
    except StoreUnavailable as exc:
        return refused(error(503, "store", f"The choice was not recorded: {exc}. Retry shortly.",
                             **{"Retry-After": "2"}))
    body = _consent_answer(row)
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_consent", consent_id=row["consent_id"])
    response.headers["Cache-Control"] = "no-store"
    return _cors(response, origin)


def _consent_answer(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "consent_id": row["consent_id"],
        "subject_id": row["subject_id"],
        "recorded_at": row["recorded_at"],
        "valid_until": row["valid_until"],
        "receipt_url": url_for("site.receipt", lang=row["lang"], consent_id=row["consent_id"],
                               _external=True),
    }


@bp.get("/consents/<consent_id>")
def get_consent(consent_id: str):
    """A visitor's receipt: what was chosen, when, and under which notice version."""
    row = get_store().consent(consent_id) if consents.HEX32.match(consent_id) else None
    if row is None:
        return error(404, "consent_id", "There is no consent with this ID.")
    body = consents.receipt(row)
    body["receipt_url"] = url_for("site.receipt", lang=row["lang"], consent_id=consent_id, _external=True)
    for notice in (body["notice"], body["cookie_notice"]):
        if notice:
            notice["url"] = url_for("site.notice_version", lang=row["lang"], slug=notice["slug"],
                                    version=notice["version"], _external=True)
    response = jsonify(body)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(OPENAPI)
