//! `kill -9` of the server while agents send events, then a restart: every event the agents sent
//! is stored exactly once. Agents re-send a batch until it is acknowledged; the server
//! acknowledges only after the commit and stores a re-sent batch once. Through RabbitMQ it
//! acknowledges once the broker holds the batch, and a delivery in flight when the server died
//! is delivered again after the restart.
//!
//! On SQLite always; on PostgreSQL and RabbitMQ with `PALISADE_TEST_DATABASE_URL` and
//! `PALISADE_TEST_AMQP_URL` (prints `skipped: ...` without them).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_agent::uplink::{self, About, Identity, Uplink};
use palisade_proto::{Action, Connection, ConnectionEvent, Traffic, Verdict};
use serde_json::json;

use crate::install::{Node, Shared, now_ms};

const AGENTS: u64 = 4;
const BATCHES: u64 = 40;
const EVENTS_PER_BATCH: u64 = 250;

fn batch(number: u64) -> Vec<ConnectionEvent> {
    (0..EVENTS_PER_BATCH)
        .map(|n| ConnectionEvent {
            seq: number * 1_000 + n,
            time_ms: now_ms(),
            connection: Connection {
                app_path: Some("/usr/bin/curl".into()),
                domain: Some(format!("host{n}.example.com")),
                dst_ip: Some("192.0.2.7".parse().unwrap()),
                dst_port: Some(443),
                ..Connection::default()
            },
            pid: Some(4242),
            sni: None,
            http_host: None,
            action: Action::Allow,
            verdict: Verdict::Allow,
            rule: None,
            policy_version: None,
            update_of: None,
            traffic: Traffic::default(),
        })
        .collect()
}

/// Sends every batch in turn, each until it is acknowledged, reconnecting after failures.
async fn agent(grpc: String, identity: Identity, acked: Arc<AtomicU64>) -> u64 {
    let mut sent = 0;
    for number in 1..=BATCHES {
        let events = batch(number);
        loop {
            let outcome = match Uplink::connect(&grpc, &identity).await {
                Ok(mut uplink) => uplink.send_batch(number, &events).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        sent += events.len() as u64;
        acked.fetch_add(1, Ordering::Relaxed);
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_kill_9_exactly_once() {
    kill_9_then_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_kill_9_exactly_once_on_postgres_and_rabbitmq() {
    let Some(shared) = Shared::from_env("kill -9 on PostgreSQL and RabbitMQ").await else {
        return;
    };
    kill_9_then_restart(Some(&shared)).await;
}

/// Agents send events to a server on `shared` (else SQLite), which is killed without warning a
/// quarter of the way in and started again on the same addresses.
async fn kill_9_then_restart(shared: Option<&Shared>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = |n: u32| dir.path().join(format!("server-{n}.log"));
    let any = ("127.0.0.1:0", "127.0.0.1:0");
    let mut server = Node::start(&data, shared, any, log(1));
    let token = server
        .post(
            "/api/v1/enrollment-tokens",
            &json!({"max_uses": AGENTS, "expires_in_seconds": 3600}),
        )
        .await;
    let ca_pem = std::fs::read_to_string(&server.ca).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for n in 0..AGENTS {
        let about = About {
            hostname: format!("crash-{n}"),
            os: "Debian 12".into(),
            version: "test".into(),
        };
        let enrolled = uplink::enroll(
            &server.grpc,
            &ca_pem,
            token["token"].as_str().unwrap(),
            &about,
        )
        .await
        .unwrap();
        ids.push(enrolled.identity.agent_id.clone());
        agents.push(tokio::spawn(agent(
            server.grpc.clone(),
            enrolled.identity,
            acked.clone(),
        )));
    }

    // Kill the server without warning once a quarter of the batches are in, mid-stream.
    while acked.load(Ordering::Relaxed) < AGENTS * BATCHES / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let before = acked.load(Ordering::Relaxed);
    assert!(
        before < AGENTS * BATCHES,
        "the agents finished before the kill"
    );
    let (http, grpc) = (
        server.http.trim_start_matches("http://").to_owned(),
        server.grpc.trim_start_matches("https://").to_owned(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = Node::start(&data, shared, (&http, &grpc), log(2));

    let mut sent = 0;
    for a in agents {
        sent += tokio::time::timeout(Duration::from_secs(120), a)
            .await
            .expect("the agents did not finish after the restart")
            .unwrap();
    }
    assert_eq!(sent, AGENTS * BATCHES * EVENTS_PER_BATCH);
    let expected: Vec<u64> = (1..=BATCHES)
        .flat_map(|b| (0..EVENTS_PER_BATCH).map(move |n| b * 1_000 + n))
        .collect();
    for id in &ids {
        // Through RabbitMQ a batch is acknowledged once the broker holds it, and stored right
        // after: wait until every event is in (or more than every event, which fails below).
        let mut seqs = Vec::new();
        for _ in 0..600 {
            seqs = stored_seqs(&server, id).await;
            if seqs.len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            seqs.len(),
            expected.len(),
            "agent {id}: stored {} events",
            seqs.len()
        );
        assert_eq!(seqs, expected, "agent {id}: every event exactly once");
    }
}

/// The sequence numbers of every event stored for agent `id`, in order.
async fn stored_seqs(server: &Node, id: &str) -> Vec<u64> {
    let export = server
        .get(&format!("/api/v1/events?agent={id}&format=jsonl"))
        .await;
    let mut seqs: Vec<u64> = export
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs
}
