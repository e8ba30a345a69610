"""Moving a database to another store (`flask db copy`, SQLite to PostgreSQL): every table, a batch
of rows at a time so that memory stays flat, in one transaction on each side. The source's write
lock is held throughout, so nothing written meanwhile is left behind (a write waits, then gets
503); the target commits all or nothing, so a copy that fails leaves it as empty as it was and can
simply be run again.

The copy keeps every value as stored (hashed columns are TEXT on both backends), so the chains
verify on the target as on the source, and appends there continue them: each append reads the last
link. What a new database is made with is set to follow the copy: the maintenance rows are the
source's, each generation moves past both databases' (so no cache made on the target before the copy
is taken for current), each chain head counts the links copied, and identity columns continue after
the largest copied id.
"""

from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable, Iterator

from .errors import StoreError
from .queries import Store

# What each backend keeps for itself: its migrations, and PostgreSQL's chain heads (set below).
OWN_TABLES = frozenset({"_sqlite_migrations", "keksi_migrations", "chain_heads"})
# Tables a new database is made with rows in; the copy replaces them.
SEEDED = frozenset({"maintenance", "generations"})
# Each chain head and the table holding its links.
CHAIN_LINKS = {"consents": "consent_chain", "audit": "audit_log"}
BATCH = 1000


def copy_database(source: Store, target: Store, batch: int = BATCH,
                  copied: Callable[[str, int], None] = lambda table, rows: None) -> dict[str, int]:
    """Copy every table of `source` into `target`, whose schema must be current and which must hold
    no data (StoreError otherwise, nothing written); return the rows copied per table, and tell
    `copied` after each table."""
    tables = _tables_to_copy(source, target)
    counts: dict[str, int] = {}
    with source.backend.transaction(), target.backend.transaction():
        holding = [table for table in tables if table not in SEEDED and _has_rows(target, table)]
        if holding:
            raise StoreError(f"the target database already holds data (in {', '.join(holding)}); copy only "
                             "into a new, empty database", code="target_not_empty", tables=holding)
        generations = target.generations()
        for table in tables:
            if table in SEEDED:
                target.backend.execute(f"DELETE FROM {table}")
            counts[table] = _copy_table(source, target, table, tables[table], batch)
            target.backend.follow_copied_ids(table)
            copied(table, counts[table])
        _follow_generations(target, generations)
        _set_chain_heads(target)
    return counts


def _tables_to_copy(source: Store, target: Store) -> dict[str, list[str]]:
    """The source's tables and their columns, each after the tables its foreign keys name; a table
    or column the target lacks is a StoreError (the target's schema is older or not Keksi's)."""
    found, theirs = source.backend.tables(), target.backend.tables()
    lacking = []
    for table, (columns, _) in found.items():
        if table in OWN_TABLES:
            continue
        if table not in theirs:
            lacking.append(table)
        else:
            lacking += [f"{table}.{column}" for column in columns if column not in theirs[table][0]]
    if lacking:
        raise StoreError(f"the target database lacks {', '.join(lacking)}: run flask db upgrade against it "
                         "with the same version of Keksi", code="target_schema", missing=lacking)
    ordered: dict[str, list[str]] = {}

    def add(table: str) -> None:
        if table not in ordered and table not in OWN_TABLES:
            for referenced in sorted(found[table][1] - {table}):
                add(referenced)
            ordered[table] = found[table][0]

    for table in sorted(found):
        add(table)
    return ordered


def _has_table(store: Store, table: str) -> bool:
    return table in store.backend.tables()


def _has_rows(store: Store, table: str) -> bool:
    return bool(store.backend.query(f"SELECT 1 AS found FROM {table} LIMIT 1"))


def _copy_table(source: Store, target: Store, table: str, columns: list[str], batch: int) -> int:
    """Copy one table's rows, `batch` at a time; return how many."""
    rows = (tuple(row[column] for column in columns)
            for row in source.backend.iterate(f"SELECT {', '.join(columns)} FROM {table}", batch=batch))
    count = 0
    for chunk in _chunks(rows, batch):
        try:
            target.backend.insert_many(table, columns, chunk)
        except target.backend.Error as exc:  # a value the target refuses: say where, keep nothing
            raise StoreError(f"the target refused a row of {table} (after {count} copied): {exc}; nothing "
                             "was copied", code="copy_refused", table=table) from exc
        count += len(chunk)
    return count


def _chunks(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _follow_generations(target: Store, before: dict[str, int]) -> None:
    """Move each generation past both the source's and the target's own before the copy, so that
    every worker already running on the target makes its caches again."""
    for name, value in target.generations().items():
        target.backend.execute("UPDATE generations SET value = ? WHERE name = ?",
                               [max(value, before.get(name, 0)) + 1, name])


def _set_chain_heads(target: Store) -> None:
    """Each chain head (a PostgreSQL table) counts the links copied, as if appended there."""
    if not _has_table(target, "chain_heads"):
        return
    for chain, links in CHAIN_LINKS.items():
        target.backend.execute(f"UPDATE chain_heads SET appends = (SELECT count(*) FROM {links}) WHERE chain = ?",
                               [chain])
