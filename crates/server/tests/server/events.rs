//! Connection events: ingested through the service the gateway calls, read back through the
//! HTTP API the way a user or script would; policy validate, diff and simulate.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use palisade_proto::ConnectionEvent;
use palisade_server::Error;
use palisade_server::events::{self, IngestOutcome};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Backend, TestServer, spawn_server};

on_both_backends!(
    each_filter_and_its_negation,
    bad_filters_name_the_parameter,
    pagination_walks_every_event_once,
    a_search_out_of_time_says_how_far_it_looked_and_continues,
    resent_batch_is_stored_once,
    updates_complete_their_event,
    agents_opening_a_new_day_at_once_are_all_stored,
    batch_with_one_bad_event_stores_nothing,
    exports_parse_back,
    retention_removes_old_events,
    simulate_reports_blocks_per_app,
    validate_and_diff,
    events_need_a_reading_role,
);

/// Now, to the millisecond (the precision events have).
#[allow(clippy::disallowed_methods)]
pub fn now() -> Timestamp {
    Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap()
}

pub fn event(seq: u64, time: Timestamp, fields: Value) -> ConnectionEvent {
    let mut e = json!({
        "seq": seq,
        "time_ms": time.as_millisecond(),
        "connection": {},
        "action": "allow",
        "verdict": "allow",
    });
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    serde_json::from_value(e).unwrap()
}

pub async fn ingest(s: &TestServer, agent: &str, batch: u64, events: &[ConnectionEvent]) -> usize {
    let store = &s.server.as_ref().unwrap().store;
    match events::ingest(store, agent, batch, events, now())
        .await
        .unwrap()
    {
        IngestOutcome::Stored(n) => n,
        IngestOutcome::Duplicate => panic!("batch {batch} of {agent} taken for a duplicate"),
    }
}

async fn query(s: &TestServer, token: &str, params: &[(&str, &str)]) -> (StatusCode, String) {
    let response = s
        .client
        .get(format!("{}/api/v1/events", s.base))
        .query(params)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The (agent, seq) of every event one JSON page holds.
pub async fn keys(s: &TestServer, params: &[(&str, &str)]) -> BTreeSet<String> {
    let (status, text) = query(s, ADMIN_TOKEN, params).await;
    assert_eq!(status, StatusCode::OK, "{params:?}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["agent_id"].as_str().unwrap(), e["seq"]))
        .collect()
}

pub fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// Five events of two agents, one second apart, the oldest first.
async fn five_events(s: &TestServer) -> Vec<Timestamp> {
    let base = now() - SignedDuration::from_hours(1);
    let t: Vec<Timestamp> = (0..5)
        .map(|i| base + SignedDuration::from_secs(i))
        .collect();
    let a1 = [
        event(
            1,
            t[0],
            json!({
            "connection": {"app_path": "/usr/bin/curl", "user": "alice", "domain": "www.Example.com.",
                           "dst_ip": "93.184.215.14", "dst_port": 443, "protocol": "tcp"},
            "rule": "web"}),
        ),
        event(
            2,
            t[1],
            json!({
            "connection": {"app_path": "/usr/bin/firefox", "user": "bob", "domain": "example.com",
                           "dst_ip": "10.1.2.3", "dst_port": 80, "protocol": "tcp"},
            "action": "block", "verdict": "block", "rule": "no-lan"}),
        ),
    ];
    let a2 = [
        event(
            1,
            t[2],
            json!({
            "connection": {"app_path": "/usr/sbin/sshd", "user": "root", "direction": "inbound",
                           "src_ip": "192.168.1.5", "dst_ip": "192.168.1.1", "dst_port": 22,
                           "protocol": "tcp"},
            "action": "alert"}),
        ),
        event(
            2,
            t[3],
            json!({
            "connection": {"app_name": "svc", "domain": "dns.google", "dst_ip": "8.8.8.8",
                           "dst_port": 53, "protocol": "udp"},
            "action": "log", "rule": "dns"}),
        ),
        event(
            3,
            t[4],
            json!({
            "connection": {"app_path": "/usr/bin/curl", "user": "alice", "domain": "evil.example.org",
                           "dst_ip": "2001:db8::1", "dst_port": 8443, "protocol": "tcp"},
            "action": "block", "verdict": "allow", "rule": "evil"}),
        ),
    ];
    assert_eq!(ingest(s, "a1", 1, &a1).await, 2);
    assert_eq!(ingest(s, "a2", 1, &a2).await, 3);
    t
}

async fn each_filter_and_its_negation(s: &TestServer) {
    let t = five_events(s).await;
    let all = set(&["a1:1", "a1:2", "a2:1", "a2:2", "a2:3"]);
    assert_eq!(keys(s, &[]).await, all);
    let t2 = t[2].to_string();
    let cases: &[(&str, &str, &[&str])] = &[
        ("agent", "a1", &["a1:1", "a1:2"]),
        ("app", "/usr/bin/curl", &["a1:1", "a2:3"]),
        ("app", "firefox", &["a1:2"]),
        ("app", "svc", &["a2:2"]),
        ("user", "alice", &["a1:1", "a2:3"]),
        ("domain", "example.com", &["a1:2"]),
        ("domain", "*.example.com", &["a1:1"]),
        ("domain", "*.EXAMPLE.org", &["a2:3"]),
        ("ip", "10.0.0.0/8", &["a1:2"]),
        ("ip", "192.168.1.5", &["a2:1"]),
        ("ip", "192.168.0.0/16", &["a2:1"]),
        ("ip", "2001:db8::/32", &["a2:3"]),
        ("port", "443", &["a1:1"]),
        ("protocol", "udp", &["a2:2"]),
        ("action", "block", &["a1:2", "a2:3"]),
        ("rule", "dns", &["a2:2"]),
        ("from", &t2, &["a2:1", "a2:2", "a2:3"]),
        ("to", &t2, &["a1:1", "a1:2"]),
    ];
    for (name, value, expected) in cases {
        let expected = set(expected);
        assert_eq!(keys(s, &[(name, value)]).await, expected, "{name}={value}");
        let negated = format!("!{value}");
        let rest: BTreeSet<String> = all.difference(&expected).cloned().collect();
        assert_eq!(keys(s, &[(name, &negated)]).await, rest, "{name}={negated}");
    }
    // Filters combine, newest first.
    let (_, text) = query(s, ADMIN_TOKEN, &[("agent", "a2"), ("action", "!block")]).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    let seqs: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 1]);
    assert_eq!(body["next_cursor"], Value::Null);
    // The stored connection is normalised and the JSON names are the policy language's.
    let (_, text) = query(s, ADMIN_TOKEN, &[("port", "443")]).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    let e = &body["events"][0];
    assert_eq!(e["connection"]["domain"], "www.example.com");
    assert_eq!(e["connection"]["app_name"], "curl");
    assert_eq!(e["time"], t[0].to_string());
}

async fn bad_filters_name_the_parameter(s: &TestServer) {
    for (name, value) in [
        ("port", "http"),
        ("ip", "10.0.0.0/40"),
        ("from", "last tuesday"),
        ("protocol", "sctp"),
        ("action", "deny"),
        ("limit", "1001"),
        ("limit", "0"),
        ("cursor", "not-a-cursor"),
        ("colour", "red"),
    ] {
        let (status, text) = query(s, ADMIN_TOKEN, &[(name, value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}={value}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains(&format!("\"{name}\"")),
            "{name}: {text}"
        );
    }
}

async fn pagination_walks_every_event_once(s: &TestServer) {
    let base = now() - SignedDuration::from_hours(2);
    // 250 events of two agents; three at a time share a millisecond, so the order needs the
    // agent and the sequence number to be total.
    let mut expected = BTreeSet::new();
    for (agent, batch) in [("p1", 1), ("p2", 1)] {
        let events: Vec<ConnectionEvent> = (1..=125u64)
            .map(|seq| {
                let at = base + SignedDuration::from_secs(i64::try_from(seq / 3).unwrap());
                expected.insert(format!("{agent}:{seq}"));
                event(
                    seq,
                    at,
                    json!({"connection": {"app_path": "/usr/bin/curl"}}),
                )
            })
            .collect();
        ingest(s, agent, batch, &events).await;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = vec![("limit", "40".to_owned())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, text) = query(s, ADMIN_TOKEN, &params).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let page = body["events"].as_array().unwrap();
        assert!(page.len() <= 40);
        let times: Vec<i64> = page
            .iter()
            .map(|e| e["time_ms"].as_i64().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        seen.extend(
            page.iter()
                .map(|e| format!("{}:{}", e["agent_id"].as_str().unwrap(), e["seq"])),
        );
        pages += 1;
        // New events arrive while the walk goes on, newer than every page so far: they are
        // not part of this walk (and push nothing into a later page twice).
        let newest = base + SignedDuration::from_secs(41);
        let arrived = [
            event(1000 + pages, now(), json!({})),
            event(2000 + pages, newest, json!({})),
        ];
        ingest(s, "p3", pages, &arrived).await;
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 20, "the walk does not end");
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an event was listed twice");
    assert_eq!(unique, expected);
    assert_eq!(pages, 7); // 250 events, 40 a page: six full pages and a last one of ten
}

/// The console's log searches back in windows within a time budget: out of time, it shows
/// what it found and how far back it looked, and its cursor continues the search from there
/// until every match is found, each once.
async fn a_search_out_of_time_says_how_far_it_looked_and_continues(s: &TestServer) {
    let store = &s.server.as_ref().unwrap().store;
    let admin = palisade_server::role::Principal {
        actor: "user:test".to_owned(),
        role: palisade_server::role::Role::Admin,
    };
    let newest = now() - SignedDuration::from_mins(1);
    // Every 20 minutes for 3 days, of which every 50th is alice's: 216 events, 5 alice's.
    let events: Vec<ConnectionEvent> = (0..216u64)
        .map(|i| {
            let at = newest - SignedDuration::from_mins(20 * i64::try_from(i).unwrap());
            let user = if i % 50 == 0 { "alice" } else { "bob" };
            event(i + 1, at, json!({"connection": {"user": user}}))
        })
        .collect();
    ingest(s, "w1", 1, &events).await;
    let query = events::EventQuery::from_pairs(&[("user".to_owned(), "alice".to_owned())]).unwrap();
    let first = events::list_within(store, &admin, &query, std::time::Duration::ZERO, &now)
        .await
        .unwrap();
    // Out of time after the first window (the newest quarter of an hour): only the newest
    // match, and where the search stopped.
    assert_eq!(first.page.events.len(), 1);
    let back_to = first.searched_back_to.expect("stopped early");
    assert_eq!(
        back_to,
        newest.as_millisecond() + 1 - 15 * 60_000,
        "searched the newest quarter of an hour"
    );
    let mut found: Vec<u64> = first.page.events.iter().map(|e| e.event.seq).collect();
    let mut cursor = first.page.next_cursor.expect("a cursor to search older");
    let mut calls = 0;
    loop {
        let pairs = [
            ("user".to_owned(), "alice".to_owned()),
            ("cursor".to_owned(), cursor.clone()),
        ];
        let next = events::EventQuery::from_pairs(&pairs).unwrap();
        let page = events::list_within(
            store,
            &admin,
            &next,
            std::time::Duration::from_secs(30),
            &now,
        )
        .await
        .unwrap();
        found.extend(page.page.events.iter().map(|e| e.event.seq));
        calls += 1;
        assert_eq!(
            page.searched_back_to, None,
            "time enough to reach the oldest"
        );
        match page.page.next_cursor {
            Some(c) => cursor = c,
            None => break,
        }
        assert!(calls < 5, "the search does not end");
    }
    assert_eq!(
        found,
        [1, 51, 101, 151, 201],
        "every match once, newest first"
    );
    // With time enough, the same page as the API's.
    let whole = events::list_within(
        store,
        &admin,
        &query,
        std::time::Duration::from_secs(30),
        &now,
    )
    .await
    .unwrap();
    let listed = events::list(store, &admin, &query).await.unwrap();
    assert_eq!(whole.page, listed);
    assert_eq!(whole.searched_back_to, None);
}

/// The first batches of a day arrive from many agents at once (on PostgreSQL they race to
/// create the day's partition): every one is stored.
async fn agents_opening_a_new_day_at_once_are_all_stored(s: &TestServer) {
    let store = s.server.as_ref().unwrap().store.clone();
    let received = now();
    let day_before_yesterday = received - SignedDuration::from_hours(48);
    let tasks: Vec<_> = (0..8)
        .map(|agent| {
            let store = store.clone();
            let batch: Vec<ConnectionEvent> = (1..=50)
                .map(|i| event(i, day_before_yesterday, json!({})))
                .collect();
            tokio::spawn(async move {
                events::ingest(&store, &format!("new-day-{agent}"), 1, &batch, received).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), IngestOutcome::Stored(50));
    }
}

async fn resent_batch_is_stored_once(s: &TestServer) {
    let store = &s.server.as_ref().unwrap().store;
    let t = now();
    let batch: Vec<ConnectionEvent> = (1..=3).map(|i| event(i, t, json!({}))).collect();
    let first = events::ingest(store, "r1", 7, &batch, t).await.unwrap();
    assert_eq!(first, IngestOutcome::Stored(3));
    let again = events::ingest(store, "r1", 7, &batch, t).await.unwrap();
    assert_eq!(again, IngestOutcome::Duplicate);
    // The same events in a later batch (the agent re-batched its spool) are not stored again;
    // the new one is.
    let mut overlapping = batch.clone();
    overlapping.push(event(4, t, json!({})));
    let later = events::ingest(store, "r1", 8, &overlapping, t)
        .await
        .unwrap();
    assert_eq!(later, IngestOutcome::Stored(1));
    // The same batch number of another agent is another batch.
    let other = events::ingest(store, "r2", 7, &batch, t).await.unwrap();
    assert_eq!(other, IngestOutcome::Stored(3));
    assert_eq!(keys(s, &[("agent", "r1")]).await.len(), 4);
    // The same batch sent twice at once (two connections of one agent, two server nodes):
    // one is stored, the other recognised.
    let racing: Vec<ConnectionEvent> = (10..=12).map(|i| event(i, t, json!({}))).collect();
    let (a, b) = tokio::join!(
        events::ingest(store, "r1", 9, &racing, t),
        events::ingest(store, "r1", 9, &racing, t)
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, IngestOutcome::Duplicate));
    assert_eq!(
        outcomes,
        [IngestOutcome::Stored(3), IngestOutcome::Duplicate]
    );
    assert_eq!(keys(s, &[("agent", "r1")]).await.len(), 7);
    assert_eq!(
        s.metric("palisade_event_batches_total{outcome=\"duplicate\"}")
            .await,
        "2"
    );
    assert_eq!(
        s.metric("palisade_events_total{outcome=\"stored\"}").await,
        "10"
    );
    assert_eq!(
        s.metric("palisade_events_total{outcome=\"duplicate\"}")
            .await,
        "9"
    );
}

async fn updates_complete_their_event(s: &TestServer) {
    let store = &s.server.as_ref().unwrap().store;
    let t = now();
    let opened = |seq| event(seq, t, json!({"connection": {"dst_port": 443}}));
    let update = |seq, of, fields: Value| {
        let mut e = event(seq, t, fields);
        e.update_of = Some(of);
        e
    };
    assert_eq!(ingest(s, "u1", 1, &[opened(1), opened(2)]).await, 2);
    // A name and the end of event 1 in a later batch; event 3 with its own name and end in the
    // same batch; an update of a number that is no stored event (3 is an update) changes nothing.
    let traffic = json!({"bytes_out": 517, "bytes_in": 4_096, "packets_out": 6, "packets_in": 5, "duration_ms": 0});
    let batch = [
        update(3, 1, json!({"sni": "example.com"})),
        opened(4),
        update(5, 4, json!({"http_host": "example.org:8080"})),
        update(6, 1, json!({"traffic": traffic})),
        update(7, 4, json!({"sni": "example.net"})),
        update(
            8,
            4,
            json!({"traffic": {"bytes_out": 1, "bytes_in": 2, "packets_out": 3, "packets_in": 4, "duration_ms": 0}}),
        ),
        update(9, 3, json!({"sni": "nowhere.example"})),
    ];
    // Only event 4 is new: the updates are not events of their own.
    assert_eq!(ingest(s, "u1", 2, &batch).await, 1);
    let (status, text) = query(s, ADMIN_TOKEN, &[("agent", "u1")]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let events = body["events"].as_array().unwrap();
    let by_seq = |seq: u64| {
        events
            .iter()
            .find(|e| e["seq"] == seq)
            .unwrap_or_else(|| panic!("no event {seq} in {text}"))
    };
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(by_seq(1)["sni"], "example.com");
    assert_eq!(by_seq(1)["traffic"]["bytes_in"], 4_096);
    assert_eq!(by_seq(1)["traffic"]["packets_out"], 6);
    assert_eq!(by_seq(2)["traffic"]["bytes_in"], 0);
    assert!(by_seq(2).get("sni").is_none(), "{text}");
    assert_eq!(by_seq(4)["http_host"], "example.org:8080");
    assert_eq!(by_seq(4)["sni"], "example.net");
    assert_eq!(by_seq(4)["traffic"]["packets_in"], 4);

    // An update must name an earlier event.
    let forward = update(10, 11, json!({}));
    let refused = events::ingest(store, "u1", 3, &[forward], t).await;
    assert!(
        matches!(&refused, Err(Error::BadRequest(why)) if why.contains("update_of")),
        "{refused:?}"
    );
}

async fn batch_with_one_bad_event_stores_nothing(s: &TestServer) {
    let store = &s.server.as_ref().unwrap().store;
    let t = now();
    let good = |seq| event(seq, t, json!({"connection": {"app_path": "/usr/bin/curl"}}));
    let bad_events = [
        event(2, t, json!({"connection": {"domain": "x".repeat(300)}})),
        event(2, t, json!({"connection": {"app_path": "/tmp/a\u{0}b"}})),
        event(2, t + SignedDuration::from_hours(24 * 30), json!({})),
        event(2, Timestamp::UNIX_EPOCH, json!({})),
        event(
            2,
            t,
            json!({"traffic": {"bytes_out": u64::MAX, "bytes_in": 0, "packets_out": 0,
                                        "packets_in": 0, "duration_ms": 0}}),
        ),
        event(0, t, json!({})),
    ];
    for bad in bad_events {
        let batch = [good(1), bad, good(3)];
        let refused = events::ingest(store, "h1", 1, &batch, t).await;
        let Err(Error::BadRequest(msg)) = refused else {
            panic!("accepted: {refused:?}")
        };
        assert!(msg.starts_with("event 1 (seq "), "{msg}");
    }
    assert!(
        keys(s, &[]).await.is_empty(),
        "part of a refused batch was stored"
    );
    let huge: Vec<ConnectionEvent> = (1..=10_001).map(good).collect();
    assert!(events::ingest(store, "h1", 1, &huge, t).await.is_err());
    assert!(events::ingest(store, "", 1, &[good(1)], t).await.is_err());
    assert!(
        events::ingest(store, "h1", u64::MAX, &[good(1)], t)
            .await
            .is_err()
    );
    // The refused batch number is still free.
    let stored = events::ingest(store, "h1", 1, &[good(1), good(3)], t)
        .await
        .unwrap();
    assert_eq!(stored, IngestOutcome::Stored(2));
    assert_eq!(
        s.metric("palisade_event_batches_total{outcome=\"refused\"}")
            .await,
        "9"
    );
}

/// Text an endpoint controls, with everything that could break a COPY row, a CSV field or a
/// JSON line.
const HOSTILE: &str = "/opt/a\tb\\N,\"quoted\"\r\nnext line\\.\u{7f}é";

async fn exports_parse_back(s: &TestServer) {
    let t = now() - SignedDuration::from_mins(5);
    let events: Vec<ConnectionEvent> = (1..=5u64)
        .map(|i| {
            event(
                i,
                t + SignedDuration::from_secs(i64::try_from(i).unwrap()),
                json!({
                    "connection": {"app_path": HOSTILE, "cmdline": format!("run,{i} \"x\""),
                                   "user": "=HYPERLINK(\"http://x\")", "dst_ip": "10.0.0.9",
                                   "dst_port": 443, "protocol": "tcp"},
                    "sni": "sni.example", "pid": 42,
                    "traffic": {"bytes_out": 10, "bytes_in": 20, "packets_out": 1, "packets_in": 2,
                                "duration_ms": 5},
                }),
            )
        })
        .collect();
    ingest(s, "x1", 1, &events).await;

    let (status, page) = query(s, ADMIN_TOKEN, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page: Value = serde_json::from_str(&page).unwrap();
    let listed = page["events"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 5);
    assert_eq!(
        listed[0]["connection"]["app_path"], HOSTILE,
        "stored text changed"
    );
    // The event as stored is the event as sent.
    let back: ConnectionEvent = serde_json::from_value({
        let mut e = listed[4].clone();
        for k in ["agent_id", "time", "received_at"] {
            e.as_object_mut().unwrap().remove(k);
        }
        e
    })
    .unwrap();
    let mut sent = events[0].clone();
    sent.connection = sent.connection.normalize();
    assert_eq!(back, sent);

    let (status, jsonl) = query(s, ADMIN_TOKEN, &[("format", "jsonl")]).await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, listed);
    let (_, two) = query(s, ADMIN_TOKEN, &[("format", "jsonl"), ("limit", "2")]).await;
    assert_eq!(two.lines().count(), 2);

    let (status, csv) = query(s, ADMIN_TOKEN, &[("format", "csv")]).await;
    assert_eq!(status, StatusCode::OK);
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 6, "a header and five rows");
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (row, json) in rows[1..].iter().zip(&listed) {
        assert_eq!(row.len(), header.len());
        assert_eq!(row[col("app_path")], HOSTILE);
        assert_eq!(
            row[col("cmdline")],
            json["connection"]["cmdline"].as_str().unwrap()
        );
        // A formula is defused, not executed by a spreadsheet.
        assert_eq!(row[col("user")], "'=HYPERLINK(\"http://x\")");
        assert_eq!(row[col("seq")], json["seq"].to_string());
        assert_eq!(row[col("time")], json["time"].as_str().unwrap());
        assert_eq!(row[col("dst_ip")], "10.0.0.9");
        assert_eq!(row[col("bytes_in")], "20");
    }
}

/// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and line breaks; rows end with
/// CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                other => field.push(other),
            }
        } else {
            match c {
                '"' if field.is_empty() => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\r' if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                '"' | '\r' | '\n' => panic!("unquoted {c:?} in CSV"),
                other => field.push(other),
            }
        }
    }
    assert!(
        field.is_empty() && row.is_empty() && !quoted,
        "CSV ends mid-row"
    );
    rows
}

async fn retention_removes_old_events(s: &TestServer) {
    let store = &s.server.as_ref().unwrap().store;
    let now = now();
    let today = now
        .to_zoned(jiff::tz::TimeZone::UTC)
        .start_of_day()
        .unwrap()
        .timestamp();
    let day = SignedDuration::from_hours(24);
    let old = [
        event(
            1,
            today - day * 3 + SignedDuration::from_hours(1),
            json!({}),
        ),
        event(
            2,
            today - day * 2 + SignedDuration::from_hours(1),
            json!({}),
        ),
    ];
    ingest(s, "o1", 1, &old).await;
    ingest(s, "o1", 2, &[event(3, now, json!({}))]).await;
    let before = store.event_partitions().await.unwrap();
    let report = events::apply_retention(store, today - day).await.unwrap();
    assert_eq!(report.events_removed, 2);
    assert_eq!(keys(s, &[]).await, set(&["o1:3"]));
    let after = store.event_partitions().await.unwrap();
    if s.server.as_ref().unwrap().store.backend() == "postgres" {
        assert_eq!(before.len(), 3, "{before:?}");
        assert_eq!(report.partitions_dropped.len(), 2);
        assert_eq!(after.len(), 1, "{after:?}");
        for dropped in &report.partitions_dropped {
            assert!(!after.contains(dropped));
            // The table itself is gone, not only detached.
            let gone = s.raw_execute(&format!("SELECT 1 FROM {dropped}")).await;
            assert!(gone.is_err(), "{dropped} still exists");
        }
    } else {
        assert!(report.partitions_dropped.is_empty());
    }
    // Nothing older is left, so a second run removes nothing.
    let again = events::apply_retention(store, today - day).await.unwrap();
    assert_eq!(again.events_removed, 0);
}

const CANDIDATE: &str = "\
version: 1
name: candidate
default_action: allow
rules:
  - id: no-evil
    action: block
    match:
      domain: \"*.example.org\"
";

async fn simulate_reports_blocks_per_app(s: &TestServer) {
    let t = now() - SignedDuration::from_hours(1);
    let curl = |seq, domain: &str| {
        event(
            seq,
            t + SignedDuration::from_secs(i64::try_from(seq).unwrap()),
            json!({
            "connection": {"app_path": "/usr/bin/curl", "domain": domain, "dst_port": 443}}),
        )
    };
    let events = [
        curl(1, "a.example.org"),
        curl(2, "b.example.org"),
        curl(3, "example.net"),
        event(
            4,
            t,
            json!({"connection": {"app_path": "/usr/bin/wget", "domain": "c.example.org"},
                           "action": "block", "verdict": "block", "rule": "old"}),
        ),
        event(
            5,
            t,
            json!({"connection": {"app_path": "/usr/bin/firefox", "domain": "example.com"}}),
        ),
        // Older than the default range (24 h): not replayed.
        curl(6, "d.example.org"),
    ];
    let mut events = events.to_vec();
    events[5].time_ms = (now() - SignedDuration::from_hours(30)).as_millisecond();
    ingest(s, "s1", 1, &events).await;

    let viewer = s.token("viewer").await;
    let r = s
        .post(
            "/api/v1/policies/simulate",
            Some(&viewer),
            &json!({"format": "yaml", "source": CANDIDATE}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let b = &r.body;
    assert_eq!(b["evaluated"], 5);
    assert_eq!(b["would_block"], 3);
    // wget's event was blocked already: only curl's two change.
    assert_eq!(b["would_change"], 2);
    let apps = b["apps"].as_array().unwrap();
    assert_eq!(apps[0]["app"], "/usr/bin/curl");
    assert_eq!(apps[0]["evaluated"], 3);
    assert_eq!(apps[0]["would_block"], 2);
    let examples = apps[0]["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 2);
    assert_eq!(examples[0]["candidate_action"], "block");
    assert_eq!(examples[0]["candidate_rule"], "no-evil");
    assert_eq!(examples[0]["recorded_action"], "allow");
    let wget = apps.iter().find(|a| a["app"] == "/usr/bin/wget").unwrap();
    assert_eq!(
        (wget["would_block"].as_u64(), wget["would_change"].as_u64()),
        (Some(1), Some(0))
    );

    // A wider range includes the older event.
    let from = (now() - SignedDuration::from_hours(48)).to_string();
    let r = s
        .post(
            "/api/v1/policies/simulate",
            Some(&viewer),
            &json!({"format": "yaml", "source": CANDIDATE, "from": from}),
        )
        .await;
    assert_eq!(r.body["would_block"], 4, "{}", r.text);

    let r = s
        .post(
            "/api/v1/policies/simulate",
            Some(&viewer),
            &json!({"format": "yaml", "source": CANDIDATE.replace("block", "explode")}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = s
        .post(
            "/api/v1/policies/simulate",
            Some(&viewer),
            &json!({"format": "yaml", "source": CANDIDATE, "from": "soon"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Nothing was stored.
    let r = s.get("/api/v1/policies", Some(ADMIN_TOKEN)).await;
    assert_eq!(r.body, json!([]));
}

const V1: &str = "\
version: 1
name: office
default_action: block
rules:
  - id: dns
    action: allow
    match:
      dst_port: 53
";

async fn validate_and_diff(s: &TestServer) {
    let bad = V1.replace("action: allow", "action: explode");
    let r = s
        .post(
            "/api/v1/policies/validate",
            Some(ADMIN_TOKEN),
            &json!({"name": "office", "format": "yaml", "source": bad}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["valid"], false);
    let error = &r.body["errors"][0];
    assert_eq!(error["file"], "office.yaml");
    assert_eq!(error["line"], 6);
    assert_eq!(error["field"], "rules[0].action");
    assert!(
        error["text"]
            .as_str()
            .unwrap()
            .starts_with("office.yaml:6:")
    );

    let shadowed =
        format!("{V1}  - id: dns-again\n    action: block\n    match:\n      dst_port: 53\n");
    let r = s
        .post(
            "/api/v1/policies/validate",
            Some(ADMIN_TOKEN),
            &json!({"format": "yaml", "source": shadowed}),
        )
        .await;
    assert_eq!(r.body["valid"], true, "{}", r.text);
    let warning = &r.body["warnings"][0];
    assert!(
        warning["field"].as_str().unwrap().contains("dns-again"),
        "{}",
        r.text
    );
    assert_eq!(warning["line"], 9, "{}", r.text);
    assert_eq!(
        s.get("/api/v1/policies", Some(ADMIN_TOKEN)).await.body,
        json!([])
    );

    let created = s.create_policy(ADMIN_TOKEN, "office", "yaml", V1).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["policy_id"].as_i64().unwrap();
    let v2 = V1.replace("dst_port: 53", "dst_port: 54");
    s.create_policy(ADMIN_TOKEN, "office", "yaml", &v2).await;
    let viewer = s.token("viewer").await;
    let r = s
        .get(
            &format!("/api/v1/policies/{id}/diff?from=1&to=2"),
            Some(&viewer),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let diff = r.body["diff"].as_str().unwrap();
    assert!(diff.starts_with("--- office@1\n+++ office@2\n"), "{diff}");
    assert!(
        diff.contains("\n-      dst_port: 53\n+      dst_port: 54\n"),
        "{diff}"
    );
    assert!(
        !diff.contains("+version"),
        "unchanged lines are context: {diff}"
    );
    // Defaults: the newest against the one before.
    let r = s
        .get(&format!("/api/v1/policies/{id}/diff"), Some(&viewer))
        .await;
    assert_eq!(r.body["diff"].as_str(), Some(diff));
    let r = s
        .get(
            &format!("/api/v1/policies/{id}/diff?from=1&to=9"),
            Some(&viewer),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s
        .get(
            &format!("/api/v1/policies/{id}/diff?from=one"),
            Some(&viewer),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn events_need_a_reading_role(s: &TestServer) {
    five_events(s).await;
    let r = s.get("/api/v1/events", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.get("/api/v1/events?format=csv", Some("wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let decision = s.token("decision").await;
    for path in [
        "/api/v1/events",
        "/api/v1/events?format=csv",
        "/api/v1/events?format=jsonl",
    ] {
        let r = s.get(path, Some(&decision)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = s
        .post(
            "/api/v1/policies/simulate",
            Some(&decision),
            &json!({"format": "yaml", "source": CANDIDATE}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .post(
            "/api/v1/policies/validate",
            None,
            &json!({"format": "yaml", "source": CANDIDATE}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for role in ["viewer", "auditor", "analyst"] {
        let token = s.token(role).await;
        let r = s.get("/api/v1/events", Some(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "{role}");
        assert_eq!(r.body["events"].as_array().unwrap().len(), 5, "{role}");
    }
}
