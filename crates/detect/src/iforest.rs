//! Isolation forest (Liu, Ting and Zhou 2008): anomalies are few and different, so random
//! axis-parallel cuts isolate them in fewer steps than normal points. Each tree is grown on a
//! random subsample; the score of a point is `2^(-E[h(x)] / c(ψ))`, where `h` is its path
//! length and `c(ψ)` the average path length of an unsuccessful search in a binary search tree
//! of `ψ` points. Scores near 1 are anomalies, scores well below 0.5 normal.
//!
//! With [`Settings::box_min_width`] each tree also keeps the box its subsample spanned (each
//! feature's lowest and highest value), and a point outside it is isolated sooner the further
//! out it is: a random cut over the range that includes the point would set it apart with
//! probability `d / (w + d)` (`d` its distance past the box, `w` the box's width, at least
//! the setting), so its path length is at most `1 + w / d`. Without it a cut never falls on a
//! feature that was constant in the subsample, and a point far beyond the range is cut no
//! sooner than one just past it, so an application that suddenly makes DNS queries, or sends a
//! thousand times its usual bytes, would look ordinary. The paper's forest is the default.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model_file::{ModelError, Reader};

/// Training settings of [`IsolationForest::fit`]; the defaults are the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Number of trees.
    pub trees: usize,
    /// Points per tree (ψ).
    pub subsample: usize,
    /// Seed of the random source.
    pub seed: u64,
    /// Shorten the path of a point outside a tree's box (see the module documentation); the
    /// least box width assumed, in the units of the features.
    pub box_min_width: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trees: 100,
            subsample: 256,
            seed: 1,
            box_min_width: None,
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

/// A fitted forest; the behaviour model file stores it (`encode`, `decode`).
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForest {
    features: usize,
    /// c(ψ) of the subsample size used.
    normaliser: f64,
    box_min_width: Option<f64>,
    trees: Vec<Tree>,
}

/// One isolation tree and the box its subsample spanned.
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    low: Vec<f64>,
    high: Vec<f64>,
    nodes: Vec<INode>,
}

impl Tree {
    /// The path length of `row`: `1 + w / d` for its feature furthest past the box (`w` at
    /// least `min_width`), when that is shorter than its path in the tree.
    fn path_length(&self, row: &[f64], min_width: f64) -> f64 {
        let outside = self
            .low
            .iter()
            .zip(&self.high)
            .zip(row)
            .map(|((&lo, &hi), &x)| {
                let past = (lo - x).max(x - hi);
                if past > 0.0 {
                    1.0 + (hi - lo).max(min_width) / past
                } else {
                    f64::INFINITY
                }
            })
            .fold(f64::INFINITY, f64::min);
        path_length(&self.nodes, row).min(outside)
    }
}

/// A node of an isolation tree; children come after their parent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum INode {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    /// An external node holding `size` training points; `extra` is c(size), the path length
    /// they add (computed once, not at every score).
    Leaf { size: usize, extra: f64 },
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
            let (low, high) = (0..features)
                .map(|f| {
                    points
                        .iter()
                        .filter_map(|p| p.get(f))
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                            (lo.min(x), hi.max(x))
                        })
                })
                .unzip();
            let mut nodes = Vec::new();
            grow(&mut points, 0, limit, features, &mut rng, &mut nodes);
            trees.push(Tree { low, high, nodes });
        }
        Ok(IsolationForest {
            features,
            normaliser: average_path(psi),
            box_min_width: settings.box_min_width,
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
        let total: f64 = self
            .trees
            .iter()
            .map(|t| match self.box_min_width {
                Some(width) => t.path_length(row, width),
                None => path_length(&t.nodes, row),
            })
            .sum();
        let mean = total / self.trees.len() as f64;
        2f64.powf(-mean / self.normaliser)
    }
}

/// Most trees, and nodes per tree, a model file may hold.
const MAX_TREES: u32 = 4_096;
const MAX_NODES: u32 = 1 << 16;

impl IsolationForest {
    /// Appends the forest to a model file: its sizes, then each tree's box and nodes in order
    /// (a split's left child is the node after it, so only the right one is written).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let features = u16::try_from(self.features).unwrap_or(u16::MAX);
        out.extend_from_slice(&features.to_le_bytes());
        out.extend_from_slice(&self.normaliser.to_le_bytes());
        out.extend_from_slice(&self.box_min_width.unwrap_or(-1.0).to_le_bytes());
        put_u32(out, self.trees.len());
        for tree in &self.trees {
            for x in tree.low.iter().chain(&tree.high) {
                out.extend_from_slice(&x.to_le_bytes());
            }
            put_u32(out, tree.nodes.len());
            for node in &tree.nodes {
                match *node {
                    INode::Leaf { size, .. } => {
                        out.push(0);
                        put_u32(out, size);
                    }
                    INode::Split {
                        feature,
                        threshold,
                        right,
                        ..
                    } => {
                        out.push(1);
                        let feature = u16::try_from(feature).unwrap_or(u16::MAX);
                        out.extend_from_slice(&feature.to_le_bytes());
                        out.extend_from_slice(&threshold.to_le_bytes());
                        put_u32(out, right);
                    }
                }
            }
        }
    }

    /// Reads a forest that [`IsolationForest::encode`] wrote; every feature index and child
    /// is checked, so a damaged file is an error, not a walk out of bounds.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<IsolationForest, ModelError> {
        let features = usize::from(r.u16("forest features")?);
        let normaliser = r.f64("forest normaliser")?;
        if features == 0 || normaliser < 0.0 {
            return Err(ModelError::Field("forest features"));
        }
        // Negative: no box rule.
        let width = r.f64("forest box width")?;
        let box_min_width = (width >= 0.0).then_some(width);
        let count = r.u32("forest trees")?;
        if count == 0 || count > MAX_TREES {
            return Err(ModelError::Field("forest trees"));
        }
        let mut trees = Vec::new();
        for _ in 0..count {
            let mut bounds = Vec::with_capacity(2 * features);
            for _ in 0..2 * features {
                bounds.push(r.f64("tree box")?);
            }
            let high = bounds.split_off(features);
            let low = bounds;
            if low.iter().zip(&high).any(|(lo, hi)| lo > hi) {
                return Err(ModelError::Field("tree box"));
            }
            let len = r.u32("tree nodes")?;
            if len == 0 || len > MAX_NODES {
                return Err(ModelError::Field("tree nodes"));
            }
            let len = len as usize;
            let mut nodes = Vec::new();
            for index in 0..len {
                let node = match r.u8("tree node")? {
                    0 => leaf(r.u32("tree leaf")? as usize),
                    1 => {
                        let feature = usize::from(r.u16("tree split")?);
                        let threshold = r.f64("tree split")?;
                        let right = r.u32("tree split")? as usize;
                        let left = index + 1;
                        if feature >= features || right <= left || right >= len {
                            return Err(ModelError::Field("tree split"));
                        }
                        INode::Split {
                            feature,
                            threshold,
                            left,
                            right,
                        }
                    }
                    _ => return Err(ModelError::Field("tree node")),
                };
                nodes.push(node);
            }
            trees.push(Tree { low, high, nodes });
        }
        Ok(IsolationForest {
            features,
            normaliser,
            box_min_width,
            trees,
        })
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
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

fn leaf(size: usize) -> INode {
    INode::Leaf {
        size,
        extra: average_path(size),
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
    nodes.push(leaf(points.len()));
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
            Some(&INode::Leaf { extra, .. }) => return depth + extra,
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
