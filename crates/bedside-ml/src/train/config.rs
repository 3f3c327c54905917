//! The experiment configuration: one TOML file names the data, the backbone, the task and its
//! head, the optimiser, the schedule and the training budget.
//!
//! Loaded through [`bedside_core::config`] (defaults → file → `BEDSIDE__…` environment →
//! flags), so unknown keys are rejected by name and every range is checked by
//! [`Validate`] before any data is read.

use std::path::{Path, PathBuf};

use bedside_core::config::Validate;
use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::data::manifest::ManifestColumns;
use crate::loss::evidential::{Evidence, EvidentialDataTerm};
use crate::loss::survival::CoxTies;
use crate::train::model::{FRAME_CNN, FRAME_CNN_MAX, frame_cnn_pooling};
use crate::video::{DEFAULT_NORM_GROUPS, NormKind, VideoArch};

/// The whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// Short name of the experiment (written into the bundle).
    pub name: String,
    /// Intended use, in words (copied into the bundle's manifest).
    pub intended_use: String,
    /// Seed of every random choice (initialisation, order, clips, augmentations, dropout).
    pub seed: u64,
    /// Backend among those compiled in (`flex`, `tch`).
    pub backend: BackendKind,
    /// Device: `cpu`, or `cuda` / `cuda:N` with the `tch` backend.
    pub device: String,
    /// Data: manifest, columns, clips, augmentations, loading.
    pub data: DataConfig,
    /// Backbone.
    pub model: ModelConfig,
    /// Task, head and loss.
    pub task: TaskConfig,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Epochs, batches, clipping, early stopping.
    pub training: TrainingConfig,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            name: "experiment".into(),
            intended_use: "Research use only; not validated for clinical decisions.".into(),
            seed: 42,
            backend: BackendKind::Flex,
            device: "cpu".into(),
            data: DataConfig::default(),
            model: ModelConfig::default(),
            task: TaskConfig::default(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            training: TrainingConfig::default(),
        }
    }
}

/// Where the studies are and how clips are made from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Manifest, CSV or Parquet (a name ending in `.parquet`): one row per array with the
    /// array path column (relative paths resolve against the manifest's folder); with
    /// `labels`, the index of arrays to join (e.g. `bedside curate`'s `metadata.parquet`).
    pub manifest: PathBuf,
    /// Optional label table (CSV or Parquet) joined to `manifest` on `join_key` (e.g.
    /// `bedside curate`'s `metadata.csv` plus a label sheet).
    pub labels: Option<PathBuf>,
    /// Column present in both tables for the join (default: the study column).
    pub join_key: Option<String>,
    /// Which columns hold what.
    pub columns: ManifestColumns,
    /// Split used for training.
    pub train_split: String,
    /// Split used for validation (early stopping, best model).
    pub val_split: String,
    /// Frames per clip.
    pub clip_length: usize,
    /// Step between sampled frames.
    pub period: usize,
    /// Clips per validation study, evenly spaced from the first to the last valid start (as
    /// `bedside predict --max-clips` chooses them); the study's prediction is the mean of its
    /// clips' predictions. Studies with fewer valid starts use all of them. Validation costs
    /// this many forward passes per study.
    pub val_clips: usize,
    /// Side of the square frames fed to the model; larger arrays are resized with their aspect
    /// kept and zero-padded.
    pub size: usize,
    /// Read the `S×S` sector-cropped copies that `bedside curate --resize S` writes beside each
    /// array (`<name>.SxS.npy`) instead of the native arrays. Cropping to the scan area first
    /// keeps the ventricle large in small frames; the bundle records it so `predict` reads the
    /// same copies.
    pub resized_copy: Option<usize>,
    /// Loader threads (0 loads on the training thread).
    pub workers: usize,
    /// Batches prepared ahead of the training step (bounds the loader's memory).
    pub prefetch_batches: usize,
    /// Keep resized videos in memory after their first read (`size²·frames` floats each).
    pub cache: bool,
    /// Training videos read to estimate the normalisation mean and standard deviation.
    pub normalization_videos: usize,
    /// Augmentations of training clips.
    pub augment: AugmentConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            manifest: PathBuf::new(),
            labels: None,
            join_key: None,
            columns: ManifestColumns::default(),
            train_split: "train".into(),
            val_split: "val".into(),
            clip_length: 16,
            period: 2,
            val_clips: 4,
            size: 64,
            resized_copy: None,
            workers: 1,
            prefetch_batches: 4,
            cache: true,
            normalization_videos: 64,
            augment: AugmentConfig::default(),
        }
    }
}

/// Seeded `Rand…` augmentations of training clips (see [`crate::data::clips`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Probability of a left–right flip (`RandFlipHorizontal`). 0 disables it.
    pub flip_probability: f64,
    /// Largest random shift in pixels (`RandSpatialShift`, EchoNet's pad-and-crop). 0 disables it.
    pub shift_pad: usize,
    /// Intensity factor range `[low, high]` (`RandIntensityScale`).
    pub intensity_scale: Option<[f64; 2]>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            flip_probability: 0.0,
            shift_pad: 0,
            intensity_scale: None,
        }
    }
}

/// The backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// torchvision name of a video ResNet: `r2plus1d_18`, `r3d_18` or `mc3_18`; or the
    /// per-frame 2D CNN baseline with temporal pooling, `frame_cnn` (mean over frames) or
    /// `frame_cnn_max` (max over frames), which shows what 3D convolutions add.
    pub backbone: String,
    /// Channel multiplier on torchvision's widths 64/128/256/512 (the frame CNN uses the same
    /// widths for its stem and three stages).
    pub width: f64,
    /// Residual blocks per stage (the frame CNN has one convolution per stage: `[1, 1, 1, 1]`).
    pub layers: [usize; 4],
    /// torchvision weights (`.pt`/`.safetensors`) to start from; every backbone key must load,
    /// only `fc.*` may differ.
    pub pretrained: Option<PathBuf>,
    /// A Bedside model bundle (from `bedside export`) whose backbone starts this run: every
    /// backbone weight is copied, the task head (`fc`, fusion) starts fresh. The bundle's
    /// backbone, width and layers must equal this configuration's. Transfer between clinical
    /// tasks on the same images, e.g. a reduced-EF classifier started from an EF regressor.
    pub init_from: Option<PathBuf>,
    /// Hidden width of the late-fusion head (used when `task.tabular` names columns).
    pub fusion_hidden: usize,
    /// Dropout before the head.
    pub dropout: f64,
    /// Normalisation after each convolution: `batch` (torchvision's BatchNorm) or `group`
    /// (GroupNorm, per-clip statistics). Federations across hospitals need `group`: BatchNorm's
    /// averaged running statistics fit none of the sites, so scores shift from site to site.
    /// Pretrained BatchNorm weights load into either (`group` keeps their scale and shift).
    pub norm: NormKind,
    /// Groups of `norm = "group"`; a layer whose channels this does not divide uses the
    /// largest divisor below it.
    pub norm_groups: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: "r2plus1d_18".into(),
            width: 0.25,
            layers: [1, 1, 1, 1],
            pretrained: None,
            init_from: None,
            fusion_hidden: 32,
            dropout: 0.0,
            norm: NormKind::Batch,
            norm_groups: DEFAULT_NORM_GROUPS,
        }
    }
}

/// What is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Softmax classification (`data.columns.class`).
    Classification,
    /// Evidential classification with Dirichlet uncertainty (`data.columns.class`).
    Evidential,
    /// One value (`data.columns.value`), e.g. ejection fraction.
    Regression,
    /// Time to event (`data.columns.time`, `data.columns.event`).
    Survival,
}

/// The survival model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurvivalModel {
    /// Cox partial likelihood (risk score only).
    Cox,
    /// Discrete-time logistic hazard (pycox `LogisticHazard`).
    LogisticHazard,
    /// Discrete-time PMF (pycox `PMF`).
    Pmf,
    /// DeepHit single risk (likelihood plus ranking loss).
    Deephit,
}

/// The regression loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionLoss {
    /// Mean squared error.
    Mse,
    /// Huber loss (`task.huber_delta`, in standardised target units).
    Huber,
}

/// Which fairness penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FairnessKind {
    /// Demographic parity: group mean scores close to the overall mean.
    DemographicParity,
    /// Equalized odds: the same within each class (classification tasks only).
    EqualizedOdds,
}

/// An optional fairness penalty added to the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairnessConfig {
    /// Penalty.
    pub kind: FairnessKind,
    /// Group column of the manifest (any number of groups).
    pub group: String,
    /// Weight of the penalty in the loss.
    pub weight: f64,
}

/// Task, head and loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Task.
    pub kind: TaskKind,
    /// Classes (classification, evidential).
    pub classes: usize,
    /// Regression loss.
    pub regression_loss: RegressionLoss,
    /// Huber delta in standardised target units.
    pub huber_delta: f64,
    /// Evidence function (evidential).
    pub evidence: Evidence,
    /// Data term of the evidential loss.
    pub evidential_term: EvidentialDataTerm,
    /// Epochs over which the evidential KL term is annealed in.
    pub annealing_epochs: usize,
    /// Survival model.
    pub survival: SurvivalModel,
    /// Number of time bins of the discrete-time models (cut points at quantiles of the
    /// training event times) when `cuts` is empty.
    pub time_bins: usize,
    /// Explicit cut points (increasing, the first usually 0) of the discrete-time models.
    pub cuts: Vec<f64>,
    /// Ties of the Cox partial likelihood.
    pub cox_ties: CoxTies,
    /// DeepHit weight of the likelihood (1 − alpha weights the ranking loss).
    pub deephit_alpha: f64,
    /// DeepHit ranking-loss scale.
    pub deephit_sigma: f64,
    /// Numeric manifest columns fused with the video embedding (late fusion); standardised
    /// with the training split's mean and standard deviation.
    pub tabular: Vec<String>,
    /// Optional fairness penalty.
    pub fairness: Option<FairnessConfig>,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            kind: TaskKind::Classification,
            classes: 2,
            regression_loss: RegressionLoss::Mse,
            huber_delta: 1.0,
            evidence: Evidence::Softplus,
            evidential_term: EvidentialDataTerm::Mse,
            annealing_epochs: 10,
            survival: SurvivalModel::Cox,
            time_bins: 10,
            cuts: Vec::new(),
            cox_ties: CoxTies::Efron,
            deephit_alpha: 0.2,
            deephit_sigma: 0.1,
            tabular: Vec::new(),
            fairness: None,
        }
    }
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam (weight decay as L2 penalty on the gradient).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with momentum.
    Sgd,
}

/// Optimiser settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// Optimiser.
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (0 disables it for Adam and SGD).
    pub weight_decay: f64,
    /// Momentum (SGD).
    pub momentum: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            lr: 1e-3,
            weight_decay: 1e-4,
            momentum: 0.9,
        }
    }
}

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// The peak rate throughout (after warm-up).
    Constant,
    /// Cosine decay from the peak to `min_lr_factor · lr` at the last step.
    Cosine,
    /// Multiply by `gamma` every `step_epochs` epochs.
    Step,
}

/// Learning-rate schedule settings. The rate is a pure function of the step, so a resumed
/// run continues on the same curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Schedule.
    pub kind: ScheduleKind,
    /// Epochs of linear warm-up from 0 to the peak rate.
    pub warmup_epochs: usize,
    /// Epochs between decays (`step`).
    pub step_epochs: usize,
    /// Decay factor (`step`).
    pub gamma: f64,
    /// Final rate as a fraction of the peak (`cosine`).
    pub min_lr_factor: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 0,
            step_epochs: 10,
            gamma: 0.1,
            min_lr_factor: 0.01,
        }
    }
}

/// Early stopping on a validation metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingConfig {
    /// Column of `metrics.csv` watched for the best model and early stopping, e.g. `val_loss`,
    /// `val_auroc`, `val_mae`, `val_cindex`. Losses and errors are minimised, the others
    /// maximised.
    pub metric: String,
    /// Stop after this many epochs without improvement (absent: never stop early).
    pub patience: Option<usize>,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self {
            metric: "val_loss".into(),
            patience: None,
        }
    }
}

/// The training budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Epochs.
    pub epochs: usize,
    /// Clips per step.
    pub batch_size: usize,
    /// Clip each parameter's gradient to this L2 norm (burn's per-tensor clipping).
    pub grad_clip_norm: Option<f64>,
    /// Also checkpoint every this many optimiser steps inside an epoch (absent: only at the
    /// end of each epoch). `--resume` continues from the batch after the checkpoint with the
    /// same results as an uninterrupted run.
    pub checkpoint_every_steps: Option<usize>,
    /// Early stopping and best-model selection.
    pub early_stopping: EarlyStoppingConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 8,
            grad_clip_norm: None,
            checkpoint_every_steps: None,
            early_stopping: EarlyStoppingConfig::default(),
        }
    }
}

/// Metric names a run writes for `kind` (without the `train_`/`val_` prefix), in column order.
pub fn task_metric_names(kind: TaskKind) -> &'static [&'static str] {
    match kind {
        TaskKind::Classification | TaskKind::Evidential => &["accuracy", "auroc"],
        TaskKind::Regression => &["mae", "rmse"],
        TaskKind::Survival => &["cindex"],
    }
}

/// Whether a smaller value of metric `name` is better.
pub fn lower_is_better(name: &str) -> bool {
    let base = name
        .strip_prefix("val_")
        .or_else(|| name.strip_prefix("train_"))
        .unwrap_or(name);
    matches!(base, "loss" | "mae" | "rmse")
}

fn err(key: &str, message: impl Into<String>) -> Result<(), (String, String)> {
    Err((key.to_string(), message.into()))
}

impl Validate for ExperimentConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        match crate::backend::DeviceKind::parse(&self.device) {
            Err(e) => return err("device", e.to_string()),
            Ok(crate::backend::DeviceKind::Cuda(_)) if self.backend == BackendKind::Flex => {
                return err(
                    "device",
                    format!(
                        "backend `flex` runs on the CPU only; `{}` needs backend = \"tch\"",
                        self.device
                    ),
                );
            }
            Ok(_) => {}
        }
        let d = &self.data;
        if d.manifest.as_os_str().is_empty() {
            return err("data.manifest", "name the manifest (CSV or Parquet)");
        }
        if d.clip_length == 0 {
            return err("data.clip_length", "must be at least 1");
        }
        if d.period == 0 {
            return err("data.period", "must be at least 1");
        }
        if d.val_clips == 0 {
            return err("data.val_clips", "must be at least 1");
        }
        if !(8..=1024).contains(&d.size) {
            return err("data.size", format!("must lie in 8..=1024, got {}", d.size));
        }
        if let Some(copy) = d.resized_copy
            && !(8..=4096).contains(&copy)
        {
            return err(
                "data.resized_copy",
                format!("must lie in 8..=4096, got {copy}"),
            );
        }
        if d.prefetch_batches == 0 {
            return err("data.prefetch_batches", "must be at least 1");
        }
        if d.normalization_videos == 0 {
            return err("data.normalization_videos", "must be at least 1");
        }
        if d.train_split == d.val_split {
            return err("data.val_split", "must differ from data.train_split");
        }
        let a = &d.augment;
        if !(0.0..=1.0).contains(&a.flip_probability) {
            return err("data.augment.flip_probability", "must lie in [0, 1]");
        }
        if let Some([low, high]) = a.intensity_scale
            && !(low.is_finite() && high.is_finite() && 0.0 < low && low <= high)
        {
            return err(
                "data.augment.intensity_scale",
                "must be [low, high] with 0 < low <= high",
            );
        }
        if let Some(pooling) = frame_cnn_pooling(&self.model.backbone) {
            if self.model.layers != [1, 1, 1, 1] {
                return err(
                    "model.layers",
                    format!(
                        "the {} backbone has one convolution per stage: use [1, 1, 1, 1]",
                        self.model.backbone
                    ),
                );
            }
            if self.model.pretrained.is_some() {
                return err(
                    "model.pretrained",
                    format!(
                        "torchvision video weights do not fit the {} backbone ({pooling:?} pooling over frames)",
                        self.model.backbone
                    ),
                );
            }
        } else if VideoArch::from_torchvision_name(&self.model.backbone).is_err() {
            return err(
                "model.backbone",
                format!(
                    "unknown backbone `{}` (expected r2plus1d_18, r3d_18, mc3_18, {FRAME_CNN} or {FRAME_CNN_MAX})",
                    self.model.backbone
                ),
            );
        }
        if !(self.model.width.is_finite() && self.model.width > 0.0 && self.model.width <= 4.0) {
            return err("model.width", "must lie in (0, 4]");
        }
        if self.model.layers.contains(&0) {
            return err("model.layers", "every stage needs at least one block");
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            return err("model.dropout", "must lie in [0, 1)");
        }
        if self.model.fusion_hidden == 0 {
            return err("model.fusion_hidden", "must be at least 1");
        }
        if self.model.norm_groups == 0 {
            return err("model.norm_groups", "must be at least 1");
        }
        if self.model.pretrained.is_some() && self.model.init_from.is_some() {
            return err(
                "model.init_from",
                "cannot be combined with model.pretrained: choose one starting point",
            );
        }
        self.validate_task()?;
        let o = &self.optimizer;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return err("optimizer.lr", "must be positive");
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return err("optimizer.weight_decay", "must be non-negative");
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return err("optimizer.momentum", "must lie in [0, 1)");
        }
        let s = &self.schedule;
        if s.step_epochs == 0 {
            return err("schedule.step_epochs", "must be at least 1");
        }
        if !(s.gamma > 0.0 && s.gamma <= 1.0) {
            return err("schedule.gamma", "must lie in (0, 1]");
        }
        if !(0.0..=1.0).contains(&s.min_lr_factor) {
            return err("schedule.min_lr_factor", "must lie in [0, 1]");
        }
        let t = &self.training;
        if t.epochs == 0 {
            return err("training.epochs", "must be at least 1");
        }
        if s.warmup_epochs >= t.epochs && s.warmup_epochs > 0 {
            return err(
                "schedule.warmup_epochs",
                "must be fewer than training.epochs",
            );
        }
        if t.batch_size == 0 {
            return err("training.batch_size", "must be at least 1");
        }
        if let Some(c) = t.grad_clip_norm
            && !(c.is_finite() && c > 0.0)
        {
            return err("training.grad_clip_norm", "must be positive");
        }
        if t.checkpoint_every_steps == Some(0) {
            return err("training.checkpoint_every_steps", "must be at least 1");
        }
        let metric = &t.early_stopping.metric;
        let allowed: Vec<String> = std::iter::once("loss")
            .chain(task_metric_names(self.task.kind).iter().copied())
            .flat_map(|m| [format!("val_{m}"), format!("train_{m}")])
            .collect();
        if !allowed.contains(metric) {
            return err(
                "training.early_stopping.metric",
                format!(
                    "`{metric}` is not a metric of this task (one of {})",
                    allowed.join(", ")
                ),
            );
        }
        if t.early_stopping.patience == Some(0) {
            return err("training.early_stopping.patience", "must be at least 1");
        }
        Ok(())
    }
}

impl ExperimentConfig {
    fn validate_task(&self) -> Result<(), (String, String)> {
        let t = &self.task;
        let c = &self.data.columns;
        match t.kind {
            TaskKind::Classification | TaskKind::Evidential => {
                if t.classes < 2 {
                    return err("task.classes", "needs at least 2 classes");
                }
                if c.class.is_none() {
                    return err(
                        "data.columns.class",
                        "a classification task needs the class column",
                    );
                }
            }
            TaskKind::Regression => {
                if c.value.is_none() {
                    return err(
                        "data.columns.value",
                        "a regression task needs the value column",
                    );
                }
                if !(t.huber_delta.is_finite() && t.huber_delta > 0.0) {
                    return err("task.huber_delta", "must be positive");
                }
            }
            TaskKind::Survival => {
                if c.time.is_none() || c.event.is_none() {
                    return err(
                        "data.columns.time",
                        "a survival task needs the time and event columns",
                    );
                }
                if t.survival != SurvivalModel::Cox {
                    if t.cuts.is_empty() && t.time_bins < 2 {
                        return err("task.time_bins", "needs at least 2 bins");
                    }
                    if !t.cuts.is_empty()
                        && (t.cuts.len() < 2
                            || t.cuts.windows(2).any(|w| w[0] >= w[1])
                            || t.cuts.iter().any(|v| !v.is_finite() || *v < 0.0))
                    {
                        return err(
                            "task.cuts",
                            "must hold at least 2 increasing non-negative times",
                        );
                    }
                }
                if !(0.0..=1.0).contains(&t.deephit_alpha) {
                    return err("task.deephit_alpha", "must lie in [0, 1]");
                }
                if !(t.deephit_sigma.is_finite() && t.deephit_sigma > 0.0) {
                    return err("task.deephit_sigma", "must be positive");
                }
            }
        }
        if let Some(f) = &t.fairness {
            if !(f.weight.is_finite() && f.weight >= 0.0) {
                return err("task.fairness.weight", "must be non-negative");
            }
            if f.group.is_empty() {
                return err("task.fairness.group", "name the group column");
            }
            if f.kind == FairnessKind::EqualizedOdds
                && !(matches!(t.kind, TaskKind::Classification | TaskKind::Evidential)
                    && t.classes == 2)
            {
                return err(
                    "task.fairness.kind",
                    "equalized odds needs a binary classification task",
                );
            }
        }
        Ok(())
    }

    /// Resolve relative data paths against `base` (the configuration file's folder), so a
    /// configuration can sit beside its data.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data.manifest);
        if let Some(p) = self.data.labels.as_mut() {
            fix(p);
        }
        if let Some(p) = self.model.pretrained.as_mut() {
            fix(p);
        }
        if let Some(p) = self.model.init_from.as_mut() {
            fix(p);
        }
    }

    /// The configuration as TOML text (what a run folder keeps as `config.toml`).
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string_pretty(self).map_err(|e| e.to_string())
    }
}
