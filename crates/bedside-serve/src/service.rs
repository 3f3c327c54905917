//! The running service: the DICOM listener, the HTTP listener (STOW-RS and the rest of
//! DICOMweb under `/dicomweb`, REST under `/api/v1`, `/healthz`, `/metrics`) and the worker
//! that takes queued instances one at a time through QC, inference and the report.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bedside_ml::bundle::Bundle;
use burn::tensor::Device;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::ServeConfig;
use crate::explanation;
use crate::metrics;
use crate::pipeline::{self, Header, since};
use crate::report::{self, ModelInfo, Outcome, Status};
use crate::store::{Intake, QueueError, Source, Store};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] QueueError),
    /// A route names a bundle that was not given, or a bundle cannot be served.
    #[error("{0}")]
    Bundle(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// A loaded bundle with its identity.
pub struct Model {
    /// The bundle.
    pub bundle: Bundle,
    /// Name, version, task and intended use.
    pub info: ModelInfo,
}

impl Model {
    /// Wraps a loaded bundle; `manifest_bytes` is its `bundle.json` (digested into the
    /// version). Bundles with tabular inputs cannot be served: DICOM carries no covariates.
    pub fn new(bundle: Bundle, manifest_bytes: &[u8]) -> Result<Self, ServeError> {
        if !bundle.manifest.model.tabular.is_empty() {
            return Err(ServeError::Bundle(format!(
                "bundle `{}` needs tabular covariates, which DICOM instances do not carry",
                bundle.manifest.name
            )));
        }
        let digest = format!("{:x}", Sha256::digest(manifest_bytes));
        let info = ModelInfo {
            name: bundle.manifest.name.clone(),
            version: format!("{} bundle {}", bundle.manifest.created_with, &digest[..12]),
            task: bundle.manifest.task.clone(),
            intended_use: bundle.manifest.intended_use.clone(),
        };
        Ok(Self { bundle, info })
    }
}

/// Handles of a running service.
pub struct Running {
    /// Bound DICOM address.
    pub dicom_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// The store.
    pub store: Arc<Store>,
    stop: Arc<AtomicBool>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Asks every part to stop and waits for them (the worker finishes its current instance).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.store.notify();
        if let Some(tx) = self.http_stop.take() {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Blocks until SIGINT or SIGTERM, then stops.
    pub fn run_until_signal(self) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            tokio::signal::ctrl_c().await?;
            Ok::<(), std::io::Error>(())
        })?;
        tracing::info!("stopping");
        self.stop();
        Ok(())
    }
}

/// Starts the service with `models` (looked up by name from the routes) on `device`.
pub fn start(
    config: ServeConfig,
    models: Vec<Model>,
    device: Device,
) -> Result<Running, ServeError> {
    for (i, r) in config.route.iter().enumerate() {
        if !models.iter().any(|m| m.info.name == r.bundle) {
            let names: Vec<&str> = models.iter().map(|m| m.info.name.as_str()).collect();
            return Err(ServeError::Bundle(format!(
                "route[{i}].bundle `{}` is not among the bundles given ({})",
                r.bundle,
                names.join(", ")
            )));
        }
    }
    if config.allowed_calling_aes.is_empty() {
        tracing::warn!("allowed_calling_aes is empty: any calling AE title is accepted");
    }
    let config = Arc::new(config);
    let store = Arc::new(Store::open(&config.data_dir)?);
    let bind = |address: &str| {
        TcpListener::bind(address).map_err(|source| ServeError::Bind {
            address: address.to_string(),
            source,
        })
    };
    let dicom = bind(&config.listen.dicom)?;
    let http = bind(&config.listen.http)?;
    let dicom_addr = dicom.local_addr().map_err(ServeError::Thread)?;
    let http_addr = http.local_addr().map_err(ServeError::Thread)?;
    http.set_nonblocking(true).map_err(ServeError::Thread)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    {
        let (config, store, stop) = (Arc::clone(&config), Arc::clone(&store), Arc::clone(&stop));
        threads.push(
            std::thread::Builder::new()
                .name("dimse-listener".into())
                .spawn(move || crate::dimse::serve(dicom, config, store, stop))
                .map_err(ServeError::Thread)?,
        );
    }
    {
        let (config, store, stop) = (Arc::clone(&config), Arc::clone(&store), Arc::clone(&stop));
        threads.push(
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || worker(&config, &store, &models, &device, &stop))
                .map_err(ServeError::Thread)?,
        );
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    {
        let app = app(Arc::clone(&config), Arc::clone(&store));
        threads.push(
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start the HTTP runtime");
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let listener = match tokio::net::TcpListener::from_std(http) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot listen for HTTP");
                                return;
                            }
                        };
                        let served = axum::serve(listener, app)
                            .with_graceful_shutdown(async move {
                                let _ = rx.await;
                            })
                            .await;
                        if let Err(e) = served {
                            tracing::error!(error = %e, "HTTP server failed");
                        }
                    });
                })
                .map_err(ServeError::Thread)?,
        );
    }
    tracing::info!(dicom = %dicom_addr, http = %http_addr, ae_title = %config.ae_title, "serving");
    Ok(Running {
        dicom_addr,
        http_addr,
        store,
        stop,
        http_stop: Some(tx),
        threads,
    })
}

fn worker(
    config: &ServeConfig,
    store: &Store,
    models: &[Model],
    device: &Device,
    stop: &AtomicBool,
) {
    let mut seen = 0;
    let mut send_failures: HashMap<String, u32> = HashMap::new();
    let poll = Duration::from_millis(config.worker.poll_ms);
    while !stop.load(Ordering::Relaxed) {
        match store.next_pending() {
            Ok(Some(uid)) => {
                let report = process(config, store, models, device, &uid);
                if let (Some(dest), Some(report_uid)) = (&config.destination, report) {
                    deliver(config, store, dest, &uid, &report_uid, &mut send_failures);
                }
            }
            Ok(None) => {
                if let Some(dest) = &config.destination {
                    match store.unsent() {
                        Ok(list) => {
                            for (uid, report_uid) in list {
                                if stop.load(Ordering::Relaxed) {
                                    break;
                                }
                                if send_failures.get(&uid).copied().unwrap_or(0)
                                    < config.worker.send_attempts
                                {
                                    deliver(
                                        config,
                                        store,
                                        dest,
                                        &uid,
                                        &report_uid,
                                        &mut send_failures,
                                    );
                                }
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot list undelivered reports"),
                    }
                }
                store.wait(&mut seen, poll);
            }
            Err(e) => {
                tracing::error!(error = %e, "queue unavailable");
                std::thread::sleep(poll);
            }
        }
    }
}

fn deliver(
    config: &ServeConfig,
    store: &Store,
    dest: &crate::config::Destination,
    uid: &str,
    report_uid: &str,
    failures: &mut HashMap<String, u32>,
) {
    let started = Instant::now();
    // The explanation secondary capture, when one was made, travels with its report.
    let explanation = std::fs::read(store.object_path(&explanation::explanation_uid(report_uid)));
    let sent = std::fs::read(store.object_path(report_uid))
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let mut files = vec![bytes];
            files.extend(explanation.ok());
            crate::dimse::send(dest, &config.ae_title, &files).map_err(|e| e.to_string())
        });
    match sent {
        Ok(()) => {
            metrics::global().observe("send", since(started));
            metrics::global().sent(true);
            if let Err(e) = store.mark_sent(uid) {
                tracing::error!(error = %e, "cannot record a delivery");
            }
        }
        Err(e) => {
            metrics::global().sent(false);
            *failures.entry(uid.to_string()).or_default() += 1;
            tracing::warn!(error = %e, "report delivery failed; retried later");
        }
    }
}

/// Encodes an object the service made (report or explanation) and keeps it in the store.
fn keep_result(store: &Store, obj: dicom_object::InMemDicomObject) -> Result<Intake, String> {
    let bytes = bedside_dicom::write::encode_file(obj, bedside_dicom::ts::EXPLICIT_VR_LE)
        .map_err(|e| e.to_string())?;
    let parsed = bedside_dicom::read::read_bytes(&bytes).map_err(|e| e.to_string())?;
    store
        .put(&bytes, &parsed, Source::Report)
        .map_err(|e| e.to_string())
}

/// Processes one queued instance and returns the report UID (None when no report was made).
fn process(
    config: &ServeConfig,
    store: &Store,
    models: &[Model],
    device: &Device,
    uid: &str,
) -> Option<String> {
    let started = Instant::now();
    let fail = |message: &str| {
        metrics::global().processed("failed");
        let result =
            json!({"sop_instance_uid": uid, "status": "failed", "error": message}).to_string();
        if let Err(e) = store.finish(uid, "failed", &result, None) {
            tracing::error!(error = %e, "cannot record a failure");
        }
        None
    };
    let received_at = store
        .entry(uid)
        .ok()
        .flatten()
        .map_or(0.0, |e| e.received_at);
    let bytes = match std::fs::read(store.object_path(uid)) {
        Ok(b) => b,
        Err(_) => return fail("stored file is missing"),
    };
    let obj = match bedside_dicom::read::read_bytes(&bytes) {
        Ok(o) => o,
        Err(_) => return fail("stored file cannot be parsed"),
    };
    drop(bytes);
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut outcome = Outcome {
        sop_instance_uid: uid.to_string(),
        study_instance_uid: obj
            .element_opt(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default(),
        status: Status::Rejected,
        model: None,
        qc: Vec::new(),
        gate: None,
        prediction: None,
        value_unit: "1".into(),
        report_sop_instance_uid: None,
        explanation_sop_instance_uid: None,
        timings_s: Vec::new(),
    };
    let mut explained: Option<dicom_object::InMemDicomObject> = None;
    let t = Instant::now();
    let routed = pipeline::route(&config.route, &obj);
    let model_and_route = routed.as_ref().ok().and_then(|r| {
        models
            .iter()
            .find(|m| m.info.name == r.bundle)
            .map(|m| (m, *r))
    });
    match (&routed, model_and_route) {
        (Err(f), _) => outcome.qc.push(f.clone()),
        (Ok(_), None) => return fail("routed bundle is not loaded"),
        (Ok(_), Some((model, route))) => {
            outcome.model = Some(model.info.clone());
            outcome.value_unit = route.value_unit.clone();
            let header = Header::read(&obj);
            outcome.qc = pipeline::check_header(&header, &route.qc, &model.bundle);
            timings.push(("qc".into(), since(t)));
            if outcome.qc.is_empty() {
                let t = Instant::now();
                let video = pipeline::decode(&obj, model.bundle.manifest.model.input.resized_copy);
                timings.push(("decode".into(), since(t)));
                match video {
                    Err(f) => outcome.qc.push(f),
                    Ok(video) => {
                        let t = Instant::now();
                        let prediction =
                            pipeline::infer(&model.bundle, &video, &config.worker, device);
                        timings.push(("inference".into(), since(t)));
                        match prediction {
                            Err(e) => return fail(&format!("inference failed: {e}")),
                            Ok(p) => {
                                let limits = pipeline::GateLimits::resolve(
                                    &route.qc,
                                    model.bundle.manifest.gate.as_ref(),
                                );
                                outcome.gate = pipeline::gate(&p, &limits);
                                outcome.status = if outcome.gate.is_some() {
                                    Status::Indeterminate
                                } else {
                                    Status::Result
                                };
                                outcome.prediction = Some(p);
                                if let (Status::Result, Some(settings)) =
                                    (outcome.status, &route.explain)
                                {
                                    let t = Instant::now();
                                    let request = explanation::Request {
                                        bundle: &model.bundle,
                                        model: &model.info,
                                        video: &video,
                                        source: &obj,
                                        fps: header.fps,
                                        report_uid: &report::report_uid(uid, &model.info.name),
                                        received_at,
                                    };
                                    match explanation::capture(
                                        &request,
                                        settings,
                                        &config.worker,
                                        device,
                                    ) {
                                        Ok(sc) => explained = Some(sc),
                                        Err(e) => {
                                            metrics::global().explained("failed");
                                            tracing::warn!(error = %e, "no explanation; the report goes without it");
                                        }
                                    }
                                    timings.push(("explain".into(), since(t)));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if timings.iter().all(|(k, _)| k.as_str() != "qc") {
        timings.push(("qc".into(), since(t)));
    }
    for f in &outcome.qc {
        metrics::global().rejected(f.reason.as_str());
    }
    if let Some(g) = &outcome.gate {
        metrics::global().rejected(g.reason.as_str());
    }
    let t = Instant::now();
    let model_name = outcome
        .model
        .as_ref()
        .map_or("none", |m| m.name.as_str())
        .to_string();
    let report_uid = report::report_uid(uid, &model_name);
    outcome.report_sop_instance_uid = Some(report_uid.clone());
    let sr = report::build(&outcome, &obj, received_at)
        .map_err(|e| e.to_string())
        .and_then(|sr| keep_result(store, sr));
    match sr {
        Ok(Intake::Stored(_) | Intake::AlreadyStored(_)) => {}
        Err(e) => return fail(&format!("report: {e}")),
    }
    if let Some(sc) = explained {
        match keep_result(store, sc) {
            Ok(_) => {
                metrics::global().explained("made");
                outcome.explanation_sop_instance_uid =
                    Some(explanation::explanation_uid(&report_uid));
            }
            Err(e) => {
                metrics::global().explained("failed");
                tracing::warn!(error = %e, "cannot store the explanation; the report goes without it");
            }
        }
    }
    timings.push(("report".into(), since(t)));
    timings.push(("total".into(), since(started)));
    for (stage, s) in &timings {
        metrics::global().observe(stage, *s);
    }
    outcome.timings_s = timings;
    let state = if outcome.status == Status::Rejected {
        "rejected"
    } else {
        "done"
    };
    metrics::global().processed(outcome.status.as_str());
    let result = serde_json::to_string(&outcome).unwrap_or_default();
    if let Err(e) = store.finish(uid, state, &result, Some(&report_uid)) {
        tracing::error!(error = %e, "cannot record a result");
        return None;
    }
    tracing::info!(status = outcome.status.as_str(), model = %model_name, seconds = since(started), "processed");
    Some(report_uid)
}

#[derive(Clone)]
struct AppState {
    store: Arc<Store>,
}

fn app(config: Arc<ServeConfig>, store: Arc<Store>) -> Router {
    let dicomweb = bedside_dicomweb::router(
        Arc::clone(&store) as Arc<dyn bedside_dicomweb::StudyStore>,
        bedside_dicomweb::DicomWebConfig {
            max_request_bytes: config.intake.max_instance_bytes,
            cache_bytes: 64 << 20,
            path_prefix: "/dicomweb".into(),
            ..bedside_dicomweb::DicomWebConfig::default()
        },
    );
    let state = AppState { store };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/instances", post(submit))
        .route("/api/v1/instances/{uid}", get(status_of))
        .route("/api/v1/instances/{uid}/result", get(result_of))
        .route("/api/v1/instances/{uid}/report", get(report_of))
        .route("/api/v1/instances/{uid}/explanation", get(explanation_of))
        .layer(DefaultBodyLimit::max(config.intake.max_instance_bytes))
        .with_state(state)
        .nest("/dicomweb", dicomweb)
}

fn problem(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(json!({"error": message}))).into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| problem(StatusCode::INTERNAL_SERVER_ERROR, "task failed"))
}

async fn healthz(State(s): State<AppState>) -> Response {
    match blocking(move || s.store.counts()).await {
        Ok(Ok(counts)) => {
            let queue: serde_json::Map<String, serde_json::Value> =
                counts.into_iter().map(|(k, v)| (k, json!(v))).collect();
            axum::Json(json!({"status": "ok", "queue": queue})).into_response()
        }
        Ok(Err(_)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue database unavailable",
        ),
        Err(r) => r,
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let counts = blocking(move || s.store.counts())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::global().render(&counts),
    )
        .into_response()
}

async fn submit(State(s): State<AppState>, body: Bytes) -> Response {
    let outcome = blocking(move || {
        metrics::global().received(Source::Rest);
        let obj = bedside_dicom::read::read_bytes(&body).map_err(|_| {
            metrics::global().rejected("unreadable");
            QueueError::Refused("the body is not a readable DICOM instance".into())
        })?;
        s.store.put(&body, &obj, Source::Rest)
    })
    .await;
    match outcome {
        Err(r) => r,
        Ok(Ok(Intake::Stored(l) | Intake::AlreadyStored(l))) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "sop_instance_uid": l.sop_instance_uid,
                "status": format!("/api/v1/instances/{}", l.sop_instance_uid),
                "result": format!("/api/v1/instances/{}/result", l.sop_instance_uid),
            })),
        )
            .into_response(),
        Ok(Err(QueueError::Conflict)) => problem(
            StatusCode::CONFLICT,
            "another instance with this SOP Instance UID is stored",
        ),
        Ok(Err(QueueError::Refused(m))) => problem(StatusCode::BAD_REQUEST, &m),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "REST submit failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
        }
    }
}

async fn entry(s: AppState, uid: String) -> Result<crate::store::Entry, Response> {
    if !bedside_dicom::uid::is_valid(&uid) {
        return Err(problem(StatusCode::BAD_REQUEST, "not a UID"));
    }
    match blocking(move || s.store.entry(&uid)).await? {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(problem(StatusCode::NOT_FOUND, "unknown instance")),
        Err(_) => Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue database unavailable",
        )),
    }
}

async fn status_of(State(s): State<AppState>, UrlPath(uid): UrlPath<String>) -> Response {
    match entry(s, uid).await {
        Ok(e) => axum::Json(json!({
            "sop_instance_uid": e.sop_instance_uid,
            "state": e.state,
            "source": e.source,
            "received_at": e.received_at,
            "report_sop_instance_uid": e.report_uid,
            "sent": e.sent,
            "processed_at": e.processed_at,
            "sent_at": e.sent_at,
        }))
        .into_response(),
        Err(r) => r,
    }
}

async fn result_of(State(s): State<AppState>, UrlPath(uid): UrlPath<String>) -> Response {
    match entry(s, uid).await {
        Ok(e) => match e.result {
            Some(r) => ([(header::CONTENT_TYPE, "application/json")], r).into_response(),
            None => (StatusCode::ACCEPTED, axum::Json(json!({"state": e.state}))).into_response(),
        },
        Err(r) => r,
    }
}

async fn report_of(State(s): State<AppState>, UrlPath(uid): UrlPath<String>) -> Response {
    let store = Arc::clone(&s.store);
    match entry(s, uid).await {
        Ok(e) => match e.report_uid {
            Some(r) => match blocking(move || std::fs::read(store.object_path(&r))).await {
                Ok(Ok(bytes)) => {
                    ([(header::CONTENT_TYPE, "application/dicom")], bytes).into_response()
                }
                Ok(Err(_)) => problem(StatusCode::NOT_FOUND, "report file missing"),
                Err(r) => r,
            },
            None => (StatusCode::ACCEPTED, axum::Json(json!({"state": e.state}))).into_response(),
        },
        Err(r) => r,
    }
}

async fn explanation_of(State(s): State<AppState>, UrlPath(uid): UrlPath<String>) -> Response {
    let store = Arc::clone(&s.store);
    match entry(s, uid).await {
        Ok(e) => match e.report_uid {
            Some(r) => {
                let path = store.object_path(&explanation::explanation_uid(&r));
                match blocking(move || std::fs::read(path)).await {
                    Ok(Ok(bytes)) => {
                        ([(header::CONTENT_TYPE, "application/dicom")], bytes).into_response()
                    }
                    Ok(Err(_)) => {
                        problem(StatusCode::NOT_FOUND, "no explanation for this instance")
                    }
                    Err(r) => r,
                }
            }
            None => (StatusCode::ACCEPTED, axum::Json(json!({"state": e.state}))).into_response(),
        },
        Err(r) => r,
    }
}
