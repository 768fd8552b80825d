//! Text tokenizer: a thin wrapper over Hugging Face `tokenizers`, loaded either from a
//! `tokenizer.json` (+ optional `tokenizer_config.json`) or built from GGUF metadata.
//!
//! Only GPT-2 style byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`) are built from
//! GGUF; that covers SmolLM, Llama 3, Qwen 2 and most recent models.
//!
//! - this file: [`TextTokenizer`], loading a `tokenizer.json`, encode/decode and accessors;
//! - `gguf`: building a tokenizer from GGUF `tokenizer.ggml.*` metadata;
//! - `incremental`: [`IncrementalDecoder`], streaming detokenization of generated ids.
use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

mod gguf;
mod incremental;
#[cfg(test)]
mod tests;

pub use incremental::IncrementalDecoder;

fn tok_err(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Tokenizer { path: path.to_path_buf(), reason: reason.into() }
}

/// A loaded tokenizer plus the special-token facts the engine needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    source: PathBuf,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
    unk_id: Option<u32>,
    /// Effective behaviour of `encode(.., add_special_tokens = true)`.
    add_bos: bool,
    add_eos: bool,
    /// Whether bos/eos are added by hand because the post-processor disagrees with the config.
    manual_bos: bool,
    manual_eos: bool,
    use_post_processor: bool,
    chat_template: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish()
    }
}

/// A bos/eos entry of tokenizer_config.json: a string, or an AddedToken object with `content`.
fn config_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` (or a directory holding one). A `tokenizer_config.json` beside it,
    /// if any, supplies bos/eos/pad tokens, `add_bos_token`/`add_eos_token` and `chat_template`.
    ///
    /// # Errors
    /// `Tokenizer` when the file is missing or invalid, or the config is not valid JSON.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("tokenizer.json") } else { path.to_path_buf() };
        if !file.is_file() {
            return Err(tok_err(&file, "tokenizer.json not found"));
        }
        let inner = Tokenizer::from_file(&file).map_err(|e| tok_err(&file, format!("cannot load: {e}")))?;
        let config_path = file.parent().map(|d| d.join("tokenizer_config.json"));
        let config = match config_path {
            Some(ref p) if p.is_file() => {
                let text = std::fs::read_to_string(p).map_err(|e| ModelError::io(p, e))?;
                Some(
                    serde_json::from_str::<serde_json::Value>(&text)
                        .map_err(|e| tok_err(p, format!("invalid JSON: {e}")))?,
                )
            }
            _ => None,
        };
        let config = config.unwrap_or(serde_json::Value::Null);
        let id_of = |key: &str| -> Option<u32> {
            let token = config_token(&config, key)?;
            let id = inner.token_to_id(&token);
            if id.is_none() {
                tracing::warn!(path = %file.display(), "tokenizer_config.json {key} `{token}` is not in the vocabulary");
            }
            id
        };
        let bos_id = id_of("bos_token");
        let eos_id = id_of("eos_token");
        let pad_id = id_of("pad_token");
        let unk_id = id_of("unk_token");
        let chat_template = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v @ serde_json::Value::Array(_)) => crate::chat::pick_named_template(v),
            _ => None,
        };

        // What the post-processor does on its own, to reconcile it with the config flags.
        let probe = inner.encode_fast("", true).map_err(|e| tok_err(&file, format!("encode failed: {e}")))?;
        let probe = probe.get_ids();
        let pp_bos = bos_id.is_some() && probe.first().copied() == bos_id;
        let pp_eos = eos_id.is_some() && probe.last().copied() == eos_id && (probe.len() > 1 || !pp_bos);
        let want_bos = config.get("add_bos_token").and_then(|v| v.as_bool()).unwrap_or(pp_bos) && bos_id.is_some();
        let want_eos = config.get("add_eos_token").and_then(|v| v.as_bool()).unwrap_or(pp_eos) && eos_id.is_some();
        let agree = want_bos == pp_bos && want_eos == pp_eos;
        Ok(TextTokenizer {
            inner,
            source: file,
            bos_id,
            eos_id,
            pad_id,
            unk_id,
            add_bos: want_bos,
            add_eos: want_eos,
            manual_bos: !agree && want_bos,
            manual_eos: !agree && want_eos,
            use_post_processor: agree,
            chat_template,
        })
    }

    /// Token ids of `text`. Special tokens written in the text (e.g. `<|im_start|>`) are always
    /// matched as single tokens; `add_special_tokens` controls only bos/eos insertion.
    ///
    /// # Errors
    /// `Tokenizer` if the underlying tokenizer fails.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens && self.use_post_processor)
            .map_err(|e| tok_err(&self.source, format!("encode failed: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special_tokens {
            if let (true, Some(bos)) = (self.manual_bos, self.bos_id) {
                ids.insert(0, bos);
            }
            if let (true, Some(eos)) = (self.manual_eos, self.eos_id) {
                ids.push(eos);
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; unknown ids are skipped (as Hugging Face does). With `skip_special`, special
    /// tokens are left out.
    ///
    /// # Errors
    /// `Tokenizer` if the underlying decoder fails.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| tok_err(&self.source, format!("decode failed: {e}")))
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Beginning-of-sequence token id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// End-of-sequence token id (the generation stop token).
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Padding token id.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Unknown token id.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Text of the bos token, e.g. for chat templates.
    pub fn bos_token(&self) -> Option<String> {
        self.bos_id.and_then(|id| self.id_to_token(id))
    }

    /// Text of the eos token, e.g. for chat templates.
    pub fn eos_token(&self) -> Option<String> {
        self.eos_id.and_then(|id| self.id_to_token(id))
    }

    /// Whether `encode(.., true)` prepends bos.
    pub fn add_bos_token(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., true)` appends eos.
    pub fn add_eos_token(&self) -> bool {
        self.add_eos
    }

    /// Id of a token string (vocabulary or added token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token string of an id (byte-level form for vocabulary tokens, e.g. `Ġthe`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Special tokens as `(id, text)`, sorted by id.
    pub fn special_tokens(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (id, t.content))
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special)
    }

    /// Chat template found with the tokenizer (GGUF `tokenizer.chat_template` or
    /// tokenizer_config.json `chat_template`), if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Where the tokenizer was loaded from (tokenizer.json or GGUF file).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// A streaming decoder for generated ids.
    pub fn incremental_decoder(&self, skip_special: bool) -> IncrementalDecoder<'_> {
        IncrementalDecoder::new(self, skip_special)
    }
}
