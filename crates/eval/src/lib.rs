//! Evaluation tasks on a loaded model (with or without a LoRA adapter), scored with
//! `tuneguard-metrics`:
//!
//! - [`perplexity`]: sliding-window perplexity of a text file ([`texts`] reads it).
//!
//! The forward passes of independent windows run in parallel and are summed in order, so a
//! result does not depend on the thread count.
pub mod perplexity;
pub mod texts;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {err}", .path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A row that cannot be read, with its file and 1-based line.
    #[error("{}:{line}: {reason}", .path.display())]
    Row { path: PathBuf, line: usize, reason: String },
    #[error("{}: no text to evaluate ({reason})", .path.display())]
    Empty { path: PathBuf, reason: String },
    /// A setting out of its range, naming the flag.
    #[error("{flag}: {reason}")]
    Setting { flag: &'static str, reason: String },
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
}

pub type Result<T> = std::result::Result<T, EvalError>;
