"""The JSON API, version 1: notices, the widget's site configuration, and consents.

Only POST /consents is exempt from CSRF: it carries no cookie and checks the
request's Origin against the site's allow-list instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, url_for
from flask_babel import force_locale

from .. import auth, clock, consents, notices, sites, workercache
from ..clock import today
from ..http import conditional, unavailable_reason
from ..i18n import best_language, format_date, format_moment
from ..openapi import OPENAPI
from ..ratelimit import RateLimiter, address_key
from ..store import StoreUnavailable, get_store
from .admin import _load_user

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
        # What that version changed, shown in the banner that asks again (the diff opens in a new tab).
        "change_summary": material.summary if material else None,
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
    """Let `origin` read the answer. It is echoed in canonical form, as it was compared."""
    response.vary.add("Origin")
    canonical = sites.canonical_origin(origin)
    if canonical:
        response.headers["Access-Control-Allow-Origin"] = canonical
    return response


@dataclass(frozen=True)
class _Config:
    """A site's configuration response for one language and host, as kept per worker."""
    body: bytes
    etag: str
    lang: str
    origins: frozenset[str]


@bp.get("/sites/<site_id>/config")
def site_config(site_id: str):
    """Everything the widget needs for one site and language, in one cacheable response."""
    lang_arg = request.args.get("lang")
    # Kept per worker until a site or notice changes or the day does (keksi.workercache); the
    # URLs in it are absolute, so the host (and a first-party mode's path) is part of the key.
    made = workercache.cache().get(("config", site_id, lang_arg, request.url_root),
                                   lambda: _make_config(site_id, lang_arg))
    if made is None:
        return _config_error(site_id, lang_arg)
    g.lang = made.lang
    origin = request.headers.get("Origin")
    response = current_app.response_class(made.body, mimetype="application/json")
    response = conditional(response, made.etag, None, "public, max-age=300")
    return _cors(response, origin if sites.origin_allowed({"origins": made.origins}, origin) else None)


def _config_lang(site: dict[str, Any], lang_arg: str | None) -> str | None:
    """The language to answer in, or None when `lang_arg` is not a language code at all."""
    lang = site["default_language"] if lang_arg is None else lang_arg
    if lang in current_app.config["LANGUAGES"]:
        return lang
    # A page in a language not served here (its <html lang>): the site's default, in the
    # same single request; the answer's `lang` says which language it is.
    return site["default_language"] if LANGUAGE_TAG.fullmatch(lang) else None


def _config_error(site_id: str, lang_arg: str | None) -> Response:
    site = get_store().site(site_id)
    if site is None:
        return error(404, "site", f"There is no site {site_id!r}.")
    origin = request.headers.get("Origin")
    # CORS on the error too, so that the widget on an allowed page can read why.
    return _cors(error(400, "lang", f"lang {lang_arg!r} is not a language code; use one of "
                                    f"{', '.join(current_app.config['LANGUAGES'])}."),
                 origin if sites.origin_allowed(site, origin) else None)


def _make_config(site_id: str, lang_arg: str | None) -> _Config | None:
    """Build a site's configuration response; None when the site or language is unknown."""
    store = get_store()
    site = store.site(site_id)
    lang = _config_lang(site, lang_arg) if site else None
    if lang is None:
        return None
    banner, content, banner_hash = _banner(sites.canonical_json(site), lang,
                                           current_app.config["ORGANIZATION"])
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
        refusal_days=max(site["consent_days"], consents.REFUSAL_DAYS),
        # The site's look: outside the banner hash, so a new colour asks nobody again.
        style=sites.theme_css(site.get("theme")),
        endpoint=url_for("api.record_consent", _external=True),
        receipt_url=url_for("site.receipt", lang=lang, consent_id="CONSENTID",
                            _external=True).replace("CONSENTID", "{consent_id}"),
    )
    signals = sites.consent_signals(site)
    if signals:  # other vendors' consent APIs: widget/signals.js, told which and for which category
        body["signals"] = f"{url_for('widget.signals', _external=True)}?{urlencode(sorted(signals.items()))}"
    etag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    _origins_seen(site["origins"])
    return _Config(current_app.json.response(body).get_data(), etag, lang, frozenset(site["origins"]))


@functools.lru_cache(maxsize=256)
def _banner(site_json: str, lang: str, operator: str) -> tuple[dict[str, Any], str, str]:
    """The banner for a site definition and language, its canonical text and hash.

    Cached by the definition's text: an edited site is a new key. Translations only
    change with a new deployment, which starts new processes.
    """
    banner = sites.banner(json.loads(site_json), lang, operator)
    return banner, sites.canonical_json(banner), sites.banner_hash(banner)


def _rate_limiter() -> RateLimiter:
    """The app's own limiter (one per worker process)."""
    extensions = current_app.extensions
    if "keksi.ratelimit" not in extensions:
        extensions["keksi.ratelimit"] = RateLimiter(current_app.config["RATE_LIMIT"])
    return extensions["keksi.ratelimit"]


def _every_origin() -> frozenset[str]:
    """Every site's origins, read from the store; kept as what this worker knows sites allow."""
    every = frozenset(allowed for site in get_store().sites() for allowed in site["origins"])
    current_app.extensions["keksi.origins_known"] = every
    return every


def _origins_seen(origins: Iterable[str]) -> None:
    """Add origins a site allows (its configuration built, a choice recorded) to what this worker knows."""
    known = current_app.extensions.get("keksi.origins_known", frozenset())
    if not known.issuperset(origins):
        current_app.extensions["keksi.origins_known"] = known | frozenset(origins)


def _allowed_anywhere(origin: str | None, store_down: bool = False) -> bool:
    """Whether any site allows `origin`: from a per-worker set of every site's origins, so that
    preflights, refusals and 429s do not read and parse every site definition."""
    return origin is not None and sites.origin_allowed({"origins": _known_origins(store_down)}, origin)


def _known_origins(store_down: bool) -> frozenset[str]:
    """Every site's origins; while the database cannot be reached (`store_down`, or found so now),
    those this worker last knew sites to allow. Those pages then read only "try again", so a set a
    moment old is safe; a worker that knows none allows none: the allow-list is never guessed (the
    widget retries its queued choice all the same)."""
    if not store_down:
        with contextlib.suppress(StoreUnavailable):
            return workercache.cache().get("origins", _every_origin)
    return current_app.extensions.get("keksi.origins_known", frozenset())


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

    def refused(response: Response, store_down: bool = False) -> Response:
        """Let an allowed page read why its post failed (Retry-After included); tell a foreign one nothing."""
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        return _cors(response, origin if _allowed_anywhere(origin, store_down) else None)

    wait = _rate_limiter().hit(address_key(request.remote_addr))
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
    config = current_app.config
    try:
        store = get_store()  # inside the try: a database out of reach is a 503 the page can read
        data = consents.parse_body(raw)
        own_pages = ((sites.canonical_origin(request.host_url), config["WIDGET_SITE"])
                     if config["WIDGET_SITE"] else None)
        choice = consents.check_choice(data, workercache.post_reads(store), config["LANGUAGES"], today(),
                                       origin, sec_gpc=request.headers.get("Sec-GPC") == "1",
                                       own_pages=own_pages)
        if not config["STORE_PAGE"]:
            choice = dataclasses.replace(choice, page=None)  # checked, never kept (KEKSI_STORE_PAGE)
        row, created = consents.record(
            store, choice,
            ip=consents.truncate_ip(request.remote_addr, config["STORE_IP"] == "truncated"),
            user_agent=consents.coarse_user_agent(request.user_agent.string,
                                                  config["STORE_USER_AGENT"] == "coarse"),
            zone=ZoneInfo(config["TIMEZONE"]))
    except consents.InvalidChoice as exc:
        return refused(error(exc.status, exc.field, exc.message))
    except StoreUnavailable as exc:
        current_app.logger.warning("consent not recorded: %s", exc)
        return refused(error(503, "store", f"The choice was not recorded: {unavailable_reason(exc)}. Retry shortly.",
                             **{"Retry-After": "2"}), store_down="store" not in g)
    body = _consent_answer(row)
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_consent", consent_id=row["consent_id"])
    response.headers["Cache-Control"] = "no-store"
    own = sites.canonical_origin(request.host_url)
    same_origin = own is not None and sites.canonical_origin(origin) == own
    if request.args.get("cookie") == "1" and same_origin:
        _set_choice_cookie(response, row, store.site(row["site"]))
    if choice.origin:
        _origins_seen([choice.origin])
    return _cors(response, origin)


CHOICE_COOKIE = "keksi_consent"
REFUSAL_MIN_DAYS = 183  # a refusal stands at least six months (the EU's 2025 Digital Omnibus proposal)


def _set_choice_cookie(response: Response, row: dict[str, Any], site: dict[str, Any] | None) -> None:
    """First-party mode (README): the widget and this API are served from the site's own origin,
    so the stored choice can be set with Set-Cookie. Safari and Brave keep such a cookie for its
    whole Max-Age, where they cap one written by a script at 7 days. The value is exactly what
    the widget writes itself (widget/consent.js, `state`); the widget asks for it (`?cookie=1`)
    only for the last choice it has queued, so an older retried choice never replaces a newer one.
    """
    if site is None:
        return
    recorded = clock.parse_utc(row["recorded_at"])
    expires = clock.parse_utc(row["valid_until"])
    choices = json.loads(row["choices"])
    optional = {cid: 1 if on else 0 for cid, on in choices.items() if cid != "necessary"}
    if not any(optional.values()):
        expires = max(expires, recorded + timedelta(days=REFUSAL_MIN_DAYS))
    state = {"s": row["subject_id"], "i": row["consent_id"], "c": optional, "v": row["notice_version"],
             "h": row["banner_hash"][:16], "k": sites.choice_hash(site)[:16], "l": row["lang"],
             "t": int(recorded.timestamp()), "x": int(expires.timestamp())}
    if row.get("cookie_notice_version"):
        state["w"] = row["cookie_notice_version"]
    domain = (site.get("cookie_domain") or "").lstrip(".")
    host = request.host.split(":")[0]
    response.set_cookie(
        CHOICE_COOKIE, quote(json.dumps(state, separators=(",", ":")), safe=""),
        max_age=max(0, state["x"] - int(datetime.now(timezone.utc).timestamp())), path="/",
        domain=domain if domain and f".{host}".endswith(f".{domain}") else None,
        secure=request.is_secure or current_app.config["HTTPS"], httponly=False, samesite="Lax")


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
    body["banner_url"] = url_for("site.receipt_banner", lang=row["lang"], consent_id=consent_id, _external=True)
    body["change_urls"] = receipt_change_urls(row)
    body["recorded_at_text"] = format_moment(clock.parse_utc(row["recorded_at"]), row["lang"])
    body["valid_until_text"] = (format_moment(clock.parse_utc(row["valid_until"]), row["lang"])
                                if body["valid_until"] else None)
    for notice in (body["notice"], body["cookie_notice"]):
        if notice:
            notice["url"] = url_for("site.notice_version", lang=row["lang"], slug=notice["slug"],
                                    version=notice["version"], _external=True)
    response = jsonify(body)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def receipt_change_urls(row: dict[str, Any]) -> list[str]:
    """Where the visitor can change or withdraw this choice: the page of the site where it was
    made, with the fragment that opens the widget's panel there; for a record that does not
    name its origin, that path on each of the site's origins, and Keksi's own pages when they
    show this site's banner."""
    site = get_store().site(row["site"])
    urls = consents.change_urls(row, site["origins"] if site else [])
    if current_app.config["WIDGET_SITE"] == row["site"] and not row.get("origin"):
        urls.append(url_for("site.index", lang=row["lang"], _external=True) + consents.OPEN_PANEL)
    return urls


# -- proof for legal: banner versions and widget builds, by hash (signed-in legal or admin) ------

def _legal_only(view: Callable[..., dict[str, Any] | Response]) -> Callable[..., Response]:
    """401 without an admin session, 403 for a user without the legal (or admin) role; else the
    view's answer as private JSON."""
    @functools.wraps(view)
    def wrapped(**kwargs: Any) -> Response:
        _load_user()  # the admin's session rules: disabled users, changed passwords
        if g.user is None:
            return error(401, "session", "Sign in to the admin as a legal or admin user first.")
        if not auth.has_role(g.user, "legal"):
            return error(403, "role", "This needs the legal or admin role.")
        answer = view(**kwargs)
        response = answer if isinstance(answer, Response) else jsonify(answer)
        response.headers["Cache-Control"] = "private, no-store"
        return response
    return wrapped


@bp.get("/banners/<banner_hash>")
@_legal_only
def banner_version(banner_hash: str):
    """A banner version, in full, by the hash that consent records name (legal and admin)."""
    row = get_store().banner_version(banner_hash) if consents.HEX64.match(banner_hash) else None
    if row is None:
        return error(404, "banner_hash", "No banner version with this hash was ever served.")
    return {"hash": row["hash"], "site": row["site"], "lang": row["lang"],
            "first_served_at": row["first_served_at"], "content": json.loads(row["content"]),
            "url": url_for("admin_proof.banner", banner_hash=row["hash"], _external=True)}


@bp.get("/widget-builds/<version>")
@_legal_only
def widget_build(version: str):
    """A widget build, the exact script served, by the `widget_version` records name (legal and admin)."""
    row = get_store().widget_build(version) if consents.WIDGET_VERSION.match(version) else None
    if row is None:
        return error(404, "widget_version", "No widget build with this version was ever served.")
    return {"version": row["version"], "file": row["file"], "sha256": row["sha256"],
            "first_served_at": row["first_served_at"],
            "script": row["script"],
            "url": url_for("admin_proof.widget_script", version=row["version"], _external=True)}


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(OPENAPI)
