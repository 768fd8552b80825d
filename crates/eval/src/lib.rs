//! Evaluation tasks on a loaded model (with or without a LoRA adapter), scored with
//! `tuneguard-metrics`:
//!
//! - [`perplexity`]: sliding-window perplexity of a text file ([`texts`] reads it);
//! - [`choice`]: multiple-choice / classification by the log-likelihood of each choice
//!   (lm-evaluation-harness `loglikelihood`, `acc` and `acc_norm`);
//! - [`generation`]: greedy answers scored with exact match, token F1 and ROUGE-L;
//! - [`suite`]: tasks as TOML settings, and running one on a model;
//! - [`general`]: a perplexity or multiple-choice task prepared once and measured on the model
//!   being trained (the forgetting guard).
//!
//! Independent windows or items are grouped into batched forward passes ([`batch`]: several
//! sequences per pass), the groups run in parallel and are collected in order, so a result does
//! not depend on the thread count.
pub mod batch;
pub mod choice;
pub mod general;
pub mod generation;
pub mod perplexity;
pub mod rows;
pub mod suite;
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
    /// A setting out of its range, naming the flag or key.
    #[error("{flag}: {reason}")]
    Setting { flag: &'static str, reason: String },
    /// A suite file that is not a suite.
    #[error("{}: {reason}", .path.display())]
    Suite { path: PathBuf, reason: String },
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
}

pub type Result<T> = std::result::Result<T, EvalError>;
