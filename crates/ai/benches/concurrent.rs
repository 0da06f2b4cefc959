//! The local model shared by concurrent generations: what a chat prompt with four passages
//! costs, and how long one, then three chats at once wait for their first token.
//!
//! Prints, for a chat prompt shaped like the server's for the local model (system
//! instruction, four retrieved passages cut to ~256 characters, the question):
//! - prefill throughput (prompt tokens/s) in chunks of several sizes and the time of one
//!   chunk's pass (what a streaming answer waits while another prompt is read), and the
//!   decode step time once that prompt is in the cache: where the time of a first token goes;
//! - first-token and finish times, and tokens/s while streaming, of one chat alone and of
//!   two and three chats started together;
//! - the longest pause of an answer already streaming while another chat's prompt is read
//!   (what chunked prefill and fair turns bound).
//!
//! A timed run rather than criterion, like `benches/local.rs`. Run with
//! `cargo bench -p lectern-ai --features testing --bench concurrent`; it uses the shared test
//! models directory (prepared on first use). Figures vary with the machine's load: run it
//! alone.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lectern_ai::backend::{Backend, Event, GenerationRequest, Message, OutputFormat, Role};
use lectern_ai::local::testing::local_backend;
use lectern_ai::local::{KvCache, LocalBackend};
use tokio_util::sync::CancellationToken;

/// Repetitions of each measurement; medians are reported.
const RUNS: usize = 5;
/// Passages per chat prompt (the server's `CHAT_PASSAGES`).
const PASSAGES: usize = 4;
/// Characters per passage: the server cuts a chat's passages for the local model to 256
/// tokens of sentences in all (`--ai-chat-source-tokens`), about 4 × 64 tokens of ~4
/// characters. (Whole chunks, the material chunker's 800 characters, made prompts of
/// ~790 tokens: first token after 1.48 s alone, 4.47 s for the last of three at once.)
const PASSAGE_CHARS: usize = 256;
/// Most tokens an answer may have.
const MAX_TOKENS: u32 = 96;
/// Decode steps timed after the prompt.
const DECODE_STEPS: usize = 32;

/// Textbook sentences to build passages from.
const SENTENCES: &str = include_str!("sentences.txt");

const QUESTIONS: [&str; 3] = [
    "How do plants make glucose, and where does it happen?",
    "Why did the French Revolution begin?",
    "What are the ways to solve a quadratic equation?",
];

/// Chat `index`'s messages, as the server builds them for a chat job with four passages.
fn chat(index: usize) -> Vec<Message> {
    let sentences: Vec<&str> = SENTENCES.lines().filter(|line| !line.is_empty()).collect();
    let mut next = index * 7;
    let mut passages = String::new();
    for number in 1..=PASSAGES {
        let mut passage = String::new();
        while passage.len() < PASSAGE_CHARS {
            passage.push_str(sentences[next % sentences.len()]);
            passage.push(' ');
            next += 1;
        }
        passages.push_str(&format!(
            "[{number}] (notes.md, section {number}) {passage}\n"
        ));
    }
    vec![
        Message {
            role: Role::System,
            content: "You are a teaching assistant. Answer the question using only the numbered \
                      passages. Cite the passages you use by number in square brackets, like [1]. \
                      If the passages do not contain the answer, say so briefly."
                .into(),
        },
        Message {
            role: Role::User,
            content: format!(
                "Passages:\n{passages}\nQuestion: {}",
                QUESTIONS[index % QUESTIONS.len()]
            ),
        },
    ]
}

fn request(index: usize) -> GenerationRequest {
    GenerationRequest {
        messages: chat(index),
        max_tokens: MAX_TOKENS,
        temperature: 0.0,
        top_p: 1.0,
        stop: Vec::new(),
        format: OutputFormat::Text,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Prefill throughput with chunks of several sizes (each chunk one forward pass, one turn
/// of the session), the time of one pass (how long another generation waits at most while
/// this prompt is read), then the decode step time once the prompt is in the cache.
fn raw_decoder(backend: &LocalBackend, prompt: &[u32]) {
    let decoder = backend.decoder();
    println!("prefill of {} tokens:", prompt.len());
    for chunk in [32, 64, 128, 256, 512, prompt.len()] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let mut cache = KvCache::new();
            let started = Instant::now();
            decoder
                .forward_in_chunks(&mut cache, prompt, chunk)
                .expect("prefill");
            times.push(started.elapsed().as_secs_f64());
        }
        let seconds = median(times);
        let passes = prompt.len().div_ceil(chunk);
        let label = if chunk >= prompt.len() {
            "one pass".to_owned()
        } else {
            format!("chunks of {chunk}")
        };
        println!(
            "  {label:>14}: {:7.1} ms, {:6.1} tokens/s, {:6.1} ms per pass (median of {RUNS})",
            seconds * 1000.0,
            prompt.len() as f64 / seconds,
            seconds * 1000.0 / passes as f64
        );
    }
    let mut cache = KvCache::new();
    let mut logits = decoder.forward(&mut cache, prompt).expect("prefill");
    let mut steps = Vec::new();
    for _ in 0..DECODE_STEPS {
        let token = argmax(&logits);
        let started = Instant::now();
        logits = decoder.forward(&mut cache, &[token]).expect("step");
        steps.push(ms(started.elapsed()));
    }
    println!(
        "decode step after {} tokens: {:.1} ms (median of {DECODE_STEPS}), {:.1} tokens/s",
        prompt.len(),
        median(steps.clone()),
        1000.0 / median(steps)
    );
}

/// A generation's speed once it streams: tokens after the first over the time they took.
fn tokens_per_second(timeline: &Timeline) -> f64 {
    let streaming = (timeline.done - timeline.first_token).as_secs_f64();
    f64::from(timeline.tokens.saturating_sub(1)) / streaming.max(1e-9)
}

fn argmax(logits: &[f32]) -> u32 {
    let (index, _) = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("logits");
    u32::try_from(index).expect("vocabulary fits u32")
}

/// What one generation saw, relative to a common start.
#[derive(Debug, Clone)]
struct Timeline {
    first_token: Duration,
    done: Duration,
    tokens: u32,
    /// Longest wait between two streamed pieces.
    longest_pause: Duration,
}

async fn follow(backend: LocalBackend, index: usize, start: Instant) -> Timeline {
    let mut stream = backend
        .generate(request(index), CancellationToken::new())
        .await
        .expect("generation starts");
    let mut arrivals = Vec::new();
    loop {
        match stream
            .next()
            .await
            .expect("stream ends with Done")
            .expect("no error")
        {
            Event::Token(_) => arrivals.push(start.elapsed()),
            Event::Done(usage) => {
                let first_token = *arrivals.first().expect("at least one token");
                let longest_pause = arrivals
                    .windows(2)
                    .map(|pair| pair[1] - pair[0])
                    .max()
                    .unwrap_or_default();
                return Timeline {
                    first_token,
                    done: start.elapsed(),
                    tokens: usage.completion_tokens,
                    longest_pause,
                };
            }
        }
    }
}

/// `count` chats started together; their timelines in start order.
async fn together(backend: &LocalBackend, count: usize) -> Vec<Timeline> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|index| tokio::spawn(follow(backend.clone(), index, start)))
        .collect();
    let mut timelines = Vec::new();
    for task in tasks {
        timelines.push(task.await.expect("generation task"));
    }
    timelines
}

/// A chat streaming alone, then a second chat asking: how long the second waits for its
/// first token, how long the first one's answer stalls meanwhile at most, and how many of
/// its pieces arrive meanwhile.
async fn newcomer(backend: &LocalBackend) -> (Duration, Duration, usize) {
    let start = Instant::now();
    let mut streaming = backend
        .generate(request(0), CancellationToken::new())
        .await
        .expect("starts");
    while let Some(event) = streaming.next().await {
        if let Event::Token(_) = event.expect("no error") {
            break;
        }
    }
    let reader = tokio::spawn(async move {
        let mut arrivals = Vec::new();
        while let Some(event) = streaming.next().await {
            if let Event::Token(_) = event.expect("no error") {
                arrivals.push(start.elapsed());
            }
        }
        arrivals
    });
    let asked = start.elapsed();
    let mut second = backend
        .generate(request(1), CancellationToken::new())
        .await
        .expect("starts");
    let mut answered = None;
    while let Some(event) = second.next().await {
        if let Event::Token(_) = event.expect("no error") {
            answered.get_or_insert(start.elapsed());
        }
    }
    let answered = answered.expect("the newcomer answered");
    let arrivals = reader.await.expect("reader");
    let mut previous = asked;
    let mut stall = Duration::ZERO;
    let mut meanwhile = 0;
    for &arrival in arrivals.iter().filter(|&&arrival| arrival > asked) {
        if arrival > answered {
            stall = stall.max(arrival.min(answered) - previous);
            break;
        }
        stall = stall.max(arrival - previous);
        previous = arrival;
        meanwhile += 1;
    }
    (answered - asked, stall, meanwhile)
}

fn main() {
    let load = Instant::now();
    let backend = local_backend();
    println!(
        "model ready in {:.2} s (includes preparation if it was needed)",
        load.elapsed().as_secs_f64()
    );
    let prompts: Vec<Vec<u32>> = (0..3)
        .map(|index| {
            backend
                .prompt_ids(&request(index).messages, MAX_TOKENS)
                .expect("prompt")
        })
        .collect();
    println!(
        "chat prompts ({PASSAGES} passages of ~{PASSAGE_CHARS} characters): {:?} tokens",
        prompts.iter().map(Vec::len).collect::<Vec<_>>()
    );
    raw_decoder(&backend, &prompts[0]);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        together(&backend, 1).await; // warm-up
        for count in [1, 2, 3] {
            let mut first = vec![Vec::new(); count];
            let mut done = vec![Vec::new(); count];
            let mut speeds = vec![Vec::new(); count];
            let mut all_streaming = Vec::new();
            for run in 0..RUNS {
                let timelines = together(&backend, count).await;
                for (index, timeline) in timelines.iter().enumerate() {
                    first[index].push(ms(timeline.first_token));
                    done[index].push(ms(timeline.done));
                    speeds[index].push(tokens_per_second(timeline));
                }
                let last_first = timelines
                    .iter()
                    .map(|timeline| timeline.first_token)
                    .max()
                    .expect("timelines");
                let first_done = timelines
                    .iter()
                    .map(|timeline| timeline.done)
                    .min()
                    .expect("timelines");
                all_streaming.push(ms(last_first));
                println!(
                    "  {count} at once, run {run}: first tokens {:?} ms, done {:?} ms, tokens \
                     {:?}, longest pauses {:?} ms; all streaming before the first ended: {}",
                    timelines
                        .iter()
                        .map(|t| ms(t.first_token).round())
                        .collect::<Vec<_>>(),
                    timelines
                        .iter()
                        .map(|t| ms(t.done).round())
                        .collect::<Vec<_>>(),
                    timelines.iter().map(|t| t.tokens).collect::<Vec<_>>(),
                    timelines
                        .iter()
                        .map(|t| ms(t.longest_pause).round())
                        .collect::<Vec<_>>(),
                    last_first < first_done
                );
            }
            let medians = |values: Vec<Vec<f64>>| {
                values
                    .into_iter()
                    .map(|values| (median(values) * 10.0).round() / 10.0)
                    .collect::<Vec<_>>()
            };
            println!(
                "{count} chat(s) at once: first token {:?} ms, done {:?} ms, {:?} tokens/s \
                 while streaming (medians of {RUNS}); all streaming after {:.0} ms (median)",
                medians(first),
                medians(done),
                medians(speeds),
                median(all_streaming)
            );
        }
        let mut stalls = Vec::new();
        let mut waits = Vec::new();
        for run in 0..RUNS {
            let (wait, stall, meanwhile) = newcomer(&backend).await;
            println!(
                "  newcomer run {run}: first token after {:.0} ms; the other answer streamed \
                 {meanwhile} pieces meanwhile, longest pause {:.0} ms",
                ms(wait),
                ms(stall)
            );
            stalls.push(ms(stall));
            waits.push(ms(wait));
        }
        println!(
            "a chat asking while another streams: its first token after {:.0} ms; the \
             streaming answer's longest pause meanwhile {:.0} ms (medians of {RUNS})",
            median(waits),
            median(stalls)
        );
    });
}
