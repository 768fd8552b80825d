//! What a run reports: per-step and per-evaluation lines of `metrics.jsonl`, the summary, errors.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::prepare::DataSummary;
use tuneguard_train::eval::EvalMetrics;

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
    /// `--resume` on a folder it cannot continue.
    #[error("cannot resume {dir}: {reason}")]
    Resume { dir: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, RunError>;

fn holder_text(pid: &Option<u32>) -> String {
    pid.map_or(String::new(), |p| format!(" (process {p})"))
}

/// One optimizer step's figures (a `"kind": "train"` line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize)]
pub struct StepMetrics {
    pub kind: &'static str,
    pub step: u64,
    pub total_steps: u64,
    /// Epochs started so far (1 during the first pass over the data).
    pub epoch: u64,
    /// Mean cross-entropy per supervised token (the L1 penalty is reported apart).
    pub loss: f64,
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l1_penalty: Option<f64>,
    pub tokens: usize,
    pub tokens_per_s: f64,
}

/// One evaluation (a `"kind": "eval"` line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub kind: String,
    pub step: u64,
    pub val_loss: f64,
    pub val_perplexity: f64,
    pub val_token_accuracy: f64,
    /// Supervised validation tokens.
    pub val_tokens: usize,
    /// Exponential moving average of the training loss (bias-corrected); None at step 0.
    pub train_loss_smoothed: Option<f64>,
    /// val_loss − train_loss_smoothed: the generalization gap.
    pub gap: Option<f64>,
    /// The best evaluation so far by the early-stopping metric.
    pub is_best: bool,
    pub overfitting_alarm: bool,
}

impl EvalRecord {
    pub fn new(step: u64, m: &EvalMetrics, smoothed: Option<f64>) -> Self {
        EvalRecord {
            kind: "eval".into(),
            step,
            val_loss: m.loss,
            val_perplexity: m.perplexity,
            val_token_accuracy: m.token_accuracy,
            val_tokens: m.tokens,
            train_loss_smoothed: smoothed,
            gap: smoothed.map(|s| m.loss - s),
            is_best: false,
            overfitting_alarm: false,
        }
    }
}

/// Receives progress; the CLI draws a bar or prints lines.
pub trait Progress {
    fn message(&mut self, text: &str);
    fn step(&mut self, m: &StepMetrics);
    fn eval(&mut self, e: &EvalRecord) {
        let _ = e;
    }
}

/// An alarm raised during the run (logged, and listed in the summary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alarm {
    pub step: u64,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EarlyStoppingSummary {
    pub enabled: bool,
    pub metric: String,
    pub direction: String,
    pub patience: usize,
    pub min_delta: f64,
    /// Best evaluation (by `metric`), whether or not early stopping was on.
    pub best_step: Option<u64>,
    pub best_value: Option<f64>,
    /// Step of the last update (equals `steps` of the summary).
    pub stopped_step: u64,
    pub stop_reason: String,
    /// Whether `adapter/` (or `model/`) holds the best evaluation's weights.
    pub restored_best: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// This invocation (for a resumed run: the resume's command line and start).
    pub run: crate::recipe::RunRecord,
    pub train_examples: usize,
    pub val_examples: usize,
    pub rejected_rows: usize,
    pub data: DataSummary,
    pub trainable_parameters: usize,
    /// Optimizer steps taken, and planned.
    pub steps: u64,
    pub total_steps: u64,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Mean loss per supervised token on the validation examples, before training and with
    /// the weights written to the run folder.
    pub val_loss_base: Option<f64>,
    pub val_loss_final: Option<f64>,
    pub final_train_loss: Option<f64>,
    /// Validation metrics of the weights written to the run folder.
    #[serde(rename = "final")]
    pub final_metrics: Option<EvalMetrics>,
    pub early_stopping: Option<EarlyStoppingSummary>,
    pub alarms: Vec<Alarm>,
    /// Warnings about the setup logged before training (e.g. a warm-up as long as the run).
    pub warnings: Vec<String>,
    /// Findings of the pre-flight lint (warnings, or errors when `audit.lint = "warn"`).
    pub lints: Vec<tuneguard_audit::lint::Lint>,
    /// The checkpoint step this run was resumed from, if it was.
    pub resumed_from_step: Option<u64>,
}
