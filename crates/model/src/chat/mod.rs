//! Chat templates: renders a model's own Jinja chat template the way Hugging Face transformers
//! does (`apply_chat_template`), with minijinja.
//!
//! Matches transformers' `_compile_jinja_template`: `trim_blocks` and `lstrip_blocks` on,
//! loop controls, `raise_exception`, `strftime_now`, and a `tojson` that does not HTML-escape.
//! Python string/dict methods (`.strip()`, `.startswith()`, `.items()`, ...) come from
//! minijinja-contrib's pycompat layer.
//!
//! - this file: [`ChatMessage`], [`ChatTemplate`] (compile and render), error reporting;
//! - `source`: finding a template in a GGUF file or a Hugging Face model directory;
//! - `functions`: the `raise_exception` and `strftime_now` template functions;
//! - `tojson`: the Python-compatible `tojson` filter.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Enumerator, Object, ObjectRepr, Serde};
use minijinja::{context, Environment, Error, Value};

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

mod functions;
mod source;
#[cfg(test)]
mod tests;
mod tojson;

use functions::{raise_exception, strftime_now, RaisedException};
pub(crate) use source::pick_named_template;
pub use source::{chat_template_from_gguf, find_chat_template_in_dir};
use tojson::tojson;

const TEMPLATE_NAME: &str = "chat_template";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Exposes a message to templates as a map whose keys keep Python's dict order
/// (`role`, `content`), so `tojson` output matches transformers.
#[derive(Debug)]
struct MessageObject(ChatMessage);

impl Object for MessageObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.0.role.clone())),
            "content" => Some(Value::from(self.0.content.clone())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    origin: PathBuf,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`. `origin` names where it came from (GGUF file, chat_template.jinja,
    /// tokenizer_config.json) for error messages.
    ///
    /// # Errors
    /// `ChatTemplate` naming `origin` when the template does not parse.
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
        origin: impl Into<PathBuf>,
    ) -> Result<Self> {
        let origin = origin.into();
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(&origin, &e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        let compiled = strip_generation_tags(&source);
        env.add_template_owned(TEMPLATE_NAME, compiled).map_err(|e| template_error(&origin, &e))?;
        Ok(ChatTemplate { env, source, bos_token, eos_token, origin })
    }

    /// The template for a GGUF file (`tokenizer.chat_template`), if it has one.
    ///
    /// # Errors
    /// `ChatTemplate` when the template does not parse.
    pub fn from_gguf(gguf: &GgufFile, bos_token: Option<String>, eos_token: Option<String>) -> Result<Option<Self>> {
        match chat_template_from_gguf(gguf) {
            Some(src) => Ok(Some(Self::new(src.to_string(), bos_token, eos_token, &gguf.path)?)),
            None => Ok(None),
        }
    }

    /// The template of a Hugging Face model directory (see [`find_chat_template_in_dir`]).
    ///
    /// # Errors
    /// `Io`/`ChatTemplate` when a template file cannot be read or does not parse.
    pub fn from_hf_dir(dir: &Path, bos_token: Option<String>, eos_token: Option<String>) -> Result<Option<Self>> {
        match find_chat_template_in_dir(dir)? {
            Some((src, origin)) => Ok(Some(Self::new(src, bos_token, eos_token, origin)?)),
            None => Ok(None),
        }
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with the assistant header.
    ///
    /// # Errors
    /// `ChatTemplate` naming the origin for render errors; for `raise_exception(msg)` the reason
    /// carries `msg`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &BTreeMap::new())
    }

    /// Like [`ChatTemplate::render`], with extra template variables (e.g. `tools`,
    /// `enable_thinking`); the built-in variables take precedence over them.
    ///
    /// # Errors
    /// As [`ChatTemplate::render`].
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String> {
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(|e| template_error(&self.origin, &e))?;
        let msgs: Vec<Value> = messages.iter().map(|m| Value::from_object(MessageObject(m.clone()))).collect();
        let ctx = context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone(),
            eos_token => self.eos_token.clone(),
            ..Value::from(Serde(extra))
        };
        tmpl.render(ctx).map_err(|e| template_error(&self.origin, &e))
    }
}

/// One-line `ChatTemplate` error; a template's own `raise_exception` message is kept verbatim.
fn template_error(origin: &Path, err: &Error) -> ModelError {
    let mut raised = None;
    let mut chain: Vec<String> = vec![err.to_string()];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<RaisedException>() {
            raised = Some(r.0.clone());
            break;
        }
        let s = e.to_string();
        if !chain.iter().any(|c| c.contains(&s)) {
            chain.push(s);
        }
        cur = e.source();
    }
    let reason = match raised {
        Some(msg) => format!("template raised an exception: {msg}"),
        None => chain.join(": "),
    };
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    ModelError::ChatTemplate { path: origin.to_path_buf(), reason }
}

/// Turns transformers' `{% generation %}`/`{% endgeneration %}` tags (used to mark assistant
/// text for training masks) into a no-op block minijinja understands, keeping whitespace control.
fn strip_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let body = inner.trim_start_matches(['-', '+']).trim_end_matches(['-', '+']).trim();
        let replacement = match body {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                let lead = &inner[..inner.len() - inner.trim_start_matches(['-', '+']).len()];
                let trail = &inner[inner.trim_end_matches(['-', '+']).len()..];
                out.push_str("{%");
                out.push_str(lead);
                out.push(' ');
                out.push_str(r);
                out.push(' ');
                out.push_str(trail);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}
