"""Every setting Keksi reads: its default, its type and a help line.

Settings are data so that the README table, the environment parser and a test
that checks the documentation all come from one list. Each setting `NAME` is read
from the environment variable `KEKSI_NAME` when the app is created, never at
import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .scan_network import networks


def _languages(value: str) -> list[str]:
    langs = [part.strip() for part in value.split(",") if part.strip()]
    if not langs:
        raise ValueError("needs at least one language code")
    return langs


def _mapping(value: str) -> dict[str, str]:
    """Parse `fi:d.M.y,sv:d.M.y` into a dict."""
    result = {}
    for part in value.split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition(":")
        if not sep:
            raise ValueError(f"expected LANG:PATTERN, got {part!r}")
        result[key.strip()] = val.strip()
    return result


def _names(value: str) -> list[str]:
    return [part.strip().lower() for part in value.split(",") if part.strip()]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as Europe/Helsinki") from None
    return value


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _networks(value: str) -> str:
    networks(value)  # refused at start-up, not at the first scan
    return value


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a whole number above 0")
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value
    return parse


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return f"KEKSI_{self.name}"


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE", "instance/keksi.db",
            "SQLite file of the store (a relative path is taken from the project folder), or a "
            "PostgreSQL libpq URL (postgresql://…) for several app hosts: then set SECRET_KEY and "
            "run flask db upgrade."),
    Setting("BUSY_TIMEOUT_MS", 5000,
            "How long a write waits for SQLite's lock before the API answers 503 with Retry-After.",
            int),
    Setting("SECRET_KEY", None,
            "Key that signs sessions and CSRF tokens. Unset: a random key is made once and "
            "kept in instance/secret_key, shared by all workers; required with PostgreSQL, whose "
            "hosts must all sign alike."),
    Setting("LANGUAGES", ["fi", "sv", "en"],
            "Comma-separated languages served; every notice version needs all of them.",
            _languages),
    Setting("DEFAULT_LANGUAGE", "fi",
            "Language used when the visitor's browser asks for none of LANGUAGES."),
    Setting("TIMEZONE", "Europe/Helsinki",
            "Time zone in which a notice version's effective date begins.", _timezone),
    Setting("NOTICES_DIR", "notices",
            "Folder of notice sources, notices/<slug>/<YYYY-MM-DD>.<lang>.md; relative to the project folder."),
    Setting("DATE_FORMATS", {"fi": "d.M.y", "sv": "d.M.y", "en": "d MMMM y"},
            "Babel date pattern per language, as LANG:PATTERN pairs; other languages use Babel's long format.",
            _mapping),
    Setting("ORGANIZATION", "Tiimityö Oy",
            "The controller's name, shown at the top of every public page."),
    Setting("CONSENT_DAYS", 365,
            "How long a consent lasts when a site does not set its own consent_days "
            "(at most 395 days: 13 months).", int),
    Setting("RETENTION_DAYS", 730,
            "Days a consent record is kept after it stops being in force: after it expires, or after the "
            "same visitor's next choice on the site replaces or withdraws it, whichever comes first.", int),
    Setting("AUTO_PURGE", True,
            "Purge records past their retention once a day inside Keksi (one worker, in the background, "
            "when a request arrives); false leaves it to `flask consents purge`.", _boolean),
    Setting("TRUSTED_PROXIES", 0,
            "How many reverse proxies in front of Keksi to trust for X-Forwarded-For; 0 takes the "
            "address from the socket.", int),
    Setting("STORE_IP", "none",
            "What a consent record keeps of the visitor's address: none, or truncated (/24 or /48). "
            "Truncated shows roughly where a choice came from (the network, not the person) when a record "
            "is disputed; it is personal data all the same, kept as long as the record.",
            _choice("truncated", "none")),
    Setting("STORE_PAGE", False,
            "Set to true to keep the path of the page on which a choice was made (never the query "
            "string). It shows which page's banner the visitor answered; paths such as /orders/1234 "
            "can say something about the person, so it is off by default.",
            _boolean),
    Setting("STORE_USER_AGENT", "coarse",
            "What a consent record keeps of the browser: coarse (family, major version, OS) or none.",
            _choice("coarse", "none")),
    Setting("RATE_LIMIT", 60,
            "Consent posts allowed per minute from one address, per worker, before 429.", int),
    Setting("WIDGET_SITE", "",
            "Id of a site whose consent banner Keksi's own public pages show; empty shows none. "
            "Choices made there are accepted from Keksi's own origin, whatever the site's origins "
            "list. scripts/serve sets demo.", str),
    Setting("SESSION_IDLE_MINUTES", 30,
            "An admin session ends after this many minutes without a request (OWASP ASVS level 2: 30).",
            _positive),
    Setting("SESSION_HOURS", 12,
            "An admin session ends this many hours after sign-in, however busy (OWASP ASVS level 2: 12).",
            _positive),
    Setting("SERVER_NAMES", "",
            "Comma-separated host names Keksi answers to, such as consent.example.fi (any port; "
            ".example.fi also takes its subdomains); any other Host header gets 400. Empty answers to any.",
            _names),
    Setting("SCAN_ALLOW_PRIVATE", "",
            "Comma-separated private, loopback or link-local networks the site audit may visit, such as "
            "10.1.0.0/16 for a staging site on the intranet. Empty refuses every address that is not public "
            "(a page, link or redirect cannot send the scanner to 127.0.0.1 or 169.254.169.254).", _networks),
    Setting("HTTPS", False,
            "Set when served over https (behind a TLS proxy): adds HSTS and Secure cookies.",
            _boolean),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """Return every setting, taking `KEKSI_*` values from `environ` over the defaults."""
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SystemExit(f"{setting.env}={raw!r} is not valid: {exc}") from None
    return values

