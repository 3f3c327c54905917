//! Import of a folder of DICOM (a curated cohort, a phantom's `dicom/` tree) into the store.

use std::path::{Path, PathBuf};

use bedside_dicomweb::{StoreError, StoreOutcome, StudyStore};
use bytes::Bytes;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Files looked at.
    pub files: u64,
    /// Instances newly stored.
    pub stored: u64,
    /// Instances that were already stored with the same bytes.
    pub already_stored: u64,
    /// Files that are not DICOM (tables, reports, DICOMDIR-less junk) and were skipped.
    pub not_dicom: u64,
    /// Files that are DICOM but were refused, with the reason (file path, message).
    pub failed: Vec<(PathBuf, String)>,
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A folder could not be listed.
    #[error("cannot list folder {path}: {source}")]
    ListFolder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed (disk full, database error); the import stops.
    #[error("store failed while importing {path}: {source}")]
    Store {
        /// The file being imported.
        path: PathBuf,
        /// The cause.
        source: StoreError,
    },
}

/// Every regular file under `root`, sorted, without following symbolic links.
fn files_under(root: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| ImportError::ListFolder {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ImportError::ListFolder {
                path: dir.clone(),
                source,
            })?;
            let kind = entry
                .file_type()
                .map_err(|source| ImportError::ListFolder {
                    path: entry.path(),
                    source,
                })?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Imports every DICOM file under `root` (or `root` itself when it is a file). `progress` is
/// called after each file with (done, total).
pub fn import_path(
    store: &dyn StudyStore,
    root: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportSummary, ImportError> {
    let files = if root.is_file() {
        vec![root.to_path_buf()]
    } else {
        files_under(root)?
    };
    let total = files.len() as u64;
    let mut summary = ImportSummary::default();
    for path in files {
        summary.files += 1;
        let bytes = match std::fs::read(&path) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                summary.failed.push((path, format!("cannot read: {e}")));
                progress(summary.files, total);
                continue;
            }
        };
        if bedside_dicom::read::detect(&bytes).is_err() {
            summary.not_dicom += 1;
            progress(summary.files, total);
            continue;
        }
        match store.store(bytes) {
            Ok(StoreOutcome::Stored(_)) => summary.stored += 1,
            Ok(StoreOutcome::AlreadyStored(_)) => summary.already_stored += 1,
            Err(e @ (StoreError::Refused(_) | StoreError::Conflict)) => {
                summary.failed.push((path, e.to_string()));
            }
            Err(source) => return Err(ImportError::Store { path, source }),
        }
        progress(summary.files, total);
    }
    Ok(summary)
}
