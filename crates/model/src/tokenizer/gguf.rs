//! Building a [`TextTokenizer`] from GGUF `tokenizer.ggml.*` metadata: vocabulary, merges,
//! special tokens, the pre-tokenizer named by `tokenizer.ggml.pre`, and bos/eos insertion.
use std::collections::HashSet;
use std::path::Path;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use super::{tok_err, TextTokenizer};
use crate::error::Result;
use crate::gguf::{GgufFile, Value};

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// Llama 3 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`, as in Meta's tokenizer.json).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2 split regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`): like Llama 3 but single digits.
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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

impl TextTokenizer {
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
