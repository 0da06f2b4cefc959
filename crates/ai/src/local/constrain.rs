//! Constrained decoding: the local model can only write text that a JSON Schema or a Lark
//! grammar accepts, so structured answers are valid by construction instead of repaired.
//!
//! [llguidance] turns the grammar into a token mask per step. It needs the bytes of every
//! token: they come from our own `tokenizers::Tokenizer` (its JSON form, read by
//! llguidance's byte-level decoder), because the crate that adapts `tokenizers` for it is
//! built on another major version than the workspace's. Each step the loop asks
//! [`Constraint::mask`] to set disallowed logits to −∞, samples, then feeds the token back
//! with [`Constraint::accept`]; tokens the grammar leaves no choice about (a JSON key, a
//! closing bracket) come back from `accept` so one forward pass can read them together.
//!
//! The grammar ends the answer: once it is complete and nothing may follow, the matcher
//! stops; when it could end or go on (a mind map may get another line), the model's own
//! end-of-turn token is allowed and decides.

use std::sync::Arc;

use llguidance::api::{ParserLimits, StopReason, TopLevelGrammar};
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use tokenizers::Tokenizer;

use super::decoder::ModelFacts;
use crate::backend::{BackendError, OutputFormat};

/// How JSON is written under a schema: compact (`","` and `":"`, no whitespace between
/// tokens, which would only spend tokens and let a small model drift into blank runs),
/// and only the escapes a classroom text needs (no `\uXXXX`, no control characters).
const JSON_OPTIONS: &str = r#"{"whitespace_flexible": false, "json_allowed_escapes": "\"\\"}"#;

/// The token vocabulary as llguidance sees it, and a factory for parsers over it. Built
/// once per loaded model (~0.1–0.3 s); shared by every generation.
pub(crate) struct Grammars {
    /// Compiles grammars against the vocabulary.
    factory: ParserFactory,
    /// Whether each token id writes a letter (or any non-ASCII byte, which is mostly
    /// letters of other scripts). Repetition control only judges such tokens, so
    /// punctuation, digits and whitespace — the repeated skeleton of JSON and outlines —
    /// are never penalised (see `sample.rs`).
    content_tokens: Arc<[bool]>,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars")
            .field("vocab_size", &self.content_tokens.len())
            .finish_non_exhaustive()
    }
}

impl Grammars {
    /// Builds the vocabulary from `tokenizer` for a model with `facts.vocab_size` logits.
    pub(crate) fn new(tokenizer: &Tokenizer, facts: &ModelFacts) -> Result<Self, String> {
        let json = serde_json::to_value(tokenizer)
            .map_err(|error| format!("cannot read the tokenizer's vocabulary: {error}"))?;
        let mut words = llguidance::token_bytes_from_tokenizer_json(&json)
            .map_err(|error| format!("cannot read the tokenizer's token bytes: {error}"))?;
        if words.len() > facts.vocab_size {
            return Err(format!(
                "the tokenizer has {} tokens but the model only {} logits",
                words.len(),
                facts.vocab_size
            ));
        }
        // Logits the tokenizer has no token for (padding) get no bytes: never allowed.
        words.resize(facts.vocab_size, Vec::new());
        let content_tokens = words
            .iter()
            .map(|bytes| {
                bytes.first() != Some(&TokTrie::SPECIAL_TOKEN_MARKER)
                    && bytes.iter().any(|&b| b.is_ascii_alphabetic() || b >= 0x80)
            })
            .collect();
        let vocab_size = u32::try_from(facts.vocab_size)
            .map_err(|_| format!("vocabulary of {} tokens is too large", facts.vocab_size))?;
        let info = TokRxInfo {
            tok_end_of_turn: Some(facts.eos_token_id),
            ..TokRxInfo::new(vocab_size, facts.eos_token_id)
        };
        if facts
            .stop_token_ids
            .iter()
            .any(|&id| id as usize >= facts.vocab_size)
        {
            return Err("a stop token is outside the vocabulary".to_owned());
        }
        let trie = TokTrie::from(&info, &words);
        let trie = if facts.stop_token_ids.is_empty() {
            trie
        } else {
            trie.with_eos_tokens(&facts.stop_token_ids)
        };
        let env: TokEnv = Arc::new(Vocabulary {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|error| format!("cannot set up constrained decoding: {error}"))?;
        // Warnings go to our log, not stderr; errors must not carry the text generated so
        // far (it is the class's content).
        factory.quiet();
        *factory.limits_mut() = ParserLimits {
            verbose_errors: false,
            ..ParserLimits::default()
        };
        Ok(Self {
            factory,
            content_tokens,
        })
    }

    /// Per token id, whether it writes letters (see the field).
    pub(crate) fn content_tokens(&self) -> Arc<[bool]> {
        self.content_tokens.clone()
    }

    /// A fresh constraint for `format`; `None` for free text. A grammar or schema that
    /// does not compile is the caller's mistake: [`BackendError::Rejected`].
    pub(crate) fn constraint(
        &self,
        format: &OutputFormat,
    ) -> Result<Option<Constraint>, BackendError> {
        let (name, grammar) = match format {
            OutputFormat::Text => return Ok(None),
            OutputFormat::JsonSchema {
                name,
                lark: Some(lark),
                ..
            } => (name, TopLevelGrammar::from_lark(lark.clone())),
            OutputFormat::JsonSchema {
                name,
                schema,
                lark: None,
            } => {
                let mut schema = schema.clone();
                if let Some(object) = schema.as_object_mut() {
                    let options = serde_json::from_str(JSON_OPTIONS)
                        .map_err(|error| BackendError::Inference(error.to_string()))?;
                    object.insert("x-guidance".to_owned(), options);
                }
                (name, TopLevelGrammar::from_json_schema(schema))
            }
            OutputFormat::Grammar { name, lark } => {
                (name, TopLevelGrammar::from_lark(lark.clone()))
            }
        };
        let parser = self.factory.create_parser(grammar).map_err(|error| {
            BackendError::Rejected(format!(
                "the output format {name:?} does not compile: {error}"
            ))
        })?;
        let mut matcher = Matcher::new(Ok(parser));
        for warning in matcher.grammar_warnings() {
            tracing::debug!(format = %name, %warning, "grammar warning");
        }
        Ok(Some(Constraint { matcher }))
    }
}

/// The grammar's state during one generation.
pub(crate) struct Constraint {
    /// llguidance's parser, advanced by every accepted token.
    matcher: Matcher,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Whether the grammar is complete and allows nothing more: the answer is over.
    pub(crate) fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Sets the logits of every token the grammar does not allow next to −∞. The model's
    /// stop tokens stay allowed exactly when the text so far is a complete answer.
    pub(crate) fn mask(&mut self, logits: &mut [f32]) -> Result<(), BackendError> {
        let mask = self
            .matcher
            .compute_mask()
            .map_err(|error| self.failed(error))?;
        if mask.is_zero() {
            return Err(BackendError::Inference(
                "the output grammar allows no token here".to_owned(),
            ));
        }
        for (id, logit) in logits.iter_mut().enumerate() {
            if !mask.is_allowed(id as TokenId) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances the grammar by the sampled `token`; returns the tokens the grammar now
    /// forces (already accepted), which the caller must emit and feed to the model next.
    pub(crate) fn accept(&mut self, token: u32) -> Result<Vec<u32>, BackendError> {
        self.matcher
            .consume_token(token)
            .map_err(|error| self.failed(error))?;
        if self.matcher.is_stopped() {
            return Ok(Vec::new());
        }
        let forced = self.matcher.consume_ff_tokens();
        if let Some(error) = self.matcher.get_error() {
            return Err(BackendError::Inference(format!(
                "constrained decoding failed: {error}"
            )));
        }
        Ok(forced)
    }

    /// The error for a failed matcher step (an internal error: the grammar compiled, and
    /// only allowed tokens are ever fed).
    fn failed(&self, error: impl std::fmt::Display) -> BackendError {
        let reason = match self.matcher.stop_reason() {
            StopReason::LexerTooComplex | StopReason::ParserTooComplex => {
                "the output grammar is too complex"
            }
            _ => "constrained decoding failed",
        };
        BackendError::Inference(format!("{reason}: {error}"))
    }
}

/// The tokenizer environment llguidance works with: the byte trie of the vocabulary, and
/// our tokenizer for text the grammar forces (so forced tokens are the ones the model
/// would read for that text).
struct Vocabulary {
    /// Every token's bytes, as a trie.
    trie: TokTrie,
    /// The model's own tokenizer.
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        // Forced text is whole UTF-8 in practice; anything else is tokenised byte-wise by
        // the trie rather than altered.
        match std::str::from_utf8(bytes) {
            Ok(text) => match self.tokenizer.encode(text, false) {
                Ok(encoding) => encoding.get_ids().to_vec(),
                Err(_) => self.trie.greedy_tokenize(bytes),
            },
            Err(_) => self.trie.greedy_tokenize(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::{Value, json};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    use super::*;

    /// The two stop tokens of the test vocabulary, after its 256 byte tokens.
    const IM_END: u32 = 256;
    const END_OF_TEXT: u32 = 257;

    /// A byte-level tokenizer with one token per byte (no merges) and two special tokens:
    /// the smallest vocabulary on which every text can be written.
    fn byte_tokenizer() -> Tokenizer {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let mut vocab: serde_json::Map<String, Value> = alphabet
            .iter()
            .enumerate()
            .map(|(id, c)| (c.to_string(), Value::from(id)))
            .collect();
        vocab.insert("<|im_end|>".into(), IM_END.into());
        vocab.insert("<|endoftext|>".into(), END_OF_TEXT.into());
        let special = |id: u32, content: &str| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        };
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false,
                                "trim_offsets": true, "use_regex": true});
        let json = json!({
            "version": "1.0",
            "added_tokens": [special(IM_END, "<|im_end|>"), special(END_OF_TEXT, "<|endoftext|>")],
            "normalizer": null,
            "pre_tokenizer": byte_level,
            "post_processor": null,
            "decoder": byte_level,
            "model": {"type": "BPE", "vocab": vocab, "merges": []},
        });
        Tokenizer::from_str(&json.to_string()).expect("tokenizer")
    }

    fn facts() -> ModelFacts {
        ModelFacts {
            format: 1,
            context_length: 2048,
            vocab_size: 260, // two logits more than tokens, as padded models have
            layers: 1,
            kv_heads: 1,
            head_dim: 1,
            bos_token_id: 1,
            eos_token_id: IM_END,
            stop_token_ids: vec![IM_END, END_OF_TEXT],
            im_start: "<|im_start|>".into(),
            im_end: "<|im_end|>".into(),
            default_system: String::new(),
            logits_last_only: true,
        }
    }

    fn grammars() -> (Grammars, Tokenizer) {
        let tokenizer = byte_tokenizer();
        let grammars = Grammars::new(&tokenizer, &facts()).expect("grammars");
        (grammars, tokenizer)
    }

    /// Decodes with a "model" whose logits are random noise: whatever it prefers, the
    /// constraint must keep the text inside the grammar. Returns the text and whether it
    /// ended by a stop token (rather than by the grammar finishing).
    fn noise_model(
        constraint: &mut Constraint,
        tokenizer: &Tokenizer,
        seed: u64,
    ) -> (String, bool) {
        let (text, by_stop_token, _) = noise_model_counted(constraint, tokenizer, seed);
        (text, by_stop_token)
    }

    /// [`noise_model`], also returning how many tokens were decoded.
    fn noise_model_counted(
        constraint: &mut Constraint,
        tokenizer: &Tokenizer,
        seed: u64,
    ) -> (String, bool, usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ids = Vec::new();
        let mut by_stop_token = false;
        for _ in 0..5000 {
            if constraint.is_finished() {
                break;
            }
            let mut logits: Vec<f32> = (0..facts().vocab_size).map(|_| rng.random()).collect();
            constraint.mask(&mut logits).expect("mask");
            let token = crate::local::sample::argmax(&logits);
            if facts().stop_token_ids.contains(&token) {
                by_stop_token = true;
                break;
            }
            ids.push(token);
            ids.extend(constraint.accept(token).expect("accept"));
        }
        assert!(
            by_stop_token || constraint.is_finished(),
            "the grammar never ended"
        );
        let text = tokenizer.decode(&ids, false).expect("decode");
        (text, by_stop_token, ids.len())
    }

    fn card_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 12},
                "cards": {
                    "type": "array", "minItems": 1, "maxItems": 3,
                    "items": {
                        "type": "object",
                        "properties": {
                            "front": {"type": "string", "minLength": 1, "maxLength": 8},
                            "level": {"type": "integer", "minimum": 1, "maximum": 3},
                        },
                        "required": ["front", "level"],
                        "additionalProperties": false,
                    },
                },
            },
            "required": ["title", "cards"],
            "additionalProperties": false,
        })
    }

    #[test]
    fn any_logits_give_compact_json_valid_against_the_schema() {
        let (grammars, tokenizer) = grammars();
        let format = OutputFormat::JsonSchema {
            name: "cards".into(),
            schema: card_schema(),
            lark: None,
        };
        for seed in 0..20 {
            let mut constraint = grammars
                .constraint(&format)
                .expect("compiles")
                .expect("a constraint");
            let (text, _) = noise_model(&mut constraint, &tokenizer, seed);
            let value: Value = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("seed {seed}: {error} in {text:?}"));
            assert!(
                text.starts_with("{\"title\":\""),
                "keys in order, no spaces: {text}"
            );
            let title = value["title"].as_str().expect("title");
            assert!((1..=12).contains(&title.chars().count()), "{text}");
            let cards = value["cards"].as_array().expect("cards");
            assert!((1..=3).contains(&cards.len()), "{text}");
            for card in cards {
                let object = card.as_object().expect("object");
                assert_eq!(object.len(), 2, "no extra keys: {text}");
                let level = card["level"].as_i64().expect("integer");
                assert!((1..=3).contains(&level), "{text}");
                let front = card["front"].as_str().expect("front");
                assert!((1..=8).contains(&front.chars().count()), "{text}");
            }
            assert!(!text.contains("\\u"), "no unicode escapes: {text}");
        }
    }

    #[test]
    fn every_structured_kind_decodes_to_a_valid_document_within_its_bound() {
        use crate::structured::{self, Kind, ParseHints, schema};
        let (grammars, tokenizer) = grammars();
        for kind in Kind::ALL {
            let format = schema::output_format(kind);
            for seed in 0..5 {
                let mut constraint = grammars
                    .constraint(&format)
                    .unwrap_or_else(|error| panic!("{kind:?}: {error}"))
                    .expect("a constraint");
                // One byte per token: the worst case the bound allows for.
                let (text, _, tokens) = noise_model_counted(&mut constraint, &tokenizer, seed);
                assert!(
                    tokens <= schema::local_token_bound(kind),
                    "{kind:?} seed {seed}: {tokens} tokens: {text}"
                );
                let parsed = structured::parse(kind, &text, &ParseHints::default())
                    .unwrap_or_else(|error| panic!("{kind:?} seed {seed}: {error} in {text}"));
                let repairs: Vec<_> = parsed
                    .repairs
                    .iter()
                    .filter(|r| !matches!(r, structured::Repair::Recomputed { .. }))
                    .collect();
                assert!(
                    repairs.is_empty(),
                    "{kind:?} seed {seed}: {repairs:?} in {text}"
                );
            }
        }
    }

    #[test]
    fn stop_tokens_are_allowed_only_once_the_answer_is_complete() {
        let (grammars, tokenizer) = grammars();
        let format = OutputFormat::Grammar {
            name: "lines".into(),
            lark: "start: line{1,3}\nline: \"- \" /[a-z]{1,5}/ \"\\n\"".into(),
        };
        let mut constraint = grammars
            .constraint(&format)
            .expect("compiles")
            .expect("some");
        let stop_allowed = |constraint: &mut Constraint| {
            let mut logits = vec![0.0; facts().vocab_size];
            constraint.mask(&mut logits).expect("mask");
            let allowed = |id: u32| logits[id as usize].is_finite();
            assert_eq!(allowed(IM_END), allowed(END_OF_TEXT));
            assert!(
                !allowed(258) && !allowed(259),
                "padding logits are never allowed"
            );
            allowed(IM_END)
        };
        assert!(!stop_allowed(&mut constraint), "nothing written yet");
        let mut forced = Vec::new();
        for id in tokenizer.encode("- ab", false).expect("encode").get_ids() {
            if forced.first() == Some(id) {
                forced.remove(0);
                continue;
            }
            forced = constraint.accept(*id).expect("accept");
        }
        assert!(!stop_allowed(&mut constraint), "the line is not finished");
        let newline = tokenizer.encode("\n", false).expect("encode").get_ids()[0];
        assert!(constraint.accept(newline).expect("newline").is_empty());
        assert!(
            stop_allowed(&mut constraint),
            "one whole line is a complete answer"
        );
        assert!(!constraint.is_finished(), "but more lines may follow");

        let (text, by_stop_token) = noise_model(&mut constraint, &tokenizer, 7);
        let lines = format!("- ab\n{text}");
        assert!(lines.lines().count() <= 3, "{lines:?}");
        assert!(by_stop_token || lines.lines().count() == 3, "{lines:?}");
    }

    #[test]
    fn forced_text_comes_back_from_accept_in_one_piece() {
        let (grammars, tokenizer) = grammars();
        let format = OutputFormat::Grammar {
            name: "fixed".into(),
            lark: "start: \"Answer: \" (\"yes\" | \"no\")".into(),
        };
        let mut constraint = grammars
            .constraint(&format)
            .expect("compiles")
            .expect("some");
        let mut logits = vec![0.0; facts().vocab_size];
        constraint.mask(&mut logits).expect("mask");
        let allowed: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
        let first = tokenizer.encode("A", false).expect("encode").get_ids()[0];
        assert_eq!(allowed, [first as usize], "only the forced first byte");
        let forced = constraint.accept(first).expect("accept");
        assert_eq!(tokenizer.decode(&forced, false).expect("decode"), "nswer: ");
        let y = tokenizer.encode("y", false).expect("encode").get_ids()[0];
        let forced = constraint.accept(y).expect("accept");
        assert_eq!(tokenizer.decode(&forced, false).expect("decode"), "es");
        assert!(constraint.is_finished(), "nothing may follow");
    }

    #[test]
    fn free_text_has_no_constraint_and_a_broken_grammar_is_rejected() {
        let (grammars, _) = grammars();
        assert!(
            grammars
                .constraint(&OutputFormat::Text)
                .expect("text")
                .is_none()
        );
        let broken = OutputFormat::Grammar {
            name: "broken".into(),
            lark: "start: undefined_rule".into(),
        };
        assert!(matches!(
            grammars.constraint(&broken),
            Err(BackendError::Rejected(message)) if message.contains("broken")
        ));
        let bad_schema = OutputFormat::JsonSchema {
            name: "bad".into(),
            schema: json!({"type": "object", "properties": {"a": {"type": "strange"}}}),
            lark: None,
        };
        assert!(matches!(
            grammars.constraint(&bad_schema),
            Err(BackendError::Rejected(_))
        ));
    }

    #[test]
    fn content_tokens_are_the_ones_that_write_letters() {
        let (grammars, tokenizer) = grammars();
        let content = grammars.content_tokens();
        let id = |text: &str| tokenizer.encode(text, false).expect("encode").get_ids()[0] as usize;
        assert!(content[id("a")] && content[id("Z")]);
        assert!(!content[id("{")] && !content[id("7")] && !content[id(" ")] && !content[id("\"")]);
        let accented = tokenizer.encode("é", false).expect("encode");
        assert!(accented.get_ids().iter().all(|&i| content[i as usize]));
        assert!(!content[IM_END as usize] && !content[258]);
    }
}
