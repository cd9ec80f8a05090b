//! Roll-ups of connection events, kept at ingest in the transaction that stores the events:
//! connections and blocks per minute, connections per minute per application, blocks per minute
//! per destination (what the dashboard reads), and hits per agent and rule (what the policies
//! page reads). Only events actually stored are counted, so a re-sent batch or event counts
//! once. Retention removes the minutes of the events it removes ([`delete_minutes_before`]);
//! rule hits are counters since the first hit and stay.

use std::collections::BTreeMap;

use palisade_proto::{ConnectionEvent, Verdict};

use super::{Pool, Store, StoreError};

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;

/// How often a rule decided connections on the agents of one policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleHits {
    /// The rule's id.
    pub rule: String,
    /// Connections it decided.
    pub hits: i64,
    /// The newest such connection's time, ms since the epoch.
    pub last_hit_ms: i64,
}

/// What a set of stored events adds to the roll-ups.
#[derive(Debug, Default)]
pub(super) struct Rollup<'a> {
    /// Per minute: connections, blocks.
    minutes: BTreeMap<i64, (i64, i64)>,
    /// Per minute and application name: connections.
    apps: BTreeMap<(i64, &'a str), i64>,
    /// Per minute and destination: blocks.
    blocked: BTreeMap<(i64, String), i64>,
    /// Per agent and rule: hits, newest hit.
    rules: BTreeMap<(&'a str, &'a str), (i64, i64)>,
}

/// Rows per multi-row upsert (at most 4 parameters each).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

impl<'a> Rollup<'a> {
    /// Counts one stored event of `agent_id`.
    pub(super) fn add(&mut self, agent_id: &'a str, event: &'a ConnectionEvent) {
        let minute = minute_of(event.time_ms);
        let blocked = event.verdict == Verdict::Block;
        let m = self.minutes.entry(minute).or_insert((0, 0));
        m.0 += 1;
        m.1 += i64::from(blocked);
        let app = event.connection.app_name.as_deref().unwrap_or(UNKNOWN);
        *self.apps.entry((minute, app)).or_insert(0) += 1;
        if blocked {
            let c = &event.connection;
            let destination = match (&c.domain, c.dst_ip) {
                (Some(domain), _) => domain.clone(),
                (None, Some(ip)) => ip.to_string(),
                (None, None) => UNKNOWN.to_owned(),
            };
            *self.blocked.entry((minute, destination)).or_insert(0) += 1;
        }
        if let Some(rule) = &event.rule {
            let r = self.rules.entry((agent_id, rule)).or_insert((0, i64::MIN));
            r.0 += 1;
            r.1 = r.1.max(event.time_ms);
        }
    }
}

/// The name counted for an event without an application name or destination.
const UNKNOWN: &str = "(unknown)";

/// The start of the minute `time_ms` falls in.
pub(super) fn minute_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// A multi-row upsert of `rows` rows into `table`: `columns` (the key first, `key` of them)
/// with the counters added to those stored, and `last_hit_ms` (if present) kept at the newer.
pub(super) fn upsert_sql(table: &str, columns: &[&str], key: usize, rows: usize) -> String {
    let mut n = 0;
    let values: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = columns
                .iter()
                .map(|_| {
                    n += 1;
                    format!("${n}")
                })
                .collect();
            format!("({})", row.join(","))
        })
        .collect();
    let keys = columns.get(..key).unwrap_or_default().join(", ");
    let updates: Vec<String> = columns
        .get(key..)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            if *c == "last_hit_ms" {
                format!(
                    "{c} = CASE WHEN excluded.{c} > {table}.{c} THEN excluded.{c} ELSE {table}.{c} END"
                )
            } else {
                format!("{c} = {table}.{c} + excluded.{c}")
            }
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({keys}) DO UPDATE SET {}",
        columns.join(", "),
        values.join(","),
        updates.join(", ")
    )
}

/// One upsert: its table, its columns (the key first), the key's length, and its rows.
pub(super) type Upsert<'r> = (
    &'static str,
    &'static [&'static str],
    usize,
    Vec<Vec<Value<'r>>>,
);

/// A value of an upserted row.
pub(super) enum Value<'q> {
    Int(i64),
    Text(&'q str),
}

impl<'a> Rollup<'a> {
    /// Each upsert: its table, columns, key length and rows, rows in key order (so that two
    /// writers lock the rows they share in the same order and cannot deadlock).
    pub(super) fn statements(&self) -> Vec<Upsert<'_>> {
        use Value::{Int, Text};
        vec![
            (
                "event_minutes",
                &["minute_ms", "connections", "blocks"],
                1,
                self.minutes
                    .iter()
                    .map(|(m, (c, b))| vec![Int(*m), Int(*c), Int(*b)])
                    .collect(),
            ),
            (
                "event_minute_apps",
                &["minute_ms", "app", "connections"],
                2,
                self.apps
                    .iter()
                    .map(|((m, a), c)| vec![Int(*m), Text(a), Int(*c)])
                    .collect(),
            ),
            (
                "event_minute_blocked",
                &["minute_ms", "destination", "blocks"],
                2,
                self.blocked
                    .iter()
                    .map(|((m, d), b)| vec![Int(*m), Text(d), Int(*b)])
                    .collect(),
            ),
            (
                "rule_hits",
                &["agent_id", "rule", "hits", "last_hit_ms"],
                2,
                self.rules
                    .iter()
                    .map(|((a, r), (h, l))| vec![Text(a), Text(r), Int(*h), Int(*l)])
                    .collect(),
            ),
        ]
    }
}

/// Adds `rollup` to the stored roll-ups inside the transaction `tx` (a connection of either
/// back end). A macro because the connection type differs per back end while the code is the
/// same.
macro_rules! write_rollup {
    ($tx:expr, $rollup:expr) => {{
        let rollup: &$crate::store::rollups::Rollup<'_> = $rollup;
        for (table, columns, key, rows) in rollup.statements() {
            for chunk in rows.chunks($crate::store::rollups::ROWS_PER_STATEMENT) {
                let sql = $crate::store::rollups::upsert_sql(table, columns, key, chunk.len());
                let mut query = sqlx::query(&sql);
                for value in chunk.iter().flatten() {
                    query = match value {
                        $crate::store::rollups::Value::Int(n) => query.bind(*n),
                        $crate::store::rollups::Value::Text(s) => query.bind(*s),
                    };
                }
                query.execute(&mut *$tx).await?;
            }
        }
    }};
}
pub(super) use write_rollup;

/// The statements that remove the minutes before `$1` (ms) from every per-minute roll-up.
pub(super) const DELETE_MINUTES_BEFORE: [&str; 3] = [
    "DELETE FROM event_minutes WHERE minute_ms < $1",
    "DELETE FROM event_minute_apps WHERE minute_ms < $1",
    "DELETE FROM event_minute_blocked WHERE minute_ms < $1",
];

/// Removes the minutes before `$cutoff` (ms, a minute's start) from every per-minute roll-up,
/// inside the transaction `$tx`.
macro_rules! delete_minutes_before {
    ($tx:expr, $cutoff:expr) => {{
        for sql in $crate::store::rollups::DELETE_MINUTES_BEFORE {
            sqlx::query(sql).bind($cutoff).execute(&mut *$tx).await?;
        }
    }};
}
pub(super) use delete_minutes_before;

impl Store {
    /// The hits of each rule on the agents whose group is assigned the policy `policy_id`,
    /// summed over those agents, most hits first. Rules never hit are left out; hits counted
    /// while an agent enforced another policy stay with their rule ids.
    pub async fn rule_hits(&self, policy_id: i64) -> Result<Vec<RuleHits>, StoreError> {
        let rows: Vec<(String, i64, i64)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT h.rule, CAST(SUM(h.hits) AS BIGINT) AS n, MAX(h.last_hit_ms) \
                 FROM rule_hits h JOIN agents a ON a.id = h.agent_id \
                 JOIN agent_groups g ON g.id = a.group_id \
                 WHERE g.policy_id = $1 GROUP BY h.rule ORDER BY n DESC, h.rule",
            )
            .bind(policy_id)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(rule, hits, last_hit_ms)| RuleHits {
                rule,
                hits,
                last_hit_ms,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_add_counters_and_keep_the_newest_hit() {
        let sql = upsert_sql(
            "rule_hits",
            &["agent_id", "rule", "hits", "last_hit_ms"],
            2,
            2,
        );
        assert_eq!(
            sql,
            "INSERT INTO rule_hits (agent_id, rule, hits, last_hit_ms) VALUES ($1,$2,$3,$4),\
             ($5,$6,$7,$8) ON CONFLICT (agent_id, rule) DO UPDATE SET \
             hits = rule_hits.hits + excluded.hits, last_hit_ms = CASE WHEN \
             excluded.last_hit_ms > rule_hits.last_hit_ms THEN excluded.last_hit_ms \
             ELSE rule_hits.last_hit_ms END"
        );
    }

    #[test]
    fn minutes_start_on_the_minute_before_the_epoch_too() {
        assert_eq!(minute_of(119_999), 60_000);
        assert_eq!(minute_of(-1), -60_000);
    }
}
