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

/// The corpus's Zeek logs, with `PALISADE_CORPUS_TESTS=1` (the test says it skipped without).
fn corpus() -> Option<&'static Path> {
    const CORPUS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/beacons"
    );
    if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
        println!("skipped: set PALISADE_CORPUS_TESTS=1 to score the corpus at {CORPUS}");
        return None;
    }
    let corpus = Path::new(CORPUS);
    assert!(
        corpus.is_dir(),
        "PALISADE_CORPUS_TESTS=1 but the corpus is not at {CORPUS}"
    );
    Some(corpus)
}

/// RITA's own figures for its proxy test data (`test_data/proxy`): 0.979 and 0.586.
#[test]
fn corpus_proxy_beacons_score_as_rita_scores_them() {
    let Some(corpus) = corpus() else { return };
    let mut tracker = Tracker::new();
    let files = zeek::read_dir(corpus, &mut tracker).unwrap();
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

/// A beacon for the evaluation: period log-uniform from 30 s to 1 h, each interval off by a
/// uniform jitter of up to 0–30 % (drawn per beacon), sizes ±5 %, up to 10 % of beats missed.
fn simulated_beacon(rng: &mut SmallRng) -> (f64, f64, Vec<Observation>) {
    let period = (30f64.ln() + rng.random::<f64>() * (3600f64.ln() - 30f64.ln())).exp();
    let jitter = rng.random_range(0.0..=0.3);
    let missed = rng.random_range(0.0..=0.1);
    let size = rng.random_range(100..20_000u64);
    let mut out = Vec::new();
    let mut ts = START + rng.random_range(0.0..period);
    while ts < START + DAY {
        if !rng.random_bool(missed) {
            let bytes = rng.random_range(size * 95 / 100..=size * 105 / 100);
            out.push(Observation {
                bytes,
                ..obs(ts, 1, 2, None, 0)
            });
        }
        ts += period * (1.0 + rng.random_range(-jitter..=jitter));
    }
    (period, jitter, out)
}

/// A lognormal draw with the given median and sigma.
fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    // Box–Muller.
    let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
    median * (sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()).exp()
}

/// Benign traffic for the evaluation. `kind` 0: a person browsing one site over a working day:
/// visits at Poisson times (mean gap 20 min to 3 h), each a burst of 1–30 connections with
/// lognormal gaps (median 4 s), lognormal sizes (median 1 kB). 1: Poisson connections all day
/// (mean gap 1 min to 1 h), sizes 200 B–20 kB. 2: a chatty application: lognormal gaps all day
/// (median 30 s to 10 min, sigma 1), lognormal sizes.
#[allow(clippy::cast_possible_truncation)] // sizes clamped to 60 B..10 MB
fn simulated_benign(rng: &mut SmallRng, kind: u32) -> Vec<Observation> {
    let mut out = Vec::new();
    match kind {
        0 => {
            let mean_visit_gap = rng.random_range(1200.0..10_800.0);
            let (day_start, day_end) = (START + 8.0 * 3600.0, START + 18.0 * 3600.0);
            let mut ts = day_start;
            loop {
                ts += -mean_visit_gap * (1.0 - rng.random::<f64>()).ln();
                if ts >= day_end {
                    break;
                }
                let mut t = ts;
                for _ in 0..rng.random_range(1..=30) {
                    let bytes = lognormal(rng, 1000.0, 1.2).clamp(60.0, 1e7) as u64;
                    out.push(obs(t, 1, 3, None, bytes));
                    t += lognormal(rng, 4.0, 1.5);
                }
            }
        }
        1 => {
            let mean = (60f64.ln() + rng.random::<f64>() * (3600f64.ln() - 60f64.ln())).exp();
            out = poisson(rng, mean);
        }
        _ => {
            let median = rng.random_range(30.0..600.0);
            let mut ts = START + rng.random_range(0.0..median);
            while ts < START + DAY {
                let bytes = lognormal(rng, 2000.0, 1.0).clamp(60.0, 1e7) as u64;
                out.push(obs(ts, 1, 3, None, bytes));
                ts += lognormal(rng, median, 1.0);
            }
        }
    }
    out
}

/// The target: simulated beacons with up to 30 % jitter caught with recall ≥ 0.95 at a
/// threshold that flags at most 0.1 % of benign pairs.
#[test]
fn simulated_beacons_are_caught_at_a_threshold_that_spares_benign_pairs() {
    let mut rng = SmallRng::seed_from_u64(20_261_208);
    let beacons: Vec<(f64, f64, BeaconScore)> = (0..1000)
        .filter_map(|_| {
            let (period, jitter, points) = simulated_beacon(&mut rng);
            score_of(&points).map(|s| (period, jitter, s))
        })
        .collect();
    assert_eq!(beacons.len(), 1000);
    let mut benign: Vec<(u32, BeaconScore)> = Vec::new();
    for i in 0..3000 {
        let kind = i % 3;
        if let Some(score) = score_of(&simulated_benign(&mut rng, kind)) {
            benign.push((kind, score));
        }
    }
    assert!(benign.len() > 2500, "{}", benign.len());
    // The threshold: the lowest score above all but 0.1 % of the benign pairs.
    let mut benign_scores: Vec<f64> = benign.iter().map(|(_, s)| s.score).collect();
    benign_scores.sort_by(|a, b| b.total_cmp(a));
    let allowed = benign_scores.len() / 1000;
    let threshold = benign_scores[allowed] + 0.001;
    let caught = beacons
        .iter()
        .filter(|(_, _, s)| s.score >= threshold)
        .count();
    let recall = caught as f64 / beacons.len() as f64;
    let flagged = benign_scores.iter().filter(|&&s| s >= threshold).count();
    println!(
        "beacons: threshold {threshold:.3} flags {flagged} of {} benign pairs; recall {recall:.3} ({caught}/{})",
        benign_scores.len(),
        beacons.len()
    );
    for kind in 0..3 {
        let mut s: Vec<f64> = benign
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, s)| s.score)
            .collect();
        s.sort_by(f64::total_cmp);
        println!(
            "benign kind {kind}: {} pairs, median {:.3}, max {:.3}",
            s.len(),
            s[s.len() / 2],
            s[s.len() - 1]
        );
    }
    let mut lowest: Vec<f64> = beacons.iter().map(|(_, _, s)| s.score).collect();
    lowest.sort_by(f64::total_cmp);
    println!("lowest beacon scores: {:?}", &lowest[..5]);
    for (period, jitter, s) in beacons.iter().filter(|(_, _, s)| s.score <= lowest[4]) {
        println!(
            "lowest: period {period:.0} s jitter {jitter:.2}: {}",
            s.explanation()
        );
    }
    let mut misses: Vec<&(f64, f64, BeaconScore)> = beacons
        .iter()
        .filter(|(_, _, s)| s.score < threshold)
        .collect();
    misses.sort_by(|a, b| a.2.score.total_cmp(&b.2.score));
    for (period, jitter, s) in misses.iter().take(10) {
        println!(
            "missed: period {period:.0} s jitter {jitter:.2}: {}",
            s.explanation()
        );
    }
    for (kind, s) in benign
        .iter()
        .filter(|(_, s)| s.score >= threshold - 0.05)
        .take(5)
    {
        println!("benign near: kind {kind}: {}", s.explanation());
    }
    assert!(recall >= 0.95, "recall {recall}");
}

/// The corpus's pairs other than the known beacon, against the threshold the simulation gives
/// (0.838): RITA's proxy data has few pairs with enough connections, so this is a small check.
#[test]
fn corpus_pairs_other_than_the_beacon_stay_under_the_simulated_threshold() {
    let Some(corpus) = corpus() else { return };
    let mut tracker = Tracker::new();
    zeek::read_dir(corpus, &mut tracker).unwrap();
    let (first, last) = tracker.span().unwrap();
    let window = Window::last_hours(first, last, 24).unwrap();
    let evil = Destination::Name("www.honestimnotevil.com".to_owned());
    for include_multicast in [false, true] {
        let config = Config {
            include_multicast,
            ..Config::default()
        };
        let scores = tracker.score(window, &config);
        let benign: Vec<&BeaconScore> = scores.iter().filter(|s| s.dst != evil).collect();
        let flagged = benign.iter().filter(|s| s.score >= 0.838).count();
        println!(
            "corpus, multicast {include_multicast}: {} benign pairs, {flagged} at or above 0.838",
            benign.len()
        );
        for s in &benign {
            println!("  {}", s.explanation());
        }
        if !include_multicast {
            assert_eq!(flagged, 0);
        }
    }
}
