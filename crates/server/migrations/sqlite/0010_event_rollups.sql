-- Roll-ups of the connection events, kept at ingest in the same transaction as the events they
-- count (a re-sent batch stores nothing, so it counts nothing), so that the dashboard reads a
-- few hundred rows instead of an hour of events. Retention removes the minutes of the events it
-- removes. Minutes are the start of the minute, milliseconds since the Unix epoch.

-- Connections and blocks per minute.
CREATE TABLE event_minutes (
    minute_ms   INTEGER PRIMARY KEY,
    connections INTEGER NOT NULL,
    blocks      INTEGER NOT NULL
);

-- Connections per minute per application (its name, '(unknown)' without one).
CREATE TABLE event_minute_apps (
    minute_ms   INTEGER NOT NULL,
    app         TEXT    NOT NULL,
    connections INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, app)
);

-- Blocked connections per minute per destination (the domain, else the address, else
-- '(unknown)').
CREATE TABLE event_minute_blocked (
    minute_ms   INTEGER NOT NULL,
    destination TEXT    NOT NULL,
    blocks      INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, destination)
);

-- How often each rule decided a connection on each agent, and the newest such connection's
-- time. Counters since the first hit: retention does not lower them.
CREATE TABLE rule_hits (
    agent_id    TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    hits        INTEGER NOT NULL,
    last_hit_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, rule)
);

-- The console's connection log filters by application name (the dashboard's busiest
-- applications link to it). Without an index, a name with few or no events read the whole time
-- index: 5 s on 10 million events (docs/benchmarks.md). Migration 0007 had dropped it for ingest.
CREATE INDEX connection_events_app_name ON connection_events (app_name, time_ms);

-- The events stored before this migration.
INSERT INTO event_minutes (minute_ms, connections, blocks)
SELECT time_ms / 60000 * 60000 AS m, COUNT(*),
       SUM(CASE WHEN verdict = 'block' THEN 1 ELSE 0 END)
FROM connection_events GROUP BY m;
INSERT INTO event_minute_apps (minute_ms, app, connections)
SELECT time_ms / 60000 * 60000 AS m, COALESCE(app_name, '(unknown)') AS a, COUNT(*)
FROM connection_events GROUP BY m, a;
INSERT INTO event_minute_blocked (minute_ms, destination, blocks)
SELECT time_ms / 60000 * 60000 AS m, COALESCE(domain, dst_ip, '(unknown)') AS d, COUNT(*)
FROM connection_events WHERE verdict = 'block' GROUP BY m, d;
INSERT INTO rule_hits (agent_id, rule, hits, last_hit_ms)
SELECT agent_id, rule, COUNT(*), MAX(time_ms)
FROM connection_events WHERE rule IS NOT NULL GROUP BY agent_id, rule;
