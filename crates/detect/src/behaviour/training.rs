//! Fitting a behaviour model on stored windows, evaluating it, and deciding whether it
//! replaces the current one.
//!
//! The newest [`TrainSettings::holdout`] share of the windows (by time) is held out. The
//! candidate is fitted on the rest; then the candidate and the current model are both judged
//! on the same held-out windows and on the same synthetic anomalies made from them (each
//! held-out window with one feature, in turn, [`ANOMALY_FACTOR`] times larger). The figures:
//! the ROC AUC of anomalies against held-out windows (by how far each scores above its
//! threshold), the share of held-out windows flagged, and the share of anomalies flagged. A
//! candidate is promoted when there is no current model, or when its AUC is at least the
//! current model's; and in any case only when it flags at most
//! [`TrainSettings::max_flagged`] of the held-out windows and reaches
//! [`TrainSettings::min_auc`].

use serde::{Deserialize, Serialize};

use super::model::{Model, Profile};
use super::window::{FEATURES, Features, Window};
use crate::iforest::{FitError, IsolationForest, Settings as ForestSettings};
use crate::metrics::roc_auc;

/// A synthetic anomaly has one feature this many times its value (plus one) in the window.
pub const ANOMALY_FACTOR: f64 = 12.0;

/// The least box width of the forests, in log units: a window past the box of an application
/// whose feature never varied is judged as if the box were this wide (a factor of e).
const BOX_MIN_WIDTH: f64 = 1.0;

/// How a behaviour model is fitted and judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    /// Trees per profile.
    pub trees: usize,
    /// Windows per tree.
    pub subsample: usize,
    /// Windows an application needs for a profile of its own.
    pub min_windows: usize,
    /// A profile's threshold is this quantile of its training windows' scores ...
    pub quantile: f64,
    /// ... plus this.
    pub margin: f64,
    /// ... and at least this.
    pub min_threshold: f64,
    /// Share of the windows (the newest) held out for evaluation.
    pub holdout: f64,
    /// The most held-out windows a promoted model may flag.
    pub max_flagged: f64,
    /// The least AUC a promoted model must reach.
    pub min_auc: f64,
    /// Seed of the forests.
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            trees: 50,
            subsample: 128,
            min_windows: 64,
            quantile: 0.9999,
            margin: 0.02,
            min_threshold: 0.6,
            holdout: 0.2,
            max_flagged: 0.01,
            min_auc: 0.9,
            seed: 1,
        }
    }
}

/// Why no model could be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// Too little history.
    #[error("{found} windows of history; at least {needed} are needed")]
    TooFew {
        /// Windows there were.
        found: usize,
        /// Windows needed.
        needed: usize,
    },
    /// The forest could not be fitted.
    #[error("fitting failed: {0}")]
    Fit(#[from] FitError),
}

/// How a model did on held-out windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Held-out windows.
    pub windows: usize,
    /// Synthetic anomalies against held-out windows.
    pub auc: Option<f64>,
    /// Share of held-out windows flagged.
    pub flagged: f64,
    /// Share of synthetic anomalies flagged.
    pub detected: f64,
}

/// A fitted candidate and the decision about it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The candidate.
    pub model: Model,
    /// Windows it was fitted on, and held out.
    pub trained_windows: usize,
    /// Its figures.
    pub evaluation: Evaluation,
    /// The current model's figures on the same windows.
    pub current: Option<Evaluation>,
    /// Whether it replaces the current model.
    pub promote: bool,
    /// Why (or why not), for people.
    pub reason: String,
}

/// Fits a candidate on `windows` (oldest first, as [`super::Windows::into_windows`] gives
/// them), evaluates it beside `current` and decides.
pub fn train(
    windows: &[Window],
    current: Option<&Model>,
    settings: &TrainSettings,
) -> Result<Candidate, TrainError> {
    let needed = settings.min_windows.max(2) * 2;
    if windows.len() < needed {
        return Err(TrainError::TooFew {
            found: windows.len(),
            needed,
        });
    }
    let held = share_of(windows.len(), settings.holdout.clamp(0.05, 0.5)).max(1);
    let (fit_on, held_out) = windows.split_at(windows.len() - held);
    let model = fit(fit_on, settings)?;
    let evaluation = evaluate(&model, held_out);
    let current = current.map(|m| evaluate(m, held_out));
    let (promote, reason) = decide(&evaluation, current.as_ref(), settings);
    Ok(Candidate {
        model,
        trained_windows: fit_on.len(),
        evaluation,
        current,
        promote,
        reason,
    })
}

/// Fits a model on every window given.
pub fn fit(windows: &[Window], settings: &TrainSettings) -> Result<Model, TrainError> {
    let all: Vec<&Features> = windows.iter().map(|w| &w.features).collect();
    let fleet = profile(String::new(), &all, settings)?;
    let mut by_app: std::collections::BTreeMap<&str, Vec<&Features>> = Default::default();
    for w in windows {
        by_app.entry(&w.app).or_default().push(&w.features);
    }
    let mut apps = Vec::new();
    for (app, rows) in by_app {
        if rows.len() >= settings.min_windows && !app.is_empty() {
            apps.push(profile(app.to_owned(), &rows, settings)?);
        }
    }
    Ok(Model { fleet, apps })
}

fn profile(
    app: String,
    rows: &[&Features],
    settings: &TrainSettings,
) -> Result<Profile, TrainError> {
    let table: Vec<Vec<f64>> = rows.iter().map(|r| r.to_vec()).collect();
    let forest = IsolationForest::fit(
        &table,
        &ForestSettings {
            trees: settings.trees,
            subsample: settings.subsample,
            seed: settings.seed,
            box_min_width: Some(BOX_MIN_WIDTH),
        },
    )?;
    let mut scores: Vec<f64> = table.iter().map(|r| forest.score(r)).collect();
    scores.sort_by(f64::total_cmp);
    let at = share_of(scores.len(), settings.quantile.clamp(0.0, 1.0))
        .min(scores.len().saturating_sub(1));
    let high = scores.get(at).copied().unwrap_or(0.0);
    let mut median = [0.0; FEATURES.len()];
    let mut mad = [0.0; FEATURES.len()];
    for (f, (m, d)) in median.iter_mut().zip(mad.iter_mut()).enumerate() {
        let mut column: Vec<f64> = table.iter().filter_map(|r| r.get(f).copied()).collect();
        let centre = median_of(&mut column);
        let mut spread: Vec<f64> = column.iter().map(|x| (x - centre).abs()).collect();
        *m = centre;
        *d = median_of(&mut spread);
    }
    Ok(Profile {
        app,
        windows: u32::try_from(rows.len()).unwrap_or(u32::MAX),
        forest,
        threshold: (high + settings.margin).max(settings.min_threshold),
        median,
        mad,
    })
}

/// `share` (in [0, 1]) of `n`, rounded down.
#[allow(clippy::cast_possible_truncation)] // at most n, a usize
fn share_of(n: usize, share: f64) -> usize {
    (n as f64 * share).floor() as usize
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Judges `model` on `held_out` and on synthetic anomalies made from it.
pub fn evaluate(model: &Model, held_out: &[Window]) -> Evaluation {
    let margin = |app: &str, features: &Features| {
        let j = model.judge(app, features);
        j.score - j.threshold
    };
    let normal: Vec<f64> = held_out
        .iter()
        .map(|w| margin(&w.app, &w.features))
        .collect();
    let anomalies: Vec<f64> = held_out
        .iter()
        .enumerate()
        .map(|(i, w)| margin(&w.app, &anomaly(&w.features, i % FEATURES.len())))
        .collect();
    let share = |scores: &[f64]| {
        scores.iter().filter(|&&m| m > 0.0).count() as f64 / scores.len().max(1) as f64
    };
    Evaluation {
        windows: held_out.len(),
        auc: roc_auc(&anomalies, &normal),
        flagged: share(&normal),
        detected: share(&anomalies),
    }
}

/// `features` with feature `f` [`ANOMALY_FACTOR`] times larger.
fn anomaly(features: &Features, f: usize) -> Features {
    let mut out = *features;
    if let Some(x) = out.get_mut(f) {
        *x += ANOMALY_FACTOR.ln();
    }
    out
}

fn decide(
    candidate: &Evaluation,
    current: Option<&Evaluation>,
    settings: &TrainSettings,
) -> (bool, String) {
    let auc = candidate.auc.unwrap_or(0.0);
    if candidate.flagged > settings.max_flagged {
        return (
            false,
            format!(
                "flags {:.2}% of held-out windows (at most {:.2}% allowed)",
                candidate.flagged * 100.0,
                settings.max_flagged * 100.0
            ),
        );
    }
    if auc < settings.min_auc {
        return (
            false,
            format!(
                "AUC {auc:.4} is below the least allowed {:.4}",
                settings.min_auc
            ),
        );
    }
    match current.and_then(|c| c.auc) {
        Some(current_auc) if auc < current_auc => (
            false,
            format!(
                "AUC {auc:.4} is below the current model's {current_auc:.4} on the same windows"
            ),
        ),
        Some(current_auc) => (
            true,
            format!("AUC {auc:.4}, the current model's {current_auc:.4} on the same windows"),
        ),
        None => (true, format!("AUC {auc:.4}; there was no current model")),
    }
}
