-- SQLite's migration 0011: what every worker's caches are made under, a number per kind of shared state
-- raised in the same transaction as each change, so a publication on one host reaches every worker of
-- every host at its next request.
CREATE TABLE generations (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO generations (name, value) VALUES ('notices', 1), ('sites', 1);
