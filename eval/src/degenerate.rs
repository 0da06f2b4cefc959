//! The suite's own check for degenerate output, independent of any check the server makes:
//! an answer that is empty, that loops, or that only repeats the question is counted as
//! degenerate whatever status the job ended with.
//!
//! Thresholds: a loop shows as word 4-grams seen before. In normal prose a few recur ("of
//! the river brennet"), well under 10 % of an answer's 4-grams; a model stuck in a loop
//! repeats most of them (a 512-token loop of one sentence: over 90 %). 30 % leaves a wide
//! margin on both sides. The same on characters (8-grams, 50 %) catches loops without
//! spaces ("........", "aaaa…"), which have too few words for the first rule.

use crate::text::tokens;

/// Word n-gram length for the loop check.
const WORD_NGRAM: usize = 4;
/// Share of repeated word n-grams from which an answer counts as looping.
const MAX_REPEATED_WORD_SHARE: f64 = 0.3;
/// Fewest words for the word rule to apply (shorter answers cannot show a loop).
const MIN_WORDS: usize = 12;
/// Character n-gram length for loops without word boundaries.
const CHAR_NGRAM: usize = 8;
/// Share of repeated character n-grams from which an answer counts as looping.
const MAX_REPEATED_CHAR_SHARE: f64 = 0.5;
/// Fewest non-space characters for the character rule to apply.
const MIN_CHARS: usize = 64;
/// Share of an answer's words taken from the question from which it is an echo.
const MAX_QUESTION_WORD_SHARE: f64 = 0.8;

/// Why an output is degenerate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Degenerate {
    /// No letters or digits at all.
    Empty,
    /// The same word or character sequences over and over (`share` of them repeated).
    Looping {
        /// Share of n-grams that had been seen before in the same output.
        share: f64,
    },
    /// Little more than the question itself.
    EchoesQuestion,
}

/// Whether `output`, written in answer to `question`, is degenerate, and why.
pub fn check(output: &str, question: &str) -> Option<Degenerate> {
    let words = tokens(output);
    if words.is_empty() {
        return Some(Degenerate::Empty);
    }
    if words.len() >= MIN_WORDS {
        let share = repeated_share(&words, WORD_NGRAM);
        if share >= MAX_REPEATED_WORD_SHARE {
            return Some(Degenerate::Looping { share });
        }
    }
    let chars: Vec<char> = output.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.len() >= MIN_CHARS {
        let share = repeated_share(&chars, CHAR_NGRAM);
        if share >= MAX_REPEATED_CHAR_SHARE {
            return Some(Degenerate::Looping { share });
        }
    }
    if echoes(&words, &tokens(question)) {
        return Some(Degenerate::EchoesQuestion);
    }
    None
}

/// Share of the `n`-grams of `items` that already occurred earlier in `items`.
fn repeated_share<T: Eq + std::hash::Hash>(items: &[T], n: usize) -> f64 {
    if items.len() < n {
        return 0.0;
    }
    let mut seen = std::collections::HashSet::new();
    let mut total = 0usize;
    let mut repeated = 0usize;
    for window in items.windows(n) {
        total += 1;
        if !seen.insert(window) {
            repeated += 1;
        }
    }
    repeated as f64 / total as f64
}

/// An answer is an echo when nearly all its words come from the question and it is not
/// much longer than the question: a restatement with nothing added.
fn echoes(answer: &[String], question: &[String]) -> bool {
    if question.len() < 3 || answer.len() > question.len() + question.len() / 2 {
        return false;
    }
    let from_question = answer.iter().filter(|word| question.contains(word)).count();
    from_question as f64 / answer.len() as f64 >= MAX_QUESTION_WORD_SHARE
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
            assert_eq!(check(answer, QUESTION), None, "{answer}");
        }
    }

    #[test]
    fn empty_output_is_degenerate() {
        assert_eq!(check("", QUESTION), Some(Degenerate::Empty));
        assert_eq!(check("  \n ... ", QUESTION), Some(Degenerate::Empty));
    }

    #[test]
    fn loops_are_degenerate() {
        let looping = "Passage: the river is a river. ".repeat(20);
        assert!(matches!(
            check(&looping, QUESTION),
            Some(Degenerate::Looping { share }) if share > 0.8
        ));
        // A good start that then loops.
        let half = format!(
            "The Brennet has a baseflow index of 0.46. {}",
            "It is a river. ".repeat(12)
        );
        assert!(matches!(
            check(&half, QUESTION),
            Some(Degenerate::Looping { .. })
        ));
        // No spaces to count words by.
        let dots = "ab".repeat(60);
        assert!(matches!(
            check(&dots, QUESTION),
            Some(Degenerate::Looping { .. })
        ));
    }

    #[test]
    fn repeating_the_question_is_degenerate() {
        assert_eq!(
            check("The baseflow index of the River Brennet.", QUESTION),
            Some(Degenerate::EchoesQuestion)
        );
        assert_eq!(check(QUESTION, QUESTION), Some(Degenerate::EchoesQuestion));
    }
}
