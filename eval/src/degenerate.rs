//! Degenerate output: empty, looping, or an echo of the question.
//!
//! The rules are the server's own (`lectern_ai::quality`), applied here to what a client
//! sees rather than to what the server decided: one definition of "degenerate" in the
//! project, so the suite and the server cannot disagree on thresholds. What the suite adds
//! is the point of view. It judges the text in the document whatever status the job ended
//! with, so a degenerate answer shown as `done` (a server that does not check, or checks
//! less than it should) is counted; and a job the server failed *because* its output was
//! degenerate is counted too, from the reason it gives, since the model did produce a
//! degenerate output even if no student saw it.
//!
//! The suite knows less than the server: only the question (not the system prompt or the
//! passages), so an answer that pastes the passages is not caught here unless the server
//! reports it.

use lectern_ai::quality::{self, Context, Flaw};
use serde::Serialize;

/// Why an output is degenerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Degenerate {
    /// No letters or digits at all.
    Empty,
    /// The same phrase over and over.
    Loop,
    /// A copy of the question (or, as the server reported, of its instructions or sources).
    Echo,
    /// A translation that is its source text.
    Untranslated,
}

impl From<Flaw> for Degenerate {
    fn from(flaw: Flaw) -> Self {
        match flaw {
            Flaw::Empty => Self::Empty,
            Flaw::Degenerate => Self::Loop,
            Flaw::Echo => Self::Echo,
            Flaw::Untranslated => Self::Untranslated,
        }
    }
}

/// Every flaw the server can report (kept in step with `From<Flaw>` above, whose match
/// fails to compile when `Flaw` grows).
const FLAWS: [Flaw; 4] = [
    Flaw::Empty,
    Flaw::Degenerate,
    Flaw::Echo,
    Flaw::Untranslated,
];

/// Whether `output`, written in answer to `question`, is degenerate. `hit_token_limit`:
/// the generation was cut off by its token limit (a loop running into the cap).
pub fn check(output: &str, question: &str, hit_token_limit: bool) -> Option<Degenerate> {
    let context = Context {
        instructions: &[question],
        hit_token_limit,
        ..Context::default()
    };
    quality::check(output, &context).err().map(Degenerate::from)
}

/// The flaw a failed job's `error` reports, when the server failed it for a degenerate
/// output.
pub fn reported(error: &str) -> Option<Degenerate> {
    FLAWS
        .into_iter()
        .find(|flaw| error.contains(flaw.reason()))
        .map(Degenerate::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUESTION: &str = "What is the baseflow index of the River Brennet?";

    #[test]
    fn normal_answers_pass() {
        for answer in [
            "The Brennet has a baseflow index of 0.46 [1].",
            "0.46",
            "Your course materials don't cover this.",
            "The baseflow index of the River Brennet is 0.46, which means that 46 per cent \
             of the water in the river over a year has come through the ground rather than \
             straight off the surface. Groundwater from the Ketterby Sandstone keeps the \
             river flowing between storms, so the lower river is subdued.",
        ] {
            assert_eq!(check(answer, QUESTION, false), None, "{answer}");
        }
    }

    #[test]
    fn empty_output_is_degenerate() {
        assert_eq!(check("", QUESTION, false), Some(Degenerate::Empty));
        assert_eq!(check("  \n ... ", QUESTION, false), Some(Degenerate::Empty));
    }

    #[test]
    fn loops_are_degenerate() {
        // The local model's old failure: "Passage: …" until the token cap.
        let looping = "Passage: the river is a river. ".repeat(20);
        assert_eq!(check(&looping, QUESTION, true), Some(Degenerate::Loop));
        assert_eq!(check(&looping, QUESTION, false), Some(Degenerate::Loop));
        // A good start that then loops until it is cut off.
        let half = format!(
            "The Brennet has a baseflow index of 0.46. {}",
            "It is a river. ".repeat(12)
        );
        assert_eq!(check(&half, QUESTION, true), Some(Degenerate::Loop));
    }

    #[test]
    fn repeating_the_question_is_degenerate() {
        assert_eq!(
            check("The baseflow index of the River Brennet.", QUESTION, false),
            Some(Degenerate::Echo)
        );
        assert_eq!(check(QUESTION, QUESTION, false), Some(Degenerate::Echo));
    }

    #[test]
    fn a_reason_given_by_the_server_is_recognised() {
        let error = format!("generation failed: {}", Flaw::Degenerate.reason());
        assert_eq!(reported(&error), Some(Degenerate::Loop));
        assert_eq!(reported(Flaw::Echo.reason()), Some(Degenerate::Echo));
        assert_eq!(reported("the model server answered 500"), None);
    }
}
