//! The browser's side of the server: the web app served at `/`, and CORS for pages on
//! other origins that call the API.
//!
//! The app is `web/dist` (committed, built by Vite from `web/`), embedded into the binary
//! at compile time, so the binary alone serves it: nothing is read from disk at run time
//! and a deployment cannot pair one binary with another build's files. Vite names every
//! file under `assets/` after a hash of its content, so those are cached for good; the
//! `index.html` naming them is revalidated on every load (`no-cache` with an `ETag`), so a
//! new build reaches browsers on their next load.
//!
//! CORS is off unless origins are configured. The API authenticates with bearer tokens
//! in the `Authorization` header, never cookies, so credentials are not allowed: a page on
//! another origin sends its token itself, and a browser never attaches anything on its
//! behalf.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, LazyLock, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::api::ApiError;
use crate::config::CorsOrigin;

/// The built web app, embedded from `web/dist`.
#[derive(rust_embed::Embed)]
#[folder = "../web/dist"]
struct Dist;

/// The app's entry page, served for every client-side route too.
const INDEX: &str = "index.html";

/// Vite's content-hashed output: safe to cache forever.
const HASHED_DIR: &str = "assets/";

/// Only our own scripts, styles and connections (the API and `/ws` on this origin); no
/// inline script, no plugins, not framed by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; \
    font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
    form-action 'self'";

/// Paths of the server itself: never a client-side route of the app.
const SERVER_PATHS: [&str; 4] = ["/ws", "/metrics", "/healthz", "/readyz"];

/// Answers a request no route took: a file of the app, the app's `index.html` for a
/// client-side route, or 404 (in the API's JSON format under `/api`).
pub(crate) async fn app_file(
    method: Method,
    request_headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NotFound.into_response();
    }
    let is_server_path = SERVER_PATHS
        .iter()
        .any(|server| path == *server || path.starts_with(&format!("{server}/")));
    if is_server_path || (method != Method::GET && method != Method::HEAD) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let name = match path.trim_start_matches('/') {
        "" => INDEX,
        name => name,
    };
    if let Some(file) = Dist::get(name) {
        return file_response(name, &file, &request_headers).await;
    }
    // A missing file (an old build's asset, a typo) must not answer with the app's HTML,
    // which a browser would try to run as a script.
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if name.starts_with(HASHED_DIR) || last_segment.contains('.') {
        return StatusCode::NOT_FOUND.into_response();
    }
    match Dist::get(INDEX) {
        Some(file) => file_response(INDEX, &file, &request_headers).await,
        None => {
            tracing::error!("the embedded web app has no index.html");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

/// `file` with its type, caching and security headers, gzipped for a client that takes
/// it; 304 when the client's copy is current.
async fn file_response(
    name: &str,
    file: &rust_embed::EmbeddedFile,
    request_headers: &HeaderMap,
) -> Response {
    let content_type = content_type(name, file);
    let compressible = is_compressible(&content_type);
    let gzipped = if compressible && accepts_gzip(request_headers) {
        gzipped(name, file.data.clone()).await
    } else {
        None
    };
    // Each encoding is its own representation, with its own tag.
    let etag = etag(&file.metadata.sha256_hash(), gzipped.is_some());
    let cache_control = if name.starts_with(HASHED_DIR) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if if_none_match(request_headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match &gzipped {
            Some(body) => body.clone().into_response(),
            None => file.data.clone().into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(header::ETAG, etag);
    if gzipped.is_some() {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if compressible {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether the client already holds the representation tagged `etag`.
fn if_none_match(request_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*")
}

/// Whether `Accept-Encoding` takes gzip (named, with a weight above zero).
fn accepts_gzip(request_headers: &HeaderMap) -> bool {
    request_headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let weight = parts
                .find_map(|parameter| parameter.strip_prefix("q="))
                .map_or(Some(1.0), |weight| weight.parse::<f32>().ok());
            name.eq_ignore_ascii_case("gzip") && weight.is_some_and(|weight| weight > 0.0)
        })
}

/// Text compresses well; images and fonts are compressed already.
fn is_compressible(content_type: &HeaderValue) -> bool {
    let content_type = content_type.to_str().unwrap_or_default();
    [
        "text/",
        "application/json",
        "application/manifest+json",
        "image/svg+xml",
        "application/wasm",
    ]
    .iter()
    .any(|prefix| content_type.starts_with(prefix))
}

/// Gzipped copies of the app's files, made on first request and kept: the embedded files
/// never change while the binary runs, and there are a handful of them.
static GZIPPED: LazyLock<Mutex<HashMap<String, Bytes>>> = LazyLock::new(Mutex::default);

/// The gzipped `data` of file `name`; `None` if compressing failed (then it is sent as is).
async fn gzipped(name: &str, data: Cow<'static, [u8]>) -> Option<Bytes> {
    if let Some(body) = lock(&GZIPPED).get(name) {
        return Some(body.clone());
    }
    // A bundle of a few hundred kilobytes takes milliseconds: not on the reactor.
    let body = tokio::task::spawn_blocking(move || {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&data)?;
        encoder.finish()
    })
    .await;
    match body {
        Ok(Ok(body)) => {
            let body = Bytes::from(body);
            lock(&GZIPPED).insert(name.to_owned(), body.clone());
            Some(body)
        }
        Ok(Err(error)) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                name,
                "gzip failed"
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                name,
                "gzip task failed"
            );
            None
        }
    }
}

/// The cache, even if a thread panicked holding it (it only ever holds finished entries).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A strong entity tag from the file's SHA-256 and its encoding.
fn etag(hash: &[u8; 32], gzipped: bool) -> HeaderValue {
    let hex: String = hash[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let suffix = if gzipped { "-gzip" } else { "" };
    HeaderValue::from_str(&format!("\"{hex}{suffix}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The `Content-Type` of `name`: text types with their charset (Vite writes UTF-8), the
/// rest as guessed from the extension.
fn content_type(name: &str, file: &rust_embed::EmbeddedFile) -> HeaderValue {
    let extension = name.rsplit_once('.').map_or("", |(_, extension)| extension);
    let known = match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => {
            return HeaderValue::from_str(file.metadata.mimetype())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        }
    };
    HeaderValue::from_static(known)
}

/// The origins allowed to call the server from their own pages.
#[derive(Debug)]
struct Cors {
    origins: Vec<CorsOrigin>,
}

/// Methods the API answers (a preflight names the one its request will use).
const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

/// Request headers the API reads (the bearer token, JSON and multipart bodies).
const CORS_REQUEST_HEADERS: &str = "authorization, content-type";

/// Response headers a page may read besides the simple ones: when to retry after 429 or
/// 503, a download's file name, and what an export could not show (characters no font
/// has) or left out (over its size budget).
const CORS_EXPOSED_HEADERS: &str =
    "retry-after, content-disposition, x-lectern-missing-glyphs, x-lectern-export-truncated";

/// How long a browser may reuse a preflight answer, in seconds.
const CORS_MAX_AGE: &str = "3600";

/// `router` answering CORS requests from `origins`; unchanged when there are none.
pub(crate) fn with_cors(router: Router, origins: &[CorsOrigin]) -> Router {
    if origins.is_empty() {
        return router;
    }
    let cors = Arc::new(Cors {
        origins: origins.to_vec(),
    });
    router.layer(middleware::from_fn_with_state(cors, cors_layer))
}

/// Answers the preflight of an allowed origin and names that origin on its responses; a
/// request from any other origin (or none) passes through without CORS headers.
async fn cors_layer(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let allowed = request
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| {
            cors.origins
                .iter()
                .any(|allowed| origin.as_bytes() == allowed.as_str().as_bytes())
        })
        .cloned();
    let is_preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = match &allowed {
        Some(_) if is_preflight => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            set(headers, header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS);
            set(
                headers,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                CORS_REQUEST_HEADERS,
            );
            set(headers, header::ACCESS_CONTROL_MAX_AGE, CORS_MAX_AGE);
            response
        }
        Some(_) => {
            let mut response = next.run(request).await;
            set(
                response.headers_mut(),
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                CORS_EXPOSED_HEADERS,
            );
            response
        }
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    // The answer depends on `Origin` whether or not it was allowed: caches must not hand
    // one origin's answer to another.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}
