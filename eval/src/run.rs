//! One evaluation run against one server: set up the class as a teacher would, then ask,
//! search and generate, reading every result the way a user's client sees it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::{Api, string};
use crate::degenerate::{self, Degenerate};
use crate::replica::{Replica, array_json, map_json, text};
use crate::server::{Server, ServerOptions};
use crate::suite::{JobSpec, Question, Suite};
use crate::text::{all_facts_found, contains_phrase, contains_tokens, facts_found, tokens};
use crate::{EvalError, structured};

/// Passages asked of the search API per question (recall is measured at 1 and at 3).
pub const SEARCH_K: usize = 3;

/// How long the course may take to become searchable.
const INGEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Put before the questions asked at once, so that none is answered from the cache of the
/// same question asked alone.
const CONCURRENT_PREFIX: &str = "Briefly: ";

/// How long a failed structured job's draft may take to disappear from its document.
const DRAFT_TIMEOUT: Duration = Duration::from_secs(2);

/// The server's default `--ai-max-tokens`.
const SERVER_MAX_TOKENS: u32 = 512;

/// How long a finished structured job's document may take to show its final value.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A question asked only to load the model before anything is timed (not in the suite, so
/// no suite question is answered from the server's answer cache).
const WARM_UP_QUESTION: &str = "In one sentence, what is this course about?";

/// Where the search API put a question's answering passage.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalResult {
    /// The question's id.
    pub id: String,
    /// 1-based rank of the first hit from the right material that contains the quote, among
    /// the top [`SEARCH_K`]; `None` when none does.
    pub rank: Option<usize>,
    /// The top hit's material and score, for diagnosis.
    pub top_file: Option<String>,
    /// The top hit's similarity.
    pub top_score: Option<f64>,
}

/// Retrieval over every question.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieval {
    /// Share of questions whose top hit holds the answer.
    pub recall_at_1: f64,
    /// Share of questions with the answer among the top three hits.
    pub recall_at_3: f64,
    /// Per question.
    pub results: Vec<RetrievalResult>,
}

/// Timing and usage of one job, as the client saw it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timing {
    /// Request sent → first AI text in the document, in milliseconds.
    pub first_token_ms: Option<f64>,
    /// Request sent → the job's end shown in the document, in milliseconds.
    pub total_ms: f64,
    /// Prompt tokens, from the job's usage.
    pub prompt_tokens: u64,
    /// Generated tokens, from the job's usage.
    pub completion_tokens: u64,
    /// Generated tokens per second between the first token and the end; `None` without a
    /// model call (a canned or cached answer).
    pub tokens_per_s: Option<f64>,
    /// Answered from the server's cache.
    pub cached: bool,
}

/// One chat question and its answer.
#[derive(Debug, Clone, Serialize)]
pub struct ChatResult {
    /// The question's id.
    pub id: String,
    /// The question.
    pub question: String,
    /// Whether the materials answer it (else: off-topic).
    pub on_topic: bool,
    /// The answer message's final status.
    pub status: String,
    /// The answer's text.
    pub answer: String,
    /// The job's error, when it failed.
    pub error: Option<String>,
    /// Each citation, resolved to the passage it points at.
    pub citations: Vec<Citation>,
    /// Citations whose passage states every key fact (on-topic questions only).
    pub supporting_citations: usize,
    /// Per key fact, whether the answer states it (on-topic only).
    pub facts_found: Vec<bool>,
    /// On-topic: done and every key fact stated. Off-topic: done, says the materials do not
    /// cover it, and cites nothing.
    pub correct: bool,
    /// Whether the answer says the materials do not cover the question.
    pub says_not_covered: bool,
    /// Whether the output was degenerate (see [`degenerate`]): judged on the text shown,
    /// or as the server reported when it failed the job for it.
    pub degenerate: Option<Degenerate>,
    /// Timing and usage.
    pub timing: Timing,
}

/// A citation of a chat answer and the passage it resolves to.
#[derive(Debug, Clone, Serialize)]
pub struct Citation {
    /// The cited material's file name.
    pub file_name: String,
    /// Where in it, as the server describes it (page, heading, lines).
    pub location: Option<String>,
    /// The cited passage states every key fact of the question (always false off-topic
    /// or when the citation does not resolve to a passage).
    pub supports: bool,
}

/// One structured job and what it produced.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// The job's id in the suite.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// The job's final status.
    pub status: String,
    /// The job's error, when it failed.
    pub error: Option<String>,
    /// Done, and its document well formed.
    pub valid: bool,
    /// What is wrong with the document, when the job was done but the document is not
    /// valid.
    pub problem: Option<String>,
    /// Whether the output was degenerate: the done document's text as judged here, or the
    /// reason the server gave for failing the job.
    pub degenerate: Option<Degenerate>,
    /// A failed job left its raw draft in the document (students read these documents).
    pub draft_left: bool,
    /// The final structured value as the document holds it.
    pub value: Value,
    /// Timing and usage.
    pub timing: Timing,
}

/// A server with the course uploaded, and a teacher's live session in it.
#[derive(Debug)]
pub struct Run {
    server: Server,
    api: Api,
    classroom: String,
    session: String,
    chat: Replica,
    lectern: Replica,
    not_covered_phrases: Vec<String>,
    job_timeout: Duration,
    /// The server's cap on generated tokens per job (to tell a loop cut off by it).
    max_tokens: u32,
    /// Lines of the course's text and Markdown files by file name: citations of them give
    /// their lines, and the uploaded file is this one.
    text_lines: HashMap<String, Vec<String>>,
    /// Passages of each material as the API lists them, fetched when first cited.
    chunks: HashMap<String, Vec<Value>>,
}

impl Run {
    /// Starts a server, signs up a faculty account, creates a classroom and a session,
    /// uploads the course and waits until every material is searchable.
    pub async fn start(
        suite: &Suite,
        options: &ServerOptions,
        job_timeout: Duration,
    ) -> Result<Self, EvalError> {
        let server = Server::start(options).await?;
        let api = Api::sign_up_faculty(&server.http("")).await?;
        let classroom = api
            .post(
                "/classrooms",
                &json!({"name": "Year 9 Geography"}),
                StatusCode::CREATED,
            )
            .await?;
        let classroom = string(&classroom, "id")?;
        let session = api
            .post(
                &format!("/classrooms/{classroom}/sessions"),
                &json!({}),
                StatusCode::CREATED,
            )
            .await?;
        let session = string(&session, "id")?;
        let ws = server.ws("");
        let mut feed =
            Replica::open(&ws, &format!("classroom/{classroom}/materials"), &api.token).await?;
        let mut materials = HashMap::new();
        for name in &suite.materials {
            let material = api
                .upload(&classroom, name, suite.material_bytes(name)?)
                .await?;
            materials.insert(name.clone(), string(&material, "id")?);
        }
        let deadline = Instant::now() + INGEST_TIMEOUT;
        let (outcome, _) = feed
            .until(deadline, "the course to be ingested", |doc| {
                ingested(&map_json(doc, "materials"), &materials)
            })
            .await?;
        outcome?;
        let chat = Replica::open(&ws, &format!("session/{session}/chat"), &api.token).await?;
        let lectern = Replica::open(&ws, &format!("session/{session}/lectern"), &api.token).await?;
        let mut text_lines = HashMap::new();
        for name in &suite.materials {
            if name.ends_with(".md") || name.ends_with(".txt") {
                let bytes = suite.material_bytes(name)?;
                let lines = String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(str::to_owned)
                    .collect();
                text_lines.insert(name.clone(), lines);
            }
        }
        Ok(Self {
            server,
            api,
            classroom,
            session,
            chat,
            lectern,
            not_covered_phrases: suite.not_covered_phrases.clone(),
            job_timeout,
            max_tokens: options.max_tokens.unwrap_or(SERVER_MAX_TOKENS),
            text_lines,
            chunks: HashMap::new(),
        })
    }

    /// Searches for each question; finds where its quote ranks.
    pub async fn retrieval(&self, questions: &[Question]) -> Result<Retrieval, EvalError> {
        let mut results = Vec::new();
        for question in questions {
            let response = self
                .api
                .post(
                    &format!("/classrooms/{}/search", self.classroom),
                    &json!({"query": question.question, "k": SEARCH_K}),
                    StatusCode::OK,
                )
                .await?;
            let hits = response["hits"].as_array().cloned().unwrap_or_default();
            let quote = tokens(&question.quote);
            let rank = hits
                .iter()
                .position(|hit| {
                    hit["file_name"] == question.material.as_str()
                        && contains_tokens(&tokens(hit["text"].as_str().unwrap_or("")), &quote)
                })
                .map(|index| index + 1);
            results.push(RetrievalResult {
                id: question.id.clone(),
                rank,
                top_file: hits
                    .first()
                    .and_then(|hit| hit["file_name"].as_str())
                    .map(str::to_owned),
                top_score: hits.first().and_then(|hit| hit["score"].as_f64()),
            });
        }
        let share = |k: usize| {
            let found = results
                .iter()
                .filter(|result| result.rank.is_some_and(|rank| rank <= k))
                .count();
            found as f64 / results.len().max(1) as f64
        };
        Ok(Retrieval {
            recall_at_1: share(1),
            recall_at_3: share(3),
            results,
        })
    }

    /// Asks one question that is not measured, so the model is loaded before the first
    /// timed job (a one-off cost of the first job after a start).
    pub async fn warm_up(&mut self) -> Result<(), EvalError> {
        self.chat("warm-up", WARM_UP_QUESTION, None).await.map(drop)
    }

    /// Asks `questions` in the chat all at once, as several students would, and returns
    /// each answer's time to first token in milliseconds (request sent → first text in the
    /// document; `None` for an answer that never showed text). The questions are reworded
    /// so that none is answered from the answer cache.
    pub async fn concurrent(
        &mut self,
        questions: &[Question],
    ) -> Result<Vec<Option<f64>>, EvalError> {
        let started = Instant::now();
        let deadline = started + self.job_timeout;
        let mut jobs = Vec::new();
        for question in questions {
            let prompt = format!("{CONCURRENT_PREFIX}{}", question.question);
            let job = self
                .start_job(&json!({"kind": "chat", "prompt": prompt}))
                .await?;
            jobs.push(string(&job, "job_id")?);
        }
        let mut first_tokens: Vec<Option<f64>> = vec![None; jobs.len()];
        loop {
            // Checked right after each update arrives: the time seen is the update's.
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let mut ended = 0;
            for (job_id, first_token) in jobs.iter().zip(&mut first_tokens) {
                let Some(message) = assistant_message(self.chat.doc(), job_id) else {
                    continue;
                };
                if first_token.is_none() && !message["text"].as_str().unwrap_or("").is_empty() {
                    *first_token = Some(elapsed);
                }
                if is_final(&message["status"]) {
                    ended += 1;
                }
            }
            if ended == jobs.len() {
                return Ok(first_tokens);
            }
            self.chat
                .changed(deadline, "the concurrent answers")
                .await?;
        }
    }

    /// Asks an answerable question in the session chat and judges the answer.
    pub async fn ask(&mut self, question: &Question) -> Result<ChatResult, EvalError> {
        self.chat(&question.id, &question.question, Some(question))
            .await
    }

    /// Asks a question the materials do not cover and judges the answer.
    pub async fn ask_off_topic(
        &mut self,
        id: &str,
        question: &str,
    ) -> Result<ChatResult, EvalError> {
        self.chat(id, question, None).await
    }

    async fn chat(
        &mut self,
        id: &str,
        question: &str,
        key: Option<&Question>,
    ) -> Result<ChatResult, EvalError> {
        let started = Instant::now();
        let deadline = started + self.job_timeout;
        let job = self
            .start_job(&json!({"kind": "chat", "prompt": question}))
            .await?;
        let job_id = string(&job, "job_id")?;
        let what = format!("the answer to {id}");
        let answer = |doc: &yrs::Doc| assistant_message(doc, &job_id);
        let (message, seen) = self
            .chat
            .until(deadline, &what, |doc| {
                answer(doc).filter(|message| {
                    !message["text"].as_str().unwrap_or("").is_empty()
                        || is_final(&message["status"])
                })
            })
            .await?;
        let first_token = (!message["text"].as_str().unwrap_or("").is_empty()).then_some(seen);
        let (message, ended) = self
            .chat
            .until(deadline, &what, |doc| {
                answer(doc).filter(|message| is_final(&message["status"]))
            })
            .await?;
        let record = self.finished_job(&job_id, deadline).await?;
        let answer_text = message["text"].as_str().unwrap_or("").to_owned();
        let citations: Vec<Value> = message["citations"].as_array().cloned().unwrap_or_default();
        let status = message["status"].as_str().unwrap_or("").to_owned();
        let says_not_covered = self
            .not_covered_phrases
            .iter()
            .any(|phrase| contains_phrase(&answer_text, phrase));
        let error = message["error"]
            .as_str()
            .or(record["error"].as_str())
            .map(str::to_owned);
        let mut resolved = Vec::new();
        for citation in &citations {
            let passage = self.cited_passage(citation).await?;
            let supports = match (key, &passage) {
                (Some(key), Some(passage)) => all_facts_found(passage, &key.key_facts),
                _ => false,
            };
            resolved.push(Citation {
                file_name: citation["file_name"]
                    .as_str()
                    .unwrap_or("<no file name>")
                    .to_owned(),
                location: citation["location"].as_str().map(str::to_owned),
                supports,
            });
        }
        let (facts, correct) = match key {
            Some(key) => {
                let facts = facts_found(&answer_text, &key.key_facts);
                let correct = status == "done" && facts.iter().all(|found| *found);
                (facts, correct)
            }
            None => (
                Vec::new(),
                status == "done" && says_not_covered && citations.is_empty(),
            ),
        };
        let timing = timing(started, first_token, ended, &record);
        let hit_token_limit = timing.completion_tokens >= u64::from(self.max_tokens);
        let degenerate = judge(&status, &answer_text, error.as_deref(), || {
            degenerate::check(&answer_text, question, hit_token_limit)
        });
        Ok(ChatResult {
            id: id.to_owned(),
            question: question.to_owned(),
            on_topic: key.is_some(),
            error,
            supporting_citations: resolved.iter().filter(|citation| citation.supports).count(),
            citations: resolved,
            facts_found: facts,
            correct,
            says_not_covered,
            degenerate,
            timing,
            answer: answer_text,
            status,
        })
    }

    /// The text of the passage a chat citation points at, `None` when it does not resolve.
    /// A text or Markdown file's citation gives its lines: exactly those lines. Otherwise
    /// (PDF) it gives its first passage's `ordinal`: that passage and, when the server merged
    /// neighbours with the same page and heading into one source, the next one (the suite
    /// cannot see where a merged source ends, so it may credit one passage too many).
    async fn cited_passage(&mut self, citation: &Value) -> Result<Option<String>, EvalError> {
        let file_name = citation["file_name"].as_str().unwrap_or("");
        let line = |key: &str| {
            citation[key]
                .as_f64()
                .filter(|line| *line >= 1.0)
                .map(|line| line as usize)
        };
        if let (Some(lines), Some(first), Some(last)) = (
            self.text_lines.get(file_name),
            line("line_start"),
            line("line_end"),
        ) {
            let last = last.min(lines.len());
            return Ok((first <= last).then(|| lines[first - 1..last].join("\n")));
        }
        let Some(material_id) = citation["material_id"].as_str() else {
            return Ok(None);
        };
        let Some(ordinal) = citation["ordinal"].as_f64() else {
            return Ok(None);
        };
        if !self.chunks.contains_key(material_id) {
            let listed = self
                .api
                .get(&format!("/materials/{material_id}/chunks"))
                .await?;
            let listed = listed.as_array().cloned().unwrap_or_default();
            self.chunks.insert(material_id.to_owned(), listed);
        }
        let chunks = &self.chunks[material_id];
        let at = |ordinal: f64| {
            chunks
                .iter()
                .find(|chunk| chunk["ordinal"].as_f64() == Some(ordinal))
        };
        let Some(first) = at(ordinal) else {
            return Ok(None);
        };
        let mut text = first["text"].as_str().unwrap_or("").to_owned();
        if let Some(next) = at(ordinal + 1.0)
            && next["page"] == first["page"]
            && next["heading"] == first["heading"]
        {
            text.push('\n');
            text.push_str(next["text"].as_str().unwrap_or(""));
        }
        Ok(Some(text))
    }

    /// Runs one structured job and judges the document it writes.
    pub async fn job(&mut self, spec: &JobSpec) -> Result<JobResult, EvalError> {
        let started = Instant::now();
        let deadline = started + self.job_timeout;
        let job = self
            .start_job(&json!({"kind": spec.kind, "prompt": spec.prompt}))
            .await?;
        let job_id = string(&job, "job_id")?;
        let doc_id = string(&job, "doc_id")?;
        let mut target = Replica::open(&self.server.ws(""), &doc_id, &self.api.token).await?;
        // The structured value lands in the root map named after the kind; until then a
        // structured job streams its raw output into `draft`. A mind map grows its map
        // instead, from a root the server may set from the topic before the model has
        // written anything: its first output is its second node.
        let map_name = spec.kind.as_str();
        let shows_output = |doc: &yrs::Doc| {
            let map = map_json(doc, map_name);
            if map_name == "mindmap" {
                map["nodes"]
                    .as_object()
                    .is_some_and(|nodes| nodes.len() >= 2)
            } else {
                !text(doc, "draft").is_empty() || map.as_object().is_some_and(|map| !map.is_empty())
            }
        };
        let what = format!("job {}", spec.id);
        let mut first_token = None;
        let ended = loop {
            if first_token.is_none() && shows_output(target.doc()) {
                first_token = Some(Instant::now());
            }
            let status =
                map_json(self.lectern.doc(), "lectern")["ai_jobs"][&job_id]["status"].clone();
            if is_final(&status) {
                break Instant::now();
            }
            tokio::select! {
                () = target.updated() => {}
                () = self.lectern.updated() => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    return Err(EvalError::Timeout(what));
                }
            }
        };
        let record = self.finished_job(&job_id, deadline).await?;
        let status = record["status"].as_str().unwrap_or("").to_owned();
        let (value, problem) = if status == "done" {
            // The value may reach this replica just after the status reached the other.
            let settle = Instant::now() + SETTLE_TIMEOUT;
            let settled = target
                .until(settle, &what, |doc| {
                    let value = map_json(doc, map_name);
                    structured::problem(&spec.kind, &value)
                        .is_none()
                        .then_some(value)
                })
                .await;
            match settled {
                Ok((value, _)) => (value, None),
                Err(EvalError::Timeout(_)) => {
                    let value = map_json(target.doc(), map_name);
                    let problem = structured::problem(&spec.kind, &value);
                    (value, problem)
                }
                Err(other) => return Err(other),
            }
        } else {
            (map_json(target.doc(), map_name), None)
        };
        // A failed job's draft should be gone from the document; its removal may arrive
        // just after the status.
        let draft_left = status == "failed"
            && target
                .until(Instant::now() + DRAFT_TIMEOUT, &what, |doc| {
                    text(doc, "draft").is_empty().then_some(())
                })
                .await
                .is_err();
        let error = record["error"].as_str().map(str::to_owned);
        let document_text = structured::strings(&value);
        let degenerate = judge(&status, &document_text, error.as_deref(), || {
            degenerate::check(&document_text, &spec.prompt, false)
        });
        Ok(JobResult {
            id: spec.id.clone(),
            kind: spec.kind.clone(),
            valid: status == "done" && problem.is_none(),
            error,
            status,
            problem,
            degenerate,
            draft_left,
            value,
            timing: timing(started, first_token, ended, &record),
        })
    }

    /// Stops the server.
    pub async fn stop(self) {
        drop(self.chat);
        drop(self.lectern);
        self.server.stop().await;
    }

    async fn start_job(&self, body: &Value) -> Result<Value, EvalError> {
        self.api
            .post(
                &format!("/sessions/{}/ai/jobs", self.session),
                body,
                StatusCode::ACCEPTED,
            )
            .await
    }

    /// The job's record once it is final (its usage is only complete then). The document
    /// can show the end a moment before the record does.
    async fn finished_job(&self, job_id: &str, deadline: Instant) -> Result<Value, EvalError> {
        loop {
            let record = self.api.get(&format!("/ai/jobs/{job_id}")).await?;
            if is_final(&record["status"]) {
                return Ok(record);
            }
            if Instant::now() >= deadline {
                return Err(EvalError::Timeout(format!("job {job_id}'s record")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `Some(Ok)` when every material is ready, `Some(Err)` when one failed, `None` meanwhile.
fn ingested(feed: &Value, materials: &HashMap<String, String>) -> Option<Result<(), EvalError>> {
    let mut ready = 0;
    for (name, id) in materials {
        let entry = &feed[id];
        match entry["status"].as_str() {
            Some("ready") => ready += 1,
            Some("failed") => {
                return Some(Err(EvalError::Unexpected(format!(
                    "{name} could not be ingested: {}",
                    entry["error"]
                ))));
            }
            _ => {}
        }
    }
    (ready == materials.len()).then_some(Ok(()))
}

/// Whether a job's output was degenerate. A done job: `check` its output as shown. A failed
/// one: the server's reason when it failed it for a degenerate output, else `check` of
/// whatever output it left (nothing left is not an empty answer: the job failed before
/// or without writing). A cancelled one: only what it left.
fn judge(
    status: &str,
    shown: &str,
    error: Option<&str>,
    check: impl FnOnce() -> Option<Degenerate>,
) -> Option<Degenerate> {
    let reported = error.and_then(degenerate::reported);
    match status {
        "done" => check(),
        _ if reported.is_some() => reported,
        _ if shown.trim().is_empty() => None,
        _ => check(),
    }
}

fn is_final(status: &Value) -> bool {
    matches!(status.as_str(), Some("done" | "failed" | "cancelled"))
}

/// The assistant message of job `job_id` in a chat document.
fn assistant_message(doc: &yrs::Doc, job_id: &str) -> Option<Value> {
    array_json(doc, "messages")
        .into_iter()
        .rev()
        .find(|message| message["job_id"] == job_id && message["role"] == "assistant")
}

fn timing(
    started: Instant,
    first_token: Option<Instant>,
    ended: Instant,
    record: &Value,
) -> Timing {
    let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let completion_tokens = record["completion_tokens"].as_u64().unwrap_or(0);
    let cached = record["cached"].as_bool().unwrap_or(false);
    let tokens_per_s = first_token
        .map(|first| ended.duration_since(first).as_secs_f64())
        .filter(|seconds| *seconds > 0.0 && completion_tokens > 0 && !cached)
        .map(|seconds| completion_tokens as f64 / seconds);
    Timing {
        first_token_ms: first_token.map(|first| millis(first.duration_since(started))),
        total_ms: millis(ended.duration_since(started)),
        prompt_tokens: record["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens,
        tokens_per_s,
        cached,
    }
}
