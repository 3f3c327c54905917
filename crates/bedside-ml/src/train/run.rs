//! The training loop (see the module documentation of [`crate::train`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;

use bedside_core::rng::Rng;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::arrays::{NamedArray, StartFrom};
use super::config::{
    ExperimentConfig, FairnessKind, OptimizerKind, RegressionLoss, SurvivalModel, TaskKind,
    lower_is_better, task_metric_names,
};
use super::metrics;
use super::model::{ClinicalModel, InputSpec, ModelSpec, TabularColumn, TaskSpec, positive_score};
use super::schedule::learning_rate;
use crate::data::clips::{
    ClipSamplerConfig, RandFlipHorizontal, RandIntensityScale, RandPipeline, RandSpatialShift,
    RandTransform,
};
use crate::data::loader::{
    Batch, ClipJob, ClipMaker, ClipStart, MODEL_CHANNELS, VideoStore, load_manifest,
    normalization_from, npy_shape, run_batches,
};
use crate::data::manifest::Manifest;
use crate::error::MlError;
use crate::loss::classification::{cross_entropy, huber, mse};
use crate::loss::evidential::EvidentialLossConfig;
use crate::loss::fairness::{demographic_parity_penalty, equalized_odds_penalty};
use crate::loss::survival::{cox_loss, deephit_loss, nll_logistic_hazard, nll_pmf};
use crate::weights::{LoadMode, WeightSource, load_torchvision_video};

const STATE_VERSION: u32 = 1;

/// The backends' random generator is one per process (burn's `seed` sets it for every
/// device). A seed and the draws that must follow it (initialisation, a batch's dropout masks)
/// hold this lock, so that runs sharing a process (tests, a service) stay reproducible.
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn generator_lock() -> std::sync::MutexGuard<'static, ()> {
    GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Studies (manifest rows).
    pub studies: usize,
    /// Studies per class (classification tasks).
    pub class_counts: Option<Vec<usize>>,
    /// Mean of the regression target.
    pub value_mean: Option<f64>,
    /// Events (survival tasks).
    pub events: Option<usize>,
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Rows of the manifest (after the join).
    pub manifest_rows: usize,
    /// Rows of the array index without a label row (dropped by the join).
    pub unlabelled_rows: usize,
    /// Per split.
    pub splits: BTreeMap<String, SplitSummary>,
    /// Study identifier column of the training manifest (`predict` pools by it by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_column: Option<String>,
}

/// One line of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Named values in column order (`train_loss`, `train_…`, `val_loss`, `val_…`); NaN
    /// where a metric is undefined (e.g. AUROC of a split with one class).
    #[serde(with = "nan_as_null")]
    pub values: Vec<(String, f64)>,
}

/// JSON has no NaN: undefined metrics travel as `null`.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &[(String, f64)], s: S) -> Result<S::Ok, S::Error> {
        values
            .iter()
            .map(|(n, v)| (n.as_str(), v.is_finite().then_some(*v)))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, f64)>, D::Error> {
        let raw: Vec<(String, Option<f64>)> = Vec::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|(n, v)| (n, v.unwrap_or(f64::NAN)))
            .collect())
    }
}

impl MetricsRow {
    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

/// What `checkpoint/state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub version: u32,
    /// Epochs finished.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub global_step: usize,
    /// Best epoch so far (1-based) and its monitored value.
    pub best: Option<(usize, f64)>,
    /// Epochs since the last improvement.
    pub bad_epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Every row of `metrics.csv`.
    pub rows: Vec<MetricsRow>,
    /// The model.
    pub spec: ModelSpec,
    /// The data.
    pub data: DataSummary,
    /// Model record of the last epoch (file name in `checkpoint/`).
    pub model_file: String,
    /// Optimiser record of the last epoch (file name in `checkpoint/`).
    pub optim_file: String,
    /// The epoch in progress when the checkpoint was taken inside an epoch
    /// (`training.checkpoint_every_steps`); absent for a checkpoint at an epoch's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialEpoch>,
    /// The floating-point values of `rows` (learning rate, then the values) and of `best` as
    /// bit patterns: JSON numbers may read back one unit in the last place off, so
    /// [`load_run_state`] restores these instead and a resumed run rewrites `metrics.csv`
    /// exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<ExactValues>,
}

/// Bit patterns of a [`RunState`]'s floating-point values (see [`RunState::exact`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactValues {
    /// Per row of `rows`: the learning rate, then each value.
    pub rows: Vec<Vec<u64>>,
    /// The monitored value of `best`.
    pub best: Option<u64>,
    /// The model specification's statistics: normalisation means and standard deviations,
    /// target mean and standard deviation, cut points, tabular means and standard deviations.
    #[serde(default)]
    pub spec: Vec<u64>,
}

/// The floating-point statistics of a [`ModelSpec`] that the training data determine.
fn spec_values(spec: &mut ModelSpec) -> Vec<&mut f64> {
    let n = &mut spec.input.normalization;
    n.mean
        .iter_mut()
        .chain(n.std.iter_mut())
        .chain([&mut spec.task.target_mean, &mut spec.task.target_std])
        .chain(spec.task.cuts.iter_mut())
        .chain(
            spec.tabular
                .iter_mut()
                .flat_map(|c| [&mut c.mean, &mut c.std]),
        )
        .collect()
}

impl RunState {
    fn record_exact(&mut self) {
        self.exact = Some(ExactValues {
            rows: self
                .rows
                .iter()
                .map(|r| {
                    std::iter::once(r.lr.to_bits())
                        .chain(r.values.iter().map(|(_, v)| v.to_bits()))
                        .collect()
                })
                .collect(),
            best: self.best.map(|(_, v)| v.to_bits()),
            spec: spec_values(&mut self.spec.clone())
                .into_iter()
                .map(|v| v.to_bits())
                .collect(),
        });
    }

    fn restore_exact(&mut self) {
        let Some(exact) = self.exact.take() else {
            return;
        };
        let fits = exact.rows.len() == self.rows.len()
            && exact
                .rows
                .iter()
                .zip(&self.rows)
                .all(|(bits, row)| bits.len() == 1 + row.values.len());
        if !fits {
            return;
        }
        for (bits, row) in exact.rows.iter().zip(&mut self.rows) {
            row.lr = f64::from_bits(bits[0]);
            for ((_, v), b) in row.values.iter_mut().zip(&bits[1..]) {
                *v = f64::from_bits(*b);
            }
        }
        if let (Some((_, v)), Some(b)) = (self.best.as_mut(), exact.best) {
            *v = f64::from_bits(b);
        }
        let values = spec_values(&mut self.spec);
        if values.len() == exact.spec.len() {
            for (v, b) in values.into_iter().zip(&exact.spec) {
                *v = f64::from_bits(*b);
            }
        }
    }
}

/// Where a checkpoint taken inside an epoch stands: what `--resume` needs to continue with the
/// next batch and still write the epoch's `metrics.csv` row exactly as an uninterrupted run
/// does. Floating-point values are kept as their bit patterns, so they read back exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// The epoch in progress (0-based; equals `epochs_done`).
    pub epoch: usize,
    /// Training batches of the epoch already applied to the checkpointed model.
    pub batches_done: usize,
    /// Learning rate of the last step taken.
    #[serde(with = "f64_bits")]
    pub lr: f64,
    /// Sum over the finished batches of the batch loss times the batch size.
    #[serde(with = "f64_bits")]
    pub loss_sum: f64,
    /// Manifest row and interpreted outputs of every training clip of the epoch so far, in
    /// batch order.
    #[serde(with = "outputs_bits")]
    pub outputs: Vec<(usize, Vec<f64>)>,
}

/// An `f64` as its IEEE-754 bit pattern (exact through JSON, NaN included).
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        v.to_bits().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}

/// Per-row outputs with every value as its bit pattern.
mod outputs_bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Rows = Vec<(usize, Vec<f64>)>;

    pub fn serialize<S: Serializer>(rows: &Rows, s: S) -> Result<S::Ok, S::Error> {
        rows.iter()
            .map(|(i, v)| (*i, v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>()))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Rows, D::Error> {
        let raw: Vec<(usize, Vec<u64>)> = Vec::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|(i, v)| (i, v.into_iter().map(f64::from_bits).collect()))
            .collect())
    }
}

/// Progress reported to the caller (the CLI draws bars from it). Returning
/// `ControlFlow::Break` stops the run: at once after a batch (the work since the last
/// checkpoint is lost: the epoch in progress, or its steps since the last
/// `training.checkpoint_every_steps` checkpoint), after the checkpoint at the end of an epoch.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainEvent<'a> {
    /// Data and model are ready.
    Prepared {
        /// Training data summary.
        summary: &'a DataSummary,
        /// First epoch to run (0-based; > 0 when resuming).
        start_epoch: usize,
        /// Last epoch.
        epochs: usize,
        /// Batches per training epoch.
        train_batches: usize,
        /// Batches per validation pass (`data.val_clips` clips per study).
        val_batches: usize,
    },
    /// A training batch finished.
    Batch {
        /// Epoch (1-based).
        epoch: usize,
        /// Batch (1-based).
        batch: usize,
        /// Its loss.
        loss: f64,
    },
    /// Validation starts.
    Validating {
        /// Epoch (1-based).
        epoch: usize,
    },
    /// An epoch finished and its checkpoint is on disk.
    EpochEnd {
        /// Its row of `metrics.csv`.
        row: &'a MetricsRow,
        /// Whether it is the new best epoch.
        improved: bool,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// Epochs finished (in this and earlier invocations).
    pub epochs_done: usize,
    /// Best epoch and its monitored value.
    pub best: Option<(usize, f64)>,
    /// The monitored metric.
    pub metric: String,
    /// Early stopping ended the run.
    pub stopped_early: bool,
    /// The caller stopped the run.
    pub interrupted: bool,
    /// The last row of `metrics.csv`.
    pub last: Option<MetricsRow>,
}

/// Per-study targets, indexed like the manifest.
struct Targets {
    class: Vec<usize>,
    value: Vec<f64>,
    time: Vec<f64>,
    event: Vec<bool>,
    bin: Vec<usize>,
    group: Vec<usize>,
    tabular: Vec<Vec<f32>>,
}

struct Prepared {
    manifest: Manifest,
    spec: ModelSpec,
    summary: DataSummary,
    targets: Targets,
    train: Vec<usize>,
    val: Vec<usize>,
    /// Frames of each training and validation array (0 for the other rows).
    frames: Vec<usize>,
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, if var > 0.0 { var.sqrt() } else { 1.0 })
}

/// pycox's convention: an event in `(cuts[j−1], cuts[j]]` falls in bin `j`; a censored time
/// in `[cuts[j], cuts[j+1])` in bin `j`.
fn bin_index(cuts: &[f64], time: f64, event: bool) -> usize {
    let last = cuts.len().saturating_sub(1);
    if event {
        cuts.iter().position(|&c| c >= time).unwrap_or(last)
    } else {
        cuts.iter().rposition(|&c| c <= time).unwrap_or(0)
    }
}

fn prepare(config: &ExperimentConfig) -> Result<Prepared, TrainError> {
    let d = &config.data;
    let t = &config.task;
    let mut columns = d.columns.clone();
    for c in &t.tabular {
        if !columns.covariates.contains(c) {
            columns.covariates.push(c.clone());
        }
    }
    if let Some(f) = &t.fairness
        && !columns.groups.contains(&f.group)
    {
        columns.groups.push(f.group.clone());
    }
    let key = d.join_key.clone().unwrap_or_else(|| columns.study.clone());
    let (mut manifest, unlabelled) =
        load_manifest(&d.manifest, d.labels.as_deref(), &key, columns.clone())
            .map_err(crate::data::loader::LoaderError::from)?;
    if let Some(size) = d.resized_copy {
        manifest
            .use_resized_copies(&d.manifest, size)
            .map_err(crate::data::loader::LoaderError::from)?;
    }
    let split_names: BTreeSet<&str> = manifest.studies.iter().map(|s| s.split.as_str()).collect();
    let pick = |name: &str| -> Result<Vec<usize>, TrainError> {
        let rows: Vec<usize> = (0..manifest.studies.len())
            .filter(|&i| manifest.studies[i].split == name)
            .collect();
        if rows.is_empty() {
            return Err(crate::data::loader::LoaderError::EmptySplit {
                split: name.to_string(),
                present: split_names.iter().copied().collect::<Vec<_>>().join(", "),
            }
            .into());
        }
        Ok(rows)
    };
    let train = pick(&d.train_split)?;
    let val = pick(&d.val_split)?;
    // Shapes are checked from the array headers before anything is trained.
    let mut frames = vec![0; manifest.studies.len()];
    for &i in train.iter().chain(&val) {
        let path = &manifest.studies[i].array;
        let shape = npy_shape(path).map_err(|message| crate::data::loader::LoaderError::Array {
            row: i + 1,
            path: path.clone(),
            message,
        })?;
        let ok = match shape.as_slice() {
            [f, h, w] => *f > 0 && *h > 0 && *w > 0,
            [f, h, w, c] => *f > 0 && *h > 0 && *w > 0 && (*c == 1 || *c == 3),
            _ => false,
        };
        if !ok {
            return Err(crate::data::loader::LoaderError::Array {
                row: i + 1,
                path: path.clone(),
                message: format!(
                    "shape {shape:?} is not [frames, height, width] or [frames, height, width, 3]"
                ),
            }
            .into());
        }
        frames[i] = shape[0];
    }
    let n = manifest.studies.len();
    let label_of = |what: &str, i: usize| {
        TrainError::invalid(format!(
            "manifest row {} has no {what} (column not configured?)",
            i + 1
        ))
    };
    let mut targets = Targets {
        class: vec![0; n],
        value: vec![0.0; n],
        time: vec![0.0; n],
        event: vec![false; n],
        bin: vec![0; n],
        group: vec![0; n],
        tabular: vec![Vec::new(); n],
    };
    let used: Vec<usize> = train.iter().chain(&val).copied().collect();
    for &i in &used {
        let s = &manifest.studies[i];
        match t.kind {
            TaskKind::Classification | TaskKind::Evidential => {
                let c = s.class.ok_or_else(|| label_of("class", i))?;
                if c >= t.classes {
                    return Err(TrainError::invalid(format!(
                        "manifest row {}: class {c} is not below task.classes = {}",
                        i + 1,
                        t.classes
                    )));
                }
                targets.class[i] = c;
            }
            TaskKind::Regression => {
                targets.value[i] = s.value.ok_or_else(|| label_of("value", i))?
            }
            TaskKind::Survival => {
                targets.time[i] = s.time.ok_or_else(|| label_of("time", i))?;
                targets.event[i] = s.event.ok_or_else(|| label_of("event", i))?;
            }
        }
    }
    if t.kind == TaskKind::Survival && !train.iter().any(|&i| targets.event[i]) {
        return Err(TrainError::invalid(
            "the training split has no events; a survival model cannot be fitted",
        ));
    }
    if matches!(t.kind, TaskKind::Classification | TaskKind::Evidential) {
        let present: BTreeSet<usize> = train.iter().map(|&i| targets.class[i]).collect();
        if present.len() < 2 {
            return Err(TrainError::invalid(format!(
                "the training split holds only class(es) {present:?}"
            )));
        }
    }
    let (target_mean, target_std) = if t.kind == TaskKind::Regression {
        mean_std(&train.iter().map(|&i| targets.value[i]).collect::<Vec<_>>())
    } else {
        (0.0, 1.0)
    };
    let cuts = if t.kind == TaskKind::Survival && t.survival != SurvivalModel::Cox {
        if t.cuts.is_empty() {
            let max = train
                .iter()
                .map(|&i| targets.time[i])
                .fold(0.0f64, f64::max);
            if max <= 0.0 {
                return Err(TrainError::invalid(
                    "training times are all zero; cannot place time bins",
                ));
            }
            (0..t.time_bins)
                .map(|j| max * j as f64 / (t.time_bins - 1) as f64)
                .collect()
        } else {
            t.cuts.clone()
        }
    } else {
        Vec::new()
    };
    for &i in &used {
        targets.bin[i] = bin_index(&cuts, targets.time[i], targets.event[i]);
    }
    // Groups of the fairness penalty: indices of the sorted distinct labels.
    if let Some(f) = &t.fairness {
        let g = columns
            .groups
            .iter()
            .position(|c| c == &f.group)
            .unwrap_or(0);
        let labels: BTreeSet<&str> = manifest
            .studies
            .iter()
            .filter_map(|s| s.groups.get(g).map(String::as_str))
            .collect();
        let labels: Vec<&str> = labels.into_iter().collect();
        for (i, s) in manifest.studies.iter().enumerate() {
            let label = s.groups.get(g).map(String::as_str).unwrap_or("");
            targets.group[i] = labels.iter().position(|l| *l == label).unwrap_or(0);
        }
    }
    let tabular: Vec<TabularColumn> = t
        .tabular
        .iter()
        .map(|name| {
            let c = columns
                .covariates
                .iter()
                .position(|x| x == name)
                .unwrap_or(0);
            let values: Vec<f64> = train
                .iter()
                .map(|&i| manifest.studies[i].covariates[c])
                .collect();
            let (mean, std) = mean_std(&values);
            TabularColumn {
                name: name.clone(),
                mean,
                std,
            }
        })
        .collect();
    for (i, s) in manifest.studies.iter().enumerate() {
        targets.tabular[i] = tabular
            .iter()
            .map(|col| {
                let c = columns
                    .covariates
                    .iter()
                    .position(|x| x == &col.name)
                    .unwrap_or(0);
                ((s.covariates[c] - col.mean) / col.std) as f32
            })
            .collect();
    }
    let mut splits = BTreeMap::new();
    for name in &split_names {
        let rows: Vec<usize> = (0..n)
            .filter(|&i| manifest.studies[i].split == *name)
            .collect();
        let s = &manifest.studies;
        let class_counts = s[0].class.is_some().then(|| {
            let k = t.classes.max(
                rows.iter()
                    .filter_map(|&i| s[i].class)
                    .max()
                    .map_or(0, |m| m + 1),
            );
            let mut counts = vec![0; k];
            for &i in &rows {
                if let Some(c) = s[i].class {
                    counts[c] += 1;
                }
            }
            counts
        });
        let values: Vec<f64> = rows.iter().filter_map(|&i| s[i].value).collect();
        splits.insert(
            name.to_string(),
            SplitSummary {
                studies: rows.len(),
                class_counts,
                value_mean: (!values.is_empty()).then(|| mean_std(&values).0),
                events: s[0]
                    .event
                    .is_some()
                    .then(|| rows.iter().filter(|&&i| s[i].event == Some(true)).count()),
            },
        );
    }
    let summary = DataSummary {
        manifest_rows: n,
        unlabelled_rows: unlabelled,
        splits,
        study_column: Some(columns.study.clone()),
    };
    let spec = ModelSpec {
        backbone: config.model.backbone.clone(),
        width: config.model.width,
        layers: config.model.layers,
        dropout: config.model.dropout,
        fusion_hidden: config.model.fusion_hidden,
        norm: config.model.norm,
        norm_groups: config.model.norm_groups,
        task: TaskSpec {
            kind: t.kind,
            classes: t.classes,
            survival: t.survival,
            cuts,
            target_mean,
            target_std,
            evidence: t.evidence,
        },
        tabular,
        input: InputSpec {
            clip_length: d.clip_length,
            period: d.period,
            size: d.size,
            channels: MODEL_CHANNELS,
            resized_copy: d.resized_copy,
            // Filled in once the videos are read.
            normalization: crate::data::clips::Normalization {
                mean: vec![0.0; MODEL_CHANNELS],
                std: vec![1.0; MODEL_CHANNELS],
            },
        },
    };
    Ok(Prepared {
        manifest,
        spec,
        summary,
        targets,
        train,
        val,
        frames,
    })
}

fn optimizer(config: &ExperimentConfig) -> ModuleOptimizer {
    let o = &config.optimizer;
    let clip = config
        .training
        .grad_clip_norm
        .map(|c| GradientClippingConfig::Norm(c as f32));
    let decay = (o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32));
    match o.kind {
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay(decay)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(o.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(o.momentum)
                    .with_dampening(0.0),
            ))
            .with_gradient_clipping(clip)
            .init(),
    }
}

fn pipeline(config: &ExperimentConfig) -> RandPipeline {
    let a = &config.data.augment;
    let mut transforms: Vec<Box<dyn RandTransform>> = Vec::new();
    if a.flip_probability > 0.0 {
        transforms.push(Box::new(RandFlipHorizontal {
            probability: a.flip_probability,
        }));
    }
    if a.shift_pad > 0 {
        transforms.push(Box::new(RandSpatialShift { pad: a.shift_pad }));
    }
    if let Some([low, high]) = a.intensity_scale {
        transforms.push(Box::new(RandIntensityScale { low, high }));
    }
    RandPipeline::new(
        Rng::seed_from(config.seed).fork(0xA0).next_u64(),
        transforms,
    )
}

/// The loss of one batch (plus the fairness penalty).
fn batch_loss(
    config: &ExperimentConfig,
    spec: &TaskSpec,
    out: Tensor<2>,
    rows: &[usize],
    targets: &Targets,
    epoch: usize,
) -> Result<Tensor<1>, MlError> {
    let t = &config.task;
    let n = rows.len();
    let classes: Vec<usize> = rows.iter().map(|&i| targets.class[i]).collect();
    let events: Vec<bool> = rows.iter().map(|&i| targets.event[i]).collect();
    let bins: Vec<usize> = rows.iter().map(|&i| targets.bin[i]).collect();
    let score = t
        .fairness
        .as_ref()
        .map(|_| positive_score(spec.kind, out.clone(), spec.evidence));
    let loss = match spec.kind {
        TaskKind::Classification => cross_entropy(out, &classes)?,
        TaskKind::Evidential => EvidentialLossConfig::new()
            .with_evidence(t.evidence)
            .with_data_term(t.evidential_term)
            .with_annealing_step(t.annealing_epochs)
            .init()
            .forward(out, &classes, epoch)?,
        TaskKind::Regression => {
            let target: Vec<f32> = rows
                .iter()
                .map(|&i| ((targets.value[i] - spec.target_mean) / spec.target_std) as f32)
                .collect();
            let target = Tensor::<1>::from_data(TensorData::new(target, [n]), &out.device());
            let prediction = out.reshape([n]);
            match t.regression_loss {
                RegressionLoss::Mse => mse(prediction, target),
                RegressionLoss::Huber => huber(prediction, target, t.huber_delta)?,
            }
        }
        TaskKind::Survival => {
            let durations: Vec<f64> = rows.iter().map(|&i| targets.time[i]).collect();
            match spec.survival {
                SurvivalModel::Cox => cox_loss(out.reshape([n]), &durations, &events, t.cox_ties)?,
                SurvivalModel::LogisticHazard => nll_logistic_hazard(out, &bins, &events)?,
                SurvivalModel::Pmf => nll_pmf(out, &bins, &events)?,
                SurvivalModel::Deephit => {
                    deephit_loss(out, &bins, &events, t.deephit_alpha, t.deephit_sigma)?
                }
            }
        }
    };
    let (Some(f), Some(score)) = (&t.fairness, score) else {
        return Ok(loss);
    };
    let groups: Vec<usize> = rows.iter().map(|&i| targets.group[i]).collect();
    let penalty = match f.kind {
        FairnessKind::DemographicParity => demographic_parity_penalty(score, &groups)?,
        FairnessKind::EqualizedOdds => {
            let labels: Vec<bool> = classes.iter().map(|&c| c == 1).collect();
            equalized_odds_penalty(score, &labels, &groups)?
        }
    };
    Ok(loss + penalty.mul_scalar(f.weight))
}

fn to_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, MlError> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| MlError::InvalidInput {
            message: format!("cannot read a tensor back: {e:?}"),
        })
}

/// Task metrics of predictions `outputs` (one row of interpreted outputs per study).
fn task_metrics(
    spec: &TaskSpec,
    rows: &[usize],
    outputs: &[Vec<f64>],
    targets: &Targets,
) -> Vec<(&'static str, f64)> {
    match spec.kind {
        TaskKind::Classification | TaskKind::Evidential => {
            let probs: Vec<Vec<f64>> = outputs.iter().map(|o| o[..spec.classes].to_vec()).collect();
            let labels: Vec<usize> = rows.iter().map(|&i| targets.class[i]).collect();
            vec![
                ("accuracy", metrics::accuracy(&probs, &labels)),
                ("auroc", metrics::auroc(&probs, &labels)),
            ]
        }
        TaskKind::Regression => {
            let predicted: Vec<f64> = outputs.iter().map(|o| o[0]).collect();
            let target: Vec<f64> = rows.iter().map(|&i| targets.value[i]).collect();
            vec![
                ("mae", metrics::mae(&predicted, &target)),
                ("rmse", metrics::rmse(&predicted, &target)),
            ]
        }
        TaskKind::Survival => {
            let risk: Vec<f64> = outputs.iter().map(|o| o[0]).collect();
            let time: Vec<f64> = rows.iter().map(|&i| targets.time[i]).collect();
            let event: Vec<bool> = rows.iter().map(|&i| targets.event[i]).collect();
            vec![("cindex", metrics::concordance_index(&risk, &time, &event))]
        }
    }
}

fn tabular_tensor(
    spec: &ModelSpec,
    rows: &[usize],
    targets: &Targets,
    device: &Device,
) -> Option<Tensor<2>> {
    if spec.tabular.is_empty() {
        return None;
    }
    let k = spec.tabular.len();
    let data: Vec<f32> = rows
        .iter()
        .flat_map(|&i| targets.tabular[i].iter().copied())
        .collect();
    Some(Tensor::from_data(
        TensorData::new(data, [rows.len(), k]),
        device,
    ))
}

fn batch_tensor(batch: Batch, device: &Device) -> Tensor<5> {
    Tensor::from_data(TensorData::new(batch.data, batch.shape), device)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    bedside_core::fsio::write_atomic(path, bytes).map_err(TrainError::io(path))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(TrainError::io(path))
}

fn metrics_csv(rows: &[MetricsRow]) -> String {
    let mut out = String::from("epoch,lr");
    if let Some(first) = rows.first() {
        for (name, _) in &first.values {
            out.push(',');
            out.push_str(name);
        }
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("{},{}", row.epoch, row.lr));
        for (_, v) in &row.values {
            out.push_str(&format!(",{v}"));
        }
        out.push('\n');
    }
    out
}

/// Read `checkpoint/state.json` of a run folder.
pub fn load_run_state(run: &Path) -> Result<RunState, TrainError> {
    let path = run.join("checkpoint").join("state.json");
    let bytes = read_file(&path)?;
    let mut state: RunState =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::record(&path, e))?;
    state.restore_exact();
    if state.version != STATE_VERSION {
        return Err(TrainError::record(
            &path,
            format!("state version {} is not {STATE_VERSION}", state.version),
        ));
    }
    Ok(state)
}

fn load_model(spec: &ModelSpec, path: &Path, device: &Device) -> Result<ClinicalModel, TrainError> {
    let bytes = read_file(path)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| TrainError::record(path, e))?;
    spec.init(device)?
        .try_load_record(record)
        .map_err(|e| TrainError::record(path, e))
}

pub(crate) fn load_model_file(
    spec: &ModelSpec,
    path: &Path,
    device: &Device,
) -> Result<ClinicalModel, TrainError> {
    load_model(spec, path, device)
}

fn save_model(model: &ClinicalModel, path: &Path) -> Result<(), TrainError> {
    // BatchNorm's running statistics keep their latest update apart until they are
    // synchronised (by the next forward pass, or by making the inference copy): synchronise
    // them so that a checkpoint taken between two steps holds every update.
    let _ = model.valid();
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::record(path, e))?;
    write_file(path, &bytes)
}

fn load_pretrained(model: ClinicalModel, path: &Path) -> Result<ClinicalModel, TrainError> {
    let ClinicalModel {
        backbone,
        frame_cnn,
        dropout,
        fusion,
    } = model;
    let Some(backbone) = backbone else {
        return Err(TrainError::invalid(
            "model.pretrained: torchvision video weights need a video ResNet backbone",
        ));
    };
    let (backbone, report) = load_torchvision_video(
        backbone,
        &WeightSource::File(path.to_path_buf()),
        LoadMode::Lenient,
    )?;
    // Only the classifier may differ: its width is the task's, not Kinetics-400's.
    let bad_shapes: Vec<&str> = report
        .mismatched
        .iter()
        .map(|m| m.key.as_str())
        .filter(|k| !k.starts_with("fc."))
        .collect();
    let missing: Vec<&String> = report
        .missing
        .iter()
        .filter(|k| !k.starts_with("fc."))
        .collect();
    if !bad_shapes.is_empty()
        || !missing.is_empty()
        || !report.unexpected.is_empty()
        || !report.errors.is_empty()
    {
        return Err(TrainError::record(
            path,
            format!(
                "pretrained weights do not fit the backbone (width and layers must be torchvision's): {} mis-shaped, {} missing, {} unexpected keys, {} errors (first: {:?})",
                bad_shapes.len(),
                missing.len(),
                report.unexpected.len(),
                report.errors.len(),
                bad_shapes
                    .first()
                    .map(|s| s.to_string())
                    .or_else(|| missing.first().map(|s| s.to_string()))
                    .or_else(|| report.unexpected.first().cloned())
                    .or_else(|| report.errors.first().cloned())
            ),
        ));
    }
    Ok(ClinicalModel {
        backbone: Some(backbone),
        frame_cnn,
        dropout,
        fusion,
    })
}

/// Copy the backbone of the bundle in `dir` into `model`, keeping `model`'s own head.
fn init_backbone_from_bundle(
    model: ClinicalModel,
    spec: &ModelSpec,
    dir: &Path,
    device: &Device,
) -> Result<ClinicalModel, TrainError> {
    let source = crate::bundle::read_manifest(dir)?;
    let same = source.model.backbone == spec.backbone
        && source.model.width == spec.width
        && source.model.layers == spec.layers;
    if !same {
        return Err(TrainError::record(
            dir,
            format!(
                "model.init_from: the bundle's backbone is {} width {} layers {:?}, this configuration's is {} width {} layers {:?}; they must be equal",
                source.model.backbone,
                source.model.width,
                source.model.layers,
                spec.backbone,
                spec.width,
                spec.layers
            ),
        ));
    }
    let bundle = crate::bundle::load(dir, device)?;
    let ClinicalModel {
        backbone,
        frame_cnn,
        dropout,
        fusion,
    } = model;
    // The head's width is this task's (1 value, 2 classes, K time bins): it stays fresh.
    let backbone = match (backbone, bundle.model.backbone) {
        (Some(own), Some(source)) => Some(crate::video::VideoResNet {
            fc: own.fc,
            ..source
        }),
        (own, _) => own,
    };
    let frame_cnn = match (frame_cnn, bundle.model.frame_cnn) {
        (Some(own), Some(source)) => Some(crate::frame_cnn::FrameCnn {
            fc: own.fc,
            ..source
        }),
        (own, _) => own,
    };
    Ok(ClinicalModel {
        backbone,
        frame_cnn,
        dropout,
        fusion,
    })
}

/// Train (or, with `resume`, continue) the experiment `config` in the folder `run`.
///
/// A fresh run refuses a folder that already holds a checkpoint; a resumed run refuses a
/// configuration that differs from the saved one in anything but `training.epochs` and
/// early stopping.
pub fn train(
    config: &ExperimentConfig,
    run: &Path,
    resume: bool,
    on_event: &mut dyn FnMut(TrainEvent<'_>) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    train_with(config, run, resume, &StartFrom::default(), on_event)
}

/// [`train`], with a fresh run starting from `start`'s weights and normalisation (a
/// federated round starts from the global model). `start` is ignored on resume: the
/// checkpoint holds both.
pub fn train_with(
    config: &ExperimentConfig,
    run: &Path,
    resume: bool,
    start: &StartFrom,
    on_event: &mut dyn FnMut(TrainEvent<'_>) -> ControlFlow<()>,
) -> Result<TrainOutcome, TrainError> {
    let checkpoint_dir = run.join("checkpoint");
    let state_path = checkpoint_dir.join("state.json");
    let config_path = run.join("config.toml");
    let previous = if resume {
        let saved_text =
            std::fs::read_to_string(&config_path).map_err(TrainError::io(&config_path))?;
        let saved: ExperimentConfig =
            bedside_core::config::from_str(&saved_text, &config_path.display().to_string())
                .map_err(|e| TrainError::record(&config_path, e))?;
        let mut comparable = config.clone();
        comparable.training.epochs = saved.training.epochs;
        comparable.training.early_stopping = saved.training.early_stopping.clone();
        comparable.training.checkpoint_every_steps = saved.training.checkpoint_every_steps;
        if comparable != saved {
            return Err(TrainError::invalid(format!(
                "the configuration differs from the one {} was started with ({}); only training.epochs, training.early_stopping and training.checkpoint_every_steps may change on resume",
                run.display(),
                config_path.display()
            )));
        }
        Some(load_run_state(run)?)
    } else {
        if state_path.exists() {
            return Err(TrainError::invalid(format!(
                "{} already holds a run; pass --resume to continue it or choose another folder",
                run.display()
            )));
        }
        None
    };
    let mut prepared = prepare(config)?;
    let device = config_device(config)?;
    let sampler = ClipSamplerConfig::new()
        .with_length(config.data.clip_length)
        .with_period(config.data.period)
        .init()?;
    let store = study_store(config, &prepared);
    if let Some(state) = &previous {
        prepared.spec.input.normalization = state.spec.input.normalization.clone();
        if state.spec != prepared.spec {
            return Err(TrainError::invalid(
                "the data changed since the run was started (labels, splits or derived statistics differ)",
            ));
        }
    } else if let Some(given) = &start.normalization {
        prepared.spec.input.normalization = given.clone();
    } else {
        prepared.spec.input.normalization = training_normalization(config, &prepared, &store)?;
    }
    let spec = prepared.spec.clone();
    let ad_device = device.clone().autodiff();
    let mut optim = optimizer(config);
    let (mut model, mut state) = match previous {
        Some(state) => {
            let model = load_model(&spec, &checkpoint_dir.join(&state.model_file), &ad_device)?;
            let optim_path = checkpoint_dir.join(&state.optim_file);
            let bytes = read_file(&optim_path)?;
            optim = optim
                .from_bytes(Bytes::from_bytes_vec(bytes))
                .map_err(|e| TrainError::record(&optim_path, e))?;
            (model, state)
        }
        None => {
            let mut model = {
                let _generator = generator_lock();
                device.seed(config.seed);
                spec.init(&ad_device)?
            };
            if let Some(path) = &config.model.pretrained {
                model = load_pretrained(model, path)?;
            }
            if let Some(dir) = &config.model.init_from {
                model = init_backbone_from_bundle(model, &spec, dir, &ad_device)?;
            }
            if let Some(arrays) = &start.arrays {
                model = super::arrays::apply_arrays(model, arrays)?;
            }
            std::fs::create_dir_all(&checkpoint_dir).map_err(TrainError::io(&checkpoint_dir))?;
            let text = config
                .to_toml()
                .map_err(|e| TrainError::record(&config_path, e))?;
            write_file(&config_path, text.as_bytes())?;
            let summary = serde_json::to_vec_pretty(&prepared.summary)
                .map_err(|e| TrainError::record(run.join("data.json"), e))?;
            write_file(&run.join("data.json"), &summary)?;
            let state = RunState {
                version: STATE_VERSION,
                epochs_done: 0,
                global_step: 0,
                best: None,
                bad_epochs: 0,
                stopped_early: false,
                rows: Vec::new(),
                spec: spec.clone(),
                data: prepared.summary.clone(),
                model_file: String::new(),
                optim_file: String::new(),
                partial: None,
                exact: None,
            };
            (model, state)
        }
    };
    // FedProx: the round's global model, rebuilt from the start arrays so that a resumed run
    // is pulled towards the same point as the uninterrupted one.
    if start.statistics_only && start.arrays.is_none() {
        return Err(TrainError::invalid(
            "re-estimating statistics needs the model's arrays to start from",
        ));
    }
    let anchor = if start.proximal_mu > 0.0 && !start.statistics_only {
        let arrays = start.arrays.as_ref().ok_or_else(|| {
            TrainError::invalid("a proximal term needs the global model to start from")
        })?;
        let base = {
            let _generator = generator_lock();
            spec.init(&ad_device)?
        };
        let base = super::arrays::apply_arrays(base, arrays)?;
        Some(super::proximal::Anchor::new(&base, start.proximal_mu)?)
    } else {
        None
    };
    let bs = config.training.batch_size;
    let train_batches = prepared.train.len().div_ceil(bs);
    let val_plan = validation_plan(config, &spec, &prepared.val, &prepared.frames)?;
    let val_batches = val_plan.len();
    let epochs = config.training.epochs;
    let metric = config.training.early_stopping.metric.clone();
    let mut outcome = TrainOutcome {
        epochs_done: state.epochs_done,
        best: state.best,
        metric: metric.clone(),
        stopped_early: state.stopped_early,
        interrupted: false,
        last: state.rows.last().cloned(),
    };
    if on_event(TrainEvent::Prepared {
        summary: &prepared.summary,
        start_epoch: state.epochs_done,
        epochs,
        train_batches,
        val_batches,
    })
    .is_break()
    {
        outcome.interrupted = true;
        return Ok(outcome);
    }
    let pipeline = pipeline(config);
    let normalization = spec.input.normalization.clone();
    let targets = &prepared.targets;
    let seed = config.seed;
    let metric_names = task_metric_names(config.task.kind);
    let every = config.training.checkpoint_every_steps;
    while state.epochs_done < epochs && !state.stopped_early {
        let epoch = state.epochs_done;
        let mut order = prepared.train.clone();
        Rng::seed_from(seed)
            .fork(0x0D)
            .fork(epoch as u64)
            .shuffle(&mut order);
        let plan: Vec<Vec<ClipJob>> = order
            .chunks(bs)
            .map(|rows| {
                rows.iter()
                    .map(|&study| ClipJob {
                        study,
                        start: ClipStart::Random,
                        augment: true,
                    })
                    .collect()
            })
            .collect();
        let maker = ClipMaker {
            store: &store,
            sampler,
            pipeline: &pipeline,
            normalization: &normalization,
            seed,
            epoch: epoch as u64,
        };
        // A checkpoint taken inside this epoch: continue after its last batch with its sums.
        let (skip, mut loss_sum, mut outputs, mut lr) = match state.partial.take() {
            None => (0, 0.0, Vec::with_capacity(order.len()), 0.0),
            Some(p) if p.epoch == epoch && p.batches_done <= plan.len() => {
                (p.batches_done, p.loss_sum, p.outputs, p.lr)
            }
            Some(p) => {
                return Err(TrainError::record(
                    &state_path,
                    format!(
                        "the checkpoint is inside epoch {} after batch {}, which does not fit epoch {} of {} batches",
                        p.epoch + 1,
                        p.batches_done,
                        epoch + 1,
                        plan.len()
                    ),
                ));
            }
        };
        let mut slot = Some(model);
        let flow = run_batches(
            &maker,
            &plan[skip..],
            config.data.workers,
            config.data.prefetch_batches,
            |b, batch| -> Result<ControlFlow<()>, TrainError> {
                let b = skip + b;
                let current = slot
                    .take()
                    .ok_or_else(|| TrainError::invalid("model lost during a failed step"))?;
                let rows: Vec<usize> = batch.jobs.iter().map(|j| j.study).collect();
                let x = batch_tensor(batch, &ad_device);
                let tab = tabular_tensor(&spec, &rows, targets, &ad_device);
                // The backend's generator feeds the lazy initialisation of fresh parameters (at
                // their first forward pass) and dropout. It is seeded from the seed and the epoch
                // before an epoch's first batch and, with dropout, from the seed, the epoch and
                // the batch before every other batch, so a run resumed inside an epoch draws
                // what the uninterrupted one did.
                let out = if b == 0 || spec.dropout > 0.0 {
                    let _generator = generator_lock();
                    let mut stream = Rng::seed_from(seed).fork(0xD0).fork(epoch as u64);
                    if b > 0 {
                        stream = stream.fork(b as u64);
                    }
                    device.seed(stream.next_u64());
                    current.forward(x, tab)
                } else {
                    current.forward(x, tab)
                };
                let raw = to_f32(out.clone().detach())?;
                let loss = batch_loss(config, &spec.task, out, &rows, targets, epoch)?;
                let value = f64::from(to_f32(loss.clone())?.first().copied().unwrap_or(f32::NAN));
                if !value.is_finite() {
                    return Err(TrainError::invalid(format!(
                        "the loss became {value} in epoch {} batch {}; lower optimizer.lr or set training.grad_clip_norm",
                        epoch + 1,
                        b + 1
                    )));
                }
                // The reported loss stays the task's; the gradient includes the proximal pull.
                let loss = match &anchor {
                    Some(anchor) => loss + anchor.term(&current)?,
                    None => loss,
                };
                lr = learning_rate(
                    &config.schedule,
                    config.optimizer.lr,
                    state.global_step,
                    train_batches,
                    epochs,
                );
                // The forward pass in training mode has already moved the running statistics.
                let stepped = if start.statistics_only {
                    current
                } else {
                    let grads = GradientsParams::from_grads(loss.backward(), &current);
                    optim.step(lr, current, grads)
                };
                state.global_step += 1;
                loss_sum += value * rows.len() as f64;
                let dim = spec.task.output_dim();
                for (k, &i) in rows.iter().enumerate() {
                    outputs.push((i, spec.task.interpret(&raw[k * dim..(k + 1) * dim])));
                }
                // The end of the epoch writes its own checkpoint.
                if every.is_some_and(|n| state.global_step % n == 0) && b + 1 < plan.len() {
                    state.partial = Some(PartialEpoch {
                        epoch,
                        batches_done: b + 1,
                        lr,
                        loss_sum,
                        outputs: outputs.clone(),
                    });
                    let tag = format!("{:04}-step{:08}", epoch + 1, state.global_step);
                    let written =
                        write_checkpoint(&checkpoint_dir, &mut state, &stepped, &optim, &tag);
                    state.partial = None;
                    written?;
                }
                slot = Some(stepped);
                Ok(on_event(TrainEvent::Batch {
                    epoch: epoch + 1,
                    batch: b + 1,
                    loss: value,
                }))
            },
        )?;
        model = slot.ok_or_else(|| TrainError::invalid("model lost during a failed step"))?;
        if flow.is_break() {
            outcome.interrupted = true;
            return Ok(outcome);
        }
        let train_rows: Vec<usize> = outputs.iter().map(|(i, _)| *i).collect();
        let train_outputs: Vec<Vec<f64>> = outputs.into_iter().map(|(_, o)| o).collect();
        let mut values = vec![(
            "train_loss".to_string(),
            loss_sum / train_rows.len().max(1) as f64,
        )];
        values.extend(
            task_metrics(&spec.task, &train_rows, &train_outputs, targets)
                .into_iter()
                .map(|(n, v)| (format!("train_{n}"), v)),
        );
        if on_event(TrainEvent::Validating { epoch: epoch + 1 }).is_break() {
            outcome.interrupted = true;
            return Ok(outcome);
        }
        let (val_loss, val_outputs) = validate(
            config,
            &spec,
            &model.valid(),
            &store,
            &prepared.val,
            &val_plan,
            targets,
            epoch,
            &device,
        )?;
        values.push(("val_loss".into(), val_loss));
        values.extend(
            task_metrics(&spec.task, &prepared.val, &val_outputs, targets)
                .into_iter()
                .map(|(n, v)| (format!("val_{n}"), v)),
        );
        debug_assert_eq!(values.len(), 2 + 2 * metric_names.len());
        let row = MetricsRow {
            epoch: epoch + 1,
            lr,
            values,
        };
        let current = row.get(&metric).unwrap_or(f64::NAN);
        let improved = !current.is_nan()
            && match state.best {
                None => true,
                Some((_, best)) => {
                    if lower_is_better(&metric) {
                        current < best
                    } else {
                        current > best
                    }
                }
            };
        if improved {
            save_model(&model, &run.join("best").join("model.bpk"))?;
            state.best = Some((epoch + 1, current));
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        if let Some(patience) = config.training.early_stopping.patience
            && state.bad_epochs >= patience
        {
            state.stopped_early = true;
        }
        state.epochs_done = epoch + 1;
        state.rows.push(row.clone());
        write_checkpoint(
            &checkpoint_dir,
            &mut state,
            &model,
            &optim,
            &format!("{:04}", epoch + 1),
        )?;
        write_file(
            &run.join("metrics.csv"),
            metrics_csv(&state.rows).as_bytes(),
        )?;
        outcome.epochs_done = state.epochs_done;
        outcome.best = state.best;
        outcome.stopped_early = state.stopped_early;
        outcome.last = Some(row.clone());
        if on_event(TrainEvent::EpochEnd {
            row: &row,
            improved,
        })
        .is_break()
        {
            outcome.interrupted = true;
            return Ok(outcome);
        }
    }
    Ok(outcome)
}

/// The device `config` asks for, on its backend.
fn config_device(config: &ExperimentConfig) -> Result<Device, TrainError> {
    Ok(config
        .backend
        .device_on(crate::backend::DeviceKind::parse(&config.device)?)?)
}

/// The arrays of every manifest study, read at the configured size.
fn study_store(config: &ExperimentConfig, prepared: &Prepared) -> VideoStore {
    VideoStore::new(
        prepared
            .manifest
            .studies
            .iter()
            .map(|s| s.array.clone())
            .collect(),
        config.data.size,
        config.data.cache,
    )
}

/// Input normalisation from `data.normalization_videos` training studies, evenly spaced.
fn training_normalization(
    config: &ExperimentConfig,
    prepared: &Prepared,
    store: &VideoStore,
) -> Result<crate::data::clips::Normalization, TrainError> {
    let count = config.data.normalization_videos.min(prepared.train.len());
    let step = prepared.train.len() as f64 / count as f64;
    let sample: Vec<usize> = (0..count)
        .map(|k| prepared.train[(k as f64 * step) as usize])
        .collect();
    Ok(normalization_from(store, &sample)?)
}

/// What [`evaluate_arrays`] measured: the metrics over the split and each study's output,
/// so that callers can compute intervals or combine splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// `loss`, then the task's metrics (`accuracy` and `auroc` for classification).
    pub metrics: Vec<(String, f64)>,
    /// Each evaluated study's identifier (the manifest's study column), in output order.
    pub studies: Vec<String>,
    /// The model's output per study: class probabilities for classification, the
    /// prediction for regression, the risk score for survival.
    pub outputs: Vec<Vec<f64>>,
    /// Each study's class label (classification tasks; empty for the others).
    pub classes: Vec<usize>,
}

impl Evaluation {
    /// Studies evaluated.
    pub fn len(&self) -> usize {
        self.studies.len()
    }

    /// Whether no study was evaluated.
    pub fn is_empty(&self) -> bool {
        self.studies.is_empty()
    }

    /// A metric by name; NaN when the task has no such metric.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics
            .iter()
            .find(|(k, _)| k == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

/// Evaluates `arrays` (a whole model, e.g. a federation's global model) on the rows of
/// `config.data.val_split` as validation does (`data.val_clips` spaced clips per study),
/// with `normalization` or, when `None`, the statistics of the configuration's training
/// split. Returns `loss`, the task's metrics and each study's output.
pub fn evaluate_arrays(
    config: &ExperimentConfig,
    arrays: &[NamedArray],
    normalization: Option<&crate::data::clips::Normalization>,
) -> Result<Evaluation, TrainError> {
    let mut prepared = prepare(config)?;
    let device = config_device(config)?;
    let store = study_store(config, &prepared);
    prepared.spec.input.normalization = match normalization {
        Some(n) => n.clone(),
        None => training_normalization(config, &prepared, &store)?,
    };
    let spec = prepared.spec.clone();
    let model = {
        let _generator = generator_lock();
        device.seed(config.seed);
        spec.init(&device)?
    };
    let model = super::arrays::apply_arrays(model, arrays)?;
    let plan = validation_plan(config, &spec, &prepared.val, &prepared.frames)?;
    let (loss, outputs) = validate(
        config,
        &spec,
        &model,
        &store,
        &prepared.val,
        &plan,
        &prepared.targets,
        0,
        &device,
    )?;
    let mut metrics = vec![("loss".to_string(), loss)];
    metrics.extend(
        task_metrics(&spec.task, &prepared.val, &outputs, &prepared.targets)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v)),
    );
    let classes = match spec.task.kind {
        TaskKind::Classification | TaskKind::Evidential => prepared
            .val
            .iter()
            .map(|&i| prepared.targets.class[i])
            .collect(),
        TaskKind::Regression | TaskKind::Survival => Vec::new(),
    };
    Ok(Evaluation {
        metrics,
        studies: prepared
            .val
            .iter()
            .map(|&i| prepared.manifest.studies[i].study.clone())
            .collect(),
        outputs,
        classes,
    })
}

/// The initial weights of `config`'s model, drawn from `config.seed` alone: every site of a
/// federation computes the same ones from the same configuration, so a run can start
/// without anyone sending an initial model.
pub fn initial_arrays(config: &ExperimentConfig) -> Result<Vec<NamedArray>, TrainError> {
    let prepared = prepare(config)?;
    let device = config_device(config)?;
    let _generator = generator_lock();
    device.seed(config.seed);
    let model = prepared.spec.init(&device)?;
    // Listing the parameters materialises the lazily initialised ones, still under the seed.
    super::arrays::model_arrays(&model)
}

/// The weights of a run folder as named arrays, with the run's input normalisation: the
/// last checkpoint's model, or with `best` the best validation epoch's.
pub fn run_arrays(
    run: &Path,
    best: bool,
) -> Result<(Vec<NamedArray>, crate::data::clips::Normalization), TrainError> {
    let state = load_run_state(run)?;
    let path = if best {
        run.join("best").join("model.bpk")
    } else {
        run.join("checkpoint").join(&state.model_file)
    };
    let device = Device::flex();
    let model = load_model(&state.spec, &path, &device)?;
    Ok((
        super::arrays::model_arrays(&model)?,
        state.spec.input.normalization.clone(),
    ))
}

/// Write the model, the optimiser and `state.json` (last, so that until it lands the
/// previous checkpoint stays valid) under the file names `model-<tag>.bpk` and
/// `optim-<tag>.bpk`, then remove the previous checkpoint's files.
fn write_checkpoint(
    dir: &Path,
    state: &mut RunState,
    model: &ClinicalModel,
    optim: &ModuleOptimizer,
    tag: &str,
) -> Result<(), TrainError> {
    let old = (state.model_file.clone(), state.optim_file.clone());
    state.model_file = format!("model-{tag}.bpk");
    state.optim_file = format!("optim-{tag}.bpk");
    save_model(model, &dir.join(&state.model_file))?;
    let optim_path = dir.join(&state.optim_file);
    let bytes = optim
        .into_bytes()
        .map_err(|e| TrainError::record(&optim_path, e))?;
    write_file(&optim_path, &bytes)?;
    let state_path = dir.join("state.json");
    state.record_exact();
    let json = serde_json::to_vec_pretty(&*state).map_err(|e| TrainError::record(&state_path, e));
    state.exact = None;
    let json = json?;
    write_file(&state_path, &json)?;
    for (stale, current) in [(old.0, &state.model_file), (old.1, &state.optim_file)] {
        if !stale.is_empty() && &stale != current {
            let _ = std::fs::remove_file(dir.join(stale));
        }
    }
    Ok(())
}

/// The validation clips: `data.val_clips` evenly spaced starts per study (as `bedside predict
/// --max-clips` chooses them), round by round (every study's first clip, then every study's
/// second, …), in batches of `training.batch_size`.
fn validation_plan(
    config: &ExperimentConfig,
    spec: &ModelSpec,
    rows: &[usize],
    frames: &[usize],
) -> Result<Vec<Vec<ClipJob>>, TrainError> {
    let sampler = ClipSamplerConfig::new()
        .with_length(spec.input.clip_length)
        .with_period(spec.input.period)
        .init()?;
    let starts: Vec<Vec<usize>> = rows
        .iter()
        .map(|&i| sampler.spaced_starts(frames[i], Some(config.data.val_clips)))
        .collect();
    let rounds = starts.iter().map(Vec::len).max().unwrap_or(0);
    let mut jobs = Vec::new();
    for k in 0..rounds {
        for (&study, s) in rows.iter().zip(&starts) {
            if let Some(&start) = s.get(k) {
                jobs.push(ClipJob {
                    study,
                    start: ClipStart::At(start),
                    augment: false,
                });
            }
        }
    }
    Ok(jobs
        .chunks(config.training.batch_size)
        .map(<[ClipJob]>::to_vec)
        .collect())
}

/// Loss and interpreted outputs on the validation split: the loss is the mean over every clip
/// of `plan`, a study's outputs the mean of its clips' outputs (what `bedside predict`
/// writes), in the order of `rows`.
#[allow(clippy::too_many_arguments)]
fn validate(
    config: &ExperimentConfig,
    spec: &ModelSpec,
    model: &ClinicalModel,
    store: &VideoStore,
    rows: &[usize],
    plan: &[Vec<ClipJob>],
    targets: &Targets,
    epoch: usize,
    device: &Device,
) -> Result<(f64, Vec<Vec<f64>>), TrainError> {
    let pipeline = RandPipeline::new(0, Vec::new());
    let sampler = ClipSamplerConfig::new()
        .with_length(spec.input.clip_length)
        .with_period(spec.input.period)
        .init()?;
    let maker = ClipMaker {
        store,
        sampler,
        pipeline: &pipeline,
        normalization: &spec.input.normalization,
        seed: config.seed,
        epoch: epoch as u64,
    };
    let position: BTreeMap<usize, usize> = rows.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut loss_sum = 0.0;
    let mut clips = 0usize;
    // Per study: clips seen and the sum of their interpreted outputs.
    let mut sums: Vec<(usize, Vec<f64>)> = vec![(0, Vec::new()); rows.len()];
    let dim = spec.task.output_dim();
    // Validation never breaks early: the flow is always `Continue`.
    let _ = run_batches(
        &maker,
        plan,
        config.data.workers,
        config.data.prefetch_batches,
        |_, batch| -> Result<ControlFlow<()>, TrainError> {
            let ids: Vec<usize> = batch.jobs.iter().map(|j| j.study).collect();
            let x = batch_tensor(batch, device);
            let out = model.forward(x, tabular_tensor(spec, &ids, targets, device));
            let raw = to_f32(out.clone())?;
            let loss = batch_loss(config, &spec.task, out, &ids, targets, epoch)?;
            let value = f64::from(to_f32(loss)?.first().copied().unwrap_or(f32::NAN));
            loss_sum += value * ids.len() as f64;
            clips += ids.len();
            for (k, i) in ids.iter().enumerate() {
                let values = spec.task.interpret(&raw[k * dim..(k + 1) * dim]);
                let slot = position
                    .get(i)
                    .and_then(|&p| sums.get_mut(p))
                    .ok_or_else(|| TrainError::invalid("a validation clip of an unknown study"))?;
                if slot.1.is_empty() {
                    slot.1 = vec![0.0; values.len()];
                }
                slot.0 += 1;
                for (acc, v) in slot.1.iter_mut().zip(&values) {
                    *acc += v;
                }
            }
            Ok(ControlFlow::Continue(()))
        },
    )?;
    let outputs = sums
        .into_iter()
        .map(|(n, sum)| sum.into_iter().map(|v| v / n.max(1) as f64).collect())
        .collect();
    Ok((loss_sum / clips.max(1) as f64, outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_pycox() {
        let cuts = [0.0, 10.0, 20.0];
        assert_eq!(bin_index(&cuts, 5.0, true), 1);
        assert_eq!(bin_index(&cuts, 10.0, true), 1);
        assert_eq!(bin_index(&cuts, 5.0, false), 0);
        assert_eq!(bin_index(&cuts, 25.0, false), 2);
        assert_eq!(bin_index(&cuts, 25.0, true), 2);
    }
}
