//! Helpers shared by tests that need the default model file (SmolLM2-135M-Instruct Q4_1 GGUF).
//!
//! Not part of the stable API: this exists so unit tests, integration tests and other crates'
//! tests find the model the same way. Built for this crate's unit tests and with the
//! `testutil` feature, which crates enable from their `[dev-dependencies]`.
use std::path::PathBuf;

/// File name of the default model inside `<repo>/models/`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Environment variable naming an explicit model path for tests.
pub const MODEL_ENV: &str = "TUNEGUARD_MODEL";

/// When set to `1`, tests skip (with a note) instead of failing if the model is absent.
pub const ALLOW_MISSING_ENV: &str = "TUNEGUARD_ALLOW_MISSING_MODEL";

/// Root of the repository (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or(manifest)
}

/// Where the default model is expected: `$TUNEGUARD_MODEL` if set, else
/// `<repo>/models/SmolLM2-135M-Instruct.Q4_1.gguf`. The file may not exist.
pub fn default_model_path() -> PathBuf {
    match std::env::var_os(MODEL_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("models").join(DEFAULT_MODEL_FILE),
    }
}

/// The default model's path for a test, or `None` when the test should be skipped.
///
/// # Panics
/// By design, when the file is missing and `TUNEGUARD_ALLOW_MISSING_MODEL=1` is not set: a test
/// that silently passes without its model would hide a broken setup.
pub fn require_default_model() -> Option<PathBuf> {
    let path = default_model_path();
    if path.is_file() {
        return Some(path);
    }
    if std::env::var(ALLOW_MISSING_ENV).is_ok_and(|v| v == "1") {
        eprintln!("note: skipping test: default model not found at {} ({ALLOW_MISSING_ENV}=1)", path.display());
        return None;
    }
    panic!(
        "default model not found at {}: run `scripts/fetch-default-model.sh` (or set {MODEL_ENV} to a \
         GGUF file, or {ALLOW_MISSING_ENV}=1 to skip tests that need it)",
        path.display()
    );
}

/// The read-only `shared/` folder beside the repository (golden outputs, data sets):
/// `$TUNEGUARD_SHARED` if set, else `<repo>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("TUNEGUARD_SHARED") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().parent().map(|p| p.join("shared")).unwrap_or_else(|| PathBuf::from("../shared")),
    }
}

/// Mean over t = 1..T-1 of `ln softmax(logits[t-1])[ids[t]]`, in f64 (the golden files'
/// `mean_log_likelihood`). `logits` is (T, v) row-major.
pub fn mean_log_likelihood(logits: &[f32], ids: &[u32]) -> f64 {
    let v = logits.len() / ids.len();
    let mut sum = 0.0;
    for t in 1..ids.len() {
        let row = &logits[(t - 1) * v..t * v];
        sum += row[ids[t] as usize] as f64 - crate::ops::log_sum_exp(row);
    }
    sum / (ids.len() - 1) as f64
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), NaN elsewhere; for benchmarks.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
