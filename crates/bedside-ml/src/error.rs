//! Errors of the ML crate.

use std::path::PathBuf;

use crate::weights::LoadReport;

/// Everything that can go wrong in `bedside-ml`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// A model or loss configuration is invalid.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// Inputs to a loss or head have incompatible shapes or values.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },
    /// A weight file could not be read.
    #[error("cannot read weights from {path}: {message}")]
    ReadWeights {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
    /// The weight file does not match the model (strict loading).
    #[error("weights do not match the model:\n{report}")]
    WeightMismatch {
        /// Missing, unexpected and mis-shaped keys.
        report: Box<LoadReport>,
    },
    /// The requested backend was not compiled into this binary.
    #[error("backend `{name}` is not available in this build (available: {available})")]
    BackendUnavailable {
        /// The requested backend.
        name: String,
        /// The compiled-in backends.
        available: String,
    },
}
