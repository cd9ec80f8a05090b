//! Beaconing in the stream: every (agent, destination) pair's connections of the last day, the
//! destination a name where one is known and an address otherwise, scored with
//! [`crate::beacon::score_pair`] at each tick for the pairs that connected since the last one.
//! The window starts when the pipeline first saw traffic (at most a day back), so the
//! histogram and coverage figures judge the time the pair could have been seen.

use std::net::{IpAddr, Ipv4Addr};

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::intern::{Interner, Sym};
use super::{Context, Evidence, Finding, Severity};
use crate::beacon::{self, Destination, Point, Window};

const DAY_MS: i64 = 86_400_000;
/// Connections kept per pair (the newest).
const MAX_POINTS: usize = 20_000;
/// A pair is scored at most this often (its score moves slowly; scoring sorts its
/// connections)...
const RESCORE_MS: i64 = 5 * 60_000;
/// ...and a pair that scored far below the threshold (by more than [`NEAR`]) only this often.
const RESCORE_FAR_MS: i64 = 60 * 60_000;
const NEAR: f64 = 0.15;
/// Pairs that stopped connecting are looked for this often.
const EXPIRE_MS: i64 = 60 * 60_000;

/// When a pair counts as beaconing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeaconSettings {
    /// Score (0 to 1) from which a pair raises.
    pub threshold: f64,
    /// Connections in distinct seconds a pair needs before it is scored.
    pub min_connections: usize,
    /// A pair is scored once its connections span this long: bursts (a scan, an upload) are
    /// regular for minutes, a timer stays regular for hours.
    pub min_span_seconds: u32,
    /// A pair that raised is not raised again for this long (the alert it raised stays open).
    pub quiet_seconds: u32,
}

impl Default for BeaconSettings {
    fn default() -> Self {
        BeaconSettings {
            threshold: 0.9,
            min_connections: 20,
            min_span_seconds: 3_600,
            quiet_seconds: 3_600,
        }
    }
}

#[derive(Debug)]
pub struct Detector {
    settings: BeaconSettings,
    destinations: Interner,
    pairs: HashMap<(Sym, Sym), Pair>,
    first_ms: Option<i64>,
    expired_ms: i64,
}

#[derive(Debug, Default)]
struct Pair {
    points: Vec<Point>,
    evidence: Evidence,
    app: Option<Sym>,
    changed: bool,
    /// When the pair may be scored next.
    next_score_ms: i64,
    raised_ms: Option<i64>,
}

impl Detector {
    pub fn new(settings: BeaconSettings) -> Detector {
        Detector {
            settings,
            destinations: Interner::default(),
            pairs: HashMap::default(),
            first_ms: None,
            expired_ms: i64::MIN,
        }
    }

    pub fn observe(&mut self, context: &Context<'_, '_>) {
        let o = context.observation;
        if o.inbound || o.is_dns_query() {
            return;
        }
        let address;
        let destination = match (o.domain, o.dst_ip) {
            (Some(domain), _) => domain,
            (None, Some(ip)) => {
                address = ip.to_string();
                &address
            }
            (None, None) => return,
        };
        self.first_ms = Some(self.first_ms.map_or(o.time_ms, |f| f.min(o.time_ms)));
        let destination = self.destinations.get(destination);
        let pair = self.pairs.entry((context.agent, destination)).or_default();
        if pair.points.len() == MAX_POINTS {
            pair.points.remove(0);
        }
        pair.points.push(Point {
            ts: o.time_ms as f64 / 1000.0,
            dst_addr: o.dst_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            bytes: o.bytes_out,
            duration: 0.0,
        });
        pair.evidence.push(o.evidence());
        pair.app = context.app.or(pair.app);
        pair.changed = true;
    }

    pub fn tick(&mut self, now_ms: i64, names: &Interner, out: &mut Vec<Finding>) {
        let since = now_ms - DAY_MS;
        let start = self.first_ms.unwrap_or(now_ms).max(since);
        let Some(window) = Window::new(start as f64 / 1000.0, now_ms as f64 / 1000.0) else {
            return;
        };
        let config = beacon::Config {
            min_connections: self.settings.min_connections,
            ..beacon::Config::default()
        };
        let quiet_ms = i64::from(self.settings.quiet_seconds) * 1000;
        let since_s = since as f64 / 1000.0;
        if now_ms.saturating_sub(self.expired_ms) >= EXPIRE_MS {
            self.expired_ms = now_ms;
            self.pairs
                .retain(|_, pair| pair.points.last().is_some_and(|p| p.ts >= since_s));
        }
        for (&(agent, destination), pair) in &mut self.pairs {
            if !pair.changed || now_ms < pair.next_score_ms {
                continue;
            }
            // Connections come in time order: the old ones are at the front.
            let old = pair.points.partition_point(|p| p.ts < since_s);
            pair.points.drain(..old);
            let span_s = match (pair.points.first(), pair.points.last()) {
                (Some(first), Some(last)) => last.ts - first.ts,
                _ => 0.0,
            };
            if pair.points.len() < self.settings.min_connections
                || span_s < f64::from(self.settings.min_span_seconds)
            {
                continue;
            }
            pair.changed = false;
            pair.next_score_ms = now_ms.saturating_add(RESCORE_MS);
            if pair.raised_ms.is_some_and(|at| now_ms - at < quiet_ms) {
                continue;
            }
            let name = self.destinations.name(destination);
            let dst = match name.parse::<IpAddr>() {
                Ok(ip) => Destination::Addr(ip),
                Err(_) => Destination::Name(name.to_owned()),
            };
            let src = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let Some(score) = beacon::score_pair(src, dst, &pair.points, window, &config) else {
                continue;
            };
            if score.score < self.settings.threshold - NEAR {
                pair.next_score_ms = now_ms.saturating_add(RESCORE_FAR_MS);
            }
            if score.score >= self.settings.threshold {
                pair.raised_ms = Some(now_ms);
                out.push(finding(
                    names,
                    agent,
                    name,
                    pair,
                    &score,
                    self.settings.threshold,
                    now_ms,
                ));
            }
        }
    }
}

fn finding(
    names: &Interner,
    agent: Sym,
    destination: &str,
    pair: &Pair,
    score: &beacon::BeaconScore,
    threshold: f64,
    now_ms: i64,
) -> Finding {
    let agent = names.name(agent);
    let app = pair
        .app
        .map(|a| names.name(a).to_owned())
        .filter(|a| !a.is_empty());
    let app_label = app.as_deref().unwrap_or("an application");
    Finding {
        kind: "beacon".to_owned(),
        severity: Severity::of_score(score.score),
        score: score.score,
        title: format!(
            "{app_label} on {agent} calls {destination} every {:.0} s ({} connections)",
            score.timestamp.median, score.connections
        ),
        agent: agent.to_owned(),
        app,
        key: format!("beacon:{agent}:{destination}"),
        explanation: json!({
            "why": "connections at a regular interval with regular sizes, spread over the whole window",
            "destination": destination,
            "score": score.score,
            "connections": score.connections,
            "interval_median_seconds": score.timestamp.median,
            "interval_mad_seconds": score.timestamp.mad,
            "interval_skew": score.timestamp.skew,
            "interval_score": score.timestamp.score,
            "bytes_out_median": score.data_size.median,
            "bytes_out_mad": score.data_size.mad,
            "size_score": score.data_size.score,
            "histogram_bins_seen": score.histogram.bins_seen,
            "histogram_cv": score.histogram.cv,
            "histogram_score": score.histogram.score,
            "coverage": score.duration.coverage,
            "coverage_score": score.duration.score,
            "window_hours": (score.last - score.first).max(0.0) / 3600.0,
            "threshold": threshold,
        }),
        evidence: pair.evidence.to_vec(),
        time_ms: now_ms,
    }
}
