//! Kaplan–Meier and Nelson–Aalen estimators, and the censoring distribution used for IPCW.

use serde::Serialize;

use super::{check_survival, step_index};
use crate::error::{EvalError, Result};
use crate::stats::normal_critical;

/// Distinct times with the number at risk, events and censorings at each.
pub(crate) struct RiskTable {
    pub times: Vec<f64>,
    pub at_risk: Vec<u64>,
    pub events: Vec<u64>,
    pub censored: Vec<u64>,
}

pub(crate) fn risk_table(time: &[f64], event: &[bool]) -> RiskTable {
    let mut order: Vec<usize> = (0..time.len()).collect();
    order.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
    let n = time.len() as u64;
    let mut table = RiskTable {
        times: Vec::new(),
        at_risk: Vec::new(),
        events: Vec::new(),
        censored: Vec::new(),
    };
    let mut removed = 0u64;
    let mut k = 0;
    while k < order.len() {
        let t = time[order[k]];
        let (mut d, mut c) = (0u64, 0u64);
        while k < order.len() && time[order[k]] == t {
            if event[order[k]] {
                d += 1;
            } else {
                c += 1;
            }
            k += 1;
        }
        table.times.push(t);
        table.at_risk.push(n - removed);
        table.events.push(d);
        table.censored.push(c);
        removed += d + c;
    }
    table
}

/// A Kaplan–Meier survival curve with pointwise log–log ("exponential Greenwood") confidence bands.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KaplanMeier {
    /// Distinct observed times, increasing.
    pub times: Vec<f64>,
    /// Number at risk just before each time.
    pub at_risk: Vec<u64>,
    /// Events at each time.
    pub events: Vec<u64>,
    /// Survival just after each time.
    pub survival: Vec<f64>,
    /// Lower confidence limit.
    pub ci_lower: Vec<f64>,
    /// Upper confidence limit.
    pub ci_upper: Vec<f64>,
    /// Confidence level of the band.
    pub confidence: f64,
}

impl KaplanMeier {
    /// Survival at time `t` (right-continuous step function; 1 before the first time).
    pub fn survival_at(&self, t: f64) -> f64 {
        step_index(&self.times, t).map_or(1.0, |k| self.survival[k])
    }

    /// Confidence limits `(lower, upper)` at time `t`.
    pub fn ci_at(&self, t: f64) -> (f64, f64) {
        step_index(&self.times, t).map_or((1.0, 1.0), |k| (self.ci_lower[k], self.ci_upper[k]))
    }

    /// Median survival time: the first time at which survival drops to 0.5 or below
    /// (`None` if it never does).
    pub fn median(&self) -> Option<f64> {
        self.survival
            .iter()
            .position(|&s| s <= 0.5)
            .map(|k| self.times[k])
    }
}

/// Fits the Kaplan–Meier estimator with a log–log confidence band from Greenwood's variance
/// (as lifelines' default and scikit-survival's `conf_type="log-log"`).
pub fn compute_kaplan_meier(time: &[f64], event: &[bool], confidence: f64) -> Result<KaplanMeier> {
    check_survival(time, event)?;
    if !(0.0 < confidence && confidence < 1.0) {
        return Err(EvalError::InvalidOption {
            option: "confidence",
            reason: format!("{confidence} is not in (0, 1)"),
        });
    }
    let z = normal_critical(confidence);
    let table = risk_table(time, event);
    let m = table.times.len();
    let mut km = KaplanMeier {
        times: table.times,
        at_risk: table.at_risk,
        events: table.events,
        survival: Vec::with_capacity(m),
        ci_lower: Vec::with_capacity(m),
        ci_upper: Vec::with_capacity(m),
        confidence,
    };
    let mut s = 1.0;
    let mut greenwood = 0.0;
    for k in 0..m {
        let (n, d) = (km.at_risk[k] as f64, km.events[k] as f64);
        if d > 0.0 {
            s *= 1.0 - d / n;
            if n > d {
                greenwood += d / (n * (n - d));
            }
        }
        km.survival.push(s);
        let (lo, hi) = if s >= 1.0 {
            (1.0, 1.0)
        } else if s <= 0.0 {
            (0.0, 0.0)
        } else {
            let log_s = s.ln();
            let sigma = greenwood.sqrt() / log_s.abs();
            let centre = (-log_s).ln();
            let a = (-(centre + z * sigma).exp()).exp();
            let b = (-(centre - z * sigma).exp()).exp();
            (a.min(b), a.max(b))
        };
        km.ci_lower.push(lo);
        km.ci_upper.push(hi);
    }
    Ok(km)
}

/// How the Nelson–Aalen estimator treats several events at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum NelsonAalenTies {
    /// `d / n` per time (scikit-survival).
    #[default]
    Plain,
    /// `Σ_{i<d} 1 / (n − i)` (lifelines' default `nelson_aalen_smoothing=True`).
    Smoothed,
}

/// A Nelson–Aalen cumulative hazard curve.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NelsonAalen {
    /// Distinct observed times, increasing.
    pub times: Vec<f64>,
    /// Cumulative hazard just after each time.
    pub cumulative_hazard: Vec<f64>,
}

impl NelsonAalen {
    /// Cumulative hazard at `t` (0 before the first time).
    pub fn at(&self, t: f64) -> f64 {
        step_index(&self.times, t).map_or(0.0, |k| self.cumulative_hazard[k])
    }
}

/// Fits the Nelson–Aalen estimator of the cumulative hazard.
pub fn compute_nelson_aalen(
    time: &[f64],
    event: &[bool],
    ties: NelsonAalenTies,
) -> Result<NelsonAalen> {
    check_survival(time, event)?;
    let table = risk_table(time, event);
    let mut h = 0.0;
    let mut cumulative_hazard = Vec::with_capacity(table.times.len());
    for k in 0..table.times.len() {
        let (n, d) = (table.at_risk[k], table.events[k]);
        match ties {
            NelsonAalenTies::Plain => h += d as f64 / n as f64,
            NelsonAalenTies::Smoothed => {
                for i in 0..d {
                    h += 1.0 / (n - i) as f64;
                }
            }
        }
        cumulative_hazard.push(h);
    }
    Ok(NelsonAalen {
        times: table.times,
        cumulative_hazard,
    })
}

/// How the censoring Kaplan–Meier orders events and censorings at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum CensoringTies {
    /// Events happen first: subjects with an event at `t` leave the risk set before the
    /// censorings at `t` are counted (scikit-survival's `CensoringDistributionEstimator`).
    #[default]
    EventsFirst,
    /// Everyone observed at `t` is at risk for the censorings at `t` (pycox's `kaplan_meier`
    /// applied to `1 − event`, torchsurv's `get_ipcw`).
    Simultaneous,
}

/// The Kaplan–Meier estimate G of the censoring distribution, for inverse-probability-of-
/// censoring weights.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CensoringDistribution {
    /// Distinct times, increasing.
    pub times: Vec<f64>,
    /// G just after each time.
    pub survival: Vec<f64>,
}

impl CensoringDistribution {
    /// Fits G on the given data (scikit-survival fits it on the training set; pass the test
    /// set to reproduce pycox and torchsurv).
    pub fn fit(time: &[f64], event: &[bool], ties: CensoringTies) -> Result<Self> {
        check_survival(time, event)?;
        let table = risk_table(time, event);
        let mut g = 1.0;
        let mut survival = Vec::with_capacity(table.times.len());
        for k in 0..table.times.len() {
            let c = table.censored[k] as f64;
            let n = match ties {
                CensoringTies::EventsFirst => (table.at_risk[k] - table.events[k]) as f64,
                CensoringTies::Simultaneous => table.at_risk[k] as f64,
            };
            if c > 0.0 {
                g *= 1.0 - c / n;
            }
            survival.push(g);
        }
        Ok(CensoringDistribution {
            times: table.times,
            survival,
        })
    }

    fn last(&self) -> (f64, f64) {
        match (self.times.last(), self.survival.last()) {
            (Some(&t), Some(&g)) => (t, g),
            _ => (f64::NEG_INFINITY, 1.0),
        }
    }

    /// G(t), right-continuous. Beyond the last time G is 0 if the curve reached 0 and an
    /// error otherwise (the estimate is undefined there), as in scikit-survival.
    pub fn survival_at(&self, t: f64) -> Result<f64> {
        let (last_t, last_g) = self.last();
        if t > last_t {
            if last_g > 0.0 {
                return Err(EvalError::TimeOutOfRange {
                    what: "censoring distribution",
                    time: t,
                    low: f64::NEG_INFINITY,
                    high: last_t,
                });
            }
            return Ok(0.0);
        }
        Ok(step_index(&self.times, t).map_or(1.0, |k| self.survival[k]))
    }

    /// G(t−), the value just before `t` (pycox's weighting of events).
    pub fn survival_before(&self, t: f64) -> f64 {
        let k = self.times.partition_point(|&g| g < t);
        if k == 0 { 1.0 } else { self.survival[k - 1] }
    }
}

impl CensoringDistribution {
    /// G(t) without the range check: beyond the last time the last value is carried forward
    /// (pycox's evaluation of the censoring curve on a time grid).
    pub fn survival_at_clamped(&self, t: f64) -> f64 {
        step_index(&self.times, t).map_or(1.0, |k| self.survival[k])
    }
}
