"""Marketing's forms for a site: the fields of a definition, each category's name and purpose
in every language, its cookies as repeated rows, and categories of marketing's own.

The form only collects; `keksi.sites.validate` decides what is a valid site, exactly as
for `flask sites add`. `build_definition` turns the form into the definition dict and
remembers which form field each part came from, so that `attach_errors` can put each
of validate's findings (`origins[1]`, `categories[2].services[0].cookies[1].duration`)
beside the field it is about. No request objects here: the view passes the form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from flask_babel import gettext as _
from flask_babel import ngettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, FieldList, Form, FormField, HiddenField, IntegerField,
                     SelectField, StringField, TextAreaField)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, NumberRange, ValidationError

from .messages import at_most, contrast_message, site_message, theme_labels
from .sites import (MAX_CATEGORIES, MAX_CONSENT_DAYS, MAX_RADIUS, MAX_TEXT, MAX_URL, POSITIONS, SAFEGUARDS,
                    STANDARD_CATEGORIES, THEME_DEFAULTS, Problem, contrast_failures, safeguard_name,
                    theme_value_problem, standard_texts)

EMPTY_ROWS = 3  # empty cookie rows offered under each category
MORE_ROWS = 3  # added by the "More cookie rows" button
MAX_CATEGORY_ID = 40
MAX_ORIGINS_TEXT = 20_000

# What one post of the site form may hold. Each cookie row costs WTForms a few milliseconds to
# build and check, so 9,000 rows held a worker past its timeout; 400 rows is far past any real
# site's cookies, and a site has at most MAX_CATEGORIES categories. A post over these caps is
# refused (413) before any form is built.
MAX_FORM_ROWS = 400
MAX_FORM_ENTRIES = MAX_CATEGORIES + MAX_FORM_ROWS  # category blocks and cookie rows together
MAX_FORM_PARTS = 4_000  # fields: 10 a cookie row, 8 a category, about 40 more for the site
MAX_FORM_BYTES = 1024 * 1024

# Something that looks like an HTML tag. The banner shows text only, so a "<script>" in a
# name or purpose is a mistake or an attack; either way it is refused, never stored.
_MARKUP = re.compile(r"<\s*[A-Za-z/!?]")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _lines(value: Any) -> Any:
    # Browsers post a textarea's line breaks as CRLF: without this, a stored text with a line
    # break would never compare equal to itself posted back.
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


class PlainText:
    """Refuse text that contains HTML tags; `message` says where the text is shown."""

    def __init__(self, message: Any = None):
        self.message = message

    def __call__(self, form: Any, field: Any) -> None:
        if isinstance(field.data, str) and _MARKUP.search(field.data):
            # str(): a lazy string counts as safe markup in templates, and this message has a "<".
            raise ValidationError(str(self.message) if self.message else _(
                "Write plain text without HTML tags such as <script>: the banner shows text only."))


def _text(label: Any, max_length: int = MAX_TEXT, **kwargs: Any) -> StringField:
    return StringField(label, filters=[_strip], validators=[
        Length(max=max_length, message=at_most(max_length)), PlainText()], **kwargs)


def _purpose(label: Any) -> TextAreaField:
    return TextAreaField(label, filters=[_lines, _strip], render_kw={"rows": 2}, validators=[
        Length(max=MAX_TEXT, message=at_most(MAX_TEXT)), PlainText()])


def cookie_row_form(languages: list[str], language_names: dict[str, str]) -> type[Form]:
    """One cookie: its service and provider, its name, duration, and purpose in each language."""

    class CookieRow(Form):
        service = _text(_l("Service"))
        provider = _text(_l("Provider"))
        name = StringField(_l("Cookie name"), filters=[_strip],
                           validators=[Length(max=100, message=at_most(100))])
        duration = StringField(_l("Duration"), filters=[_strip],
                               validators=[Length(max=40, message=at_most(40))])
        cookie_provider = _text(_l("Set by (if not the provider)"))
        storage = SelectField(_l("Stored as"), choices=[SelectChoice("cookie", _l("Cookie")),
                                                        SelectChoice("local", _l("Local storage"))],
                              default="cookie")
        own_purposes = BooleanField(_l("The provider also uses the data for its own purposes"))
        transfer = SelectField(_l("Data leaves the EU/EEA"), choices=transfer_choices(), default="")
        privacy_url = StringField(_l("Provider's privacy policy (https address)"), filters=[_strip],
                                  validators=[Length(max=MAX_URL, message=at_most(MAX_URL))])
        # Which stored service and cookie the row was filled in from ("2.0", or "2" for a service
        # without cookies), so that saving can keep their texts as stored; empty in a new row.
        ref = HiddenField(filters=[_strip])

    for lang in languages:
        setattr(CookieRow, f"purpose_{lang}", _purpose(
            _l("Purpose (%(language)s)", language=language_names.get(lang, lang))))
    return CookieRow


def transfer_choices() -> list[SelectChoice]:
    """Whether a service's data leaves the EU/EEA, and under which safeguard (made per request)."""
    return [SelectChoice("", _("No, it stays in the EU/EEA"))] + [
        SelectChoice(code, _("Yes, under %(safeguard)s", safeguard=safeguard_name(code))) for code in SAFEGUARDS]


def category_texts_form(languages: list[str], language_names: dict[str, str]) -> type[Form]:
    """What visitors read about a category: its name and purpose in each language."""

    class CategoryTexts(Form):
        pass

    for lang in languages:
        name = language_names.get(lang, lang)
        setattr(CategoryTexts, f"label_{lang}", _text(_l("Category name (%(language)s)", language=name)))
        setattr(CategoryTexts, f"purpose_{lang}", _purpose(
            _l("Category purpose (%(language)s)", language=name)))
    return CategoryTexts


def custom_category_form(texts: type[Form], row: type[Form]) -> type[Form]:
    """A category of marketing's own: an id, its texts and its cookie rows."""

    class CustomCategory(texts):  # type: ignore[misc, valid-type]
        category_id = StringField(
            _l("Category id"), filters=[_strip],
            validators=[Length(max=MAX_CATEGORY_ID, message=at_most(MAX_CATEGORY_ID))])
        rows = FieldList(FormField(row))
        remove = BooleanField(_l("Remove this category when saving"))

    return CustomCategory


def site_form(languages: list[str], language_names: dict[str, str], notices: list[tuple[str, str]],
              create: bool) -> type[FlaskForm]:
    """The form for a new site (with an id field) or for editing one (the id is fixed); `notices` are
    the published notices to link, each as its slug and what the picker shows."""
    row = cookie_row_form(languages, language_names)
    texts = category_texts_form(languages, language_names)

    class SiteForm(FlaskForm):
        name = _text(_l("Name"), 200, description=_l("Shown in this admin only, such as "
                                                     "“Web shop”."))
        origins = TextAreaField(
            _l("Origins"), filters=[_strip], render_kw={"rows": 3},
            validators=[Length(max=MAX_ORIGINS_TEXT, message=at_most(MAX_ORIGINS_TEXT))],
            description=_l("The addresses of the pages that show the banner, one per line: scheme and "
                           "host, and a port if it is not the usual one, such as https://www.example.fi. "
                           "No path and no wildcards: list each host."))
        default_language = SelectField(
            _l("Default language"), choices=[SelectChoice(l, language_names.get(l, l)) for l in languages],
            description=_l("The banner's language when the page does not say which one to use."))
        consent_days = IntegerField(
            _l("Consent lasts (days)"),
            validators=[InputRequired(message=_l("Enter a number of days.")),
                        NumberRange(min=1, max=MAX_CONSENT_DAYS, message=_l(
                            "Enter a whole number of days from 1 to %(max)s: a consent lasts at most "
                            "13 months.", max=MAX_CONSENT_DAYS))],
            description=_l("After this many days visitors are asked again (at most 13 months; a refusal "
                           "of everything lasts at least 183 days). 365 days is common."),
            render_kw={"inputmode": "numeric"})
        cookie_domain = StringField(
            _l("Cookie domain (optional)"), filters=[_strip],
            validators=[Length(max=253, message=at_most(253))],
            description=_l("To share the choice across subdomains, such as example.fi for both "
                           "www.example.fi and shop.example.fi. Leave empty to keep it on each host."))
        notice_privacy = SelectField(_l("Privacy notice"), choices=[SelectChoice(*n) for n in notices])
        notice_cookies = SelectField(_l("Cookie notice"), choices=[SelectChoice(*n) for n in notices])

    _banner_fields(SiteForm, languages, language_names)
    _theme_fields(SiteForm)
    if create:
        SiteForm.site_id = StringField(
            _l("Id"), filters=[_strip],
            validators=[Length(max=64, message=at_most(64))],
            description=_l("Goes in the embed code and cannot be changed later: lower-case letters, "
                           "digits, - and _, such as web-shop."))
    for category in STANDARD_CATEGORIES:
        if category != "necessary":
            setattr(SiteForm, f"show_{category}", BooleanField(_l("Ask visitors about this category")))
        setattr(SiteForm, f"texts_{category}", FormField(texts))
        setattr(SiteForm, f"rows_{category}", FieldList(FormField(row)))
    # No max_entries: WTForms would drop the blocks past it from a post without a word, and a
    # stored site may have more categories of its own than standard ones left out can make room
    # for. `sites.validate` counts every category; the view's form limits bound the post.
    SiteForm.custom = FieldList(FormField(custom_category_form(texts, row)))
    return SiteForm


THEME_COLOURS = ("background", "text", "link", "button", "button_text", "focus")


def _banner_fields(form: type[FlaskForm], languages: list[str], language_names: dict[str, str]) -> None:
    """Marketing's own title and text for the banner, per language; empty keeps Keksi's."""
    for lang in languages:
        name = language_names.get(lang, lang)
        setattr(form, f"banner_title_{lang}", _text(_l("Banner title (%(language)s)", language=name), 200))
        setattr(form, f"banner_text_{lang}", TextAreaField(
            _l("Banner text (%(language)s)", language=name), filters=[_lines, _strip],
            render_kw={"rows": 3}, validators=[
                Length(max=MAX_TEXT, message=at_most(MAX_TEXT)), PlainText()]))


def _theme_fields(form: type[FlaskForm]) -> None:
    """The banner's look: colours, font, corner radius and position (made per request)."""
    for key, label in theme_labels().items():
        setattr(form, f"theme_{key}", StringField(label, filters=[_strip], default=THEME_DEFAULTS[key],
                                                  render_kw={"type": "color"},
                                                  validators=[Length(max=7, message=_l(
                                                      "Use at most %(max)d characters."))]))
    form.theme_font = StringField(
        _l("Font family"), filters=[_strip], default=THEME_DEFAULTS["font"],
        validators=[Length(max=200, message=at_most(200))],
        description=_l("Font names separated by commas, the generic family last, such as Inter, system-ui, "
                       "sans-serif. Keksi loads no fonts: a font the page itself does not load falls back "
                       "to the next name."))
    form.theme_radius = IntegerField(
        _l("Corner radius (pixels)"), default=THEME_DEFAULTS["radius"], render_kw={"inputmode": "numeric"},
        validators=[InputRequired(message=_l("Enter a number of pixels.")),
                    NumberRange(min=0, max=MAX_RADIUS, message=_l("Enter a whole number from 0 to %(max)s.",
                                                                  max=MAX_RADIUS))])
    names = {"bottom": _("A bar at the bottom"), "corner": _("A box in the bottom corner"),
             "center": _("A box in the centre")}
    form.theme_position = SelectField(_l("Position"), default=THEME_DEFAULTS["position"],
                                      choices=[SelectChoice(p, names[p]) for p in POSITIONS])


# -- from a definition to the form, and back ------------------------------------------


def _in(value: Any, lang: str) -> str:
    if isinstance(value, dict):
        return value.get(lang) or next(iter(value.values()), "")
    return value or ""


def form_data(site: dict[str, Any], languages: list[str]) -> dict[str, Any]:
    """A stored definition as the form's data, one row per cookie."""
    lang = site["default_language"]
    data: dict[str, Any] = {
        "name": site["name"],
        "origins": "\n".join(site["origins"]),
        "default_language": site["default_language"],
        "consent_days": site["consent_days"],
        "cookie_domain": site["cookie_domain"] or "",
        "notice_privacy": site["notices"]["privacy"],
        "notice_cookies": site["notices"]["cookies"],
    }
    own = site.get("banner", {})
    for code in languages:
        data[f"banner_title_{code}"] = _in(own.get("title"), code)
        data[f"banner_text_{code}"] = _in(own.get("text"), code)
    data.update({f"theme_{k}": v for k, v in dict(THEME_DEFAULTS, **site.get("theme", {})).items()})
    by_id = {c["id"]: c for c in site["categories"]}
    for category in STANDARD_CATEGORIES:
        if category != "necessary":
            data[f"show_{category}"] = category in by_id
        data[f"texts_{category}"] = _texts_data(by_id.get(category), category, languages)
        data[f"rows_{category}"] = _rows_data(by_id.get(category), languages, lang)
    data["custom"] = [dict(_texts_data(c, c["id"], languages), category_id=c["id"],
                           rows=_rows_data(c, languages, lang))
                      for c in site["categories"] if c["id"] not in STANDARD_CATEGORIES]
    return data


def _texts_data(category: dict[str, Any] | None, category_id: str, languages: list[str]) -> dict[str, str]:
    """A category's name and purpose per language: its own, else the catalogs' standard ones."""
    standard = standard_texts(category_id, languages) if category_id in STANDARD_CATEGORIES else {}
    data = {}
    for key in ("label", "purpose"):
        own = (category or {}).get(key)
        for code in languages:
            data[f"{key}_{code}"] = _in(own, code) if own else standard.get(key, {}).get(code, "")
    return data


def _rows_data(category: dict[str, Any] | None, languages: list[str], lang: str) -> list[dict[str, str]]:
    """A category's cookies as form rows, one row per cookie."""
    rows = []
    for j, service in enumerate((category or {}).get("services", [])):
        base = {"service": _in(service["name"], lang), "provider": _in(service["provider"], lang),
                "own_purposes": service.get("own_purposes", False),
                "transfer": (service.get("transfer") or {}).get("safeguard", ""),
                "privacy_url": service.get("privacy_url", "")}
        if not service["cookies"]:  # shown, so that saving asks what to do with it
            rows.append(dict(base, ref=str(j)))
        for k, cookie in enumerate(service["cookies"]):
            row = dict(base, name=cookie["name"], duration=cookie["duration"], ref=f"{j}.{k}",
                       storage=cookie.get("storage", "cookie"),
                       cookie_provider=_shown_cookie_provider(service, cookie, lang))
            for code in languages:
                row[f"purpose_{code}"] = _in(cookie["purpose"], code)
            rows.append(row)
    return rows


def new_site_data(languages: list[str], default_language: str, consent_days: int,
                  notice_slugs: list[str]) -> dict[str, Any]:
    """What a new site's form starts with."""
    def pick(slug: str) -> str:
        return slug if slug in notice_slugs else (notice_slugs[0] if notice_slugs else "")
    data: dict[str, Any] = {"default_language": default_language, "consent_days": consent_days,
                            "notice_privacy": pick("privacy"), "notice_cookies": pick("cookies")}
    for category in STANDARD_CATEGORIES:
        if category != "necessary":
            data[f"show_{category}"] = True
        data[f"texts_{category}"] = _texts_data(None, category, languages)
    return data


def add_empty_rows(form: FlaskForm, count: int = EMPTY_ROWS) -> None:
    """Offer `count` more empty cookie rows under every category."""
    lists = [form[f"rows_{category}"] for category in STANDARD_CATEGORIES]
    lists += [entry.form.rows for entry in form.custom.entries]
    for rows in lists:
        for _ in range(count):
            rows.append_entry()


def category_count(form: FlaskForm) -> int:
    """How many categories the form asks about: necessary, the standard ones shown, and every
    block of marketing's own not marked for removal (one still empty too: it is being filled in)."""
    shown = [c for c in STANDARD_CATEGORIES if c == "necessary" or form[f"show_{c}"].data]
    return len(shown) + sum(not entry.form.remove.data for entry in form.custom.entries)


def too_many_categories() -> str:
    return _("A site can have at most %(max)s categories. To add another, remove one.", max=MAX_CATEGORIES)


def add_category(form: FlaskForm) -> Any | None:
    """An empty block for a new category of marketing's own, with empty cookie rows; None when
    the form has as many categories as `sites.validate` allows."""
    if category_count(form) >= MAX_CATEGORIES:
        return None
    entry = form.custom.append_entry()
    for _ in range(EMPTY_ROWS):
        entry.form.rows.append_entry()
    return entry


@dataclass
class Built:
    """A definition made from the form, and where each part of it came from."""

    definition: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)  # error key -> form field
    purposes: dict[str, dict[str, Any]] = field(default_factory=dict)  # texts' key -> {lang: field}
    origin_lines: list[int] = field(default_factory=list)  # origins[i] -> line number
    categories: dict[str, str] = field(default_factory=dict)  # "categories[i]" -> category id
    errors: dict[str, list[str]] = field(default_factory=dict)  # category id or "" -> messages
    inherited: set[str] = field(default_factory=set)  # cookie providers taken from their service
    conflict: bool = False  # the store refused the save: another one got there first


def _row_values(entry: Any, languages: list[str]) -> dict[str, str]:
    row = entry.form
    names = ["service", "provider", "name", "duration", "cookie_provider"] + [f"purpose_{l}" for l in languages]
    return {n: (row[n].data or "").strip() for n in names}


def build_definition(form: FlaskForm, languages: list[str], site_id: str,
                     existing: dict[str, Any] | None) -> Built:
    """The site definition the form describes; empty cookie rows, empty new categories and
    categories marked for removal are left out.

    An edited site keeps the order of its categories; new ones of marketing's own come last. A
    text still the same as the catalogs' (standard categories) or as the form showed it from the
    stored definition is kept as stored, in its shape (one text for every language, or one per
    language where the form shows only the default language's), so that saving an unchanged form
    changes nothing: not the choice hash, and no language's text.
    """
    built = Built(definition={})
    origins = []
    for number, line in enumerate((form.origins.data or "").splitlines(), 1):
        if line.strip():
            origins.append(line.strip())
            built.origin_lines.append(number)
    definition: dict[str, Any] = {
        "id": site_id,
        "name": form.name.data or "",
        "origins": origins,
        "default_language": form.default_language.data,
        "consent_days": form.consent_days.data,
        "cookie_domain": form.cookie_domain.data or None,
        "notices": {"privacy": form.notice_privacy.data, "cookies": form.notice_cookies.data},
    }
    for key, name in (("name", "name"), ("origins", "origins"), ("default_language", "default_language"),
                      ("consent_days", "consent_days"), ("cookie_domain", "cookie_domain"),
                      ("notices.privacy", "notice_privacy"), ("notices.cookies", "notice_cookies"),
                      ("notices", "notice_privacy")):
        built.fields[key] = form[name]
    if "site_id" in form:
        built.fields["id"] = form.site_id

    old = {c["id"]: c for c in existing["categories"]} if existing else {}
    # The language the form showed single-language texts in (services' names and providers)
    shown_language = existing["default_language"] if existing else form.default_language.data
    kept: dict[str, Any] = {}  # a stored custom category's id -> its block (its id is read-only)
    new_blocks = []
    for entry in form.custom.entries:
        category_id = entry.form.category_id.data or ""
        if entry.form.remove.data:
            continue
        if category_id in old and category_id not in STANDARD_CATEGORIES and category_id not in kept:
            kept[category_id] = entry
        elif not _is_empty(entry.form, languages):
            new_blocks.append(entry)
    # (category id, its custom block, or None for a standard category), in the banner's order
    order: list[tuple[str, Any]] = [(c, kept.get(c)) for c in old if c in STANDARD_CATEGORIES or c in kept]
    order += [(c, None) for c in STANDARD_CATEGORIES if c not in old]
    order += [(entry.form.category_id.data or "", entry) for entry in new_blocks]
    categories = []
    for category_id, entry in order:
        prefix = f"categories[{len(categories)}]"
        if entry is None:
            texts, row_list = form[f"texts_{category_id}"].form, form[f"rows_{category_id}"]
        else:
            texts, row_list = entry.form, entry.form.rows
            built.fields[f"{prefix}.id"] = entry.form.category_id
            if category_id in STANDARD_CATEGORIES:
                add_error(entry.form.category_id, _(
                    "%(id)s is the id of a standard category. Choose another id.", id=category_id))
        rows = Built(definition={})
        stored = old.get(category_id) if entry is None or category_id in kept else None
        services, first_rows = _services(row_list, languages, prefix, rows, stored, shown_language)
        shown = entry is not None or category_id == "necessary" or bool(form[f"show_{category_id}"].data)
        if not shown:
            if services:
                add_error(form[f"show_{category_id}"], _(
                    "This category has cookies. Ask visitors about it, or empty its cookie rows."))
            continue
        built.fields.update(rows.fields)
        built.purposes.update(rows.purposes)
        built.inherited |= rows.inherited
        category = _category_texts(texts, languages, category_id, old.get(category_id), prefix, built)
        if len(categories) == MAX_CATEGORIES:  # the first one too many: validate's "categories"
            built.fields["categories"] = (entry.form.category_id if entry is not None
                                          else form[f"show_{category_id}"])
        categories.append({"id": category_id, **category, "services": services})
        built.categories[prefix] = category_id
        if first_rows:
            built.fields[f"{prefix}.services"] = first_rows[0].service
    definition["categories"] = categories
    _banner_definition(form, languages, existing, definition, built)
    _theme_definition(form, existing, definition, built)
    built.definition = definition
    return built


def _banner_definition(form: FlaskForm, languages: list[str], existing: dict[str, Any] | None,
                       definition: dict[str, Any], built: Built) -> None:
    """Marketing's banner title and text: left out where every language's field is empty."""
    stored = (existing or {}).get("banner", {})
    own = {}
    for key in ("title", "text"):
        fields = {lang: form[f"banner_{key}_{lang}"] for lang in languages}
        built.purposes[f"banner.{key}"] = fields
        value = {lang: f.data or "" for lang, f in fields.items()}
        if any(value.values()):
            own[key] = _texts(value, stored.get(key))
    if own:
        definition["banner"] = own


def _theme_definition(form: FlaskForm, existing: dict[str, Any] | None, definition: dict[str, Any],
                      built: Built) -> None:
    """The banner's look; left out while it is the default look and the site stored none. A pair
    of colours that fails WCAG 2.2 AA is refused beside the field, saying by how much."""
    theme: dict[str, Any] = {key: form[f"theme_{key}"].data for key in THEME_DEFAULTS}
    for key in THEME_DEFAULTS:
        built.fields[f"theme.{key}"] = form[f"theme_{key}"]
    for fg, bg, ratio, needed in contrast_check(theme):
        add_error(form[f"theme_{fg}"], contrast_message(fg, bg, ratio, needed))
    if theme == THEME_DEFAULTS and not (existing or {}).get("theme"):
        return
    definition["theme"] = theme


def contrast_check(theme: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """The pairs of a theme's colours that fail WCAG 2.2 AA; colours not written as #rrggbb are
    left to validate's own message."""
    bad = [key for key in THEME_COLOURS if theme_value_problem(key, theme.get(key))]
    return contrast_failures({k: (v.lower() if isinstance(v, str) else v) for k, v in theme.items()}, skip=bad)


def _is_empty(block: Any, languages: list[str]) -> bool:
    """A custom category block with nothing filled in: added, then left as it was."""
    texts = [block[f"{key}_{lang}"].data for key in ("label", "purpose") for lang in languages]
    rows = [any(_row_values(entry, languages).values()) for entry in block.rows.entries]
    return not block.category_id.data and not any(texts) and not any(rows)


def _category_texts(texts: Any, languages: list[str], category_id: str, before: dict[str, Any] | None,
                    prefix: str, built: Built) -> dict[str, Any]:
    """A category's label and purpose from its fields, in the shape they had when unchanged."""
    standard = standard_texts(category_id, languages) if category_id in STANDARD_CATEGORIES else {}
    result: dict[str, Any] = {}
    for key in ("label", "purpose"):
        fields = {lang: texts[f"{key}_{lang}"] for lang in languages}
        built.purposes[f"{prefix}.{key}"] = fields
        value = {lang: f.data or "" for lang, f in fields.items()}
        stored = (before or {}).get(key)
        if stored is None and value == standard.get(key):
            continue  # still the catalogs' texts: the banner keeps following them
        result[key] = _texts(value, stored)
    return result


def _texts(value: dict[str, str], stored: Any) -> Any:
    """A text edited in every language's field: the stored value as it was (one text for every
    language stays one text) while each field still shows what the form filled in from it."""
    if stored is not None and all(text == _in(stored, lang) for lang, text in value.items()):
        return stored
    return value


def _one_text(posted: str, stored: Any, lang: str) -> Any:
    """A text the form shows in one field, in the stored default language `lang`: the stored value
    as it was while the field still shows what the form filled in from it.

    Edited, a text stored per language gets the edited text in `lang` and keeps the others: they
    were written for this site (by its definition's author or a translator) and the form cannot
    show them, so replacing them all with one text would lose them without a word. The others may
    need the same edit; `flask sites show` lists them. A single text edited stays a single text.
    """
    if stored is None:
        return posted
    if posted == _in(stored, lang):
        return stored
    if isinstance(stored, dict) and posted:
        return {**stored, lang: posted}
    return posted


def _shown_cookie_provider(service: dict[str, Any], cookie: dict[str, Any], lang: str) -> str:
    """What a cookie row's "Set by" shows: empty when the cookie's provider is the service's."""
    provider = _in(cookie.get("provider"), lang)
    return "" if provider == _in(service["provider"], lang) else provider


def _stored_row(ref: str, category: dict[str, Any] | None) -> tuple[dict | None, dict | None]:
    """The stored service and cookie a row was filled in from, by its ref; None for a new row."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?", ref or "")
    services = (category or {}).get("services", [])
    if not match or int(match[1]) >= len(services):
        return None, None
    service = services[int(match[1])]
    cookies = service["cookies"]
    cookie = cookies[int(match[2])] if match[2] is not None and int(match[2]) < len(cookies) else None
    return service, cookie


def _services(rows: Any, languages: list[str], prefix: str, built: Built, category: dict[str, Any] | None,
              lang: str) -> tuple[list[dict], list[Any]]:
    """A category's services from its cookie rows: rows with the same service and provider
    form one service, in the order they first appear. A text a row still shows as the stored
    `category` has it (in `lang`, the stored default language) is kept in its stored shape."""
    services: list[dict[str, Any]] = []
    first_rows: list[Any] = []
    keys: dict[tuple[str, str], int] = {}
    for entry in rows.entries:
        values = _row_values(entry, languages)
        if not any(values.values()):
            continue  # an empty row: nothing to add, or a cookie removed
        row = entry.form
        stored_service, stored_cookie = _stored_row(row.ref.data, category)
        key = (values["service"], values["provider"])
        if key not in keys:
            keys[key] = len(services)
            j = len(services)
            services.append({
                "name": _one_text(values["service"], (stored_service or {}).get("name"), lang),
                "provider": _one_text(values["provider"], (stored_service or {}).get("provider"), lang),
                "cookies": []})
            first_rows.append(row)
            built.fields[f"{prefix}.services[{j}]"] = row.service
            built.fields[f"{prefix}.services[{j}].name"] = row.service
            built.fields[f"{prefix}.services[{j}].provider"] = row.provider
            built.fields[f"{prefix}.services[{j}].cookies"] = row.name
        j = keys[key]
        _service_flags(services[j], row, stored_service)
        if _privacy_url(services[j], row):
            built.fields.setdefault(f"{prefix}.services[{j}].privacy_url", row.privacy_url)
        cookies = services[j]["cookies"]
        k = len(cookies)
        purpose = {code: values[f"purpose_{code}"] for code in languages}
        cookies.append({
            "name": values["name"],
            "provider": _cookie_provider(values, services[j]["provider"], stored_service, stored_cookie, lang),
            "purpose": _texts(purpose, stored_cookie["purpose"]) if stored_cookie else purpose,
            "duration": values["duration"],
        })
        if row.storage.data == "local":
            cookies[-1]["storage"] = "local"
        cookie = f"{prefix}.services[{j}].cookies[{k}]"
        built.fields[cookie] = row.name
        built.fields[f"{cookie}.name"] = row.name
        built.fields[f"{cookie}.duration"] = row.duration
        if values["cookie_provider"]:
            built.fields[f"{cookie}.provider"] = row.cookie_provider
        else:
            built.fields[f"{cookie}.provider"] = row.provider
            built.inherited.add(f"{cookie}.provider")
        built.purposes[f"{cookie}.purpose"] = {lang: row[f"purpose_{lang}"] for lang in languages}
    return services, first_rows


def _service_flags(service: dict[str, Any], row: Any, stored: dict[str, Any] | None) -> None:
    """A service's own-purposes flag (any of its rows ticked) and its transfer, which every row of
    the service that says one must agree on; a disagreeing row is refused beside its field. A
    transfer with the stored safeguard keeps what else was stored (the country), and the form keeps
    a stored service's catalogue link, which it does not show."""
    if stored and stored.get("catalogue"):
        service["catalogue"] = stored["catalogue"]
    if row.own_purposes.data:
        service["own_purposes"] = True
    safeguard = row.transfer.data or None
    if safeguard is None:
        return
    said = (service.get("transfer") or {}).get("safeguard")
    if said not in (None, safeguard):
        add_error(row.transfer, _("Another row of this service says %(other)s. Rows of one service "
                                  "must agree.", other={c.value: c.label for c in transfer_choices()}[said]))
        return
    kept = (stored or {}).get("transfer")
    service["transfer"] = kept if kept and kept["safeguard"] == safeguard else {"safeguard": safeguard}


def _privacy_url(service: dict[str, Any], row: Any) -> bool:
    """The service's privacy link from a row that gives one (rows of one service must agree; a
    disagreeing row is refused beside its field); whether this row gave it."""
    url = row.privacy_url.data or ""
    if not url:
        return False
    said = service.setdefault("privacy_url", url)
    if said != url:
        add_error(row.privacy_url, _("Another row of this service links %(other)s. Rows of one service "
                                     "must agree.", other=said))
    return True


def _cookie_provider(values: dict[str, str], provider: Any, stored_service: dict[str, Any] | None,
                     stored_cookie: dict[str, Any] | None, lang: str) -> Any:
    """A cookie's provider from its row: "Set by", else the service's `provider`; as stored while
    the row still shows what the form filled in from the stored cookie and its service."""
    if stored_service is None or stored_cookie is None or "provider" not in stored_cookie:
        return values["cookie_provider"] or provider
    shown = _shown_cookie_provider(stored_service, stored_cookie, lang)
    if values["cookie_provider"]:
        return _one_text(values["cookie_provider"], stored_cookie["provider"] if shown else None, lang)
    if not shown:
        # Shown empty: the same as the service's provider in `lang`, so it follows that field as an
        # edit of its own would, keeping the cookie's texts in the other languages (which may differ
        # from the service's) and all of it while the provider is unchanged.
        return _one_text(values["provider"], stored_cookie["provider"], lang)
    return provider  # "Set by" emptied: the service's provider, as the form's help says


# -- validate's findings, beside the fields ---------------------------------------------

_INDEX = re.compile(r"\[\d+\]")


def _message(key: str, problem: Problem, built: Built) -> str:
    """A message a person can act on, in the admin's language, for one of validate's findings:
    worded for the form where the form names the thing differently from the definition."""
    if key.startswith("origins["):
        index = int(key[len("origins["):-1])
        return _("Line %(line)s: %(problem)s", line=built.origin_lines[index], problem=site_message(problem))
    if key.startswith("notices"):
        return _("Choose a published notice.")
    kind = _INDEX.sub("", key).rsplit(".", 1)[-1]
    if ".cookies[" in key and key not in built.inherited and kind == "provider":
        return ngettext("Enter who sets the cookie (at most %(num)s character).",
                        "Enter who sets the cookie (at most %(num)s characters).", MAX_TEXT)
    if ".services[" in key and (".cookies[" not in key or key in built.inherited) and kind in ("name", "provider"):
        return {"name": ngettext("Enter the service's name (at most %(num)s character).",
                                 "Enter the service's name (at most %(num)s characters).", MAX_TEXT),
                "provider": ngettext("Enter the service's provider (at most %(num)s character).",
                                     "Enter the service's provider (at most %(num)s characters).", MAX_TEXT)}[kind]
    if key == "categories" and problem.code == "categories":  # the only list-level finding a form causes
        return too_many_categories()
    return site_message(problem)


def add_error(target: Any, message: str) -> None:
    """Add a message to a field's errors (a tuple until the field has been validated)."""
    target.errors = [*target.errors, message]


def attach_errors(form: FlaskForm, errors: dict[str, Problem], built: Built) -> None:
    """Put each of validate's findings beside its field; a field keeps only its first message."""
    for key, problem in errors.items():
        if key in built.purposes:
            _text_errors(built.purposes[key], _("Enter the name in this language.") if key.endswith(".label")
                         else _("Fill this in for every language, or leave it empty in every language.")
                         if key.startswith("banner.") else _("Enter the purpose in this language."))
            continue
        target, probe = None, key
        while probe:  # the field itself, else its nearest parent: a cookie row, a service
            if probe in built.fields:
                target = built.fields[probe]
                break
            shorter = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", probe)
            if shorter == probe:
                break
            probe = shorter
        message = _message(key, problem, built)
        if target is None:
            category = built.categories.get(re.sub(r"^(categories\[\d+\]).*$", r"\1", key), "")
            built.errors.setdefault(category, []).append(message)
            continue
        if key.startswith("origins[") or not target.errors:  # one message per bad origin line
            add_error(target, message)


def _text_errors(fields: dict[str, Any], empty: str) -> None:
    """Beside each language's field of a text that validate refused: why (`empty` if empty)."""
    for lang_field in fields.values():
        if lang_field.errors:
            continue
        if not lang_field.data:
            add_error(lang_field, empty)
        elif len(lang_field.data) > MAX_TEXT:
            add_error(lang_field, str(at_most(MAX_TEXT)))


def form_entries(names: Iterable[str]) -> int:
    """How many list entries (category blocks, cookie rows) a post's field names make: each
    distinct `<list>-<n>` prefix, at any depth (`custom-2-rows-5-name` makes `custom-2` and
    `custom-2-rows-5`), however the lists are named."""
    entries: set[str] = set()
    for name in names:
        parts = name.split("-")
        entries.update("-".join(parts[:i + 1]) for i in range(1, len(parts) - 1) if parts[i].isdigit())
    return len(entries)
