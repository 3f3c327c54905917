//! The whole evaluation of one prediction table: every metric with bootstrap intervals, the
//! subgroup and fairness audit, uncertainty referral, and the curves the report draws.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bootstrap::{BootstrapOptions, Clusters, Estimate, bootstrap_ci, bootstrap_ci_many};
use crate::classification::{
    self as cls, CalibrationFit, ConfusionMatrix, PrCurve, RankedScores, ReliabilityBin, RocCurve,
    ThresholdMetrics,
};
use crate::error::{EvalError, Result};
use crate::fairness::{self, FairnessMetrics, GroupRates, Groups, RowMetric, SubgroupRow};
use crate::input::EvalTable;
use crate::regression::{self as reg, BlandAltman};
use crate::survival::{
    self as surv, ConcordanceOptions, CumulativeDynamicAuc, KaplanMeier, LogRankTest,
};
use crate::uncertainty::{self as unc, ReferralCurve, ReferralPoint};

/// Settings of an evaluation run.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSettings {
    /// Predict positive when `score >= threshold`.
    pub threshold: f64,
    /// Also report threshold metrics at the threshold that reaches this sensitivity.
    pub target_sensitivity: f64,
    /// Bins of the reliability curve and ECE.
    pub calibration_bins: usize,
    /// Times for the time-dependent AUC (empty: the quartiles of the event times).
    pub times: Vec<f64>,
    /// Bootstrap settings.
    pub bootstrap: BootstrapOptions,
    /// Groups with fewer patients are flagged small.
    pub min_group_patients: usize,
    /// Target accuracy for the referral threshold.
    pub target_accuracy: f64,
    /// Concordance conventions.
    pub concordance: ConcordanceOptions,
    /// Brier-score conventions (averaging, where G is read, integration rule).
    pub brier: surv::BrierOptions,
    /// Maximum points kept per curve in the report.
    pub max_curve_points: usize,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            threshold: 0.5,
            target_sensitivity: 0.9,
            calibration_bins: 10,
            times: Vec::new(),
            bootstrap: BootstrapOptions::default(),
            min_group_patients: 30,
            target_accuracy: 0.95,
            concordance: ConcordanceOptions::default(),
            brier: surv::BrierOptions::default(),
            max_curve_points: 400,
        }
    }
}

/// Threshold metrics with intervals.
#[derive(Debug, Clone, Serialize)]
pub struct OperatingPoint {
    /// The threshold.
    pub threshold: f64,
    /// Confusion matrix at the threshold.
    pub confusion: ConfusionMatrix,
    /// Point values of every rate.
    pub rates: ThresholdMetrics,
    /// Intervals for the main rates.
    pub intervals: BTreeMap<String, Estimate>,
}

/// Classification results.
#[derive(Debug, Clone, Serialize)]
pub struct ClassificationReport {
    /// Cases.
    pub n: usize,
    /// Positive cases.
    pub positives: usize,
    /// Ranking, probability and calibration metrics with intervals.
    pub metrics: BTreeMap<String, Estimate>,
    /// At the chosen threshold.
    pub at_threshold: OperatingPoint,
    /// At the threshold reaching the target sensitivity.
    pub at_target_sensitivity: Option<OperatingPoint>,
    /// Calibration slope and intercepts.
    pub calibration: Option<CalibrationFit>,
    /// Reliability curve.
    pub reliability: Vec<ReliabilityBin>,
    /// ROC curve (thinned).
    pub roc: Option<RocCurve>,
    /// Precision–recall curve (thinned).
    pub pr: Option<PrCurve>,
}

/// Regression results.
#[derive(Debug, Clone, Serialize)]
pub struct RegressionReport {
    /// MAE, RMSE, R² with intervals.
    pub metrics: BTreeMap<String, Estimate>,
    /// Bland–Altman bias and limits of agreement.
    pub bland_altman: BlandAltman,
}

/// Survival results.
#[derive(Debug, Clone, Serialize)]
pub struct SurvivalReport {
    /// Cases.
    pub n: usize,
    /// Events.
    pub events: usize,
    /// Harrell's and Uno's C with intervals.
    pub metrics: BTreeMap<String, Estimate>,
    /// Which data the censoring distribution of Uno's C and the time-dependent AUC is fitted on.
    pub censoring_fitted_on: String,
    /// Time-dependent AUC.
    pub time_dependent_auc: Option<CumulativeDynamicAuc>,
    /// Intervals of the time-dependent AUC at each time, then of the mean AUC.
    pub time_dependent_auc_intervals: Vec<Estimate>,
    /// Brier score at the evaluation times (needs predicted survival columns): (time, score
    /// with interval).
    pub brier_at_times: Option<Vec<(f64, Estimate)>>,
    /// Kaplan–Meier overall (thinned).
    pub kaplan_meier: KaplanMeier,
    /// Kaplan–Meier per group of each group column (thinned).
    pub kaplan_meier_by_group: Vec<(String, KaplanMeier)>,
    /// Log-rank test per group column.
    pub log_rank: Vec<(String, LogRankTest)>,
}

/// The audit over one grouping (a column, or the intersection of all group columns).
#[derive(Debug, Clone, Serialize)]
pub struct SubgroupAudit {
    /// Grouping name, such as `sex` or `sex × site`.
    pub grouping: String,
    /// Per-group metrics with intervals.
    pub rows: Vec<SubgroupRow>,
    /// Fairlearn's per-group rates at the threshold (classification only).
    pub rates: Vec<(String, GroupRates)>,
    /// Fairlearn's aggregate fairness metrics (classification only).
    pub fairness: Option<FairnessMetrics>,
    /// The same metrics with patient-level bootstrap intervals.
    pub fairness_intervals: BTreeMap<String, Estimate>,
}

/// Uncertainty referral results.
#[derive(Debug, Clone, Serialize)]
pub struct UncertaintyReport {
    /// Where the uncertainty came from.
    pub source: String,
    /// Accuracy versus fraction kept (thinned).
    pub referral: ReferralCurve,
    /// Area under the risk–coverage curve, with interval.
    pub aurc: Estimate,
    /// Operating point that reaches the target accuracy.
    pub at_target_accuracy: Option<ReferralPoint>,
}

/// Everything an evaluation computed.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Rows evaluated.
    pub n_rows: usize,
    /// Patients (bootstrap units).
    pub n_patients: usize,
    /// Settings used.
    pub settings: EvalSettings,
    /// Classification results.
    pub classification: Option<ClassificationReport>,
    /// Regression results.
    pub regression: Option<RegressionReport>,
    /// Survival results.
    pub survival: Option<SurvivalReport>,
    /// Subgroup audits.
    pub subgroups: Vec<SubgroupAudit>,
    /// Uncertainty referral.
    pub uncertainty: Option<UncertaintyReport>,
    /// Notes about metrics that could not be computed.
    pub warnings: Vec<String>,
    /// The "Explanations" section (`bedside explain --dataset`), when one was added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanations: Option<crate::explanations::ExplanationsSection>,
}

fn thin_indices(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..max).map(|k| k * (n - 1) / (max - 1)).collect();
    idx.dedup();
    idx
}

fn thin<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i]).collect()
}

fn thin_km(km: KaplanMeier, max: usize) -> KaplanMeier {
    let idx = thin_indices(km.times.len(), max);
    KaplanMeier {
        times: thin(&km.times, &idx),
        at_risk: thin(&km.at_risk, &idx),
        events: thin(&km.events, &idx),
        survival: thin(&km.survival, &idx),
        ci_lower: thin(&km.ci_lower, &idx),
        ci_upper: thin(&km.ci_upper, &idx),
        confidence: km.confidence,
    }
}

fn pick<T: Copy>(v: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&i| v[i]).collect()
}

/// Runs a point metric and its bootstrap; `None` (with a warning) when undefined.
fn estimate(
    name: &str,
    clusters: &Clusters,
    boot: &BootstrapOptions,
    metric: &RowMetric<'_>,
    all: &[usize],
    warnings: &mut Vec<String>,
) -> Result<Option<Estimate>> {
    match metric(all) {
        Some(v) if v.is_finite() => Ok(Some(bootstrap_ci(v, clusters, boot, |s| {
            metric(&s.indices)
        })?)),
        _ => {
            warnings.push(format!("{name} is undefined on these data"));
            Ok(None)
        }
    }
}

fn operating_point(
    labels: &[bool],
    scores: &[f64],
    threshold: f64,
    clusters: &Clusters,
    boot: &BootstrapOptions,
) -> Result<OperatingPoint> {
    let confusion = ConfusionMatrix::at_threshold(labels, scores, threshold)?;
    let rates = confusion.metrics();
    let mut intervals = BTreeMap::new();
    type Rate = fn(&ThresholdMetrics) -> f64;
    let list: [(&str, Rate); 6] = [
        ("accuracy", |r| r.accuracy),
        ("sensitivity", |r| r.sensitivity),
        ("specificity", |r| r.specificity),
        ("ppv", |r| r.ppv),
        ("npv", |r| r.npv),
        ("f1", |r| r.f1),
    ];
    let points: Vec<f64> = list.iter().map(|(_, f)| f(&rates)).collect();
    let estimates = bootstrap_ci_many(&points, clusters, boot, |s| {
        let mut m = ConfusionMatrix::default();
        for &i in &s.indices {
            m.add(labels[i], scores[i] >= threshold);
        }
        let r = m.metrics();
        list.iter().map(|(_, f)| Some(f(&r))).collect()
    })?;
    for ((name, _), est) in list.iter().zip(estimates) {
        intervals.insert((*name).to_string(), est);
    }
    Ok(OperatingPoint {
        threshold,
        confusion,
        rates,
        intervals,
    })
}

/// Metric closures evaluated on row subsets, shared by the overall results and the subgroups.
fn classification_metrics<'a>(
    labels: &'a [bool],
    scores: &'a [f64],
    threshold: f64,
) -> Vec<(&'static str, Box<RowMetric<'a>>)> {
    let rates = move |rows: &[usize]| {
        let mut m = ConfusionMatrix::default();
        for &i in rows {
            m.add(labels[i], scores[i] >= threshold);
        }
        m.metrics()
    };
    vec![
        (
            "auroc",
            Box::new(move |rows: &[usize]| {
                cls::compute_auroc(&pick(labels, rows), &pick(scores, rows)).ok()
            }),
        ),
        (
            "sensitivity",
            Box::new(move |rows: &[usize]| Some(rates(rows).sensitivity)),
        ),
        (
            "specificity",
            Box::new(move |rows: &[usize]| Some(rates(rows).specificity)),
        ),
        ("ppv", Box::new(move |rows: &[usize]| Some(rates(rows).ppv))),
        (
            "brier",
            Box::new(move |rows: &[usize]| {
                cls::compute_brier(&pick(labels, rows), &pick(scores, rows)).ok()
            }),
        ),
    ]
}

/// Evaluates everything the table's columns allow.
pub fn evaluate(table: &EvalTable, settings: &EvalSettings) -> Result<EvalReport> {
    let n = table.n;
    if n == 0 {
        return Err(EvalError::Empty {
            context: String::new(),
        });
    }
    validate(table)?;
    let clusters = match &table.patients {
        Some(ids) => Clusters::from_ids(ids),
        None => Clusters::singletons(n),
    };
    let boot = &settings.bootstrap;
    let all: Vec<usize> = (0..n).collect();
    let mut warnings = Vec::new();
    let mut report = EvalReport {
        n_rows: n,
        n_patients: clusters.n_clusters(),
        settings: settings.clone(),
        classification: None,
        regression: None,
        survival: None,
        subgroups: Vec::new(),
        uncertainty: None,
        warnings: Vec::new(),
        explanations: None,
    };

    // ---------------------------------------------------------------- classification
    let binary = match (&table.label, &table.score) {
        (Some(l), Some(s)) => Some((l.as_slice(), s.as_slice())),
        _ => None,
    };
    if let Some((labels, scores)) = binary {
        let probabilities = scores.iter().all(|p| (0.0..=1.0).contains(p));
        let mut metrics = BTreeMap::new();
        let ranked = RankedScores::new(scores);
        match ranked.auroc_weighted(labels, None) {
            Some(v) => {
                let e = bootstrap_ci(v, &clusters, boot, |s| {
                    ranked.auroc_weighted(labels, Some(&s.counts))
                })?;
                metrics.insert("auroc".to_string(), e);
            }
            None => warnings.push("AUROC is undefined: only one class present".into()),
        }
        let auprc =
            |rows: &[usize]| cls::compute_auprc(&pick(labels, rows), &pick(scores, rows)).ok();
        if let Some(e) = estimate("AUPRC", &clusters, boot, &auprc, &all, &mut warnings)? {
            metrics.insert("auprc".to_string(), e);
        }
        let mut calibration = None;
        let mut reliability = Vec::new();
        if probabilities {
            let brier =
                |rows: &[usize]| cls::compute_brier(&pick(labels, rows), &pick(scores, rows)).ok();
            if let Some(e) = estimate("Brier score", &clusters, boot, &brier, &all, &mut warnings)?
            {
                metrics.insert("brier".to_string(), e);
            }
            let bins = settings.calibration_bins;
            let ece = |rows: &[usize]| {
                cls::compute_ece(&pick(labels, rows), &pick(scores, rows), bins).ok()
            };
            if let Some(e) = estimate("ECE", &clusters, boot, &ece, &all, &mut warnings)? {
                metrics.insert("ece".to_string(), e);
            }
            calibration = cls::compute_calibration_fit(labels, scores).ok();
            match calibration {
                Some(fit) => {
                    let est = bootstrap_ci_many(
                        &[fit.slope, fit.intercept_in_the_large],
                        &clusters,
                        boot,
                        |s| match cls::compute_calibration_fit(&s.gather(labels), &s.gather(scores))
                        {
                            Ok(c) => vec![Some(c.slope), Some(c.intercept_in_the_large)],
                            Err(_) => vec![None, None],
                        },
                    )?;
                    metrics.insert("calibration_slope".to_string(), est[0]);
                    metrics.insert("calibration_in_the_large".to_string(), est[1]);
                }
                None => warnings.push("calibration slope is undefined on these data".into()),
            }
            reliability = cls::compute_reliability_curve(labels, scores, bins)?;
        } else {
            warnings.push(
                "scores are not probabilities in [0, 1]: Brier score and calibration skipped"
                    .into(),
            );
        }
        let at_threshold = operating_point(labels, scores, settings.threshold, &clusters, boot)?;
        let at_target_sensitivity =
            match cls::threshold_for_sensitivity(labels, scores, settings.target_sensitivity) {
                Ok(t) => Some(operating_point(labels, scores, t, &clusters, boot)?),
                Err(_) => None,
            };
        let max = settings.max_curve_points;
        let roc = cls::compute_roc_curve(labels, scores).ok().map(|r| {
            let idx = thin_indices(r.fpr.len(), max);
            RocCurve {
                fpr: thin(&r.fpr, &idx),
                tpr: thin(&r.tpr, &idx),
                thresholds: thin(&r.thresholds, &idx),
            }
        });
        let pr = cls::compute_pr_curve(labels, scores).ok().map(|r| {
            let idx = thin_indices(r.recall.len(), max);
            PrCurve {
                precision: thin(&r.precision, &idx),
                recall: thin(&r.recall, &idx),
                thresholds: thin(&r.thresholds, &idx),
            }
        });
        report.classification = Some(ClassificationReport {
            n,
            positives: labels.iter().filter(|&&l| l).count(),
            metrics,
            at_threshold,
            at_target_sensitivity,
            calibration,
            reliability,
            roc,
            pr,
        });

        // uncertainty referral
        let correct: Vec<bool> = labels
            .iter()
            .zip(scores)
            .map(|(&l, &s)| (s >= settings.threshold) == l)
            .collect();
        let (uncertainty, source) = match &table.uncertainty {
            Some(u) => (u.clone(), "uncertainty column".to_string()),
            None if probabilities => (
                scores
                    .iter()
                    .map(|&p| 1.0 - (2.0 * p - 1.0).abs())
                    .collect(),
                "1 − |2p − 1| from the predicted probability".to_string(),
            ),
            None => (
                scores
                    .iter()
                    .map(|&s| -(s - settings.threshold).abs())
                    .collect(),
                "−|score − threshold| (distance of the score from the decision threshold)"
                    .to_string(),
            ),
        };
        {
            let curve = unc::compute_referral_curve(&uncertainty, &correct)?;
            let idx = thin_indices(curve.threshold.len(), max);
            report.uncertainty = Some(UncertaintyReport {
                source,
                aurc: bootstrap_ci(
                    unc::compute_aurc(&uncertainty, &correct)?,
                    &clusters,
                    boot,
                    |s| unc::compute_aurc(&s.gather(&uncertainty), &s.gather(&correct)).ok(),
                )?,
                at_target_accuracy: unc::threshold_for_accuracy(
                    &uncertainty,
                    &correct,
                    settings.target_accuracy,
                )?,
                referral: ReferralCurve {
                    threshold: thin(&curve.threshold, &idx),
                    kept_fraction: thin(&curve.kept_fraction, &idx),
                    accuracy: thin(&curve.accuracy, &idx),
                },
            });
        }
    }

    // ---------------------------------------------------------------- regression
    if let (Some(target), Some(predicted)) = (&table.target, &table.predicted) {
        let mut metrics = BTreeMap::new();
        type Reg = fn(&[f64], &[f64]) -> Result<f64>;
        let list: [(&str, Reg); 3] = [
            ("mae", reg::compute_mae),
            ("rmse", reg::compute_rmse),
            ("r2", reg::compute_r2),
        ];
        for (name, f) in list {
            let m = |rows: &[usize]| f(&pick(target, rows), &pick(predicted, rows)).ok();
            if let Some(e) = estimate(name, &clusters, boot, &m, &all, &mut warnings)? {
                metrics.insert(name.to_string(), e);
            }
        }
        // Bland–Altman bias and limits of agreement, with intervals like every other metric.
        type Part = fn(&reg::BlandAltman) -> f64;
        let parts: [(&str, Part); 3] = [
            ("bland_altman_bias", |b| b.bias),
            ("bland_altman_lower_limit", |b| b.lower_limit),
            ("bland_altman_upper_limit", |b| b.upper_limit),
        ];
        for (name, part) in parts {
            let m = |rows: &[usize]| {
                reg::compute_bland_altman(&pick(target, rows), &pick(predicted, rows), 0.95)
                    .ok()
                    .map(|b| part(&b))
            };
            if let Some(e) = estimate(name, &clusters, boot, &m, &all, &mut warnings)? {
                metrics.insert(name.to_string(), e);
            }
        }
        report.regression = Some(RegressionReport {
            metrics,
            bland_altman: reg::compute_bland_altman(target, predicted, 0.95)?,
        });
    }

    // ---------------------------------------------------------------- survival
    if let (Some(time), Some(event), Some(risk)) = (&table.time, &table.event, &table.risk) {
        let copts = settings.concordance;
        let mut metrics = BTreeMap::new();
        let harrell = |rows: &[usize]| {
            surv::compute_harrell_c(
                &pick(time, rows),
                &pick(event, rows),
                &pick(risk, rows),
                &copts,
            )
            .ok()
            .map(|c| c.c_index)
        };
        if let Some(e) = estimate(
            "Harrell's C",
            &clusters,
            boot,
            &harrell,
            &all,
            &mut warnings,
        )? {
            metrics.insert("harrell_c".to_string(), e);
        }
        let train = table.censoring_data.as_ref();
        let uno = |rows: &[usize]| {
            let (t, e) = (pick(time, rows), pick(event, rows));
            let (gt, ge) = train.map_or((t.as_slice(), e.as_slice()), |(a, b)| {
                (a.as_slice(), b.as_slice())
            });
            surv::compute_uno_c(gt, ge, &t, &e, &pick(risk, rows), &copts)
                .ok()
                .map(|c| c.c_index)
        };
        if let Some(e) = estimate("Uno's C", &clusters, boot, &uno, &all, &mut warnings)? {
            metrics.insert("uno_c".to_string(), e);
        }
        let (g_time, g_event) = train.map_or((time.as_slice(), event.as_slice()), |(a, b)| {
            (a.as_slice(), b.as_slice())
        });
        let km = surv::compute_kaplan_meier(time, event, 0.95)?;
        let times = if settings.times.is_empty() {
            let mut ev: Vec<f64> = time
                .iter()
                .zip(event)
                .filter(|(_, e)| **e)
                .map(|(t, _)| *t)
                .collect();
            ev.sort_by(f64::total_cmp);
            let mut q: Vec<f64> = [0.25, 0.5, 0.75]
                .iter()
                .map(|&p| crate::stats::quantile_sorted(&ev, p))
                .collect();
            q.dedup();
            q
        } else {
            settings.times.clone()
        };
        let time_dependent_auc = if times.is_empty() {
            None
        } else {
            match surv::compute_cumulative_dynamic_auc(
                g_time,
                g_event,
                time,
                event,
                risk,
                &times,
                copts.tie_tolerance,
            ) {
                Ok(a) => Some(a),
                Err(e) => {
                    warnings.push(format!("time-dependent AUC: {e}"));
                    None
                }
            }
        };
        let time_dependent_auc_intervals = match &time_dependent_auc {
            Some(a) => {
                let mut points = a.auc.clone();
                points.push(a.mean_auc);
                let k = points.len();
                bootstrap_ci_many(&points, &clusters, boot, |s| {
                    let (t, e, r) = (s.gather(time), s.gather(event), s.gather(risk));
                    let (gt, ge) = train.map_or((t.as_slice(), e.as_slice()), |(a, b)| {
                        (a.as_slice(), b.as_slice())
                    });
                    match surv::compute_cumulative_dynamic_auc(
                        gt,
                        ge,
                        &t,
                        &e,
                        &r,
                        &a.times,
                        copts.tie_tolerance,
                    ) {
                        Ok(x) => x
                            .auc
                            .iter()
                            .chain([&x.mean_auc])
                            .map(|v| Some(*v))
                            .collect(),
                        Err(_) => vec![None; k],
                    }
                })?
            }
            None => Vec::new(),
        };
        let mut brier = None;
        if !table.survival.is_empty() {
            let (b, w) = survival_curve_metrics(
                table,
                time,
                event,
                g_time,
                g_event,
                train.is_some(),
                &times,
                &clusters,
                boot,
                &settings.brier,
                &mut metrics,
            )?;
            brier = b;
            warnings.extend(w);
        }
        let mut by_group = Vec::new();
        let mut log_rank = Vec::new();
        for (col, values) in &table.groups {
            let groups =
                Groups::from_columns(std::slice::from_ref(col), std::slice::from_ref(values))?;
            for (g, rows) in groups.members.iter().enumerate() {
                let k = surv::compute_kaplan_meier(&pick(time, rows), &pick(event, rows), 0.95)?;
                by_group.push((groups.name(g), thin_km(k, settings.max_curve_points)));
            }
            let labels: Vec<&str> = values.iter().map(String::as_str).collect();
            match surv::compute_log_rank(time, event, &labels) {
                Ok(t) => log_rank.push((col.clone(), t)),
                Err(e) => warnings.push(format!("log-rank test by {col}: {e}")),
            }
        }
        report.survival = Some(SurvivalReport {
            n,
            events: event.iter().filter(|&&e| e).count(),
            metrics,
            censoring_fitted_on: if train.is_some() {
                "the training data given".into()
            } else {
                "the evaluated data (no training data given)".into()
            },
            brier_at_times: brier,
            time_dependent_auc,
            time_dependent_auc_intervals,
            kaplan_meier: thin_km(km, settings.max_curve_points),
            kaplan_meier_by_group: by_group,
            log_rank,
        });
    }

    // ---------------------------------------------------------------- subgroups and fairness
    if !table.groups.is_empty() {
        let mut groupings: Vec<(String, Vec<String>, Vec<Vec<String>>)> = table
            .groups
            .iter()
            .map(|(c, v)| (c.clone(), vec![c.clone()], vec![v.clone()]))
            .collect();
        if table.groups.len() > 1 {
            groupings.push((
                table
                    .groups
                    .iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(" × "),
                table.groups.iter().map(|(c, _)| c.clone()).collect(),
                table.groups.iter().map(|(_, v)| v.clone()).collect(),
            ));
        }
        for (name, cols, values) in groupings {
            let groups = Groups::from_columns(&cols, &values)?;
            let mut metrics: Vec<(&str, Box<RowMetric<'_>>)> = Vec::new();
            if let Some((labels, scores)) = binary {
                metrics.extend(classification_metrics(labels, scores, settings.threshold));
            }
            if let (Some(t), Some(p)) = (&table.target, &table.predicted) {
                metrics.push((
                    "mae",
                    Box::new(move |rows: &[usize]| {
                        reg::compute_mae(&pick(t, rows), &pick(p, rows)).ok()
                    }),
                ));
            }
            if let (Some(time), Some(event), Some(risk)) = (&table.time, &table.event, &table.risk)
            {
                let copts = settings.concordance;
                metrics.push((
                    "harrell_c",
                    Box::new(move |rows: &[usize]| {
                        surv::compute_harrell_c(
                            &pick(time, rows),
                            &pick(event, rows),
                            &pick(risk, rows),
                            &copts,
                        )
                        .ok()
                        .map(|c| c.c_index)
                    }),
                ));
            }
            let refs: Vec<(&str, &RowMetric<'_>)> =
                metrics.iter().map(|(n, m)| (*n, m.as_ref())).collect();
            let rows = fairness::audit_subgroups(
                &groups,
                &clusters,
                &refs,
                boot,
                settings.min_group_patients,
            )?;
            let (rates, fair, fairness_intervals) = match binary {
                Some((labels, scores)) => {
                    let predicted: Vec<bool> =
                        scores.iter().map(|&s| s >= settings.threshold).collect();
                    let (_, by) = fairness::compute_group_rates(labels, &predicted, &groups)?;
                    let names = (0..groups.len()).map(|g| groups.name(g));
                    let intervals = fairness::compute_fairness_with_intervals(
                        labels, &predicted, &groups, &clusters, boot,
                    )?;
                    (
                        names.zip(by).collect(),
                        Some(fairness::compute_fairness(labels, &predicted, &groups)?),
                        intervals,
                    )
                }
                None => (Vec::new(), None, BTreeMap::new()),
            };
            for r in rows.iter().filter(|r| r.small) {
                warnings.push(format!(
                    "group {} has only {} patients: its estimates are unstable",
                    r.group, r.patients
                ));
            }
            report.subgroups.push(SubgroupAudit {
                grouping: name,
                rows,
                rates,
                fairness: fair,
                fairness_intervals,
            });
        }
    }

    if report.classification.is_none() && report.regression.is_none() && report.survival.is_none() {
        return Err(EvalError::InvalidOption {
            option: "columns",
            reason: "nothing to evaluate: give --score with --label, --time with --event, or --target with --predicted".into(),
        });
    }
    report.warnings = warnings;
    Ok(report)
}

/// Values at times: (time, estimate).
type TimedValues = Vec<(f64, Estimate)>;

/// Brier scores, integrated Brier score (with interval) and Antolini's concordance from the
/// predicted survival columns. Returns the Brier scores at `times` and warnings.
#[allow(clippy::too_many_arguments)]
fn survival_curve_metrics(
    table: &EvalTable,
    time: &[f64],
    event: &[bool],
    g_time: &[f64],
    g_event: &[bool],
    train_given: bool,
    times: &[f64],
    clusters: &Clusters,
    boot: &BootstrapOptions,
    brier_options: &surv::BrierOptions,
    metrics: &mut BTreeMap<String, Estimate>,
) -> Result<(Option<TimedValues>, Vec<String>)> {
    let mut warnings = Vec::new();
    let grid = &table.survival_grid;
    let g = grid.len();
    let n = time.len();
    let at = |rows: &[usize], ts: &[f64]| -> Vec<f64> {
        let idx: Vec<Option<usize>> = ts
            .iter()
            .map(|&t| grid.partition_point(|&x| x <= t).checked_sub(1))
            .collect();
        rows.iter()
            .flat_map(|&i| {
                idx.iter()
                    .map(move |k| k.map_or(1.0, |k| table.survival[i * g + k]))
            })
            .collect()
    };
    let censoring =
        surv::CensoringDistribution::fit(g_time, g_event, surv::CensoringTies::EventsFirst)?;
    let opts = *brier_options;
    let all: Vec<usize> = (0..n).collect();
    let mut brier = None;
    if !times.is_empty() {
        match surv::compute_brier_at_times(time, event, &at(&all, times), times, &censoring, &opts)
        {
            Ok(b) => {
                let k = b.len();
                let est = bootstrap_ci_many(&b, clusters, boot, |s| {
                    let (t, e) = (s.gather(time), s.gather(event));
                    let refit;
                    let g = if train_given {
                        &censoring
                    } else {
                        match surv::CensoringDistribution::fit(
                            &t,
                            &e,
                            surv::CensoringTies::EventsFirst,
                        ) {
                            Ok(c) => {
                                refit = c;
                                &refit
                            }
                            Err(_) => return vec![None; k],
                        }
                    };
                    match surv::compute_brier_at_times(
                        &t,
                        &e,
                        &at(&s.indices, times),
                        times,
                        g,
                        &opts,
                    ) {
                        Ok(v) => v.into_iter().map(Some).collect(),
                        Err(_) => vec![None; k],
                    }
                })?;
                brier = Some(times.iter().copied().zip(est).collect());
            }
            Err(e) => warnings.push(format!("Brier score at times: {e}")),
        }
    }
    let (lo, hi) = time
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
            (a.min(t), b.max(t))
        });
    let ibs_grid: Vec<f64> = grid
        .iter()
        .copied()
        .filter(|&t| t >= lo && t < hi)
        .collect();
    if ibs_grid.len() >= 2 {
        let ibs = |rows: &[usize]| {
            let (t, e) = (pick(time, rows), pick(event, rows));
            let (lo, hi) = t
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            let grid: Vec<f64> = ibs_grid
                .iter()
                .copied()
                .filter(|&x| x >= lo && x < hi)
                .collect();
            surv::compute_integrated_brier(&t, &e, &at(rows, &grid), &grid, &censoring, &opts).ok()
        };
        match ibs(&all) {
            Some(v) => {
                metrics.insert(
                    "integrated_brier".to_string(),
                    bootstrap_ci(v, clusters, boot, |s| ibs(&s.indices))?,
                );
            }
            None => warnings.push("integrated Brier score is undefined on these data".into()),
        }
    } else {
        warnings.push(
            "integrated Brier score needs at least two survival columns within the follow-up"
                .into(),
        );
    }
    const ANTOLINI_MAX: usize = 20_000;
    const ANTOLINI_BOOTSTRAP_MAX: usize = 2_000;
    if n <= ANTOLINI_MAX {
        match surv::compute_antolini_concordance(
            time,
            event,
            grid,
            &table.survival,
            surv::AntoliniVariant::Antolini,
        ) {
            Ok(v) if n <= ANTOLINI_BOOTSTRAP_MAX => {
                let antolini = |rows: &[usize]| {
                    let surv: Vec<f64> = rows
                        .iter()
                        .flat_map(|&i| table.survival[i * g..(i + 1) * g].iter().copied())
                        .collect();
                    surv::compute_antolini_concordance(
                        &pick(time, rows),
                        &pick(event, rows),
                        grid,
                        &surv,
                        surv::AntoliniVariant::Antolini,
                    )
                    .ok()
                };
                metrics.insert(
                    "antolini_c".to_string(),
                    bootstrap_ci(v, clusters, boot, |s| antolini(&s.indices))?,
                );
            }
            Ok(v) => {
                warnings.push(format!(
                    "Antolini's concordance: no interval above {ANTOLINI_BOOTSTRAP_MAX} cases (O(n²) per replicate)"
                ));
                metrics.insert("antolini_c".to_string(), Estimate::point(v));
            }
            Err(e) => warnings.push(format!("Antolini's concordance: {e}")),
        }
    } else {
        warnings.push(format!(
            "Antolini's concordance (O(n²)) skipped above {ANTOLINI_MAX} cases"
        ));
    }
    Ok((brier, warnings))
}

/// Checks that every column present has one entry per case.
fn validate(table: &EvalTable) -> Result<()> {
    let n = table.n;
    let lens = [
        ("patients", table.patients.as_ref().map(Vec::len)),
        ("score", table.score.as_ref().map(Vec::len)),
        ("label", table.label.as_ref().map(Vec::len)),
        ("time", table.time.as_ref().map(Vec::len)),
        ("event", table.event.as_ref().map(Vec::len)),
        ("risk", table.risk.as_ref().map(Vec::len)),
        ("target", table.target.as_ref().map(Vec::len)),
        ("predicted", table.predicted.as_ref().map(Vec::len)),
        ("uncertainty", table.uncertainty.as_ref().map(Vec::len)),
    ];
    for (what, len) in lens {
        if let Some(len) = len {
            crate::error::check_len(what, len, n)?;
        }
    }
    for (_, values) in &table.groups {
        crate::error::check_len("group column", values.len(), n)?;
    }
    if !table.survival.is_empty() {
        crate::error::check_len(
            "survival matrix",
            table.survival.len(),
            n * table.survival_grid.len(),
        )?;
    }
    for (what, values) in [
        ("score", &table.score),
        ("time", &table.time),
        ("risk", &table.risk),
        ("target", &table.target),
        ("predicted", &table.predicted),
        ("uncertainty", &table.uncertainty),
    ] {
        if let Some(v) = values {
            crate::error::check_finite(what, v)?;
        }
    }
    Ok(())
}
