//! One local model shared by concurrent generations (issue #12, fair sharing): a prompt read
//! in chunks is read exactly as in one pass, and generations running at once take turns
//! step by step (all stream before any ends) without mixing their caches.

use futures_util::StreamExt;
use lectern_ai::backend::{Backend, Event, GenerationRequest, Message, OutputFormat, Role};
use lectern_ai::local::KvCache;
use lectern_ai::local::testing::local_backend;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn user(content: &str) -> Vec<Message> {
    vec![Message {
        role: Role::User,
        content: content.to_owned(),
    }]
}

/// Greedy, so a generation's tokens depend on its prompt alone.
fn greedy(messages: Vec<Message>, max_tokens: u32) -> GenerationRequest {
    GenerationRequest {
        messages,
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        stop: Vec::new(),
        format: OutputFormat::Text,
    }
}

#[test]
fn a_prompt_read_in_chunks_gives_the_logits_of_one_pass() {
    let backend = local_backend();
    let decoder = backend.decoder();
    let text = "Plants make glucose from light, water and carbon dioxide in their chloroplasts. "
        .repeat(20);
    let prompt = backend
        .prompt_ids(&user(&format!("{text}\nWhat do plants make?")), 16)
        .expect("prompt");
    assert!(
        prompt.len() > 300,
        "several chunks: {} tokens",
        prompt.len()
    );
    let mut whole = KvCache::new();
    let reference = decoder
        .forward_in_chunks(&mut whole, &prompt, prompt.len())
        .expect("one pass");
    // The default chunks, and an odd size whose last chunk is a single token.
    for chunk in [128, (prompt.len() - 1) / 3] {
        let mut cache = KvCache::new();
        let logits = decoder
            .forward_in_chunks(&mut cache, &prompt, chunk)
            .expect("in chunks");
        assert_eq!(cache.len(), prompt.len());
        let difference = logits
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        assert!(
            difference < 1e-3,
            "chunks of {chunk}: logits differ by {difference}"
        );
    }
}

/// What one generation streamed, and when its first and last pieces came.
struct Streamed {
    text: String,
    first: Instant,
    done: Instant,
}

async fn stream(request: GenerationRequest) -> Streamed {
    let mut events = local_backend()
        .generate(request, CancellationToken::new())
        .await
        .expect("generation starts");
    let mut text = String::new();
    let mut first = None;
    while let Some(event) = events.next().await {
        match event.expect("no error") {
            Event::Token(piece) => {
                first.get_or_insert_with(Instant::now);
                text.push_str(&piece);
            }
            Event::Done(_) => {
                return Streamed {
                    text,
                    first: first.expect("at least one token"),
                    done: Instant::now(),
                };
            }
        }
    }
    panic!("the stream ended without Done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_generations_take_turns_and_answer_as_they_would_alone() {
    let prompts = [
        "Write a long essay about the history of Rome.",
        "Describe in detail how a bicycle works.",
        "Tell a long story about a dragon who learns to bake bread.",
    ];
    let requests = || prompts.map(|prompt| greedy(user(prompt), 48));
    let mut alone = Vec::new();
    for request in requests() {
        alone.push(stream(request).await.text);
    }
    let together: Vec<Streamed> =
        futures_util::future::join_all(requests().map(|request| tokio::spawn(stream(request))))
            .await
            .into_iter()
            .map(|joined| joined.expect("generation task"))
            .collect();
    for ((prompt, alone), together) in prompts.iter().zip(&alone).zip(&together) {
        assert!(!alone.is_empty(), "{prompt}");
        assert_eq!(
            &together.text, alone,
            "{prompt}: the same answer at once as alone"
        );
    }
    // Each step waits for the others' turns: every answer streams before any has ended (an
    // unfair lock lets the first generation run to its end while the others wait).
    let last_first = together.iter().map(|s| s.first).max().expect("three");
    let first_done = together.iter().map(|s| s.done).min().expect("three");
    assert!(
        last_first < first_done,
        "the last first token came {:?} after the first answer ended",
        last_first - first_done
    );
}
