//! Time-dependent Brier score (Graf et al., IPCW) and its integral over time.

use serde::Serialize;

use super::check_survival;
use super::km::CensoringDistribution;
use crate::error::{EvalError, Result, check_finite, check_len};

/// How the weighted squared errors are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum BrierNormalisation {
    /// Divide by the number of subjects (scikit-survival, torchsurv; Graf et al.).
    #[default]
    Mean,
    /// Divide by the sum of the weights (pycox's `EvalSurv.brier_score`).
    SelfNormalised,
}

/// Where the censoring survival G is read for subjects whose event precedes `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum CensoringAt {
    /// G(Tᵢ), right-continuous (scikit-survival).
    #[default]
    EventTime,
    /// G(Tᵢ−), just before the event (pycox); G(t) beyond the curve carries its last value.
    JustBefore,
}

/// Integration rule for the integrated Brier score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum Integration {
    /// Trapezoid rule (scikit-survival, torchsurv).
    #[default]
    Trapezoid,
    /// Composite Simpson's rule on an odd number of points (pycox, through SciPy's `simpson`).
    Simpson,
}

/// Options of the Brier score.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct BrierOptions {
    /// Averaging.
    pub normalisation: BrierNormalisation,
    /// Where G is read for events.
    pub censoring_at: CensoringAt,
    /// Integration rule for the integrated score.
    pub integration: Integration,
}

/// Brier scores at `times`.
///
/// `survival` is row-major `n × times.len()`: subject `i`'s predicted probability of being event
/// free at `times[k]` is `survival[i * times.len() + k]`. Subjects with an event at or before `t`
/// contribute `S² / G(Tᵢ)`, subjects still at risk after `t` contribute `(1 − S)² / G(t)`, and
/// subjects censored before `t` contribute 0. Times must lie in `[min Tᵢ, max Tᵢ)` as in
/// scikit-survival. `censoring` is usually fitted on the training data.
pub fn compute_brier_at_times(
    time: &[f64],
    event: &[bool],
    survival: &[f64],
    times: &[f64],
    censoring: &CensoringDistribution,
    options: &BrierOptions,
) -> Result<Vec<f64>> {
    check_survival(time, event)?;
    let n = time.len();
    let k = times.len();
    check_len("survival matrix", survival.len(), n * k)?;
    check_finite("survival", survival)?;
    check_finite("times", times)?;
    let (lo, hi) = time
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
            (a.min(t), b.max(t))
        });
    for &t in times {
        if t < lo || t >= hi {
            return Err(EvalError::TimeOutOfRange {
                what: "Brier score",
                time: t,
                low: lo,
                high: hi,
            });
        }
    }
    // G at each subject's own time (only used for events before t).
    let mut g_own = Vec::with_capacity(n);
    for i in 0..n {
        let g = if !event[i] {
            f64::INFINITY
        } else {
            match options.censoring_at {
                CensoringAt::EventTime => censoring.survival_at(time[i])?,
                CensoringAt::JustBefore => censoring.survival_before(time[i]),
            }
        };
        g_own.push(g);
    }
    let mut scores = Vec::with_capacity(k);
    for (c, &t) in times.iter().enumerate() {
        let g_t = match options.censoring_at {
            CensoringAt::EventTime => censoring.survival_at(t)?,
            CensoringAt::JustBefore => censoring.survival_at_clamped(t),
        };
        let (mut sum, mut sum_w) = (0.0f64, 0.0f64);
        for i in 0..n {
            let s = survival[i * k + c];
            let (err, g) = if time[i] <= t && event[i] {
                (s * s, g_own[i])
            } else if time[i] > t {
                ((1.0 - s) * (1.0 - s), g_t)
            } else {
                continue;
            };
            let w = if g > 0.0 { 1.0 / g } else { 0.0 };
            sum += err * w;
            sum_w += w;
        }
        scores.push(match options.normalisation {
            BrierNormalisation::Mean => sum / n as f64,
            BrierNormalisation::SelfNormalised => sum / sum_w,
        });
    }
    Ok(scores)
}

/// Integrated Brier score over `times` (increasing, at least two), divided by
/// `times.last − times.first`.
pub fn compute_integrated_brier(
    time: &[f64],
    event: &[bool],
    survival: &[f64],
    times: &[f64],
    censoring: &CensoringDistribution,
    options: &BrierOptions,
) -> Result<f64> {
    if times.len() < 2 || times.windows(2).any(|w| w[1] <= w[0]) {
        return Err(EvalError::InvalidOption {
            option: "times",
            reason: "need at least two strictly increasing times".into(),
        });
    }
    let scores = compute_brier_at_times(time, event, survival, times, censoring, options)?;
    let area = match options.integration {
        Integration::Trapezoid => trapezoid(&scores, times),
        Integration::Simpson => simpson(&scores, times)?,
    };
    Ok(area / (times[times.len() - 1] - times[0]))
}

/// Trapezoid rule ∫ y dx.
pub(crate) fn trapezoid(y: &[f64], x: &[f64]) -> f64 {
    y.windows(2)
        .zip(x.windows(2))
        .map(|(y, x)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}

/// Composite Simpson's rule for an odd number of (possibly unequally spaced) points, as SciPy.
fn simpson(y: &[f64], x: &[f64]) -> Result<f64> {
    if y.len().is_multiple_of(2) {
        return Err(EvalError::InvalidOption {
            option: "times",
            reason: "Simpson's rule needs an odd number of time points".into(),
        });
    }
    let mut total = 0.0;
    let mut i = 0;
    while i + 2 < y.len() {
        let h0 = x[i + 1] - x[i];
        let h1 = x[i + 2] - x[i + 1];
        let hsum = h0 + h1;
        let hprod = h0 * h1;
        let ratio = h0 / h1;
        total += hsum / 6.0
            * (y[i] * (2.0 - 1.0 / ratio)
                + y[i + 1] * (hsum * hsum / hprod)
                + y[i + 2] * (2.0 - ratio));
        i += 2;
    }
    Ok(total)
}
