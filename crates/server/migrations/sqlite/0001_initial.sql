-- Users, API tokens, policies with immutable versions, and the hash-chained audit log.
-- Times are RFC 3339 text in UTC; both back ends store them the same way.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL, -- argon2id, PHC string
    role          TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, -- SHA-256 of the token, hex; the token itself is never stored
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE policies (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE policy_versions (
    policy_id  INTEGER NOT NULL REFERENCES policies (id),
    version    INTEGER NOT NULL,
    format     TEXT NOT NULL CHECK (format IN ('yaml', 'json')),
    source     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (policy_id, version)
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- Versions and audit entries are never changed or removed.
CREATE TRIGGER policy_versions_immutable BEFORE UPDATE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;
CREATE TRIGGER policy_versions_kept BEFORE DELETE ON policy_versions
BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_kept BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
