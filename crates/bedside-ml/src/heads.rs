//! Task heads on top of a clip embedding, and late fusion with tabular covariates.
//!
//! A head maps the pooled video embedding `[batch, embedding_dim]` to the outputs a task's loss
//! expects ([`Task::output_dim`]): class logits (softmax or evidential), one regression value,
//! one Cox log-risk or one logit per discrete time bin.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::MlError;

/// A clinical prediction task and the width of the head's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Task {
    /// Softmax classification over `classes`.
    Classification {
        /// Number of classes.
        classes: usize,
    },
    /// Evidential classification over `classes` (outputs are evidence logits).
    Evidential {
        /// Number of classes.
        classes: usize,
    },
    /// One real value (e.g. ejection fraction).
    Regression,
    /// One log hazard ratio (Cox partial likelihood).
    Cox,
    /// One logit per time bin (logistic hazard, PMF, MTLR, DeepHit).
    DiscreteTime {
        /// Number of time bins.
        bins: usize,
    },
}

impl Task {
    /// Width of the head's output.
    pub fn output_dim(self) -> usize {
        match self {
            Self::Classification { classes } | Self::Evidential { classes } => classes,
            Self::Regression | Self::Cox => 1,
            Self::DiscreteTime { bins } => bins,
        }
    }

    /// Reject degenerate tasks (fewer than two classes, no bins).
    pub fn validate(self) -> Result<(), MlError> {
        match self {
            Self::Classification { classes } | Self::Evidential { classes } if classes < 2 => {
                Err(MlError::InvalidConfig {
                    message: format!(
                        "a classification task needs at least 2 classes, got {classes}"
                    ),
                })
            }
            Self::DiscreteTime { bins: 0 } => Err(MlError::InvalidConfig {
                message: "a discrete-time survival task needs at least one bin".into(),
            }),
            _ => Ok(()),
        }
    }
}

/// Configuration of a [`LinearHead`].
#[derive(Config, Debug)]
pub struct LinearHeadConfig {
    /// Width of the input embedding.
    pub input_dim: usize,
    /// Width of the output (see [`Task::output_dim`]).
    pub output_dim: usize,
    /// Dropout probability before the linear layer. Default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LinearHeadConfig {
    /// Build the head.
    pub fn init(&self, device: &Device) -> LinearHead {
        LinearHead {
            dropout: DropoutConfig::new(self.dropout).init(),
            linear: LinearConfig::new(self.input_dim, self.output_dim).init(device),
        }
    }
}

/// Dropout then one linear layer.
#[derive(Module, Debug)]
pub struct LinearHead {
    /// Dropout on the embedding (active only on autodiff devices).
    pub dropout: Dropout,
    /// The projection.
    pub linear: Linear,
}

impl LinearHead {
    /// # Shapes
    /// - embedding: `[batch, input_dim]`; output `[batch, output_dim]`
    pub fn forward(&self, embedding: Tensor<2>) -> Tensor<2> {
        self.linear.forward(self.dropout.forward(embedding))
    }
}

/// Configuration of [`LateFusion`].
#[derive(Config, Debug)]
pub struct LateFusionConfig {
    /// Width of the video embedding.
    pub embedding_dim: usize,
    /// Number of tabular covariates (already standardised).
    pub tabular_dim: usize,
    /// Width of the output (see [`Task::output_dim`]).
    pub output_dim: usize,
    /// Width of the hidden layer. Default 64.
    #[config(default = 64)]
    pub hidden_dim: usize,
    /// Dropout probability on the fused features and the hidden layer. Default 0.
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl LateFusionConfig {
    /// Build the fusion head.
    pub fn init(&self, device: &Device) -> LateFusion {
        LateFusion {
            dropout: DropoutConfig::new(self.dropout).init(),
            hidden: LinearConfig::new(self.embedding_dim + self.tabular_dim, self.hidden_dim)
                .init(device),
            output: LinearConfig::new(self.hidden_dim, self.output_dim).init(device),
        }
    }
}

/// Late fusion: the video embedding concatenated with tabular covariates, then a one-hidden-
/// layer MLP.
#[derive(Module, Debug)]
pub struct LateFusion {
    /// Dropout (active only on autodiff devices).
    pub dropout: Dropout,
    /// Hidden layer on `[embedding, covariates]`.
    pub hidden: Linear,
    /// Output layer.
    pub output: Linear,
}

impl LateFusion {
    /// # Shapes
    /// - embedding: `[batch, embedding_dim]`, tabular: `[batch, tabular_dim]`
    /// - output: `[batch, output_dim]`
    pub fn forward(&self, embedding: Tensor<2>, tabular: Tensor<2>) -> Tensor<2> {
        let fused = self
            .dropout
            .forward(Tensor::cat(vec![embedding, tabular], 1));
        let hidden = self.dropout.forward(relu(self.hidden.forward(fused)));
        self.output.forward(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn late_fusion_uses_both_inputs() {
        let device = Device::flex();
        let head = LateFusionConfig::new(4, 3, 2)
            .with_hidden_dim(8)
            .init(&device);
        let emb = Tensor::<2>::from_data(TensorData::new(vec![0.5f32; 8], [2, 4]), &device);
        let tab_a = Tensor::<2>::from_data(TensorData::new(vec![0.0f32; 6], [2, 3]), &device);
        let tab_b = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 6], [2, 3]), &device);
        let a = head.forward(emb.clone(), tab_a);
        let b = head.forward(emb, tab_b);
        assert_eq!(a.dims(), [2, 2]);
        let change = (a - b).abs().sum().into_scalar::<f32>();
        assert!(change > 0.0, "tabular covariates must change the output");
    }

    #[test]
    fn task_widths() {
        assert_eq!(Task::DiscreteTime { bins: 7 }.output_dim(), 7);
        assert_eq!(Task::Cox.output_dim(), 1);
        assert!(Task::Classification { classes: 1 }.validate().is_err());
    }
}
