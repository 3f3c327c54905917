//! The trained model: a video backbone (a torchvision-style video ResNet, or the per-frame 2D
//! CNN baseline) with a task head (or late fusion with tabular covariates), and the
//! [`ModelSpec`] that rebuilds it and reads its outputs.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::{SurvivalModel, TaskKind};
use crate::data::clips::Normalization;
use crate::error::MlError;
use crate::frame_cnn::{FrameCnn, FrameCnnConfig, TemporalPooling};
use crate::heads::{LateFusion, LateFusionConfig};
use crate::loss::evidential::{Evidence, evidence};
use crate::video::{DEFAULT_NORM_GROUPS, NormKind, VideoArch, VideoResNet, VideoResNetConfig};

/// How clips are made for the model (what a bundle's user must reproduce).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Frames per clip.
    pub clip_length: usize,
    /// Step between sampled frames.
    pub period: usize,
    /// Frame side after resizing (aspect kept, zero padding).
    pub size: usize,
    /// Channels fed to the model (grayscale repeated).
    pub channels: usize,
    /// Per-channel normalisation from the training split, applied after resizing.
    pub normalization: Normalization,
    /// The model reads the `S×S` copies `bedside curate --resize S` writes beside each array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resized_copy: Option<usize>,
}

/// A tabular covariate of late fusion with its training-split standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularColumn {
    /// Manifest column.
    pub name: String,
    /// Training mean.
    pub mean: f64,
    /// Training standard deviation (1 when constant).
    pub std: f64,
}

/// The task as the trained model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Task.
    pub kind: TaskKind,
    /// Classes (classification tasks).
    pub classes: usize,
    /// Survival model (survival tasks).
    pub survival: SurvivalModel,
    /// Cut points of the discrete-time survival models.
    pub cuts: Vec<f64>,
    /// Regression targets are standardised with this mean during training …
    pub target_mean: f64,
    /// … and this standard deviation.
    pub target_std: f64,
    /// Evidence function (evidential).
    pub evidence: Evidence,
}

impl TaskSpec {
    /// Width of the head's output.
    pub fn output_dim(&self) -> usize {
        match self.kind {
            TaskKind::Classification | TaskKind::Evidential => self.classes,
            TaskKind::Regression => 1,
            TaskKind::Survival => match self.survival {
                SurvivalModel::Cox => 1,
                _ => self.cuts.len(),
            },
        }
    }

    /// Names of the prediction columns, in the order of [`Self::interpret`].
    pub fn output_names(&self) -> Vec<String> {
        match self.kind {
            TaskKind::Classification => (0..self.classes).map(|k| format!("prob_{k}")).collect(),
            TaskKind::Evidential => (0..self.classes)
                .map(|k| format!("prob_{k}"))
                .chain(["uncertainty".to_string()])
                .collect(),
            TaskKind::Regression => vec!["value".into()],
            TaskKind::Survival => std::iter::once("risk".to_string())
                .chain(self.cuts.iter().map(|t| format!("surv@{t}")))
                .take(if self.survival == SurvivalModel::Cox {
                    1
                } else {
                    1 + self.cuts.len()
                })
                .collect(),
        }
    }

    /// Turn the raw outputs of one clip into the prediction columns: class probabilities
    /// (evidential: `α/S` and the uncertainty `K/S`), the value in target units, or the risk
    /// score (higher = earlier event; discrete-time: minus the mean of the survival curve)
    /// followed by the survival curve at each cut point.
    pub fn interpret(&self, raw: &[f32]) -> Vec<f64> {
        let raw: Vec<f64> = raw.iter().map(|&v| f64::from(v)).collect();
        match self.kind {
            TaskKind::Classification => softmax_host(&raw),
            TaskKind::Evidential => {
                let alpha: Vec<f64> = raw
                    .iter()
                    .map(|&z| {
                        1.0 + match self.evidence {
                            Evidence::Relu => z.max(0.0),
                            Evidence::Softplus => z.max(0.0) + (-z.abs()).exp().ln_1p(),
                            Evidence::Exp => z.clamp(-10.0, 10.0).exp(),
                        }
                    })
                    .collect();
                let strength: f64 = alpha.iter().sum();
                let mut out: Vec<f64> = alpha.iter().map(|a| a / strength).collect();
                out.push(alpha.len() as f64 / strength);
                out
            }
            TaskKind::Regression => {
                vec![raw.first().copied().unwrap_or(0.0) * self.target_std + self.target_mean]
            }
            TaskKind::Survival => match self.survival {
                SurvivalModel::Cox => vec![raw.first().copied().unwrap_or(0.0)],
                SurvivalModel::LogisticHazard => {
                    let mut s = 1.0;
                    let curve: Vec<f64> = raw
                        .iter()
                        .map(|&phi| {
                            s *= 1.0 - 1.0 / (1.0 + (-phi).exp());
                            s
                        })
                        .collect();
                    with_risk(curve)
                }
                SurvivalModel::Pmf | SurvivalModel::Deephit => {
                    let mut padded = raw.clone();
                    padded.push(0.0);
                    let pmf = softmax_host(&padded);
                    let mut cdf = 0.0;
                    let curve: Vec<f64> = pmf[..raw.len()]
                        .iter()
                        .map(|p| {
                            cdf += p;
                            (1.0 - cdf).max(0.0)
                        })
                        .collect();
                    with_risk(curve)
                }
            },
        }
    }
}

fn with_risk(curve: Vec<f64>) -> Vec<f64> {
    let mean = curve.iter().sum::<f64>() / curve.len().max(1) as f64;
    std::iter::once(-mean).chain(curve).collect()
}

fn softmax_host(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// `model.backbone` of the per-frame 2D CNN baseline with mean pooling over time.
pub const FRAME_CNN: &str = "frame_cnn";
/// `model.backbone` of the per-frame 2D CNN baseline with max pooling over time.
pub const FRAME_CNN_MAX: &str = "frame_cnn_max";

/// The temporal pooling of a per-frame 2D CNN backbone name ([`FRAME_CNN`],
/// [`FRAME_CNN_MAX`]); `None` for any other name (a video ResNet).
pub fn frame_cnn_pooling(backbone: &str) -> Option<TemporalPooling> {
    match backbone {
        FRAME_CNN => Some(TemporalPooling::Mean),
        FRAME_CNN_MAX => Some(TemporalPooling::Max),
        _ => None,
    }
}

/// Channel widths (stem, then three strided stages) of the per-frame 2D CNN for the width
/// multiplier `width` on 64/128/256/512, each rounded and kept at least 1 (the video ResNets'
/// rule): `width = 0.25` gives 16/32/64/128.
pub fn frame_cnn_widths(width: f64) -> Vec<usize> {
    [64usize, 128, 256, 512]
        .iter()
        .map(|&c| ((c as f64 * width).round() as usize).max(1))
        .collect()
}

/// Everything needed to rebuild a trained model and read its outputs, without the run's
/// configuration or data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Backbone: a torchvision video ResNet name, or [`FRAME_CNN`] / [`FRAME_CNN_MAX`].
    pub backbone: String,
    /// Width multiplier.
    pub width: f64,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Dropout before the head.
    pub dropout: f64,
    /// Hidden width of the fusion head.
    pub fusion_hidden: usize,
    /// Normalisation layers (absent in specifications written before GroupNorm: BatchNorm).
    #[serde(default)]
    pub norm: NormKind,
    /// Groups of [`NormKind::Group`].
    #[serde(default = "default_norm_groups")]
    pub norm_groups: usize,
    /// Task.
    pub task: TaskSpec,
    /// Late-fusion covariates (empty: a linear head on the video embedding).
    pub tabular: Vec<TabularColumn>,
    /// Clip construction.
    pub input: InputSpec,
}

fn default_norm_groups() -> usize {
    DEFAULT_NORM_GROUPS
}

impl ModelSpec {
    /// Build the model with fresh weights (seed the device first for reproducible weights).
    pub fn init(&self, device: &Device) -> Result<ClinicalModel, MlError> {
        let output_dim = self.task.output_dim();
        let (backbone, frame_cnn, embedding_dim) = match frame_cnn_pooling(&self.backbone) {
            Some(pooling) => {
                if self.layers != [1, 1, 1, 1] {
                    return Err(MlError::InvalidConfig {
                        message: format!(
                            "the {} backbone has one convolution per stage: layers must be [1, 1, 1, 1], got {:?}",
                            self.backbone, self.layers
                        ),
                    });
                }
                let widths = frame_cnn_widths(self.width);
                let embedding_dim = widths[widths.len() - 1];
                let model = FrameCnnConfig::new(output_dim)
                    .with_widths(widths)
                    .with_pooling(pooling)
                    .with_norm(self.norm)
                    .with_norm_groups(self.norm_groups)
                    .init(device)?;
                (None, Some(model), embedding_dim)
            }
            None => {
                let arch = VideoArch::from_torchvision_name(&self.backbone)?;
                let config = VideoResNetConfig::new(arch)
                    .with_width(self.width)
                    .with_layers(self.layers)
                    .with_num_classes(output_dim)
                    .with_norm(self.norm)
                    .with_norm_groups(self.norm_groups);
                // From the configuration: reading a fresh parameter's shape would initialise it
                // here, out of the order the seeded first forward pass draws in.
                let embedding_dim = config.embedding_dim();
                (Some(config.init(device)?), None, embedding_dim)
            }
        };
        let fusion = (!self.tabular.is_empty()).then(|| {
            LateFusionConfig::new(embedding_dim, self.tabular.len(), output_dim)
                .with_hidden_dim(self.fusion_hidden)
                .with_dropout(self.dropout)
                .init(device)
        });
        Ok(ClinicalModel {
            backbone,
            frame_cnn,
            dropout: DropoutConfig::new(self.dropout).init(),
            fusion,
        })
    }
}

/// A video backbone with its head: the backbone's `fc` on the embedding, or late fusion of
/// the embedding with tabular covariates.
///
/// Exactly one of `backbone` (a video ResNet) and `frame_cnn` (the per-frame 2D CNN baseline)
/// is present in a model built by [`ModelSpec::init`]. A video ResNet's parameters keep the
/// record paths `backbone.…`, the baseline's are `frame_cnn.…`.
#[derive(Module, Debug)]
pub struct ClinicalModel {
    /// The video ResNet (its `fc` is the head when there is no fusion); absent when the model
    /// is the per-frame baseline.
    pub backbone: Option<VideoResNet>,
    /// The per-frame 2D CNN with temporal pooling (`model.backbone = "frame_cnn"`), in place of
    /// a video ResNet (its `fc` is the head when there is no fusion).
    pub frame_cnn: Option<FrameCnn>,
    /// Dropout on the embedding (active only on autodiff devices).
    pub dropout: Dropout,
    /// Late fusion with tabular covariates.
    pub fusion: Option<LateFusion>,
}

impl ClinicalModel {
    /// Raw head outputs.
    ///
    /// # Shapes
    /// - clips: `[batch, 3, frames, height, width]`; tabular: `[batch, covariates]`
    /// - output: `[batch, output_dim]`
    pub fn forward(&self, clips: Tensor<5>, tabular: Option<Tensor<2>>) -> Tensor<2> {
        let embedding = self.dropout.forward(self.embed(clips));
        match (&self.fusion, tabular) {
            (Some(fusion), Some(tabular)) => fusion.forward(embedding, tabular),
            _ => match (&self.backbone, &self.frame_cnn) {
                (Some(backbone), _) => backbone.fc.forward(embedding),
                (None, Some(frame_cnn)) => frame_cnn.fc.forward(embedding),
                (None, None) => panic!("{NO_BACKBONE}"),
            },
        }
    }

    /// The clip embedding (before dropout and the head).
    ///
    /// # Shapes
    /// - clips: `[batch, 3, frames, height, width]`
    /// - output: `[batch, embedding_dim]`
    pub fn embed(&self, clips: Tensor<5>) -> Tensor<2> {
        match (&self.backbone, &self.frame_cnn) {
            (Some(backbone), _) => backbone.embed(clips),
            (None, Some(frame_cnn)) => frame_cnn.embed(clips),
            (None, None) => panic!("{NO_BACKBONE}"),
        }
    }

    /// Width of the clip embedding.
    pub fn embedding_dim(&self) -> usize {
        match (&self.backbone, &self.frame_cnn) {
            (Some(backbone), _) => backbone.embedding_dim(),
            (None, Some(frame_cnn)) => frame_cnn.embedding_dim(),
            (None, None) => panic!("{NO_BACKBONE}"),
        }
    }
}

const NO_BACKBONE: &str =
    "a ClinicalModel holds a video ResNet or a frame CNN (build it with ModelSpec::init)";

/// Class probabilities of a classification head's logits (used for fairness penalties).
pub(crate) fn positive_score(kind: TaskKind, out: Tensor<2>, ev: Evidence) -> Tensor<1> {
    let [n, d] = out.dims();
    match kind {
        TaskKind::Classification => softmax(out, 1)
            .slice([0..n, 0..1])
            .neg()
            .add_scalar(1.0)
            .reshape([n]),
        TaskKind::Evidential => {
            let alpha = evidence(out, ev).add_scalar(1.0);
            let strength = alpha.clone().sum_dim(1);
            (alpha / strength)
                .slice([0..n, 0..1])
                .neg()
                .add_scalar(1.0)
                .reshape([n])
        }
        TaskKind::Regression => out.reshape([n]),
        TaskKind::Survival => out.sum_dim(1).div_scalar(d as f64).reshape([n]),
    }
}
