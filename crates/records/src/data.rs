//! What happened to the data on its way to training (`data` of `summary.json`).
use serde::{Deserialize, Serialize};

use crate::presence::{Presence, Written};
use crate::shape::ShapeReport;
use crate::shared::SharedKind;

/// Counts from tuneguard-data's `ChatTokenizer::tokenize_all` (`data.tokenize` and
/// `data.val_tokenize` of `summary.json`). Every count is of examples, but `tokens` and
/// `supervised_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct TokenizeStats<P: Presence = Written> {
    /// Examples in.
    pub examples: P::Of<usize>,
    /// Examples out.
    pub kept: P::Of<usize>,
    /// Kept examples that were cut to `max_len`.
    pub truncated: P::Of<usize>,
    /// Examples dropped for being longer than `max_len` (policy `drop`).
    pub dropped_too_long: P::Of<usize>,
    /// Examples dropped because truncation left no supervised token.
    pub dropped_no_supervised: P::Of<usize>,
    /// Examples dropped because the chat template could not render them (tuneguard-data's
    /// `Dropped`).
    pub dropped_template_error: P::Of<usize>,
    /// Tokens in kept examples.
    pub tokens: P::Of<usize>,
    /// Supervised tokens in kept examples.
    pub supervised_tokens: P::Of<usize>,
    #[serde(flatten)]
    pub extra: P::Extra,
}

impl Eq for TokenizeStats {}

/// What happened to the data on its way to training (the run's data summary). Counts are of
/// rows or examples, as named.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DataSummary<P: Presence = Written> {
    /// Data rows read (training file, plus the validation file if any).
    pub rows_read: P::Of<usize>,
    pub rejected: P::Of<usize>,
    /// Rows the audit quarantined (see `quarantine.jsonl`), and rows it kept with a warning.
    pub quarantined: P::Of<usize>,
    pub audit_warned: P::Of<usize>,
    /// (check id, rows found, action) of every audit check that found something.
    pub audit_findings: P::Of<Vec<(String, usize, String)>>,
    /// `split` (held out of the training file), the validation file's path, or `none`.
    pub val_source: P::Of<String>,
    pub train_examples: P::Of<usize>,
    pub val_examples: P::Of<usize>,
    /// Validation examples removed because they repeat a training example.
    pub leaked_exact: P::Of<usize>,
    pub leaked_near: P::Of<usize>,
    /// Up to 20 of them: where they were and what they matched.
    pub leaks: P::Of<Vec<LeakReport>>,
    /// Training examples left out by `data.max_train_examples`.
    pub unused: P::Of<usize>,
    /// Augmented copies added to training, and how they were made.
    pub augmented: P::Of<usize>,
    pub augmentation: Option<String>,
    /// Training examples cut to `max_len`, and dropped at tokenization (too long, nothing
    /// supervised, or not renderable by the chat template; listed in `rejected.jsonl`).
    pub truncated: P::Of<usize>,
    pub dropped: P::Of<usize>,
    /// The same for the validation examples.
    pub val_truncated: P::Of<usize>,
    pub val_dropped: P::Of<usize>,
    /// Rows with more text than `max_len` tokens can hold, cut before tokenizing (training and
    /// validation).
    pub cut_before_tokenizing: P::Of<usize>,
    /// Per data file: the record shape (given, or detected from which line) and the rows that
    /// do not fit it.
    pub shapes: P::Of<Vec<ShapeReport>>,
    pub tokenize: P::Of<TokenizeStats<P>>,
    pub val_tokenize: P::Of<TokenizeStats<P>>,
    /// The general-domain replay rows mixed into training (`[replay]`), never in validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<GeneralData>,
    /// The general-domain examples EWC's Fisher was estimated on (`[ewc]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ewc: Option<GeneralData>,
    #[serde(flatten)]
    pub extra: P::Extra,
}

/// A general-domain data file read for the forgetting guard (replay rows, or the examples EWC's
/// Fisher is estimated on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneralData {
    pub path: String,
    pub rows_read: usize,
    /// Rows the loader rejected (in `rejected.jsonl` with file and line).
    pub rejected: usize,
    /// Examples kept, of which truncated to `data.max_len`; examples dropped at tokenization
    /// (also in `rejected.jsonl`).
    pub examples: usize,
    pub truncated: usize,
    pub dropped: usize,
    pub tokens: usize,
    /// `replay.ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Replay rows used in training so far (counted in the run's summary).
    #[serde(default)]
    pub used: usize,
    /// EWC: the Fisher's cache file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fisher: Option<String>,
}

/// A validation example removed because it repeats a training example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakReport {
    /// `exact` or `near`.
    pub kind: String,
    /// Exact shingle Jaccard similarity, 0–1 (1 for an exact copy).
    pub jaccard: f64,
    /// The part the two rows share (`instruction`, `system_prompt`) when `jaccard` is of the
    /// rest after it; absent when it is of the whole rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedKind>,
    /// `file:line` of the validation example and of the training example it repeats.
    pub val_row: String,
    pub train_row: String,
    /// The validation example's text, cut to 160 characters.
    pub text: String,
}
