//! Isolation forest (Liu, Ting and Zhou 2008): anomalies are few and different, so random
//! axis-parallel cuts isolate them in fewer steps than normal points. Each tree is grown on a
//! random subsample; the score of a point is `2^(-E[h(x)] / c(ψ))`, where `h` is its path
//! length and `c(ψ)` the average path length of an unsuccessful search in a binary search tree
//! of `ψ` points. Scores near 1 are anomalies, scores well below 0.5 normal.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Training settings of [`IsolationForest::fit`]; the defaults are the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Number of trees.
    pub trees: usize,
    /// Points per tree (ψ).
    pub subsample: usize,
    /// Seed of the random source.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trees: 100,
            subsample: 256,
            seed: 1,
        }
    }
}

/// Rows that cannot be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// No rows, or rows with no features.
    #[error("no data")]
    Empty,
    /// A row whose length differs from the first row's.
    #[error("row {row} has {len} features, the first row {expected}")]
    Ragged {
        /// Row index.
        row: usize,
        /// Its length.
        len: usize,
        /// The first row's length.
        expected: usize,
    },
    /// A value that is NaN or infinite.
    #[error("row {0} holds a value that is not a finite number")]
    NotFinite(usize),
}

/// A fitted forest; serialisable so per-application models can be stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    features: usize,
    /// c(ψ) of the subsample size used.
    normaliser: f64,
    trees: Vec<Vec<INode>>,
}

/// A node of an isolation tree; children come after their parent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum INode {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    /// An external node holding `size` training points.
    Leaf { size: usize },
}

impl IsolationForest {
    /// Fits a forest on `rows` (all of one length, finite values). Deterministic for a seed.
    pub fn fit(rows: &[Vec<f64>], settings: &Settings) -> Result<IsolationForest, FitError> {
        let features = rows.first().map_or(0, Vec::len);
        if features == 0 {
            return Err(FitError::Empty);
        }
        for (row, r) in rows.iter().enumerate() {
            if r.len() != features {
                return Err(FitError::Ragged {
                    row,
                    len: r.len(),
                    expected: features,
                });
            }
            if !r.iter().all(|x| x.is_finite()) {
                return Err(FitError::NotFinite(row));
            }
        }
        let psi = settings
            .subsample
            .clamp(2, rows.len().max(2))
            .min(rows.len());
        // ceil(log2 ψ), the paper's height limit.
        let limit = usize::BITS - (psi.max(2) - 1).leading_zeros();
        let mut rng = SmallRng::seed_from_u64(settings.seed);
        let mut trees = Vec::with_capacity(settings.trees);
        for _ in 0..settings.trees.max(1) {
            // A partial Fisher–Yates shuffle: the first ψ of a permutation, without replacement.
            let mut order: Vec<usize> = (0..rows.len()).collect();
            for i in 0..psi {
                let j = rng.random_range(i..order.len());
                order.swap(i, j);
            }
            let mut points: Vec<&[f64]> = order
                .iter()
                .take(psi)
                .filter_map(|&i| rows.get(i).map(Vec::as_slice))
                .collect();
            let mut nodes = Vec::new();
            grow(&mut points, 0, limit, features, &mut rng, &mut nodes);
            trees.push(nodes);
        }
        Ok(IsolationForest {
            features,
            normaliser: average_path(psi),
            trees,
        })
    }

    /// Number of features a row must have.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The anomaly score of `row` in [0, 1]; missing features count as NaN, which goes to the
    /// right of every cut.
    pub fn score(&self, row: &[f64]) -> f64 {
        if self.trees.is_empty() || self.normaliser <= 0.0 {
            return 0.5;
        }
        let total: f64 = self.trees.iter().map(|t| path_length(t, row)).sum();
        let mean = total / self.trees.len() as f64;
        2f64.powf(-mean / self.normaliser)
    }
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of n points.
pub fn average_path(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

fn grow(
    points: &mut [&[f64]],
    depth: u32,
    limit: u32,
    features: usize,
    rng: &mut SmallRng,
    nodes: &mut Vec<INode>,
) -> usize {
    let index = nodes.len();
    nodes.push(INode::Leaf { size: points.len() });
    if depth >= limit || points.len() <= 1 {
        return index;
    }
    // A feature that still varies among these points, chosen at random.
    let ranges: Vec<(usize, f64, f64)> = (0..features)
        .filter_map(|f| {
            let (lo, hi) = points
                .iter()
                .filter_map(|p| p.get(f))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                    (lo.min(x), hi.max(x))
                });
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if ranges.is_empty() {
        return index;
    }
    let Some(&(feature, lo, hi)) = ranges.get(rng.random_range(0..ranges.len())) else {
        return index;
    };
    let threshold = rng.random_range(lo..hi);
    let mut split = 0;
    for i in 0..points.len() {
        if points
            .get(i)
            .and_then(|p| p.get(feature))
            .is_some_and(|&x| x < threshold)
        {
            points.swap(i, split);
            split += 1;
        }
    }
    let (left_points, right_points) = points.split_at_mut(split);
    let left = grow(left_points, depth + 1, limit, features, rng, nodes);
    let right = grow(right_points, depth + 1, limit, features, rng, nodes);
    if let Some(slot) = nodes.get_mut(index) {
        *slot = INode::Split {
            feature,
            threshold,
            left,
            right,
        };
    }
    index
}

/// h(x): edges to the external node, plus c(size) for the points it still held.
fn path_length(nodes: &[INode], row: &[f64]) -> f64 {
    let mut i = 0;
    let mut depth = 0.0;
    // Children come after their parent in a fitted tree; a deserialised one may not, so bound
    // the walk by the number of nodes.
    for _ in 0..nodes.len() {
        match nodes.get(i) {
            Some(&INode::Leaf { size }) => return depth + average_path(size),
            Some(&INode::Split {
                feature,
                threshold,
                left,
                right,
            }) => {
                let x = row.get(feature).copied().unwrap_or(f64::NAN);
                i = if x < threshold { left } else { right };
                depth += 1.0;
            }
            None => return depth,
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_by_hand() {
        assert_eq!(average_path(1), 0.0);
        assert_eq!(average_path(2), 1.0);
        // c(256) = 2 (ln 255 + γ) - 2 · 255/256 ≈ 10.2448
        assert!(
            (average_path(256) - 10.2448).abs() < 1e-3,
            "{}",
            average_path(256)
        );
    }

    #[test]
    fn an_outlier_scores_above_the_cluster() {
        let mut rows: Vec<Vec<f64>> = (0..500)
            .map(|i| vec![f64::from(i % 25) / 25.0, f64::from(i / 25) / 20.0])
            .collect();
        rows.push(vec![8.0, -6.0]);
        let forest = IsolationForest::fit(&rows, &Settings::default()).unwrap();
        let outlier = forest.score(&[8.0, -6.0]);
        let inlier = forest.score(&[0.5, 0.5]);
        assert!(outlier > 0.7 && inlier < 0.5, "{outlier} vs {inlier}");
        let again = IsolationForest::fit(&rows, &Settings::default()).unwrap();
        assert_eq!(forest, again, "fitting is deterministic for a seed");
    }

    const SHUTTLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/anomaly/shuttle.csv.gz"
    );

    /// Statlog Shuttle (ODDS version): 49,097 rows, 9 features, 7.2 % anomalies. Fitted on all
    /// rows without their labels, as the paper does, with its default settings.
    #[test]
    fn shuttle_anomalies_rank_above_normal_rows() {
        use std::io::Read;
        if std::env::var_os("PALISADE_CORPUS_TESTS").is_none_or(|v| v != "1") {
            println!("skipped: set PALISADE_CORPUS_TESTS=1 to score {SHUTTLE}");
            return;
        }
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(SHUTTLE).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let label = header.iter().position(|h| *h == "anomaly").unwrap();
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for line in lines {
            let mut values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
            labels.push(values.remove(label) == 1.0);
            rows.push(values);
        }
        assert_eq!(rows.len(), 49_097);
        let forest = IsolationForest::fit(&rows, &Settings::default()).unwrap();
        let (mut anomalies, mut normal) = (Vec::new(), Vec::new());
        for (row, anomaly) in rows.iter().zip(&labels) {
            let score = forest.score(row);
            if *anomaly {
                anomalies.push(score)
            } else {
                normal.push(score)
            }
        }
        let auc = crate::metrics::roc_auc(&anomalies, &normal).unwrap();
        println!(
            "shuttle: AUC {auc:.4} ({} anomalies, {} normal)",
            anomalies.len(),
            normal.len()
        );
        assert!(auc >= 0.99, "AUC {auc}");
    }

    #[test]
    fn bad_rows_are_refused() {
        assert_eq!(
            IsolationForest::fit(&[], &Settings::default()),
            Err(FitError::Empty)
        );
        let ragged = vec![vec![1.0, 2.0], vec![1.0]];
        assert_eq!(
            IsolationForest::fit(&ragged, &Settings::default()),
            Err(FitError::Ragged {
                row: 1,
                len: 1,
                expected: 2
            })
        );
        let nan = vec![vec![1.0], vec![f64::NAN]];
        assert_eq!(
            IsolationForest::fit(&nan, &Settings::default()),
            Err(FitError::NotFinite(1))
        );
    }
}
