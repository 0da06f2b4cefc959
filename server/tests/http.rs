//! Plain HTTP endpoints: health, readiness, metrics, upgrade validation.

use crate::support::TestServer;

/// A tiny HTTP/1.1 GET over a raw TCP stream, so tests need no HTTP client dependency.
async fn get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let server = TestServer::start(|_| {}).await;
    assert_eq!(get(&server.http("/healthz")).await.0, 200);
    assert_eq!(get(&server.http("/readyz")).await.0, 200);
    let (status, body) = get(&server.http("/metrics")).await;
    assert_eq!(status, 200);
    for name in [
        "lectern_rooms_loaded",
        "lectern_connections",
        "lectern_messages_in_total",
        "lectern_bytes_out_total",
        "lectern_persist_seconds_bucket",
        "lectern_process_resident_bytes",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_plain_get_on_a_socket_route_is_a_clear_400() {
    let server = TestServer::start(|_| {}).await;
    let (status, body) = get(&server.http("/ws/notes")).await;
    assert_eq!(status, 400);
    assert!(body.contains("WebSocket"), "{body}");
    let (status, _) = get(&server.http("/ws/bad%0Aname")).await;
    assert_eq!(status, 400);
    server.stop().await;
}
