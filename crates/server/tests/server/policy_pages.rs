//! The console's policy pages as a browser without script uses them: the editor validates,
//! dry-runs and saves; a policy's page shows its rules, versions and groups; diff, export,
//! import and assignment; and what a viewer may not do.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;

use crate::console::{Browser, between, create_user, sign_in};
use crate::events::{event, ingest, now};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    an_editor_writes_validates_dry_runs_saves_and_assigns_a_policy,
    a_viewer_reads_policies_but_may_not_change_them,
    a_policy_file_is_imported_into_the_editor,
);

/// The first version an editor writes: line 7 has a port given as text.
const WITH_ERROR: &str = "\
version: 1
name: laptops
default_action: allow
rules:
  - id: no-tracker
    action: block
    match: {domain: \"*.tracker.example\", dst_port: \"443\"}
";

const FIRST: &str = "\
version: 1
name: laptops
default_action: allow
rules:
  - id: no-tracker
    action: block
    match: {domain: \"*.tracker.example\", dst_port: 443}
";

const SECOND: &str = "\
version: 1
name: laptops
default_action: allow
rules:
  - id: no-tracker
    action: block
    match: {domain: \"*.tracker.example\", dst_port: 443}
  - id: no-telnet
    action: block
    match: {dst_port: 23}
";

/// The session's CSRF token, from any page.
async fn csrf(browser: &mut Browser) -> String {
    between(
        &browser.get("/console").await.body,
        "name=\"csrf\" value=\"",
    )
}

/// How many policies the server stores.
async fn stored_policies(s: &TestServer) -> usize {
    let policies = s.get("/api/v1/policies", Some(ADMIN_TOKEN)).await;
    policies.body.as_array().unwrap().len()
}

/// Submits the editor's form with the button `intent`.
async fn submit(
    browser: &mut Browser,
    csrf: &str,
    name: &str,
    source: &str,
    intent: &str,
) -> crate::console::Page {
    browser
        .post(
            "/console/policies/editor",
            &[
                ("csrf", csrf),
                ("name", name),
                ("format", "yaml"),
                ("source", source),
                ("intent", intent),
            ],
        )
        .await
}

async fn an_editor_writes_validates_dry_runs_saves_and_assigns_a_policy(s: &TestServer) {
    let t = now() - SignedDuration::from_hours(1);
    let connection = |seq, app: &str, domain: &str| {
        event(
            seq,
            t,
            json!({"connection": {"app_path": app, "domain": domain, "dst_port": 443}}),
        )
    };
    ingest(
        s,
        "laptop-1",
        1,
        &[
            connection(1, "/usr/bin/curl", "a.tracker.example"),
            connection(2, "/usr/bin/curl", "b.tracker.example"),
            connection(3, "/usr/lib/firefox/firefox", "c.tracker.example"),
            connection(4, "/usr/bin/git", "git.example"),
        ],
    )
    .await;
    let r = s
        .post(
            "/api/v1/groups",
            Some(ADMIN_TOKEN),
            &json!({"name": "laptops"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    create_user(s, "eve", "editor").await;
    let (mut eve, _) = sign_in(s, "eve").await;
    let csrf = csrf(&mut eve).await;

    let list = eve.get("/console/policies").await;
    assert!(list.body.contains("href=\"/console/policies/new\""));
    let new = eve.get("/console/policies/new").await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
    assert!(
        new.body.contains("<textarea name=\"source\""),
        "{}",
        new.body
    );

    // The error is named by file, line and field, and nothing is stored.
    let page = submit(&mut eve, &csrf, "laptops", WITH_ERROR, "save").await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(page.body.contains("The policy is invalid"), "{}", page.body);
    assert!(page.body.contains("laptops.yaml:7:"), "{}", page.body);
    assert!(page.body.contains("dst_port"), "{}", page.body);
    // The document comes back as typed, to be fixed.
    assert!(
        page.body.contains("dst_port: &#34;443&#34;"),
        "{}",
        page.body
    );
    assert_eq!(stored_policies(s).await, 0);

    let page = submit(&mut eve, &csrf, "laptops", FIRST, "validate").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("The policy is valid"), "{}", page.body);

    let page = submit(&mut eve, &csrf, "laptops", FIRST, "dry_run").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains(
            "Would have blocked <strong>3</strong> connections of <strong>2</strong> apps"
        ),
        "{}",
        page.body
    );
    assert!(page.body.contains("a.tracker.example:443"), "{}", page.body);

    let saved = submit(&mut eve, &csrf, "laptops", FIRST, "save").await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let detail_path = saved.location.unwrap();
    let id: i64 = detail_path
        .strip_prefix("/console/policies/")
        .unwrap()
        .parse()
        .unwrap();
    let detail = eve.get(&detail_path).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(
        detail.body.contains("<code>no-tracker</code>"),
        "{}",
        detail.body
    );
    assert!(detail.body.contains("version 1,"), "{}", detail.body);
    assert!(
        detail.body.contains("Not assigned to any group"),
        "{}",
        detail.body
    );

    // The editor opens on the newest version; the next save is version 2.
    let edit = eve.get(&format!("/console/policies/{id}/edit")).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    assert!(edit.body.contains("from version 1"), "{}", edit.body);
    let saved = submit(&mut eve, &csrf, "laptops", SECOND, "save").await;
    assert_eq!(saved.location.as_deref(), Some(detail_path.as_str()));
    let diff = eve.get(&format!("/console/policies/{id}/diff")).await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.body);
    assert!(
        diff.body
            .contains("<span class=\"add\">+  - id: no-telnet</span>"),
        "{}",
        diff.body
    );
    let old = eve.get(&format!("/console/policies/{id}?version=1")).await;
    assert!(old.body.contains("(not the newest)"), "{}", old.body);
    assert!(!old.body.contains("no-telnet"), "{}", old.body);

    let export = eve.get(&format!("/console/policies/{id}/export")).await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(
        export.headers["content-disposition"],
        "attachment; filename=\"laptops-v2.yaml\""
    );
    assert_eq!(export.body, SECOND);

    let assigned = eve
        .post(
            &format!("/console/policies/{id}/assign"),
            &[("csrf", &csrf), ("group", "laptops")],
        )
        .await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.body);
    let groups = s.get("/api/v1/groups", Some(ADMIN_TOKEN)).await;
    let laptops = groups
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "laptops")
        .unwrap();
    assert_eq!(laptops["policy_id"], id);
    let detail = eve.get(&detail_path).await;
    assert!(
        detail
            .body
            .contains("<ul id=\"assigned\">\n  <li>laptops</li>"),
        "{}",
        detail.body
    );
}

async fn a_viewer_reads_policies_but_may_not_change_them(s: &TestServer) {
    let r = s.create_policy(ADMIN_TOKEN, "office", "yaml", FIRST).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["policy_id"].as_i64().unwrap();
    create_user(s, "vic", "viewer").await;
    let (mut vic, _) = sign_in(s, "vic").await;
    let csrf = csrf(&mut vic).await;

    let list = vic.get("/console/policies").await;
    assert!(list.body.contains("office"), "{}", list.body);
    assert!(
        !list.body.contains("/console/policies/new"),
        "{}",
        list.body
    );
    let detail = vic.get(&format!("/console/policies/{id}")).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(!detail.body.contains("id=\"edit\""), "{}", detail.body);
    assert!(!detail.body.contains("id=\"assign\""), "{}", detail.body);

    for path in [
        "/console/policies/new".to_owned(),
        format!("/console/policies/{id}/edit"),
    ] {
        let page = vic.get(&path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(
            page.body
                .contains("your role may not create policy versions"),
            "{}",
            page.body
        );
    }
    let page = submit(&mut vic, &csrf, "office", SECOND, "save").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    let page = vic
        .post(
            &format!("/console/policies/{id}/assign"),
            &[("csrf", &csrf), ("group", "default")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    let versions = s
        .get(
            &format!("/api/v1/policies/{id}/versions"),
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(
        versions.body.as_array().unwrap().len(),
        1,
        "{}",
        versions.text
    );
}

async fn a_policy_file_is_imported_into_the_editor(s: &TestServer) {
    create_user(s, "ida", "admin").await;
    let (mut ida, _) = sign_in(s, "ida").await;
    let csrf = csrf(&mut ida).await;
    let json = r#"{"version": 1, "name": "servers", "default_action": "block", "rules": []}"#;

    let page = ida
        .post_file(
            "/console/policies/import",
            &[("csrf", &csrf), ("name", "servers")],
            ("file", "servers.json", json),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("The policy is valid"), "{}", page.body);
    assert!(
        page.body.contains("<option value=\"json\" selected>"),
        "{}",
        page.body
    );
    // Opened for review, not stored yet.
    assert_eq!(stored_policies(s).await, 0);

    let page = ida
        .post_file(
            "/console/policies/import",
            &[("csrf", &csrf), ("name", "servers")],
            ("file", "servers.txt", json),
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(
        page.body.contains("a .yaml, .yml or .json file"),
        "{}",
        page.body
    );

    let forged = ida
        .post_file(
            "/console/policies/import",
            &[("csrf", "forged"), ("name", "servers")],
            ("file", "servers.json", json),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
}
