//! Errors of the attribution methods and of `bedside explain`.

use std::path::PathBuf;

/// What went wrong while explaining.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// A parameter or an input is out of range.
    #[error("invalid explanation request: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The backend returned a tensor that could not be read back.
    #[error("cannot read a tensor back from the device: {message}")]
    Tensor {
        /// The backend's message.
        message: String,
    },
    /// Loading the bundle, the manifest or a study's arrays failed.
    #[error(transparent)]
    Load(#[from] bedside_ml::train::TrainError),
    /// Reading or writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Encoding an image failed.
    #[error("cannot encode {path}: {message}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
}

impl ExplainError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
