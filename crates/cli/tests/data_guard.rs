//! End-to-end tests of the data guard in front of training, on the real model and real data:
//! `tuneguard audit RECIPE` fires each lint a broken recipe deserves (and none for the
//! quickstart), and `tuneguard train` stops before training on a lint error or a `fail` check.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tuneguard_model::testutil::{repo_root, require_default_model};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

/// SmolLM2's ChatML template, except that assistant turns are not closed with `<|im_end|>`.
const NO_IM_END: &str = "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' + message['content'] + '\n' }}{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Llama-2-chat's template (a foreign format for a ChatML model).
const LLAMA2: &str = "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'].strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const QUICKSTART_DATA: &str = "max_len = 384\noverflow = \"drop\"\nval_size = 25\n";

/// A recipe over the quickstart data with these `[data]` lines (besides `train`).
fn recipe(dir: &Path, data_lines: &str) -> PathBuf {
    let model = require_default_model().unwrap();
    let data = repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl");
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = {data:?}\n{data_lines}\
         [train]\nbatch_size = 4\nmax_steps = 1\n[output]\ndir = \"run\"\n"
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn audit(recipe: &Path, out_dir: &Path) -> (Option<i32>, String) {
    let out = tuneguard(&["audit", recipe.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn the_quickstart_recipe_fires_no_lint() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (code, text) = audit(&repo_root().join("configs/quickstart.toml"), d.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("lint: no findings"), "{text}");
}

#[test]
fn each_broken_recipe_fires_its_lint() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("no_im_end.jinja"), NO_IM_END).unwrap();
    std::fs::write(d.path().join("llama2.jinja"), LLAMA2).unwrap();
    let cases = [
        (format!("{QUICKSTART_DATA}chat_template = \"no_im_end.jinja\"\n"), "error[eos_not_supervised]", Some(1)),
        ("max_len = 24\noverflow = \"truncate\"\nval_size = 25\n".to_string(), "error[no_supervised_tokens]", Some(1)),
        (format!("{QUICKSTART_DATA}chat_template = \"llama2.jinja\"\n"), "warning[foreign_chat_template]", Some(0)),
    ];
    for (extra, lint, code) in cases {
        let r = recipe(d.path(), &extra);
        let (got, out) = audit(&r, &d.path().join("audit"));
        assert!(out.contains(lint), "{extra}: expected {lint} in:\n{out}");
        assert_eq!(got, code, "{extra}: exit code\n{out}");
    }
}

#[test]
fn train_stops_before_training_on_a_lint_error_or_a_failing_check() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("no_im_end.jinja"), NO_IM_END).unwrap();
    let r = recipe(d.path(), &format!("{QUICKSTART_DATA}chat_template = \"no_im_end.jinja\"\n"));
    let out = tuneguard(&["train", r.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("data guard: the pre-flight lint found") && err.contains("eos_not_supervised"), "{err}");
    assert!(!d.path().join("run/metrics.jsonl").exists(), "nothing was trained");

    // A duplicated row with `duplicates = "fail"`.
    let src = repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl");
    let mut rows: Vec<String> = std::fs::read_to_string(src).unwrap().lines().map(String::from).collect();
    let mut copy: serde_json::Value = serde_json::from_str(&rows[9]).unwrap();
    copy["instruction"] = copy["instruction"].as_str().unwrap().to_uppercase().into();
    rows.push(copy.to_string());
    std::fs::write(d.path().join("dup.jsonl"), rows.join("\n") + "\n").unwrap();
    let model = require_default_model().unwrap();
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = \"dup.jsonl\"\nval_size = 5\n[train]\nmax_steps = 1\n\
         [audit.checks]\nactions = {{ duplicates = \"fail\" }}\n[output]\ndir = \"run2\"\n"
    );
    std::fs::write(d.path().join("dup.toml"), text).unwrap();
    let out = tuneguard(&["train", d.path().join("dup.toml").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("exact_duplicate") && err.contains("dup.jsonl:176"), "{err}");
    assert!(d.path().join("run2/quarantine.jsonl").exists() && d.path().join("run2/audit.json").exists());
    assert!(!d.path().join("run2/metrics.jsonl").exists(), "nothing was trained");
}
