-- Agents, their groups (each group may have a policy assigned), and enrollment tokens.
-- Times are RFC 3339 text in UTC, as in 0001.

CREATE TABLE agent_groups (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    policy_id  BIGINT REFERENCES policies (id), -- the policy its agents enforce (newest version)
    created_at TEXT NOT NULL
);

INSERT INTO agent_groups (name, created_at)
VALUES ('default', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));

CREATE TABLE enrollment_tokens (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE, -- SHA-256 of the secret, hex; the secret is never stored
    group_id   BIGINT NOT NULL REFERENCES agent_groups (id),
    max_uses   BIGINT NOT NULL CHECK (max_uses > 0),
    uses       BIGINT NOT NULL DEFAULT 0,
    expires_at TEXT NOT NULL,
    revoked_at TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    hostname         TEXT NOT NULL,
    os               TEXT NOT NULL,
    agent_version    TEXT NOT NULL,
    group_id         BIGINT NOT NULL REFERENCES agent_groups (id),
    cert_fingerprint TEXT NOT NULL UNIQUE, -- SHA-256 of the certificate's DER, hex
    enrolled_at      TEXT NOT NULL,
    token_id         BIGINT NOT NULL REFERENCES enrollment_tokens (id),
    revoked_at       TEXT,
    last_seen        TEXT,
    policy_version   BIGINT,
    counters         TEXT NOT NULL DEFAULT '{}' -- JSON object of name to count
);

CREATE INDEX agents_group ON agents (group_id);
