//! End-to-end tests of forgetting prevention on the real model: `[replay]` rows mixed into the
//! steps at `replay.ratio` (counted, never in validation, bad rows in `rejected.jsonl`),
//! `[distill]` on the replay rows, `[ewc]` with its cached Fisher and `[l2sp]`, all logged per
//! step; a resumed run repeats the uninterrupted one; recipes that cannot work are refused.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tuneguard_model::testutil::{repo_root, require_default_model};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

/// Three general-text rows and, on line 3, a row that is not JSON.
fn replay_file(dir: &Path) -> PathBuf {
    let wt = std::fs::read_to_string(repo_root().join("data/forgetting/wikitext2_replay.jsonl")).unwrap();
    let rows: Vec<&str> = wt.lines().take(3).collect();
    let p = dir.join("general.jsonl");
    std::fs::write(&p, format!("{}\n{}\n{{\"text\": \"cut off\n{}\n", rows[0], rows[1], rows[2])).unwrap();
    p
}

fn recipe(dir: &Path, extra: &str) -> PathBuf {
    let model = require_default_model().unwrap();
    let data = repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl");
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = {data:?}\nmax_len = 128\noverflow = \"drop\"\nval_size = 4\n\
         max_train_examples = 12\n[lora]\nr = 4\nalpha = 8\ntarget_modules = [\"q_proj\", \"v_proj\"]\n\
         [optim]\nlr = 5e-3\n[train]\nbatch_size = 2\nmax_steps = 4\neval_steps = 2\nseed = 3\nkeep_checkpoints = 5\n\
         [output]\ndir = \"run\"\n{extra}"
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn all_on(dir: &Path) -> PathBuf {
    let general = replay_file(dir);
    recipe(
        dir,
        &format!(
            "[replay]\ndata = {general:?}\nratio = 0.2\n[distill]\nlambda = 1.0\ntemperature = 2.0\non = \"replay\"\n\
             [ewc]\nlambda = 1.0\nexamples = 3\n[l2sp]\nlambda = 1.0\n"
        ),
    )
}

fn train_lines(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .collect()
}

#[test]
fn prevention_terms_are_logged_counted_cached_and_resumed_exactly() {
    if require_default_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = all_on(dir.path());
    let out = tuneguard(&["train", r.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ewc: estimating the Fisher information of the base weights on 3 general examples"), "{err}");
    let run = dir.path().join("run");
    let lines = train_lines(&run);
    // 2 task rows per step at ratio 0.2: 2·0.2/0.8 = 0.5 replay rows owed per step.
    let replay: Vec<u64> = lines.iter().map(|l| l["replay_rows"].as_u64().unwrap()).collect();
    assert_eq!(replay, [0, 1, 0, 1]);
    for l in &lines {
        for key in ["distill_loss", "ewc_penalty", "l2sp_penalty"] {
            assert!(l[key].as_f64().unwrap() >= 0.0, "{key} in {l}");
        }
    }
    // Step 1 starts from B = 0: the adapter changes nothing yet, so both anchors are 0, and no
    // replay row was distilled.
    assert_eq!(lines[0]["ewc_penalty"], 0.0);
    assert_eq!(lines[0]["l2sp_penalty"], 0.0);
    assert_eq!(lines[0]["distill_loss"], 0.0);
    assert!(lines[2]["ewc_penalty"].as_f64().unwrap() > 0.0 && lines[2]["l2sp_penalty"].as_f64().unwrap() > 0.0);
    assert!(lines[1]["distill_loss"].as_f64().unwrap() > 0.0, "step 2 distils its replay row");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let rp = &summary["data"]["replay"];
    assert_eq!(rp["rows_read"], 4, "{rp}");
    assert_eq!(rp["rejected"], 1, "{rp}");
    assert_eq!(rp["used"], 2, "{rp}");
    assert_eq!(rp["ratio"], 0.2);
    assert!(rp["examples"].as_u64().unwrap() > 2, "two articles make several 128-token chunks: {rp}");
    let rejected = std::fs::read_to_string(run.join("rejected.jsonl")).unwrap();
    let general = dir.path().join("general.jsonl").display().to_string();
    let bad: Vec<Value> = rejected
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["file"] == general.as_str())
        .collect();
    assert_eq!(bad.len(), 1, "{rejected}");
    assert_eq!(bad[0]["line"], 3);
    assert!(run.join("ewc_fisher.safetensors").is_file());

    // Resumed from step 2's checkpoint, the run repeats steps 3 and 4 exactly.
    let b = dir.path().join("resumed");
    assert!(Command::new("cp").arg("-r").arg(&run).arg(&b).status().unwrap().success());
    // What a run killed after step 2's checkpoint has not written yet.
    std::fs::remove_file(b.join("summary.json")).unwrap();
    std::fs::remove_dir_all(b.join("checkpoints/step-000004")).unwrap();
    std::fs::remove_dir_all(b.join("adapter")).unwrap();
    let out = tuneguard(&["train", "--resume", b.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming from the checkpoint of step 2"), "{err}");
    assert!(err.contains("ewc: Fisher information of 3 examples read from"), "{err}");
    assert_eq!(
        train_lines(&b).iter().map(strip_speed).collect::<Vec<_>>(),
        lines.iter().map(strip_speed).collect::<Vec<_>>()
    );
}

/// A train line without its wall-clock field.
fn strip_speed(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("tokens_per_s");
    v
}

#[test]
fn recipes_that_cannot_prevent_forgetting_are_refused_naming_the_key() {
    if require_default_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let general = replay_file(dir.path());
    let missing = dir.path().join("missing.jsonl");
    let train = repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl");
    let folder = dir.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    for (extra, key) in [
        ("[replay]\nratio = 0.2\n".to_string(), "replay.data"),
        (format!("[replay]\ndata = {general:?}\n"), "replay.ratio"),
        (format!("[replay]\ndata = {general:?}\nratio = 1.0\n"), "replay.ratio"),
        (format!("[replay]\ndata = {missing:?}\nratio = 0.2\n"), "replay.data"),
        ("[distill]\nlambda = 1.0\non = \"replay\"\n".to_string(), "distill.on"),
        ("[distill]\nlambda = 1.0\ntemperature = 0.0\n".to_string(), "distill.temperature"),
        ("[ewc]\nlambda = 1.0\n".to_string(), "ewc.data"),
        (format!("[ewc]\nlambda = 1.0\ndata = {general:?}\nexamples = 0\n"), "ewc.examples"),
        (format!("[replay]\ndata = {train:?}\nratio = 0.2\n"), "replay.data"),
        (format!("[ewc]\nlambda = 1.0\ndata = {general:?}\nfisher = {folder:?}\n"), "ewc.fisher"),
        ("[l2sp]\nlambda = -1.0\n".to_string(), "l2sp.lambda"),
        ("[l2sp]\nlambda = 1.0\n".to_string(), "l2sp.lambda"),
    ] {
        let r = recipe(dir.path(), &extra);
        let mut args = vec!["train".to_string(), r.display().to_string()];
        // The last one: L2-SP with full fine-tuning.
        if key == "l2sp.lambda" && !extra.contains('-') {
            args.push("train.method=\"full\"".into());
        }
        let out = tuneguard(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(&format!("`{key}`")), "{extra}: {key} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!dir.path().join("run/metrics.jsonl").exists());
    }
}

#[test]
fn unusable_general_rows_are_listed_and_a_foreign_fisher_file_is_left_alone() {
    if require_default_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Every replay row unusable: two that are not JSON objects, one text too short to use.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"cut\n[1, 2]\n{\"text\": \"tiny\"}\n").unwrap();
    let r = recipe(dir.path(), &format!("[replay]\ndata = {bad:?}\nratio = 0.2\n"));
    let out = tuneguard(&["train", r.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("error: replay.data: ") && err.contains("no example is left"), "{err}");
    let rejected = std::fs::read_to_string(dir.path().join("run/rejected.jsonl")).unwrap();
    let rows: Vec<Value> = rejected
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["file"] == bad.display().to_string().as_str())
        .collect();
    assert_eq!(rows.iter().map(|v| v["line"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3], "{rejected}");
    assert_eq!(rows[2]["kind"], "too_short", "{rejected}");
    assert!(!dir.path().join("run/metrics.jsonl").exists());

    // An ewc.fisher that is not a tuneguard Fisher is refused and left as it was.
    let general = replay_file(dir.path());
    let foreign = dir.path().join("weights.safetensors");
    std::fs::write(&foreign, b"not a safetensors file at all").unwrap();
    let r =
        recipe(dir.path(), &format!("[ewc]\nlambda = 1.0\ndata = {general:?}\nexamples = 2\nfisher = {foreign:?}\n"));
    let out = tuneguard(&["train", r.to_str().unwrap(), "--overwrite"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("error: ewc.fisher: ") && err.contains("left as it is"), "{err}");
    assert_eq!(std::fs::read(&foreign).unwrap(), b"not a safetensors file at all");
}
