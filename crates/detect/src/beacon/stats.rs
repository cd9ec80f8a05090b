//! Robust statistics of the beacon score: quartiles, Bowley skewness, median absolute deviation,
//! coefficient of variation. Every function takes sorted, finite values.

/// Median of sorted values; `None` when empty.
pub(crate) fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    let mid = n / 2;
    if n % 2 == 1 {
        sorted.get(mid).copied()
    } else {
        Some((sorted.get(mid.checked_sub(1)?)? + sorted.get(mid)?) / 2.0)
    }
}

/// Quartiles by Tukey's hinges without the median (the method of the `stats` Go package RITA
/// uses): Q1 and Q3 are the medians of the lower and upper halves, the middle value of an odd
/// count in neither. `None` for fewer than 2 values.
pub(crate) fn quartiles(sorted: &[f64]) -> Option<(f64, f64, f64)> {
    let n = sorted.len();
    if n < 2 {
        return None;
    }
    let (lower, upper) = if n % 2 == 0 {
        (sorted.get(..n / 2)?, sorted.get(n / 2..)?)
    } else {
        (sorted.get(..n / 2)?, sorted.get(n / 2 + 1..)?)
    };
    Some((median(lower)?, median(sorted)?, median(upper)?))
}

/// Bowley's skewness `(Q1 + Q3 - 2 Q2) / (Q3 - Q1)` and its score `1 - |skew|`. The skewness is
/// taken as 0 when the quartile range is under 10 (seconds, bytes: too small to mean anything)
/// or the median equals a quartile (RITA's rule).
pub(crate) fn bowley(sorted: &[f64]) -> Option<Skew> {
    let (q1, q2, q3) = quartiles(sorted)?;
    let range = q3 - q1;
    let skew = if range >= 10.0 && q2 != q1 && q2 != q3 {
        (q1 + q3 - 2.0 * q2) / range
    } else {
        0.0
    };
    Some(Skew {
        q1,
        median: q2,
        q3,
        skew,
        score: 1.0 - skew.abs(),
    })
}

/// Bowley skewness with the quartiles behind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Skew {
    pub(crate) q1: f64,
    pub(crate) median: f64,
    pub(crate) q3: f64,
    pub(crate) skew: f64,
    pub(crate) score: f64,
}

/// The median absolute deviation about the median, and its score `(median - MAD) / median`
/// (0 when negative); `default` when the median is under 1.
pub(crate) fn mad(sorted: &[f64], default: f64) -> Option<(f64, f64)> {
    let mid = median(sorted)?;
    let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - mid).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median(&deviations)?;
    let score = if mid >= 1.0 {
        ((mid - mad) / mid).max(0.0)
    } else {
        default
    };
    Some((mad, score))
}

/// Coefficient of variation (population standard deviation over mean) of counts; `None` when
/// they are all zero.
pub(crate) fn coefficient_of_variation(counts: &[u32]) -> Option<f64> {
    let total: f64 = counts.iter().map(|&c| f64::from(c)).sum();
    if total <= 0.0 || counts.is_empty() {
        return None;
    }
    let n = counts.len() as f64;
    let mean = total / n;
    let variance = counts
        .iter()
        .map(|&c| (f64::from(c) - mean).powi(2))
        .sum::<f64>()
        / n;
    Some(variance.sqrt() / mean)
}

/// Rounds to three decimals, as RITA reports every score.
pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Rounds up to three decimals (RITA's rule for the duration sub-scores).
pub(crate) fn ceil3(value: f64) -> f64 {
    (value * 1000.0).ceil() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_leave_the_middle_value_of_an_odd_count_out() {
        assert_eq!(quartiles(&[1.0, 2.0, 3.0, 4.0]), Some((1.5, 2.5, 3.5)));
        assert_eq!(
            quartiles(&[1.0, 2.0, 3.0, 4.0, 100.0]),
            Some((1.5, 3.0, 52.0))
        );
        assert_eq!(quartiles(&[1.0]), None);
    }

    #[test]
    fn bowley_skew_is_signed_and_zero_below_a_range_of_ten() {
        // Right-skewed: a long upper tail.
        let right = bowley(&[10.0, 20.0, 30.0, 40.0, 100.0, 200.0]).unwrap();
        assert!(right.skew > 0.5, "{}", right.skew);
        assert!((right.score - (1.0 - right.skew)).abs() < 1e-12);
        let left = bowley(&[0.0, 100.0, 160.0, 170.0, 180.0, 190.0]).unwrap();
        assert!(left.skew < -0.5, "{}", left.skew);
        // Quartile range under 10: no skewness to speak of.
        let narrow = bowley(&[100.0, 101.0, 103.0, 109.0]).unwrap();
        assert_eq!((narrow.skew, narrow.score), (0.0, 1.0));
    }

    #[test]
    fn mad_score_falls_with_dispersion() {
        let (mad_tight, tight) = mad(&[99.0, 100.0, 100.0, 101.0], 1.0).unwrap();
        let (mad_wide, wide) = mad(&[10.0, 60.0, 100.0, 300.0, 900.0], 1.0).unwrap();
        assert_eq!(mad_tight, 0.5);
        assert!(tight > 0.99 && wide < 0.2, "{tight} {wide} ({mad_wide})");
        assert_eq!(mad(&[0.0, 0.0, 0.5], 0.25).unwrap().1, 0.25);
    }

    #[test]
    fn coefficient_of_variation_of_flat_and_spiky_counts() {
        assert_eq!(coefficient_of_variation(&[3, 3, 3, 3]), Some(0.0));
        let spiky = coefficient_of_variation(&[0, 0, 0, 12]).unwrap();
        assert!((spiky - 3f64.sqrt()).abs() < 1e-12);
        assert_eq!(coefficient_of_variation(&[0, 0]), None);
    }
}
