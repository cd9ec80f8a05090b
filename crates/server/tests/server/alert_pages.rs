//! The console's alert pages as a browser without script uses them: the list filtered by
//! status and severity, an alert's explanation, evidence and related connections, and working
//! it (acknowledge, assign, resolve) as an analyst, which a viewer may not.

use reqwest::StatusCode;

use crate::alerts::raise;
use crate::console::{between, create_user, sign_in};
use crate::helpers::{Backend, TestServer, spawn_server};

on_both_backends!(an_analyst_works_an_alert_in_the_console);

async fn an_analyst_works_an_alert_in_the_console(s: &TestServer) {
    let (id, _) = raise(
        s,
        "beacon:agent-1:cdn-1",
        "high",
        &["agent-1/7", "agent-1/9"],
    )
    .await;
    raise(s, "beacon:agent-2:cdn-2", "low", &[]).await;
    create_user(s, "ana", "analyst").await;
    create_user(s, "vik", "viewer").await;
    let (mut ana, _) = sign_in(s, "ana").await;

    let high = ana.get("/console/alerts?severity=high&status=").await;
    assert_eq!(high.status, StatusCode::OK, "{}", high.body);
    assert!(
        high.body
            .contains(&format!("href=\"/console/alerts/{id}\"")),
        "{}",
        high.body
    );
    assert_eq!(high.body.matches("<tr class=").count(), 1, "{}", high.body);
    let bad = ana.get("/console/alerts?severity=urgent").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);

    let path = format!("/console/alerts/{id}");
    let page = ana.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains("<tr><td>interval_s</td><td>60</td></tr>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<tr><td>baseline</td><td>none</td></tr>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<li><code>agent-1/9</code></li>"),
        "{}",
        page.body
    );
    let related = between(&page.body, "<a href=\"/console/events?");
    assert!(
        related.starts_with("agent=agent-1&#38;app=%2Fusr%2Fbin%2Fkworkerd&#38;from="),
        "{related}"
    );
    assert!(
        ana.get(&format!(
            "/console/events?{}",
            related.replace("&#38;", "&")
        ))
        .await
        .status
            == StatusCode::OK
    );

    let csrf = between(&page.body, "name=\"csrf\" value=\"");
    let action = format!("{path}/action");
    let done = ana
        .post(&action, &[("csrf", &csrf), ("action", "acknowledge")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let done = ana
        .post(
            &action,
            &[("csrf", &csrf), ("action", "assign"), ("assignee", "ana")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = ana.get(&path).await;
    assert!(
        page.body.contains("id=\"alert-status\">acknowledged<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"assignee\">ana<"), "{}", page.body);

    // A viewer reads it but may not work it.
    let (mut vik, _) = sign_in(s, "vik").await;
    let page = vik.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("id=\"alert-actions\""), "{}", page.body);
    let viewer_csrf = between(&page.body, "name=\"csrf\" value=\"");
    let refused = vik
        .post(&action, &[("csrf", &viewer_csrf), ("action", "resolve")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    let done = ana
        .post(&action, &[("csrf", &csrf), ("action", "resolve")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = ana.get(&path).await;
    assert!(
        page.body.contains("id=\"alert-status\">resolved<"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("id=\"alert-actions\""), "{}", page.body);
    let again = ana
        .post(&action, &[("csrf", &csrf), ("action", "acknowledge")])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
}
