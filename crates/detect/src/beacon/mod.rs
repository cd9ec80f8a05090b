//! Beacon scoring: how much the connections from one source to one destination look like a
//! program calling home on a timer, after RITA (activecm/rita v5, `analysis/beacons.go`).
//!
//! Each (source, destination) pair gets four sub-scores between 0 and 1, averaged with equal
//! weights (RITA's default):
//!
//! - **timestamp**: the intervals between connections (whole seconds, zero intervals dropped):
//!   `(bowley_score + mad_score) / 2`, where `bowley_score = 1 - |(Q1 + Q3 - 2 Q2) / (Q3 - Q1)|`
//!   (0 skew when `Q3 - Q1 < 10` or the median equals a quartile) and
//!   `mad_score = (median - MAD) / median`. Jitter spreads the intervals symmetrically, which
//!   keeps the skew near 0 and costs the MAD score only the jitter's share of the period.
//! - **data size**: the same on the bytes the source sent per connection (IP bytes in Zeek).
//! - **histogram**: connections counted in 24 equal bins over the window; the larger of
//!   `1 - CV` (coefficient of variation of the counts) and the bimodal fit (share of non-empty
//!   bins whose counts fall in the two most common count classes, one outlier bin forgiven,
//!   only with at least 11 non-empty bins).
//! - **duration**: with at least 6 non-empty bins, the larger of the coverage (first to last
//!   connection over the window) and the consistency (longest run of non-empty bins, wrapping
//!   around, over 12).
//!
//! The destination is a name where one is known (HTTP `Host`, TLS server name: through a proxy
//! these name the real destination while the connection goes to the proxy) and an address
//! otherwise. As in RITA, connections that count towards a scored name pair are not counted
//! again under their address.
//!
//! Every [`BeaconScore`] carries its sub-scores and the figures behind them, and
//! [`BeaconScore::explanation`] says them in a sentence.

mod stats;
pub mod zeek;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use stats::{bowley, ceil3, coefficient_of_variation, mad, round3};

/// One connection as the scorer sees it. From Zeek logs ([`zeek`]) or any other source of
/// connection records (the agent, the sensor, the simulator).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// When it started, seconds since the Unix epoch.
    pub ts: f64,
    /// The source (client) address.
    pub src: IpAddr,
    /// The address it went to (through a proxy: the proxy's).
    pub dst_addr: IpAddr,
    /// The name it was for, when known (HTTP host, TLS server name, DNS name).
    pub dst_name: Option<String>,
    /// Bytes the source sent.
    pub bytes: u64,
    /// How long it lasted, seconds.
    pub duration: f64,
}

/// A pair's destination: a name, or an address when no name is known.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// A host name (HTTP host, TLS server name).
    Name(String),
    /// An address.
    Addr(IpAddr),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Name(name) => f.write_str(name),
            Destination::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The period scored: bins of the histogram and the denominator of the coverage. Connections
/// outside it are left out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window {
    /// Start, seconds since the Unix epoch.
    pub start: f64,
    /// End, seconds since the Unix epoch (after the start).
    pub end: f64,
}

impl Window {
    /// A window from `start` to `end`; `None` unless both are finite and `end > start`.
    pub fn new(start: f64, end: f64) -> Option<Window> {
        (start.is_finite() && end.is_finite() && end > start).then_some(Window { start, end })
    }

    /// RITA's window for data seen from `first` to `last`: the `hours` before the last
    /// connection, from the start of that hour (RITA keeps connections in hourly buckets), and
    /// never before the first connection. `None` when that leaves no time.
    pub fn last_hours(first: f64, last: f64, hours: u32) -> Option<Window> {
        let back = last - f64::from(hours) * 3600.0;
        let start = ((back / 3600.0).floor() * 3600.0).max(first);
        Window::new(start, last)
    }
}

/// The scorer's settings; [`Config::default`] is RITA's defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Pairs with fewer distinct connection seconds in the window are not scored. At least 4
    /// (three intervals are the fewest the statistics take); lower values count as 4.
    pub min_connections: usize,
    /// Bins of the connection histogram over the window.
    pub bins: usize,
    /// Width of the histogram's count classes for the bimodal fit, as a share of the largest
    /// bin's count.
    pub mode_sensitivity: f64,
    /// Bins the bimodal fit forgives as outliers.
    pub bimodal_outliers: usize,
    /// Non-empty bins needed before the bimodal fit counts.
    pub bimodal_min_bins: usize,
    /// Non-empty bins needed before the duration score counts.
    pub duration_min_bins: usize,
    /// A run of this many consecutive non-empty bins gives full consistency.
    pub duration_ideal_run: usize,
    /// Whether to score pairs whose destination is a multicast or broadcast address. Off by
    /// default: those are protocol timers (IPv6 router solicitations, mDNS, SSDP), periodic by
    /// design, and nothing answers them as one server would.
    pub include_multicast: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_connections: 4,
            bins: 24,
            mode_sensitivity: 0.05,
            bimodal_outliers: 1,
            bimodal_min_bins: 11,
            duration_min_bins: 6,
            duration_ideal_run: 12,
            include_multicast: false,
        }
    }
}

/// A pair's beacon score with everything behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BeaconScore {
    /// The source.
    pub src: IpAddr,
    /// The destination.
    pub dst: Destination,
    /// `name` or `addr`: what the destination is.
    pub dst_kind: &'static str,
    /// The beacon score: the mean of the four sub-scores, 0 to 1, three decimals.
    pub score: f64,
    /// Connections in the window.
    pub connections: usize,
    /// Distinct seconds they started in.
    pub unique_seconds: usize,
    /// For a name: the addresses its connections went to (at most 10; a proxy's address there
    /// means the name came from the proxied request).
    pub addresses: Vec<IpAddr>,
    /// First connection, seconds since the Unix epoch.
    pub first: f64,
    /// Last connection, seconds since the Unix epoch.
    pub last: f64,
    /// Bytes the source sent, all connections.
    pub total_bytes: u64,
    /// Seconds the connections lasted, all together.
    pub total_duration: f64,
    /// The intervals between connections (seconds).
    pub timestamp: Dispersion,
    /// The bytes sent per connection.
    pub data_size: Dispersion,
    /// The connection histogram over the window.
    pub histogram: Histogram,
    /// How much of the window the connections cover.
    pub duration: Coverage,
}

/// Skewness and dispersion of a set of values (intervals, sizes), with their scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dispersion {
    /// `(skew_score + mad_score) / 2`, three decimals.
    pub score: f64,
    /// Lower quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Upper quartile.
    pub q3: f64,
    /// Bowley skewness, -1 to 1.
    pub skew: f64,
    /// `1 - |skew|`.
    pub skew_score: f64,
    /// Median absolute deviation about the median.
    pub mad: f64,
    /// `(median - mad) / median`, 0 at worst.
    pub mad_score: f64,
}

/// The connection histogram and its score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// The larger of `cv_score` and `bimodal_fit`, three decimals.
    pub score: f64,
    /// Seconds per bin.
    pub bin_seconds: f64,
    /// Connections per bin.
    pub counts: Vec<u32>,
    /// Bins with at least one connection.
    pub bins_seen: usize,
    /// Coefficient of variation of the counts.
    pub cv: f64,
    /// `1 - cv`, 0 at worst.
    pub cv_score: f64,
    /// Share of non-empty bins in the two commonest count classes (0 below the minimum of
    /// non-empty bins).
    pub bimodal_fit: f64,
}

/// How much of the window the connections span, and how steadily.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// The larger of `coverage` and `consistency` (0 below the minimum of non-empty bins).
    pub score: f64,
    /// First to last connection over the window, at most 1.
    pub coverage: f64,
    /// Longest run of consecutive non-empty bins (wrapping around) over the ideal run, at most 1.
    pub consistency: f64,
    /// That longest run, in bins.
    pub longest_run: usize,
}

impl BeaconScore {
    /// The score in one sentence an alert can show: what is regular and how regular.
    pub fn explanation(&self) -> String {
        format!(
            "{src} -> {dst}: beacon score {score:.3} over {n} connections: \
             every {interval:.0} s (median; MAD {imad:.0} s, skew {iskew:.2}; score {ts:.3}), \
             {size:.0} bytes sent each (median; MAD {smad:.0}, skew {sskew:.2}; score {ds:.3}), \
             connections in {seen} of {bins} time bins (CV {cv:.2}, bimodal fit {fit:.2}; \
             score {hist:.3}), spanning {cover:.0} % of the window with a longest run of \
             {run} bins (score {dur:.3})",
            src = self.src,
            dst = self.dst,
            score = self.score,
            n = self.connections,
            interval = self.timestamp.median,
            imad = self.timestamp.mad,
            iskew = self.timestamp.skew,
            ts = self.timestamp.score,
            size = self.data_size.median,
            smad = self.data_size.mad,
            sskew = self.data_size.skew,
            ds = self.data_size.score,
            seen = self.histogram.bins_seen,
            bins = self.histogram.counts.len(),
            cv = self.histogram.cv,
            fit = self.histogram.bimodal_fit,
            hist = self.histogram.score,
            cover = self.duration.coverage * 100.0,
            run = self.duration.longest_run,
            dur = self.duration.score,
        )
    }
}

/// Connection observations by pair, kept until scored; feed it from a stream and score any
/// window of it.
#[derive(Debug, Default)]
pub struct Tracker {
    /// By source and name (`None`: no name known).
    groups: HashMap<(IpAddr, Option<String>), Vec<Point>>,
    first: Option<f64>,
    last: Option<f64>,
}

/// One connection of a pair, as [`score_pair`] scores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Start, seconds since the Unix epoch.
    pub ts: f64,
    /// Destination address.
    pub dst_addr: IpAddr,
    /// Bytes the source sent.
    pub bytes: u64,
    /// Seconds it lasted.
    pub duration: f64,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Adds one connection. Observations with a time that is not finite are ignored.
    pub fn record(&mut self, observation: Observation) {
        let Observation {
            ts,
            src,
            dst_addr,
            dst_name,
            bytes,
            duration,
        } = observation;
        if !ts.is_finite() {
            return;
        }
        self.first = Some(self.first.map_or(ts, |first| first.min(ts)));
        self.last = Some(self.last.map_or(ts, |last| last.max(ts)));
        let duration = if duration.is_finite() && duration > 0.0 {
            duration
        } else {
            0.0
        };
        self.groups.entry((src, dst_name)).or_default().push(Point {
            ts,
            dst_addr,
            bytes,
            duration,
        });
    }

    /// Forgets the connections before `ts` (to bound memory when scoring a sliding window).
    pub fn forget_before(&mut self, ts: f64) {
        self.groups.retain(|_, points| {
            points.retain(|point| point.ts >= ts);
            !points.is_empty()
        });
        self.first = self
            .groups
            .values()
            .flatten()
            .map(|p| p.ts)
            .reduce(f64::min);
        self.last = self
            .groups
            .values()
            .flatten()
            .map(|p| p.ts)
            .reduce(f64::max);
    }

    /// The first and last connection times recorded, if any.
    pub fn span(&self) -> Option<(f64, f64)> {
        self.first.zip(self.last)
    }

    /// Scores every pair with enough connections in `window`, highest score first (then by
    /// source and destination). Name pairs first take their connections; the rest (no name, or
    /// a name with too few connections) are scored by destination address.
    pub fn score(&self, window: Window, config: &Config) -> Vec<BeaconScore> {
        let min = config.min_connections.max(4);
        let in_window = |points: &[Point]| -> Vec<Point> {
            points
                .iter()
                .filter(|p| p.ts >= window.start && p.ts <= window.end)
                .copied()
                .collect()
        };
        let mut scores = Vec::new();
        let mut by_addr: HashMap<(IpAddr, IpAddr), Vec<Point>> = HashMap::new();
        for ((src, name), points) in &self.groups {
            let points = in_window(points);
            if let Some(name) = name
                && unique_seconds(&points) >= min
                && let Some(score) = score_pair(
                    *src,
                    Destination::Name(name.clone()),
                    &points,
                    window,
                    config,
                )
            {
                scores.push(score);
                continue;
            }
            for point in points {
                by_addr
                    .entry((*src, point.dst_addr))
                    .or_default()
                    .push(point);
            }
        }
        for ((src, dst), points) in by_addr {
            if (config.include_multicast || !is_multicast_or_broadcast(dst))
                && unique_seconds(&points) >= min
                && let Some(score) =
                    score_pair(src, Destination::Addr(dst), &points, window, config)
            {
                scores.push(score);
            }
        }
        scores.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.src.cmp(&b.src))
                .then_with(|| a.dst.cmp(&b.dst))
        });
        scores
    }
}

/// Scores one pair's connections over `window` (all of them assumed inside it). `None` when
/// there are too few to score: fewer than three non-zero intervals or three sizes, or first and
/// last in the same second.
pub fn score_pair(
    src: IpAddr,
    dst: Destination,
    points: &[Point],
    window: Window,
    config: &Config,
) -> Option<BeaconScore> {
    let mut seconds: Vec<f64> = points.iter().map(|p| p.ts.floor()).collect();
    seconds.sort_by(f64::total_cmp);
    let mut intervals: Vec<f64> = seconds
        .windows(2)
        .filter_map(|pair| match pair {
            [a, b] if b > a => Some(b - a),
            _ => None,
        })
        .collect();
    if intervals.len() < 3 {
        return None;
    }
    intervals.sort_by(f64::total_cmp);
    let timestamp = dispersion(&intervals, 1.0)?;

    let mut sizes: Vec<f64> = points.iter().map(|p| p.bytes as f64).collect();
    sizes.sort_by(f64::total_cmp);
    if sizes.len() < 3 {
        return None;
    }
    let data_size = dispersion(&sizes, 0.0)?;

    let (first, last) = (*seconds.first()?, *seconds.last()?);
    let histogram = histogram(&seconds, window, config)?;
    let duration = coverage(first, last, &histogram, window, config);

    let score =
        round3((timestamp.score + data_size.score + histogram.score + duration.score) / 4.0);
    let dst_kind = match dst {
        Destination::Name(_) => "name",
        Destination::Addr(_) => "addr",
    };
    let addresses: BTreeSet<IpAddr> = points.iter().map(|p| p.dst_addr).collect();
    Some(BeaconScore {
        src,
        dst,
        dst_kind,
        score,
        connections: points.len(),
        unique_seconds: unique_count(&seconds),
        addresses: if dst_kind == "name" {
            addresses.into_iter().take(10).collect()
        } else {
            Vec::new()
        },
        first: points.iter().map(|p| p.ts).reduce(f64::min)?,
        last: points.iter().map(|p| p.ts).reduce(f64::max)?,
        total_bytes: points.iter().map(|p| p.bytes).fold(0, u64::saturating_add),
        total_duration: points.iter().map(|p| p.duration).sum(),
        timestamp,
        data_size,
        histogram,
        duration,
    })
}

fn is_multicast_or_broadcast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}

fn unique_seconds(points: &[Point]) -> usize {
    let mut seconds: Vec<f64> = points.iter().map(|p| p.ts.floor()).collect();
    seconds.sort_by(f64::total_cmp);
    unique_count(&seconds)
}

fn unique_count(sorted: &[f64]) -> usize {
    let mut count = 0;
    let mut previous = None;
    for &value in sorted {
        if previous != Some(value) {
            count += 1;
            previous = Some(value);
        }
    }
    count
}

fn dispersion(sorted: &[f64], default_mad_score: f64) -> Option<Dispersion> {
    let skew = bowley(sorted)?;
    let (mad, mad_score) = mad(sorted, default_mad_score)?;
    Some(Dispersion {
        score: round3((skew.score + mad_score) / 2.0),
        q1: skew.q1,
        median: skew.median,
        q3: skew.q3,
        skew: skew.skew,
        skew_score: skew.score,
        mad,
        mad_score,
    })
}

fn histogram(seconds: &[f64], window: Window, config: &Config) -> Option<Histogram> {
    let bins = config.bins.max(1);
    let bin_seconds = (window.end - window.start) / bins as f64;
    // Inner bin edges, as RITA computes them; a time before the first edge is in bin 0, after
    // the last in the last bin.
    let edges: Vec<f64> = (1..bins)
        .map(|i| window.start + i as f64 * bin_seconds)
        .collect();
    let mut counts = vec![0u32; bins];
    for &ts in seconds {
        let bin = edges.partition_point(|&edge| edge <= ts);
        if let Some(count) = counts.get_mut(bin) {
            *count = count.saturating_add(1);
        }
    }
    let cv = coefficient_of_variation(&counts)?;
    let cv_score = if cv > 1.0 { 0.0 } else { round3(1.0 - cv) };
    let bins_seen = counts.iter().filter(|&&c| c > 0).count();

    let largest = counts.iter().copied().max().unwrap_or(0);
    let class_width = (f64::from(largest) * config.mode_sensitivity)
        .ceil()
        .max(1.0);
    let mut classes: HashMap<u64, usize> = HashMap::new();
    for &count in counts.iter().filter(|&&c| c > 0) {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "a count over a width of at least 1: finite, between 0 and u32::MAX"
        )]
        let class = (f64::from(count) / class_width).floor() as u64;
        *classes.entry(class).or_default() += 1;
    }
    let mut sizes: Vec<usize> = classes.into_values().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let bimodal_fit = if bins_seen >= config.bimodal_min_bins {
        let top_two = sizes.iter().take(2).sum::<usize>() as f64;
        let forgiven = bins_seen.saturating_sub(config.bimodal_outliers).max(1) as f64;
        round3((top_two / forgiven).min(1.0))
    } else {
        0.0
    };
    Some(Histogram {
        score: cv_score.max(bimodal_fit),
        bin_seconds,
        counts,
        bins_seen,
        cv,
        cv_score,
        bimodal_fit,
    })
}

fn coverage(
    first: f64,
    last: f64,
    histogram: &Histogram,
    window: Window,
    config: &Config,
) -> Coverage {
    let counts = &histogram.counts;
    let mut longest_run = 0;
    let mut run = 0;
    for i in 0..counts.len() * 2 {
        if counts.get(i % counts.len()).is_some_and(|&c| c > 0) {
            run += 1;
            longest_run = longest_run.max(run);
        } else {
            run = 0;
        }
    }
    let longest_run = longest_run.min(counts.len());
    if histogram.bins_seen < config.duration_min_bins || last <= first {
        return Coverage {
            score: 0.0,
            coverage: 0.0,
            consistency: 0.0,
            longest_run,
        };
    }
    let coverage = ceil3((last - first) / (window.end - window.start)).min(1.0);
    let consistency = ceil3(longest_run as f64 / config.duration_ideal_run.max(1) as f64).min(1.0);
    Coverage {
        score: coverage.max(consistency),
        coverage,
        consistency,
        longest_run,
    }
}

#[cfg(test)]
mod tests;
