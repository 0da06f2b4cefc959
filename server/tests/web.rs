//! The web app served at `/` (caching, security headers, client-side routes) and CORS for
//! pages on other origins (`--cors-origins`).

use clap::Parser as _;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};

use lectern::config::{Cli, Command};

use crate::support::{TestServer, http_client};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; connect-src 'self' ws: wss:; font-src 'self'; \
    object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The path of the first script `index.html` loads: a hashed asset of whichever build of
/// `web/dist` is embedded.
fn script_of(index: &str) -> String {
    let start = index
        .find("src=\"/assets/")
        .expect("a script under /assets/")
        + 5;
    let end = start + index[start..].find('"').expect("closing quote");
    index[start..end].to_owned()
}

/// A hashed script of the embedded build, found through `index.html`.
async fn some_asset(server: &TestServer) -> String {
    let index = http_client()
        .get(server.http("/"))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("body");
    script_of(&index)
}

const APP_ORIGIN: &str = "https://app.example";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|value| value.to_str().expect("ASCII header"))
}

/// Asserts that `response` is the app's `index.html` with its headers, and returns its body.
async fn assert_index(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header(&headers, "content-security-policy"), Some(CSP));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    let body = response.text().await.expect("body");
    assert!(body.contains("<html"), "index.html: {body}");
    body
}

#[tokio::test]
async fn index_is_served_uncached_with_a_strict_csp() {
    let server = TestServer::start(|_| {}).await;
    let client = http_client();
    let root = client.get(server.http("/")).send().await.expect("GET /");
    let body = assert_index(root).await;
    let named = client
        .get(server.http("/index.html"))
        .send()
        .await
        .expect("GET /index.html");
    assert_eq!(assert_index(named).await, body);
    server.stop().await;
}

#[tokio::test]
async fn an_unchanged_index_is_revalidated_with_its_etag() {
    let server = TestServer::start(|_| {}).await;
    let client = http_client();
    let first = client.get(server.http("/")).send().await.expect("GET /");
    let etag = header(first.headers(), "etag").expect("an ETag").to_owned();
    let again = client
        .get(server.http("/classrooms"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("GET with If-None-Match");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(again.headers(), "cache-control"), Some("no-cache"));
    let stale = client
        .get(server.http("/"))
        .header(header::IF_NONE_MATCH, "\"an-older-build\"")
        .send()
        .await
        .expect("GET with a stale tag");
    assert_eq!(stale.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn hashed_assets_are_immutable() {
    let server = TestServer::start(|_| {}).await;
    let asset = some_asset(&server).await;
    let response = http_client()
        .get(server.http(&asset))
        .send()
        .await
        .expect("GET asset");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(
        header(headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(headers, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
    let body = response.text().await.expect("body");
    assert!(!body.is_empty(), "{asset} is empty");
    server.stop().await;
}

#[tokio::test]
async fn text_is_gzipped_for_clients_that_accept_it() {
    let server = TestServer::start(|_| {}).await;
    let client = http_client();
    let asset = some_asset(&server).await;
    let plain = client
        .get(server.http(&asset))
        .send()
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    let response = client
        .get(server.http(&asset))
        .header(header::ACCEPT_ENCODING, "br;q=1.0, gzip;q=0.8")
        .send()
        .await
        .expect("GET gzip");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let compressed = response.bytes().await.expect("body");
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut unzipped,
    )
    .expect("valid gzip");
    assert_eq!(unzipped, plain);

    let refused = client
        .get(server.http(&asset))
        .header(header::ACCEPT_ENCODING, "gzip;q=0")
        .send()
        .await
        .expect("GET");
    assert_eq!(header(refused.headers(), "content-encoding"), None);
    server.stop().await;
}

#[tokio::test]
async fn client_routes_fall_back_to_index_but_missing_files_do_not() {
    let server = TestServer::start(|_| {}).await;
    let client = http_client();
    for route in [
        "/classrooms",
        "/classrooms/abc/sessions/def",
        "/login?next=%2F",
    ] {
        let response = client.get(server.http(route)).send().await.expect("GET");
        assert_index(response).await;
    }
    for missing in [
        "/assets/index-ffffffff.js",
        "/assets/nothing",
        "/favicon.ico",
    ] {
        let response = client.get(server.http(missing)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
        assert_ne!(
            header(response.headers(), "content-type"),
            Some("text/html; charset=utf-8"),
            "{missing}"
        );
    }
    // Only reads fall back: a POST to a client route is not the app.
    let post = client
        .post(server.http("/classrooms"))
        .send()
        .await
        .expect("POST");
    assert_eq!(post.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn api_and_operational_paths_are_untouched() {
    let server = TestServer::start(|_| {}).await;
    let client = http_client();
    for path in ["/api/v1/nothing-here", "/api/nothing-here", "/api"] {
        let response = client.get(server.http(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = response.json().await.expect("JSON error body");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    for path in ["/metrics/x", "/healthz/x", "/readyz/x", "/ws"] {
        let response = client.get(server.http(path)).send().await.expect("GET");
        assert_ne!(response.status(), StatusCode::OK, "{path}");
        assert_ne!(
            header(response.headers(), "content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
    }
    let health = client
        .get(server.http("/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.text().await.expect("body"), "ok");
    server.stop().await;
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let server = TestServer::start(|_| {}).await;
    let client = http_client();
    let asset = some_asset(&server).await;
    for path in ["/", "/classrooms/abc", &asset] {
        let response = client.head(server.http(path)).send().await.expect("HEAD");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            header(response.headers(), "cache-control").is_some(),
            "{path}"
        );
        assert!(response.bytes().await.expect("body").is_empty(), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_web_app_can_be_turned_off() {
    let server = TestServer::start(|config| config.web_app = false).await;
    let client = http_client();
    // The embedded build's asset, as a server with the app on names it.
    let with_app = TestServer::start(|_| {}).await;
    let asset = some_asset(&with_app).await;
    with_app.stop().await;
    for path in ["/", &asset, "/classrooms"] {
        let response = client.get(server.http(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    server.stop().await;
}

/// A server allowing pages on [`APP_ORIGIN`] to call it.
async fn server_with_cors() -> TestServer {
    TestServer::start(|config| {
        config.cors_origins = vec![APP_ORIGIN.parse().expect("origin")];
    })
    .await
}

async fn preflight(server: &TestServer, origin: &str) -> reqwest::Response {
    http_client()
        .request(Method::OPTIONS, server.http("/api/v1/auth/login"))
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .send()
        .await
        .expect("OPTIONS")
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_is_answered() {
    let server = server_with_cors().await;
    let response = preflight(&server, APP_ORIGIN).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert_eq!(header(headers, "vary"), Some("Origin"));
    let methods = header(headers, "access-control-allow-methods").expect("allowed methods");
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    let allowed = header(headers, "access-control-allow-headers").expect("allowed headers");
    for name in ["authorization", "content-type"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(header(headers, "access-control-max-age").is_some());
    // Bearer tokens, not cookies: credentials are never allowed.
    assert_eq!(header(headers, "access-control-allow-credentials"), None);
    server.stop().await;
}

#[tokio::test]
async fn other_origins_get_no_cors_headers() {
    let server = server_with_cors().await;
    for origin in [
        "https://evil.example",
        "https://app.example.evil.example",
        "null",
    ] {
        let response = preflight(&server, origin).await;
        assert_ne!(response.status(), StatusCode::NO_CONTENT, "{origin}");
        let cors: Vec<_> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{origin}: {cors:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn api_responses_name_the_allowed_origin() {
    let server = server_with_cors().await;
    let client = http_client();
    // A real API answer (401 without a token) read by a page on the allowed origin.
    let response = client
        .get(server.http("/api/v1/me"))
        .header(header::ORIGIN, APP_ORIGIN)
        .send()
        .await
        .expect("GET /me");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let headers = response.headers();
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        Some(APP_ORIGIN)
    );
    assert_eq!(header(headers, "vary"), Some("Origin"));
    let exposed = header(headers, "access-control-expose-headers").expect("exposed headers");
    assert!(exposed.contains("retry-after"), "{exposed}");
    assert_eq!(header(headers, "access-control-allow-credentials"), None);

    let other = client
        .get(server.http("/api/v1/me"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .expect("GET /me");
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(other.headers(), "access-control-allow-origin"), None);
    // The answer still depends on Origin, so caches must keep them apart.
    assert_eq!(header(other.headers(), "vary"), Some("Origin"));
    server.stop().await;
}

#[tokio::test]
async fn without_cors_origins_nothing_changes() {
    let server = TestServer::start(|_| {}).await;
    let response = preflight(&server, APP_ORIGIN).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        None
    );
    let me = http_client()
        .get(server.http("/api/v1/me"))
        .header(header::ORIGIN, APP_ORIGIN)
        .send()
        .await
        .expect("GET /me");
    assert_eq!(header(me.headers(), "access-control-allow-origin"), None);
    server.stop().await;
}

fn parse_origins(value: &str) -> Result<Vec<String>, clap::Error> {
    let cli = Cli::try_parse_from(["lectern", "serve", "--cors-origins", value])?;
    let Command::Serve(config) = cli.command else {
        panic!("serve")
    };
    Ok(config
        .cors_origins
        .iter()
        .map(|origin| origin.as_str().to_owned())
        .collect())
}

#[test]
fn origins_are_checked_at_startup() {
    assert_eq!(
        parse_origins("https://LMS.example.edu,http://localhost:5173,https://[::1]:8443")
            .expect("valid origins"),
        [
            "https://lms.example.edu",
            "http://localhost:5173",
            "https://[::1]:8443"
        ]
    );
    // The default port is what browsers leave out of `Origin`.
    assert_eq!(
        parse_origins("https://a.example:443").expect("valid"),
        ["https://a.example"]
    );
    for invalid in [
        "*",
        "a.example",
        "https://a.example/",
        "https://a.example/path",
        "https://user@a.example",
        "ftp://a.example",
        "https://a.example:99999",
        "https://a.example:",
        "https://[::1",
        "https://[::1]x",
        "https://[::1]:",
        "https://[nope]",
    ] {
        assert!(parse_origins(invalid).is_err(), "{invalid} was accepted");
    }
}
