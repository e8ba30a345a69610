"""The admin's forms (flask-wtf: every one carries a CSRF token)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext, ngettext
from flask_wtf import FlaskForm
from wtforms import (BooleanField, DateField, EmailField, Form, HiddenField, IntegerField, PasswordField,
                     RadioField, SelectField, SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import (DataRequired, EqualTo, InputRequired, Length, NumberRange, Optional,
                                ValidationError)
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from .auth import MAX_PASSWORD, MIN_PASSWORD, ROLES
from .messages import message, render_problem_message
from .notices import MAX_SOURCE_BYTES, check_rendering, removed_markup
from .scan_network import Refused, Targets, networks
from .scanjobs import MAX_PAGES
from .site_forms import PlainText


def notice_form_bytes(languages: int) -> int:
    """The most a new-version post may be: each language's text as a browser sends it
    (percent-encoded, at most three bytes for each byte of UTF-8), its title and summary."""
    return languages * (3 * MAX_SOURCE_BYTES + 32 * 1024)


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)],
                       render_kw={"autocomplete": "username"})
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"), validators=[DataRequired(), Length(min=MIN_PASSWORD, max=MAX_PASSWORD)],
        description=lazy_ngettext("At least %(num)s character.", "At least %(num)s characters.", MIN_PASSWORD),
        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The passwords do not match."))],
        render_kw={"autocomplete": "new-password"})


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()



class RolesForm(FlaskForm):
    roles = MultiCheckboxField(_l("Roles"), choices=[SelectChoice(r) for r in ROLES],
                               validators=[InputRequired(message=_l("Choose at least one role."))])


class UserForm(RolesForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])


class EraseForm(FlaskForm):
    """Find one visitor's records by an id they quoted; a second step confirms the erasure."""
    kind = RadioField(_l("The visitor quoted"), default="consent",
                      choices=[SelectChoice("consent", _l("a consent id (from the banner or a receipt)")),
                               SelectChoice("subject", _l("a subject id"))])
    id = StringField(_l("Id"), validators=[DataRequired(), Length(max=64)],
                     description=_l("32 digits and letters a–f, for example 9b1e4c…"),
                     render_kw={"autocomplete": "off", "spellcheck": "false"})
    confirm = BooleanField(_l("I have checked the request and want these records erased for good"))


class CurrentPasswordForm(FlaskForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=MAX_PASSWORD)],
                            render_kw={"autocomplete": "current-password"})


class ChangePasswordForm(SetPasswordForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=MAX_PASSWORD)],
                            render_kw={"autocomplete": "current-password"})


class ActionForm(FlaskForm):
    """A form with nothing but its CSRF token: logout, the audit log's export."""


def _reason(label: Any, required: bool) -> TextAreaField:
    first = DataRequired(message=_l("Write the reason: it is kept in the audit log.")) if required else Optional()
    return TextAreaField(label, validators=[first, Length(max=2000, message=_l(
        "Write the reason in at most %(max)d characters.")), PlainText(_l(
        "Write plain text without HTML tags such as <script>: the reason is shown as text."))],
        render_kw={"rows": 3})


class WithdrawForm(FlaskForm):
    """Withdrawing an upcoming version: a reason for the audit log, and a confirming tick."""

    reason = _reason(_l("Why is this version withdrawn?"), required=True)
    confirm = BooleanField(_l("Yes, withdraw this version: visitors will never be shown it."),
                           validators=[InputRequired(message=_l("Tick the box to confirm."))])


MAX_SCAN_URLS = 20


def _scan_urls(form: Any, field: Any) -> None:
    urls = (field.data or "").split()
    if len(urls) > MAX_SCAN_URLS:
        raise ValidationError(ngettext("Give at most %(num)d address.", "Give at most %(num)d addresses.",
                                       MAX_SCAN_URLS))
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
            raise ValidationError(_("%(url)s is not a web address: write each as https://www.example.fi/page.",
                                    url=url[:100]))
    _public_urls(urls)


def _public_urls(urls: list[str]) -> None:
    """Refuse an address the scanner may not visit (loopback, private, link-local) before it is queued."""
    targets = Targets(networks(current_app.config["SCAN_ALLOW_PRIVATE"]))
    for url in urls:
        try:
            targets.check(url)
        except Refused as refused:
            raise ValidationError(message("scan_url", "refused",
                                          {"url": url[:100], "address": refused.address})) from None


class ScanForm(FlaskForm):
    """Starting a site audit: the pages to begin from (else each origin's home page) and how many."""

    urls = TextAreaField(_l("Pages to scan (optional)"), validators=[Length(max=50_000), _scan_urls],
                         description=_l("One address a line. Empty: each origin's home page. The scan also "
                                        "follows links and sitemap.xml on the site's own origins."),
                         render_kw={"rows": 3})
    pages = IntegerField(_l("Pages at most"), default=10, validators=[
        InputRequired(message=_l("Write how many pages to scan at most.")),
        NumberRange(min=1, max=MAX_PAGES, message=_l("Scan from 1 to %(max)d pages.", max=MAX_PAGES))])


class CatalogueForm(FlaskForm):
    """Adding a service of the catalogue to a site; the view fills in both lists' choices."""

    service = SelectField(_l("Service"), choices=[])
    category = SelectField(_l("Category"), choices=[],
                           description=_l("Keksi suggests the category the catalogue gives the service."))


class AuditFilterForm(Form):
    """The audit log's filters, read from the query string (a GET form: nothing to protect)."""

    actor = SelectField(_l("Who"), choices=[], validate_choice=False)
    action = SelectField(_l("What"), choices=[], validate_choice=False)
    since = DateField(_l("From"), validators=[Optional()])
    until = DateField(_l("To"), validators=[Optional()])


class NoticeMarkdown:
    """Refuse a notice text that cannot be shown as written: one that is too deep or too slow to
    render, has images, or HTML that rendering would remove (scripts, frames, event handlers,
    javascript: links). Saying so beats publishing a text that does not show what was written."""

    def __call__(self, form: Any, field: Any) -> None:
        # The bounded check first: `removed_markup` renders in this process.
        problems = check_rendering([field.data or ""])[0]
        if problems:
            raise ValidationError(" ".join(render_problem_message(p) for p in problems[:5]))
        found = removed_markup(field.data or "")
        if found:
            shown = [item if len(item) <= 40 else item[:39] + "…" for item in found]
            raise ValidationError(_(
                "This text has HTML or links that are removed when the notice is shown: %(found)s. "
                "Remove them: notices show text, headings, lists, tables and links to http, https, "
                "mailto and tel addresses.", found=", ".join(shown)))


def notice_version_form(languages: list[str], language_names: dict[str, str]) -> type[FlaskForm]:
    """A form for a new version: its date and materiality, and a title, summary and text per language."""

    class NoticeVersionForm(FlaskForm):
        effective_date = DateField(_l("Effective date"), validators=[InputRequired()],
                                   description=_l("The day this version takes effect. It can be "
                                                  "published before that day."))
        material = BooleanField(
            _l("Material change"),
            description=_l("New purposes, data categories, recipients or controller: visitors "
                           "who consented under an earlier version are asked again."))
        # The SHA-256 of the sources last previewed: only these may be published.
        previewed = HiddenField()
        # Asked for on the preview, and checked by the view only when publishing.
        reason = _reason(_l("Why is this version published?"), required=False)
        confirm = BooleanField(_l("Yes, publish this version in every language."))
        allow_undo = BooleanField(_l("Publish anyway: I know that the later versions listed above "
                                     "will undo these changes on their dates."))

    # Titles and summaries are shown as text: HTML tags in them are refused.
    plain = PlainText(_l("Write plain text without HTML tags such as <script>: titles and summaries are "
                         "shown as text."))
    for lang in languages:
        name = language_names.get(lang, lang)
        setattr(NoticeVersionForm, f"title_{lang}", StringField(
            _l("Title (%(language)s)", language=name),
            validators=[DataRequired(_l("The title in %(language)s is missing: every language is "
                                        "required.", language=name)), Length(max=200), plain]))
        setattr(NoticeVersionForm, f"summary_{lang}", TextAreaField(
            _l("Change summary (%(language)s)", language=name),
            validators=[DataRequired(_l("The change summary in %(language)s is missing: every language "
                                        "is required.", language=name)), Length(max=2000), plain],
            render_kw={"rows": 3}))
        setattr(NoticeVersionForm, f"body_{lang}", TextAreaField(
            _l("Text in Markdown (%(language)s)", language=name),
            validators=[DataRequired(_l("The text in %(language)s is missing: every language is "
                                        "required.", language=name)),
                        Length(max=MAX_SOURCE_BYTES), NoticeMarkdown()],
            render_kw={"rows": 18}))
    return NoticeVersionForm
