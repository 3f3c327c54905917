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
//! - Sign-in throttling ([`LoginThrottle`]): after `login_free_failures` failed sign-ins in a
//!   row, an account answers 429 with `Retry-After` for a wait that doubles with every further
//!   failure (1 s, 2 s, 4 s, … up to 15 min by default), without checking the password. A
//!   successful sign-in clears the count.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::AppState;
pub use crate::db::Principal;

/// Accounts this many at most are tracked; beyond it the oldest entries are dropped, so
/// guessing many names cannot grow the table without bound.
const THROTTLE_CAPACITY: usize = 10_000;

/// Failed sign-ins per account name (as typed, case-folded), kept in memory.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    accounts: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl LoginThrottle {
    fn key(account: &str) -> String {
        account.trim().to_lowercase()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // A panic while holding the lock leaves counts that are still meaningful.
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `account` must still wait before a sign-in is checked, if at all.
    pub fn wait(&self, account: &str) -> Option<Duration> {
        let until = self.table().get(&Self::key(account))?.blocked_until?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a failed sign-in and, past the free failures, starts a wait.
    pub fn failed(&self, account: &str, policy: &crate::api::AuthConfig) {
        let now = Instant::now();
        let mut table = self.table();
        if table.len() >= THROTTLE_CAPACITY && !table.contains_key(&Self::key(account)) {
            let oldest = table
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                table.remove(&k);
            }
        }
        let f = table.entry(Self::key(account)).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
        if f.count >= policy.login_free_failures.max(1) {
            let doublings = (f.count - policy.login_free_failures.max(1)).min(32);
            let delay = policy
                .login_base_delay_ms
                .saturating_mul(1u64 << doublings)
                .min(policy.login_max_delay_ms);
            f.blocked_until = Some(now + Duration::from_millis(delay));
        }
    }

    /// Clears the count of an account that signed in.
    pub fn succeeded(&self, account: &str) {
        self.table().remove(&Self::key(account));
    }
}

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
