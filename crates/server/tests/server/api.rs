//! What a user of the HTTP interface sees.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

const GOOD: &str = "\
version: 1
name: office
default_action: block
rules:
  - id: dns
    action: allow
    match:
      dst_port: 53
";

const BAD: &str = "\
version: 1
name: office
default_action: block
rules:
  - id: dns
    action: explode
    match:
      dst_port: 53
";

on_both_backends!(
    health_and_readiness,
    tokens_and_roles,
    invalid_policy_is_refused_and_nothing_stored,
    list_files_are_refused,
    versions_increment_and_audit_chain_verifies,
    metrics_count_requests_and_versions,
    concurrent_creates_get_consecutive_versions,
    stored_history_cannot_be_rewritten,
);

async fn health_and_readiness(s: &TestServer) {
    let r = s.get("/healthz", None).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "ok"));
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn tokens_and_roles(s: &TestServer) {
    let r = s.get("/api/v1/policies", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.get("/api/v1/policies", Some("not-a-token")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let viewer = s.token("viewer").await;
    let editor = s.token("editor").await;
    let r = s.get("/api/v1/policies", Some(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!([]));
    let r = s.create_policy(&viewer, "office", "yaml", GOOD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = s.create_policy(&editor, "office", "yaml", GOOD).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["created_by"], "token:editor-test");

    // Only an admin makes tokens.
    let r = s
        .post(
            "/api/v1/tokens",
            Some(&editor),
            &json!({"name": "x", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn invalid_policy_is_refused_and_nothing_stored(s: &TestServer) {
    let r = s.create_policy(ADMIN_TOKEN, "office", "yaml", BAD).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let first = r.body["diagnostics"][0].as_str().unwrap();
    assert!(
        first.starts_with("office.yaml:6:")
            && first.contains("error:")
            && first.contains("explode"),
        "{first}"
    );
    // A malformed request (unknown format, unknown field, bad name) is a 400, not a 422.
    for body in [
        json!({"name": "office", "format": "toml", "source": GOOD}),
        json!({"name": "office", "format": "yaml", "source": GOOD, "extra": 1}),
        json!({"name": "../office", "format": "yaml", "source": GOOD}),
    ] {
        let r = s.post("/api/v1/policies", Some(ADMIN_TOKEN), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    let r = s.get("/api/v1/policies", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.body, json!([]));
    assert_eq!(s.metric("palisade_policy_versions_total").await, "0");
    let audit = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user.create", "token.create"]);
}

async fn list_files_are_refused(s: &TestServer) {
    let source = "\
version: 1
name: office
default_action: allow
lists:
  telemetry:
    file: lists/telemetry.txt
    kind: domains
rules:
  - id: t
    action: block
    match:
      list: telemetry
";
    let r = s.create_policy(ADMIN_TOKEN, "office", "yaml", source).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.text.contains("cannot be read on the server"),
        "{}",
        r.text
    );
}

async fn versions_increment_and_audit_chain_verifies(s: &TestServer) {
    let json_source = r#"{"version": 1, "name": "office", "default_action": "allow", "rules": []}"#;
    for (n, (format, source)) in [("yaml", GOOD), ("json", json_source), ("yaml", GOOD)]
        .into_iter()
        .enumerate()
    {
        let r = s.create_policy(ADMIN_TOKEN, "office", format, source).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["version"], n + 1);
    }
    let list = s.get("/api/v1/policies", Some(ADMIN_TOKEN)).await;
    assert_eq!(list.body[0]["name"], "office");
    assert_eq!(list.body[0]["latest_version"], 3);
    let id = list.body[0]["id"].as_i64().unwrap();
    let versions = s
        .get(
            &format!("/api/v1/policies/{id}/versions"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(versions.status, StatusCode::OK);
    let numbers: Vec<i64> = versions
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert_eq!(versions.body[1]["format"], "json");
    assert_eq!(versions.body[1]["source"], json_source);
    let r = s
        .get("/api/v1/policies/999/versions", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let audit = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(audit.body["verified"], true, "{}", audit.text);
    let entries = audit.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2 + 3);
    assert_eq!(entries[4]["subject"], "policy:office@3");
    // Each entry names the hash of the one before it.
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    // A viewer may not read the audit log.
    let viewer = s.token("viewer").await;
    let r = s.get("/api/v1/audit", Some(&viewer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn metrics_count_requests_and_versions(s: &TestServer) {
    s.get("/healthz", None).await;
    s.get("/api/v1/policies", None).await;
    s.create_policy(ADMIN_TOKEN, "office", "yaml", GOOD).await;
    let text = s.get("/metrics", None).await.text;
    assert!(
        text.contains("palisade_http_requests_total{route=\"/healthz\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "palisade_http_requests_total{route=\"/api/v1/policies\",status=\"401\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "palisade_http_requests_total{route=\"/api/v1/policies\",status=\"201\"} 1\n"
        ),
        "{text}"
    );
    assert_eq!(s.metric("palisade_policy_versions_total").await, "1");
}

async fn concurrent_creates_get_consecutive_versions(s: &TestServer) {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = s
            .client
            .post(format!("{}/api/v1/policies", s.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "office", "format": "yaml", "source": GOOD}));
        requests.spawn(async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            r.json::<serde_json::Value>().await.unwrap()["version"]
                .as_i64()
                .unwrap()
        });
    }
    let mut versions = requests.join_all().await;
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
    let audit = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(audit.body["verified"], true, "{}", audit.text);
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 2 + 8);
}

async fn stored_history_cannot_be_rewritten(s: &TestServer) {
    let r = s.create_policy(ADMIN_TOKEN, "office", "yaml", GOOD).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    for sql in [
        "UPDATE policy_versions SET source = 'rules: []'",
        "DELETE FROM policy_versions",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ] {
        let refused = s.raw_execute(sql).await.unwrap_err();
        assert!(
            refused.contains("immutable") || refused.contains("append-only"),
            "{sql}: {refused}"
        );
    }
    let id = r.body["policy_id"].as_i64().unwrap();
    let versions = s
        .get(
            &format!("/api/v1/policies/{id}/versions"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(versions.body[0]["source"], GOOD);
    let audit = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(audit.body["verified"], true, "{}", audit.text);
    assert_eq!(audit.body["entries"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_private_credentials_and_later_starts_do_not() {
    use std::os::unix::fs::PermissionsExt;

    let s = spawn_server(Backend::Sqlite).await.unwrap();
    let server = s.server.as_ref().unwrap();
    let path = server.initial_credentials.clone().unwrap();
    assert_eq!(path, s.dir.path().join("data/initial-credentials"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(s.dir.path().join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("user: admin\n"));
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap();
    assert_eq!(password.len(), 24);
    assert!(s.dir.path().join("data/palisade.db").exists());

    // A restart on the same data directory keeps the admin and writes nothing.
    let TestServer { server, dir, .. } = s;
    server.unwrap().stop().await.unwrap();
    let again = palisade_server::start(
        palisade_server::Config {
            data_dir: dir.path().join("data"),
            database: palisade_server::Database::Sqlite,
            http: "127.0.0.1:0".parse().unwrap(),
            grpc: "127.0.0.1:0".parse().unwrap(),
            liveness: palisade_server::agents::Liveness::default(),
            bootstrap_token: None,
            amqp_url: None,
            amqp_prefix: None,
            retention_interval: palisade_server::retention::DEFAULT_INTERVAL,
            training_interval: palisade_server::training::DEFAULT_INTERVAL,
            oidc: None,
            https: None,
        },
        std::sync::Arc::new(|| jiff::Timestamp::UNIX_EPOCH),
    )
    .await
    .unwrap();
    assert_eq!(again.initial_credentials, None);
    assert_eq!(
        std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("credentials"))
            .count(),
        1,
        "only the first start's file"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/initial-credentials")).unwrap(),
        text
    );
    // The bootstrap token from the first start still works.
    let r = reqwest::Client::new()
        .get(format!("http://{}/api/v1/policies", again.http))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    again.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_does_not_answer() {
    let s = spawn_server(Backend::Sqlite).await.unwrap();
    let store = &s.server.as_ref().unwrap().store;
    store.close().await;
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = s.get("/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Writers are closed too: nothing is stored after the close.
    let batch = palisade_server::store::NewBatch {
        agent_id: "agent-1".into(),
        batch_seq: 1,
        received_ms: 0,
        events: Vec::new(),
    };
    assert!(store.store_event_batches(&[&batch]).await.is_err());
}
