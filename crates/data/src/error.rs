//! Errors of the data pipeline. Bad rows are not errors: they become [`crate::Rejected`] entries
//! and the run goes on. These variants are for problems that stop the run: unreadable files, an
//! empty data set, too many rejects, a chat template that cannot be used for loss masking.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The I/O error is part of the message rather than a `source`, so a one-line report does
    /// not print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A record problem that cannot be skipped (e.g. a CSV header without the needed columns).
    #[error("{path}:{line}: field `{field}`: {reason}")]
    InvalidRecord { path: PathBuf, line: usize, field: String, reason: String },
    /// Nothing was accepted (after rejecting bad rows and filtering).
    #[error("{path}: empty data set: no usable examples ({rows} rows read, {rejected} rejected)")]
    EmptyDataset { path: PathBuf, rows: usize, rejected: usize },
    /// The share of rejected rows is above the recipe's `max_reject_fraction`.
    #[error(
        "{path}: {rejected} of {rows} rows rejected (fraction {fraction:.4}), above the maximum reject fraction {max}"
    )]
    TooManyRejected { path: PathBuf, rows: usize, rejected: usize, fraction: f64, max: f64 },
    /// Every example was dropped by tokenization (too long, nothing supervised left, or not
    /// renderable by the chat template).
    #[error(
        "empty data set after tokenization: all {examples} examples dropped ({too_long} too long, {no_supervised} with no supervised tokens left, {template_error} the chat template cannot render)"
    )]
    EmptyAfterTokenize { examples: usize, too_long: usize, no_supervised: usize, template_error: usize },
    /// The data format cannot be determined from the records.
    #[error("{path}: cannot detect the data format: {reason}")]
    UnknownFormat { path: PathBuf, reason: String },
    /// An option has an invalid value; `field` names it.
    #[error("invalid data option `{field}`: {reason}")]
    InvalidOption { field: String, reason: String },
    /// Rendering or tokenizing example `example` (0-based index into the loaded examples) failed.
    #[error("example {example}: {reason}")]
    Tokenize { example: usize, reason: String },
    /// An error from the model crate (tokenizer, chat template).
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
    /// The train/validation split cannot be made (`data.val_size`, stratification).
    #[error(transparent)]
    Split(#[from] crate::split::SplitError),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        DataError::Io { path: path.into(), err }
    }
}
