//! The OpenAI-compatible backend against a real HTTP server on `127.0.0.1:0` whose handlers
//! script status codes, headers, chunk boundaries, stalls and broken connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt as _;
use futures_util::StreamExt;
use lectern_ai::backend::{
    Backend, BackendError, Event, EventStream, GenerationRequest, Message, OutputFormat, Role,
    Usage,
};
use lectern_ai::openai::{OpenAiBackend, OpenAiConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the scripted server saw.
#[derive(Default)]
struct Seen {
    /// Requests received.
    requests: AtomicUsize,
    /// When each request arrived.
    arrivals: Mutex<Vec<Instant>>,
    /// The last request's headers and JSON body.
    last: Mutex<Option<(HeaderMap, Value)>>,
    /// Every request's JSON body, in order.
    bodies: Mutex<Vec<Value>>,
}

/// One piece of a scripted response body.
enum Part {
    /// Send these bytes as one chunk.
    Bytes(Vec<u8>),
    /// Wait before the next part.
    Sleep(Duration),
    /// Let hyper flush what it has (with `TCP_NODELAY`, one TCP segment per chunk).
    Flush,
    /// Break the connection (the body errors, so hyper aborts it without a final chunk).
    Fail,
}

/// Starts a server whose `POST /v1/chat/completions` answers `respond(n)` for the n-th
/// request (0-based); returns the base URL and what the server saw.
async fn serve<F>(respond: F) -> (String, Arc<Seen>)
where
    F: Fn(usize) -> Response + Clone + Send + Sync + 'static,
{
    serve_delayed(Duration::ZERO, respond).await
}

/// [`serve`], holding back the response headers for `delay`.
async fn serve_delayed<F>(delay: Duration, respond: F) -> (String, Arc<Seen>)
where
    F: Fn(usize) -> Response + Clone + Send + Sync + 'static,
{
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, body: Bytes| {
            let seen = state.clone();
            let respond = respond.clone();
            async move {
                let n = seen.requests.fetch_add(1, Ordering::SeqCst);
                seen.arrivals.lock().expect("lock").push(Instant::now());
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.bodies.lock().expect("lock").push(body.clone());
                *seen.last.lock().expect("lock") = Some((headers, body));
                tokio::time::sleep(delay).await;
                respond(n)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // No Nagle delay: chunk boundaries on the wire follow the script.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), seen)
}

/// An event-stream response made of `parts`; `dropped` fires when hyper drops the body,
/// i.e. when the server side notices the connection is gone.
fn sse(parts: Vec<Part>, dropped: Option<oneshot::Sender<()>>) -> Response {
    struct OnDrop(Option<oneshot::Sender<()>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let state = (parts.into_iter(), OnDrop(dropped));
    let body = futures_util::stream::unfold(state, |(mut parts, guard)| async move {
        loop {
            match parts.next()? {
                Part::Bytes(bytes) => return Some((Ok(Bytes::from(bytes)), (parts, guard))),
                Part::Sleep(d) => tokio::time::sleep(d).await,
                Part::Flush => tokio::task::yield_now().await,
                Part::Fail => {
                    return Some((
                        Err(std::io::Error::other("scripted failure")),
                        (parts, guard),
                    ));
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `data: {chunk with this content}` plus the blank line.
fn token(content: &str) -> Part {
    event(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
    }))
}

fn event(data: Value) -> Part {
    Part::Bytes(format!("data: {data}\n\n").into_bytes())
}

fn role() -> Part {
    event(json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
}

fn finish() -> Part {
    event(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
}

fn done() -> Part {
    Part::Bytes(b"data: [DONE]\n\n".to_vec())
}

fn status(code: StatusCode, headers: &[(&'static str, &'static str)], body: Value) -> Response {
    let mut response = (code, axum::Json(body)).into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(*name, value.parse().expect("header value"));
    }
    response
}

/// Small timeouts and backoffs so every failure path takes milliseconds.
fn config(base_url: &str) -> OpenAiConfig {
    let mut config = OpenAiConfig::new(base_url, "test-model");
    config.connect_timeout = Duration::from_secs(1);
    config.first_token_timeout = Duration::from_secs(2);
    config.idle_timeout = Duration::from_secs(2);
    config.initial_backoff = Duration::from_millis(1);
    config.max_backoff = Duration::from_millis(500);
    config
}

fn backend(config: OpenAiConfig) -> OpenAiBackend {
    OpenAiBackend::new(config).expect("backend")
}

fn request() -> GenerationRequest {
    GenerationRequest {
        messages: vec![
            Message {
                role: Role::System,
                content: "Be brief.".to_owned(),
            },
            Message {
                role: Role::User,
                content: "Say hello.".to_owned(),
            },
        ],
        max_tokens: 32,
        temperature: 0.0,
        top_p: 1.0,
        stop: Vec::new(),
        format: OutputFormat::Text,
    }
}

async fn start(backend: &OpenAiBackend) -> EventStream {
    backend
        .generate(request(), CancellationToken::new())
        .await
        .expect("generate")
}

/// Drains a stream: the tokens, then how it ended; also checks nothing follows the end.
async fn collect(mut stream: EventStream) -> (Vec<String>, Result<Usage, BackendError>) {
    let mut tokens = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(Event::Token(t)) => tokens.push(t),
            Ok(Event::Done(usage)) => {
                assert!(stream.next().await.is_none(), "items after Done");
                return (tokens, Ok(usage));
            }
            Err(e) => {
                assert!(stream.next().await.is_none(), "items after an error");
                return (tokens, Err(e));
            }
        }
    }
    panic!("stream ended without Done or an error");
}

#[tokio::test]
async fn streams_tokens_in_order_with_usage_from_the_final_chunk() {
    let (url, seen) = serve(|_| {
        sse(
            vec![
                Part::Bytes(b": keep-alive\n\n".to_vec()),
                role(),
                event(json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]})),
                token("Hel"),
                token(""),
                token("lo"),
                token(", wörld 🙂"),
                finish(),
                event(json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})),
                done(),
            ],
            None,
        )
    })
    .await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["Hel", "lo", ", wörld 🙂"]);
    assert_eq!(
        end.expect("done"),
        Usage {
            prompt_tokens: 7,
            completion_tokens: 3
        }
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn request_carries_model_messages_stream_max_tokens_and_bearer_key() {
    let (url, seen) = serve(|_| sse(vec![token("ok"), finish(), done()], None)).await;
    let mut config = config(&url);
    config.api_key = Some("sk-test-secret".to_owned());
    let (tokens, end) = collect(start(&backend(config)).await).await;
    assert_eq!(tokens, ["ok"]);
    end.expect("done");
    let (headers, body) = seen.last.lock().expect("lock").clone().expect("a request");
    assert_eq!(
        headers.get(header::AUTHORIZATION).expect("authorization"),
        "Bearer sk-test-secret"
    );
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["max_tokens"], 32);
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["top_p"], 1.0);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ])
    );
}

#[tokio::test]
async fn tiny_chunks_crlf_and_no_space_after_colon_give_the_same_answer() {
    let mut text = String::new();
    for content in ["Grüße", ", ", "漢字", " 🙂", "!"] {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": content}}]});
        text.push_str(&format!(": ping\r\ndata:{chunk}\r\n\r\n"));
    }
    text.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\r\n\r\ndata: [DONE]\r\n\r\n");
    let bytes = text.into_bytes();
    let (url, _) = serve(move |_| {
        let mut parts = Vec::new();
        let mut rest = &bytes[..];
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            parts.push(Part::Bytes(rest[..n].to_vec()));
            parts.push(Part::Flush);
            rest = &rest[n..];
            size = size % 3 + 1;
        }
        sse(parts, None)
    })
    .await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["Grüße", ", ", "漢字", " 🙂", "!"]);
    // No usage from the server: completion tokens are the number of content deltas.
    assert_eq!(
        end.expect("done"),
        Usage {
            prompt_tokens: 0,
            completion_tokens: 5
        }
    );
}

#[tokio::test]
async fn rate_limited_twice_is_retried_after_retry_after() {
    let (url, seen) = serve(|n| match n {
        0 => status(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after", "0.06")],
            json!({"error": {"message": "slow down"}}),
        ),
        1 => status(
            StatusCode::TOO_MANY_REQUESTS,
            &[("retry-after-ms", "60")],
            json!({"error": {"message": "slow down"}}),
        ),
        _ => sse(vec![token("finally"), finish(), done()], None),
    })
    .await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["finally"]);
    end.expect("done");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
    let arrivals = seen.arrivals.lock().expect("lock").clone();
    for pair in arrivals.windows(2) {
        // The backoff alone would be about a millisecond.
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(60),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test]
async fn server_errors_every_time_give_busy_after_max_retries() {
    let (url, seen) = serve(|_| {
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            &[],
            json!({"error": {"message": "model crashed", "type": "server_error"}}),
        )
    })
    .await;
    let mut config = config(&url);
    config.max_retries = 2;
    let error = backend(config)
        .generate(request(), CancellationToken::new())
        .await
        .err()
        .expect("an error");
    match error {
        BackendError::Busy(message) => assert!(message.contains("model crashed"), "{message}"),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        3,
        "one attempt + two retries"
    );
}

#[tokio::test]
async fn unauthorized_is_rejected_with_the_servers_message_and_not_retried() {
    let (url, seen) = serve(|_| {
        status(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"error": {
                "message": "Incorrect API key provided: sk-***abc.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }}),
        )
    })
    .await;
    let error = backend(config(&url))
        .generate(request(), CancellationToken::new())
        .await
        .err()
        .expect("an error");
    match error {
        BackendError::Rejected(message) => {
            assert!(message.contains("401"), "{message}");
            assert!(message.contains("Incorrect API key provided"), "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connection_closed_mid_stream_is_a_transport_error_without_retry() {
    let (url, seen) = serve(|_| {
        sse(
            vec![
                role(),
                token("one"),
                token(" two"),
                // Let hyper flush the tokens first: it coalesces what is ready with the headers.
                Part::Sleep(Duration::from_millis(20)),
                Part::Fail,
            ],
            None,
        )
    })
    .await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["one", " two"]);
    assert!(
        matches!(end, Err(BackendError::Transport(_))),
        "expected Transport, got {end:?}"
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn clean_close_without_done_after_finish_reason_ends_normally() {
    let (url, _) = serve(|_| sse(vec![token("a"), finish()], None)).await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["a"]);
    end.expect("done");
}

#[tokio::test]
async fn clean_close_before_finish_is_a_transport_error() {
    let (url, _) = serve(|_| sse(vec![token("a")], None)).await;
    let (_, end) = collect(start(&backend(config(&url))).await).await;
    assert!(matches!(end, Err(BackendError::Transport(_))), "{end:?}");
}

#[tokio::test]
async fn no_first_token_in_time_is_a_timeout() {
    // Headers and keep-alives arrive, but no content.
    let (url, _) = serve(|_| {
        let mut parts = vec![role()];
        for _ in 0..300 {
            parts.push(Part::Sleep(Duration::from_millis(10)));
            parts.push(Part::Bytes(b": still thinking\n\n".to_vec()));
        }
        sse(parts, None)
    })
    .await;
    let mut config = config(&url);
    config.first_token_timeout = Duration::from_millis(80);
    let started = Instant::now();
    let (tokens, end) = collect(start(&backend(config)).await).await;
    assert!(tokens.is_empty());
    assert!(matches!(end, Err(BackendError::Timeout(_))), "{end:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn no_response_headers_in_time_is_a_timeout_from_generate() {
    let (url, seen) = serve_delayed(Duration::from_secs(3), |_| {
        sse(vec![token("late"), done()], None)
    })
    .await;
    let mut config = config(&url);
    config.first_token_timeout = Duration::from_millis(80);
    let started = Instant::now();
    let error = backend(config)
        .generate(request(), CancellationToken::new())
        .await
        .err()
        .expect("an error");
    assert!(matches!(error, BackendError::Timeout(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "a timeout is not retried"
    );
}

#[tokio::test]
async fn a_stall_mid_stream_is_a_timeout() {
    let (url, _) = serve(|_| {
        sse(
            vec![
                token("a"),
                token("b"),
                Part::Sleep(Duration::from_millis(400)),
                token("c"),
                done(),
            ],
            None,
        )
    })
    .await;
    let mut config = config(&url);
    config.idle_timeout = Duration::from_millis(60);
    let (tokens, end) = collect(start(&backend(config)).await).await;
    assert_eq!(tokens, ["a", "b"]);
    assert!(matches!(end, Err(BackendError::Timeout(_))), "{end:?}");
}

#[tokio::test]
async fn invalid_json_in_a_data_line_is_a_protocol_error() {
    let (url, _) = serve(|_| {
        sse(
            vec![
                token("a"),
                Part::Bytes(b"data: {\"choices\": [oops\n\n".to_vec()),
                token("b"),
            ],
            None,
        )
    })
    .await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["a"]);
    assert!(matches!(end, Err(BackendError::Protocol(_))), "{end:?}");
}

#[tokio::test]
async fn errors_reported_inside_the_stream_are_classified() {
    // OpenAI/vLLM style: a JSON `error` object in a data line.
    let (url, _) = serve(|_| {
        sse(
            vec![event(
                json!({"error": {"message": "prompt too long", "code": 400}}),
            )],
            None,
        )
    })
    .await;
    let (_, end) = collect(start(&backend(config(&url))).await).await;
    match end {
        Err(BackendError::Rejected(message)) => assert!(message.contains("prompt too long")),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // `event: error`.
    let (url, _) = serve(|_| {
        sse(
            vec![
                token("x"),
                Part::Bytes(b"event: error\ndata: {\"message\": \"worker died\"}\n\n".to_vec()),
            ],
            None,
        )
    })
    .await;
    let (tokens, end) = collect(start(&backend(config(&url))).await).await;
    assert_eq!(tokens, ["x"]);
    match end {
        Err(BackendError::Transport(message)) => assert!(message.contains("worker died")),
        other => panic!("expected Transport, got {other:?}"),
    }
    // llama.cpp style: an `error:` line with an HTTP-like code.
    let (url, _) = serve(|_| {
        sse(
            vec![Part::Bytes(
                b"error: {\"code\": 503, \"message\": \"loading model\", \"type\": \"unavailable_error\"}\n\n"
                    .to_vec(),
            )],
            None,
        )
    })
    .await;
    let (_, end) = collect(start(&backend(config(&url))).await).await;
    match end {
        Err(BackendError::Busy(message)) => assert!(message.contains("loading model")),
        other => panic!("expected Busy, got {other:?}"),
    }
}

/// A token, then keep-alives every 10 ms for up to 5 s; `closed` fires when the server
/// notices the connection is gone.
async fn endless_stream() -> (String, oneshot::Receiver<()>) {
    let (tx, closed) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let (url, _) = serve(move |_| {
        let mut parts = vec![token("first")];
        for _ in 0..500 {
            parts.push(Part::Sleep(Duration::from_millis(10)));
            parts.push(Part::Bytes(b": ping\n\n".to_vec()));
        }
        sse(parts, tx.lock().expect("lock").take())
    })
    .await;
    (url, closed)
}

#[tokio::test]
async fn cancellation_mid_stream_stops_promptly_and_closes_the_connection() {
    let (url, closed) = endless_stream().await;
    let backend = backend(config(&url));
    let cancel = CancellationToken::new();
    let mut stream = backend
        .generate(request(), cancel.clone())
        .await
        .expect("generate");
    assert_eq!(
        stream.next().await.expect("an item").expect("a token"),
        Event::Token("first".to_owned())
    );
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let next = stream.next().await.expect("an item");
    assert!(matches!(next, Err(BackendError::Cancelled)), "{next:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(stream.next().await.is_none());
    // The stream is still alive (not dropped): the response must be gone already.
    tokio::time::timeout(Duration::from_secs(2), closed)
        .await
        .expect("the server saw the connection close")
        .expect("guard");
    drop(stream);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let (url, closed) = endless_stream().await;
    let backend = backend(config(&url));
    let mut stream = start(&backend).await;
    assert!(matches!(stream.next().await, Some(Ok(Event::Token(_)))));
    drop(stream);
    tokio::time::timeout(Duration::from_secs(2), closed)
        .await
        .expect("the server saw the connection close")
        .expect("guard");
}

#[tokio::test]
async fn cancellation_during_retry_backoff_returns_cancelled() {
    let (url, seen) = serve(|_| {
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            &[("retry-after", "5")],
            json!({"error": "overloaded"}),
        )
    })
    .await;
    let mut config = config(&url);
    config.max_backoff = Duration::from_secs(10);
    let backend = backend(config);
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        canceller.cancel();
    });
    let started = Instant::now();
    let error = backend
        .generate(request(), cancel)
        .await
        .err()
        .expect("an error");
    assert!(matches!(error, BackendError::Cancelled), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_connection_is_retried_then_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut config = config(&format!("http://{addr}/v1"));
    config.max_retries = 2;
    let error = backend(config)
        .generate(request(), CancellationToken::new())
        .await
        .err()
        .expect("an error");
    assert!(matches!(error, BackendError::Transport(_)), "{error:?}");
}

#[test]
fn debug_output_redacts_the_api_key() {
    let mut config = OpenAiConfig::new("https://api.example.com/v1", "m");
    config.api_key = Some("sk-very-secret".to_owned());
    let text = format!("{config:?}");
    assert!(!text.contains("sk-very-secret"), "{text}");
    assert!(text.contains("redacted"), "{text}");
    config.base_url = "http://127.0.0.1:1/v1".to_owned();
    let backend = OpenAiBackend::new(config).expect("backend");
    assert!(!format!("{backend:?}").contains("sk-very-secret"));
}

#[test]
fn invalid_base_urls_are_unavailable() {
    for url in ["not a url", "ftp://example.com/v1"] {
        let error = OpenAiBackend::new(OpenAiConfig::new(url, "m")).expect_err("an error");
        assert!(matches!(error, BackendError::Unavailable(_)), "{error:?}");
    }
}

/// Production endpoints are https: the client must build with the system's roots on aws-lc.
#[test]
fn https_backend_builds_with_the_system_roots() {
    OpenAiBackend::new(OpenAiConfig::new("https://api.example.com/v1", "m")).expect("backend");
}

// ------------------------------------------------ limits enforced on the stream itself

#[tokio::test]
async fn a_server_ignoring_max_tokens_is_cut_off_at_max_tokens_and_closed() {
    // Regression: the backend accepted 2,000 tokens from a server when the cap was 512.
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let dropped = Arc::new(Mutex::new(Some(dropped_tx)));
    let (url, _) = serve(move |_| {
        let mut parts = vec![role()];
        parts.extend((0..2000).map(|i| token(&format!("w{i} "))));
        parts.push(Part::Sleep(Duration::from_secs(30)));
        parts.push(finish());
        parts.push(done());
        sse(parts, dropped.lock().expect("lock").take())
    })
    .await;
    let backend = backend(config(&url));
    let mut request = request();
    request.max_tokens = 512;
    let stream = backend
        .generate(request, CancellationToken::new())
        .await
        .expect("generate");
    let (tokens, end) = collect(stream).await;
    assert_eq!(tokens.len(), 512, "one delta is one token");
    assert_eq!(tokens.last().map(String::as_str), Some("w511 "));
    assert_eq!(end.expect("done").completion_tokens, 512);
    // The connection is closed, so the server stops generating (it would otherwise sleep).
    tokio::time::timeout(Duration::from_secs(5), dropped_rx)
        .await
        .expect("the server saw the connection close")
        .expect("dropped");
}

#[tokio::test]
async fn stop_sequences_end_the_stream_even_split_across_deltas_and_beyond_four() {
    let (url, seen) = serve(|_| {
        sse(
            vec![
                token("Paris is the capital."),
                token("\nQu"),
                token("estion: what"),
                token(" else?"),
                finish(),
                done(),
            ],
            None,
        )
    })
    .await;
    let backend = backend(config(&url));
    let mut request = request();
    // Four go to the server; the fifth (the one that matters here) only the stream checks.
    request.stop = ["A:", "B:", "C:", "D:", "\nQuestion:"]
        .map(str::to_owned)
        .to_vec();
    let stream = backend
        .generate(request, CancellationToken::new())
        .await
        .expect("generate");
    let (tokens, end) = collect(stream).await;
    assert_eq!(tokens.concat(), "Paris is the capital.");
    assert!(
        !tokens.concat().contains("Qu"),
        "no part of the stop is streamed"
    );
    end.expect("done");
    let body = seen.last.lock().expect("lock").clone().expect("request").1;
    assert_eq!(body["stop"], json!(["A:", "B:", "C:", "D:"]));
}

// ------------------------------------------------------------------- structured output

fn structured_request() -> GenerationRequest {
    let mut request = request();
    request.format = lectern_ai::structured::output_format(lectern_ai::structured::Kind::Quiz);
    request
}

const QUIZ: &str = r#"{"title":"T","questions":[{"prompt":"P","options":["a","b","c","d"],"answer":0,"explanation":"E","marks":1}]}"#;

#[tokio::test]
async fn a_json_schema_is_sent_as_a_strict_response_format() {
    let (url, seen) = serve(|_| sse(vec![token(QUIZ), finish(), done()], None)).await;
    let backend = backend(config(&url));
    let stream = backend
        .generate(structured_request(), CancellationToken::new())
        .await
        .expect("generate");
    let (tokens, end) = collect(stream).await;
    assert_eq!(tokens.concat(), QUIZ);
    end.expect("done");
    let body = seen.last.lock().expect("lock").clone().expect("request").1;
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "quiz");
    assert_eq!(format["json_schema"]["strict"], true);
    let schema = &format["json_schema"]["schema"];
    assert_eq!(schema["required"], json!(["title", "questions"]));
    let question = &schema["properties"]["questions"]["items"];
    assert_eq!(question["properties"]["options"]["minItems"], 4);
    assert_eq!(question["properties"]["answer"]["maximum"], 3);
    assert!(
        !schema.to_string().contains("maxLength"),
        "no string lengths for APIs: {schema}"
    );
    // Free text and grammars send none.
    let stream = backend
        .generate(request(), CancellationToken::new())
        .await
        .expect("generate");
    collect(stream).await.1.expect("done");
    let body = seen.last.lock().expect("lock").clone().expect("request").1;
    assert!(body.get("response_format").is_none(), "{body}");
}

#[tokio::test]
async fn a_server_refusing_response_format_is_asked_again_without_it_and_never_again_with_it() {
    let (url, seen) = serve(|n| {
        if n == 0 {
            status(
                StatusCode::BAD_REQUEST,
                &[],
                json!({"error": {"message": "Unknown field: response_format.json_schema", "code": 400}}),
            )
        } else {
            sse(vec![token(QUIZ), finish(), done()], None)
        }
    })
    .await;
    let backend = backend(config(&url));
    for _ in 0..2 {
        let stream = backend
            .generate(structured_request(), CancellationToken::new())
            .await
            .expect("generate");
        let (tokens, end) = collect(stream).await;
        assert_eq!(tokens.concat(), QUIZ);
        end.expect("done");
    }
    let bodies = seen.bodies.lock().expect("lock").clone();
    assert_eq!(
        bodies.len(),
        3,
        "one refusal, one retry, then straight without"
    );
    assert!(bodies[0].get("response_format").is_some());
    assert!(bodies[1].get("response_format").is_none());
    assert!(bodies[2].get("response_format").is_none(), "remembered");
    assert_eq!(bodies[0]["messages"], bodies[1]["messages"]);
}

/// llama-cpp-python's server (0.3.36, measured here) validates the body with pydantic and
/// answers a `json_schema` response format with a 500 carrying the validation error: a
/// refusal of what was sent, not a busy server to retry.
#[tokio::test]
async fn a_validation_error_served_as_500_naming_response_format_is_a_refusal_of_it() {
    let (url, seen) = serve(|n| {
        if n == 0 {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                &[],
                json!({"error": {
                    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': \
                        ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' \
                        or 'json_object'\", 'input': 'json_schema'}",
                    "type": "internal_server_error"
                }}),
            )
        } else {
            sse(vec![token(QUIZ), finish(), done()], None)
        }
    })
    .await;
    let backend = backend(config(&url));
    let stream = backend
        .generate(structured_request(), CancellationToken::new())
        .await
        .expect("generate");
    let (tokens, end) = collect(stream).await;
    assert_eq!(tokens.concat(), QUIZ);
    end.expect("done");
    let bodies = seen.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2, "one refusal, then at once without");
    assert!(bodies[0].get("response_format").is_some());
    assert!(bodies[1].get("response_format").is_none());
}

#[tokio::test]
async fn other_refusals_of_a_structured_request_are_not_retried() {
    let (url, seen) = serve(|_| {
        status(
            StatusCode::BAD_REQUEST,
            &[],
            json!({"error": {"message": "model not found"}}),
        )
    })
    .await;
    let backend = backend(config(&url));
    let error = backend
        .generate(structured_request(), CancellationToken::new())
        .await
        .err()
        .expect("rejected");
    assert!(matches!(error, BackendError::Rejected(ref m) if m.contains("model not found")));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
}
