//! The message bus: the same cases on the in-process bus and, when `PALISADE_TEST_AMQP_URL` is
//! set, on RabbitMQ, where two bus instances stand for two server nodes. Each RabbitMQ case
//! uses its own name prefix and deletes its queues and exchanges afterwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use palisade_server::bus::{Bus, BusError, BusOptions, FanoutTopic, WorkTopic};
use tokio::time::timeout;

/// How long a test waits for a message that should come.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a test waits to be sure a message does not come.
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InProcess,
    RabbitMq,
}

/// Two nodes on one bus: in-process, two handles on the same bus; on RabbitMQ, two bus
/// instances (two connections) sharing a name prefix.
struct Nodes {
    a: Bus,
    b: Bus,
    topology: Option<Topology>,
}

impl Nodes {
    async fn start(kind: Kind, case: &str) -> Option<Nodes> {
        match kind {
            Kind::InProcess => {
                let bus = Bus::connect(None, options("unused")).await.unwrap();
                Some(Nodes {
                    a: bus.clone(),
                    b: bus,
                    topology: None,
                })
            }
            Kind::RabbitMq => {
                let Ok(url) = std::env::var("PALISADE_TEST_AMQP_URL") else {
                    eprintln!("skipped: set PALISADE_TEST_AMQP_URL to run this case on RabbitMQ");
                    return None;
                };
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let prefix = format!(
                    "palisade-test-{}-{}-{case}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                let a = Bus::connect(Some(&url), options(&prefix)).await.unwrap();
                let b = Bus::connect(Some(&url), options(&prefix)).await.unwrap();
                Some(Nodes {
                    a,
                    b,
                    topology: Some(Topology { url, prefix }),
                })
            }
        }
    }

    /// Deletes the RabbitMQ queues and exchanges of this case.
    async fn finish(self) {
        drop(self.a);
        drop(self.b);
        if let Some(topology) = self.topology {
            topology.delete().await;
        }
    }
}

struct Topology {
    url: String,
    prefix: String,
}

impl Topology {
    async fn delete(self) {
        let connection = Connection::connect(&self.url, connection_properties())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        for topic in WorkTopic::ALL {
            let name = format!("{}.{}", self.prefix, topic.name());
            channel
                .queue_delete(&name, QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        for topic in FanoutTopic::ALL {
            let name = format!("{}.{}", self.prefix, topic.name());
            channel
                .exchange_delete(&name, ExchangeDeleteOptions::default())
                .await
                .unwrap();
        }
        connection.close(200, "done").await.unwrap();
    }
}

fn connection_properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
}

fn options(prefix: &str) -> BusOptions {
    BusOptions {
        capacity: 64,
        prefix: prefix.to_owned(),
        publish_timeout: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(500),
        prefetch: 8,
    }
}

/// Runs one case on both buses, each in its own test.
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn in_process() {
                super::$case(super::Kind::InProcess).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rabbitmq() {
                super::$case(super::Kind::RabbitMq).await;
            }
        }
    };
}

on_both!(competing_consumers_share_batches_exactly_once);
on_both!(unacknowledged_batch_is_redelivered_to_another_consumer);
on_both!(fanout_reaches_every_node);
on_both!(publish_after_connection_loss_reconnects_and_delivers);

async fn competing_consumers_share_batches_exactly_once(kind: Kind) {
    let Some(nodes) = Nodes::start(kind, "compete").await else {
        return;
    };
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for (worker, node) in [(0, &nodes.a), (1, &nodes.b)] {
        let mut consumer = node.consume_work(WorkTopic::EventBatches).await;
        let sender = sender.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let delivery = consumer.next().await;
                // Storing a batch takes a moment; meanwhile the other worker takes the next.
                tokio::time::sleep(Duration::from_millis(5)).await;
                sender.send((worker, delivery.payload().to_vec())).unwrap();
                delivery.ack().await.unwrap();
            }
        }));
    }
    let batches: BTreeSet<Vec<u8>> = (0..40)
        .map(|i| format!("batch-{i:02}").into_bytes())
        .collect();
    for batch in &batches {
        nodes
            .a
            .publish_work(WorkTopic::EventBatches, batch.clone())
            .await
            .unwrap();
    }

    let mut seen = Vec::new();
    let mut per_worker = [0; 2];
    while seen.len() < batches.len() {
        let (worker, batch) = timeout(PATIENCE, received.recv()).await.unwrap().unwrap();
        per_worker[worker] += 1;
        seen.push(batch);
    }
    assert!(
        timeout(QUIET, received.recv()).await.is_err(),
        "a batch was delivered twice"
    );
    let distinct: BTreeSet<Vec<u8>> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "a batch was delivered twice");
    assert_eq!(distinct, batches);
    assert!(
        per_worker[0] > 0 && per_worker[1] > 0,
        "both workers take batches: {per_worker:?}"
    );
    for worker in workers {
        worker.abort();
        let _ = worker.await;
    }
    nodes.finish().await;
}

async fn unacknowledged_batch_is_redelivered_to_another_consumer(kind: Kind) {
    let Some(nodes) = Nodes::start(kind, "redeliver").await else {
        return;
    };
    let mut first = nodes.a.consume_work(WorkTopic::EventBatches).await;
    nodes
        .a
        .publish_work(WorkTopic::EventBatches, b"batch-1".to_vec())
        .await
        .unwrap();
    let delivery = timeout(PATIENCE, first.next()).await.unwrap();
    assert_eq!(delivery.payload(), b"batch-1");
    // The worker dies before it stored the batch.
    drop(delivery);
    drop(first);

    let mut second = nodes.b.consume_work(WorkTopic::EventBatches).await;
    let delivery = timeout(PATIENCE, second.next()).await.unwrap();
    assert_eq!(delivery.payload(), b"batch-1");
    delivery.ack().await.unwrap();
    assert!(
        timeout(QUIET, second.next()).await.is_err(),
        "an acknowledged batch came back"
    );
    drop(second);
    nodes.finish().await;
}

async fn fanout_reaches_every_node(kind: Kind) {
    let Some(nodes) = Nodes::start(kind, "fanout").await else {
        return;
    };
    let mut on_a = nodes.a.subscribe(FanoutTopic::PolicyUpdates).await;
    let mut on_b = nodes.b.subscribe(FanoutTopic::PolicyUpdates).await;
    let mut commands_on_a = nodes.a.subscribe(FanoutTopic::Commands).await;

    nodes
        .b
        .publish(FanoutTopic::PolicyUpdates, b"policy-7".to_vec())
        .await
        .unwrap();
    nodes
        .b
        .publish(FanoutTopic::Commands, b"isolate agent-3".to_vec())
        .await
        .unwrap();

    for subscription in [&mut on_a, &mut on_b] {
        let message = timeout(PATIENCE, subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message, b"policy-7");
    }
    // Each topic is its own: the command subscriber sees the command and not the policy.
    let message = timeout(PATIENCE, commands_on_a.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message, b"isolate agent-3");
    assert!(timeout(QUIET, commands_on_a.next()).await.is_err());
    assert!(timeout(QUIET, on_a.next()).await.is_err());
    drop((on_a, on_b, commands_on_a));
    nodes.finish().await;
}

async fn publish_after_connection_loss_reconnects_and_delivers(kind: Kind) {
    let Some(nodes) = Nodes::start(kind, "reconnect").await else {
        return;
    };
    let bus = &nodes.a;
    let mut consumer = bus.consume_work(WorkTopic::Alerts).await;
    let mut commands = bus.subscribe(FanoutTopic::Commands).await;

    bus.drop_connection().await;
    bus.publish_work(WorkTopic::Alerts, b"alert-after".to_vec())
        .await
        .unwrap();
    // The consumer registered before the loss resumes on its own.
    let delivery = timeout(PATIENCE, consumer.next()).await.unwrap();
    assert_eq!(delivery.payload(), b"alert-after");
    delivery.ack().await.unwrap();

    if kind == Kind::RabbitMq {
        // The subscription's queue went with the connection: it says so once it is back.
        let gap = timeout(PATIENCE, commands.next()).await.unwrap();
        assert!(matches!(gap, Err(BusError::Interrupted)), "{gap:?}");
    }
    bus.publish(FanoutTopic::Commands, b"revoke agent-9".to_vec())
        .await
        .unwrap();
    let message = timeout(PATIENCE, commands.next()).await.unwrap().unwrap();
    assert_eq!(message, b"revoke agent-9");

    let stats = bus.stats();
    assert_eq!(stats.publish_failures, 0);
    match kind {
        Kind::InProcess => assert_eq!(stats.reconnects, 0),
        Kind::RabbitMq => assert_eq!(stats.reconnects, 1, "{stats:?}"),
    }
    drop((consumer, commands));
    nodes.finish().await;
}

#[tokio::test]
async fn in_process_publish_waits_while_the_topic_is_full() {
    let bus = Bus::in_process(&BusOptions {
        capacity: 2,
        ..BusOptions::default()
    });
    let mut consumer = bus.consume_work(WorkTopic::EventBatches).await;
    for batch in [b"one", b"two"] {
        bus.publish_work(WorkTopic::EventBatches, batch.to_vec())
            .await
            .unwrap();
    }
    // Delivered but not yet acknowledged still counts against the bound.
    let first = consumer.next().await;
    let third = bus.publish_work(WorkTopic::EventBatches, b"three".to_vec());
    tokio::pin!(third);
    assert!(
        timeout(QUIET, &mut third).await.is_err(),
        "publish did not wait"
    );
    first.ack().await.unwrap();
    timeout(PATIENCE, third).await.unwrap().unwrap();
    let second = consumer.next().await;
    assert_eq!(second.payload(), b"two");
}

#[tokio::test]
async fn unsupported_bus_url_is_refused() {
    let refused = Bus::connect(Some("postgres://127.0.0.1/bus"), BusOptions::default()).await;
    assert!(matches!(refused, Err(BusError::InvalidUrl)), "{refused:?}");
}

#[tokio::test]
async fn unreachable_broker_is_reported_within_the_publish_timeout() {
    // Port 1 on the loopback: nothing listens, connections are refused at once.
    let options = BusOptions {
        publish_timeout: Duration::from_millis(300),
        ..options("unreachable")
    };
    let refused = timeout(
        PATIENCE,
        Bus::connect(Some("amqp://guest:guest@127.0.0.1:1/%2f"), options),
    )
    .await
    .unwrap();
    let Err(BusError::Unavailable(reason)) = refused else {
        panic!("{refused:?}");
    };
    assert!(
        !reason.contains("guest:guest"),
        "the password leaks: {reason}"
    );
}
