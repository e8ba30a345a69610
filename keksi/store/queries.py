"""The queries: `Store`, every read and write Keksi makes, written once in portable SQL.

The SQL here runs unchanged on SQLite and PostgreSQL: upserts with `ON CONFLICT`, new ids with
`RETURNING`, `ON CONFLICT DO UPDATE` sets that name their table (`consent_daily.n + 1`), select
lists without two columns of one name, and no function only one database has. Placeholders are
written `?` (qmark) and values passed as a list; a backend whose driver wants another style
rewrites the `?` outside string literals before running the statement (no query here puts a `?`
inside a literal).

Everything that depends on the database goes through `self.backend` (`keksi.store.sqlite`, or a
PostgreSQL backend with the same methods): `query`/`iterate` (rows as dicts), `execute`
(a write's row count), `executemany`, `transaction()` (a write transaction; nested calls join the
outer one; busy and unavailable databases raise `StoreBusy`/`StoreUnavailable`), `lock_chain`
(serialises appends to one chain inside the transaction, then runs a read), `batch()` (writes sent
together; on PostgreSQL one round trip), `IntegrityError`, `Error`, migrations, backup, integrity
check, for copies (`keksi.store.copy`) `tables`, `insert_many` and `follow_copied_ids`, and for the
benchmarks (`bench/`) `bulk_load`, `checkpoint`, `size`, `space_by_object`, `json_flag`, `explain`,
`index_held` and `version`.
"""

from __future__ import annotations

import collections
import hashlib
import json
from typing import Any, Callable, Iterable, Iterator

from ..clock import utc_text
from .chain import GENESIS_HASH, Counts, audit_content_hash, chain_hash, removal_digest, seq_ranges
from .errors import LastAdmin, StoreError, StoreUnavailable


# Records out of force before the cutoff (given twice). `|| ''` and `+ 0` keep SQLite on the
# subject index: given the (site, seq) index instead, it scanned every later record of the site
# for each record (100k records: over 15 minutes instead of 1 s).
PURGE_WHERE = ("c.valid_until < ? OR EXISTS (SELECT 1 FROM consents n WHERE n.subject_id = c.subject_id "
               "AND n.site || '' = c.site AND n.seq + 0 > c.seq AND n.recorded_at < ?)")

# What an append reads once it holds the chain's lock, in one statement: the seq of a record
# already stored for the event (a retry), the time of the last record, and the chain's last link.
APPEND_READ = ("SELECT (SELECT seq FROM consents WHERE event_id = ?) AS stored_seq, "
               "(SELECT recorded_at FROM consents ORDER BY seq DESC LIMIT 1) AS last_recorded_at, "
               "(SELECT seq FROM consent_chain ORDER BY seq DESC LIMIT 1) AS last_seq, "
               "(SELECT row_hash FROM consent_chain ORDER BY seq DESC LIMIT 1) AS last_hash")

# The columns of a consent record, in the table's order; a query joining consents to other
# tables names them rather than `c.*`, so no two columns of a row share a name.
CONSENT_COLUMNS = (
    "seq", "consent_id", "event_id", "subject_id", "site", "action", "choices", "ui_surface", "lang",
    "page", "notice_slug", "notice_version", "notice_sha256", "banner_hash", "widget_version", "ip",
    "user_agent", "gpc", "recorded_at", "valid_until", "content_hash", "cookie_notice_slug",
    "cookie_notice_version", "cookie_notice_sha256", "origin")


def insert_statement(table: str, columns: Iterable[str]) -> str:
    """An INSERT of one row of `columns` into `table`, with a `?` for each value."""
    columns = list(columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class Store:
    """Keksi's data, as plain dicts, on one backend connection; not thread-safe."""

    def __init__(self, backend: Any):
        self.backend = backend

    @property
    def read_only(self) -> bool:
        """Whether the database could only be opened for reading (writes raise StoreUnavailable)."""
        return self.backend.read_only

    def close(self) -> None:
        self.backend.close()

    # -- schema and copies ------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; return their names."""
        return self.backend.migrate()

    def applied_migrations(self) -> list[str]:
        return self.backend.applied_migrations()

    def pending_migrations(self) -> list[str]:
        return self.backend.pending_migrations()

    def backup(self, destination: str) -> None:
        """A consistent copy of the live database at `destination`, taken while writes go on."""
        self.backend.backup(destination)

    def integrity_check(self) -> str:
        return self.backend.integrity_check()

    def compact(self) -> None:
        """Leave no removed record in the database's files (README, "What erasure leaves"): SQLite
        empties its write-ahead log; PostgreSQL rewrites the consents table and its indexes, locking
        it meanwhile. StoreBusy when readers kept it from doing so."""
        self.backend.compact()

    # -- notices ----------------------------------------------------------

    _NOTICE_META = "slug, version, lang, title, summary, material, sha256, published_at, published_by"

    def notice_versions(self, slug: str | None = None, lang: str | None = None) -> list[dict[str, Any]]:
        """Published versions (without their text), oldest first."""
        where, params = _where(("slug = ?", slug), ("lang = ?", lang))
        sql = f"SELECT {self._NOTICE_META} FROM notice_versions{where} ORDER BY slug, version, lang"
        return self._query(sql, params)

    def notice_version(self, slug: str, version: str, lang: str) -> dict[str, Any] | None:
        """One published version with its text, or None."""
        return self._one("SELECT * FROM notice_versions WHERE slug = ? AND version = ? AND lang = ?",
                         [slug, version, lang])

    def publish_notice_versions(self, rows: list[dict[str, Any]], actor: str,
                                reason: str | None = None) -> None:
        """Store each language of new versions at once: all rows or none. The audit log keeps
        `reason` (why legal published) beside each language's SHA-256."""
        now = utc_text()
        try:
            with self._write():
                for row in rows:
                    self._insert("notice_versions", dict(row, published_at=now, published_by=actor))
                    detail = {"sha256": row["sha256"], "material": bool(row["material"])}
                    if reason:
                        detail["reason"] = reason
                    self._audit(now, actor, "notice.publish",
                                f"{row['slug']}/{row['version']}.{row['lang']}", detail)
                self._changed("notices")
        except self.backend.IntegrityError as exc:
            raise StoreError(f"a version was already published: {exc}", code="version_exists") from exc

    # -- sites ------------------------------------------------------------

    def site_texts(self) -> list[tuple[str, str]]:
        """Every site's id and stored definition text, as saved."""
        return [(row["id"], row["definition"]) for row in self._query("SELECT id, definition FROM sites ORDER BY id")]

    def sites(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT definition FROM sites ORDER BY id")
        return [json.loads(row["definition"]) for row in rows]

    def site(self, site_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT definition FROM sites WHERE id = ?", [site_id])
        return json.loads(row["definition"]) if row else None

    def save_site(self, definition: dict[str, Any], actor: str, *, create: bool) -> None:
        """Add a new site (`create=True`) or replace an existing one's definition."""
        now = utc_text()
        site_id = definition["id"]
        with self._write():
            exists = bool(self._query("SELECT 1 AS found FROM sites WHERE id = ?", [site_id]))
            if create and exists:
                raise StoreError(f"a site with id {site_id!r} already exists", code="site_exists", site=site_id)
            if not create and not exists:
                raise StoreError(f"there is no site with id {site_id!r}", code="no_site", site=site_id)
            text = json.dumps(definition, ensure_ascii=False, sort_keys=True)
            if create:
                self._insert("sites", {"id": site_id, "name": definition["name"], "definition": text,
                                       "created_at": now, "updated_at": now})
            else:
                self.backend.execute("UPDATE sites SET name = ?, definition = ?, updated_at = ? WHERE id = ?",
                                     [definition["name"], text, now, site_id])
            self._audit(now, actor, "site.add" if create else "site.edit", site_id,
                        {"sha256": hashlib.sha256(text.encode()).hexdigest()})
            self._changed("sites")

    def remove_site(self, site_id: str, actor: str) -> None:
        with self._write():
            if not self._query("SELECT 1 AS found FROM sites WHERE id = ?", [site_id]):
                raise StoreError(f"there is no site with id {site_id!r}", code="no_site", site=site_id)
            if self._query("SELECT 1 AS found FROM consents WHERE site = ? LIMIT 1", [site_id]):
                raise StoreError(f"site {site_id!r} has recorded consents, which are proof that must be "
                                 "kept; remove its origins instead to stop it collecting new ones",
                                 code="site_has_consents", site=site_id)
            self.backend.execute("DELETE FROM sites WHERE id = ?", [site_id])
            self._audit(utc_text(), actor, "site.remove", site_id, None)
            self._changed("sites")

    # -- banner versions ----------------------------------------------------

    def remember_banner(self, banner_hash: str, site: str, lang: str, content: str) -> None:
        """Store a banner version the first time it is served."""
        if self._query("SELECT 1 AS found FROM banner_versions WHERE hash = ?", [banner_hash]):
            return
        with self._write():
            self.backend.execute(
                "INSERT INTO banner_versions (hash, site, lang, content, first_served_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", [banner_hash, site, lang, content, utc_text()])

    def notice_version_hash(self, slug: str, version: str, lang: str) -> str | None:
        """A published version's SHA-256, without its text."""
        row = self._one("SELECT sha256 FROM notice_versions WHERE slug = ? AND version = ? AND lang = ?",
                        [slug, version, lang])
        return row["sha256"] if row else None

    def banner_version(self, banner_hash: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM banner_versions WHERE hash = ?", [banner_hash])

    def banner_versions(self, site: str | None = None) -> list[dict[str, Any]]:
        """Every banner version (of one site), newest first, without its content."""
        clause, params = _where(("site = ?", site))
        return self._query("SELECT hash, site, lang, first_served_at FROM banner_versions"
                           f"{clause} ORDER BY first_served_at DESC, hash", params)

    # -- widget builds --------------------------------------------------------

    def remember_widget_build(self, version: str, script: str, file: str = "consent.js") -> None:
        """Keep a build of the widget's `file` (consent.js or signals.js) the first time it is served;
        a version is kept only once."""
        if self._query("SELECT 1 AS found FROM widget_builds WHERE version = ?", [version]):
            return
        with self._write():
            self.backend.execute(
                "INSERT INTO widget_builds (version, sha256, script, first_served_at, file) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [version, hashlib.sha256(script.encode("utf-8")).hexdigest(), script, utc_text(), file])

    def widget_build(self, version: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM widget_builds WHERE version = ?", [version])

    def iter_widget_builds(self) -> Iterator[dict[str, Any]]:
        """Every widget build kept, with its script."""
        return self.backend.iterate("SELECT * FROM widget_builds ORDER BY version")

    def widget_builds(self) -> list[dict[str, Any]]:
        """Every widget build kept, newest first, with its size in bytes instead of its script."""
        # The size is counted here: SQLite and PostgreSQL count bytes of text with different functions.
        rows = self._query("SELECT version, sha256, script, first_served_at, file FROM widget_builds "
                           "ORDER BY first_served_at DESC")
        return [{"version": row["version"], "sha256": row["sha256"], "size": len(row["script"].encode("utf-8")),
                 "first_served_at": row["first_served_at"], "file": row["file"]} for row in rows]

    # -- consents -----------------------------------------------------------

    def consent_by_event(self, event_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM consents WHERE event_id = ?", [event_id])

    def consent(self, consent_id: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM consents WHERE consent_id = ?", [consent_id])

    def subject_known(self, subject_id: str) -> bool:
        """Whether this server issued `subject_id` and still holds a choice under it."""
        return bool(self._query("SELECT 1 AS found FROM consents WHERE subject_id = ? LIMIT 1", [subject_id]))

    def append_consent(self, event_id: str,
                       build: Callable[[str | None], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
        """Append one choice and its chain link, committed before returning.

        `build(last_recorded_at)` makes the record under the chain's lock, so that records are
        chained in the order of their times (verify reports any that are not). Returns (row,
        created). A record whose event_id is already stored is not written again: the stored
        row comes back with created=False (checked after the lock, so two posts of one event
        cannot both pass).
        """
        # One batch: on PostgreSQL the lock and the reads after it are one round trip, the writes
        # and the COMMIT one more, so the chain's lock is held for two round trips and the commit.
        with self.backend.batch(), self._write():
            end = self.backend.lock_chain("consents", APPEND_READ, [event_id])[0]
            if end["stored_seq"] is not None:
                return self.consent_by_event(event_id), False
            record = build(end["last_recorded_at"])
            seq, prev_hash = _next_link(end["last_seq"], end["last_hash"])
            self._insert_chain_link(seq, prev_hash, record["content_hash"])
            row = dict(record, seq=seq)
            day = row.pop("day")
            self._insert("consents", row)
            self._count(row["site"], day, row["action"], json.loads(row["choices"]))
        return row, True

    def _count(self, site: str, day: str, action: str, choices: dict[str, bool]) -> None:
        self.backend.execute(
            "INSERT INTO consent_daily (site, day, action, n) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (site, day, action) DO UPDATE SET n = consent_daily.n + 1", [site, day, action])
        # One statement for every category (no round trip each): the categories are distinct, so no
        # row is upserted twice by it.
        rows = [(site, day, category, int(granted)) for category, granted in choices.items()]
        if not rows:
            return
        self.backend.execute(
            "INSERT INTO consent_daily_categories (site, day, category, granted, total) "
            f"VALUES {', '.join(['(?, ?, ?, ?, 1)'] * len(rows))} ON CONFLICT (site, day, category) DO UPDATE SET "
            "granted = consent_daily_categories.granted + excluded.granted, "
            "total = consent_daily_categories.total + 1",
            [value for row in rows for value in row])

    def daily_actions(self, site: str, first_day: str, last_day: str) -> list[dict[str, Any]]:
        """Choices per day and action, days in KEKSI_TIMEZONE, both ends included."""
        return self._query(
            "SELECT day, action, n FROM consent_daily WHERE site = ? AND day BETWEEN ? AND ? "
            "ORDER BY day, action", [site, first_day, last_day])

    def daily_categories(self, site: str, first_day: str, last_day: str) -> list[dict[str, Any]]:
        """Per day and category: how many choices granted it, out of how many."""
        return self._query(
            "SELECT day, category, granted, total FROM consent_daily_categories "
            "WHERE site = ? AND day BETWEEN ? AND ? ORDER BY day, category", [site, first_day, last_day])

    def later_consent(self, site: str, subject_id: str, seq: int) -> dict[str, Any] | None:
        """The subject's next choice on the site after `seq`, if any."""
        return self._one(
            "SELECT * FROM consents WHERE site = ? AND subject_id = ? AND seq > ? ORDER BY seq LIMIT 1",
            [site, subject_id, seq])

    def _consent_filter(self, site: str | None, since: str | None, until: str | None) -> tuple[str, list]:
        return _where(("site = ?", site), ("recorded_at >= ?", since), ("recorded_at < ?", until))

    def count_consents(self, site: str | None = None, since: str | None = None,
                       until: str | None = None) -> int:
        where, params = self._consent_filter(site, since, until)
        return self._query(f"SELECT count(*) AS n FROM consents{where}", params)[0]["n"]

    def iter_consents(self, site: str | None = None, since: str | None = None,
                      until: str | None = None, batch: int = 2000) -> Iterator[dict[str, Any]]:
        """Consents in recording order, read in batches so memory stays flat."""
        where, params = self._consent_filter(site, since, until)
        return self.backend.iterate(f"SELECT * FROM consents{where} ORDER BY seq", params, batch)

    def iter_chain(self, batch: int = 5000) -> Iterator[dict[str, Any]]:
        """Every chain link with its consent (None once removed) and removal record."""
        consent = ", ".join(f"c.{column}" for column in CONSENT_COLUMNS if column != "seq")
        return self.backend.iterate(
            "SELECT ch.seq, ch.content_hash AS chain_content_hash, ch.prev_hash, ch.row_hash, "
            f"r.reason AS removed, l.reason AS link_reason, l.removed_at AS link_removed_at, {consent} "
            "FROM consent_chain ch "
            "LEFT JOIN consents c ON c.seq = ch.seq LEFT JOIN consent_removals r ON r.seq = ch.seq "
            "LEFT JOIN removal_links l ON l.seq = ch.seq ORDER BY ch.seq", (), batch)

    def removal_ranges(self, link_seq: int | None = None) -> Iterator[tuple[int, int, int]]:
        """(first, last, link_seq) of the removed ranges, of one removal link or of all, by first."""
        where, params = _where(("link_seq = ?", link_seq))
        rows = self.backend.iterate(f"SELECT first, last, link_seq FROM removal_ranges{where} ORDER BY first",
                                    params)
        return ((row["first"], row["last"], row["link_seq"]) for row in rows)

    def removal_extent(self, link_seq: int) -> tuple[int, int | None]:
        """How many ranges a removal link lists, and the last record it lists."""
        row = self._query("SELECT count(*) AS n, max(last) AS last FROM removal_ranges WHERE link_seq = ?",
                          [link_seq])[0]
        return row["n"], row["last"]

    def removal_counts(self, link_seq: int) -> Counts:
        """What one removal link took out of the daily figures: (actions, categories)."""
        return (self._tuples("SELECT site, day, action, n FROM removal_counts WHERE link_seq = ?", [link_seq]),
                self._tuples("SELECT site, day, category, granted, total FROM removal_category_counts "
                             "WHERE link_seq = ?", [link_seq]))

    def stray_removal_rows(self) -> list[int]:
        """Removal rows (ranges, counts or links) that belong to no removal link of the chain: the
        first records their ranges claim, or their link's seq."""
        chained = ("(SELECT 1 FROM removal_links l JOIN consent_chain ch ON ch.seq = l.seq "
                   "WHERE l.seq = {}.link_seq)")
        rows = self._query(
            f"SELECT first AS seq FROM removal_ranges r WHERE NOT EXISTS {chained.format('r')} UNION "
            f"SELECT link_seq FROM removal_counts n WHERE NOT EXISTS {chained.format('n')} UNION "
            f"SELECT link_seq FROM removal_category_counts k WHERE NOT EXISTS {chained.format('k')} UNION "
            "SELECT seq FROM removal_links l WHERE NOT EXISTS (SELECT 1 FROM consent_chain ch WHERE ch.seq = l.seq) "
            "ORDER BY 1 LIMIT 10")
        return [row["seq"] for row in rows]

    def uncounted_removals(self) -> tuple[int, str | None]:
        """Removal links made before removals were counted (migration 0008): how many, and when
        the last of them was made."""
        row = self._query(
            "SELECT count(*) AS n, max(removed_at) AS last FROM removal_links l WHERE NOT EXISTS "
            "(SELECT 1 FROM removal_counts n WHERE n.link_seq = l.seq)")[0]
        return row["n"], row["last"]

    def figure_rows(self) -> dict[str, list[tuple]]:
        """Every daily figure as kept, and every count removals took out of them."""
        return {
            "actions": self._tuples("SELECT site, day, action, n FROM consent_daily"),
            "categories": self._tuples("SELECT site, day, category, granted, total FROM consent_daily_categories"),
            "removed_actions": self._tuples("SELECT site, day, action, n FROM removal_counts"),
            "removed_categories": self._tuples(
                "SELECT site, day, category, granted, total FROM removal_category_counts"),
        }

    def iter_notice_texts(self) -> Iterator[dict[str, Any]]:
        """Every published notice version with its text."""
        return self.backend.iterate("SELECT * FROM notice_versions ORDER BY slug, version, lang")

    def iter_banners(self) -> Iterator[dict[str, Any]]:
        return self.backend.iterate("SELECT * FROM banner_versions ORDER BY hash")

    def records_without_their_texts(self) -> list[int]:
        """Records whose notice version, cookie notice version or banner is no longer stored under
        the SHA-256 the record holds (a text replaced together with its hash)."""
        rows = self._query(
            "SELECT c.seq FROM consents c "
            "LEFT JOIN notice_versions n ON n.slug = c.notice_slug AND n.version = c.notice_version "
            "AND n.lang = c.lang "
            "LEFT JOIN notice_versions k ON k.slug = c.cookie_notice_slug AND k.version = c.cookie_notice_version "
            "AND k.lang = c.lang "
            "LEFT JOIN banner_versions b ON b.hash = c.banner_hash "
            "WHERE n.sha256 IS DISTINCT FROM c.notice_sha256 OR b.hash IS NULL "
            "OR (c.cookie_notice_version IS NOT NULL AND k.sha256 IS DISTINCT FROM c.cookie_notice_sha256) "
            "ORDER BY c.seq LIMIT 10")
        return [row["seq"] for row in rows]

    def removal_links(self, after_seq: int = 0) -> list[dict[str, Any]]:
        """The erasures and purges chained after link `after_seq`, with how many records each removed."""
        return self._query(
            "SELECT l.seq, l.reason, l.removed_at, sum(r.last - r.first + 1) AS records FROM removal_links l "
            "JOIN removal_ranges r ON r.link_seq = l.seq WHERE l.seq > ? "
            "GROUP BY l.seq, l.reason, l.removed_at ORDER BY l.seq", [after_seq])

    def orphan_consents(self) -> list[int]:
        """Consent rows with no chain link of their own (none, or a removal's): inserted around the store."""
        rows = self._query("SELECT c.seq FROM consents c LEFT JOIN consent_chain ch ON ch.seq = c.seq "
                           "WHERE ch.seq IS NULL OR EXISTS (SELECT 1 FROM removal_links l WHERE l.seq = c.seq) "
                           "ORDER BY c.seq LIMIT 10")
        return [row["seq"] for row in rows]

    def remove_consents(self, where: str, params: list[Any], reason: str, actor: str,
                        day_of: Callable[[str], str]) -> int:
        """Delete the content of the consents `c` matching `where`, keeping their chain links; chain
        the removal with what it took out of the daily figures (`day_of` gives a recorded_at's
        day there); audit it without personal data."""
        now = utc_text()
        with self._write():
            self.backend.lock_chain("consents")
            rows = self._query("SELECT seq, site, action, choices, recorded_at FROM consents c "
                               f"WHERE {where} ORDER BY seq", params)
            seqs = [row["seq"] for row in rows]
            for start in range(0, len(seqs), 500):
                chunk = seqs[start:start + 500]
                self.backend.executemany("INSERT INTO consent_removals (seq, reason, removed_at) VALUES (?, ?, ?)",
                                         [(seq, reason, now) for seq in chunk])
                self.backend.execute(f"DELETE FROM consents WHERE seq IN ({', '.join('?' * len(chunk))})", chunk)
            self._append_removal_link(reason, now, seqs, _tally(rows, day_of))
            self._audit(now, actor, f"consents.{reason}", f"{len(seqs)} records", {"rows": len(seqs)})
            if reason == "purge":
                self.backend.execute("UPDATE maintenance SET last_run_at = ?, last_count = ?, claimed_until = NULL "
                                     "WHERE task = 'purge'", [now, len(seqs)])
        if seqs:
            self.backend.clear_removed()
        return len(seqs)

    def subject_summary(self, subject_id: str) -> dict[str, Any]:
        """How many records one visitor has, on which sites, first and last: what an erasure would remove."""
        row = self._query("SELECT count(*) AS records, min(recorded_at) AS first, max(recorded_at) AS last "
                          "FROM consents WHERE subject_id = ?", [subject_id])[0]
        sites = self._query("SELECT DISTINCT site FROM consents WHERE subject_id = ? ORDER BY site", [subject_id])
        return dict(row, sites=[site["site"] for site in sites])

    def erase_subject(self, subject_id: str, actor: str, day_of: Callable[[str], str]) -> int:
        return self.remove_consents("c.subject_id = ?", [subject_id], "erase", actor, day_of)

    def purge_ended(self, before: str, actor: str, day_of: Callable[[str], str]) -> int:
        """Remove the records that stopped being in force before `before`: expired, or replaced or
        withdrawn by the same subject's next record on the same site. Marks the purge as run."""
        return self.remove_consents(PURGE_WHERE, [before, before], "purge", actor, day_of)

    # -- the consent chain's links ------------------------------------------------

    def _chain_end(self) -> tuple[int, str]:
        """The seq the next link takes, and the row hash it links to."""
        last = self._one("SELECT seq, row_hash FROM consent_chain ORDER BY seq DESC LIMIT 1") or {}
        return _next_link(last.get("seq"), last.get("row_hash"))

    def _insert_chain_link(self, seq: int, prev_hash: str, content: str) -> None:
        self.backend.execute("INSERT INTO consent_chain (seq, content_hash, prev_hash, row_hash) VALUES (?, ?, ?, ?)",
                             [seq, content, prev_hash, chain_hash(prev_hash, content)])

    def _append_removal_link(self, reason: str, removed_at: str, seqs: Iterable[int], counts: Counts) -> None:
        """Chain a removal of `seqs` (ascending) and what it took out of the daily figures, inside the
        caller's transaction; no seqs, no link."""
        link_seq, prev_hash = self._chain_end()
        ranges = list(seq_ranges(seqs))
        if not ranges:
            return
        self.backend.executemany("INSERT INTO removal_ranges (first, last, link_seq) VALUES (?, ?, ?)",
                                 [(first, last, link_seq) for first, last in ranges])
        self.backend.executemany("INSERT INTO removal_counts (link_seq, site, day, action, n) VALUES (?, ?, ?, ?, ?)",
                                 [(link_seq, *row) for row in counts[0]])
        self.backend.executemany("INSERT INTO removal_category_counts (link_seq, site, day, category, granted, total) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", [(link_seq, *row) for row in counts[1]])
        self._insert_chain_link(link_seq, prev_hash, removal_digest(reason, removed_at, ranges, counts))
        self.backend.execute("INSERT INTO removal_links (seq, reason, removed_at, ranges) VALUES (?, ?, ?, ?)",
                             [link_seq, reason, removed_at, len(ranges)])

    # -- scheduled maintenance (keksi.retention) ------------------------------

    def claim_task(self, task: str, now: str, due_before: str, claim_until: str) -> bool:
        """Claim `task` for this process if its last run ended before `due_before` and nobody holds
        an unexpired claim: at most one worker of one host runs it at a time."""
        with self._write():
            return self.backend.execute(
                "UPDATE maintenance SET claimed_until = ? WHERE task = ? AND (last_run_at IS NULL "
                "OR last_run_at < ?) AND (claimed_until IS NULL OR claimed_until < ?)",
                [claim_until, task, due_before, now]) == 1

    def release_task(self, task: str) -> None:
        """Give up a claim after a failed run, so the next check may try again."""
        with self._write():
            self.backend.execute("UPDATE maintenance SET claimed_until = NULL WHERE task = ?", [task])

    def task_status(self, task: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM maintenance WHERE task = ?", [task])

    # -- site audit jobs (keksi.scanjobs) ------------------------------------------------------
    # The claim is one UPDATE … WHERE id = (SELECT …) AND state = 'queued' RETURNING, so two workers
    # (threads, processes or hosts) never both get a scan: the second finds it no longer queued
    # (SQLite serialises writers; PostgreSQL re-checks the row after the first commits).

    def add_scan(self, site: str, requested_by: str, options: dict[str, Any]) -> int:
        """Queue a scan of `site`; audited."""
        now = utc_text()
        with self._write():
            scan_id = self._insert("scans", {"site": site, "requested_by": requested_by, "requested_at": now,
                                             "options": json.dumps(options, sort_keys=True), "state": "queued"},
                                   returning="id")
            self._audit(now, requested_by, "scan.start", site, {"scan": scan_id, **options})
        return scan_id

    def claim_scan(self, worker: str, now: str) -> dict[str, Any] | None:
        """The oldest queued scan, now running for `worker`; None when none is queued."""
        with self._write():
            row = self._one(
                "UPDATE scans SET state = 'running', worker = ?, started_at = ?, seen_at = ?, "
                "attempts = attempts + 1, progress = NULL WHERE id = (SELECT id FROM scans "
                "WHERE state = 'queued' ORDER BY id LIMIT 1) AND state = 'queued' RETURNING *",
                [worker, now, now])
        return _scan_row(row) if row else None

    def scan_progress(self, scan_id: int, worker: str, progress: dict[str, Any], now: str) -> bool:
        """Note a running scan's progress; False when the scan is no longer this worker's."""
        return self._scan_update("progress = ?, seen_at = ?", [json.dumps(progress), now], scan_id, worker)

    def finish_scan(self, scan_id: int, worker: str, result: dict[str, Any], now: str) -> bool:
        return self._scan_update("state = 'done', result = ?, findings = ?, finished_at = ?, seen_at = ?",
                                 [json.dumps(result, ensure_ascii=False),
                                  json.dumps(result["findings"], ensure_ascii=False), now, now], scan_id, worker)

    def fail_scan(self, scan_id: int, worker: str, error: str, now: str) -> bool:
        return self._scan_update("state = 'failed', error = ?, finished_at = ?, seen_at = ?",
                                 [error, now, now], scan_id, worker)

    def requeue_scan(self, scan_id: int, worker: str) -> bool:
        """Give a scan back (its worker is stopping): another worker runs it from the start."""
        return self._scan_update("state = 'queued', worker = NULL, attempts = attempts - 1, progress = NULL",
                                 [], scan_id, worker)

    def _scan_update(self, assignments: str, params: list[Any], scan_id: int, worker: str) -> bool:
        with self._write():
            return self.backend.execute(f"UPDATE scans SET {assignments} WHERE id = ? AND worker = ? "
                                        "AND state = 'running'", [*params, scan_id, worker]) == 1

    def recover_scans(self, seen_before: str, now: str, error: str) -> tuple[int, int]:
        """Scans running without a sign of life since `seen_before` (their worker died): each is
        queued again once, then failed with `error`. Returns (queued again, failed)."""
        with self._write():
            stale = "state = 'running' AND seen_at < ?"
            failed = self.backend.execute(f"UPDATE scans SET state = 'failed', error = ?, finished_at = ? "
                                          f"WHERE {stale} AND attempts >= 2", [error, now, seen_before])
            queued = self.backend.execute(f"UPDATE scans SET state = 'queued', worker = NULL, progress = NULL "
                                          f"WHERE {stale}", [seen_before])
        return queued, failed

    def scan(self, scan_id: int) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM scans WHERE id = ?", [scan_id])
        return _scan_row(row) if row else None

    def site_scans(self, site: str, limit: int = 50) -> list[dict[str, Any]]:
        """A site's scans, newest first, with their findings (`result`, every page's observations
        too, is read only by `scan`)."""
        return [_scan_row(row) for row in self._query(
            f"SELECT {SCAN_SUMMARY} FROM scans WHERE site = ? ORDER BY id DESC LIMIT ?", [site, limit])]

    def previous_scan(self, site: str, scan_id: int) -> dict[str, Any] | None:
        """The last finished scan of `site` before `scan_id` (with its findings, without `result`):
        what a scan is compared with."""
        row = self._one(f"SELECT {SCAN_SUMMARY} FROM scans WHERE site = ? AND id < ? AND state = 'done' "
                        "ORDER BY id DESC LIMIT 1", [site, scan_id])
        return _scan_row(row) if row else None

    # -- notices: withdrawing an upcoming version --------------------------

    def withdraw_notice_version(self, slug: str, version: str, actor: str, today: str,
                                reason: str | None = None) -> int:
        """Delete every language of a version that has not taken effect; audit it with `reason`."""
        if version <= today:
            raise StoreError("a version that has taken effect can never be withdrawn", code="version_in_effect",
                             version=version)
        now = utc_text()
        with self._write():
            rows = self._query("SELECT lang, sha256 FROM notice_versions WHERE slug = ? AND version = ?",
                               [slug, version])
            if not rows:
                raise StoreError(f"there is no published version {version} of {slug!r}", code="no_version",
                                 slug=slug, version=version)
            self.backend.execute("DELETE FROM notice_versions WHERE slug = ? AND version = ?", [slug, version])
            detail: dict[str, Any] = {row["lang"]: row["sha256"] for row in rows}
            if reason:
                detail["reason"] = reason
            self._audit(now, actor, "notice.withdraw", f"{slug}/{version}", detail)
            self._changed("notices")
        return len(rows)

    # -- users ----------------------------------------------------------------

    def users(self) -> list[dict[str, Any]]:
        return [_user(r) for r in self._query("SELECT * FROM users ORDER BY email")]

    def user(self, user_id: int) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM users WHERE id = ?", [user_id])
        return _user(row) if row else None

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM users WHERE email = ?", [email.strip().lower()])
        return _user(row) if row else None

    def add_user(self, email: str, roles: list[str], password_hash: str | None, actor: str) -> int:
        now = utc_text()
        with self._write():
            if self._query("SELECT 1 AS found FROM users WHERE email = ?", [email]):
                raise StoreError(f"a user with the email {email} already exists", code="user_exists", email=email)
            user_id = self._insert("users", {
                "email": email, "password_hash": password_hash, "roles": ",".join(sorted(roles)),
                "created_at": now, "created_by": actor, "disabled": 0}, returning="id")
            self._audit(now, actor, "user.add", email, {"roles": sorted(roles)})
        return user_id

    def set_password(self, user_id: int, password_hash: str, actor: str) -> None:
        """A new password ends every session of the user (signed in with the old one)."""
        with self._write():
            self.backend.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user_id])
            self._end_user_sessions(user_id)
            self._audit(utc_text(), actor, "user.password", str(user_id), None)

    def set_user_disabled(self, user_id: int, disabled: bool, actor: str) -> dict[str, Any]:
        """Disable (ending every session) or re-enable a user; never the last admin."""
        with self._write():
            user = self._user_or_error(user_id)
            if disabled:
                self._keep_an_admin(user_id)
                self._end_user_sessions(user_id)
            self.backend.execute("UPDATE users SET disabled = ? WHERE id = ?", [int(disabled), user_id])
            self._audit(utc_text(), actor, "user.disable" if disabled else "user.enable", user["email"], None)
        return user

    def set_user_roles(self, user_id: int, roles: list[str], actor: str) -> dict[str, Any]:
        """Give a user new roles, ending their sessions; the last admin keeps the admin role."""
        with self._write():
            user = self._user_or_error(user_id)
            if "admin" not in roles:
                self._keep_an_admin(user_id)
            self.backend.execute("UPDATE users SET roles = ? WHERE id = ?", [",".join(sorted(roles)), user_id])
            self._end_user_sessions(user_id)
            self._audit(utc_text(), actor, "user.roles", user["email"],
                        {"before": user["roles"], "after": sorted(roles)})
        return user

    def remove_user(self, user_id: int, actor: str) -> dict[str, Any]:
        """Remove a user, their sessions and unused links; never the last admin."""
        with self._write():
            user = self._user_or_error(user_id)
            self._keep_an_admin(user_id)
            self._end_user_sessions(user_id)
            self.backend.execute("DELETE FROM password_tokens WHERE user_id = ?", [user_id])
            self.backend.execute("DELETE FROM users WHERE id = ?", [user_id])
            self._audit(utc_text(), actor, "user.remove", user["email"], {"roles": user["roles"]})
        return user

    def _user_or_error(self, user_id: int) -> dict[str, Any]:
        user = self.user(user_id)
        if user is None:
            raise StoreError(f"there is no user {user_id}", code="no_user", user=user_id)
        return user

    def _keep_an_admin(self, user_id: int) -> None:
        """Refuse a change that takes `user_id` away from the admins who can sign in, if it is the last."""
        others = self._query(
            "SELECT 1 AS found FROM users WHERE id != ? AND disabled = 0 AND password_hash IS NOT NULL "
            "AND ',' || roles || ',' LIKE '%,admin,%' LIMIT 1", [user_id])
        target = self.user(user_id)
        if not others and target and "admin" in target["roles"] and not target["disabled"]:
            raise LastAdmin("the last enabled admin cannot be removed, disabled or lose the admin role",
                            code="last_admin")

    # -- admin sessions -----------------------------------------------------

    def add_session(self, token_hash: str, user_id: int, now: str, forget_before: str) -> None:
        """Start a session; forget every session created before `forget_before` (past any lifetime)."""
        with self._write():
            self.backend.execute("DELETE FROM admin_sessions WHERE created_at < ?", [forget_before])
            self._insert("admin_sessions",
                         {"token_hash": token_hash, "user_id": user_id, "created_at": now, "seen_at": now})

    def session(self, token_hash: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM admin_sessions WHERE token_hash = ?", [token_hash])

    def touch_session(self, token_hash: str, now: str) -> None:
        with self._write():
            self.backend.execute("UPDATE admin_sessions SET seen_at = ? WHERE token_hash = ?", [now, token_hash])

    def end_session(self, token_hash: str) -> None:
        with self._write():
            self.backend.execute("DELETE FROM admin_sessions WHERE token_hash = ?", [token_hash])

    def user_sessions(self, user_id: int) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM admin_sessions WHERE user_id = ? ORDER BY seen_at DESC", [user_id])

    def end_other_sessions(self, user_id: int, keep_hash: str, actor: str) -> int:
        """End every session of the user but the one whose hash is `keep_hash`; audit the count."""
        with self._write():
            ended = self.backend.execute("DELETE FROM admin_sessions WHERE user_id = ? AND token_hash != ?",
                                         [user_id, keep_hash])
            self._audit(utc_text(), actor, "user.sessions_ended", actor, {"sessions": ended})
        return ended

    def _end_user_sessions(self, user_id: int) -> None:
        self.backend.execute("DELETE FROM admin_sessions WHERE user_id = ?", [user_id])

    def add_password_token(self, token_hash: str, user_id: int, expires_at: str) -> None:
        with self._write():
            self._insert("password_tokens", {"token_hash": token_hash, "user_id": user_id,
                                             "expires_at": expires_at, "used_at": None})

    def use_password_token(self, token_hash: str, now: str) -> int | None:
        """Mark a valid token used and return its user id; None if unknown, used or expired."""
        with self._write():
            user_id = self.password_token_user(token_hash, now)
            if user_id is not None:
                self.backend.execute("UPDATE password_tokens SET used_at = ? WHERE token_hash = ?", [now, token_hash])
            return user_id

    def password_token_user(self, token_hash: str, now: str) -> int | None:
        row = self._one("SELECT user_id FROM password_tokens WHERE token_hash = ? "
                        "AND used_at IS NULL AND expires_at > ?", [token_hash, now])
        return row["user_id"] if row else None

    # -- sign-in throttling -------------------------------------------------

    def record_login_failure(self, keys: list[str], now: str, forget_before: str) -> list[int]:
        """Count a failed sign-in against each key; the new rows' ids, in one block later tries follow."""
        with self._write():
            ids = [self._insert("login_failures", {"key": key, "at": now}, returning="id") for key in keys]
            self.backend.execute("DELETE FROM login_failures WHERE at < ?", [forget_before])
        return ids

    def login_failures(self, key: str, since: str, before: int | None = None) -> list[str]:
        """Times of the key's failed logins since `since` (recorded before row `before`), oldest first."""
        return [r["at"] for r in self._query(
            "SELECT at FROM login_failures WHERE key = ? AND at >= ? AND id < ? ORDER BY at",
            [key, since, before if before is not None else 2 ** 63 - 1])]

    def clear_login_failures(self, keys: list[str]) -> None:
        with self._write():
            self.backend.executemany("DELETE FROM login_failures WHERE key = ?", [(k,) for k in keys])

    def forget_login_tries(self, ids: list[int]) -> None:
        """Delete failures by row id: a try recorded ahead of its check that turned out right or had to wait."""
        with self._write():
            self.backend.executemany("DELETE FROM login_failures WHERE id = ?", [(i,) for i in ids])

    # -- audit log --------------------------------------------------------

    def audit(self, actor: str, action: str, subject: str, detail: Any = None) -> None:
        with self._write():
            self._audit(utc_text(), actor, action, subject, detail)

    def audit_log(self, limit: int = 100, offset: int = 0, **filters: str | None) -> list[dict[str, Any]]:
        """Entries, newest first; `filters` as in `count_audit`."""
        where, params = _audit_where(**filters)
        rows = self._query(f"SELECT * FROM audit_log{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                           [*params, limit, offset])
        return [dict(row, detail=json.loads(row["detail"] or "null")) for row in rows]

    def count_audit(self, **filters: str | None) -> int:
        """How many entries match: `actor`, `action`, and `since`/`until` (UTC times, `until` excluded)."""
        where, params = _audit_where(**filters)
        return self._query(f"SELECT count(*) AS n FROM audit_log{where}", params)[0]["n"]

    def audit_names(self) -> tuple[list[str], list[str]]:
        """Every actor and every action in the log, for the filters' choices."""
        actors = [r["actor"] for r in self._query("SELECT DISTINCT actor FROM audit_log ORDER BY actor")]
        actions = [r["action"] for r in self._query("SELECT DISTINCT action FROM audit_log ORDER BY action")]
        return actors, actions

    def _audit(self, at: str, actor: str, action: str, subject: str, detail: Any) -> None:
        """Append an audit entry chained to the one before (under the audit chain's lock)."""
        with self._write():
            self.backend.lock_chain("audit")
            last = self._one("SELECT id, row_hash FROM audit_log ORDER BY id DESC LIMIT 1")
            row = {"id": last["id"] + 1 if last else 1, "at": at, "actor": actor, "action": action,
                   "subject": subject, "detail": json.dumps(detail, sort_keys=True)}
            row["prev_hash"] = last["row_hash"] if last else GENESIS_HASH
            row["row_hash"] = chain_hash(row["prev_hash"], audit_content_hash(row))
            self._insert("audit_log", row)

    def iter_audit(self) -> Iterator[dict[str, Any]]:
        """Every audit entry with its chain hashes, oldest first."""
        return self.backend.iterate("SELECT * FROM audit_log ORDER BY id")

    # -- what every worker's caches are made under -------------------------------

    def _changed(self, what: str) -> None:
        """Raise the generation of `what` ("notices" or "sites") inside the change's transaction:
        the new number becomes visible together with the change, never before or after it."""
        self.backend.execute("UPDATE generations SET value = value + 1 WHERE name = ?", [what])

    def generations(self) -> dict[str, int]:
        """The generation of each kind of shared state ("notices", "sites"): a number that changes
        with every change any worker of any host commits (see keksi.store.generation)."""
        return {row["name"]: row["value"] for row in self._query("SELECT name, value FROM generations")}

    # -- helpers ----------------------------------------------------------

    def _write(self) -> Any:
        """A write transaction (see the backend's `transaction`); nested calls join the outer one."""
        return self.backend.transaction()

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return self.backend.query(sql, params)

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self.backend.query(sql, params)
        return rows[0] if rows else None

    def _tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return [tuple(row.values()) for row in self.backend.query(sql, params)]

    def _insert(self, table: str, row: dict[str, Any], returning: str | None = None) -> Any:
        """Insert one row; with `returning`, give back that column of the new row (its new id)."""
        sql = insert_statement(table, row)
        if returning is None:
            self.backend.execute(sql, list(row.values()))
            return None
        return self.backend.query(f"{sql} RETURNING {returning} AS returned", list(row.values()))[0]["returned"]


def _next_link(last_seq: int | None, last_hash: str | None) -> tuple[int, str]:
    """The seq and previous hash of the link after the chain's last (none: the first link)."""
    return (last_seq + 1, last_hash) if last_seq is not None else (1, GENESIS_HASH)


def _user(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row, roles=[r for r in row["roles"].split(",") if r])


# A scans row but its `result`, which holds every page's observations and may be large.
SCAN_SUMMARY = ("id, site, requested_by, requested_at, options, state, worker, attempts, progress, started_at, "
                "seen_at, finished_at, findings, error")


def _scan_row(row: dict[str, Any]) -> dict[str, Any]:
    """A scans row with its JSON columns read."""
    return dict(row, **{column: json.loads(row[column]) if row.get(column) else None
                        for column in ("options", "progress", "result", "findings")})


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause from (condition, value) pairs, skipping those whose value is None."""
    used = [(sql, value) for sql, value in conditions if value is not None]
    clause = " WHERE " + " AND ".join(sql for sql, _ in used) if used else ""
    return clause, [value for _, value in used]


def _audit_where(actor: str | None = None, action: str | None = None, since: str | None = None,
                 until: str | None = None) -> tuple[str, list[Any]]:
    return _where(("actor = ?", actor), ("action = ?", action), ("at >= ?", since), ("at < ?", until))


def _tally(rows: Iterable[dict[str, Any]], day_of: Callable[[str], str]) -> Counts:
    """What `rows` count in the daily figures, as `_count` added them: (actions, categories)."""
    actions: collections.Counter = collections.Counter()
    categories: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        day = day_of(row["recorded_at"])
        actions[(row["site"], day, row["action"])] += 1
        for category, granted in json.loads(row["choices"]).items():
            counts = categories.setdefault((row["site"], day, category), [0, 0])
            counts[0] += int(granted)
            counts[1] += 1
    return ([(*key, n) for key, n in sorted(actions.items())],
            [(*key, granted, total) for key, (granted, total) in sorted(categories.items())])
