"""The admin under /admin: sign-in and sessions.

Every page needs a signed-in user with the right role; a wrong role gets a 403
page before anything is rendered. Legal's notices live in admin_notices.py and the audit
log in admin_audit.py, marketing's pages in admin_sites.py, users in admin_users.py,
consent records (export, erasure) in admin_records.py.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any, Callable

from flask import (Blueprint, Flask, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from .. import auth
from ..forms import ActionForm, LoginForm, SetPasswordForm
from ..messages import auth_message, message
from ..http import error_page
from ..store import get_store

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _load_user() -> None:
    lang = request.args.get("lang")
    if lang in current_app.config["LANGUAGES"]:
        session["admin_lang"] = lang
    g.user = None
    token = session.get("sid")
    if not isinstance(token, str):
        return
    g.user = auth.session_user(get_store(), token, idle(), lifetime())
    if g.user is None:
        # Signed out elsewhere, timed out, disabled, or a new password or new roles since sign-in.
        _reset_session()
        flash(_("Your session has ended. Sign in again."))


def _reset_session(token: str | None = None) -> None:
    """Empty the session cookie (a new CSRF token too), keeping the admin's language; `token` starts a session."""
    lang = session.get("admin_lang")
    session.clear()
    if lang:
        session["admin_lang"] = lang
    if token:
        session.permanent = True
        session["sid"] = token


@bp.after_request
def _no_cache(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def _admin_context() -> dict[str, Any]:
    return {"user": g.get("user"), "has_role": auth.has_role,
            "url_endpoints": current_app.view_functions}


@bp.errorhandler(CSRFError)
def form_expired(exc: CSRFError):
    """A form posted without a valid CSRF token (expired, or removed): nothing was done."""
    # In the admin's language, and saying what to do, where flask-wtf gives an English reason.
    return error_page(400, exc.name, _("Nothing was saved because the form had expired. Copy any text "
                                       "you wrote, reload the form and send it again."))


def role_required(*roles: str) -> Callable:
    """Sign-in required; and one of `roles` (admins pass every check), else 403."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(**kwargs: Any):
            if g.get("user") is None:
                return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
            if roles and not auth.has_role(g.user, *roles):
                abort(403, _("Your account does not have the role this page needs."))
            return view(**kwargs)
        return wrapped

    return decorator


def _actor() -> str:
    return g.user["email"]


def _safe_next(target: str | None) -> str:
    """`next=` when it is a path in the admin, else the dashboard. Control characters (a CR/LF
    would split the Location header) and backslashes (which browsers read as slashes) are refused."""
    if (target and target.startswith("/admin") and target.isprintable() and "\\" not in target):
        return target
    return url_for("admin.dashboard")


DEVICE_COOKIE = "keksi_device"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with email and password; failed tries slow down further guessing."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("admin/login.html", form=form), 400 if request.method == "POST" else 200
    store = get_store()
    secret = current_app.config["SECRET_KEY"]
    device = auth.known_device(store, secret, request.cookies.get(DEVICE_COOKIE), form.email.data)
    user, wait = auth.try_sign_in(store, form.email.data, form.password.data, request.remote_addr, device)
    if wait:
        form.password.errors.append(
            message("auth", "wait", {"seconds": wait}))
        return render_template("admin/login.html", form=form), 429, {"Retry-After": str(wait)}
    if user is None:
        form.password.errors.append(_("The email or password is wrong."))
        return render_template("admin/login.html", form=form), 401
    if isinstance(session.get("sid"), str):
        auth.end_session(store, session["sid"])
    _reset_session(auth.start_session(store, user["id"], lifetime()))
    response = redirect(_safe_next(request.args.get("next")))
    # Marks this browser as one that signed in to the account: its owner gets in while strangers' guessing
    # slows the account down for everyone else.
    response.set_cookie(DEVICE_COOKIE, auth.device_cookie(secret, user["id"]), max_age=auth.DEVICE_DAYS * 86400,
                        path=url_for("admin.login"), secure=current_app.config["HTTPS"], httponly=True,
                        samesite="Strict")
    return response


def idle() -> timedelta:
    """How long a session may go without a request (KEKSI_SESSION_IDLE_MINUTES)."""
    return timedelta(minutes=current_app.config["SESSION_IDLE_MINUTES"])


def lifetime() -> timedelta:
    """How long a session may last however busy (KEKSI_SESSION_HOURS)."""
    return timedelta(hours=current_app.config["SESSION_HOURS"])


@bp.post("/logout")
def logout():
    """Sign out: the session ends in the store, so a copy of the cookie no longer works anywhere."""
    form = ActionForm()
    if form.validate_on_submit() and isinstance(session.get("sid"), str):
        auth.end_session(get_store(), session["sid"])
        _reset_session()
    return redirect(url_for("admin.login"))


@bp.route("/set-password/<token>", methods=["GET", "POST"])
def set_password(token: str):
    """Set a password from a one-time link."""
    store = get_store()
    user = auth.token_user(store, token)
    if user is None:
        abort(404, _("This link has expired or was already used. Ask an admin for a new one."))
    form = SetPasswordForm()
    if form.validate_on_submit():
        try:
            auth.set_password_with_token(store, token, form.password.data)
        except auth.AuthError as exc:
            form.password.errors.append(auth_message(exc))
        else:
            flash(_("Your password is set. Sign in with it."))
            return redirect(url_for("admin.login"))
    return render_template("admin/set_password.html", form=form, account=user)


@bp.get("/")
@role_required()
def dashboard():
    """What the signed-in user can do."""
    return render_template("admin/dashboard.html")


def slash_redirects(app: Flask) -> None:
    """Each admin page whose address has no trailing slash (/admin/notices) also answers with one,
    by a redirect there, as Flask already redirects /admin/sites to /admin/sites/. Not downloads."""
    for rule in list(app.url_map.iter_rules()):
        last = rule.rule.rsplit("/", 1)[-1]
        if rule.rule.startswith("/admin/") and last and "." not in last and "GET" in (rule.methods or ()):
            app.add_url_rule(rule.rule + "/", f"slash:{rule.endpoint}", _without_slash(rule.endpoint),
                             methods=["GET"])


def _without_slash(endpoint: str) -> Callable[..., Any]:
    def view(**values: Any) -> Any:
        return redirect(url_for(endpoint, **values, **request.args.to_dict(flat=False)), 308)
    return view
