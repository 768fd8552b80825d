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

/// Regression: `--overwrite` deleted the finished run before anything was checked, so a bad
/// model path or a validation size the data cannot give left a folder with only `.lock`. The
/// earlier run is set aside until the new one starts training and comes back when it fails;
/// a recipe whose output folder would put config.toml over the recipe itself is refused.
#[test]
fn a_failed_overwrite_leaves_the_earlier_run_as_it_was() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let r = r.to_str().unwrap();
    assert!(tuneguard(&["train", r, "train.max_steps=1"]).status.success());
    let run = d.path().join("run");
    let files = ["summary.json", "metrics.jsonl", "config.toml", "adapter/adapter_model.safetensors"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(run.join(f)).unwrap()).collect();
    for bad in ["model.path=\"/nope/m.gguf\"", "data.val_size=100000", "lora.r=9999"] {
        let out = tuneguard(&["train", r, "train.max_steps=1", bad, "--overwrite"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
        for (f, want) in files.iter().zip(&before) {
            assert_eq!(&std::fs::read(run.join(f)).unwrap(), want, "{bad}: {f} changed");
        }
        assert!(!run.join(".set-aside").exists(), "{bad}");
    }
    // A resume refused because the data changed leaves the files its preparation rewrites.
    let data = d.path().join("data.jsonl");
    let rows: Vec<String> =
        std::fs::read_to_string(quickstart_data()).unwrap().lines().take(31).map(String::from).collect();
    std::fs::write(&data, rows[..30].join("\n") + "\n").unwrap();
    let r2 = recipe(d.path(), &data);
    let r2 = r2.to_str().unwrap();
    assert!(tuneguard(&["train", r2, "train.eval_steps=1", "output.dir=\"unfinished\""]).status.success());
    let unfinished = d.path().join("unfinished");
    // As a run killed after its last checkpoint: no summary.json, no adapter.
    std::fs::remove_file(unfinished.join("summary.json")).unwrap();
    std::fs::remove_dir_all(unfinished.join("adapter")).unwrap();
    let prepared = ["audit.json", "rejected.jsonl", "quarantine.jsonl"];
    let before: Vec<Vec<u8>> = prepared.iter().map(|f| std::fs::read(unfinished.join(f)).unwrap()).collect();
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let out = tuneguard(&["train", "--resume", unfinished.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed since the checkpoint"), "{out:?}");
    for (f, want) in prepared.iter().zip(&before) {
        assert_eq!(&std::fs::read(unfinished.join(f)).unwrap(), want, "{f} changed by a refused resume");
    }
    let here = d.path().join("config.toml");
    std::fs::copy(r, &here).unwrap();
    let out = tuneguard(&["train", here.to_str().unwrap(), "output.dir=\".\""]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("over this recipe"), "{out:?}");
    assert_eq!(std::fs::read(&here).unwrap(), std::fs::read(r).unwrap());
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

/// `optim.weight_decay=inf` used to pass and turn the loss into NaN; it must stop with exit 2
/// before the model is even looked at (here it does not exist).
#[test]
fn weight_decay_inf_is_rejected_before_loading() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("r.toml");
    std::fs::write(&p, "[model]\npath = \"missing.gguf\"\n[data]\ntrain = \"x.jsonl\"\n[output]\ndir = \"o\"\n")
        .unwrap();
    let out = tuneguard(&["train", p.to_str().unwrap(), "optim.weight_decay=inf"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "error: invalid recipe value `optim.weight_decay`: must be a finite number >= 0, got inf",
        "one line naming the key, the range and the value"
    );
    assert!(!d.path().join("o").exists(), "nothing is created");
}

/// A `data.max_len` beyond the model's context is refused from the model's header, before
/// the weights are loaded.
#[test]
fn max_len_above_the_context_length_is_rejected_before_loading() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let out = tuneguard(&["train", r.to_str().unwrap(), "data.max_len=8193"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("loading"), "{err}");
    assert!(err.contains("`data.max_len`") && err.contains("8193") && err.contains("8192 tokens"), "{err}");
}

/// Waits until `child` holds the lock of the run folder `dir` (its process id is in `.lock`).
fn wait_for_lock(child: &mut std::process::Child, dir: &Path) {
    let holder = || std::fs::read_to_string(dir.join(".lock")).ok().and_then(|t| t.trim().parse::<u32>().ok());
    let t0 = std::time::Instant::now();
    while holder() != Some(child.id()) {
        assert!(child.try_wait().unwrap().is_none(), "the first run ended before it locked its folder");
        assert!(t0.elapsed().as_secs() < 120, "the first run never locked its folder");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Two runs into one folder used to both run, interleaving metrics.jsonl and leaving one's
/// config beside the other's adapter. The second (a plain run, `--overwrite` or `--resume`)
/// must refuse while the first runs, naming the folder, and touch nothing.
#[test]
fn second_run_into_same_folder_refuses() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let r = r.to_str().unwrap();
    let run = d.path().join("run");
    let mut first = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .args(["train", r, "data.max_train_examples=8", "train.max_steps=2", "train.eval_steps=1"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lock(&mut first, &run);
    let config = std::fs::read_to_string(run.join("config.toml")).ok();
    for args in [vec!["train", r], vec!["train", r, "--overwrite"], vec!["train", "--resume", run.to_str().unwrap()]] {
        let out = tuneguard(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("run: another tuneguard run") && err.contains(&format!("process {}", first.id())),
            "{err}"
        );
        if args.len() == 2 {
            // Read here, while the first run is still writing (config.toml may not exist yet).
            assert!(!run.join("report.html").exists(), "the refused run wrote a report");
        }
    }
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "the first run was disturbed: {}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    if let Some(c) = config {
        assert_eq!(c, written, "config.toml is the first run's");
    }
    let command_line: Vec<String> =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
            ["run"]["command_line"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
    assert!(command_line.contains(&"train.eval_steps=1".to_string()), "{command_line:?}");
    // Two train lines and three evaluations (base, step 1, step 2): nothing interleaved.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 5, "{metrics}");
    // Once the first run has ended, its folder is free again.
    assert!(tuneguard(&["train", r, "train.max_steps=1", "data.max_train_examples=2", "--overwrite"]).status.success());
}

/// config.toml had an empty `[model]` and no trace of who started the run: it now records the
/// tool version, the start time, the command line and the model's absolute path and sha256
/// (summary.json too), and a resume refuses a different model file. Also: the base model's
/// evaluation is announced, and a warm-up as long as the run is a logged, listed warning.
#[test]
fn run_folder_records_the_model_and_resume_refuses_a_different_model_file() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model.gguf");
    std::fs::copy(require_default_model().unwrap(), &model).unwrap();
    let r = recipe(d.path(), &quickstart_data());
    let text = std::fs::read_to_string(&r).unwrap();
    let line = text.lines().find(|l| l.starts_with("path = ")).unwrap().to_string();
    std::fs::write(&r, text.replace(&line, "path = \"model.gguf\"")).unwrap();
    let r = r.to_str().unwrap();
    let args =
        ["train", r, "data.max_train_examples=4", "train.max_steps=1", "train.eval_steps=1", "optim.warmup_steps=1"];
    let out = tuneguard(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("evaluating the base model on 3 validation examples...\nbase model: val loss "), "{err}");
    assert!(err.contains("warning: optim.warmup_steps = 1 is not below the run's 1 optimizer steps"), "{err}");

    let run = d.path().join("run");
    let sha = tuneguard_run::model_sha256(&model).unwrap();
    let abs = model.to_str().unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let rec = summary["run"].as_object().unwrap();
    let mut keys: Vec<&str> = rec.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["command_line", "model_path", "model_sha256", "started", "tool_version"], "exactly these");
    assert_eq!(rec["tool_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(rec["model_path"], abs);
    assert_eq!(rec["model_sha256"], sha.as_str());
    let started = rec["started"].as_str().unwrap();
    let rfc3339 = started.len() == 20 && started.as_bytes()[10] == b'T' && started.ends_with('Z');
    assert!(rfc3339 && started.starts_with("20"), "RFC 3339 UTC: {started}");
    let mut expected = vec!["tuneguard".to_string()];
    expected.extend(args.iter().map(|a| a.to_string()));
    assert_eq!(rec["command_line"], serde_json::json!(expected));
    assert!(summary["warnings"][0].as_str().unwrap().starts_with("optim.warmup_steps = 1"), "{summary}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let recorded = tuneguard_run::recipe::Recipe::load(&run.join("config.toml"), &[]).unwrap().run.unwrap();
    assert_eq!((recorded.model_path.as_str(), recorded.model_sha256.as_str()), (abs, sha.as_str()));
    assert_eq!((recorded.started.as_str(), recorded.command_line), (started, expected));

    // The finished run, made resumable again, with another file under the model's name.
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let mut bytes = std::fs::read(&model).unwrap();
    bytes.push(0);
    std::fs::write(&model, bytes).unwrap();
    let out = tuneguard(&["train", "--resume", run.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("loading"), "refused before loading: {err}");
    assert!(err.contains("is not the one the run started with") && err.contains(&sha) && err.contains(abs), "{err}");
    assert_eq!(std::fs::read_to_string(run.join("config.toml")).unwrap(), config, "config.toml is kept");
}
