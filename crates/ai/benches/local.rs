//! Local generator latency: time to first token for a ~40-token prompt, and decode speed.
//!
//! A timed run rather than criterion: what matters is a streaming request seen end to end
//! (first event, then the rate of the rest), which criterion's per-iteration model does not
//! express. Run with `cargo bench -p lectern-ai --features testing --bench local`; it uses the
//! shared test models directory (prepared on first use).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lectern_ai::backend::{Backend, Event, GenerationRequest, Message, OutputFormat, Role};
use lectern_ai::local::testing::local_backend;
use tokio_util::sync::CancellationToken;

const RUNS: usize = 7;

fn request() -> GenerationRequest {
    GenerationRequest {
        messages: vec![
            Message {
                role: Role::System,
                content: "You are a patient teaching assistant for a secondary school class."
                    .into(),
            },
            Message {
                role: Role::User,
                content: "Explain in a few sentences why the sky is blue during the day.".into(),
            },
        ],
        max_tokens: 128,
        temperature: 0.0,
        top_p: 1.0,
        stop: Vec::new(),
        format: OutputFormat::Text,
    }
}

struct Run {
    first_token: Duration,
    tokens: u32,
    decode: Duration,
}

async fn run_once(backend: &lectern_ai::local::LocalBackend) -> Run {
    let started = Instant::now();
    let mut stream = backend
        .generate(request(), CancellationToken::new())
        .await
        .expect("generation starts");
    let mut first = None;
    loop {
        match stream
            .next()
            .await
            .expect("stream ends with Done")
            .expect("no error")
        {
            Event::Token(_) => {
                first.get_or_insert_with(|| started.elapsed());
            }
            Event::Done(usage) => {
                let first_token = first.expect("at least one token");
                return Run {
                    first_token,
                    tokens: usage.completion_tokens,
                    decode: started.elapsed() - first_token,
                };
            }
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let load = Instant::now();
    let backend = local_backend();
    println!(
        "model ready in {:.2} s (includes preparation if it was needed)",
        load.elapsed().as_secs_f64()
    );
    let prompt = backend
        .prompt_ids(&request().messages, request().max_tokens)
        .expect("prompt");
    println!("prompt: {} tokens", prompt.len());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        run_once(&backend).await; // warm-up
        let mut first = Vec::new();
        let mut rates = Vec::new();
        for _ in 0..RUNS {
            let run = run_once(&backend).await;
            first.push(run.first_token.as_secs_f64() * 1000.0);
            rates.push(f64::from(run.tokens.saturating_sub(1)) / run.decode.as_secs_f64());
            println!(
                "  first token {:6.1} ms, {} tokens, decode {:5.1} tokens/s",
                run.first_token.as_secs_f64() * 1000.0,
                run.tokens,
                rates[rates.len() - 1]
            );
        }
        println!(
            "local generation: first token {:.1} ms (median of {RUNS}), decode {:.1} tokens/s (median)",
            median(first),
            median(rates)
        );
    });
}
