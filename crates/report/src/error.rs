use std::path::PathBuf;

/// Why a run report could not be made; each variant names the offending file (and line).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: not a run folder (no such directory)")]
    NotADirectory { path: PathBuf },
    /// A folder without metrics.jsonl, summary.json and config.toml.
    #[error("{path}: not a run folder (no metrics.jsonl, summary.json or config.toml; give the output.dir of `tuneguard train`)")]
    NotARun { path: PathBuf },
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    /// A line of `metrics.jsonl` that is not a JSON object, or holds a field of the wrong type
    /// (1-based line number).
    #[error("{path}:{line}: malformed metrics line: {reason}")]
    MalformedLine { path: PathBuf, line: usize, reason: String },
    /// A JSON document (`summary.json`, `audit.json`) that does not parse, or a `summary.json`
    /// field of the wrong type.
    #[error("{path}:{line}:{column}: malformed JSON: {reason}")]
    MalformedJson { path: PathBuf, line: usize, column: usize, reason: String },
    #[error("{path}: no steps were recorded, nothing to plot")]
    NoSteps { path: PathBuf },
    #[error("cannot draw the {chart} chart: {reason}")]
    Plot { chart: String, reason: String },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

pub type Result<T> = std::result::Result<T, ReportError>;
