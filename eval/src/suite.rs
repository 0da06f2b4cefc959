//! The answer key (`eval/questions.json`) and the course it is about (`eval/course/`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// A question the course materials answer.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Question {
    /// Stable name, used in reports.
    pub id: String,
    /// What a student asks.
    pub question: String,
    /// Facts a right answer states; each a list of acceptable phrasings (see
    /// [`crate::text`] for how they are compared).
    pub key_facts: Vec<Vec<String>>,
    /// File name of the material that answers it.
    pub material: String,
    /// A verbatim quote of the passage that answers it.
    pub quote: String,
}

/// A question the materials do not cover.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OffTopic {
    /// Stable name, used in reports.
    pub id: String,
    /// What a student asks.
    pub question: String,
}

/// A structured AI job to run.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct JobSpec {
    /// Stable name, used in reports.
    pub id: String,
    /// The job kind as the API names it (`quiz`, `flashcards`, `exam`, `lesson_plan`,
    /// `mindmap`).
    pub kind: String,
    /// The topic.
    pub prompt: String,
}

/// The whole suite, as read from its file.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Suite {
    /// The course's materials, file names inside the course directory, uploaded in order.
    pub materials: Vec<String>,
    /// Phrases by which an answer says the materials do not cover a question.
    pub not_covered_phrases: Vec<String>,
    /// Answerable questions.
    pub questions: Vec<Question>,
    /// Questions the materials do not cover.
    pub off_topic: Vec<OffTopic>,
    /// Structured jobs.
    pub jobs: Vec<JobSpec>,
    /// The directory holding the materials (not in the file: next to it, `course/`).
    #[serde(skip)]
    pub course_dir: PathBuf,
}

impl Suite {
    /// The suite in this source tree (`eval/questions.json`).
    pub fn default_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("questions.json")
    }

    /// Reads the suite at `path`; its materials are in `course/` beside it.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut suite: Suite =
            serde_json::from_slice(&bytes).map_err(|source| EvalError::SuiteFormat {
                path: path.to_owned(),
                source,
            })?;
        suite.course_dir = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("course");
        suite.check()?;
        Ok(suite)
    }

    /// Refuses a suite that could only give meaningless figures.
    fn check(&self) -> Result<(), EvalError> {
        let invalid = |reason: String| Err(EvalError::InvalidSuite(reason));
        let mut ids = std::collections::HashSet::new();
        let all_ids = self
            .questions
            .iter()
            .map(|q| &q.id)
            .chain(self.off_topic.iter().map(|q| &q.id))
            .chain(self.jobs.iter().map(|job| &job.id));
        for id in all_ids {
            if !ids.insert(id) {
                return invalid(format!("the id {id} is used twice"));
            }
        }
        for question in &self.questions {
            if !self.materials.contains(&question.material) {
                return invalid(format!(
                    "{}: material {} is not in the course",
                    question.id, question.material
                ));
            }
            if question.key_facts.is_empty()
                || question.key_facts.iter().any(|phrasings| {
                    phrasings.is_empty()
                        || phrasings
                            .iter()
                            .any(|phrasing| crate::text::tokens(phrasing).is_empty())
                })
            {
                return invalid(format!("{}: a key fact without a phrasing", question.id));
            }
            if crate::text::tokens(&question.quote).len() < 3 {
                return invalid(format!("{}: the quote is too short", question.id));
            }
        }
        Ok(())
    }

    /// The bytes of material `name`.
    pub fn material_bytes(&self, name: &str) -> Result<Vec<u8>, EvalError> {
        let path = self.course_dir.join(name);
        std::fs::read(&path).map_err(|source| EvalError::Read { path, source })
    }

    /// The answerable questions, the first `limit` only when given.
    pub fn questions(&self, limit: Option<usize>) -> &[Question] {
        &self.questions[..limit.unwrap_or(usize::MAX).min(self.questions.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{all_facts_found, contains_tokens, tokens};

    fn suite() -> Suite {
        Suite::load(&Suite::default_path()).expect("the suite loads")
    }

    #[test]
    fn the_suite_has_what_the_figures_need() {
        let suite = suite();
        assert!(suite.questions.len() >= 30);
        assert!(suite.off_topic.len() >= 5);
        let kinds: std::collections::BTreeSet<_> =
            suite.jobs.iter().map(|job| job.kind.as_str()).collect();
        for kind in ["quiz", "flashcards", "exam", "lesson_plan", "mindmap"] {
            assert!(kinds.contains(kind), "no {kind} job");
        }
        for name in &suite.materials {
            assert!(!suite.material_bytes(name).expect("material").is_empty());
        }
    }

    /// Each quote states its question's key facts: the key is consistent with its source.
    #[test]
    fn every_quote_states_its_key_facts() {
        for question in suite().questions {
            assert!(
                all_facts_found(&question.quote, &question.key_facts),
                "{}: {:?} not all in {:?}",
                question.id,
                question.key_facts,
                question.quote
            );
        }
    }

    /// Each quote lies inside one passage of its material, as the server extracts and
    /// chunks it; otherwise no search could ever return it whole.
    #[test]
    fn every_quote_is_inside_one_passage_of_its_material() {
        let suite = suite();
        let mut passages = std::collections::HashMap::new();
        for name in &suite.materials {
            let bytes = suite.material_bytes(name).expect("material");
            let format = lectern_library::sniff(&bytes, name).expect("a known format");
            let extracted =
                lectern_library::extract(format, &bytes, &lectern_library::Limits::default())
                    .expect("extracts");
            let chunks = lectern_library::chunk(&extracted, &Default::default());
            let texts: Vec<Vec<String>> = chunks.iter().map(|chunk| tokens(&chunk.text)).collect();
            passages.insert(name.clone(), texts);
        }
        for question in &suite.questions {
            let quote = tokens(&question.quote);
            let found = passages[&question.material]
                .iter()
                .any(|passage| contains_tokens(passage, &quote));
            assert!(found, "{}: quote not in one passage", question.id);
        }
    }
}
