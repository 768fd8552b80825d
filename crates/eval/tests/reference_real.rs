//! `tuneguard-eval` against transformers on the real model: the values in
//! `tests/data/eval_reference.json` were computed by `scripts/reference/eval_reference.py`
//! (torch + transformers on the same Q4_1 weights dequantized to float32; versions inside).
//!
//! - perplexity of the first 2048 WikiText-2 test tokens for four (window, stride) settings,
//!   within 0.5 % (the bound; the observed difference is far smaller);
//! - SST-2 as a 2-way choice (lm-evaluation-harness `loglikelihood`): the same continuation
//!   tokens, the same log-likelihoods within 1e-3 nats + 0.1 %, and the same chosen answer on
//!   every item. The test takes the first 300 items; `TUNEGUARD_SST2_ALL=1` takes all 1821;
//! - greedy chat generation on 12 Self-Instruct seed tasks: the same prompt tokens and the same
//!   generated tokens.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use serde_json::Value;
use tuneguard_eval::choice::{score_items, Item};
use tuneguard_eval::generation::{prompt_tokens, GenItem, GenerationSpec};
use tuneguard_eval::perplexity::perplexity;
use tuneguard_eval::rows::Template;
use tuneguard_eval::texts::read_texts;
use tuneguard_model::generate::{generate, GenerateOptions};
use tuneguard_model::testutil::{repo_root, require_default_model};

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/eval_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn perplexity_equals_transformers_for_each_window_and_stride() {
    let Some(model) = require_default_model() else { return };
    let m = tuneguard_model::load(&model).unwrap();
    let r = &reference()["perplexity"];
    let texts = read_texts(&repo_root().join("data/eval/wikitext2_test.jsonl"), "text").unwrap();
    let mut tokens = m.tokenizer.encode(&texts.join("\n\n"), false).unwrap();
    assert_eq!(tokens.len() as u64, r["text_tokens"].as_u64().unwrap(), "the whole text tokenizes alike");
    tokens.truncate(r["tokens_used"].as_u64().unwrap() as usize);
    assert_eq!(tokens[..16], ids(&r["first_token_ids"])[..]);
    assert_eq!(tokens[tokens.len() - 16..], ids(&r["last_token_ids"])[..]);
    for c in r["configs"].as_array().unwrap() {
        let (window, stride) = (c["window"].as_u64().unwrap() as usize, c["stride"].as_u64().unwrap() as usize);
        let ours = perplexity(&m.model, &tokens, window, stride, None, &|| ()).unwrap();
        assert_eq!(ours.tokens_scored, c["tokens_scored"].as_u64().unwrap(), "window {window} stride {stride}");
        assert_eq!(ours.windows as u64, c["windows"].as_u64().unwrap());
        let want = c["perplexity"].as_f64().unwrap();
        let rel = (ours.perplexity - want).abs() / want;
        eprintln!(
            "window {window} stride {stride}: ours {:.6} transformers {want:.6} (rel {rel:.2e})",
            ours.perplexity
        );
        assert!(rel < 0.005, "window {window} stride {stride}: {} vs {want}", ours.perplexity);
    }
}

#[test]
fn sst2_choices_equal_transformers_item_by_item() {
    let Some(model) = require_default_model() else { return };
    let m = tuneguard_model::load(&model).unwrap();
    let r = &reference()["sst2"];
    let choices: Vec<String> =
        r["choices"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().trim().to_string()).collect();
    let rows: Vec<Value> = std::fs::read_to_string(repo_root().join("data/eval/sst2_test.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = r["items"].as_array().unwrap();
    assert_eq!(want.len(), rows.len());
    let n = if std::env::var_os("TUNEGUARD_SST2_ALL").is_some() { rows.len() } else { 300 };
    let question = "\nQuestion: Is this sentence positive or negative?\nAnswer:";
    let (mut same_pred, mut max_diff) = (0, 0f64);
    let mut items = Vec::new();
    for (row, w) in rows.iter().zip(want).take(n) {
        assert_eq!(row["id"], w["id"]);
        let item = Item {
            line: 0,
            id: w["id"].as_str().unwrap().into(),
            prompt: format!("{}{question}", row["text"].as_str().unwrap()),
            choices: choices.clone(),
            target: w["label"].as_u64().unwrap() as usize,
        };
        let (_, conts) = tuneguard_eval::choice::encode(&m.tokenizer, &item.prompt, " ", &choices).unwrap();
        for (c, wc) in conts.iter().zip(w["cont_tokens"].as_array().unwrap()) {
            assert_eq!(c, &ids(wc), "{}", item.id);
        }
        items.push(item);
    }
    // All items at once: the batched forward passes `eval` runs.
    let scores = score_items(&m.model, &m.tokenizer, Path::new("sst2"), &items, " ", &|| ()).unwrap();
    for ((s, item), w) in scores.iter().zip(&items).zip(want) {
        assert_eq!(s.id, item.id);
        for (ours, theirs) in s.loglikelihood.iter().zip(w["ll"].as_array().unwrap()) {
            let theirs = theirs.as_f64().unwrap();
            max_diff = max_diff.max((ours - theirs).abs());
            assert!((ours - theirs).abs() <= 1e-3 + 1e-3 * theirs.abs(), "{}: {ours} vs {theirs}", item.id);
        }
        assert_eq!(s.pred as u64, w["pred"].as_u64().unwrap(), "{}: {:?} vs {}", item.id, s.loglikelihood, w["ll"]);
        assert_eq!(s.pred_norm as u64, w["pred_norm"].as_u64().unwrap(), "{}", item.id);
        same_pred += 1;
    }
    assert_eq!(scores.len(), n);
    eprintln!(
        "sst2: {same_pred}/{n} items with the same choice; largest log-likelihood difference {max_diff:.2e} nats"
    );
}

#[test]
fn greedy_chat_answers_equal_transformers() {
    let Some(model) = require_default_model() else { return };
    let m = tuneguard_model::load(&model).unwrap();
    let r = &reference()["generation"];
    let spec = GenerationSpec {
        prompt: Template::new("prompt", "{{x}}").unwrap(),
        reference_field: String::new(),
        chat: true,
        system: None,
        max_new_tokens: r["max_new_tokens"].as_u64().unwrap() as usize,
        id_field: None,
    };
    for w in r["items"].as_array().unwrap() {
        let item = GenItem {
            line: 0,
            id: String::new(),
            prompt: w["user_message"].as_str().unwrap().into(),
            references: vec![],
        };
        let prompt = prompt_tokens(&m, &spec, &item).unwrap();
        assert_eq!(prompt, ids(&w["prompt_ids"]), "{}", w["id"]);
        // transformers stops at its EOS only; so does this run.
        let eos = r["eos_token_id"].as_u64().unwrap() as u32;
        let opts =
            GenerateOptions { max_new_tokens: spec.max_new_tokens, stop_tokens: vec![eos], ..Default::default() };
        let g = generate(&m.model, &prompt, &opts, |_| std::ops::ControlFlow::Continue(())).unwrap();
        assert_eq!(g.tokens, ids(&w["generated_ids"]), "{}", w["id"]);
    }
}
