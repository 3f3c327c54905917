//! Softmax classification and regression losses.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use super::{check_len, check_non_empty, constant_like};
use crate::error::MlError;

/// Mean softmax cross-entropy `−log softmax(logits)[label]`.
///
/// # Shapes
/// - logits: `[batch, classes]`; labels: `batch` class indices
/// - output: `[1]`
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Result<Tensor<1>, MlError> {
    let [n, k] = logits.dims();
    check_non_empty(n)?;
    check_len("labels", labels.len(), n)?;
    let one_hot = one_hot(labels, k)?;
    let target = constant_like(one_hot, [n, k], &logits);
    Ok((log_softmax(logits, 1) * target)
        .sum()
        .neg()
        .div_scalar(n as f64))
}

/// Row-major one-hot matrix `[labels.len(), classes]`.
pub(crate) fn one_hot(labels: &[usize], classes: usize) -> Result<Vec<f64>, MlError> {
    let mut out = vec![0.0; labels.len() * classes];
    for (i, &label) in labels.iter().enumerate() {
        if label >= classes {
            return Err(MlError::InvalidInput {
                message: format!("label {label} at row {i} is not below {classes} classes"),
            });
        }
        out[i * classes + label] = 1.0;
    }
    Ok(out)
}

/// Mean squared error.
///
/// # Shapes
/// - prediction, target: `[batch]`; output `[1]`
pub fn mse(prediction: Tensor<1>, target: Tensor<1>) -> Tensor<1> {
    (prediction - target).square().mean()
}

/// Mean Huber loss with threshold `delta` (PyTorch's `HuberLoss`): `0.5 r²` for `|r| < δ`,
/// else `δ (|r| − δ/2)`.
///
/// # Shapes
/// - prediction, target: `[batch]`; output `[1]`
pub fn huber(prediction: Tensor<1>, target: Tensor<1>, delta: f64) -> Result<Tensor<1>, MlError> {
    if !(delta.is_finite() && delta > 0.0) {
        return Err(MlError::InvalidInput {
            message: format!("Huber delta must be positive, got {delta}"),
        });
    }
    let abs = (prediction - target).abs();
    // min(|r|, δ) = q; loss = 0.5 q² + δ (|r| − q): both branches in one expression.
    let q = abs.clone().clamp_max(delta);
    Ok((q.clone().square().mul_scalar(0.5) + (abs - q).mul_scalar(delta)).mean())
}
