//! The console's endpoint page as a browser without script uses it: what an enrolled agent ran
//! and where it connected, its recent connections and alerts, and the actions on it (isolate,
//! release, move, revoke) with who may take them.

use jiff::SignedDuration;
use reqwest::StatusCode;
use serde_json::json;

use crate::console::{between, create_user, sign_in};
use crate::events::{event, ingest, now};
use crate::gateway::enroll;
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(an_endpoint_page_shows_its_applications_and_takes_actions);

/// The agent as the API shows it.
async fn agent(s: &TestServer, path: &str) -> serde_json::Value {
    s.get(path, Some(ADMIN_TOKEN)).await.body
}

async fn an_endpoint_page_shows_its_applications_and_takes_actions(s: &TestServer) {
    let id = enroll(s).await.identity.agent_id;
    let t = now() - SignedDuration::from_mins(10);
    let connection = |seq, app: &str, domain: &str, verdict: &str| {
        event(
            seq,
            t,
            json!({"connection": {"app_path": app, "domain": domain, "dst_port": 443},
                   "action": verdict, "verdict": verdict}),
        )
    };
    ingest(
        s,
        &id,
        1,
        &[
            connection(1, "/usr/bin/curl", "a.example", "allow"),
            connection(2, "/usr/bin/curl", "a.example", "allow"),
            connection(3, "/usr/bin/curl", "b.example", "block"),
            connection(4, "/usr/bin/git", "git.example", "allow"),
        ],
    )
    .await;
    // Another agent's connections are not this one's.
    ingest(
        s,
        "someone-else",
        1,
        &[connection(1, "/usr/bin/nc", "c.example", "allow")],
    )
    .await;
    let r = s
        .post(
            "/api/v1/groups",
            Some(ADMIN_TOKEN),
            &json!({"name": "servers"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    create_user(s, "ada", "admin").await;
    create_user(s, "val", "viewer").await;
    let (mut ada, _) = sign_in(s, "ada").await;
    let page_path = format!("/console/endpoints/{id}");

    let list = ada.get("/console/endpoints").await;
    assert!(
        list.body.contains(&format!("href=\"{page_path}\"")),
        "{}",
        list.body
    );
    let page = ada.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let apps = &page.body[page.body.find("id=\"applications\"").unwrap()..];
    let apps = &apps[..apps.find("</table>").unwrap()];
    assert!(
        apps.contains("/usr/bin/curl</a></td><td class=\"num\">3</td><td class=\"num\">1</td>"),
        "{apps}"
    );
    assert!(
        apps.contains("<div>a.example <span class=\"small\">2</span></div>"),
        "{apps}"
    );
    assert!(
        apps.contains("<div>b.example <span class=\"small\">1, 1 blocked</span></div>"),
        "{apps}"
    );
    assert!(apps.contains("/usr/bin/git"), "{apps}");
    assert!(!page.body.contains("/usr/bin/nc"), "{}", page.body);
    assert!(
        page.body.contains("No alerts about this endpoint"),
        "{}",
        page.body
    );

    // Isolate, release, move, revoke: each is seen on the page and through the API.
    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let action = format!("{page_path}/action");
    let api_path = format!("/api/v1/agents/{id}");
    let done = ada
        .post(&action, &[("csrf", &csrf), ("action", "isolate")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location.as_deref(), Some(page_path.as_str()));
    assert_eq!(agent(s, &api_path).await["isolated"], true);
    let page = ada.get(&page_path).await;
    assert!(page.body.contains("id=\"release\""), "{}", page.body);
    ada.post(&action, &[("csrf", &csrf), ("action", "release")])
        .await;
    assert_eq!(agent(s, &api_path).await["isolated"], false);
    ada.post(
        &action,
        &[("csrf", &csrf), ("action", "move"), ("group", "servers")],
    )
    .await;
    assert_eq!(agent(s, &api_path).await["group"], "servers");
    let missing = ada
        .post(
            &action,
            &[("csrf", &csrf), ("action", "move"), ("group", "nowhere")],
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);

    // A viewer sees the page without actions and is refused them.
    let (mut val, _) = sign_in(s, "val").await;
    let page = val.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("id=\"actions\""), "{}", page.body);
    let viewer_csrf = between(&page.body, "name=\"csrf\" value=\"");
    let refused = val
        .post(&action, &[("csrf", &viewer_csrf), ("action", "revoke")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(agent(s, &api_path).await["status"], "offline");

    let forged = ada
        .post(&action, &[("csrf", "forged"), ("action", "revoke")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    let done = ada
        .post(&action, &[("csrf", &csrf), ("action", "revoke")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(agent(s, &api_path).await["status"], "revoked");
    let page = ada.get(&page_path).await;
    assert!(page.body.contains("id=\"status\">revoked"), "{}", page.body);
    assert!(!page.body.contains("id=\"actions\""), "{}", page.body);

    let unknown = ada.get("/console/endpoints/agent-unknown").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}
