//! Cox proportional-hazards regression by Newton–Raphson, with Breslow or Efron ties.

use serde::Serialize;

use super::check_survival;
use crate::error::{EvalError, Result, check_finite, check_len};
use crate::stats::{cholesky_solve, spd_inverse};

/// Handling of tied event times in the partial likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum CoxTies {
    /// Breslow's approximation.
    Breslow,
    /// Efron's approximation (lifelines' only method; scikit-survival's `ties="efron"`).
    #[default]
    Efron,
}

/// Options for [`fit_cox`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CoxOptions {
    /// Tie handling.
    pub ties: CoxTies,
    /// Maximum Newton iterations.
    pub max_iterations: usize,
    /// Stop when the largest coefficient change is below this.
    pub tolerance: f64,
}

impl Default for CoxOptions {
    fn default() -> Self {
        CoxOptions {
            ties: CoxTies::Efron,
            max_iterations: 100,
            tolerance: 1e-10,
        }
    }
}

/// A fitted Cox model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoxFit {
    /// Coefficients, one per covariate.
    pub coefficients: Vec<f64>,
    /// Standard errors from the inverse observed information.
    pub standard_errors: Vec<f64>,
    /// Partial log-likelihood at the estimate.
    pub log_likelihood: f64,
    /// Partial log-likelihood at β = 0.
    pub log_likelihood_null: f64,
    /// Likelihood-ratio statistic 2 (ℓ(β̂) − ℓ(0)).
    pub likelihood_ratio: f64,
    /// Newton iterations used.
    pub iterations: usize,
    /// Covariate means (the baseline hazard below is at these values).
    pub means: Vec<f64>,
    /// Distinct event times.
    pub baseline_times: Vec<f64>,
    /// Breslow estimate of the cumulative baseline hazard at the covariate means, at each
    /// distinct event time (lifelines' `baseline_cumulative_hazard_`).
    pub baseline_cumulative_hazard: Vec<f64>,
}

impl CoxFit {
    /// Linear predictor `x · β` for one row of covariates.
    pub fn linear_predictor(&self, x: &[f64]) -> f64 {
        x.iter().zip(&self.coefficients).map(|(a, b)| a * b).sum()
    }

    /// Cumulative baseline hazard (at the covariate means) at time `t`.
    pub fn baseline_cumulative_hazard_at(&self, t: f64) -> f64 {
        super::step_index(&self.baseline_times, t)
            .map_or(0.0, |k| self.baseline_cumulative_hazard[k])
    }

    /// Predicted survival at `t` for covariates `x`.
    pub fn survival_at(&self, x: &[f64], t: f64) -> f64 {
        let centred: f64 = x
            .iter()
            .zip(&self.means)
            .zip(&self.coefficients)
            .map(|((a, m), b)| (a - m) * b)
            .sum();
        (-self.baseline_cumulative_hazard_at(t) * centred.exp()).exp()
    }
}

struct Prepared<'a> {
    /// centred covariates, row-major
    x: Vec<f64>,
    p: usize,
    time: &'a [f64],
    event: &'a [bool],
    /// indices sorted by time, decreasing
    order: Vec<usize>,
}

/// Log-likelihood, gradient and negative Hessian at `beta`.
fn evaluate(d: &Prepared<'_>, beta: &[f64], ties: CoxTies) -> (f64, Vec<f64>, Vec<f64>) {
    let p = d.p;
    let n = d.order.len();
    let eta: Vec<f64> = (0..n)
        .map(|i| (0..p).map(|j| d.x[i * p + j] * beta[j]).sum())
        .collect();
    let (mut s0, mut s1, mut s2) = (0.0f64, vec![0.0; p], vec![0.0; p * p]);
    let mut ll = 0.0;
    let mut grad = vec![0.0; p];
    let mut info = vec![0.0; p * p];
    let mut k = 0;
    while k < n {
        let t = d.time[d.order[k]];
        let mut end = k;
        let (mut e0, mut e1, mut e2) = (0.0f64, vec![0.0; p], vec![0.0; p * p]);
        let mut n_events = 0usize;
        while end < n && d.time[d.order[end]] == t {
            let i = d.order[end];
            let r = eta[i].exp();
            let xi = &d.x[i * p..(i + 1) * p];
            s0 += r;
            for a in 0..p {
                s1[a] += r * xi[a];
                for b in 0..p {
                    s2[a * p + b] += r * xi[a] * xi[b];
                }
            }
            if d.event[i] {
                n_events += 1;
                ll += eta[i];
                e0 += r;
                for a in 0..p {
                    grad[a] += xi[a];
                    e1[a] += r * xi[a];
                    for b in 0..p {
                        e2[a * p + b] += r * xi[a] * xi[b];
                    }
                }
            }
            end += 1;
        }
        if n_events > 0 {
            let m = n_events as f64;
            let steps: Vec<f64> = match ties {
                CoxTies::Breslow => vec![0.0; n_events],
                CoxTies::Efron => (0..n_events).map(|l| l as f64 / m).collect(),
            };
            for f in steps {
                let phi = s0 - f * e0;
                ll -= phi.ln();
                let mut mean = vec![0.0; p];
                for a in 0..p {
                    mean[a] = (s1[a] - f * e1[a]) / phi;
                    grad[a] -= mean[a];
                }
                for a in 0..p {
                    for b in 0..p {
                        info[a * p + b] +=
                            (s2[a * p + b] - f * e2[a * p + b]) / phi - mean[a] * mean[b];
                    }
                }
            }
        }
        k = end;
    }
    (ll, grad, info)
}

fn prepare<'a>(
    x: &[f64],
    p: usize,
    time: &'a [f64],
    event: &'a [bool],
    centre: bool,
) -> Result<(Prepared<'a>, Vec<f64>)> {
    check_survival(time, event)?;
    let n = time.len();
    check_len("covariates", x.len(), n * p)?;
    check_finite("covariates", x)?;
    let mut means = vec![0.0; p];
    if centre {
        for i in 0..n {
            for j in 0..p {
                means[j] += x[i * p + j];
            }
        }
        for m in &mut means {
            *m /= n as f64;
        }
    }
    let xc: Vec<f64> = (0..n * p).map(|k| x[k] - means[k % p]).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| time[b].total_cmp(&time[a]));
    Ok((
        Prepared {
            x: xc,
            p,
            time,
            event,
            order,
        },
        means,
    ))
}

/// The Cox partial log-likelihood at `beta` (covariates row-major `n × p`).
pub fn cox_partial_log_likelihood(
    beta: &[f64],
    x: &[f64],
    time: &[f64],
    event: &[bool],
    ties: CoxTies,
) -> Result<f64> {
    let p = beta.len();
    let (prep, _) = prepare(x, p, time, event, false)?;
    Ok(evaluate(&prep, beta, ties).0)
}

/// Fits a Cox model to covariates `x` (row-major `n × p`). Covariates are centred internally;
/// coefficients are unaffected.
pub fn fit_cox(
    x: &[f64],
    p: usize,
    time: &[f64],
    event: &[bool],
    options: &CoxOptions,
) -> Result<CoxFit> {
    if p == 0 {
        return Err(EvalError::InvalidOption {
            option: "covariates",
            reason: "need at least one covariate".into(),
        });
    }
    if !event.iter().any(|&e| e) {
        return Err(EvalError::Undefined {
            metric: "Cox model",
            reason: "no events".into(),
        });
    }
    let (prep, means) = prepare(x, p, time, event, true)?;
    let mut beta = vec![0.0; p];
    let (mut ll, mut grad, mut info) = evaluate(&prep, &beta, options.ties);
    let ll_null = ll;
    let mut iterations = 0;
    let mut converged = false;
    while iterations < options.max_iterations {
        iterations += 1;
        let step =
            cholesky_solve(&info, &grad, p).ok_or(EvalError::Singular { what: "Cox model" })?;
        let mut scale = 1.0;
        let mut accepted = false;
        for _ in 0..30 {
            let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + scale * s).collect();
            let (ll_t, g_t, i_t) = evaluate(&prep, &trial, options.ties);
            if ll_t.is_finite() && ll_t >= ll - 1e-12 * ll.abs().max(1.0) {
                beta = trial;
                ll = ll_t;
                grad = g_t;
                info = i_t;
                accepted = true;
                break;
            }
            scale *= 0.5;
        }
        let max_step = step.iter().fold(0.0f64, |m, s| m.max((scale * s).abs()));
        if !accepted || max_step < options.tolerance {
            converged = accepted || max_step < options.tolerance;
            break;
        }
    }
    if !converged {
        return Err(EvalError::NoConvergence {
            what: "Cox model",
            iterations,
        });
    }
    let cov = spd_inverse(&info, p).ok_or(EvalError::Singular { what: "Cox model" })?;
    let standard_errors = (0..p).map(|j| cov[j * p + j].sqrt()).collect();
    // Breslow baseline at the covariate means
    let n = time.len();
    let mut baseline_times = Vec::new();
    let mut increments = Vec::new();
    let mut risk_sum = 0.0;
    let mut k = 0;
    while k < n {
        let t = time[prep.order[k]];
        let mut d = 0.0;
        while k < n && time[prep.order[k]] == t {
            let i = prep.order[k];
            let eta: f64 = (0..p).map(|j| prep.x[i * p + j] * beta[j]).sum();
            risk_sum += eta.exp();
            if event[i] {
                d += 1.0;
            }
            k += 1;
        }
        if d > 0.0 {
            baseline_times.push(t);
            increments.push(d / risk_sum);
        }
    }
    baseline_times.reverse();
    increments.reverse();
    let mut h = 0.0;
    let baseline_cumulative_hazard = increments
        .iter()
        .map(|inc| {
            h += inc;
            h
        })
        .collect();
    Ok(CoxFit {
        coefficients: beta,
        standard_errors,
        log_likelihood: ll,
        log_likelihood_null: ll_null,
        likelihood_ratio: 2.0 * (ll - ll_null),
        iterations,
        means,
        baseline_times,
        baseline_cumulative_hazard,
    })
}
