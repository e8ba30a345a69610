-- PostgreSQL only (SQLite keeps no samples of values: Keksi never runs its ANALYZE, and Python's SQLite is
-- built without STAT4). ANALYZE, which autovacuum runs, copies sample values of each column into
-- pg_statistic, readable through the pg_stats view: a subject id, consent id or page there outlived its
-- record's erasure until the next ANALYZE (measured on PostgreSQL 15). Statistics target 0 keeps these
-- columns out of pg_statistic; changing a column to its own type (no rewrite, no reindex) drops the
-- statistics already taken. The planner still uses the indexes (a unique index is known unique, and an
-- equality on subject_id is estimated at 0.5% of the rows: measured, still an index scan).
ALTER TABLE consents
    ALTER COLUMN consent_id SET STATISTICS 0, ALTER COLUMN consent_id TYPE TEXT,
    ALTER COLUMN event_id SET STATISTICS 0, ALTER COLUMN event_id TYPE TEXT,
    ALTER COLUMN subject_id SET STATISTICS 0, ALTER COLUMN subject_id TYPE TEXT,
    ALTER COLUMN page SET STATISTICS 0, ALTER COLUMN page TYPE TEXT,
    ALTER COLUMN ip SET STATISTICS 0, ALTER COLUMN ip TYPE TEXT,
    ALTER COLUMN user_agent SET STATISTICS 0, ALTER COLUMN user_agent TYPE TEXT;
