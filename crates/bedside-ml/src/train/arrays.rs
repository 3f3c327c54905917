//! A whole model as named `f32` arrays: what a federation exchanges.
//!
//! Names are the module paths of burn (`backbone.stem.conv.weight`, BatchNorm's `gamma`,
//! `beta`, `running_mean`, `running_var`), so the running statistics travel and are averaged
//! with the weights, as a PyTorch `state_dict` would carry them. Loading is strict: every
//! parameter of the model must be given, with its shape, and nothing else.

use burn::module::Module;
use burn::store::ModuleSnapshot;
use burn::store::burn_pack::{Bytes, DType, Tensor as PackTensor};

use super::TrainError;
use super::model::ClinicalModel;
use crate::data::clips::Normalization;

/// One parameter or buffer of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedArray {
    /// Module path.
    pub name: String,
    /// Shape (C order).
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

/// Where a fresh training run starts instead of the configuration's initialisation.
#[derive(Debug, Clone, Default)]
pub struct StartFrom {
    /// Every parameter and buffer of the model (strict).
    pub arrays: Option<Vec<NamedArray>>,
    /// Input normalisation instead of the training split's statistics.
    pub normalization: Option<Normalization>,
    /// FedProx's proximal weight μ: the loss gains `μ/2 · ‖w − w₀‖²` towards `arrays`
    /// (0 = plain training).
    pub proximal_mu: f64,
    /// Run the epochs' forward passes in training mode but take no optimiser step: only the
    /// BatchNorm running statistics move, to this run's data under `arrays`' weights. This is
    /// how a site re-estimates a federated model's statistics on its own studies (AdaBN, Li
    /// et al. 2016; statistics kept per site as in SiloBN, Andreux et al. 2020).
    pub statistics_only: bool,
}

/// The model's parameters and buffers, in the order the model lists them.
pub fn model_arrays(model: &ClinicalModel) -> Result<Vec<NamedArray>, TrainError> {
    // BatchNorm keeps its latest running-statistics update apart until synchronised (see
    // the checkpoint writer): make the inference copy so they are included.
    let model = model.valid();
    let mut out = Vec::new();
    for tensor in model.collect(None, None, false) {
        let (name, dtype, shape, _, bytes) = tensor
            .into_parts()
            .map_err(|e| TrainError::invalid(format!("reading model weights: {e}")))?;
        if dtype != DType::F32 {
            return Err(TrainError::invalid(format!(
                "parameter `{name}` is {dtype:?}, only f32 models are exchanged"
            )));
        }
        let data = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        out.push(NamedArray {
            name,
            shape: shape.as_slice().to_vec(),
            data,
        });
    }
    Ok(out)
}

/// Sets every parameter and buffer of `model` from `arrays`; refuses missing, unknown and
/// mis-shaped arrays, naming them.
pub fn apply_arrays(
    mut model: ClinicalModel,
    arrays: &[NamedArray],
) -> Result<ClinicalModel, TrainError> {
    let mut tensors = Vec::with_capacity(arrays.len());
    for a in arrays {
        let count: usize = a.shape.iter().product();
        if count != a.data.len() {
            return Err(TrainError::invalid(format!(
                "array `{}` has {} values for shape {:?}",
                a.name,
                a.data.len(),
                a.shape
            )));
        }
        let bytes: Vec<u8> = a.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push(PackTensor::new(
            a.name.clone(),
            DType::F32,
            a.shape.clone(),
            None,
            Bytes::from_bytes_vec(bytes),
        ));
    }
    let result = model.apply(tensors, None, None, false);
    let mut problems: Vec<String> = Vec::new();
    problems.extend(result.missing.iter().map(|(p, _)| format!("missing `{p}`")));
    problems.extend(result.unused.iter().map(|p| format!("unknown `{p}`")));
    problems.extend(result.errors.iter().map(ToString::to_string));
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(6).map(String::as_str).collect();
        return Err(TrainError::invalid(format!(
            "the arrays do not fit this model ({} problems: {}{})",
            problems.len(),
            shown.join("; "),
            if problems.len() > shown.len() {
                "; …"
            } else {
                ""
            }
        )));
    }
    // Tensors land on each parameter's own device (autodiff or not).
    Ok(model)
}
