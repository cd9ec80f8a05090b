//! The event roll-ups the dashboard and the policies page read: after ingest, a re-sent batch,
//! a batch holding an event stored before, and retention, they agree with a count of the stored
//! events; rule hits are summed over the agents of a policy's groups.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use palisade_proto::ConnectionEvent;
use palisade_server::events::{self, IngestOutcome};
use palisade_server::store::NewAgent;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::events::{event, ingest, now};
use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    rollups_agree_with_the_events_after_resent_batches,
    retention_removes_the_minutes_of_removed_events,
    rule_hits_sum_over_the_agents_of_a_policy,
);

/// Per minute: connections, blocks; per application: connections; per destination: blocks.
type Counts = (
    BTreeMap<i64, (i64, i64)>,
    BTreeMap<String, i64>,
    BTreeMap<String, i64>,
);

/// The counts of the stored events, read back event by event.
async fn counted_from_events(s: &TestServer) -> Counts {
    let stored = s.store().query_events(&[], None, 100_000).await.unwrap();
    let mut counts = Counts::default();
    for e in stored {
        let e = e.event;
        let blocked = e.verdict == palisade_proto::Verdict::Block;
        let m = counts
            .0
            .entry(e.time_ms.div_euclid(60_000) * 60_000)
            .or_default();
        m.0 += 1;
        m.1 += i64::from(blocked);
        let app = e.connection.app_name.unwrap_or_else(|| "(unknown)".into());
        *counts.1.entry(app).or_default() += 1;
        if blocked {
            let destination = e
                .connection
                .domain
                .or(e.connection.dst_ip.map(|ip| ip.to_string()))
                .unwrap_or_else(|| "(unknown)".into());
            *counts.2.entry(destination).or_default() += 1;
        }
    }
    counts
}

/// The same counts as the dashboard's queries give them.
async fn counted_by_rollups(s: &TestServer) -> Counts {
    let store = s.store();
    let minutes = store
        .connections_per_minute(0)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.start_ms, (m.connections, m.blocks)))
        .collect();
    let ranked = |rows: Vec<palisade_server::store::Ranked>| -> BTreeMap<String, i64> {
        rows.into_iter().map(|r| (r.name, r.count)).collect()
    };
    (
        minutes,
        ranked(store.top_applications(0, 1000).await.unwrap()),
        ranked(store.top_blocked_destinations(0, 1000).await.unwrap()),
    )
}

async fn assert_rollups_agree(s: &TestServer, connections: i64) {
    let direct = counted_from_events(s).await;
    assert_eq!(direct.0.values().map(|m| m.0).sum::<i64>(), connections);
    assert_eq!(counted_by_rollups(s).await, direct);
}

/// Events of several applications and destinations, a third of them blocked, a minute apart in
/// pairs from `start`.
fn traffic(first_seq: u64, start: Timestamp, n: u64) -> Vec<ConnectionEvent> {
    (0..n)
        .map(|i| {
            let seq = first_seq + i;
            let blocked = seq % 3 == 0;
            let mut connection = json!({"dst_ip": format!("192.0.2.{}", seq % 7)});
            if seq % 4 != 0 {
                connection["app_name"] = json!(format!("app{}", seq % 5));
            }
            if seq % 2 == 0 {
                connection["domain"] = json!(format!("d{}.example.com", seq % 3));
            }
            let verdict = if blocked { "block" } else { "allow" };
            let minutes = i64::try_from(i / 2).unwrap();
            event(
                seq,
                start
                    + SignedDuration::from_mins(minutes)
                    + SignedDuration::from_millis(i64::try_from(i).unwrap()),
                json!({"connection": connection, "action": verdict, "verdict": verdict,
                       "rule": if blocked { Value::from("deny") } else { Value::Null }}),
            )
        })
        .collect()
}

async fn rollups_agree_with_the_events_after_resent_batches(s: &TestServer) {
    let start = now() - SignedDuration::from_mins(30);
    let first = traffic(1, start, 12);
    assert_eq!(ingest(s, "a1", 1, &first).await, 12);
    assert_eq!(ingest(s, "a2", 1, &traffic(1, start, 9)).await, 9);
    assert_rollups_agree(s, 21).await;

    // The same batch again (its acknowledgement was lost): nothing is stored or counted.
    let again = events::ingest(s.store(), "a1", 1, &first, now())
        .await
        .unwrap();
    assert_eq!(again, IngestOutcome::Duplicate);
    assert_rollups_agree(s, 21).await;

    // A new batch holding two events stored before and three new ones: only those are counted.
    let mut mixed = first[3..5].to_vec();
    mixed.extend(traffic(13, start + SignedDuration::from_mins(3), 3));
    assert_eq!(ingest(s, "a1", 2, &mixed).await, 3);
    assert_rollups_agree(s, 24).await;
}

async fn retention_removes_the_minutes_of_removed_events(s: &TestServer) {
    let today = now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .start_of_day()
        .unwrap()
        .timestamp();
    let day = SignedDuration::from_hours(24);
    ingest(s, "a1", 1, &traffic(1, today - day * 3, 8)).await;
    ingest(s, "a1", 2, &traffic(9, today - day * 2, 6)).await;
    ingest(
        s,
        "a1",
        3,
        &traffic(15, now() - SignedDuration::from_mins(10), 4),
    )
    .await;
    assert_rollups_agree(s, 18).await;

    let report = events::apply_retention(s.store(), today - day)
        .await
        .unwrap();
    assert_eq!(report.events_removed, 14);
    assert_rollups_agree(s, 4).await;
    let minutes = s.store().connections_per_minute(0).await.unwrap();
    assert!(
        minutes
            .iter()
            .all(|m| m.start_ms >= (today - day).as_millisecond()),
        "{minutes:?}"
    );
}

const POLICY: &str = "\
version: 1
name: lab
default_action: allow
rules:
  - id: deny
    action: block
    match:
      domain: \"*.example.com\"
";

async fn rule_hits_sum_over_the_agents_of_a_policy(s: &TestServer) {
    let store = s.store();
    let r = s.create_policy(ADMIN_TOKEN, "lab", "yaml", POLICY).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let policy = r.body["policy_id"].as_i64().unwrap();
    let at = now().to_string();
    assert!(store.create_group("lab", "test", &at).await.unwrap());
    store
        .assign_policy("lab", policy, "test", &at)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    for (group, hash) in [("lab", "lab-token"), ("default", "default-token")] {
        store
            .create_enrollment_token(hash, group, 10, "2099-01-01T00:00:00Z", "test", &at)
            .await
            .unwrap()
            .unwrap();
    }
    for (id, hash) in [
        ("a1", "lab-token"),
        ("a2", "lab-token"),
        ("a3", "default-token"),
    ] {
        let agent = NewAgent {
            id,
            hostname: id,
            os: "linux",
            agent_version: "test",
            cert_fingerprint: id,
        };
        store.enroll(hash, &agent, now()).await.unwrap().unwrap();
    }
    let t = now() - SignedDuration::from_mins(20);
    let hit = |seq: u64, rule: &str, minutes: i64| {
        event(
            seq,
            t + SignedDuration::from_mins(minutes),
            json!({"rule": rule, "action": "block", "verdict": "block"}),
        )
    };
    ingest(
        s,
        "a1",
        1,
        &[hit(1, "deny", 0), hit(2, "deny", 5), hit(3, "other", 1)],
    )
    .await;
    ingest(s, "a2", 1, &[hit(1, "deny", 7), event(2, t, json!({}))]).await;
    // a3's group has no policy: its hits are not the policy's.
    ingest(s, "a3", 1, &[hit(1, "deny", 9)]).await;
    // A re-sent batch counts once.
    let again = events::ingest(store, "a2", 1, &[hit(1, "deny", 7)], now())
        .await
        .unwrap();
    assert_eq!(again, IngestOutcome::Duplicate);

    let hits = store.rule_hits(policy).await.unwrap();
    let got: Vec<(&str, i64, i64)> = hits
        .iter()
        .map(|h| (h.rule.as_str(), h.hits, h.last_hit_ms))
        .collect();
    let ms = |minutes| (t + SignedDuration::from_mins(minutes)).as_millisecond();
    assert_eq!(got, [("deny", 3, ms(7)), ("other", 1, ms(1))]);
    assert!(store.rule_hits(policy + 1000).await.unwrap().is_empty());
}
