//! Where chat templates are found: GGUF metadata, or a Hugging Face model directory
//! (`chat_template.jinja` or `tokenizer_config.json`).
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

/// `tokenizer.chat_template` of a GGUF file.
pub fn chat_template_from_gguf(gguf: &GgufFile) -> Option<&str> {
    gguf.get_str("tokenizer.chat_template")
}

/// The template of a list of `{name, template}` entries: the one named `default`.
pub(crate) fn pick_named_template(v: &serde_json::Value) -> Option<String> {
    v.as_array()?
        .iter()
        .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
        .and_then(|e| e.get("template"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
}

/// Finds the chat template of a Hugging Face model directory: `chat_template.jinja`, else
/// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}` from
/// which `default` is used). Returns the text and the file it came from.
///
/// # Errors
/// `Io` when a file cannot be read, `ChatTemplate` for invalid JSON or a template list with no
/// `default` entry.
pub fn find_chat_template_in_dir(dir: &Path) -> Result<Option<(String, PathBuf)>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?;
        return Ok(Some((text, jinja)));
    }
    let config = dir.join("tokenizer_config.json");
    if !config.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&config).map_err(|e| ModelError::io(&config, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::ChatTemplate { path: config.clone(), reason: format!("invalid JSON: {e}") })?;
    match json.get("chat_template") {
        Some(serde_json::Value::String(s)) => Ok(Some((s.clone(), config))),
        Some(v @ serde_json::Value::Array(_)) => match pick_named_template(v) {
            Some(s) => Ok(Some((s, config))),
            None => Err(ModelError::ChatTemplate {
                path: config,
                reason: "several chat templates and none named `default`".to_string(),
            }),
        },
        _ => Ok(None),
    }
}
