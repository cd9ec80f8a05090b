//! The way of an agent's event batch from the gateway into storage.
//!
//! The gateway validates a batch ([`events::check`]) and hands it to the [`Pipeline`]; the
//! agent's acknowledgement waits until the batch is durable:
//! - **One node** (in-process bus): the batch waits in a bounded queue for a writer. A writer
//!   takes every batch queued at that moment (up to [`GROUP_EVENTS`] events) and stores them in
//!   one transaction; each agent's acknowledgement follows that commit. One commit for many
//!   agents is what makes ingestion fast.
//! - **Several nodes** (RabbitMQ): the batch is published to the durable work topic
//!   `event-batches` and acknowledged once the broker has confirmed it. Consumers on every node
//!   compete for the batches and queue them for their node's writers; a delivery is
//!   acknowledged to the broker only after its commit, so batches held by a node that dies go to
//!   another. Storing is idempotent, so a batch delivered twice is stored once.
//!
//! After its commit every batch is published to the work topic `stored-events`, for the
//! detection pipeline, before its acknowledgement: a batch acknowledged to its agent has been
//! stored and handed to detection. A crash in between loses nothing: the agent sends the batch
//! again, storing it again changes nothing, and detection skips the events it has seen.
//!
//! Backpressure: when the writers fall behind, the queue fills up and the gateway waits for
//! room, so each agent's acknowledgement comes later and it sends less. A batch that found no
//! room within [`MAX_WAIT`] is refused as busy (`RESOURCE_EXHAUSTED`): it is not stored, the
//! agent keeps it and sends it again after backing off. Nothing is dropped. On RabbitMQ the
//! broker's own flow control slows publishers the same way.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use palisade_proto::ConnectionEvent;
use palisade_proto::gateway::v1;
use prost::Message as _;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::bus::{Bus, Delivery, WorkTopic};
use crate::error::Error;
use crate::events;
use crate::store::{NewBatch, Store};

/// A writer stops taking queued batches into one transaction once it holds this many events
/// (so a group may exceed it by one batch).
pub const GROUP_EVENTS: usize = 20_000;

/// Batches that may wait for a writer on one node.
pub const QUEUE_BATCHES: usize = 128;

/// How long a batch may wait for room in the queue before it is refused as busy.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// How long a consumer waits before handing back a batch it could not store (so that a store
/// that is down does not spin the broker).
const STORE_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Competing consumers of the work topic on each node (RabbitMQ only).
const CONSUMERS: usize = 2;

/// The ingest pipeline of one node.
#[derive(Clone)]
pub struct Pipeline {
    store: Arc<Store>,
    queue: mpsc::Sender<Job>,
    bus: Bus,
    /// Batches go through the bus's `event-batches` topic (RabbitMQ) rather than straight to
    /// this node's writers.
    through_bus: bool,
}

/// A batch waiting for a writer, and where its outcome goes.
struct Job {
    batch: NewBatch,
    done: oneshot::Sender<Result<(), Error>>,
}

impl Pipeline {
    /// Starts `writers` writers on this node (one suits SQLite, which has a single writer; a
    /// few suit PostgreSQL) and, when `through_bus` (RabbitMQ), the consumers of the
    /// `event-batches` work topic. Returns the tasks to abort at shutdown.
    pub async fn start(
        store: Arc<Store>,
        writers: usize,
        bus: Bus,
        through_bus: bool,
    ) -> (Pipeline, Vec<JoinHandle<()>>) {
        let (queue, receiver) = mpsc::channel(QUEUE_BATCHES);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut tasks: Vec<JoinHandle<()>> = (0..writers.max(1))
            .map(|_| tokio::spawn(write(store.clone(), bus.clone(), receiver.clone())))
            .collect();
        let pipeline = Pipeline {
            store,
            queue,
            bus,
            through_bus,
        };
        if through_bus {
            for _ in 0..CONSUMERS {
                let consumer = pipeline.bus.consume_work(WorkTopic::EventBatches).await;
                tasks.push(tokio::spawn(consume(pipeline.clone(), consumer)));
            }
        }
        (pipeline, tasks)
    }

    /// Takes batch `batch_seq` of `agent_id`, received at `received_at`, and returns once it is
    /// durable. [`Error::BadRequest`]: the batch is invalid (sending it again will not help);
    /// [`Error::Busy`]: no room in time, send it again later; other errors: not stored.
    pub async fn submit(
        &self,
        agent_id: &str,
        batch_seq: u64,
        events: Vec<ConnectionEvent>,
        received_at: Timestamp,
    ) -> Result<(), Error> {
        let batch = events::check(&self.store, agent_id, batch_seq, events, received_at)?;
        if self.through_bus {
            self.bus
                .publish_work(WorkTopic::EventBatches, encode(&batch))
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))
        } else {
            self.enqueue(batch).await?.await.map_err(|_| stopped())?
        }
    }

    /// Queues a checked batch for this node's writers, waiting up to [`MAX_WAIT`] for room;
    /// the receiver gets the outcome after the commit.
    async fn enqueue(
        &self,
        batch: NewBatch,
    ) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
        let counters = self.store.ingest_counters();
        let (done, outcome) = oneshot::channel();
        let job = Job { batch, done };
        let permit = match self.queue.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(stopped()),
            Err(mpsc::error::TrySendError::Full(())) => {
                counters.waited();
                match tokio::time::timeout(MAX_WAIT, self.queue.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => return Err(stopped()),
                    Err(_) => {
                        counters.busy();
                        return Err(Error::Busy);
                    }
                }
            }
        };
        counters.queued(1);
        permit.send(job);
        Ok(outcome)
    }
}

/// One writer: takes what is queued, stores it in one transaction, hands each batch to
/// detection, reports to each batch.
async fn write(store: Arc<Store>, bus: Bus, receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let jobs = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut events = first.batch.events.len();
            let mut jobs = vec![first];
            while events < GROUP_EVENTS {
                match receiver.try_recv() {
                    Ok(job) => {
                        events += job.batch.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let counters = store.ingest_counters();
        counters.queued(-i64::try_from(jobs.len()).unwrap_or(i64::MAX));
        let batches: Vec<&NewBatch> = jobs.iter().map(|job| &job.batch).collect();
        match events::store_batches(&store, &batches).await {
            Ok(_) => {
                counters.committed();
                for job in jobs {
                    let outcome = to_detection(&bus, &job.batch).await;
                    let _ = job.done.send(outcome);
                }
            }
            // Whatever failed must not fail the others: each batch again on its own.
            Err(group_error) => {
                tracing::warn!(batches = jobs.len(), cause = %group_error, "storing a group of batches failed; storing each by itself");
                for job in jobs {
                    let outcome = match events::store_batches(&store, &[&job.batch]).await {
                        Ok(_) => {
                            counters.committed();
                            to_detection(&bus, &job.batch).await
                        }
                        Err(e) => Err(e),
                    };
                    let _ = job.done.send(outcome);
                }
            }
        }
    }
}

/// Publishes a stored batch for the detection pipeline. Failing, the batch is reported as not
/// stored: its agent sends it again.
async fn to_detection(bus: &Bus, batch: &NewBatch) -> Result<(), Error> {
    bus.publish_work(WorkTopic::StoredEvents, encode(batch))
        .await
        .map_err(|e| Error::Unavailable(format!("handing a stored batch to detection: {e}")))
}

/// One consumer of the work topic: each delivery is decoded, checked, queued for a writer and
/// acknowledged to the broker after its commit; meanwhile the consumer takes the next one, so a
/// writer can store several at once.
async fn consume(pipeline: Pipeline, mut consumer: crate::bus::WorkConsumer) {
    loop {
        let delivery = consumer.next().await;
        let batch = match decode(delivery.payload()).and_then(
            |(agent_id, batch_seq, received_at, events)| {
                events::check(&pipeline.store, &agent_id, batch_seq, events, received_at)
            },
        ) {
            Ok(batch) => batch,
            Err(e) => {
                // A message no node can store: counted (by `check`) or logged, and taken off
                // the queue rather than delivered forever.
                tracing::warn!(cause = %e, "dropped an event batch message that cannot be stored");
                let _ = delivery.ack().await;
                continue;
            }
        };
        match pipeline.enqueue(batch).await {
            Ok(outcome) => {
                tokio::spawn(finish(delivery, outcome));
            }
            Err(e) => give_back(delivery, &e).await,
        }
    }
}

/// Acknowledges a delivery once its batch is committed, or gives it back to the broker.
async fn finish(delivery: Delivery, outcome: oneshot::Receiver<Result<(), Error>>) {
    match outcome.await {
        Ok(Ok(())) => {
            if let Err(e) = delivery.ack().await {
                // The broker will deliver it again; storing it again changes nothing.
                tracing::debug!(cause = %e, "acknowledging a stored batch failed");
            }
        }
        Ok(Err(e)) => give_back(delivery, &e).await,
        Err(_) => give_back(delivery, &stopped()).await,
    }
}

async fn give_back(delivery: Delivery, cause: &Error) {
    tracing::warn!(%cause, "an event batch from the bus was not stored; it goes back to the queue");
    tokio::time::sleep(STORE_RETRY_DELAY).await;
    drop(delivery);
}

fn stopped() -> Error {
    Error::Unavailable("the ingest pipeline has stopped".to_owned())
}

/// A batch on the bus: the agent's batch as it came, with who sent it and when it arrived.
#[derive(Clone, PartialEq, prost::Message)]
struct QueuedBatch {
    #[prost(string, tag = "1")]
    agent_id: String,
    #[prost(int64, tag = "2")]
    received_ms: i64,
    #[prost(message, optional, tag = "3")]
    batch: Option<v1::EventBatch>,
}

pub(crate) fn encode(batch: &NewBatch) -> Vec<u8> {
    QueuedBatch {
        agent_id: batch.agent_id.clone(),
        received_ms: batch.received_ms,
        batch: Some(v1::EventBatch {
            batch_seq: u64::try_from(batch.batch_seq).unwrap_or_default(),
            events: batch.events.iter().map(Into::into).collect(),
        }),
    }
    .encode_to_vec()
}

/// A decoded batch message: agent id, batch number, when it arrived, the events.
pub(crate) type Decoded = (String, u64, Timestamp, Vec<ConnectionEvent>);

pub(crate) fn decode(payload: &[u8]) -> Result<Decoded, Error> {
    let bad = |why: String| Error::BadRequest(format!("event batch message: {why}"));
    let queued = QueuedBatch::decode(payload).map_err(|e| bad(e.to_string()))?;
    let received_at =
        Timestamp::from_millisecond(queued.received_ms).map_err(|e| bad(e.to_string()))?;
    let batch = queued.batch.unwrap_or_default();
    let events = batch
        .events
        .into_iter()
        .map(ConnectionEvent::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    Ok((queued.agent_id, batch.batch_seq, received_at, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_survives_the_bus_encoding() {
        let event = ConnectionEvent {
            seq: 7,
            time_ms: 1_700_000_000_000,
            connection: palisade_proto::Connection {
                domain: Some("example.com".to_owned()),
                ..palisade_proto::Connection::default()
            },
            pid: Some(42),
            sni: None,
            http_host: None,
            action: palisade_proto::Action::Block,
            verdict: palisade_proto::Verdict::Block,
            rule: Some("r1".to_owned()),
            policy_version: Some(3),
            update_of: None,
            traffic: palisade_proto::Traffic::default(),
        };
        let batch = NewBatch {
            agent_id: "agent-1".to_owned(),
            batch_seq: 3,
            received_ms: 1_700_000_000_500,
            events: vec![event.clone()],
        };
        let (agent, seq, received, events) = decode(&encode(&batch)).unwrap();
        assert_eq!(
            (agent.as_str(), seq, received.as_millisecond(), events),
            ("agent-1", 3, 1_700_000_000_500, vec![event])
        );
    }

    #[test]
    fn garbage_on_the_bus_is_refused() {
        assert!(matches!(decode(b"\xff\xff\xff"), Err(Error::BadRequest(_))));
    }
}
