//! The "I don't know" gate recorded with a bundle: above these thresholds of evidential
//! uncertainty or spread across clips a service answers "indeterminate" instead of a value.
//!
//! The thresholds are either given (`bedside export --max-uncertainty …`) or chosen on the
//! run's validation split so that a stated fraction of validation studies would be referred
//! ([`from_validation`]); the bundle keeps how they were chosen.

use std::path::Path;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, BundleManifest};
use crate::predict::{PredictOptions, predict};
use crate::train::TrainError;
use crate::train::config::ExperimentConfig;

/// Thresholds of the out-of-distribution gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatePolicy {
    /// "I don't know" above this evidential uncertainty `K/S` (absent: no limit).
    pub max_uncertainty: Option<f64>,
    /// "I don't know" above this standard deviation across clips of any output other than
    /// the uncertainty (absent: no limit).
    pub max_clip_spread: Option<f64>,
    /// How the thresholds were chosen, in words.
    pub chosen_by: String,
}

/// Per-study gate signals of a predictions table: the evidential uncertainty (if the table
/// has one) and the largest spread across clips of the other outputs.
fn signals(table: &Path) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
    let mut reader = csv::Reader::from_path(table).map_err(|e| TrainError::record(table, e))?;
    let header = reader
        .headers()
        .map_err(|e| TrainError::record(table, e))?
        .clone();
    let uncertainty = header.iter().position(|h| h == "uncertainty");
    let spreads: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| h.ends_with("_std") && *h != "uncertainty_std")
        .map(|(i, _)| i)
        .collect();
    let (mut u, mut s) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| TrainError::record(table, e))?;
        let number = |i: usize| record.get(i).and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = uncertainty.and_then(number).filter(|v| v.is_finite()) {
            u.push(v);
        }
        let spread = spreads
            .iter()
            .filter_map(|&i| number(i))
            .filter(|v| v.is_finite())
            .fold(f64::NAN, f64::max);
        if spread.is_finite() {
            s.push(spread);
        }
    }
    Ok((u, s))
}

/// The `q` quantile (linear interpolation between order statistics, NumPy's default).
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(values[lo] + (values[hi] - values[lo]) * (pos - lo as f64))
}

/// Choose thresholds on the validation split of the run that made `bundle`: each signal's
/// `1 − refer_fraction` quantile over the validation studies, so that about `refer_fraction`
/// of them would be referred by each signal. `scratch` is a file path for the validation
/// predictions (removed afterwards).
pub fn from_validation(
    bundle: &Bundle,
    config: &ExperimentConfig,
    refer_fraction: f64,
    max_clips: Option<usize>,
    scratch: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GatePolicy, TrainError> {
    if !(refer_fraction > 0.0 && refer_fraction < 1.0) {
        return Err(TrainError::invalid(format!(
            "the referral fraction must lie in (0, 1), got {refer_fraction}"
        )));
    }
    let data = &config.data;
    let options = PredictOptions {
        study_column: data.columns.study.clone(),
        array_column: data.columns.array.clone(),
        split: Some((data.columns.split.clone(), data.val_split.clone())),
        labels: data.labels.clone(),
        join_key: data.join_key.clone(),
        max_clips,
        ..PredictOptions::default()
    };
    let summary = predict(bundle, &data.manifest, &options, scratch, device, progress)?;
    let read = signals(scratch);
    // The scratch table is a by-product: a failure to remove it is not worth failing for.
    let _ = std::fs::remove_file(scratch);
    let (mut u, mut s) = read?;
    if summary.studies == 0 {
        return Err(TrainError::invalid(format!(
            "the validation split `{}` has no studies to choose thresholds on",
            data.val_split
        )));
    }
    let q = 1.0 - refer_fraction;
    let max_uncertainty = quantile(&mut u, q);
    let max_clip_spread = quantile(&mut s, q);
    Ok(GatePolicy {
        max_uncertainty,
        max_clip_spread,
        chosen_by: format!(
            "validation split `{}`, {} studies, {} clips: the {:.0}th percentile of each signal, referring about {:.0} % of validation studies per signal",
            data.val_split,
            summary.studies,
            summary.clips,
            q * 100.0,
            refer_fraction * 100.0
        ),
    })
}

/// Record `gate` in the bundle folder `dir` (its `bundle.json`, rewritten atomically).
pub fn record(dir: &Path, gate: GatePolicy) -> Result<BundleManifest, TrainError> {
    let mut manifest = crate::bundle::read_manifest(dir)?;
    manifest.gate = Some(gate);
    let path = dir.join("bundle.json");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| TrainError::record(&path, e))?;
    bedside_core::fsio::write_atomic(&path, &json).map_err(TrainError::io(&path))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([3, 1, 4, 1, 5], 0.9) = 4.6
        let mut v = vec![3.0, 1.0, 4.0, 1.0, 5.0];
        assert!((quantile(&mut v, 0.9).unwrap() - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&mut [], 0.5), None);
        assert_eq!(quantile(&mut [2.0], 0.3), Some(2.0));
    }

    #[test]
    fn signals_take_the_largest_spread_and_skip_the_uncertainty_spread() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("p.csv");
        std::fs::write(
            &path,
            "study_id,prob_0,prob_1,uncertainty,prob_0_std,prob_1_std,uncertainty_std\n\
             a,0.4,0.6,0.30,0.05,0.07,0.9\n\
             b,0.1,0.9,0.10,0.02,0.01,0.9\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (u, s) = signals(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u, [0.30, 0.10]);
        assert_eq!(s, [0.07, 0.02]);
    }
}
