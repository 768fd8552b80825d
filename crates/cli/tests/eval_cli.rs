//! End-to-end tests of `tuneguard eval perplexity` on the real model and WikiText-2.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::{Command, Output};

use tuneguard_model::testutil::{repo_root, require_default_model};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

fn wikitext() -> PathBuf {
    repo_root().join("../shared/data/general_text/wikitext2_test.jsonl")
}

#[test]
fn perplexity_json_is_complete_and_the_same_for_the_same_seed() {
    let Some(model) = require_default_model() else { return };
    let (model, data) = (model.display().to_string(), wikitext().display().to_string());
    let args = [
        "eval",
        "perplexity",
        &data,
        "--model",
        &model,
        "--max-tokens",
        "300",
        "--window",
        "128",
        "--stride",
        "64",
        "--bootstrap",
        "200",
        "--seed",
        "3",
        "--json",
    ];
    let out = tuneguard(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["task"], "perplexity");
    assert_eq!(v["rows"], 60);
    assert_eq!(v["tokens"], 300);
    // Windows start at 0, 64, 128 and 192 (the last reaches the end); all tokens but the first
    // are scored.
    assert_eq!(v["windows"], 4);
    assert_eq!(v["tokens_scored"], 299);
    let ppl = v["perplexity"].as_f64().unwrap();
    assert!((ppl.ln() - v["nll"].as_f64().unwrap()).abs() < 1e-9);
    let (low, high) = (v["interval"]["low"].as_f64().unwrap(), v["interval"]["high"].as_f64().unwrap());
    assert!(low <= ppl && ppl <= high, "{low} {ppl} {high}");
    let again: serde_json::Value = serde_json::from_slice(&tuneguard(&args).stdout).unwrap();
    assert_eq!((&again["perplexity"], &again["interval"]), (&v["perplexity"], &v["interval"]));
}

#[test]
fn bad_input_is_one_error_line_and_exit_2() {
    let Some(model) = require_default_model() else { return };
    let model = model.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let bad_row = dir.path().join("bad.jsonl");
    std::fs::write(&bad_row, "{\"text\": \"fine\"}\n{\"text\": 7}\n").unwrap();
    let data = wikitext().display().to_string();
    let (empty, bad_row) = (empty.display().to_string(), bad_row.display().to_string());
    let cases: [(Vec<&str>, &str); 6] = [
        (vec!["/nonexistent/text.jsonl"], "/nonexistent/text.jsonl"),
        (vec![&empty], "no text to evaluate"),
        (vec![&bad_row], "bad.jsonl:2: `text` is not a string"),
        (vec![&data, "--window", "100000"], "exceed the model's context length"),
        (vec![&data, "--stride", "0"], "--stride"),
        (vec![&data, "--window", "64", "--stride", "65"], "--stride"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["eval", "perplexity", "--model", &model, "--max-tokens", "50"];
        args.extend(extra.iter().copied());
        let out = tuneguard(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
    }
}
