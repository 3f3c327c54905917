//! Per-frame 2D CNN with temporal pooling: the baseline that shows what 3D convolutions add.
//!
//! Each frame goes through the same small 2D ResNet-style stack (7×7 stride-2 stem, then one
//! strided 3×3 convolution per stage, each with BatchNorm (or GroupNorm) and ReLU); frame
//! embeddings are averaged (or max-pooled) over time and classified by a linear layer. Frame
//! order does not matter to this model, by construction.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::video::{NormKind, normalize};

/// How frame embeddings are pooled over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemporalPooling {
    /// Mean over frames.
    Mean,
    /// Maximum over frames.
    Max,
}

/// Configuration of a [`FrameCnn`].
#[derive(Config, Debug)]
pub struct FrameCnnConfig {
    /// Number of output logits.
    pub num_classes: usize,
    /// Channel widths of the stem and the stages. Default `[16, 32, 64, 128]`.
    #[config(default = "vec![16, 32, 64, 128]")]
    pub widths: Vec<usize>,
    /// Temporal pooling. Default mean.
    #[config(default = "TemporalPooling::Mean")]
    pub pooling: TemporalPooling,
    /// Normalisation layers. Default BatchNorm.
    #[config(default = "NormKind::Batch")]
    pub norm: NormKind,
    /// Groups of [`NormKind::Group`] (see [`crate::video::group_count`]). Default 32.
    #[config(default = 32)]
    pub norm_groups: usize,
}

fn conv2d(channels: [usize; 2], kernel: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            kernel / 2,
            kernel / 2,
            kernel / 2,
            kernel / 2,
        ))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

impl FrameCnnConfig {
    /// Build the network.
    pub fn init(&self, device: &Device) -> Result<FrameCnn, MlError> {
        let norm_groups = self.norm.groups_argument(self.norm_groups);
        if self.norm == NormKind::Group && self.norm_groups == 0 {
            return Err(MlError::InvalidConfig {
                message: "GroupNorm needs at least one group".into(),
            });
        }
        if self.widths.is_empty() || self.widths.contains(&0) || self.num_classes == 0 {
            return Err(MlError::InvalidConfig {
                message: format!(
                    "frame CNN needs non-empty, positive widths and classes (widths {:?}, classes {})",
                    self.widths, self.num_classes
                ),
            });
        }
        let stem = ConvBn2d {
            conv: conv2d([3, self.widths[0]], 7, 2, device),
            bn: BatchNormConfig::new(self.widths[0]).init(device),
            norm_groups,
        };
        let stages = self
            .widths
            .windows(2)
            .map(|w| ConvBn2d {
                conv: conv2d([w[0], w[1]], 3, 2, device),
                bn: BatchNormConfig::new(w[1]).init(device),
                norm_groups,
            })
            .collect();
        let last = self.widths[self.widths.len() - 1];
        Ok(FrameCnn {
            stem,
            stages,
            fc: LinearConfig::new(last, self.num_classes).init(device),
            pooling: self.pooling == TemporalPooling::Max,
        })
    }
}

/// 2D convolution, BatchNorm (or GroupNorm with its affine parameters), ReLU.
#[derive(Module, Debug)]
pub struct ConvBn2d {
    /// Convolution.
    pub conv: Conv2d,
    /// BatchNorm.
    pub bn: BatchNorm,
    /// [`normalize`]'s `groups`: 0 for BatchNorm.
    pub norm_groups: usize,
}

impl ConvBn2d {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(normalize(&self.bn, self.norm_groups, self.conv.forward(x)))
    }
}

/// Per-frame 2D CNN with temporal pooling (see [`FrameCnnConfig`]).
#[derive(Module, Debug)]
pub struct FrameCnn {
    /// 7×7 stride-2 stem.
    pub stem: ConvBn2d,
    /// Strided 3×3 stages.
    pub stages: Vec<ConvBn2d>,
    /// Classifier.
    pub fc: Linear,
    /// Max pooling over time when true, mean otherwise.
    pub pooling: bool,
}

impl FrameCnn {
    /// Embeddings of every frame.
    ///
    /// # Shapes
    /// - input: `[batch, channels, frames, height, width]`
    /// - output: `[batch, frames, embedding_dim]`
    pub fn frame_embeddings(&self, x: Tensor<5>) -> Tensor<3> {
        let [batch, channels, frames, height, width] = x.dims();
        // [batch, frames, channels, h, w] -> [batch * frames, channels, h, w]
        let frames_first = x
            .swap_dims(1, 2)
            .reshape([batch * frames, channels, height, width]);
        let mut y = self.stem.forward(frames_first);
        for stage in &self.stages {
            y = stage.forward(y);
        }
        let [_, c, _, _] = y.dims();
        y.flatten::<3>(2, 3).mean_dim(2).reshape([batch, frames, c])
    }

    /// Clip embedding pooled over time.
    ///
    /// # Shapes
    /// - input: `[batch, channels, frames, height, width]`
    /// - output: `[batch, embedding_dim]`
    pub fn embed(&self, x: Tensor<5>) -> Tensor<2> {
        let per_frame = self.frame_embeddings(x);
        let [batch, _, c] = per_frame.dims();
        let pooled = if self.pooling {
            per_frame.max_dim(1)
        } else {
            per_frame.mean_dim(1)
        };
        pooled.reshape([batch, c])
    }

    /// Width of the clip embedding (the last stage's channels).
    pub fn embedding_dim(&self) -> usize {
        self.fc.weight.dims()[0]
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input: `[batch, channels, frames, height, width]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<2> {
        self.fc.forward(self.embed(x))
    }
}
