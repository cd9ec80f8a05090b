//! The fitted classifier, its scores and explanations, and its file format.
//!
//! File format (little endian), version 2 (version 1 had 15 lexical figures and a 2^22-bit
//! set of 4- and 5-grams):
//!
//! ```text
//! magic "PDGA" | version u32 | hash_bits u8 | bins u8 | lexical count u16 | bias f32
//! per lexical figure: mean f32, std f32, benign mean f32, weight f32,
//!                     bins-1 bin edges f32 (ascending), bins bin weights f32
//! Markov order 1: 39² f32 | Markov order 2: 39³ f32 | benign 4/5/6-gram set: 2^17 u64
//! n-gram weights: 2^hash_bits f32
//! CRC-32 (IEEE) of everything before it, u32
//! ```
//!
//! Nothing may follow the checksum; every number must be finite.

use std::sync::OnceLock;

use serde::Serialize;

pub use crate::model_file::ModelError;
use crate::model_file::{Reader, put_f32s, seal, unseal};

use super::features::{
    self, ALPHABET, Hashed, LEXICAL_COUNT, LEXICAL_NAMES, Markov, Namespace, Normalised, Parts,
};

const MAGIC: &[u8; 4] = b"PDGA";
const VERSION: u32 = 2;
/// The fewest and most hash bits a file may declare (1 KiB to 16 MiB of weights).
const HASH_BITS: std::ops::RangeInclusive<u8> = 8..=22;
/// The most bins per lexical figure a file may declare.
const MAX_BINS: u8 = 64;
/// Words of the benign n-gram set.
const SEEN_WORDS: usize = 1 << (features::SEEN_BITS - 6);

/// The classifier shipped with Palisade, trained by `palisade detect train dga` on the corpus
/// the model card (docs/models/dga.md) describes.
static SHIPPED: &[u8] = include_bytes!("../../models/dga.model");

/// A DGA domain classifier: logistic regression over hashed character n-grams and binned
/// lexical figures of the registrable label.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub(crate) hash_bits: u8,
    pub(crate) bias: f32,
    pub(crate) lexical: Vec<Lexical>,
    pub(crate) markov: Markov,
    pub(crate) ngrams: Vec<f32>,
}

/// How one lexical figure enters the score.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lexical {
    /// Mean and standard deviation over the training names (the figure is standardised).
    pub mean: f32,
    pub std: f32,
    /// Mean over the benign training names: the baseline explanations compare with.
    pub benign_mean: f32,
    /// Weight of the standardised figure.
    pub weight: f32,
    /// Upper edges of all bins but the last, ascending.
    pub edges: Vec<f32>,
    /// Weight of each bin.
    pub bin_weights: Vec<f32>,
}

impl Lexical {
    fn contribution(&self, value: f64) -> f64 {
        let z = (value - f64::from(self.mean)) / f64::from(self.std);
        let bin = bin_of(&self.edges, value);
        f64::from(self.weight) * z + f64::from(self.bin_weights.get(bin).copied().unwrap_or(0.0))
    }
}

/// The bin a value falls in: the number of edges below or at it.
pub(crate) fn bin_of(edges: &[f32], value: f64) -> usize {
    edges.partition_point(|&e| f64::from(e) <= value)
}

/// Why a domain scores what it scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The name as given.
    pub domain: String,
    /// The label left of the public suffix, lowercased; `None` when the name is not a DNS
    /// name or is a public suffix itself.
    pub registrable_label: Option<String>,
    /// The public suffix.
    pub suffix: Option<String>,
    /// The score, 0 to 1.
    pub score: f64,
    /// Why there is no label to score, when there is none.
    pub unscored: Option<&'static str>,
    /// Each lexical figure of the label beside its mean over benign training names.
    pub features: Vec<FeatureValue>,
    /// The n-grams that push the score most, up or down (log-odds).
    pub top_ngrams: Vec<NgramContribution>,
}

/// One lexical figure of an explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureValue {
    /// Name of the figure.
    pub name: &'static str,
    /// Its value for this name.
    pub value: f64,
    /// Its mean over benign training names.
    pub benign_mean: f64,
    /// What it adds to the log-odds.
    pub contribution: f64,
}

/// One n-gram of an explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NgramContribution {
    /// The characters, `^` and `$` marking the start and end of the label; the public suffix
    /// appears as `.suffix`, subdomain n-grams as `sub:...`.
    pub ngram: String,
    /// What it adds to the log-odds.
    pub contribution: f64,
}

impl Model {
    /// The model shipped with this build (`crates/detect/models/dga.model`), parsed at first
    /// use.
    pub fn shipped() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| {
            // The embedded file is checked by the test `the_shipped_model_parses_and_separates`:
            // failing here is a defect of the build, not of any input.
            #[allow(clippy::expect_used)]
            Model::from_bytes(SHIPPED).expect("the embedded DGA model parses")
        })
    }

    /// The probability (0 to 1) that a name was generated by a DGA. Names that are not DNS
    /// names, bare public suffixes and reverse lookups score 0.
    pub fn score(&self, domain: &str) -> f64 {
        let Ok(name) = Normalised::new(domain) else {
            return 0.0;
        };
        let Ok(parts) = features::parts(name.bytes()) else {
            return 0.0;
        };
        sigmoid(self.logit(&parts))
    }

    /// The score with the figures behind it.
    pub fn explain(&self, domain: &str) -> Explanation {
        let mut explanation = Explanation {
            domain: domain.to_owned(),
            registrable_label: None,
            suffix: None,
            score: 0.0,
            unscored: None,
            features: Vec::new(),
            top_ngrams: Vec::new(),
        };
        let name = match Normalised::new(domain) {
            Ok(name) => name,
            Err(invalid) => {
                explanation.unscored = Some(invalid.reason());
                return explanation;
            }
        };
        let parts = match features::parts(name.bytes()) {
            Ok(parts) => parts,
            Err(invalid) => {
                explanation.unscored = Some(invalid.reason());
                return explanation;
            }
        };
        explanation.registrable_label = Some(String::from_utf8_lossy(parts.label).into_owned());
        explanation.suffix = Some(String::from_utf8_lossy(parts.suffix).into_owned());
        explanation.score = sigmoid(self.logit(&parts));
        let values = features::lexical(&parts, &self.markov);
        for ((name, value), lexical) in LEXICAL_NAMES.iter().zip(values).zip(&self.lexical) {
            explanation.features.push(FeatureValue {
                name,
                value,
                benign_mean: f64::from(lexical.benign_mean),
                contribution: lexical.contribution(value),
            });
        }
        let mut grams: Vec<NgramContribution> = Vec::new();
        features::hashed(&parts, self.hash_bits, |h| {
            let weight = self.ngrams.get(h.bucket as usize).copied().unwrap_or(0.0);
            let contribution = f64::from(weight * h.value);
            let ngram = match h.namespace {
                Namespace::Label => features::ngram_text(h.code, h.len),
                Namespace::Subdomain => format!("sub:{}", features::ngram_text(h.code, h.len)),
                Namespace::Suffix => format!(".{}", String::from_utf8_lossy(parts.suffix)),
            };
            match grams.iter_mut().find(|g| g.ngram == ngram) {
                Some(g) => g.contribution += contribution,
                None => grams.push(NgramContribution {
                    ngram,
                    contribution,
                }),
            }
        });
        grams.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        grams.truncate(10);
        explanation.top_ngrams = grams;
        explanation
    }

    /// The model file's bytes (see the module documentation for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + 4 * (self.ngrams.len() + self.markov.order1.len() + self.markov.order2.len()),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(self.hash_bits);
        let bins = self.lexical.first().map_or(0, |l| l.bin_weights.len());
        out.push(u8::try_from(bins).unwrap_or(0));
        out.extend_from_slice(&u16::try_from(self.lexical.len()).unwrap_or(0).to_le_bytes());
        put_f32s(&mut out, &[self.bias]);
        for lexical in &self.lexical {
            put_f32s(
                &mut out,
                &[
                    lexical.mean,
                    lexical.std,
                    lexical.benign_mean,
                    lexical.weight,
                ],
            );
            put_f32s(&mut out, &lexical.edges);
            put_f32s(&mut out, &lexical.bin_weights);
        }
        put_f32s(&mut out, &self.markov.order1);
        put_f32s(&mut out, &self.markov.order2);
        for word in &self.markov.seen {
            out.extend_from_slice(&word.to_le_bytes());
        }
        put_f32s(&mut out, &self.ngrams);
        seal(&mut out);
        out
    }

    /// Parse a model file; any damage is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut r = Reader::new(bytes);
        r.header(MAGIC, "DGA", VERSION)?;
        let hash_bits = r.u8("header")?;
        let bins = r.u8("header")?;
        let count = r.u16("header")?;
        if !HASH_BITS.contains(&hash_bits) {
            return Err(ModelError::Field("hash_bits"));
        }
        if bins == 0 || bins > MAX_BINS {
            return Err(ModelError::Field("bins"));
        }
        if usize::from(count) != LEXICAL_COUNT {
            return Err(ModelError::Field("lexical count"));
        }
        let expected = 16
            + usize::from(count) * 4 * (4 + 2 * usize::from(bins) - 1)
            + 4 * (ALPHABET * ALPHABET + ALPHABET * ALPHABET * ALPHABET + (1usize << hash_bits))
            + SEEN_WORDS * 8;
        if bytes.len() < expected + 4 {
            return Err(ModelError::Truncated("body"));
        }
        if bytes.len() > expected + 4 {
            return Err(ModelError::TrailingBytes(bytes.len() - expected - 4));
        }
        unseal(bytes)?;
        let bias = r.f32s(1, "bias")?.first().copied().unwrap_or(0.0);
        let mut lexical = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let stats = r.f32s(4, "lexical")?;
            let edges = r.f32s(usize::from(bins) - 1, "lexical")?;
            let bin_weights = r.f32s(usize::from(bins), "lexical")?;
            let &[mean, std, benign_mean, weight] = stats.as_slice() else {
                return Err(ModelError::Truncated("lexical"));
            };
            if std.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(ModelError::Field("standard deviation"));
            }
            if edges.windows(2).any(|w| w.first() > w.get(1)) {
                return Err(ModelError::Field("bin edges"));
            }
            lexical.push(Lexical {
                mean,
                std,
                benign_mean,
                weight,
                edges,
                bin_weights,
            });
        }
        let order1 = r.f32s(ALPHABET * ALPHABET, "markov")?;
        let order2 = r.f32s(ALPHABET * ALPHABET * ALPHABET, "markov")?;
        let seen = r
            .take(SEEN_WORDS * 8, "seen")?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let ngrams = r.f32s(1usize << hash_bits, "ngrams")?;
        Ok(Model {
            hash_bits,
            bias,
            lexical,
            markov: Markov {
                order1,
                order2,
                seen,
            },
            ngrams,
        })
    }

    /// The log-odds of a split name.
    pub(crate) fn logit(&self, parts: &Parts<'_>) -> f64 {
        let values = features::lexical(parts, &self.markov);
        let mut z = f64::from(self.bias);
        for (lexical, value) in self.lexical.iter().zip(values) {
            z += lexical.contribution(value);
        }
        let mut sum = 0f32;
        features::hashed(parts, self.hash_bits, |h: Hashed| {
            sum += self.ngrams.get(h.bucket as usize).copied().unwrap_or(0.0) * h.value;
        });
        z + f64::from(sum)
    }
}

/// The logistic function; NaN (a model whose weights overflow) gives 0.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z.is_nan() {
        return 0.0;
    }
    1.0 / (1.0 + (-z).exp())
}
