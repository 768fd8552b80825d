//! Errors of the training crate.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A batch that does not fit the model (lengths, ids, labels).
    #[error("invalid batch: {0}")]
    Batch(String),
    /// An optimizer setting outside its range, naming the setting.
    #[error("invalid optimizer setting `{key}`: {reason}")]
    Optimizer { key: &'static str, reason: String },
    /// The model has no LoRA adapter attached to train.
    #[error("the model has no LoRA weights to train")]
    NoTrainableWeights,
    /// A checkpoint that cannot be written or read back.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: std::path::PathBuf, reason: String },
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
