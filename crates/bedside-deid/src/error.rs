//! Errors of de-identification. None of them carries a value read from a DICOM file.

use std::path::PathBuf;

use bedside_core::phi::Phi;

/// Why de-identification could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeidError {
    /// The embedded or a supplied confidentiality table is malformed.
    #[error("confidentiality table: {message}")]
    Table {
        /// What is wrong.
        message: String,
    },
    /// A profile is malformed or inconsistent.
    #[error("de-identification profile {origin}: key `{key}`: {message}")]
    Profile {
        /// Where the profile came from.
        origin: String,
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The site secret could not be read or created.
    #[error("site secret {path}: {message}")]
    Secret {
        /// The secret file.
        path: PathBuf,
        /// What went wrong (never the secret).
        message: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the de-identified object to its destination failed.
    #[error("cannot write the de-identified object: {source}")]
    Output {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not a DICOM data set this crate can read.
    #[error("not readable as DICOM: {reason}")]
    NotDicom {
        /// A short reason without any value from the file.
        reason: &'static str,
        /// The parser's own message, which may quote values from the file.
        detail: Phi<String>,
    },
    /// The input uses a transfer syntax that cannot be re-encoded.
    #[error("unsupported transfer syntax")]
    UnsupportedTransferSyntax {
        /// The transfer syntax UID (a registry UID, not PHI, kept redacted all the same).
        uid: Phi<String>,
    },
    /// Encoding the de-identified object failed.
    #[error("cannot encode the de-identified object: {reason}")]
    Encode {
        /// A short reason.
        reason: &'static str,
        /// The encoder's own message, which may quote values.
        detail: Phi<String>,
    },
}
