//! The streaming detection pipeline: connection observations in, explained findings out.
//!
//! The server feeds it every stored event (at least once: a repeated event id is recognised and
//! skipped), `palisade detect eval` feeds it the simulator's labelled traffic and
//! `palisade detect import-zeek` feeds it Zeek logs; all three run this same code. Each
//! detector keeps its own features in time windows, keyed by (agent, application), by (agent,
//! destination) or by registrable domain, and says why when it raises: a [`Finding`] carries
//! the features that drove it, their values and the baseline they were compared with, and the
//! ids of the events behind it.
//!
//! A finding has a key naming the behaviour (`port_scan:AGENT:HOST`, ...): a detector raises a
//! key at most once per window, and storage merges findings of the same key into one active
//! alert, so an ongoing behaviour is one alert with a growing number of occurrences.
//!
//! Detectors:
//! - [`scan`]: port scans (many ports of one host) and host sweeps (one port of many hosts).
//! - [`volume`]: bytes sent per application and hour against its own median and MAD, by hour
//!   of the week once there are weeks of history.
//! - [`novelty`]: destinations an application never used before, weighted by how rare they are
//!   in the fleet and how new.
//! - [`beacons`]: RITA-style beacon scores of (agent, destination) pairs whose connections
//!   span an hour or more, every tick.
//! - [`tunnels`]: data carried in DNS query names, per (agent, registrable domain).
//! - [`generated`]: an application meeting several names the DGA model scores as generated.
//! - [`behaviour`]: an application's five-minute window unlike its history, by the behaviour
//!   model the server trains ([`Pipeline::set_behaviour_model`]).
//!
//! [`zeek`] replays a directory of Zeek logs through the pipeline.
//!
//! Memory is bounded: idle keys are forgotten at [`Pipeline::tick`], and sets that could grow
//! without end are capped.

mod beacons;
mod behaviour;
mod generated;
mod intern;
mod novelty;
mod scan;
mod seen;
mod tunnels;
mod volume;
pub mod zeek;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use intern::{Interner, Sym};
use seen::Seen;

pub use beacons::BeaconSettings;
pub use generated::DgaSettings;
pub use novelty::NoveltySettings;
pub use scan::ScanSettings;
pub use volume::VolumeSettings;

/// One connection as the detectors see it. Borrowed, so feeding the pipeline allocates nothing
/// for events it has seen the like of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// The endpoint that reported it (its agent id).
    pub agent: &'a str,
    /// Its number on that endpoint; with the agent it names the event.
    pub seq: u64,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// The executable, `""` when unknown.
    pub app: &'a str,
    /// The name it was for (TLS server name, HTTP host, the resolved or queried name).
    pub domain: Option<&'a str>,
    /// Where it went.
    pub dst_ip: Option<IpAddr>,
    /// The destination port (0 when there is none).
    pub dst_port: u16,
    /// Opened by the remote side.
    pub inbound: bool,
    /// Bytes sent by the endpoint.
    pub bytes_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// When set, no connection of its own: the traffic of event `update_of` of the same agent,
    /// learned when it ended. Only the volume detector counts it.
    pub update_of: Option<u64>,
    /// For a DNS query, its type when known (`A`, `TXT`, `NULL`, ...).
    pub query_type: Option<&'a str>,
    /// How findings cite this event; `AGENT/SEQ` when none (a Zeek `uid`, say).
    pub reference: Option<&'a str>,
}

impl Observation<'_> {
    /// The reference to this event that findings carry as evidence: its `reference`, or
    /// `AGENT/SEQ`.
    pub fn evidence(&self) -> String {
        match self.reference {
            Some(reference) => reference.to_owned(),
            None => format!("{}/{}", self.agent, self.seq),
        }
    }

    /// A DNS query to a resolver (port 53), as opposed to a connection to a named host.
    pub fn is_dns_query(&self) -> bool {
        self.dst_port == 53
    }
}

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Look today.
    Medium,
    /// Look now.
    High,
    /// Act now.
    Critical,
}

impl Severity {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// High from 0.9, medium from 0.7, low below.
    fn of_score(score: f64) -> Severity {
        if score >= 0.9 {
            Severity::High
        } else if score >= 0.7 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

/// What a detector found, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Which detector: `port_scan`, `host_sweep`, `exfiltration`, `new_destinations`,
    /// `beacon`, `dga`, `dns_tunnel`, `app_behaviour`.
    pub kind: String,
    /// How urgent.
    pub severity: Severity,
    /// How sure, or how far from normal, in [0, 1].
    pub score: f64,
    /// One line for people.
    pub title: String,
    /// The endpoint.
    pub agent: String,
    /// The application, when one is concerned.
    pub app: Option<String>,
    /// Names the behaviour: findings with the same key are the same alert.
    pub key: String,
    /// The features that drove it, their values and the baseline (a flat JSON object).
    pub explanation: serde_json::Value,
    /// The events behind it (`AGENT/SEQ`), oldest first, at most [`MAX_EVIDENCE`].
    pub evidence: Vec<String>,
    /// The time of the observation that raised it, ms since the Unix epoch.
    pub time_ms: i64,
}

/// How far `value` is past `threshold`, as a score: 0.5 at the threshold, 0.75 at twice it,
/// towards 1 beyond (every detector that counts against a threshold scores this way).
fn past(value: f64, threshold: f64) -> f64 {
    (1.0 - 0.5 * threshold / value.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
}

/// Most evidence references one finding carries.
pub const MAX_EVIDENCE: usize = 20;

/// Keeps the newest [`MAX_EVIDENCE`] references.
#[derive(Debug, Default, Clone)]
struct Evidence(std::collections::VecDeque<String>);

impl Evidence {
    fn push(&mut self, id: String) {
        if self.0.len() == MAX_EVIDENCE {
            self.0.pop_front();
        }
        self.0.push_back(id);
    }

    fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// The settings of every detector; [`Settings::default`] is what the server runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Port scans and host sweeps.
    pub scan: ScanSettings,
    /// Bytes sent against the application's baseline.
    pub volume: VolumeSettings,
    /// New destinations of an application.
    pub novelty: NoveltySettings,
    /// Beaconing.
    pub beacons: BeaconSettings,
    /// DNS tunnelling.
    pub dns_tunnel: crate::dns_tunnel::Config,
    /// Generated domains.
    pub dga: DgaSettings,
}

/// What the pipeline has done, for `/metrics` and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Observations taken.
    pub observed: u64,
    /// Observations skipped because their event id had been seen (a re-delivered batch).
    pub repeated: u64,
    /// Findings raised.
    pub findings: u64,
}

/// The detectors and their state.
#[derive(Debug)]
pub struct Pipeline {
    names: Interner,
    seen: Seen,
    scan: scan::Detector,
    volume: volume::Detector,
    novelty: novelty::Detector,
    beacons: beacons::Detector,
    tunnels: tunnels::Detector,
    generated: generated::Detector,
    behaviour: behaviour::Detector,
    counters: Counters,
}

impl Pipeline {
    /// A pipeline with no history.
    pub fn new(settings: Settings) -> Pipeline {
        Pipeline {
            names: Interner::default(),
            seen: Seen::default(),
            scan: scan::Detector::new(settings.scan),
            volume: volume::Detector::new(settings.volume),
            novelty: novelty::Detector::new(settings.novelty),
            beacons: beacons::Detector::new(settings.beacons),
            tunnels: tunnels::Detector::new(settings.dns_tunnel),
            generated: generated::Detector::new(settings.dga),
            behaviour: behaviour::Detector::default(),
            counters: Counters::default(),
        }
    }

    /// Takes one observation; findings it completes go to `out`. An event id seen before is
    /// skipped (and counted).
    pub fn observe(&mut self, observation: &Observation<'_>, out: &mut Vec<Finding>) {
        let agent = self.names.get(observation.agent);
        let app = match observation.update_of {
            // An update names no application: it is that of the event it completes.
            Some(of) => self.seen.app_of(agent, of),
            None => Some(self.names.get(observation.app)),
        };
        if !self.seen.first_time(agent, observation.seq, app) {
            self.counters.repeated += 1;
            return;
        }
        self.counters.observed += 1;
        let before = out.len();
        let context = Context {
            observation,
            agent,
            app,
            names: &self.names,
        };
        self.volume.observe(&context, out);
        self.behaviour.observe(&context, out);
        if observation.update_of.is_none() {
            self.scan.observe(&context, out);
            self.novelty.observe(&context, out);
            self.beacons.observe(&context);
            self.tunnels.observe(&context, out);
            self.generated.observe(&context, out);
        }
        self.counters.findings += (out.len() - before) as u64;
    }

    /// Runs the detectors that score periodically (beacons, closed behaviour windows) as of
    /// `now_ms` and forgets idle state; call it about once a minute.
    pub fn tick(&mut self, now_ms: i64, out: &mut Vec<Finding>) {
        let before = out.len();
        self.beacons.tick(now_ms, &self.names, out);
        self.behaviour.tick(now_ms, &self.names, out);
        self.scan.forget_before(now_ms);
        self.counters.findings += (out.len() - before) as u64;
    }

    /// Judges applications' windows by `model` from now on; until one is set the behaviour
    /// detector is idle.
    pub fn set_behaviour_model(&mut self, model: Arc<crate::behaviour::Model>) {
        self.behaviour.set_model(model);
    }

    /// What it has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

/// An observation with its interned agent and application, as detectors get it.
struct Context<'a, 'o> {
    observation: &'a Observation<'o>,
    agent: Sym,
    /// `None` for an update whose event was not seen.
    app: Option<Sym>,
    names: &'a Interner,
}

impl Context<'_, '_> {
    fn app_name(&self) -> Option<String> {
        self.app
            .map(|app| self.names.name(app).to_owned())
            .filter(|name| !name.is_empty())
    }
}

#[cfg(test)]
mod tests;
