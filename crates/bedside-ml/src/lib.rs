//! Video deep-learning core of Bedside, on [burn](https://burn.dev).
//!
//! Echocardiograms, CT and MRI series are videos: this crate holds the models and losses that
//! turn a clip tensor `[batch, channels, frames, height, width]` into clinical predictions.
//!
//! - [`video`]: torchvision-compatible video ResNets (R3D-18, MC3-18, R(2+1)D-18) with
//!   width/depth multipliers; [`frame_cnn`]: a per-frame 2D CNN with temporal pooling as the
//!   baseline that shows what 3D convolutions add.
//! - [`weights`]: loading PyTorch state_dicts (`.pt` or `.safetensors`) with a strict report of
//!   missing, unexpected and mis-shaped keys.
//! - [`heads`]: classification, regression and survival heads and late fusion with tabular
//!   covariates; [`loss`]: softmax, MSE/Huber, evidential (Sensoy et al. 2018), Cox partial
//!   likelihood (Breslow and Efron), discrete-time logistic hazard, PMF, MTLR, DeepHit and
//!   fairness penalties over any number of groups.
//! - [`ops`]: operations burn lacks, built from differentiable primitives (`lgamma`,
//!   `digamma`, `logcumsumexp`, 3D max/average pooling).
//! - [`data`]: reading `.npy` clips, the study manifest, EchoNet-style clip sampling, seeded
//!   `Rand…` augmentations and normalisation statistics from the training split.
//! - [`train`]: config-driven training (run folders, checkpoints, exact resume, early
//!   stopping); [`bundle`]: self-contained model bundles; [`predict`]: test-time prediction
//!   over every clip of a study.
//! - [`backend`]: choosing the compiled-in backend (`flex` always; `tch` with the `tch`
//!   feature) at run time.
//!
//! # Backends
//!
//! `cargo build -p bedside-ml` builds the pure-Rust `flex` CPU backend. The libtorch backend is
//! a cargo feature: install the matching PyTorch wheel (`scripts/setup-torch.sh` puts
//! torch 2.9.0 in `.venv-torch`), then `LIBTORCH_USE_PYTORCH=1 cargo build -p bedside-ml
//! --features tch` with that Python first on `PATH`. This package's tests and examples carry an
//! rpath to `torch/lib`; other binaries run with `LD_LIBRARY_PATH` pointing there.
//! [`backend::BackendKind::select`] picks a compiled-in backend and device (`cpu`, `cuda:N`)
//! at run time; see `crates/bedside-ml/README.md`.
//!
//! # Example
//!
//! ```
//! use bedside_ml::backend::BackendKind;
//! use bedside_ml::video::{VideoArch, VideoResNetConfig};
//! use burn::tensor::Tensor;
//!
//! let device = BackendKind::Flex.device().unwrap();
//! let model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
//!     .with_width(0.0625)
//!     .with_layers([1, 1, 1, 1])
//!     .with_num_classes(2)
//!     .init(&device)
//!     .unwrap();
//! let clip = Tensor::<5>::zeros([1, 3, 4, 16, 16], &device); // [batch, channels, frames, h, w]
//! let logits = model.forward(clip);
//! assert_eq!(logits.dims(), [1, 2]);
//! ```

pub mod backend;
pub mod bundle;
pub mod data;
pub mod error;
pub mod frame_cnn;
pub mod gate;
pub mod heads;
pub mod loss;
pub mod ops;
pub mod predict;
pub mod train;
pub mod video;
pub mod weights;

pub use error::MlError;
