//! FedProx's proximal term (Li et al., 2020): a site's local objective is its task loss plus
//! `μ/2 · ‖w − w₀‖²`, where `w₀` is the global model the round started from. It keeps
//! sites whose data differ from drifting far from the global model in their local epochs.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::TrainError;
use super::model::ClinicalModel;

/// The round's starting parameters (constants: no gradient flows into them) and `μ`.
pub(crate) struct Anchor {
    mu: f64,
    /// Every float parameter, flattened, in the order the model visits them.
    params: Vec<Tensor<1>>,
}

/// Flattens every float parameter of a module, in visit order.
#[derive(Default)]
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .push(param.val().flatten::<1>(0, D.saturating_sub(1)));
    }
}

impl Anchor {
    /// Records `start`'s parameters, detached from any autodiff graph.
    pub(crate) fn new(start: &ClinicalModel, mu: f64) -> Result<Self, TrainError> {
        if !(mu.is_finite() && mu >= 0.0) {
            return Err(TrainError::invalid(format!(
                "the proximal weight μ must be a non-negative number, not {mu}"
            )));
        }
        let mut collect = Collect::default();
        start.visit(&mut collect);
        Ok(Anchor {
            mu,
            params: collect.0.into_iter().map(Tensor::detach).collect(),
        })
    }

    /// `μ/2 · Σ ‖w − w₀‖²` over `model`'s float parameters, differentiable in `model`'s.
    pub(crate) fn term(&self, model: &ClinicalModel) -> Result<Tensor<1>, TrainError> {
        let mut current = Collect::default();
        model.visit(&mut current);
        if current.0.len() != self.params.len() {
            return Err(TrainError::invalid(format!(
                "the model has {} parameters and the proximal anchor {}",
                current.0.len(),
                self.params.len()
            )));
        }
        let mut sum: Option<Tensor<1>> = None;
        for (w, w0) in current.0.into_iter().zip(&self.params) {
            if w.dims() != w0.dims() {
                return Err(TrainError::invalid(format!(
                    "a parameter of {:?} values meets an anchor of {:?}",
                    w.dims(),
                    w0.dims()
                )));
            }
            let squares = (w - w0.clone()).square().sum();
            sum = Some(match sum {
                Some(s) => s + squares,
                None => squares,
            });
        }
        let sum = sum.ok_or_else(|| TrainError::invalid("the model has no parameters"))?;
        Ok(sum.mul_scalar(self.mu / 2.0))
    }
}
