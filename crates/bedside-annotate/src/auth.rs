//! Sessions and access control: the layer that turns a session cookie into a
//! [`Principal`], CSRF checks, and the guard in front of DICOMweb.
//!
//! - Logging in (`POST /api/login`) sets `bedside_session` (a random 256-bit token;
//!   `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when the server is reached over
//!   TLS) and `bedside_csrf` (readable by the page). Only the token's SHA-256 is stored, with
//!   an expiry.
//! - Every request that is not GET/HEAD/OPTIONS and carries a session must repeat the CSRF
//!   token in `X-CSRF-Token` (double submit, checked against the server-side copy).
//! - DICOMweb: reading needs any role in a project holding the study (annotators: assigned to
//!   it); search results are limited to those studies; STOW-RS needs the admin role.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::AppState;
pub use crate::db::Principal;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "bedside_session";
/// Name of the cookie holding the CSRF token.
pub const CSRF_COOKIE: &str = "bedside_csrf";
/// Header that must repeat the CSRF token on unsafe requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The raw session token of the request (for logout).
#[derive(Debug, Clone)]
pub struct SessionToken(pub String);

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// The value of a cookie.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Set-Cookie` values for a new session (or, with `max_age` 0, for clearing it).
pub fn session_cookies(token: &str, csrf: &str, max_age: i64, secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    let make = |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static(""));
    [
        make(format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        )),
        make(format!(
            "{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}{secure}"
        )),
    ]
}

/// Resolves the session cookie into a [`Principal`] request extension and enforces the CSRF
/// token on unsafe methods.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(token) = cookie(req.headers(), SESSION_COOKIE) {
        let db = state.db.clone();
        let t = token.clone();
        match tokio::task::spawn_blocking(move || db.session(&t)).await {
            Ok(Ok(Some(p))) => {
                req.extensions_mut().insert(p);
                req.extensions_mut().insert(SessionToken(token));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "session lookup failed");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "session lookup failed");
            }
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "session lookup failed"),
        }
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe
        && req.uri().path() != "/api/login"
        && let Some(p) = req.extensions().get::<Principal>()
    {
        let given = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !same(given, p.csrf.as_bytes()) {
            return error(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (send the bedside_csrf cookie's value in X-CSRF-Token)",
            );
        }
    }
    next.run(req).await
}

fn dicomweb_error(status: StatusCode, reason: &str) -> Response {
    bedside_dicomweb::ApiError::new(status, reason).into_response()
}

/// The guard in front of the DICOMweb router (paths relative to its mount point).
pub async fn dicomweb_guard(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(who) = req.extensions().get::<Principal>().cloned() else {
        return dicomweb_error(StatusCode::UNAUTHORIZED, "sign in first (POST /api/login)");
    };
    let db = state.db.clone();
    if *req.method() == Method::POST {
        let w = who.clone();
        let allowed = tokio::task::spawn_blocking(move || db.is_admin_anywhere(&w)).await;
        if !matches!(allowed, Ok(Ok(true))) {
            return dicomweb_error(
                StatusCode::FORBIDDEN,
                "storing instances needs the admin role",
            );
        }
        let response = next.run(req).await;
        let db = state.db.clone();
        let status = response.status().as_u16();
        let _ = tokio::task::spawn_blocking(move || {
            db.record(
                Some(&who),
                "dicomweb.store",
                "dicomweb",
                &json!({"status": status}),
            )
        })
        .await;
        return response;
    }
    let w = who.clone();
    let visible = match tokio::task::spawn_blocking(move || db.visible_studies(&w)).await {
        Ok(Ok(v)) => v,
        _ => return dicomweb_error(StatusCode::INTERNAL_SERVER_ERROR, "access check failed"),
    };
    let Some(visible) = visible else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["studies", study, ..] if !study.is_empty() => {
            // UIDs are digits and dots, so the raw segment is the UID; an escaped form of a
            // visible UID is refused, which errs on the safe side.
            if !visible.contains(*study) {
                return dicomweb_error(StatusCode::FORBIDDEN, "this study is not open to you");
            }
            next.run(req).await
        }
        ["studies"] | ["series"] | ["instances"] => {
            if visible.is_empty() {
                let mut r = (StatusCode::OK, "[]").into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/dicom+json"),
                );
                return r;
            }
            match restrict_query(req.uri(), &visible) {
                Some(uri) => {
                    *req.uri_mut() = uri;
                    next.run(req).await
                }
                None => dicomweb_error(StatusCode::BAD_REQUEST, "malformed query"),
            }
        }
        _ => next.run(req).await,
    }
}

/// Adds a Study Instance UID list match to a QIDO-RS query; matching keys are combined with
/// AND, so a caller's own StudyInstanceUID key still narrows within the visible studies.
fn restrict_query(uri: &Uri, visible: &HashSet<String>) -> Option<Uri> {
    let mut uids: Vec<&str> = visible.iter().map(String::as_str).collect();
    uids.sort_unstable();
    let list = uids.join("%5C");
    let query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{q}&0020000D={list}"),
        _ => format!("0020000D={list}"),
    };
    format!("{}?{query}", uri.path()).parse().ok()
}
