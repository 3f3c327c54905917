//! The Bedside annotation server.
//!
//! - [`store::DiskStore`]: de-identified DICOM in a content-addressed folder (SHA-256 of the
//!   bytes) indexed in SQLite (WAL) or PostgreSQL ([`sql`]); implements
//!   [`bedside_dicomweb::StudyStore`].
//! - [`import::import_path`]: loads a folder of DICOM (the output of `bedside curate`, a
//!   phantom's `dicom/` tree) into the store; every file goes through the bounded reader.
//! - [`db::AnnotateDb`]: accounts (Argon2id), sessions, projects with roles, label schemas,
//!   annotations with versions and an audit trail, in the same database.
//! - [`auth`]: session cookies, CSRF, and the role checks in front of DICOMweb.
//! - [`api`]: the REST API; [`collab`]: the WebSocket for real-time collaboration;
//!   [`units`]: physical units of measurements; [`export`]: JSON and CSV exports, and
//!   [`export_dicom`]: DICOM SR (TID 1500), SEG, and masks as arrays and PNG.
//! - [`server::serve`]: the HTTP server, DICOMweb under `/dicomweb` (point a viewer's
//!   `wadoRoot`/`qidoRoot` there), the API under `/api`, the browser interface ([`web`])
//!   at `/`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bedside_annotate::{db::AnnotateDb, import, store::DiskStore};
//! let data = std::path::Path::new("annotate-data");
//! let store = DiskStore::open(data)?;
//! let summary = import::import_path(&store, std::path::Path::new("curated/"), |_, _| {})?;
//! println!("{} stored", summary.stored);
//! let db = Arc::new(AnnotateDb::open(data)?);
//! db.add_user("alice", "correct horse battery", true)?;
//! let app = bedside_annotate::server::app(Arc::new(store), db, Default::default(), Default::default());
//! # let _ = app;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod auth;
pub mod collab;
pub mod db;
pub mod export;
pub mod export_dicom;
pub mod import;
pub mod model;
pub mod server;
pub mod sql;
pub mod store;
pub mod units;
pub mod web;
