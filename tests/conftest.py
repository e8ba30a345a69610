"""Shared fixtures: an app on a fresh database with the sample notices, and live servers for the browser."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from werkzeug.serving import make_server

from app import create_app
from keksi import auth, notices
from keksi.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
# The notices the tests' expectations are written against: a frozen copy, so that the sample notices
# shipped in notices/ can gain versions without rewriting the tests (tests/test_sample_notices.py checks those).
SAMPLE_NOTICES = ROOT / "tests" / "fixtures" / "notices"
SHIPPED_NOTICES = ROOT / "notices"
CHROMIUM = os.environ.get("KEKSI_CHROMIUM", "/usr/lib/chromium/chromium")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="run the load test at its full size (30,000 choices from 64 connections) "
                          "instead of the CI size")


@pytest.fixture
def full_size(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--full"))


@pytest.fixture
def notices_dir(tmp_path: Path) -> Path:
    """A private copy of the sample notices that a test may change."""
    target = tmp_path / "notices"
    shutil.copytree(SAMPLE_NOTICES, target)
    return target


# The day the tests live on, so that which version is current never depends on the
# machine's clock; pass FIXED_TODAY=None to make_app to use the real clock.
TODAY = "2026-11-22"
LANGS = ("fi", "sv", "en")


def write_version(root: Path, slug: str, version: str, *, material: bool = False,
                  body: str = "Some text.\n", langs=LANGS, title: str = "Title",
                  summary: str = "Changed things.") -> list[Path]:
    """Write one version of a notice in `langs`; return the files written."""
    folder = root / slug
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for lang in langs:
        path = folder / f"{version}.{lang}.md"
        path.write_text(f"---\ntitle: {title} {lang}\nsummary: {summary} ({lang})\n"
                        f"material: {str(material).lower()}\n---\n\n{body}", encoding="utf-8")
        paths.append(path)
    return paths


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test module that sets BACKENDS = BOTH runs each test that builds an app once per backend."""
    if "backend" in metafunc.fixturenames and getattr(metafunc.module, "BACKENDS", None) == BOTH:
        metafunc.parametrize("backend", BOTH, indirect=True)


BOTH = ("sqlite", "postgresql")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store's backend for this test: "sqlite", or "postgresql" in modules that run on BOTH
    (skipped, saying why, without a cluster or for a test marked sqlite_only)."""
    name = getattr(request, "param", "sqlite")
    if name == "postgresql" and request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about SQLite itself (marked sqlite_only)")
    return name


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """KEKSI_DATABASE for this test: a new SQLite file, or a new PostgreSQL database of its own."""
    if backend == "postgresql":
        return request.getfixturevalue("fresh_postgresql")
    return str(tmp_path / "keksi.db")


@pytest.fixture
def another_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A second new database on the same backend, for a test that compares two apps."""
    if backend == "postgresql":
        return request.getfixturevalue("second_postgresql")
    return str(tmp_path / "another.db")


@pytest.fixture
def make_app(database: str, notices_dir: Path) -> Callable[..., Any]:
    """Build an app on a new database; `publish=True` publishes the sample notices first."""

    def factory(publish: bool = True, **config: Any):
        settings = {
            "TESTING": True,
            "DATABASE": database,
            "NOTICES_DIR": str(notices_dir),
            "SECRET_KEY": "test-secret",
            "FIXED_TODAY": TODAY,
        }
        settings.update(config)
        app = create_app(settings)
        if publish:
            publish_all(app)
        return app

    return factory


def publish_all(app: Any, allow_undo: bool = False) -> list[notices.Source]:
    store = open_store(app.config["DATABASE"])
    try:
        published, problems = notices.publish(
            Path(app.config["NOTICES_DIR"]), app.config["LANGUAGES"], store, "tests", allow_undo=allow_undo)
    finally:
        store.close()
    assert not problems, problems
    return published


def from_store(app: Any, method: str, *args: Any) -> Any:
    """Call one Store method on the app's database, on a connection of its own."""
    store = open_store(app.config["DATABASE"])
    try:
        return getattr(store, method)(*args)
    finally:
        store.close()


class Row(dict):
    """A row as `raw_sql` gives it: by column name, or by position as a tuple (row[0])."""

    def __getitem__(self, key: Any) -> Any:
        return list(self.values())[key] if isinstance(key, int) else super().__getitem__(key)


class Refused(Exception):
    """What the database said when it refused a statement of `raw_sql` (a trigger, a constraint)."""


def raw_sql(target: Any, sql: str, params: Any = (), *, script: bool = False) -> list[Row]:
    """Run SQL straight through the store's backend, around the Store's methods: how a test
    tampers with what is stored (as someone with the database file would) or reads it as stored.
    `target` is an app (a connection of its own) or an open Store. Each call is committed at once;
    `script=True` runs several statements. The one way tests reach the database besides the store."""
    store = target if isinstance(target, Store) else open_store(target.config["DATABASE"])
    backend = store.backend
    try:
        if script:
            backend.executescript(sql)
            return []
        with backend.transaction():
            return [Row(row) for row in backend.query(sql, params)]
    except backend.Error as exc:
        raise Refused(str(exc)) from exc
    finally:
        if store is not target:
            store.close()


@contextlib.contextmanager
def write_lock_held(app: Any) -> Iterator[None]:
    """Another writer in the middle of its transaction: the database's write lock held, through a
    store of its own, until the block ends (what makes the app's writes wait past their busy timeout)."""
    store = open_store(app.config["DATABASE"])
    try:
        with store.backend.transaction():
            yield
    finally:
        store.close()


# -- the admin: users, their sign-in and the forms' CSRF tokens -----------------------------

PASSWORD = "correct horse battery"
STAFF = {"legal@example.fi": "legal", "marketing@example.fi": "marketing", "admin@example.fi": "admin"}


@functools.cache
def _password_hash() -> str:
    return auth.hash_password(PASSWORD)  # scrypt is slow on purpose: hash once per run


def add_user(app: Any, email: str, *roles: str, password: str | None = PASSWORD) -> int:
    """Store a user with `roles` directly; `password=None` leaves it to be set from a link."""
    password_hash = _password_hash() if password == PASSWORD else (auth.hash_password(password) if password else None)
    store = open_store(app.config["DATABASE"])
    try:
        return store.add_user(email, list(roles), password_hash, "tests")
    finally:
        store.close()


def add_staff(app: Any) -> Any:
    """One user for each role (STAFF: legal@, marketing@ and admin@example.fi); returns the app."""
    for email, role in STAFF.items():
        add_user(app, email, role)
    return app


def csrf(client: Any, url: str, **options: Any) -> str:
    """The CSRF token of the form on the page at `url` (`options` go to the GET)."""
    html = client.get(url, **options).get_data(as_text=True)
    match = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def sign_in(client: Any, email: str, password: str = PASSWORD, **options: Any) -> Any:
    """Sign in through the login form, the admin in English; `options` (such as base_url or
    environ_base) go to every request. Returns the answer to the form's POST."""
    client.get("/admin/login?lang=en", **options)  # the admin's language is kept in the session
    return client.post("/admin/login", data={"csrf_token": csrf(client, "/admin/login", **options),
                                             "email": email, "password": password}, **options)


def signed_in(app: Any, email: str, *roles: str, lang: str = "en") -> Any:
    """A test client signed in as a new user with `roles`, the admin shown in `lang`."""
    add_user(app, email, *roles)
    client = app.test_client()
    sign_in(client, email)
    client.get(f"/admin/?lang={lang}")
    return client


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# -- browser -----------------------------------------------------------------

# Generous waits: they cost nothing when things go well, and a loaded CI machine (two cores
# shared by the browser, the servers and the tests) is sometimes slow. Tests never time things.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).exists():
        pytest.exit(f"Chromium is missing at {CHROMIUM}: run 'apt-get install -y chromium' "
                    "(scripts/test does this when run as root).", returncode=3)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


# Only violations come back: the passes would double the time and are not looked at.
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]},
        "resultTypes": ["violations"]}


@functools.cache
def _axe() -> Axe:
    return Axe()


def assert_accessible(page: Any, label: str | None = None) -> None:
    """axe finds no WCAG 2.2 AA violation on the page; `label` (else its URL) names it in the failure."""
    results = _axe().run(page, options=WCAG)
    assert results.violations_count == 0, f"{label or page.url}:\n{results.generate_report()}"


def browser_sign_in(page: Any, base: str, email: str, lang: str = "en") -> None:
    """Sign in through the login form in the browser, the admin in `lang`; waits for the dashboard."""
    page.goto(f"{base}/admin/login?lang={lang}")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("form.admin-form button[type=submit]").click()
    page.wait_for_url(f"{base}/admin/")


class ConsoleErrors:
    """Every console error and uncaught exception of the pages a test opens (only the widget's,
    while `only_widget`). A test that expects some (a server made to fail) allows each by a
    pattern; anything else fails the test."""

    # The browser's own request for a favicon, which neither the test pages nor Keksi's have.
    BROWSER_OWN = re.compile(r"status of 404 .*/favicon\.ico\]$")
    # What the widget says ("keksi: …"), and failures of its script and of its two requests.
    WIDGET = re.compile(r"^keksi:|/widget/v1/consent\.js|/api/v1/(consents|sites/[^/]+/config)")

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = [self.BROWSER_OWN]
        self.only_widget = True

    def allow(self, *patterns: str) -> None:
        self.allowed.extend(re.compile(p) for p in patterns)

    def watch(self, context: Any) -> Any:
        context.on("console", lambda m: self.seen.append(f"{m.text} [{m.location.get('url')}]")
                   if m.type == "error" else None)
        context.on("weberror", lambda e: self.seen.append(f"uncaught: {e.error} {e.error.stack}"))
        return context

    def unexpected(self) -> list[str]:
        return [e for e in self.seen if not any(p.search(e) for p in self.allowed)
                and (not self.only_widget or self.WIDGET.search(e))]


@pytest.fixture(autouse=True)
def widget_console_errors(request: pytest.FixtureRequest) -> Iterator[ConsoleErrors | None]:
    """Every browser test fails on a console error from the consent widget, wherever it loads
    (Keksi's own pages embed it too): a choice the server refuses is a bug, and the widget says so
    in the console. A test that provokes one on purpose says which, by a pattern for each
    (`console_errors.allow`): the opt-out is explicit and no wider than the error expected."""
    if request.node.get_closest_marker("browser") is None or "browser" not in request.fixturenames:
        yield None
        return
    browser = request.getfixturevalue("browser")
    errors = ConsoleErrors()
    new_context = browser.new_context
    browser.new_context = lambda *a, **k: errors.watch(new_context(*a, **k))
    try:
        yield errors
    finally:
        del browser.new_context  # the bound method again
    assert not errors.unexpected(), f"console errors from the widget: {errors.unexpected()}"


@pytest.fixture
def console_errors(widget_console_errors: ConsoleErrors | None, browser: Any,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleErrors]:
    """Fail the test on any console error in a context it opens (the `page` fixture's included),
    not only the widget's."""
    if widget_console_errors is not None:
        widget_console_errors.only_widget = False
        yield widget_console_errors
        return
    errors = ConsoleErrors()
    errors.only_widget = False
    new_context = browser.new_context
    monkeypatch.setattr(browser, "new_context", lambda *a, **k: errors.watch(new_context(*a, **k)))
    yield errors
    monkeypatch.undo()
    assert not errors.unexpected(), f"console errors: {errors.unexpected()}"


class ServedInThread:
    """A server (`self.server`, a socketserver) answering from a thread of its own inside `with`."""

    def __init__(self, server: Any):
        self.server = server
        self.port = server.server_port
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class LiveServer(ServedInThread):
    """A WSGI app served from a thread on a free loopback port."""

    def __init__(self, wsgi_app: Any):
        super().__init__(make_server("127.0.0.1", 0, wsgi_app, threaded=True))
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


def sample_app(folder: Path, notices: Path = SAMPLE_NOTICES, **config: Any) -> Any:
    """An app on a new database in `folder`, with a copy of the sample notices (the tests' frozen
    copy, or `notices`) published."""
    shutil.copytree(notices, folder / "notices")
    app = create_app({"TESTING": True, "DATABASE": str(folder / "keksi.db"), "SECRET_KEY": "test-secret",
                      "NOTICES_DIR": str(folder / "notices"), "FIXED_TODAY": TODAY, **config})
    publish_all(app)
    return app


@pytest.fixture(scope="session")
def sample_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server with the sample notices published, shared by tests that only read pages."""
    app = sample_app(tmp_path_factory.mktemp("sample-site"))
    with LiveServer(app) as server:
        yield server


# -- PostgreSQL ------------------------------------------------------------------

from tests.postgresql import (  # noqa: E402,F401
    empty_postgresql, fresh_postgresql, postgresql_template, postgresql_url, second_postgresql)
