//! The HTTP server: the annotation API under `/api` (with its WebSocket), DICOMweb under
//! `/dicomweb`, the browser interface at `/` ([`crate::web`]), a health check, graceful
//! shutdown. One layer resolves sessions for the whole application
//! ([`crate::auth::authenticate`]); DICOMweb sits behind [`crate::auth::dicomweb_guard`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
pub use bedside_dicomweb::DicomWebConfig;
use bedside_dicomweb::StudyStore;

use crate::api::{AppState, AuthConfig};
use crate::db::AnnotateDb;
use crate::store::{DiskStore, OpenError};

/// Where the DICOMweb service is mounted (the `wadoRoot`/`qidoRoot` of a viewer).
pub const DICOMWEB_PREFIX: &str = "/dicomweb";

/// Settings of `bedside annotate serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The data folder (database and stored DICOM).
    pub data: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// DICOMweb settings.
    pub dicomweb: DicomWebConfig,
    /// Session settings.
    pub auth: AuthConfig,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The async runtime could not start.
    #[error("cannot start the server runtime: {0}")]
    Runtime(std::io::Error),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server failed: {0}")]
    Run(std::io::Error),
}

/// The whole application: the API under `/api`, DICOMweb under [`DICOMWEB_PREFIX`] (both
/// needing a session), `GET /healthz` and the embedded browser interface for every other
/// path.
pub fn app(
    store: Arc<dyn StudyStore>,
    db: Arc<AnnotateDb>,
    mut dicomweb: DicomWebConfig,
    auth: AuthConfig,
) -> Router {
    if dicomweb.path_prefix.is_empty() {
        dicomweb.path_prefix = DICOMWEB_PREFIX.to_string();
    }
    let state = Arc::new(AppState {
        db,
        store: store.clone(),
        hub: Default::default(),
        auth,
        logins: Default::default(),
    });
    let dicomweb = bedside_dicomweb::router(store, dicomweb).layer(
        axum::middleware::from_fn_with_state(state.clone(), crate::auth::dicomweb_guard),
    );
    Router::new()
        .nest(DICOMWEB_PREFIX, dicomweb)
        .nest("/api", crate::api::router(state.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(crate::web::serve)
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::authenticate,
        ))
}

/// Opens the store and serves until Ctrl-C or SIGTERM. `on_ready` gets the bound address
/// (useful with port 0).
pub fn serve(config: ServeConfig, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let store: Arc<dyn StudyStore> = Arc::new(DiskStore::open(&config.data)?);
    let db = Arc::new(AnnotateDb::open(&config.data)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Run)?;
        on_ready(addr);
        let app = app(store, db, config.dicomweb, config.auth);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(ServeError::Run)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
