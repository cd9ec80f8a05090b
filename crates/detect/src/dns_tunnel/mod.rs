//! DNS tunnelling and exfiltration over DNS: per (source, registrable domain), how much data the
//! names asked for could carry.
//!
//! A tunnel (iodine, dnscat2, DNS exfiltration tools) must put its data in the names it asks for
//! under a domain it controls: many distinct, long, random-looking subdomains of one registrable
//! domain, often with query types that carry data back (TXT, NULL, CNAME, MX). Benign software
//! asks for few distinct subdomains of a domain, short ones, made of words.
//!
//! Per key, over a tumbling window (5 minutes by default, starting at the key's first query),
//! the [`Tracker`] keeps the figures of [`Features`]; each figure is turned into a term
//! `weight × (value - baseline) / scale` (clipped to ±[`Weights::clip`]); the terms are summed
//! into `z` and the score is the logistic `1 / (1 + e^-z)`. A window whose score reaches the
//! threshold gives one [`Finding`], with every term in its [`Explanation`] and the ids of the
//! queries behind it (at most [`Config::max_evidence`]).
//!
//! Bounded memory: keys whose window is over are evicted (swept every 4,096 queries, and every
//! 256 while the table is full), at most [`Config::max_keys`] keys are kept (queries of
//! further keys are counted in [`Tracker::untracked`] and otherwise ignored), and each window
//! keeps at most [`Config::max_distinct`] distinct subdomains (and twice that many labels); past
//! that the counts stop growing (lower bounds) and the finding says so.
//!
//! What it cannot tell apart (see `docs/detection.md`): services that put hashes or encoded data
//! in names by design (antivirus and reputation lookups such as Sophos, McAfee GTI, Spamhaus
//! hash lists) look like tunnels because they are small tunnels; [`Config::ignore_suffixes`]
//! lists the known ones.

mod window;

#[cfg(test)]
mod simulate;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::names;
use window::{Window, f64_len};

/// How the tracker windows, scores and bounds its state. [`Config::default`] is the tuned one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Window length, milliseconds.
    pub window_ms: i64,
    /// Score from which a window is reported, in (0, 1).
    pub threshold: f64,
    /// Fewest queries in a window before it can be reported.
    pub min_queries: u32,
    /// Fewest distinct subdomains in a window before it can be reported.
    pub min_distinct: u32,
    /// Most keys (source, registrable domain) kept at once.
    pub max_keys: usize,
    /// Most distinct subdomains counted per window (labels: twice as many).
    pub max_distinct: usize,
    /// Most observation ids kept as evidence per finding.
    pub max_evidence: usize,
    /// Name suffixes (whole labels, lowercase) never reported: lookup services that encode data
    /// in names by design.
    pub ignore_suffixes: Vec<String>,
    /// The weights and baselines of the score.
    pub weights: Weights,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            window_ms: 5 * 60 * 1000,
            threshold: 0.8,
            min_queries: 4,
            min_distinct: 4,
            max_keys: 50_000,
            max_distinct: 256,
            max_evidence: 20,
            ignore_suffixes: [
                // Antivirus and reputation lookups: hashes of files and URLs in the names.
                "sophosxl.net",
                "avqs.mcafee.com",
                "avts.mcafee.com",
                "gti.mcafee.com",
                "e5.sk",
                "dq.spamhaus.net",
                "zen.spamhaus.org",
                "dbl.spamhaus.org",
                "hashbl.surbl.org",
                "multi.surbl.org",
                "multi.uribl.com",
                "bl.spamcop.net",
                "b.barracudacentral.org",
                "dnsbl.sorbs.net",
                "in-addr.arpa",
                "ip6.arpa",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            weights: Weights::default(),
        }
    }
}

/// One term of the score: `weight × (value - baseline) / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    /// What a benign key typically shows (the term is 0 there).
    pub baseline: f64,
    /// How far from the baseline counts as one unit.
    pub scale: f64,
    /// The term's weight.
    pub weight: f64,
}

/// The terms of the score, one per feature (see [`Features`] for what each measures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Mean length of the distinct subdomains, characters.
    pub mean_subdomain_len: Term,
    /// Length of the longest subdomain, characters.
    pub max_subdomain_len: Term,
    /// Length-weighted mean Shannon entropy of the distinct labels, bits per character.
    pub label_entropy: Term,
    /// log2 of the bytes carried in names per minute.
    pub log2_name_bytes_per_minute: Term,
    /// log2 of the number of distinct subdomains.
    pub log2_distinct_subdomains: Term,
    /// Share of typed queries asking for TXT, NULL, CNAME, MX, SRV or PRIVATE.
    pub data_type_share: Term,
    /// Constant added to the sum of the terms.
    pub bias: f64,
    /// Largest absolute value of one term, so no single figure decides alone.
    pub clip: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            mean_subdomain_len: Term {
                baseline: 50.0,
                scale: 10.0,
                weight: 1.0,
            },
            max_subdomain_len: Term {
                baseline: 64.0,
                scale: 16.0,
                weight: 0.75,
            },
            label_entropy: Term {
                baseline: 3.7,
                scale: 0.5,
                weight: 1.0,
            },
            log2_name_bytes_per_minute: Term {
                baseline: 8.0,
                scale: 1.0,
                weight: 0.5,
            },
            log2_distinct_subdomains: Term {
                baseline: 5.0,
                scale: 1.0,
                weight: 0.5,
            },
            data_type_share: Term {
                baseline: 0.3,
                scale: 0.5,
                weight: 1.0,
            },
            bias: -0.5,
            clip: 4.0,
        }
    }
}

/// The figures of one key's window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Features {
    /// Queries in the window.
    pub queries: u32,
    /// Distinct subdomains (the part left of the registrable domain).
    pub distinct_subdomains: u32,
    /// Whether the distinct sets were full, so the distinct counts are lower bounds.
    pub saturated: bool,
    /// Mean length of the distinct subdomains, characters.
    pub mean_subdomain_len: f64,
    /// Longest subdomain, characters.
    pub max_subdomain_len: u32,
    /// Shannon entropy (character level) of each distinct label, averaged weighted by length.
    pub label_entropy: f64,
    /// Share of the typed queries asking for a type that carries data back; `None` when no
    /// query type was known.
    pub data_type_share: Option<f64>,
    /// Total length of the distinct subdomains over the window length, per minute.
    pub name_bytes_per_minute: f64,
}

/// Why a window was reported: each term of the score with the figure behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The window's figures.
    pub features: Features,
    /// Each term: feature, value, baseline, scale, weight and contribution, largest first.
    pub terms: Vec<TermValue>,
    /// The sum of the contributions and the bias.
    pub z: f64,
    /// The threshold the score reached.
    pub threshold: f64,
    /// The same in a sentence.
    pub summary: String,
}

/// One term of a score as computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TermValue {
    /// Which feature (`mean_subdomain_len`, ...).
    pub feature: &'static str,
    /// Its value in the window (log2 already taken for the log2 features).
    pub value: f64,
    /// What a benign key typically shows.
    pub baseline: f64,
    /// One unit of distance from the baseline.
    pub scale: f64,
    /// The term's weight.
    pub weight: f64,
    /// `weight × (value - baseline) / scale`, clipped.
    pub contribution: f64,
}

/// A (source, registrable domain) window that looks like a tunnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The source (client) as the caller named it.
    pub source: String,
    /// The registrable domain, lowercase.
    pub domain: String,
    /// The score, in [0, 1].
    pub score: f64,
    /// Why.
    pub explanation: Explanation,
    /// Ids of the window's queries with new subdomains, in order, at most
    /// [`Config::max_evidence`].
    pub evidence: Vec<String>,
    /// When the window started, milliseconds.
    pub window_start_ms: i64,
}

/// Per (source, registrable domain) state: feed it queries in time order, take its findings.
#[derive(Debug, Clone)]
pub struct Tracker {
    config: Config,
    keys: HashMap<(String, String), Window>,
    /// Latest time seen.
    now_ms: i64,
    /// Observations since the last sweep of idle keys.
    since_sweep: u32,
    untracked: u64,
}

impl Tracker {
    /// A tracker with no state.
    pub fn new(config: Config) -> Tracker {
        Tracker {
            config,
            keys: HashMap::new(),
            now_ms: i64::MIN,
            since_sweep: 0,
            untracked: 0,
        }
    }

    /// One DNS query (or a connection whose destination name is `name`). `qtype` when known
    /// ("A", "TXT", "NULL", "CNAME", ...). `id` is the observation's id, kept as evidence.
    /// Returns a finding when the (source, registrable domain) window reaches the threshold,
    /// at most once per window and key. Names that are not DNS names under a known public
    /// suffix, and names under [`Config::ignore_suffixes`], are ignored.
    pub fn observe(
        &mut self,
        time_ms: i64,
        source: &str,
        name: &str,
        qtype: Option<&str>,
        id: &str,
    ) -> Option<Finding> {
        self.now_ms = self.now_ms.max(time_ms);
        self.since_sweep = self.since_sweep.saturating_add(1);
        // A sweep walks every key: every 4,096 queries, and when the table is full at most every
        // 256 (a full table of live keys must not make each query walk it).
        let full = self.keys.len() >= self.config.max_keys;
        if self.since_sweep >= 4096 || (full && self.since_sweep >= 256) {
            self.sweep();
        }
        let split = names::split(name)?;
        let domain = split.registrable.to_ascii_lowercase();
        if self.ignored(name) {
            return None;
        }
        let key = (source.to_owned(), domain);
        if !self.keys.contains_key(&key) && self.keys.len() >= self.config.max_keys {
            self.untracked = self.untracked.saturating_add(1);
            return None;
        }
        let config = &self.config;
        let window = self.keys.entry(key).or_insert_with(|| Window::new(time_ms));
        if time_ms.saturating_sub(window.start_ms) >= config.window_ms {
            *window = Window::new(time_ms);
        }
        let new = window.add(time_ms, split.subdomain, qtype, config.max_distinct);
        if new && window.evidence.len() < config.max_evidence {
            window.evidence.push(id.to_owned());
        }
        if window.reported
            || window.queries < config.min_queries
            || window.distinct_subdomains()
                < usize::try_from(config.min_distinct).unwrap_or(usize::MAX)
        {
            return None;
        }
        let features = features(window, config.window_ms);
        let (score, explanation) = score(&features, config);
        if score < config.threshold {
            return None;
        }
        window.reported = true;
        Some(Finding {
            source: source.to_owned(),
            domain: split.registrable.to_ascii_lowercase(),
            score,
            explanation,
            evidence: window.evidence.clone(),
            window_start_ms: window.start_ms,
        })
    }

    /// Queries ignored because [`Config::max_keys`] keys were already kept.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Keys kept now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// The score of a key's current window, whether reported or not (for the evaluation).
    #[cfg(test)]
    fn current_score(&self, source: &str, domain: &str) -> Option<f64> {
        let w = self.keys.get(&(source.to_owned(), domain.to_owned()))?;
        Some(score(&features(w, self.config.window_ms), &self.config).0)
    }

    /// Drops the keys whose window is over.
    fn sweep(&mut self) {
        self.since_sweep = 0;
        let (now, len) = (self.now_ms, self.config.window_ms);
        self.keys
            .retain(|_, w| now.saturating_sub(w.start_ms) < len);
    }

    fn ignored(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.config.ignore_suffixes.iter().any(|suffix| {
            let (n, s) = (name.len(), suffix.len());
            n >= s
                && name
                    .get(n - s..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
                && (n == s || name.as_bytes().get(n - s - 1) == Some(&b'.'))
        })
    }
}

/// The window's figures, the rate over the whole window length.
fn features(w: &Window, window_ms: i64) -> Features {
    let distinct = w.distinct_subdomains();
    let minutes = (window_ms as f64 / 60_000.0).max(1.0 / 60.0);
    let mean_len = if distinct == 0 {
        0.0
    } else {
        w.subdomain_bytes as f64 / f64_len(distinct)
    };
    Features {
        queries: w.queries,
        distinct_subdomains: u32::try_from(distinct).unwrap_or(u32::MAX),
        saturated: w.saturated,
        mean_subdomain_len: mean_len,
        max_subdomain_len: u32::try_from(w.max_subdomain_len).unwrap_or(u32::MAX),
        label_entropy: if w.label_bytes == 0 {
            0.0
        } else {
            w.label_entropy_bytes / w.label_bytes as f64
        },
        data_type_share: (w.typed > 0).then(|| f64::from(w.data_typed) / f64::from(w.typed)),
        name_bytes_per_minute: w.subdomain_bytes as f64 / minutes,
    }
}

/// The logistic score of a window's figures and its explanation.
pub fn score(f: &Features, config: &Config) -> (f64, Explanation) {
    let w = &config.weights;
    let mut terms = vec![
        term(
            "mean_subdomain_len",
            f.mean_subdomain_len,
            &w.mean_subdomain_len,
            w.clip,
        ),
        term(
            "max_subdomain_len",
            f64::from(f.max_subdomain_len),
            &w.max_subdomain_len,
            w.clip,
        ),
        term("label_entropy", f.label_entropy, &w.label_entropy, w.clip),
        term(
            "log2_name_bytes_per_minute",
            f.name_bytes_per_minute.max(1.0).log2(),
            &w.log2_name_bytes_per_minute,
            w.clip,
        ),
        term(
            "log2_distinct_subdomains",
            f64::from(f.distinct_subdomains.max(1)).log2(),
            &w.log2_distinct_subdomains,
            w.clip,
        ),
    ];
    if let Some(share) = f.data_type_share {
        terms.push(term("data_type_share", share, &w.data_type_share, w.clip));
    }
    let z = w.bias + terms.iter().map(|t| t.contribution).sum::<f64>();
    let score = 1.0 / (1.0 + (-z).exp());
    terms.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    let top: Vec<String> = terms
        .iter()
        .filter(|t| t.contribution > 0.0)
        .take(3)
        .map(|t| {
            format!(
                "{} {:.1} (benign about {:.1})",
                t.feature, t.value, t.baseline
            )
        })
        .collect();
    let summary = format!(
        "{} queries, {} distinct subdomains{} in {} s: score {:.3} against {:.2}; most weight: {}",
        f.queries,
        f.distinct_subdomains,
        if f.saturated { " (at least)" } else { "" },
        config.window_ms / 1000,
        score,
        config.threshold,
        if top.is_empty() {
            "none".to_owned()
        } else {
            top.join(", ")
        },
    );
    let explanation = Explanation {
        features: f.clone(),
        terms,
        z,
        threshold: config.threshold,
        summary,
    };
    (score, explanation)
}

fn term(feature: &'static str, value: f64, t: &Term, clip: f64) -> TermValue {
    let raw = if t.scale == 0.0 {
        0.0
    } else {
        t.weight * (value - t.baseline) / t.scale
    };
    let contribution = if raw.is_nan() {
        0.0
    } else {
        raw.clamp(-clip.abs(), clip.abs())
    };
    TermValue {
        feature,
        value,
        baseline: t.baseline,
        scale: t.scale,
        weight: t.weight,
        contribution,
    }
}
