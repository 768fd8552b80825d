//! Where `--model` points when it is not given: `$TUNEGUARD_MODEL`, or the default model fetched
//! by `scripts/fetch-default-model.sh`. A `TUNEGUARD_MODEL` that names nothing is an error, not
//! a silent fall back to another model.
use std::path::{Path, PathBuf};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const FETCH_COMMAND: &str = "scripts/fetch-default-model.sh";
pub const MODEL_ENV: &str = "TUNEGUARD_MODEL";

#[derive(Debug, thiserror::Error)]
pub enum ModelPathError {
    #[error("no --model given and the default model {DEFAULT_MODEL_FILE} was not found (looked in {looked}); run `{FETCH_COMMAND}` to fetch it, or pass --model PATH")]
    MissingDefault { looked: String },
    #[error("{MODEL_ENV} is set to {}, which does not exist; point it to a GGUF file or a Hugging Face model folder, or unset it to use the default model", .path.display())]
    MissingFromEnv { path: PathBuf },
}

/// `explicit`, else `$TUNEGUARD_MODEL` (which must exist), else `./models/<default>`, else
/// `<repo>/models/<default>` of the repository the binary was built from.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, ModelPathError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(MODEL_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        // A file or a Hugging Face folder; what it holds is the loader's to check.
        return if path.exists() { Ok(path) } else { Err(ModelPathError::MissingFromEnv { path }) };
    }
    let mut candidates = vec![PathBuf::from("models").join(DEFAULT_MODEL_FILE)];
    // The repository this binary was built from (also right for `cargo install --path`).
    if let Some(repo) = Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent) {
        candidates.push(repo.join("models").join(DEFAULT_MODEL_FILE));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(ModelPathError::MissingDefault { looked })
}
