//! A load test: every endpoint of the fleet sends its simulated connections to the server as
//! fast as it acknowledges them, batch after batch, and the test reports the events per second
//! the server stored and how long each acknowledgement took.

use std::time::Duration;

use palisade_agent::uplink::Uplink;
use palisade_proto::{Action, ConnectionEvent, Verdict};

use crate::endpoint::{Endpoint, Observed};
use crate::live::{Clock, Server, connect};

/// What a load test measured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Events acknowledged.
    pub events: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Batches refused or failed (each is counted and not re-sent).
    pub failures: u64,
    /// From the first batch sent to the last acknowledgement.
    pub elapsed: Duration,
    /// Each acknowledged batch's round trip, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    /// The latency below which `per_mille` thousandths of the batches were acknowledged
    /// (500: the median, 990: p99).
    pub fn percentile(&self, per_mille: usize) -> Duration {
        let last = self.latencies.len().saturating_sub(1);
        let rank = last * per_mille.min(1_000) / 1_000;
        self.latencies.get(rank).copied().unwrap_or_default()
    }

    /// Events acknowledged per second.
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Connects every endpoint, then for `duration` sends batches of `batch` events from each one
/// (its simulated traffic of a working day, repeated with new numbers) and waits for each
/// acknowledgement before the next.
pub async fn run(
    endpoints: Vec<Endpoint>,
    server: &Server,
    clock: Clock,
    batch: usize,
    duration: Duration,
) -> Result<Report, String> {
    let mut connected = Vec::new();
    for endpoint in endpoints {
        let uplink = connect(&endpoint, server)
            .await
            .map_err(|e| format!("{}: {e}", endpoint.hostname))?;
        let day_ms = clock().as_millisecond();
        let pool = endpoint.traffic(day_ms - 12 * 3_600_000, day_ms);
        connected.push((uplink, pool));
    }
    let start = clock();
    let deadline = start.as_millisecond() + i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|(uplink, pool)| tokio::spawn(send(uplink, pool, clock.clone(), batch, deadline)))
        .collect();
    let mut report = Report::default();
    for task in tasks {
        let one = task.await.map_err(|e| e.to_string())?;
        report.events += one.events;
        report.batches += one.batches;
        report.failures += one.failures;
        report.latencies.extend(one.latencies);
    }
    report.elapsed = Duration::try_from(clock().duration_since(start)).unwrap_or_default();
    report.latencies.sort_unstable();
    Ok(report)
}

async fn send(
    mut uplink: Uplink,
    pool: Vec<Observed>,
    clock: Clock,
    batch: usize,
    deadline_ms: i64,
) -> Report {
    let mut report = Report::default();
    let mut cycle = pool.iter().cycle();
    let mut number: u64 = u64::try_from(clock().as_millisecond()).unwrap_or(0);
    if pool.is_empty() {
        return report;
    }
    while clock().as_millisecond() < deadline_ms {
        number += 1;
        let now = clock().as_millisecond();
        let events: Vec<ConnectionEvent> = (0..batch)
            .zip(&mut cycle)
            .map(|(n, o)| ConnectionEvent {
                seq: number * crate::live::BATCH_SPAN + n as u64,
                time_ms: now,
                connection: o.connection.clone(),
                pid: Some(o.pid),
                sni: o.sni.clone(),
                http_host: None,
                action: Action::Allow,
                verdict: Verdict::Allow,
                rule: None,
                policy_version: None,
                update_of: None,
                traffic: o.traffic,
            })
            .collect();
        let sent = clock();
        match uplink.send_batch(number, &events).await {
            Ok(()) => {
                report.events += events.len() as u64;
                report.batches += 1;
                report
                    .latencies
                    .push(Duration::try_from(clock().duration_since(sent)).unwrap_or_default());
            }
            Err(e) => {
                tracing::warn!(error = %e, "batch failed");
                report.failures += 1;
            }
        }
    }
    report
}
