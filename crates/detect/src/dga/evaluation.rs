//! Held-out-family evaluation: the generated names are split by family into folds; each fold's
//! families are scored by a model trained on the other families and on the benign names of the
//! other folds, against the fold's own benign names. Scores are pooled over folds.
//!
//! Also the readers of the two corpus formats: one benign name per line, and
//! `family<TAB>domain` lines of generated names.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::features::{Invalid, scorable};
use super::training::{SplitMix, TrainOptions, TrainReport, train_families};
use crate::metrics::{roc_auc, tpr_at_fpr};

/// A generated name and its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The DGA family (the malware it comes from).
    pub family: String,
    /// The name.
    pub domain: String,
}

/// A line that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Line number, from 1.
    pub line: usize,
    /// Why.
    pub reason: &'static str,
}

/// Names of a one-name-per-line text (blank lines and `#` comments ignored, other lines that
/// are not scorable DNS names skipped with the reason).
pub fn read_names(text: &str) -> (Vec<String>, Vec<Skipped>) {
    let (mut names, mut skipped) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match scorable(line).map_err(Invalid::reason) {
            Ok(()) => names.push(line.to_owned()),
            Err(reason) => skipped.push(Skipped {
                line: i + 1,
                reason,
            }),
        }
    }
    (names, skipped)
}

/// Generated names of `family<TAB>domain` lines; bad lines skipped with the reason.
pub fn read_generated(text: &str) -> (Vec<Generated>, Vec<Skipped>) {
    let (mut names, mut skipped) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((family, domain)) = line.split_once('\t') else {
            skipped.push(Skipped {
                line: i + 1,
                reason: "no tab between family and domain",
            });
            continue;
        };
        let family = family.trim();
        if family.is_empty() {
            skipped.push(Skipped {
                line: i + 1,
                reason: "empty family",
            });
            continue;
        }
        match scorable(domain.trim()).map_err(Invalid::reason) {
            Ok(()) => names.push(Generated {
                family: family.to_owned(),
                domain: domain.trim().to_owned(),
            }),
            Err(reason) => skipped.push(Skipped {
                line: i + 1,
                reason,
            }),
        }
    }
    (names, skipped)
}

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalOptions {
    /// Folds of families (and of benign names).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// At 0.001, the threshold is the benign score that only 0.1 % of held-out benign names
    /// exceed.
    pub fpr: f64,
    /// Use at most this many names of each family (the first ones), to make runs quicker.
    pub max_per_family: Option<usize>,
    /// Use at most this many benign names (a seeded sample).
    pub max_benign: Option<usize>,
    /// How each fold's model is trained.
    pub train: TrainOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            folds: 5,
            seed: 1,
            fpr: 0.001,
            max_per_family: None,
            max_benign: None,
            train: TrainOptions::default(),
        }
    }
}

/// The held-out figures, pooled and per fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// ROC AUC of all held-out generated names against all held-out benign names.
    pub auc: f64,
    /// Share of held-out generated names above the pooled threshold.
    pub tpr: f64,
    /// The score only `fpr` of the held-out benign names exceed.
    pub threshold: f64,
    /// Share of held-out benign names above the threshold.
    pub fpr: f64,
    /// Held-out benign names scored (each benign name is held out once).
    pub benign: usize,
    /// Held-out generated names scored.
    pub dga: usize,
    /// Each fold.
    pub folds: Vec<FoldEvaluation>,
    /// Recall of each family at the pooled threshold, lowest first.
    pub families: Vec<FamilyRecall>,
}

/// One fold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoldEvaluation {
    /// Families held out.
    pub families: Vec<String>,
    /// Benign names held out.
    pub benign: usize,
    /// Generated names held out.
    pub dga: usize,
    /// AUC of this fold's held-out names.
    pub auc: f64,
    /// TPR at this fold's own threshold (`fpr` of its benign names).
    pub tpr: f64,
    /// That threshold.
    pub threshold: f64,
    /// How training went.
    pub training: TrainReport,
}

/// One family's recall at the pooled threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyRecall {
    /// The family.
    pub family: String,
    /// Names scored.
    pub names: usize,
    /// Names above the threshold.
    pub detected: usize,
    /// detected / names.
    pub recall: f64,
    /// ROC AUC of the family's names against all held-out benign names.
    pub auc: f64,
}

/// Run the held-out-family evaluation.
pub fn evaluate(benign: &[String], generated: &[Generated], options: &EvalOptions) -> Evaluation {
    let folds = options.folds.max(2);
    let mut rng = SplitMix(options.seed);
    let mut benign: Vec<&String> = benign.iter().collect();
    rng.shuffle(&mut benign);
    if let Some(max) = options.max_benign {
        benign.truncate(max);
    }
    let mut by_family: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for g in generated {
        let names = by_family.entry(g.family.as_str()).or_default();
        if options.max_per_family.is_none_or(|max| names.len() < max) {
            names.push(g.domain.as_str());
        }
    }
    let mut families: Vec<&str> = by_family.keys().copied().collect();
    rng.shuffle(&mut families);
    let fold_of: BTreeMap<&str, usize> = families
        .iter()
        .enumerate()
        .map(|(i, f)| (*f, i % folds))
        .collect();

    let (mut pooled_pos, mut pooled_neg) = (Vec::new(), Vec::new());
    let mut family_scores: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut fold_results = Vec::with_capacity(folds);
    for fold in 0..folds {
        let train_benign: Vec<String> = benign
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != fold)
            .map(|(_, n)| (*n).clone())
            .collect();
        let test_benign: Vec<&str> = benign
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds == fold)
            .map(|(_, n)| n.as_str())
            .collect();
        let held_out: BTreeSet<&str> = fold_of
            .iter()
            .filter(|(_, f)| **f == fold)
            .map(|(name, _)| *name)
            .collect();
        let train_dga: Vec<Generated> = by_family
            .iter()
            .filter(|(f, _)| !held_out.contains(*f))
            .flat_map(|(f, names)| {
                names.iter().map(|n| Generated {
                    family: (*f).to_owned(),
                    domain: (*n).to_owned(),
                })
            })
            .collect();
        let (model, training) = train_families(&train_benign, &train_dga, &options.train);
        let neg: Vec<f64> = test_benign.iter().map(|n| model.score(n)).collect();
        let mut pos = Vec::new();
        for family in &held_out {
            let scores: Vec<f64> = by_family
                .get(family)
                .map(|names| names.iter().map(|n| model.score(n)).collect())
                .unwrap_or_default();
            pos.extend_from_slice(&scores);
            family_scores.insert(family, scores);
        }
        let auc = roc_auc(&pos, &neg).unwrap_or(f64::NAN);
        let at = tpr_at_fpr(&pos, &neg, options.fpr);
        fold_results.push(FoldEvaluation {
            families: held_out.iter().map(|f| (*f).to_owned()).collect(),
            benign: neg.len(),
            dga: pos.len(),
            auc,
            tpr: at.map_or(f64::NAN, |a| a.tpr),
            threshold: at.map_or(f64::NAN, |a| a.threshold),
            training,
        });
        pooled_pos.extend(pos);
        pooled_neg.extend(neg);
    }
    let auc = roc_auc(&pooled_pos, &pooled_neg).unwrap_or(f64::NAN);
    let at = tpr_at_fpr(&pooled_pos, &pooled_neg, options.fpr);
    let threshold = at.map_or(f64::NAN, |a| a.threshold);
    let mut family_recall: Vec<FamilyRecall> = family_scores
        .iter()
        .map(|(family, scores)| {
            let detected = scores.iter().filter(|&&s| s > threshold).count();
            FamilyRecall {
                family: (*family).to_owned(),
                names: scores.len(),
                detected,
                recall: detected as f64 / scores.len().max(1) as f64,
                auc: roc_auc(scores, &pooled_neg).unwrap_or(f64::NAN),
            }
        })
        .collect();
    family_recall.sort_by(|a, b| a.recall.total_cmp(&b.recall).then(a.family.cmp(&b.family)));
    Evaluation {
        auc,
        tpr: at.map_or(f64::NAN, |a| a.tpr),
        threshold,
        fpr: at.map_or(f64::NAN, |a| a.fpr),
        benign: pooled_neg.len(),
        dga: pooled_pos.len(),
        folds: fold_results,
        families: family_recall,
    }
}
