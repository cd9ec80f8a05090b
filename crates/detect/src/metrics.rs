//! Detector evaluation: ROC AUC, and the true positive rate at a chosen false positive rate.
//!
//! It takes the scores of the positives (what should be flagged) and of the negatives
//! separately; a higher score means "more likely positive". Scores that are NaN are ordered
//! below every number, so a detector that emits NaN is never rewarded for it.

use std::cmp::Ordering;

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half. `None` when either side is empty.
pub fn roc_auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut neg = negatives.to_vec();
    neg.sort_by(total);
    let mut wins = 0.0;
    for &p in positives {
        let below = neg.partition_point(|&n| total(&n, &p) == Ordering::Less);
        let not_above = neg.partition_point(|&n| total(&n, &p) != Ordering::Greater);
        wins += below as f64 + 0.5 * (not_above - below) as f64;
    }
    Some(wins / (positives.len() as f64 * neg.len() as f64))
}

/// A threshold set on the negatives and the share of positives above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtFpr {
    /// The highest score at which at most the asked share of negatives score above it: the
    /// `⌊fpr·n⌋ + 1`-th highest negative score.
    pub threshold: f64,
    /// Share of positives scoring above the threshold.
    pub tpr: f64,
    /// Share of negatives scoring above the threshold (at most the asked rate; lower when
    /// negatives tie).
    pub fpr: f64,
}

/// The true positive rate when the threshold lets through at most `fpr` of the negatives
/// (flagged = score strictly above the threshold). `None` when either side is empty.
pub fn tpr_at_fpr(positives: &[f64], negatives: &[f64], fpr: f64) -> Option<AtFpr> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut neg = negatives.to_vec();
    neg.sort_by(|a, b| total(b, a));
    // At most n after the clamp, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let allowed = (fpr.clamp(0.0, 1.0) * neg.len() as f64).floor() as usize;
    let threshold = *neg.get(allowed.min(neg.len() - 1))?;
    let above = |s: &[f64]| {
        s.iter()
            .filter(|&v| total(v, &threshold) == Ordering::Greater)
            .count()
    };
    Some(AtFpr {
        threshold,
        tpr: above(positives) as f64 / positives.len() as f64,
        fpr: above(&neg) as f64 / neg.len() as f64,
    })
}

/// Total order on scores with NaN below everything.
fn total(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.total_cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_inverted_and_tied_rankings() {
        assert_eq!(roc_auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(roc_auc(&[0.1], &[0.9, 0.8]), Some(0.0));
        assert_eq!(roc_auc(&[0.5], &[0.5]), Some(0.5));
        assert_eq!(roc_auc(&[], &[0.5]), None);
    }

    #[test]
    fn auc_by_hand() {
        // Pairs (p, n): 0.8 beats 0.3 and 0.6, ties none; 0.4 beats 0.3, loses to 0.6;
        // 0.6 beats 0.3, ties 0.6: (2 + 1 + 1.5) / 6.
        let auc = roc_auc(&[0.8, 0.4, 0.6], &[0.3, 0.6]).unwrap();
        assert!((auc - 4.5 / 6.0).abs() < 1e-12, "{auc}");
    }

    #[test]
    fn tpr_at_fpr_by_hand() {
        let negatives: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        // 0.1 % of 1000 is one negative: the threshold is the second highest, 0.998.
        let at = tpr_at_fpr(&[0.9995, 0.9985, 0.5], &negatives, 0.001).unwrap();
        assert_eq!(at.threshold, 0.998);
        assert!((at.tpr - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(at.fpr, 0.001);
        let at = tpr_at_fpr(&[1.0], &negatives, 0.0).unwrap();
        assert_eq!((at.threshold, at.tpr, at.fpr), (0.999, 1.0, 0.0));
        assert_eq!(tpr_at_fpr(&[], &negatives, 0.01), None);
    }

    #[test]
    fn nan_scores_rank_lowest() {
        assert_eq!(roc_auc(&[f64::NAN], &[0.0]), Some(0.0));
        assert_eq!(roc_auc(&[0.0], &[f64::NAN]), Some(1.0));
    }
}
