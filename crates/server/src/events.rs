//! Event ingestion. PLACEHOLDER on the `gateway` branch: the real module (storage, exactly-once
//! by agent and sequence number) comes from the `events` branch and replaces this file at merge.
//! This one stores nothing.

use jiff::Timestamp;
use palisade_proto::ConnectionEvent;

use crate::error::Error;
use crate::store::Store;

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The batch is durable; this many events were in it.
    Stored(usize),
}

/// Takes in one batch of `agent_id`'s events.
pub async fn ingest(
    _store: &Store,
    _agent_id: &str,
    _batch_seq: u64,
    events: &[ConnectionEvent],
    _received_at: Timestamp,
) -> Result<IngestOutcome, Error> {
    Ok(IngestOutcome::Stored(events.len()))
}
