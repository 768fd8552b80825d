//! Agreement with transformers on the real default model (`shared/golden/`): token ids, logits,
//! log-likelihood, greedy continuation, dequantized weights, PEFT adapter logits, and GGUF vs
//! safetensors loading. Needs `scripts/fetch-default-model.sh`; never skipped in CI.
use serde_json::Value;
use tuneguard_model::generate::{generate, GenerateOptions};
use tuneguard_model::llama::{KvCache, LogitsFor};
use tuneguard_model::testutil::{mean_log_likelihood, require_default_model, shared_dir};
use tuneguard_model::LoadedModel;

fn golden(rel: &str) -> Value {
    let path = shared_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden JSON")
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn load_default() -> Option<LoadedModel> {
    let path = require_default_model()?;
    Some(tuneguard_model::load(&path).expect("load default model"))
}

fn all_logits(m: &LoadedModel, ids: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(&m.model.config);
    m.model.forward(ids, &mut cache, LogitsFor::All).expect("forward")
}

/// Checks the last position's golden top-20 logits (1e-3 abs) and the mean log-likelihood (1e-4).
fn check_logits(name: &str, logits: &[f32], ids: &[u32], case: &Value) {
    let v = logits.len() / ids.len();
    let last = &logits[(ids.len() - 1) * v..];
    let mut worst = 0f32;
    for pair in case["last_position_top20"].as_array().expect("top20") {
        let (id, want) = (pair[0].as_u64().expect("id") as usize, pair[1].as_f64().expect("logit") as f32);
        worst = worst.max((last[id] - want).abs());
    }
    assert!(worst < 1e-3, "{name}: top-20 logits differ by up to {worst}");
    let ours_top1 = tuneguard_model::generate::argmax(last);
    assert_eq!(ours_top1 as u64, case["last_position_top20"][0][0].as_u64().expect("id"), "{name}: top-1");
    let mll = mean_log_likelihood(logits, ids);
    let want = case["mean_log_likelihood"].as_f64().expect("mll");
    assert!((mll - want).abs() < 1e-4, "{name}: mean log-likelihood {mll} vs {want}");
    eprintln!("{name}: max |Δ top-20 logit| = {worst:.2e}, |Δ mean LL| = {:.2e}", (mll - want).abs());
}

#[test]
fn tokens_logits_and_log_likelihood_match_transformers() {
    let Some(m) = load_default() else { return };
    let g = golden("golden/smollm2_135m_q4_1.json");
    for case in g["inputs"].as_array().expect("inputs") {
        let name = case["name"].as_str().expect("name");
        let text = case["text"].as_str().expect("text");
        let ids = m.tokenizer.encode(text, true).expect("encode");
        assert_eq!(ids, ids_of(&case["token_ids_default"]), "{name}: token ids (default)");
        let plain = m.tokenizer.encode(text, false).expect("encode");
        assert_eq!(plain, ids_of(&case["token_ids_add_special_tokens_false"]), "{name}: token ids (no special)");
        check_logits(name, &all_logits(&m, &ids), &ids, case);
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    let Some(m) = load_default() else { return };
    let g = golden("golden/smollm2_135m_q4_1.json");
    let case = &g["inputs"][1];
    let messages: Vec<tuneguard_model::chat::ChatMessage> =
        serde_json::from_value(case["chat_messages"].clone()).expect("messages");
    let template = m.chat_template.as_ref().expect("the GGUF has a chat template");
    let text = template.render(&messages, true).expect("render");
    assert_eq!(text, case["text"].as_str().expect("text"));
    let ids = m.tokenizer.encode(&text, false).expect("encode");
    let opts = GenerateOptions { max_new_tokens: 20, ..Default::default() };
    let out = generate(&m.model, &ids, &opts, |_| std::ops::ControlFlow::Continue(())).expect("generate");
    assert_eq!(out.tokens, ids_of(&case["greedy_20_new_token_ids"]));
    let text = m.tokenizer.decode(&out.tokens, true).expect("decode");
    assert_eq!(text, case["greedy_20_new_text"].as_str().expect("text"));
}

#[test]
fn kv_cache_decode_equals_full_forward() {
    let Some(m) = load_default() else { return };
    let ids =
        m.tokenizer.encode("Rust is a systems programming language that runs blazingly fast.", false).expect("encode");
    let full = all_logits(&m, &ids);
    let v = m.model.config.vocab_size;
    let mut cache = KvCache::new(&m.model.config);
    m.model.forward(&ids[..5], &mut cache, LogitsFor::Last).expect("prefill");
    for (i, &tok) in ids.iter().enumerate().skip(5) {
        let step = m.model.forward(&[tok], &mut cache, LogitsFor::Last).expect("decode");
        let want = &full[i * v..(i + 1) * v];
        let diff = step.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-3, "position {i}: cached decode differs from the full forward by {diff}");
    }
}

#[test]
fn batched_forward_equals_each_sequence_alone() {
    let Some(m) = load_default() else { return };
    let g = golden("golden/smollm2_135m_q4_1.json");
    let v = m.model.config.vocab_size;
    let mut seqs: Vec<Vec<u32>> = g["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|c| m.tokenizer.encode(c["text"].as_str().expect("text"), true).expect("encode"))
        .collect();
    // One row past an attention query chunk (64), and a one-token sequence.
    let long: Vec<u32> = seqs.iter().flatten().copied().cycle().take(150).collect();
    seqs.push(long);
    seqs.push(vec![seqs[0][0]]);
    let asks: Vec<(&[u32], usize)> = seqs.iter().enumerate().map(|(i, s)| (s.as_slice(), (i * 3) % s.len())).collect();
    let batched = m.model.forward_batch(&asks).expect("forward_batch");
    assert_eq!(batched.len(), seqs.len());
    let mut worst = 0f32;
    for ((ids, from), got) in asks.iter().zip(&batched) {
        let alone = all_logits(&m, ids);
        assert_eq!(got.len(), (ids.len() - from) * v);
        for (a, b) in got.iter().zip(&alone[from * v..]) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("batched vs alone: max |Δ logit| = {worst:.2e}");
    assert!(worst < 1e-3, "batched logits differ from one-sequence logits by up to {worst}");
    for (case, got) in g["inputs"].as_array().expect("inputs").iter().zip(&batched) {
        let ids = ids_of(&case["token_ids_default"]);
        if asks.iter().any(|(s, from)| *s == ids.as_slice() && *from == 0) {
            check_logits(case["name"].as_str().expect("name"), got, &ids, case);
        }
    }
    let e = m.model.forward_batch(&[(&seqs[0][..], seqs[0].len())]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("logits asked from position"), "{e}");
    let too_long = vec![seqs[0][0]; m.model.config.max_position_embeddings + 1];
    let e = m.model.forward_batch(&[(&too_long[..], 0)]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("exceed the context window"), "{e}");
}

#[test]
fn dequantized_weights_match_checksums() {
    let Some(m) = load_default() else { return };
    let g = golden("golden/smollm2_135m_q4_1.json");
    let tensors = tuneguard_model::save::named_tensors(&m.model);
    for (name, want) in g["weight_checksums"].as_object().expect("checksums") {
        let (_, shape, data) = tensors.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{name} missing"));
        let want_shape: Vec<usize> =
            want["shape"].as_array().expect("shape").iter().map(|x| x.as_u64().expect("dim") as usize).collect();
        assert_eq!(shape, &want_shape, "{name} shape");
        let first4: Vec<f64> = data[..4].iter().map(|&x| x as f64).collect();
        let want4: Vec<f64> =
            want["first4"].as_array().expect("first4").iter().map(|x| x.as_f64().expect("f")).collect();
        assert_eq!(first4, want4, "{name} first values");
        let sum: f64 = data.iter().map(|&x| x as f64).sum();
        let sum_abs: f64 = data.iter().map(|&x| (x as f64).abs()).sum();
        let (ws, wa) = (want["sum"].as_f64().expect("sum"), want["sum_abs"].as_f64().expect("sum_abs"));
        assert!((sum - ws).abs() <= 1e-6 * wa, "{name} sum {sum} vs {ws}");
        assert!((sum_abs - wa).abs() <= 1e-6 * wa, "{name} sum_abs {sum_abs} vs {wa}");
    }
}

#[test]
fn peft_adapter_init_logits_match_peft() {
    let Some(path) = require_default_model() else {
        return;
    };
    let dir = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let m = tuneguard_model::load_with_adapter(&path, Some(&dir)).expect("load with adapter");
    let g = golden("golden/peft_lora_r4/peft_lora_golden.json");
    for (name, case) in g["logits_with_adapter_init"].as_object().expect("cases") {
        let ids = m.tokenizer.encode(case["text"].as_str().expect("text"), true).expect("encode");
        assert_eq!(ids, ids_of(&case["token_ids"]), "{name}: token ids");
        check_logits(name, &all_logits(&m, &ids), &ids, case);
    }
}

#[test]
fn gguf_and_safetensors_copies_give_identical_logits() {
    let Some(m) = load_default() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("hf");
    tuneguard_model::save::save_hf_dir(&m, &dir).expect("save");
    let hf = tuneguard_model::load(&dir).expect("load safetensors copy");
    assert_eq!(hf.model.config, m.model.config);
    let text = "The quick brown fox jumps over the lazy dog. Rust is a systems programming language.";
    let ids = m.tokenizer.encode(text, true).expect("encode");
    assert_eq!(hf.tokenizer.encode(text, true).expect("encode"), ids);
    let (a, b) = (all_logits(&m, &ids), all_logits(&hf, &ids));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert_eq!(diff, 0.0, "GGUF and safetensors logits differ by {diff}");
    let chat = [tuneguard_model::chat::ChatMessage::new("user", "Hi")];
    assert_eq!(
        hf.chat_template.as_ref().expect("template").render(&chat, true).expect("render"),
        m.chat_template.as_ref().expect("template").render(&chat, true).expect("render")
    );
}

#[test]
fn merged_adapter_gives_the_same_logits_as_base_plus_adapter() {
    let Some(path) = require_default_model() else { return };
    let dir = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let m = tuneguard_model::load_with_adapter(&path, Some(&dir)).expect("load with adapter");
    let ids = m.tokenizer.encode("The quick brown fox jumps over the lazy dog.", true).expect("encode");
    let with_adapter = all_logits(&m, &ids);
    let mut merged = m.model.clone();
    for layer in &mut merged.layers {
        for (_, lin) in layer.projections_mut() {
            lin.merge_lora();
            assert!(lin.lora.is_none());
        }
    }
    let mut cache = KvCache::new(&merged.config);
    let logits = merged.forward(&ids, &mut cache, LogitsFor::All).expect("forward");
    let diff = logits.iter().zip(&with_adapter).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = with_adapter.iter().fold(0f32, |m, x| m.max(x.abs()));
    eprintln!("merged vs base + adapter: max |Δ logit| = {diff:.2e} (max |logit| {scale:.2})");
    // W x + s·B(A x) and (W + s·BA) x round differently in f32; how much depends on the kernel's
    // summation order (8.5e-5 with the AVX-512 sgemm, 1.33e-4 on an AVX2-only AMD EPYC), so the
    // bound is relative to the logits' size: 1e-5 of the largest |logit|. A wrong merge (a missing
    // scale, a transposed B·A) moves logits by 1e-1 or more.
    assert!(diff < 1e-5 * scale, "merged weights differ from base + adapter by {diff} (max |logit| {scale})");
}
