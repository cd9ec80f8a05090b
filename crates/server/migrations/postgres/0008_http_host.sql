-- The HTTP Host of a connection's first request, as the agent saw it (like `sni` for TLS).
ALTER TABLE connection_events ADD COLUMN http_host TEXT;
