//! The watchdog's `agent_offline` alert, with heartbeats of 200 ms (offline after 2 missed):
//! one alert per agent that stops reporting, whatever the ticks and however many watchdogs run,
//! resolved when the agent reports again, and a new one when it stops again.

use std::time::Duration;

use palisade_agent::uplink::{Heartbeat, Uplink};
use palisade_server::Config;
use palisade_server::agents::Liveness;
use palisade_server::watchdog;
use reqwest::StatusCode;
use serde_json::Value;

use crate::gateway::enroll;
use crate::helpers::{ADMIN_TOKEN, TestServer};

fn liveness() -> Liveness {
    Liveness {
        heartbeat_interval: Duration::from_millis(200),
        missed_heartbeats: 2,
    }
}

fn fast(config: &mut Config) {
    config.liveness = liveness();
}

on_both_backends!(configured by fast; a_silent_agent_raises_one_offline_alert);

async fn offline_alerts(s: &TestServer) -> Vec<Value> {
    let r = s.get("/api/v1/alerts", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "agent_offline")
        .cloned()
        .collect()
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        version: "0.1.0".into(),
        os: "linux".into(),
        ..Heartbeat::default()
    }
}

async fn a_silent_agent_raises_one_offline_alert(s: &TestServer) {
    let enrolled = enroll(s).await;
    let id = enrolled.identity.agent_id.clone();
    // One that never reported is not "stopped reporting".
    let _never = enroll(s).await;
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    uplink.heartbeat(&heartbeat()).await.unwrap();
    assert!(offline_alerts(s).await.is_empty(), "raised while online");

    // Silent for many ticks: exactly one alert.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A second watchdog (another node) finds nothing more to raise.
    let checked = watchdog::check(s.store(), liveness(), crate::helpers::now())
        .await
        .unwrap();
    assert_eq!(checked, watchdog::Checked::default());
    let alerts = offline_alerts(s).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a["agent_id"], id.as_str());
    assert_eq!(a["status"], "open");
    assert_eq!(a["severity"], "medium");
    assert_eq!(a["occurrences"], 1, "{a:#}");
    let shown = s
        .get(&format!("/api/v1/agents/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(shown.body["status"], "offline");
    assert_eq!(a["explanation"]["last_heartbeat"], shown.body["last_seen"]);
    assert_eq!(a["explanation"]["threshold_seconds"], 0.4);
    assert!(a["title"].as_str().unwrap().contains(&id), "{a:#}");

    // Back: the alert is resolved by the watchdog's next tick.
    uplink.heartbeat(&heartbeat()).await.unwrap();
    let mut resolved = false;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        uplink.heartbeat(&heartbeat()).await.unwrap();
        let alerts = offline_alerts(s).await;
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        if alerts[0]["status"] == "resolved" {
            resolved = true;
            break;
        }
    }
    assert!(
        resolved,
        "the alert was not resolved when the agent came back"
    );

    // Silent again: a new alert; the old one stays resolved.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alerts = offline_alerts(s).await;
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(
        (&alerts[0]["status"], &alerts[1]["status"]),
        (&Value::from("open"), &Value::from("resolved"))
    );
    assert_eq!(alerts[0]["occurrences"], 1);
}
