//! End-to-end tests of the overfitting guard on the real model and real data: exact resume
//! after SIGKILL, leakage removal from validation, data authentication before training.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tuneguard_model::testutil::{repo_root, require_default_model};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

fn quickstart_data() -> PathBuf {
    repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl")
}

/// A short run that evaluates and checkpoints every 2 steps, with every source of randomness on
/// (LoRA dropout, NEFTune noise, augmentation, a fresh shuffle per epoch).
fn resume_recipe(dir: &Path) -> PathBuf {
    let model = require_default_model().unwrap();
    let data = quickstart_data();
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = {data:?}\nmax_len = 128\noverflow = \"drop\"\nval_size = 6\n\
         max_train_examples = 8\n[lora]\nr = 4\nalpha = 8\ndropout = 0.1\n[optim]\nlr = 1e-3\nl1 = 1e-5\n\
         [train]\nbatch_size = 2\nmax_steps = 8\neval_steps = 2\nseed = 11\nneftune_noise_alpha = 5\n\
         [augment]\nsystem_prompt_copies = 1\n[output]\ndir = \"run\"\n"
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (kind, step, loss or val_loss, grad_norm) of every line: what must match after a resume.
fn trajectory(run: &Path) -> Vec<(String, u64, f64, Option<f64>)> {
    metrics(run)
        .iter()
        .map(|v| {
            let loss = v.get("loss").or(v.get("val_loss")).and_then(Value::as_f64).unwrap();
            (v["kind"].as_str().unwrap().to_string(), v["step"].as_u64().unwrap(), loss, v["grad_norm"].as_f64())
        })
        .collect()
}

fn summary(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn resume_after_sigkill_reproduces_the_uninterrupted_run() {
    if require_default_model().is_none() {
        return;
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = tuneguard(&["train", resume_recipe(a.path()).to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run_a = a.path().join("run");

    // Kill the second run with SIGKILL as soon as its first checkpoint is complete.
    let recipe_b = resume_recipe(b.path());
    let run_b = b.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["train", recipe_b.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !run_b.join("checkpoints/step-000002").exists() {
        assert!(t0.elapsed() < Duration::from_secs(600), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(!run_b.join("summary.json").exists(), "the run was killed before it finished");
    // What a kill during a later checkpoint leaves: a half-written staging folder, and (worse)
    // a newer folder whose tensors are cut short. Neither may be taken for the last good one.
    let staged = run_b.join("checkpoints/.step-000006.new");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("tensors.safetensors"), b"partial").unwrap();
    let broken = run_b.join("checkpoints/step-000007");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("state.json"), "{}").unwrap();
    std::fs::write(broken.join("tensors.safetensors"), [0u8; 8]).unwrap();

    // Copies of the killed run: one with an edited recipe, one with metrics.jsonl cut short.
    // Each resume must refuse rather than continue differently.
    let copy = |name: &str| {
        let dst = b.path().join(name);
        let ok = Command::new("cp").arg("-r").arg(&run_b).arg(&dst).status().unwrap().success();
        assert!(ok);
        dst
    };
    let edited = copy("edited");
    let config = std::fs::read_to_string(edited.join("config.toml")).unwrap();
    assert!(config.contains("lr = 0.001"), "{config}");
    std::fs::write(edited.join("config.toml"), config.replace("lr = 0.001", "lr = 0.002")).unwrap();
    let cut = copy("cut");
    std::fs::write(cut.join("metrics.jsonl"), "").unwrap();
    for (dir, needle) in [(&edited, "config.toml differs"), (&cut, "fewer than")] {
        let out = tuneguard(&["train", "--resume", dir.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // The run resumes where it is now, even after a move (config.toml holds the old path).
    let moved = b.path().join("moved");
    std::fs::rename(&run_b, &moved).unwrap();
    let run_b = moved;
    let out = tuneguard(&["train", "--resume", run_b.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!b.path().join("run").exists(), "nothing is written to the old location");
    assert!(err.contains("resuming from the checkpoint of step"), "{err}");
    let resumed_from = summary(&run_b)["resumed_from_step"].as_u64().unwrap();
    assert!((2..8).contains(&resumed_from), "resumed from {resumed_from}");

    assert_eq!(trajectory(&run_a), trajectory(&run_b), "same losses, gradient norms and evaluations");
    let n_eval = trajectory(&run_a).iter().filter(|t| t.0 == "eval").count();
    assert_eq!(n_eval, 5, "the base model's, then one every 2 of 8 steps");
    for f in ["adapter/adapter_model.safetensors", "adapter/adapter_config.json"] {
        assert_eq!(std::fs::read(run_a.join(f)).unwrap(), std::fs::read(run_b.join(f)).unwrap(), "{f} differs");
    }
    // A finished run cannot be resumed; a folder without checkpoints neither.
    let out = tuneguard(&["train", "--resume", run_b.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has finished"));
    let out = tuneguard(&["train", "--resume", b.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml is missing"));
}

/// Writes `rows` (JSON lines) to `path`.
fn write_lines(path: &Path, rows: &[String]) {
    std::fs::write(path, rows.join("\n") + "\n").unwrap();
}

#[test]
fn leaked_validation_rows_are_removed_and_reported() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let all: Vec<String> = std::fs::read_to_string(quickstart_data()).unwrap().lines().map(String::from).collect();
    let (train, clean_val) = (&all[..150], &all[150..170]);
    let row = |i: usize| -> Value { serde_json::from_str(&train[i]).unwrap() };
    let mut val: Vec<String> = clean_val.to_vec();
    // Exact after normalization: case, whitespace and a fullwidth letter.
    let mut e1 = row(3);
    e1["instruction"] = e1["instruction"].as_str().unwrap().to_uppercase().into();
    let mut e2 = row(40);
    e2["response"] = format!("  {}\n", e2["response"].as_str().unwrap().replace(' ', "  ")).into();
    // Near: one word appended to a long response.
    let mut n1 = row(77);
    n1["response"] = format!("{} Indeed.", n1["response"].as_str().unwrap()).into();
    for v in [e1, e2, n1] {
        val.push(v.to_string());
    }
    write_lines(&d.path().join("train.jsonl"), train);
    write_lines(&d.path().join("val.jsonl"), &val);
    let model = require_default_model().unwrap();
    // The row audit (on by default) reads both files and would quarantine these copies first
    // (see below); switched off, the leakage check of the split is what removes them.
    let recipe = |audit: bool, dir: &str| {
        format!(
            "[model]\npath = {model:?}\n[data]\ntrain = \"train.jsonl\"\nval_file = \"val.jsonl\"\nmax_len = 512\n\
             [lora]\nr = 4\n[train]\nbatch_size = 1\nmax_steps = 1\n[audit]\nenabled = {audit}\n[output]\ndir = \"{dir}\"\n"
        )
    };
    std::fs::write(d.path().join("r.toml"), recipe(false, "run")).unwrap();
    let out = tuneguard(&["train", d.path().join("r.toml").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("leakage: removed 3 validation examples"), "{err}");
    let s = summary(&d.path().join("run"));
    assert_eq!(s["data"]["leaked_exact"], 2, "{s}");
    assert_eq!(s["data"]["leaked_near"], 1, "{s}");
    assert_eq!(s["val_examples"], 20, "the clean validation rows stay");
    let rows: Vec<&str> =
        s["data"]["leaks"].as_array().unwrap().iter().map(|l| l["train_row"].as_str().unwrap()).collect();
    for line in [4, 41, 78] {
        assert!(rows.iter().any(|r| r.ends_with(&format!("train.jsonl:{line}"))), "{rows:?}");
    }

    // With the audit on, the same three copies are quarantined as cross-file duplicates (the
    // appended word makes the third a conflicting answer) before the split sees them.
    std::fs::write(d.path().join("r2.toml"), recipe(true, "run2")).unwrap();
    let out = tuneguard(&["train", d.path().join("r2.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&d.path().join("run2"));
    assert_eq!(s["data"]["quarantined"], 3, "{s}");
    assert_eq!(s["data"]["leaked_exact"].as_u64().unwrap() + s["data"]["leaked_near"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(s["val_examples"], 20, "{s}");
    let q = std::fs::read_to_string(d.path().join("run2/quarantine.jsonl")).unwrap();
    let checks: Vec<String> =
        q.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["check"].as_str().unwrap().to_string()).collect();
    assert_eq!(checks, ["exact_duplicate", "exact_duplicate", "conflicting_answer"], "{q}");
}

#[test]
fn tampered_or_untrusted_data_stops_training_naming_the_file_or_key() {
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    std::fs::copy(quickstart_data(), p("train.jsonl")).unwrap();
    for args in [
        vec!["data", "lock", &p("train.jsonl"), "--manifest", &p("data.lock.json")],
        vec!["data", "keygen", "--out", &p("alice")],
        vec!["data", "keygen", "--out", &p("mallory")],
        vec!["data", "sign", "--manifest", &p("data.lock.json"), "--key", &p("alice.key")],
    ] {
        let out = tuneguard(&args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let recipe = |extra: &str| {
        let text = format!(
            "[data]\ntrain = \"train.jsonl\"\nmanifest = \"data.lock.json\"\ntrusted_keys = [\"alice.pub\"]\n{extra}\
             [output]\ndir = \"run\"\n"
        );
        std::fs::write(p("r.toml"), text).unwrap();
        p("r.toml")
    };
    let train_fails = |r: String, needle: &str| {
        let out = tuneguard(&["train", &r, "train.max_steps=1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
        assert!(!err.contains("loading"), "stopped before the model was loaded: {err}");
    };
    // An unlisted source (a validation file the manifest does not know).
    std::fs::copy(quickstart_data(), p("val.jsonl")).unwrap();
    train_fails(recipe("val_file = \"val.jsonl\"\n"), "val.jsonl");
    // One byte of the training file changed.
    let mut bytes = std::fs::read(p("train.jsonl")).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(p("train.jsonl"), &bytes).unwrap();
    train_fails(recipe(""), "train.jsonl");
    bytes[100] ^= 0x01;
    std::fs::write(p("train.jsonl"), &bytes).unwrap();
    // Signed by a key that is not trusted.
    let out = tuneguard(&["data", "sign", "--manifest", &p("data.lock.json"), "--key", &p("mallory.key")]);
    assert!(out.status.success());
    train_fails(recipe(""), "untrusted key");
    // A corrupted signature.
    let out = tuneguard(&["data", "sign", "--manifest", &p("data.lock.json"), "--key", &p("alice.key")]);
    assert!(out.status.success());
    let sig = std::fs::read_to_string(p("data.lock.json.sig")).unwrap();
    let v: Value = serde_json::from_str(&sig).unwrap();
    let s = v["signature"].as_str().unwrap();
    let flipped = format!("{}{}", if s.starts_with('0') { "1" } else { "0" }, &s[1..]);
    std::fs::write(p("data.lock.json.sig"), sig.replace(s, &flipped)).unwrap();
    train_fails(recipe(""), "bad signature");
}
