//! `summary.json`: what a finished run did, written once at its end.
use serde::{Deserialize, Serialize};

use crate::data::{DataSummary, TokenizeStats};
use crate::lint::Lint;
use crate::metric::{Direction, EvalMetrics, Metric};
use crate::presence::{Presence, Written};

/// `[run]` of a run folder's `config.toml`, and `run` of its `summary.json`: which tool, when,
/// how and with which model the run was started. Written by `train`, never a setting: the
/// `[run]` of a recipe (a copied `config.toml`) is replaced by the new run's, and `--resume`
/// refuses a model whose sha256 is not `model_sha256`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// tuneguard's version.
    pub tool_version: String,
    /// When the run started, RFC 3339 UTC (seconds).
    pub started: String,
    /// The command line, program name first.
    pub command_line: Vec<String>,
    /// The model file or folder the run used, absolute (the recipe's `model.path` or the
    /// default model).
    pub model_path: String,
    /// sha256 of the model file; for a folder, of its `sha256sum`-style listing (one
    /// `<sha256>  <name>` line per file, sorted by name).
    pub model_sha256: String,
}

/// An alarm raised during the run (logged, and listed in the summary).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Alarm<P: Presence = Written> {
    /// The optimizer step of the evaluation that raised it.
    pub step: P::Of<u64>,
    /// `overfitting`.
    pub kind: P::Of<String>,
    pub message: P::Of<String>,
}

/// Early stopping and the best evaluation (`early_stopping` of the summary; absent without
/// validation data).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct EarlyStoppingSummary<P: Presence = Written> {
    pub enabled: P::Of<bool>,
    pub metric: P::Of<Metric>,
    pub direction: P::Of<Direction>,
    /// Evaluations without improvement before stopping.
    pub patience: P::Of<usize>,
    /// Smallest change that counts as an improvement, in the metric's unit.
    pub min_delta: P::Of<f64>,
    /// Best evaluation (by `metric`), whether or not early stopping was on.
    pub best_step: Option<u64>,
    pub best_value: Option<f64>,
    /// Step of the last update (equals `steps` of the summary).
    pub stopped_step: P::Of<u64>,
    /// Why the run stopped (`completed the planned N steps`, `early stopping: ...`).
    pub stop_reason: P::Of<String>,
    /// Whether `adapter/` (or `model/`) holds the best evaluation's weights.
    pub restored_best: P::Of<bool>,
}

/// `summary.json`. `lints` is written but not read back: lint ids are tuneguard-audit's
/// `&'static str` constants (a reader that wants them reads the JSON).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Summary<P: Presence = Written> {
    /// This invocation (for a resumed run: the resume's command line and start).
    pub run: P::Of<RunRecord>,
    pub train_examples: P::Of<usize>,
    pub val_examples: P::Of<usize>,
    pub rejected_rows: P::Of<usize>,
    pub data: P::Of<DataSummary<P>>,
    pub trainable_parameters: P::Of<usize>,
    /// Optimizer steps taken, and planned.
    pub steps: P::Of<u64>,
    pub total_steps: P::Of<u64>,
    /// Tokens trained on (every step's sequences).
    pub tokens: P::Of<usize>,
    /// Wall-clock seconds of the training steps (evaluations and checkpoints not included).
    pub seconds: P::Of<f64>,
    /// `tokens` over `seconds`.
    pub tokens_per_s: P::Of<f64>,
    /// Mean loss per supervised token on the validation examples (nats), before training and
    /// with the weights written to the run folder.
    pub val_loss_base: Option<f64>,
    pub val_loss_final: Option<f64>,
    /// The last step's training loss (nats).
    pub final_train_loss: Option<f64>,
    /// Validation metrics of the weights written to the run folder.
    #[serde(rename = "final")]
    pub final_metrics: Option<EvalMetrics<P>>,
    pub early_stopping: Option<EarlyStoppingSummary<P>>,
    pub alarms: P::Of<Vec<Alarm<P>>>,
    /// Warnings about the setup logged before training (e.g. a warm-up as long as the run).
    pub warnings: P::Of<Vec<String>>,
    /// Findings of the pre-flight lint (warnings, or errors when `audit.lint = "warn"`).
    #[serde(skip_deserializing)]
    pub lints: Vec<Lint>,
    /// The checkpoint step this run was resumed from, if it was.
    pub resumed_from_step: Option<u64>,
    /// The forgetting guard's measurements (runs with `[forgetting]` tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgetting: Option<ForgettingSummary>,
    /// The tokenization counts at the top level, as summaries written before `data` had them;
    /// never written now.
    #[serde(rename = "tokenize", default, skip_serializing_if = "Option::is_none")]
    pub legacy_tokenize: Option<TokenizeStats<P>>,
    #[serde(rename = "val_tokenize", default, skip_serializing_if = "Option::is_none")]
    pub legacy_val_tokenize: Option<TokenizeStats<P>>,
}

/// `summary.json`'s `forgetting`: the general-domain sets of the forgetting guard, each measured
/// with the base model (step 0) and with the weights written to the run folder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ForgettingSummary {
    /// `forgetting.max_rise`: the relative rise that fires the alarm (0.1 = 10 %).
    pub max_rise: f64,
    /// `forgetting.stop`: whether passing it stops the run.
    pub stop: bool,
    pub sets: Vec<GeneralSetSummary>,
    /// The largest rise over the sets for the written weights.
    pub rise: Option<f64>,
    /// Whether any evaluation passed `max_rise`.
    pub alarmed: bool,
}

/// One general-domain set of [`ForgettingSummary`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneralSetSummary {
    pub name: String,
    /// `perplexity` or `accuracy` (tuneguard-metrics names).
    pub metric: String,
    pub base: f64,
    /// With the weights written to the run folder.
    #[serde(rename = "final")]
    pub final_value: Option<f64>,
    /// Relative rise of `final` against `base`, positive = worse: (final − base) / base for a
    /// perplexity, (base − final) / base for an accuracy.
    pub rise: Option<f64>,
    /// The largest rise seen at any evaluation, and its step.
    pub worst_rise: Option<f64>,
    pub worst_step: Option<u64>,
}
