//! The RabbitMQ bus (lapin on tokio), for several server nodes.
//!
//! Topology, declared on every (re)connection, each name prefixed with `BusOptions::prefix`:
//! - a durable queue per [`WorkTopic`], published to through the default exchange with
//!   persistent messages; consumers acknowledge explicitly, with a bounded prefetch;
//! - a durable fanout exchange per [`FanoutTopic`]; each [`Subscription`] binds its own
//!   server-named, exclusive queue (deleted with its connection).
//!
//! One connection per bus is shared by a confirm-mode publishing channel and one channel per
//! consumer or subscription. When the connection is lost, whoever notices first reconnects,
//! waiting between attempts from `backoff_initial`, doubling up to `backoff_max`. A publish
//! gives up after `publish_timeout`; consumers and subscriptions wait for as long as it takes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::{
    Acker as DeliveryAcker, BusError, BusOptions, Counters, Delivery, FanoutTopic, SharedCounters,
    WorkTopic,
};

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

#[derive(Clone)]
pub(super) struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// Holds the broker password: never logged.
    url: String,
    options: BusOptions,
    link: Mutex<LinkState>,
    /// Why the last connection or publish failed, for the error a timed-out publish returns.
    /// A plain mutex: never held across an await, so it is free while a reconnect waits.
    last_error: std::sync::Mutex<Option<String>>,
    counters: SharedCounters,
}

#[derive(Default)]
struct LinkState {
    current: Option<Link>,
    /// Counts connections made; the first is not a reconnect.
    connections: u64,
}

/// One live connection and its publishing channel.
#[derive(Clone)]
struct Link {
    connection: Arc<Connection>,
    publish: Channel,
    generation: u64,
}

impl Link {
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publish.status().connected()
    }
}

impl AmqpBus {
    pub(super) async fn connect(url: &str, options: BusOptions) -> Result<AmqpBus, BusError> {
        let bus = AmqpBus {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                options,
                link: Mutex::new(LinkState::default()),
                last_error: std::sync::Mutex::new(None),
                counters: Arc::new(Counters::default()),
            }),
        };
        match tokio::time::timeout(bus.inner.options.publish_timeout, bus.link()).await {
            Ok(_) => Ok(bus),
            Err(_) => Err(bus.unavailable()),
        }
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub(super) async fn publish_work(
        &self,
        topic: WorkTopic,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let queue = self.name(topic.name());
        self.publish_to("", &queue, &payload).await
    }

    pub(super) async fn publish(
        &self,
        topic: FanoutTopic,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let exchange = self.name(topic.name());
        self.publish_to(&exchange, "", &payload).await
    }

    pub(super) async fn consume_work(&self, topic: WorkTopic) -> WorkConsumer {
        let mut consumer = WorkConsumer {
            bus: self.clone(),
            queue: self.name(topic.name()),
            current: None,
        };
        // Register now when the broker is there, so the consumer competes from the start.
        if let Ok(current) =
            tokio::time::timeout(self.inner.options.publish_timeout, consumer.open()).await
        {
            consumer.current = Some(current);
        }
        consumer
    }

    pub(super) async fn subscribe(&self, topic: FanoutTopic) -> Subscription {
        let mut subscription = Subscription {
            bus: self.clone(),
            exchange: self.name(topic.name()),
            current: None,
            gap: false,
        };
        match tokio::time::timeout(self.inner.options.publish_timeout, subscription.open()).await {
            Ok(current) => subscription.current = Some(current),
            // Messages published before the queue is bound are missed: say so on `next`.
            Err(_) => subscription.gap = true,
        }
        subscription
    }

    pub(super) async fn drop_connection(&self) {
        let link = self.inner.link.lock().await.current.take();
        if let Some(link) = link {
            if let Err(err) = link.connection.close(320, "closed by palisade").await {
                warn!(cause = %err, "closing the broker connection failed");
            }
        }
    }

    fn name(&self, topic: &str) -> String {
        format!("{}.{topic}", self.inner.options.prefix)
    }

    /// Publishes and waits for the broker's confirm, reconnecting as needed, for at most
    /// `publish_timeout`.
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
    ) -> Result<(), BusError> {
        let attempts = async {
            let mut backoff = Backoff::new(&self.inner.options);
            loop {
                let link = self.link().await;
                match publish_once(&link.publish, exchange, routing_key, payload).await {
                    Ok(Confirmation::Nack(_)) => return Err(BusError::Rejected),
                    Ok(_) => return Ok(()),
                    Err(err) => {
                        warn!(exchange, routing_key, cause = %err, "publish failed; retrying");
                        self.set_last_error(err.to_string());
                        self.forget(link.generation).await;
                        backoff.wait().await;
                    }
                }
            }
        };
        let result = match tokio::time::timeout(self.inner.options.publish_timeout, attempts).await
        {
            Ok(result) => result,
            Err(_) => Err(self.unavailable()),
        };
        if result.is_err() {
            self.inner.counters.publish_failed();
        }
        result
    }

    /// A healthy connection: the current one, or a new one, waiting (with backoff) as long as
    /// it takes; callers bound the wait.
    async fn link(&self) -> Link {
        let mut state = self.inner.link.lock().await;
        if let Some(link) = state.current.as_ref().filter(|link| link.healthy()) {
            return link.clone();
        }
        state.current = None;
        let mut backoff = Backoff::new(&self.inner.options);
        loop {
            match self.open_link(state.connections + 1).await {
                Ok(link) => {
                    state.connections += 1;
                    if state.connections > 1 {
                        self.inner.counters.reconnected();
                        info!(
                            connection = state.connections,
                            "reconnected to the message broker"
                        );
                    }
                    state.current = Some(link.clone());
                    return link;
                }
                Err(err) => {
                    warn!(cause = %err, "cannot connect to the message broker; retrying");
                    self.set_last_error(err.to_string());
                    backoff.wait().await;
                }
            }
        }
    }

    /// Drops the connection of that generation if it is still the current one.
    async fn forget(&self, generation: u64) {
        let mut state = self.inner.link.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|link| link.generation == generation)
        {
            state.current = None;
        }
    }

    fn unavailable(&self) -> BusError {
        let last_error = self.last_error().clone();
        let cause = last_error.as_deref().unwrap_or("no answer");
        BusError::Unavailable(format!(
            "no confirmed delivery within {:?}: {cause}",
            self.inner.options.publish_timeout
        ))
    }

    fn set_last_error(&self, error: String) {
        *self.last_error() = Some(error);
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Only ever assigned whole: a poisoned lock still holds a valid value.
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn open_link(&self, generation: u64) -> Result<Link, lapin::Error> {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current())
            .with_connection_name(format!("palisade {}", self.inner.options.prefix).into());
        let connection = Connection::connect(&self.inner.url, properties).await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        for topic in WorkTopic::ALL {
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            publish
                .queue_declare(&self.name(topic.name()), options, FieldTable::default())
                .await?;
        }
        for topic in FanoutTopic::ALL {
            let options = ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            publish
                .exchange_declare(
                    &self.name(topic.name()),
                    ExchangeKind::Fanout,
                    options,
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(Link {
            connection: Arc::new(connection),
            publish,
            generation,
        })
    }
}

pub(super) struct WorkConsumer {
    bus: AmqpBus,
    queue: String,
    current: Option<Consuming>,
}

/// A registered consumer and the channel it lives on.
struct Consuming {
    _channel: Channel,
    consumer: lapin::Consumer,
}

impl WorkConsumer {
    /// Cancel-safe: the registered consumer stays in `self` while this waits, so dropping the
    /// future (a `select!`, a timeout) neither loses nor returns anything.
    pub(super) async fn next(&mut self) -> Delivery {
        loop {
            if self.current.is_none() {
                self.current = Some(self.open().await);
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            match current.consumer.next().await {
                Some(Ok(delivery)) => {
                    return Delivery {
                        payload: delivery.data,
                        ack: Some(DeliveryAcker::Amqp(Acker {
                            acker: Some(delivery.acker),
                        })),
                    };
                }
                Some(Err(err)) => {
                    warn!(queue = %self.queue, cause = %err, "consumer lost; resuming");
                }
                None => warn!(queue = %self.queue, "consumer cancelled; resuming"),
            }
            self.current = None;
            // Whatever ended the consumer, do not spin on it.
            tokio::time::sleep(self.bus.inner.options.backoff_initial).await;
        }
    }

    /// Registers a consumer, reconnecting and retrying with backoff as long as it takes.
    async fn open(&self) -> Consuming {
        let mut backoff = Backoff::new(&self.bus.inner.options);
        loop {
            let link = self.bus.link().await;
            match self.try_open(&link).await {
                Ok(consuming) => return consuming,
                Err(err) => {
                    warn!(queue = %self.queue, cause = %err, "cannot consume; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    async fn try_open(&self, link: &Link) -> Result<Consuming, lapin::Error> {
        let channel = link.connection.create_channel().await?;
        channel
            .basic_qos(self.bus.inner.options.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                &self.queue,
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Consuming {
            _channel: channel,
            consumer,
        })
    }
}

/// Settles one delivered message with the broker.
pub(super) struct Acker {
    acker: Option<lapin::acker::Acker>,
}

impl Acker {
    pub(super) async fn ack(mut self) -> Result<(), BusError> {
        let Some(acker) = self.acker.take() else {
            return Ok(());
        };
        acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|err| BusError::Unavailable(err.to_string()))
    }

    /// Gives the message back to the queue now rather than when the channel closes.
    pub(super) fn requeue(mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left: the channel closes with the process and the broker requeues.
            return;
        };
        runtime.spawn(async move {
            let options = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(err) = acker.nack(options).await {
                warn!(cause = %err, "returning a message to the queue failed; the broker will on reconnect");
            }
        });
    }
}

pub(super) struct Subscription {
    bus: AmqpBus,
    exchange: String,
    current: Option<Consuming>,
    /// Set when messages may have been missed; reported once the subscription is back.
    gap: bool,
}

impl Subscription {
    /// Cancel-safe like `WorkConsumer::next`; a gap noticed before a cancellation is still
    /// reported by the next call.
    pub(super) async fn next(&mut self) -> Result<Vec<u8>, BusError> {
        loop {
            if self.current.is_none() {
                self.current = Some(self.open().await);
            }
            if self.gap {
                self.gap = false;
                return Err(BusError::Interrupted);
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            match current.consumer.next().await {
                Some(Ok(delivery)) => return Ok(delivery.data),
                Some(Err(err)) => {
                    warn!(exchange = %self.exchange, cause = %err, "subscription lost; resuming");
                }
                None => warn!(exchange = %self.exchange, "subscription cancelled; resuming"),
            }
            self.current = None;
            self.gap = true;
            tokio::time::sleep(self.bus.inner.options.backoff_initial).await;
        }
    }

    /// Binds a fresh exclusive queue to the exchange and consumes it, reconnecting and
    /// retrying with backoff as long as it takes.
    async fn open(&self) -> Consuming {
        let mut backoff = Backoff::new(&self.bus.inner.options);
        loop {
            let link = self.bus.link().await;
            match self.try_open(&link).await {
                Ok(consuming) => return consuming,
                Err(err) => {
                    warn!(exchange = %self.exchange, cause = %err, "cannot subscribe; retrying");
                    backoff.wait().await;
                }
            }
        }
    }

    async fn try_open(&self, link: &Link) -> Result<Consuming, lapin::Error> {
        let channel = link.connection.create_channel().await?;
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("", options, FieldTable::default())
            .await?;
        let queue = queue.name().as_str().to_owned();
        channel
            .queue_bind(
                &queue,
                &self.exchange,
                "",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        // Fan-out messages are notifications: acknowledged on delivery; a gap is reported.
        let options = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(&queue, "", options, FieldTable::default())
            .await?;
        Ok(Consuming {
            _channel: channel,
            consumer,
        })
    }
}

async fn publish_once(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
) -> Result<Confirmation, lapin::Error> {
    let properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
    channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await?
        .await
}

/// Capped exponential backoff on tokio's timer.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(options: &BusOptions) -> Backoff {
        Backoff {
            next: options.backoff_initial,
            max: options.backoff_max,
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = self.next.saturating_mul(2).min(self.max);
    }
}
