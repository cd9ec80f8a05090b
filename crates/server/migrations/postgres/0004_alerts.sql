-- Alerts: what detection (and the server itself) raises for people to work. One alert stays
-- active per behaviour (`dedupe_key`) until it is resolved; repeats are merged into it.

CREATE TABLE alerts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    score       DOUBLE PRECISION NOT NULL,
    title       TEXT NOT NULL,
    agent_id    TEXT,
    app         TEXT,
    dedupe_key  TEXT NOT NULL,
    explanation TEXT NOT NULL, -- JSON object: the features, their values and the baseline
    evidence    TEXT NOT NULL, -- JSON array of event references, newest last, bounded
    occurrences BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    assignee    TEXT,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE UNIQUE INDEX alerts_one_active_per_behaviour ON alerts (dedupe_key) WHERE status <> 'resolved';
CREATE INDEX alerts_by_status ON alerts (status, id);
