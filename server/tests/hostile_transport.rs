//! Hostile clients at the transport: slowloris, idle connections past the connection cap,
//! trickled request bodies, open/leave cycles and refused opens on a multiplexed socket,
//! tokenless sockets. Timeouts are configured short (1–2 s) so nothing waits for defaults;
//! every wait has a deadline.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use yrs::encoding::write::Write as _;
use yrs::{Doc, ReadTxn, Transact};

use lectern_collab::protocol;

use crate::support::{TestServer, connect, send_binary};

/// How long any single expectation may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// A GET on a fresh connection; the status code, or `None` if the server closed the
/// connection without answering.
async fn status_of(server: &TestServer, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: lectern\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let response = read_to_close(&mut stream).await;
    parse_status(&response)
}

fn parse_status(response: &str) -> Option<u16> {
    response
        .strip_prefix("HTTP/1.1 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads until the server closes the connection (or resets it), within [`DEADLINE`].
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => response.extend_from_slice(&buffer[..read]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&response).into_owned()
}

/// The value of one metric line in `/metrics`.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let body = crate::support::http_client()
        .get(server.http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Retries `check` until it holds or [`DEADLINE`] passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout_while_healthz_answers() {
    let server = TestServer::start(|config| config.http_header_timeout_secs = 1).await;
    let mut trickling = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.address).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: lectern\r\n")
            .await
            .expect("write");
        // One header byte every 200 ms, never finishing the head: the connection stays
        // "active", so only a deadline on the whole head can end it.
        trickling.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut buffer = [0u8; 256];
            let held = tokio::time::timeout(DEADLINE, async {
                loop {
                    tokio::select! {
                        read = stream.read(&mut buffer) => {
                            if matches!(read, Ok(0) | Err(_)) { return; }
                        }
                        _ = tick.tick() => {
                            if stream.write_all(b"X").await.is_err() { return; }
                        }
                    }
                }
            })
            .await;
            held.is_ok()
        }));
    }
    for _ in 0..5 {
        assert_eq!(status_of(&server, "/healthz").await, Some(200));
    }
    for connection in trickling {
        assert!(
            connection.await.expect("task"),
            "a slowloris connection was held past the deadline"
        );
    }
    assert!(metric(&server, "lectern_http_header_timeouts_total").await >= 50.0);
    assert_eq!(status_of(&server, "/healthz").await, Some(200));
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_get_a_503_and_the_server_recovers() {
    const CAP: usize = 20;
    let server = TestServer::start(|config| {
        config.max_connections = Some(CAP);
        config.http_header_timeout_secs = 2;
    })
    .await;
    // Connections that never send a byte. The server accepts in order, so these take every
    // slot before the next connection is looked at.
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(server.address).await.expect("connect"));
    }
    let mut over = TcpStream::connect(server.address).await.expect("connect");
    let refusal = read_to_close(&mut over).await;
    assert_eq!(parse_status(&refusal), Some(503), "{refusal}");
    assert!(refusal.contains("Retry-After:"), "{refusal}");
    assert!(refusal.contains("Connection: close"), "{refusal}");

    // At the cap nobody gets in, health checks included; but the server is not wedged:
    // idle connections are closed by the header timeout and the slots come back.
    for stream in &mut idle {
        read_to_close(stream).await;
    }
    eventually(
        "/healthz answers once the idle connections are gone",
        || async { status_of(&server, "/healthz").await == Some(200) },
    )
    .await;
    assert!(metric(&server, "lectern_connections_refused_total").await >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_or_stalled_request_body_is_cut_off() {
    let server = TestServer::start(|config| {
        config.http_body_timeout_secs = 1;
        config.http_body_min_bytes_per_sec = 100;
    })
    .await;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: lectern\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";

    // 5 bytes/s: never idle for a whole second, far below the minimum rate.
    let mut trickle = TcpStream::connect(server.address).await.expect("connect");
    trickle.write_all(head.as_bytes()).await.expect("write");
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut buffer = [0u8; 4096];
    let answer = tokio::time::timeout(DEADLINE, async {
        loop {
            tokio::select! {
                read = trickle.read(&mut buffer) => {
                    return match read {
                        Ok(read) => String::from_utf8_lossy(&buffer[..read]).into_owned(),
                        Err(_) => String::new(),
                    };
                }
                _ = tick.tick() => {
                    if trickle.write_all(b" ").await.is_err() {
                        return String::new();
                    }
                }
            }
        }
    })
    .await
    .expect("a 5 byte/s body was still being accepted at the deadline");
    assert_eq!(parse_status(&answer), Some(400), "{answer}");

    // Headers, then nothing.
    let mut stalled = TcpStream::connect(server.address).await.expect("connect");
    stalled.write_all(head.as_bytes()).await.expect("write");
    stalled.write_all(b"{\"email\":").await.expect("write");
    let answer = read_to_close(&mut stalled).await;
    assert_eq!(parse_status(&answer), Some(400), "{answer}");

    assert!(metric(&server, "lectern_http_body_timeouts_total").await >= 2.0);
    assert_eq!(status_of(&server, "/healthz").await, Some(200));
    server.stop().await;
}

/// `varString(doc) · message`, the multiplexed envelope.
fn envelope(doc: &str, message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.write_string(doc);
    frame.extend_from_slice(message);
    frame
}

#[tokio::test]
async fn open_leave_cycles_on_a_multiplexed_socket_hold_no_routes() {
    const CYCLES: usize = 10_000;
    let server = TestServer::start(|config| {
        config.anonymous_access = lectern::config::AnonymousAccess::Write;
        // This test is about memory per cycle, not flood control: let every frame in.
        config.max_frames_burst = u32::MAX;
    })
    .await;
    let socket = connect(&server.ws("/ws")).await;
    let (mut sink, mut stream) = socket.split();
    let step1 = protocol::encode_sync_step1(&Doc::new().transact().state_vector()).to_vec();
    let open = envelope("cycled", &step1);
    let leave = envelope("cycled", &[lectern::ws::MSG_LEAVE_DOC]);
    // Read everything the server sends meanwhile, until the sentinel document answers.
    let sentinel = envelope("sentinel", &[]);
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Binary(bytes) = message
                && bytes.starts_with(&sentinel)
            {
                return true;
            }
        }
        false
    });
    for _ in 0..CYCLES {
        sink.send(Message::Binary(open.clone().into()))
            .await
            .expect("open");
        sink.send(Message::Binary(leave.clone().into()))
            .await
            .expect("leave");
    }
    // Frames are handled in order: once the sentinel answers, every leave was handled.
    sink.send(Message::Binary(envelope("sentinel", &step1).into()))
        .await
        .expect("sentinel");
    let answered = tokio::time::timeout(DEADLINE * 4, reader).await;
    assert!(
        matches!(answered, Ok(Ok(true))),
        "the sentinel was not answered"
    );
    assert_eq!(
        metric(&server, "lectern_socket_routes").await,
        1.0,
        "only the sentinel is open after {CYCLES} open/leave cycles"
    );
    drop(sink);
    eventually("routes return to zero when the socket closes", || async {
        metric(&server, "lectern_socket_routes").await == 0.0
    })
    .await;
    server.stop().await;
}

/// Reads until the server closes the socket; the close code and reason.
async fn close_of(socket: &mut crate::support::Client) -> (u16, String) {
    let wait = async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Close(Some(frame))) = message {
                return Some((u16::from(frame.code), frame.reason.to_string()));
            }
            if message.is_err() {
                return None;
            }
        }
        None
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the server kept the socket open")
        .expect("a close frame")
}

#[tokio::test]
async fn a_socket_without_a_token_is_closed_at_once_with_4401_missing_token() {
    let server = TestServer::start(|_| {}).await; // --anonymous-access none
    let mut multiplexed = connect(&server.ws("/ws")).await;
    assert_eq!(
        close_of(&mut multiplexed).await,
        (4401, "missing token".to_owned())
    );
    let mut single = connect(&server.ws("/ws/notes")).await;
    assert_eq!(
        close_of(&mut single).await,
        (4401, "missing token".to_owned())
    );
    server.stop().await;
}

/// Whether a multiplexed frame is a `101` (document closed).
fn is_doc_closed(frame: &[u8]) -> bool {
    use yrs::encoding::read::Read as _;
    let mut cursor = yrs::encoding::read::Cursor::new(frame);
    cursor.read_string().is_ok() && frame.get(cursor.next) == Some(&lectern::ws::MSG_DOC_CLOSED)
}

#[tokio::test]
async fn a_socket_that_keeps_opening_refused_documents_is_closed_with_1008() {
    const ALLOWED: usize = 5;
    let api = crate::api::sqlite(|config| config.max_refused_opens_per_socket = ALLOWED).await;
    let session = api.register("prowler@example.com", "student").await;
    let url = api.server().ws(&format!("/ws?token={}", session.access));
    let mut socket = connect(&url).await;
    let step1 = protocol::encode_sync_step1(&Doc::new().transact().state_vector()).to_vec();
    // Documents of nobody's classroom: each is refused (101 · 4403); one past the
    // allowance closes the socket.
    for n in 0..=ALLOWED {
        send_binary(&mut socket, envelope(&format!("not-mine-{n}"), &step1)).await;
    }
    let mut refusals = 0;
    let close = tokio::time::timeout(DEADLINE, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Binary(bytes)) if is_doc_closed(&bytes) => refusals += 1,
                Ok(Message::Close(Some(frame))) => return Some(u16::from(frame.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the socket stayed open after repeated refusals");
    assert_eq!(close, Some(1008));
    assert!(refusals >= ALLOWED, "each refusal was reported first");
    api.stop().await;
}

#[tokio::test]
async fn a_socket_flooding_frames_is_closed_with_1008_and_its_room_carries_on() {
    let server = TestServer::start(|config| {
        config.anonymous_access = lectern::config::AnonymousAccess::Write;
        config.max_frames_per_sec = 1;
        config.max_frames_burst = 20;
    })
    .await;
    let mut classmate = connect(&server.ws("/ws/flooded")).await;
    let mut flooder = connect(&server.ws("/ws/flooded")).await;
    // Awareness queries: each one makes the room encode every presence state for the asker.
    let query = protocol::encode_awareness_query().to_vec();
    let flood = async {
        for _ in 0..200 {
            if flooder
                .send(Message::Binary(query.clone().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, flood)
        .await
        .expect("flood sent");
    let close = tokio::time::timeout(DEADLINE, async {
        while let Some(message) = flooder.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
            }
        }
        None
    })
    .await
    .expect("closed in time");
    assert_eq!(
        close,
        Some((1008, "too many messages; slow down".to_owned()))
    );
    // The classmate, well within its own budget, is still served.
    let empty = Doc::new().transact().state_vector();
    send_binary(&mut classmate, protocol::encode_sync_step1(&empty).to_vec()).await;
    let answered = tokio::time::timeout(DEADLINE, async {
        while let Some(Ok(message)) = classmate.next().await {
            if let Message::Binary(bytes) = message
                && let Ok(yrs::sync::Message::Sync(yrs::sync::SyncMessage::SyncStep2(_))) =
                    <yrs::sync::Message as yrs::updates::decoder::Decode>::decode_v1(&bytes)
            {
                return true;
            }
        }
        false
    })
    .await
    .expect("answered in time");
    assert!(answered, "the classmate's socket stays served");
}

/// The web app is served from the files built into the binary: no spelling of `..` reaches
/// a file outside them (the repository's manifests sit two levels above `web/dist`), and a
/// path of any length gets an answer, not a dropped server.
#[tokio::test]
async fn web_app_paths_never_leave_the_built_app() {
    let server = TestServer::start(|_| {}).await;
    for path in [
        "/../Cargo.toml",
        "/../../Cargo.toml",
        "/assets/../../server/Cargo.toml",
        "/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/..%5c..%5cCargo.toml",
        "//etc/passwd",
    ] {
        let mut stream = TcpStream::connect(server.address).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: lectern\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let response = read_to_close(&mut stream).await;
        // Refused, or (a path without an extension) the app's own page for a client route.
        let status = parse_status(&response);
        let app_page = status == Some(200) && response.contains("<div id=\"app\">");
        assert!(
            matches!(status, Some(400 | 404)) || app_page,
            "{path}: {status:?}\n{response}"
        );
        assert!(
            !response.contains("[package]") && !response.contains("root:"),
            "{path} served a file outside the app:\n{response}"
        );
    }
    let long = format!("/{}", "a/".repeat(40_000));
    assert!(
        matches!(status_of(&server, &long).await, Some(status) if status >= 400),
        "a 80 KB path gets an error status"
    );
    // Still serving.
    assert_eq!(status_of(&server, "/healthz").await, Some(200));
}
