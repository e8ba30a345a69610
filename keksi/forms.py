"""The admin's forms (flask-wtf: every one carries a CSRF token)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (BooleanField, DateField, EmailField, HiddenField, PasswordField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, ListWidget

from .auth import MIN_PASSWORD, ROLES
from .notices import MAX_SOURCE_BYTES, removed_markup
from .site_forms import PlainText


class LoginForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)],
                       render_kw={"autocomplete": "username"})
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"), validators=[DataRequired(), Length(min=MIN_PASSWORD, max=1024)],
        description=_l("At least %(n)s characters.", n=MIN_PASSWORD),
        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[DataRequired(), EqualTo("password", message=_l("The passwords do not match."))],
        render_kw={"autocomplete": "new-password"})


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class UserForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[DataRequired(), Length(max=254)])
    roles = MultiCheckboxField(_l("Roles"), choices=[SelectChoice(r) for r in ROLES],
                               validators=[InputRequired(message=_l("Choose at least one role."))])


class ActionForm(FlaskForm):
    """A form with nothing but its CSRF token: logout, withdraw."""


class NoticeMarkdown:
    """Refuse HTML that rendering would remove from a notice: scripts, frames, event handlers,
    javascript: links. Saying so beats publishing a text that does not show what was written."""

    def __call__(self, form: Any, field: Any) -> None:
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

    # Titles and summaries are shown as text: HTML tags in them are refused.
    plain = PlainText(_l("Write plain text without HTML tags such as <script>: titles and summaries are "
                         "shown as text."))
    for lang in languages:
        name = language_names.get(lang, lang)
        setattr(NoticeVersionForm, f"title_{lang}", StringField(
            _l("Title (%(language)s)", language=name),
            validators=[DataRequired(), Length(max=200), plain]))
        setattr(NoticeVersionForm, f"summary_{lang}", TextAreaField(
            _l("Change summary (%(language)s)", language=name),
            validators=[DataRequired(), Length(max=2000), plain], render_kw={"rows": 3}))
        setattr(NoticeVersionForm, f"body_{lang}", TextAreaField(
            _l("Text in Markdown (%(language)s)", language=name),
            validators=[DataRequired(), Length(max=MAX_SOURCE_BYTES), NoticeMarkdown()],
            render_kw={"rows": 18}))
    return NoticeVersionForm
