//! Two `palisade server` processes as one install: one PostgreSQL database, one RabbitMQ, one CA
//! copied by the operator. An agent connected to node A receives a policy created through node
//! B; its events, sent through A, are read back through B.
//!
//! Needs `PALISADE_TEST_DATABASE_URL` and `PALISADE_TEST_AMQP_URL`; prints `skipped: ...`
//! without them. Each run has its own schema and its own bus prefix, both deleted at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use palisade_agent::uplink::{self, About, Uplink};
use palisade_proto::{Action, Connection, ConnectionEvent, Traffic, Verdict};
use serde_json::{Value, json};
use sqlx::Connection as _;

const ADMIN_TOKEN: &str = "nodes-test-bootstrap-token-0123456789";

/// One node: its process (killed on drop, so nothing is left running) and what it printed.
struct Node {
    child: Child,
    http: String,
    grpc: String,
    ca: PathBuf,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.log.display());
        }
    }
}

impl Node {
    /// `palisade server` on 127.0.0.1:0 with the shared database and bus; its log goes to
    /// `LOG`. Returns once it printed its addresses.
    fn start(data: &Path, database: &str, amqp: &str, prefix: &str, log: PathBuf) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
        command
            .args(["server", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .env("PALISADE_DATABASE_URL", database)
            .env("PALISADE_AMQP_URL", amqp)
            .env("PALISADE_AMQP_PREFIX", prefix)
            // Only the first start of an install uses it; the second node finds the admin.
            .env("PALISADE_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env_remove("PALISADE_HTTP")
            .env_remove("PALISADE_GRPC")
            .env_remove("PALISADE_DATA")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut node = Node {
            child,
            http: String::new(),
            grpc: String::new(),
            ca: PathBuf::new(),
            log,
        };
        let mut lines = BufReader::new(stdout).lines();
        while node.http.is_empty() || node.grpc.is_empty() || node.ca.as_os_str().is_empty() {
            let line = match lines.next() {
                Some(line) => line.unwrap(),
                None => panic!("{} exited before printing its addresses", data.display()),
            };
            if let Some(url) = line.strip_prefix("http: ") {
                node.http = url.to_owned();
            } else if let Some(url) = line.strip_prefix("grpc: ") {
                node.grpc = url.to_owned();
            } else if let Some(path) = line.strip_prefix("ca: ") {
                node.ca = PathBuf::from(path);
            }
        }
        node
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> Value {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.http))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// A PostgreSQL schema of its own, dropped at the end.
struct Schema {
    admin_url: String,
    name: String,
    url: String,
}

impl Schema {
    async fn create(url: &str) -> Schema {
        let name = format!("t_nodes_{}", random_hex());
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("PALISADE_TEST_DATABASE_URL={url} cannot be reached: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        Schema {
            admin_url: url.to_owned(),
            url: format!("{url}{sep}options=-c%20search_path%3D{name}"),
            name,
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await: a thread with a runtime of its own does it.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await
                })
        })
        .join();
    }
}

/// The bus's queues and exchanges under one prefix, deleted at the end (after the nodes).
struct Topology {
    url: String,
    prefix: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let properties = lapin::ConnectionProperties::default()
                        .with_executor(tokio_executor_trait::Tokio::current())
                        .with_reactor(tokio_reactor_trait::Tokio::current());
                    let connection = lapin::Connection::connect(&url, properties).await?;
                    let channel = connection.create_channel().await?;
                    for queue in ["event-batches", "alerts"] {
                        let name = format!("{prefix}.{queue}");
                        channel
                            .queue_delete(&name, QueueDeleteOptions::default())
                            .await?;
                    }
                    for exchange in ["policy-updates", "commands"] {
                        let name = format!("{prefix}.{exchange}");
                        channel
                            .exchange_delete(&name, ExchangeDeleteOptions::default())
                            .await?;
                    }
                    connection.close(200, "done").await
                })
        })
        .join();
    }
}

fn random_hex() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).unwrap();
    random.iter().map(|b| format!("{b:02x}")).collect()
}

fn policy(port: u16) -> String {
    format!(
        "version: 1\nname: office\ndefault_action: block\nrules:\n  - id: r\n    action: allow\n    match:\n      dst_port: {port}\n"
    )
}

/// The next policy on the stream, within `limit`.
async fn next_policy(
    stream: &mut uplink::PolicyStream,
    limit: Duration,
) -> palisade_proto::gateway::v1::Policy {
    tokio::time::timeout(limit, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no policy within {limit:?}"))
        .unwrap()
        .unwrap()
}

#[allow(clippy::disallowed_methods)]
fn instant() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods)]
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_one_install_through_the_database_and_the_bus() {
    let (Ok(database), Ok(amqp)) = (
        std::env::var("PALISADE_TEST_DATABASE_URL"),
        std::env::var("PALISADE_TEST_AMQP_URL"),
    ) else {
        eprintln!(
            "skipped: set PALISADE_TEST_DATABASE_URL and PALISADE_TEST_AMQP_URL to run two nodes"
        );
        return;
    };
    let schema = Schema::create(&database).await;
    let _topology = Topology {
        url: amqp.clone(),
        prefix: format!("palisade-test-{}", random_hex()),
    };
    let prefix = _topology.prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));

    let a = Node::start(
        &data_a,
        &schema.url,
        &amqp,
        &prefix,
        dir.path().join("a.log"),
    );
    // As the operator does before a new node's first start: give it the install's CA.
    std::fs::create_dir(&data_b).unwrap();
    for file in ["ca.pem", "ca.key"] {
        std::fs::copy(data_a.join(file), data_b.join(file)).unwrap();
    }
    let b = Node::start(
        &data_b,
        &schema.url,
        &amqp,
        &prefix,
        dir.path().join("b.log"),
    );
    let ca_pem = std::fs::read_to_string(&b.ca).unwrap();
    assert_eq!(ca_pem, std::fs::read_to_string(&a.ca).unwrap());

    // A token made through B enrolls an agent at A.
    let token = b
        .post(
            "/api/v1/enrollment-tokens",
            &json!({"expires_in_seconds": 600}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let about = About {
        hostname: "ws-1".into(),
        os: "linux".into(),
        version: "0.1.0".into(),
    };
    let enrolled = uplink::enroll(&a.grpc, &ca_pem, &token, &about)
        .await
        .unwrap();
    let agent_id = enrolled.identity.agent_id.clone();
    let mut on_a = Uplink::connect(&a.grpc, &enrolled.identity).await.unwrap();
    let mut stream = on_a.policies().await.unwrap();
    // The same certificate is good at B too.
    Uplink::connect(&b.grpc, &enrolled.identity)
        .await
        .unwrap()
        .policies()
        .await
        .unwrap();

    // A policy assigned through B reaches the agent at A...
    let created = b
        .post(
            "/api/v1/policies",
            &json!({"name": "office", "format": "yaml", "source": policy(53)}),
        )
        .await;
    let policy_id = created["policy_id"].as_i64().unwrap();
    b.put(
        "/api/v1/groups/default/policy",
        &json!({"policy_id": policy_id}),
    )
    .await;
    let first = next_policy(&mut stream, Duration::from_secs(5)).await;
    assert_eq!((first.policy_id, first.version), (policy_id, 1));

    // ...and so does a new version, within a second of the API call.
    let started = instant();
    b.post(
        "/api/v1/policies",
        &json!({"name": "office", "format": "yaml", "source": policy(443)}),
    )
    .await;
    let second = next_policy(&mut stream, Duration::from_secs(1)).await;
    let elapsed = started.elapsed();
    eprintln!("a version created through node B reached the agent at node A in {elapsed:?}");
    assert_eq!((second.policy_id, second.version), (policy_id, 2));
    assert_eq!(second.source, policy(443));
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // A version created through A, the agent's own node, arrives once.
    a.post(
        "/api/v1/policies",
        &json!({"name": "office", "format": "yaml", "source": policy(8443)}),
    )
    .await;
    let third = next_policy(&mut stream, Duration::from_secs(1)).await;
    assert_eq!((third.policy_id, third.version), (policy_id, 3));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stream.next())
            .await
            .is_err(),
        "the same change delivered twice"
    );

    // An agent isolated through B gets the isolation policy at A within a second (the command
    // travels on the bus's commands topic), and its group's policy back on release.
    let started = instant();
    let isolated = b
        .post(&format!("/api/v1/agents/{agent_id}/isolate"), &json!({}))
        .await;
    assert_eq!(isolated["isolated"], true, "{isolated}");
    let isolation = next_policy(&mut stream, Duration::from_secs(1)).await;
    eprintln!(
        "an isolation through node B reached the agent at node A in {:?}",
        started.elapsed()
    );
    assert!(isolation.isolation, "{isolation:?}");
    assert_eq!(
        a.get(&format!("/api/v1/agents/{agent_id}")).await["isolated"],
        true
    );
    b.post(&format!("/api/v1/agents/{agent_id}/release"), &json!({}))
        .await;
    let back = next_policy(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(
        (back.policy_id, back.version, back.isolation),
        (policy_id, 3, false)
    );

    // Events sent through A are read through B.
    let event = ConnectionEvent {
        seq: 1,
        time_ms: now_ms(),
        connection: Connection {
            app_path: Some("/usr/bin/curl".into()),
            dst_ip: Some("192.0.2.1".parse().unwrap()),
            dst_port: Some(443),
            ..Connection::default()
        },
        pid: None,
        sni: None,
        action: Action::Allow,
        verdict: Verdict::Allow,
        rule: None,
        policy_version: None,
        traffic: Traffic::default(),
    };
    // Acknowledged once RabbitMQ holds the batch; an ingest worker on either node stores it
    // right after.
    on_a.send_batch(1, &[event]).await.unwrap();
    let mut stored = Value::Null;
    for _ in 0..100 {
        stored = b.get(&format!("/api/v1/events?agent={agent_id}")).await;
        if stored["events"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = stored["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{stored}");
    assert_eq!(events[0]["agent_id"], agent_id.as_str(), "{stored}");

    // Neither node lost its broker connection or failed to publish.
    for node in [&a, &b] {
        let metrics = node.get("/metrics").await;
        let text = metrics.as_str().unwrap();
        assert!(text.contains("palisade_bus_reconnects_total 0\n"), "{text}");
        assert!(
            text.contains("palisade_bus_publish_failures_total 0\n"),
            "{text}"
        );
    }
    drop((a, b));
}
