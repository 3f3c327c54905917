//! Writing DICOM Part 10 files.

use std::path::Path;

use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// Implementation Class UID written into the file meta of every file Bedside creates.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.178419433962402843418327925612311536411";
/// Implementation Version Name written with it.
pub const IMPLEMENTATION_VERSION_NAME: &str = "BEDSIDE_0_1";

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The file meta group could not be built (missing SOP Class/Instance UID).
    #[error("cannot build the file meta group: {0}")]
    Meta(String),
    /// The data set could not be encoded.
    #[error("cannot encode the data set: {0}")]
    Encode(String),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Encodes `obj` as a Part 10 file (preamble, `DICM`, meta group) in `transfer_syntax`.
pub fn encode_file(obj: InMemDicomObject, transfer_syntax: &str) -> Result<Vec<u8>, WriteError> {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(transfer_syntax)
                .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
        )
        .map_err(|e| WriteError::Meta(e.to_string()))?;
    let mut buf = Vec::new();
    file.write_all(&mut buf)
        .map_err(|e| WriteError::Encode(e.to_string()))?;
    Ok(buf)
}

/// Encodes `obj` and writes it to `path` atomically.
pub fn write_file(
    obj: InMemDicomObject,
    transfer_syntax: &str,
    path: &Path,
) -> Result<u64, WriteError> {
    let bytes = encode_file(obj, transfer_syntax)?;
    bedside_core::fsio::write_atomic(path, &bytes).map_err(|source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(bytes.len() as u64)
}
