//! Subgroups, per-group metrics and group-fairness metrics with Fairlearn's definitions.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bootstrap::{BootstrapOptions, Clusters, Estimate, bootstrap_ci_many};
use crate::classification::ConfusionMatrix;
use crate::error::{EvalError, Result, check_len};

/// Rows partitioned into groups by one or more columns (their observed combinations).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Groups {
    /// The grouping columns.
    pub columns: Vec<String>,
    /// One entry per group: its value in each column, in `columns` order. Groups are sorted
    /// by these values (as Fairlearn's `MetricFrame.by_group`).
    pub keys: Vec<Vec<String>>,
    /// Row indices of each group.
    pub members: Vec<Vec<usize>>,
}

impl Groups {
    /// Groups rows by the combination of values in `columns` (each `values[c][row]`).
    /// Combinations that do not occur are not groups.
    pub fn from_columns(columns: &[String], values: &[Vec<String>]) -> Result<Self> {
        if columns.is_empty() || columns.len() != values.len() {
            return Err(EvalError::InvalidOption {
                option: "group columns",
                reason: "need at least one column, with values for each".into(),
            });
        }
        let n = values[0].len();
        for v in values {
            check_len("group column", v.len(), n)?;
        }
        let mut map: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for row in 0..n {
            let key: Vec<String> = values.iter().map(|v| v[row].clone()).collect();
            map.entry(key).or_default().push(row);
        }
        let (keys, members) = map.into_iter().unzip();
        Ok(Groups {
            columns: columns.to_vec(),
            keys,
            members,
        })
    }

    /// Display name of group `g`, such as `sex=F, site=A`.
    pub fn name(&self, g: usize) -> String {
        self.columns
            .iter()
            .zip(&self.keys[g])
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no groups.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Fairlearn's per-group rates for binary predictions.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct GroupRates {
    /// Cases.
    pub count: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Fraction predicted positive.
    pub selection_rate: f64,
    /// True-positive rate.
    pub tpr: f64,
    /// False-positive rate.
    pub fpr: f64,
    /// False-negative rate.
    pub fnr: f64,
    /// True-negative rate.
    pub tnr: f64,
    /// Precision (0 when nothing is predicted positive, as scikit-learn's `zero_division=0`).
    pub precision: f64,
}

impl GroupRates {
    fn from_matrix(m: &ConfusionMatrix) -> Self {
        let r = m.metrics();
        GroupRates {
            count: m.total() as f64,
            accuracy: r.accuracy,
            selection_rate: r.selection_rate,
            tpr: r.sensitivity,
            fpr: r.false_positive_rate,
            fnr: r.false_negative_rate,
            tnr: r.specificity,
            precision: if r.ppv.is_nan() { 0.0 } else { r.ppv },
        }
    }

    /// The rates as (name, value) pairs, in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 8] {
        [
            ("count", self.count),
            ("accuracy", self.accuracy),
            ("selection_rate", self.selection_rate),
            ("tpr", self.tpr),
            ("fpr", self.fpr),
            ("fnr", self.fnr),
            ("tnr", self.tnr),
            ("precision", self.precision),
        ]
    }
}

/// Per-group values of one metric, with Fairlearn's `MetricFrame` summaries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupSummary {
    /// Value on all rows.
    pub overall: f64,
    /// Value in each group (in [`Groups`] order).
    pub by_group: Vec<f64>,
    /// `max − min` over groups (`difference(method="between_groups")`).
    pub difference: f64,
    /// `max |group − overall|` (`difference(method="to_overall")`).
    pub difference_to_overall: f64,
    /// `min / max` over groups (`ratio(method="between_groups")`).
    pub ratio: f64,
    /// Smallest group value.
    pub group_min: f64,
    /// Largest group value.
    pub group_max: f64,
}

impl GroupSummary {
    /// Summarises per-group values.
    pub fn new(overall: f64, by_group: Vec<f64>) -> Self {
        let group_min = by_group.iter().copied().fold(f64::INFINITY, f64::min);
        let group_max = by_group.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let difference_to_overall = by_group
            .iter()
            .map(|v| (v - overall).abs())
            .fold(f64::NEG_INFINITY, f64::max);
        GroupSummary {
            overall,
            difference: group_max - group_min,
            difference_to_overall,
            ratio: if group_max == 0.0 {
                f64::NAN
            } else {
                group_min / group_max
            },
            group_min,
            group_max,
            by_group,
        }
    }
}

/// Per-group rates for binary predictions, overall first.
pub fn compute_group_rates(
    labels: &[bool],
    predicted: &[bool],
    groups: &Groups,
) -> Result<(GroupRates, Vec<GroupRates>)> {
    check_len("predictions", predicted.len(), labels.len())?;
    let overall = GroupRates::from_matrix(&ConfusionMatrix::from_predictions(labels, predicted)?);
    let by_group = groups
        .members
        .iter()
        .map(|rows| {
            let mut m = ConfusionMatrix::default();
            for &i in rows {
                m.add(labels[i], predicted[i]);
            }
            GroupRates::from_matrix(&m)
        })
        .collect();
    Ok((overall, by_group))
}

/// Fairlearn's aggregate fairness metrics.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct FairnessMetrics {
    /// max − min selection rate over groups.
    pub demographic_parity_difference: f64,
    /// min / max selection rate.
    pub demographic_parity_ratio: f64,
    /// max |selection rate − overall selection rate|.
    pub demographic_parity_difference_to_overall: f64,
    /// max(TPR difference, FPR difference) — Fairlearn's default `agg="worst_case"`.
    pub equalized_odds_difference: f64,
    /// mean(TPR difference, FPR difference) — `agg="mean"`.
    pub equalized_odds_difference_mean: f64,
    /// min(TPR ratio, FPR ratio).
    pub equalized_odds_ratio: f64,
    /// TPR difference between groups.
    pub equal_opportunity_difference: f64,
    /// TPR ratio between groups.
    pub equal_opportunity_ratio: f64,
}

/// Computes the aggregate fairness metrics of binary predictions over `groups`.
pub fn compute_fairness(
    labels: &[bool],
    predicted: &[bool],
    groups: &Groups,
) -> Result<FairnessMetrics> {
    if groups.is_empty() {
        return Err(EvalError::Empty {
            context: " (no groups)".into(),
        });
    }
    let (overall, by) = compute_group_rates(labels, predicted, groups)?;
    Ok(compute_fairness_from_rates(&overall, &by))
}

/// Fairlearn's aggregate fairness metrics from overall and per-group rates.
pub fn compute_fairness_from_rates(overall: &GroupRates, by: &[GroupRates]) -> FairnessMetrics {
    let summary =
        |f: fn(&GroupRates) -> f64| GroupSummary::new(f(overall), by.iter().map(f).collect());
    let sr = summary(|r| r.selection_rate);
    let tpr = summary(|r| r.tpr);
    let fpr = summary(|r| r.fpr);
    FairnessMetrics {
        demographic_parity_difference: sr.difference,
        demographic_parity_ratio: sr.ratio,
        demographic_parity_difference_to_overall: sr.difference_to_overall,
        equalized_odds_difference: tpr.difference.max(fpr.difference),
        equalized_odds_difference_mean: (tpr.difference + fpr.difference) / 2.0,
        equalized_odds_ratio: tpr.ratio.min(fpr.ratio),
        equal_opportunity_difference: tpr.difference,
        equal_opportunity_ratio: tpr.ratio,
    }
}

impl FairnessMetrics {
    /// The metrics as (name, value) pairs, in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 8] {
        [
            (
                "demographic_parity_difference",
                self.demographic_parity_difference,
            ),
            ("demographic_parity_ratio", self.demographic_parity_ratio),
            (
                "demographic_parity_difference_to_overall",
                self.demographic_parity_difference_to_overall,
            ),
            ("equalized_odds_difference", self.equalized_odds_difference),
            (
                "equalized_odds_difference_mean",
                self.equalized_odds_difference_mean,
            ),
            ("equalized_odds_ratio", self.equalized_odds_ratio),
            (
                "equal_opportunity_difference",
                self.equal_opportunity_difference,
            ),
            ("equal_opportunity_ratio", self.equal_opportunity_ratio),
        ]
    }
}

/// Fairness metrics with patient-level bootstrap intervals (resampling the whole data; each
/// replicate recomputes every group's rates).
pub fn compute_fairness_with_intervals(
    labels: &[bool],
    predicted: &[bool],
    groups: &Groups,
    clusters: &Clusters,
    bootstrap: &BootstrapOptions,
) -> Result<BTreeMap<String, Estimate>> {
    let point = compute_fairness(labels, predicted, groups)?;
    let mut gid = vec![usize::MAX; labels.len()];
    for (g, rows) in groups.members.iter().enumerate() {
        for &i in rows {
            if let Some(slot) = gid.get_mut(i) {
                *slot = g;
            }
        }
    }
    let values: Vec<f64> = point.named().iter().map(|(_, v)| *v).collect();
    let estimates = bootstrap_ci_many(&values, clusters, bootstrap, |s| {
        let mut overall = ConfusionMatrix::default();
        let mut per = vec![ConfusionMatrix::default(); groups.len()];
        for &i in &s.indices {
            overall.add(labels[i], predicted[i]);
            if let Some(m) = per.get_mut(gid[i]) {
                m.add(labels[i], predicted[i]);
            }
        }
        // a group absent from the replicate is left out, as Fairlearn drops empty groups
        let by: Vec<GroupRates> = per
            .iter()
            .filter(|m| m.total() > 0)
            .map(GroupRates::from_matrix)
            .collect();
        let f = compute_fairness_from_rates(&GroupRates::from_matrix(&overall), &by);
        f.named().iter().map(|(_, v)| Some(*v)).collect()
    })?;
    Ok(point
        .named()
        .iter()
        .zip(estimates)
        .map(|((name, _), e)| ((*name).to_string(), e))
        .collect())
}

/// A metric evaluated on a set of row indices (`None` when undefined there).
pub type RowMetric<'a> = dyn Fn(&[usize]) -> Option<f64> + Sync + 'a;

/// One group's row in a subgroup audit.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SubgroupRow {
    /// Display name (`sex=F, site=A`).
    pub group: String,
    /// Rows in the group.
    pub count: usize,
    /// Patients in the group.
    pub patients: usize,
    /// Fewer patients than the audit's minimum: estimates are unstable.
    pub small: bool,
    /// Metric name → estimate with bootstrap interval.
    pub metrics: BTreeMap<String, Estimate>,
}

/// Evaluates every metric in every group, with patient-level bootstrap intervals within the
/// group. Groups with fewer than `min_patients` patients are flagged `small`.
pub fn audit_subgroups(
    groups: &Groups,
    clusters: &Clusters,
    metrics: &[(&str, &RowMetric<'_>)],
    bootstrap: &BootstrapOptions,
    min_patients: usize,
) -> Result<Vec<SubgroupRow>> {
    let mut out = Vec::with_capacity(groups.len());
    for (g, rows) in groups.members.iter().enumerate() {
        if rows.is_empty() {
            return Err(EvalError::Empty {
                context: format!(" in group {}", groups.name(g)),
            });
        }
        let local = clusters.restrict(rows);
        let points: Vec<f64> = metrics
            .iter()
            .map(|(_, m)| m(rows).unwrap_or(f64::NAN))
            .collect();
        let estimates = bootstrap_ci_many(&points, &local, bootstrap, |s| {
            let idx: Vec<usize> = s.indices.iter().map(|&k| rows[k]).collect();
            metrics
                .iter()
                .zip(&points)
                .map(|((_, m), p)| if p.is_finite() { m(&idx) } else { None })
                .collect()
        })?;
        let values = metrics
            .iter()
            .zip(estimates)
            .map(|((name, _), e)| ((*name).to_string(), e))
            .collect();
        out.push(SubgroupRow {
            group: groups.name(g),
            count: rows.len(),
            patients: local.n_clusters(),
            small: local.n_clusters() < min_patients,
            metrics: values,
        });
    }
    Ok(out)
}
