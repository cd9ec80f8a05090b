//! The checkpoint timer (SQLite only): every second it copies the write-ahead log into the
//! database file ([`Store::checkpoint`]). Copying includes waiting for the disk to flush, which
//! would otherwise stall whichever writer crossed SQLite's automatic checkpoint size, usually
//! the event writer with agents waiting for their acknowledgements. A run that fails is logged
//! and the next one tries again.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::Store;

/// How often the log is copied.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Starts the timer (for a SQLite store); it runs until the returned task is aborted.
pub fn spawn(store: Arc<Store>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = store.checkpoint().await {
                tracing::warn!(cause = %e, "checkpoint failed; the next run tries again");
            }
        }
    })
}
