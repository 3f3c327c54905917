//! Seeded bootstrap confidence intervals that resample patients, not rows.
//!
//! Several rows (clips, studies) can belong to one patient; resampling rows would pretend they
//! are independent and give intervals that are too narrow. [`Clusters`] groups rows by patient;
//! each replicate draws patients with replacement and passes the metric a [`Resample`] holding
//! both the row indices (with repeats) and a per-row count, so fast metrics can reuse a sort
//! done once (see [`crate::classification::RankedScores`]). Replicate `r` uses the random stream
//! `Rng::seed_from(seed).fork(r)`, so results do not depend on the number of threads.

use std::collections::HashMap;

use bedside_core::rng::Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::stats::quantile_sorted;

/// Rows grouped by patient.
#[derive(Debug, Clone)]
pub struct Clusters {
    rows: Vec<Vec<usize>>,
    n_rows: usize,
}

impl Clusters {
    /// One cluster per row (no patient column).
    pub fn singletons(n_rows: usize) -> Self {
        Clusters {
            rows: (0..n_rows).map(|i| vec![i]).collect(),
            n_rows,
        }
    }

    /// Groups rows by patient identifier; clusters are ordered by first appearance.
    pub fn from_ids<S: AsRef<str>>(ids: &[S]) -> Self {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut rows: Vec<Vec<usize>> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let k = *index.entry(id.as_ref()).or_insert_with(|| {
                rows.push(Vec::new());
                rows.len() - 1
            });
            rows[k].push(i);
        }
        Clusters {
            rows,
            n_rows: ids.len(),
        }
    }

    /// Restricts to a subset of rows (for subgroup intervals); returned indices are positions
    /// within `subset`. Indices beyond the number of rows are ignored.
    pub fn restrict(&self, subset: &[usize]) -> Self {
        let mut pos = vec![usize::MAX; self.n_rows];
        for (k, &i) in subset.iter().enumerate() {
            if let Some(p) = pos.get_mut(i) {
                *p = k;
            }
        }
        let rows = self
            .rows
            .iter()
            .map(|c| {
                c.iter()
                    .filter(|&&i| pos[i] != usize::MAX)
                    .map(|&i| pos[i])
                    .collect::<Vec<_>>()
            })
            .filter(|c: &Vec<usize>| !c.is_empty())
            .collect();
        Clusters {
            rows,
            n_rows: subset.len(),
        }
    }

    /// Number of patients.
    pub fn n_clusters(&self) -> usize {
        self.rows.len()
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Draws one replicate from `rng`.
    pub fn resample(&self, rng: &mut Rng) -> Resample {
        let mut counts = vec![0u32; self.n_rows];
        let mut indices = Vec::with_capacity(self.n_rows);
        let k = self.rows.len() as u64;
        for _ in 0..self.rows.len() {
            let c = &self.rows[rng.below(k) as usize];
            for &i in c {
                counts[i] += 1;
                indices.push(i);
            }
        }
        Resample { indices, counts }
    }
}

/// One bootstrap replicate.
#[derive(Debug, Clone)]
pub struct Resample {
    /// Drawn row indices, with repeats.
    pub indices: Vec<usize>,
    /// How often each row was drawn.
    pub counts: Vec<u32>,
}

impl Resample {
    /// Gathers `values` at the drawn rows.
    pub fn gather<T: Copy>(&self, values: &[T]) -> Vec<T> {
        self.indices.iter().map(|&i| values[i]).collect()
    }
}

/// Bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BootstrapOptions {
    /// Number of replicates (0 disables intervals).
    pub replicates: usize,
    /// Seed of the random streams.
    pub seed: u64,
    /// Confidence level of the percentile interval.
    pub confidence: f64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            replicates: 1000,
            seed: 20240601,
            confidence: 0.95,
        }
    }
}

/// A point estimate with its percentile bootstrap interval.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Estimate {
    /// The metric on the full data.
    pub value: f64,
    /// Lower limit (NaN without bootstrap).
    pub lower: f64,
    /// Upper limit (NaN without bootstrap).
    pub upper: f64,
    /// Replicates on which the metric was defined.
    pub replicates_used: usize,
}

impl Estimate {
    /// An estimate without an interval.
    pub fn point(value: f64) -> Self {
        Estimate {
            value,
            lower: f64::NAN,
            upper: f64::NAN,
            replicates_used: 0,
        }
    }
}

/// Computes the metric on every replicate (in parallel) and returns the replicate values
/// (those where the metric was undefined are dropped), in replicate order.
pub fn bootstrap_replicates<F>(
    clusters: &Clusters,
    options: &BootstrapOptions,
    metric: F,
) -> Vec<f64>
where
    F: Fn(&Resample) -> Option<f64> + Sync,
{
    let base = Rng::seed_from(options.seed);
    (0..options.replicates)
        .into_par_iter()
        .map(|r| {
            let mut rng = base.fork(r as u64);
            let sample = clusters.resample(&mut rng);
            metric(&sample).filter(|v| v.is_finite())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect()
}

/// Point estimate `value` with a percentile interval from the replicates of `metric`.
pub fn bootstrap_ci<F>(
    value: f64,
    clusters: &Clusters,
    options: &BootstrapOptions,
    metric: F,
) -> Result<Estimate>
where
    F: Fn(&Resample) -> Option<f64> + Sync,
{
    if !(0.0 < options.confidence && options.confidence < 1.0) {
        return Err(EvalError::InvalidOption {
            option: "confidence",
            reason: format!("{} is not in (0, 1)", options.confidence),
        });
    }
    if options.replicates == 0 || clusters.n_clusters() == 0 {
        return Ok(Estimate::point(value));
    }
    let mut values = bootstrap_replicates(clusters, options, metric);
    values.sort_by(f64::total_cmp);
    let alpha = 1.0 - options.confidence;
    Ok(Estimate {
        value,
        lower: quantile_sorted(&values, alpha / 2.0),
        upper: quantile_sorted(&values, 1.0 - alpha / 2.0),
        replicates_used: values.len(),
    })
}

/// Like [`bootstrap_ci`] for several metrics computed together from each replicate (one draw,
/// one pass): `metrics` returns one value per metric (`None` or non-finite where undefined).
pub fn bootstrap_ci_many<F>(
    values: &[f64],
    clusters: &Clusters,
    options: &BootstrapOptions,
    metrics: F,
) -> Result<Vec<Estimate>>
where
    F: Fn(&Resample) -> Vec<Option<f64>> + Sync,
{
    if !(0.0 < options.confidence && options.confidence < 1.0) {
        return Err(EvalError::InvalidOption {
            option: "confidence",
            reason: format!("{} is not in (0, 1)", options.confidence),
        });
    }
    if options.replicates == 0 || clusters.n_clusters() == 0 {
        return Ok(values.iter().map(|&v| Estimate::point(v)).collect());
    }
    let base = Rng::seed_from(options.seed);
    let per_replicate: Vec<Vec<Option<f64>>> = (0..options.replicates)
        .into_par_iter()
        .map(|r| {
            let mut rng = base.fork(r as u64);
            metrics(&clusters.resample(&mut rng))
        })
        .collect();
    let alpha = 1.0 - options.confidence;
    Ok(values
        .iter()
        .enumerate()
        .map(|(k, &value)| {
            if !value.is_finite() {
                return Estimate::point(value);
            }
            let mut reps: Vec<f64> = per_replicate
                .iter()
                .filter_map(|v| v.get(k).copied().flatten())
                .filter(|v| v.is_finite())
                .collect();
            reps.sort_by(f64::total_cmp);
            Estimate {
                value,
                lower: quantile_sorted(&reps, alpha / 2.0),
                upper: quantile_sorted(&reps, 1.0 - alpha / 2.0),
                replicates_used: reps.len(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_draws_whole_patients() {
        let ids = ["a", "a", "b", "c", "c", "c"];
        let clusters = Clusters::from_ids(&ids);
        assert_eq!(clusters.n_clusters(), 3);
        let mut rng = Rng::seed_from(1);
        for _ in 0..50 {
            let s = clusters.resample(&mut rng);
            // rows of one patient are always drawn equally often
            assert_eq!(s.counts[0], s.counts[1]);
            assert_eq!(s.counts[3], s.counts[4]);
            assert_eq!(s.counts[4], s.counts[5]);
            assert_eq!(s.indices.len() as u32, s.counts.iter().sum::<u32>());
        }
    }

    #[test]
    fn same_seed_same_interval() {
        let x: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin()).collect();
        let clusters = Clusters::singletons(x.len());
        let opts = BootstrapOptions {
            replicates: 200,
            seed: 9,
            confidence: 0.9,
        };
        let mean = |s: &Resample| Some(s.gather(&x).iter().sum::<f64>() / s.indices.len() as f64);
        let a = bootstrap_ci(0.0, &clusters, &opts, mean).unwrap();
        let b = bootstrap_ci(0.0, &clusters, &opts, mean).unwrap();
        assert_eq!(a, b);
        assert!(a.lower < a.upper);
        let c = bootstrap_ci(0.0, &clusters, &BootstrapOptions { seed: 10, ..opts }, mean).unwrap();
        assert_ne!(a.lower, c.lower);
        // computing several metrics in one pass gives the same intervals
        let many = bootstrap_ci_many(&[0.0, 1.0], &clusters, &opts, |s| {
            vec![mean(s), mean(s).map(|m| m + 1.0)]
        })
        .unwrap();
        assert_eq!(many[0], a);
        assert!((many[1].lower - (a.lower + 1.0)).abs() < 1e-12);
    }
}
