//! `kill -9` of the server while agents send events, then a restart: every event the agents sent
//! is stored exactly once. Agents re-send a batch until it is acknowledged; the server
//! acknowledges only after the commit and stores a re-sent batch once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_agent::uplink::{self, About, Identity, Uplink};
use palisade_proto::{Action, Connection, ConnectionEvent, Traffic, Verdict};
use serde_json::json;

const ADMIN_TOKEN: &str = "crash-test-bootstrap-token-0123456789";
const AGENTS: u64 = 4;
const BATCHES: u64 = 40;
const EVENTS_PER_BATCH: u64 = 250;

/// The server process, killed on drop so nothing is left running.
struct Server {
    child: Child,
    http: String,
    grpc: String,
    ca: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `palisade server` on SQLite in `data`, on the given addresses (port 0: any).
    fn start(data: &Path, http: &str, grpc: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args(["server", "--http", http, "--grpc", grpc, "--data"])
            .arg(data)
            .env("PALISADE_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env_remove("PALISADE_DATABASE_URL")
            .env_remove("PALISADE_AMQP_URL")
            .env_remove("PALISADE_DATA")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut http, mut grpc, mut ca) = (String::new(), String::new(), PathBuf::new());
        while http.is_empty() || grpc.is_empty() || ca.as_os_str().is_empty() {
            let line = lines
                .next()
                .expect("the server exited before it printed its addresses")
                .unwrap();
            if let Some(v) = line.strip_prefix("http: ") {
                http = v.to_owned();
            } else if let Some(v) = line.strip_prefix("grpc: ") {
                grpc = v.to_owned();
            } else if let Some(v) = line.strip_prefix("ca: ") {
                ca = PathBuf::from(v);
            }
        }
        Server {
            child,
            http,
            grpc,
            ca,
        }
    }
}

#[allow(clippy::disallowed_methods)]
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

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
            action: Action::Allow,
            verdict: Verdict::Allow,
            rule: None,
            policy_version: None,
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, "127.0.0.1:0", "127.0.0.1:0");
    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{}/api/v1/enrollment-tokens", server.http))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"max_uses": AGENTS, "expires_in_seconds": 3600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let server = Server::start(&data, &http, &grpc);

    let mut sent = 0;
    for a in agents {
        sent += tokio::time::timeout(Duration::from_secs(120), a)
            .await
            .expect("the agents did not finish after the restart")
            .unwrap();
    }
    assert_eq!(sent, AGENTS * BATCHES * EVENTS_PER_BATCH);
    for id in &ids {
        let export = client
            .get(format!(
                "{}/api/v1/events?agent={id}&format=jsonl",
                server.http
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut seqs: Vec<u64> = export
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=BATCHES)
            .flat_map(|b| (0..EVENTS_PER_BATCH).map(move |n| b * 1_000 + n))
            .collect();
        assert_eq!(
            seqs.len(),
            expected.len(),
            "agent {id}: stored {} events",
            seqs.len()
        );
        assert_eq!(seqs, expected, "agent {id}: every event exactly once");
    }
}
