//! Rendering examples with the model's chat template and building loss masks.
//!
//! For a chat example, each assistant turn is supervised from the first token of its content
//! through its end-of-turn token (the eos text, `<|im_end|>` for SmolLM2), but not the newline
//! the template writes after it, so the model learns to stop even when pad = eos. Everything
//! after the last assistant turn is cut off (it would carry no loss). Plain text examples are
//! supervised on every token and end with eos.
//!
//! Examples that cannot be used are row problems, not run problems: [`ChatTokenizer::tokenize_each`]
//! lists every example it leaves out ([`Dropped`]: too long, nothing supervised, or a chat
//! template that cannot render it) so the caller can report each with its file and line.
//!
//! Memory: a tokenizer's encoding of a text costs far more than the text (ids, offsets, tokens),
//! so an over-long row is cut before it is rendered and tokenized ([`ChatTokenizer::tokenize_bounded`]).
//! The cut keeps [`ChatTokenizer::max_example_bytes`] bytes: twice the bytes that `max_len` tokens
//! can cover when no token is longer than the longest one in the vocabulary. The first `max_len`
//! tokens, all that training keeps of such a row, come out the same, and rows shorter than the
//! limit are not touched. This holds for tokenizers that cover every byte of the text with tokens
//! (byte-level BPE such as SmolLM2's, Llama 3's or Qwen2's, and SentencePiece); WordPiece and
//! word-level tokenizers, which can turn a whole word into one unknown token, get no limit.
use std::sync::OnceLock;

use tokenizers::models::ModelWrapper;
use tuneguard_model::chat::{ChatMessage, ChatTemplate};
use tuneguard_model::tokenizer::TextTokenizer;

use crate::error::{DataError, Result};
use crate::record::{Example, RejectKind};

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

/// Counts from [`ChatTokenizer::tokenize_all`] (a plain-data type of `summary.json`, defined in
/// tuneguard-records).
pub use tuneguard_records::TokenizeStats;

/// An example [`ChatTokenizer::tokenize_each`] left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Index into the examples given.
    pub index: usize,
    /// [`RejectKind::TooLong`], [`RejectKind::NoSupervisedTokens`] or [`RejectKind::TemplateError`].
    pub kind: RejectKind,
    /// Why, with the token counts (`412 tokens, longer than max_len 384`).
    pub reason: String,
}

/// What [`ChatTokenizer::tokenize_each`] made of a list of examples.
#[derive(Debug, Clone, Default)]
pub struct Tokenized {
    /// The kept examples, in order.
    pub examples: Vec<TokenizedExample>,
    pub stats: TokenizeStats,
    /// Every example left out, in order.
    pub dropped: Vec<Dropped>,
}

impl Tokenized {
    /// Fails when nothing was kept: with the first example's template error when no example
    /// could be rendered at all (the template, not the rows, is at fault), else with
    /// `EmptyAfterTokenize`. No examples in, no error.
    ///
    /// # Errors
    /// `Tokenize` naming the first example; `EmptyAfterTokenize`.
    pub fn check(&self) -> Result<()> {
        let s = &self.stats;
        if s.kept > 0 || s.examples == 0 {
            return Ok(());
        }
        if s.dropped_template_error == s.examples {
            if let Some(d) = self.dropped.first() {
                return Err(DataError::Tokenize { example: d.index, reason: d.reason.clone() });
            }
        }
        Err(DataError::EmptyAfterTokenize {
            examples: s.examples,
            too_long: s.dropped_too_long,
            no_supervised: s.dropped_no_supervised,
            template_error: s.dropped_template_error,
        })
    }
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
    /// Bytes of the longest token (`None`: the tokenizer can map unbounded text to one token).
    longest_token: OnceLock<Option<usize>>,
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
        ChatTokenizer { tokenizer, template, end_of_turn, require_end_of_turn: true, longest_token: OnceLock::new() }
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

    /// The most bytes of text an example may have and still be tokenized whole for `max_len`
    /// tokens: 2 × `max_len` × the bytes of the longest token (its vocabulary text, which is at
    /// least the bytes it stands for). A longer example cannot fit `max_len` tokens, and its first
    /// `max_len` tokens lie well inside this many bytes. `None` for WordPiece and word-level
    /// tokenizers (see the module docs).
    pub fn max_example_bytes(&self, max_len: usize) -> Option<usize> {
        let longest = *self.longest_token.get_or_init(|| {
            let inner = self.tokenizer.inner();
            match inner.get_model() {
                ModelWrapper::WordPiece(_) | ModelWrapper::WordLevel(_) => None,
                _ => Some(inner.get_vocab(true).keys().map(String::len).max().unwrap_or(1).max(1)),
            }
        });
        longest.map(|l| max_len.max(1).saturating_mul(l).saturating_mul(2))
    }

    /// Tokenizes `example` as [`Self::tokenize`] does, after cutting it to
    /// [`Self::max_example_bytes`]`(max_len)` when it is longer ([`Example::cut_to`]). Such an
    /// example is longer than `max_len` tokens either way, and its first `max_len` tokens are
    /// the same; what is past them is not rendered or tokenized, so memory stays bounded.
    ///
    /// # Errors
    /// As [`Self::tokenize`].
    pub fn tokenize_bounded(&self, example: &Example, max_len: usize) -> Result<TokenizedExample> {
        self.tokenize_bounded_indexed(0, example, max_len)
    }

    fn tokenize_bounded_indexed(&self, index: usize, example: &Example, max_len: usize) -> Result<TokenizedExample> {
        match self.max_example_bytes(max_len).and_then(|max| example.cut_to(max)) {
            Some(cut) => self.tokenize_indexed(index, &cut),
            None => self.tokenize_indexed(index, example),
        }
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
        // Without an assistant turn (e.g. a conversation cut before its reply) nothing is
        // supervised.
        let Some(last) = messages.iter().rposition(|m| m.role == "assistant") else {
            return Ok((self.template.render(messages, false)?, Vec::new()));
        };
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

    /// Tokenizes `examples` under the length policy, in order (see [`Self::tokenize_each`]),
    /// and fails when nothing is kept ([`Tokenized::check`]).
    ///
    /// # Errors
    /// `InvalidOption` for `max_len` 0; `Tokenize` naming the first example when the chat
    /// template can render none of them (e.g. rendering with the generation prompt is not a
    /// prefix of rendering with the reply, or the reply does not end with the end-of-turn text);
    /// `EmptyAfterTokenize` when nothing is kept.
    pub fn tokenize_all(
        &self,
        examples: &[Example],
        opts: TokenizeOptions,
    ) -> Result<(Vec<TokenizedExample>, TokenizeStats)> {
        let t = self.tokenize_each(examples, opts)?;
        t.check()?;
        Ok((t.examples, t.stats))
    }

    /// Tokenizes `examples` under the length policy, in order, each within
    /// [`Self::tokenize_bounded`]'s limit. An example is left out, and listed in
    /// [`Tokenized::dropped`], when it is longer than `max_len` under `overflow = "drop"`
    /// (`too_long`), when truncation leaves it no supervised token (`no_supervised_tokens`), or
    /// when the chat template or tokenizer fails on it (`template_error`: a template that raises
    /// for this conversation, or renders it inconsistently for masking). Nothing kept is not an
    /// error here; see [`Tokenized::check`].
    ///
    /// # Errors
    /// `InvalidOption` for `max_len` 0.
    pub fn tokenize_each(&self, examples: &[Example], opts: TokenizeOptions) -> Result<Tokenized> {
        if opts.max_len == 0 {
            return Err(DataError::InvalidOption {
                field: "max_len".into(),
                reason: "must be at least 1 token".into(),
            });
        }
        let max_len = opts.max_len;
        let mut out =
            Tokenized { stats: TokenizeStats { examples: examples.len(), ..Default::default() }, ..Default::default() };
        let stats = &mut out.stats;
        for (index, ex) in examples.iter().enumerate() {
            let mut leave = |kind, reason| out.dropped.push(Dropped { index, kind, reason });
            let mut t = match self.tokenize_bounded_indexed(index, ex, max_len) {
                Ok(t) => t,
                Err(e) => {
                    stats.dropped_template_error += 1;
                    let reason = match e {
                        DataError::Tokenize { reason, .. } => reason,
                        other => other.to_string(),
                    };
                    leave(RejectKind::TemplateError, reason);
                    continue;
                }
            };
            let len = t.len();
            let too_long = len > max_len;
            // An example cut before tokenizing has more tokens than were counted.
            let bound = self.max_example_bytes(max_len).filter(|&m| ex.text_bytes() > m);
            let (at_least, cut) = match bound {
                Some(m) => ("at least ", format!("; its {} bytes were cut to {m} before tokenizing", ex.text_bytes())),
                None => ("", String::new()),
            };
            if too_long && opts.overflow == Overflow::Drop {
                stats.dropped_too_long += 1;
                leave(
                    RejectKind::TooLong,
                    format!("{at_least}{len} tokens, longer than max_len {max_len} (overflow = \"drop\"{cut})"),
                );
                continue;
            }
            let first_supervised = t.labels.iter().position(|&l| l != IGNORE_INDEX);
            t.input_ids.truncate(max_len);
            t.labels.truncate(max_len);
            let supervised = t.num_supervised();
            if supervised == 0 {
                stats.dropped_no_supervised += 1;
                let reason = match (first_supervised, bound) {
                    (Some(p), _) => format!(
                        "no supervised token left after truncation to max_len {max_len}: the prompt takes {p} of its \
                         {at_least}{len} tokens{cut}"
                    ),
                    (None, Some(_)) => format!(
                        "no supervised token left after truncation to max_len {max_len}: the prompt takes more than \
                         {len} tokens{cut}"
                    ),
                    (None, None) => {
                        format!("no supervised token in its {len} tokens (the rendering holds no assistant reply)")
                    }
                };
                leave(RejectKind::NoSupervisedTokens, reason);
                continue;
            }
            stats.kept += 1;
            stats.truncated += usize::from(too_long);
            stats.tokens += t.len();
            stats.supervised_tokens += supervised;
            out.examples.push(t);
        }
        Ok(out)
    }
}
