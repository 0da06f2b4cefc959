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
use crate::text::{contains_phrase, contains_tokens, facts_found, tokens};
use crate::{EvalError, structured};

/// Passages asked of the search API per question (recall is measured at 1 and at 3).
pub const SEARCH_K: usize = 3;

/// How long the course may take to become searchable.
const INGEST_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// The file name of each citation.
    pub citations: Vec<String>,
    /// Citations naming the answering material (on-topic questions only).
    pub right_citations: usize,
    /// Per key fact, whether the answer states it (on-topic only).
    pub facts_found: Vec<bool>,
    /// On-topic: done and every key fact stated. Off-topic: done, says the materials do not
    /// cover it, and cites nothing.
    pub correct: bool,
    /// Whether the answer says the materials do not cover the question.
    pub says_not_covered: bool,
    /// The suite's own degeneracy verdict.
    pub degenerate: Option<Degenerate>,
    /// Timing and usage.
    pub timing: Timing,
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
    /// The suite's own degeneracy verdict on the document's text (done jobs only).
    pub degenerate: Option<Degenerate>,
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
    /// Material id by file name.
    materials: HashMap<String, String>,
    chat: Replica,
    lectern: Replica,
    not_covered_phrases: Vec<String>,
    job_timeout: Duration,
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
        let mut feed = Replica::open(
            &ws,
            &format!("classroom/{classroom}/materials"),
            &api.token,
        )
        .await?;
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
        let lectern =
            Replica::open(&ws, &format!("session/{session}/lectern"), &api.token).await?;
        Ok(Self {
            server,
            api,
            classroom,
            session,
            materials,
            chat,
            lectern,
            not_covered_phrases: suite.not_covered_phrases.clone(),
            job_timeout,
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

    /// Asks an answerable question in the session chat and judges the answer.
    pub async fn ask(&mut self, question: &Question) -> Result<ChatResult, EvalError> {
        self.chat(&question.id, &question.question, Some(question))
            .await
    }

    /// Asks a question the materials do not cover and judges the answer.
    pub async fn ask_off_topic(&mut self, id: &str, question: &str) -> Result<ChatResult, EvalError> {
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
        let (facts, correct, right_citations) = match key {
            Some(key) => {
                let facts = facts_found(&answer_text, &key.key_facts);
                let correct = status == "done" && facts.iter().all(|found| *found);
                let material_id = self.materials.get(&key.material);
                let right = citations
                    .iter()
                    .filter(|citation| {
                        citation["file_name"] == key.material.as_str()
                            || material_id.is_some_and(|id| citation["material_id"] == id.as_str())
                    })
                    .count();
                (facts, correct, right)
            }
            None => (
                Vec::new(),
                status == "done" && says_not_covered && citations.is_empty(),
                0,
            ),
        };
        Ok(ChatResult {
            id: id.to_owned(),
            question: question.to_owned(),
            on_topic: key.is_some(),
            error: message["error"]
                .as_str()
                .or(record["error"].as_str())
                .map(str::to_owned),
            citations: citations
                .iter()
                .map(|citation| {
                    citation["file_name"]
                        .as_str()
                        .unwrap_or("<no file name>")
                        .to_owned()
                })
                .collect(),
            right_citations,
            facts_found: facts,
            correct,
            says_not_covered,
            degenerate: degenerate::check(&answer_text, question),
            timing: timing(started, first_token, ended, &record),
            answer: answer_text,
            status,
        })
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
        // structured job streams its raw output into `draft` (a mind map grows its map).
        let map_name = spec.kind.as_str();
        let shows_output = |doc: &yrs::Doc| {
            !text(doc, "draft").is_empty()
                || map_json(doc, map_name)
                    .as_object()
                    .is_some_and(|map| !map.is_empty())
        };
        let what = format!("job {}", spec.id);
        let mut first_token = None;
        let ended = loop {
            if first_token.is_none() && shows_output(target.doc()) {
                first_token = Some(Instant::now());
            }
            let status = map_json(self.lectern.doc(), "lectern")["ai_jobs"][&job_id]["status"].clone();
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
        let degenerate = (status == "done")
            .then(|| degenerate::check(&structured::strings(&value), &spec.prompt))
            .flatten();
        Ok(JobResult {
            id: spec.id.clone(),
            kind: spec.kind.clone(),
            valid: status == "done" && problem.is_none(),
            error: record["error"].as_str().map(str::to_owned),
            status,
            problem,
            degenerate,
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
fn ingested(
    feed: &Value,
    materials: &HashMap<String, String>,
) -> Option<Result<(), EvalError>> {
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

fn timing(started: Instant, first_token: Option<Instant>, ended: Instant, record: &Value) -> Timing {
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
