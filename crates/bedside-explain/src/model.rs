//! The model as the attribution methods see it: a video backbone cut at a stage, a head, and
//! the scalar that is explained (a class logit or probability, the regression value, the risk
//! score).

use bedside_ml::heads::LateFusion;
use bedside_ml::train::config::{SurvivalModel, TaskKind};
use bedside_ml::train::model::{ClinicalModel, TaskSpec};
use bedside_ml::video::{BasicBlock, VideoResNet, global_average_pool3d};
use burn::module::Module;
use burn::tensor::activation::{softmax, softplus};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ExplainError;

/// A point of the backbone whose output Grad-CAM reads (torchvision module names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Output of the stem (`stem`).
    Stem,
    /// Output of `layer1`.
    Layer1,
    /// Output of `layer2`.
    Layer2,
    /// Output of `layer3`.
    Layer3,
    /// Output of `layer4` (the usual Grad-CAM layer: last convolutional features).
    Layer4,
}

impl Stage {
    /// Every stage, input side first.
    pub const ALL: [Stage; 5] = [
        Stage::Stem,
        Stage::Layer1,
        Stage::Layer2,
        Stage::Layer3,
        Stage::Layer4,
    ];

    /// torchvision's module name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Stem => "stem",
            Stage::Layer1 => "layer1",
            Stage::Layer2 => "layer2",
            Stage::Layer3 => "layer3",
            Stage::Layer4 => "layer4",
        }
    }

    /// Parse a torchvision module name (`stem`, `layer1` … `layer4`).
    pub fn parse(name: &str) -> Result<Self, ExplainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                ExplainError::invalid(format!(
                    "unknown stage `{name}` (expected stem, layer1, layer2, layer3 or layer4)"
                ))
            })
    }

    /// Number of residual stages run before the stage's output (0 for the stem).
    fn depth(self) -> usize {
        self as usize
    }
}

/// A layer of the cascading model-parameter randomisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cascade {
    /// The head: `fc`, or the late-fusion head.
    Head,
    /// `layer4`.
    Layer4,
    /// `layer3`.
    Layer3,
    /// `layer2`.
    Layer2,
    /// `layer1`.
    Layer1,
    /// The stem.
    Stem,
}

impl Cascade {
    /// Top layer first: the order in which the cascade randomises.
    pub const ORDER: [Cascade; 6] = [
        Cascade::Head,
        Cascade::Layer4,
        Cascade::Layer3,
        Cascade::Layer2,
        Cascade::Layer1,
        Cascade::Stem,
    ];

    /// torchvision's module name (`fc` for the head).
    pub fn name(self) -> &'static str {
        match self {
            Cascade::Head => "fc",
            Cascade::Layer4 => "layer4",
            Cascade::Layer3 => "layer3",
            Cascade::Layer2 => "layer2",
            Cascade::Layer1 => "layer1",
            Cascade::Stem => "stem",
        }
    }
}

/// The scalar whose attribution is computed, read from the head's raw outputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "index")]
pub enum Target {
    /// Raw output `k`: the logit of class `k`, the (standardised) regression value for `k = 0`,
    /// the Cox risk for `k = 0`. What Captum's `target=k` explains on a logit model.
    Output(usize),
    /// Softmax probability of class `k`.
    Probability(usize),
    /// The risk score of a survival head as `bedside predict` reports it (Cox: the output;
    /// discrete-time models: minus the mean of the survival curve).
    Risk(SurvivalModel),
}

impl Target {
    /// The natural target of a task: the logit of `class` (classification, evidential), the
    /// value (regression) or the risk (survival).
    pub fn for_task(task: &TaskSpec, class: Option<usize>) -> Result<Self, ExplainError> {
        match task.kind {
            TaskKind::Classification | TaskKind::Evidential => {
                let k = class.unwrap_or(task.classes.saturating_sub(1));
                if k >= task.classes {
                    return Err(ExplainError::invalid(format!(
                        "class {k} does not exist (the model has {} classes)",
                        task.classes
                    )));
                }
                Ok(Target::Output(k))
            }
            TaskKind::Regression => Ok(Target::Output(0)),
            TaskKind::Survival => Ok(Target::Risk(task.survival)),
        }
    }

    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Target::Output(k) => format!("output {k}"),
            Target::Probability(k) => format!("probability of class {k}"),
            Target::Risk(_) => "risk score".into(),
        }
    }

    /// The target of every row of `outputs`.
    ///
    /// # Shapes
    /// - outputs: `[batch, output_dim]`
    /// - result: `[batch]`
    pub fn score(&self, outputs: Tensor<2>) -> Tensor<1> {
        let [n, d] = outputs.dims();
        match *self {
            Target::Output(k) => outputs.slice([0..n, k..k + 1]).reshape([n]),
            Target::Probability(k) => softmax(outputs, 1).slice([0..n, k..k + 1]).reshape([n]),
            Target::Risk(SurvivalModel::Cox) => outputs.slice([0..n, 0..1]).reshape([n]),
            Target::Risk(SurvivalModel::LogisticHazard) => {
                // S_j = Π_{i≤j} (1 − σ(φ_i)) = exp(−Σ_{i≤j} softplus(φ_i))
                let survival = softplus(outputs, 1.0).neg().cumsum(1).exp();
                survival.mean_dim(1).reshape([n]).neg()
            }
            Target::Risk(SurvivalModel::Pmf | SurvivalModel::Deephit) => {
                let zero = Tensor::<2>::zeros([n, 1], (&outputs.device(), outputs.dtype()));
                let pmf = softmax(Tensor::cat(vec![outputs, zero], 1), 1).slice([0..n, 0..d]);
                let survival = pmf.cumsum(1).neg().add_scalar(1.0);
                survival.mean_dim(1).reshape([n]).neg()
            }
        }
    }
}

/// A video model prepared for attribution: the backbone, its head (the backbone's `fc` or
/// late fusion with one study's covariates), in inference mode (BatchNorm with running
/// statistics, no dropout), with parameters that need no gradient.
#[derive(Debug, Clone)]
pub struct Explainee {
    backbone: VideoResNet,
    fusion: Option<(LateFusion, Vec<f32>)>,
    device: Device,
}

impl Explainee {
    /// A bare backbone whose `fc` gives the outputs (e.g. torchvision weights).
    pub fn from_backbone(backbone: VideoResNet, device: &Device) -> Self {
        Self {
            backbone: backbone.freeze(),
            fusion: None,
            device: device.clone(),
        }
    }

    /// A trained model. `tabular` holds the study's standardised covariates when the model
    /// fuses them (ignored otherwise).
    pub fn from_model(
        model: &ClinicalModel,
        tabular: Option<Vec<f32>>,
        device: &Device,
    ) -> Result<Self, ExplainError> {
        let model = model.clone().freeze();
        let Some(backbone) = model.backbone else {
            return Err(ExplainError::invalid(
                "attribution needs a video ResNet backbone (the frame_cnn baseline has no stages to read)",
            ));
        };
        let fusion = match (model.fusion, tabular) {
            (Some(fusion), Some(row)) => {
                let expected = fusion.hidden.weight.dims()[0] - backbone.embedding_dim();
                if row.len() != expected {
                    return Err(ExplainError::invalid(format!(
                        "the model fuses {expected} covariates, {} given",
                        row.len()
                    )));
                }
                Some((fusion, row))
            }
            (Some(_), None) => {
                return Err(ExplainError::invalid(
                    "the model fuses tabular covariates: give the study's values",
                ));
            }
            (None, _) => None,
        };
        Ok(Self {
            backbone,
            fusion,
            device: device.clone(),
        })
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The backbone.
    pub fn backbone(&self) -> &VideoResNet {
        &self.backbone
    }

    fn blocks(&self) -> [&[BasicBlock]; 4] {
        [
            &self.backbone.layer1,
            &self.backbone.layer2,
            &self.backbone.layer3,
            &self.backbone.layer4,
        ]
    }

    /// Activations at the output of `stage`.
    ///
    /// # Shapes
    /// - clips: `[batch, 3, frames, height, width]`
    /// - output: `[batch, channels, frames', height', width']`
    pub fn activations(&self, clips: Tensor<5>, stage: Stage) -> Tensor<5> {
        let mut x = self.backbone.stem.forward(clips);
        for layer in self.blocks().into_iter().take(stage.depth()) {
            for block in layer {
                x = block.forward(x);
            }
        }
        x
    }

    /// Raw head outputs from the activations at the output of `stage`.
    ///
    /// # Shapes
    /// - activations: `[batch, channels, frames', height', width']`
    /// - output: `[batch, output_dim]`
    pub fn outputs_from(&self, activations: Tensor<5>, stage: Stage) -> Tensor<2> {
        let mut x = activations;
        for layer in self.blocks().into_iter().skip(stage.depth()) {
            for block in layer {
                x = block.forward(x);
            }
        }
        let embedding = global_average_pool3d(x);
        match &self.fusion {
            Some((fusion, row)) => {
                let n = embedding.dims()[0];
                let data: Vec<f32> = (0..n).flat_map(|_| row.iter().copied()).collect();
                let tabular = Tensor::<2>::from_data(
                    TensorData::new(data, [n, row.len()]),
                    &embedding.device(),
                );
                fusion.forward(embedding, tabular)
            }
            None => self.backbone.fc.forward(embedding),
        }
    }

    /// Raw head outputs.
    ///
    /// # Shapes
    /// - clips: `[batch, 3, frames, height, width]`
    /// - output: `[batch, output_dim]`
    pub fn outputs(&self, clips: Tensor<5>) -> Tensor<2> {
        self.outputs_from(self.activations(clips, Stage::Stem), Stage::Stem)
    }

    /// Number of raw outputs.
    pub fn output_dim(&self) -> usize {
        match &self.fusion {
            Some((fusion, _)) => fusion.output.weight.dims()[1],
            None => self.backbone.fc.weight.dims()[1],
        }
    }

    /// This model with the `steps` top layers of the cascade ([`Cascade::ORDER`]: head, then
    /// `layer4` … `layer1`, then the stem) replaced by those of `fresh`, a model of the same
    /// architecture with new random weights (Adebayo et al.'s cascading randomisation). The
    /// head is the late-fusion head when the model has one, else `fc`.
    pub fn randomised(
        &self,
        fresh_backbone: &VideoResNet,
        fresh_fusion: Option<&LateFusion>,
        steps: usize,
    ) -> Self {
        let mut out = self.clone();
        let fresh_backbone = fresh_backbone.clone().freeze();
        for layer in Cascade::ORDER.into_iter().take(steps) {
            match layer {
                Cascade::Head => {
                    out.backbone.fc = fresh_backbone.fc.clone();
                    if let (Some((fusion, _)), Some(f)) = (&mut out.fusion, fresh_fusion) {
                        *fusion = f.clone().freeze();
                    }
                }
                Cascade::Layer4 => out.backbone.layer4 = fresh_backbone.layer4.clone(),
                Cascade::Layer3 => out.backbone.layer3 = fresh_backbone.layer3.clone(),
                Cascade::Layer2 => out.backbone.layer2 = fresh_backbone.layer2.clone(),
                Cascade::Layer1 => out.backbone.layer1 = fresh_backbone.layer1.clone(),
                Cascade::Stem => out.backbone.stem = fresh_backbone.stem.clone(),
            }
        }
        out
    }

    /// Check that `target` reads an existing output.
    pub fn check_target(&self, target: &Target) -> Result<(), ExplainError> {
        let dim = self.output_dim();
        let needed = match *target {
            Target::Output(k) | Target::Probability(k) => k + 1,
            Target::Risk(_) => 1,
        };
        if needed > dim {
            return Err(ExplainError::invalid(format!(
                "{} does not exist: the model has {dim} outputs",
                target.describe()
            )));
        }
        Ok(())
    }
}
