//! End-to-end tests of the forgetting guard (`[forgetting]`) on the real model: general-domain
//! sets measured at step 0 and at every evaluation, the values agreeing with `tuneguard eval`
//! on the same data and settings, the summary's rise, and the alarm that stops the run.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tuneguard_model::testutil::{repo_root, require_default_model};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

const SST2_PROMPT: &str = "{{text}}\nQuestion: Is this sentence positive or negative?\nAnswer:";

fn recipe(dir: &Path, forgetting: &str) -> PathBuf {
    let model = require_default_model().unwrap();
    let data = repo_root().join("data/quickstart/selfinstruct_seed_tasks.jsonl");
    let wt = repo_root().join("data/eval/wikitext2_test.jsonl");
    let sst = repo_root().join("data/eval/sst2_test.jsonl");
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = {data:?}\nmax_len = 128\noverflow = \"drop\"\nval_size = 4\n\
         max_train_examples = 8\n[lora]\nr = 4\nalpha = 8\n[optim]\nlr = 1e-2\n\
         [train]\nbatch_size = 2\nmax_steps = 4\neval_steps = 2\nseed = 5\n[output]\ndir = \"run\"\n\
         [forgetting]\n{forgetting}\n\
         [[forgetting.task]]\nname = \"wikitext2\"\nkind = \"perplexity\"\ndata = {wt:?}\nwindow = 128\nmax_tokens = 300\n\
         [[forgetting.task]]\nname = \"sst2\"\nkind = \"multiple_choice\"\ndata = {sst:?}\nprompt = {SST2_PROMPT:?}\n\
         choices = [\"negative\", \"positive\"]\nmax_items = 10\n"
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn evals(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "eval")
        .collect()
}

#[test]
fn general_sets_are_measured_at_every_evaluation_as_eval_measures_them() {
    if require_default_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(dir.path(), "max_rise = 10.0");
    let out = tuneguard(&["train", &r.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.path().join("run");
    let evals = evals(&run);
    assert_eq!(evals.iter().map(|v| v["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 2, 4]);
    for v in &evals {
        for key in [
            "general_wikitext2_perplexity",
            "general_wikitext2_rise",
            "general_sst2_accuracy",
            "general_sst2_rise",
            "general_rise",
        ] {
            assert!(v[key].is_f64(), "step {}: {key} in {v}", v["step"]);
        }
        let rise = v["general_rise"].as_f64().unwrap();
        assert_eq!(rise, v["general_wikitext2_rise"].as_f64().unwrap().max(v["general_sst2_rise"].as_f64().unwrap()));
    }
    assert_eq!(evals[0]["general_rise"], 0.0);
    // The base values are what `tuneguard eval` gives for the same data and settings.
    let model = require_default_model().unwrap().display().to_string();
    let wt = repo_root().join("data/eval/wikitext2_test.jsonl").display().to_string();
    let e = tuneguard(&[
        "eval",
        "perplexity",
        &wt,
        "--model",
        &model,
        "--window",
        "128",
        "--max-tokens",
        "300",
        "--bootstrap",
        "0",
        "--json",
    ]);
    let e: Value = serde_json::from_slice(&e.stdout).unwrap();
    let base_ppl = evals[0]["general_wikitext2_perplexity"].as_f64().unwrap();
    assert!((base_ppl - e["perplexity"].as_f64().unwrap()).abs() < 1e-9 * base_ppl, "{base_ppl} vs {e}");
    let sst = repo_root().join("data/eval/sst2_test.jsonl").display().to_string();
    let c = tuneguard(&[
        "eval",
        "choice",
        &sst,
        "--model",
        &model,
        "--prompt",
        SST2_PROMPT,
        "--choices",
        "negative,positive",
        "--max-items",
        "10",
        "--bootstrap",
        "0",
        "--json",
    ]);
    let c: Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(evals[0]["general_sst2_accuracy"].as_f64(), c["accuracy"].as_f64());
    // A rise is (now − base) / base for the perplexity.
    let last = &evals[2];
    let ppl = last["general_wikitext2_perplexity"].as_f64().unwrap();
    assert!((last["general_wikitext2_rise"].as_f64().unwrap() - (ppl - base_ppl) / base_ppl).abs() < 1e-12);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let f = &s["forgetting"];
    assert_eq!(f["sets"][0]["name"], "wikitext2");
    assert_eq!(f["sets"][0]["base"].as_f64(), Some(base_ppl));
    assert_eq!(f["sets"][1]["metric"], "accuracy");
    // The written weights are the best evaluation's (restored), so their values are that step's.
    let best = s["early_stopping"]["best_step"].as_u64().unwrap();
    let at_best = evals.iter().find(|v| v["step"].as_u64() == Some(best)).unwrap();
    assert_eq!(f["sets"][0]["final"], at_best["general_wikitext2_perplexity"], "{s}");
    assert_eq!(f["sets"][1]["final"], at_best["general_sst2_accuracy"], "{s}");
    assert_eq!(f["rise"], at_best["general_rise"]);
    assert_eq!(f["alarmed"], false);
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("General ability (forgetting guard)") && report.contains("wikitext2 rise"));
}

#[test]
fn a_rise_above_max_rise_stops_the_run_when_asked_and_bad_sets_are_refused() {
    if require_default_model().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // lr 1e-2 on 8 rows moves the general perplexity by far more than 0.01 %.
    let r = recipe(dir.path(), "max_rise = 0.0001\nstop = true");
    let out = tuneguard(&["train", &r.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    assert_eq!(s["steps"], 2, "stopped at the first evaluation: {s}");
    assert!(s["early_stopping"]["stop_reason"].as_str().unwrap().starts_with("forgetting: "), "{s}");
    assert_eq!(s["forgetting"]["alarmed"], false, "a stop is not listed as a warning");
    // A generation task, a missing file, an unknown key: recipe errors, exit 2, before training.
    for (name, extra, want) in [
        (
            "gen",
            "[[forgetting.task]]\nkind = \"generation\"\ndata = \"x.jsonl\"\nprompt = \"p\"\nreference = \"r\"\n",
            "generation task",
        ),
        ("missing", "[[forgetting.task]]\nkind = \"perplexity\"\ndata = \"nowhere.jsonl\"\n", "nowhere.jsonl"),
        ("key", "[[forgetting.task]]\nkind = \"perplexity\"\ndata = \"x\"\nwindw = 3\n", "unknown field `windw`"),
        (
            "twice",
            "[[forgetting.task]]\nname = \"sst2\"\nkind = \"perplexity\"\ndata = \"recipe.toml\"\n",
            "two sets are named `sst2`",
        ),
        (
            "window",
            "[[forgetting.task]]\nname = \"w\"\nkind = \"perplexity\"\ndata = \"recipe.toml\"\nwindow = 100000\n",
            "`w`: window: 100000 tokens exceed",
        ),
    ] {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let text = std::fs::read_to_string(&r).unwrap() + extra;
        std::fs::write(d.join("recipe.toml"), text).unwrap();
        let out = tuneguard(&["train", &d.join("recipe.toml").display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!d.join("run/adapter").exists(), "{name}");
    }
}
