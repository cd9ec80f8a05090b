//! The events service: storing the batches agents send (validated, exactly once, all or
//! nothing), querying them with filters and a cursor, exporting them as JSON lines or CSV, and
//! retention.
//!
//! Query parameters (`GET /api/v1/events`) are parsed here, not in the web layer, so that every
//! caller gets the same meaning: see [`EventQuery::from_pairs`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use jiff::Timestamp;
use palisade_proto::{Action, ConnectionEvent, Protocol};

use crate::error::Error;
use crate::role::{Permission, Principal};
use crate::store::{
    BatchesStored, EventCondition, EventKey, EventTest, NewBatch, RetentionReport, Store,
    StoredEvent, ip_key,
};

/// Most events accepted in one batch.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Longest text field accepted in an event, in bytes (command lines are the longest).
pub const MAX_TEXT_LEN: usize = 4096;

/// Longest domain accepted (the DNS limit).
pub const MAX_DOMAIN_LEN: usize = 253;

/// Longest agent id accepted.
pub const MAX_AGENT_ID_LEN: usize = 128;

/// How far before its batch's arrival an event may be (an endpoint may be offline for a long
/// time and send its spool later): 366 days.
pub const MAX_AGE_MS: i64 = 366 * 86_400_000;

/// How far after its batch's arrival an event may be (endpoint clocks are not exact): 1 day.
pub const MAX_AHEAD_MS: i64 = 86_400_000;

/// Default page size of `GET /api/v1/events`.
pub const DEFAULT_LIMIT: i64 = 100;

/// Largest page size of `GET /api/v1/events`.
pub const MAX_LIMIT: i64 = 1000;

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The batch is stored; this many of its events were new (the others were stored before,
    /// in another batch).
    Stored(usize),
    /// This batch (same agent, same batch number) was stored before; nothing was written.
    Duplicate,
}

/// Stores batch `batch_seq` of agent `agent_id` by itself: [`check`] then [`store_batches`].
/// The gateway goes through the ingest pipeline (`crate::ingest`) instead, which stores many
/// agents' batches together.
pub async fn ingest(
    store: &Store,
    agent_id: &str,
    batch_seq: u64,
    events: &[ConnectionEvent],
    received_at: Timestamp,
) -> Result<IngestOutcome, Error> {
    let batch = check(store, agent_id, batch_seq, events.to_vec(), received_at)?;
    let stored = store_batches(store, &[&batch]).await?;
    Ok(if stored.fresh == [true] {
        IngestOutcome::Stored(usize::try_from(stored.events_stored).unwrap_or(usize::MAX))
    } else {
        IngestOutcome::Duplicate
    })
}

/// Validates batch `batch_seq` of agent `agent_id` and makes it ready to store (domain in lower
/// case, IPv4-mapped addresses as IPv4). One bad event refuses the whole batch with
/// [`Error::BadRequest`] naming it by position and sequence number; the refusal is counted.
pub fn check(
    store: &Store,
    agent_id: &str,
    batch_seq: u64,
    events: Vec<ConnectionEvent>,
    received_at: Timestamp,
) -> Result<NewBatch, Error> {
    let n = u64::try_from(events.len()).unwrap_or(u64::MAX);
    check_batch(agent_id, batch_seq, events, received_at.as_millisecond()).map_err(|reason| {
        store.ingest_counters().refused(n);
        tracing::warn!(agent = %agent_id.escape_debug(), batch = batch_seq, %reason, "event batch refused");
        Error::BadRequest(reason)
    })
}

/// Stores checked batches in one transaction (see `Store::store_event_batches`: a batch or an
/// event stored before is not stored again) and counts what happened.
pub async fn store_batches(store: &Store, batches: &[&NewBatch]) -> Result<BatchesStored, Error> {
    let stored = store.store_event_batches(batches).await?;
    let counters = store.ingest_counters();
    let (mut fresh_batches, mut fresh_events) = (0, 0);
    for (batch, fresh) in batches.iter().zip(&stored.fresh) {
        // Update records complete stored events; they are not counted as events.
        let events = batch
            .events
            .iter()
            .filter(|e| e.update_of.is_none())
            .count();
        let events = u64::try_from(events).unwrap_or(u64::MAX);
        if *fresh {
            fresh_batches += 1;
            fresh_events += events;
        } else {
            counters.duplicate(events);
            tracing::debug!(
                agent = batch.agent_id,
                batch = batch.batch_seq,
                "re-sent event batch recognised"
            );
        }
    }
    counters.stored(
        fresh_batches,
        stored.events_stored,
        fresh_events.saturating_sub(stored.events_stored),
    );
    Ok(stored)
}

/// Removes the events older than `older_than` (see `Store::remove_events_before`: on
/// PostgreSQL whole day partitions, on SQLite each event) and says what went.
pub async fn apply_retention(
    store: &Store,
    older_than: Timestamp,
) -> Result<RetentionReport, Error> {
    let report = store
        .remove_events_before(older_than.as_millisecond())
        .await?;
    tracing::info!(
        older_than = %older_than,
        events = report.events_removed,
        partitions = report.partitions_dropped.len(),
        "event retention applied"
    );
    Ok(report)
}

/// How `GET /api/v1/events` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One page: `{"events": [...], "next_cursor": "..." | null}`.
    Json,
    /// Every matching event (or `limit` of them), one JSON object per line.
    Jsonl,
    /// Every matching event (or `limit` of them), CSV with a header row.
    Csv,
}

/// A parsed event query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Every condition must hold.
    pub conditions: Vec<EventCondition>,
    /// Continue after this event (from a previous page's `next_cursor`).
    pub after: Option<EventKey>,
    /// Page size (JSON) or most events exported (JSON lines, CSV; `None` = all).
    pub limit: Option<i64>,
    /// The answer's format.
    pub format: OutputFormat,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
}

impl EventQuery {
    /// Parses query parameters (name, value), in order.
    ///
    /// Filters: `agent`, `app` (a value with `/` is an application path, otherwise a process
    /// name), `user`, `domain` (exact, or `*.example.com` for every name under example.com),
    /// `ip` (an address or a CIDR block; matches the source or the destination), `port` (the
    /// destination port), `protocol` (`tcp`, `udp`, `icmp`), `action` (`allow`, `block`,
    /// `alert`, `log`), `rule`, `from` (inclusive) and `to` (exclusive) as RFC 3339 times. A
    /// value starting with `!` negates the filter (`domain=!*.example.com`); events without the
    /// field match a negated filter. A filter may be repeated: every one must hold.
    ///
    /// Also, at most once each: `cursor`, `limit` (1 to 1000, default 100 for JSON; for exports
    /// the most events written, default all), `format` (`json`, `jsonl`, `csv`).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<EventQuery, Error> {
        let mut query = EventQuery {
            conditions: Vec::new(),
            after: None,
            limit: None,
            format: OutputFormat::Json,
        };
        let mut seen_once: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if matches!(name.as_str(), "cursor" | "limit" | "format") {
                if seen_once.contains(&name.as_str()) {
                    return Err(bad(name, "may be given only once"));
                }
                seen_once.push(name);
            }
            match name.as_str() {
                "cursor" => query.after = Some(decode_cursor(value)?),
                "limit" => {
                    let limit = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=1_000_000_000).contains(n))
                        .ok_or_else(|| bad(name, "a positive whole number"))?;
                    query.limit = Some(limit);
                }
                "format" => {
                    query.format = match value.as_str() {
                        "json" => OutputFormat::Json,
                        "jsonl" => OutputFormat::Jsonl,
                        "csv" => OutputFormat::Csv,
                        _ => return Err(bad(name, "one of json, jsonl, csv")),
                    }
                }
                _ => {
                    let (negated, value) = match value.strip_prefix('!') {
                        Some(rest) => (true, rest),
                        None => (false, value.as_str()),
                    };
                    let test = parse_test(name, value)?;
                    query.conditions.push(EventCondition { negated, test });
                }
            }
        }
        if query.format == OutputFormat::Json && query.limit.is_some_and(|l| l > MAX_LIMIT) {
            return Err(bad(
                "limit",
                &format!("at most {MAX_LIMIT} events per page"),
            ));
        }
        Ok(query)
    }
}

/// One page of the events `query` selects (its format is ignored), newest first.
pub async fn list(store: &Store, who: &Principal, query: &EventQuery) -> Result<EventPage, Error> {
    who.require(Permission::ReadEvents)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let events = store
        .query_events(&query.conditions, query.after.as_ref(), limit)
        .await?;
    let full = i64::try_from(events.len()).is_ok_and(|n| n == limit);
    let next_cursor = events.last().filter(|_| full).map(encode_cursor);
    Ok(EventPage {
        events,
        next_cursor,
    })
}

/// A page of [`list_within`]: the events found, and how far back the search went when its
/// time ran out before the page was full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchedPage {
    /// The events found, newest first, and the cursor that continues after them (after the
    /// time searched, when the search stopped early).
    pub page: EventPage,
    /// When the search stopped before the page was full and before the oldest event: the
    /// oldest time searched (ms since the epoch). Older events were not looked at yet; the
    /// page's cursor continues from there.
    pub searched_back_to: Option<i64>,
}

/// The first window [`list_within`] searches, back from the newest event.
const FIRST_WINDOW_MS: i64 = 15 * 60_000;

/// Like [`list`], but searching back in time windows and stopping once `budget` is spent, so
/// that a filter that matches rarely (or never) answers within the budget instead of reading
/// every stored event: the console's log. The first window is the newest quarter of an hour;
/// each next window doubles, or shrinks to what the time left allows at the rate the last
/// window was read. A full page, or reaching the oldest event (or the `from` filter), ends the
/// search as [`list`] would; otherwise the page says how far back it searched.
///
/// `clock` measures the time spent (the server's clock, [`crate::Clock`]).
pub async fn list_within(
    store: &Store,
    who: &Principal,
    query: &EventQuery,
    budget: Duration,
    clock: &(dyn Fn() -> Timestamp + Send + Sync),
) -> Result<SearchedPage, Error> {
    who.require(Permission::ReadEvents)?;
    let started = clock();
    let spent = |since: Timestamp| {
        Duration::try_from(clock().duration_since(since)).unwrap_or(Duration::ZERO)
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let Some((oldest, newest)) = store.event_time_span().await? else {
        return Ok(SearchedPage::new(Vec::new(), None, None));
    };
    let bound = |pick: fn(&EventTest) -> Option<i64>| {
        query
            .conditions
            .iter()
            .filter(|c| !c.negated)
            .filter_map(move |c| pick(&c.test))
    };
    let floor = bound(|t| match t {
        EventTest::From(ms) => Some(*ms),
        _ => None,
    })
    .fold(oldest, i64::max);
    let mut high = bound(|t| match t {
        EventTest::To(ms) => Some(*ms),
        _ => None,
    })
    .fold(newest.saturating_add(1), i64::min);
    if let Some(after) = &query.after {
        high = high.min(after.time_ms.saturating_add(1));
    }
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut window = FIRST_WINDOW_MS;
    while high > floor {
        let low = high.saturating_sub(window).max(floor);
        let mut conditions = query.conditions.clone();
        for test in [EventTest::From(low), EventTest::To(high)] {
            conditions.push(EventCondition {
                negated: false,
                test,
            });
        }
        let wanted = limit.saturating_sub(i64::try_from(events.len()).unwrap_or(limit));
        let read_from = clock();
        let found = store
            .query_events(&conditions, query.after.as_ref(), wanted)
            .await?;
        let took = spent(read_from);
        events.extend(found);
        if i64::try_from(events.len()).is_ok_and(|n| n >= limit) {
            let next_cursor = events.last().map(encode_cursor);
            return Ok(SearchedPage::new(events, next_cursor, None));
        }
        high = low;
        let left = budget.saturating_sub(spent(started));
        if high > floor && left.is_zero() {
            let older = EventKey {
                time_ms: high,
                agent_id: String::new(),
                seq: 0,
            };
            return Ok(SearchedPage::new(
                events,
                Some(encode_key(&older)),
                Some(high),
            ));
        }
        window = next_window(window, took, left);
    }
    Ok(SearchedPage::new(events, None, None))
}

impl SearchedPage {
    fn new(
        events: Vec<StoredEvent>,
        next_cursor: Option<String>,
        searched_back_to: Option<i64>,
    ) -> SearchedPage {
        SearchedPage {
            page: EventPage {
                events,
                next_cursor,
            },
            searched_back_to,
        }
    }
}

/// The window after one of `window` ms that took `took` to read, with `left` of the budget:
/// twice as long, or as long as `left` allows at the same rate, whichever is shorter (at
/// least a second).
fn next_window(window: i64, took: Duration, left: Duration) -> i64 {
    let doubled = window.saturating_mul(2);
    if took.is_zero() {
        return doubled;
    }
    let fits = (window as f64 * left.as_secs_f64() / took.as_secs_f64()).min(doubled as f64);
    // In range: `fits` lies between 0 and `doubled`, an i64.
    #[allow(clippy::cast_possible_truncation)]
    let fits = fits as i64;
    fits.max(1_000)
}

/// Every event `query` selects (up to its `limit`), newest first, as a stream of chunks of
/// JSON lines or CSV (with a header row), read from the database a page at a time so memory
/// stays bounded whatever the number of events. The role is checked before the stream starts.
pub fn export(
    store: Arc<Store>,
    who: &Principal,
    query: EventQuery,
) -> Result<impl Stream<Item = Result<Vec<u8>, Error>> + Send + 'static, Error> {
    who.require(Permission::ReadEvents)?;
    const PAGE: i64 = 1000;
    struct State {
        store: Arc<Store>,
        query: EventQuery,
        remaining: Option<i64>,
        header: bool,
        done: bool,
    }
    let state = State {
        store,
        remaining: query.limit,
        header: query.format == OutputFormat::Csv,
        query,
        done: false,
    };
    Ok(futures_util::stream::unfold(state, |mut s| async move {
        if s.header {
            s.header = false;
            return Some((Ok(csv_header().into_bytes()), s));
        }
        if s.done {
            return None;
        }
        let page = s.remaining.map_or(PAGE, |r| r.min(PAGE));
        if page <= 0 {
            return None;
        }
        let events = match s
            .store
            .query_events(&s.query.conditions, s.query.after.as_ref(), page)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                s.done = true;
                tracing::error!(cause = %e, "event export failed");
                return Some((Err(Error::from(e)), s));
            }
        };
        let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
        if n < page {
            s.done = true;
        }
        if let Some(r) = &mut s.remaining {
            *r -= n;
        }
        if events.is_empty() {
            return None;
        }
        let mut out = String::new();
        for event in &events {
            match s.query.format {
                OutputFormat::Csv => out.push_str(&csv_row(event)),
                _ => {
                    match serde_json::to_string(event) {
                        Ok(line) => out.push_str(&line),
                        Err(e) => {
                            s.done = true;
                            return Some((Err(Error::BadRequest(e.to_string())), s));
                        }
                    }
                    out.push('\n');
                }
            }
        }
        s.query.after = events.last().map(key_of);
        Some((Ok(out.into_bytes()), s))
    }))
}

/// The column names of the CSV export, in order.
pub const CSV_COLUMNS: [&str; 35] = [
    "agent_id",
    "seq",
    "time",
    "received_at",
    "app_path",
    "app_name",
    "app_sha256",
    "cmdline",
    "user",
    "uid",
    "parent_path",
    "cgroup",
    "unit",
    "container_id",
    "domain",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "protocol",
    "direction",
    "pid",
    "sni",
    "http_host",
    "action",
    "verdict",
    "rule",
    "policy_version",
    "bytes_out",
    "bytes_in",
    "packets_out",
    "packets_in",
    "duration_ms",
    "time_ms",
    "would_block",
];

/// The header row of the CSV export.
pub fn csv_header() -> String {
    let mut line = CSV_COLUMNS.join(",");
    line.push_str("\r\n");
    line
}

/// One event as a CSV row (RFC 4180: fields with a comma, quote or line break are quoted, and
/// quotes doubled). A text field that a spreadsheet would read as a formula (starting with
/// `=`, `+`, `-`, `@`, tab or carriage return) is prefixed with `'`, because event text comes
/// from endpoints and is not to be trusted.
pub fn csv_row(e: &StoredEvent) -> String {
    let c = &e.event.connection;
    let num = |n: Option<String>| n.unwrap_or_default();
    let text = |t: Option<&str>| t.map(csv_text).unwrap_or_default();
    let fields: [String; 35] = [
        csv_text(&e.agent_id),
        e.event.seq.to_string(),
        e.time.clone(),
        e.received_at.clone(),
        text(c.app_path.as_deref()),
        text(c.app_name.as_deref()),
        text(c.app_sha256.as_deref()),
        text(c.cmdline.as_deref()),
        text(c.user.as_deref()),
        num(c.uid.map(|n| n.to_string())),
        text(c.parent_path.as_deref()),
        text(c.cgroup.as_deref()),
        text(c.unit.as_deref()),
        text(c.container_id.as_deref()),
        text(c.domain.as_deref()),
        num(c.src_ip.map(|ip| ip.to_string())),
        num(c.src_port.map(|n| n.to_string())),
        num(c.dst_ip.map(|ip| ip.to_string())),
        num(c.dst_port.map(|n| n.to_string())),
        num(c.protocol.map(|p| p.as_str().to_owned())),
        c.direction.as_str().to_owned(),
        num(e.event.pid.map(|n| n.to_string())),
        text(e.event.sni.as_deref()),
        text(e.event.http_host.as_deref()),
        e.event.action.as_str().to_owned(),
        crate::store::verdict_keyword(e.event.verdict).to_owned(),
        text(e.event.rule.as_deref()),
        num(e.event.policy_version.map(|n| n.to_string())),
        e.event.traffic.bytes_out.to_string(),
        e.event.traffic.bytes_in.to_string(),
        e.event.traffic.packets_out.to_string(),
        e.event.traffic.packets_in.to_string(),
        e.event.traffic.duration_ms.to_string(),
        e.event.time_ms.to_string(),
        e.event.would_block().to_string(),
    ];
    let mut line = fields.join(",");
    line.push_str("\r\n");
    line
}

/// The opaque cursor that continues after `event`.
pub fn encode_cursor(event: &StoredEvent) -> String {
    encode_key(&key_of(event))
}

fn encode_key(key: &EventKey) -> String {
    crate::audit::hex(format!("{}:{}:{}", key.time_ms, key.seq, key.agent_id).as_bytes())
}

fn key_of(event: &StoredEvent) -> EventKey {
    EventKey {
        time_ms: event.event.time_ms,
        agent_id: event.agent_id.clone(),
        seq: i64::try_from(event.event.seq).unwrap_or(i64::MAX),
    }
}

fn decode_cursor(cursor: &str) -> Result<EventKey, Error> {
    let wrong = || {
        bad(
            "cursor",
            "not a cursor this server gave out (pass next_cursor as it is)",
        )
    };
    if cursor.len() % 2 != 0 || cursor.len() > 2 * (MAX_AGENT_ID_LEN + 48) {
        return Err(wrong());
    }
    let bytes: Vec<u8> = (0..cursor.len() / 2)
        .map(|i| {
            cursor
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(wrong)?;
    let text = String::from_utf8(bytes).map_err(|_| wrong())?;
    let mut parts = text.splitn(3, ':');
    let (Some(time), Some(seq), Some(agent)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(wrong());
    };
    Ok(EventKey {
        time_ms: time.parse().map_err(|_| wrong())?,
        seq: seq.parse().map_err(|_| wrong())?,
        agent_id: agent.to_owned(),
    })
}

fn parse_test(name: &str, value: &str) -> Result<EventTest, Error> {
    let text = |what: &str| -> Result<String, Error> {
        if value.is_empty() {
            Err(bad(name, &format!("{what}, not empty")))
        } else {
            Ok(value.to_owned())
        }
    };
    Ok(match name {
        "agent" => EventTest::Agent(text("an agent id")?),
        "app" if value.contains('/') => EventTest::AppPath(value.to_owned()),
        "app" => EventTest::AppName(text("an application path or name")?),
        "user" => EventTest::User(text("a user name")?),
        "rule" => EventTest::Rule(text("a rule id")?),
        "domain" => {
            let domain = value.trim_end_matches('.').to_ascii_lowercase();
            match domain.strip_prefix("*.") {
                Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                    EventTest::DomainSuffix(format!(".{rest}"))
                }
                _ if domain.is_empty() || domain.contains('*') => {
                    return Err(bad(name, "a domain, or *.DOMAIN for every name under it"));
                }
                _ => EventTest::Domain(domain),
            }
        }
        "ip" => parse_ip(value)
            .ok_or_else(|| bad(name, "an address or a CIDR block, e.g. 10.0.0.0/8"))?,
        "port" => EventTest::Port(
            value
                .parse()
                .map_err(|_| bad(name, "a port number, 0 to 65535"))?,
        ),
        "protocol" => EventTest::Protocol(
            Protocol::ALL
                .into_iter()
                .find(|p| p.as_str() == value)
                .ok_or_else(|| bad(name, "one of tcp, udp, icmp"))?,
        ),
        "action" => EventTest::Action(
            Action::from_keyword(value)
                .ok_or_else(|| bad(name, "one of allow, block, alert, log"))?,
        ),
        "from" => EventTest::From(parse_time(name, value)?),
        "to" => EventTest::To(parse_time(name, value)?),
        other => {
            return Err(Error::BadRequest(format!(
                "unknown query parameter {other:?}: filters are agent, app, user, domain, ip, port, \
                 protocol, action, rule, from, to; also cursor, limit, format"
            )));
        }
    })
}

fn parse_time(name: &str, value: &str) -> Result<i64, Error> {
    value
        .parse::<Timestamp>()
        .map(Timestamp::as_millisecond)
        .map_err(|_| bad(name, "an RFC 3339 time, e.g. 2026-03-02T09:30:00Z"))
}

/// An address (one key) or a CIDR block (a range of keys).
fn parse_ip(value: &str) -> Option<EventTest> {
    let (addr, bits) = match value.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits.parse::<u32>().ok()?)),
        None => (value, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let ip = ip.to_canonical();
    let prefix = match (ip, bits) {
        (_, None) => 128,
        (IpAddr::V4(_), Some(b)) if b <= 32 => b + 96,
        (IpAddr::V6(_), Some(b)) if b <= 128 => b,
        _ => return None,
    };
    let key = u128::from_str_radix(&ip_key(ip), 16).ok()?;
    let host_mask = u128::MAX.checked_shr(prefix).unwrap_or(0);
    let low = key & !host_mask;
    let high = low | host_mask;
    Some(EventTest::Ip {
        low: format!("{low:032x}"),
        high: format!("{high:032x}"),
    })
}

fn bad(parameter: &str, expected: &str) -> Error {
    Error::BadRequest(format!(
        "query parameter {parameter:?}: expected {expected}"
    ))
}

fn csv_text(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// The validation and normalisation applied before anything is stored (pure: no store, no
/// clock; `received_ms` is when the batch arrived): the batch ready to store, or why it is
/// refused (naming the event by position and sequence number). [`check`] is the same with the
/// refusal counted and logged.
///
/// An accepted batch has a valid agent id (1 to [`MAX_AGENT_ID_LEN`] bytes, no control
/// characters), a batch number and, in every event, a sequence number (at least 1) and traffic
/// counters that fit an `i64`, at most [`MAX_BATCH_EVENTS`] events, event times from
/// [`MAX_AGE_MS`] before to [`MAX_AHEAD_MS`] after `received_ms`, and text fields without NUL of
/// at most [`MAX_TEXT_LEN`] bytes ([`MAX_DOMAIN_LEN`] for the domain and the SNI).
pub fn check_batch(
    agent_id: &str,
    batch_seq: u64,
    mut events: Vec<ConnectionEvent>,
    received_ms: i64,
) -> Result<NewBatch, String> {
    if agent_id.is_empty()
        || agent_id.len() > MAX_AGENT_ID_LEN
        || agent_id.chars().any(char::is_control)
    {
        return Err(format!(
            "agent id: 1 to {MAX_AGENT_ID_LEN} bytes without control characters"
        ));
    }
    let batch_seq =
        i64::try_from(batch_seq).map_err(|_| format!("batch number {batch_seq} is too large"))?;
    if events.len() > MAX_BATCH_EVENTS {
        return Err(format!(
            "the batch has {} events; at most {MAX_BATCH_EVENTS} are accepted",
            events.len()
        ));
    }
    for (i, event) in events.iter_mut().enumerate() {
        check_event(event, received_ms)
            .map_err(|why| format!("event {i} (seq {}): {why}", event.seq))?;
        event.connection = std::mem::take(&mut event.connection).normalize();
    }
    Ok(NewBatch {
        agent_id: agent_id.to_owned(),
        batch_seq,
        received_ms,
        events,
    })
}

fn check_event(e: &ConnectionEvent, received_ms: i64) -> Result<(), String> {
    if i64::try_from(e.seq).is_err() || e.seq == 0 {
        return Err("the sequence number must be 1 to 2^63-1".to_owned());
    }
    if e.update_of.is_some_and(|of| of == 0 || of >= e.seq) {
        return Err("an update must name an earlier event (update_of 1 to seq - 1)".to_owned());
    }
    if e.time_ms < received_ms.saturating_sub(MAX_AGE_MS)
        || e.time_ms > received_ms.saturating_add(MAX_AHEAD_MS)
    {
        return Err(format!(
            "time {} is more than 366 days before or 1 day after the batch arrived ({})",
            e.time_ms, received_ms
        ));
    }
    let c = &e.connection;
    let texts = [
        ("app_path", c.app_path.as_deref()),
        ("app_name", c.app_name.as_deref()),
        ("app_sha256", c.app_sha256.as_deref()),
        ("cmdline", c.cmdline.as_deref()),
        ("user", c.user.as_deref()),
        ("parent_path", c.parent_path.as_deref()),
        ("cgroup", c.cgroup.as_deref()),
        ("unit", c.unit.as_deref()),
        ("container_id", c.container_id.as_deref()),
        ("domain", c.domain.as_deref()),
        ("sni", e.sni.as_deref()),
        ("http_host", e.http_host.as_deref()),
        ("rule", e.rule.as_deref()),
    ];
    for (field, value) in texts {
        let Some(value) = value else { continue };
        let max = if matches!(field, "domain" | "sni" | "http_host") {
            MAX_DOMAIN_LEN
        } else {
            MAX_TEXT_LEN
        };
        if value.len() > max {
            return Err(format!(
                "{field} is {} bytes; at most {max} are accepted",
                value.len()
            ));
        }
        if value.contains('\0') {
            return Err(format!("{field} contains a NUL character"));
        }
    }
    let t = &e.traffic;
    for (field, n) in [
        ("traffic.bytes_out", t.bytes_out),
        ("traffic.bytes_in", t.bytes_in),
        ("traffic.packets_out", t.packets_out),
        ("traffic.packets_in", t.packets_in),
        ("traffic.duration_ms", t.duration_ms),
    ] {
        if i64::try_from(n).is_err() {
            return Err(format!("{field} {n} is too large"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_window_doubles_or_fits_the_time_left() {
        let ms = Duration::from_millis;
        // Quick to read: twice as long.
        assert_eq!(next_window(60_000, ms(1), ms(50)), 120_000);
        assert_eq!(next_window(60_000, Duration::ZERO, ms(50)), 120_000);
        // 10 ms for a minute, 20 ms left: two minutes fit, not four.
        assert_eq!(next_window(120_000, ms(10), ms(20)), 240_000);
        assert_eq!(next_window(120_000, ms(20), ms(20)), 120_000);
        assert_eq!(next_window(120_000, ms(40), ms(10)), 30_000);
        // Never less than a second.
        assert_eq!(next_window(120_000, ms(100), Duration::ZERO), 1_000);
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn cidr_blocks_become_key_ranges() {
        let Some(EventTest::Ip { low, high }) = parse_ip("10.1.2.3/8") else {
            panic!("not parsed")
        };
        assert_eq!(low, "00000000000000000000ffff0a000000");
        assert_eq!(high, "00000000000000000000ffff0affffff");
        let Some(EventTest::Ip { low, high }) = parse_ip("::/0") else {
            panic!("not parsed")
        };
        assert_eq!(
            (low.as_str(), high.len()),
            ("00000000000000000000000000000000", 32)
        );
        assert!(parse_ip("10.0.0.0/33").is_none());
        assert!(parse_ip("example.com").is_none());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (name, value) in [
            ("port", "http"),
            ("from", "yesterday"),
            ("ip", "1.2.3.4/99"),
            ("domain", "a.*.com"),
            ("cursor", "zz"),
            ("format", "xml"),
        ] {
            let Err(Error::BadRequest(msg)) = EventQuery::from_pairs(&pairs(&[(name, value)]))
            else {
                panic!("{name}={value} accepted")
            };
            assert!(msg.contains(&format!("{name:?}")), "{msg}");
        }
        let Err(Error::BadRequest(msg)) = EventQuery::from_pairs(&pairs(&[("colour", "red")]))
        else {
            panic!("unknown parameter accepted")
        };
        assert!(msg.contains("\"colour\""), "{msg}");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_text("plain"), "plain");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!(csv_text("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
    }

    fn event(seq: u64, time_ms: i64) -> ConnectionEvent {
        serde_json::from_value(serde_json::json!({
            "seq": seq, "time_ms": time_ms, "connection": {}, "action": "allow", "verdict": "allow"
        }))
        .unwrap()
    }

    #[test]
    fn hostile_batches_are_refused_without_panic() {
        let now = 1_780_000_000_000;
        let ok = event(1, now);
        let mut nul = event(2, now);
        nul.connection.cmdline = Some("a\0b".to_owned());
        let mut huge = event(3, now);
        huge.traffic.bytes_in = u64::MAX;
        let mut long = event(4, now);
        long.rule = Some("r".repeat(MAX_TEXT_LEN + 1));
        let refused = [
            ("", 1, vec![ok.clone()], now),
            ("agent\n1", 1, vec![ok.clone()], now),
            ("agent-1", u64::MAX, vec![ok.clone()], now),
            ("agent-1", 1, vec![event(0, now)], now),
            ("agent-1", 1, vec![event(u64::MAX, now)], now),
            ("agent-1", 1, vec![event(1, i64::MIN)], now),
            ("agent-1", 1, vec![event(1, i64::MAX)], now),
            ("agent-1", 1, vec![event(1, now)], i64::MIN),
            ("agent-1", 1, vec![ok.clone(), nul], now),
            ("agent-1", 1, vec![huge], now),
            ("agent-1", 1, vec![long], now),
            ("agent-1", 1, vec![ok.clone(); MAX_BATCH_EVENTS + 1], now),
        ];
        for (agent, batch, events, received_ms) in refused {
            assert!(
                check_batch(agent, batch, events, received_ms).is_err(),
                "{agent:?} batch {batch} at {received_ms} accepted"
            );
        }
        // At the edges of the clock's range, and with a domain to normalise.
        let mut mapped = event(7, i64::MAX);
        mapped.connection.domain = Some("WWW.Example.COM.".to_owned());
        mapped.connection.dst_ip = Some("::ffff:10.0.0.1".parse().unwrap());
        let checked = check_batch("agent-1", 9, vec![mapped], i64::MAX).unwrap();
        assert_eq!(checked.batch_seq, 9);
        let stored = checked.events;
        assert_eq!(
            stored[0].connection.domain.as_deref(),
            Some("www.example.com")
        );
        assert_eq!(
            stored[0].connection.dst_ip,
            Some("10.0.0.1".parse().unwrap())
        );
        assert!(check_batch("agent-1", 0, vec![event(1, i64::MIN)], i64::MIN).is_ok());
    }

    #[test]
    fn hostile_queries_are_refused_without_panic() {
        let long_cursor = "30".repeat(MAX_AGENT_ID_LEN + 49);
        for (name, value) in [
            ("cursor", ""),
            ("cursor", "3"),
            ("cursor", "é0"),
            ("cursor", "0é0"),
            ("cursor", "ff"),
            ("cursor", "3a3a"),
            ("cursor", "31"),
            ("cursor", long_cursor.as_str()),
            ("limit", "0"),
            ("limit", "-1"),
            ("limit", "99999999999999999999"),
            ("limit", "1001"),
            ("port", "65536"),
            ("port", "!"),
            ("ip", "::/999999999999"),
            ("ip", "/"),
            ("from", "9999999-01-01T00:00:00Z"),
            ("domain", "*."),
            ("domain", "!*"),
            ("domain", "."),
            ("agent", "!"),
            ("\0", "x"),
        ] {
            assert!(
                EventQuery::from_pairs(&pairs(&[(name, value)])).is_err(),
                "{name}={value:?} accepted"
            );
        }
        assert!(EventQuery::from_pairs(&pairs(&[("limit", "1"), ("limit", "1")])).is_err());
        // A cursor may carry any agent id, colons included.
        let cursor = crate::audit::hex(b"-9223372036854775808:9223372036854775807:a:b");
        let query = EventQuery::from_pairs(&pairs(&[("cursor", &cursor)])).unwrap();
        assert_eq!(
            query.after,
            Some(EventKey {
                time_ms: i64::MIN,
                seq: i64::MAX,
                agent_id: "a:b".to_owned()
            })
        );
    }

    #[test]
    fn hostile_events_are_named() {
        let event: ConnectionEvent = serde_json::from_value(serde_json::json!({
            "seq": 4, "time_ms": 1_000, "connection": {"domain": "x".repeat(300)},
            "action": "allow", "verdict": "allow"
        }))
        .unwrap();
        let why = check_batch("agent-1", 1, vec![event], 1_000).unwrap_err();
        assert!(
            why.starts_with("event 0 (seq 4): domain is 300 bytes"),
            "{why}"
        );
    }
}
