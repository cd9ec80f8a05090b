-- Agent isolation: when set, the agent is pushed the server-generated isolation policy instead
-- of its group's policy, until it is released (RFC 3339 UTC, as every time).

ALTER TABLE agents ADD COLUMN isolated_at TEXT;
