"""Legal's part of the admin under /admin: notices (write, preview, publish, withdraw) and
the audit log.

Every view needs the legal role (admins pass too). Publishing and withdrawing each ask for a
reason and a confirming tick, kept in the audit log; a new version whose changes an already
published later version would undo is published only with a second tick (issue 12).
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any, NoReturn

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from .. import cookie_notice, diffs, notices, sites
from ..clock import today
from ..forms import WithdrawForm, notice_form_bytes, notice_version_form
from ..i18n import LANGUAGE_NAMES, current_language, date_in_words, format_date, language_name
from ..http import not_found
from ..messages import message, source_problem_message, store_message
from ..store import StoreError, StoreUnavailable, get_store
from .admin import _actor, _load_user, _no_cache, form_expired, role_required

bp = Blueprint("admin_notices", __name__, url_prefix="/admin")


@bp.url_value_preprocessor
def _notice_form_size(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # Three languages of a long notice post more than the app's usual limit. Set before
    # CSRFProtect reads the form, as URL value preprocessors run before every before_request.
    if endpoint == "admin_notices.notice_new":
        request.max_content_length = notice_form_bytes(len(current_app.config["LANGUAGES"]))
bp.before_request(_load_user)
bp.after_request(_no_cache)
bp.register_error_handler(CSRFError, form_expired)


def _notice(slug: str) -> notices.Notice | None:
    """The notice in the admin's language when it has one, else in the default language."""
    store = get_store()
    return (notices.load_notice(store, slug, current_language(), today())
            or notices.load_notice(store, slug, current_app.config["DEFAULT_LANGUAGE"], today()))


def title_of(slug: str, version: str | None = None) -> str:
    """A notice's title in the admin's language (of `version`, else of its latest version)."""
    notice = _notice(slug)
    if notice is None:
        return slug
    chosen = notice.get(version) if version else None
    return (chosen or notice.versions[-1]).title


@bp.get("/notices")
@role_required("legal")
def notice_list():
    """Every notice: its current and upcoming versions."""
    slugs = sorted({v["slug"] for v in get_store().notice_versions()})
    items = [_notice(slug) for slug in slugs]
    return render_template("admin/notices.html", notices=[n for n in items if n],
                           drafting={slug: _draft_link(_declaring_sites(slug)) for slug in slugs})


def _declaring_sites(slug: str) -> list[dict[str, Any]]:
    """The sites whose declaration links `slug` as their cookie notice: a draft lists the cookies of each."""
    return cookie_notice.covering(get_store().sites(), slug)


def _draft_link(covered: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The button that drafts the notice from the declarations of the sites that link it (`site`
    names the first), and, when there are several, the note that a draft covers them all."""
    if not covered:
        return None
    names = cookie_notice.site_names(covered)
    if len(covered) == 1:
        return {"site": covered[0]["id"], "label": _("Draft from the declaration of %(site)s", site=names),
                "heading": _("Drafted from the declaration of %(site)s", site=names), "note": None}
    note = ngettext("%(num)s site links this notice as its cookie notice.",
                    "%(num)s sites link this notice as their cookie notice: a draft lists the cookies of "
                    "every one of them, with the site each is used on, so that drafting for one site drops "
                    "none of the others' cookies.", len(covered))
    return {"site": covered[0]["id"], "label": _("Draft from the declarations of %(sites)s", sites=names),
            "heading": _("Drafted from the declarations of %(sites)s", sites=names), "note": note}


# -- a new version ------------------------------------------------------------------


def _starting_points(notice: notices.Notice | None) -> list[notices.Version]:
    """The versions a new one can start from: the one in effect and every upcoming one."""
    if notice is None:
        return []
    return ([notice.current] if notice.current else []) + notice.upcoming


def _form_defaults(slug: str, start: notices.Version | None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for lang in current_app.config["LANGUAGES"] if start else []:
        row = get_store().notice_version(slug, start.version, lang)
        if row:
            data[f"title_{lang}"] = row["title"]
            data[f"body_{lang}"] = row["body"]
    return data


def _draft(slug: str, start: notices.Version | None, site_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Fill `data` with a draft whose tables come from the site's declaration, around the text of
    `start` in each language (module `cookie_notice`); return what the page says about it."""
    site = get_store().site(site_id)
    back = url_for("admin_notices.notice_list", _anchor=f"notice-{slug}")
    if site is None:
        not_found(message("store", "no_site", {"site": site_id}), back, _("All notices"))
    if site["notices"].get("cookies") != slug:
        not_found(_("The site %(site)s does not link this notice as its cookie notice.", site=site["name"]), back,
                  _("All notices"))
    covered = _declaring_sites(slug)
    notes: dict[str, set[str]] = {"added": set(), "removed": set()}
    unplaced: list[str] = []
    providers: list[str] = []
    for lang in current_app.config["LANGUAGES"]:
        written = cookie_notice.draft(covered, lang, data.get(f"body_{lang}"), current_app.config["ORGANIZATION"])
        with force_locale(lang):
            data.setdefault(f"title_{lang}", cookie_notice.title())
            data[f"summary_{lang}"] = cookie_notice.summary(covered)
        data[f"body_{lang}"] = written.body
        notes["added"].update(written.added if start else ())
        notes["removed"].update(written.removed)
        unplaced += [name for name in written.unplaced if name not in unplaced]
        providers += [name for name in written.new_providers if name not in providers]
        data["material"] = data.get("material") or written.material
    return {**_draft_link(covered), "added": _category_names(covered, notes["added"]),
            "removed": _category_names(covered, notes["removed"]), "unplaced": unplaced,
            "providers": providers, "material": data["material"]}


def _category_names(covered: list[dict[str, Any]], ids: set[str]) -> list[str]:
    """Categories by their label in the admin's language, in the sites' order; those no site has
    any longer after them."""
    labels: dict[str, str] = {}
    for site in covered:
        for category in sites.banner(site, current_language())["categories"]:
            labels.setdefault(category["id"], category["label"])
    order = [cid for cid in labels if cid in ids] + sorted(ids - set(labels))
    return [labels.get(cid) or (sites.category_label(cid) if cid in sites.STANDARD_CATEGORIES else cid)
            for cid in order]


def _start(notice: notices.Notice | None) -> notices.Version | None:
    """The version the form starts from: `?from=` when it is one of the starting points, else the
    latest by date, upcoming ones included, so that a new version does not drop their changes."""
    points = _starting_points(notice)
    chosen = next((v for v in points if v.version == request.args.get("from")), None)
    return chosen or (points[-1] if points else None)


@bp.route("/notices/<slug:slug>/new", methods=["GET", "POST"])
@role_required("legal")
def notice_new(slug: str):
    """Write a new version in every language, preview it and its diff, then publish."""
    notice = _notice(slug)
    start = _start(notice)
    form_class = notice_version_form(current_app.config["LANGUAGES"], LANGUAGE_NAMES)
    page: dict[str, Any] = {"previews": [], "undos": [], "not_previewed": False, "draft": None}
    defaults = None
    if request.method == "GET":
        defaults = _form_defaults(slug, start)
        if "site" in request.args:
            page["draft"] = _draft(slug, start, request.args["site"], defaults)
    form = form_class(data=defaults)
    status = 200
    if request.method == "POST":
        status, done = _post_version(form, slug, notice, page)
        if done:
            return done
    return render_template(
        "admin/notice_form.html", form=form, slug=slug, notice=notice, start=start,
        starting_points=_starting_points(notice), today_date=today(), drafting=_draft_link(_declaring_sites(slug)),
        languages=current_app.config["LANGUAGES"],
        summary=_error_summary(form), **page), status


def _post_version(form: Any, slug: str, notice: notices.Notice | None,
                  page: dict[str, Any]) -> tuple[int, Any]:
    """Preview the posted version, or publish it when it is exactly what was previewed and
    confirmed; fills `page` with what the form shows. Returns the status and a redirect when done."""
    sources = _validate_version(form, slug, notice)
    if sources is None:
        return 400, None
    undos = notices.undone_by_later(get_store(), sources)
    page.update(undos=[_shown(undo) for undo in undos], previews=[_preview(source, notice) for source in sources])
    publishing = request.form.get("step") == "publish"
    if publishing and form.previewed.data == _digest(sources):
        if not _confirmed(form, undos):
            return 400, None
        try:
            get_store().publish_notice_versions([s.row() for s in sources], _actor(), form.reason.data.strip())
        except StoreUnavailable:
            raise  # answered with 503 and Retry-After by the app's handler
        except StoreError as exc:  # someone published this date since the preview
            form.effective_date.errors.append(store_message(exc))
            return 409, None
        flash(_("“%(title)s”: the version of %(date)s is published. It takes effect on that day.",
                title=title_of(slug, sources[0].version), date=format_date(sources[0].version)))
        return 302, redirect(url_for("admin_notices.notice_list"))
    # A publish without a preview, or of text changed since, shows this text's preview instead.
    page["not_previewed"] = publishing
    form.previewed.data = _digest(sources)
    return (409 if publishing else 200), None


def _shown(undo: notices.Undo) -> dict[str, Any]:
    """An undone line as the diff shows it: rendered (bold, link text), never Markdown syntax."""
    lines = diffs.diff("", undo.line, url_for("site.index", lang=undo.lang))
    return {"upcoming": undo.upcoming, "lang": undo.lang, "kind": undo.kind,
            "html": Markup(" ").join(line.html for line in lines) or undo.line}


def _confirmed(form: Any, undos: list[notices.Undo]) -> bool:
    """The reason and the ticks a publication needs; each missing one is an error beside its field."""
    if not (form.reason.data or "").strip():
        form.reason.errors.append(_("Write the reason: it is kept in the audit log."))
    if not form.confirm.data:
        form.confirm.errors.append(_("Tick the box to confirm."))
    if undos and not form.allow_undo.data:
        form.allow_undo.errors.append(_("The later versions listed above would undo this version's "
                                        "changes. Tick the box to publish anyway."))
    return not (form.reason.errors or form.confirm.errors or form.allow_undo.errors)


def _digest(sources: list[notices.Source]) -> str:
    """The SHA-256 of a version's exact files, path and text of each language."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(f"{source.path}\n{source.sha256}\n".encode())
    return digest.hexdigest()


def _validate_version(form: Any, slug: str, notice: notices.Notice | None) -> list[notices.Source] | None:
    """The version's file in each language, or None with every problem beside its field."""
    if not notices.SLUG_RE.match(slug):
        abort(404)
    valid = form.validate()
    effective: date | None = form.effective_date.data if not form.effective_date.errors else None
    if effective and effective < today():
        form.effective_date.errors.append(_("The date is in the past. A new version takes effect "
                                            "today or later."))
    elif effective and notice and notice.get(effective.isoformat()):
        form.effective_date.errors.append(message("store", "version_exists"))
    if not valid or form.effective_date.errors:
        return None
    sources = []
    for lang in current_app.config["LANGUAGES"]:
        result = notices.compose_source(
            slug, effective.isoformat(), lang, form[f"title_{lang}"].data, form[f"summary_{lang}"].data,
            bool(form.material.data), form[f"body_{lang}"].data)
        if isinstance(result, notices.Problem):
            form[f"body_{lang}"].errors.append(source_problem_message(result))
            return None
        sources.append(result)
    return sources


def _preview(source: notices.Source, notice: notices.Notice | None) -> dict[str, Any]:
    """One language's rendered text, and its diff against the version it will follow by date
    (what the public diff will show), which is not always the one in effect."""
    store = get_store()
    before = [v for v in (notice.versions if notice else []) if v.version < source.version]
    against = before[-1].version if before else None
    old = store.notice_version(source.slug, against, source.lang) if against else None
    return {
        "lang": source.lang,
        "title": source.title,
        "summary": source.summary,
        "html": notices.render(source.body, url_for("site.index", lang=source.lang)),
        "diff": diffs.diff(old["body"], source.body, url_for("site.index", lang=source.lang)) if old else (),
        "against": against if old else None,
    }


def _error_summary(form: Any) -> list[dict[str, str]]:
    """Every problem of the form in the order of the page, each linking to its field."""
    names = [f.name for f in form]
    if "effective_date" in names:  # the version form: its publish fields come last on the page
        last = ["reason", "allow_undo", "confirm"]
        names = [n for n in names if n not in last] + last
    items = []
    if form.csrf_token.errors:
        items.append({"id": "", "text": _("The form expired. Reload the page and try again.")})
    for f in (form[name] for name in names if name != "csrf_token"):
        # The reason's and the ticks' messages say what to do on their own; their labels are questions.
        items += [{"id": f.id, "text": str(error) if f.name in SELF_EXPLAINED else f"{f.label.text}: {error}"}
                  for error in f.errors]
    return items


SELF_EXPLAINED = {"reason", "confirm", "allow_undo"}


# -- withdrawing ---------------------------------------------------------------------


def _no_such_version(slug: str, notice: notices.Notice | None, version: str) -> NoReturn:
    """404 naming the notice and the date in words, with a link to the notice's versions."""
    if notice is None:
        not_found(_("There is no published notice “%(slug)s”.", slug=slug), url_for("admin_notices.notice_list"),
                  _("All notices"))
    title = (notice.current or notice.versions[-1]).title
    not_found(_("“%(title)s” has no published version of %(date)s.", title=title, date=date_in_words(version)),
              url_for("admin_notices.notice_list", _anchor=f"notice-{slug}"),
              _("Every version of “%(title)s”", title=title))


@bp.route("/notices/<slug:slug>/<date:version>/withdraw", methods=["GET", "POST"])
@role_required("legal")
def notice_withdraw(slug: str, version: str):
    """Withdraw a published version that has not taken effect, after a reason and a tick."""
    notice = _notice(slug)
    target = notice.get(version) if notice else None
    if target is None:
        _no_such_version(slug, notice, version)
    if target.effective <= today():
        abort(409, _("The version of %(date)s has taken effect, so it can never be withdrawn.",
                     date=format_date(version)))
    form = WithdrawForm()
    status = 200
    if form.validate_on_submit():
        try:
            get_store().withdraw_notice_version(slug, version, _actor(), today().isoformat(),
                                                form.reason.data.strip())
        except StoreUnavailable:
            raise
        except StoreError:  # withdrawn by someone else since the page was shown
            abort(409, _("The version of %(date)s was withdrawn already or has taken effect.",
                         date=format_date(version)))
        flash(_("“%(title)s”: the version of %(date)s was withdrawn. Visitors will not be shown it.",
                title=target.title, date=format_date(version)))
        return redirect(url_for("admin_notices.notice_list"))
    if request.method == "POST":
        status = 400
    languages = ", ".join(language_name(code) for code in notice.languages.get(version, []))
    return render_template("admin/withdraw.html", form=form, notice=notice, version=target,
                           version_languages=languages, summary=_error_summary(form)), status
