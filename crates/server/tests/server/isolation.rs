//! Agent isolation through the real agent client: the isolation policy reaches the agent's open
//! stream within a second of the API call, again at every reconnect while isolated, a change of
//! its group's policy does not lift it, and release brings the group's policy back; who may do
//! it; and the simulated endpoint, isolated, reports its connections blocked.

use std::sync::Arc;
use std::time::Duration;

use palisade_agent::uplink::Uplink;
use palisade_proto::gateway::v1::Policy;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::gateway::{enroll, new_token, next, policy};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    isolation_replaces_the_group_policy_until_release,
    only_agent_managers_isolate,
    an_isolated_simulated_endpoint_is_blocked,
);

async fn agent(s: &TestServer, id: &str) -> Value {
    let r = s
        .get(&format!("/api/v1/agents/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

async fn audit_actions(s: &TestServer) -> Vec<String> {
    let audit = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(audit.body["verified"], true);
    audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// The isolation policy as the agent must receive it: marked, valid for the engine, blocking
/// by default in enforce mode, allowing the gateway port of the node.
fn assert_isolation(p: &Policy, s: &TestServer) {
    assert!(p.isolation, "{p:?}");
    assert_eq!(
        (p.policy_id, p.name.as_str(), p.version),
        (0, "isolation", 0)
    );
    let loaded = palisade_policy::load("isolation.yaml", &p.source, &|_| {
        Err("no list files".to_owned())
    })
    .unwrap();
    let port = s.server.as_ref().unwrap().grpc.port();
    assert!(
        p.source.contains("default_action: block") && p.source.contains("mode: enforce"),
        "{}",
        p.source
    );
    assert!(
        p.source.contains(&format!("dst_port: {port}")),
        "{}",
        p.source
    );
    assert_eq!(loaded.policy.rules.len(), 1);
}

async fn isolation_replaces_the_group_policy_until_release(s: &TestServer) {
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
    let id = enrolled.identity.agent_id.clone();
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    let mut stream = uplink.policies().await.unwrap();
    let first = next(&mut stream).await;
    assert_eq!((first.name.as_str(), first.isolation), ("office", false));
    let shown = agent(s, &id).await;
    assert_eq!(
        (&shown["isolated"], &shown["isolated_at"]),
        (&json!(false), &Value::Null)
    );

    // Isolated: the open stream gets the isolation policy within a second (`next` waits 1 s).
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/isolate"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["isolated"], true, "{}", r.text);
    assert!(r.body["isolated_at"].is_string(), "{}", r.text);
    assert_isolation(&next(&mut stream).await, s);
    let shown = agent(s, &id).await;
    assert_eq!(shown["isolated"], true);
    let listed = s.get("/api/v1/agents", Some(ADMIN_TOKEN)).await;
    assert_eq!(listed.body[0]["isolated"], true, "{}", listed.text);

    // Isolating again changes nothing: same answer, no second audit entry, nothing pushed.
    let again = s
        .post(
            &format!("/api/v1/agents/{id}/isolate"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["isolated_at"], r.body["isolated_at"]);

    // A new version of its group's policy does not lift the isolation.
    let v2 = s
        .create_policy(ADMIN_TOKEN, "office", "yaml", &policy("office", 443))
        .await;
    assert_eq!(v2.status, StatusCode::CREATED, "{}", v2.text);
    let quiet = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(quiet.is_err(), "pushed while isolated: {quiet:?}");

    // A reconnect while isolated gets the isolation policy at once, not the group's.
    drop(stream);
    let mut stream = uplink.policies().await.unwrap();
    assert_isolation(&next(&mut stream).await, s);

    // Released: the group's current policy (version 2) comes back within a second.
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/release"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (&r.body["isolated"], &r.body["isolated_at"]),
        (&json!(false), &Value::Null)
    );
    let back = next(&mut stream).await;
    assert_eq!(
        (back.name.as_str(), back.version, back.isolation),
        ("office", 2, false)
    );
    assert_eq!(back.source, policy("office", 443));
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/release"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // And after a reconnect too.
    drop(stream);
    let mut stream = uplink.policies().await.unwrap();
    assert_eq!(next(&mut stream).await.version, 2);

    let actions = audit_actions(s).await;
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(
        (count("agent.isolate"), count("agent.release")),
        (1, 1),
        "{actions:?}"
    );

    let r = s
        .post(
            "/api/v1/agents/agent-nobody/isolate",
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = s
        .post(
            "/api/v1/agents/agent-nobody/release",
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

async fn only_agent_managers_isolate(s: &TestServer) {
    let enrolled = enroll(s).await;
    let id = enrolled.identity.agent_id;
    for role in ["viewer", "analyst", "auditor", "decision"] {
        let token = s.token(role).await;
        for action in ["isolate", "release"] {
            let r = s
                .post(
                    &format!("/api/v1/agents/{id}/{action}"),
                    Some(&token),
                    &json!({}),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{role} {action}: {}",
                r.text
            );
        }
    }
    let r = s
        .post(&format!("/api/v1/agents/{id}/isolate"), None, &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(agent(s, &id).await["isolated"], false);
    assert!(!audit_actions(s).await.iter().any(|a| a == "agent.isolate"));
    let editor = s.token("editor").await;
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/isolate"),
            Some(&editor),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(agent(s, &id).await["isolated"], true);
}

/// Events of one agent, oldest first.
async fn events(s: &TestServer, id: &str) -> Vec<Value> {
    let r = s
        .get(
            &format!("/api/v1/events?agent={id}&limit=1000"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut events = r.body["events"].as_array().unwrap().clone();
    events.sort_by_key(|e| e["seq"].as_u64().unwrap());
    events
}

async fn an_isolated_simulated_endpoint_is_blocked(s: &TestServer) {
    // A group policy that allows everything the simulated endpoint does.
    let open = "version: 1\nname: open\ndefault_action: allow\nrules: []\n";
    let r = s.create_policy(ADMIN_TOKEN, "open", "yaml", open).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    s.put(
        "/api/v1/groups/default/policy",
        Some(ADMIN_TOKEN),
        &json!({"policy_id": r.body["policy_id"]}),
    )
    .await;
    let token = new_token(s, json!({"expires_in_seconds": 600})).await;
    let server = palisade_sim::live::Server {
        url: s.grpc_url(),
        ca_pem: s.ca_pem(),
        token,
        state: None,
    };
    // A simulated endpoint running a port scan right now, so that it connects often enough
    // for a test (its applications follow working hours and may be quiet).
    let now = crate::helpers::now().as_millisecond();
    let mut endpoint = palisade_sim::fleet::Fleet::new(7, 1, now)
        .endpoints
        .remove(0);
    endpoint.attacks = vec![palisade_sim::attack::Attack {
        family: palisade_sim::Family::PortScan,
        start_ms: now - 60_000,
        duration_ms: 3_600_000,
        seed: 7,
    }];
    let counters = Arc::new(palisade_sim::live::Counters::default());
    let running = tokio::spawn(palisade_sim::live::run_endpoint(
        endpoint,
        server,
        Arc::new(crate::helpers::now),
        counters,
    ));

    // Wait for allowed events under the group's policy.
    let id = wait_for(|| async {
        let listed = s.get("/api/v1/agents", Some(ADMIN_TOKEN)).await;
        let id = listed.body[0]["id"].as_str()?.to_owned();
        events(s, &id)
            .await
            .iter()
            .any(|e| e["verdict"] == "allow" && e["policy_version"] == 1)
            .then_some(id)
    })
    .await;
    let r = s
        .post(
            &format!("/api/v1/agents/{id}/isolate"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let isolated_from = crate::helpers::now().as_millisecond() + 1_000;
    // Connections the endpoint makes once it holds the isolation policy are blocked by it,
    // and carry no policy version (the isolation policy is not a stored one).
    let blocked = wait_for(|| async {
        let after: Vec<Value> = events(s, &id)
            .await
            .into_iter()
            .filter(|e| e["time_ms"].as_i64().unwrap() > isolated_from)
            .collect();
        (!after.is_empty()).then_some(after)
    })
    .await;
    for e in &blocked {
        assert_eq!(
            (&e["action"], &e["verdict"], &e["policy_version"]),
            (&json!("block"), &json!("block"), &Value::Null),
            "{e}"
        );
    }
    running.abort();
}

/// Polls `probe` every 200 ms for at most 30 s.
async fn wait_for<T, F, Fut>(probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..150 {
        if let Some(found) = probe().await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("not seen within 30 s");
}
