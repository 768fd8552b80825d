//! What a run reports: per-step and per-evaluation lines of `metrics.jsonl`, the summary (their
//! types are tuneguard-records', shared with the report), errors.
use std::path::PathBuf;

pub use tuneguard_records::{Alarm, EarlyStoppingSummary, EvalRecord, StepMetrics, Summary};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
    #[error(transparent)]
    Data(#[from] tuneguard_data::DataError),
    #[error(transparent)]
    Train(#[from] tuneguard_train::TrainError),
    /// The data does not match its manifest, or the manifest's signature is bad or untrusted.
    #[error(transparent)]
    Provenance(#[from] tuneguard_data::provenance::ProvenanceError),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}: the folder already holds a run (possibly an interrupted one); pass --resume to continue it or --overwrite to replace it")]
    OutputExists(PathBuf),
    /// Another run (a `train`, `--resume` or `--overwrite`) holds the folder's lock.
    #[error("{dir}: another tuneguard run{} is using this folder; wait for it to end, or choose another output.dir", holder_text(.holder))]
    Locked { dir: PathBuf, holder: Option<u32> },
    /// A recipe value that does not fit the model (checked from its header, before loading).
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    #[error("the model has no chat template, which the training data needs")]
    NoChatTemplate,
    /// The validation split cannot be made (the message names `data.val_size`).
    #[error("{0}")]
    Split(String),
    /// A guard aborted the run (the loss watchdog: a non-finite loss, or one far above the
    /// first step's); `message` says why.
    #[error("{message}")]
    Aborted { step: u64, guard: &'static str, message: String },
    /// The chat template renders no example of a set (one it cannot render is dropped alone);
    /// `at` is the first one's `file:line`.
    #[error("{at}: {reason} (the chat template renders none of the {set} examples)")]
    Unrenderable { set: &'static str, at: String, reason: String },
    /// The data guard stopped the run (a check set to `fail`, or a lint error).
    #[error("data guard: {0}")]
    Audit(String),
    #[error(transparent)]
    AuditInput(#[from] tuneguard_audit::AuditError),
    /// A general-domain set of `[forgetting]` cannot be read or measured.
    #[error("forgetting.task: {0}")]
    Forgetting(String),
    /// Forgetting prevention (`[replay]`, `[ewc]`) cannot use its data or its Fisher cache;
    /// `key` names the setting.
    #[error("{key}: {reason}")]
    Prevention { key: &'static str, reason: String },
    /// `--resume` on a folder it cannot continue.
    #[error("cannot resume {dir}: {reason}")]
    Resume { dir: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, RunError>;

fn holder_text(pid: &Option<u32>) -> String {
    pid.map_or(String::new(), |p| format!(" (process {p})"))
}

/// Receives progress; the CLI draws a bar or prints lines.
pub trait Progress {
    fn message(&mut self, text: &str);
    fn step(&mut self, m: &StepMetrics);
    fn eval(&mut self, e: &EvalRecord) {
        let _ = e;
    }
}
