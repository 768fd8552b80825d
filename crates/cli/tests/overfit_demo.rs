//! The overfitting demonstration (`configs/overfit-demo.toml`) on the real model: without early
//! stopping the validation loss rises after its minimum; with it, the run stops `patience`
//! evaluations after the minimum and the adapter it writes is the minimum's (recomputed here from
//! the saved PEFT adapter).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tuneguard_model::testutil::{repo_root, require_default_model};
use tuneguard_run::recipe::Recipe;

/// (step, val_loss) of every evaluation after the base model's (step 0).
fn evals(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "eval" && v["step"] != 0)
        .map(|v| (v["step"].as_u64().unwrap(), v["val_loss"].as_f64().unwrap()))
        .collect()
}

fn train(overrides: &[String]) {
    let config = repo_root().join("configs/overfit-demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tuneguard"))
        .arg("train")
        .arg(&config)
        .args(overrides)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn early_stopping_stops_after_the_minimum_and_keeps_the_best_adapter() {
    let Some(model) = require_default_model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (no_es, es) = (tmp.path().join("no-es"), tmp.path().join("es"));
    train(&["early_stopping.enabled=false".into(), format!("output.dir={no_es:?}")]);
    train(&[format!("output.dir={es:?}")]);

    // Without early stopping: a minimum, then a clear rise.
    let full = evals(&no_es);
    let (min_i, &(min_step, min_loss)) = full.iter().enumerate().min_by(|a, b| a.1 .1.total_cmp(&b.1 .1)).unwrap();
    assert!(min_i + 3 < full.len(), "the minimum {min_step} is too late to see a rise: {full:?}");
    let last = full.last().unwrap().1;
    assert!(last > min_loss + 0.1, "validation loss must rise after its minimum: {full:?}");
    assert!(full[min_i + 1].1 > min_loss, "{full:?}");

    // With it (patience 3): stops 3 evaluations after the minimum, on the same trajectory.
    let recipe = Recipe::load(&repo_root().join("configs/overfit-demo.toml"), &[]).unwrap();
    let patience = recipe.early_stopping.patience;
    let stopped = evals(&es);
    assert_eq!(stopped.len(), min_i + 1 + patience, "{stopped:?} vs minimum at {min_step}");
    for (a, b) in stopped.iter().zip(&full) {
        assert_eq!(a.0, b.0);
        assert!((a.1 - b.1).abs() < 1e-9, "same seed, same trajectory: {a:?} vs {b:?}");
    }
    let s: Value = serde_json::from_str(&std::fs::read_to_string(es.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["early_stopping"]["best_step"], min_step, "{s}");
    assert!(s["early_stopping"]["stop_reason"].as_str().unwrap().starts_with("early stopping"), "{s}");
    assert!(s["early_stopping"]["stopped_step"].as_u64().unwrap() < full.last().unwrap().0);

    // The saved adapter gives the minimum's validation loss.
    let loaded = tuneguard_model::load_with_adapter(&model, Some(&es.join("adapter"))).unwrap();
    struct Quiet;
    impl tuneguard_run::Progress for Quiet {
        fn message(&mut self, _: &str) {}
        fn step(&mut self, _: &tuneguard_run::StepMetrics) {}
    }
    // The validation examples exactly as the run built them (same split, audit and tokenization).
    let data = tuneguard_run::preflight(
        &tuneguard_run::RunConfig::new(recipe.clone(), model.clone()),
        &tmp.path().join("audit"),
        &mut Quiet,
    )
    .unwrap();
    let recomputed = tuneguard_train::eval::evaluate(&loaded.model, &data.val).unwrap().loss;
    eprintln!("minimum {min_loss:.6} at step {min_step}; recomputed from adapter/ {recomputed:.6}");
    assert!((recomputed - min_loss).abs() < 1e-4, "adapter/ gives {recomputed}, the minimum was {min_loss}");
}
