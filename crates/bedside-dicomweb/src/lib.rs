//! DICOMweb (PS3.18) as an axum [`Router`] over a [`StudyStore`].
//!
//! - QIDO-RS: `GET /studies`, `/series`, `/instances`, `/studies/{S}/series`,
//!   `/studies/{S}/instances`, `/studies/{S}/series/{SE}/instances` with attribute matching
//!   (exact, wildcards, UID lists, date/time ranges), `includefield`, `limit`/`offset`,
//!   `fuzzymatching` ([`query`]).
//! - WADO-RS: study/series/instance retrieval (`multipart/related; type="application/dicom"`),
//!   `metadata` as `application/dicom+json` with `BulkDataURI`s, `frames/{list}` (stored
//!   bytes with `transfer-syntax=*`, or decoded to Explicit VR Little Endian), `rendered`
//!   and `thumbnail` (JPEG/PNG with a window), `bulkdata/{path}`.
//! - STOW-RS: `POST /studies[/{S}]` with ReferencedSOPSequence / FailedSOPSequence and
//!   200/202/409.
//!
//! Errors are 4xx/5xx with a `Warning: 299` header and a JSON body; bodies are size-capped.
//! Parsed instances are cached ([`instance::InstanceCache`]) so frame requests cost a memory
//! copy, not a file parse. Every route is a plain axum route: wrap the router in tower
//! middleware (authentication, per-study authorisation) with `Router::layer`/`route_layer`.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(store: Arc<dyn bedside_dicomweb::StudyStore>) {
//! let app = bedside_dicomweb::router(store, bedside_dicomweb::DicomWebConfig::default());
//! // axum::serve(listener, app) ...
//! # let _ = app;
//! # }
//! ```

pub mod error;
pub mod instance;
pub mod json;
pub mod multipart;
pub mod query;
mod routes;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use error::ApiError;
pub use store::{InstanceLocator, Level, Record, Scope, StoreError, StoreOutcome, StudyStore};

/// Settings of the DICOMweb service.
#[derive(Debug, Clone)]
pub struct DicomWebConfig {
    /// Largest STOW-RS request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Memory for parsed instances (frames) kept between requests, in bytes.
    pub cache_bytes: usize,
    /// Absolute URL of the DICOMweb root for RetrieveURL and BulkDataURI values; when unset it
    /// is built from the request's `Host` header and [`DicomWebConfig::path_prefix`].
    pub base_url: Option<String>,
    /// Path under which the router is nested (e.g. `/dicomweb`), for URLs built from `Host`.
    pub path_prefix: String,
    /// Binary values up to this size are written inline in metadata, larger ones as
    /// BulkDataURI.
    pub inline_binary_threshold: usize,
    /// Most results one QIDO-RS response carries (a `limit` above it is lowered).
    pub max_results: usize,
}

impl Default for DicomWebConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: 2 << 30,
            cache_bytes: 1 << 30,
            base_url: None,
            path_prefix: String::new(),
            inline_binary_threshold: 1024,
            max_results: 10_000,
        }
    }
}

/// State shared by the handlers.
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn StudyStore>,
    pub(crate) config: DicomWebConfig,
    pub(crate) cache: instance::InstanceCache,
    pub(crate) load_lock: tokio::sync::Mutex<()>,
}

/// The DICOMweb service over `store`. Mount it at the root or with `Router::nest` (then set
/// [`DicomWebConfig::path_prefix`]).
pub fn router(store: Arc<dyn StudyStore>, config: DicomWebConfig) -> Router {
    let state = Arc::new(AppState {
        store,
        cache: instance::InstanceCache::new(config.cache_bytes),
        config,
        load_lock: tokio::sync::Mutex::new(()),
    });
    let instance = "/studies/{study}/series/{series}/instances/{instance}";
    Router::new()
        .route(
            "/studies",
            get(routes::search_studies).post(routes::store_instances),
        )
        .route("/series", get(routes::search_all_series))
        .route("/instances", get(routes::search_all_instances))
        .route(
            "/studies/{study}",
            get(routes::retrieve_study).post(routes::store_instances),
        )
        .route("/studies/{study}/metadata", get(routes::study_metadata))
        .route("/studies/{study}/series", get(routes::search_series))
        .route(
            "/studies/{study}/instances",
            get(routes::search_study_instances),
        )
        .route(
            "/studies/{study}/series/{series}",
            get(routes::retrieve_series),
        )
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(routes::series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(routes::search_instances),
        )
        .route(instance, get(routes::retrieve_instance))
        .route(
            &format!("{instance}/metadata"),
            get(routes::instance_metadata),
        )
        .route(
            &format!("{instance}/rendered"),
            get(routes::instance_rendered),
        )
        .route(
            &format!("{instance}/thumbnail"),
            get(routes::instance_rendered),
        )
        .route(
            &format!("{instance}/frames/{{frames}}"),
            get(routes::frames),
        )
        .route(
            &format!("{instance}/frames/{{frames}}/rendered"),
            get(routes::frame_rendered),
        )
        .route(
            &format!("{instance}/bulkdata/{{*path}}"),
            get(routes::bulkdata),
        )
        .fallback(routes::not_found)
        .with_state(state)
        .layer(axum::middleware::map_response(dicomweb_style_errors))
}

/// Gives the errors axum produces itself (405, malformed path encoding, ...) the same shape as
/// the service's own: a `Warning: 299` header and a JSON body.
async fn dicomweb_style_errors(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    if (status.is_client_error() || status.is_server_error())
        && !response.headers().contains_key(axum::http::header::WARNING)
        // STOW-RS failures are answered with their own DICOM JSON body.
        && !response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/dicom+json"))
    {
        let reason = status.canonical_reason().unwrap_or("request refused");
        let mut fixed = axum::response::IntoResponse::into_response(ApiError::new(status, reason));
        for (name, value) in response.headers() {
            if name == axum::http::header::ALLOW {
                fixed.headers_mut().insert(name, value.clone());
            }
        }
        return fixed;
    }
    response
}
