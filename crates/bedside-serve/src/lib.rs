//! `bedside serve`: the clinical inference service.
//!
//! Studies arrive by DICOM C-STORE ([`dimse`]) or DICOMweb STOW-RS and REST ([`service`]); each
//! instance is written to disk and queued ([`store`]) before the sender is told it is stored.
//! A worker routes it to a model bundle by header rules ([`config`]), checks it ([`pipeline`]:
//! every refusal a named reason), runs every clip through the model, applies the
//! out-of-distribution gate ("I don't know"), and writes the result as a Comprehensive SR
//! ([`report`]) that is kept for retrieval and sent by C-STORE to the destination PACS.
//! With `[route.explain]`, [`explanation`] adds an attribution overlay as a secondary capture.
//! [`metrics`] exposes counters and per-stage latency histograms for Prometheus.

pub mod config;
pub mod dimse;
pub mod explanation;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod service;
pub mod store;

pub use config::ServeConfig;
pub use service::{Model, Running, ServeError, start};
