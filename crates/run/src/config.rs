//! The recipe resolved for one run. Every default that depends on other keys or on the
//! environment is filled in once, here, so the pipeline reads values instead of `Option`s and
//! no stage can fill a default differently from another. The recipe itself stays as written:
//! `config.toml` and the resume fingerprint are of it.
use std::path::PathBuf;

use tuneguard_records::Direction;

use crate::recipe::{Recipe, ValSizeSpec};

/// The Hugging Face id written as an adapter's base model when the recipe names no model file
/// (the default model).
pub const DEFAULT_BASE_MODEL: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The checked recipe, as written.
    pub recipe: Recipe,
    /// The model file or folder: `model.path`, else `TUNEGUARD_MODEL`, else the default model
    /// (resolved by the caller, which knows the environment).
    pub model_path: PathBuf,
    /// The adapter's `base_model_name_or_path`: `model.path` as written, else
    /// [`DEFAULT_BASE_MODEL`].
    pub base_model_name: String,
    /// Whether validation data is configured: `data.val_file`, or a `data.val_size` above 0.
    pub has_val: bool,
    /// `early_stopping.enabled`, else `has_val`.
    pub early_stopping: bool,
    /// `early_stopping.direction`, else the direction of `early_stopping.metric`.
    pub direction: Direction,
    /// `data.require_signature`, else whether `data.trusted_keys` lists any key.
    pub require_signature: bool,
}

impl RunConfig {
    /// Resolves a recipe (already checked by [`Recipe::load`]) for the model at `model_path`.
    pub fn new(recipe: Recipe, model_path: PathBuf) -> Self {
        let has_val = !matches!(recipe.data.val_size, ValSizeSpec::Count(0)) || recipe.data.val_file.is_some();
        let es = &recipe.early_stopping;
        let d = &recipe.data;
        RunConfig {
            base_model_name: recipe
                .model
                .path
                .as_ref()
                .map_or(DEFAULT_BASE_MODEL.to_string(), |p| p.display().to_string()),
            has_val,
            early_stopping: es.enabled.unwrap_or(has_val),
            direction: es.direction.unwrap_or(es.metric.direction()),
            require_signature: d.require_signature.unwrap_or(!d.trusted_keys.is_empty()),
            model_path,
            recipe,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn resolved(overrides: &[&str]) -> Result<RunConfig, crate::recipe::RecipeError> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.toml");
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        Ok(RunConfig::new(Recipe::load(&dir, &overrides)?, PathBuf::from("m.gguf")))
    }

    #[test]
    fn defaults_follow_the_keys_they_depend_on() -> Result<(), crate::recipe::RecipeError> {
        let c = resolved(&[])?;
        assert!(c.has_val && c.early_stopping);
        assert_eq!(c.direction, Direction::Minimize);
        assert!(!c.require_signature);
        assert_eq!(c.base_model_name, DEFAULT_BASE_MODEL);

        let c = resolved(&["data.val_size=0", "early_stopping.metric=\"val_token_accuracy\""])?;
        assert!(!c.has_val && !c.early_stopping);
        assert_eq!(c.direction, Direction::Maximize);

        let c = resolved(&["data.val_size=0", "early_stopping.enabled=true", "early_stopping.direction=\"maximize\""])?;
        assert!(!c.has_val && c.early_stopping);
        assert_eq!(c.direction, Direction::Maximize);

        let c = resolved(&["model.path=\"x/m.gguf\"", "data.trusted_keys=[\"k.pub\"]", "data.manifest=\"m.json\""])?;
        assert!(c.require_signature);
        assert!(c.base_model_name.ends_with("x/m.gguf"), "{}", c.base_model_name);
        let c =
            resolved(&["data.trusted_keys=[\"k.pub\"]", "data.manifest=\"m.json\"", "data.require_signature=false"])?;
        assert!(!c.require_signature);
        Ok(())
    }
}
