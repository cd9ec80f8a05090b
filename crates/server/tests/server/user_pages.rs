//! Managing users, as an admin does it in the console and a script through the API: a role
//! change applies at the user's next request; a new password, a reset second factor and a
//! removal end the user's sessions; a lockout can be lifted; the last admin cannot be demoted
//! or removed; only admins change users. And the audit log's filters, which show each change.

use reqwest::StatusCode;
use serde_json::json;

use crate::console::{Browser, PASSWORD, between, create_user, sign_in};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    an_admin_changes_a_users_role_password_and_second_factor,
    the_last_admin_stays_and_only_admins_change_users,
    the_audit_log_is_filtered_by_who_what_and_when,
);

async fn user_id(s: &TestServer, name: &str) -> i64 {
    let users = s.get("/api/v1/users", Some(ADMIN_TOKEN)).await;
    users
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn an_admin_changes_a_users_role_password_and_second_factor(s: &TestServer) {
    create_user(s, "ada", "admin").await;
    create_user(s, "val", "viewer").await;
    let val_id = user_id(s, "val").await;
    let (mut ada, _) = sign_in(s, "ada").await;
    let (mut val, _) = sign_in(s, "val").await;
    let page = ada.get(&format!("/console/users/{val_id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"role\">viewer<"), "{}", page.body);
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let action = format!("/console/users/{val_id}/action");

    // Promoted to editor: the policy editor opens at the next request, same session.
    assert_eq!(
        val.get("/console/policies/new").await.status,
        StatusCode::FORBIDDEN
    );
    let done = ada
        .post(
            &action,
            &[("csrf", &csrf), ("action", "role"), ("role", "editor")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        val.get("/console/policies/new").await.status,
        StatusCode::OK
    );
    let bad = ada
        .post(
            &action,
            &[("csrf", &csrf), ("action", "role"), ("role", "decision")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("for API tokens"), "{}", bad.body);

    // A new password ends the session; the old password no longer works, the new one does.
    let short = ada
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("action", "password"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.body);
    assert!(
        short.body.contains("at least 12 characters"),
        "{}",
        short.body
    );
    let new_password = "a much longer passphrase";
    let done = ada
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("action", "password"),
                ("password", new_password),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        val.get("/console").await.location.as_deref(),
        Some("/login")
    );
    let mut fresh = Browser::new(s);
    let old = fresh
        .post("/login", &[("name", "val"), ("password", PASSWORD)])
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.body);
    let new = fresh
        .post("/login", &[("name", "val"), ("password", new_password)])
        .await;
    assert_eq!(new.location.as_deref(), Some("/login/second-factor"));
    let prompt = fresh.get("/login/second-factor").await;
    assert!(prompt.body.contains("Enter your code"), "{}", prompt.body);

    // A reset second factor: the next sign-in enrols a new authenticator.
    let done = ada
        .post(
            &action,
            &[("csrf", &csrf), ("action", "reset-second-factor")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = ada.get(&format!("/console/users/{val_id}")).await;
    assert!(page.body.contains("at next sign-in"), "{}", page.body);
    let mut again = Browser::new(s);
    again
        .post("/login", &[("name", "val"), ("password", new_password)])
        .await;
    let enrol = again.get("/login/second-factor").await;
    assert!(
        enrol.body.contains("Set up your authenticator"),
        "{}",
        enrol.body
    );

    // Locked out by guesses, unlocked by the admin.
    create_user(s, "lou", "analyst").await;
    let lou_id = user_id(s, "lou").await;
    let mut guesser = Browser::new(s);
    for _ in 0..5 {
        guesser
            .post(
                "/login",
                &[("name", "lou"), ("password", "a wrong guess here")],
            )
            .await;
    }
    let locked = guesser
        .post("/login", &[("name", "lou"), ("password", PASSWORD)])
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    let page = ada.get(&format!("/console/users/{lou_id}")).await;
    assert!(page.body.contains("id=\"unlock\""), "{}", page.body);
    let done = ada
        .post(
            &format!("/console/users/{lou_id}/action"),
            &[("csrf", &csrf), ("action", "unlock")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let open = guesser
        .post("/login", &[("name", "lou"), ("password", PASSWORD)])
        .await;
    assert_eq!(open.location.as_deref(), Some("/login/second-factor"));

    // Removed: gone from the list, and the session ends.
    let (mut lou, _) = sign_in(s, "lou").await;
    let done = ada
        .post(
            &format!("/console/users/{lou_id}/action"),
            &[("csrf", &csrf), ("action", "remove")],
        )
        .await;
    assert_eq!(done.location.as_deref(), Some("/console/users"));
    assert_eq!(
        lou.get("/console").await.location.as_deref(),
        Some("/login")
    );
    let list = ada.get("/console/users").await;
    assert!(!list.body.contains(">lou<"), "{}", list.body);
    assert_eq!(
        ada.get(&format!("/console/users/{lou_id}")).await.status,
        StatusCode::NOT_FOUND
    );

    let audit = s.get("/api/v1/audit?action=user.", Some(ADMIN_TOKEN)).await;
    assert_eq!(audit.body["verified"], true, "{}", audit.text);
    let actions: Vec<(&str, &str)> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "user:ada")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("user.role", "user:val role:editor"),
            ("user.password", "user:val"),
            ("user.second_factor.reset", "user:val"),
            ("user.unlock", "user:lou"),
            ("user.remove", "user:lou"),
        ]
    );
}

async fn the_last_admin_stays_and_only_admins_change_users(s: &TestServer) {
    // The bootstrap admin is the only admin user: it can be neither demoted nor removed.
    let users = s.get("/api/v1/users", Some(ADMIN_TOKEN)).await;
    let admins: Vec<i64> = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["role"] == "admin")
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    let [only] = admins[..] else {
        panic!("one admin at first: {}", users.text)
    };
    let demote = s
        .post(
            &format!("/api/v1/users/{only}/role"),
            Some(ADMIN_TOKEN),
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demote.status, StatusCode::CONFLICT, "{}", demote.text);
    assert!(demote.text.contains("last admin"), "{}", demote.text);
    let remove = s
        .delete(&format!("/api/v1/users/{only}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(remove.status, StatusCode::CONFLICT, "{}", remove.text);

    // With a second admin, the first can go.
    create_user(s, "ada", "admin").await;
    let removed = s
        .delete(&format!("/api/v1/users/{only}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    let missing = s
        .delete(&format!("/api/v1/users/{only}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    let unknown = s
        .post("/api/v1/users/x/unlock", Some(ADMIN_TOKEN), &json!({}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);

    // Other roles may not change users, through the API or the console.
    create_user(s, "aud", "auditor").await;
    let ada = user_id(s, "ada").await;
    for role in ["editor", "analyst", "viewer", "auditor"] {
        let token = s.token(role).await;
        let r = s
            .post(
                &format!("/api/v1/users/{ada}/password"),
                Some(&token),
                &json!({"password": "another long password"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}: {}", r.text);
    }
    let (mut aud, _) = sign_in(s, "aud").await;
    let page = aud.get(&format!("/console/users/{ada}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("id=\"actions\""), "{}", page.body);
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let refused = aud
        .post(
            &format!("/console/users/{ada}/action"),
            &[("csrf", &csrf), ("action", "remove")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(s.store().user_by_name("ada").await.unwrap().is_some());
}

async fn the_audit_log_is_filtered_by_who_what_and_when(s: &TestServer) {
    create_user(s, "ada", "admin").await;
    let created = s
        .create_policy(
            ADMIN_TOKEN,
            "workstation",
            "yaml",
            "version: 1\nname: workstation\ndefault_action: allow\n",
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let all = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    let total = all.body["entries"].as_array().unwrap().len();

    let policy = s
        .get("/api/v1/audit?action=policy.", Some(ADMIN_TOKEN))
        .await;
    let entries = policy.body["entries"].as_array().unwrap();
    assert!(
        !entries.is_empty() && entries.len() < total,
        "{}",
        policy.text
    );
    assert!(
        entries
            .iter()
            .all(|e| e["action"].as_str().unwrap().starts_with("policy."))
    );
    assert_eq!(policy.body["verified"], true);
    let future = s
        .get("/api/v1/audit?from=2999-01-01T00:00:00Z", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(future.body["entries"].as_array().unwrap().len(), 0);
    let bad = s
        .get("/api/v1/audit?from=yesterday", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.text.contains("RFC 3339"), "{}", bad.text);

    let (mut ada, _) = sign_in(s, "ada").await;
    let page = ada.get("/console/audit?subject=ADA&action=").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("1 entry matches"), "{}", page.body);
    assert!(page.body.contains("user:ada role:admin"), "{}", page.body);
    assert!(
        !page.body.contains("policy.version.create"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("value=\"ADA\""),
        "the filter stays in the form"
    );
    assert!(
        page.body.contains(&format!("all {total} entries verifies")),
        "{}",
        page.body
    );
    let unknown = ada.get("/console/audit?who=ada").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
}
