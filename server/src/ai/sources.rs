//! What a job's answer is grounded in, and what it cites.
//!
//! Retrieved chunks become numbered passages: chunks below the relevance floor are dropped,
//! neighbouring chunks of one section are merged with their overlap removed (the chunker
//! repeats the end of a chunk at the start of the next), and identical texts (the same
//! handout uploaded twice) appear once, so no text reaches a prompt twice. The passages are
//! then fitted to what the backend's context window leaves after the instructions and the
//! answer, and numbered in the order the model sees them: `[n]` in the prompt, in the
//! answer and in a citation's `marker` all name the same passage.
//!
//! When the answer is complete, it cites the passages it used: those it marked `[n]`, or,
//! when it wrote no valid marker (a 135M model rarely does), those it shares distinctive
//! wording with (see [`used_by_evidence`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use yrs::types::ToJson as _;
use yrs::{Any, Map as _, ReadTxn as _, TransactionMut, WriteTxn as _};

use crate::materials::SearchHit;

/// The whole answer when no passage reaches the relevance floor.
pub(super) const NOT_COVERED: &str = "Your course materials don't cover this.";

/// Tokens kept free besides the instructions and the answer: the chat template's markers
/// around each message and the start of the answer (about 5 per message with SmolLM2's
/// template), and slack for an estimate.
const TEMPLATE_TOKENS: usize = 32;

/// A passage is cut to fit only if at least this many tokens of it would fit; a shorter
/// fragment says too little to be worth a number of its own.
const MIN_CUT_TOKENS: usize = 48;

/// The smallest prompt a backend is left when the answer asks for most of the window (the
/// local backend keeps as much for the prompt).
const MIN_PROMPT_TOKENS: usize = 256;

/// Characters per token assumed for a backend that cannot count (APIs): English prose runs
/// about 4 characters per token with current tokenizers.
const CHARS_PER_TOKEN: usize = 4;

/// A passage as given to the model: one chunk, or neighbouring chunks of one section of a
/// material merged into one text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Passage {
    /// The material.
    pub material_id: String,
    /// Its file name.
    pub file_name: String,
    /// The first and last chunk merged into it.
    pub ordinals: (i32, i32),
    /// 1-based PDF page.
    pub page: Option<i32>,
    /// Heading path.
    pub heading: Option<String>,
    /// First and last line of a text or Markdown file.
    pub lines: Option<(i32, i32)>,
    /// The text, each piece once.
    pub text: String,
    /// The best similarity of its chunks to the query.
    pub score: f32,
}

impl Passage {
    fn from_hit(hit: &SearchHit) -> Self {
        let chunk = &hit.chunk;
        Self {
            material_id: chunk.material_id.clone(),
            file_name: hit.file_name.clone(),
            ordinals: (chunk.ordinal, chunk.ordinal),
            page: chunk.page,
            heading: chunk.heading.clone(),
            lines: chunk.line_start.zip(chunk.line_end),
            text: chunk.text.clone(),
            score: hit.score,
        }
    }

    /// Where it is inside its file: `p. 3, Cells > Mitochondria, lines 4–9` (empty when
    /// nothing is known beyond the file).
    pub fn location(&self) -> String {
        let mut parts = Vec::new();
        if let Some(page) = self.page {
            parts.push(format!("p. {page}"));
        }
        if let Some(heading) = &self.heading {
            parts.push(heading.clone());
        }
        match self.lines {
            Some((first, last)) if first == last => parts.push(format!("line {first}")),
            Some((first, last)) => parts.push(format!("lines {first}–{last}")),
            None => {}
        }
        parts.join(", ")
    }

    /// The file and the location: `cells.pdf, p. 3`.
    pub fn place(&self) -> String {
        let location = self.location();
        if location.is_empty() {
            self.file_name.clone()
        } else {
            format!("{}, {location}", self.file_name)
        }
    }

    /// How the prompt shows it: `[n] (file, location) text`.
    pub fn entry(&self, number: usize) -> String {
        format!("[{number}] ({}) {}\n", self.place(), self.text)
    }

    /// Whether `next` continues this passage: the following chunk of the same section.
    fn continued_by(&self, next: &SearchHit) -> bool {
        let chunk = &next.chunk;
        chunk.material_id == self.material_id
            && chunk.ordinal == self.ordinals.1.saturating_add(1)
            && chunk.page == self.page
            && chunk.heading == self.heading
    }

    /// Appends the following chunk, without the text it repeats from this one.
    fn extend(&mut self, next: &SearchHit) {
        let chunk = &next.chunk;
        let repeated = match chunk.overlap_chars {
            Some(chars) => {
                let chars = usize::try_from(chars).unwrap_or(0);
                chunk
                    .text
                    .char_indices()
                    .nth(chars)
                    .map_or(chunk.text.len(), |(index, _)| index)
            }
            // Stored before overlaps were recorded: find it in the texts.
            None => repeated_prefix(&self.text, &chunk.text),
        };
        let rest = &chunk.text[repeated..];
        if repeated == 0 {
            self.text.push_str("\n\n");
        }
        self.text.push_str(rest);
        self.ordinals.1 = chunk.ordinal;
        self.lines = match (self.lines, chunk.line_start.zip(chunk.line_end)) {
            (Some((first, _)), Some((_, last))) => Some((first, last)),
            (lines, None) | (None, lines) => lines,
        };
        self.score = self.score.max(next.score);
    }
}

/// The length in bytes of the longest start of `next` that `previous` ends with, starting
/// and ending where words do (the chunker's overlap is whole words).
fn repeated_prefix(previous: &str, next: &str) -> usize {
    let ends_word = |end: usize| end == next.len() || next[end..].starts_with(char::is_whitespace);
    let starts_word = |start: usize| start == 0 || previous[..start].ends_with(char::is_whitespace);
    next.char_indices()
        .map(|(index, _)| index)
        .chain(std::iter::once(next.len()))
        .filter(|&end| end > 0 && ends_word(end) && previous.ends_with(&next[..end]))
        .filter(|&end| starts_word(previous.len() - end))
        .max()
        .unwrap_or(0)
}

/// The passages for a prompt from search hits (best first): hits below `floor` dropped,
/// neighbouring chunks of one section merged, repeated texts dropped; best first.
pub(super) fn passages(hits: &[SearchHit], floor: Option<f32>) -> Vec<Passage> {
    let mut kept: Vec<&SearchHit> = hits
        .iter()
        .filter(|hit| floor.is_none_or(|floor| hit.score >= floor))
        .collect();
    // In document order, so neighbours meet.
    kept.sort_by(|a, b| {
        (a.chunk.material_id.as_str(), a.chunk.ordinal)
            .cmp(&(b.chunk.material_id.as_str(), b.chunk.ordinal))
    });
    let mut merged: Vec<Passage> = Vec::new();
    for hit in kept {
        match merged.last_mut() {
            // The same chunk twice.
            Some(last)
                if last.material_id == hit.chunk.material_id
                    && last.ordinals.1 == hit.chunk.ordinal => {}
            Some(last) if last.continued_by(hit) => last.extend(hit),
            _ => merged.push(Passage::from_hit(hit)),
        }
    }
    merged.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut seen = HashSet::new();
    merged.retain(|passage| seen.insert(normalised(&passage.text)));
    merged
}

fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a job counts tokens: exactly with the backend's tokenizer, or estimated.
#[derive(Clone)]
pub(super) struct Counter(Option<Arc<dyn lectern_ai::backend::Backend>>);

impl Counter {
    /// Counts with `backend` if it can (the local model), else estimates.
    pub fn new(backend: &Arc<dyn lectern_ai::backend::Backend>) -> Self {
        Self(Some(backend.clone()))
    }

    /// Tokens `text` takes. Blocking when the backend tokenises: call it off the reactor.
    pub fn count(&self, text: &str) -> usize {
        self.0
            .as_ref()
            .and_then(|backend| backend.count_tokens(text))
            .unwrap_or_else(|| text.chars().count().div_ceil(CHARS_PER_TOKEN))
    }
}

/// Tokens left for passages in a prompt whose other text is `instructions`, for a backend
/// with a `context`-token window and answers of up to `max_tokens`.
pub(super) fn source_budget(
    counter: &Counter,
    context: usize,
    max_tokens: usize,
    instructions: &[&str],
) -> usize {
    let prompt = context.saturating_sub(max_tokens).max(MIN_PROMPT_TOKENS);
    let used: usize = instructions.iter().map(|text| counter.count(text)).sum();
    prompt.saturating_sub(used + TEMPLATE_TOKENS)
}

/// Characters of a chunk as the library cuts them (`ChunkConfig::default`), overlap
/// included.
const CHUNK_CHARS: usize = 800;

/// Most chunks one job retrieves (the search API's own cap is 50).
const MAX_CHUNKS: usize = 48;

/// How many chunks fill the prompt of a `context`-token window whose answer may take
/// `max_tokens` (estimated, before the instructions are counted: [`fit`] cuts to the
/// exact budget afterwards), from 1 to [`MAX_CHUNKS`].
pub(super) fn chunks_for_window(context: usize, max_tokens: usize) -> usize {
    let prompt = context.saturating_sub(max_tokens).max(MIN_PROMPT_TOKENS);
    (prompt.saturating_mul(CHARS_PER_TOKEN) / CHUNK_CHARS).clamp(1, MAX_CHUNKS)
}

/// The passages that fit into `budget` tokens, in order, numbered from 1 by position: whole
/// while they fit, then the first that does not is cut at a word (if a useful part fits),
/// and the rest left out.
pub(super) fn fit(passages: Vec<Passage>, budget: usize, counter: &Counter) -> Vec<Passage> {
    let mut left = budget;
    let mut fitted = Vec::new();
    for mut passage in passages {
        let number = fitted.len() + 1;
        let cost = counter.count(&passage.entry(number));
        if cost <= left {
            left -= cost;
            fitted.push(passage);
            continue;
        }
        if left >= MIN_CUT_TOKENS
            && let Some(text) = cut_to_fit(&passage, number, left, counter)
        {
            passage.text = text;
            fitted.push(passage);
        }
        break;
    }
    fitted
}

/// The longest start of the passage's text, cut after a word and marked `…`, whose entry
/// takes at most `left` tokens.
fn cut_to_fit(passage: &Passage, number: usize, left: usize, counter: &Counter) -> Option<String> {
    let ends: Vec<usize> = passage
        .text
        .char_indices()
        .filter(|(_, c)| c.is_whitespace())
        .map(|(index, _)| index)
        .collect();
    let candidate = |end: usize| format!("{}…", passage.text[..end].trim_end());
    let fits = |end: usize| {
        let mut cut = passage.clone();
        cut.text = candidate(end);
        counter.count(&cut.entry(number)) <= left
    };
    // Binary search over word ends: the entry grows with the cut.
    let (mut low, mut high) = (0, ends.len());
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(ends[mid - 1]) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    (low > 0).then(|| candidate(ends[low - 1]))
}

/// The sentences of a passage as [`condense`] weighs them: paragraphs split at blank lines,
/// a line that starts a list item, table row or heading begins a new one (other line breaks,
/// as PDFs wrap lines, join with a space), and each of those splits after `.`, `?` or `!`
/// followed by a space and a capital, a digit or an opening quote.
pub(super) fn sentences(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        let starts_block = line.is_empty()
            || line.starts_with(['-', '*', '#', '|', '>', '•'])
            || line.split_once(". ").is_some_and(|(number, _)| {
                !number.is_empty() && number.chars().all(|c| c.is_ascii_digit())
            });
        if starts_block && !current.is_empty() {
            blocks.push(std::mem::take(&mut current));
        }
        if !line.is_empty() {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
        // A heading is a line of its own.
        if line.starts_with('#') {
            blocks.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
        .iter()
        .flat_map(|block| split_sentences(block))
        .collect()
}

fn split_sentences(block: &str) -> Vec<String> {
    let chars: Vec<(usize, char)> = block.char_indices().collect();
    let mut found = Vec::new();
    let mut start = 0;
    for window in chars.windows(3) {
        let [(index, end), (_, space), (next_index, next)] = *window else {
            continue;
        };
        let begins = next.is_uppercase() || next.is_ascii_digit() || "\"'(“‘".contains(next);
        if index < start {
            continue;
        }
        // Not after a list item's number ("1. Boil the water").
        let numbered = block[start..index].chars().all(|c| c.is_ascii_digit());
        if matches!(end, '.' | '?' | '!') && space.is_whitespace() && begins && !numbered {
            found.push(block[start..=index].trim().to_owned());
            start = next_index;
        }
    }
    found.push(block[start..].trim().to_owned());
    found.retain(|sentence| !sentence.is_empty());
    found
}

/// How much of the question's wording each of `sentences` shares, 0..=1: the question's
/// content words (see [`is_content`]) found in the sentence, each weighted by how rare it is
/// among the sentences (a word every sentence has tells them apart no better than none),
/// over the weight of them all. Words match on their first [`STEM_CHARS`] characters, so
/// "records", "recorded" and "recording" are one word.
pub(super) fn overlaps(question: &str, sentences: &[String]) -> Vec<f32> {
    let stems = |text: &str| -> HashSet<String> {
        words(text)
            .into_iter()
            .filter(|word| is_content(word))
            .map(|word| word.chars().take(STEM_CHARS).collect())
            .collect()
    };
    let asked = stems(question);
    let found: Vec<HashSet<String>> = sentences.iter().map(|s| stems(s)).collect();
    let count = found.len() as f32;
    let weight = |stem: &String| {
        let with = found
            .iter()
            .filter(|sentence| sentence.contains(stem))
            .count() as f32;
        (1.0 + count / with.max(0.5)).ln()
    };
    let weights: HashMap<&String, f32> = asked.iter().map(|stem| (stem, weight(stem))).collect();
    let total: f32 = weights.values().sum();
    found
        .iter()
        .map(|sentence| {
            let shared: f32 = weights
                .iter()
                .filter(|(stem, _)| sentence.contains(**stem))
                .map(|(_, weight)| weight)
                .sum();
            if total > 0.0 { shared / total } else { 0.0 }
        })
        .collect()
}

/// Characters of a word that [`overlaps`] compares.
const STEM_CHARS: usize = 5;

/// How much a sentence next to a heavy one counts of that one's weight: a sentence that
/// answers ("It brought 84 mm of rain.") is kept with the one that names the subject
/// ("Storm Ottilie reached the coast on 3 March.").
const NEIGHBOUR_WEIGHT: f32 = 0.9;

/// The passages cut to the sentences that share most of the question's wording (see
/// [`overlaps`]), `budget` tokens of sentences in all, each passage's kept sentences in
/// their order (`…` where sentences were left out around them); passages with none kept are
/// dropped. The passages were retrieved for their meaning; this keeps, inside them, what
/// the question names, so a small model reads a few sentences instead of whole chunks.
pub(super) fn condense(
    passages: Vec<Passage>,
    question: &str,
    budget: usize,
    counter: &Counter,
) -> Vec<Passage> {
    let split: Vec<Vec<String>> = passages.iter().map(|p| sentences(&p.text)).collect();
    let all: Vec<String> = split.iter().flatten().cloned().collect();
    let kept = heaviest(&split, &overlaps(question, &all), budget, counter);
    passages
        .into_iter()
        .zip(kept)
        .zip(&split)
        .filter_map(|((mut passage, kept), sentences)| {
            let mut text = String::new();
            let mut previous: Option<usize> = None;
            for index in kept {
                if !text.is_empty() {
                    text.push(' ');
                }
                if previous.map_or(index > 0, |previous| index > previous + 1) {
                    text.push_str("… ");
                }
                text.push_str(&sentences[index]);
                previous = Some(index);
            }
            let last = previous?;
            if last + 1 < sentences.len() {
                text.push_str(" …");
            }
            passage.text = text;
            Some(passage)
        })
        .collect()
}

/// Which sentences of each passage (`split`, weighed by `weights` in the same order,
/// flattened) fit `budget` tokens, heaviest first, ascending per passage. A sentence's
/// weight is the larger of its own and [`NEIGHBOUR_WEIGHT`] times a neighbour's; one that
/// does not fit is passed over for a shorter one.
fn heaviest(
    split: &[Vec<String>],
    weights: &[f32],
    budget: usize,
    counter: &Counter,
) -> Vec<Vec<usize>> {
    let mut candidates = Vec::new();
    let mut offset = 0;
    for (passage, sentences) in split.iter().enumerate() {
        let own = weights.get(offset..offset + sentences.len()).unwrap_or(&[]);
        offset += sentences.len();
        let neighbour = |other: Option<usize>| {
            other
                .and_then(|other| own.get(other))
                .map_or(f32::MIN, |weight| weight * NEIGHBOUR_WEIGHT)
        };
        for (index, &weight) in own.iter().enumerate() {
            let weight = weight
                .max(neighbour(index.checked_sub(1)))
                .max(neighbour(Some(index + 1)));
            candidates.push((weight, passage, index));
        }
    }
    // Heaviest first; ties in passage and sentence order.
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut kept = vec![Vec::new(); split.len()];
    let mut left = budget;
    for (_, passage, index) in candidates {
        // A separator token besides the sentence's own.
        let cost = counter.count(&split[passage][index]) + 1;
        if cost <= left {
            left -= cost;
            kept[passage].push(index);
        }
    }
    kept.iter_mut().for_each(|indices| indices.sort_unstable());
    kept
}

/// The numbered passages block of a prompt.
pub(super) fn numbered(passages: &[Passage]) -> String {
    passages
        .iter()
        .enumerate()
        .map(|(index, passage)| passage.entry(index + 1))
        .collect()
}

/// The numbers (from 1) of the passages `answer` used: those it marks `[n]` (`[1]`,
/// `[1, 3]`, `[2][3]`) when it marks any of them, else those it shows evidence of using
/// (see [`used_by_evidence`]). Ascending.
pub(super) fn cited(answer: &str, question: &str, passages: &[Passage]) -> Vec<usize> {
    let marked: Vec<usize> = markers(answer)
        .into_iter()
        .filter(|number| (1..=passages.len()).contains(number))
        .collect();
    if !marked.is_empty() {
        return marked;
    }
    passages
        .iter()
        .enumerate()
        .filter(|(_, passage)| used_by_evidence(answer, question, &passage.text))
        .map(|(index, _)| index + 1)
        .collect()
}

/// Every number inside square brackets holding only numbers, commas and spaces; ascending,
/// once each.
fn markers(text: &str) -> Vec<usize> {
    let mut found = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let inside = &rest[..close];
        if !inside.trim().is_empty()
            && inside
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
        {
            found.extend(
                inside
                    .split(',')
                    .filter_map(|number| number.trim().parse::<usize>().ok()),
            );
        }
    }
    found.into_iter().collect()
}

/// Shared word trigrams needed to count a passage as used.
const MIN_SHARED_TRIGRAMS: usize = 2;
/// Shared content-word pairs that count too (a paraphrase that keeps key terms).
const MIN_SHARED_PAIRS: usize = 3;

/// Whether `answer` shows it used `passage`, judged by wording it shares with it beyond
/// the question's.
///
/// The rule: both texts become lowercase words (letters and digits); a *content word* is
/// one not in a short list of English function words, with at least 3 characters or a
/// digit. The answer's word trigrams with at least two content words, and its pairs of
/// adjacent content words, are compared with the passage's, leaving out any the question
/// itself contains (restating the question shows nothing). The passage is used when they
/// share at least [`MIN_SHARED_TRIGRAMS`] trigrams (a copied clause of four or more words)
/// or [`MIN_SHARED_PAIRS`] content-word pairs (a paraphrase keeping several key terms).
/// Passages on the same topic share single words, rarely runs of them.
pub(super) fn used_by_evidence(answer: &str, question: &str, passage: &str) -> bool {
    let (answer, question, passage) = (words(answer), words(question), words(passage));
    let shared = |shingles: fn(&[String]) -> HashSet<Vec<&str>>| -> usize {
        let asked = shingles(&question);
        let source = shingles(&passage);
        shingles(&answer)
            .into_iter()
            .filter(|shingle| !asked.contains(shingle) && source.contains(shingle))
            .count()
    };
    shared(trigrams) >= MIN_SHARED_TRIGRAMS || shared(content_pairs) >= MIN_SHARED_PAIRS
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn is_content(word: &str) -> bool {
    (word.chars().count() >= 3 || word.chars().any(|c| c.is_ascii_digit()))
        && !STOPWORDS.contains(&word)
}

fn trigrams(words: &[String]) -> HashSet<Vec<&str>> {
    words
        .windows(3)
        .filter(|window| window.iter().filter(|word| is_content(word)).count() >= 2)
        .map(|window| window.iter().map(String::as_str).collect())
        .collect()
}

fn content_pairs(words: &[String]) -> HashSet<Vec<&str>> {
    words
        .windows(2)
        .filter(|window| window.iter().all(|word| is_content(word)))
        .map(|window| window.iter().map(String::as_str).collect())
        .collect()
}

/// English function words of three letters or more (shorter words never count).
const STOPWORDS: &[&str] = &[
    "about", "above", "after", "again", "all", "also", "and", "any", "are", "because", "been",
    "before", "being", "between", "both", "but", "can", "could", "did", "does", "doing", "down",
    "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "her",
    "here", "hers", "him", "his", "how", "into", "its", "itself", "just", "more", "most", "nor",
    "not", "now", "off", "once", "only", "other", "our", "out", "over", "own", "same", "she",
    "should", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "too", "under", "until", "very", "was", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you",
    "your", "yes", "may", "might", "must", "shall", "one", "two", "use", "used", "uses", "using",
    "passage", "passages", "answer", "question",
];

/// A citation as written into a chat message: the fields clients have always read
/// (`material_id`, `file_name`, `page`, `heading`) and, since grounded answers, the
/// passage's `marker` (`[n]` in the answer), its first chunk (`ordinal`), its line range
/// and a readable `location`.
pub(super) fn citation(marker: usize, passage: &Passage) -> Any {
    let number = |value: i32| Any::from(f64::from(value));
    let optional = |value: Option<i32>| value.map_or(Any::Null, number);
    let marker = u32::try_from(marker).map_or(Any::Null, |marker| Any::from(f64::from(marker)));
    Any::Map(Arc::new(HashMap::from([
        (
            "material_id".to_owned(),
            Any::from(passage.material_id.as_str()),
        ),
        (
            "file_name".to_owned(),
            Any::from(passage.file_name.as_str()),
        ),
        ("page".to_owned(), optional(passage.page)),
        (
            "heading".to_owned(),
            passage.heading.as_deref().map_or(Any::Null, Any::from),
        ),
        ("marker".to_owned(), marker),
        ("ordinal".to_owned(), number(passage.ordinals.0)),
        (
            "line_start".to_owned(),
            optional(passage.lines.map(|l| l.0)),
        ),
        ("line_end".to_owned(), optional(passage.lines.map(|l| l.1))),
        ("location".to_owned(), Any::from(passage.location())),
    ])))
}

/// The root map of a quiz, flashcards, exam or lesson plan document holding the passages
/// it cites: marker (`"1"` for `[1]`) → [`citation`].
pub(super) const SOURCES_MAP: &str = "sources";

/// Writes into [`SOURCES_MAP`] the citation of every passage that the document in root map
/// `map_name` marks (`[n]` in any of its texts), replacing what was there. Markers naming
/// no passage are left out: nothing could open them.
pub(super) fn cite_document(txn: &mut TransactionMut<'_>, map_name: &str, passages: &[Passage]) {
    let mut texts = String::new();
    if let Some(value) = txn.get_map(map_name) {
        collect_strings(&value.to_json(txn), &mut texts);
    }
    let sources = txn.get_or_insert_map(SOURCES_MAP);
    sources.clear(txn);
    for number in markers(&texts) {
        if let Some(passage) = passages.get(number.wrapping_sub(1)) {
            sources.insert(txn, number.to_string(), citation(number, passage));
        }
    }
}

/// Every string inside `value`, each followed by a line break.
fn collect_strings(value: &Any, out: &mut String) {
    match value {
        Any::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        Any::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Any::Map(entries) => entries.values().for_each(|item| collect_strings(item, out)),
        Any::Null | Any::Undefined | Any::Bool(_) | Any::Number(_) | Any::Buffer(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use lectern_db::materials::MaterialChunk;

    use super::*;

    fn hit(
        material: &str,
        ordinal: i32,
        text: &str,
        overlap: Option<i32>,
        score: f32,
    ) -> SearchHit {
        SearchHit {
            chunk: MaterialChunk {
                material_id: material.into(),
                ordinal,
                page: None,
                heading: Some("Cells".into()),
                text: text.into(),
                line_start: Some(ordinal * 10 + 1),
                line_end: Some(ordinal * 10 + 12),
                overlap_chars: overlap,
            },
            file_name: format!("{material}.md"),
            score,
        }
    }

    fn passage(text: &str) -> Passage {
        Passage::from_hit(&hit("m", 0, text, Some(0), 0.5))
    }

    #[test]
    fn sentences_split_at_their_ends_items_and_paragraphs_not_inside_numbers() {
        let text = "## Rain gauge\nThe gauge holds 3.5 mm before it tips. It is\nemptied at \
                    09:00! Why? \"Because\" we said so.\n\n- Item one\n- Item two\n1. Step one. \
                    e.g. this stays";
        assert_eq!(
            sentences(text),
            [
                "## Rain gauge",
                "The gauge holds 3.5 mm before it tips.",
                "It is emptied at 09:00!",
                "Why?",
                "\"Because\" we said so.",
                "- Item one",
                "- Item two",
                "1. Step one. e.g. this stays",
            ]
        );
    }

    #[test]
    fn the_heaviest_sentences_and_their_neighbours_fit_the_budget() {
        let counter = Counter(None);
        let sentence = |text: &str| text.to_owned();
        let split = vec![
            ["Aaaa bbbb.", "Cccc dddd.", "Eeee ffff.", "Gggg hhhh."]
                .map(sentence)
                .to_vec(),
            ["Iiii jjjj.", "Kkkk llll."].map(sentence).to_vec(),
        ];
        let weights = [0.1, 0.2, 0.8, 0.1, 0.75, 0.3];
        let cost = counter.count("Aaaa bbbb.") + 1;
        // The best (0.8), the second passage's best (0.75), then of the best's two
        // neighbours (0.72 each) the first; then the other.
        assert_eq!(
            heaviest(&split, &weights, 3 * cost, &counter),
            [vec![1, 2], vec![0]]
        );
        assert_eq!(
            heaviest(&split, &weights, 4 * cost, &counter),
            [vec![1, 2, 3], vec![0]]
        );
        assert_eq!(
            heaviest(&split, &weights, cost, &counter),
            [vec![2], Vec::<usize>::new()]
        );
        assert_eq!(
            heaviest(&split, &weights, cost - 1, &counter),
            [Vec::<usize>::new(), Vec::new()]
        );
    }

    #[test]
    fn overlap_weighs_the_question_words_a_sentence_shares_by_their_rarity() {
        let sentences = [
            "The rain gauge is emptied every morning.",
            "The station records rainfall with a tipping-bucket gauge.",
            "The school is on a hill.",
        ]
        .map(str::to_owned);
        let weights = overlaps("When is the rain gauge emptied?", &sentences);
        // "rain", "gauge" and "emptied" (stems "rain", "gauge", "empti") against "gauge"
        // alone, which two sentences share; nothing.
        assert!(weights[0] > 0.99, "{weights:?}");
        assert!(weights[1] > 0.0 && weights[1] < 0.3, "{weights:?}");
        assert!(weights[2].abs() < f32::EPSILON, "{weights:?}");
        // "recorded" matches "records".
        assert!(overlaps("What is recorded?", &sentences)[1] > 0.99);
    }

    #[test]
    fn condensing_keeps_the_sentences_a_question_names_in_their_order() {
        let counter = Counter(None);
        let first = passage(
            "The station stands by the school gate. Its rain gauge tips at 0.2 mm. The \
             gauge is emptied at 09:00 every day. Wind is measured on the roof.",
        );
        let second = passage("Storm Ottilie arrived on 3 March. It brought 84 mm of rain.");
        let question = "When is the rain gauge emptied?";
        let budget = counter.count("The gauge is emptied at 09:00 every day.") + 1;

        let condensed = condense(
            vec![first.clone(), second.clone()],
            question,
            budget,
            &counter,
        );
        let texts: Vec<&str> = condensed.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["… The gauge is emptied at 09:00 every day. …"]);

        // Its neighbours before the storm's rain, which shares only "rain".
        let condensed = condense(vec![first, second], question, 3 * budget, &counter);
        let texts: Vec<&str> = condensed.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "… Its rain gauge tips at 0.2 mm. The gauge is emptied at 09:00 every day. \
              Wind is measured on the roof."
            ]
        );
    }

    #[test]
    fn neighbouring_chunks_merge_without_their_overlap() {
        let hits = [
            hit("m", 3, "Gamma delta epsilon.", Some(11), 0.4),
            hit("m", 1, "Alpha beta gamma.", Some(0), 0.9),
            hit("m", 2, "gamma. Gamma delta", Some(6), 0.5),
            hit("n", 7, "Unrelated text here.", Some(0), 0.6),
        ];
        let found = passages(&hits, None);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].text, "Alpha beta gamma. Gamma delta epsilon.");
        assert_eq!(found[0].ordinals, (1, 3));
        assert_eq!(found[0].lines, Some((11, 42)));
        assert_eq!(found[0].score, 0.9);
        assert_eq!(found[0].location(), "Cells, lines 11–42");
        assert_eq!(found[1].material_id, "n");
    }

    #[test]
    fn overlaps_of_chunks_stored_without_a_count_are_found_in_the_text() {
        let hits = [
            hit("m", 1, "One two three four.", None, 0.9),
            hit("m", 2, "three four. Five six.", None, 0.8),
            // No overlap: joined as paragraphs.
            hit("m", 3, "Seven eight.", None, 0.7),
        ];
        let found = passages(&hits, None);
        assert_eq!(
            found[0].text,
            "One two three four. Five six.\n\nSeven eight."
        );
        // A partial word is not an overlap.
        assert_eq!(repeated_prefix("a cart", "art museum"), 0);
        assert_eq!(repeated_prefix("a cart", "cart museum"), 4);
    }

    #[test]
    fn the_floor_drops_passages_and_repeated_texts_appear_once() {
        let hits = [
            hit("m", 1, "Cells  divide.", Some(0), 0.7),
            hit("copy", 1, "Cells divide.", Some(0), 0.6),
            hit("m", 5, "Barely related.", Some(0), 0.1),
        ];
        let found = passages(&hits, Some(0.3));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].material_id, "m");
        assert!(passages(&hits, Some(0.95)).is_empty());
        assert_eq!(passages(&hits, None).len(), 2);
    }

    #[test]
    fn passages_fit_the_budget_in_order_and_the_last_is_cut_at_a_word() {
        let counter = Counter(None);
        let words = |n: usize| vec!["word"; n].join(" ");
        let list = vec![
            passage(&words(40)),
            passage(&words(200)),
            passage(&words(40)),
        ];
        let first = counter.count(&list[0].entry(1));
        // Room for the first and about half the second.
        let fitted = fit(list.clone(), first + 130, &counter);
        assert_eq!(fitted.len(), 2);
        assert_eq!(fitted[0], list[0]);
        assert!(fitted[1].text.ends_with("word…"), "{}", fitted[1].text);
        assert!(fitted[1].text.len() < list[1].text.len());
        assert!(counter.count(&numbered(&fitted)) <= first + 130);
        // Too little room for a useful part: left out.
        assert_eq!(fit(list.clone(), first + 10, &counter).len(), 1);
        assert_eq!(fit(list, 10_000, &counter).len(), 3);
    }

    #[test]
    fn the_source_budget_is_what_instructions_and_answer_leave() {
        let counter = Counter(None);
        let instructions = "x".repeat(400); // 100 tokens estimated
        assert_eq!(
            source_budget(&counter, 2048, 512, &[&instructions]),
            2048 - 512 - 100 - TEMPLATE_TOKENS
        );
        assert_eq!(
            source_budget(&counter, 1024, 1000, &[]),
            MIN_PROMPT_TOKENS - TEMPLATE_TOKENS
        );
    }

    #[test]
    fn a_larger_window_retrieves_more_chunks() {
        // The local model: 2048 tokens, 512 for the answer.
        assert_eq!(chunks_for_window(2048, 512), 7);
        assert_eq!(chunks_for_window(8192, 512), 38);
        assert_eq!(chunks_for_window(128_000, 4096), MAX_CHUNKS);
        assert_eq!(chunks_for_window(512, 512), 1);
    }

    #[test]
    fn markers_name_passages_in_every_common_spelling() {
        assert_eq!(markers("a [1] b [3, 2][2] c [x] [] [1-2]"), vec![1, 2, 3]);
        let list = [passage("a"), passage("b")];
        assert_eq!(cited("Only this [2], not [7].", "q", &list), vec![2]);
    }

    #[test]
    fn evidence_is_shared_wording_beyond_the_question() {
        let etc = "The electron transport chain sits in the inner membrane of the \
                   mitochondrion, where it pumps protons to drive ATP synthase.";
        let photosynthesis = "Photosynthesis in plant chloroplasts turns light, water and \
                              carbon dioxide into glucose and oxygen.";
        let cells = "Cells are the basic unit of life; every living organism is made \
                     of cells, including the mitochondrion-rich muscle cells.";
        let question = "Where is the electron transport chain?";
        // A copied clause.
        let copied = "It pumps protons to drive ATP synthase.";
        assert!(used_by_evidence(copied, question, etc));
        assert!(!used_by_evidence(copied, question, photosynthesis));
        assert!(!used_by_evidence(copied, question, cells));
        // A paraphrase keeping the key terms.
        let paraphrase = "Protons pumped across the inner membrane drive ATP synthase \
                          in the mitochondrion.";
        assert!(used_by_evidence(paraphrase, question, etc));
        assert!(!used_by_evidence(paraphrase, question, cells));
        // Restating the question, or saying it is not there, uses nothing.
        let restated = "The electron transport chain is a topic of this question.";
        assert!(!used_by_evidence(restated, question, etc));
        assert!(!used_by_evidence(NOT_COVERED, question, etc));
        let list = [passage(photosynthesis), passage(etc), passage(cells)];
        assert_eq!(cited(copied, question, &list), vec![2]);
        assert!(cited("I don't know.", question, &list).is_empty());
    }

    #[test]
    fn a_citation_carries_its_marker_and_location() {
        let mut with_page = passage("text");
        with_page.page = Some(3);
        with_page.heading = None;
        with_page.lines = None;
        assert_eq!(with_page.place(), "m.md, p. 3");
        let Any::Map(map) = citation(2, &with_page) else {
            panic!("a map");
        };
        assert_eq!(map["marker"], Any::from(2.0));
        assert_eq!(map["page"], Any::from(3.0));
        assert_eq!(map["heading"], Any::Null);
        assert_eq!(map["line_start"], Any::Null);
        assert_eq!(map["location"], Any::from("p. 3"));
        assert_eq!(map["material_id"], Any::from("m"));
        assert_eq!(map["file_name"], Any::from("m.md"));
    }
}
