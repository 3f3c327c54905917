//! Config-driven training: `bedside train --config exp.toml`.
//!
//! A run folder holds the resolved configuration (`config.toml`), `metrics.csv` (one row per
//! epoch: learning rate, losses and task metrics on the training and validation splits),
//! `checkpoint/` (model and optimiser of the last finished epoch, or of the last
//! `training.checkpoint_every_steps` step inside an epoch, plus `state.json`, each written
//! atomically, so a crash loses at most the work since that checkpoint), `best/model.bpk` (the
//! model of the best validation epoch) and `data.json` (the training data summary).
//!
//! Validation follows EchoNet-Dynamic's test-time protocol in small: `data.val_clips` evenly
//! spaced clips per study, the study's prediction being the mean of its clips' (as `bedside
//! predict` computes it); training draws one random clip per study and epoch.
//!
//! Resuming restores the model, the optimiser's moments, the step counter (the learning rate
//! is a pure function of it, see [`schedule`]), the epoch, the position inside the epoch (the
//! batches already taken and the running loss and outputs of the epoch's metrics row) and the
//! best-model bookkeeping. Every random choice (order, clip starts, augmentations) is derived
//! from the seed and the epoch number; the backend's generator (fresh parameters, dropout) is
//! seeded from the seed, the epoch and the batch, so a
//! resumed run writes the same `metrics.csv` and reaches the same weights as an uninterrupted
//! one on the CPU.

pub mod arrays;
pub mod config;
pub mod metrics;
pub mod model;
mod proximal;
mod run;
pub mod schedule;

use std::path::PathBuf;

pub(crate) use run::load_model_file as run_load_model;
pub use run::{
    DataSummary, Evaluation, ExactValues, MetricsRow, PartialEpoch, RunState, SplitSummary,
    TrainEvent, TrainOutcome, evaluate_arrays, initial_arrays, load_run_state, run_arrays, train,
    train_with,
};

use crate::data::loader::LoaderError;
use crate::error::MlError;

/// Errors of training, export and prediction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The configuration and the data do not fit together (e.g. a label outside the classes).
    #[error("invalid experiment: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The data could not be loaded.
    #[error(transparent)]
    Data(#[from] LoaderError),
    /// A model, loss or backend error.
    #[error(transparent)]
    Ml(#[from] MlError),
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A checkpoint, bundle or weight file is unreadable or does not fit the model.
    #[error("{path}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl TrainError {
    /// Whether the error is the user's input (configuration, manifest, arrays) rather than a
    /// failure of the run.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::Invalid { .. } | Self::Data(_) | Self::Ml(MlError::InvalidConfig { .. })
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn record(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Self::Record {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
