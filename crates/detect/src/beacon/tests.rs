use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

const DAY: f64 = 86_400.0;
const START: f64 = 1_700_000_000.0;
/// The score above which the synthetic beacons all are and the random traffic is not.
const THRESHOLD: f64 = 0.86;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn obs(ts: f64, src: u8, dst: u8, name: Option<&str>, bytes: u64) -> Observation {
    Observation {
        ts,
        src: ip(src),
        dst_addr: ip(dst),
        dst_name: name.map(str::to_owned),
        bytes,
        duration: 0.5,
    }
}

fn day() -> Window {
    Window::new(START, START + DAY).unwrap()
}

/// A beacon calling every `period` seconds, each interval off by up to `jitter` of it (uniform),
/// sending `size` bytes give or take 2 %.
fn beacon(rng: &mut SmallRng, period: f64, jitter: f64, size: u64) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut ts = START + rng.random_range(0.0..period);
    while ts < START + DAY {
        let bytes = rng.random_range(size * 98 / 100..=size * 102 / 100);
        out.push(Observation {
            bytes,
            ..obs(ts, 1, 2, None, 0)
        });
        ts += period * (1.0 + rng.random_range(-jitter..=jitter));
    }
    out
}

/// Benign traffic: connections at random (Poisson) times with a mean gap of `mean` seconds,
/// sizes anywhere from 200 bytes to 20 kB.
fn poisson(rng: &mut SmallRng, mean: f64) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut ts = START;
    loop {
        ts += -mean * (1.0 - rng.random::<f64>()).ln();
        if ts >= START + DAY {
            return out;
        }
        let bytes = rng.random_range(200..20_000);
        out.push(obs(ts, 1, 3, None, bytes));
    }
}

fn score_of(observations: &[Observation]) -> Option<BeaconScore> {
    let points: Vec<Point> = observations
        .iter()
        .map(|o| Point {
            ts: o.ts,
            dst_addr: o.dst_addr,
            bytes: o.bytes,
            duration: o.duration,
        })
        .collect();
    score_pair(
        ip(1),
        Destination::Addr(ip(2)),
        &points,
        day(),
        &Config::default(),
    )
}

#[test]
fn a_strict_beacon_scores_one() {
    let points: Vec<Observation> = (0..288)
        .map(|i| obs(START + 300.0 * f64::from(i), 1, 2, None, 512))
        .collect();
    let score = score_of(&points).unwrap();
    assert_eq!(score.score, 1.0, "{}", score.explanation());
    assert_eq!(score.timestamp.median, 300.0);
    assert_eq!((score.timestamp.mad, score.data_size.mad), (0.0, 0.0));
    assert_eq!(score.histogram.bins_seen, 24);
    assert_eq!(score.duration.longest_run, 24);
    assert_eq!(score.total_bytes, 288 * 512);
}

#[test]
fn jittered_beacons_stand_apart_from_random_traffic() {
    let mut rng = SmallRng::seed_from_u64(20_261_207);
    let mut beacons = Vec::new();
    for period in [60.0, 300.0, 900.0, 1800.0, 3600.0] {
        for jitter in [0.0, 0.1, 0.2, 0.3] {
            for _ in 0..10 {
                let size = rng.random_range(100..5000);
                let points = beacon(&mut rng, period, jitter, size);
                beacons.push((period, jitter, score_of(&points).unwrap()));
            }
        }
    }
    let mut benign = Vec::new();
    for mean in [30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0] {
        for _ in 0..30 {
            let points = poisson(&mut rng, mean);
            if let Some(score) = score_of(&points) {
                benign.push((mean, score));
            }
        }
    }
    assert!(benign.len() > 150, "{}", benign.len());
    // One threshold separates them all: every beacon above, all random traffic below.
    for (period, jitter, score) in &beacons {
        assert!(
            score.score >= THRESHOLD,
            "period {period} jitter {jitter}: {}",
            score.explanation()
        );
    }
    for (mean, score) in &benign {
        assert!(
            score.score < THRESHOLD,
            "mean gap {mean}: {}",
            score.explanation()
        );
    }
    // The interval score carries it: jitter of 30 % costs a beacon little (a MAD of about 15 %
    // of the period), while random gaps are skewed and dispersed.
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let jittered = median(
        beacons
            .iter()
            .filter(|(_, jitter, _)| *jitter == 0.3)
            .map(|(_, _, s)| s.timestamp.score)
            .collect(),
    );
    let random = median(benign.iter().map(|(_, s)| s.timestamp.score).collect());
    assert!(jittered >= 0.85 && random <= 0.6, "{jittered} vs {random}");
}

#[test]
fn too_few_connections_are_not_scored() {
    let points: Vec<Observation> = [0.0, 60.0, 120.0, 120.5]
        .iter()
        .map(|&t| obs(START + t, 1, 2, None, 100))
        .collect();
    // Three distinct seconds give two intervals: below the three the statistics need.
    assert_eq!(score_of(&points), None);
    let mut tracker = Tracker::new();
    points.into_iter().for_each(|o| tracker.record(o));
    assert!(tracker.score(day(), &Config::default()).is_empty());
}

#[test]
fn named_connections_through_a_proxy_are_scored_by_name_and_not_again_by_address() {
    let mut tracker = Tracker::new();
    let proxy = 9;
    for i in 0..100 {
        let ts = START + 600.0 * f64::from(i);
        tracker.record(obs(ts, 1, proxy, Some("c2.example"), 300));
    }
    // Three named connections elsewhere: too few for their name, so they count by address.
    for t in [1000.0, 9000.0, 30_000.0] {
        tracker.record(obs(START + t, 1, proxy, Some("news.example"), 4000));
    }
    for t in [5000.0, 20_000.0] {
        tracker.record(obs(START + t, 1, proxy, None, 700));
    }
    let scores = tracker.score(day(), &Config::default());
    let named: Vec<_> = scores.iter().filter(|s| s.dst_kind == "name").collect();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].dst, Destination::Name("c2.example".to_owned()));
    assert_eq!(named[0].connections, 100);
    assert_eq!(named[0].addresses, vec![ip(proxy)]);
    let by_addr: Vec<_> = scores.iter().filter(|s| s.dst_kind == "addr").collect();
    assert_eq!(by_addr.len(), 1);
    assert_eq!(by_addr[0].dst, Destination::Addr(ip(proxy)));
    assert_eq!(by_addr[0].connections, 5);
    assert!(scores[0].score >= scores[1].score);
}

#[test]
fn multicast_destinations_are_left_out_unless_asked_for() {
    let mut tracker = Tracker::new();
    let all_routers: IpAddr = "ff02::2".parse().unwrap();
    for i in 0..24 {
        tracker.record(Observation {
            dst_addr: all_routers,
            ..obs(START + 3600.0 * f64::from(i), 1, 0, None, 56)
        });
    }
    assert!(tracker.score(day(), &Config::default()).is_empty());
    let config = Config {
        include_multicast: true,
        ..Config::default()
    };
    let scores = tracker.score(day(), &config);
    assert_eq!(scores.len(), 1);
    assert_eq!(scores[0].dst, Destination::Addr(all_routers));
}

#[test]
fn connections_outside_the_window_are_left_out_and_can_be_forgotten() {
    let mut tracker = Tracker::new();
    for i in 0..48 {
        tracker.record(obs(START - DAY + 3600.0 * f64::from(i), 1, 2, None, 100));
    }
    let scores = tracker.score(day(), &Config::default());
    assert_eq!(scores.len(), 1);
    assert_eq!(scores[0].connections, 24, "{}", scores[0].explanation());
    tracker.forget_before(START);
    assert_eq!(tracker.span(), Some((START, START + 23.0 * 3600.0)));
}

#[test]
fn the_window_of_the_last_day_starts_on_the_hour() {
    let last = START + 2.0 * DAY + 1234.0;
    let window = Window::last_hours(START, last, 24).unwrap();
    assert_eq!(window.end, last);
    assert_eq!(window.start % 3600.0, 0.0);
    assert!(window.start <= last - DAY && last - DAY - window.start < 3600.0);
    // Less than a day of data: from its first connection.
    assert_eq!(
        Window::last_hours(last - 100.0, last, 24).unwrap().start,
        last - 100.0
    );
    assert_eq!(Window::last_hours(last, last, 24), None);
}

#[test]
fn the_explanation_gives_the_figures() {
    let points: Vec<Observation> = (0..100)
        .map(|i| obs(START + 900.0 * f64::from(i), 1, 2, None, 1500))
        .collect();
    let text = score_of(&points).unwrap().explanation();
    for part in [
        "10.0.0.1 -> 10.0.0.2",
        "100 connections",
        "every 900 s",
        "1500 bytes",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
}

/// RITA's own figures for its proxy test data (`test_data/proxy`): 0.979 and 0.586.
#[test]
fn corpus_proxy_beacons_score_as_rita_scores_them() {
    const CORPUS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/beacons"
    );
    if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_CORPUS_TESTS=1 to score the corpus at {CORPUS}");
        return;
    }
    assert!(
        Path::new(CORPUS).is_dir(),
        "PALISADE_CORPUS_TESTS=1 but the corpus is not at {CORPUS}"
    );
    let mut tracker = Tracker::new();
    let files = zeek::read_dir(Path::new(CORPUS), &mut tracker).unwrap();
    assert!(
        files
            .iter()
            .all(|f| f.stats.skipped_total() == 0 && f.stopped.is_none())
    );
    let (first, last) = tracker.span().unwrap();
    let window = Window::last_hours(first, last, 24).unwrap();
    let scores = tracker.score(window, &Config::default());
    let src: IpAddr = "10.136.0.18".parse().unwrap();
    let find = |name: &str| {
        scores
            .iter()
            .find(|s| s.src == src && s.dst == Destination::Name(name.to_owned()))
            .unwrap_or_else(|| panic!("no score for {name}"))
    };
    let evil = find("www.honestimnotevil.com");
    assert_eq!(evil.connections, 357);
    assert!((evil.score - 0.98).abs() <= 0.05, "{}", evil.explanation());
    let google = find("www.google.com");
    assert_eq!(google.connections, 6);
    assert!(
        (google.score - 0.59).abs() <= 0.05,
        "{}",
        google.explanation()
    );
    for score in &scores {
        println!("{}", score.explanation());
    }
    // The multicast router solicitations are left out; the beacon comes first.
    assert_eq!(scores.len(), 2);
    assert_eq!(scores[0].dst, evil.dst);
}

#[test]
fn host_names_lose_ports_case_and_final_dots_and_addresses_are_not_names() {
    use zeek::host_name;
    assert_eq!(host_name("C2.Example:443").as_deref(), Some("c2.example"));
    assert_eq!(
        host_name("www.example.com.").as_deref(),
        Some("www.example.com")
    );
    for address in [
        "192.0.2.1",
        "192.0.2.1:8080",
        "[2001:db8::1]:443",
        "2001:db8::1",
        " ",
    ] {
        assert_eq!(host_name(address), None, "{address}");
    }
}
