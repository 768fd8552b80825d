//! Unit tests of the tokenizer: golden ids on the default GGUF, tokenizer.json round trips,
//! incremental decoding, and synthetic GGUF vocabularies and errors.
use std::path::Path;

use super::TextTokenizer;
use crate::error::ModelError;
use crate::gguf::{GgufFile, Value};
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
