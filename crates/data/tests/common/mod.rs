//! Shared test helpers: the default model's tokenizer and chat template.
#![allow(dead_code)]
use tuneguard_model::chat::ChatTemplate;
use tuneguard_model::gguf::GgufFile;
use tuneguard_model::tokenizer::TextTokenizer;

/// Tokenizer and chat template of the default model, or `None` when tests may skip it.
pub fn default_tokenizer_and_template() -> anyhow::Result<Option<(TextTokenizer, ChatTemplate)>> {
    let Some(path) = tuneguard_model::testutil::require_default_model() else {
        return Ok(None);
    };
    let gguf = GgufFile::open(&path)?;
    let tok = TextTokenizer::from_gguf(&gguf)?;
    let tmpl = ChatTemplate::from_gguf(&gguf, tok.bos_token(), tok.eos_token())?
        .ok_or_else(|| anyhow::anyhow!("{} has no chat template", path.display()))?;
    Ok(Some((tok, tmpl)))
}
