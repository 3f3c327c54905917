//! The log-rank test comparing survival between groups.

use serde::Serialize;

use super::check_survival;
use crate::error::{EvalError, Result, check_len};
use crate::stats::{chi2_sf, cholesky_solve};

/// Result of a k-group log-rank test.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogRankTest {
    /// Group labels, in the order used below.
    pub groups: Vec<String>,
    /// Observed events per group.
    pub observed: Vec<f64>,
    /// Expected events per group under the null hypothesis.
    pub expected: Vec<f64>,
    /// Chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom (groups − 1).
    pub degrees_of_freedom: usize,
    /// p-value.
    pub p_value: f64,
}

/// Log-rank test (Mantel–Haenszel, hypergeometric variance) for `group[i]` labels.
/// Groups are sorted by label. Needs at least two groups and one event.
pub fn compute_log_rank(time: &[f64], event: &[bool], group: &[&str]) -> Result<LogRankTest> {
    check_survival(time, event)?;
    check_len("group", group.len(), time.len())?;
    let mut labels: Vec<&str> = group.to_vec();
    labels.sort_unstable();
    labels.dedup();
    let k = labels.len();
    if k < 2 {
        return Err(EvalError::Undefined {
            metric: "log-rank test",
            reason: "needs at least two groups".into(),
        });
    }
    let gid: Vec<usize> = group
        .iter()
        .map(|g| labels.binary_search(g).unwrap_or(0))
        .collect();
    let mut order: Vec<usize> = (0..time.len()).collect();
    order.sort_by(|&a, &b| time[a].total_cmp(&time[b]));
    let mut at_risk = vec![0.0f64; k];
    for &g in &gid {
        at_risk[g] += 1.0;
    }
    let mut observed = vec![0.0; k];
    let mut expected = vec![0.0; k];
    let mut var = vec![0.0; k * k];
    let mut p = 0;
    while p < order.len() {
        let t = time[order[p]];
        let mut end = p;
        let mut d_g = vec![0.0; k];
        let mut leave = vec![0.0; k];
        while end < order.len() && time[order[end]] == t {
            let i = order[end];
            if event[i] {
                d_g[gid[i]] += 1.0;
            }
            leave[gid[i]] += 1.0;
            end += 1;
        }
        let d: f64 = d_g.iter().sum();
        let n: f64 = at_risk.iter().sum();
        if d > 0.0 {
            for g in 0..k {
                observed[g] += d_g[g];
                expected[g] += d * at_risk[g] / n;
            }
            if n > 1.0 {
                let f = d * (n - d) / (n - 1.0);
                for a in 0..k {
                    for b in 0..k {
                        let delta = if a == b { 1.0 } else { 0.0 };
                        var[a * k + b] += f * at_risk[a] / n * (delta - at_risk[b] / n);
                    }
                }
            }
        }
        for g in 0..k {
            at_risk[g] -= leave[g];
        }
        p = end;
    }
    let m = k - 1;
    let diff: Vec<f64> = (0..m).map(|g| observed[g] - expected[g]).collect();
    let mut v = vec![0.0; m * m];
    for a in 0..m {
        for b in 0..m {
            v[a * m + b] = var[a * k + b];
        }
    }
    let x = cholesky_solve(&v, &diff, m).ok_or(EvalError::Singular {
        what: "log-rank variance",
    })?;
    let statistic: f64 = diff.iter().zip(&x).map(|(a, b)| a * b).sum();
    Ok(LogRankTest {
        groups: labels.iter().map(|s| s.to_string()).collect(),
        observed,
        expected,
        statistic,
        degrees_of_freedom: m,
        p_value: chi2_sf(statistic, m as f64),
    })
}
