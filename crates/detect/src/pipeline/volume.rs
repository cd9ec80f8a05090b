//! Bytes sent per (agent, application) and hour against the application's own history on that
//! agent: a robust baseline (median and MAD), taken over the same hour of the week once there
//! are enough weeks, over all hours before that, and a fixed bound while there is too little
//! history to have a baseline. Checked as bytes arrive, so an upload raises while it runs.

use std::collections::VecDeque;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::intern::Sym;
use super::{Context, Evidence, Finding, Severity, past};

const HOUR_MS: i64 = 3_600_000;
const WEEK_HOURS: usize = 7 * 24;
/// MAD times this estimates the standard deviation of normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Bounds of the volume baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeSettings {
    /// Hours of history kept per (agent, application); four weeks by default.
    pub history_hours: usize,
    /// Hours of history needed before the baseline replaces `cold_bytes`.
    pub min_history_hours: usize,
    /// Weeks with the same hour of the week needed before the baseline is seasonal.
    pub seasonal_weeks: usize,
    /// How many (normal-equivalent) standard deviations above the median raise.
    pub deviations: f64,
    /// Never raise below this many bytes in an hour.
    pub min_bytes: u64,
    /// The bound while there is too little history.
    pub cold_bytes: u64,
}

impl Default for VolumeSettings {
    fn default() -> Self {
        VolumeSettings {
            history_hours: 4 * WEEK_HOURS,
            min_history_hours: 24,
            seasonal_weeks: 3,
            deviations: 10.0,
            min_bytes: 100_000_000,
            cold_bytes: 1_000_000_000,
        }
    }
}

#[derive(Debug)]
pub struct Detector {
    settings: VolumeSettings,
    apps: HashMap<(Sym, Sym), Usage>,
}

/// One application's bytes on one agent.
#[derive(Debug)]
struct Usage {
    /// Totals of the hours before the current one, oldest first (hours without traffic as 0).
    history: VecDeque<f64>,
    /// The current hour (hours since the epoch) and what was sent in it so far.
    hour: i64,
    sent: u64,
    /// The bound for the current hour and how it was found.
    bound: Bound,
    /// The largest destinations this hour.
    destinations: Vec<(String, u64)>,
    evidence: Evidence,
    raised: bool,
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    bytes: f64,
    median: f64,
    mad: f64,
    basis: &'static str,
    hours: usize,
}

/// Sends of at least this size are remembered by destination for the explanation.
const LARGE_SEND: u64 = 1_000_000;
const DESTINATIONS: usize = 8;

impl Detector {
    pub fn new(settings: VolumeSettings) -> Detector {
        Detector {
            settings,
            apps: HashMap::default(),
        }
    }

    pub fn observe(&mut self, context: &Context<'_, '_>, out: &mut Vec<Finding>) {
        let o = context.observation;
        let Some(app) = context.app else { return };
        if o.bytes_out == 0 {
            return;
        }
        let hour = o.time_ms.div_euclid(HOUR_MS);
        let settings = &self.settings;
        let usage = self
            .apps
            .entry((context.agent, app))
            .or_insert_with(|| Usage::new(hour, settings));
        if hour > usage.hour {
            usage.roll_to(hour, settings);
        } else if hour < usage.hour {
            // Late traffic of an hour already closed: too late to judge that hour, and adding
            // it to this one would blame the wrong hour.
            return;
        }
        usage.sent = usage.sent.saturating_add(o.bytes_out);
        if o.bytes_out >= LARGE_SEND {
            usage.note_destination(
                o.domain.map_or_else(
                    || o.dst_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    str::to_owned,
                ),
                o.bytes_out,
            );
            usage.evidence.push(o.evidence());
        }
        if !usage.raised && usage.sent as f64 > usage.bound.bytes {
            usage.raised = true;
            out.push(finding(context, usage, o.time_ms));
        }
    }
}

impl Usage {
    fn new(hour: i64, settings: &VolumeSettings) -> Usage {
        Usage {
            history: VecDeque::new(),
            hour,
            sent: 0,
            bound: bound(&VecDeque::new(), settings),
            destinations: Vec::new(),
            evidence: Evidence::default(),
            raised: false,
        }
    }

    /// Closes the current hour (and any silent ones after it) and starts `hour`.
    fn roll_to(&mut self, hour: i64, settings: &VolumeSettings) {
        let silent = usize::try_from(hour - self.hour - 1).unwrap_or(usize::MAX);
        let keep = settings.history_hours.max(1);
        self.history.push_back(self.sent as f64);
        for _ in 0..silent.min(keep) {
            self.history.push_back(0.0);
        }
        while self.history.len() > keep {
            self.history.pop_front();
        }
        self.hour = hour;
        self.sent = 0;
        self.bound = bound(&self.history, settings);
        self.destinations.clear();
        self.evidence = Evidence::default();
        self.raised = false;
    }

    fn note_destination(&mut self, destination: String, bytes: u64) {
        if let Some(entry) = self
            .destinations
            .iter_mut()
            .find(|(d, _)| *d == destination)
        {
            entry.1 = entry.1.saturating_add(bytes);
        } else if self.destinations.len() < DESTINATIONS {
            self.destinations.push((destination, bytes));
        }
    }
}

/// The bound for the hour after `history` (the totals of the hours before it, newest last).
fn bound(history: &VecDeque<f64>, settings: &VolumeSettings) -> Bound {
    if history.len() < settings.min_history_hours.max(1) {
        return Bound {
            bytes: settings.cold_bytes as f64,
            median: 0.0,
            mad: 0.0,
            basis: "too little history: a fixed bound",
            hours: history.len(),
        };
    }
    // The same hour of the week, one week back, two weeks back, ...: the hour before this one
    // is the newest entry, so k weeks back is `k * WEEK_HOURS` entries from the end.
    let same_hour: Vec<f64> = (1..)
        .map(|weeks| weeks * WEEK_HOURS)
        .take_while(|&back| back <= history.len())
        .filter_map(|back| history.get(history.len() - back))
        .copied()
        .collect();
    let (values, basis): (Vec<f64>, &'static str) =
        if same_hour.len() >= settings.seasonal_weeks.max(1) {
            (same_hour, "the same hour of the week in earlier weeks")
        } else {
            (
                history.iter().copied().collect(),
                "every hour of the history",
            )
        };
    let median = median(&values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = median_of(deviations);
    Bound {
        bytes: (median + settings.deviations * MAD_TO_SIGMA * mad).max(settings.min_bytes as f64),
        median,
        mad,
        basis,
        hours: values.len(),
    }
}

fn median(values: &[f64]) -> f64 {
    median_of(values.to_vec())
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    let mid = n / 2;
    let upper = values.get(mid).copied().unwrap_or(0.0);
    if n % 2 == 1 {
        upper
    } else {
        (values.get(mid - 1).copied().unwrap_or(upper) + upper) / 2.0
    }
}

fn finding(context: &Context<'_, '_>, usage: &Usage, time_ms: i64) -> Finding {
    let agent = context.names.name(context.agent);
    let app = context.app_name();
    let sent = usage.sent as f64;
    let bound = usage.bound;
    let score = past(sent, bound.bytes);
    let mut destinations = usage.destinations.clone();
    destinations.sort_by_key(|d| std::cmp::Reverse(d.1));
    let app_label = app.as_deref().unwrap_or("an unknown application");
    Finding {
        kind: "exfiltration".to_owned(),
        severity: Severity::of_score(score).max(Severity::Medium),
        score,
        title: format!(
            "{app_label} on {agent} sent {:.0} MB this hour, over its bound of {:.0} MB",
            sent / 1e6,
            bound.bytes / 1e6
        ),
        agent: agent.to_owned(),
        app: app.clone(),
        key: format!("exfiltration:{agent}:{}", app.unwrap_or_default()),
        explanation: json!({
            "why": format!("bytes sent this hour are {:.1} times the bound", sent / bound.bytes.max(1.0)),
            "bytes_out_this_hour": usage.sent,
            "bound_bytes": bound.bytes.round(),
            "baseline_median_bytes": bound.median.round(),
            "baseline_mad_bytes": bound.mad.round(),
            "baseline": bound.basis,
            "baseline_hours": bound.hours,
            "largest_destinations": destinations
                .iter()
                .map(|(d, b)| format!("{d}: {:.0} MB", *b as f64 / 1e6))
                .collect::<Vec<_>>()
                .join(", "),
        }),
        evidence: usage.evidence.to_vec(),
        time_ms,
    }
}
