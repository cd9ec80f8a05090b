#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::Path;

use rand::Rng;

use super::simulate::{self, Benign, Encoding, Query, Rate};
use super::*;
use crate::zeek::{self, LogFile, LogKind, Record};

/// Feeds `queries` from one source to a fresh tracker; the findings.
fn replay(config: &Config, source: &str, queries: &[Query]) -> Vec<Finding> {
    let mut tracker = Tracker::new(config.clone());
    queries
        .iter()
        .enumerate()
        .filter_map(|(i, q)| {
            tracker.observe(q.time_ms, source, &q.name, Some(q.qtype), &format!("q{i}"))
        })
        .collect()
}

/// The highest score any window of `queries` reached once it had the fewest queries and
/// distinct subdomains to be reported.
fn max_score(config: &Config, queries: &[Query]) -> f64 {
    let mut tracker = Tracker::new(config.clone());
    let mut max: f64 = 0.0;
    for q in queries {
        tracker.observe(q.time_ms, "s", &q.name, Some(q.qtype), "id");
        let Some(domain) = names::registrable_domain(&q.name) else {
            continue;
        };
        let key = (String::from("s"), domain.to_ascii_lowercase());
        if let Some(w) = tracker.keys.get(&key) {
            if w.queries >= config.min_queries
                && w.distinct_subdomains() >= config.min_distinct as usize
            {
                max = max.max(tracker.current_score("s", &key.1).unwrap_or(0.0));
            }
        }
    }
    max
}

/// The tunnels the target is about (iodine-like and dnscat-like, low and high rate), each
/// with its seed.
const TARGET_TUNNELS: [(Encoding, Rate, u64); 4] = [
    (Encoding::Iodine, Rate::Low, 1),
    (Encoding::Iodine, Rate::High, 2),
    (Encoding::Dnscat, Rate::Low, 3),
    (Encoding::Dnscat, Rate::High, 4),
];

/// The weakest tunnel's best window and the strongest benign stream's best window, so the
/// margin around the threshold shows (the antivirus hash lookups, which only the ignore list
/// keeps out, printed but not asserted).
#[test]
fn tunnels_and_benign_patterns_are_apart_from_the_threshold() {
    let config = Config::default();
    for (encoding, rate, seed) in TARGET_TUNNELS {
        let mut rng = simulate::rng(seed);
        let mut scores: Vec<f64> = (0..200)
            .map(|_| {
                let domain = simulate::random_domain(&mut rng);
                max_score(
                    &config,
                    &simulate::tunnel(&mut rng, encoding, rate, &domain),
                )
            })
            .collect();
        scores.sort_by(f64::total_cmp);
        println!(
            "margin tunnels {encoding:?} {rate:?}: lowest best scores {:?}",
            &scores[..5]
        );
        assert!(scores[0] >= 0.95, "{encoding:?} {rate:?}: {}", scores[0]);
    }
    let unlisted = Config {
        ignore_suffixes: Vec::new(),
        ..Config::default()
    };
    for (i, pattern) in Benign::ALL.into_iter().enumerate() {
        let mut rng = simulate::rng(100 + i as u64);
        let max = (0..50)
            .map(|_| max_score(&unlisted, &simulate::benign(&mut rng, pattern)))
            .fold(0.0, f64::max);
        println!("margin benign {pattern:?}: highest score {max:.4}");
        if pattern != Benign::AntivirusHash {
            assert!(max <= 0.5, "{pattern:?}: {max}");
        }
    }
}

/// Share of `n` simulated tunnels flagged at least once, and the smallest best score of a miss.
/// Also the share of the tunnels' 5-minute windows (counted from the first query) flagged.
fn tunnel_recall(
    config: &Config,
    encoding: Encoding,
    rate: Rate,
    n: usize,
    seed: u64,
) -> (usize, f64, Vec<String>) {
    let mut rng = simulate::rng(seed);
    let mut flagged = 0;
    let mut misses = Vec::new();
    let (mut windows, mut windows_flagged) = (0, 0);
    for _ in 0..n {
        let domain = simulate::random_domain(&mut rng);
        let queries = simulate::tunnel(&mut rng, encoding, rate, &domain);
        let findings = replay(config, "10.0.0.1", &queries);
        let span = queries.last().unwrap().time_ms - queries[0].time_ms;
        windows += span / config.window_ms + 1;
        windows_flagged += findings.len() as i64;
        if findings.is_empty() {
            misses.push(format!(
                "{domain} ({} queries, first {})",
                queries.len(),
                queries[0].name
            ));
        } else {
            flagged += 1;
        }
    }
    (flagged, windows_flagged as f64 / windows as f64, misses)
}

/// Of `n` streams of a benign pattern, how many were flagged, with one finding's summary.
fn benign_flagged(
    config: &Config,
    pattern: Benign,
    n: usize,
    seed: u64,
) -> (usize, Option<String>) {
    let mut rng = simulate::rng(seed);
    let mut flagged = 0;
    let mut example = None;
    for _ in 0..n {
        let findings = replay(config, "10.0.0.2", &simulate::benign(&mut rng, pattern));
        if let Some(f) = findings.first() {
            flagged += 1;
            example.get_or_insert_with(|| format!("{}: {}", f.domain, f.explanation.summary));
        }
    }
    (flagged, example)
}

#[test]
fn simulated_tunnels_are_caught_at_low_and_high_rate() {
    let config = Config::default();
    for (encoding, rate, seed) in TARGET_TUNNELS {
        let (flagged, windows, misses) = tunnel_recall(&config, encoding, rate, 200, seed);
        let recall = flagged as f64 / 200.0;
        println!(
            "tunnels {encoding:?} {rate:?}: recall {recall:.3} ({flagged}/200), windows flagged {windows:.3}; misses: {misses:?}"
        );
        assert!(recall >= 0.99, "{encoding:?} {rate:?}: recall {recall}");
    }
    // Short names at a low rate: outside the target, a known miss; the figure goes in the docs.
    for (encoding, seed) in [(Encoding::Iodine, 5), (Encoding::Dnscat, 6)] {
        let (flagged, windows, _) = tunnel_recall(&config, encoding, Rate::LowShort, 200, seed);
        println!(
            "tunnels {encoding:?} LowShort: recall {:.3} ({flagged}/200), windows flagged {windows:.3}",
            flagged as f64 / 200.0
        );
        // Measured 0.355 (iodine, caught by entropy and NULL queries) and 0.00 (dnscat2 hex):
        // a change here changes what docs/detection.md says.
        let limit = if encoding == Encoding::Iodine {
            0.2..0.5
        } else {
            0.0..0.05
        };
        assert!(
            limit.contains(&(flagged as f64 / 200.0)),
            "{encoding:?} short: {flagged}/200"
        );
    }
}

#[test]
fn benign_heavy_patterns_are_not_flagged() {
    let config = Config::default();
    let unlisted = Config {
        ignore_suffixes: Vec::new(),
        ..Config::default()
    };
    let mut flagged_total = 0;
    for (i, pattern) in Benign::ALL.into_iter().enumerate() {
        let (flagged, example) = benign_flagged(&config, pattern, 50, 100 + i as u64);
        let (unlisted_flagged, unlisted_example) =
            benign_flagged(&unlisted, pattern, 50, 100 + i as u64);
        println!(
            "benign {pattern:?}: {flagged}/50 flagged {example:?}; without ignore_suffixes {unlisted_flagged}/50 {unlisted_example:?}"
        );
        flagged_total += flagged;
    }
    assert_eq!(flagged_total, 0);
}

#[test]
fn a_finding_explains_itself_and_carries_evidence() {
    let mut rng = simulate::rng(7);
    let queries = simulate::tunnel(&mut rng, Encoding::Dnscat, Rate::High, "exfil-example.com");
    let findings = replay(&Config::default(), "10.1.1.1", &queries);
    // High rate for minutes: one finding per 5-minute window at most.
    let last = queries.last().unwrap().time_ms;
    assert!(
        !findings.is_empty() && findings.len() as i64 <= last / 300_000 + 1,
        "{}",
        findings.len()
    );
    let f = &findings[0];
    assert_eq!(
        (f.source.as_str(), f.domain.as_str()),
        ("10.1.1.1", "exfil-example.com")
    );
    assert!(f.score >= 0.8 && f.score <= 1.0);
    assert!(!f.evidence.is_empty() && f.evidence.len() <= 20);
    assert_eq!(f.evidence[0], "q0");
    assert!(f.explanation.features.mean_subdomain_len > 40.0);
    assert!(
        f.explanation
            .terms
            .iter()
            .any(|t| t.feature == "label_entropy")
    );
    assert!(
        f.explanation.summary.contains("distinct subdomains"),
        "{}",
        f.explanation.summary
    );
    let json = serde_json::to_value(f).unwrap();
    assert!(json["explanation"]["terms"][0]["contribution"].is_number());
}

#[test]
fn repeated_names_and_ignored_suffixes_do_not_score() {
    let mut tracker = Tracker::new(Config::default());
    let long = "a".repeat(60);
    for i in 0..1000 {
        // The same long name again and again: one distinct subdomain.
        assert!(
            tracker
                .observe(
                    i * 100,
                    "s",
                    &format!("{long}.example.com"),
                    Some("TXT"),
                    "x"
                )
                .is_none()
        );
    }
    for i in 0..1000 {
        let name = format!(
            "{:040x}.1.sxl.sophosxl.net",
            u128::from(i as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        assert!(
            tracker
                .observe(200_000 + i * 100, "s", &name, Some("TXT"), "y")
                .is_none()
        );
    }
}

#[test]
fn idle_keys_are_evicted_and_the_key_count_is_bounded() {
    let config = Config {
        max_keys: 100,
        ..Config::default()
    };
    let mut tracker = Tracker::new(config);
    for i in 0..1000 {
        tracker.observe(0, &format!("10.0.0.{i}"), "www.example.com", Some("A"), "a");
    }
    assert_eq!(tracker.keys(), 100);
    assert_eq!(tracker.untracked(), 900);
    // Once the windows are over, the old keys go (at the next sweep of the full table) and new
    // ones are tracked.
    for i in 0..256 {
        tracker.observe(301_000 + i, "10.9.9.9", "www.example.com", Some("A"), "b");
    }
    assert_eq!(tracker.keys(), 1);
    assert!(
        (900..900 + 256).contains(&tracker.untracked()),
        "{}",
        tracker.untracked()
    );
}

#[test]
fn hostile_names_never_panic() {
    let mut rng = simulate::rng(11);
    let mut tracker = Tracker::new(Config::default());
    for i in 0..20_000 {
        let len = rng.random_range(0..400);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.3) {
                    b'.'
                } else {
                    rng.random()
                }
            })
            .collect();
        let name = String::from_utf8_lossy(&bytes);
        tracker.observe(i, "s", &name, Some("TXT"), "h");
        let _ = names::split(&name);
    }
    assert!(
        tracker
            .observe(i64::MAX, "s", "a.example.com", None, "x")
            .is_none()
    );
    assert!(
        tracker
            .observe(i64::MIN, "s", "a.example.com", None, "x")
            .is_none()
    );
}

fn corpus_enabled(what: &str) -> bool {
    if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_CORPUS_TESTS=1 to {what}");
        return false;
    }
    true
}

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");

#[test]
fn corpus_benign_domains_are_not_flagged() {
    if !corpus_enabled("replay the benign domain list") {
        return;
    }
    let text = std::fs::read_to_string(format!("{CORPUS}/domains/benign.txt")).unwrap();
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut refused = 0;
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match names::registrable_domain(name) {
            Some(domain) => groups
                .entry(domain.to_ascii_lowercase())
                .or_default()
                .push(name),
            None => refused += 1,
        }
    }
    let mut names_total = 0;
    let mut rng = simulate::rng(21);
    let mut tracker = Tracker::new(Config::default());
    let mut flagged = Vec::new();
    for (domain, names) in &groups {
        // All names of a registrable domain within an hour, in a random order, from one host.
        let mut times: Vec<i64> = names
            .iter()
            .map(|_| rng.random_range(0..3_600_000))
            .collect();
        times.sort_unstable();
        names_total += names.len();
        for (t, name) in times.iter().zip(names) {
            if let Some(f) = tracker.observe(*t, "bench", name, Some("A"), name) {
                flagged.push((domain.clone(), f.explanation.summary));
            }
        }
    }
    let fpr = flagged.len() as f64 / groups.len() as f64;
    println!(
        "benign.txt: {names_total} names, {} registrable domains, {refused} refused, {} flagged (FPR {fpr:.5}): {flagged:?}",
        groups.len(),
        flagged.len()
    );
    assert!(fpr <= 0.001);
}

#[test]
fn corpus_zeek_dns_log_is_not_flagged() {
    if !corpus_enabled("replay the Zeek dns.log") {
        return;
    }
    let mut file = LogFile::new(Path::new(CORPUS).join("beacons/dns.log"), LogKind::Dns);
    let mut tracker = Tracker::new(Config::default());
    let mut keys = std::collections::BTreeSet::new();
    let mut flagged = Vec::new();
    let mut queries = 0;
    zeek::read_file(&mut file, |record| {
        if let Record::Dns(dns) = record {
            let Some(query) = dns.query.as_deref() else {
                return;
            };
            queries += 1;
            let source = dns.id.orig_h.to_string();
            if let Some(domain) = names::registrable_domain(query) {
                keys.insert((source.clone(), domain.to_ascii_lowercase()));
            }
            let time_ms = (dns.ts * 1000.0) as i64;
            if let Some(f) =
                tracker.observe(time_ms, &source, query, dns.qtype_name.as_deref(), &dns.uid)
            {
                flagged.push(format!(
                    "{} {}: {}",
                    f.source, f.domain, f.explanation.summary
                ));
            }
        }
    })
    .unwrap();
    println!(
        "zeek dns.log: {queries} queries, {} (source, domain) keys, flagged {flagged:?}",
        keys.len()
    );
    assert!(queries > 500);
    assert!(flagged.is_empty());
}
