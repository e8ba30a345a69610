"""Marketing's part of the admin under /admin/sites: sites, their embed code and preview,
their figures; and, for legal, the export of their raw consent records.

Every view but the export needs the marketing role (admins pass too); a wrong role gets a 403 before
anything is rendered. A site is checked by `sites.validate`, exactly as `flask sites add`
checks it, and stored with `store.save_site`.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import rcssmin
from babel.dates import format_skeleton
from babel.lists import format_list
from flask import (Blueprint, Response, abort, current_app, flash, g, make_response, redirect,
                   render_template, request, session, stream_with_context, url_for)
from flask_babel import force_locale, format_decimal, format_percent
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_wtf.csrf import CSRFError
from wtforms import Form, StringField

from .. import catalogue, consents, figures, scan_results, sites
from ..clock import day_start, record_text, today
from ..forms import CatalogueForm
from ..http import CSP, not_found, refuse_cross_site
from ..i18n import LANGUAGE_NAMES, current_language, format_date, language_name
from ..messages import contrast_message, invalid_site_message, message, store_message, theme_labels
from ..site_forms import (MAX_FORM_BYTES, MAX_FORM_ENTRIES, MAX_FORM_PARTS, MAX_FORM_ROWS, MORE_ROWS,
                          THEME_COLOURS, Built, add_category, add_empty_rows, add_error, attach_errors,
                          build_definition, contrast_check, form_data, form_entries, new_site_data, site_form,
                          too_many_categories)
from ..store import StoreError, database_path, get_store, open_store
from .admin import _load_user, form_expired, role_required
from .admin_notices import title_of
from .admin_proof import proof_links

bp = Blueprint("admin_sites", __name__, url_prefix="/admin/sites")
bp.register_error_handler(CSRFError, form_expired)  # the same translated answer as the rest of the admin

EXPORT_CHUNK = 64 * 1024


@bp.url_value_preprocessor
def _bigger_forms(endpoint: str | None, values: dict[str, Any] | None) -> None:
    # URL value preprocessors run before every before_request hook, so this applies before
    # CSRFProtect reads the posted form.
    if endpoint in ("admin_sites.site_new", "admin_sites.site_edit"):
        request.max_content_length = MAX_FORM_BYTES  # a site with many cookies posts more than usual
        request.max_form_parts = MAX_FORM_PARTS
        # werkzeug counts the parts of multipart posts only: these caps hold for any encoding.
        if request.method == "POST" and (len(request.form) > MAX_FORM_PARTS
                                         or form_entries(request.form.keys()) > MAX_FORM_ENTRIES):
            abort(413, ngettext("Nothing was saved: a site form can have at most %(num)s cookie row and "
                                "%(categories)s categories. Remove empty rows, then send it again.",
                                "Nothing was saved: a site form can have at most %(num)s cookie rows and "
                                "%(categories)s categories. Remove empty rows, then send it again.",
                                MAX_FORM_ROWS, categories=sites.MAX_CATEGORIES))


@bp.before_request
def _user() -> None:
    kept = session.get("admin_lang")
    _load_user()
    # The preview's ?lang= picks the banner's language, not the admin's.
    if request.endpoint == "admin_sites.preview" and session.get("admin_lang") != kept:
        if kept is None:
            session.pop("admin_lang", None)
        else:
            session["admin_lang"] = kept


@bp.after_request
def _no_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _site_or_404(site_id: str) -> dict[str, Any]:
    site = get_store().site(site_id)
    if site is None:
        not_found(_("There is no site with the id %(id)s. It may have been removed.", id=site_id),
                  url_for("admin_sites.site_list"), _("All sites"))
    return site


def _notice_slugs() -> list[str]:
    return sorted({v["slug"] for v in get_store().notice_versions()})


def _notice_choices(slugs: list[str]) -> list[tuple[str, str]]:
    """The notices a site can link, as the pickers show them: the title in the admin's language, then
    the slug that the site's definition and the notice's address use."""
    shown = {slug: title_of(slug) for slug in slugs}
    return sorted(((slug, f"{shown[slug]} ({slug})" if shown[slug] != slug else slug) for slug in slugs),
                  key=lambda choice: choice[1].casefold())


def shown_text(text: str | dict[str, str]) -> str:
    """A declaration's text (one for all languages, or one per language) in the admin's language."""
    return text if isinstance(text, str) else (text.get(current_language()) or next(iter(text.values())))


def category_name(site: dict[str, Any] | None, category_id: str) -> str:
    """A category's name in the admin's language: its own, else the catalogs' for a standard one."""
    for category in (site or {}).get("categories", []):
        if category["id"] == category_id and category.get("label"):
            return shown_text(category["label"])
    if category_id in sites.STANDARD_CATEGORIES:
        return sites.category_label(category_id)
    return category_id


def block_name(site: dict[str, Any] | None, block: str | Any) -> str:
    """What the form calls a category: a standard one by its id, a custom one by its block, whose
    name in the admin's language (else in any language, else its id) may not be saved yet."""
    if isinstance(block, str):
        return category_name(site, block)
    fields = block.form
    names = [fields[f"label_{lang}"].data for lang in [current_language(), *current_app.config["LANGUAGES"]]
             if f"label_{lang}" in fields]
    return next((n for n in names if n), None) or fields.category_id.data or _("New category")


# -- the list ------------------------------------------------------------------------


@bp.get("/")
@role_required("marketing")
def site_list():
    """Every site: its name, id and origins, with links to edit it, its embed code and figures."""
    return render_template("admin/sites.html", sites=get_store().sites())


# -- creating and editing ---------------------------------------------------------------


@bp.route("/new", methods=["GET", "POST"])
@role_required("marketing")
def site_new():
    """Add a site: name, id, origins, languages, lifetime, notices, categories and cookies."""
    return _form_page(None)


@bp.route("/<site_id>/edit", methods=["GET", "POST"])
@role_required("marketing")
def site_edit(site_id: str):
    """Change a site; a change to what visitors see makes a new banner version."""
    return _form_page(_site_or_404(site_id))


def _form_page(site: dict[str, Any] | None):
    config = current_app.config
    languages = config["LANGUAGES"]
    slugs = _notice_slugs()
    create = site is None
    form_class = site_form(languages, LANGUAGE_NAMES, _notice_choices(slugs), create)
    status = 200
    built: Built | None = None
    note: dict[str, str] | None = None  # what the "Add a category" button did
    refused = ""  # why it added nothing, beside the button
    if request.method == "GET":
        data = (new_site_data(languages, config["DEFAULT_LANGUAGE"], config["CONSENT_DAYS"], slugs)
                if create else form_data(site, languages))
        form = form_class(data=data)
        add_empty_rows(form)
    else:
        form = form_class()
        step = request.form.get("step", "save")
        # The buttons other than save only change the form: nothing is checked or saved.
        if step == "more":
            add_empty_rows(form, MORE_ROWS)
        elif step == "add-category":
            entry = add_category(form)
            if entry:
                note = {"text": _("A new category was added at the end of the form. Fill it in, then save."),
                        "id": entry.id}
            else:
                refused = too_many_categories()
                note = {"text": refused, "id": "add-category"}
        else:
            result = _save(form, site, languages, slugs)
            if not isinstance(result, Built):
                return result
            built, status = result, 409 if result.conflict else 400
    stored_ids = {c["id"] for c in (site or {}).get("categories", [])}
    return render_template("admin/site_form.html", form=form, site=site, create=create,
                           catalogue_form=None if create else catalogue_form(site),
                           languages=languages, categories=sites.STANDARD_CATEGORIES,
                           block_name=lambda block: block_name(site, block), block_summary=lambda block: block_summary(form, block),
                           open_blocks=_open_blocks(form, stored_ids, note), text_rows=text_rows,
                           banner_placeholders=_banner_placeholders(site, languages),
                           theme_colours=THEME_COLOURS, preview_lang=current_language(),
                           summary=_error_summary(form, built, site), note=note, refused=refused,
                           stored_ids=stored_ids), status


def text_rows(text: str | None, width: int = 60) -> int:
    """How many rows a textarea needs to show `text` whole in the normal font (2 to 12)."""
    lines = (text or "").split("\n")
    return max(2, min(12, sum(-(-len(line) // width) or 1 for line in lines)))


def block_summary(form: Any, block: str | Any) -> str:
    """What a category's closed group says: whether visitors are asked, and how many cookies."""
    if isinstance(block, str):
        rows, shown = form[f"rows_{block}"], block == "necessary" or form[f"show_{block}"].data
    else:
        rows, shown = block.form.rows, not block.form.remove.data
    count = sum(bool(entry.form["name"].data) for entry in rows.entries)
    cookies = ngettext("%(num)d cookie", "%(num)d cookies", count)
    if block == "necessary":
        return _("always on, %(cookies)s", cookies=cookies)
    return (_("visitors are asked, %(cookies)s", cookies=cookies) if shown
            else _("not asked, %(cookies)s", cookies=cookies))


def _open_blocks(form: Any, stored_ids: set[str], note: dict[str, str] | None) -> set[str]:
    """The category groups shown open: those with a problem, new ones of marketing's own (being
    filled in), and the one a note links to. Every other group is closed, so the page can be scanned."""
    opened = {block if isinstance(block, str) else block.id
              for _f, block, _n in _fields_with_errors(form) if block is not None}
    opened |= {e.id for e in form.custom.entries if (e.form.category_id.data or "") not in stored_ids}
    if note and note.get("id"):
        opened.add(note["id"])
    return opened


def _banner_placeholders(site: dict[str, Any] | None, languages: list[str]) -> dict[str, dict[str, str]]:
    """Keksi's own title and first sentence per language, shown in the empty banner fields."""
    texts = {}
    for lang in languages:
        with force_locale(lang):
            texts[lang] = sites.generated_first_layer(site or _NEW_SITE, lang)
    return texts


_NEW_SITE = {"categories": [{"id": c, "services": []} for c in sites.STANDARD_CATEGORIES]}


def _save(form: Any, site: dict[str, Any] | None, languages: list[str], slugs: list[str]):
    """Check the form and save it; the redirect on success, else the Built with errors attached."""
    store = get_store()
    create = site is None
    form.validate()  # the CSRF token, and each field's own limits
    site_id = (form.site_id.data or "") if create else site["id"]
    built = build_definition(form, languages, site_id, site)
    if create and site_id and store.site(site_id) is not None:
        add_error(form.site_id, message("store", "site_exists", {"site": site_id}))
    try:
        clean = sites.validate(built.definition, languages, slugs)
    except sites.InvalidSite as exc:
        attach_errors(form, exc.errors, built)
        clean = None
    if clean is None or _has_errors(form) or built.errors:
        return built
    try:
        store.save_site(clean, actor=g.user["email"], create=create)
    except StoreError as exc:  # another save got there first
        built.errors.setdefault("", []).append(store_message(exc))
        built.conflict = True
        return built
    if create:
        flash(_("The site %(name)s was added. Put its embed code on every page of the site.",
                name=clean["name"]))
        return redirect(url_for("admin_sites.snippet", site_id=clean["id"]))
    flash(_("The changes to %(name)s were saved.", name=clean["name"]))
    flash(who_is_asked_again(site, clean, languages))
    return redirect(url_for("admin_sites.site_list"))


def save_declaration(site: dict[str, Any], definition: dict[str, Any], action: str,
                     details: dict[str, Any]) -> dict[str, Any]:
    """Check and store a site's changed declaration as one step (a catalogue service, a scan's
    cookie) wrote it, audited as `action`; a 409 naming the problem when it cannot be saved."""
    store = get_store()
    try:
        clean = sites.validate(definition, current_app.config["LANGUAGES"], _notice_slugs())
        store.save_site(clean, actor=g.user["email"], create=False)
    except sites.InvalidSite as error:
        abort(409, _("The declaration could not be saved: %(error)s", error=invalid_site_message(error)))
    except StoreError as error:
        abort(409, _("The declaration could not be saved: %(error)s", error=store_message(error)))
    store.audit(g.user["email"], action, site["id"], details)
    return clean


# -- adding a service from the catalogue ------------------------------------------------------


def catalogue_form(site: dict[str, Any]) -> CatalogueForm:
    """The site form's "Add a service from the catalogue": services grouped by their category,
    and the site's categories to put one in (the catalogue's suggestion first)."""
    form = CatalogueForm(prefix="catalogue")
    groups: dict[str, list[tuple[str, str]]] = {}
    for entry in catalogue.services():
        groups.setdefault(category_name(site, entry["category"]), []).append((entry["id"], entry["name"]))
    form.service.choices = groups
    ids = [c["id"] for c in site["categories"]]
    ids += [c for c in sites.STANDARD_CATEGORIES if c not in ids]
    form.category.choices = [("", _("As the catalogue suggests"))] + [(c, category_name(site, c)) for c in ids]
    return form


@bp.post("/<site_id>/catalogue")
@role_required("marketing")
def add_from_catalogue(site_id: str):
    """Declare a catalogue service with all its cookies, lifetimes and purposes (audited, saved at once)."""
    site = _site_or_404(site_id)
    form = catalogue_form(site)
    if not form.validate():
        abort(400, " ".join(str(e) for f in form for e in f.errors))
    entry = catalogue.service(form.service.data)
    back = url_for(".site_edit", site_id=site["id"], _anchor="catalogue")
    definition = scan_results.add_service(site, entry["id"], form.category.data,
                                          current_app.config["ORGANIZATION"])
    if definition is None:
        flash(_("%(service)s is declared already, as %(name)s. Edit its cookies in the form instead.",
                service=entry["name"], name=scan_results.declared_service(site, entry["id"])["name"]))
        return redirect(back)
    category = form.category.data or entry["category"]
    clean = save_declaration(site, definition, "site.catalogue", {"service": entry["id"], "category": category})
    flash(_("%(service)s was added to %(category)s with its cookies. Visitors are asked again.",
            service=entry["name"], category=category_name(clean, category)))
    return redirect(back)


def who_is_asked_again(before: dict[str, Any], after: dict[str, Any], languages: list[str]) -> str:
    """Who the widget asks to choose again after a save, as it decides: everyone when the choice
    hash changed (it covers every language), else those who chose in a language whose banner changed."""
    if sites.choice_hash(after) != sites.choice_hash(before):
        return _("What visitors consent to changed: a category, a cookie, a text about them in some "
                 "language, or how long consent lasts. Every visitor is asked to choose again, whatever "
                 "language they chose in.")
    operator = current_app.config["ORGANIZATION"]
    changed = [lang for lang in languages if sites.banner_hash(sites.banner(after, lang, operator))
               != sites.banner_hash(sites.banner(before, lang, operator))]
    if not changed:
        return _("The banner did not change: nobody is asked to choose again.")
    names = format_list([language_name(lang) for lang in changed], locale=current_language())
    return ngettext("The banner changed in one language, %(languages)s: visitors who chose in it are asked "
                    "to choose again. Nobody else is asked.",
                    "The banner changed in these languages: %(languages)s. Visitors who chose in them are "
                    "asked to choose again. Nobody else is asked.", len(changed), languages=names)


def _fields_with_errors(form: Any) -> list[tuple[Any, Any, int | None]]:
    """(field, category, row number) for every field with an error, in the order of the page; the
    category is a standard one's id or a custom category's block."""
    languages = current_app.config["LANGUAGES"]
    order = ["name", "site_id", "origins", "default_language", "consent_days", "cookie_domain",
             "notice_privacy", "notice_cookies",
             *[f"banner_{key}_{lang}" for lang in languages for key in ("title", "text")],
             *[f"theme_{key}" for key in (*THEME_COLOURS, "radius", "position", "font")], "csrf_token"]
    found = [(form[name], None, None) for name in order if name in form and form[name].errors]
    blocks = [(c, [form[f"show_{c}"]] if f"show_{c}" in form else [], form[f"texts_{c}"].form,
               form[f"rows_{c}"]) for c in sites.STANDARD_CATEGORIES]
    blocks += [(e, [e.form.category_id], e.form, e.form.rows) for e in form.custom.entries]
    for block, own, texts, rows in blocks:
        own += [f for f in texts if f.short_name.startswith(("label_", "purpose_"))]
        found += [(f, block, None) for f in own if f.errors]
        for number, entry in enumerate(rows.entries, 1):
            found += [(f, block, number) for f in entry.form if f.errors]
    return found


def _has_errors(form: Any) -> bool:
    return bool(_fields_with_errors(form))


def _error_summary(form: Any, built: Built | None, site: dict[str, Any] | None) -> list[dict[str, str]]:
    """The problems listed at the top of the page, each linking to its field."""
    if built is None:  # not a save: nothing was checked
        return []
    items = []
    for f, category, number in _fields_with_errors(form):
        if f.name == "csrf_token":
            items.append({"id": "", "text": _("The form expired. Reload the page and try again.")})
            continue
        label = str(f.label.text)
        if category is not None and number:
            label = _("%(category)s, cookie %(number)s: %(field)s", category=block_name(site, category),
                      number=number, field=label)
        elif category is not None:
            label = f"{block_name(site, category)}: {label}"
        items.append({"id": f.id, "text": f"{label}: {' '.join(str(e) for e in f.errors)}"})
    for category, messages in (built.errors.items() if built else []):
        for message in messages:
            items.append({"id": "", "text": f"{category_name(site, category)}: {message}" if category
                          else message})
    return items


# -- the look, previewed live --------------------------------------------------------------


@bp.get("/theme-preview")
@role_required("marketing")
def theme_preview():
    """The widget's stylesheet with a look being chosen in the form, the banner's texts and what
    the look's colours fail: what the form's live preview shows. Nothing is saved."""
    asked = {key: request.args[key][:200] for key in sites.THEME_DEFAULTS if key in request.args}
    theme, problems = _previewed_theme(asked)
    problems += [contrast_message(*failure) for failure in contrast_check(theme)]
    site = get_store().site(request.args.get("site", "")) or _NEW_SITE
    lang = current_language()
    with force_locale(lang):
        texts = dict(sites.banner_texts(), **sites.first_layer(site, lang, current_app.config["ORGANIZATION"]))
    body = {"css": _widget_css() + sites.theme_css(theme), "problems": problems,
            "texts": {k: texts[k] for k in ("title", "intro", "accept_all", "reject_all", "choose", "privacy_link")},
            "lang": lang}
    return body


def _previewed_theme(asked: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The look asked for, each value that is not one replaced by the default and named."""
    theme: dict[str, Any] = dict(sites.THEME_DEFAULTS)
    problems = []
    for key, value in asked.items():
        if key == "radius":
            value = int(value) if value.isdigit() else None
        if sites.theme_value_problem(key, value):
            problems.append(_("%(field)s: not a valid value, so the preview uses the default.",
                              field=_theme_label(key)))
        else:
            theme[key] = value.lower() if key in THEME_COLOURS else value
    return theme, problems


def _theme_label(key: str) -> str:
    return {**theme_labels(), "font": _("Font family"), "radius": _("Corner radius (pixels)"),
            "position": _("Position")}[key]


def _widget_css() -> str:
    """widget/consent.css as the widget adopts it."""
    return rcssmin.cssmin((Path(current_app.root_path) / "widget" / "consent.css").read_text(encoding="utf-8"))


# -- embed code and preview ---------------------------------------------------------------


@bp.get("/<site_id>/snippet")
@role_required("marketing")
def snippet(site_id: str):
    """The embed code with a copy button, the footer link, and the banner in each language."""
    site = _site_or_404(site_id)
    host = request.host_url.rstrip("/")
    script = f'<script src="{host}/widget/v1/consent.js" data-site="{site["id"]}" async></script>'
    lang = site["default_language"]
    with force_locale(lang):
        link_text = _("Cookie settings")
    notice = url_for("site.notice_current", lang=lang, slug=site["notices"]["cookies"], _external=True)
    link = f'<a href="{notice}" data-consent-open>{link_text}</a>'
    return render_template("admin/site_snippet.html", site=site, script=script, link=link,
                           site_languages=current_app.config["LANGUAGES"])


@bp.get("/<site_id>/preview")
@role_required("marketing")
def preview(site_id: str):
    """A bare page that loads the real widget in preview mode (nothing stored or posted),
    to be framed by the embed code page."""
    site = _site_or_404(site_id)
    lang = request.args.get("lang")
    if lang not in current_app.config["LANGUAGES"]:
        lang = site["default_language"]
    with force_locale(lang):
        html = render_template("admin/site_preview.html", site=site, preview_lang=lang)
    response = make_response(html)
    # Framed by our own admin page only; set here, before the app's hook adds its defaults.
    response.headers["Content-Security-Policy"] = CSP.replace("frame-ancestors 'none'",
                                                              "frame-ancestors 'self'")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


# -- figures --------------------------------------------------------------------------------


class RangeForm(Form):
    """The range of days (a GET form: it changes nothing, so it carries no CSRF token)."""


setattr(RangeForm, "from", StringField(_l("From"), render_kw={"type": "date"}))
setattr(RangeForm, "to", StringField(_l("To"), render_kw={"type": "date"}))


def _range(form: RangeForm, max_days: int | None = figures.MAX_DAYS) -> tuple[date, date] | None:
    """The range asked for, or None with a message beside the field that is wrong."""
    try:
        first, last = figures.parse_range(request.args.get("from"), request.args.get("to"), today(),
                                          max_days)
    except figures.RangeError as exc:
        for name, code in exc.errors.items():
            add_error(form[name], message("range", code, {"example": today().isoformat(), "max": max_days}))
        return None
    form["from"].data, form["to"].data = first.isoformat(), last.isoformat()
    return first, last


def _formatters() -> dict[str, Any]:
    return {
        "day_label": lambda d: format_date(d),
        "axis_label": lambda d: format_skeleton("MMMd", d, locale=current_language()),
        "number": lambda n: format_decimal(n),
        "percent": lambda r: format_percent(r, "#,##0.#%"),
    }


@bp.get("/<site_id>/figures")
@role_required("marketing")
def figures_page(site_id: str):
    """Choices per day and each category's opt-in rate, as SVG charts with tables."""
    site = _site_or_404(site_id)
    form = RangeForm(request.args)
    span = _range(form)
    if span is None:
        return render_template("admin/site_figures.html", site=site, form=form, fig=None), 400
    fig = figures.load(get_store(), site, *span)
    fmt = _formatters()
    labels = action_labels()
    totals = fig.totals
    period = _("%(first)s–%(last)s", first=format_date(fig.first), last=format_date(fig.last))
    weekly = len(figures.bins(fig)) < len(fig.days)
    actions_svg = figures.actions_chart(
        fig, chart_id="chart-actions",
        title=(_("Choices per week, %(period)s", period=period) if weekly
               else _("Choices per day, %(period)s", period=period)),
        desc=_("Stacked bars: accept all (solid), reject all (stripes), custom (dots) and withdraw "
               "(crosses). In all: %(accept)s accept all, %(reject)s reject all, %(custom)s custom, "
               "%(withdraw)s withdraw. The table below gives each day's numbers.",
               accept=fmt["number"](totals["accept_all"]), reject=fmt["number"](totals["reject_all"]),
               custom=fmt["number"](totals["custom"]), withdraw=fmt["number"](totals["withdraw"])),
        labels=labels, day_label=fmt["day_label"], axis_label=fmt["axis_label"], number=fmt["number"],
        empty=_("No choices in this period."))
    rates = "; ".join(
        f"{category_name(site, c.id)} "
        f"{fmt['percent'](c.rate) if c.rate is not None else _('no choices')}" for c in fig.categories)
    opt_in_svg = figures.opt_in_chart(
        fig, chart_id="chart-opt-in", title=_("Opt-in rate per category, %(period)s", period=period),
        desc=_("Share of choices that allowed each category: %(rates)s. The table below gives the "
               "numbers.", rates=rates),
        category_label=lambda cid: category_name(site, cid), percent=fmt["percent"],
        number=fmt["number"], no_data=_("no choices"))
    return render_template("admin/site_figures.html", site=site, form=form, fig=fig, totals=totals,
                           period=period, labels=labels, actions_svg=actions_svg,
                           opt_in_svg=opt_in_svg, weekly=weekly, fmt=fmt,
                           category_name=lambda cid: category_name(site, cid),
                           actions=consents.ACTIONS)


def action_labels() -> dict[str, str]:
    return {"accept_all": _("Accept all"), "reject_all": _("Reject all"), "custom": _("Custom"),
            "withdraw": _("Withdraw")}


def _range_or_400() -> tuple[date, date]:
    form = RangeForm(request.args)
    span = _range(form)
    if span is None:
        abort(400, " ".join(str(e) for n in ("from", "to") for e in form[n].errors))
    return span


@bp.get("/<site_id>/figures.csv")
@role_required("marketing")
def figures_csv(site_id: str):
    """The figures page's numbers as CSV: per day, each action and each category's opt-ins."""
    site = _site_or_404(site_id)
    first, last = _range_or_400()
    body = figures.to_csv(figures.load(get_store(), site, first, last))
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{site["id"]}-figures-{first.isoformat()}-{last.isoformat()}.csv"')
    return response


# -- export -----------------------------------------------------------------------------------


@bp.get("/<site_id>/export.csv")
@role_required("legal")
def export_csv(site_id: str):
    """Every consent record of the site (or of the days from–to), streamed as CSV for an auditor.

    Raw records are legal's (and admins'): marketing has the figures, which need no personal data."""
    # A GET, so no CSRF token: a link on another site would still carry the session cookie (SameSite=Lax)
    # and download every record, noted as this user's export.
    refuse_cross_site()
    site = _site_or_404(site_id)
    form = RangeForm(request.args)
    first = last = None
    if request.args.get("from") or request.args.get("to"):
        span = _range(form, max_days=None)
        if span is None:
            abort(400, " ".join(str(e) for n in ("from", "to") for e in form[n].errors))
        first, last = span
    zone = current_app.config["TIMEZONE"]
    since = day_start(first, zone, record_text) if first else None
    until = day_start(last, zone, record_text, next_day=True) if last else None
    get_store().audit(g.user["email"], "consents.export", site["id"],
                      {"from": first.isoformat() if first else None,
                       "to": last.isoformat() if last else None})
    # The stream outlives the view: the request's own store is closed when its app context
    # ends, before the first row is read. So the stream has a connection of its own.
    path = database_path(current_app)
    links = proof_links()

    def generate():
        store = open_store(path)
        try:
            rows = store.iter_consents(site["id"], since, until)
            buffer = io.StringIO()
            for _ in consents.export(rows, buffer, "csv", links):
                if buffer.tell() >= EXPORT_CHUNK:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()
        finally:
            store.close()

    name = f'{site["id"]}-consents-{first or "start"}-{last or "today"}.csv'
    response = Response(stream_with_context(generate()), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
