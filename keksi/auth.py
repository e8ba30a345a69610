"""Admin accounts: passwords, one-time links, roles, and slowing down password guessing.

No request objects here: views pass the store, the email, the address and the time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from .store import Store

ROLES = ("legal", "marketing", "admin")
EMAIL_RE = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$")
MIN_PASSWORD = 12
FREE_FAILURES = 5  # failed logins allowed before each further try must wait
FAILURE_WINDOW = timedelta(minutes=15)
MAX_WAIT = timedelta(minutes=15)
TOKEN_HOURS = 48

# A hash to check against when the account does not exist, so that a wrong email
# takes as long as a wrong password and timing does not reveal who has an account.
_DUMMY_HASH = generate_password_hash("not a real password")


class AuthError(ValueError):
    """Something about an account that the person can fix; the message says what."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_new_user(email: str, roles: list[str]) -> str:
    email = normalise_email(email)
    if not EMAIL_RE.match(email):
        raise AuthError("Enter an email address such as name@example.fi.")
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise AuthError(f"Choose one or more roles from: {', '.join(ROLES)}.")
    return email


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"Use at least {MIN_PASSWORD} characters.")
    if len(password) > 1024:
        raise AuthError("Use at most 1024 characters.")


def hash_password(password: str) -> str:
    check_new_password(password)
    return generate_password_hash(password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def make_password_token(store: Store, user_id: int, now: datetime | None = None) -> str:
    """A one-time token to set a password; only its hash is stored."""
    now = now or datetime.now(timezone.utc)
    token = secrets.token_urlsafe(32)
    store.add_password_token(_token_hash(token), user_id, _iso(now + timedelta(hours=TOKEN_HOURS)))
    return token


def token_user(store: Store, token: str) -> dict[str, Any] | None:
    user_id = store.password_token_user(_token_hash(token), _iso(datetime.now(timezone.utc)))
    return store.user(user_id) if user_id else None


def set_password_with_token(store: Store, token: str, password: str) -> dict[str, Any]:
    password_hash = hash_password(password)
    user_id = store.use_password_token(_token_hash(token), _iso(datetime.now(timezone.utc)))
    if user_id is None:
        raise AuthError("This link has expired or was already used. Ask an admin for a new one.")
    store.set_password(user_id, password_hash, f"user:{user_id}")
    return store.user(user_id)


def _keys(email: str, address: str | None) -> list[str]:
    return [f"account:{normalise_email(email)}", f"address:{address or '-'}"]


def login_wait(store: Store, email: str, address: str | None, now: datetime | None = None) -> int:
    """Seconds to wait before another try is allowed for this account or address (0: go ahead).

    After FREE_FAILURES failures in FAILURE_WINDOW, each further try waits twice as
    long as the last, up to MAX_WAIT: guessing gets slow, a typo does not.
    """
    now = now or datetime.now(timezone.utc)
    longest = 0.0
    for key in _keys(email, address):
        failures = store.login_failures(key, _iso(now - FAILURE_WINDOW))
        extra = len(failures) - FREE_FAILURES + 1
        if extra <= 0:
            continue
        wait = min(timedelta(seconds=2 ** extra), MAX_WAIT)
        last = datetime.fromisoformat(failures[-1])
        remaining = (last + wait - now).total_seconds()
        longest = max(longest, remaining)
    return int(longest + 0.999) if longest > 0 else 0


def authenticate(store: Store, email: str, password: str, address: str | None,
                 now: datetime | None = None) -> dict[str, Any] | None:
    """The user if the email and password match an active account; records failures."""
    now = now or datetime.now(timezone.utc)
    user = store.user_by_email(email)
    stored_hash = user["password_hash"] if user and user["password_hash"] else _DUMMY_HASH
    valid = check_password_hash(stored_hash, password)
    if user and user["password_hash"] and valid and not user["disabled"]:
        store.clear_login_failures(_keys(email, address)[:1])
        return user
    store.record_login_failure(_keys(email, address), _iso(now), _iso(now - timedelta(days=1)))
    return None


def has_role(user: dict[str, Any] | None, *roles: str) -> bool:
    """Admins may do everything; others need one of `roles`."""
    if not user:
        return False
    return "admin" in user["roles"] or any(role in user["roles"] for role in roles)
