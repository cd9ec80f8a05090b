//! Two `palisade server` processes as one install: one PostgreSQL database, one RabbitMQ, one CA
//! copied by the operator. An agent connected to node A receives a policy created through node
//! B; its events, sent through A, are read back through B.
//!
//! Needs `PALISADE_TEST_DATABASE_URL` and `PALISADE_TEST_AMQP_URL`; prints `skipped: ...`
//! without them. Each run has its own schema and its own bus prefix, both deleted at the end.

use std::time::{Duration, Instant};

use palisade_agent::uplink::{self, About, Uplink};
use palisade_proto::{Action, Connection, ConnectionEvent, Traffic, Verdict};
use serde_json::{Value, json};

use crate::install::{Node, Shared, now_ms};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_serve_one_install_through_the_database_and_the_bus() {
    let Some(shared) = Shared::from_env("two nodes").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));

    let any = ("127.0.0.1:0", "127.0.0.1:0");
    let a = Node::start(&data_a, Some(&shared), any, dir.path().join("a.log"));
    // As the operator does before a new node's first start: give it the install's CA.
    std::fs::create_dir(&data_b).unwrap();
    for file in ["ca.pem", "ca.key"] {
        std::fs::copy(data_a.join(file), data_b.join(file)).unwrap();
    }
    let b = Node::start(&data_b, Some(&shared), any, dir.path().join("b.log"));
    let ca_pem = std::fs::read_to_string(&b.ca).unwrap();
    assert_eq!(ca_pem, std::fs::read_to_string(&a.ca).unwrap());

    // A token made through B enrolls an agent at A.
    let token = b.enrollment_token().await;
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
        http_host: None,
        action: Action::Allow,
        verdict: Verdict::Allow,
        rule: None,
        policy_version: None,
        update_of: None,
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
