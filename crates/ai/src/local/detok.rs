//! Incremental detokenization: text out as soon as it is whole UTF-8.
//!
//! A byte-level BPE token can hold part of a character (an accented letter, a CJK character
//! or an emoji often spans two or three tokens), and decoding such a prefix yields U+FFFD.
//! So the decoder re-decodes a short window of recent ids and only emits the new suffix once
//! it no longer ends in a replacement character; the window then moves on, so the work per
//! token stays constant however long the answer gets.

use tokenizers::Tokenizer;

use crate::backend::BackendError;

/// Turns a stream of token ids into a stream of text pieces.
#[derive(Debug, Default)]
pub(crate) struct Detokenizer {
    /// Every id so far.
    ids: Vec<u32>,
    /// Start of the window that is re-decoded (one emitted step back, so merges that depend
    /// on the previous token decode as they would in the whole text).
    prefix: usize,
    /// End of what has been emitted.
    read: usize,
}

impl Detokenizer {
    /// Adds `id`; returns the text it completes, if any.
    pub(crate) fn push(
        &mut self,
        tokenizer: &Tokenizer,
        id: u32,
    ) -> Result<Option<String>, BackendError> {
        self.ids.push(id);
        let before = decode(tokenizer, &self.ids[self.prefix..self.read])?;
        let after = decode(tokenizer, &self.ids[self.prefix..])?;
        if after.len() <= before.len() || after.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        // `before` ended in whole characters when it was emitted, so it is a prefix of
        // `after` and the cut is on a character boundary; `get` keeps that an assumption
        // checked, not a panic.
        let Some(new) = after.get(before.len()..) else {
            return Ok(None);
        };
        let new = new.to_owned();
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(Some(new))
    }

    /// The text not emitted yet. A character left incomplete at the very end (the token
    /// limit cut it) is dropped: a U+FFFD would only show a stray box to the class.
    pub(crate) fn finish(&mut self, tokenizer: &Tokenizer) -> Result<Option<String>, BackendError> {
        if self.read == self.ids.len() {
            return Ok(None);
        }
        let before = decode(tokenizer, &self.ids[self.prefix..self.read])?;
        let after = decode(tokenizer, &self.ids[self.prefix..])?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(after
            .get(before.len()..)
            .map(|rest| rest.trim_end_matches(char::REPLACEMENT_CHARACTER))
            .filter(|rest| !rest.is_empty())
            .map(str::to_owned))
    }
}

/// Decodes ids, skipping special tokens (stop tokens are never pushed, but a model may emit
/// another control token mid-answer).
fn decode(tokenizer: &Tokenizer, ids: &[u32]) -> Result<String, BackendError> {
    tokenizer
        .decode(ids, true)
        .map_err(|error| BackendError::Inference(format!("detokenizing failed: {error}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    use super::*;

    /// A byte-level tokenizer with no merges: every byte is its own token, so every
    /// non-ASCII character is split across tokens, the worst case for streaming.
    fn bytes_tokenizer() -> Tokenizer {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let vocab: serde_json::Map<String, serde_json::Value> = alphabet
            .iter()
            .enumerate()
            .map(|(id, c)| (c.to_string(), serde_json::Value::from(id)))
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "vocab": vocab, "merges": []},
        });
        Tokenizer::from_str(&json.to_string()).expect("tokenizer")
    }

    #[test]
    fn split_characters_are_held_back_until_whole() {
        let tokenizer = bytes_tokenizer();
        let text = "Été café 你好 🎉!";
        let ids = tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(ids.len(), text.len(), "one token per byte");
        let mut detokenizer = Detokenizer::default();
        let mut pieces = Vec::new();
        for id in ids {
            pieces.extend(detokenizer.push(&tokenizer, id).expect("push"));
        }
        pieces.extend(detokenizer.finish(&tokenizer).expect("finish"));
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert!(
            pieces.contains(&"🎉".to_owned()),
            "emitted as soon as whole: {pieces:?}"
        );
    }

    #[test]
    fn an_unfinished_character_at_the_end_is_dropped() {
        let tokenizer = bytes_tokenizer();
        let ids = tokenizer
            .encode("a你", false)
            .expect("encode")
            .get_ids()
            .to_vec();
        let mut detokenizer = Detokenizer::default();
        let mut pieces = Vec::new();
        for &id in &ids[..ids.len() - 1] {
            pieces.extend(detokenizer.push(&tokenizer, id).expect("push"));
        }
        assert_eq!(pieces, ["a"]);
        assert_eq!(detokenizer.finish(&tokenizer).expect("finish"), None);
    }
}
