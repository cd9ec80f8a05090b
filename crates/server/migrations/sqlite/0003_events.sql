-- Connection events reported by agents, and the batches they came in.
-- Times are milliseconds since the Unix epoch (UTC) so that time ranges are plain integer
-- comparisons on both back ends. agent_id names the agent; there is no foreign key so that
-- events outlive a removed agent and ingest does not depend on the agents table.

-- One row per accepted batch: a re-sent batch (same agent, same batch_seq) is recognised here.
CREATE TABLE event_batches (
    agent_id    TEXT    NOT NULL,
    batch_seq   INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (agent_id, batch_seq)
);
CREATE INDEX event_batches_received ON event_batches (received_ms);

-- One table; retention deletes by time.
CREATE TABLE connection_events (
    agent_id       TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    time_ms        INTEGER NOT NULL,
    received_ms    INTEGER NOT NULL,
    app_path       TEXT,
    app_name       TEXT,
    app_sha256     TEXT,
    cmdline        TEXT,
    user_name      TEXT,
    uid            INTEGER,
    parent_path    TEXT,
    cgroup         TEXT,
    unit           TEXT,
    container_id   TEXT,
    domain         TEXT,
    src_ip         TEXT,
    src_ip_key     TEXT, -- 32 hex digits of the IPv6 (or IPv4-mapped) address: CIDR = range
    src_port       INTEGER,
    dst_ip         TEXT,
    dst_ip_key     TEXT,
    dst_port       INTEGER,
    protocol       TEXT,
    direction      TEXT    NOT NULL,
    pid            INTEGER,
    sni            TEXT,
    action         TEXT    NOT NULL,
    verdict        TEXT    NOT NULL,
    rule           TEXT,
    policy_version INTEGER,
    bytes_out      INTEGER NOT NULL,
    bytes_in       INTEGER NOT NULL,
    packets_out    INTEGER NOT NULL,
    packets_in     INTEGER NOT NULL,
    duration_ms    INTEGER NOT NULL
);

-- The same key as on PostgreSQL (where a unique index must contain the partition key).
CREATE UNIQUE INDEX connection_events_key ON connection_events (agent_id, seq, time_ms);
CREATE INDEX connection_events_time ON connection_events (time_ms DESC, agent_id DESC, seq DESC);
CREATE INDEX connection_events_agent ON connection_events (agent_id, time_ms);
CREATE INDEX connection_events_app ON connection_events (app_path, time_ms);
CREATE INDEX connection_events_app_name ON connection_events (app_name, time_ms);
CREATE INDEX connection_events_domain ON connection_events (domain, time_ms);
CREATE INDEX connection_events_dst_ip ON connection_events (dst_ip_key, time_ms);
CREATE INDEX connection_events_src_ip ON connection_events (src_ip_key, time_ms);
CREATE INDEX connection_events_action ON connection_events (action, time_ms);
