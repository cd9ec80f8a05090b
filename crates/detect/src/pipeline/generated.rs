//! Generated (DGA) domains in the stream: every name an (agent, application) looks up or
//! connects to is scored by the [`crate::dga`] model (each distinct name once: scores are
//! cached), and a window in which the application met several distinct registrable domains
//! that score as generated raises. One odd name is not malware; a program walking through a
//! day's list of generated names meets many. Reverse lookups (`.arpa`) score 0.

use std::collections::HashSet;

use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::intern::{Interner, Sym};
use super::{Context, Evidence, Finding, Severity, past};
use crate::dga::Model;
use crate::names::registrable_domain;

/// Scores cached before the cache starts afresh.
const CACHE: usize = 1 << 20;

/// When generated names raise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DgaSettings {
    /// A name scoring at least this counts as generated (the shipped model flags about 0.1 % of
    /// held-out benign names at 0.92).
    pub threshold: f64,
    /// Distinct generated registrable domains in one window that raise.
    pub min_names: usize,
    /// Window length, seconds.
    pub window_seconds: u32,
}

impl Default for DgaSettings {
    fn default() -> Self {
        DgaSettings {
            threshold: 0.92,
            min_names: 5,
            window_seconds: 600,
        }
    }
}

#[derive(Debug)]
pub struct Detector {
    settings: DgaSettings,
    model: &'static Model,
    scores: HashMap<Box<str>, f32>,
    sites: Interner,
    windows: HashMap<(Sym, Sym), Window>,
}

#[derive(Debug)]
struct Window {
    index: i64,
    sites: HashSet<Sym>,
    names: Vec<(String, f64)>,
    evidence: Evidence,
    raised: bool,
}

impl Detector {
    pub fn new(settings: DgaSettings) -> Detector {
        Detector {
            settings,
            model: Model::shipped(),
            scores: HashMap::default(),
            sites: Interner::default(),
            windows: HashMap::default(),
        }
    }

    pub fn observe(&mut self, context: &Context<'_, '_>, out: &mut Vec<Finding>) {
        let o = context.observation;
        let (Some(name), Some(app)) = (o.domain, context.app) else {
            return;
        };
        if o.inbound {
            return;
        }
        let score = match self.scores.get(name) {
            Some(&score) => f64::from(score),
            None => {
                let score = self.model.score(name);
                if self.scores.len() >= CACHE {
                    self.scores.clear();
                }
                #[allow(clippy::cast_possible_truncation)] // a probability fits an f32
                self.scores.insert(name.into(), score as f32);
                score
            }
        };
        if score < self.settings.threshold {
            return;
        }
        let Some(site) = registrable_domain(name) else {
            return;
        };
        let site = self.sites.get(site);
        let index = o
            .time_ms
            .div_euclid(i64::from(self.settings.window_seconds.max(1)) * 1000);
        let window = self
            .windows
            .entry((context.agent, app))
            .or_insert_with(|| Window::new(index));
        if window.index != index {
            *window = Window::new(index);
        }
        if !window.sites.insert(site) {
            return;
        }
        window.names.push((name.to_owned(), score));
        window.evidence.push(o.evidence());
        if !window.raised && window.sites.len() >= self.settings.min_names.max(1) {
            window.raised = true;
            out.push(finding(&self.settings, self.model, context, window));
        }
    }
}

fn finding(
    settings: &DgaSettings,
    model: &Model,
    context: &Context<'_, '_>,
    window: &Window,
) -> Finding {
    let agent = context.names.name(context.agent);
    let app = context.app_name();
    let count = window.sites.len();
    let mean = window.names.iter().map(|(_, s)| s).sum::<f64>() / count.max(1) as f64;
    let score = mean * past(count as f64, settings.min_names.max(1) as f64);
    let (top, _) = window
        .names
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    let explained = model.explain(&top);
    let figures: Vec<String> = explained
        .features
        .iter()
        .take(6)
        .map(|f| {
            format!(
                "{} {:.2} (benign mean {:.2})",
                f.name, f.value, f.benign_mean
            )
        })
        .collect();
    Finding {
        kind: "dga".to_owned(),
        severity: Severity::of_score(score).max(Severity::Medium),
        score,
        title: format!(
            "{} on {agent} looked up {count} generated-looking domains within {} min",
            app.as_deref().unwrap_or("an application"),
            settings.window_seconds / 60
        ),
        agent: agent.to_owned(),
        app: app.clone(),
        key: format!("dga:{agent}:{}", app.unwrap_or_default()),
        explanation: json!({
            "why": format!("{count} distinct registrable domains scored as generated in one window; {} raise", settings.min_names),
            "generated_domains": count,
            "threshold_domains": settings.min_names,
            "name_score_threshold": settings.threshold,
            "names": window
                .names
                .iter()
                .take(10)
                .map(|(n, s)| format!("{n} ({s:.3})"))
                .collect::<Vec<_>>()
                .join(", "),
            "most_generated": top,
            "most_generated_figures": figures.join("; "),
        }),
        evidence: window.evidence.to_vec(),
        time_ms: context.observation.time_ms,
    }
}

impl Window {
    fn new(index: i64) -> Window {
        Window {
            index,
            sites: HashSet::new(),
            names: Vec::new(),
            evidence: Evidence::default(),
            raised: false,
        }
    }
}
