//! Is a generated answer worth showing? A pure check of finished text jobs, so a job whose
//! model produced nothing usable ends `failed` with a reason instead of `done`.
//!
//! Small models (the embedded SmolLM2-135M above all) fail in a few recognisable ways, and a
//! job that streams the result into the class's documents must not call that a success:
//! - **empty**: no letter or digit at all (whitespace, stray punctuation, an immediate
//!   end-of-text);
//! - **degenerate**: greedy decoding fell into a loop, the same phrase or line over and
//!   over, often until the token limit;
//! - **echo**: the model repeated its instructions or the question instead of answering,
//!   or pasted the course passages back at length;
//! - **untranslated**: a translation that is (nearly) the text it was given.
//!
//! Everything works on words: lowercased runs of letters and digits, with each character of
//! scripts written without spaces (Chinese, Japanese) counted as a word of its own, so
//! Markdown, punctuation and spacing never decide a verdict. The thresholds below were
//! chosen on real outputs of the local model and of normal answers (see each constant);
//! they err on the side of letting a weak but real answer through.

use std::collections::HashSet;
use std::fmt;

/// Word n-gram length used to find loops. Five words: a normal answer rarely repeats a
/// five-word phrase, while a loop repeats all of its phrases.
const LOOP_NGRAM: usize = 5;

/// Share of an answer's words that are later repetitions of an earlier five-word phrase
/// above which the answer is a loop. A loop of k copies scores (k − 1)/k, so three copies
/// of anything score ≥ 0.66 and fail; good prose measured ≤ 0.175 (see
/// [`CUT_OFF_LOOP_SHARE`]).
const LOOP_SHARE: f64 = 0.5;

/// Fewest words for the loop share to mean anything: below this an answer is too short to
/// loop (a repeated four-word answer is an echo or empty, not a loop).
const LOOP_MIN_WORDS: usize = 3 * LOOP_NGRAM;

/// Longest repeating period (in words) looked for at the end of an answer cut off by the
/// token limit: a loop of whole sentences or list items is rarely longer.
const TAIL_MAX_PERIOD: usize = 60;

/// Share of repeated words (as [`LOOP_SHARE`]) above which an answer cut off by its token
/// limit is a loop. Measured here on the local model (SmolLM2-135M, 4-bit, greedy, 25
/// answers): imitating the prompt's passage list ("[3] (cells.pdf, p. 3) …" line after
/// line) until the 512-token cap scored 0.30 and 0.25; its cut-off notes 0.07 and 0.20
/// (weak, but not loops); its answers that ended by themselves 0.00. Good prose scores
/// less: 522 windows of 120–350 words from the eval course and this repository's
/// documentation, median 0.00, 95th percentile 0.06, highest 0.175 (a table-heavy README).
/// An answer that ended by itself needs [`LOOP_SHARE`].
const CUT_OFF_LOOP_SHARE: f64 = 0.22;

/// Share of an answer cut off by its token limit that a periodic tail (at least three
/// repetitions of one period) must cover to fail it: a model still looping when it was cut
/// off wasted its budget on the loop even if it began well.
const TAIL_LOOP_SHARE: f64 = 0.25;

/// Share of an answer made of its instructions or question (copied in runs of at least
/// [`INSTRUCTION_RUN`] words) above which it is an echo of them.
const INSTRUCTION_ECHO_SHARE: f64 = 0.8;

/// Words a copied run from the instructions must have to count (or the whole instruction
/// when it is shorter): an answer may repeat three words of a question ("photosynthesis
/// makes glucose"), not the question.
const INSTRUCTION_RUN: usize = 6;

/// Words a copied run from the material (passages, notes) must have to count: quoting a
/// clause is normal, a run of twelve words is a paste.
const MATERIAL_RUN: usize = 12;

/// Share of an answer pasted from the material (in runs of at least [`MATERIAL_RUN`]
/// words) above which it is an echo of it…
const MATERIAL_ECHO_SHARE: f64 = 0.8;

/// …provided that many words were pasted: a one-sentence answer quoting the notes'
/// definition is an answer, a page of passages is not.
const MATERIAL_ECHO_MIN_WORDS: usize = 40;

/// Words a run shared with the source must have to count against a translation: names,
/// numbers and technical terms survive translation one or two words at a time, whole
/// phrases do not.
const UNTRANSLATED_RUN: usize = 3;

/// Share of a translation made of phrases of its source above which it was not translated.
const UNTRANSLATED_SHARE: f64 = 0.5;

/// What is wrong with an answer. Its [`reason`](Flaw::reason) is shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// No letter or digit at all.
    Empty,
    /// A loop: the same phrase or line repeated over much of the answer.
    Degenerate,
    /// A copy of the instructions, the question or the course passages.
    Echo,
    /// A translation that is (nearly) its source text.
    Untranslated,
}

impl Flaw {
    /// A short sentence for the user, saying what went wrong.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Empty => "the model returned an empty answer",
            Self::Degenerate => "the model got stuck repeating itself; the answer was discarded",
            Self::Echo => {
                "the model repeated its instructions or sources instead of answering; the \
                 answer was discarded"
            }
            Self::Untranslated => "the model returned the text untranslated",
        }
    }
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// What an answer is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The request's own words: system instructions and the user's question. An answer
    /// made mostly of them is an echo, however short.
    pub instructions: &'a [&'a str],
    /// What the answer draws on (retrieved passages, class notes). Quoting it is fine; an
    /// answer that is mostly a long verbatim paste of it is an echo.
    pub material: &'a [&'a str],
    /// For a translation, the text translated.
    pub translated_from: Option<&'a str>,
    /// The generation stopped at its token limit rather than ending by itself.
    pub hit_token_limit: bool,
}

/// Checks a finished answer; `Err` says what is wrong with it.
pub fn check(output: &str, context: &Context<'_>) -> Result<(), Flaw> {
    let words = words(output);
    if words.is_empty() {
        return Err(Flaw::Empty);
    }
    if is_loop(&words, context.hit_token_limit) {
        return Err(Flaw::Degenerate);
    }
    if let Some(source) = context.translated_from {
        let source = words_of(source);
        if copied_share(&words, &source, UNTRANSLATED_RUN) >= UNTRANSLATED_SHARE {
            return Err(Flaw::Untranslated);
        }
    }
    let instructions = context.instructions.iter().map(|text| words_of(text));
    let mut from_instructions = vec![false; words.len()];
    for source in instructions {
        mark_copied(&words, &source, INSTRUCTION_RUN, &mut from_instructions);
    }
    if share(&from_instructions) >= INSTRUCTION_ECHO_SHARE {
        return Err(Flaw::Echo);
    }
    let mut from_material = vec![false; words.len()];
    for source in context.material {
        mark_copied(&words, &words_of(source), MATERIAL_RUN, &mut from_material);
    }
    let pasted = from_material.iter().filter(|&&copied| copied).count();
    if pasted >= MATERIAL_ECHO_MIN_WORDS && share(&from_material) >= MATERIAL_ECHO_SHARE {
        return Err(Flaw::Echo);
    }
    Ok(())
}

/// The words of `text`: lowercased runs of letters and digits; each character of a script
/// written without spaces is a word by itself.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if is_unspaced_script(c) {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            words.push(c.to_string());
        } else if c.is_alphanumeric() {
            current.extend(c.to_lowercase());
        } else if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn words_of(text: &str) -> Vec<String> {
    words(text)
}

/// Han, kana and similar scripts, written without spaces between words.
fn is_unspaced_script(c: char) -> bool {
    matches!(
        c,
        '\u{3040}'..='\u{30ff}' // hiragana, katakana
            | '\u{3400}'..='\u{4dbf}' // CJK extension A
            | '\u{4e00}'..='\u{9fff}' // CJK unified ideographs
            | '\u{f900}'..='\u{faff}' // CJK compatibility ideographs
            | '\u{0e00}'..='\u{0e7f}' // Thai
    )
}

/// Whether `words` loop: most of them repeat earlier phrases, or (cut off by the token
/// limit) the answer ends in a periodic run.
fn is_loop(words: &[String], hit_token_limit: bool) -> bool {
    if words.len() >= LOOP_MIN_WORDS {
        let share = repeated_share(words);
        let limit = if hit_token_limit {
            CUT_OFF_LOOP_SHARE
        } else {
            LOOP_SHARE
        };
        if share >= limit {
            return true;
        }
    }
    if hit_token_limit {
        let tail = periodic_tail(words);
        return tail >= LOOP_MIN_WORDS && tail as f64 >= TAIL_LOOP_SHARE * words.len() as f64;
    }
    false
}

/// Share of words covered by a [`LOOP_NGRAM`]-word phrase that already occurred earlier.
fn repeated_share(words: &[String]) -> f64 {
    let mut seen: HashSet<&[String]> = HashSet::new();
    let mut repeated = vec![false; words.len()];
    for (start, gram) in words.windows(LOOP_NGRAM).enumerate() {
        if !seen.insert(gram) {
            repeated[start..start + LOOP_NGRAM].fill(true);
        }
    }
    share(&repeated)
}

/// The number of words at the end of `words` that repeat with one period (of at most
/// [`TAIL_MAX_PERIOD`] words) at least three times; 0 if none does.
fn periodic_tail(words: &[String]) -> usize {
    let mut longest = 0;
    for period in 1..=TAIL_MAX_PERIOD.min(words.len() / 3) {
        // How many words, from the end, equal the word one period earlier.
        let matching = (period..words.len())
            .rev()
            .take_while(|&i| words[i] == words[i - period])
            .count();
        // `matching + period` words are periodic; three repetitions need two periods of
        // matches.
        if matching >= 2 * period {
            longest = longest.max(matching + period);
        }
    }
    longest
}

/// Marks in `copied` the words of `output` inside a run of at least `run` words (or all of
/// `source`, if shorter) that also occurs in `source`.
fn mark_copied(output: &[String], source: &[String], run: usize, copied: &mut [bool]) {
    let run = run.min(source.len());
    if run == 0 || output.len() < run {
        return;
    }
    let grams: HashSet<&[String]> = source.windows(run).collect();
    for (start, gram) in output.windows(run).enumerate() {
        if grams.contains(gram) {
            copied[start..start + run].fill(true);
        }
    }
}

/// Share of `output` copied from `source` in runs of at least `run` words.
fn copied_share(output: &[String], source: &[String], run: usize) -> f64 {
    let mut copied = vec![false; output.len()];
    mark_copied(output, source, run, &mut copied);
    share(&copied)
}

fn share(marks: &[bool]) -> f64 {
    if marks.is_empty() {
        return 0.0;
    }
    marks.iter().filter(|&&marked| marked).count() as f64 / marks.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSTEM: &str = "You are a teaching assistant. Answer the question using only the \
                          numbered passages. Cite the passages you use by number in square \
                          brackets, like [1]. If the passages do not contain the answer, say \
                          so briefly.";
    const QUESTION: &str = "Where is the electron transport chain?";
    const PASSAGE: &str = "The electron transport chain sits in the inner membrane of the \
                           mitochondrion. It pumps protons across the membrane, and the flow \
                           of protons back through ATP synthase makes ATP. Oxygen is the \
                           final electron acceptor and water is formed. Without oxygen the chain stops, and \
                           the cell falls back on glycolysis, which makes far less ATP from each \
                           molecule of glucose.";

    fn chat(output: &str, hit_token_limit: bool) -> Result<(), Flaw> {
        check(
            output,
            &Context {
                instructions: &[SYSTEM, QUESTION],
                material: &[PASSAGE],
                translated_from: None,
                hit_token_limit,
            },
        )
    }

    #[test]
    fn good_answers_pass() {
        for answer in [
            "In the inner membrane of the mitochondrion [1].",
            "Mitochondria.",
            "42",
            "The passages do not say.",
            // Quoting a clause of the passage is answering, not pasting.
            "The electron transport chain sits in the inner membrane of the mitochondrion [1]. \
             It pumps protons, and ATP synthase uses their flow back to make ATP [1].",
            // Notes with a repeated structure ("- **...**: The ...") are not a loop.
            "## Mitochondria\n- **Where**: the inner membrane holds the chain.\n- **What**: \
             the chain pumps protons.\n- **Why**: the proton flow drives ATP synthase.\n- \
             **End**: oxygen accepts the electrons and water forms.\n- **Result**: the cell \
             has ATP for its work.",
            "細胞はミトコンドリアの内膜で電子伝達を行います。",
        ] {
            assert_eq!(chat(answer, false), Ok(()), "{answer}");
            assert_eq!(chat(answer, true), Ok(()), "{answer} (cut off)");
        }
    }

    #[test]
    fn nothing_readable_is_empty() {
        for output in ["", "   \n\t", "...", "**\n\n---\n"] {
            assert_eq!(chat(output, false), Err(Flaw::Empty), "{output:?}");
        }
    }

    #[test]
    fn a_loop_is_degenerate_even_after_a_good_start() {
        // The old local model's failure: "Passage: …" until the token limit.
        let looping = "Passage: the chain is in the membrane. ".repeat(30);
        assert_eq!(chat(&looping, false), Err(Flaw::Degenerate));
        assert_eq!(chat(&looping, true), Err(Flaw::Degenerate));
        // Three copies of one line are enough.
        let three = "The chain is in the inner membrane of the mitochondrion.\n".repeat(3);
        assert_eq!(chat(&three, false), Err(Flaw::Degenerate));
        // A good start, then a loop until cut off (a third of the answer).
        let start = "The electron transport chain is found in the inner membrane of the \
                     mitochondrion, where it pumps protons so that ATP synthase can make ATP \
                     for the cell. ";
        let tail = format!("{start}{}", "and ATP ".repeat(10));
        assert_eq!(chat(&tail, true), Err(Flaw::Degenerate));
        // The same text that ended by itself is a (repetitive) answer, not a loop.
        assert_eq!(chat(&tail, false), Ok(()));
        // One repeated word loops too.
        assert_eq!(chat(&"ATP ".repeat(40), true), Err(Flaw::Degenerate));
    }

    /// A real output of the local model (SmolLM2-135M, 4-bit, greedy) asked "What do
    /// ribosomes make?" over the cells PDF: it imitated the prompt's passage list until the
    /// 512-token cap.
    const IMITATED_PASSAGES: &str = include_str!("../tests/fixtures/imitated_passages.txt");

    #[test]
    fn an_answer_cut_off_while_imitating_the_passage_list_is_degenerate() {
        assert_eq!(chat(IMITATED_PASSAGES, true), Err(Flaw::Degenerate));
        // Had it ended by itself, it would be a weak answer, not a loop.
        assert_eq!(chat(IMITATED_PASSAGES, false), Ok(()));
    }

    #[test]
    fn repeating_the_question_or_instructions_is_an_echo() {
        assert_eq!(chat(QUESTION, false), Err(Flaw::Echo));
        assert_eq!(
            chat("Question: Where is the electron transport chain", false),
            Err(Flaw::Echo)
        );
        assert_eq!(
            chat(
                "Answer the question using only the numbered passages. Cite the passages you \
                 use by number in square brackets",
                false
            ),
            Err(Flaw::Echo)
        );
    }

    #[test]
    fn pasting_the_passages_back_is_an_echo_quoting_them_is_not() {
        assert_eq!(chat(PASSAGE, false), Err(Flaw::Echo));
        assert_eq!(
            chat(&format!("Passage [1]: {PASSAGE}"), false),
            Err(Flaw::Echo)
        );
        // A one-sentence quote is below the paste size.
        let quote = "The electron transport chain sits in the inner membrane of the mitochondrion.";
        assert_eq!(chat(quote, false), Ok(()));
    }

    fn translation(output: &str, source: &str) -> Result<(), Flaw> {
        check(
            output,
            &Context {
                instructions: &["You are a translator. Translate the user's text into French."],
                material: &[],
                translated_from: Some(source),
                hit_token_limit: false,
            },
        )
    }

    #[test]
    fn a_translation_that_is_its_source_is_untranslated() {
        let source = "# Cells\nCells are the basic unit of life. The River Brennet has a \
                      baseflow index of 0.46, measured at Ketterby in 2019.";
        assert_eq!(translation(source, source), Err(Flaw::Untranslated));
        // Nearly the source: a word or two changed.
        let near = "# Cells\nCells are the basic unit of life. La River Brennet has a baseflow \
                    index of 0.46, measured at Ketterby en 2019.";
        assert_eq!(translation(near, source), Err(Flaw::Untranslated));
        // A real translation keeps names and numbers, not phrases.
        let french = "# Cellules\nLes cellules sont l'unité de base de la vie. La rivière \
                      Brennet a un indice de débit de base de 0,46, mesuré à Ketterby en 2019.";
        assert_eq!(translation(french, source), Ok(()));
        let japanese = "# 細胞\n細胞は生命の基本単位です。ブレネット川の基底流量指数は0.46です。";
        assert_eq!(translation(japanese, source), Ok(()));
    }

    #[test]
    fn every_flaw_has_a_reason_for_people() {
        for flaw in [
            Flaw::Empty,
            Flaw::Degenerate,
            Flaw::Echo,
            Flaw::Untranslated,
        ] {
            let reason = flaw.to_string();
            assert!(reason.starts_with("the model"), "{reason}");
        }
    }
}
