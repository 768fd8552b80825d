//! End-to-end tests of `tuneguard eval` (perplexity, choice, generation, suite) on the real
//! model, WikiText-2 and SST-2.
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

fn sst2() -> PathBuf {
    repo_root().join("data/eval/sst2_test.jsonl")
}

const SST2_PROMPT: &str = "{{text}}\nQuestion: Is this sentence positive or negative?\nAnswer:";

#[test]
fn choice_json_counts_add_up_and_bad_choice_input_is_exit_2() {
    let Some(model) = require_default_model() else { return };
    let (model, data) = (model.display().to_string(), sst2().display().to_string());
    let base = ["eval", "choice", "--model", &model, "--prompt", SST2_PROMPT];
    let mut args = base.to_vec();
    args.extend(["--choices", "negative,positive", "--max-items", "12", "--id-field", "id", "--json", &data]);
    let out = tuneguard(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["task"].as_str(), v["items"].as_u64(), v["rows"].as_u64()),
        (Some("multiple_choice"), Some(12), Some(12))
    );
    let items = v["per_item"].as_array().unwrap();
    assert_eq!(items[0]["id"], "sst2_test_0");
    // The accuracy is the share of items whose best choice is the label, and the confusion
    // matrix holds every item once.
    let right = items.iter().filter(|i| i["pred"] == i["target"]).count();
    assert!((v["accuracy"].as_f64().unwrap() - right as f64 / 12.0).abs() < 1e-12);
    let cells: u64 = v["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(cells, 12);
    assert!(items.iter().all(|i| i["loglikelihood"].as_array().unwrap().iter().all(|l| l.as_f64().unwrap() < 0.0)));

    let dir = tempfile::tempdir().unwrap();
    let no_label = dir.path().join("no_label.jsonl");
    std::fs::write(&no_label, "{\"text\": \"fine\", \"label\": 0}\n{\"text\": \"odd\"}\n").unwrap();
    let bad_label = dir.path().join("bad_label.jsonl");
    std::fs::write(&bad_label, "{\"text\": \"fine\", \"label\": 2}\n").unwrap();
    let no_label = no_label.display().to_string();
    let bad_label = bad_label.display().to_string();
    let file = dir.path().join("a_file");
    std::fs::write(&file, "").unwrap();
    let file = file.display().to_string();
    let cases: [(Vec<&str>, &str); 9] = [
        (vec![&data], "choices: missing"),
        (vec![&data, "--choices", "a,a"], "choice 1 (\"a\") repeats"),
        (vec![&data, "--choices", "a,"], "choice 1 is empty"),
        (vec![&data, "--choices", "a,b", "--compare", "base"], "give --adapter too"),
        (vec![&data, "--choices", "a,b", "--output", &file], "exists and is not a folder"),
        (vec![&data, "--choices", "positive"], "at least two choices"),
        (vec!["/nonexistent/sst2.jsonl", "--choices", "a,b"], "/nonexistent/sst2.jsonl"),
        (vec![&no_label, "--choices", "a,b"], "no_label.jsonl:2: no `label` field"),
        (vec![&bad_label, "--choices", "a,b"], "bad_label.jsonl:1: `label` is 2, not a choice index below 2"),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend(extra.iter().copied());
        let out = tuneguard(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line, got {err}");
    }
}

#[test]
fn a_suite_runs_its_tasks_compares_and_writes_a_page() {
    let Some(model) = require_default_model() else { return };
    let model = model.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.toml");
    let text = format!(
        "bootstrap = 100\n\
         [[task]]\nkind = \"perplexity\"\ndata = {wt:?}\nwindow = 64\nmax_tokens = 200\n\
         [[task]]\nname = \"sst2\"\nkind = \"classification\"\ndata = {sst:?}\nprompt = {SST2_PROMPT:?}\nchoices = [\"negative\", \"positive\"]\nmax_items = 6\n\
         [[task]]\nname = \"answers\"\nkind = \"generation\"\ndata = {gen:?}\nprompt = \"{{{{instruction}}}}\"\nreference = \"response\"\nmax_new_tokens = 8\nmax_items = 3\n",
        wt = wikitext().display().to_string(),
        sst = sst2().display().to_string(),
        gen = repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl").display().to_string(),
    );
    std::fs::write(&suite, text).unwrap();
    let page = dir.path().join("page");
    let (suite_s, page_s) = (suite.display().to_string(), page.display().to_string());
    // PEFT's adapter after 5 training steps (../shared/golden), against the base model.
    let adapter = repo_root().join("../shared/golden/peft_lora_r4/adapter_after_5_steps").display().to_string();
    let out = tuneguard(&[
        "eval",
        "suite",
        &suite_s,
        "--model",
        &model,
        "--adapter",
        &adapter,
        "--compare",
        "base",
        "--output",
        &page_s,
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tasks = v["tasks"].as_array().unwrap();
    let kinds: Vec<&str> = tasks.iter().map(|t| t["task"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["perplexity", "multiple_choice", "generation"]);
    assert_eq!(tasks[0]["name"], "wikitext2_test");
    assert_eq!(tasks[2]["per_item"].as_array().unwrap().len(), 3);
    assert_eq!(v["adapter"].as_str(), Some(adapter.as_str()));
    assert!(v["compare"]["adapter"].is_null());
    // The compared evaluation is the base model's: the same values as a run without adapter.
    let base = tuneguard(&["eval", "suite", &suite_s, "--model", &model, "--json"]);
    let base: serde_json::Value = serde_json::from_slice(&base.stdout).unwrap();
    for (a, b) in base["tasks"].as_array().unwrap().iter().zip(v["compare"]["tasks"].as_array().unwrap()) {
        for key in ["perplexity", "accuracy", "token_f1"] {
            assert_eq!(a.get(key), b.get(key), "{key}");
        }
    }
    assert_ne!(tasks[0]["perplexity"], base["tasks"][0]["perplexity"], "the adapter changes the model");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(page.join("eval.json")).unwrap()).unwrap();
    assert_eq!(saved, v);
    let html = std::fs::read_to_string(page.join("index.html")).unwrap();
    for want in ["wikitext2_test", "Confusion matrix", "answers", "Compared with"] {
        assert!(html.contains(want), "{want}");
    }
}

#[test]
fn bad_suites_are_one_error_line_and_exit_2() {
    let Some(model) = require_default_model() else { return };
    let model = model.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let wt = format!("{:?}", wikitext().display().to_string());
    let cases = [
        ("unknown_kind", format!("[[task]]\nkind = \"summarize\"\ndata = {wt}\n"), "unknown variant `summarize`"),
        ("unknown_key", format!("[[task]]\nkind = \"perplexity\"\ndata = {wt}\nwindw = 64\n"), "unknown field `windw`"),
        (
            "window",
            format!("[[task]]\nkind = \"perplexity\"\ndata = {wt}\nwindow = 100000\n"),
            "exceed the model's context length",
        ),
        ("stride", format!("[[task]]\nkind = \"perplexity\"\ndata = {wt}\nstride = 0\n"), "--stride"),
        (
            "missing",
            "[[task]]\nkind = \"perplexity\"\ndata = \"nowhere.jsonl\"\n".to_string(),
            "nowhere.jsonl: no such file",
        ),
        ("not_toml", "[[task]\n".to_string(), "not_toml.toml"),
    ];
    for (name, text, want) in cases {
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        let out = tuneguard(&["eval", "suite", &p.display().to_string(), "--model", &model]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line, got {err}");
    }
    let out = tuneguard(&["eval", "suite", "/nonexistent/suite.toml", "--model", &model]);
    assert_eq!(out.status.code(), Some(2));
}
