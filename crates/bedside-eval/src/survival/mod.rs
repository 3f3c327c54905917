//! Survival analysis: Kaplan–Meier and Nelson–Aalen estimators, the log-rank test, concordance
//! indices (Harrell, Uno, Antolini), time-dependent AUC, Brier scores, and a Cox
//! proportional-hazards fit.
//!
//! Times are `f64` (any unit), events are `bool` (true = the event was observed, false = censored).
//! Risk scores follow scikit-survival's sign: a higher score means an earlier event.
//!
//! Defaults follow scikit-survival 0.28; every convention that changes numbers is an explicit
//! option (tie tolerance, which data the censoring distribution is fitted on, how the censoring
//! distribution is evaluated at event times, Brier normalisation, integration rule).

mod auc;
mod brier;
mod concordance;
mod cox;
mod km;
mod logrank;

pub use auc::{CumulativeDynamicAuc, compute_cumulative_dynamic_auc};
pub use brier::{
    BrierNormalisation, BrierOptions, CensoringAt, Integration, compute_brier_at_times,
    compute_integrated_brier,
};
pub use concordance::{
    AntoliniVariant, ConcordanceOptions, ConcordanceResult, compute_antolini_concordance,
    compute_harrell_c, compute_harrell_c_reference, compute_uno_c, compute_uno_c_reference,
};
pub use cox::{CoxFit, CoxOptions, CoxTies, cox_partial_log_likelihood, fit_cox};
pub use km::{
    CensoringDistribution, CensoringTies, KaplanMeier, NelsonAalen, NelsonAalenTies,
    compute_kaplan_meier, compute_nelson_aalen,
};
pub use logrank::{LogRankTest, compute_log_rank};

use crate::error::{EvalError, Result, check_finite, check_len, check_nonempty};

/// Validates a (time, event) pair of columns.
pub(crate) fn check_survival(time: &[f64], event: &[bool]) -> Result<()> {
    check_nonempty(time.len())?;
    check_len("event", event.len(), time.len())?;
    check_finite("time", time)?;
    if let Some(row) = time.iter().position(|&t| t < 0.0) {
        return Err(EvalError::InvalidOption {
            option: "time",
            reason: format!("negative time at row {row}"),
        });
    }
    Ok(())
}

/// Index of the last entry of sorted `grid` that is `<= t`, or `None` if `t` precedes the grid.
pub(crate) fn step_index(grid: &[f64], t: f64) -> Option<usize> {
    let k = grid.partition_point(|&g| g <= t);
    k.checked_sub(1)
}
