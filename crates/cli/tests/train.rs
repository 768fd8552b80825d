//! End-to-end tests of `tuneguard train` on the real model and the bundled real data.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tuneguard_model::testutil::{repo_root, require_default_model};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

/// A small recipe over `data` (a few steps, short examples) in a fresh folder.
fn recipe(dir: &Path, data: &Path) -> PathBuf {
    let model = require_default_model().unwrap();
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = {data:?}\nmax_len = 160\noverflow = \"drop\"\nval_size = 3\n\
         [lora]\nr = 4\nalpha = 8\n[optim]\nlr = 1e-3\n[train]\nbatch_size = 2\nmax_steps = 2\nseed = 5\n[output]\ndir = \"run\"\n"
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn quickstart_data() -> PathBuf {
    repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl")
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn same_seed_same_losses_and_a_complete_run_folder() {
    if require_default_model().is_none() {
        return;
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a, &b] {
        let out = tuneguard(&["train", recipe(d.path(), &quickstart_data()).to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("held-out loss (3 examples): base"), "{stdout}");
    }
    let (la, lb) = (losses(&a.path().join("run")), losses(&b.path().join("run")));
    assert_eq!(la.len(), 2);
    assert_eq!(la, lb, "same seed and data must give identical losses");
    let run = a.path().join("run");
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "rejected.jsonl",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let adapter = tuneguard_model::lora::LoraAdapter::load(&run.join("adapter")).unwrap();
    assert_eq!(adapter.config.r, 4);
    assert_eq!(adapter.weights.len(), 30 * 7);
}

#[test]
fn an_existing_run_is_kept_unless_overwrite() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let r = r.to_str().unwrap();
    assert!(tuneguard(&["train", r, "train.max_steps=1"]).status.success());
    let again = tuneguard(&["train", r, "train.max_steps=1"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
    assert!(tuneguard(&["train", r, "train.max_steps=1", "--overwrite"]).status.success());
}

#[test]
fn malformed_rows_are_quarantined_with_file_and_line() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let good: Vec<String> =
        std::fs::read_to_string(quickstart_data()).unwrap().lines().take(12).map(str::to_string).collect();
    let data = d.path().join("data.jsonl");
    let mut bytes = good[..6].join("\n").into_bytes();
    bytes.extend_from_slice(
        b"\n{\"instruction\": \"broken\n\xff\xfe not utf-8\n{\"instruction\": \"no answer\", \"context\": \"\"}\n",
    );
    bytes.extend_from_slice(good[6..].join("\n").as_bytes());
    std::fs::write(&data, bytes).unwrap();
    let out = tuneguard(&["train", recipe(d.path(), &data).to_str().unwrap(), "train.max_steps=1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rejected = std::fs::read_to_string(d.path().join("run/rejected.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = rejected.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines: Vec<(u64, &str)> =
        rows.iter().map(|r| (r["line"].as_u64().unwrap(), r["kind"].as_str().unwrap())).collect();
    // The loader's rejects, then the rows tokenization dropped (longer than max_len 160).
    assert_eq!(
        lines,
        [(7, "invalid_json"), (8, "invalid_utf8"), (9, "missing_field"), (3, "too_long"), (4, "too_long")],
        "{rejected}"
    );
    assert!(rows
        .iter()
        .all(|r| r["file"].as_str().unwrap().ends_with("data.jsonl") && !r["reason"].as_str().unwrap().is_empty()));
    assert!(rows[2]["reason"].as_str().unwrap().contains("response"), "{rejected}");
}

#[test]
fn recipe_errors_name_the_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("r.toml");
    std::fs::write(&p, "[data]\ntrain = \"x.jsonl\"\nshuffle = true\n[output]\ndir = \"o\"\n").unwrap();
    let out = tuneguard(&["train", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shuffle"));
    std::fs::write(&p, "[data]\ntrain = \"x.jsonl\"\n[output]\ndir = \"o\"\n").unwrap();
    for (o, key) in [("optim.lr=0", "optim.lr"), ("lora.r=0", "lora.r"), ("optim.lr=-0.1", "optim.lr")] {
        let out = tuneguard(&["train", p.to_str().unwrap(), o]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{o}: {err}");
        assert!(err.contains(key) && err.lines().count() == 1, "{o}: {err}");
    }
}

#[test]
fn full_fine_tuning_writes_a_model_that_loads() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let out = tuneguard(&[
        "train",
        r.to_str().unwrap(),
        "train.method=\"full\"",
        "train.max_steps=1",
        "train.batch_size=1",
        "optim.lr=1e-5",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model_dir = d.path().join("run/model");
    let m = tuneguard_model::load(&model_dir).unwrap();
    assert_eq!(m.model.config.num_layers, 30);
    let gen =
        tuneguard(&["generate", "--model", model_dir.to_str().unwrap(), "--prompt", "Hello", "--max-new-tokens", "3"]);
    assert!(gen.status.success(), "{}", String::from_utf8_lossy(&gen.stderr));
}

#[test]
fn all_rows_bad_reports_them_and_does_not_block_the_next_run() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"foo\": 1}\nnot json\n").unwrap();
    let r = recipe(d.path(), &bad);
    let out = tuneguard(&["train", r.to_str().unwrap(), "data.format={kind=\"instruction\"}"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.jsonl:1:") && err.contains("bad.jsonl:2:"), "each bad row is reported: {err}");
    let rejected = std::fs::read_to_string(d.path().join("run/rejected.jsonl")).unwrap();
    assert_eq!(rejected.lines().count(), 2);
    // Fixed data: the folder holds no run yet, so no --overwrite is needed.
    let fixed = recipe(d.path(), &quickstart_data());
    let again = tuneguard(&["train", fixed.to_str().unwrap(), "train.max_steps=1"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn the_loss_watchdog_stops_a_diverging_run() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let out = tuneguard(&["train", r.to_str().unwrap(), "optim.lr=1e6", "train.max_steps=4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("training diverged at step"), "{err}");
    assert!(!d.path().join("run/summary.json").exists(), "a diverged run writes no summary");
}
