"""Admin sessions that end, users that admins manage, and sign-in guessing slowed without locking anyone out."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from keksi import auth
from keksi.store import open_store

from .conftest import BOTH, PASSWORD, add_staff, add_user, csrf, from_store, raw_sql, sign_in

BACKENDS = BOTH


@pytest.fixture
def app(make_app):
    return add_staff(make_app())


def user(app, email: str) -> dict | None:
    return from_store(app, "user_by_email", email)


def audit(app) -> list[dict]:
    return from_store(app, "audit_log", 100)


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def replay(app, cookie: str):
    """A fresh client (another browser, or an attacker) presenting a saved session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def signed_in(client) -> bool:
    response = client.get("/admin/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def post_form(client, url: str, form_url: str, **data):
    return client.post(url, data={"csrf_token": csrf(client, form_url), **data})


# -- sessions end --------------------------------------------------------------------


def test_a_saved_cookie_stops_working_after_sign_out_on_every_worker(app, make_app, client):
    """Two app instances on one database stand for two gunicorn workers."""
    other_worker = make_app(publish=False)
    sign_in(client, "legal@example.fi")
    saved = session_cookie(client)
    elsewhere = replay(other_worker, saved)
    assert signed_in(elsewhere), "a live session works on every worker"
    client.post("/admin/logout", data={"csrf_token": csrf(client, "/admin/")})
    assert not signed_in(client)
    assert not signed_in(replay(other_worker, saved)), "the saved cookie no longer works on another worker"
    assert not signed_in(replay(app, saved))


def change_password(app, client):
    store = open_store(app.config["DATABASE"])
    store.set_password(user(app, "legal@example.fi")["id"], auth.hash_password("another long password"), "t")
    store.close()


def disable_in_admin(app, client):
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    uid = user(app, "legal@example.fi")["id"]
    assert post_form(admin, f"/admin/users/{uid}/disable", f"/admin/users/{uid}").status_code == 302


def new_roles_in_admin(app, client):
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    uid = user(app, "legal@example.fi")["id"]
    response = post_form(admin, f"/admin/users/{uid}/roles", f"/admin/users/{uid}", roles=["marketing"])
    assert response.status_code == 302


def disable_in_cli(app, client):
    assert app.test_cli_runner().invoke(args=["users", "disable", "legal@example.fi"]).exit_code == 0


@pytest.mark.parametrize("end", [change_password, disable_in_admin, new_roles_in_admin, disable_in_cli],
                         ids=lambda f: f.__name__)
def test_a_change_to_the_account_ends_its_sessions_everywhere(app, make_app, client, end):
    sign_in(client, "legal@example.fi")
    saved = session_cookie(client)
    other_worker = make_app(publish=False)
    assert signed_in(replay(other_worker, saved))
    end(app, client)
    assert not signed_in(replay(other_worker, saved))
    response = client.get("/admin/notices")
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    assert "Your session has ended. Sign in again." in client.get("/admin/login").get_data(as_text=True)


def age_sessions(app, *, seen: timedelta = timedelta(0), created: timedelta = timedelta(0)) -> None:
    """Make every session look as if it were last used `seen` ago and began `created` ago."""
    now = datetime.now(timezone.utc)
    raw_sql(app, "UPDATE admin_sessions SET seen_at = ?, created_at = ?",
            [(now - seen).isoformat(), (now - created).isoformat()])


def test_a_session_ends_after_the_idle_timeout(make_app):
    app = make_app(SESSION_IDLE_MINUTES=20)
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    sign_in(client, "legal@example.fi")
    age_sessions(app, seen=timedelta(minutes=19))
    assert signed_in(client), "19 minutes idle is within 20"
    age_sessions(app, seen=timedelta(minutes=21), created=timedelta(minutes=30))
    assert not signed_in(client)
    assert not signed_in(client), "and it stays ended"


def test_a_busy_session_still_ends_at_its_absolute_lifetime(make_app):
    app = make_app(SESSION_HOURS=2)
    add_user(app, "legal@example.fi", "legal")
    client = app.test_client()
    sign_in(client, "legal@example.fi")
    age_sessions(app, created=timedelta(hours=1, minutes=59))
    assert signed_in(client)
    age_sessions(app, created=timedelta(hours=2, minutes=1))
    assert not signed_in(client)


def test_each_request_counts_as_use_but_is_written_at_most_once_a_minute(app, client):
    sign_in(client, "legal@example.fi")
    age_sessions(app, seen=timedelta(minutes=10), created=timedelta(minutes=10))
    assert signed_in(client)
    seen = raw_sql(app, "SELECT seen_at FROM admin_sessions")[0][0]
    assert datetime.now(timezone.utc) - datetime.fromisoformat(seen) < timedelta(minutes=1)


def test_signing_in_again_replaces_the_session_and_only_a_hash_is_stored(app, client):
    sign_in(client, "legal@example.fi")
    first = session_cookie(client)
    sign_in(client, "legal@example.fi")
    assert not signed_in(replay(app, first)), "a new sign-in gives a new session (no fixation)"
    assert signed_in(client)
    rows = raw_sql(app, "SELECT token_hash FROM admin_sessions")
    assert len(rows) == 1 and re.fullmatch(r"[0-9a-f]{64}", rows[0][0])


@pytest.mark.parametrize("cookie", ["garbage", "x" * 4000, "eyJzaWQiOlsxLDJdfQ.forged.sig"])
def test_a_forged_session_cookie_is_just_not_signed_in(app, cookie):
    client = replay(app, cookie)
    response = client.get("/admin/users")
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(app, client):
    sign_in(client, "legal@example.fi")
    laptop = app.test_client()
    sign_in(laptop, "legal@example.fi")
    token = csrf(client, "/admin/password")
    wrong = client.post("/admin/password", data={"csrf_token": token, "current": "not my password",
                                                 "password": "a new long password", "confirm": "a new long password"})
    assert wrong.status_code == 400 and "This is not your current password." in wrong.get_data(as_text=True)
    done = client.post("/admin/password", data={"csrf_token": token, "current": PASSWORD,
                                                "password": "a new long password", "confirm": "a new long password"})
    assert done.status_code == 302
    assert signed_in(client) and not signed_in(laptop)
    assert sign_in(app.test_client(), "legal@example.fi", "a new long password").status_code == 302
    assert sign_in(app.test_client(), "legal@example.fi", PASSWORD).status_code == 401


# -- admins manage users --------------------------------------------------------------


def test_admin_disables_enables_and_removes_a_user_all_audited(app):
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    uid = user(app, "marketing@example.fi")["id"]
    page = f"/admin/users/{uid}"
    assert post_form(admin, f"{page}/disable", page).status_code == 302
    assert user(app, "marketing@example.fi")["disabled"] == 1
    assert sign_in(app.test_client(), "marketing@example.fi").status_code == 401
    assert "disabled" in admin.get("/admin/users").get_data(as_text=True)
    assert post_form(admin, f"{page}/enable", page).status_code == 302
    assert sign_in(app.test_client(), "marketing@example.fi").status_code == 302
    unconfirmed = post_form(admin, f"{page}/remove", page)
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.get_data(as_text=True)
    assert user(app, "marketing@example.fi") is not None
    assert post_form(admin, f"{page}/remove", page, confirm="yes").status_code == 302
    assert user(app, "marketing@example.fi") is None
    assert sign_in(app.test_client(), "marketing@example.fi").status_code == 401
    assert admin.get(page).status_code == 404
    actions = [(e["action"], e["subject"], e["actor"]) for e in audit(app)[:3]]
    assert actions == [("user.remove", "marketing@example.fi", "admin@example.fi"),
                       ("user.enable", "marketing@example.fi", "admin@example.fi"),
                       ("user.disable", "marketing@example.fi", "admin@example.fi")]


def test_admin_changes_roles_and_the_new_roles_apply(app):
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    uid = user(app, "marketing@example.fi")["id"]
    response = post_form(admin, f"/admin/users/{uid}/roles", f"/admin/users/{uid}", roles=["legal", "marketing"])
    assert response.status_code == 302
    assert user(app, "marketing@example.fi")["roles"] == ["legal", "marketing"]
    entry = audit(app)[0]
    assert entry["action"] == "user.roles" and entry["detail"] == {"before": ["marketing"],
                                                                  "after": ["legal", "marketing"]}
    person = app.test_client()
    sign_in(person, "marketing@example.fi")
    assert person.get("/admin/notices").status_code == 200
    none = post_form(admin, f"/admin/users/{uid}/roles", f"/admin/users/{uid}", roles=[])
    bogus = post_form(admin, f"/admin/users/{uid}/roles", f"/admin/users/{uid}", roles=["root"])
    assert none.status_code == bogus.status_code == 400
    assert user(app, "marketing@example.fi")["roles"] == ["legal", "marketing"]


def test_the_last_admin_cannot_be_removed_disabled_or_demoted(app):
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    uid = user(app, "admin@example.fi")["id"]
    page = f"/admin/users/{uid}"
    for response in (post_form(admin, f"{page}/disable", page),
                     post_form(admin, f"{page}/roles", page, roles=["legal"]),
                     post_form(admin, f"{page}/remove", page, confirm="yes")):
        assert response.status_code == 409
        assert "This is the last enabled admin" in response.get_data(as_text=True)
    assert user(app, "admin@example.fi") == dict(user(app, "admin@example.fi"), disabled=0, roles=["admin"])
    assert signed_in(admin), "nothing changed, so the session goes on"
    # A disabled admin, or one without a password, does not count: they cannot sign in.
    add_user(app, "invited@example.fi", "admin", password=None)
    assert post_form(admin, f"{page}/disable", page).status_code == 409
    add_user(app, "second@example.fi", "admin")
    assert post_form(admin, f"{page}/roles", page, roles=["legal"]).status_code == 302
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["users", "disable", "second@example.fi"])
    assert refused.exit_code == 1 and "last enabled admin" in refused.output
    assert user(app, "second@example.fi")["disabled"] == 0


def test_only_admins_manage_users(app):
    legal = app.test_client()
    sign_in(legal, "legal@example.fi")
    uid = user(app, "marketing@example.fi")["id"]
    token = csrf(legal, "/admin/")
    for url in (f"/admin/users/{uid}/disable", f"/admin/users/{uid}/remove", f"/admin/users/{uid}/roles"):
        assert legal.post(url, data={"csrf_token": token, "confirm": "yes", "roles": ["admin"]}).status_code == 403
    assert user(app, "marketing@example.fi")["roles"] == ["marketing"]
    assert user(app, "marketing@example.fi")["disabled"] == 0
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    assert admin.post(f"/admin/users/{uid}/disable", data={}).status_code == 400, "CSRF token required"
    assert admin.get("/admin/users/99999").status_code == 404
    assert user(app, "marketing@example.fi")["disabled"] == 0


def test_admin_makes_a_new_set_password_link(app):
    admin = app.test_client()
    sign_in(admin, "admin@example.fi")
    uid = user(app, "legal@example.fi")["id"]
    html = post_form(admin, f"/admin/users/{uid}/link", f"/admin/users/{uid}").get_data(as_text=True)
    link = re.search(r"http://localhost(/admin/set-password/[\w-]+)", html).group(1)
    assert app.test_client().get(link).status_code == 200
    assert audit(app)[0]["action"] == "user.link"


def test_users_cli_disables_enables_changes_roles_and_removes(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "disable", "legal@example.fi"]).exit_code == 0
    assert "legal@example.fi\tlegal\tdisabled" in runner.invoke(args=["users", "list"]).output
    assert runner.invoke(args=["users", "enable", "legal@example.fi"]).exit_code == 0
    assert runner.invoke(args=["users", "roles", "legal@example.fi", "--role", "legal",
                               "--role", "marketing"]).exit_code == 0
    assert user(app, "legal@example.fi")["roles"] == ["legal", "marketing"]
    kept = runner.invoke(args=["users", "remove", "legal@example.fi"], input="n\n")
    assert kept.exit_code == 1 and user(app, "legal@example.fi") is not None
    assert runner.invoke(args=["users", "remove", "legal@example.fi"], input="y\n").exit_code == 0
    assert user(app, "legal@example.fi") is None
    missing = runner.invoke(args=["users", "disable", "nobody@example.fi"])
    assert missing.exit_code == 1 and "there is no user" in missing.output
    last = runner.invoke(args=["users", "remove", "admin@example.fi", "--yes"])
    demote = runner.invoke(args=["users", "roles", "admin@example.fi", "--role", "legal"])
    assert last.exit_code == demote.exit_code == 1 and user(app, "admin@example.fi")["roles"] == ["admin"]
    assert [e["action"] for e in audit(app)[:4]] == ["user.remove", "user.roles", "user.enable", "user.disable"]
    assert all(e["actor"].startswith("cli:") for e in audit(app)[:4])


# -- guessing is slowed, nobody is locked out ---------------------------------------------


def sign_in_from(app, address: str, email: str, password: str, client=None):
    return sign_in(client or app.test_client(), email, password, environ_base={"REMOTE_ADDR": address})


def test_the_guessing_address_waits_but_the_right_password_from_elsewhere_gets_in(app):
    for _ in range(auth.FREE_FAILURES):
        assert sign_in_from(app, "198.51.100.7", "legal@example.fi", "guess!").status_code == 401
    slowed = sign_in_from(app, "198.51.100.7", "legal@example.fi", PASSWORD)
    assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins" in slowed.get_data(as_text=True)
    other_account = sign_in_from(app, "198.51.100.7", "marketing@example.fi", PASSWORD)
    assert other_account.status_code == 429, "the address waits whatever account it tries next"
    assert sign_in_from(app, "203.0.113.5", "legal@example.fi", PASSWORD).status_code == 302


def test_an_ipv6_guesser_cannot_escape_by_changing_address_within_its_64(app):
    for n in range(auth.FREE_FAILURES):
        sign_in_from(app, f"2001:db8:1:2::{n + 1:x}", "legal@example.fi", "guess!")
    assert sign_in_from(app, "2001:db8:1:2:ffff::9", "legal@example.fi", PASSWORD).status_code == 429
    assert sign_in_from(app, "2001:db8:1:3::1", "legal@example.fi", PASSWORD).status_code == 302


def test_guessing_spread_over_many_addresses_slows_the_account_but_its_owner_gets_in(app):
    owner = app.test_client()
    assert sign_in_from(app, "192.0.2.10", "legal@example.fi", PASSWORD, client=owner).status_code == 302
    owner.post("/admin/logout", data={"csrf_token": csrf(owner, "/admin/")})
    for n in range(auth.ACCOUNT_FREE_FAILURES):
        assert sign_in_from(app, f"198.51.{n}.1", "legal@example.fi", "guess!").status_code == 401
    stranger = sign_in_from(app, "203.0.113.77", "legal@example.fi", PASSWORD)
    assert stranger.status_code == 429, "an unknown browser waits while the account is under attack"
    travelling = sign_in_from(app, "203.0.113.78", "legal@example.fi", PASSWORD, client=owner)
    assert travelling.status_code == 302, "the owner's browser gets in, from a new address too"
    assert sign_in_from(app, "203.0.113.79", "marketing@example.fi", PASSWORD).status_code == 302


def test_a_known_browser_guessing_loses_its_pass(app):
    owner = app.test_client()
    sign_in_from(app, "192.0.2.10", "legal@example.fi", PASSWORD, client=owner)
    for n in range(auth.ACCOUNT_FREE_FAILURES):
        sign_in_from(app, f"198.51.{n}.1", "legal@example.fi", "guess!")
    for n in range(auth.DEVICE_FREE_FAILURES):
        assert sign_in_from(app, f"203.0.{n}.1", "legal@example.fi", "guess!", client=owner).status_code == 401
    assert sign_in_from(app, "203.0.200.1", "legal@example.fi", PASSWORD, client=owner).status_code == 429


def test_a_device_cookie_counts_only_for_its_own_account_and_signature(app):
    owner = app.test_client()
    sign_in_from(app, "192.0.2.10", "marketing@example.fi", PASSWORD, client=owner)
    cookie = owner.get_cookie("keksi_device", path="/admin/login").value
    for n in range(auth.ACCOUNT_FREE_FAILURES):
        sign_in_from(app, f"198.51.{n}.1", "legal@example.fi", "guess!")
    assert sign_in_from(app, "203.0.113.1", "legal@example.fi", PASSWORD, client=owner).status_code == 429
    forged = app.test_client()
    forged.set_cookie("keksi_device", cookie[:-3] + "AAA", path="/admin/login")
    assert sign_in_from(app, "203.0.113.2", "legal@example.fi", PASSWORD, client=forged).status_code == 429


def test_the_wait_doubles_and_the_window_forgets(app):
    store = open_store(app.config["DATABASE"])
    try:
        start = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
        for i in range(auth.FREE_FAILURES + 3):
            auth.authenticate(store, "x@example.fi", "nope", "192.0.2.1", now=start + timedelta(seconds=i))
        last = start + timedelta(seconds=auth.FREE_FAILURES + 2)
        assert auth.login_wait(store, "x@example.fi", "192.0.2.1", now=last) == 16
        assert auth.login_wait(store, "y@example.fi", "192.0.2.1", now=last) == 16, "any account"
        assert auth.login_wait(store, "x@example.fi", "192.0.2.2", now=last) == 0, "8 < 20 for the account"
        assert auth.login_wait(store, "x@example.fi", "192.0.2.1", now=last + timedelta(seconds=17)) == 0
        assert auth.login_wait(store, "x@example.fi", "192.0.2.1", now=last + auth.FAILURE_WINDOW) == 0
    finally:
        store.close()


def test_sessions_nobody_ended_are_forgotten_at_the_next_sign_in(app, client):
    sign_in(client, "legal@example.fi")
    age_sessions(app, seen=timedelta(hours=13), created=timedelta(hours=13))
    sign_in(app.test_client(), "marketing@example.fi")
    rows = raw_sql(app, "SELECT user_id FROM admin_sessions")
    assert [r[0] for r in rows] == [user(app, "marketing@example.fi")["id"]]


def test_a_user_sees_their_sessions_and_signs_out_everywhere_else(app, client):
    sign_in(client, "legal@example.fi")
    phone, laptop = app.test_client(), app.test_client()
    sign_in(phone, "legal@example.fi")
    sign_in(laptop, "legal@example.fi")
    sign_in(app.test_client(), "marketing@example.fi")
    page = client.get("/admin/password").get_data(as_text=True)
    assert page.count("<tr><td>") == 3, "the three sessions of this account, not marketing's"
    token = csrf(client, "/admin/password")
    wrong = client.post("/admin/sessions/end-others", data={"csrf_token": token, "sessions-current": "nope"})
    assert wrong.status_code == 400 and signed_in(phone)
    done = client.post("/admin/sessions/end-others", data={"csrf_token": token, "sessions-current": PASSWORD})
    assert done.status_code == 302
    assert "2 other sessions have ended." in client.get(done.headers["Location"]).get_data(as_text=True)
    assert signed_in(client) and not signed_in(phone) and not signed_in(laptop)
    assert audit(app)[0]["action"] == "user.sessions_ended" and audit(app)[0]["detail"] == {"sessions": 2}


def test_strangers_guessing_cannot_stop_the_signed_in_owner_ending_their_other_sessions(app, client):
    """Exactly when someone is guessing their password, the owner must still be able to sign out
    everywhere else and change it; a thief holding the session is still slowed after a few wrong tries."""
    sign_in(client, "legal@example.fi")
    thief = app.test_client()
    sign_in(thief, "legal@example.fi")
    for n in range(auth.ACCOUNT_FREE_FAILURES):
        assert sign_in_from(app, f"198.51.{n}.1", "legal@example.fi", "guess!").status_code == 401
    token = csrf(client, "/admin/password")
    done = client.post("/admin/sessions/end-others", data={"csrf_token": token, "sessions-current": PASSWORD})
    assert done.status_code == 302 and signed_in(client) and not signed_in(thief)
    sign_in(thief, "legal@example.fi")
    token = csrf(thief, "/admin/password")
    for _ in range(auth.DEVICE_FREE_FAILURES):
        wrong = thief.post("/admin/sessions/end-others", data={"csrf_token": token, "sessions-current": "guess!"})
        assert wrong.status_code == 400
    slowed = thief.post("/admin/sessions/end-others", data={"csrf_token": token, "sessions-current": PASSWORD})
    assert slowed.status_code == 429 and signed_in(client)


def test_guesses_sent_all_at_once_wait_like_guesses_sent_one_by_one(make_app):
    """Checking the wait, then the password, then counting the failure let every guess of a burst
    find no failure yet: 16 guesses at once were all checked, where 5 are free."""
    app = make_app(publish=False)
    add_user(app, "legal@example.fi", "legal")
    clients = [app.test_client() for _ in range(3 * auth.FREE_FAILURES)]
    tokens = [csrf(c, "/admin/login") for c in clients]
    codes: list[int] = []
    start = threading.Barrier(len(clients))

    def guess(c, token):
        start.wait()
        codes.append(c.post("/admin/login", data={"csrf_token": token, "email": "legal@example.fi",
                                                  "password": "guess!"}).status_code)

    threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(codes) == [401] * auth.FREE_FAILURES + [429] * (len(clients) - auth.FREE_FAILURES)
    assert len(from_store(app, "login_failures", "account:legal@example.fi", "2000")) == auth.FREE_FAILURES, \
        "a try that had to wait is not counted as a failure"


# -- several hosts on one database --------------------------------------------------------
# Two app instances on one database stand for two hosts behind a load balancer, which may send each
# request of one browser to either. They share only the database and KEKSI_SECRET_KEY.


def switch_host(client, host):
    """The same browser, its next request sent to `host`."""
    moved = host.test_client()
    moved.set_cookie("session", session_cookie(client))
    return moved


def test_a_session_begun_on_one_host_is_kept_and_ended_on_another(app, make_app):
    host_a, host_b = app, make_app(publish=False)
    on_a = host_a.test_client()
    on_a.get("/admin/login?lang=en")
    token = csrf(on_a, "/admin/login")  # the form from host A, posted to host B
    on_b = switch_host(on_a, host_b)
    answer = on_b.post("/admin/login", data={"csrf_token": token, "email": "legal@example.fi", "password": PASSWORD})
    assert answer.status_code == 302 and signed_in(on_b)
    on_a = switch_host(on_b, host_a)
    assert signed_in(on_a), "the session made on host B is accepted on host A"
    saved = session_cookie(on_a)
    on_a.post("/admin/logout", data={"csrf_token": csrf(on_a, "/admin/")})
    assert not signed_in(replay(host_b, saved)), "signing out on host A ends the session on host B"
    assert not signed_in(replay(host_a, saved))


def test_failed_sign_ins_counted_on_every_host_slow_the_others(app, make_app):
    hosts = (app, make_app(publish=False))
    for n in range(auth.FREE_FAILURES):
        assert sign_in_from(hosts[n % 2], "198.51.100.7", "legal@example.fi", "guess!").status_code == 401
    for host in hosts:
        slowed = sign_in_from(host, "198.51.100.7", "legal@example.fi", PASSWORD)
        assert slowed.status_code == 429 and int(slowed.headers["Retry-After"]) >= 1
    assert sign_in_from(hosts[1], "203.0.113.5", "legal@example.fi", PASSWORD).status_code == 302
