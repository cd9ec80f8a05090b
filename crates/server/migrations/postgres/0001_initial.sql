-- Users, API tokens, policies with immutable versions, and the hash-chained audit log.
-- Times are RFC 3339 text in UTC; both back ends store them the same way.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL, -- argon2id, PHC string
    role          TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE, -- SHA-256 of the token, hex; the token itself is never stored
    role       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE policies (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE policy_versions (
    policy_id  BIGINT NOT NULL REFERENCES policies (id),
    version    BIGINT NOT NULL,
    format     TEXT NOT NULL CHECK (format IN ('yaml', 'json')),
    source     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (policy_id, version)
);

CREATE TABLE audit_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- Versions and audit entries are never changed or removed.
CREATE FUNCTION palisade_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER policy_versions_immutable BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION palisade_refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION palisade_refuse_change();
