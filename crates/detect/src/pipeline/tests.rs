#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::net::{IpAddr, Ipv4Addr};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn connection<'a>(agent: &'a str, seq: u64, time_ms: i64, app: &'a str) -> Observation<'a> {
    Observation {
        agent,
        seq,
        time_ms,
        app,
        domain: None,
        dst_ip: Some(IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14))),
        dst_port: 443,
        inbound: false,
        bytes_out: 500,
        bytes_in: 5_000,
        update_of: None,
        query_type: None,
        reference: None,
    }
}

/// `agent`'s `app` asking the resolver for each of `names`, a second apart.
fn dns_queries<'a>(
    agent: &'a str,
    app: &'a str,
    names: impl Iterator<Item = &'a str>,
) -> Vec<Observation<'a>> {
    names
        .enumerate()
        .map(|(i, name)| Observation {
            domain: Some(name),
            dst_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53))),
            dst_port: 53,
            ..connection(agent, i as u64 + 1, T0 + i as i64 * 1_000, app)
        })
        .collect()
}

fn run(pipeline: &mut Pipeline, observations: &[Observation<'_>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for o in observations {
        pipeline.observe(o, &mut out);
    }
    out
}

fn kinds(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.kind.as_str()).collect()
}

#[test]
fn a_port_scan_raises_once_per_window_with_the_host_and_the_count() {
    let mut pipeline = Pipeline::new(Settings::default());
    let target = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 42));
    let scan: Vec<Observation<'_>> = (1..=100u16)
        .map(|port| Observation {
            dst_ip: Some(target),
            dst_port: port,
            ..connection(
                "ws-1",
                u64::from(port),
                T0 + i64::from(port) * 100,
                "/usr/bin/nmap",
            )
        })
        .collect();
    let found = run(&mut pipeline, &scan);
    assert_eq!(kinds(&found), ["port_scan"]);
    let f = &found[0];
    assert_eq!(f.key, "port_scan:ws-1:10.1.0.42");
    assert_eq!(f.explanation["distinct_ports"], 30);
    assert_eq!(f.explanation["threshold_ports"], 30);
    assert_eq!(f.app.as_deref(), Some("/usr/bin/nmap"));
    assert_eq!(f.evidence.len(), MAX_EVIDENCE);
    assert_eq!(f.evidence.last().unwrap(), "ws-1/30");
    assert!(f.title.contains("10.1.0.42"), "{}", f.title);
}

#[test]
fn few_ports_of_a_host_raise_nothing() {
    let mut pipeline = Pipeline::new(Settings::default());
    let ports = [22u16, 80, 443, 8080, 8443];
    let normal: Vec<Observation<'_>> = (0..200u64)
        .map(|i| Observation {
            dst_port: ports[i as usize % ports.len()],
            ..connection("ws-1", i + 1, T0 + i as i64 * 1_000, "/usr/bin/curl")
        })
        .collect();
    assert!(run(&mut pipeline, &normal).is_empty());
}

#[test]
fn an_event_delivered_twice_is_counted_once() {
    let mut pipeline = Pipeline::new(Settings::default());
    let target = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 42));
    let half: Vec<Observation<'_>> = (1..=20u16)
        .map(|port| Observation {
            dst_ip: Some(target),
            dst_port: port,
            ..connection("ws-1", u64::from(port), T0, "/usr/bin/nmap")
        })
        .collect();
    // The same twenty ports again under the same event ids: still twenty, no scan.
    assert!(run(&mut pipeline, &half).is_empty());
    assert!(run(&mut pipeline, &half).is_empty());
    let counters = pipeline.counters();
    assert_eq!((counters.observed, counters.repeated), (20, 20));
}

#[test]
fn a_large_upload_without_history_raises_past_the_fixed_bound() {
    let mut pipeline = Pipeline::new(Settings::default());
    let uploads: Vec<Observation<'_>> = (0..30u64)
        .map(|i| Observation {
            domain: Some("transfer.filedrop-share.io"),
            bytes_out: 60_000_000,
            ..connection("ws-2", i + 1, T0 + i as i64 * 20_000, "/usr/bin/rclone")
        })
        .collect();
    let found = run(&mut pipeline, &uploads);
    assert_eq!(kinds(&found), ["exfiltration"]);
    let f = &found[0];
    // 17 uploads of 60 MB are the first to pass 1 GB.
    assert_eq!(f.explanation["bytes_out_this_hour"], 17 * 60_000_000u64);
    assert_eq!(
        f.explanation["baseline"],
        "too little history: a fixed bound"
    );
    assert!(
        f.explanation["largest_destinations"]
            .as_str()
            .unwrap()
            .starts_with("transfer.filedrop-share.io: 1020 MB"),
        "{}",
        f.explanation
    );
}

/// A day and a half of an application sending about `hourly` bytes each hour, in pieces.
fn history(hourly: u64, rng: &mut SmallRng) -> Vec<(i64, u64)> {
    (0..36)
        .flat_map(|hour| {
            let pieces = 10;
            let total = hourly / 2 + rng.random_range(0..hourly);
            (0..pieces).map(move |i: i64| (T0 + hour * HOUR + i * 6 * MINUTE, total / 10))
        })
        .collect()
}

#[test]
fn after_a_day_the_bound_follows_the_application_s_own_history() {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut pipeline = Pipeline::new(Settings::default());
    // An application sending 200-600 MB an hour: the fixed 1 GB bound would be near, its own
    // baseline is far above it.
    let mut seq = 0;
    let mut next = |time_ms: i64, bytes: u64, out: &mut Vec<Finding>, p: &mut Pipeline| {
        seq += 1;
        let o = Observation {
            bytes_out: bytes,
            ..connection("ws-3", seq, time_ms, "/usr/bin/backup")
        };
        p.observe(&o, out);
    };
    let mut found = Vec::new();
    for (t, bytes) in history(400_000_000, &mut rng) {
        next(t, bytes, &mut found, &mut pipeline);
    }
    assert!(found.is_empty(), "{found:?}");
    // Hour 36: an ordinary hour raises nothing, ten times the usual raises.
    let hour = T0 + 36 * HOUR;
    next(hour, 500_000_000, &mut found, &mut pipeline);
    assert!(found.is_empty(), "{found:?}");
    next(hour + MINUTE, 4_000_000_000, &mut found, &mut pipeline);
    assert_eq!(kinds(&found), ["exfiltration"]);
    assert_eq!(
        found[0].explanation["baseline"],
        "every hour of the history"
    );
    assert_eq!(found[0].explanation["baseline_hours"], 36);
}

#[test]
fn an_application_meeting_rare_destinations_after_learning_raises() {
    let mut pipeline = Pipeline::new(Settings::default());
    let mut seq = 0;
    let mut at = |agent: &'static str, time_ms: i64, domain: &'static str| {
        seq += 1;
        Observation {
            domain: Some(domain),
            ..connection(agent, seq, time_ms, "/usr/bin/slack")
        }
    };
    // Three agents learn slack's usual destinations for an hour.
    let mut learn = Vec::new();
    for minute in 0..60 {
        for agent in ["ws-1", "ws-2", "ws-3"] {
            learn.push(at(agent, T0 + minute * MINUTE, "wss-primary.slack.com"));
            learn.push(at(agent, T0 + minute * MINUTE + 1, "files.slack.com"));
        }
    }
    assert!(run(&mut pipeline, &learn).is_empty());
    // One agent meets a destination the others use: nothing. Then three never seen: raised.
    let later = T0 + 61 * MINUTE;
    let odd = [
        at("ws-1", later, "edgeapi.slack.com"),
        at("ws-2", later + 1, "edgeapi.slack.com"),
        at("ws-3", later + 2, "edgeapi.slack.com"),
        at("ws-1", later + 3, "node17.pastebin-mirror.xyz"),
        at("ws-1", later + 4, "node4242.pastebin-mirror.xyz"),
        at("ws-1", later + 5, "node9.pastebin-mirror.xyz"),
    ];
    let found = run(&mut pipeline, &odd);
    assert_eq!(kinds(&found), ["new_destinations"]);
    let f = &found[0];
    assert_eq!(
        (f.agent.as_str(), f.explanation["new_destinations"].as_u64()),
        ("ws-1", Some(3))
    );
    let listed = f.explanation["destinations"].as_str().unwrap();
    assert!(listed.contains("node17.pastebin-mirror.xyz"), "{listed}");
    assert!(!listed.contains("edgeapi"), "{listed}");
}

#[test]
fn nothing_is_new_while_an_application_is_being_learned() {
    let mut pipeline = Pipeline::new(Settings::default());
    let fresh: Vec<Observation<'_>> = (0..50u64)
        .map(|i| Observation {
            domain: Some(
                [
                    "a.example.com",
                    "b.example.org",
                    "c.example.net",
                    "d.example.io",
                    "e.example.dev",
                ][i as usize % 5],
            ),
            ..connection("ws-1", i + 1, T0 + i as i64 * MINUTE / 2, "/usr/bin/code")
        })
        .collect();
    assert!(run(&mut pipeline, &fresh).is_empty());
}

/// A pair connecting every `period_s` seconds with up to `jitter` of it either way, for `hours`.
fn timer(period_s: f64, jitter: f64, hours: i64, rng: &mut SmallRng) -> Vec<i64> {
    let mut t = 0.0;
    let mut times = Vec::new();
    while t < (hours * 3600) as f64 {
        times.push(T0 + (t * 1000.0) as i64);
        t += period_s * (1.0 + rng.random_range(-jitter..=jitter));
    }
    times
}

#[test]
fn a_timer_with_jitter_is_a_beacon_and_poisson_traffic_is_not() {
    let mut rng = SmallRng::seed_from_u64(3);
    let mut pipeline = Pipeline::new(Settings::default());
    let beacon = timer(60.0, 0.1, 6, &mut rng);
    let mut seq = 0u64;
    let mut observations = Vec::new();
    for t in &beacon {
        seq += 1;
        observations.push(Observation {
            domain: Some("cdn-1a2b.cloud-metrics.net"),
            bytes_out: rng.random_range(380..420),
            ..connection("ws-4", seq, *t, "/var/tmp/.update/kworkerd")
        });
    }
    // A person browsing: exponential gaps with a mean of a minute, sizes all over the place.
    let mut t = T0 as f64;
    while t < (T0 + 6 * HOUR) as f64 {
        seq += 1;
        observations.push(Observation {
            domain: Some("www.example-news.com"),
            bytes_out: rng.random_range(300..30_000),
            ..connection("ws-4", seq, t as i64, "/usr/bin/firefox")
        });
        t += -60_000.0 * (1.0 - rng.random::<f64>()).ln();
    }
    observations.sort_by_key(|o| o.time_ms);
    let mut found = Vec::new();
    let mut next_tick = T0 + MINUTE;
    for o in &observations {
        while o.time_ms >= next_tick {
            pipeline.tick(next_tick, &mut found);
            next_tick += MINUTE;
        }
        pipeline.observe(o, &mut found);
    }
    pipeline.tick(T0 + 6 * HOUR, &mut found);
    let beacons: Vec<&Finding> = found.iter().filter(|f| f.kind == "beacon").collect();
    assert!(!beacons.is_empty(), "the timer was not found");
    assert!(
        beacons
            .iter()
            .all(|f| f.key == "beacon:ws-4:cdn-1a2b.cloud-metrics.net"),
        "{beacons:?}"
    );
    // Raised again only after the quiet hour: at most once per hour of the six.
    assert!(beacons.len() <= 6, "{}", beacons.len());
    let interval = beacons[0].explanation["interval_median_seconds"]
        .as_f64()
        .unwrap();
    assert!((55.0..=65.0).contains(&interval), "{interval}");
}

#[test]
fn an_update_record_counts_its_bytes_for_the_application_of_its_event() {
    let mut pipeline = Pipeline::new(Settings::default());
    let opened = Observation {
        bytes_out: 0,
        ..connection("ws-5", 1, T0, "/usr/bin/rclone")
    };
    let ended = Observation {
        app: "",
        bytes_out: 2_000_000_000,
        update_of: Some(1),
        ..connection("ws-5", 2, T0, "")
    };
    let found = run(&mut pipeline, &[opened, ended]);
    assert_eq!(kinds(&found), ["exfiltration"]);
    assert_eq!(found[0].app.as_deref(), Some("/usr/bin/rclone"));
}

#[test]
fn names_carrying_data_under_one_domain_are_a_tunnel_and_ordinary_lookups_are_not() {
    let mut rng = SmallRng::seed_from_u64(11);
    let mut pipeline = Pipeline::new(Settings::default());
    let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
    let names: Vec<String> = (0..60)
        .map(|_| {
            let data: String = (0..50)
                .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
                .collect();
            format!("{data}.t.exfil-dns.net")
        })
        .chain(["www.example.com", "mail.example.com", "api.example.com"].map(str::to_owned))
        .collect();
    let queries = dns_queries(
        "ws-6",
        "/usr/local/bin/dnscat",
        names.iter().map(String::as_str),
    );
    let found = run(&mut pipeline, &queries);
    assert_eq!(kinds(&found), ["dns_tunnel"]);
    let f = &found[0];
    assert_eq!(f.key, "dns_tunnel:ws-6:exfil-dns.net");
    assert!(f.explanation["why"].as_str().is_some_and(|w| !w.is_empty()));
    assert!(
        f.evidence.first().is_some_and(|e| e == "ws-6/1"),
        "{:?}",
        f.evidence
    );
}

#[test]
fn an_application_walking_through_generated_names_raises_and_ordinary_lookups_do_not() {
    let mut pipeline = Pipeline::new(Settings::default());
    let ordinary = [
        "www.google.com",
        "github.com",
        "slack.com",
        "login.microsoftonline.com",
        "www.wikipedia.org",
        "news.ycombinator.com",
        "cdn.jsdelivr.net",
        "api.stripe.com",
    ];
    let generated = [
        "xkqjvtzpwmrh.com",
        "qzvbnrtkpsyl.net",
        "wjxrtqpzkvmb.org",
        "pkzvrqtxwjnm.info",
        "rvtqzxkpmjwb.biz",
        "tzqxkvprjwml.ru",
        "mqzxtvkrpjwn.com",
    ];
    let queries = dns_queries(
        "ws-7",
        "/tmp/.X11-cache/dbus-helper",
        ordinary.iter().chain(generated.iter()).copied(),
    );
    let found = run(&mut pipeline, &queries);
    assert_eq!(kinds(&found), ["dga"], "{found:?}");
    let f = &found[0];
    assert_eq!(f.explanation["generated_domains"], 5);
    let names = f.explanation["names"].as_str().unwrap();
    assert!(names.starts_with("xkqjvtzpwmrh.com"), "{names}");
    assert!(!names.contains("google"), "{names}");
}
