//! Losses of the clinical task heads.
//!
//! Predictions are tensors (gradients flow through them); targets that only select or weight
//! terms (labels, durations, events, groups) are plain slices, validated against the batch.
//! Every loss works in the float type of its input: pass `f64` tensors where sums over many
//! subjects must be exact to 1e-6.
//!
//! - [`classification`]: softmax cross-entropy, MSE and Huber regression.
//! - [`evidential`]: evidential classification (Sensoy et al. 2018).
//! - [`survival`]: Cox partial likelihood (Breslow, Efron), discrete-time logistic hazard,
//!   PMF, MTLR and DeepHit, with pycox's conventions.
//! - [`fairness`]: demographic-parity and equalized-odds penalties over any number of groups.

pub mod classification;
pub mod evidential;
pub mod fairness;
pub mod survival;

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::error::MlError;

/// A constant (non-trainable) tensor on `device` with float type `dtype`.
pub(crate) fn constant<const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

/// A constant with the device and float type of `like`.
pub(crate) fn constant_like<const D: usize, const E: usize>(
    values: Vec<f64>,
    shape: [usize; D],
    like: &Tensor<E>,
) -> Tensor<D> {
    constant(values, shape, &like.device(), like.dtype())
}

/// Fail unless `got == want` (`what` names the argument).
pub(crate) fn check_len(what: &str, got: usize, want: usize) -> Result<(), MlError> {
    if got == want {
        Ok(())
    } else {
        Err(MlError::InvalidInput {
            message: format!("{what} has {got} entries, the batch has {want}"),
        })
    }
}

/// Fail on an empty batch.
pub(crate) fn check_non_empty(n: usize) -> Result<(), MlError> {
    if n == 0 {
        Err(MlError::InvalidInput {
            message: "empty batch".into(),
        })
    } else {
        Ok(())
    }
}
