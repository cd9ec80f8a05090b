//! The message bus between the parts of the server, and between server nodes.
//!
//! Two kinds of topic, each its own type so a caller cannot publish to the wrong kind:
//! - [`WorkTopic`] (event batches, stored events, alerts): every message is handled by exactly one of the
//!   competing consumers, on any node. A consumer acknowledges a [`Delivery`] after it has done
//!   the work (stored the batch); a delivery dropped without acknowledgement, or held by a
//!   consumer that crashes, is delivered again, possibly to another consumer.
//! - [`FanoutTopic`] (policy updates, commands): every [`Subscription`], on every node, receives
//!   every message published after it subscribed.
//!
//! Messages are bytes; callers serialise. [`Bus::connect`] picks the implementation from a URL:
//! none gives the in-process bus (one machine), `amqp://` gives RabbitMQ (several nodes).
//!
//! Layout:
//! - `in_process`: tokio channels; bounded, so publishing waits when a topic is full.
//! - `amqp`: RabbitMQ through lapin: durable queues, persistent messages, publisher confirms,
//!   consumer acknowledgements, reconnect with capped exponential backoff.

mod amqp;
mod in_process;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A topic whose messages are work: each is handled by one consumer, acknowledged after it is
/// done, and delivered again if it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkTopic {
    /// Batches of connection events an agent sent; ingest workers store them.
    EventBatches,
    /// Batches once stored; the detection pipeline reads them.
    StoredEvents,
    /// Alerts raised by detection; the alert service stores and routes them.
    Alerts,
}

impl WorkTopic {
    /// Every work topic.
    pub const ALL: [WorkTopic; 3] = [
        WorkTopic::EventBatches,
        WorkTopic::StoredEvents,
        WorkTopic::Alerts,
    ];

    /// The topic's name; on RabbitMQ its durable queue is `PREFIX.NAME`.
    pub fn name(self) -> &'static str {
        match self {
            WorkTopic::EventBatches => "event-batches",
            WorkTopic::StoredEvents => "stored-events",
            WorkTopic::Alerts => "alerts",
        }
    }
}

/// A topic whose messages go to every subscriber on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanoutTopic {
    /// A policy version was created or assigned: nodes push it to their connected agents.
    PolicyUpdates,
    /// A command for one agent (isolate, revoke): the node holding its stream acts.
    Commands,
}

impl FanoutTopic {
    /// Every fan-out topic.
    pub const ALL: [FanoutTopic; 2] = [FanoutTopic::PolicyUpdates, FanoutTopic::Commands];

    /// The topic's name; on RabbitMQ its fanout exchange is `PREFIX.NAME`.
    pub fn name(self) -> &'static str {
        match self {
            FanoutTopic::PolicyUpdates => "policy-updates",
            FanoutTopic::Commands => "commands",
        }
    }
}

/// How the bus behaves; the defaults suit production.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// In-process: how many messages a work topic holds, counting delivered but not yet
    /// acknowledged ones, and how many a fan-out subscriber may have waiting. Publishing waits
    /// while the bound is reached.
    pub capacity: usize,
    /// RabbitMQ: the first part of every queue and exchange name (`PREFIX.event-batches`).
    pub prefix: String,
    /// RabbitMQ: how long one publish may wait for the broker (connecting included) before it
    /// fails with [`BusError::Unavailable`]; also bounds the first connection in [`Bus::connect`].
    pub publish_timeout: Duration,
    /// RabbitMQ: the first wait before reconnecting; it doubles after each failure...
    pub backoff_initial: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// RabbitMQ: how many unacknowledged messages one work consumer may hold.
    pub prefetch: u16,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            capacity: 1024,
            prefix: "palisade".to_owned(),
            publish_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            prefetch: 32,
        }
    }
}

/// What the bus fails with.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus URL is neither absent nor `amqp://...`.
    #[error("unsupported message bus URL: expected amqp://USER:PASSWORD@HOST:PORT/VHOST")]
    InvalidUrl,
    /// The broker could not be reached, or did not confirm, within the publish timeout; the
    /// message may not have been delivered. Retry later, or slow down.
    #[error("message broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (negative publisher confirm).
    #[error("the message broker refused the message")]
    Rejected,
    /// The subscription lost its broker connection and has resumed; messages published in
    /// between may have been missed. Re-read the current state (from the store), then go on
    /// calling [`Subscription::next`].
    #[error("subscription interrupted; messages may have been missed")]
    Interrupted,
    /// The bus was shut down (every [`Bus`] handle dropped).
    #[error("the message bus is closed")]
    Closed,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Connections to the broker re-established after one was lost (0 in-process).
    pub reconnects: u64,
    /// Publishes that returned an error.
    pub publish_failures: u64,
}

/// A handle on the bus; clones share it.
#[derive(Clone)]
pub struct Bus {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    InProcess(in_process::InProcessBus),
    Amqp(amqp::AmqpBus),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the URL: it holds the broker password.
        let kind = match self.backend {
            Backend::InProcess(_) => "in-process",
            Backend::Amqp(_) => "amqp",
        };
        f.debug_struct("Bus").field("kind", &kind).finish()
    }
}

impl Bus {
    /// The in-process bus: one machine, nothing durable.
    pub fn in_process(options: &BusOptions) -> Bus {
        Bus {
            backend: Backend::InProcess(in_process::InProcessBus::new(options.capacity)),
        }
    }

    /// The bus a URL names: `None` gives the in-process bus, `amqp://...` RabbitMQ (connected
    /// and its queues and exchanges declared before this returns; waits at most
    /// `publish_timeout` for that).
    pub async fn connect(url: Option<&str>, options: BusOptions) -> Result<Bus, BusError> {
        match url {
            None => Ok(Bus::in_process(&options)),
            Some(url) if url.starts_with("amqp://") => Ok(Bus {
                backend: Backend::Amqp(amqp::AmqpBus::connect(url, options).await?),
            }),
            Some(_) => Err(BusError::InvalidUrl),
        }
    }

    /// Publishes work. Returns once the message is held by the bus: in-process, when the topic
    /// has room (it waits while the topic is full); on RabbitMQ, when the broker has confirmed
    /// the persistent message into its durable queue.
    pub async fn publish_work(&self, topic: WorkTopic, payload: Vec<u8>) -> Result<(), BusError> {
        match &self.backend {
            Backend::InProcess(bus) => bus.publish_work(topic, payload).await,
            Backend::Amqp(bus) => bus.publish_work(topic, payload).await,
        }
    }

    /// Becomes one of the competing consumers of a work topic. On RabbitMQ the consumer is
    /// registered before this returns when the broker is reachable; otherwise it registers
    /// once the broker is back.
    pub async fn consume_work(&self, topic: WorkTopic) -> WorkConsumer {
        match &self.backend {
            Backend::InProcess(bus) => WorkConsumer {
                inner: ConsumerInner::InProcess(bus.consume_work(topic)),
            },
            Backend::Amqp(bus) => WorkConsumer {
                inner: ConsumerInner::Amqp(Box::new(bus.consume_work(topic).await)),
            },
        }
    }

    /// Publishes to every current subscriber of a fan-out topic, on every node. In-process it
    /// waits while a subscriber's bound is reached; on RabbitMQ it returns once the broker has
    /// confirmed. A message published while nobody subscribes reaches nobody.
    pub async fn publish(&self, topic: FanoutTopic, payload: Vec<u8>) -> Result<(), BusError> {
        match &self.backend {
            Backend::InProcess(bus) => bus.publish(topic, payload).await,
            Backend::Amqp(bus) => bus.publish(topic, payload).await,
        }
    }

    /// Subscribes to a fan-out topic: from now on this subscription receives every message
    /// published to it, from any node.
    pub async fn subscribe(&self, topic: FanoutTopic) -> Subscription {
        match &self.backend {
            Backend::InProcess(bus) => Subscription {
                inner: SubscriptionInner::InProcess(bus.subscribe(topic)),
            },
            Backend::Amqp(bus) => Subscription {
                inner: SubscriptionInner::Amqp(Box::new(bus.subscribe(topic).await)),
            },
        }
    }

    /// Reconnects and publish failures so far.
    pub fn stats(&self) -> BusStats {
        match &self.backend {
            Backend::InProcess(bus) => bus.counters().snapshot(),
            Backend::Amqp(bus) => bus.counters().snapshot(),
        }
    }

    /// Closes the broker connection the way a broker restart would (in-process there is none,
    /// and this does nothing). The bus reconnects on next use; consumers and subscriptions
    /// resume by themselves. For fault drills and tests.
    pub async fn drop_connection(&self) {
        if let Backend::Amqp(bus) = &self.backend {
            bus.drop_connection().await;
        }
    }
}

/// One of the competing consumers of a work topic.
pub struct WorkConsumer {
    inner: ConsumerInner,
}

enum ConsumerInner {
    InProcess(in_process::WorkConsumer),
    Amqp(Box<amqp::WorkConsumer>),
}

impl WorkConsumer {
    /// The next message for this consumer; waits until there is one. On RabbitMQ it waits
    /// through lost connections and resumes after reconnecting (messages this consumer held
    /// unacknowledged then go back to the queue). Cancel-safe: dropping the future (in a
    /// `select!` or a timeout) loses no message.
    pub async fn next(&mut self) -> Delivery {
        match &mut self.inner {
            ConsumerInner::InProcess(consumer) => consumer.next().await,
            ConsumerInner::Amqp(consumer) => consumer.next().await,
        }
    }
}

/// A message taken from a work topic. [`Delivery::ack`] after the work is done; dropping it
/// unacknowledged puts the message back for another delivery.
pub struct Delivery {
    payload: Vec<u8>,
    ack: Option<Acker>,
}

enum Acker {
    InProcess(in_process::Acker),
    Amqp(amqp::Acker),
}

impl Delivery {
    /// The message.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Acknowledges the message: it will not be delivered again. An error means the broker
    /// connection was lost first; the message will then be delivered again (consumers must
    /// tolerate that, e.g. by storing batches idempotently).
    pub async fn ack(mut self) -> Result<(), BusError> {
        match self.ack.take() {
            Some(Acker::InProcess(acker)) => {
                acker.ack();
                Ok(())
            }
            Some(Acker::Amqp(acker)) => acker.ack().await,
            None => Ok(()),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        match self.ack.take() {
            Some(Acker::InProcess(acker)) => acker.requeue(std::mem::take(&mut self.payload)),
            Some(Acker::Amqp(acker)) => acker.requeue(),
            None => {}
        }
    }
}

/// A subscription to a fan-out topic.
pub struct Subscription {
    inner: SubscriptionInner,
}

enum SubscriptionInner {
    InProcess(in_process::Subscription),
    Amqp(Box<amqp::Subscription>),
}

impl Subscription {
    /// The next message; waits until there is one. [`BusError::Interrupted`] says the broker
    /// connection was lost and the subscription has resumed, with a possible gap;
    /// [`BusError::Closed`] that the bus is gone. Cancel-safe: dropping the future loses no
    /// message.
    pub async fn next(&mut self) -> Result<Vec<u8>, BusError> {
        match &mut self.inner {
            SubscriptionInner::InProcess(subscription) => subscription.next().await,
            SubscriptionInner::Amqp(subscription) => subscription.next().await,
        }
    }
}

/// The counters behind [`BusStats`], shared by the clones of one bus.
#[derive(Debug, Default)]
struct Counters {
    reconnects: AtomicU64,
    publish_failures: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> BusStats {
        BusStats {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            publish_failures: self.publish_failures.load(Ordering::Relaxed),
        }
    }

    fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    fn publish_failed(&self) {
        self.publish_failures.fetch_add(1, Ordering::Relaxed);
    }
}

type SharedCounters = Arc<Counters>;
