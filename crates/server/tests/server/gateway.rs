//! The agent gateway through the real agent client over real TLS on 127.0.0.1: enrollment,
//! heartbeats, refused credentials, policy distribution, the REST routes for agents, groups and
//! enrollment tokens.

use std::time::Duration;

use palisade_agent::managed;
use palisade_agent::uplink::{self, About, Enrolled, Heartbeat, Identity, Uplink};
use palisade_proto::gateway::v1::gateway_client::GatewayClient;
use palisade_proto::gateway::v1::{Event, EventBatch, HeartbeatRequest, PoliciesRequest};
use palisade_proto::gateway::{MAX_MESSAGE_BYTES, SERVER_NAME};
use palisade_proto::{Action, Connection, ConnectionEvent, Traffic, Verdict};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server, wait_for};

/// Runs each case once on SQLite and once on PostgreSQL (skipped without the variable).
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(s) = super::spawn_server(super::Backend::Sqlite).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(s) = super::spawn_server(super::Backend::Postgres).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }
            }
        )*
    };
}

on_both_backends!(
    enrolled_agent_heartbeats_and_shows_online,
    refused_tokens_store_no_agent,
    calls_need_a_known_unrevoked_certificate,
    policies_are_pushed_at_connect_and_on_change,
    malformed_and_oversized_messages_are_refused,
    new_routes_check_roles,
    a_stalled_store_slows_agents_down_and_loses_nothing,
);

pub(crate) fn policy(name: &str, port: u16) -> String {
    format!(
        "version: 1\nname: {name}\ndefault_action: block\nrules:\n  - id: r\n    action: allow\n    match:\n      dst_port: {port}\n"
    )
}

pub(crate) fn about() -> About {
    About {
        hostname: "ws-17".into(),
        os: "linux".into(),
        version: "0.1.0".into(),
    }
}

pub(crate) async fn new_token(s: &TestServer, body: Value) -> String {
    let r = s
        .post("/api/v1/enrollment-tokens", Some(ADMIN_TOKEN), &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["token"].as_str().unwrap().to_owned()
}

pub(crate) async fn enroll(s: &TestServer) -> Enrolled {
    let token = new_token(s, json!({"expires_in_seconds": 600})).await;
    uplink::enroll(&s.grpc_url(), &s.ca_pem(), &token, &about())
        .await
        .unwrap()
}

async fn agents(s: &TestServer) -> Vec<Value> {
    let r = s.get("/api/v1/agents", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body.as_array().unwrap().clone()
}

/// A gateway client built by hand, with or without a client certificate.
async fn raw_client(
    s: &TestServer,
    identity: Option<&Identity>,
) -> Result<GatewayClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(s.ca_pem()))
        .domain_name(SERVER_NAME);
    if let Some(id) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            &id.cert_pem,
            &id.key_pem,
        ));
    }
    let channel = Endpoint::from_shared(s.grpc_url())
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(GatewayClient::new(channel))
}

fn event(seq: u64) -> ConnectionEvent {
    ConnectionEvent {
        seq,
        time_ms: crate::helpers::now().as_millisecond(),
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
    }
}

async fn enrolled_agent_heartbeats_and_shows_online(s: &TestServer) {
    let enrolled = enroll(s).await;
    assert_eq!(enrolled.group, "default");
    assert!(enrolled.identity.agent_id.starts_with("agent-"));
    // The identity survives a trip through its directory.
    let dir = s.dir.path().join("agent-identity");
    enrolled.identity.save(&dir).unwrap();
    let identity = Identity::load(&dir).unwrap();

    let listed = agents(s).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "offline", "no heartbeat yet");

    let mut uplink = Uplink::connect(&s.grpc_url(), &identity).await.unwrap();
    uplink
        .heartbeat(&Heartbeat {
            version: "0.2.0".into(),
            os: "debian 13".into(),
            policy_version: Some(4),
            counters: [("decisions".to_owned(), 12)].into_iter().collect(),
        })
        .await
        .unwrap();
    let listed = agents(s).await;
    let a = &listed[0];
    assert_eq!(a["id"], identity.agent_id.as_str());
    assert_eq!(a["status"], "online");
    assert_eq!(a["version"], "0.2.0");
    assert_eq!(a["os"], "debian 13");
    assert_eq!(a["hostname"], "ws-17");
    assert_eq!(a["policy_version"], 4);
    assert_eq!(a["counters"]["decisions"], 12);
    let one = s
        .get(
            &format!("/api/v1/agents/{}", identity.agent_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(one.body["status"], "online");

    // A batch is acknowledged with its own sequence number.
    uplink.send_batch(1, &[event(1), event(2)]).await.unwrap();
    // Stored under the agent's id, once, even when the batch is sent again (a lost ack).
    uplink.send_batch(1, &[event(1), event(2)]).await.unwrap();
    wait_for("the re-sent batch to be recognised", || async {
        s.metric(r#"palisade_event_batches_total{outcome="duplicate"}"#)
            .await
            == "1"
    })
    .await;
    let stored = s
        .get(
            &format!("/api/v1/events?agent={}", identity.agent_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text);
    assert_eq!(
        stored.body["events"].as_array().unwrap().len(),
        2,
        "{}",
        stored.text
    );

    // The enrollment is in the audit log.
    let audit = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"enrollment_token.create"), "{actions:?}");
    assert!(actions.contains(&"agent.enroll"), "{actions:?}");
    assert_eq!(audit.body["verified"], true);
}

async fn refused_tokens_store_no_agent(s: &TestServer) {
    let url = s.grpc_url();
    let ca = s.ca_pem();
    let refused = |r: Result<Enrolled, uplink::UplinkError>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
        e.to_string()
    };

    let e = refused(uplink::enroll(&url, &ca, "pal_enroll_nope", &about()).await);
    assert!(e.contains("enrollment token unknown"), "{e}");

    let single = new_token(s, json!({"expires_in_seconds": 600})).await;
    uplink::enroll(&url, &ca, &single, &about()).await.unwrap();
    let e = refused(uplink::enroll(&url, &ca, &single, &about()).await);
    assert!(e.contains("used up"), "{e}");

    let r = s
        .post(
            "/api/v1/enrollment-tokens",
            Some(ADMIN_TOKEN),
            &json!({"expires_in_seconds": 600, "max_uses": 5}),
        )
        .await;
    let revoked = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_i64().unwrap();
    let r = s
        .post(
            &format!("/api/v1/enrollment-tokens/{id}/revoke"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = refused(uplink::enroll(&url, &ca, &revoked, &about()).await);
    assert!(e.contains("revoked"), "{e}");

    let expiring = new_token(s, json!({"expires_in_seconds": 1})).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = refused(uplink::enroll(&url, &ca, &expiring, &about()).await);
    assert!(e.contains("expired"), "{e}");

    // Only the one good enrollment is stored; the listing shows uses, never secrets.
    assert_eq!(agents(s).await.len(), 1);
    let tokens = s.get("/api/v1/enrollment-tokens", Some(ADMIN_TOKEN)).await;
    assert_eq!(tokens.status, StatusCode::OK);
    assert!(!tokens.text.contains("pal_enroll_"), "{}", tokens.text);
    let uses: Vec<i64> = tokens
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uses"].as_i64().unwrap())
        .collect();
    assert_eq!(uses.iter().sum::<i64>(), 1, "{uses:?}");
}

async fn calls_need_a_known_unrevoked_certificate(s: &TestServer) {
    // No client certificate: only Enroll is allowed.
    let mut anonymous = raw_client(s, None).await.unwrap();
    let err = anonymous
        .heartbeat(HeartbeatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = anonymous.policies(PoliciesRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // A certificate from another CA does not get through the handshake.
    let other_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = ca_params.self_signed(&other_ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &other_ca_key);
    let enrolled = enroll(s).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let forged = rcgen::CertificateParams::new(vec![enrolled.identity.agent_id.clone()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let forged = Identity {
        agent_id: enrolled.identity.agent_id.clone(),
        cert_pem: forged.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: enrolled.identity.ca_pem.clone(),
    };
    let _ = other_ca;
    let outcome = async {
        let mut uplink = Uplink::connect(&s.grpc_url(), &forged).await?;
        uplink.heartbeat(&Heartbeat::default()).await
    }
    .await;
    // Refused by the TLS layer (the server closes the connection), not by a gateway method.
    match outcome {
        Ok(()) => panic!("a certificate from another CA was accepted"),
        Err(uplink::UplinkError::Connect { .. }) => {}
        Err(e) => assert!(
            matches!(
                e.code(),
                Some(Code::Cancelled | Code::Unavailable | Code::Unknown)
            ),
            "{e:?}"
        ),
    }
    assert_eq!(agents(s).await[0]["last_seen"], Value::Null);

    // A revoked agent is refused, also on its open policy stream.
    let assigned = s
        .create_policy(ADMIN_TOKEN, "office", "yaml", &policy("office", 53))
        .await;
    let policy_id = assigned.body["policy_id"].as_i64().unwrap();
    let r = s
        .put(
            "/api/v1/groups/default/policy",
            Some(ADMIN_TOKEN),
            &json!({"policy_id": policy_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    let heartbeat = Heartbeat {
        version: "0.1.0".into(),
        os: "linux".into(),
        ..Heartbeat::default()
    };
    uplink.heartbeat(&heartbeat).await.unwrap();
    let mut stream = uplink.policies().await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().name, "office");
    let r = s
        .post(
            &format!("/api/v1/agents/{}/revoke", enrolled.identity.agent_id),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ended = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("the open stream of a revoked agent did not end");
    assert_eq!(ended.unwrap_err().code(), Some(Code::PermissionDenied));
    let err = uplink.heartbeat(&heartbeat).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    let err = uplink.policies().await.unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    let listed = agents(s).await;
    assert_eq!(listed[0]["status"], "revoked");
}

pub(crate) async fn next(stream: &mut uplink::PolicyStream) -> palisade_proto::gateway::v1::Policy {
    tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("no policy within 1 s")
        .unwrap()
        .unwrap()
}

async fn policies_are_pushed_at_connect_and_on_change(s: &TestServer) {
    let office = s
        .create_policy(ADMIN_TOKEN, "office", "yaml", &policy("office", 53))
        .await;
    let office_id = office.body["policy_id"].as_i64().unwrap();
    let r = s
        .put(
            "/api/v1/groups/default/policy",
            Some(ADMIN_TOKEN),
            &json!({"policy_id": office_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let enrolled = enroll(s).await;
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    let mut stream = uplink.policies().await.unwrap();
    let first = next(&mut stream).await;
    assert_eq!((first.name.as_str(), first.version), ("office", 1));
    assert_eq!(first.policy_id, office_id);
    assert_eq!(first.format, "yaml");
    assert_eq!(first.source, policy("office", 53));
    // Signed by the server's CA, so the agent can keep it on disk and trust it after a restart.
    assert!(managed::signed_by(&first, &s.ca_pem()));
    let mut forged = first.clone();
    forged.source = policy("office", 22);
    assert!(!managed::signed_by(&forged, &s.ca_pem()));

    // A new version reaches the agent within a second of the API call.
    let r = s
        .create_policy(ADMIN_TOKEN, "office", "yaml", &policy("office", 443))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let second = next(&mut stream).await;
    assert_eq!((second.name.as_str(), second.version), ("office", 2));
    assert_eq!(second.source, policy("office", 443));

    // A policy for another group does not reach it; re-assigning its group does.
    s.create_policy(ADMIN_TOKEN, "lab", "yaml", &policy("lab", 22))
        .await;
    let lab_id = s.get("/api/v1/policies", Some(ADMIN_TOKEN)).await.body[0]["id"]
        .as_i64()
        .unwrap();
    let r = s
        .put(
            "/api/v1/groups/default/policy",
            Some(ADMIN_TOKEN),
            &json!({"policy_id": lab_id}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let third = next(&mut stream).await;
    assert_eq!((third.name.as_str(), third.version), ("lab", 1));

    // Moving the agent to another group pushes that group's policy.
    let r = s
        .post(
            "/api/v1/groups",
            Some(ADMIN_TOKEN),
            &json!({"name": "servers"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.put(
        "/api/v1/groups/servers/policy",
        Some(ADMIN_TOKEN),
        &json!({"policy_id": office_id}),
    )
    .await;
    let r = s
        .post(
            &format!("/api/v1/agents/{}/group", enrolled.identity.agent_id),
            Some(ADMIN_TOKEN),
            &json!({"group": "servers"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let fourth = next(&mut stream).await;
    assert_eq!((fourth.name.as_str(), fourth.version), ("office", 2));

    let groups = s.get("/api/v1/groups", Some(ADMIN_TOKEN)).await;
    let servers = groups
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "servers")
        .unwrap()
        .clone();
    assert_eq!(servers["policy_name"], "office");
    assert_eq!(servers["agents"], 1);
    let r = s
        .post(
            "/api/v1/groups",
            Some(ADMIN_TOKEN),
            &json!({"name": "servers"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

async fn malformed_and_oversized_messages_are_refused(s: &TestServer) {
    let enrolled = enroll(s).await;
    let mut client = raw_client(s, Some(&enrolled.identity)).await.unwrap();

    let mut bad = Event::from(&event(1));
    bad.connection.as_mut().unwrap().dst_ip = Some("192.0.2.999".into());
    let err = client
        .send_events(EventBatch {
            batch_seq: 1,
            events: vec![Event::from(&event(2)), bad],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("192.0.2.999"), "{}", err.message());

    let mut huge = event(3);
    huge.connection.cmdline = Some("x".repeat(MAX_MESSAGE_BYTES + 1));
    let err = client
        .send_events(EventBatch {
            batch_seq: 2,
            events: vec![Event::from(&huge)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().contains("too large"), "{}", err.message());

    // The connection still serves well-formed calls.
    let ok = client
        .send_events(EventBatch {
            batch_seq: 3,
            events: vec![Event::from(&event(4))],
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().batch_seq, 3);
}

async fn new_routes_check_roles(s: &TestServer) {
    let viewer = s.token("viewer").await;
    let decision = s.token("decision").await;
    let editor = s.token("editor").await;
    let enrolled = enroll(s).await;
    let id = enrolled.identity.agent_id;

    let writes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/api/v1/enrollment-tokens".into(),
            json!({"expires_in_seconds": 60}),
        ),
        ("POST", "/api/v1/groups".into(), json!({"name": "g"})),
        (
            "PUT",
            "/api/v1/groups/default/policy".into(),
            json!({"policy_id": 1}),
        ),
        ("POST", format!("/api/v1/agents/{id}/revoke"), json!({})),
        ("POST", format!("/api/v1/agents/{id}/isolate"), json!({})),
        ("POST", format!("/api/v1/agents/{id}/release"), json!({})),
        (
            "POST",
            format!("/api/v1/agents/{id}/group"),
            json!({"group": "default"}),
        ),
        (
            "POST",
            "/api/v1/enrollment-tokens/1/revoke".into(),
            json!({}),
        ),
    ];
    for (method, path, body) in &writes {
        for token in [&viewer, &decision] {
            let r = match *method {
                "PUT" => s.put(path, Some(token), body).await,
                _ => s.post(path, Some(token), body).await,
            };
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                r.text
            );
        }
        let r = s.post(path, None, body).await;
        assert!(
            matches!(
                r.status,
                StatusCode::UNAUTHORIZED | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{path}"
        );
    }
    for path in [
        "/api/v1/agents",
        "/api/v1/groups",
        "/api/v1/enrollment-tokens",
    ] {
        assert_eq!(
            s.get(path, Some(&viewer)).await.status,
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            s.get(path, Some(&decision)).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
        assert_eq!(
            s.get(path, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // Nothing changed; an editor may do it.
    assert_eq!(agents(s).await[0]["status"], "offline");
    let r = s
        .post(
            "/api/v1/enrollment-tokens",
            Some(&editor),
            &json!({"expires_in_seconds": 60, "max_uses": 3, "group": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["max_uses"], 3);
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/revoke"),
            Some(&editor),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .post(
            "/api/v1/enrollment-tokens",
            Some(&editor),
            &json!({"expires_in_seconds": 60, "group": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

/// Stopping the node ends the agents' open policy streams instead of waiting for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_open_policy_streams() {
    let s = spawn_server(Backend::Sqlite).await.unwrap();
    let office = s
        .create_policy(ADMIN_TOKEN, "office", "yaml", &policy("office", 53))
        .await;
    s.put(
        "/api/v1/groups/default/policy",
        Some(ADMIN_TOKEN),
        &json!({"policy_id": office.body["policy_id"]}),
    )
    .await;
    let enrolled = enroll(&s).await;
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    let mut stream = uplink.policies().await.unwrap();
    assert_eq!(next(&mut stream).await.name, "office");
    tokio::time::timeout(Duration::from_secs(5), s.stop())
        .await
        .expect("the node did not stop while a policy stream was open");
    let ended = tokio::time::timeout(Duration::from_secs(1), stream.next())
        .await
        .expect("the stream did not end");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
}

/// Two agents send 80 batches each at once while the store is stalled: nothing is refused or
/// dropped. On one node the acknowledgements wait for the store (the agents are slowed down,
/// the queue is full, later batches wait for room); through RabbitMQ the broker holds the
/// backlog. Once the store is back every event is stored exactly once.
async fn a_stalled_store_slows_agents_down_and_loses_nothing(s: &TestServer) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BATCHES: u64 = 80;
    const PER_BATCH: u64 = 3;
    let mut ids = Vec::new();
    let mut uplinks = Vec::new();
    for _ in 0..2 {
        let enrolled = enroll(s).await;
        uplinks.push(
            Uplink::connect(&s.grpc_url(), &enrolled.identity)
                .await
                .unwrap(),
        );
        ids.push(enrolled.identity.agent_id);
    }
    let stall = s.stall_event_writes().await;
    let acked = Arc::new(AtomicUsize::new(0));
    let mut sends = tokio::task::JoinSet::new();
    for uplink in &uplinks {
        for batch in 1..=BATCHES {
            let mut uplink = uplink.clone();
            let acked = acked.clone();
            sends.spawn(async move {
                let events: Vec<_> = (0..PER_BATCH).map(|k| event(batch * 10 + k + 1)).collect();
                let sent = uplink.send_batch(batch, &events).await;
                if sent.is_ok() {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                sent
            });
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    if !s.through_bus() {
        assert_eq!(
            acked.load(Ordering::SeqCst),
            0,
            "a batch was acknowledged before it was stored"
        );
        assert_eq!(s.metric("palisade_ingest_queue_batches").await, "128");
        let waits: u64 = s
            .metric("palisade_ingest_waits_total")
            .await
            .parse()
            .unwrap();
        assert!(waits > 0, "no batch waited for room");
    }
    stall.release().await;
    while let Some(sent) = sends.join_next().await {
        sent.unwrap().unwrap();
    }
    let total = 2 * BATCHES * PER_BATCH;
    wait_for("every event to be stored", || async {
        s.metric(r#"palisade_events_total{outcome="stored"}"#).await == total.to_string()
    })
    .await;
    for id in &ids {
        let stored = s
            .get(
                &format!("/api/v1/events?agent={id}&limit=1000"),
                Some(ADMIN_TOKEN),
            )
            .await;
        let events = stored.body["events"].as_array().unwrap();
        assert_eq!(events.len() as u64, BATCHES * PER_BATCH, "{}", stored.text);
    }
    assert_eq!(s.metric("palisade_ingest_busy_total").await, "0");
}
