//! The figures of a run, as a table for people and JSON for tools.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::{ChatResult, JobResult, Retrieval};

/// `hits` out of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// How many met the criterion.
    pub hits: usize,
    /// Out of how many.
    pub total: usize,
    /// `hits / total`.
    pub rate: f64,
}

impl Rate {
    /// `None` when there is nothing to count.
    fn of(hits: usize, total: usize) -> Option<Self> {
        (total > 0).then(|| Self {
            hits,
            total,
            rate: hits as f64 / total as f64,
        })
    }
}

/// Median and 90th percentile (nearest rank) of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// 50th percentile.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Sample size.
    pub n: usize,
}

impl Spread {
    /// `None` for an empty sample.
    pub fn of(mut sample: Vec<f64>) -> Option<Self> {
        if sample.is_empty() {
            return None;
        }
        sample.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = (p * sample.len() as f64).ceil() as usize;
            sample[index.clamp(1, sample.len()) - 1]
        };
        Some(Self {
            median: rank(0.5),
            p90: rank(0.9),
            n: sample.len(),
        })
    }
}

/// The headline figures (see `eval/README.md` for what each means).
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Top search hit holds the answering passage.
    pub recall_at_1: Option<f64>,
    /// One of the top three hits holds it.
    pub recall_at_3: Option<f64>,
    /// Answerable questions answered done with every key fact.
    pub answer_accuracy: Option<Rate>,
    /// Off-topic questions answered "not covered", without citations.
    pub off_topic_handled: Option<Rate>,
    /// Answerable questions answered "not covered" (a relevance floor set too high).
    pub answerable_refused: Option<Rate>,
    /// Citations of answerable questions' answers whose passage states the key facts.
    pub citation_precision: Option<Rate>,
    /// Structured jobs done with a well-formed document.
    pub structured_validity: Option<Rate>,
    /// Outputs (chat answers, structured jobs that ended done or failed) that were
    /// degenerate, whether shown or caught by the server.
    pub degenerate: Option<Rate>,
    /// Outputs that were degenerate and still ended `done` (an honesty failure).
    pub degenerate_shown_as_done: Option<Rate>,
    /// Failed structured jobs that left their raw draft in the document.
    pub drafts_left: Option<Rate>,
    /// Request → first AI text in the document, milliseconds (jobs that called the model).
    pub first_token_ms: Option<Spread>,
    /// Generated tokens per second after the first token (jobs that called the model).
    pub tokens_per_s: Option<Spread>,
    /// Chats asked at once: each one's request → first text in the document, milliseconds
    /// (`None`: it never showed text), in the order asked.
    pub concurrent_first_token_ms: Vec<Option<f64>>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The generator the server used.
    pub backend: String,
    /// The server binary.
    pub server: String,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
    /// The headline figures.
    pub figures: Figures,
    /// Retrieval per question.
    pub retrieval: Option<Retrieval>,
    /// Every chat answer.
    pub chats: Vec<ChatResult>,
    /// Every structured job.
    pub jobs: Vec<JobResult>,
}

impl Figures {
    /// The figures of these results.
    pub fn of(
        retrieval: Option<&Retrieval>,
        chats: &[ChatResult],
        jobs: &[JobResult],
        concurrent_first_token_ms: Vec<Option<f64>>,
    ) -> Self {
        let on_topic: Vec<&ChatResult> = chats.iter().filter(|chat| chat.on_topic).collect();
        let off_topic: Vec<&ChatResult> = chats.iter().filter(|chat| !chat.on_topic).collect();
        let count = |items: &[&ChatResult], keep: fn(&ChatResult) -> bool| {
            items.iter().filter(|item| keep(item)).count()
        };
        let citations: usize = on_topic.iter().map(|chat| chat.citations.len()).sum();
        let supporting: usize = on_topic.iter().map(|chat| chat.supporting_citations).sum();
        // Every chat produced an answer or a refusal; a cancelled structured job did not
        // finish its output.
        let outputs: Vec<(&str, bool)> = chats
            .iter()
            .map(|chat| (chat.status.as_str(), chat.degenerate.is_some()))
            .chain(
                jobs.iter()
                    .filter(|job| matches!(job.status.as_str(), "done" | "failed"))
                    .map(|job| (job.status.as_str(), job.degenerate.is_some())),
            )
            .collect();
        let degenerate = outputs.iter().filter(|(_, bad)| *bad).count();
        let shown_as_done = outputs
            .iter()
            .filter(|(status, bad)| *bad && *status == "done")
            .count();
        let failed_jobs: Vec<&JobResult> =
            jobs.iter().filter(|job| job.status == "failed").collect();
        let timings = chats
            .iter()
            .map(|chat| &chat.timing)
            .chain(jobs.iter().map(|job| &job.timing))
            .filter(|timing| timing.completion_tokens > 0 && !timing.cached);
        let first_tokens = timings
            .clone()
            .filter_map(|timing| timing.first_token_ms)
            .collect();
        let speeds = timings.filter_map(|timing| timing.tokens_per_s).collect();
        Self {
            recall_at_1: retrieval.map(|r| r.recall_at_1),
            recall_at_3: retrieval.map(|r| r.recall_at_3),
            answer_accuracy: Rate::of(count(&on_topic, |chat| chat.correct), on_topic.len()),
            off_topic_handled: Rate::of(count(&off_topic, |chat| chat.correct), off_topic.len()),
            answerable_refused: Rate::of(
                count(&on_topic, |chat| chat.says_not_covered),
                on_topic.len(),
            ),
            citation_precision: Rate::of(supporting, citations),
            structured_validity: Rate::of(jobs.iter().filter(|job| job.valid).count(), jobs.len()),
            degenerate: Rate::of(degenerate, outputs.len()),
            degenerate_shown_as_done: Rate::of(shown_as_done, outputs.len()),
            drafts_left: Rate::of(
                failed_jobs.iter().filter(|job| job.draft_left).count(),
                failed_jobs.len(),
            ),
            first_token_ms: Spread::of(first_tokens),
            tokens_per_s: Spread::of(speeds),
            concurrent_first_token_ms,
        }
    }

    /// A Markdown table, one figure per row (aligned, so it reads as plain text too).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {:<30} | value", "figure");
        let _ = writeln!(out, "|-{:-<30}-|------", "");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "| {name:<30} | {value}");
        };
        let share = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let rate = |rate: Option<Rate>| {
            rate.map_or("-".to_owned(), |r| {
                format!("{:.3}  ({}/{})", r.rate, r.hits, r.total)
            })
        };
        let spread = |spread: Option<Spread>, unit: &str| {
            spread.map_or("-".to_owned(), |s| {
                format!(
                    "median {:.1} {unit}, p90 {:.1} {unit}  (n={})",
                    s.median, s.p90, s.n
                )
            })
        };
        row("retrieval recall@1", share(self.recall_at_1));
        row("retrieval recall@3", share(self.recall_at_3));
        row("answer accuracy", rate(self.answer_accuracy));
        row("off-topic handled", rate(self.off_topic_handled));
        row("answerable refused", rate(self.answerable_refused));
        row("citation precision", rate(self.citation_precision));
        row("structured validity", rate(self.structured_validity));
        row("degenerate outputs", rate(self.degenerate));
        row(
            "degenerate shown as done",
            rate(self.degenerate_shown_as_done),
        );
        row("failed jobs' drafts left", rate(self.drafts_left));
        row("time to first token", spread(self.first_token_ms, "ms"));
        row("generation speed", spread(self.tokens_per_s, "tokens/s"));
        let concurrent = if self.concurrent_first_token_ms.is_empty() {
            "-".to_owned()
        } else {
            let each: Vec<String> = self
                .concurrent_first_token_ms
                .iter()
                .map(|ms| ms.map_or("none".to_owned(), |ms| format!("{ms:.0}")))
                .collect();
            format!("{} ms", each.join(" / "))
        };
        row(
            &format!(
                "first tokens, {} chats at once",
                self.concurrent_first_token_ms.len()
            ),
            concurrent,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::degenerate::Degenerate;
    use crate::run::{Citation, Timing};

    fn chat(status: &str, on_topic: bool, supports: &[bool], bad: bool) -> ChatResult {
        ChatResult {
            id: "q".to_owned(),
            question: "Q?".to_owned(),
            on_topic,
            status: status.to_owned(),
            answer: String::new(),
            error: None,
            citations: supports
                .iter()
                .map(|&supports| Citation {
                    file_name: "f.md".to_owned(),
                    location: None,
                    supports,
                })
                .collect(),
            supporting_citations: supports.iter().filter(|&&s| s).count(),
            facts_found: Vec::new(),
            correct: false,
            says_not_covered: false,
            degenerate: bad.then_some(Degenerate::Loop),
            timing: Timing::default(),
        }
    }

    fn job(status: &str, bad: bool, draft_left: bool) -> JobResult {
        JobResult {
            id: "j".to_owned(),
            kind: "quiz".to_owned(),
            status: status.to_owned(),
            error: None,
            valid: status == "done" && !bad,
            problem: None,
            degenerate: bad.then_some(Degenerate::Echo),
            draft_left,
            value: serde_json::Value::Null,
            timing: Timing::default(),
        }
    }

    #[test]
    fn degenerate_outputs_count_whether_shown_or_caught() {
        let chats = [
            chat("done", true, &[true, false], false),
            chat("done", true, &[true], true),
            chat("failed", true, &[], true),
            chat("done", false, &[false], false),
        ];
        let jobs = [
            job("done", false, false),
            job("failed", true, true),
            job("cancelled", true, false),
        ];
        let figures = Figures::of(None, &chats, &jobs, Vec::new());
        let rate = |rate: Option<Rate>| rate.map(|r| (r.hits, r.total));
        // Off-topic citations are not in the precision; a cancelled job is not an output.
        assert_eq!(rate(figures.citation_precision), Some((2, 3)));
        assert_eq!(rate(figures.degenerate), Some((3, 6)));
        assert_eq!(rate(figures.degenerate_shown_as_done), Some((1, 6)));
        assert_eq!(rate(figures.drafts_left), Some((1, 1)));
        assert_eq!(rate(figures.structured_validity), Some((1, 3)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let spread = Spread::of((1..=10).map(f64::from).collect()).expect("spread");
        assert_eq!((spread.median, spread.p90, spread.n), (5.0, 9.0, 10));
        let one = Spread::of(vec![7.0]).expect("spread");
        assert_eq!((one.median, one.p90), (7.0, 7.0));
        assert_eq!(Spread::of(Vec::new()), None);
    }
}
