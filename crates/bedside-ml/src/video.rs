//! Video ResNets with torchvision's structure: R3D-18, MC3-18 and R(2+1)D-18.
//!
//! The layout follows `torchvision.models.video.resnet`: a stem, four stages of
//! [`BasicBlock`]s (`layer1`..`layer4`), global average pooling and a linear classifier
//! `fc`. Field names are chosen so that every torchvision state_dict key maps onto one
//! parameter of this module through [`crate::weights::torchvision_video_key`].
//!
//! Width and depth multipliers give CPU-sized variants: `width = 0.25` keeps the
//! architecture but uses 16/32/64/128 channels, `layers = [1, 1, 1, 1]` halves the depth.
//!
//! Every normalisation layer is a [`BatchNorm`] module, so parameter names are torchvision's
//! whichever [`NormKind`] is chosen. With [`NormKind::Group`] the layer's `gamma`/`beta` are
//! used as GroupNorm's affine parameters and its running statistics are neither used nor
//! updated: this is torchvision's `norm_layer=GroupNorm` under the same state_dict keys.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig3d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::MlError;

/// Which torchvision video ResNet to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VideoArch {
    /// `r3d_18`: full 3×3×3 convolutions everywhere, 3×7×7 stem.
    R3d18,
    /// `mc3_18`: 3×3×3 convolutions in `layer1`, 1×3×3 (no temporal) afterwards.
    Mc3_18,
    /// `r2plus1d_18`: every 3×3×3 convolution factored into 1×3×3 then 3×1×1.
    R2Plus1d18,
}

impl VideoArch {
    /// torchvision's builder name (`r3d_18`, `mc3_18`, `r2plus1d_18`).
    pub fn torchvision_name(self) -> &'static str {
        match self {
            Self::R3d18 => "r3d_18",
            Self::Mc3_18 => "mc3_18",
            Self::R2Plus1d18 => "r2plus1d_18",
        }
    }

    /// Parse torchvision's builder name.
    pub fn from_torchvision_name(name: &str) -> Result<Self, MlError> {
        match name {
            "r3d_18" => Ok(Self::R3d18),
            "mc3_18" => Ok(Self::Mc3_18),
            "r2plus1d_18" => Ok(Self::R2Plus1d18),
            other => Err(MlError::InvalidConfig {
                message: format!(
                    "unknown video backbone `{other}` (expected r3d_18, mc3_18 or r2plus1d_18)"
                ),
            }),
        }
    }

    /// The convolution kind used in stage `stage` (0-based).
    fn conv_kind(self, stage: usize) -> ConvKind {
        match self {
            Self::R3d18 => ConvKind::Simple3d,
            Self::Mc3_18 if stage == 0 => ConvKind::Simple3d,
            Self::Mc3_18 => ConvKind::NoTemporal,
            Self::R2Plus1d18 => ConvKind::TwoPlusOne,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvKind {
    Simple3d,
    NoTemporal,
    TwoPlusOne,
}

/// The normalisation after each convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// BatchNorm: batch statistics in training, running statistics in evaluation
    /// (torchvision's default).
    #[default]
    Batch,
    /// GroupNorm (Wu & He 2018): statistics of each clip over groups of channels, the same in
    /// training and evaluation. Federated training across non-IID sites needs it: averaged
    /// BatchNorm running statistics fit no site (Hsieh et al. 2020).
    Group,
}

impl NormKind {
    /// The `groups` argument of [`normalize`] for `groups` requested: 0 for BatchNorm.
    pub fn groups_argument(self, groups: usize) -> usize {
        match self {
            Self::Batch => 0,
            Self::Group => groups,
        }
    }
}

/// GroupNorm's default number of groups (Wu & He 2018).
pub const DEFAULT_NORM_GROUPS: usize = 32;

/// The number of groups a GroupNorm over `channels` channels uses when `requested` are asked
/// for: the largest divisor of `channels` that is at most `requested`, since the groups must
/// split the channels evenly (a 45-channel (2+1)D stem at width 0.25 has 11 channels).
pub fn group_count(channels: usize, requested: usize) -> usize {
    let limit = requested.clamp(1, channels.max(1));
    (1..=limit)
        .rev()
        .find(|g| channels.is_multiple_of(*g))
        .unwrap_or(1)
}

/// Apply `bn` as BatchNorm (`groups == 0`) or as GroupNorm over [`group_count`] groups with
/// `bn`'s affine parameters and epsilon (`groups > 0`).
///
/// # Shapes
/// - input and output: `[batch, channels, ...]`
pub fn normalize<const D: usize>(bn: &BatchNorm, groups: usize, x: Tensor<D>) -> Tensor<D> {
    if groups == 0 {
        return bn.forward(x);
    }
    let dims = x.dims();
    let (batch, channels) = (dims[0], dims[1]);
    let groups = group_count(channels, groups);
    let per_group = dims[1..].iter().product::<usize>() / groups;
    let grouped = x.reshape([batch, groups, per_group]);
    let centred = grouped.clone() - grouped.mean_dim(2);
    let var = centred.clone().square().mean_dim(2);
    let normalised = (centred / var.add_scalar(bn.epsilon).sqrt()).reshape(dims);
    let mut affine = [1usize; D];
    affine[1] = channels;
    normalised * bn.gamma.val().reshape(affine) + bn.beta.val().reshape(affine)
}

/// Configuration of a [`VideoResNet`].
#[derive(Config, Debug)]
pub struct VideoResNetConfig {
    /// Architecture (stem and convolution kind per stage).
    pub arch: VideoArch,
    /// Number of output logits of `fc` (torchvision's Kinetics-400 weights: 400).
    #[config(default = 400)]
    pub num_classes: usize,
    /// Channel multiplier applied to torchvision's widths 64/128/256/512 (and the 45-channel
    /// (2+1)D stem); each width is rounded and kept at least 1. Default 1.0 (torchvision's).
    #[config(default = 1.0)]
    pub width: f64,
    /// Number of residual blocks per stage. Default `[2, 2, 2, 2]` (the "18" models).
    #[config(default = "[2, 2, 2, 2]")]
    pub layers: [usize; 4],
    /// BatchNorm epsilon. Default 1e-5 (PyTorch's).
    #[config(default = 1e-5)]
    pub batch_norm_epsilon: f64,
    /// Normalisation layers. Default BatchNorm (torchvision's).
    #[config(default = "NormKind::Batch")]
    pub norm: NormKind,
    /// Groups of [`NormKind::Group`] (see [`group_count`]). Default 32.
    #[config(default = 32)]
    pub norm_groups: usize,
}

fn scaled(base: usize, width: f64) -> usize {
    let value = (base as f64 * width).round();
    if value < 1.0 { 1 } else { value as usize }
}

/// torchvision's initialisation of convolutions: Kaiming normal, fan-out, ReLU gain.
fn conv_initializer() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

fn conv3d(
    channels: [usize; 2],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    device: &Device,
) -> Conv3d {
    Conv3dConfig::new(channels, kernel)
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(
            padding[0], padding[1], padding[2],
        ))
        .with_bias(false)
        .with_initializer(conv_initializer())
        .init(device)
}

fn batch_norm(features: usize, epsilon: f64, device: &Device) -> BatchNorm {
    BatchNormConfig::new(features)
        .with_epsilon(epsilon)
        .init(device)
}

impl VideoResNetConfig {
    /// Channel widths of the four stages after the width multiplier.
    pub fn stage_widths(&self) -> [usize; 4] {
        [64, 128, 256, 512].map(|c| scaled(c, self.width))
    }

    /// Size of the pooled embedding fed to `fc`.
    pub fn embedding_dim(&self) -> usize {
        self.stage_widths()[3]
    }

    /// Check the configuration before building.
    pub fn validate(&self) -> Result<(), MlError> {
        if !(self.width.is_finite() && self.width > 0.0) {
            return Err(MlError::InvalidConfig {
                message: format!("width multiplier must be positive, got {}", self.width),
            });
        }
        if self.layers.contains(&0) {
            return Err(MlError::InvalidConfig {
                message: format!(
                    "every stage needs at least one block, got {:?}",
                    self.layers
                ),
            });
        }
        if self.num_classes == 0 {
            return Err(MlError::InvalidConfig {
                message: "num_classes must be at least 1".into(),
            });
        }
        if self.norm == NormKind::Group && self.norm_groups == 0 {
            return Err(MlError::InvalidConfig {
                message: "GroupNorm needs at least one group".into(),
            });
        }
        Ok(())
    }

    /// The `groups` argument of [`normalize`]: 0 for BatchNorm.
    pub fn groups_argument(&self) -> usize {
        self.norm.groups_argument(self.norm_groups)
    }

    /// Build the network with torchvision's initialisation.
    pub fn init(&self, device: &Device) -> Result<VideoResNet, MlError> {
        self.validate()?;
        let widths = self.stage_widths();
        let eps = self.batch_norm_epsilon;
        let groups = self.groups_argument();
        let stem = match self.arch {
            VideoArch::R2Plus1d18 => {
                let mid = scaled(45, self.width);
                Stem {
                    conv1: conv3d([3, mid], [1, 7, 7], [1, 2, 2], [0, 3, 3], device),
                    bn1: batch_norm(mid, eps, device),
                    conv2: Some(conv3d(
                        [mid, widths[0]],
                        [3, 1, 1],
                        [1, 1, 1],
                        [1, 0, 0],
                        device,
                    )),
                    bn2: Some(batch_norm(widths[0], eps, device)),
                    norm_groups: groups,
                }
            }
            _ => Stem {
                conv1: conv3d([3, widths[0]], [3, 7, 7], [1, 2, 2], [1, 3, 3], device),
                bn1: batch_norm(widths[0], eps, device),
                conv2: None,
                bn2: None,
                norm_groups: groups,
            },
        };
        let mut inplanes = widths[0];
        let mut stages: Vec<Vec<BasicBlock>> = Vec::with_capacity(4);
        for (stage, (&planes, &blocks)) in widths.iter().zip(self.layers.iter()).enumerate() {
            let kind = self.arch.conv_kind(stage);
            let stride = if stage == 0 { 1 } else { 2 };
            let mut layer = Vec::with_capacity(blocks);
            for block in 0..blocks {
                let block_stride = if block == 0 { stride } else { 1 };
                layer.push(BasicBlock::new(
                    inplanes,
                    planes,
                    kind,
                    block_stride,
                    (eps, groups),
                    device,
                ));
                inplanes = planes;
            }
            stages.push(layer);
        }
        let mut stages = stages.into_iter();
        let mut next = || stages.next().unwrap_or_default();
        let (layer1, layer2, layer3, layer4) = (next(), next(), next(), next());
        let fc = LinearConfig::new(widths[3], self.num_classes)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            })
            .init(device);
        Ok(VideoResNet {
            stem,
            layer1,
            layer2,
            layer3,
            layer4,
            fc,
        })
    }
}

/// The first layers: one 3×7×7 convolution (R3D, MC3) or a factored 1×7×7 + 3×1×1 pair
/// ((2+1)D), each followed by BatchNorm and ReLU.
#[derive(Module, Debug)]
pub struct Stem {
    /// torchvision `stem.0`.
    pub conv1: Conv3d,
    /// torchvision `stem.1`.
    pub bn1: BatchNorm,
    /// torchvision `stem.3` ((2+1)D only).
    pub conv2: Option<Conv3d>,
    /// torchvision `stem.4` ((2+1)D only).
    pub bn2: Option<BatchNorm>,
    /// [`normalize`]'s `groups`: 0 for BatchNorm.
    pub norm_groups: usize,
}

impl Stem {
    /// # Shapes
    /// - input: `[batch, 3, frames, height, width]`
    /// - output: `[batch, width0, frames, height / 2, width / 2]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let g = self.norm_groups;
        let mut x = relu(normalize(&self.bn1, g, self.conv1.forward(x)));
        if let (Some(conv), Some(bn)) = (&self.conv2, &self.bn2) {
            x = relu(normalize(bn, g, conv.forward(x)));
        }
        x
    }
}

/// One of torchvision's convolution builders: `Conv3DSimple`, `Conv3DNoTemporal` (both a
/// single convolution in `full`) or `Conv2Plus1D` (`spatial`, `spatial_bn`, ReLU, `temporal`).
#[derive(Module, Debug)]
pub struct VideoConv {
    /// Single convolution (`conv1.0`) of `Conv3DSimple` / `Conv3DNoTemporal`.
    pub full: Option<Conv3d>,
    /// 1×3×3 convolution (`conv1.0.0`) of `Conv2Plus1D`.
    pub spatial: Option<Conv3d>,
    /// BatchNorm (`conv1.0.1`) of `Conv2Plus1D`.
    pub spatial_bn: Option<BatchNorm>,
    /// 3×1×1 convolution (`conv1.0.3`) of `Conv2Plus1D`.
    pub temporal: Option<Conv3d>,
    /// [`normalize`]'s `groups`: 0 for BatchNorm.
    pub norm_groups: usize,
}

impl VideoConv {
    fn new(
        kind: ConvKind,
        [inplanes, midplanes, planes]: [usize; 3],
        stride: usize,
        (eps, norm_groups): (f64, usize),
        device: &Device,
    ) -> Self {
        let s = stride;
        match kind {
            ConvKind::Simple3d => Self {
                full: Some(conv3d(
                    [inplanes, planes],
                    [3, 3, 3],
                    [s, s, s],
                    [1, 1, 1],
                    device,
                )),
                spatial: None,
                spatial_bn: None,
                temporal: None,
                norm_groups,
            },
            ConvKind::NoTemporal => Self {
                full: Some(conv3d(
                    [inplanes, planes],
                    [1, 3, 3],
                    [1, s, s],
                    [0, 1, 1],
                    device,
                )),
                spatial: None,
                spatial_bn: None,
                temporal: None,
                norm_groups,
            },
            ConvKind::TwoPlusOne => Self {
                full: None,
                spatial: Some(conv3d(
                    [inplanes, midplanes],
                    [1, 3, 3],
                    [1, s, s],
                    [0, 1, 1],
                    device,
                )),
                spatial_bn: Some(batch_norm(midplanes, eps, device)),
                temporal: Some(conv3d(
                    [midplanes, planes],
                    [3, 1, 1],
                    [s, 1, 1],
                    [1, 0, 0],
                    device,
                )),
                norm_groups,
            },
        }
    }

    /// # Shapes
    /// - input: `[batch, in, frames, height, width]`
    /// - output: `[batch, out, frames / stride?, height / stride, width / stride]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let mut x = x;
        if let Some(conv) = &self.full {
            x = conv.forward(x);
        }
        if let Some(conv) = &self.spatial {
            x = conv.forward(x);
        }
        if let Some(bn) = &self.spatial_bn {
            x = relu(normalize(bn, self.norm_groups, x));
        }
        if let Some(conv) = &self.temporal {
            x = conv.forward(x);
        }
        x
    }
}

/// A convolution followed by BatchNorm (torchvision `conv1` / `conv2` Sequentials).
#[derive(Module, Debug)]
pub struct ConvBn {
    /// The convolution builder (`.0`).
    pub conv: VideoConv,
    /// BatchNorm (`.1`).
    pub bn: BatchNorm,
    /// [`normalize`]'s `groups`: 0 for BatchNorm.
    pub norm_groups: usize,
}

impl ConvBn {
    /// The convolution, then the normalisation (no ReLU).
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        normalize(&self.bn, self.norm_groups, self.conv.forward(x))
    }
}

/// 1×1×1 strided projection of the shortcut (`downsample.0`, `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv3d,
    /// `downsample.1`.
    pub bn: BatchNorm,
    /// [`normalize`]'s `groups`: 0 for BatchNorm.
    pub norm_groups: usize,
}

/// torchvision's video `BasicBlock`: `relu(conv2(relu(conv1(x))) + shortcut(x))`.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First convolution + BatchNorm (ReLU applied in `forward`).
    pub conv1: ConvBn,
    /// Second convolution + BatchNorm.
    pub conv2: ConvBn,
    /// Shortcut projection when the stride or width changes.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(
        inplanes: usize,
        planes: usize,
        kind: ConvKind,
        stride: usize,
        (eps, norm_groups): (f64, usize),
        device: &Device,
    ) -> Self {
        let norm = (eps, norm_groups);
        let downsample = (stride != 1 || inplanes != planes).then(|| {
            // Conv3DNoTemporal keeps the time axis; the other builders stride it too.
            let ds = match kind {
                ConvKind::NoTemporal => [1, stride, stride],
                _ => [stride, stride, stride],
            };
            Downsample {
                conv: conv3d([inplanes, planes], [1, 1, 1], ds, [0, 0, 0], device),
                bn: batch_norm(planes, eps, device),
                norm_groups,
            }
        });
        // torchvision's BasicBlock computes the (2+1)D middle width once from the block's input
        // and output widths and uses it in both convolutions.
        let midplanes = ((inplanes * planes * 27) / (inplanes * 9 + 3 * planes)).max(1);
        Self {
            conv1: ConvBn {
                conv: VideoConv::new(kind, [inplanes, midplanes, planes], stride, norm, device),
                bn: batch_norm(planes, eps, device),
                norm_groups,
            },
            conv2: ConvBn {
                conv: VideoConv::new(kind, [planes, midplanes, planes], 1, norm, device),
                bn: batch_norm(planes, eps, device),
                norm_groups,
            },
            downsample,
        }
    }

    /// # Shapes
    /// - input: `[batch, in, frames, height, width]`
    /// - output: `[batch, planes, frames', height', width']`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let out = relu(self.conv1.forward(x.clone()));
        let out = self.conv2.forward(out);
        let shortcut = match &self.downsample {
            Some(ds) => normalize(&ds.bn, ds.norm_groups, ds.conv.forward(x)),
            None => x,
        };
        relu(out + shortcut)
    }
}

/// A torchvision-compatible video ResNet (see [`VideoResNetConfig`]).
#[derive(Module, Debug)]
pub struct VideoResNet {
    /// Stem (`stem.*`).
    pub stem: Stem,
    /// Stage 1 (`layer1.*`), stride 1.
    pub layer1: Vec<BasicBlock>,
    /// Stage 2 (`layer2.*`), stride 2.
    pub layer2: Vec<BasicBlock>,
    /// Stage 3 (`layer3.*`), stride 2.
    pub layer3: Vec<BasicBlock>,
    /// Stage 4 (`layer4.*`), stride 2.
    pub layer4: Vec<BasicBlock>,
    /// Classifier (`fc`).
    pub fc: Linear,
}

impl VideoResNet {
    /// Pooled clip embedding (the input of `fc`).
    ///
    /// # Shapes
    /// - input: `[batch, 3, frames, height, width]`
    /// - output: `[batch, embedding_dim]`
    pub fn embed(&self, x: Tensor<5>) -> Tensor<2> {
        let mut x = self.stem.forward(x);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        global_average_pool3d(x)
    }

    /// Logits.
    ///
    /// # Shapes
    /// - input: `[batch, 3, frames, height, width]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, x: Tensor<5>) -> Tensor<2> {
        self.fc.forward(self.embed(x))
    }

    /// Size of the pooled embedding.
    pub fn embedding_dim(&self) -> usize {
        self.fc.weight.dims()[0]
    }
}

/// Mean over frames, height and width (torchvision's `AdaptiveAvgPool3d(1)` + flatten).
///
/// # Shapes
/// - input: `[batch, channels, frames, height, width]`
/// - output: `[batch, channels]`
pub fn global_average_pool3d(x: Tensor<5>) -> Tensor<2> {
    let [batch, channels, _, _, _] = x.dims();
    x.flatten::<3>(2, 4).mean_dim(2).reshape([batch, channels])
}
