//! API tokens as an admin manages them: created with or without an expiry, listed without
//! their secrets, revoked; expired and revoked tokens refused like unknown ones; only admins
//! manage tokens; the last working admin token is kept.

use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, Reply, TestServer, spawn_server};

on_both_backends!(
    listed_tokens_show_no_secret,
    expired_tokens_are_refused,
    revoked_tokens_are_refused_at_once,
    only_admins_manage_tokens,
    the_bootstrap_token_can_be_revoked_but_not_the_last_admin_token,
);

async fn create(s: &TestServer, by: &str, body: Value) -> Reply {
    s.post("/api/v1/tokens", Some(by), &body).await
}

/// The listed token named `name`.
async fn listed(s: &TestServer, name: &str) -> Value {
    let r = s.get("/api/v1/tokens", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {}", r.text))
        .clone()
}

async fn audit_actions(s: &TestServer) -> Vec<(String, String)> {
    let r = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.body["verified"], true, "{}", r.text);
    r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn listed_tokens_show_no_secret(s: &TestServer) {
    let r = create(s, ADMIN_TOKEN, json!({"name": "ci", "role": "viewer"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let secret = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(r.body["expires_at"], Value::Null);
    let id = r.body["id"].as_i64().unwrap();

    let list = s.get("/api/v1/tokens", Some(ADMIN_TOKEN)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let hash = palisade_server::credentials::token_hash(&secret);
    for hidden in [secret.as_str(), hash.as_str(), ADMIN_TOKEN, "token_hash"] {
        assert!(!list.text.contains(hidden), "{hidden} in {}", list.text);
    }
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bootstrap", "ci"]);
    let ci = listed(s, "ci").await;
    assert_eq!(ci["id"], id);
    assert_eq!(ci["role"], "viewer");
    assert_eq!(ci["created_by"], "token:bootstrap");
    assert_eq!(ci["expires_at"], Value::Null);
    assert_eq!(ci["revoked_at"], Value::Null);
    assert!(
        ci["created_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok()
    );
    assert_eq!(
        ci.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "id",
            "name",
            "role",
            "created_at",
            "created_by",
            "expires_at",
            "revoked_at"
        ]
    );
    let bootstrap = listed(s, "bootstrap").await;
    assert_eq!(bootstrap["role"], "admin");
    assert_eq!(bootstrap["created_by"], "system");
    assert_eq!(bootstrap["expires_at"], Value::Null);

    // The creation is audited with the token's id, never its secret.
    let audit = audit_actions(s).await;
    assert!(
        audit.contains(&(
            "token.create".to_owned(),
            format!("token:{id} name:ci role:viewer")
        )),
        "{audit:?}"
    );
}

async fn expired_tokens_are_refused(s: &TestServer) {
    let unknown = s.get("/api/v1/policies", Some("pal_nobody")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    let r = create(
        s,
        ADMIN_TOKEN,
        json!({"name": "short", "role": "viewer", "expires_in_seconds": 2}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let expires_at: Timestamp = r.body["expires_at"].as_str().unwrap().parse().unwrap();
    let created_at: Timestamp = listed(s, "short").await["created_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        expires_at.duration_since(created_at),
        jiff::SignedDuration::from_secs(2)
    );
    assert_eq!(listed(s, "short").await["expires_at"], r.body["expires_at"]);

    let before = s.get("/api/v1/policies", Some(&token)).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text);
    // Wait until the expiry has passed on the server's clock (the same clock as here).
    let wait =
        expires_at.duration_since(crate::helpers::now()) + jiff::SignedDuration::from_millis(100);
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    let after = s.get("/api/v1/policies", Some(&token)).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text);
    assert_eq!(after.body, unknown.body, "refused like an unknown token");

    // Lifetimes out of range, or not a number of seconds.
    for expires in [json!(0), json!(-5), json!(3650 * 86_400 + 1), json!("60")] {
        let r = create(
            s,
            ADMIN_TOKEN,
            json!({"name": "bad", "role": "viewer", "expires_in_seconds": expires}),
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{expires}: {}", r.text);
        assert!(
            r.text.contains("expires_in_seconds"),
            "{expires}: {}",
            r.text
        );
    }
    let r = s.get("/api/v1/tokens", Some(ADMIN_TOKEN)).await;
    assert!(!r.text.contains("\"bad\""), "a refused token is not stored");
}

async fn revoked_tokens_are_refused_at_once(s: &TestServer) {
    let unknown = s.get("/api/v1/policies", Some("pal_nobody")).await;
    let r = create(s, ADMIN_TOKEN, json!({"name": "laptop", "role": "editor"})).await;
    let token = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_i64().unwrap();
    let ok = s.get("/api/v1/policies", Some(&token)).await;
    assert_eq!(ok.status, StatusCode::OK);

    let revoked = s
        .post(
            &format!("/api/v1/tokens/{id}/revoke"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.body, json!({"id": id, "revoked": true}));
    let refused = s.get("/api/v1/policies", Some(&token)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text);
    assert_eq!(refused.body, unknown.body, "refused like an unknown token");
    let listed = listed(s, "laptop").await;
    assert!(
        listed["revoked_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok(),
        "{listed}"
    );

    // Again: nothing changes and nothing more is audited.
    let again = s
        .post(
            &format!("/api/v1/tokens/{id}/revoke"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let revocations: Vec<String> = audit_actions(s)
        .await
        .into_iter()
        .filter(|(action, _)| action == "token.revoke")
        .map(|(_, subject)| subject)
        .collect();
    assert_eq!(revocations, [format!("token:{id} name:laptop role:editor")]);

    for missing in ["999999", "abc"] {
        let r = s
            .post(
                &format!("/api/v1/tokens/{missing}/revoke"),
                Some(ADMIN_TOKEN),
                &json!({}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{missing}: {}", r.text);
        assert!(r.body["error"].as_str().unwrap().contains(missing));
    }
}

async fn only_admins_manage_tokens(s: &TestServer) {
    let target = create(s, ADMIN_TOKEN, json!({"name": "target", "role": "viewer"})).await;
    let id = target.body["id"].as_i64().unwrap();
    let revoke = format!("/api/v1/tokens/{id}/revoke");
    for role in ["editor", "analyst", "viewer", "auditor", "decision"] {
        let token = s.token(role).await;
        let r = s.get("/api/v1/tokens", Some(&token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}: {}", r.text);
        let r = create(s, &token, json!({"name": "x", "role": "viewer"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}: {}", r.text);
        let r = s.post(&revoke, Some(&token), &json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}: {}", r.text);
    }
    for r in [
        s.get("/api/v1/tokens", None).await,
        s.post(&revoke, None, &json!({})).await,
    ] {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    // The target was not revoked by any of them.
    assert_eq!(listed(s, "target").await["revoked_at"], Value::Null);
}

async fn the_bootstrap_token_can_be_revoked_but_not_the_last_admin_token(s: &TestServer) {
    let bootstrap = listed(s, "bootstrap").await["id"].as_i64().unwrap();
    let path = |id: i64| format!("/api/v1/tokens/{id}/revoke");

    // Alone, it is the last admin token: kept.
    let r = s
        .post(&path(bootstrap), Some(ADMIN_TOKEN), &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(s.get("/api/v1/tokens", Some(ADMIN_TOKEN)).await.status, 200);

    // With another admin token, it goes, and the other one goes on working.
    let ops = create(s, ADMIN_TOKEN, json!({"name": "ops", "role": "admin"})).await;
    let ops_token = ops.body["token"].as_str().unwrap().to_owned();
    let ops_id = ops.body["id"].as_i64().unwrap();
    let r = s.post(&path(bootstrap), Some(&ops_token), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s.get("/api/v1/tokens", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = s.get("/api/v1/tokens", Some(&ops_token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Now ops is the last one.
    let r = s.post(&path(ops_id), Some(&ops_token), &json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("last admin token")
    );
    let r = s.get("/api/v1/tokens", Some(&ops_token)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Tokens of other roles are no reason to keep an admin token, nor an obstacle.
    let viewer = create(s, &ops_token, json!({"name": "v", "role": "viewer"})).await;
    let viewer_id = viewer.body["id"].as_i64().unwrap();
    let r = s.post(&path(viewer_id), Some(&ops_token), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
