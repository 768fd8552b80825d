//! Evaluation statistics, each with the semantics of the implementation users compare against:
//!
//! - [`classification`]: accuracy, precision/recall/F-beta (per class, binary, micro, macro,
//!   weighted) and the confusion matrix, as scikit-learn's `accuracy_score`,
//!   `precision_recall_fscore_support` and `confusion_matrix` compute them, zero division
//!   included;
//! - [`text`]: exact match and token F1 after the SQuAD v1.1 answer normalization, and ROUGE-L
//!   (Lin 2004) as Google's `rouge-score` package tokenizes and scores it;
//! - [`perplexity`]: exp of the mean negative log-likelihood per token;
//! - [`bootstrap`]: seeded percentile-bootstrap confidence intervals of any of them (Efron &
//!   Tibshirani 1993, ch. 13).
//!
//! Every metric has a unique name and a unit ([`info`]); the streaming ones implement
//! [`Metric`] (`update` per item, `value` at the end). A leaf crate: no model, no files.
//! Written here rather than taken from a crate because no Rust crate reproduces scikit-learn's
//! zero-division and label rules, which the reference tests pin.
pub mod bootstrap;
pub mod classification;
pub mod info;
pub mod perplexity;
pub mod text;

pub use info::{MetricInfo, Unit};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("y_true has {y_true} items and y_pred {y_pred}; they must be the same length")]
    LengthMismatch { y_true: usize, y_pred: usize },
    #[error("no items to score")]
    Empty,
    #[error("labels must list at least one label")]
    NoLabels,
    #[error("labels lists {0} twice")]
    DuplicateLabel(String),
    #[error("none of the labels given is in y_true")]
    NoLabelInTrue,
    #[error("average=binary needs at most 2 labels in y_true and y_pred, found {0}")]
    NotBinary(usize),
    #[error("pos_label {pos_label} is not a valid label; it should be one of {present}")]
    InvalidPosLabel { pos_label: String, present: String },
    #[error("{what} must be {range}, got {value}")]
    OutOfRange { what: &'static str, range: &'static str, value: f64 },
}

pub type Result<T> = std::result::Result<T, MetricsError>;

/// A metric computed from items one at a time: `update` with each, `value` at the end.
pub trait Metric {
    /// What one update takes (a prediction and its reference, a token count and its loss...).
    type Item<'a>;
    /// Name, unit and direction.
    fn info(&self) -> MetricInfo;
    fn update(&mut self, item: Self::Item<'_>);
    /// The metric over the items seen so far; `None` before the first.
    fn value(&self) -> Option<f64>;
}
