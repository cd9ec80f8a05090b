//! DGA domain classifier: how likely a name was made by a domain generation algorithm (malware
//! deriving its rendezvous names from the date or a seed) rather than by people.
//!
//! The registrable label (the label left of the public suffix, from the Public Suffix List) is
//! scored by logistic regression over hashed character 1- to 5-grams (with start and end
//! markers), n-grams of the subdomain labels, the public suffix, and binned lexical figures:
//! length, entropy, digit, vowel and hex ratios, longest consonant run, distinct characters,
//! and the label's log-likelihood under character Markov models of benign labels.
//!
//! Layout:
//! - `features`: name checking and splitting, lexical figures, Markov models, n-gram hashing.
//! - `model`: [`Model`]: scores, explanations and the model file format.
//! - `training`: [`train`] by Adagrad, with a [`TrainReport`] to check it converged.
//! - `evaluation`: corpus readers and the held-out-family evaluation ([`evaluate`]).

mod evaluation;
mod features;
mod model;
mod training;

pub use evaluation::{
    EvalOptions, Evaluation, FamilyRecall, FoldEvaluation, Generated, Skipped, evaluate,
    read_generated, read_names,
};
pub use features::{Invalid, LEXICAL_NAMES, scorable};
pub use model::{Explanation, FeatureValue, Model, ModelError, NgramContribution};
pub use training::{TrainOptions, TrainReport, train, train_families, train_with_report};

#[cfg(test)]
mod tests;
