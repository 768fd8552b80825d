use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Data(#[from] tuneguard_data::DataError),
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
}

pub type Result<T> = std::result::Result<T, AuditError>;
