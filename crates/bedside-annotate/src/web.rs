//! The browser interface: the files of the `web/annotate` build (Cornerstone3D, Vite), embedded
//! in the binary at compile time from `web-dist/` (see `build.rs`), served at `/` with no Node
//! at run time.
//!
//! - `GET /` and any path that is not a file answer `index.html` (the single-page application
//!   routes itself), except under `/api` and `/dicomweb`, which keep their own 404s.
//! - Files under `assets/` carry a content hash in their names and are cached for a year;
//!   everything else is revalidated.
//! - `SOURCE-HASH` records the SHA-256 of the sources the bundle was built from, so a test can
//!   tell a stale committed bundle.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct File {
    /// Path relative to the root, no leading slash (`index.html`, `assets/…`).
    pub path: &'static str,
    /// The bytes.
    pub bytes: &'static [u8],
    /// A gzip copy, when compression pays.
    pub gzip: Option<&'static [u8]>,
}

/// The embedded files, sorted by path.
pub fn files() -> impl Iterator<Item = File> {
    embedded::FILES
        .iter()
        .map(|&(path, bytes, gzip)| File { path, bytes, gzip })
}

/// The embedded file at `path` (relative, no leading slash).
pub fn file(path: &str) -> Option<File> {
    let all = embedded::FILES;
    all.binary_search_by(|(p, _, _)| (*p).cmp(path))
        .ok()
        .map(|i| File {
            path: all[i].0,
            bytes: all[i].1,
            gzip: all[i].2,
        })
}

/// The media type of a file name.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn respond(f: File, method: &Method, headers: &HeaderMap) -> Response {
    let path = f.path;
    let (bytes, gzip) = match f.gzip {
        Some(gz) if accepts_gzip(headers) => (gz, true),
        _ => (f.bytes, false),
    };
    let mut r = if *method == Method::HEAD {
        StatusCode::OK.into_response()
    } else {
        bytes.into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    if *method == Method::HEAD {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    if f.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if path.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if path == "index.html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    r
}

/// The fallback handler of the application: an embedded file, or `index.html` for the
/// application's own routes.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if under(path, "/api") || under(path, crate::server::DICOMWEB_PREFIX) {
        return crate::auth::error(StatusCode::NOT_FOUND, "no such endpoint");
    }
    if method != Method::GET && method != Method::HEAD {
        return crate::auth::error(StatusCode::METHOD_NOT_ALLOWED, "the interface is read-only");
    }
    let rel = path.trim_start_matches('/');
    if !rel.is_empty()
        && let Some(f) = file(rel)
    {
        return respond(f, &method, &headers);
    }
    // A missing hashed asset is a real 404 (an old page asking for a replaced bundle), not
    // the application.
    if rel.starts_with("assets/") {
        return crate::auth::error(StatusCode::NOT_FOUND, "no such file");
    }
    match file("index.html") {
        Some(f) => respond(f, &method, &headers),
        None => (
            StatusCode::NOT_FOUND,
            "the web interface is not built into this binary (run scripts/build-web.sh)",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_sorted_and_typed() {
        let paths: Vec<&str> = files().map(|f| f.path).collect();
        assert!(paths.windows(2).all(|w| w[0] < w[1]));
        for f in files() {
            if let Some(gz) = f.gzip {
                let mut raw = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut raw)
                    .expect("embedded gzip copies decompress");
                assert_eq!(raw, f.bytes, "{}", f.path);
            }
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.5"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
        assert_eq!(content_type("assets/x-1a2b.wasm"), "application/wasm");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/a.JS"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert!(under("/api", "/api") && under("/api/x", "/api"));
        assert!(!under("/apix", "/api"));
    }
}
