//! Text tokenizer: a thin wrapper over Hugging Face `tokenizers`, loaded either from a
//! `tokenizer.json` (+ optional `tokenizer_config.json`) or built from GGUF metadata.
//!
//! Only GPT-2 style byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`) are built from
//! GGUF; that covers SmolLM, Llama 3, Qwen 2 and most recent models.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, Value};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// Llama 3 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`, as in Meta's tokenizer.json).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`): like Llama 3 but single digits.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name, and whether BPE should ignore merges
/// for words already in the vocabulary (llama.cpp does so for Llama 3).
fn pre_tokenizer_for(pre: Option<&str>, path: &Path) -> Result<(PreTokenizerWrapper, bool)> {
    let byte_level_regex = || PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    let split_then_bytes = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| tok_err(path, format!("cannot compile pre-tokenizer regex: {e}")))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
        ])))
    };
    Ok(match pre {
        // Same as SmolLM2's tokenizer.json: split every digit, then GPT-2 byte-level regex.
        Some("smollm") => (
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level_regex(),
            ])),
            false,
        ),
        Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3") => (split_then_bytes(LLAMA3_REGEX)?, true),
        Some("qwen2" | "deepseek-r1-qwen") => (split_then_bytes(QWEN2_REGEX)?, false),
        None | Some("default" | "gpt2" | "gpt-2" | "phi-2") => (byte_level_regex(), false),
        Some(other) => {
            tracing::warn!(
                path = %path.display(),
                "unknown tokenizer.ggml.pre `{other}`: using the GPT-2 pre-tokenizer; token ids may differ from llama.cpp"
            );
            (byte_level_regex(), false)
        }
    })
}

/// Reads an optional token id, checking it lies in the vocabulary.
fn gguf_token_id(gguf: &GgufFile, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(v) = gguf.get(key) else {
        return Ok(None);
    };
    // llama.cpp writes -1 (as i32) or u32::MAX for "no such token" in some converters.
    if v.as_i64() == Some(-1) || v.as_u64() == Some(u32::MAX as u64) {
        return Ok(None);
    }
    let id = v.as_u64().ok_or_else(|| tok_err(&gguf.path, format!("`{key}` is not an integer: {v:?}")))?;
    if id >= n_tokens as u64 {
        return Err(tok_err(&gguf.path, format!("`{key}` = {id} is outside the vocabulary of {n_tokens} tokens")));
    }
    Ok(Some(id as u32))
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

    /// Builds a byte-level BPE tokenizer from GGUF `tokenizer.ggml.*` metadata.
    ///
    /// # Errors
    /// `Tokenizer` naming the GGUF file when the model type is not `gpt2`, or the tokens, merges
    /// or token types are missing or inconsistent.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let path = gguf.path.as_path();
        let model = gguf
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| tok_err(path, "missing metadata `tokenizer.ggml.model`"))?;
        if model != "gpt2" {
            let hint = match model {
                "llama" => " (SentencePiece; use the model's tokenizer.json instead)",
                _ => "",
            };
            return Err(tok_err(
                path,
                format!(
                    "unsupported tokenizer model `{model}`{hint}: only `gpt2` (byte-level BPE) can be built from GGUF"
                ),
            ));
        }
        let tokens = match gguf.get("tokenizer.ggml.tokens") {
            None => return Err(tok_err(path, "missing metadata `tokenizer.ggml.tokens`")),
            Some(_) => gguf
                .get_str_array("tokenizer.ggml.tokens")
                .ok_or_else(|| tok_err(path, "`tokenizer.ggml.tokens` is not an array of strings"))?,
        };
        if tokens.is_empty() {
            return Err(tok_err(path, "`tokenizer.ggml.tokens` is empty"));
        }
        let n = tokens.len();
        if u32::try_from(n).is_err() {
            return Err(tok_err(path, format!("{n} tokens do not fit in u32 ids")));
        }
        let token_types: Option<Vec<u64>> = match gguf.get("tokenizer.ggml.token_type") {
            None => None,
            Some(v) => {
                let arr = v.as_array().ok_or_else(|| tok_err(path, "`tokenizer.ggml.token_type` is not an array"))?;
                let types: Option<Vec<u64>> = arr.iter().map(Value::as_u64).collect();
                let types = types.ok_or_else(|| tok_err(path, "`tokenizer.ggml.token_type` holds non-integers"))?;
                if types.len() != n {
                    return Err(tok_err(
                        path,
                        format!("`tokenizer.ggml.token_type` has {} entries but there are {n} tokens", types.len()),
                    ));
                }
                Some(types)
            }
        };
        let merges_raw = match gguf.get("tokenizer.ggml.merges") {
            None => {
                return Err(tok_err(path, "missing metadata `tokenizer.ggml.merges` (required for a gpt2 tokenizer)"))
            }
            Some(_) => gguf
                .get_str_array("tokenizer.ggml.merges")
                .ok_or_else(|| tok_err(path, "`tokenizer.ggml.merges` is not an array of strings"))?,
        };

        let mut vocab = Vocab::with_capacity(n);
        let mut duplicates = 0usize;
        for (id, tok) in tokens.iter().enumerate() {
            if vocab.contains_key(*tok) {
                duplicates += 1;
            } else {
                vocab.insert((*tok).to_string(), id as u32);
            }
        }
        if duplicates > 0 {
            // The first id wins, as in HF's converter; later duplicates can only be decoded by id.
            tracing::warn!(path = %path.display(), "{duplicates} duplicate token strings in tokenizer.ggml.tokens");
        }

        let mut merges: Merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            // Split at the first space after the first character, as llama.cpp does.
            let split = m.char_indices().skip(1).find(|&(_, c)| c == ' ').map(|(at, _)| at);
            let (a, b) = match split {
                Some(at) => (&m[..at], &m[at + 1..]),
                None => return Err(tok_err(path, format!("merge #{i} `{m}` is not two tokens separated by a space"))),
            };
            if b.is_empty() {
                return Err(tok_err(path, format!("merge #{i} `{m}` has an empty right part")));
            }
            for part in [a, b] {
                if !vocab.contains_key(part) {
                    return Err(tok_err(path, format!("merge #{i} `{m}`: token `{part}` is not in the vocabulary")));
                }
            }
            let joined = format!("{a}{b}");
            if !vocab.contains_key(&joined) {
                return Err(tok_err(path, format!("merge #{i} `{m}`: result `{joined}` is not in the vocabulary")));
            }
            merges.push((a.to_string(), b.to_string()));
        }

        let bos_id = gguf_token_id(gguf, "tokenizer.ggml.bos_token_id", n)?;
        let eos_id = gguf_token_id(gguf, "tokenizer.ggml.eos_token_id", n)?;
        let pad_id = gguf_token_id(gguf, "tokenizer.ggml.padding_token_id", n)?;
        let unk_id = gguf_token_id(gguf, "tokenizer.ggml.unknown_token_id", n)?;

        let pre = gguf.get_str("tokenizer.ggml.pre");
        let (pre_tokenizer, ignore_merges) = pre_tokenizer_for(pre, path)?;
        // Byte-level BPE covers every byte, so no unk token is configured in the model.
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| tok_err(path, format!("cannot build BPE model: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(false, true, true))));

        // Control tokens and bos/eos/pad/unk are special; user-defined ones are plain added tokens.
        let named: HashSet<u32> = [bos_id, eos_id, pad_id, unk_id].into_iter().flatten().collect();
        let mut special = Vec::new();
        let mut added = Vec::new();
        for (id, tok) in tokens.iter().enumerate() {
            let ty = token_types.as_ref().map_or(1, |t| t[id]);
            if ty == TOKEN_TYPE_CONTROL || named.contains(&(id as u32)) {
                special.push(AddedToken::from(*tok, true));
            } else if ty == TOKEN_TYPE_USER_DEFINED {
                added.push(AddedToken::from(*tok, false).normalized(false));
            }
        }
        inner.add_special_tokens(&special);
        inner.add_tokens(&added);

        // llama.cpp defaults add_bos to true only for the Llama 3 pre-tokenizer family.
        let default_bos = matches!(pre, Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3"));
        let add_bos = gguf.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(default_bos)
            && bos_id.is_some();
        let add_eos =
            gguf.get("tokenizer.ggml.add_eos_token").and_then(Value::as_bool).unwrap_or(false) && eos_id.is_some();
        let mut manual = false;
        if add_bos || add_eos {
            match template_processor(&tokens, bos_id.filter(|_| add_bos), eos_id.filter(|_| add_eos)) {
                Ok(pp) => {
                    inner.with_post_processor(Some(PostProcessorWrapper::Template(pp)));
                }
                Err(e) => {
                    // E.g. a token containing ':' cannot appear in a template; add it by hand.
                    tracing::debug!(path = %path.display(), "no template post-processor ({e}); adding bos/eos by hand");
                    manual = true;
                }
            }
        }
        let chat_template = gguf.get_str("tokenizer.chat_template").map(str::to_string);
        Ok(TextTokenizer {
            inner,
            source: path.to_path_buf(),
            bos_id,
            eos_id,
            pad_id,
            unk_id,
            add_bos,
            add_eos,
            manual_bos: manual && add_bos,
            manual_eos: manual && add_eos,
            use_post_processor: true,
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

/// Post-processor adding bos/eos around each sequence.
fn template_processor(
    tokens: &[&str],
    bos: Option<u32>,
    eos: Option<u32>,
) -> std::result::Result<TemplateProcessing, String> {
    let name = |id: u32| tokens.get(id as usize).map(|s| (*s).to_string()).ok_or("id out of range".to_string());
    let mut specials = Vec::new();
    let mut single = Vec::new();
    let mut pair = Vec::new();
    if let Some(b) = bos {
        let t = name(b)?;
        if t.contains(':') || t.contains(' ') || t.starts_with('$') {
            return Err(format!("bos `{t}` cannot appear in a template"));
        }
        single.push(t.clone());
        pair.push(t.clone());
        specials.push((t, b));
    }
    single.push("$A:0".to_string());
    pair.push("$A:0".to_string());
    if let Some(e) = eos {
        let t = name(e)?;
        if t.contains(':') || t.contains(' ') || t.starts_with('$') {
            return Err(format!("eos `{t}` cannot appear in a template"));
        }
        single.push(t.clone());
        pair.push(t.clone());
        specials.push((t, e));
    }
    if let Some((t, _)) = specials.first().filter(|_| bos.is_some()) {
        pair.push(format!("{t}:1"));
    }
    pair.push("$B:1".to_string());
    if let (Some(_), Some((t, _))) = (eos, specials.last()) {
        pair.push(format!("{t}:1"));
    }
    TemplateProcessing::builder()
        .try_single(single)?
        .try_pair(pair)?
        .special_tokens(specials)
        .build()
        .map_err(|e| e.to_string())
}

/// Streaming detokenizer: push generated ids one at a time and get back only newly completed
/// text. Byte-level tokens can split a multi-byte character, so text ending in an incomplete
/// UTF-8 sequence is held back until a later token completes it.
///
/// Concatenating every returned piece plus [`IncrementalDecoder::finish`] gives the same text as
/// decoding all ids at once (for valid UTF-8 output).
#[derive(Debug)]
pub struct IncrementalDecoder<'a> {
    tokenizer: &'a TextTokenizer,
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the context window that is decoded again to get stable spacing.
    prefix_offset: usize,
    /// End of the ids already returned as text.
    read_offset: usize,
}

impl<'a> IncrementalDecoder<'a> {
    /// A decoder with no ids yet.
    pub fn new(tokenizer: &'a TextTokenizer, skip_special: bool) -> Self {
        IncrementalDecoder { tokenizer, skip_special, ids: Vec::new(), prefix_offset: 0, read_offset: 0 }
    }

    fn delta(&self) -> Result<(String, usize)> {
        let prefix = self.tokenizer.decode(&self.ids[self.prefix_offset..self.read_offset], self.skip_special)?;
        let full = self.tokenizer.decode(&self.ids[self.prefix_offset..], self.skip_special)?;
        Ok((full, prefix.len()))
    }

    fn cut(full: &str, prefix_len: usize) -> String {
        // Normally `full` starts with the prefix text; stay on a char boundary regardless.
        let mut at = prefix_len.min(full.len());
        while !full.is_char_boundary(at) {
            at += 1;
        }
        full[at..].to_string()
    }

    fn advance(&mut self) {
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        // Drop ids that can no longer influence output, so memory stays bounded.
        if self.prefix_offset > 64 {
            self.ids.drain(..self.prefix_offset);
            self.read_offset -= self.prefix_offset;
            self.prefix_offset = 0;
        }
    }

    /// Adds one id; returns the text it completes, if any.
    ///
    /// # Errors
    /// `Tokenizer` if decoding fails.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let (full, prefix_len) = self.delta()?;
        if full.len() > prefix_len && !full.ends_with('\u{FFFD}') {
            let piece = Self::cut(&full, prefix_len);
            self.advance();
            return Ok(Some(piece));
        }
        Ok(None)
    }

    /// Returns whatever text is still held back (an incomplete character becomes U+FFFD).
    ///
    /// # Errors
    /// `Tokenizer` if decoding fails.
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.read_offset >= self.ids.len() {
            return Ok(None);
        }
        let (full, prefix_len) = self.delta()?;
        self.advance();
        Ok((full.len() > prefix_len).then(|| Self::cut(&full, prefix_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::require_default_model;

    /// Golden ids from transformers' AutoTokenizer on the GGUF
    /// (/work/shared/golden/smollm2_135m_q4_1.json; add_bos_token=false, so both variants agree).
    const GOLDEN: &[(&str, &str, &[u32])] = &[
        (
            "plain_english",
            "The quick brown fox jumps over the lazy dog. Rust is a systems programming language that runs blazingly fast and prevents segfaults.",
            &[504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 36828, 314, 253, 1734, 6256, 1789, 338, 7313, 754, 4750, 318, 3538, 284, 10759, 7530, 46571, 99, 30],
        ),
        (
            "chat_user_message",
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWrite a haiku about autumn leaves.<|im_end|>\n<|im_start|>assistant\n",
            &[1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 19161, 253, 421, 30614, 563, 15339, 3711, 30, 2, 198, 1, 520, 9531, 198],
        ),
        (
            "unicode_emoji",
            "Café naïve façade — 日本語のテキスト, emoji 🤗🦀👨\u{200d}👩\u{200d}👧 and math ∑∫√≠∞; Ünïcödé  double  spaces\ttab\nnewline 12345!",
            &[51, 1939, 2756, 15486, 46494, 40852, 1841, 17097, 241, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 28, 649, 33777, 15107, 114, 241, 10813, 116, 218, 10813, 235, 118, 321, 231, 10813, 235, 119, 321, 231, 10813, 235, 117, 284, 4119, 19995, 235, 22052, 121, 22052, 244, 40533, 250, 22052, 248, 43, 5549, 246, 94, 25972, 83, 7466, 84, 2756, 216, 5561, 216, 5600, 197, 15999, 198, 28160, 216, 33, 34, 35, 36, 37, 17],
        ),
    ];

    fn gguf_tokenizer() -> Option<TextTokenizer> {
        let path = require_default_model()?;
        let gguf = GgufFile::open(&path).expect("open default GGUF");
        Some(TextTokenizer::from_gguf(&gguf).expect("build tokenizer from GGUF"))
    }

    #[test]
    fn tokenizer_gguf_matches_golden_ids() {
        let Some(tok) = gguf_tokenizer() else { return };
        assert_eq!(tok.vocab_size(), 49152);
        assert_eq!((tok.bos_id(), tok.eos_id(), tok.pad_id(), tok.unk_id()), (Some(1), Some(2), Some(2), Some(0)));
        assert!(!tok.add_bos_token());
        assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(tok.id_to_token(2).as_deref(), Some("<|im_end|>"));
        assert_eq!(tok.special_tokens().len(), 17);
        assert!(tok.chat_template().is_some());
        for (name, text, ids) in GOLDEN {
            assert_eq!(tok.encode(text, true).expect("encode"), *ids, "{name}: add_special_tokens=true");
            assert_eq!(tok.encode(text, false).expect("encode"), *ids, "{name}: add_special_tokens=false");
            assert_eq!(tok.decode(ids, false).expect("decode"), *text, "{name}: decode round trip");
        }
        let chat_ids = GOLDEN[1].2;
        let no_special = tok.decode(chat_ids, true).expect("decode");
        assert!(!no_special.contains("<|im_start|>") && no_special.starts_with("system\n"));
    }

    #[test]
    fn tokenizer_json_fixture_round_trip() {
        let Some(tok) = gguf_tokenizer() else { return };
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tokenizer.json");
        tok.inner().save(&file, false).expect("save tokenizer.json");
        let config = serde_json::json!({
            "bos_token": "<|im_start|>",
            "eos_token": {"content": "<|im_end|>", "special": true},
            "pad_token": "<|im_end|>",
            "add_bos_token": false,
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
        });
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).expect("write config");
        let loaded = TextTokenizer::from_file(dir.path()).expect("reload tokenizer.json");
        assert_eq!(loaded.vocab_size(), tok.vocab_size());
        assert_eq!((loaded.bos_id(), loaded.eos_id(), loaded.pad_id()), (Some(1), Some(2), Some(2)));
        assert_eq!(loaded.special_tokens(), tok.special_tokens());
        assert!(loaded.chat_template().is_some_and(|t| t.starts_with("{{ bos_token }}")));
        for (name, text, ids) in GOLDEN {
            assert_eq!(loaded.encode(text, true).expect("encode"), *ids, "{name}");
            assert_eq!(loaded.encode(text, false).expect("encode"), *ids, "{name}");
        }
        // The config can switch bos on even though the saved post-processor does not add it.
        let config = serde_json::json!({"bos_token": "<|im_start|>", "add_bos_token": true});
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).expect("write config");
        let with_bos = TextTokenizer::from_file(&file).expect("reload");
        assert_eq!(with_bos.encode("Hi", true).expect("encode")[0], 1);
        assert_eq!(with_bos.encode("Hi", false).expect("encode"), tok.encode("Hi", false).expect("encode"));
    }

    #[test]
    fn tokenizer_incremental_decoder_emoji() {
        let Some(tok) = gguf_tokenizer() else { return };
        let (_, text, ids) = GOLDEN[2];
        let mut dec = tok.incremental_decoder(false);
        let mut out = String::new();
        let mut pieces = 0;
        for &id in ids {
            if let Some(piece) = dec.push(id).expect("push") {
                assert!(!piece.contains('\u{FFFD}'), "incomplete character emitted: {piece:?}");
                out.push_str(&piece);
                pieces += 1;
            }
        }
        if let Some(rest) = dec.finish().expect("finish") {
            out.push_str(&rest);
        }
        assert_eq!(out, tok.decode(ids, false).expect("decode"));
        assert_eq!(out, text);
        // Some tokens complete no character on their own (split multi-byte sequences).
        assert!(pieces < ids.len());
    }

    #[test]
    fn tokenizer_incremental_decoder_flushes_incomplete_tail() {
        let Some(tok) = gguf_tokenizer() else { return };
        // "🤗" is split into byte-level pieces; push only the first.
        let ids = tok.encode("🤗", false).expect("encode");
        assert!(ids.len() > 1);
        let mut dec = tok.incremental_decoder(true);
        assert_eq!(dec.push(ids[0]).expect("push"), None);
        assert_eq!(dec.finish().expect("finish"), Some("\u{FFFD}".to_string()));
        assert_eq!(dec.finish().expect("finish"), None);
    }

    /// Writes a GGUF file with no tensors and the given metadata.
    fn write_gguf(path: &Path, kvs: &[(&str, Value)]) {
        fn put_str(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn put_value(out: &mut Vec<u8>, v: &Value, with_type: bool) {
            let (ty, body): (u32, Vec<u8>) = match v {
                Value::U32(x) => (4, x.to_le_bytes().to_vec()),
                Value::Bool(b) => (7, vec![u8::from(*b)]),
                Value::String(s) => {
                    let mut b = Vec::new();
                    put_str(&mut b, s);
                    (8, b)
                }
                Value::Array(items) => {
                    let mut b = Vec::new();
                    let item_ty: u32 = match items.first() {
                        Some(Value::U32(_)) => 4,
                        _ => 8,
                    };
                    b.extend_from_slice(&item_ty.to_le_bytes());
                    b.extend_from_slice(&(items.len() as u64).to_le_bytes());
                    for it in items {
                        put_value(&mut b, it, false);
                    }
                    (9, b)
                }
                other => panic!("unsupported test value {other:?}"),
            };
            if with_type {
                out.extend_from_slice(&ty.to_le_bytes());
            }
            out.extend_from_slice(&body);
        }
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
        for (k, v) in kvs {
            put_str(&mut out, k);
            put_value(&mut out, v, true);
        }
        std::fs::write(path, out).expect("write GGUF");
    }

    fn strs(v: &[&str]) -> Value {
        Value::Array(v.iter().map(|s| Value::String((*s).to_string())).collect())
    }

    /// A tiny byte-level vocabulary: `<s>` (control), bytes, and merges up to `Ġab`.
    fn tiny_kvs(model: &str, pre: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("tokenizer.ggml.model", Value::String(model.to_string())),
            ("tokenizer.ggml.pre", Value::String(pre.to_string())),
            ("tokenizer.ggml.tokens", strs(&["<s>", "a", "b", "Ġ", "1", "2", "ab", "Ġab", "<tool>"])),
            ("tokenizer.ggml.token_type", Value::Array([3u32, 1, 1, 1, 1, 1, 1, 1, 4].map(Value::U32).to_vec())),
            ("tokenizer.ggml.merges", strs(&["a b", "Ġ ab"])),
            ("tokenizer.ggml.bos_token_id", Value::U32(0)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ]
    }

    #[test]
    fn tokenizer_gguf_synthetic_vocab_and_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tiny.gguf");
        for pre in ["smollm", "llama-bpe", "qwen2", "gpt2", "mystery"] {
            write_gguf(&path, &tiny_kvs("gpt2", pre));
            let tok = TextTokenizer::from_gguf(&GgufFile::open(&path).expect("open")).expect(pre);
            assert_eq!(tok.encode("ab ab<s>12<tool>", true).expect("encode"), [0, 6, 7, 0, 4, 5, 8], "{pre}");
            assert_eq!(tok.encode("ab", false).expect("encode"), [6], "{pre}");
            assert_eq!(tok.decode(&[0, 6, 7, 8], true).expect("decode"), "ab ab<tool>", "{pre}");
            assert_eq!(tok.special_tokens(), [(0, "<s>".to_string())]);
        }

        let expect_err = |kvs: &[(&str, Value)], needle: &str| {
            write_gguf(&path, kvs);
            let err = TextTokenizer::from_gguf(&GgufFile::open(&path).expect("open")).expect_err(needle);
            let msg = err.to_string();
            assert!(matches!(err, ModelError::Tokenizer { .. }), "{msg}");
            assert!(msg.contains("tiny.gguf") && msg.contains(needle), "{msg}");
        };
        expect_err(&tiny_kvs("llama", "default"), "unsupported tokenizer model `llama`");
        let without = |key: &str| -> Vec<(&'static str, Value)> {
            tiny_kvs("gpt2", "smollm").into_iter().filter(|(k, _)| *k != key).collect()
        };
        expect_err(&without("tokenizer.ggml.merges"), "tokenizer.ggml.merges");
        expect_err(&without("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens");
        expect_err(&without("tokenizer.ggml.model"), "tokenizer.ggml.model");
        let mut bad = tiny_kvs("gpt2", "smollm");
        bad[4].1 = strs(&["a b", "b c"]);
        expect_err(&bad, "token `c` is not in the vocabulary");
        let mut bad = tiny_kvs("gpt2", "smollm");
        bad[4].1 = strs(&["ab"]);
        expect_err(&bad, "merge #0");
        let mut bad = tiny_kvs("gpt2", "smollm");
        bad[3].1 = Value::Array(vec![Value::U32(1); 3]);
        expect_err(&bad, "token_type` has 3 entries");
        let mut bad = tiny_kvs("gpt2", "smollm");
        bad[5].1 = Value::U32(99);
        expect_err(&bad, "outside the vocabulary");
    }

    #[test]
    fn tokenizer_from_file_missing_is_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = TextTokenizer::from_file(&dir.path().join("nope.json")).expect_err("missing file");
        assert!(matches!(err, ModelError::Tokenizer { .. }), "{err}");
    }
}
