//! Rendering examples with the model's chat template and building loss masks.
//!
//! For a chat example, each assistant turn is supervised from the first token of its content
//! through its end-of-turn token (the eos text, `<|im_end|>` for SmolLM2), but not the newline
//! the template writes after it, so the model learns to stop even when pad = eos. Everything
//! after the last assistant turn is cut off (it would carry no loss). Plain text examples are
//! supervised on every token and end with eos.
use tuneguard_model::chat::{ChatMessage, ChatTemplate};
use tuneguard_model::tokenizer::TextTokenizer;

use crate::error::{DataError, Result};
use crate::record::Example;

/// Label of a position that carries no loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Token ids and labels of one example; both have length t (tokens). `labels[k]` is
/// `input_ids[k]` where supervised and [`IGNORE_INDEX`] elsewhere (unshifted, as in
/// transformers: the loss pairs logits at k-1 with `labels[k]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
}

impl TokenizedExample {
    /// Length in tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Number of supervised positions (labels ≠ [`IGNORE_INDEX`]).
    pub fn num_supervised(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// What to do with an example longer than `max_len` tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Keep the first `max_len` tokens.
    #[default]
    Truncate,
    /// Leave the example out.
    Drop,
}

/// Length policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizeOptions {
    /// Longest example, in tokens (≥ 1).
    pub max_len: usize,
    /// Policy for longer examples.
    pub overflow: Overflow,
}

/// Counts from [`ChatTokenizer::tokenize_all`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TokenizeStats {
    /// Examples in.
    pub examples: usize,
    /// Examples out.
    pub kept: usize,
    /// Kept examples that were cut to `max_len`.
    pub truncated: usize,
    /// Examples dropped for being longer than `max_len` (policy `drop`).
    pub dropped_too_long: usize,
    /// Examples dropped because truncation left no supervised token.
    pub dropped_no_supervised: usize,
    /// Tokens in kept examples.
    pub tokens: usize,
    /// Supervised tokens in kept examples.
    pub supervised_tokens: usize,
}

/// Renders and tokenizes examples for one model.
#[derive(Debug)]
pub struct ChatTokenizer<'a> {
    tokenizer: &'a TextTokenizer,
    template: &'a ChatTemplate,
    end_of_turn: String,
    /// When false, a reply the template does not close with `end_of_turn` is supervised through
    /// the end of its rendering instead of failing (see [`Self::allow_missing_end_of_turn`]).
    require_end_of_turn: bool,
}

impl<'a> ChatTokenizer<'a> {
    /// Uses the tokenizer's eos text as the end-of-turn marker.
    ///
    /// # Errors
    /// `InvalidOption` when the tokenizer has no eos token.
    pub fn new(tokenizer: &'a TextTokenizer, template: &'a ChatTemplate) -> Result<Self> {
        let eos = tokenizer.eos_token().ok_or_else(|| DataError::InvalidOption {
            field: "end_of_turn".into(),
            reason: format!("tokenizer {} has no eos token; name the end-of-turn token", tokenizer.source().display()),
        })?;
        Ok(Self::with_end_of_turn(tokenizer, template, eos))
    }

    /// With an explicit end-of-turn text (e.g. `<|eot_id|>` for Llama 3).
    pub fn with_end_of_turn(tokenizer: &'a TextTokenizer, template: &'a ChatTemplate, end_of_turn: String) -> Self {
        ChatTokenizer { tokenizer, template, end_of_turn, require_end_of_turn: true }
    }

    /// Supervises a reply that the template does not close with the end-of-turn text through the
    /// end of its rendering (trailing whitespace excluded) instead of failing. Training never
    /// does this; the pre-flight lint does, to report the missing end-of-turn with the data.
    pub fn allow_missing_end_of_turn(mut self) -> Self {
        self.require_end_of_turn = false;
        self
    }

    /// The end-of-turn text that closes each supervised span.
    pub fn end_of_turn(&self) -> &str {
        &self.end_of_turn
    }

    /// Tokenizes one example without any length limit.
    ///
    /// # Errors
    /// `Model` when the template or tokenizer fails; `Tokenize` (example 0) when the template
    /// cannot be used for masking (see [`Self::tokenize_all`]).
    pub fn tokenize(&self, example: &Example) -> Result<TokenizedExample> {
        self.tokenize_indexed(0, example)
    }

    fn tokenize_indexed(&self, index: usize, example: &Example) -> Result<TokenizedExample> {
        match example {
            Example::Chat(messages) => self.chat(index, messages),
            Example::Text(text) => self.text(text),
        }
    }

    fn text(&self, text: &str) -> Result<TokenizedExample> {
        let mut ids = self.tokenizer.encode(text, true)?;
        if let Some(eos) = self.tokenizer.eos_id() {
            if ids.last() != Some(&eos) {
                ids.push(eos);
            }
        }
        let labels = ids.iter().map(|&i| i64::from(i)).collect();
        Ok(TokenizedExample { input_ids: ids, labels })
    }

    /// Byte spans `[start, end)` of the supervised text of each assistant turn, and the rendered
    /// conversation up to the last assistant turn.
    fn assistant_spans(&self, index: usize, messages: &[ChatMessage]) -> Result<(String, Vec<(usize, usize)>)> {
        let err = |reason: String| DataError::Tokenize { example: index, reason };
        let last = messages
            .iter()
            .rposition(|m| m.role == "assistant")
            .ok_or_else(|| err("conversation has no assistant turn".into()))?;
        let messages = &messages[..=last];
        let full = self.template.render(messages, false)?;
        let mut spans = Vec::new();
        for (i, _) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
            let prefix = self.template.render(&messages[..i], true)?;
            let through = if i == last { full.clone() } else { self.template.render(&messages[..=i], false)? };
            if !through.starts_with(&prefix) {
                return Err(err(format!(
                    "chat template: the rendering of messages before {i} with the generation prompt is not a prefix of the rendering through message {i}"
                )));
            }
            if !full.starts_with(&through) {
                return Err(err(format!(
                    "chat template renders messages up to {i} differently when later messages follow"
                )));
            }
            let end = match through[prefix.len()..].rfind(&self.end_of_turn) {
                Some(pos) => prefix.len() + pos + self.end_of_turn.len(),
                None if !self.require_end_of_turn => through.trim_end().len().max(prefix.len()),
                None => {
                    return Err(err(format!(
                        "chat template does not end assistant message {i} with the end-of-turn token `{}`",
                        self.end_of_turn
                    )))
                }
            };
            spans.push((prefix.len(), end));
        }
        let end = spans.last().map_or(full.len(), |s| s.1);
        let mut full = full;
        full.truncate(end);
        Ok((full, spans))
    }

    fn chat(&self, index: usize, messages: &[ChatMessage]) -> Result<TokenizedExample> {
        let (text, spans) = self.assistant_spans(index, messages)?;
        let enc = self
            .tokenizer
            .inner()
            .encode(text.as_str(), false)
            .map_err(|e| DataError::Tokenize { example: index, reason: format!("tokenizer failed: {e}") })?;
        let ids = enc.get_ids().to_vec();
        // A token is supervised when its first byte lies in an assistant span.
        let labels = ids
            .iter()
            .zip(enc.get_offsets())
            .map(
                |(&id, &(start, _))| {
                    if spans.iter().any(|&(s, e)| s <= start && start < e) {
                        i64::from(id)
                    } else {
                        IGNORE_INDEX
                    }
                },
            )
            .collect();
        Ok(TokenizedExample { input_ids: ids, labels })
    }

    /// Tokenizes `examples` under the length policy, in order. Dropped examples are counted in
    /// the stats; the returned vector holds only kept examples.
    ///
    /// # Errors
    /// `InvalidOption` for `max_len` 0; `Tokenize` naming the example index when the chat
    /// template cannot be used for masking (rendering with the generation prompt is not a prefix
    /// of rendering with the reply, or the reply does not end with the end-of-turn text);
    /// `Model` for template or tokenizer failures; `EmptyAfterTokenize` when nothing is kept.
    pub fn tokenize_all(
        &self,
        examples: &[Example],
        opts: TokenizeOptions,
    ) -> Result<(Vec<TokenizedExample>, TokenizeStats)> {
        if opts.max_len == 0 {
            return Err(DataError::InvalidOption {
                field: "max_len".into(),
                reason: "must be at least 1 token".into(),
            });
        }
        let mut stats = TokenizeStats { examples: examples.len(), ..Default::default() };
        let mut out = Vec::with_capacity(examples.len());
        for (i, ex) in examples.iter().enumerate() {
            let mut t = self.tokenize_indexed(i, ex)?;
            let too_long = t.len() > opts.max_len;
            if too_long {
                match opts.overflow {
                    Overflow::Drop => {
                        stats.dropped_too_long += 1;
                        continue;
                    }
                    Overflow::Truncate => {
                        t.input_ids.truncate(opts.max_len);
                        t.labels.truncate(opts.max_len);
                    }
                }
            }
            let supervised = t.num_supervised();
            if supervised == 0 {
                stats.dropped_no_supervised += 1;
                continue;
            }
            stats.kept += 1;
            stats.truncated += usize::from(too_long);
            stats.tokens += t.len();
            stats.supervised_tokens += supervised;
            out.push(t);
        }
        if out.is_empty() {
            return Err(DataError::EmptyAfterTokenize {
                examples: stats.examples,
                too_long: stats.dropped_too_long,
                no_supervised: stats.dropped_no_supervised,
            });
        }
        Ok((out, stats))
    }
}
