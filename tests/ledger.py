"""Helpers for the ledger tests: the demo site, a valid choice, and posting it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from keksi import sites
from keksi.store import open_store

from .conftest import raw_sql

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = json.loads((ROOT / "sites" / "demo.json").read_text(encoding="utf-8"))
ORIGIN = "http://localhost:8000"


def add_site(app: Any, definition: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """Store a site (the demo one by default) directly."""
    site = sites.validate(dict(definition or DEMO_SITE, **changes), app.config["LANGUAGES"])
    store = open_store(app.config["DATABASE"])
    try:
        store.save_site(site, "tests", create=True)
    finally:
        store.close()
    return site


def config(client: Any, site: str = "demo", lang: str = "fi") -> dict[str, Any]:
    response = client.get(f"/api/v1/sites/{site}/config?lang={lang}", headers={"Origin": ORIGIN})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def choice(cfg: dict[str, Any], action: str = "accept_all", **changes: Any) -> dict[str, Any]:
    """A valid body for POST /api/v1/consents from a config response."""
    optional = action == "accept_all"
    body = {
        "site": cfg["site"],
        "event_id": str(uuid.uuid4()),
        "action": action,
        "choices": {c["id"]: (True if c["required"] else optional) for c in cfg["categories"]},
        "notice_version": cfg["notices"]["privacy"]["version"],
        "banner_hash": cfg["banner_hash"],
        "lang": cfg["lang"],
        "ui_surface": "banner",
        "page": "/pricing",
        "widget_version": "test",
        "gpc": False,
    }
    body.update(changes)
    return body


def post(client: Any, body: Any, origin: str | None = ORIGIN, content_type: str = "application/json",
         base_url: str | None = None, **headers: str):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    if origin is not None:
        headers["Origin"] = origin
    return client.post("/api/v1/consents", data=data, content_type=content_type, headers=headers,
                       base_url=base_url)


def count_rows(app: Any, table: str = "consents") -> int:
    return raw_sql(app, f"SELECT count(*) AS n FROM {table}")[0]["n"]


def record_some(client: Any, n: int = 3, lang: str = "en") -> list[dict[str, Any]]:
    """Post `n` choices, accepting and rejecting in turn; return the answers."""
    cfg = config(client, lang=lang)
    return [post(client, choice(cfg, "accept_all" if i % 2 == 0 else "reject_all")).get_json()
            for i in range(n)]


def tamper(app: Any, sql: str, *triggers: str) -> None:
    """Change the database as someone with write access to the file would: drop the triggers
    in the way, then run `sql`."""
    for trigger in triggers:
        raw_sql(app, drop_trigger(app, trigger))
    raw_sql(app, sql, script=True)


def drop_trigger(app: Any, trigger: str) -> str:
    """SQL that drops `trigger`: on PostgreSQL a trigger is named with its table."""
    if app.config["DATABASE"].startswith("postgresql://"):
        table = raw_sql(app, "SELECT tgrelid::regclass::text AS t FROM pg_trigger WHERE tgname = ?", [trigger])
        return f"DROP TRIGGER {trigger} ON {table[0]['t']}"
    return f"DROP TRIGGER {trigger}"


def printed(output: str, label: str) -> str:
    """The value of a line `label: value` that a command printed."""
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith(label + ": "))
