//! The annotation REST API under `/api` (JSON in and out).
//!
//! | method and path                                              | who                          |
//! |--------------------------------------------------------------|------------------------------|
//! | `POST /api/login` `{username, password}`, `POST /api/logout` | anyone / signed in           |
//! | `GET /api/me`                                                | signed in                    |
//! | `GET /api/projects`, `POST /api/projects` `{name, blinded, schema}` | signed in / superuser  |
//! | `GET /api/projects/{P}`, `PATCH` `{blinded?, schema?}`       | member / admin               |
//! | `GET /api/projects/{P}/members`, `PUT`/`DELETE …/members/{user}` `{role}` | admin           |
//! | `GET /api/projects/{P}/studies`, `POST` `{study_instance_uid}` | member / admin             |
//! | `PUT`/`DELETE …/studies/{S}/assignees/{user}`                | admin                        |
//! | `GET …/studies/{S}/annotations`, `POST` (create)             | member / admin, annotator    |
//! | `PUT …/annotations/{id}` `{version, payload}`, `DELETE ?version=` | admin, annotator (own)  |
//! | `GET …/annotations/{id}/mask` (zlib-free bytes, row-major)   | member who sees it           |
//! | `GET …/studies/{S}/ws` (WebSocket, [`crate::collab`])         | member                       |
//! | `GET /api/projects/{P}/audit`                                | admin                        |
//! | `GET /api/projects/{P}/export?format=json|csv|sr|seg|masks[&study=S]` ([`crate::export`]) | admin, reviewer |
//!
//! Unauthenticated requests get 401, requests the caller's role does not allow 403, a stale
//! version 409 with the current state.

// Handlers answer refusals as ready responses (`Result<Response, Response>`), as axum's own
// rejections do; boxing them would only move the allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{SessionToken, error, session_cookies};
use crate::collab::{self, Hub};
use crate::db::{AnnotateDb, DbError, Op, Principal, Project};
use crate::model::Role;

/// Session settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Session lifetime in seconds.
    pub session_ttl_secs: i64,
    /// Mark cookies `Secure` (the server is reached over HTTPS).
    pub secure_cookies: bool,
    /// Failed sign-ins an account may have in a row before it is throttled.
    pub login_free_failures: u32,
    /// The first wait once throttled, in milliseconds; it doubles with every further failure.
    pub login_base_delay_ms: u64,
    /// The longest wait, in milliseconds.
    pub login_max_delay_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 12 * 3600,
            secure_cookies: false,
            login_free_failures: 5,
            login_base_delay_ms: 1_000,
            login_max_delay_ms: 15 * 60 * 1_000,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    /// Accounts, projects and annotations.
    pub db: Arc<AnnotateDb>,
    /// The stored DICOM (read by the SR and SEG exports).
    pub store: Arc<dyn bedside_dicomweb::StudyStore>,
    /// WebSocket rooms.
    pub hub: Hub,
    /// Session settings.
    pub auth: AuthConfig,
    /// Failed sign-ins per account name.
    pub logins: crate::auth::LoginThrottle,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db)
            .field("hub", &self.hub)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

type Who = Option<Extension<Principal>>;

fn who(w: Who) -> Result<Principal, Response> {
    w.map(|Extension(p)| p)
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "sign in first (POST /api/login)"))
}

fn db_error(e: DbError) -> Response {
    match e {
        DbError::NotFound(m) => error(StatusCode::NOT_FOUND, format!("not found: {m}")),
        DbError::Invalid(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
        DbError::Forbidden(m) => error(StatusCode::FORBIDDEN, m),
        DbError::Exists(m) => error(StatusCode::CONFLICT, format!("already exists: {m}")),
        other => {
            tracing::error!(error = %other, "request failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the request failed")
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DbError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(db_error),
        Err(_) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed",
        )),
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("unreadable JSON body: {e}"),
        )
    })
}

type Res = Result<Response, Response>;

fn ok(v: Value) -> Res {
    Ok(axum::Json(v).into_response())
}

/// The caller's project and role: 404 when the project does not exist, 403 when the caller
/// is not a member.
async fn access(
    st: &Arc<AppState>,
    w: &Principal,
    project: i64,
) -> Result<(Project, Role), Response> {
    let db = st.db.clone();
    let p = w.clone();
    let (proj, role) = blocking(move || Ok((db.project(project)?, db.role(&p, project)?))).await?;
    let proj = proj.ok_or_else(|| error(StatusCode::NOT_FOUND, "no such project"))?;
    let role = role.ok_or_else(|| {
        error(
            StatusCode::FORBIDDEN,
            "you are not a member of this project",
        )
    })?;
    Ok((proj, role))
}

fn require(role: Role, allowed: &[Role]) -> Result<(), Response> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            format!("a {} may not do this", role.as_str()),
        ))
    }
}

async fn open_study(
    st: &Arc<AppState>,
    w: &Principal,
    project: i64,
    study: &str,
) -> Result<(Project, Role), Response> {
    let (proj, role) = access(st, w, project).await?;
    let db = st.db.clone();
    let (p, s) = (w.clone(), study.to_string());
    if !blocking(move || db.can_open(&p, role, project, &s)).await? {
        return Err(error(
            StatusCode::FORBIDDEN,
            "this study is not open to you in this project",
        ));
    }
    Ok((proj, role))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

async fn login(State(st): State<Arc<AppState>>, bytes: Bytes) -> Res {
    let l: Login = body(&bytes)?;
    let account = l.username.clone();
    // A throttled account is refused before its password is checked, so guessing costs
    // the server no hashing either.
    if let Some(wait) = st.logins.wait(&account) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed sign-ins for this account; try again in {secs} s"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(r);
    }
    let db = st.db.clone();
    let ttl = st.auth.session_ttl_secs;
    let found = blocking(move || db.login(&l.username, &l.password, ttl)).await?;
    let Some((p, token)) = found else {
        st.logins.failed(&account, &st.auth);
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password",
        ));
    };
    st.logins.succeeded(&account);
    let mut r = axum::Json(json!({
        "username": p.username, "superuser": p.superuser, "csrf_token": p.csrf, "expires_in": ttl,
    }))
    .into_response();
    for c in session_cookies(&token, &p.csrf, ttl, st.auth.secure_cookies) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

async fn logout(
    State(st): State<Arc<AppState>>,
    w: Who,
    token: Option<Extension<SessionToken>>,
) -> Res {
    let p = who(w)?;
    if let Some(Extension(SessionToken(t))) = token {
        let db = st.db.clone();
        blocking(move || db.logout(&t, &p)).await?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    for c in session_cookies("", "", 0, st.auth.secure_cookies) {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(r)
}

async fn me(State(st): State<Arc<AppState>>, w: Who) -> Res {
    let p = who(w)?;
    let db = st.db.clone();
    let q = p.clone();
    let projects = blocking(move || db.projects(&q)).await?;
    ok(json!({
        "username": p.username, "superuser": p.superuser,
        "projects": projects.iter().map(|(pr, r)| json!({"id": pr.id, "name": pr.name, "role": r})).collect::<Vec<_>>(),
    }))
}

async fn list_projects(State(st): State<Arc<AppState>>, w: Who) -> Res {
    let p = who(w)?;
    let db = st.db.clone();
    let projects = blocking(move || db.projects(&p)).await?;
    ok(Value::Array(
        projects
            .into_iter()
            .map(|(pr, r)| json!({"id": pr.id, "name": pr.name, "blinded": pr.blinded, "schema": pr.schema, "role": r}))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    blinded: bool,
    #[serde(default)]
    schema: Value,
}

async fn create_project(State(st): State<Arc<AppState>>, w: Who, bytes: Bytes) -> Res {
    let p = who(w)?;
    if !p.superuser {
        return Err(error(
            StatusCode::FORBIDDEN,
            "only superusers create projects",
        ));
    }
    let n: NewProject = body(&bytes)?;
    let schema = if n.schema.is_null() {
        json!({})
    } else {
        n.schema
    };
    let db = st.db.clone();
    let proj = blocking(move || db.create_project(&p, &n.name, n.blinded, &schema)).await?;
    Ok((StatusCode::CREATED, axum::Json(json!(proj))).into_response())
}

async fn get_project(State(st): State<Arc<AppState>>, w: Who, Path(pid): Path<i64>) -> Res {
    let p = who(w)?;
    let (proj, role) = access(&st, &p, pid).await?;
    ok(
        json!({"id": proj.id, "name": proj.name, "blinded": proj.blinded, "schema": proj.schema, "role": role}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchProject {
    #[serde(default)]
    blinded: Option<bool>,
    #[serde(default)]
    schema: Option<Value>,
}

async fn patch_project(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path(pid): Path<i64>,
    bytes: Bytes,
) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let b: PatchProject = body(&bytes)?;
    let db = st.db.clone();
    let proj = blocking(move || db.update_project(&p, pid, b.blinded, b.schema.as_ref())).await?;
    ok(json!(proj))
}

async fn members(State(st): State<Arc<AppState>>, w: Who, Path(pid): Path<i64>) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let db = st.db.clone();
    let m = blocking(move || db.members(pid)).await?;
    ok(Value::Array(
        m.into_iter()
            .map(|(u, r)| json!({"username": u, "role": r}))
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRole {
    role: Role,
}

async fn set_member(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, user)): Path<(i64, String)>,
    bytes: Bytes,
) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let b: SetRole = body(&bytes)?;
    let db = st.db.clone();
    blocking(move || db.set_member(&p, pid, &user, Some(b.role))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_member(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, user)): Path<(i64, String)>,
) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let db = st.db.clone();
    blocking(move || db.set_member(&p, pid, &user, None)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_studies(State(st): State<Arc<AppState>>, w: Who, Path(pid): Path<i64>) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    let db = st.db.clone();
    let s = blocking(move || db.studies(&p, pid, role)).await?;
    ok(json!(s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddStudy {
    study_instance_uid: String,
}

async fn add_study(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path(pid): Path<i64>,
    bytes: Bytes,
) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let b: AddStudy = body(&bytes)?;
    let db = st.db.clone();
    blocking(move || db.add_study(&p, pid, &b.study_instance_uid)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn assign(
    st: Arc<AppState>,
    w: Who,
    (pid, study, user): (i64, String, String),
    on: bool,
) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let db = st.db.clone();
    blocking(move || db.assign(&p, pid, &study, &user, on)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn put_assignee(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path(k): Path<(i64, String, String)>,
) -> Res {
    assign(st, w, k, true).await
}

async fn delete_assignee(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path(k): Path<(i64, String, String)>,
) -> Res {
    assign(st, w, k, false).await
}

async fn list_annotations(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, study)): Path<(i64, String)>,
) -> Res {
    let p = who(w)?;
    let (proj, role) = open_study(&st, &p, pid, &study).await?;
    let db = st.db.clone();
    let (seq, list) = blocking(move || db.annotations(&p, role, &proj, &study)).await?;
    ok(json!({"seq": seq, "annotations": list}))
}

async fn apply(
    st: &Arc<AppState>,
    p: Principal,
    pid: i64,
    study: String,
    op: Op,
    created: bool,
) -> Res {
    let s = st.clone();
    let res = tokio::task::spawn_blocking(move || {
        let hub = &s.hub;
        s.db.apply(&p, pid, &study, op, |a| hub.publish(a))
    })
    .await
    .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "the request failed"))?;
    match res {
        Ok(applied) => {
            let status = if created && applied.changed {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((
                status,
                axum::Json(json!({"op": applied.op, "annotation": applied.annotation})),
            )
                .into_response())
        }
        Err(e) => {
            let (status, code, message, current) = collab::refusal(&e);
            Err((
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"error": message, "code": code, "current": current})),
            )
                .into_response())
        }
    }
}

async fn create_annotation(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, study)): Path<(i64, String)>,
    bytes: Bytes,
) -> Res {
    let p = who(w)?;
    let (_, role) = open_study(&st, &p, pid, &study).await?;
    require(role, &[Role::Admin, Role::Annotator])?;
    let v: Value = body(&bytes)?;
    let op = collab::create_op(v).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    apply(&st, p, pid, study, op, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    version: i64,
    payload: Value,
}

async fn update_annotation(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, study, id)): Path<(i64, String, String)>,
    bytes: Bytes,
) -> Res {
    let p = who(w)?;
    let (_, role) = open_study(&st, &p, pid, &study).await?;
    require(role, &[Role::Admin, Role::Annotator])?;
    let u: Update = body(&bytes)?;
    apply(
        &st,
        p,
        pid,
        study,
        Op::Update {
            id,
            version: u.version,
            payload: u.payload,
        },
        false,
    )
    .await
}

#[derive(Deserialize)]
struct VersionQuery {
    version: i64,
}

async fn delete_annotation(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, study, id)): Path<(i64, String, String)>,
    q: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Res {
    let p = who(w)?;
    let (_, role) = open_study(&st, &p, pid, &study).await?;
    require(role, &[Role::Admin, Role::Annotator])?;
    let Query(q) = q.map_err(|_| error(StatusCode::BAD_REQUEST, "give ?version=N"))?;
    apply(
        &st,
        p,
        pid,
        study,
        Op::Delete {
            id,
            version: q.version,
        },
        false,
    )
    .await
}

async fn get_mask(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, study, id)): Path<(i64, String, String)>,
) -> Res {
    let p = who(w)?;
    let (proj, role) = open_study(&st, &p, pid, &study).await?;
    let db = st.db.clone();
    let (a, z) = blocking(move || db.annotation_mask(&p, role, &proj, &id)).await?;
    if a.study_instance_uid != study {
        return Err(error(StatusCode::NOT_FOUND, "not found: annotation"));
    }
    let raw = crate::model::inflate(&z).map_err(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored mask is unreadable",
        )
    })?;
    let mut r = raw.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (k, key) in [("rows", "x-mask-rows"), ("columns", "x-mask-columns")] {
        if let Some(v) = a.payload.get(k).and_then(Value::as_u64)
            && let Ok(v) = HeaderValue::from_str(&v.to_string())
        {
            h.insert(key, v);
        }
    }
    Ok(r)
}

async fn ws(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path((pid, study)): Path<(i64, String)>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Res {
    let p = who(w)?;
    let (proj, role) = open_study(&st, &p, pid, &study).await?;
    // Cookies ride along on cross-site WebSocket handshakes only when SameSite allows; the
    // Origin check closes the door for browsers that do not honour it.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if origin_host != host {
            return Err(error(
                StatusCode::FORBIDDEN,
                "cross-origin WebSocket refused",
            ));
        }
    }
    let upgrade = upgrade.map_err(IntoResponse::into_response)?;
    Ok(upgrade
        .max_message_size(64 << 20)
        .on_upgrade(move |socket| collab::run(socket, st, p, role, proj, study)))
}

async fn audit(State(st): State<Arc<AppState>>, w: Who, Path(pid): Path<i64>) -> Res {
    let p = who(w)?;
    let (_, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin])?;
    let db = st.db.clone();
    let rows = blocking(move || db.audit(pid, 10_000)).await?;
    ok(Value::Array(rows))
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    study: Option<String>,
}

async fn export(
    State(st): State<Arc<AppState>>,
    w: Who,
    Path(pid): Path<i64>,
    headers: HeaderMap,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Res {
    use crate::export::{Format, Packing};
    use crate::export_dicom::ExportError;
    let p = who(w)?;
    let (proj, role) = access(&st, &p, pid).await?;
    require(role, &[Role::Admin, Role::Reviewer])?;
    let q = q.map(|Query(q)| q).unwrap_or(ExportQuery {
        format: None,
        study: None,
    });
    let name = q.format.unwrap_or_else(|| "json".into());
    let format = Format::parse(&name).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("format is {}", Format::NAMES),
        )
    })?;
    // SR and SEG as multipart/related when the client asks for it (and not also for a zip).
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let packing = if accept.contains("multipart/related") && !accept.contains("application/zip") {
        if !matches!(format, Format::Sr | Format::Seg) {
            return Err(error(
                StatusCode::NOT_ACCEPTABLE,
                "only the sr and seg exports come as multipart/related",
            ));
        }
        Packing::Multipart
    } else {
        Packing::Zip
    };
    let (db, store) = (st.db.clone(), st.store.clone());
    let project_id = proj.id;
    let rendered = tokio::task::spawn_blocking(move || {
        crate::export::render(
            &db,
            store.as_ref(),
            &p,
            role,
            &proj,
            format,
            q.study.as_deref(),
            packing,
        )
    })
    .await
    .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "export failed"))?
    .map_err(|e| match e {
        ExportError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        ExportError::Db(e) => db_error(e),
        e @ ExportError::Source { .. } => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => {
            tracing::error!(error = %e, "export failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "export failed")
        }
    })?;
    let mut r = rendered.body.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&rendered.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if format != Format::Json && format != Format::Csv {
        let file = format!("attachment; filename=\"{project_id}-{name}.zip\"");
        if packing == Packing::Zip
            && let Ok(v) = HeaderValue::from_str(&file)
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    for why in rendered.skipped.iter().take(20) {
        let text: String = why
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                c if c.is_ascii_graphic() || c == ' ' => c,
                _ => '?',
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("299 bedside \"{text}\"")) {
            h.append(header::WARNING, v);
        }
    }
    Ok(r)
}

async fn api_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The `/api` routes (nest under `/api`).
pub fn router(state: Arc<AppState>) -> Router {
    let study = "/projects/{project}/studies/{study}";
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/projects", get(list_projects).post(create_project))
        .route("/projects/{project}", get(get_project).patch(patch_project))
        .route("/projects/{project}/members", get(members))
        .route(
            "/projects/{project}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route(
            "/projects/{project}/studies",
            get(list_studies).post(add_study),
        )
        .route(
            &format!("{study}/assignees/{{user}}"),
            put(put_assignee).delete(delete_assignee),
        )
        .route(
            &format!("{study}/annotations"),
            get(list_annotations).post(create_annotation),
        )
        .route(
            &format!("{study}/annotations/{{id}}"),
            put(update_annotation).delete(delete_annotation),
        )
        .route(&format!("{study}/annotations/{{id}}/mask"), get(get_mask))
        .route(&format!("{study}/ws"), get(ws))
        .route("/projects/{project}/audit", get(audit))
        .route("/projects/{project}/export", get(export))
        .fallback(api_not_found)
        .with_state(state)
}
