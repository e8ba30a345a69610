-- The append-only rules SQLite's triggers keep (keksi/store/migrations/sqlite.py), as one trigger
-- function refusing the statement with the message SQLite gives. TRUNCATE, which SQLite lacks, is refused
-- wherever DELETE is. The error is an integrity violation (SQLSTATE 23000), as SQLite's RAISE(ABORT) is.

CREATE FUNCTION keksi_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = '23000';
END
$$;

-- A consent record is deleted only by erasure or purge, which first write its consent_removals row.
-- (PostgreSQL refuses a subquery in a trigger's WHEN, hence a function.)
CREATE FUNCTION keksi_consent_delete_only_when_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM consent_removals WHERE seq = OLD.seq) THEN
        RAISE EXCEPTION 'consent records are removed only by erasure or purge' USING ERRCODE = '23000';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER notice_versions_immutable BEFORE UPDATE ON notice_versions
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('published notice versions are immutable');

CREATE TRIGGER banner_versions_immutable BEFORE UPDATE ON banner_versions
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('banner versions are immutable');
CREATE TRIGGER banner_versions_no_delete BEFORE DELETE ON banner_versions
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('banner versions are immutable');
CREATE TRIGGER banner_versions_no_truncate BEFORE TRUNCATE ON banner_versions
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('banner versions are immutable');

CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('consent records are never updated: record a new choice');
CREATE TRIGGER consents_delete_only_when_removed BEFORE DELETE ON consents
    FOR EACH ROW EXECUTE FUNCTION keksi_consent_delete_only_when_removed();
CREATE TRIGGER consents_no_truncate BEFORE TRUNCATE ON consents
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('consent records are removed only by erasure or purge');

CREATE TRIGGER consent_removals_no_update BEFORE UPDATE ON consent_removals
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal records are append-only');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('the audit log is append-only');
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('the audit log is append-only');
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('the audit log is append-only');

CREATE TRIGGER widget_builds_no_update BEFORE UPDATE ON widget_builds
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('widget builds are kept as first served');
CREATE TRIGGER widget_builds_no_delete BEFORE DELETE ON widget_builds
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('widget builds are kept as first served');
CREATE TRIGGER widget_builds_no_truncate BEFORE TRUNCATE ON widget_builds
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('widget builds are kept as first served');

CREATE TRIGGER consent_chain_no_update BEFORE UPDATE ON consent_chain
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('the consent chain is append-only');
CREATE TRIGGER consent_chain_no_delete BEFORE DELETE ON consent_chain
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('the consent chain is append-only');
CREATE TRIGGER consent_chain_no_truncate BEFORE TRUNCATE ON consent_chain
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('the consent chain is append-only');
CREATE TRIGGER removal_links_no_update BEFORE UPDATE ON removal_links
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_links_no_delete BEFORE DELETE ON removal_links
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_links_no_truncate BEFORE TRUNCATE ON removal_links
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_ranges_no_update BEFORE UPDATE ON removal_ranges
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_ranges_no_delete BEFORE DELETE ON removal_ranges
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_ranges_no_truncate BEFORE TRUNCATE ON removal_ranges
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_counts_no_update BEFORE UPDATE ON removal_counts
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_counts_no_delete BEFORE DELETE ON removal_counts
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_counts_no_truncate BEFORE TRUNCATE ON removal_counts
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_category_counts_no_update BEFORE UPDATE ON removal_category_counts
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_category_counts_no_delete BEFORE DELETE ON removal_category_counts
    FOR EACH ROW EXECUTE FUNCTION keksi_refuse('removal links are append-only');
CREATE TRIGGER removal_category_counts_no_truncate BEFORE TRUNCATE ON removal_category_counts
    FOR EACH STATEMENT EXECUTE FUNCTION keksi_refuse('removal links are append-only');