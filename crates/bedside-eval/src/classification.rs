//! Binary classification metrics: ranking (AUROC, AUPRC), threshold metrics, calibration.
//!
//! Labels are `bool` (true = positive class); scores are any real numbers where larger means
//! "more likely positive" (probabilities for the calibration metrics). Conventions follow
//! scikit-learn: a case is predicted positive when `score >= threshold`; AUROC counts ties as
//! one half; AUPRC is average precision (step interpolation, no trapezoid).

use serde::Serialize;

use crate::error::{EvalError, Result, check_finite, check_len, check_nonempty};
use crate::stats::sigmoid;

fn check_inputs(labels: &[bool], scores: &[f64]) -> Result<()> {
    check_nonempty(labels.len())?;
    check_len("scores", scores.len(), labels.len())?;
    check_finite("scores", scores)
}

fn class_counts(labels: &[bool]) -> (usize, usize) {
    let pos = labels.iter().filter(|&&l| l).count();
    (pos, labels.len() - pos)
}

/// Indices sorted by decreasing score (stable), plus the start of each block of equal scores.
fn order_desc(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// A receiver operating characteristic curve: one point per distinct score, from (0, 0).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RocCurve {
    /// False-positive rate at each threshold.
    pub fpr: Vec<f64>,
    /// True-positive rate (sensitivity) at each threshold.
    pub tpr: Vec<f64>,
    /// Thresholds (decreasing; the first is +∞, predicting nobody positive).
    pub thresholds: Vec<f64>,
}

/// Computes the ROC curve. Errors if only one class is present.
pub fn compute_roc_curve(labels: &[bool], scores: &[f64]) -> Result<RocCurve> {
    check_inputs(labels, scores)?;
    let (pos, neg) = class_counts(labels);
    if pos == 0 || neg == 0 {
        return Err(EvalError::Undefined {
            metric: "ROC curve",
            reason: "needs both positive and negative cases".into(),
        });
    }
    let order = order_desc(scores);
    let mut fpr = vec![0.0];
    let mut tpr = vec![0.0];
    let mut thresholds = vec![f64::INFINITY];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        fpr.push(fp as f64 / neg as f64);
        tpr.push(tp as f64 / pos as f64);
        thresholds.push(s);
    }
    Ok(RocCurve {
        fpr,
        tpr,
        thresholds,
    })
}

/// Area under the ROC curve (Mann–Whitney; tied scores count one half).
pub fn compute_auroc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    check_inputs(labels, scores)?;
    let ranked = RankedScores::new(scores);
    ranked
        .auroc_weighted(labels, None)
        .ok_or(EvalError::Undefined {
            metric: "AUROC",
            reason: "needs both positive and negative cases".into(),
        })
}

/// Scores sorted once, so that AUROC can be recomputed in O(n) for many case weightings
/// (bootstrap replicates give each case an integer weight: how often it was drawn).
#[derive(Debug, Clone)]
pub struct RankedScores {
    order: Vec<usize>,
    /// Start offsets (into `order`) of blocks of equal scores, plus a final `n`.
    blocks: Vec<usize>,
}

impl RankedScores {
    /// Sorts the scores (decreasing) and records blocks of ties.
    pub fn new(scores: &[f64]) -> Self {
        let order = order_desc(scores);
        let mut blocks = Vec::with_capacity(order.len() + 1);
        for (k, &i) in order.iter().enumerate() {
            if k == 0 || scores[i] != scores[order[k - 1]] {
                blocks.push(k);
            }
        }
        blocks.push(order.len());
        RankedScores { order, blocks }
    }

    /// AUROC with optional per-case weights (`None` = all 1). `None` if a class has zero weight.
    /// `labels` (and `weights`) must have one entry per score; otherwise the result is `None`.
    pub fn auroc_weighted(&self, labels: &[bool], weights: Option<&[u32]>) -> Option<f64> {
        if labels.len() != self.order.len() || weights.is_some_and(|w| w.len() != labels.len()) {
            return None;
        }
        let mut cum_pos = 0.0f64;
        let mut total_neg = 0.0f64;
        let mut num = 0.0f64;
        for b in self.blocks.windows(2) {
            let (mut wp, mut wn) = (0.0f64, 0.0f64);
            for &i in &self.order[b[0]..b[1]] {
                let w = weights.map_or(1.0, |w| w[i] as f64);
                if labels[i] {
                    wp += w;
                } else {
                    wn += w;
                }
            }
            num += wn * (cum_pos + 0.5 * wp);
            cum_pos += wp;
            total_neg += wn;
        }
        if cum_pos == 0.0 || total_neg == 0.0 {
            return None;
        }
        Some(num / (cum_pos * total_neg))
    }
}

/// A precision–recall curve, one point per distinct score (decreasing thresholds).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PrCurve {
    /// Precision at each threshold.
    pub precision: Vec<f64>,
    /// Recall at each threshold.
    pub recall: Vec<f64>,
    /// Thresholds, decreasing.
    pub thresholds: Vec<f64>,
}

/// Computes the precision–recall curve. Errors if there are no positive cases.
pub fn compute_pr_curve(labels: &[bool], scores: &[f64]) -> Result<PrCurve> {
    check_inputs(labels, scores)?;
    let (pos, _) = class_counts(labels);
    if pos == 0 {
        return Err(EvalError::Undefined {
            metric: "precision-recall curve",
            reason: "needs at least one positive case".into(),
        });
    }
    let order = order_desc(scores);
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut curve = PrCurve {
        precision: Vec::new(),
        recall: Vec::new(),
        thresholds: Vec::new(),
    };
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        curve.precision.push(tp as f64 / (tp + fp) as f64);
        curve.recall.push(tp as f64 / pos as f64);
        curve.thresholds.push(s);
    }
    Ok(curve)
}

/// Area under the precision–recall curve as average precision (scikit-learn's
/// `average_precision_score`): Σ (Rₙ − Rₙ₋₁) Pₙ.
pub fn compute_auprc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    let curve = compute_pr_curve(labels, scores)?;
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for (p, r) in curve.precision.iter().zip(&curve.recall) {
        ap += (r - prev_recall) * p;
        prev_recall = *r;
    }
    Ok(ap)
}

/// Counts of a 2 × 2 confusion matrix. Also a streaming accumulator ([`ConfusionMatrix::update`]).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    pub fn_: u64,
}

impl ConfusionMatrix {
    /// Builds the matrix from labels and binary predictions.
    pub fn from_predictions(labels: &[bool], predicted: &[bool]) -> Result<Self> {
        check_len("predictions", predicted.len(), labels.len())?;
        let mut m = ConfusionMatrix::default();
        m.update(labels, predicted);
        Ok(m)
    }

    /// Builds the matrix predicting positive when `score >= threshold`.
    pub fn at_threshold(labels: &[bool], scores: &[f64], threshold: f64) -> Result<Self> {
        check_inputs(labels, scores)?;
        let mut m = ConfusionMatrix::default();
        for (&l, &s) in labels.iter().zip(scores) {
            m.add(l, s >= threshold);
        }
        Ok(m)
    }

    /// Adds one case.
    pub fn add(&mut self, label: bool, predicted: bool) {
        match (label, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    /// Adds a batch of cases (lengths must match; extra entries are ignored).
    pub fn update(&mut self, labels: &[bool], predicted: &[bool]) {
        for (&l, &p) in labels.iter().zip(predicted) {
            self.add(l, p);
        }
    }

    /// Number of cases.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }

    /// All derived rates (NaN where a denominator is zero).
    pub fn metrics(&self) -> ThresholdMetrics {
        let r = |a: u64, b: u64| {
            if b == 0 {
                f64::NAN
            } else {
                a as f64 / b as f64
            }
        };
        let (tp, fp, tn, fn_) = (self.tp, self.fp, self.tn, self.fn_);
        let precision = r(tp, tp + fp);
        let recall = r(tp, tp + fn_);
        ThresholdMetrics {
            accuracy: r(tp + tn, self.total()),
            sensitivity: recall,
            specificity: r(tn, tn + fp),
            ppv: precision,
            npv: r(tn, tn + fn_),
            f1: r(2 * tp, 2 * tp + fp + fn_),
            false_positive_rate: r(fp, fp + tn),
            false_negative_rate: r(fn_, fn_ + tp),
            selection_rate: r(tp + fp, self.total()),
        }
    }
}

/// Rates derived from a confusion matrix (NaN where undefined).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ThresholdMetrics {
    /// (TP + TN) / n.
    pub accuracy: f64,
    /// TP / (TP + FN), also recall and true-positive rate.
    pub sensitivity: f64,
    /// TN / (TN + FP), also true-negative rate.
    pub specificity: f64,
    /// TP / (TP + FP), positive predictive value (precision).
    pub ppv: f64,
    /// TN / (TN + FN), negative predictive value.
    pub npv: f64,
    /// 2TP / (2TP + FP + FN).
    pub f1: f64,
    /// FP / (FP + TN).
    pub false_positive_rate: f64,
    /// FN / (FN + TP).
    pub false_negative_rate: f64,
    /// (TP + FP) / n, the fraction predicted positive.
    pub selection_rate: f64,
}

/// The largest threshold whose sensitivity (predicting `score >= threshold`) reaches `target`.
pub fn threshold_for_sensitivity(labels: &[bool], scores: &[f64], target: f64) -> Result<f64> {
    check_inputs(labels, scores)?;
    if !(0.0..=1.0).contains(&target) {
        return Err(EvalError::InvalidOption {
            option: "target sensitivity",
            reason: format!("{target} is not in [0, 1]"),
        });
    }
    let (pos, _) = class_counts(labels);
    if pos == 0 {
        return Err(EvalError::Undefined {
            metric: "sensitivity",
            reason: "no positive cases".into(),
        });
    }
    let order = order_desc(scores);
    let mut tp = 0usize;
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            tp += usize::from(labels[order[i]]);
            i += 1;
        }
        if tp as f64 / pos as f64 >= target - 1e-12 {
            return Ok(s);
        }
    }
    Ok(scores[order[order.len() - 1]])
}

/// Brier score for binary outcomes: mean of (p − y)².
pub fn compute_brier(labels: &[bool], probabilities: &[f64]) -> Result<f64> {
    check_inputs(labels, probabilities)?;
    let sum: f64 = labels
        .iter()
        .zip(probabilities)
        .map(|(&y, &p)| (p - f64::from(u8::from(y))).powi(2))
        .sum();
    Ok(sum / labels.len() as f64)
}

/// One bin of a reliability (calibration) curve.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ReliabilityBin {
    /// Lower edge of the bin.
    pub lower: f64,
    /// Upper edge of the bin.
    pub upper: f64,
    /// Cases in the bin.
    pub count: usize,
    /// Mean predicted probability in the bin.
    pub mean_predicted: f64,
    /// Observed fraction of positives in the bin.
    pub observed: f64,
}

/// Reliability curve with `n_bins` equal-width bins on [0, 1]. Bins are closed on the right
/// (`(k/n, (k+1)/n]`, with 0 in the first), as scikit-learn's `calibration_curve`. Empty bins
/// are omitted.
pub fn compute_reliability_curve(
    labels: &[bool],
    probabilities: &[f64],
    n_bins: usize,
) -> Result<Vec<ReliabilityBin>> {
    check_inputs(labels, probabilities)?;
    if n_bins == 0 {
        return Err(EvalError::InvalidOption {
            option: "n_bins",
            reason: "must be at least 1".into(),
        });
    }
    if let Some(row) = probabilities.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(EvalError::InvalidOption {
            option: "probabilities",
            reason: format!("value at row {row} is outside [0, 1]"),
        });
    }
    let mut count = vec![0usize; n_bins];
    let mut sum_p = vec![0.0; n_bins];
    let mut sum_y = vec![0.0; n_bins];
    let step = 1.0 / n_bins as f64;
    let inner: Vec<f64> = (1..n_bins).map(|i| i as f64 * step).collect();
    for (&y, &p) in labels.iter().zip(probabilities) {
        let b = inner.partition_point(|&e| e < p);
        count[b] += 1;
        sum_p[b] += p;
        sum_y[b] += f64::from(u8::from(y));
    }
    Ok((0..n_bins)
        .filter(|&b| count[b] > 0)
        .map(|b| ReliabilityBin {
            lower: b as f64 / n_bins as f64,
            upper: (b + 1) as f64 / n_bins as f64,
            count: count[b],
            mean_predicted: sum_p[b] / count[b] as f64,
            observed: sum_y[b] / count[b] as f64,
        })
        .collect())
}

/// Expected calibration error: Σ_b (n_b / n) |observed_b − mean_predicted_b| over equal-width bins.
pub fn compute_ece(labels: &[bool], probabilities: &[f64], n_bins: usize) -> Result<f64> {
    let bins = compute_reliability_curve(labels, probabilities, n_bins)?;
    let n = labels.len() as f64;
    Ok(bins
        .iter()
        .map(|b| b.count as f64 / n * (b.observed - b.mean_predicted).abs())
        .sum())
}

/// Logistic recalibration of predicted probabilities.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CalibrationFit {
    /// Slope `b` of `logit P(y) = a + b · logit(p)` (1 is ideal; < 1 means over-confident).
    pub slope: f64,
    /// Intercept `a` of the same fit.
    pub intercept: f64,
    /// Calibration-in-the-large: intercept of `logit P(y) = a + logit(p)` (slope fixed at 1; 0 is ideal).
    pub intercept_in_the_large: f64,
}

/// Fits calibration slope and intercepts by maximum likelihood (Newton–Raphson).
/// Probabilities are clipped to [1e-15, 1 − 1e-15] before taking logits.
pub fn compute_calibration_fit(labels: &[bool], probabilities: &[f64]) -> Result<CalibrationFit> {
    check_inputs(labels, probabilities)?;
    let (pos, neg) = class_counts(labels);
    if pos == 0 || neg == 0 {
        return Err(EvalError::Undefined {
            metric: "calibration slope",
            reason: "needs both positive and negative cases".into(),
        });
    }
    let x: Vec<f64> = probabilities
        .iter()
        .map(|&p| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            (p / (1.0 - p)).ln()
        })
        .collect();
    let y: Vec<f64> = labels.iter().map(|&l| f64::from(u8::from(l))).collect();
    // Joint fit of (a, b).
    let (mut a, mut b) = (0.0f64, 1.0f64);
    let mut converged = false;
    for _ in 0..100 {
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(&y) {
            let m = sigmoid(a + b * xi);
            let w = m * (1.0 - m);
            g0 += yi - m;
            g1 += (yi - m) * xi;
            h00 += w;
            h01 += w * xi;
            h11 += w * xi * xi;
        }
        let det = h00 * h11 - h01 * h01;
        if det.abs() < 1e-300 || !det.is_finite() {
            return Err(EvalError::Singular {
                what: "calibration slope",
            });
        }
        let da = (h11 * g0 - h01 * g1) / det;
        let db = (h00 * g1 - h01 * g0) / det;
        a += da;
        b += db;
        if da.abs().max(db.abs()) < 1e-12 {
            converged = true;
            break;
        }
    }
    if !converged {
        return Err(EvalError::NoConvergence {
            what: "calibration slope",
            iterations: 100,
        });
    }
    // Intercept with offset logit(p).
    let mut c = 0.0f64;
    for _ in 0..100 {
        let (mut g, mut h) = (0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(&y) {
            let m = sigmoid(c + xi);
            g += yi - m;
            h += m * (1.0 - m);
        }
        let step = g / h;
        c += step;
        if step.abs() < 1e-12 {
            break;
        }
    }
    Ok(CalibrationFit {
        slope: b,
        intercept: a,
        intercept_in_the_large: c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_ties_as_half() {
        // pairs (pos, neg): (0.8,0.3)=1 (0.8,0.5)=1 (0.5,0.3)=1 (0.5,0.5)=0.5 -> 3.5/4
        let labels = [true, true, false, false];
        let scores = [0.8, 0.5, 0.5, 0.3];
        assert!((compute_auroc(&labels, &scores).unwrap() - 0.875).abs() < 1e-15);
        let roc = compute_roc_curve(&labels, &scores).unwrap();
        // trapezoid area under the curve equals the Mann–Whitney value
        let area: f64 = roc
            .fpr
            .windows(2)
            .zip(roc.tpr.windows(2))
            .map(|(f, t)| (f[1] - f[0]) * (t[1] + t[0]) / 2.0)
            .sum();
        assert!((area - 0.875).abs() < 1e-15);
    }

    #[test]
    fn one_class_is_an_error() {
        assert!(compute_auroc(&[true, true], &[0.1, 0.2]).is_err());
    }

    #[test]
    fn average_precision_by_hand() {
        // sklearn average_precision_score([1,0,1,0],[0.9,0.8,0.7,0.1]) = 0.5*1 + 0.5*(2/3)
        let ap = compute_auprc(&[true, false, true, false], &[0.9, 0.8, 0.7, 0.1]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-15);
    }

    #[test]
    fn threshold_metrics_by_hand() {
        let labels = [true, true, true, false, false];
        let scores = [0.9, 0.6, 0.2, 0.7, 0.1];
        let m = ConfusionMatrix::at_threshold(&labels, &scores, 0.5).unwrap();
        assert_eq!((m.tp, m.fp, m.tn, m.fn_), (2, 1, 1, 1));
        let r = m.metrics();
        assert!((r.sensitivity - 2.0 / 3.0).abs() < 1e-15);
        assert!((r.specificity - 0.5).abs() < 1e-15);
        assert!((r.f1 - 4.0 / 6.0).abs() < 1e-15);
        let t = threshold_for_sensitivity(&labels, &scores, 1.0).unwrap();
        assert_eq!(t, 0.2);
    }

    #[test]
    fn calibration_fit_solves_score_equations() {
        let mut rng = bedside_core::rng::Rng::seed_from(3);
        let n = 2000;
        let mut p = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let z = rng.normal() * 1.5;
            // true probability is a recalibration of the prediction
            let truth = sigmoid(0.3 + 0.7 * z);
            p.push(sigmoid(z));
            y.push(rng.uniform() < truth);
        }
        let fit = compute_calibration_fit(&y, &p).unwrap();
        // gradient of the log-likelihood is zero at the estimate
        let (mut g0, mut g1, mut g2) = (0.0, 0.0, 0.0);
        for (&pi, &yi) in p.iter().zip(&y) {
            let x = (pi / (1.0 - pi)).ln();
            let yv = f64::from(u8::from(yi));
            g0 += yv - sigmoid(fit.intercept + fit.slope * x);
            g1 += (yv - sigmoid(fit.intercept + fit.slope * x)) * x;
            g2 += yv - sigmoid(fit.intercept_in_the_large + x);
        }
        assert!(g0.abs() < 1e-8 && g1.abs() < 1e-8 && g2.abs() < 1e-8);
        assert!((fit.slope - 0.7).abs() < 0.15, "slope {}", fit.slope);
    }

    #[test]
    fn ece_by_hand() {
        // bins of width 0.5: [0.2, 0.4] -> observed 0, mean 0.3; [0.6, 0.8] -> observed 1, mean 0.7
        let e = compute_ece(&[false, false, true, true], &[0.2, 0.4, 0.6, 0.8], 2).unwrap();
        assert!((e - 0.3).abs() < 1e-15);
    }
}
