//! The retention timer: once when the node starts and then at every interval (an hour unless
//! the operator sets `retention_interval_seconds`), it removes the connection events older than
//! `events.retention_days` (a stored setting, read at each run) before the node's clock time.
//!
//! Every node runs it. Runs are idempotent (what is older than the cutoff is gone after any of
//! them), so two nodes running at once remove each event once between them. What a run removes
//! is logged and counted on `/metrics`; a run that fails is logged and counted, and the next
//! one tries again. The timer never stops the node.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::Clock;
use crate::error::Error;
use crate::events;
use crate::metrics::Metrics;
use crate::store::{RetentionReport, Store};
use crate::stored_settings;

/// The interval when the operator sets none: an hour.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// Starts the timer; it runs until the returned task is aborted.
pub fn spawn(
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    clock: Clock,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        // A run that takes longer than the interval delays the next one instead of being
        // followed by a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // The first tick is at once.
            ticks.tick().await;
            match run(&store, clock()).await {
                Ok(report) => metrics.retention().applied(&report),
                Err(e) => {
                    metrics.retention().failed();
                    tracing::warn!(cause = %e, "event retention failed; the next run tries again");
                }
            }
        }
    })
}

/// One run at `now`: removes the events older than `events.retention_days` before `now`.
pub async fn run(store: &Store, now: Timestamp) -> Result<RetentionReport, Error> {
    let days = stored_settings::retention_days(store).await?;
    let cutoff = now
        .checked_sub(SignedDuration::from_hours(days.saturating_mul(24)))
        .unwrap_or(Timestamp::MIN);
    events::apply_retention(store, cutoff).await
}
