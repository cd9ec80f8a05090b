//! First-seen destinations: an application on an agent contacting destinations it never used,
//! weighted by how rare each is in the fleet (the share of the other agents running the
//! application that used it) and how new (when the fleet first saw the application use it).
//! A few such destinations within a window raise; one alone does not (software does meet new
//! hosts now and then).
//!
//! An (agent, application) is learned for [`NoveltySettings::learning_seconds`] before it can
//! raise. An application that met more than [`MAX_DESTINATIONS`] destinations on an agent (a
//! browser) is not judged by this detector.

use std::collections::HashSet;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::intern::{Interner, Sym};
use super::{Context, Evidence, Finding, Severity, past};
use crate::names::registrable_domain;

/// Destinations remembered per (agent, application).
pub const MAX_DESTINATIONS: usize = 4_096;
/// Agents remembered per (application, destination) for the prevalence.
const MAX_USERS: usize = 256;

/// Thresholds of the first-seen detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoveltySettings {
    /// How long an application is watched on an agent before its new destinations count.
    pub learning_seconds: u32,
    /// Window length, seconds.
    pub window_seconds: u32,
    /// New destinations, each at least `min_rarity`, in one window that raise.
    pub min_new: usize,
    /// Rarity (0 to 1) below which a new destination does not count.
    pub min_rarity: f64,
    /// A destination the fleet has known this long counts half as new, twice as long a
    /// quarter, ...
    pub half_age_hours: f64,
}

impl Default for NoveltySettings {
    fn default() -> Self {
        NoveltySettings {
            learning_seconds: 1_800,
            window_seconds: 600,
            min_new: 3,
            min_rarity: 0.5,
            half_age_hours: 24.0 * 7.0,
        }
    }
}

#[derive(Debug)]
pub struct Detector {
    settings: NoveltySettings,
    destinations: Interner,
    /// Which agents run each application.
    runners: HashMap<Sym, HashSet<Sym>>,
    /// By (application, registrable destination): when the fleet first saw it, and who used it.
    fleet: HashMap<(Sym, Sym), Known>,
    /// By (agent, application).
    local: HashMap<(Sym, Sym), Local>,
}

#[derive(Debug)]
struct Known {
    first_ms: i64,
    users: HashSet<Sym>,
}

#[derive(Debug)]
struct Local {
    first_ms: i64,
    /// Hosts met (full names, or addresses).
    met: HashSet<Sym>,
    window: i64,
    new: Vec<New>,
    evidence: Evidence,
    raised: bool,
}

#[derive(Debug, Clone, Serialize)]
struct New {
    destination: String,
    rarity: f64,
    fleet_share: f64,
    fleet_age_hours: f64,
}

impl Detector {
    pub fn new(settings: NoveltySettings) -> Detector {
        Detector {
            settings,
            destinations: Interner::default(),
            runners: HashMap::default(),
            fleet: HashMap::default(),
            local: HashMap::default(),
        }
    }

    pub fn observe(&mut self, context: &Context<'_, '_>, out: &mut Vec<Finding>) {
        let o = context.observation;
        let Some(app) = context.app else { return };
        if o.inbound || o.is_dns_query() {
            return;
        }
        let address;
        let host = match o.domain {
            Some(domain) => domain,
            None => match o.dst_ip {
                Some(ip) => {
                    address = ip.to_string();
                    &address
                }
                None => return,
            },
        };
        let host_sym = self.destinations.get(host);
        let window = o
            .time_ms
            .div_euclid(i64::from(self.settings.window_seconds.max(1)) * 1000);
        let local = self
            .local
            .entry((context.agent, app))
            .or_insert_with(|| Local {
                first_ms: o.time_ms,
                met: HashSet::new(),
                window,
                new: Vec::new(),
                evidence: Evidence::default(),
                raised: false,
            });
        if local.met.len() >= MAX_DESTINATIONS || !local.met.insert(host_sym) {
            return;
        }
        let runners = self.runners.entry(app).or_default();
        runners.insert(context.agent);
        let others_running = runners.len().saturating_sub(1);
        let site = self
            .destinations
            .get(registrable_domain(host).unwrap_or(host));
        let known = self.fleet.entry((app, site)).or_insert_with(|| Known {
            first_ms: o.time_ms,
            users: HashSet::new(),
        });
        let others_used = known.users.iter().filter(|&&a| a != context.agent).count();
        if known.users.len() < MAX_USERS {
            known.users.insert(context.agent);
        }
        let learning_ms = i64::from(self.settings.learning_seconds) * 1000;
        if o.time_ms - local.first_ms < learning_ms {
            return;
        }
        let fleet_share = if others_running == 0 {
            0.0
        } else {
            (others_used as f64 / others_running as f64).min(1.0)
        };
        let age_hours = (o.time_ms - known.first_ms).max(0) as f64 / 3_600_000.0;
        let freshness =
            0.5f64.powf(age_hours / self.settings.half_age_hours.max(f64::MIN_POSITIVE));
        let rarity = (1.0 - fleet_share) * freshness;
        if rarity < self.settings.min_rarity {
            return;
        }
        if window != local.window {
            local.window = window;
            local.new.clear();
            local.evidence = Evidence::default();
            local.raised = false;
        }
        if local.new.len() < MAX_DESTINATIONS {
            local.new.push(New {
                destination: host.to_owned(),
                rarity,
                fleet_share,
                fleet_age_hours: age_hours,
            });
        }
        local.evidence.push(o.evidence());
        if !local.raised && local.new.len() >= self.settings.min_new.max(1) {
            local.raised = true;
            out.push(finding(context, local, others_running, &self.settings));
        }
    }
}

fn finding(
    context: &Context<'_, '_>,
    local: &Local,
    others_running: usize,
    settings: &NoveltySettings,
) -> Finding {
    let agent = context.names.name(context.agent);
    let app = context.app_name();
    let count = local.new.len();
    let mean_rarity = local.new.iter().map(|n| n.rarity).sum::<f64>() / count.max(1) as f64;
    let score = mean_rarity * past(count as f64, settings.min_new.max(1) as f64);
    let app_label = app.as_deref().unwrap_or("an unknown application");
    let shown: Vec<String> = local
        .new
        .iter()
        .take(10)
        .map(|n| {
            format!(
                "{} (rarity {:.2}: used by {:.0} % of the other agents running it, known to the fleet for {:.1} h)",
                n.destination,
                n.rarity,
                n.fleet_share * 100.0,
                n.fleet_age_hours
            )
        })
        .collect();
    Finding {
        kind: "new_destinations".to_owned(),
        severity: Severity::of_score(score),
        score,
        title: format!(
            "{app_label} on {agent} contacted {count} destinations it never used within {} min",
            settings.window_seconds / 60
        ),
        agent: agent.to_owned(),
        app: app.clone(),
        key: format!("new_destinations:{agent}:{}", app.unwrap_or_default()),
        explanation: json!({
            "why": format!("{count} destinations new to this application here, rare and new in the fleet; {} raise", settings.min_new),
            "new_destinations": count,
            "threshold_new_destinations": settings.min_new,
            "mean_rarity": (mean_rarity * 1000.0).round() / 1000.0,
            "min_rarity": settings.min_rarity,
            "destinations_known_before": local.met.len().saturating_sub(count),
            "other_agents_running_it": others_running,
            "watched_since_ms": local.first_ms,
            "destinations": shown.join("; "),
        }),
        evidence: local.evidence.to_vec(),
        time_ms: context.observation.time_ms,
    }
}
