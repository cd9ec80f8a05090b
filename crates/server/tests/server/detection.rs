//! Detection in the server: what agents report goes through the bus to the detection pipeline
//! and comes out as explained alerts in the API; a batch delivered twice counts once, and the
//! same ongoing behaviour is one alert.

use palisade_agent::uplink::Uplink;
use palisade_proto::ConnectionEvent;
use serde_json::{Value, json};

use crate::events::{event, now};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server, wait_for};

on_both_backends!(a_port_scan_an_agent_reports_is_one_explained_alert);

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

async fn port_scan_alerts(s: &TestServer) -> Vec<Value> {
    let r = s.get("/api/v1/alerts", Some(ADMIN_TOKEN)).await;
    r.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "port_scan")
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
        !port_scan_alerts(s).await.is_empty()
    })
    .await;
    let alerts = port_scan_alerts(s).await;
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
        port_scan_alerts(s).await[0]["occurrences"] == 2
    })
    .await;
    let alerts = port_scan_alerts(s).await;
    assert_eq!(
        alerts.len(),
        1,
        "one alert for one ongoing scan: {alerts:?}"
    );
    assert_eq!(observed(s, "observed").await, 121);
}
