//! Evidential classification (Sensoy, Kaplan & Kandemir, NeurIPS 2018).
//!
//! Logits become non-negative evidence `e`, Dirichlet parameters `α = e + 1`, strength
//! `S = Σ α`, expected probabilities `p = α / S` and uncertainty `u = K / S`. The loss is one of
//! the paper's three data terms plus the annealed KL divergence of the "misleading" evidence
//! `α̃ = y + (1 − y) α` from the uniform Dirichlet, weighted by `λ_t = min(1, epoch / step)`.

use burn::config::Config;
use burn::tensor::activation::relu;
use burn::tensor::{FloatDType, Tensor};

use super::classification::one_hot;
use super::{check_len, check_non_empty, constant_like};
use crate::error::MlError;
use crate::ops::{digamma, lgamma};

/// How logits become evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    /// `max(x, 0)`.
    Relu,
    /// `log(1 + eˣ)`.
    Softplus,
    /// `exp(clamp(x, −10, 10))` (the clamp of the reference code).
    Exp,
}

/// The data term of the evidential loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidentialDataTerm {
    /// Eq. 5: `Σ_j (y_j − p_j)² + p_j (1 − p_j) / (S + 1)`.
    Mse,
    /// Eq. 4: `Σ_j y_j (log S − log α_j)`.
    Log,
    /// Eq. 3: `Σ_j y_j (ψ(S) − ψ(α_j))`.
    Digamma,
}

/// Configuration of [`EvidentialLoss`].
#[derive(Config, Debug)]
pub struct EvidentialLossConfig {
    /// Evidence function. Default softplus (trains on small sets where ReLU stalls).
    #[config(default = "Evidence::Softplus")]
    pub evidence: Evidence,
    /// Data term. Default the MSE of Eq. 5.
    #[config(default = "EvidentialDataTerm::Mse")]
    pub data_term: EvidentialDataTerm,
    /// Epochs until the KL weight reaches 1. Default 10 (the paper's code).
    #[config(default = 10)]
    pub annealing_step: usize,
}

impl EvidentialLossConfig {
    /// Build the loss.
    pub fn init(&self) -> EvidentialLoss {
        EvidentialLoss {
            evidence: self.evidence,
            data_term: self.data_term,
            annealing_step: self.annealing_step,
        }
    }
}

/// Evidential classification loss (see the module documentation).
#[derive(Debug, Clone)]
pub struct EvidentialLoss {
    evidence: Evidence,
    data_term: EvidentialDataTerm,
    annealing_step: usize,
}

/// Per-sample terms of the evidential loss.
#[derive(Debug, Clone)]
pub struct EvidentialTerms {
    /// Dirichlet parameters `[batch, classes]`.
    pub alpha: Tensor<2>,
    /// Data term per sample `[batch, 1]` (for MSE: error + variance).
    pub data: Tensor<2>,
    /// KL term per sample `[batch, 1]` (before annealing).
    pub kl: Tensor<2>,
    /// Annealing weight applied to `kl`.
    pub annealing: f64,
}

impl EvidentialTerms {
    /// Per-sample loss `data + λ_t · kl`, `[batch, 1]`.
    pub fn per_sample(&self) -> Tensor<2> {
        self.data.clone() + self.kl.clone().mul_scalar(self.annealing)
    }

    /// Mean loss `[1]`.
    pub fn mean(&self) -> Tensor<1> {
        self.per_sample().mean()
    }
}

/// Evidence from logits.
///
/// # Shapes
/// - logits and output: `[batch, classes]`
pub fn evidence(logits: Tensor<2>, kind: Evidence) -> Tensor<2> {
    match kind {
        Evidence::Relu => relu(logits),
        // Stable softplus: max(x, 0) + log(1 + e^{−|x|}).
        Evidence::Softplus => relu(logits.clone()) + logits.abs().neg().exp().log1p(),
        Evidence::Exp => logits.clamp(-10.0, 10.0).exp(),
    }
}

/// Dirichlet uncertainty `K / S`.
///
/// # Shapes
/// - alpha: `[batch, classes]`; output `[batch, 1]`
pub fn uncertainty(alpha: Tensor<2>) -> Tensor<2> {
    let [_, k] = alpha.dims();
    alpha.sum_dim(1).recip().mul_scalar(k as f64)
}

/// `KL(Dir(α) ‖ Dir(1, …, 1))` per row.
///
/// Evaluated in `f64` whatever the input's float type (the log-gamma terms cancel, and in
/// `f32` their rounding alone would exceed 1e-6), then cast back.
///
/// # Shapes
/// - alpha: `[batch, classes]`; output `[batch, 1]`
pub fn kl_to_uniform_dirichlet(alpha: Tensor<2>) -> Tensor<2> {
    let dtype = alpha.dtype();
    let alpha = alpha.cast(FloatDType::F64);
    let [_, k] = alpha.dims();
    let strength = alpha.clone().sum_dim(1);
    // lnΓ(K) is a constant: ln((K − 1)!).
    let ln_gamma_k: f64 = (1..k).map(|i| (i as f64).ln()).sum();
    let digamma_diff = digamma(alpha.clone()) - digamma(strength.clone());
    let kl = lgamma(strength).sub_scalar(ln_gamma_k) - lgamma(alpha.clone()).sum_dim(1)
        + (alpha.sub_scalar(1.0) * digamma_diff).sum_dim(1);
    // A float tensor's dtype is always a float dtype.
    kl.cast(FloatDType::from(dtype))
}

impl EvidentialLoss {
    /// The KL weight at `epoch`: `min(1, epoch / annealing_step)` (1 when the step is 0).
    pub fn annealing(&self, epoch: usize) -> f64 {
        if self.annealing_step == 0 {
            1.0
        } else {
            (epoch as f64 / self.annealing_step as f64).min(1.0)
        }
    }

    /// All per-sample terms.
    ///
    /// # Shapes
    /// - logits: `[batch, classes]`; labels: `batch` class indices
    pub fn terms(
        &self,
        logits: Tensor<2>,
        labels: &[usize],
        epoch: usize,
    ) -> Result<EvidentialTerms, MlError> {
        let [n, k] = logits.dims();
        check_non_empty(n)?;
        check_len("labels", labels.len(), n)?;
        let y = constant_like(one_hot(labels, k)?, [n, k], &logits);
        let alpha = evidence(logits, self.evidence).add_scalar(1.0);
        let strength = alpha.clone().sum_dim(1); // [n, 1]
        let data = match self.data_term {
            EvidentialDataTerm::Mse => {
                let p = alpha.clone() / strength.clone();
                let err = (y.clone() - p.clone()).square().sum_dim(1);
                let var =
                    (p.clone() * p.neg().add_scalar(1.0)).sum_dim(1) / strength.add_scalar(1.0);
                err + var
            }
            EvidentialDataTerm::Log => {
                (y.clone() * (strength.log() - alpha.clone().log())).sum_dim(1)
            }
            EvidentialDataTerm::Digamma => {
                (y.clone() * (digamma(strength) - digamma(alpha.clone()))).sum_dim(1)
            }
        };
        let misleading = y.clone() + y.neg().add_scalar(1.0) * alpha.clone();
        let kl = kl_to_uniform_dirichlet(misleading);
        Ok(EvidentialTerms {
            alpha,
            data,
            kl,
            annealing: self.annealing(epoch),
        })
    }

    /// Mean loss at `epoch`.
    ///
    /// # Shapes
    /// - logits: `[batch, classes]`; output `[1]`
    pub fn forward(
        &self,
        logits: Tensor<2>,
        labels: &[usize],
        epoch: usize,
    ) -> Result<Tensor<1>, MlError> {
        Ok(self.terms(logits, labels, epoch)?.mean())
    }
}
