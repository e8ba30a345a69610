-- SQLite's migration 0013: the origin a choice was posted from, hashed after the other columns when set
-- (records without one keep their hashes), so that a receipt links the site where the choice was made.
ALTER TABLE consents ADD COLUMN origin TEXT;
