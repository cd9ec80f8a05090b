//! The dashboard's live figures over Server-Sent Events: a signed-in session's stream sends the
//! figures at once and again after new connections are stored; without a session there is no
//! stream, and signing out ends it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::console::{between, create_user, sign_in};
use crate::events::{event, ingest, now};
use crate::helpers::{Backend, TestServer, spawn_server};

on_both_backends!(the_dashboard_stream_follows_new_connections);

/// Reads `response` until a `figures` event whose JSON satisfies `wanted`; fails after 20 s.
async fn figures_until(
    response: &mut reqwest::Response,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut text = String::new();
    let read = async {
        loop {
            let chunk = response.chunk().await.unwrap().expect("the stream ended");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let message: String = text.drain(..end + 2).collect();
                if let Some(data) = message
                    .lines()
                    .skip_while(|line| *line != "event: figures")
                    .find_map(|line| line.strip_prefix("data: "))
                {
                    let figures: serde_json::Value = serde_json::from_str(data).unwrap();
                    if wanted(&figures) {
                        return figures;
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the wanted figures within 20 s")
}

async fn the_dashboard_stream_follows_new_connections(s: &TestServer) {
    let stranger = s
        .client
        .get(format!("{}/console/dashboard/stream", s.base))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(
        !stranger
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream")),
        "a stream without a session"
    );

    create_user(s, "val", "viewer").await;
    let (mut val, _) = sign_in(s, "val").await;
    let cookie = val.cookie().unwrap();
    let mut stream = reqwest::Client::new()
        .get(format!("{}/console/dashboard/stream", s.base))
        .header("cookie", format!("palisade_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let first = figures_until(&mut stream, |_| true).await;
    assert_eq!(first["connections"], 0, "{first}");

    let at = now();
    let connections = [
        event(
            1,
            at,
            json!({"connection": {"app_name": "curl", "dst_port": 443}}),
        ),
        event(
            2,
            at,
            json!({"connection": {"app_name": "nc", "dst_port": 23}, "action": "block", "verdict": "block"}),
        ),
    ];
    ingest(s, "agent-live", 1, &connections).await;
    let later = figures_until(&mut stream, |f| f["connections"] == 2).await;
    assert_eq!(later["blocks"], 1, "{later}");

    // Signing out ends the stream at its next event.
    let csrf = between(&val.get("/console").await.body, "name=\"csrf\" value=\"");
    val.post("/logout", &[("csrf", &csrf)]).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while stream.chunk().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its session");
}
