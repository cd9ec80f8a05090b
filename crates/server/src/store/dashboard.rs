//! Queries behind the dashboard: connections and blocks per minute, the busiest applications
//! and the most blocked destinations since a time, and open alerts by severity. They read the
//! per-minute roll-ups (`store/rollups.rs`), never the events: an hour is at most a few
//! thousand roll-up rows however many events it held.

use super::{Pool, Store, StoreError};

/// Connections decided in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minute {
    /// The minute's start, milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Connections.
    pub connections: i64,
    /// Of those, blocked.
    pub blocks: i64,
}

/// A name and how many connections it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    /// The application, destination or severity.
    pub name: String,
    /// How many.
    pub count: i64,
}

impl Ranked {
    /// Whether the name is an IP address (a destination without a known domain).
    pub fn is_address(&self) -> bool {
        self.name.parse::<std::net::IpAddr>().is_ok()
    }
}

impl Store {
    /// Connections and blocks per minute from `since_ms` (a minute's start) on, oldest first;
    /// minutes without connections are left out.
    pub async fn connections_per_minute(&self, since_ms: i64) -> Result<Vec<Minute>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT minute_ms, connections, blocks FROM event_minutes \
                 WHERE minute_ms >= $1 ORDER BY minute_ms",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(start_ms, connections, blocks)| Minute {
                start_ms,
                connections,
                blocks,
            })
            .collect())
    }

    /// The `limit` applications with the most connections from `since_ms` (a minute's start) on.
    pub async fn top_applications(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Ranked>, StoreError> {
        self.top(
            "SELECT app, CAST(SUM(connections) AS BIGINT) AS n FROM event_minute_apps \
             WHERE minute_ms >= $1 GROUP BY app ORDER BY n DESC, app LIMIT $2",
            since_ms,
            limit,
        )
        .await
    }

    /// The `limit` destinations (domain, else address) blocked most often from `since_ms` (a
    /// minute's start) on.
    pub async fn top_blocked_destinations(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Ranked>, StoreError> {
        self.top(
            "SELECT destination, CAST(SUM(blocks) AS BIGINT) AS n FROM event_minute_blocked \
             WHERE minute_ms >= $1 GROUP BY destination ORDER BY n DESC, destination LIMIT $2",
            since_ms,
            limit,
        )
        .await
    }

    async fn top(&self, sql: &str, since_ms: i64, limit: i64) -> Result<Vec<Ranked>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(since_ms)
                .bind(limit)
                .fetch_all(pool)
                .await
        })?;
        Ok(ranked(rows))
    }

    /// Alerts not resolved, counted by severity.
    pub async fn open_alerts_by_severity(&self) -> Result<Vec<Ranked>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT severity, CAST(COUNT(*) AS BIGINT) FROM alerts \
                 WHERE status <> 'resolved' GROUP BY severity",
            )
            .fetch_all(pool)
            .await
        })?;
        Ok(ranked(rows))
    }
}

fn ranked(rows: Vec<(String, i64)>) -> Vec<Ranked> {
    rows.into_iter()
        .map(|(name, count)| Ranked { name, count })
        .collect()
}
