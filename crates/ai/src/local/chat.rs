//! SmolLM2's chat template, and fitting a conversation into the context.
//!
//! The template (from the GGUF) is ChatML: every message is
//! `<|im_start|>{role}\n{content}<|im_end|>\n`, a default system message is inserted when the
//! conversation has none, and the prompt ends with `<|im_start|>assistant\n`. Each message is
//! tokenised on its own: it starts and ends next to special tokens, which the tokenizer
//! splits on first, so the ids are the same as tokenising the whole prompt at once.

use tokenizers::Tokenizer;

use super::decoder::ModelFacts;
use crate::backend::{BackendError, Message, Role};

/// A prompt ready for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prompt {
    /// Its token ids.
    pub(crate) ids: Vec<u32>,
    /// Whether messages (or the ends of them) were dropped to fit the budget.
    pub(crate) truncated: bool,
}

/// The role's name in the template.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// Tokenises `text`, in which the template's special tokens are recognised.
fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, BackendError> {
    tokenizer
        .encode(text, false)
        .map(|encoding| encoding.get_ids().to_vec())
        .map_err(|error| BackendError::Inference(format!("tokenizing the prompt failed: {error}")))
}

/// One message of the template, split so its content can be shortened.
struct Turn<'a> {
    /// Who speaks.
    role: &'a str,
    /// What they say.
    content: &'a str,
    /// The whole turn, tokenised.
    ids: Vec<u32>,
}

impl<'a> Turn<'a> {
    fn new(
        tokenizer: &Tokenizer,
        facts: &ModelFacts,
        role: &'a str,
        content: &'a str,
    ) -> Result<Self, BackendError> {
        let text = format!("{}{role}\n{content}{}\n", facts.im_start, facts.im_end);
        Ok(Self {
            role,
            content,
            ids: encode(tokenizer, &text)?,
        })
    }

    /// The turn with its content cut to `keep` tokens, from the start (`keep_end` false) or
    /// the end. Tokenised in parts, so slightly different ids than the whole turn would get
    /// at the cut; that only happens when the turn is cut anyway.
    fn shortened(
        &self,
        tokenizer: &Tokenizer,
        facts: &ModelFacts,
        keep: usize,
        keep_end: bool,
    ) -> Result<Vec<u32>, BackendError> {
        let mut ids = encode(tokenizer, &format!("{}{}\n", facts.im_start, self.role))?;
        let content = encode(tokenizer, self.content)?;
        let kept = if keep_end {
            &content[content.len().saturating_sub(keep)..]
        } else {
            &content[..keep.min(content.len())]
        };
        ids.extend_from_slice(kept);
        ids.extend(encode(tokenizer, &format!("{}\n", facts.im_end))?);
        Ok(ids)
    }

    /// Tokens of the turn without its content.
    fn overhead(&self, tokenizer: &Tokenizer, facts: &ModelFacts) -> Result<usize, BackendError> {
        Ok(self.shortened(tokenizer, facts, 0, true)?.len())
    }
}

/// Formats `messages` with the chat template into at most `budget` tokens.
///
/// When the conversation is too long, whole messages are dropped oldest first, but the
/// system message (the teacher's instructions) and the latest message always stay; if those
/// alone are too long, the latest message loses its *beginning* (the end is what the model
/// answers), and only then does the system message lose its end.
pub(crate) fn build_prompt(
    tokenizer: &Tokenizer,
    facts: &ModelFacts,
    messages: &[Message],
    budget: usize,
) -> Result<Prompt, BackendError> {
    let (system, rest) = match messages.split_first() {
        Some((first, rest)) if first.role == Role::System => (first.content.as_str(), rest),
        _ => (facts.default_system.as_str(), messages),
    };
    let system = Turn::new(tokenizer, facts, "system", system)?;
    let mut turns = rest
        .iter()
        .map(|message| Turn::new(tokenizer, facts, role_name(message.role), &message.content))
        .collect::<Result<Vec<_>, _>>()?;
    let generation = encode(tokenizer, &format!("{}assistant\n", facts.im_start))?;

    let fixed = system.ids.len() + generation.len();
    let mut total = fixed + turns.iter().map(|turn| turn.ids.len()).sum::<usize>();
    let mut truncated = false;
    while total > budget && turns.len() > 1 {
        total -= turns.remove(0).ids.len();
        truncated = true;
    }
    let mut last = turns.pop().map(|turn| {
        let ids = turn.ids.clone();
        (turn, ids)
    });
    if total > budget {
        truncated = true;
        if let Some((turn, ids)) = last.as_mut() {
            let room = budget.saturating_sub(fixed + turn.overhead(tokenizer, facts)?);
            *ids = if room > 0 {
                turn.shortened(tokenizer, facts, room, true)?
            } else {
                Vec::new()
            };
        }
    }
    let last_len = last.as_ref().map_or(0, |(_, ids)| ids.len());
    let mut system_ids = system.ids.clone();
    if fixed + last_len > budget {
        truncated = true;
        let room =
            budget.saturating_sub(generation.len() + last_len + system.overhead(tokenizer, facts)?);
        system_ids = system.shortened(tokenizer, facts, room, false)?;
        if system_ids.len() + generation.len() + last_len > budget {
            return Err(BackendError::Rejected(format!(
                "a budget of {budget} prompt tokens cannot hold the chat template"
            )));
        }
    }

    let mut ids = system_ids;
    for turn in &turns {
        ids.extend_from_slice(&turn.ids);
    }
    if let Some((_, last)) = last {
        ids.extend(last);
    }
    ids.extend(generation);
    Ok(Prompt { ids, truncated })
}
