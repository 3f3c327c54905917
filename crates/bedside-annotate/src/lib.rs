//! The Bedside annotation server (so far: the study store and DICOMweb).
//!
//! - [`store::DiskStore`]: de-identified DICOM in a content-addressed folder (SHA-256 of the
//!   bytes) indexed in SQLite (WAL, versioned migrations); implements
//!   [`bedside_dicomweb::StudyStore`].
//! - [`import::import_path`]: loads a folder of DICOM (the output of `bedside curate`, a
//!   phantom's `dicom/` tree) into the store; every file goes through the bounded reader.
//! - [`server::serve`]: the HTTP server, DICOMweb under `/dicomweb` (point a viewer's
//!   `wadoRoot`/`qidoRoot` there).
//!
//! ```no_run
//! use std::sync::Arc;
//! use bedside_annotate::{import, store::DiskStore};
//! let store = DiskStore::open(std::path::Path::new("annotate-data"))?;
//! let summary = import::import_path(&store, std::path::Path::new("curated/"), |_, _| {})?;
//! println!("{} stored", summary.stored);
//! let app = bedside_annotate::server::app(Arc::new(store), Default::default());
//! # let _ = app;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod import;
pub mod server;
pub mod store;
