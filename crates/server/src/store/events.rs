//! Connection events in storage: storing a batch exactly once, the filtered newest-first query
//! with its keyset cursor, and retention. The events service (`crate::events`) validates
//! before anything reaches this module.
//!
//! PostgreSQL keeps events in one partition per UTC day of the event time: a batch first makes
//! sure its days' partitions exist (`palisade_event_partition`, outside the batch's
//! transaction, because creating a partition locks the parent table), then copies its rows
//! straight into the events table with `COPY`; only when some event was stored before (the
//! unique key refuses the copy) are the rows copied into a temporary staging table and moved
//! with `ON CONFLICT DO NOTHING`. SQLite inserts in multi-row statements. Either way the batch row,
//! the events and nothing else commit together.

use std::net::IpAddr;

use jiff::Timestamp;
use palisade_proto::{Action, ConnectionEvent, Direction, Protocol, Traffic, Verdict};
use sqlx::Row;

use super::rollups::{Rollup, delete_minutes_before, minute_of, write_rollup};
use super::{Pool, Store, StoreError};

/// A batch of events to store, validated by the events service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// The agent that sent it.
    pub agent_id: String,
    /// Its number on that agent.
    pub batch_seq: i64,
    /// When the server received it (ms since the epoch).
    pub received_ms: i64,
    /// Its events, normalised.
    pub events: Vec<ConnectionEvent>,
}

/// What [`Store::store_event_batches`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchesStored {
    /// Per batch, in the order given: whether it was new (false: stored before, nothing written).
    pub fresh: Vec<bool>,
    /// Events written, over all batches (events stored before are not counted).
    pub events_stored: u64,
}

/// One stored event, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    /// The agent that reported it.
    pub agent_id: String,
    /// The event time, RFC 3339 UTC.
    pub time: String,
    /// When the server received the batch, RFC 3339 UTC.
    pub received_at: String,
    /// The event as reported (its connection normalised): `seq`, `time_ms`, `connection`,
    /// `pid`, `sni`, `http_host`, `action`, `verdict`, `rule`, `policy_version`, `traffic`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub event: ConnectionEvent,
}

/// One condition of an event query; [`EventCondition::negated`] turns it into its opposite
/// (an event without the field then matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCondition {
    /// Match events for which `test` does not hold.
    pub negated: bool,
    /// What is tested.
    pub test: EventTest,
}

/// What one condition tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTest {
    /// The agent's id.
    Agent(String),
    /// The application's path.
    AppPath(String),
    /// The application's name.
    AppName(String),
    /// The user's name.
    User(String),
    /// The domain, exactly.
    Domain(String),
    /// The domain ends with this suffix (which starts with a dot).
    DomainSuffix(String),
    /// The source or the destination address lies in this inclusive range of address keys
    /// (see [`ip_key`]).
    Ip {
        /// Lowest key.
        low: String,
        /// Highest key.
        high: String,
    },
    /// The destination port.
    Port(u16),
    /// The transport protocol.
    Protocol(Protocol),
    /// The action decided.
    Action(Action),
    /// The deciding rule's id.
    Rule(String),
    /// The event time is at or after this (ms since the epoch).
    From(i64),
    /// The event time is before this (ms since the epoch).
    To(i64),
}

/// Where a page of events ends: the last event's time, agent and sequence number. The next page
/// holds the events strictly after it in newest-first order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// Event time, ms since the epoch.
    pub time_ms: i64,
    /// Agent id.
    pub agent_id: String,
    /// Event sequence number.
    pub seq: i64,
}

/// What a retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// Events removed.
    pub events_removed: u64,
    /// PostgreSQL: the day partitions dropped (empty on SQLite).
    pub partitions_dropped: Vec<String>,
    /// Batch records forgotten (their events are older than the retention too).
    pub batches_forgotten: u64,
}

/// The 32 lowercase hex digits of `ip` as an IPv6 address (IPv4 as IPv4-mapped), so that an
/// address block is a range of equally long strings.
pub fn ip_key(ip: IpAddr) -> String {
    let octets = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    crate::audit::hex(&octets)
}

const COLUMNS: &str = "agent_id, seq, time_ms, received_ms, app_path, app_name, app_sha256, \
    cmdline, user_name, uid, parent_path, cgroup, unit, container_id, domain, src_ip, src_ip_key, \
    src_port, dst_ip, dst_ip_key, dst_port, protocol, direction, pid, sni, action, verdict, rule, \
    policy_version, bytes_out, bytes_in, packets_out, packets_in, duration_ms, http_host";

/// Records a batch; affects no row when the batch was stored before.
const BATCH_SQL: &str = "INSERT INTO event_batches (agent_id, batch_seq, received_ms, events) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, batch_seq) DO NOTHING";

/// Largest number of rows in one SQLite `INSERT` (35 parameters each, well under SQLite's limit).
const SQLITE_ROWS_PER_INSERT: usize = 400;

/// A value to bind in a dynamically built query.
enum Bind {
    Int(i64),
    Text(String),
}

/// Records a batch in `event_batches` inside transaction `tx`: `false` when it was stored before.
/// A macro because the transaction type differs per back end while the code is the same.
macro_rules! record_batch {
    ($tx:expr, $batch:expr) => {{
        let batch: &NewBatch = $batch;
        sqlx::query(BATCH_SQL)
            .bind(&batch.agent_id)
            .bind(batch.batch_seq)
            .bind(batch.received_ms)
            .bind(i64::try_from(batch.events.len()).unwrap_or(i64::MAX))
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1
    }};
}

/// Decodes one row of `COLUMNS` into a [`StoredEvent`]; a macro because the row type differs
/// per back end while the code is the same.
macro_rules! decode_row {
    ($row:expr) => {{
        let row = $row;
        let text = |i: usize| -> Result<Option<String>, sqlx::Error> { row.try_get(i) };
        let int = |i: usize| -> Result<Option<i64>, sqlx::Error> { row.try_get(i) };
        let agent_id: String = row.try_get(0)?;
        let seq: i64 = row.try_get(1)?;
        let time_ms: i64 = row.try_get(2)?;
        let received_ms: i64 = row.try_get(3)?;
        let connection = palisade_proto::Connection {
            app_path: text(4)?,
            app_name: text(5)?,
            app_sha256: text(6)?,
            cmdline: text(7)?,
            user: text(8)?,
            uid: int(9)?.map(u32_of).transpose()?,
            parent_path: text(10)?,
            cgroup: text(11)?,
            unit: text(12)?,
            container_id: text(13)?,
            domain: text(14)?,
            src_ip: text(15)?.map(|s| ip_of(&s)).transpose()?,
            src_port: int(17)?.map(u16_of).transpose()?,
            dst_ip: text(18)?.map(|s| ip_of(&s)).transpose()?,
            dst_port: int(20)?.map(u16_of).transpose()?,
            protocol: text(21)?.map(|s| protocol_of(&s)).transpose()?,
            direction: direction_of(&row.try_get::<String, _>(22)?)?,
        };
        let traffic = Traffic {
            bytes_out: u64_of(row.try_get(29)?)?,
            bytes_in: u64_of(row.try_get(30)?)?,
            packets_out: u64_of(row.try_get(31)?)?,
            packets_in: u64_of(row.try_get(32)?)?,
            duration_ms: u64_of(row.try_get(33)?)?,
        };
        StoredEvent {
            agent_id,
            time: rfc3339(time_ms),
            received_at: rfc3339(received_ms),
            event: ConnectionEvent {
                seq: u64_of(seq)?,
                time_ms,
                connection,
                pid: int(23)?.map(u32_of).transpose()?,
                sni: text(24)?,
                http_host: text(34)?,
                action: action_of(&row.try_get::<String, _>(25)?)?,
                verdict: verdict_of(&row.try_get::<String, _>(26)?)?,
                rule: text(27)?,
                policy_version: int(28)?,
                traffic,
                update_of: None,
            },
        }
    }};
}

impl Store {
    /// Stores several batches in one transaction, all or nothing: one commit for many agents'
    /// batches is what makes ingestion fast. A batch stored before (same agent and batch number,
    /// also twice in `batches`) is recognised and nothing of it is written; an event stored before
    /// (same agent, sequence number and time) is skipped. Update records
    /// ([`ConnectionEvent::update_of`]) are not events of their own: after the events are in,
    /// they complete the events they name.
    ///
    /// Every number must already fit an `i64` and every text be free of NUL bytes (the events
    /// service validates).
    pub async fn store_event_batches(
        &self,
        batches: &[&NewBatch],
    ) -> Result<BatchesStored, StoreError> {
        // Rows are locked in key order so that two writers storing overlapping groups (an agent
        // re-sending a batch that is still queued) cannot deadlock.
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by_key(|&i| batches.get(i).map(|b| (&b.agent_id, b.batch_seq)));
        let mut fresh = vec![false; batches.len()];
        match &self.pool {
            Pool::Sqlite { writes, .. } => {
                let mut tx = writes.begin().await?;
                let mut rows: Vec<(&NewBatch, &ConnectionEvent)> = Vec::new();
                for &i in &order {
                    let Some(&batch) = batches.get(i) else {
                        continue;
                    };
                    if !record_batch!(tx, batch) {
                        continue;
                    }
                    if let Some(f) = fresh.get_mut(i) {
                        *f = true;
                    }
                    rows.extend(
                        batch
                            .events
                            .iter()
                            .filter(|e| e.update_of.is_none())
                            .map(|event| (batch, event)),
                    );
                }
                let sql = (
                    insert_sql(SQLITE_ROWS_PER_INSERT),
                    insert_sql(rows.len() % SQLITE_ROWS_PER_INSERT),
                );
                // Usually no event of a new batch was stored before: insert them all, inside a
                // savepoint. When some were (fewer rows went in), insert again the slower way
                // that tells which rows are new, so that the roll-ups count only those.
                sqlx::query("SAVEPOINT direct_insert")
                    .execute(&mut *tx)
                    .await?;
                let mut chunks = rows.chunks(SQLITE_ROWS_PER_INSERT);
                let mut next = chunks.next().map(|c| insert_sqlite(&sql, c)).transpose()?;
                let mut stored = 0;
                while let Some(insert) = next {
                    // The next rows are bound while SQLite's thread inserts these.
                    let (inserted, following) = tokio::join!(insert.execute(&mut *tx), async {
                        chunks.next().map(|c| insert_sqlite(&sql, c)).transpose()
                    });
                    stored += inserted?.rows_affected();
                    next = following?;
                }
                let mut rollup = Rollup::default();
                if usize::try_from(stored).is_ok_and(|n| n == rows.len()) {
                    sqlx::query("RELEASE SAVEPOINT direct_insert")
                        .execute(&mut *tx)
                        .await?;
                    for &(batch, event) in &rows {
                        rollup.add(&batch.agent_id, event);
                    }
                } else {
                    sqlx::query("ROLLBACK TO SAVEPOINT direct_insert")
                        .execute(&mut *tx)
                        .await?;
                    let mut new = Vec::new();
                    for chunk in rows.chunks(SQLITE_ROWS_PER_INSERT) {
                        let sql = format!("{} {RETURNING_KEY}", insert_sql(chunk.len()));
                        let keys: Vec<(String, i64, i64)> =
                            sqlx::query_as_with(&sql, bind_sqlite(chunk)?)
                                .fetch_all(&mut *tx)
                                .await?;
                        new.extend(keys);
                    }
                    stored = u64::try_from(new.len()).unwrap_or(u64::MAX);
                    for (batch, event) in only_new(&rows, new) {
                        rollup.add(&batch.agent_id, event);
                    }
                }
                for u in merged_updates(batches, &fresh) {
                    sqlx::query(UPDATE_SQLITE)
                        .bind(u.sni)
                        .bind(u.http_host)
                        .bind(u.traffic.map(|t| to_i64(t.bytes_out)))
                        .bind(u.traffic.map(|t| to_i64(t.bytes_in)))
                        .bind(u.traffic.map(|t| to_i64(t.packets_out)))
                        .bind(u.traffic.map(|t| to_i64(t.packets_in)))
                        .bind(u.traffic.map(|t| to_i64(t.duration_ms)))
                        .bind(u.agent_id)
                        .bind(u.seq)
                        .bind(u.time_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                write_rollup!(tx, &rollup);
                tx.commit().await?;
                Ok(BatchesStored {
                    fresh,
                    events_stored: stored,
                })
            }
            Pool::Postgres(pool) => {
                let mut days: Vec<i64> = batches
                    .iter()
                    .flat_map(|b| &b.events)
                    .map(|e| e.time_ms.div_euclid(DAY_MS))
                    .collect();
                days.sort_unstable();
                days.dedup();
                sqlx::query("SELECT palisade_event_partition(d) FROM unnest($1::BIGINT[]) AS d")
                    .bind(&days)
                    .execute(pool)
                    .await?;
                let mut tx = pool.begin().await?;
                let mut data = Vec::new();
                let mut rows: Vec<(&NewBatch, &ConnectionEvent)> = Vec::new();
                for &i in &order {
                    let Some(batch) = batches.get(i) else {
                        continue;
                    };
                    if !record_batch!(tx, batch) {
                        continue;
                    }
                    if let Some(f) = fresh.get_mut(i) {
                        *f = true;
                    }
                    data.reserve(batch.events.len() * 256);
                    for event in batch.events.iter().filter(|e| e.update_of.is_none()) {
                        copy_line(&mut data, &batch.agent_id, batch.received_ms, event);
                        rows.push((batch, event));
                    }
                }
                // Usually no event of a new batch was stored before: copy straight into the
                // events table, inside a savepoint. When one was (the unique key refuses the
                // copy), go the slower way round a staging table that skips what exists.
                sqlx::query("SAVEPOINT direct_copy")
                    .execute(&mut *tx)
                    .await?;
                let copied = copy_rows(&mut tx, "connection_events", &data).await;
                let mut rollup = Rollup::default();
                let stored = match copied {
                    Ok(n) => {
                        sqlx::query("RELEASE SAVEPOINT direct_copy")
                            .execute(&mut *tx)
                            .await?;
                        for &(batch, event) in &rows {
                            rollup.add(&batch.agent_id, event);
                        }
                        n
                    }
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                        sqlx::query("ROLLBACK TO SAVEPOINT direct_copy")
                            .execute(&mut *tx)
                            .await?;
                        let new = copy_skipping_stored(&mut tx, &data).await?;
                        let n = u64::try_from(new.len()).unwrap_or(u64::MAX);
                        for (batch, event) in only_new(&rows, new) {
                            rollup.add(&batch.agent_id, event);
                        }
                        n
                    }
                    Err(e) => return Err(e.into()),
                };
                update_postgres(&mut tx, &merged_updates(batches, &fresh)).await?;
                write_rollup!(tx, &rollup);
                tx.commit().await?;
                Ok(BatchesStored {
                    fresh,
                    events_stored: stored,
                })
            }
        }
    }

    /// The times (ms since the epoch) of the oldest and the newest stored event; `None` when
    /// none is stored.
    pub async fn event_time_span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        // Two subqueries: SQLite reads a lone MIN or MAX from the index, not both at once.
        let (oldest, newest): (Option<i64>, Option<i64>) = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT (SELECT MIN(time_ms) FROM connection_events), \
                 (SELECT MAX(time_ms) FROM connection_events)",
            )
            .fetch_one(pool)
            .await
        })?;
        Ok(oldest.zip(newest))
    }

    /// Up to `limit` events that meet every condition, newest first (by time, then agent id,
    /// then sequence number, descending), starting after `after`.
    pub async fn query_events(
        &self,
        conditions: &[EventCondition],
        after: Option<&EventKey>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM connection_events WHERE TRUE");
        let mut binds: Vec<Bind> = Vec::new();
        for condition in conditions {
            let test = test_sql(&condition.test, &mut binds);
            if condition.negated {
                sql.push_str(&format!(" AND NOT COALESCE(({test}), FALSE)"));
            } else {
                sql.push_str(&format!(" AND ({test})"));
            }
        }
        if let Some(key) = after {
            let t = param(&mut binds, Bind::Int(key.time_ms));
            let a = param(&mut binds, Bind::Text(key.agent_id.clone()));
            let s = param(&mut binds, Bind::Int(key.seq));
            sql.push_str(&format!(" AND (time_ms, agent_id, seq) < ({t}, {a}, {s})"));
        }
        let l = param(&mut binds, Bind::Int(limit));
        sql.push_str(&format!(
            " ORDER BY time_ms DESC, agent_id DESC, seq DESC LIMIT {l}"
        ));
        let events = with_pool!(self, pool => {
            let mut query = sqlx::query(&sql);
            for bind in binds {
                query = match bind {
                    Bind::Int(n) => query.bind(n),
                    Bind::Text(s) => query.bind(s),
                };
            }
            let rows = query.fetch_all(pool).await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                events.push(decode_row!(row));
            }
            events
        });
        Ok(events)
    }

    /// Removes the events older than `cutoff_ms`, with their minutes in the roll-ups: on
    /// PostgreSQL the day partitions that end at or before it (a partition that straddles the
    /// cutoff stays whole until its day is past), on SQLite every event before the start of the
    /// cutoff's minute (so that no roll-up minute is removed in part). Batch records received
    /// before the cutoff are forgotten too.
    pub async fn remove_events_before(
        &self,
        cutoff_ms: i64,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        match &self.pool {
            Pool::Sqlite { writes, .. } => {
                let minute = minute_of(cutoff_ms);
                let mut tx = writes.begin().await?;
                report.events_removed =
                    sqlx::query("DELETE FROM connection_events WHERE time_ms < $1")
                        .bind(minute)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                delete_minutes_before!(tx, minute);
                report.batches_forgotten = sqlx::query(FORGET_BATCHES)
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
            }
            Pool::Postgres(pool) => {
                let partitions: Vec<(String,)> = sqlx::query_as(
                    "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                     WHERE i.inhparent = 'connection_events'::regclass ORDER BY c.relname",
                )
                .fetch_all(pool)
                .await?;
                for (name,) in partitions {
                    let Some(end_ms) = partition_end_ms(&name) else {
                        tracing::warn!(partition = %name, "not a day partition; left alone");
                        continue;
                    };
                    if end_ms > cutoff_ms {
                        continue;
                    }
                    let mut tx = pool.begin().await?;
                    // Another node's retention run may be dropping the same partition: one
                    // at a time, and a partition gone meanwhile is skipped.
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(RETENTION_LOCK)
                        .execute(&mut *tx)
                        .await?;
                    let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL")
                        .bind(&name)
                        .fetch_one(&mut *tx)
                        .await?;
                    if !exists {
                        continue;
                    }
                    // `name` matched connection_events_pYYYYMMDD, so it needs no quoting
                    // beyond this.
                    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM \"{name}\""))
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(&format!("DROP TABLE \"{name}\""))
                        .execute(&mut *tx)
                        .await?;
                    delete_minutes_before!(tx, end_ms);
                    tx.commit().await?;
                    report.events_removed += u64::try_from(n).unwrap_or(0);
                    report.partitions_dropped.push(name);
                }
                let mut tx = pool.begin().await?;
                report.batches_forgotten = sqlx::query(FORGET_BATCHES)
                    .bind(cutoff_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
            }
        }
        Ok(report)
    }

    /// PostgreSQL: the names of the event partitions, oldest first (empty on SQLite).
    pub async fn event_partitions(&self) -> Result<Vec<String>, StoreError> {
        match &self.pool {
            Pool::Sqlite { .. } => Ok(Vec::new()),
            Pool::Postgres(pool) => {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                     WHERE i.inhparent = 'connection_events'::regclass ORDER BY c.relname",
                )
                .fetch_all(pool)
                .await?;
                Ok(rows.into_iter().map(|(n,)| n).collect())
            }
        }
    }
}

/// The advisory lock key (PostgreSQL) that lets one retention run at a time drop a partition.
const RETENTION_LOCK: i64 = 0x7061_6c69_7265_7465; // "palirete"

/// Forgets the batch records received before `$1`.
const FORGET_BATCHES: &str = "DELETE FROM event_batches WHERE received_ms < $1";

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// RFC 3339 of a millisecond time (the epoch itself for a time jiff cannot represent).
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

fn corrupt(what: &str, value: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("event {what} {value}"))
}

fn u64_of(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt("counter", &n))
}

fn u32_of(n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| corrupt("number", &n))
}

fn u16_of(n: i64) -> Result<u16, StoreError> {
    u16::try_from(n).map_err(|_| corrupt("port", &n))
}

fn ip_of(s: &str) -> Result<IpAddr, StoreError> {
    s.parse().map_err(|_| corrupt("address", &s))
}

fn protocol_of(s: &str) -> Result<Protocol, StoreError> {
    Protocol::ALL
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| corrupt("protocol", &s))
}

fn direction_of(s: &str) -> Result<Direction, StoreError> {
    Direction::ALL
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| corrupt("direction", &s))
}

fn action_of(s: &str) -> Result<Action, StoreError> {
    Action::from_keyword(s).ok_or_else(|| corrupt("action", &s))
}

fn verdict_of(s: &str) -> Result<Verdict, StoreError> {
    match s {
        "allow" => Ok(Verdict::Allow),
        "block" => Ok(Verdict::Block),
        other => Err(corrupt("verdict", &other)),
    }
}

/// The keyword of a verdict, as stored.
pub fn verdict_keyword(v: Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Block => "block",
    }
}

/// Saturating: the service refuses numbers above `i64::MAX` before they get here.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The statement that inserts `rows` events (every column, `?` parameters), skipping those
/// stored before.
fn insert_sql(rows: usize) -> String {
    let columns = COLUMNS.split(',').count();
    let row = format!("({})", vec!["?"; columns].join(","));
    format!(
        "INSERT INTO connection_events ({COLUMNS}) VALUES {} \
         ON CONFLICT (agent_id, seq, time_ms) DO NOTHING",
        vec![row.as_str(); rows].join(",")
    )
}

/// The statement inserting `rows` (each event with its batch): `sql.0` for a full chunk of
/// [`SQLITE_ROWS_PER_INSERT`] rows, else `sql.1`.
fn insert_sqlite<'q>(
    sql: &'q (String, String),
    rows: &[(&'q NewBatch, &'q ConnectionEvent)],
) -> Result<sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>, StoreError> {
    let sql = if rows.len() == SQLITE_ROWS_PER_INSERT {
        &sql.0
    } else {
        &sql.1
    };
    Ok(sqlx::query_with(sql, bind_sqlite(rows)?))
}

/// The parameters of [`insert_sql`] for `rows`, in `COLUMNS` order.
fn bind_sqlite<'q>(
    rows: &[(&'q NewBatch, &'q ConnectionEvent)],
) -> Result<sqlx::sqlite::SqliteArguments<'q>, StoreError> {
    use sqlx::Arguments as _;
    let mut arguments = sqlx::sqlite::SqliteArguments::default();
    let add = |result: Result<(), sqlx::error::BoxDynError>| {
        result.map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
    };
    let int = |n: Option<u32>| n.map(i64::from);
    for &(batch, event) in rows {
        let c = &event.connection;
        add(arguments.add(batch.agent_id.as_str()))?;
        add(arguments.add(to_i64(event.seq)))?;
        add(arguments.add(event.time_ms))?;
        add(arguments.add(batch.received_ms))?;
        add(arguments.add(c.app_path.as_deref()))?;
        add(arguments.add(c.app_name.as_deref()))?;
        add(arguments.add(c.app_sha256.as_deref()))?;
        add(arguments.add(c.cmdline.as_deref()))?;
        add(arguments.add(c.user.as_deref()))?;
        add(arguments.add(int(c.uid)))?;
        add(arguments.add(c.parent_path.as_deref()))?;
        add(arguments.add(c.cgroup.as_deref()))?;
        add(arguments.add(c.unit.as_deref()))?;
        add(arguments.add(c.container_id.as_deref()))?;
        add(arguments.add(c.domain.as_deref()))?;
        add(arguments.add(c.src_ip.map(|ip| ip.to_string())))?;
        add(arguments.add(c.src_ip.map(ip_key)))?;
        add(arguments.add(c.src_port.map(i64::from)))?;
        add(arguments.add(c.dst_ip.map(|ip| ip.to_string())))?;
        add(arguments.add(c.dst_ip.map(ip_key)))?;
        add(arguments.add(c.dst_port.map(i64::from)))?;
        add(arguments.add(c.protocol.map(Protocol::as_str)))?;
        add(arguments.add(c.direction.as_str()))?;
        add(arguments.add(int(event.pid)))?;
        add(arguments.add(event.sni.as_deref()))?;
        add(arguments.add(event.action.as_str()))?;
        add(arguments.add(verdict_keyword(event.verdict)))?;
        add(arguments.add(event.rule.as_deref()))?;
        add(arguments.add(event.policy_version))?;
        add(arguments.add(to_i64(event.traffic.bytes_out)))?;
        add(arguments.add(to_i64(event.traffic.bytes_in)))?;
        add(arguments.add(to_i64(event.traffic.packets_out)))?;
        add(arguments.add(to_i64(event.traffic.packets_in)))?;
        add(arguments.add(to_i64(event.traffic.duration_ms)))?;
        add(arguments.add(event.http_host.as_deref()))?;
    }
    Ok(arguments)
}

/// Completes one stored event with what its agent saw later (`$1` ...: server name, HTTP host,
/// traffic; a null keeps what is stored).
const UPDATE_SQLITE: &str = "UPDATE connection_events SET sni = COALESCE($1, sni), \
     http_host = COALESCE($2, http_host), bytes_out = COALESCE($3, bytes_out), \
     bytes_in = COALESCE($4, bytes_in), packets_out = COALESCE($5, packets_out), \
     packets_in = COALESCE($6, packets_in), duration_ms = COALESCE($7, duration_ms) \
     WHERE agent_id = $8 AND seq = $9 AND time_ms = $10";

/// What the update records of fresh batches add to one stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EventUpdate<'a> {
    agent_id: &'a str,
    seq: i64,
    time_ms: i64,
    sni: Option<&'a str>,
    http_host: Option<&'a str>,
    traffic: Option<Traffic>,
}

/// The update records ([`ConnectionEvent::update_of`]) of the batches marked `fresh`, merged
/// per event in the order the agent numbered them (a later server name or traffic replaces an
/// earlier one), so that each event is updated once. An update whose event is not stored
/// changes nothing.
fn merged_updates<'a>(batches: &[&'a NewBatch], fresh: &[bool]) -> Vec<EventUpdate<'a>> {
    let mut records: Vec<(&str, &ConnectionEvent)> = batches
        .iter()
        .zip(fresh)
        .filter(|(_, fresh)| **fresh)
        .flat_map(|(batch, _)| batch.events.iter().map(|e| (batch.agent_id.as_str(), e)))
        .filter(|(_, e)| e.update_of.is_some())
        .collect();
    records.sort_by_key(|(agent, e)| (*agent, e.seq));
    let mut merged: std::collections::BTreeMap<(&str, u64), EventUpdate<'a>> =
        std::collections::BTreeMap::new();
    for (agent_id, e) in records {
        let Some(of) = e.update_of else { continue };
        let update = merged.entry((agent_id, of)).or_insert(EventUpdate {
            agent_id,
            seq: to_i64(of),
            time_ms: e.time_ms,
            sni: None,
            http_host: None,
            traffic: None,
        });
        update.sni = e.sni.as_deref().or(update.sni);
        update.http_host = e.http_host.as_deref().or(update.http_host);
        if e.traffic != Traffic::default() {
            update.traffic = Some(e.traffic);
        }
    }
    merged.into_values().collect()
}

/// Applies `updates` in one statement.
async fn update_postgres(
    tx: &mut sqlx::PgConnection,
    updates: &[EventUpdate<'_>],
) -> Result<(), sqlx::Error> {
    if updates.is_empty() {
        return Ok(());
    }
    let traffic = |f: fn(&Traffic) -> u64| -> Vec<Option<i64>> {
        updates
            .iter()
            .map(|u| u.traffic.as_ref().map(|t| to_i64(f(t))))
            .collect()
    };
    sqlx::query(
        "UPDATE connection_events e SET sni = COALESCE(u.sni, e.sni), \
         http_host = COALESCE(u.http_host, e.http_host), \
         bytes_out = COALESCE(u.bytes_out, e.bytes_out), \
         bytes_in = COALESCE(u.bytes_in, e.bytes_in), \
         packets_out = COALESCE(u.packets_out, e.packets_out), \
         packets_in = COALESCE(u.packets_in, e.packets_in), \
         duration_ms = COALESCE(u.duration_ms, e.duration_ms) \
         FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], \
                     $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[]) \
           AS u(agent_id, seq, time_ms, sni, http_host, bytes_out, bytes_in, packets_out, \
                packets_in, duration_ms) \
         WHERE e.agent_id = u.agent_id AND e.seq = u.seq AND e.time_ms = u.time_ms",
    )
    .bind(updates.iter().map(|u| u.agent_id).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.seq).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.time_ms).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.sni).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.http_host).collect::<Vec<_>>())
    .bind(traffic(|t| t.bytes_out))
    .bind(traffic(|t| t.bytes_in))
    .bind(traffic(|t| t.packets_out))
    .bind(traffic(|t| t.packets_in))
    .bind(traffic(|t| t.duration_ms))
    .execute(tx)
    .await?;
    Ok(())
}

/// Copies `COPY` text rows into `table`; how many rows went in.
async fn copy_rows(
    conn: &mut sqlx::PgConnection,
    table: &str,
    data: &[u8],
) -> Result<u64, sqlx::Error> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({COLUMNS}) FROM STDIN"))
        .await?;
    copy.send(data).await?;
    copy.finish().await
}

/// Copies rows into a temporary staging table and moves those not stored yet into the events
/// table; the keys of those that were new. The staging table lives as long as the connection;
/// its rows only until the transaction ends.
async fn copy_skipping_stored(
    tx: &mut sqlx::PgConnection,
    data: &[u8],
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    // Checked first: `CREATE ... IF NOT EXISTS` would log a notice every time.
    let (staged,): (bool,) =
        sqlx::query_as("SELECT to_regclass('pg_temp.event_staging') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
    if !staged {
        sqlx::query(
            "CREATE TEMPORARY TABLE event_staging (LIKE connection_events) ON COMMIT DELETE ROWS",
        )
        .execute(&mut *tx)
        .await?;
    }
    copy_rows(tx, "event_staging", data).await?;
    sqlx::query_as(&format!(
        "INSERT INTO connection_events ({COLUMNS}) SELECT {COLUMNS} FROM event_staging \
         ON CONFLICT (agent_id, seq, time_ms) DO NOTHING {RETURNING_KEY}"
    ))
    .fetch_all(&mut *tx)
    .await
}

/// Appended to an insert of events: the key of each row that went in.
const RETURNING_KEY: &str = "RETURNING agent_id, seq, time_ms";

/// The rows of `rows` whose key is in `new` (the keys of the rows an insert stored), each key
/// taken once: of two rows with the same key, only the first went in.
fn only_new<'r, 'a>(
    rows: &'r [(&'a NewBatch, &'a ConnectionEvent)],
    new: Vec<(String, i64, i64)>,
) -> impl Iterator<Item = (&'a NewBatch, &'a ConnectionEvent)> + 'r {
    let mut new: std::collections::HashSet<(String, i64, i64)> = new.into_iter().collect();
    rows.iter()
        .filter(move |(batch, event)| {
            new.remove(&(batch.agent_id.clone(), to_i64(event.seq), event.time_ms))
        })
        .copied()
}

/// Appends one event as a line of PostgreSQL's `COPY` text format: tab-separated, `\N` for
/// null, and backslash, tab, newline and carriage return escaped so that hostile text cannot
/// end a field or a row early.
fn copy_line(out: &mut Vec<u8>, agent_id: &str, received_ms: i64, event: &ConnectionEvent) {
    let c = &event.connection;
    let ints = |v: Option<i64>| v.map(|n| n.to_string());
    let fields: [Option<String>; 35] = [
        Some(agent_id.to_owned()),
        Some(to_i64(event.seq).to_string()),
        Some(event.time_ms.to_string()),
        Some(received_ms.to_string()),
        c.app_path.clone(),
        c.app_name.clone(),
        c.app_sha256.clone(),
        c.cmdline.clone(),
        c.user.clone(),
        ints(c.uid.map(i64::from)),
        c.parent_path.clone(),
        c.cgroup.clone(),
        c.unit.clone(),
        c.container_id.clone(),
        c.domain.clone(),
        c.src_ip.map(|ip| ip.to_string()),
        c.src_ip.map(ip_key),
        ints(c.src_port.map(i64::from)),
        c.dst_ip.map(|ip| ip.to_string()),
        c.dst_ip.map(ip_key),
        ints(c.dst_port.map(i64::from)),
        c.protocol.map(|p| p.as_str().to_owned()),
        Some(c.direction.as_str().to_owned()),
        ints(event.pid.map(i64::from)),
        event.sni.clone(),
        Some(event.action.as_str().to_owned()),
        Some(verdict_keyword(event.verdict).to_owned()),
        event.rule.clone(),
        ints(event.policy_version),
        Some(to_i64(event.traffic.bytes_out).to_string()),
        Some(to_i64(event.traffic.bytes_in).to_string()),
        Some(to_i64(event.traffic.packets_out).to_string()),
        Some(to_i64(event.traffic.packets_in).to_string()),
        Some(to_i64(event.traffic.duration_ms).to_string()),
        event.http_host.clone(),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match field {
            None => out.extend_from_slice(b"\\N"),
            Some(text) => copy_escape(out, text),
        }
    }
    out.push(b'\n');
}

/// Escapes `text` for a field of the `COPY` text format.
pub(crate) fn copy_escape(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

fn param(binds: &mut Vec<Bind>, bind: Bind) -> String {
    binds.push(bind);
    format!("${}", binds.len())
}

fn test_sql(test: &EventTest, binds: &mut Vec<Bind>) -> String {
    let mut eq = |column: &str, value: Bind| format!("{column} = {}", param(binds, value));
    match test {
        EventTest::Agent(v) => eq("agent_id", Bind::Text(v.clone())),
        EventTest::AppPath(v) => eq("app_path", Bind::Text(v.clone())),
        EventTest::AppName(v) => eq("app_name", Bind::Text(v.clone())),
        EventTest::User(v) => eq("user_name", Bind::Text(v.clone())),
        EventTest::Domain(v) => eq("domain", Bind::Text(v.clone())),
        EventTest::Rule(v) => eq("rule", Bind::Text(v.clone())),
        EventTest::Port(p) => eq("dst_port", Bind::Int(i64::from(*p))),
        EventTest::Protocol(p) => eq("protocol", Bind::Text(p.as_str().to_owned())),
        EventTest::Action(a) => eq("action", Bind::Text(a.as_str().to_owned())),
        EventTest::DomainSuffix(suffix) => {
            let mut pattern = String::from("%");
            for ch in suffix.chars() {
                if matches!(ch, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(ch);
            }
            format!(
                "domain LIKE {} ESCAPE '\\'",
                param(binds, Bind::Text(pattern))
            )
        }
        EventTest::Ip { low, high } => {
            let a = param(binds, Bind::Text(low.clone()));
            let b = param(binds, Bind::Text(high.clone()));
            let c = param(binds, Bind::Text(low.clone()));
            let d = param(binds, Bind::Text(high.clone()));
            format!(
                "(dst_ip_key >= {a} AND dst_ip_key <= {b}) OR (src_ip_key >= {c} AND src_ip_key <= {d})"
            )
        }
        EventTest::From(ms) => format!("time_ms >= {}", param(binds, Bind::Int(*ms))),
        EventTest::To(ms) => format!("time_ms < {}", param(binds, Bind::Int(*ms))),
    }
}

/// The end (exclusive, ms) of the day partition `connection_events_pYYYYMMDD`.
fn partition_end_ms(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("connection_events_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i16 = digits.get(0..4)?.parse().ok()?;
    let month: i8 = digits.get(4..6)?.parse().ok()?;
    let day: i8 = digits.get(6..8)?.parse().ok()?;
    let date = jiff::civil::Date::new(year, month, day).ok()?;
    let start = date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(start.as_millisecond() + DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_cannot_break_out_of_a_field() {
        let mut out = Vec::new();
        copy_escape(&mut out, "a\tb\nc\\N\rd");
        assert_eq!(out, b"a\\tb\\nc\\\\N\\rd");
    }

    #[test]
    fn address_keys_order_blocks() {
        let v4 = ip_key("10.0.0.1".parse().unwrap());
        assert_eq!(v4, "00000000000000000000ffff0a000001");
        assert_eq!(ip_key("::ffff:10.0.0.1".parse().unwrap()), v4);
        assert_eq!(ip_key("2001:db8::1".parse().unwrap()).len(), 32);
    }

    #[test]
    fn partition_names_give_their_day() {
        assert_eq!(
            partition_end_ms("connection_events_p19700101"),
            Some(DAY_MS)
        );
        assert_eq!(partition_end_ms("connection_events_p1970010"), None);
        assert_eq!(partition_end_ms("connection_events_p19701301"), None);
    }
}
