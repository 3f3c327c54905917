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
    /// A PostgreSQL URL to keep the index, accounts and annotations in instead of the data
    /// folder's SQLite file (for several servers sharing one data folder).
    pub database: Option<String>,
    /// Certificate authorities (PEM) that a PostgreSQL server reached with `sslmode=require`
    /// must be signed by (default: the system's).
    pub database_ca: Option<PathBuf>,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// DICOMweb settings.
    pub dicomweb: DicomWebConfig,
    /// Session settings.
    pub auth: AuthConfig,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// PEM files of the server's certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
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
    /// The TLS certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(String),
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
    // With PostgreSQL, operations committed by any server reach this one's connections
    // through the database; the listener stops once the application is dropped.
    let weak = Arc::downgrade(&state);
    let (w1, w2, w3, w4) = (weak.clone(), weak.clone(), weak.clone(), weak.clone());
    if let Err(e) = state.db.relay(
        move || w1.strong_count() > 0,
        move |op| {
            if let Some(st) = w2.upgrade() {
                st.hub.publish_relayed(op);
            }
        },
        move |presence| {
            if let Some(st) = w4.upgrade() {
                st.hub.remote_presence(&presence);
            }
        },
        move || {
            if let Some(st) = w3.upgrade() {
                st.hub.resync_all();
            }
        },
    ) {
        tracing::error!(error = %e, "cannot start the operation relay");
    }
    if state.db.relays() {
        // Presence is repeated now and then, so that entries of a server that stopped
        // uncleanly expire on the others.
        let spawned = std::thread::Builder::new()
            .name("bedside-presence".into())
            .spawn(move || {
                let mut last = std::time::Instant::now();
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let Some(st) = weak.upgrade() else { return };
                    st.hub.expire_remote_presence();
                    if last.elapsed() >= crate::collab::PRESENCE_REFRESH {
                        last = std::time::Instant::now();
                        for message in st.hub.local_presence() {
                            if let Err(e) = st.db.announce_presence(&message) {
                                tracing::warn!(error = %e, "cannot announce presence");
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the presence refresh");
        }
    }
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
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let database = crate::sql::Database::open_with_ca(
        &config.data,
        config.database.as_deref(),
        config.database_ca.as_deref(),
    )?;
    let store: Arc<dyn StudyStore> = Arc::new(DiskStore::with_database(&config.data, &database)?);
    let db = Arc::new(AnnotateDb::with_database(&database)?);
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
        match acceptor {
            Some(acceptor) => axum::serve(tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(ServeError::Run),
            None => axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(ServeError::Run),
        }
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

/// HTTPS: rustls behind axum's listener interface.
mod tls {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use pki_types::pem::PemObject;
    use pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{Semaphore, mpsc};
    use tokio_rustls::TlsAcceptor;
    use tokio_rustls::rustls;
    use tokio_rustls::server::TlsStream;

    use super::{ServeError, TlsFiles};

    /// A client gets this long to finish its handshake.
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Handshakes in progress at most; further connections wait to be accepted.
    const MAX_HANDSHAKES: usize = 256;

    /// Reads the PEM files and builds the acceptor (TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
    pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| ServeError::Tls(format!("{}: {e}", files.cert.display())))?;
        if certs.is_empty() {
            return Err(ServeError::Tls(format!(
                "{}: no certificate found",
                files.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
            ServeError::Tls(format!(
                "{}: no usable private key (PEM PKCS#8, PKCS#1 or SEC1 expected): {e}",
                files.key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServeError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ServeError::Tls(format!("certificate and key: {e}")))?;
        // WebSockets need HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Accepts TCP connections and runs each handshake in its own task, so that a slow or
    /// silent client holds up nobody else; finished handshakes are handed to axum.
    pub struct TlsListener {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: std::io::Result<SocketAddr>,
    }

    impl TlsListener {
        pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
            let local = tcp.local_addr();
            let (tx, ready) = mpsc::channel(64);
            let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            tokio::spawn(async move {
                loop {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (stream, peer) = match tcp.accept().await {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors and the like: wait rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                        drop(permit);
                        match handshake {
                            Ok(Ok(tls)) => {
                                let _ = tx.send((tls, peer)).await;
                            }
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    });
                }
            });
            TlsListener { ready, local }
        }
    }

    impl axum::serve::Listener for TlsListener {
        type Io = TlsStream<TcpStream>;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (Self::Io, Self::Addr) {
            match self.ready.recv().await {
                Some(x) => x,
                // The accepting task only ends with the runtime.
                None => std::future::pending().await,
            }
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            match &self.local {
                Ok(a) => Ok(*a),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            }
        }
    }
}
