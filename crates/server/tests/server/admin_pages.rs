//! The console's token and settings pages as a browser without script uses them: an API token
//! created here works against the API and stops working when revoked here; an enrollment token
//! created here enrolls an agent; a setting changed here is in force, a bad value is explained,
//! and roles that may only read are refused changes.

use palisade_agent::uplink;
use reqwest::StatusCode;

use crate::console::{between, create_user, sign_in};
use crate::gateway::about;
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    an_admin_manages_tokens_in_the_console,
    settings_are_changed_in_the_console_by_admins_only,
);

async fn an_admin_manages_tokens_in_the_console(s: &TestServer) {
    create_user(s, "ada", "admin").await;
    create_user(s, "ed", "editor").await;
    let (mut ada, _) = sign_in(s, "ada").await;
    let csrf = between(&ada.get("/console").await.body, "name=\"csrf\" value=\"");

    let page = ada
        .post(
            "/console/tokens",
            &[
                ("csrf", &csrf),
                ("name", "siem-export"),
                ("role", "viewer"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let secret = between(&page.body, "id=\"secret\">");
    assert_eq!(
        s.get("/api/v1/agents", Some(&secret)).await.status,
        StatusCode::OK
    );
    // Shown once: the list has the name, never the secret.
    let list = ada.get("/console/tokens").await;
    assert!(
        list.body.contains("<td>siem-export</td><td>viewer</td>"),
        "{}",
        list.body
    );
    assert!(!list.body.contains(&secret));
    let bad = ada
        .post(
            "/console/tokens",
            &[
                ("csrf", &csrf),
                ("name", "x"),
                ("role", "viewer"),
                ("days", "0"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("a whole number from 1 to 3650"),
        "{}",
        bad.body
    );
    let tokens = s.get("/api/v1/tokens", Some(ADMIN_TOKEN)).await;
    let id = tokens
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "siem-export")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let revoked = ada
        .post(&format!("/console/tokens/{id}/revoke"), &[("csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(
        s.get("/api/v1/agents", Some(&secret)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let page = ada
        .post(
            "/console/enrollment",
            &[
                ("csrf", &csrf),
                ("group", "default"),
                ("max_uses", "1"),
                ("days", "1"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let secret = between(&page.body, "id=\"secret\">");
    let enrolled = uplink::enroll(&s.grpc_url(), &s.ca_pem(), &secret, &about())
        .await
        .unwrap();
    assert_eq!(enrolled.group, "default");
    let list = ada.get("/console/enrollment").await;
    assert!(list.body.contains("1 of 1"), "{}", list.body);
    // Single use: a second agent is refused.
    assert!(
        uplink::enroll(&s.grpc_url(), &s.ca_pem(), &secret, &about())
            .await
            .is_err()
    );

    // An editor manages enrollment tokens but not API tokens.
    let (mut ed, _) = sign_in(s, "ed").await;
    let page = ed.get("/console/tokens").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    let page = ed.get("/console/enrollment").await;
    assert!(
        page.body.contains("id=\"new-enrollment-token\""),
        "{}",
        page.body
    );
    let ed_csrf = between(&page.body, "name=\"csrf\" value=\"");
    let refused = ed
        .post(
            "/console/tokens",
            &[
                ("csrf", &ed_csrf),
                ("name", "mine"),
                ("role", "admin"),
                ("days", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

async fn settings_are_changed_in_the_console_by_admins_only(s: &TestServer) {
    create_user(s, "ada", "admin").await;
    create_user(s, "aud", "auditor").await;
    let (mut ada, _) = sign_in(s, "ada").await;
    let page = ada.get("/console/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let retention = |value| {
        [
            ("csrf", csrf.as_str()),
            ("key", "events.retention_days"),
            ("value", value),
        ]
    };
    let done = ada.post("/console/settings", &retention("7")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let settings = s.get("/api/v1/settings", Some(ADMIN_TOKEN)).await;
    assert!(settings.text.contains("\"value\":7"), "{}", settings.text);
    let bad = ada.post("/console/settings", &retention("forever")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body.contains("expected an integer from 1 to 3650"),
        "{}",
        bad.body
    );

    let (mut aud, _) = sign_in(s, "aud").await;
    let page = aud.get("/console/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("<td>7</td>") || page.body.contains(">7<"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("action=\"/console/settings\""),
        "{}",
        page.body
    );
    let aud_csrf = between(&page.body, "name=\"csrf\" value=\"");
    let refused = aud
        .post(
            "/console/settings",
            &[
                ("csrf", &aud_csrf),
                ("key", "events.retention_days"),
                ("value", "1"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}
