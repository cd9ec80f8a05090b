-- API tokens get an optional expiry, revocation and their creator; settings that people change
-- through the API (key to JSON value) are stored for every node to read. Times are RFC 3339
-- text in UTC, as in 0001.

ALTER TABLE api_tokens ADD COLUMN expires_at TEXT; -- none: the token does not expire
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
ALTER TABLE api_tokens ADD COLUMN created_by TEXT; -- none for tokens made before this migration

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL, -- JSON
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
