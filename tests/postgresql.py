"""PostgreSQL for the tests: the cluster scripts/test starts (KEKSI_TEST_POSTGRESQL), a migrated template
database made once per run, and a fresh copy of it for each test that asks."""

from __future__ import annotations

import itertools
import os
from types import ModuleType
from typing import Iterator
from urllib.parse import urlsplit

import pytest

NO_CLUSTER = ("no PostgreSQL server for the tests: scripts/test starts a throwaway cluster; or set "
              "KEKSI_TEST_POSTGRESQL=postgresql://… to a server where the tests may create databases")
_names = itertools.count(1)


def postgresql_backend() -> ModuleType:
    """keksi/store/postgresql.py (imported here: psycopg is an optional dependency)."""
    from keksi.store import postgresql
    return postgresql


def with_database(url: str, name: str) -> str:
    """The libpq URL `url` naming the database `name` instead."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def connect(url: str):
    """A connection in autocommit mode, as the backend uses them."""
    import psycopg
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def postgresql_url() -> str:
    url = os.environ.get("KEKSI_TEST_POSTGRESQL")
    if not url:
        pytest.skip(NO_CLUSTER)
    return url


def _create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return with_database(admin_url, name)


def _drop_database(admin_url: str, name: str) -> None:
    with connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgresql_template(postgresql_url: str) -> Iterator[str]:
    """The name of a database migrated to the latest schema, to copy (much faster than migrating)."""
    name = f"keksi_template_{os.getpid()}"
    url = _create_database(postgresql_url, name)
    with connect(url) as conn:
        postgresql_backend().migrate(conn)
    yield name
    _drop_database(postgresql_url, name)


def _fresh(postgresql_url: str, template: str) -> Iterator[str]:
    name = f"keksi_test_{os.getpid()}_{next(_names)}"
    url = _create_database(postgresql_url, name, template=template)
    yield url
    postgresql_backend().close_pool(url)
    _drop_database(postgresql_url, name)


@pytest.fixture
def fresh_postgresql(postgresql_url: str, postgresql_template: str) -> Iterator[str]:
    """The URL of a new database of this test's own, migrated; dropped afterwards."""
    yield from _fresh(postgresql_url, postgresql_template)


@pytest.fixture
def second_postgresql(postgresql_url: str, postgresql_template: str) -> Iterator[str]:
    """Another such database, for a test that compares two apps."""
    yield from _fresh(postgresql_url, postgresql_template)


@pytest.fixture
def empty_postgresql(postgresql_url: str) -> Iterator[str]:
    """The URL of a new, empty database (no migrations applied); dropped afterwards."""
    name = f"keksi_empty_{os.getpid()}_{next(_names)}"
    yield _create_database(postgresql_url, name)
    _drop_database(postgresql_url, name)
