//! Cumulative/dynamic time-dependent AUC (Uno et al. 2007; Hung & Chiang 2010) with IPCW.

use serde::Serialize;

use super::check_survival;
use super::km::{CensoringDistribution, CensoringTies, compute_kaplan_meier};
use crate::error::{EvalError, Result, check_finite, check_len};

/// Time-dependent AUC at each requested time and its survival-weighted mean.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CumulativeDynamicAuc {
    /// The requested times.
    pub times: Vec<f64>,
    /// AUC at each time.
    pub auc: Vec<f64>,
    /// Mean AUC weighted by the Kaplan–Meier drop of the test data between times
    /// (scikit-survival's `mean_auc`).
    pub mean_auc: f64,
}

/// Cumulative cases (event by `t`, weighted by `1/G(Tᵢ)`) against dynamic controls (still at risk
/// after `t`), with risk scores tied within `tie_tolerance` merged (scikit-survival's algorithm).
/// G is fitted on `(train_time, train_event)`; times must lie in `[min Tᵢ, max Tᵢ)` of the test data.
pub fn compute_cumulative_dynamic_auc(
    train_time: &[f64],
    train_event: &[bool],
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    times: &[f64],
    tie_tolerance: f64,
) -> Result<CumulativeDynamicAuc> {
    check_survival(time, event)?;
    check_len("risk", risk.len(), time.len())?;
    check_finite("risk", risk)?;
    let mut times = times.to_vec();
    times.sort_by(f64::total_cmp);
    times.dedup();
    let (lo, hi) = time
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
            (a.min(t), b.max(t))
        });
    for &t in &times {
        if !(t >= lo && t < hi) {
            return Err(EvalError::TimeOutOfRange {
                what: "cumulative/dynamic AUC",
                time: t,
                low: lo,
                high: hi,
            });
        }
    }
    let g = CensoringDistribution::fit(train_time, train_event, CensoringTies::EventsFirst)?;
    let n = time.len();
    let mut ipcw = vec![0.0; n];
    for i in 0..n {
        if event[i] {
            let gi = g.survival_at(time[i])?;
            if gi <= 0.0 {
                return Err(EvalError::Undefined {
                    metric: "cumulative/dynamic AUC",
                    reason: format!("censoring survival is zero at time {}", time[i]),
                });
            }
            ipcw[i] = 1.0 / gi;
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| risk[b].total_cmp(&risk[a]));
    // keep_after[k]: position k is the last of its chain of tied scores
    let mut last_of_chain = vec![true; n];
    for k in 1..n {
        if (risk[order[k]] - risk[order[k - 1]]).abs() <= tie_tolerance {
            last_of_chain[k - 1] = false;
        }
    }
    let mut auc = Vec::with_capacity(times.len());
    for &t in &times {
        let mut total_tp = 0.0;
        let mut n_controls = 0.0;
        for &i in &order {
            if time[i] <= t && event[i] {
                total_tp += ipcw[i];
            } else if time[i] > t {
                n_controls += 1.0;
            }
        }
        if total_tp <= 0.0 || n_controls == 0.0 {
            return Err(EvalError::Undefined {
                metric: "cumulative/dynamic AUC",
                reason: format!("no cases or no controls at time {t}"),
            });
        }
        let (mut cum_tp, mut cum_fp) = (0.0f64, 0.0f64);
        let (mut prev_x, mut prev_y) = (0.0f64, 0.0f64);
        let mut area = 0.0;
        for (k, &i) in order.iter().enumerate() {
            if time[i] <= t && event[i] {
                cum_tp += ipcw[i];
            } else if time[i] > t {
                cum_fp += 1.0;
            }
            if last_of_chain[k] {
                let (x, y) = (cum_fp / n_controls, cum_tp / total_tp);
                area += (x - prev_x) * (y + prev_y) / 2.0;
                prev_x = x;
                prev_y = y;
            }
        }
        auc.push(area);
    }
    let mean_auc = if times.len() == 1 {
        auc[0]
    } else {
        let km = compute_kaplan_meier(time, event, 0.95)?;
        let mut prev = 1.0;
        let mut integral = 0.0;
        let mut s_last = 1.0;
        for (a, &t) in auc.iter().zip(&times) {
            let s = km.survival_at(t);
            integral += a * (prev - s);
            prev = s;
            s_last = s;
        }
        integral / (1.0 - s_last)
    };
    Ok(CumulativeDynamicAuc {
        times,
        auc,
        mean_auc,
    })
}
