//! A hand-written run folder for tests (not part of the stable API; built for this crate's unit
//! tests and with the `testutil` feature, which crates enable from their `[dev-dependencies]`).
use std::path::Path;

/// Steps in the fixture; evaluations every 10 steps; best at 30, early stop at 40.
pub const FIXTURE_STEPS: u32 = 40;
pub const FIXTURE_BEST_STEP: u32 = 30;
pub const FIXTURE_STOP_STEP: u32 = 40;
/// Text planted in `config.toml` that must come out escaped.
pub const FIXTURE_SCRIPT: &str = "<script>alert(\"pwned\")</script>";

const VAL: [(u32, f64, bool, bool); 4] =
    [(10, 2.45, true, false), (20, 2.30, true, false), (30, 2.10, true, false), (40, 2.18, false, true)];

/// The `metrics.jsonl` text: 40 train lines (warm-up then linear decay of the learning rate),
/// an eval line after every 10th step.
pub fn fixture_metrics() -> String {
    let mut out = String::new();
    for s in 1..=FIXTURE_STEPS {
        let x = f64::from(s);
        let loss = 2.6 - 0.018 * x + 0.04 * f64::from((s * 7) % 5) - 0.08;
        let lr = if s <= 4 { 1e-3 * x / 4.0 } else { 1e-3 * (40.0 - x) / 36.0 };
        let tps = 240.0 + f64::from(s % 7) * 3.0;
        out += &format!(
            "{{\"kind\":\"train\",\"step\":{s},\"total_steps\":60,\"epoch\":1,\"loss\":{loss},\"lr\":{lr},\
             \"grad_norm\":0.8,\"tokens\":1800,\"tokens_per_s\":{tps}}}\n"
        );
        if let Some(&(step, v, best, alarm)) = VAL.iter().find(|e| e.0 == s) {
            out += &format!(
                "{{\"kind\":\"eval\",\"step\":{step},\"val_loss\":{v},\"val_perplexity\":{},\
                 \"val_token_accuracy\":0.51,\"train_loss_smoothed\":{},\"gap\":{},\"is_best\":{best},\
                 \"overfitting_alarm\":{alarm}}}\n",
                v.exp(),
                loss,
                v - loss
            );
        }
    }
    out
}

/// The `summary.json` text.
pub fn fixture_summary() -> String {
    serde_json::json!({
        "steps": FIXTURE_STEPS, "total_steps": 60, "seconds": 157.45, "tokens_per_s": 255.46, "val_loss_base": 2.5,
        "val_loss_final": 2.18, "final_train_loss": 1.85, "trainable_parameters": 4884480,
        "data": {"rows_read": 175, "rejected": 2, "train_examples": 145, "val_examples": 24, "truncated": 0,
                 "dropped": 4, "leaked_exact": 1, "leaked_near": 0, "augmented": 0, "near_dup_clusters": 3},
        "early_stopping": {"enabled": true, "metric": "val_loss", "best_step": FIXTURE_BEST_STEP, "best_value": 2.1,
                           "stopped_step": FIXTURE_STOP_STEP,
                           "stop_reason": "no improvement in val_loss for 1 evaluations (patience 1)"},
        "alarms": [{"step": 40, "kind": "overfitting", "message": "gap 0.25 > 0.2 & <b>rising</b>"}],
        "final": {"val_loss": 2.18, "val_perplexity": 8.846, "val_token_accuracy": 0.53}
    })
    .to_string()
}

/// Writes the fixture run (`metrics.jsonl`, `summary.json`, `config.toml`, `audit.json`) into `dir`.
///
/// # Errors
/// When `dir` is not writable.
pub fn write_fixture_run(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("metrics.jsonl"), fixture_metrics())?;
    std::fs::write(dir.join("summary.json"), fixture_summary())?;
    let config = format!("# note: {FIXTURE_SCRIPT}\n[training]\nlr = 0.001\nname = \"a & b <c>\"\n");
    std::fs::write(dir.join("config.toml"), config)?;
    std::fs::write(dir.join("audit.json"), r#"{"counts": {"rows": 175, "exact_duplicates": 2, "pii_hits": 1}}"#)
}
