//! The message bus: the same cases on the in-process bus and, when `PALISADE_TEST_AMQP_URL` is
//! set, on RabbitMQ, where two bus instances stand for two server nodes. Each RabbitMQ case
//! uses its own name prefix and deletes its queues and exchanges afterwards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_server::bus::{Bus, BusError, BusOptions, FanoutTopic, WorkTopic};
use tokio::time::timeout;

use crate::helpers::Topology;

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
/// instances (two connections) sharing a name prefix, whose queues and exchanges are deleted
/// when this is dropped, also when the case fails.
struct Nodes {
    a: Bus,
    b: Bus,
    _topology: Option<Topology>,
}

impl Nodes {
    async fn start(kind: Kind, case: &str) -> Option<Nodes> {
        match kind {
            Kind::InProcess => {
                let bus = Bus::connect(None, options("unused")).await.unwrap();
                Some(Nodes {
                    a: bus.clone(),
                    b: bus,
                    _topology: None,
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
                    _topology: Some(Topology { url, prefix }),
                })
            }
        }
    }
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
    // Giving up waiting (a timeout, a `select!`) does not cost the subscription anything.
    nodes
        .a
        .publish(FanoutTopic::PolicyUpdates, b"policy-8".to_vec())
        .await
        .unwrap();
    for subscription in [&mut on_a, &mut on_b] {
        let message = timeout(PATIENCE, subscription.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message, b"policy-8");
    }
    drop((on_a, on_b, commands_on_a));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_fails_publishes_then_resumes() {
    let Ok(url) = std::env::var("PALISADE_TEST_AMQP_URL") else {
        eprintln!("skipped: set PALISADE_TEST_AMQP_URL to run this case on RabbitMQ");
        return;
    };
    // The bus reaches the broker through a proxy the test can cut, as a network failure or a
    // broker restart would.
    let (before, rest) = url.split_once('@').unwrap();
    let (broker, vhost) = rest.split_once('/').unwrap();
    let mut proxy = Proxy::start(broker.parse().unwrap()).await;
    let proxied = format!("{before}@{}/{vhost}", proxy.address);
    let prefix = format!("palisade-test-{}-outage", std::process::id());
    let topology = Topology {
        url: url.clone(),
        prefix: prefix.clone(),
    };
    let options = BusOptions {
        publish_timeout: Duration::from_secs(1),
        ..options(&prefix)
    };
    let bus = Bus::connect(Some(&proxied), options).await.unwrap();
    let mut consumer = bus.consume_work(WorkTopic::EventBatches).await;
    bus.publish_work(WorkTopic::EventBatches, b"before".to_vec())
        .await
        .unwrap();
    let delivery = timeout(PATIENCE, consumer.next()).await.unwrap();
    assert_eq!(delivery.payload(), b"before");
    delivery.ack().await.unwrap();

    proxy.cut();
    let during = bus
        .publish_work(WorkTopic::EventBatches, b"during".to_vec())
        .await;
    assert!(
        matches!(during, Err(BusError::Unavailable(_))),
        "{during:?}"
    );
    assert_eq!(bus.stats().publish_failures, 1);

    proxy.restore().await;
    bus.publish_work(WorkTopic::EventBatches, b"after".to_vec())
        .await
        .unwrap();
    // "before" may come again: its acknowledgement can be lost with the connection, and the
    // broker then delivers it again (at least once). "during" failed, which says it may not have
    // been delivered: it may also have reached the broker just before the cut took effect (the
    // proxy's connections close asynchronously), with only the confirm lost.
    loop {
        let delivery = timeout(PATIENCE, consumer.next()).await.unwrap();
        let payload = delivery.payload().to_vec();
        delivery.ack().await.unwrap();
        match payload.as_slice() {
            b"after" => break,
            b"before" | b"during" => {}
            other => panic!("unexpected {:?}", String::from_utf8_lossy(other)),
        }
    }
    assert!(timeout(QUIET, consumer.next()).await.is_err());
    let stats = bus.stats();
    assert_eq!(
        (stats.reconnects, stats.publish_failures),
        (1, 1),
        "{stats:?}"
    );

    drop((consumer, bus));
    proxy.cut();
    drop(topology);
}

/// A TCP forwarder to the broker that can be cut (listener and every connection closed) and
/// restored on the same port.
struct Proxy {
    address: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        Proxy {
            address,
            upstream,
            task: Some(tokio::spawn(forward(listener, upstream))),
        }
    }

    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting drops the listener and the JoinSet, which aborts every connection.
            task.abort();
        }
    }

    async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address).await.unwrap();
        self.task = Some(tokio::spawn(forward(listener, self.upstream)));
    }
}

async fn forward(listener: tokio::net::TcpListener, upstream: std::net::SocketAddr) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(async move {
            if let Ok(mut broker) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
            }
        });
    }
}
