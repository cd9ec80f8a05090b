//! Per-application behaviour: each (agent, application)'s five-minute window of activity,
//! judged by the behaviour model ([`crate::behaviour`]) when the window closes — at the first
//! observation of that pair in a later window, or at the tick after its end. Nothing is judged
//! (or kept) until a model is set; the server sets the newest promoted one and swaps it when a
//! better one is trained.

use std::collections::VecDeque;
use std::sync::Arc;

use foldhash::HashMap;
use serde_json::{Map, Value, json};

use super::intern::{Interner, Sym};
use super::{Context, Finding, MAX_EVIDENCE, Severity};
use crate::behaviour::{Basis, Model, WINDOW_MS, WindowCounts};

#[derive(Debug, Default)]
pub struct Detector {
    model: Option<Arc<Model>>,
    open: HashMap<(Sym, Sym), Open>,
}

/// The window being filled for one (agent, application).
#[derive(Debug)]
struct Open {
    start_ms: i64,
    counts: WindowCounts,
    evidence: Cited,
}

impl Open {
    fn new(start_ms: i64) -> Open {
        Open {
            start_ms,
            counts: WindowCounts::default(),
            evidence: Cited::default(),
        }
    }
}

/// The newest events of a window, kept as sequence numbers (formatted only when a finding
/// cites them), or as their own reference when they have one.
#[derive(Debug, Default)]
struct Cited(VecDeque<Citation>);

#[derive(Debug)]
enum Citation {
    Seq(u64),
    Reference(Box<str>),
}

impl Cited {
    fn push(&mut self, o: &crate::pipeline::Observation<'_>) {
        if self.0.len() == MAX_EVIDENCE {
            self.0.pop_front();
        }
        self.0.push_back(match o.reference {
            Some(reference) => Citation::Reference(reference.into()),
            None => Citation::Seq(o.seq),
        });
    }

    fn to_vec(&self, agent: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|c| match c {
                Citation::Seq(seq) => format!("{agent}/{seq}"),
                Citation::Reference(reference) => reference.to_string(),
            })
            .collect()
    }
}

impl Detector {
    /// Judges with `model` from now on (windows already open are judged by it too).
    pub fn set_model(&mut self, model: Arc<Model>) {
        self.model = Some(model);
    }

    pub fn observe(&mut self, context: &Context<'_, '_>, out: &mut Vec<Finding>) {
        let Some(model) = &self.model else { return };
        let Some(app) = context.app else { return };
        let o = context.observation;
        let start_ms = o.time_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
        let open = self
            .open
            .entry((context.agent, app))
            .or_insert_with(|| Open::new(start_ms));
        if start_ms > open.start_ms {
            let closed = std::mem::replace(open, Open::new(start_ms));
            out.extend(judge(model, context.names, (context.agent, app), &closed));
        }
        // A late observation of a window already closed counts in the current one.
        open.counts.add(o);
        if o.update_of.is_none() {
            open.evidence.push(o);
        }
    }

    /// Judges and forgets the windows that ended by `now_ms`.
    pub fn tick(&mut self, now_ms: i64, names: &Interner, out: &mut Vec<Finding>) {
        let Some(model) = &self.model else { return };
        self.open.retain(|&key, open| {
            if open.start_ms + WINDOW_MS > now_ms {
                return true;
            }
            out.extend(judge(model, names, key, open));
            false
        });
    }
}

/// A finding when the window is anomalous.
fn judge(
    model: &Model,
    names: &Interner,
    (agent, app): (Sym, Sym),
    open: &Open,
) -> Option<Finding> {
    let agent = names.name(agent);
    let app = names.name(app);
    let features = open.counts.features();
    let judgement = model.judge(app, &features);
    if !judgement.anomalous() {
        return None;
    }
    let basis = match judgement.basis {
        Basis::Application => "this application's history",
        Basis::Fleet => "the fleet's history (too little of this application's)",
    };
    let mut explanation = Map::new();
    explanation.insert(
        "why".into(),
        json!(format!(
            "five minutes unlike {basis}: isolation score {:.3} above {:.3}",
            judgement.score, judgement.threshold
        )),
    );
    explanation.insert("score".into(), json!(judgement.score));
    explanation.insert("threshold".into(), json!(judgement.threshold));
    explanation.insert("baseline".into(), json!(judgement.basis));
    explanation.insert("trained_windows".into(), json!(judgement.trained_windows));
    explanation.insert("window_start_ms".into(), json!(open.start_ms));
    let mut drivers = Vec::new();
    for d in &judgement.drivers {
        explanation.insert(d.feature.into(), json!(d.value));
        explanation.insert(format!("{}_baseline", d.feature), json!(d.baseline));
        drivers.push(Value::from(d.feature));
    }
    explanation.insert("drivers".into(), Value::Array(drivers));
    let described: Vec<String> = judgement
        .drivers
        .iter()
        .take(2)
        .map(|d| format!("{} {} (usually {})", d.feature, d.value, d.baseline))
        .collect();
    // Scores sit in a narrow band above the threshold; stretch it over [0.5, 1].
    let score = (0.5 + (judgement.score - judgement.threshold) * 5.0).clamp(0.5, 1.0);
    Some(Finding {
        kind: "app_behaviour".to_owned(),
        severity: Severity::of_score(score).min(Severity::Medium),
        score,
        title: format!(
            "{app} on {agent} behaved unlike itself: {}",
            described.join(", ")
        ),
        agent: agent.to_owned(),
        app: Some(app.to_owned()).filter(|a| !a.is_empty()),
        key: format!("app_behaviour:{agent}:{app}"),
        explanation: Value::Object(explanation),
        evidence: open.evidence.to_vec(agent),
        time_ms: open.start_ms + WINDOW_MS,
    })
}
