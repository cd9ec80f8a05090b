//! Detection in the server: what agents report goes through the bus to the detection pipeline
//! and comes out as explained alerts in the API; a batch delivered twice counts once, and the
//! same ongoing behaviour is one alert. The behaviour model is trained on stored events,
//! versioned, and swapped into detection.

use palisade_agent::uplink::Uplink;
use palisade_proto::ConnectionEvent;
use serde_json::{Value, json};

use crate::events::{event, now};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server, wait_for};

on_both_backends!(a_port_scan_an_agent_reports_is_one_explained_alert);
on_both_backends!(a_behaviour_model_trained_on_history_raises_an_explained_alert);

/// `ports` connections of nmap to one neighbour, numbered from `first_seq`, `minutes` from now.
fn scan(
    first_seq: u64,
    ports: std::ops::RangeInclusive<u16>,
    minutes: i64,
) -> Vec<ConnectionEvent> {
    let at = now() + jiff::SignedDuration::from_mins(minutes);
    ports
        .enumerate()
        .map(|(i, port)| {
            event(
                first_seq + i as u64,
                at,
                json!({"connection": {
                    "app_path": "/usr/bin/nmap",
                    "dst_ip": "10.1.0.42",
                    "dst_port": port,
                    "protocol": "tcp",
                    "direction": "outbound",
                }}),
            )
        })
        .collect()
}

async fn alerts_of(s: &TestServer, kind: &str) -> Vec<Value> {
    let r = s.get("/api/v1/alerts", Some(ADMIN_TOKEN)).await;
    r.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

async fn observed(s: &TestServer, outcome: &str) -> u64 {
    s.metric(&format!(
        "palisade_detection_events_total{{outcome=\"{outcome}\"}}"
    ))
    .await
    .parse()
    .unwrap()
}

async fn a_port_scan_an_agent_reports_is_one_explained_alert(s: &TestServer) {
    let enrolled = crate::gateway::enroll(s).await;
    let agent = enrolled.identity.agent_id.clone();
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    uplink.send_batch(1, &scan(1, 1..=60, 0)).await.unwrap();
    wait_for("the scan's alert", || async {
        !alerts_of(s, "port_scan").await.is_empty()
    })
    .await;
    let alerts = alerts_of(s, "port_scan").await;
    let alert = &alerts[0];
    assert_eq!(alert["agent_id"], agent.as_str());
    assert_eq!(
        alert["title"], "ws-17 tried 30 ports of 10.1.0.42 within 5 min",
        "the title names the endpoint as people know it"
    );
    assert_eq!(alert["app"], "/usr/bin/nmap");
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["occurrences"], 1);
    assert_eq!(alert["explanation"]["host"], "10.1.0.42");
    assert_eq!(alert["explanation"]["distinct_ports"], 30);
    assert_eq!(alert["explanation"]["threshold_ports"], 30);
    let evidence = alert["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 20);
    assert_eq!(evidence.last().unwrap(), &json!(format!("{agent}/30")));

    // The same batch again (its acknowledgement was lost): stored once, detected once.
    uplink.send_batch(1, &scan(1, 1..=60, 0)).await.unwrap();
    // The same scan goes on in the next window: one more occurrence of the same alert.
    uplink.send_batch(2, &scan(61, 100..=160, 6)).await.unwrap();
    wait_for("the second window to be observed", || async {
        observed(s, "observed").await >= 121
    })
    .await;
    wait_for("the second window's finding to be stored", || async {
        alerts_of(s, "port_scan").await[0]["occurrences"] == 2
    })
    .await;
    let alerts = alerts_of(s, "port_scan").await;
    assert_eq!(
        alerts.len(),
        1,
        "one alert for one ongoing scan: {alerts:?}"
    );
    assert_eq!(observed(s, "observed").await, 121);
}

/// Thunderbird's mail checks, one window of five minutes after another from `hours` ago: three
/// connections each to the mail servers, a few tens of kilobytes; numbered from `first_seq`.
fn mail_history(first_seq: u64, windows: u64, hours: i64) -> Vec<ConnectionEvent> {
    let start = window_start(now() - jiff::SignedDuration::from_hours(hours));
    (0..windows * 3)
        .map(|n| {
            let at = start + jiff::SignedDuration::from_secs((n / 3 * 300 + n % 3 * 20) as i64);
            let bytes = 20_000 + (n * 7 % 10) * 2_000;
            mail(first_seq + n, at, 1 + n % 3, bytes)
        })
        .collect()
}

/// The start of the five-minute window `at` is in, so that a test's window is not split.
fn window_start(at: jiff::Timestamp) -> jiff::Timestamp {
    let ms = at.as_millisecond();
    jiff::Timestamp::from_millisecond(ms - ms.rem_euclid(300_000)).unwrap()
}

fn mail(seq: u64, at: jiff::Timestamp, server: u64, bytes_out: u64) -> ConnectionEvent {
    event(
        seq,
        at,
        json!({
            "connection": {
                "app_path": "/usr/bin/thunderbird",
                "dst_ip": format!("192.0.2.{server}"),
                "dst_port": 993,
                "protocol": "tcp",
                "direction": "outbound",
            },
            "traffic": {"bytes_out": bytes_out, "bytes_in": bytes_out * 3,
                        "packets_out": 10, "packets_in": 10, "duration_ms": 100},
        }),
    )
}

async fn a_behaviour_model_trained_on_history_raises_an_explained_alert(s: &TestServer) {
    let enrolled = crate::gateway::enroll(s).await;
    let mut uplink = Uplink::connect(&s.grpc_url(), &enrolled.identity)
        .await
        .unwrap();
    let empty = json!({});
    let train = || s.post("/api/v1/detection/models/train", Some(ADMIN_TOKEN), &empty);

    // Too little history: nothing is stored, and the answer says how much there is.
    let stored = |n: usize| async move {
        // Through RabbitMQ a batch is acknowledged once the broker holds it, stored after.
        wait_for("the history to be stored", || async {
            s.metric(r#"palisade_events_total{outcome="stored"}"#).await == n.to_string()
        })
        .await;
    };
    uplink
        .send_batch(1, &mail_history(1, 10, 30))
        .await
        .unwrap();
    stored(30).await;
    let refused = train().await;
    assert_eq!(
        refused.status,
        reqwest::StatusCode::CONFLICT,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("at least 128"), "{}", refused.text);

    let history = mail_history(31, 300, 26);
    for (n, batch) in history.chunks(200).enumerate() {
        uplink.send_batch(2 + n as u64, batch).await.unwrap();
    }
    stored(930).await;
    let trained = train().await;
    assert_eq!(trained.status, reqwest::StatusCode::OK, "{}", trained.text);
    let model = &trained.body;
    assert_eq!(model["version"], 1);
    assert_eq!(model["promoted"], true, "{model}");
    assert_eq!(model["windows"], 310);
    assert_eq!(model["applications"], 1);
    assert!(
        model["evaluation"]["candidate"]["auc"].as_f64().unwrap() > 0.9,
        "{model}"
    );
    let listed = s.get("/api/v1/detection/models", Some(ADMIN_TOKEN)).await;
    assert_eq!(listed.body["models"][0]["version"], 1, "{}", listed.text);

    // Detection takes the new model at its next tick.
    for _ in 0..400 {
        if s.metric("palisade_detection_model_version").await == "1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(s.metric("palisade_detection_model_version").await, "1");

    // An hour ago, one five-minute window in which Thunderbird sent 300 MB.
    let at = window_start(now() - jiff::SignedDuration::from_hours(1));
    let upload = [
        mail(10_001, at, 1, 25_000),
        mail(
            10_002,
            at + jiff::SignedDuration::from_secs(20),
            2,
            300_000_000,
        ),
    ];
    uplink.send_batch(100, &upload).await.unwrap();
    for _ in 0..400 {
        if !alerts_of(s, "app_behaviour").await.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let alerts = alerts_of(s, "app_behaviour").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["app"], "/usr/bin/thunderbird");
    let why = &alert["explanation"];
    assert_eq!(why["baseline"], "application", "{why}");
    assert!(
        why["drivers"][0].as_str().unwrap().starts_with("bytes_"),
        "{why}"
    );
    assert_eq!(why["bytes_out"], 300_025_000.0, "{why}");
    let usual = why["bytes_out_baseline"].as_f64().unwrap();
    assert!((60_000.0..=90_000.0).contains(&usual), "{why}");
    let agent = &enrolled.identity.agent_id;
    assert_eq!(
        alert["evidence"],
        json!([format!("{agent}/10001"), format!("{agent}/10002")])
    );
}
