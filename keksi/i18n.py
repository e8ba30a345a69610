"""Languages: which one a request gets, catalogs, and dates formatted per language.

Locale precedence, in one place:
1. the language in the URL prefix (`/fi/...`), or the `lang` query argument of API
   calls, when it is one of the configured LANGUAGES; the prefix counts even when the
   rest of the path matches no page, so `/sv/no/such/page` gets a Swedish 404;
   In the admin (no prefix), the language picked with `?lang=`, kept in the session;
2. otherwise the best match for the browser's Accept-Language among LANGUAGES
   (used when redirecting `/` and for 404 pages under unknown prefixes);
3. otherwise DEFAULT_LANGUAGE.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import date, datetime
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_format_date
from babel.dates import format_time as babel_format_time
from babel.messages.mofile import write_mo
from babel.numbers import get_decimal_symbol
from babel.messages.pofile import read_po
from flask import Flask, current_app, g, request, session
from flask_babel import Babel, force_locale
from flask_babel import gettext as _

babel = Babel()

# Each language's name in that language, for the language switcher.
LANGUAGE_NAMES = {"fi": "Suomi", "sv": "Svenska", "en": "English"}


def best_language() -> str:
    """Accept-Language's best match among the configured languages, else the default."""
    languages = current_app.config["LANGUAGES"]
    match = request.accept_languages.best_match(languages) if request else None
    return match or current_app.config["DEFAULT_LANGUAGE"]


def url_language() -> str | None:
    """The language of the URL prefix (`/sv/...`) when it is a configured one, else None."""
    if not request:
        return None
    prefix = request.path.lstrip("/").split("/", 1)[0]
    return prefix if prefix in current_app.config["LANGUAGES"] else None


def current_language() -> str:
    """The request's language, by the precedence in this module's docstring."""
    return g.get("lang") or url_language() or admin_language() or best_language()


def admin_language() -> str | None:
    """The language chosen in the admin (kept in the session), on admin pages only."""
    if not request or not request.path.startswith("/admin"):
        return None
    lang = session.get("admin_lang")
    return lang if lang in current_app.config["LANGUAGES"] else None


def select_locale() -> str:
    return current_language()


def format_date(value: date | str, lang: str | None = None) -> str:
    """A date as the language writes it: 9.4.2026 in Finnish, 9 April 2026 in English."""
    if isinstance(value, str):
        value = date.fromisoformat(value)
    lang = lang or current_language()
    pattern = current_app.config["DATE_FORMATS"].get(lang, "long")
    return babel_format_date(value, pattern, locale=lang)


def date_in_words(value: str) -> str:
    """An ISO date from a URL in the reader's words; one that is no real day (2025-02-30) as written."""
    try:
        return format_date(date.fromisoformat(value))
    except ValueError:
        return value


def format_moment(moment: datetime, lang: str | None = None) -> str:
    """A moment in KEKSI_TIMEZONE as the language writes it, with the offset from UTC:
    "2.12.2026 klo 7.55 (UTC+2)", "2.12.2026 kl. 07:55 (UTC+2)", "2 December 2026 at 7:55 AM (UTC+2)"."""
    lang = lang or current_language()
    local = moment.astimezone(ZoneInfo(current_app.config["TIMEZONE"]))
    minutes = int(local.utcoffset().total_seconds() // 60)
    hours, rest = divmod(abs(minutes), 60)
    zone = f"UTC{'+' if minutes >= 0 else '-'}{hours}" + (f":{rest:02d}" if rest else "")
    with force_locale(lang):
        return _("%(date)s at %(time)s (%(zone)s)", date=format_date(local.date(), lang),
                 time=babel_format_time(local, "short", locale=lang), zone=zone)


def spreadsheet_separator(lang: str | None = None) -> str:
    """The field separator of a CSV for a spreadsheet in `lang`: Excel splits a CSV it opens on the
    system's list separator, which is ";" where numbers take a decimal comma (fi, sv) and "," elsewhere."""
    return ";" if get_decimal_symbol(locale=lang or current_language()) == "," else ","


def language_name(lang: str) -> str:
    return LANGUAGE_NAMES.get(lang, lang)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path / ".compile-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def compile_catalogs(translations: Path) -> list[str]:
    """Compile each .po whose .mo is missing or older; return the languages compiled.

    Compiled catalogs are build output, not committed; compiling at start-up keeps
    `gunicorn wsgi:app` a complete deployment with no separate build step.
    """
    compiled = []
    with _lock(translations):
        for po_path in sorted(translations.glob("*/LC_MESSAGES/messages.po")):
            mo_path = po_path.with_suffix(".mo")
            if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
                continue
            with open(po_path, "rb") as po_file:
                catalog = read_po(po_file, locale=po_path.parent.parent.name)
            tmp = mo_path.with_suffix(f".mo.{os.getpid()}")
            with open(tmp, "wb") as mo_file:
                write_mo(mo_file, catalog)
            os.replace(tmp, mo_path)
            compiled.append(po_path.parent.parent.name)
    return compiled


def init_app(app: Flask) -> None:
    translations = Path(app.root_path) / "translations"
    try:
        compile_catalogs(translations)
    except OSError as exc:  # a read-only deployment with catalogs compiled at build time
        app.logger.warning("could not compile the translation catalogs: %s", exc)
    babel.init_app(app, locale_selector=select_locale,
                   default_translation_directories=str(translations),
                   default_timezone=app.config["TIMEZONE"])
    app.jinja_env.globals.update(format_date=format_date, language_name=language_name)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
