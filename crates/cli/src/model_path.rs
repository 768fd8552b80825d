//! Where `--model` points when it is not given: the default model fetched by
//! `scripts/fetch-default-model.sh`.
use std::path::{Path, PathBuf};

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const FETCH_COMMAND: &str = "scripts/fetch-default-model.sh";

#[derive(Debug, thiserror::Error)]
#[error("no --model given and the default model {DEFAULT_MODEL_FILE} was not found (looked in {looked}); run `{FETCH_COMMAND}` to fetch it, or pass --model PATH")]
pub struct MissingDefaultModel {
    looked: String,
}

/// `$TUNEGUARD_MODEL`, else `./models/<default>`, else `<repo>/models/<default>` of the
/// repository the binary was built from.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf, MissingDefaultModel> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("TUNEGUARD_MODEL").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("models").join(DEFAULT_MODEL_FILE));
    // The repository this binary was built from (also right for `cargo install --path`).
    if let Some(repo) = Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent) {
        candidates.push(repo.join("models").join(DEFAULT_MODEL_FILE));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let looked = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(MissingDefaultModel { looked })
}
