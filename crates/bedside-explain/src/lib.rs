//! Attributions for Bedside's video models (`bedside explain`).
//!
//! Saliency maps can mislead (Adebayo et al. 2018: several methods behave as edge detectors
//! and look the same for a randomly initialised model), so this crate keeps its methods close
//! to the reference implementation users know — Captum — and checks them against it on a
//! fixed-weight 3D network kept as test data (`tests/captum_parity.rs`).
//!
//! - [`model`]: the model as the methods see it ([`model::Explainee`]: backbone cut at any
//!   stage, head with a study's covariates, inference-mode BatchNorm) and the explained scalar
//!   ([`model::Target`]: a class logit or probability, the regression value, the risk score).
//! - [`gradient`]: saliency, input × gradient, Integrated Gradients (Gauss–Legendre or Riemann
//!   rules, zero / constant / blurred / mean baselines, bounded internal batches) and
//!   SmoothGrad (seeded noise from `bedside_core::rng`).
//! - [`gradcam`]: Grad-CAM at `stem`, `layer1` … `layer4`, upsampled trilinearly to the clip.
//! - [`occlusion`]: sliding spatio-temporal occlusion (Captum's window and stride rules) and
//!   frame ablation giving a temporal importance curve.
//! - [`study`]: per-clip dispatch and averaging of clip maps over a study's video.
//! - [`render`], [`run`]: animated PNG overlays, SVG temporal curves, JSON and `.npy` outputs
//!   of `bedside explain`.
//! - [`region`], [`dataset`]: clinical region masks (the phantom's left ventricle, a mask file)
//!   mapped onto the model input, and the dataset-level serial occlusion test (the task metric
//!   with the region masked against equal-area random masks, bootstrap intervals), the
//!   attribution mass inside the region and the "Explanations" report section.
//! - [`sanity`]: Adebayo et al.'s sanity checks: cascading model-parameter randomisation and
//!   data randomisation, with Spearman rank correlation and SSIM between maps.
//!
//! Gradients flow only to the input (or the stage's activations for Grad-CAM): the model is
//! frozen, so its parameters are constants of the backward pass and no weight gradients are
//! computed.

pub mod dataset;
pub mod error;
pub mod gradcam;
pub mod gradient;
pub mod model;
pub mod occlusion;
pub mod region;
pub mod render;
pub mod run;
pub mod sanity;
pub mod study;

pub use error::ExplainError;
pub use model::{Cascade, Explainee, Stage, Target};
pub use study::Method;
