//! Fitting the classifier: logistic regression by Adagrad with L2, over shuffled epochs, the
//! two classes weighted equally.
//!
//! The Markov figures of a benign training name come from a Markov model fitted on the other
//! half of the benign names (cross-fitting), so that the classifier does not learn how
//! familiar a name is to a model that has seen it; the shipped Markov model is fitted on all
//! benign names.

use serde::Serialize;

use super::features::{self, LEXICAL_COUNT, Markov, Normalised, single};
use super::model::{Lexical, Model, bin_of, sigmoid};

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainOptions {
    /// Seed of the shuffles: the same seed and data give the same model, byte for byte.
    pub seed: u64,
    /// Passes over the training names.
    pub epochs: usize,
    /// The n-gram weight table has 2^hash_bits entries.
    pub hash_bits: u8,
    /// Quantile bins per lexical figure.
    pub bins: u8,
    /// Adagrad's step size.
    pub learning_rate: f32,
    /// L2 penalty per weight, applied when the weight is used.
    pub l2: f32,
    /// Use the lexical figures; `false` trains the plain n-gram logistic regression, the
    /// baseline the evaluation compares with.
    pub lexical: bool,
    /// With families known ([`train_families`]), weigh each by the square root of its size.
    pub family_balance: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            seed: 0x5eed,
            epochs: 6,
            hash_bits: 18,
            bins: 16,
            learning_rate: 0.1,
            l2: 3e-3,
            lexical: true,
            family_balance: true,
        }
    }
}

/// What training saw and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainReport {
    /// Benign names trained on.
    pub benign: usize,
    /// Generated names trained on.
    pub dga: usize,
    /// Names left out: not DNS names, or bare public suffixes.
    pub skipped: usize,
    /// Weighted mean log loss over each epoch (before each update): it should fall.
    pub epoch_log_loss: Vec<f64>,
    /// ROC AUC on the training names after the last epoch.
    pub train_auc: f64,
}

/// Train on benign and generated names (names that are not DNS names are skipped).
pub fn train(benign: &[String], dga: &[String], options: &TrainOptions) -> Model {
    train_with_report(benign, dga, options).0
}

/// [`train`], with what it saw and the log loss per epoch.
pub fn train_with_report(
    benign: &[String],
    dga: &[String],
    options: &TrainOptions,
) -> (Model, TrainReport) {
    let refs: Vec<(&str, &str)> = dga.iter().map(|d| ("", d.as_str())).collect();
    fit(benign, &refs, options)
}

/// [`train_with_report`] on generated names with their families: with
/// [`TrainOptions::family_balance`], each family weighs by the square root of its size rather
/// than its size, so that a few large families do not decide what "generated" looks like.
pub fn train_families(
    benign: &[String],
    dga: &[super::Generated],
    options: &TrainOptions,
) -> (Model, TrainReport) {
    let refs: Vec<(&str, &str)> = dga
        .iter()
        .map(|g| (g.family.as_str(), g.domain.as_str()))
        .collect();
    fit(benign, &refs, options)
}

fn fit(benign: &[String], dga: &[(&str, &str)], options: &TrainOptions) -> (Model, TrainReport) {
    let hash_bits = options.hash_bits.clamp(8, 22);
    let bins = usize::from(options.bins.clamp(1, 64));
    let mut rng = SplitMix(options.seed);

    let benign_labels: Vec<Names> = benign.iter().filter_map(|n| Names::new(n)).collect();
    let (dga_labels, dga_families): (Vec<Names>, Vec<&str>) = dga
        .iter()
        .filter_map(|(family, n)| Some((Names::new(n)?, *family)))
        .unzip();
    let mut family_sizes: std::collections::BTreeMap<&str, f32> = Default::default();
    for family in &dga_families {
        *family_sizes.entry(family).or_default() += 1.0;
    }
    // Weight of each generated name before normalisation: 1, or 1/√(family size).
    let family_weight = |family: &str| {
        if options.family_balance {
            family_sizes.get(family).map_or(1.0, |n| n.sqrt().recip())
        } else {
            1.0
        }
    };
    let dga_raw: f32 = dga_families.iter().map(|f| family_weight(f)).sum();
    let skipped = benign.len() + dga.len() - benign_labels.len() - dga_labels.len();

    // Cross-fitted Markov models: half 0 and half 1 of the benign names, by a seeded coin.
    let halves: Vec<bool> = benign_labels.iter().map(|_| rng.next() & 1 == 1).collect();
    let fit_half = |half: bool| {
        Markov::fit(
            benign_labels
                .iter()
                .zip(&halves)
                .filter(|(_, h)| **h == half)
                .map(|(n, _)| n.label()),
        )
        .with_seen(
            benign_labels
                .iter()
                .zip(&halves)
                .filter(|(_, h)| **h == half)
                .map(|(n, _)| n.label()),
        )
    };
    let markov_half = (fit_half(false), fit_half(true));
    let markov_all = Markov::fit(benign_labels.iter().map(Names::label))
        .with_seen(benign_labels.iter().map(Names::label));

    let mut examples = Examples::default();
    let n_benign = benign_labels.len().max(1) as f32;
    let n_dga = dga_labels.len().max(1) as f32;
    let total = n_benign + n_dga;
    for (names, half) in benign_labels.iter().zip(&halves) {
        let other = if *half {
            &markov_half.0
        } else {
            &markov_half.1
        };
        examples.push(names, false, total / (2.0 * n_benign), other, hash_bits);
    }
    for (i, (names, family)) in dga_labels.iter().zip(&dga_families).enumerate() {
        let markov = if i % 2 == 0 {
            &markov_half.0
        } else {
            &markov_half.1
        };
        let weight = total / 2.0 * family_weight(family) / dga_raw.max(1e-12);
        examples.push(names, true, weight, markov, hash_bits);
    }

    // Standardisation and quantile bins over all training names.
    let mut lexical = Vec::with_capacity(LEXICAL_COUNT);
    for j in 0..LEXICAL_COUNT {
        let mut values: Vec<f64> = examples
            .lexical
            .iter()
            .filter_map(|row| row.get(j).copied())
            .collect();
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let benign_values = examples
            .lexical
            .iter()
            .zip(&examples.positive)
            .filter(|(_, p)| !**p)
            .filter_map(|(row, _)| row.get(j).copied());
        let benign_mean = benign_values.sum::<f64>() / f64::from(n_benign);
        values.sort_by(f64::total_cmp);
        let edges: Vec<f32> = (1..bins)
            .map(|k| {
                let at = (k * values.len() / bins).min(values.len().saturating_sub(1));
                single(values.get(at).copied().unwrap_or(0.0))
            })
            .collect();
        lexical.push(Lexical {
            mean: single(mean),
            std: single(var.sqrt().max(1e-6)),
            benign_mean: single(benign_mean),
            weight: 0.0,
            edges,
            bin_weights: vec![0.0; bins],
        });
    }
    let mut model = Model {
        hash_bits,
        bias: 0.0,
        lexical,
        markov: markov_all,
        ngrams: vec![0.0; 1usize << hash_bits],
    };

    // Dense inputs per example: standardised figures and bin indices.
    let dense: Vec<([f32; LEXICAL_COUNT], [usize; LEXICAL_COUNT])> = examples
        .lexical
        .iter()
        .map(|row| {
            let mut z = [0f32; LEXICAL_COUNT];
            let mut b = [0usize; LEXICAL_COUNT];
            for ((value, lex), (zj, bj)) in row
                .iter()
                .zip(&model.lexical)
                .zip(z.iter_mut().zip(b.iter_mut()))
            {
                *zj = single((value - f64::from(lex.mean)) / f64::from(lex.std));
                *bj = bin_of(&lex.edges, *value);
            }
            (z, b)
        })
        .collect();

    let mut g_ngrams = vec![0f32; model.ngrams.len()];
    let mut g_bias = 0f32;
    let mut g_weight = [0f32; LEXICAL_COUNT];
    let mut g_bins = vec![[0f32; 64]; LEXICAL_COUNT];
    let lr = options.learning_rate;
    let l2 = options.l2;
    let step = |w: &mut f32, g2: &mut f32, grad: f32| {
        let grad = grad + l2 * *w;
        *g2 += grad * grad;
        *w -= lr * grad / (g2.sqrt() + 1e-6);
    };
    let mut order: Vec<usize> = (0..examples.positive.len()).collect();
    let mut epoch_log_loss = Vec::with_capacity(options.epochs);
    for _ in 0..options.epochs {
        rng.shuffle(&mut order);
        let (mut loss, mut weight_sum) = (0f64, 0f64);
        for &i in &order {
            let (Some((z, b)), Some(&positive), Some(&weight), Some(sparse)) = (
                dense.get(i),
                examples.positive.get(i),
                examples.weight.get(i),
                examples.sparse(i),
            ) else {
                continue;
            };
            let mut logit = f64::from(model.bias);
            for ((lex, zj), bj) in model.lexical.iter().zip(z).zip(b) {
                logit += f64::from(lex.weight * zj)
                    + f64::from(lex.bin_weights.get(*bj).copied().unwrap_or(0.0));
            }
            for &(bucket, value) in sparse {
                logit +=
                    f64::from(model.ngrams.get(bucket as usize).copied().unwrap_or(0.0) * value);
            }
            let p = sigmoid(logit);
            let y = if positive { 1.0 } else { 0.0 };
            let p_true = if positive { p } else { 1.0 - p };
            loss += f64::from(weight) * -p_true.max(1e-15).ln();
            weight_sum += f64::from(weight);
            let g = weight * single(p - y);
            step(&mut model.bias, &mut g_bias, g);
            for (((lex, zj), bj), (gw, gb)) in model
                .lexical
                .iter_mut()
                .zip(z)
                .zip(b)
                .zip(g_weight.iter_mut().zip(g_bins.iter_mut()))
                .filter(|_| options.lexical)
            {
                step(&mut lex.weight, gw, g * zj);
                if let (Some(w), Some(g2)) = (lex.bin_weights.get_mut(*bj), gb.get_mut(*bj)) {
                    step(w, g2, g);
                }
            }
            for &(bucket, value) in sparse {
                let bucket = bucket as usize;
                if let (Some(w), Some(g2)) =
                    (model.ngrams.get_mut(bucket), g_ngrams.get_mut(bucket))
                {
                    step(w, g2, g * value);
                }
            }
        }
        epoch_log_loss.push(loss / weight_sum.max(1e-12));
    }

    // In-sample AUC with the training-time features.
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (i, (z, b)) in dense.iter().enumerate() {
        let mut logit = f64::from(model.bias);
        for ((lex, zj), bj) in model.lexical.iter().zip(z).zip(b) {
            logit += f64::from(lex.weight * zj)
                + f64::from(lex.bin_weights.get(*bj).copied().unwrap_or(0.0));
        }
        for &(bucket, value) in examples.sparse(i).unwrap_or_default() {
            logit += f64::from(model.ngrams.get(bucket as usize).copied().unwrap_or(0.0) * value);
        }
        if examples.positive.get(i).copied().unwrap_or(false) {
            pos.push(logit);
        } else {
            neg.push(logit);
        }
    }
    let train_auc = crate::metrics::roc_auc(&pos, &neg).unwrap_or(f64::NAN);
    let report = TrainReport {
        benign: benign_labels.len(),
        dga: dga_labels.len(),
        skipped,
        epoch_log_loss,
        train_auc,
    };
    (model, report)
}

/// A valid name kept with the offsets of its parts.
struct Names {
    name: Vec<u8>,
    label: (usize, usize),
}

impl Names {
    fn new(name: &str) -> Option<Names> {
        let normalised = Normalised::new(name).ok()?;
        let bytes = normalised.bytes();
        let parts = features::split(bytes)?;
        let start = parts.subdomain.len() + usize::from(!parts.subdomain.is_empty());
        Some(Names {
            name: bytes.to_vec(),
            label: (start, start + parts.label.len()),
        })
    }

    fn label(&self) -> &[u8] {
        self.name
            .get(self.label.0..self.label.1)
            .unwrap_or_default()
    }
}

/// Training names as feature rows.
#[derive(Default)]
struct Examples {
    positive: Vec<bool>,
    weight: Vec<f32>,
    lexical: Vec<[f64; LEXICAL_COUNT]>,
    offsets: Vec<usize>,
    sparse: Vec<(u32, f32)>,
}

impl Examples {
    fn push(&mut self, names: &Names, positive: bool, weight: f32, markov: &Markov, bits: u8) {
        let Some(parts) = features::split(&names.name) else {
            return;
        };
        self.positive.push(positive);
        self.weight.push(weight);
        self.lexical.push(features::lexical(&parts, markov));
        self.offsets.push(self.sparse.len());
        let start = self.sparse.len();
        features::hashed(&parts, bits, |h| self.sparse.push((h.bucket, h.value)));
        // The same bucket twice (a repeated n-gram, a collision) becomes one entry.
        if let Some(row) = self.sparse.get_mut(start..) {
            row.sort_by_key(|&(b, _)| b);
        }
        let mut merged: Vec<(u32, f32)> = Vec::new();
        for &(b, v) in self.sparse.get(start..).unwrap_or_default() {
            match merged.last_mut() {
                Some(last) if last.0 == b => last.1 += v,
                _ => merged.push((b, v)),
            }
        }
        self.sparse.truncate(start);
        self.sparse.extend(merged);
    }

    fn sparse(&self, i: usize) -> Option<&[(u32, f32)]> {
        let start = *self.offsets.get(i)?;
        let end = self
            .offsets
            .get(i + 1)
            .copied()
            .unwrap_or(self.sparse.len());
        self.sparse.get(start..end)
    }
}

/// SplitMix64: a small seeded generator, the same on every platform and version.
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.next() % (i as u64 + 1)).unwrap_or(0);
            items.swap(i, j);
        }
    }
}
