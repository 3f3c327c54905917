//! Model bundles: a folder with the weights (`weights.bpk`, burn's burnpack record) and
//! `bundle.json`, which says what the model does and how to feed it — task, input spec (clip
//! length, frame period, frame size, normalisation), output columns, intended use, training
//! data summary and validation metrics. [`load`] rebuilds the model from these two files alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::train::config::{ExperimentConfig, SurvivalModel, TaskKind};
use crate::train::model::{ClinicalModel, ModelSpec};
use crate::train::{DataSummary, TrainError, load_run_state};

/// `format` of every `bundle.json`.
pub const BUNDLE_FORMAT: &str = "bedside-model-bundle";
/// Version of the `bundle.json` schema.
pub const BUNDLE_VERSION: u32 = 1;
/// File name of the weights inside a bundle.
pub const WEIGHTS_FILE: &str = "weights.bpk";

/// Validation metrics of the exported epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationSummary {
    /// The exported (best) epoch.
    pub epoch: usize,
    /// The metric that chose it.
    pub selected_by: String,
    /// Every column of that epoch's `metrics.csv` row (`null` where undefined).
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// The content of `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Schema version ([`BUNDLE_VERSION`]).
    pub version: u32,
    /// Experiment name.
    pub name: String,
    /// Intended use, from the experiment configuration.
    pub intended_use: String,
    /// Task in words (e.g. `survival (logistic_hazard)`).
    pub task: String,
    /// Bedside version that wrote the bundle.
    pub created_with: String,
    /// Architecture, task details, tabular inputs and input spec.
    pub model: ModelSpec,
    /// Columns `bedside predict` writes (each also with a `_std` column: spread across clips).
    pub outputs: Vec<String>,
    /// Counts per split and label balance of the training data.
    pub training_data: DataSummary,
    /// Validation metrics of the exported epoch.
    pub validation: ValidationSummary,
    /// Weights file inside the bundle.
    pub weights: String,
    /// The "I don't know" thresholds a service applies (`bedside export --refer-fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<crate::gate::GatePolicy>,
}

/// A loaded bundle.
#[derive(Debug)]
pub struct Bundle {
    /// `bundle.json`.
    pub manifest: BundleManifest,
    /// The model, on the device it was loaded to.
    pub model: ClinicalModel,
}

fn task_words(spec: &ModelSpec) -> String {
    match spec.task.kind {
        TaskKind::Classification => format!("classification ({} classes)", spec.task.classes),
        TaskKind::Evidential => format!(
            "evidential classification ({} classes, Dirichlet uncertainty)",
            spec.task.classes
        ),
        TaskKind::Regression => "regression".into(),
        TaskKind::Survival => format!(
            "survival ({})",
            match spec.task.survival {
                SurvivalModel::Cox => "cox",
                SurvivalModel::LogisticHazard => "logistic_hazard",
                SurvivalModel::Pmf => "pmf",
                SurvivalModel::Deephit => "deephit",
            }
        ),
    }
}

/// Export the best model of the run folder `run` as a bundle in `out`.
pub fn export(run: &Path, out: &Path) -> Result<BundleManifest, TrainError> {
    let state = load_run_state(run)?;
    let config_path = run.join("config.toml");
    let text = std::fs::read_to_string(&config_path).map_err(TrainError::io(&config_path))?;
    let config: ExperimentConfig =
        bedside_core::config::from_str(&text, &config_path.display().to_string())
            .map_err(|e| TrainError::record(&config_path, e))?;
    let (epoch, _) = state.best.ok_or_else(|| {
        TrainError::invalid(format!(
            "{} has no best model yet (no epoch with a finite `{}`)",
            run.display(),
            config.training.early_stopping.metric
        ))
    })?;
    let row = state
        .rows
        .iter()
        .find(|r| r.epoch == epoch)
        .ok_or_else(|| {
            TrainError::record(
                run.join("checkpoint/state.json"),
                "best epoch has no metrics row",
            )
        })?;
    let mut metrics: BTreeMap<String, Option<f64>> = row
        .values
        .iter()
        .map(|(n, v)| (n.clone(), v.is_finite().then_some(*v)))
        .collect();
    metrics.insert("lr".into(), Some(row.lr));
    let best = run.join("best").join("model.bpk");
    let weights = std::fs::read(&best).map_err(TrainError::io(&best))?;
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.into(),
        version: BUNDLE_VERSION,
        name: config.name.clone(),
        intended_use: config.intended_use.clone(),
        task: task_words(&state.spec),
        created_with: format!("bedside {}", env!("CARGO_PKG_VERSION")),
        outputs: state.spec.task.output_names(),
        model: state.spec,
        training_data: state.data,
        validation: ValidationSummary {
            epoch,
            selected_by: config.training.early_stopping.metric.clone(),
            metrics,
        },
        weights: WEIGHTS_FILE.into(),
        gate: None,
    };
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let weights_path = out.join(WEIGHTS_FILE);
    bedside_core::fsio::write_atomic(&weights_path, &weights)
        .map_err(TrainError::io(&weights_path))?;
    let json_path = out.join("bundle.json");
    let json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| TrainError::record(&json_path, e))?;
    bedside_core::fsio::write_atomic(&json_path, &json).map_err(TrainError::io(&json_path))?;
    Ok(manifest)
}

/// Read `bundle.json` of a bundle folder.
pub fn read_manifest(dir: &Path) -> Result<BundleManifest, TrainError> {
    let path: PathBuf = dir.join("bundle.json");
    let bytes = std::fs::read(&path).map_err(TrainError::io(&path))?;
    let manifest: BundleManifest =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::record(&path, e))?;
    if manifest.format != BUNDLE_FORMAT || manifest.version != BUNDLE_VERSION {
        return Err(TrainError::record(
            &path,
            format!(
                "not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} (found `{}` version {})",
                manifest.format, manifest.version
            ),
        ));
    }
    Ok(manifest)
}

/// Load a bundle: rebuild the model from `bundle.json` and apply the weights.
pub fn load(dir: &Path, device: &Device) -> Result<Bundle, TrainError> {
    let manifest = read_manifest(dir)?;
    let weights = dir.join(&manifest.weights);
    let model = crate::train::run_load_model(&manifest.model, &weights, device)?;
    Ok(Bundle { manifest, model })
}
