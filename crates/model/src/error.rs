//! Errors of the model engine. Every variant names the file or tensor at fault.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The I/O error is part of the message rather than a `source`, so a one-line report
    /// (`{:#}`) does not print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a GGUF file, a safetensors file or a Hugging Face model directory")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: invalid GGUF: {reason}")]
    InvalidGguf { path: PathBuf, reason: String },
    #[error("{path}: invalid safetensors: {reason}")]
    InvalidSafetensors { path: PathBuf, reason: String },
    #[error("{path}: invalid config: {reason}")]
    InvalidConfig { path: PathBuf, reason: String },
    #[error(
        "{path}: unsupported architecture `{arch}` (supported: llama, mistral, qwen2 and their config model_types)"
    )]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    #[error("{path}: tensor `{tensor}` uses unsupported quantization type {ty}")]
    UnsupportedQuantization { path: PathBuf, tensor: String, ty: String },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch { path: PathBuf, tensor: String, expected: Vec<usize>, got: Vec<usize> },
    #[error("{path}: tokenizer error: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("{path}: chat template error: {reason}")]
    ChatTemplate { path: PathBuf, reason: String },
    #[error("{path}: invalid LoRA adapter: {reason}")]
    InvalidAdapter { path: PathBuf, reason: String },
    #[error("invalid generation request: {0}")]
    InvalidRequest(String),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), err: source }
    }
}
