"""The schema of each backend: `sqlite.py` holds SQLite's named sqlite-utils migrations;
`postgresql/` holds PostgreSQL's as ordered `.sql` files (`POSTGRESQL_DIR`)."""

from __future__ import annotations

from pathlib import Path

POSTGRESQL_DIR = Path(__file__).resolve().parent / "postgresql"
