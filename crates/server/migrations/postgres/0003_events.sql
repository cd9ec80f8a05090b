-- Connection events reported by agents, and the batches they came in.
-- Times are milliseconds since the Unix epoch (UTC) so that time ranges are plain integer
-- comparisons on both back ends. agent_id names the agent; there is no foreign key so that
-- events outlive a removed agent and ingest does not depend on the agents table.

-- One row per accepted batch: a re-sent batch (same agent, same batch_seq) is recognised here.
CREATE TABLE event_batches (
    agent_id    TEXT   NOT NULL,
    batch_seq   BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    events      BIGINT NOT NULL,
    PRIMARY KEY (agent_id, batch_seq)
);
CREATE INDEX event_batches_received ON event_batches (received_ms);

-- Partitioned by day on the event time; partitions are created by
-- palisade_event_partition() before a batch is stored, and retention drops whole partitions.
CREATE TABLE connection_events (
    agent_id       TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    time_ms        BIGINT NOT NULL,
    received_ms    BIGINT NOT NULL,
    app_path       TEXT,
    app_name       TEXT,
    app_sha256     TEXT,
    cmdline        TEXT,
    user_name      TEXT,
    uid            BIGINT,
    parent_path    TEXT,
    cgroup         TEXT,
    unit           TEXT,
    container_id   TEXT,
    domain         TEXT,
    src_ip         TEXT,
    src_ip_key     TEXT COLLATE "C", -- 32 hex digits of the IPv6 (or IPv4-mapped) address: CIDR = range
    src_port       BIGINT,
    dst_ip         TEXT,
    dst_ip_key     TEXT COLLATE "C",
    dst_port       BIGINT,
    protocol       TEXT,
    direction      TEXT   NOT NULL,
    pid            BIGINT,
    sni            TEXT,
    action         TEXT   NOT NULL,
    verdict        TEXT   NOT NULL,
    rule           TEXT,
    policy_version BIGINT,
    bytes_out      BIGINT NOT NULL,
    bytes_in       BIGINT NOT NULL,
    packets_out    BIGINT NOT NULL,
    packets_in     BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL
) PARTITION BY RANGE (time_ms);

-- A unique index on a partitioned table must contain the partition key; a re-sent event
-- carries the same time, so (agent, seq, time) recognises it.
CREATE UNIQUE INDEX connection_events_key ON connection_events (agent_id, seq, time_ms);
CREATE INDEX connection_events_time ON connection_events (time_ms DESC, agent_id DESC, seq DESC);
CREATE INDEX connection_events_agent ON connection_events (agent_id, time_ms);
CREATE INDEX connection_events_app ON connection_events (app_path, time_ms);
CREATE INDEX connection_events_app_name ON connection_events (app_name, time_ms);
CREATE INDEX connection_events_domain ON connection_events (domain, time_ms);
CREATE INDEX connection_events_dst_ip ON connection_events (dst_ip_key, time_ms);
CREATE INDEX connection_events_src_ip ON connection_events (src_ip_key, time_ms);
CREATE INDEX connection_events_action ON connection_events (action, time_ms);

-- Creates the partition for the UTC day `day` (days since the epoch) unless it exists, and
-- returns its name. Several nodes may call it at once: an advisory lock orders them.
CREATE FUNCTION palisade_event_partition(day BIGINT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    part TEXT := 'connection_events_p'
        || to_char(to_timestamp(day * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NULL THEN
        PERFORM pg_advisory_xact_lock(7021815711592702053); -- the partition-creation lock
        -- The catalog this session sees may predate the creation by whoever held the lock
        -- before (waiting for an advisory lock does not refresh it), so a partition created
        -- meanwhile shows up as "already exists" here: that is success.
        BEGIN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF connection_events FOR VALUES FROM (%s) TO (%s)',
                part, day * 86400000, (day + 1) * 86400000);
        EXCEPTION WHEN duplicate_table THEN
            NULL;
        END;
    END IF;
    RETURN part;
END;
$$;
