"""Admins' part of the admin: the people who use it, under /admin/users; and everyone's own password.

Each change to a user (roles, disabled, removed) ends that user's sessions and is audited; the store
refuses any change that would leave no enabled admin who can sign in.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask_babel import ngettext
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from .. import auth
from ..forms import ActionForm, ChangePasswordForm, CurrentPasswordForm, RolesForm, UserForm
from ..http import not_found
from ..messages import auth_message, message, store_message
from ..store import LastAdmin, StoreError, StoreUnavailable, get_store
from .admin import _load_user, _no_cache, _reset_session, form_expired, idle, lifetime, role_required

bp = Blueprint("admin_users", __name__, url_prefix="/admin")
bp.before_request(_load_user)
bp.after_request(_no_cache)
bp.register_error_handler(CSRFError, form_expired)


def _user_or_404(user_id: int) -> dict[str, Any]:
    user = get_store().user(user_id)
    if user is None:
        not_found(message("store", "no_user", {"user": user_id}), url_for("admin_users.user_list"), _("All users"))
    return user


@bp.route("/users", methods=["GET", "POST"])
@role_required("admin")
def user_list():
    """Every user with their roles and state; add users, each getting a one-time link to set a password."""
    store = get_store()
    form = UserForm()
    link = None
    status = 200
    if form.validate_on_submit():
        try:
            email = auth.check_new_user(form.email.data, form.roles.data)
            user_id = store.add_user(email, form.roles.data, None, g.user["email"])
        except auth.AuthError as exc:
            form.email.errors.append(auth_message(exc))
            status = 400
        except StoreUnavailable:
            raise  # answered with 503: nothing was saved
        except StoreError as exc:  # the one refusal add_user makes: the email is taken
            form.email.errors.append(store_message(exc))
            status = 400
        else:
            link = url_for("admin.set_password", token=auth.make_password_token(store, user_id), _external=True)
            form = UserForm(formdata=None)
    elif request.method == "POST":
        status = 400
    return render_template("admin/users.html", form=form, users=store.users(), link=link), status


def _user_page(user: dict[str, Any], status: int = 200, roles_form: RolesForm | None = None,
               link: str | None = None, error: str | None = None):
    roles_form = roles_form or RolesForm(formdata=None, data={"roles": user["roles"]})
    return render_template("admin/user.html", account=user, roles_form=roles_form, action_form=ActionForm(),
                           link=link, error=error), status


@bp.get("/users/<int:user_id>")
@role_required("admin")
def user_page(user_id: int):
    """One user: change their roles, disable or enable them, send a new link, remove them."""
    return _user_page(_user_or_404(user_id))


@bp.post("/users/<int:user_id>/roles")
@role_required("admin")
def user_roles(user_id: int):
    """Give a user new roles; their sessions end, so the new roles apply from their next sign-in."""
    user = _user_or_404(user_id)
    form = RolesForm()
    if not form.validate():
        return _user_page(user, 400, roles_form=form)
    try:
        get_store().set_user_roles(user_id, form.roles.data, g.user["email"])
    except LastAdmin as exc:
        return _user_page(user, 409, roles_form=form, error=store_message(exc))
    flash(_("The roles of %(email)s are saved. They sign in again to use them.", email=user["email"]))
    return redirect(url_for("admin_users.user_page", user_id=user_id))


@bp.post("/users/<int:user_id>/<any(disable, enable):change>")
@role_required("admin")
def user_disable(user_id: int, change: str):
    """Disable a user (their sessions end and they cannot sign in) or enable them again."""
    user = _user_or_404(user_id)
    try:
        get_store().set_user_disabled(user_id, change == "disable", g.user["email"])
    except LastAdmin as exc:
        return _user_page(user, 409, error=store_message(exc))
    flash(_("%(email)s is disabled and signed out everywhere.", email=user["email"]) if change == "disable"
          else _("%(email)s can sign in again.", email=user["email"]))
    return redirect(url_for("admin_users.user_page", user_id=user_id))


@bp.post("/users/<int:user_id>/link")
@role_required("admin")
def user_link(user_id: int):
    """A new one-time link to set a password, for someone who forgot theirs or never used the first."""
    user = _user_or_404(user_id)
    store = get_store()
    link = url_for("admin.set_password", token=auth.make_password_token(store, user_id), _external=True)
    store.audit(g.user["email"], "user.link", user["email"])
    return _user_page(user, link=link)


@bp.post("/users/<int:user_id>/remove")
@role_required("admin")
def user_remove(user_id: int):
    """Remove a user for good, after the confirmation box is ticked; the audit log keeps what they did."""
    user = _user_or_404(user_id)
    if request.form.get("confirm") != "yes":
        return _user_page(user, 400, error=_("Tick the box to confirm that %(email)s is to be removed.",
                                             email=user["email"]))
    try:
        get_store().remove_user(user_id, g.user["email"])
    except LastAdmin as exc:
        return _user_page(user, 409, error=store_message(exc))
    flash(_("%(email)s was removed.", email=user["email"]))
    if user_id == g.user["id"]:
        _reset_session()
        return redirect(url_for("admin.login"))
    return redirect(url_for("admin_users.user_list"))


@bp.route("/password", methods=["GET", "POST"])
@role_required()
def change_password():
    """Change one's own password (every other session then ends), and see one's sessions."""
    form = ChangePasswordForm()
    status = 200
    if form.validate_on_submit():
        status = _change_password(form)
        if status is None:
            flash(_("Your password is changed. Every other session of your account has ended."))
            return redirect(url_for("admin.dashboard"))
    elif request.method == "POST":
        status = 400
    return _account_page(form, CurrentPasswordForm(formdata=None, prefix="sessions"), status)


@bp.post("/sessions/end-others")
@role_required()
def end_other_sessions():
    """Sign out everywhere but here, once the current password is given again (ASVS 3.3.4)."""
    form = CurrentPasswordForm(prefix="sessions")
    if not form.validate():
        return _account_page(ChangePasswordForm(formdata=None), form, 400)
    status = _check_current(form)
    if status:
        return _account_page(ChangePasswordForm(formdata=None), form, status)
    ended = auth.end_other_sessions(get_store(), g.user, session["sid"])
    flash(ngettext("%(num)s other session has ended.", "%(num)s other sessions have ended.", ended))
    return redirect(url_for("admin_users.change_password"))


def _account_page(password_form: ChangePasswordForm, sessions_form: CurrentPasswordForm, status: int):
    sessions = auth.session_list(get_store(), g.user["id"], session["sid"], idle(), lifetime())
    return render_template("admin/change_password.html", form=password_form, sessions_form=sessions_form,
                           sessions=sessions), status


def _check_current(form: Any) -> int | None:
    """Check the current password as a sign-in would (guessing it is slowed down the same way):
    None when right, else the status of the form shown again with the error beside the field."""
    store = get_store()
    device = auth.session_key(session["sid"])
    user, wait = auth.try_sign_in(store, g.user["email"], form.current.data, request.remote_addr, device)
    if wait:
        form.current.errors.append(message("auth", "wait", {"seconds": wait}))
        return 429
    if user is None:
        form.current.errors.append(_("This is not your current password."))
        return 400
    return None


def _change_password(form: ChangePasswordForm) -> int | None:
    """Set the new password once the current one is right; None when done, else the form's status."""
    status = _check_current(form)
    if status:
        return status
    store = get_store()
    try:
        store.set_password(g.user["id"], auth.hash_password(form.password.data), g.user["email"])
    except auth.AuthError as exc:
        form.password.errors.append(auth_message(exc))
        return 400
    _reset_session(auth.start_session(store, g.user["id"], lifetime()))
    return None
