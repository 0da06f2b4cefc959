//! Client-side cost per token of the OpenAI-compatible backend.
//!
//! A local server streams 2000 tokens as fast as it can (the response is prepared up front,
//! one event per body chunk); the client parses the event stream and hands out every token.
//! Client and server share one current-thread runtime, so the time per token is an upper
//! bound on our parsing + dispatch overhead (it includes the server's writes). Divide the
//! reported time by 2000, or read the element throughput.
//!
//! `sse_parser` isolates the framing: the same body pushed through [`SseParser`] in 1 KiB
//! slices, without HTTP or JSON.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use lectern_ai::backend::{Backend, Event, GenerationRequest, Message, OutputFormat, Role};
use lectern_ai::openai::sse::SseParser;
use lectern_ai::openai::{OpenAiBackend, OpenAiConfig};
use tokio_util::sync::CancellationToken;

/// Tokens per streamed answer.
const TOKENS: usize = 2000;

/// The response body, one SSE event per chunk, shaped like vLLM's.
fn events() -> Vec<Bytes> {
    let mut events = vec![Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    )];
    for i in 0..TOKENS {
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        )));
    }
    events.push(Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
    ));
    events.push(Bytes::from(format!(
        "data: {{\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{{\"prompt_tokens\":12,\"completion_tokens\":{TOKENS},\"total_tokens\":{}}}}}\n\ndata: [DONE]\n\n",
        TOKENS + 12
    )));
    events
}

fn request() -> GenerationRequest {
    GenerationRequest {
        messages: vec![Message {
            role: Role::User,
            content: "Write a long essay.".to_owned(),
        }],
        max_tokens: TOKENS as u32,
        temperature: 0.0,
        top_p: 1.0,
        stop: Vec::new(),
        format: OutputFormat::Text,
    }
}

fn stream_tokens(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let events = events();
    let backend = runtime.block_on(async move {
        let app = Router::new().route(
            "/v1/chat/completions",
            post(move || {
                let events = events.clone();
                async move {
                    let body =
                        futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        Body::from_stream(body),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        OpenAiBackend::new(OpenAiConfig::new(format!("http://{addr}/v1"), "m")).expect("backend")
    });

    let mut group = c.benchmark_group("openai");
    group.throughput(Throughput::Elements(TOKENS as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("stream_2000_tokens", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut stream = backend
                        .generate(request(), CancellationToken::new())
                        .await
                        .expect("generate");
                    let mut tokens = 0;
                    while let Some(item) = stream.next().await {
                        match item.expect("no error") {
                            Event::Token(token) => {
                                std::hint::black_box(token);
                                tokens += 1;
                            }
                            Event::Done(usage) => {
                                std::hint::black_box(usage);
                            }
                        }
                    }
                    assert_eq!(tokens, TOKENS);
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

fn sse_parser(c: &mut Criterion) {
    let body: Vec<u8> = events().iter().flat_map(|e| e.iter().copied()).collect();
    let mut group = c.benchmark_group("sse_parser");
    group.throughput(Throughput::Elements(TOKENS as u64));
    group.bench_function("parse_2000_events", |b| {
        b.iter(|| {
            let mut parser = SseParser::new();
            let mut count = 0;
            for slice in body.chunks(1024) {
                parser.push(slice);
                while let Some(event) = parser.next_event() {
                    std::hint::black_box(&event);
                    count += 1;
                }
            }
            assert_eq!(count, TOKENS + 4);
        });
    });
    group.finish();
}

criterion_group!(benches, stream_tokens, sse_parser);
criterion_main!(benches);
