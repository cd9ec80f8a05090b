//! Settings stored in the database, read and changed through the API (validated, audited, by
//! role), and the retention timer that removes the events older than `events.retention_days`.

use std::time::Duration;

use jiff::SignedDuration;
use palisade_server::{Config, retention};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::events::{event, ingest, keys, now, set};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server, wait_for};

on_both_backends!(
    settings_show_defaults_and_changes_are_audited,
    settings_validation_names_the_key,
    retention_runs_on_two_nodes_at_once_remove_each_event_once,
);

on_both_backends!(
    configured by short_retention_interval;
    retention_timer_removes_events_older_than_the_setting,
);

const RETENTION_DAYS: &str = "events.retention_days";

fn short_retention_interval(config: &mut Config) {
    config.retention_interval = Duration::from_millis(200);
}

async fn put(s: &TestServer, token: &str, body: Value) -> crate::helpers::Reply {
    s.put("/api/v1/settings", Some(token), &body).await
}

/// The retention setting as the API lists it.
async fn retention_setting(s: &TestServer) -> Value {
    let r = s.get("/api/v1/settings", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == RETENTION_DAYS)
        .unwrap_or_else(|| panic!("no {RETENTION_DAYS} in {}", r.text))
        .clone()
}

async fn setting_updates(s: &TestServer) -> Vec<String> {
    let r = s.get("/api/v1/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.body["verified"], true, "{}", r.text);
    r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "setting.update")
        .map(|e| {
            format!(
                "{} {}",
                e["actor"].as_str().unwrap(),
                e["subject"].as_str().unwrap()
            )
        })
        .collect()
}

async fn settings_show_defaults_and_changes_are_audited(s: &TestServer) {
    let r = s.get("/api/v1/settings", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let keys: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [RETENTION_DAYS]);
    let retention = retention_setting(s).await;
    assert_eq!(retention["value"], 30);
    assert_eq!(retention["default"], 30);
    assert_eq!(retention["updated_at"], Value::Null);
    assert_eq!(retention["updated_by"], Value::Null);
    assert!(
        retention["description"]
            .as_str()
            .unwrap()
            .contains("1 to 3650"),
        "{retention}"
    );

    // Auditors read; other roles neither read nor change; only admins change.
    let auditor = s.token("auditor").await;
    let r = s.get("/api/v1/settings", Some(&auditor)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body[0]["value"], 30);
    let r = put(s, &auditor, json!({RETENTION_DAYS: 7})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    for role in ["editor", "analyst", "viewer", "decision"] {
        let token = s.token(role).await;
        let r = s.get("/api/v1/settings", Some(&token)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}: {}", r.text);
        let r = put(s, &token, json!({RETENTION_DAYS: 7})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role}: {}", r.text);
    }
    let r = s.get("/api/v1/settings", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s
        .put("/api/v1/settings", None, &json!({RETENTION_DAYS: 7}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(retention_setting(s).await["value"], 30);
    assert!(setting_updates(s).await.is_empty());

    let r = put(s, ADMIN_TOKEN, json!({RETENTION_DAYS: 7})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body[0]["value"], 7);
    let retention = retention_setting(s).await;
    assert_eq!(retention["value"], 7);
    assert_eq!(retention["default"], 30);
    assert_eq!(retention["updated_by"], "token:bootstrap");
    assert!(
        retention["updated_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    let r = s.get("/api/v1/settings", Some(&auditor)).await;
    assert_eq!(r.body[0]["value"], 7);

    // The same value again changes nothing; another is audited from the value before.
    let r = put(s, ADMIN_TOKEN, json!({RETENTION_DAYS: 7})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = put(s, ADMIN_TOKEN, json!({RETENTION_DAYS: 90})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        setting_updates(s).await,
        [
            "token:bootstrap setting:events.retention_days from:30 to:7",
            "token:bootstrap setting:events.retention_days from:7 to:90",
        ]
    );
}

async fn settings_validation_names_the_key(s: &TestServer) {
    for (body, named) in [
        (json!({"events.retention_dayz": 7}), "events.retention_dayz"),
        (json!({RETENTION_DAYS: 0}), RETENTION_DAYS),
        (json!({RETENTION_DAYS: 3651}), RETENTION_DAYS),
        (json!({RETENTION_DAYS: -1}), RETENTION_DAYS),
        (json!({RETENTION_DAYS: "7"}), RETENTION_DAYS),
        (json!({RETENTION_DAYS: 7.5}), RETENTION_DAYS),
        (json!({RETENTION_DAYS: null}), RETENTION_DAYS),
        // One bad key refuses the whole change.
        (json!({RETENTION_DAYS: 7, "nope": 1}), "nope"),
    ] {
        let r = put(s, ADMIN_TOKEN, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        let error = r.body["error"].as_str().unwrap();
        assert!(error.contains(named), "{body}: {error}");
    }
    for body in [json!([RETENTION_DAYS, 7]), json!("7"), json!(7)] {
        let r = put(s, ADMIN_TOKEN, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
    }
    // Nothing was stored or audited.
    let retention = retention_setting(s).await;
    assert_eq!(retention["value"], 30);
    assert_eq!(retention["updated_at"], Value::Null);
    assert!(setting_updates(s).await.is_empty());
    // The bounds themselves are accepted.
    for days in [1, 3650] {
        let r = put(s, ADMIN_TOKEN, json!({RETENTION_DAYS: days})).await;
        assert_eq!(r.status, StatusCode::OK, "{days}: {}", r.text);
        assert_eq!(retention_setting(s).await["value"], days);
    }
}

async fn counter(s: &TestServer, name: &str) -> u64 {
    s.metric(name).await.parse().unwrap()
}

const APPLIED: &str = "palisade_retention_runs_total{outcome=\"applied\"}";
const FAILED: &str = "palisade_retention_runs_total{outcome=\"failed\"}";
const REMOVED: &str = "palisade_retention_events_removed_total";

/// Waits until the timer has completed `runs` more runs.
async fn wait_for_runs(s: &TestServer, runs: u64) {
    let target = counter(s, APPLIED).await + runs;
    for _ in 0..200 {
        if counter(s, APPLIED).await >= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the retention timer did not run {runs} more times in 10 s: {}",
        s.get("/metrics", None).await.text
    );
}

async fn retention_timer_removes_events_older_than_the_setting(s: &TestServer) {
    let now = now();
    let day = SignedDuration::from_hours(24);
    let stored = ingest(
        s,
        "keep-or-go",
        1,
        &[
            event(1, now - day * 10, json!({})),
            event(2, now - day * 3, json!({})),
            event(3, now - SignedDuration::from_hours(1), json!({})),
        ],
    )
    .await;
    assert_eq!(stored, 3);
    let all = set(&["keep-or-go:1", "keep-or-go:2", "keep-or-go:3"]);

    // With the default 30 days, the timer runs and keeps all three.
    wait_for_runs(s, 2).await;
    assert_eq!(keys(s, &[]).await, all);
    assert_eq!(counter(s, REMOVED).await, 0);

    // Five days: the next runs remove the ten-day-old event, and only it.
    let r = put(s, ADMIN_TOKEN, json!({RETENTION_DAYS: 5})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let kept = set(&["keep-or-go:2", "keep-or-go:3"]);
    let mut seen = keys(s, &[]).await;
    for _ in 0..200 {
        if seen != all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = keys(s, &[]).await;
    }
    assert_eq!(seen, kept);
    wait_for_runs(s, 2).await;
    assert_eq!(keys(s, &[]).await, kept);
    assert_eq!(counter(s, REMOVED).await, 1);
    assert_eq!(counter(s, FAILED).await, 0);
    if s.store().backend() == "postgres" {
        assert_eq!(
            counter(s, "palisade_retention_partitions_dropped_total").await,
            1
        );
    }
}

async fn retention_runs_on_two_nodes_at_once_remove_each_event_once(s: &TestServer) {
    // The server's own timer runs once at start; let it, so that it does not take these events.
    wait_for("the retention timer's first run", || async {
        counter(s, APPLIED).await >= 1
    })
    .await;
    let now = now();
    let day = SignedDuration::from_hours(24);
    let old: Vec<_> = (1..=3)
        .map(|i: i32| event(i.unsigned_abs().into(), now - day * (9 + i), json!({})))
        .collect();
    ingest(s, "n1", 1, &old).await;
    ingest(s, "n1", 2, &[event(4, now, json!({}))]).await;
    let r = put(s, ADMIN_TOKEN, json!({RETENTION_DAYS: 5})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let other = s.another_node_store().await;
    let (a, b) = tokio::join!(retention::run(s.store(), now), retention::run(&other, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.events_removed + b.events_removed, 3, "{a:?} {b:?}");
    if s.store().backend() == "postgres" {
        let mut dropped = a.partitions_dropped.clone();
        dropped.extend(b.partitions_dropped.iter().cloned());
        dropped.sort();
        dropped.dedup();
        assert_eq!(
            dropped.len(),
            a.partitions_dropped.len() + b.partitions_dropped.len()
        );
        assert_eq!(dropped.len(), 3, "{a:?} {b:?}");
    }
    assert_eq!(keys(s, &[]).await, set(&["n1:4"]));
    other.close().await;
}
