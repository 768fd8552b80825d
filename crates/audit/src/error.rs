use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Data(#[from] tuneguard_data::DataError),
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
    /// An invalid `[audit]` setting; `key` names it (`audit.actions.foo`).
    #[error("invalid setting `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// An input that cannot be audited (e.g. a recipe where data files are expected).
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
}

pub type Result<T> = std::result::Result<T, AuditError>;
