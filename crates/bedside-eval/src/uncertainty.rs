//! Uncertainty-based referral: keep the most certain cases, refer the rest to a clinician.
//!
//! Cases are ordered by increasing uncertainty. Cases with equal uncertainty are kept or referred
//! together (curve points sit only where the uncertainty changes) and, for the risk–coverage
//! area, in expectation over their order, so results never depend on row order.

use serde::Serialize;

use crate::error::{EvalError, Result, check_finite, check_len, check_nonempty};

/// Accuracy of the kept cases as a function of the fraction kept.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReferralCurve {
    /// Largest uncertainty kept at each point.
    pub threshold: Vec<f64>,
    /// Fraction of cases kept.
    pub kept_fraction: Vec<f64>,
    /// Accuracy among kept cases.
    pub accuracy: Vec<f64>,
}

fn sorted_blocks(uncertainty: &[f64]) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..uncertainty.len()).collect();
    order.sort_by(|&a, &b| uncertainty[a].total_cmp(&uncertainty[b]));
    let mut ends = Vec::new();
    for k in 0..order.len() {
        if k + 1 == order.len() || uncertainty[order[k + 1]] != uncertainty[order[k]] {
            ends.push(k + 1);
        }
    }
    (order, ends)
}

fn check(uncertainty: &[f64], correct: &[bool]) -> Result<()> {
    check_nonempty(uncertainty.len())?;
    check_len("correct", correct.len(), uncertainty.len())?;
    check_finite("uncertainty", uncertainty)
}

/// The referral curve: one point per distinct uncertainty value.
pub fn compute_referral_curve(uncertainty: &[f64], correct: &[bool]) -> Result<ReferralCurve> {
    check(uncertainty, correct)?;
    let (order, ends) = sorted_blocks(uncertainty);
    let n = order.len() as f64;
    let mut curve = ReferralCurve {
        threshold: Vec::with_capacity(ends.len()),
        kept_fraction: Vec::with_capacity(ends.len()),
        accuracy: Vec::with_capacity(ends.len()),
    };
    let mut right = 0usize;
    let mut start = 0;
    for &end in &ends {
        right += order[start..end].iter().filter(|&&i| correct[i]).count();
        curve.threshold.push(uncertainty[order[end - 1]]);
        curve.kept_fraction.push(end as f64 / n);
        curve.accuracy.push(right as f64 / end as f64);
        start = end;
    }
    Ok(curve)
}

/// Any metric of the kept cases at the given kept fractions. At fraction `f` the
/// `⌈f·n⌉` most certain cases are kept, extended to the end of a block of equal uncertainty.
pub fn compute_referral_curve_with<F>(
    uncertainty: &[f64],
    fractions: &[f64],
    metric: F,
) -> Result<Vec<(f64, Option<f64>)>>
where
    F: Fn(&[usize]) -> Option<f64>,
{
    check_nonempty(uncertainty.len())?;
    check_finite("uncertainty", uncertainty)?;
    let (order, ends) = sorted_blocks(uncertainty);
    let n = order.len();
    let mut out = Vec::with_capacity(fractions.len());
    for &f in fractions {
        if !(0.0..=1.0).contains(&f) {
            return Err(EvalError::InvalidOption {
                option: "kept fraction",
                reason: format!("{f} is not in [0, 1]"),
            });
        }
        let want = ((f * n as f64).ceil() as usize).clamp(1, n);
        let k = ends[ends.partition_point(|&e| e < want)];
        out.push((k as f64 / n as f64, metric(&order[..k])));
    }
    Ok(out)
}

/// Area under the risk–coverage curve (AURC, Geifman et al.): the mean over k = 1..n of the
/// error rate among the k most certain cases (expected over orderings of tied uncertainties).
/// Lower is better.
pub fn compute_aurc(uncertainty: &[f64], correct: &[bool]) -> Result<f64> {
    check(uncertainty, correct)?;
    let (order, ends) = sorted_blocks(uncertainty);
    let n = order.len();
    let mut errors_before = 0.0f64;
    let mut start = 0usize;
    let mut total = 0.0;
    for &end in &ends {
        let block = &order[start..end];
        let block_errors = block.iter().filter(|&&i| !correct[i]).count() as f64;
        let rate = block_errors / block.len() as f64;
        for k in start + 1..=end {
            let risk = (errors_before + (k - start) as f64 * rate) / k as f64;
            total += risk;
        }
        errors_before += block_errors;
        start = end;
    }
    Ok(total / n as f64)
}

/// The operating point of a referral threshold.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ReferralPoint {
    /// Keep cases with uncertainty `<=` this.
    pub threshold: f64,
    /// Fraction kept.
    pub kept_fraction: f64,
    /// Accuracy among kept cases.
    pub accuracy: f64,
}

/// The threshold that keeps the most cases while the kept accuracy is at least `target`
/// (`None` if no threshold reaches it).
pub fn threshold_for_accuracy(
    uncertainty: &[f64],
    correct: &[bool],
    target: f64,
) -> Result<Option<ReferralPoint>> {
    let curve = compute_referral_curve(uncertainty, correct)?;
    Ok((0..curve.threshold.len())
        .rev()
        .find(|&k| curve.accuracy[k] >= target)
        .map(|k| ReferralPoint {
            threshold: curve.threshold[k],
            kept_fraction: curve.kept_fraction[k],
            accuracy: curve.accuracy[k],
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referral_by_hand() {
        let u = [0.1, 0.2, 0.2, 0.9];
        let c = [true, true, false, false];
        let curve = compute_referral_curve(&u, &c).unwrap();
        assert_eq!(curve.kept_fraction, vec![0.25, 0.75, 1.0]);
        assert_eq!(curve.accuracy, vec![1.0, 2.0 / 3.0, 0.5]);
        // k=1: 0; k=2: (0 + 0.5)/2; k=3: 1/3; k=4: 2/4
        let aurc = compute_aurc(&u, &c).unwrap();
        assert!((aurc - (0.0 + 0.25 + 1.0 / 3.0 + 0.5) / 4.0).abs() < 1e-15);
        let p = threshold_for_accuracy(&u, &c, 0.6).unwrap().unwrap();
        assert_eq!(p.threshold, 0.2);
        assert!(threshold_for_accuracy(&u, &c, 1.1).unwrap().is_none());
    }

    #[test]
    fn referral_with_any_metric_keeps_tied_blocks_together() {
        let u = [0.3, 0.1, 0.2, 0.2, 0.5];
        let kept_sizes =
            compute_referral_curve_with(&u, &[0.2, 0.4, 0.6, 1.0], |rows| Some(rows.len() as f64))
                .unwrap();
        // 0.4 of 5 = 2 cases, but the two cases at 0.2 are kept together -> 3
        let sizes: Vec<f64> = kept_sizes.iter().map(|(_, v)| v.unwrap()).collect();
        assert_eq!(sizes, vec![1.0, 3.0, 3.0, 5.0]);
        let first = compute_referral_curve_with(&u, &[0.2], |rows| Some(rows[0] as f64)).unwrap();
        assert_eq!(first[0].1, Some(1.0));
        assert!(compute_referral_curve_with(&u, &[1.5], |_| None).is_err());
    }

    #[test]
    fn aurc_of_a_perfect_ranking_is_the_minimum() {
        // errors ranked last: AURC = (1/n) Σ_{k>n-e} (k-(n-e))/k
        let u: Vec<f64> = (0..10).map(f64::from).collect();
        let c: Vec<bool> = (0..10).map(|i| i < 7).collect();
        let expect = (8..=10).map(|k| (k - 7) as f64 / k as f64).sum::<f64>() / 10.0;
        assert!((compute_aurc(&u, &c).unwrap() - expect).abs() < 1e-15);
    }
}
