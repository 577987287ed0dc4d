//! The web UI (`ui/` at the repository root): plain ES modules, no build step, embedded in the
//! binary so `dials serve`, `dials up` and the query function serve it with nothing else installed.
//!
//! `/ui/<file>` is a static file; any other GET outside `/api/` is the single-page app's
//! `index.html` (its router reads the path, so `/runs/1/2` survives a reload). `/api/...` paths
//! that no route matched stay DIALS-shaped JSON 404s. `DIALS_UI_DIR=<dir>` serves the files from
//! disk instead, read at every request (edit, reload; no rebuild).

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file: `ui/<name>` with its content type.
macro_rules! embed {
    ($name:literal, $ctype:literal) => {
        (
            $name,
            $ctype,
            include_bytes!(concat!("../../../ui/", $name)),
        )
    };
}

/// The embedded files: name under `/ui/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    embed!("index.html", "text/html; charset=utf-8"),
    embed!("style.css", "text/css; charset=utf-8"),
    embed!("app.js", "text/javascript; charset=utf-8"),
    embed!("api.js", "text/javascript; charset=utf-8"),
    embed!("auth.js", "text/javascript; charset=utf-8"),
    embed!("dom.js", "text/javascript; charset=utf-8"),
    embed!("arrow.js", "text/javascript; charset=utf-8"),
    embed!("plot.js", "text/javascript; charset=utf-8"),
    embed!("pages.js", "text/javascript; charset=utf-8"),
    embed!("views.js", "text/javascript; charset=utf-8"),
    embed!("favicon.svg", "image/svg+xml"),
];

/// The router's fallback: UI files and SPA paths for GETs, JSON 404 for everything under `/api/`.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") || (method != Method::GET && method != Method::HEAD) {
        return ApiError::NotFound("Not found.".into()).into_response();
    }
    let name = match path.strip_prefix("/ui/") {
        Some(name) => name,
        None if path == "/favicon.ico" => return StatusCode::NOT_FOUND.into_response(),
        None => "index.html",
    };
    match file(name) {
        Some((ctype, body)) => send(&headers, ctype, body),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "no such UI file",
        )
            .into_response(),
    }
}

/// A UI file by name: from `DIALS_UI_DIR` when set, else embedded.
fn file(name: &str) -> Option<(&'static str, Vec<u8>)> {
    let (_, ctype, bytes) = FILES.iter().find(|(n, _, _)| *n == name)?;
    match std::env::var_os("DIALS_UI_DIR") {
        Some(dir) => std::fs::read(std::path::Path::new(&dir).join(name))
            .ok()
            .map(|b| (*ctype, b)),
        None => Some((*ctype, bytes.to_vec())),
    }
}

/// The file with an ETag; revalidated on every use (`no-cache`), so a new binary is never mixed
/// with cached files of an old one, and an unchanged file costs a 304.
fn send(req: &HeaderMap, ctype: &'static str, body: Vec<u8>) -> Response {
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh64::xxh64(&body, 0));
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if req.get(header::IF_NONE_MATCH) == Some(&etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::ETAG, etag),
            cache,
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_ui_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut embedded: Vec<String> = FILES.iter().map(|(n, _, _)| n.to_string()).collect();
        on_disk.sort();
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new ui/ files to FILES");
    }

    #[tokio::test]
    async fn spa_paths_assets_and_api_404() {
        let get = |p: &str| fallback(Method::GET, p.parse().unwrap(), HeaderMap::new());
        let r = get("/runs/1/2").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let r = get("/ui/app.js").await;
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(get("/ui/nope.js").await.status(), StatusCode::NOT_FOUND);
        let r = get("/api/v1/nope/").await;
        assert_eq!(
            (
                r.status(),
                r.headers()[header::CONTENT_TYPE].to_str().unwrap()
            ),
            (StatusCode::NOT_FOUND, "application/json")
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            get("/").await.headers()[header::ETAG].clone(),
        );
        assert_eq!(
            fallback(Method::GET, "/".parse().unwrap(), h)
                .await
                .status(),
            StatusCode::NOT_MODIFIED
        );
    }
}
