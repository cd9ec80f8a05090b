//! The applications an agent ran and where they connected: the endpoint page's inventory.

use super::{Pool, Store, StoreError};

/// Connections of one application of an agent to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDestination {
    /// The application's path, else its name, else `(unknown)`.
    pub app: String,
    /// The destination's domain, else its address, else `(unknown)`.
    pub destination: String,
    /// Connections.
    pub connections: i64,
    /// Of those, blocked.
    pub blocks: i64,
    /// The newest, milliseconds since the Unix epoch.
    pub last_ms: i64,
}

impl Store {
    /// The (application, destination) pairs of `agent_id`'s connections from `since_ms` on,
    /// busiest first; at most `limit`.
    pub async fn app_destinations(
        &self,
        agent_id: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<AppDestination>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COALESCE(app_path, app_name, '(unknown)') AS app, \
                 COALESCE(domain, dst_ip, '(unknown)') AS destination, \
                 CAST(COUNT(*) AS BIGINT) AS n, \
                 CAST(SUM(CASE WHEN verdict = 'block' THEN 1 ELSE 0 END) AS BIGINT), \
                 CAST(MAX(time_ms) AS BIGINT) \
                 FROM connection_events WHERE agent_id = $1 AND time_ms >= $2 \
                 GROUP BY app, destination ORDER BY n DESC, app, destination LIMIT $3",
            )
            .bind(agent_id)
            .bind(since_ms)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(app, destination, connections, blocks, last_ms)| AppDestination {
                    app,
                    destination,
                    connections,
                    blocks,
                    last_ms,
                },
            )
            .collect())
    }
}
