//! Regression metrics: MAE, RMSE, R², and Bland–Altman agreement.

use serde::Serialize;

use crate::error::{EvalError, Result, check_finite, check_len, check_nonempty};

fn check(truth: &[f64], predicted: &[f64]) -> Result<()> {
    check_nonempty(truth.len())?;
    check_len("predicted", predicted.len(), truth.len())?;
    check_finite("truth", truth)?;
    check_finite("predicted", predicted)
}

/// Mean absolute error.
pub fn compute_mae(truth: &[f64], predicted: &[f64]) -> Result<f64> {
    check(truth, predicted)?;
    let s: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (p - t).abs())
        .sum();
    Ok(s / truth.len() as f64)
}

/// Root mean squared error.
pub fn compute_rmse(truth: &[f64], predicted: &[f64]) -> Result<f64> {
    check(truth, predicted)?;
    let s: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (p - t).powi(2))
        .sum();
    Ok((s / truth.len() as f64).sqrt())
}

/// Coefficient of determination `1 − SS_res / SS_tot` (scikit-learn's `r2_score`).
/// Undefined when the truth is constant.
pub fn compute_r2(truth: &[f64], predicted: &[f64]) -> Result<f64> {
    check(truth, predicted)?;
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    let ss_tot: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    let ss_res: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    if ss_tot == 0.0 {
        return Err(EvalError::Undefined {
            metric: "R²",
            reason: "the true values are constant".into(),
        });
    }
    Ok(1.0 - ss_res / ss_tot)
}

/// Bland–Altman agreement between prediction and truth (differences are `predicted − truth`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BlandAltman {
    /// Mean difference (bias).
    pub bias: f64,
    /// Sample standard deviation of the differences (n − 1).
    pub sd: f64,
    /// bias − z·sd.
    pub lower_limit: f64,
    /// bias + z·sd.
    pub upper_limit: f64,
    /// The multiplier z (1.96 for 95 % limits).
    pub z: f64,
}

/// Bland–Altman bias and limits of agreement `bias ± z·sd` (z = 1.959964 for 95 %).
pub fn compute_bland_altman(
    truth: &[f64],
    predicted: &[f64],
    confidence: f64,
) -> Result<BlandAltman> {
    check(truth, predicted)?;
    if truth.len() < 2 {
        return Err(EvalError::Undefined {
            metric: "Bland–Altman limits",
            reason: "need at least two cases".into(),
        });
    }
    let n = truth.len() as f64;
    let diffs: Vec<f64> = truth.iter().zip(predicted).map(|(t, p)| p - t).collect();
    let bias = diffs.iter().sum::<f64>() / n;
    let sd = (diffs.iter().map(|d| (d - bias).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let z = crate::stats::normal_critical(confidence);
    Ok(BlandAltman {
        bias,
        sd,
        lower_limit: bias - z * sd,
        upper_limit: bias + z * sd,
        z,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_by_hand() {
        let t = [1.0, 2.0, 3.0, 4.0];
        let p = [1.5, 2.0, 2.0, 5.0];
        assert!((compute_mae(&t, &p).unwrap() - 0.625).abs() < 1e-15);
        assert!((compute_rmse(&t, &p).unwrap() - (2.25f64 / 4.0).sqrt()).abs() < 1e-15);
        // ss_tot = 5, ss_res = 2.25
        assert!((compute_r2(&t, &p).unwrap() - 0.55).abs() < 1e-15);
        let ba = compute_bland_altman(&t, &p, 0.95).unwrap();
        // diffs 0.5, 0, -1, 1: mean 0.125, var = (0.140625+0.015625+1.265625+0.765625)/3
        assert!((ba.bias - 0.125).abs() < 1e-15);
        assert!((ba.sd - (2.1875f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!(compute_r2(&[1.0, 1.0], &[1.0, 2.0]).is_err());
    }
}
