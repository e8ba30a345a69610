"""One chain from many connections: appends that first take PostgreSQL's chain head (one UPDATE ...
RETURNING), then read the last link, form one linear chain with no failed append; an event posted by
several connections at once is recorded once, because its duplicate check runs after that lock."""

from __future__ import annotations

import hashlib
import threading

from keksi.store import GENESIS_HASH, chain_hash
from tests.ledger import add_site, choice, config, count_rows, post
from tests.postgresql import connect, postgresql_backend

CONNECTIONS = 8
EVENTS = 40  # per connection: half its own, half posted by every connection at once


def _append(conn, event_id: str) -> bool:
    """Append one choice for `event_id` as the store does; whether it was new."""
    backend = postgresql_backend()
    with conn.transaction():
        backend.lock_chain(conn, "consents")
        # After the head's lock: a twin of this event that committed first is seen here.
        if conn.execute("SELECT 1 FROM consents WHERE event_id = %s", [event_id]).fetchone():
            raise _Duplicate()  # rolls back the transaction
        last = conn.execute("SELECT seq, row_hash FROM consent_chain ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        content = hashlib.sha256(event_id.encode()).hexdigest()
        row_hash = chain_hash(prev_hash, content)
        conn.execute("INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) VALUES (%s, %s, %s, %s)",
                     [seq, content, prev_hash, row_hash])
        conn.execute(
            "INSERT INTO consents (seq, consent_id, event_id, subject_id, site, action, choices, ui_surface, "
            "lang, notice_version, notice_sha256, banner_hash, gpc, recorded_at, valid_until, content_hash) "
            "VALUES (%s, %s, %s, 's', 'demo', 'accept_all', '{}', 'banner', 'fi', '2026-01-01', 'x', 'b', 0, "
            "'2026-12-02T06:00:00.000000+00:00', '2027-12-02T06:00:00.000000+00:00', %s)",
            [seq, f"c-{event_id}", event_id, content])
    return True


class _Duplicate(Exception):
    pass


def test_concurrent_appends_from_many_connections_form_one_linear_chain(fresh_postgresql):
    start = threading.Barrier(CONNECTIONS)
    created: list[str] = []
    duplicates: list[str] = []
    failures: list[BaseException] = []

    def connection(number: int) -> None:
        with connect(fresh_postgresql) as conn:
            start.wait()
            for i in range(EVENTS):
                event_id = f"own-{number}-{i}" if i % 2 else f"shared-{i}"
                try:
                    _append(conn, event_id)
                    created.append(event_id)
                except _Duplicate:
                    duplicates.append(event_id)
                except BaseException as exc:  # noqa: BLE001 - every failure is counted
                    failures.append(exc)

    threads = [threading.Thread(target=connection, args=(n,)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    shared = EVENTS // 2
    assert len(created) == CONNECTIONS * (EVENTS - shared) + shared  # every event once
    assert len(set(created)) == len(created)
    assert len(duplicates) == (CONNECTIONS - 1) * shared
    with connect(fresh_postgresql) as conn:
        links = conn.execute("SELECT seq, content_hash, prev_hash, row_hash FROM consent_chain ORDER BY seq").fetchall()
        head = conn.execute("SELECT appends FROM chain_heads WHERE chain = 'consents'").fetchone()[0]
        recorded = conn.execute("SELECT count(*) FROM consents").fetchone()[0]
    assert [seq for seq, *_ in links] == list(range(1, len(created) + 1))
    prev = GENESIS_HASH
    for seq, content, prev_hash, row_hash in links:
        assert (prev_hash, row_hash) == (prev, chain_hash(prev, content)), seq
        prev = row_hash
    assert head == len(created)  # every committed append took the head (a duplicate rolled back here)
    assert recorded == len(created)


def test_choices_posted_at_once_through_two_apps_form_one_verified_chain(fresh_postgresql, make_app):
    """Two apps ("hosts") on one database, four threads each, some events posted by every thread at
    once: no post fails, each event is recorded once (its retries get the same record), and the
    chain verifies."""
    apps = [make_app(publish=index == 0, DATABASE=fresh_postgresql, RATE_LIMIT=10_000) for index in range(2)]
    add_site(apps[0])
    cfg = config(apps[0].test_client())
    shared = [choice(cfg) for _ in range(10)]
    start = threading.Barrier(8)
    answers: list[tuple[str, int, str]] = []

    def poster(app) -> None:
        client = app.test_client()
        start.wait()
        for index in range(20):
            body = shared[index // 2] if index % 2 else choice(cfg)
            response = post(client, body)
            answers.append((body["event_id"], response.status_code, (response.get_json() or {}).get("consent_id")))

    threads = [threading.Thread(target=poster, args=(apps[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(answers) == 8 * 20 and {status for _, status, _ in answers} == {201}
    records = {event: {c for e, _, c in answers if e == event} for event, _, _ in answers}
    assert all(len(ids) == 1 for ids in records.values()), "a retry gets the record made first"
    assert count_rows(apps[1]) == len(records) == 8 * 10 + 10
    result = apps[1].test_cli_runner().invoke(args=["consents", "verify"])
    assert result.exit_code == 0 and f"{len(records)} records verified" in result.output, result.output
