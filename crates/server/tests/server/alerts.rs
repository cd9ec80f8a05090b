//! Alerts as an analyst works them: one alert per ongoing behaviour, acknowledged, assigned and
//! resolved through the API, each change in the audit log, and roles enforced.

use jiff::Timestamp;
use palisade_server::alerts;
use palisade_server::store::alerts::NewAlert;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    repeats_merge_into_one_alert_until_it_is_resolved,
    analysts_work_alerts_and_every_change_is_audited,
    pages_walk_every_alert_once,
    filters_and_bad_input_are_explained,
);

pub(crate) async fn raise(
    server: &TestServer,
    key: &str,
    severity: &str,
    evidence: &[&str],
) -> (i64, bool) {
    let evidence: Vec<String> = evidence.iter().map(|e| (*e).to_owned()).collect();
    let explanation = json!({"interval_s": 60, "skew": 0.02, "baseline": "none"});
    let (alert, new) = alerts::raise(
        server.store(),
        &NewAlert {
            kind: "beacon",
            severity,
            score: 0.9,
            title: "regular calls to cdn-1.example.net",
            agent_id: Some("agent-1"),
            app: Some("/usr/bin/kworkerd"),
            dedupe_key: key,
            explanation: &explanation,
            evidence: &evidence,
        },
        Timestamp::from_second(1_800_000_000).unwrap(),
    )
    .await
    .unwrap();
    (alert.id, new)
}

async fn repeats_merge_into_one_alert_until_it_is_resolved(server: &TestServer) {
    let (first, new) = raise(server, "beacon:agent-1:cdn-1", "medium", &["agent-1/1"]).await;
    assert!(new);
    let (again, new) = raise(server, "beacon:agent-1:cdn-1", "high", &["agent-1/2"]).await;
    assert_eq!((again, new), (first, false));
    let alert = server
        .get(&format!("/api/v1/alerts/{first}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(alert.status, 200, "{}", alert.text);
    assert_eq!(alert.body["occurrences"], 2);
    assert_eq!(alert.body["severity"], "high");
    assert_eq!(alert.body["evidence"], json!(["agent-1/1", "agent-1/2"]));
    assert_eq!(alert.body["explanation"]["interval_s"], 60);
    let list = server.get("/api/v1/alerts", Some(ADMIN_TOKEN)).await;
    assert_eq!(list.body["alerts"].as_array().unwrap().len(), 1);

    let resolved = server
        .post(
            &format!("/api/v1/alerts/{first}/resolve"),
            Some(ADMIN_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(resolved.body["status"], "resolved", "{}", resolved.text);
    let (later, new) = raise(server, "beacon:agent-1:cdn-1", "medium", &["agent-1/9"]).await;
    assert!(new && later != first, "a resolved alert is not reopened");
}

async fn analysts_work_alerts_and_every_change_is_audited(server: &TestServer) {
    let (id, _) = raise(server, "dga:agent-1", "high", &[]).await;
    let analyst = server.token("analyst").await;
    let viewer = server.token("viewer").await;
    let path = |action: &str| format!("/api/v1/alerts/{id}/{action}");

    assert_eq!(server.get("/api/v1/alerts", None).await.status, 401);
    assert_eq!(
        server.get("/api/v1/alerts", Some(&viewer)).await.status,
        200
    );
    let refused = server
        .post(&path("acknowledge"), Some(&viewer), &json!({}))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);

    let acked = server
        .post(&path("acknowledge"), Some(&analyst), &json!({}))
        .await;
    assert_eq!(acked.body["status"], "acknowledged", "{}", acked.text);
    let assigned = server
        .post(
            &path("assign"),
            Some(&analyst),
            &json!({"assignee": "carol"}),
        )
        .await;
    assert_eq!(assigned.body["assignee"], "carol", "{}", assigned.text);
    let resolved = server
        .post(&path("resolve"), Some(&analyst), &json!({}))
        .await;
    assert_eq!(resolved.body["status"], "resolved");
    let again = server
        .post(&path("acknowledge"), Some(&analyst), &json!({}))
        .await;
    assert_eq!(again.status, 409, "{}", again.text);

    let audit = server.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(audit.body["verified"], true);
    let actions: Vec<(String, String)> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("alert."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let subject = format!("alert:{id}");
    assert_eq!(
        actions,
        vec![
            ("alert.acknowledge".to_owned(), subject.clone()),
            ("alert.assign".to_owned(), format!("{subject} to carol")),
            ("alert.resolve".to_owned(), subject),
        ]
    );
}

async fn pages_walk_every_alert_once(server: &TestServer) {
    for n in 0..7 {
        raise(server, &format!("scan:{n}"), "low", &[]).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/api/v1/alerts?limit=3&cursor={c}"),
            None => "/api/v1/alerts?limit=3".to_owned(),
        };
        let page = server.get(&query, Some(ADMIN_TOKEN)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for alert in page.body["alerts"].as_array().unwrap() {
            seen.push(alert["id"].as_i64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected = seen.clone();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.dedup();
    assert_eq!(seen, expected, "newest first, each once");
    assert_eq!(seen.len(), 7);
}

async fn filters_and_bad_input_are_explained(server: &TestServer) {
    let (high, _) = raise(server, "a", "high", &[]).await;
    raise(server, "b", "low", &[]).await;
    let only_high = server
        .get(
            "/api/v1/alerts?severity=high&status=open",
            Some(ADMIN_TOKEN),
        )
        .await;
    let ids: Vec<i64> = only_high.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![high]);
    for (query, names) in [
        ("severity=urgent", "severity"),
        ("status=closed", "status"),
        ("limit=0", "limit"),
        ("cursor=abc", "cursor"),
        ("colour=red", "colour"),
    ] {
        let r = server
            .get(&format!("/api/v1/alerts?{query}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(r.status, 400, "{query}");
        assert!(r.text.contains(names), "{query}: {}", r.text);
    }
    let empty = server
        .post(
            &format!("/api/v1/alerts/{high}/assign"),
            Some(ADMIN_TOKEN),
            &json!({"assignee": " "}),
        )
        .await;
    assert_eq!(empty.status, 400, "{}", empty.text);
    assert_eq!(
        server
            .get("/api/v1/alerts/424242", Some(ADMIN_TOKEN))
            .await
            .status,
        404
    );
}
