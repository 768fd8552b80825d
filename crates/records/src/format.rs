//! Record shapes ([`DataFormat`]) with configurable field names, and detection of the shape from
//! a record's keys.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn d_instruction() -> String {
    "instruction".into()
}
fn d_context() -> String {
    "context".into()
}
fn d_response() -> String {
    "response".into()
}
fn d_prompt() -> String {
    "prompt".into()
}
fn d_completion() -> String {
    "completion".into()
}
fn d_messages() -> String {
    "messages".into()
}
fn d_text() -> String {
    "text".into()
}

/// How a record maps onto an example. In a recipe (TOML or JSON) it is written with a `kind`
/// tag and optional field names, e.g. `{ kind = "instruction", context = "input", response =
/// "output" }` for Alpaca; omitted names take the defaults shown on each variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataFormat {
    /// Dolly / Super-NaturalInstructions / Alpaca style. The user turn is the instruction,
    /// followed by `"\n\n"` and the context when the context is present and non-empty; the
    /// assistant turn is the response. The context field is optional in each record.
    /// Defaults: `instruction`, `context`, `response`.
    Instruction {
        #[serde(default = "d_instruction")]
        instruction: String,
        #[serde(default = "d_context")]
        context: String,
        #[serde(default = "d_response")]
        response: String,
    },
    /// A user prompt and the assistant completion. Defaults: `prompt`, `completion`.
    PromptCompletion {
        #[serde(default = "d_prompt")]
        prompt: String,
        #[serde(default = "d_completion")]
        completion: String,
    },
    /// OpenAI-style list of `{role, content}` (roles system/user/assistant, multi-turn); every
    /// assistant turn is supervised. Default field: `messages`.
    Messages {
        #[serde(default = "d_messages")]
        field: String,
    },
    /// Plain text, supervised on every token. Default field: `text`.
    Text {
        #[serde(default = "d_text")]
        field: String,
    },
}

impl DataFormat {
    /// Instruction format with the default field names (`instruction`, `context`, `response`).
    pub fn instruction() -> Self {
        DataFormat::Instruction { instruction: d_instruction(), context: d_context(), response: d_response() }
    }

    /// Alpaca's names: `instruction`, `input`, `output`.
    pub fn alpaca() -> Self {
        DataFormat::Instruction { instruction: d_instruction(), context: "input".into(), response: "output".into() }
    }

    /// Prompt/completion with the default field names.
    pub fn prompt_completion() -> Self {
        DataFormat::PromptCompletion { prompt: d_prompt(), completion: d_completion() }
    }

    /// Messages with the default field name.
    pub fn messages() -> Self {
        DataFormat::Messages { field: d_messages() }
    }

    /// Text with the default field name.
    pub fn text() -> Self {
        DataFormat::Text { field: d_text() }
    }

    /// Short name of the shape (`instruction`, `prompt_completion`, `messages`, `text`).
    pub fn kind(&self) -> &'static str {
        match self {
            DataFormat::Instruction { .. } => "instruction",
            DataFormat::PromptCompletion { .. } => "prompt_completion",
            DataFormat::Messages { .. } => "messages",
            DataFormat::Text { .. } => "text",
        }
    }

    /// Guesses the format from one record's keys (default field names only). In order:
    /// `messages` → Messages; `prompt` + `completion` → PromptCompletion; `instruction` +
    /// `response` → Instruction (context `context`, or `input` if only that is present);
    /// `instruction` + `output` → Alpaca names; `text` → Text. `None` if nothing fits.
    pub fn auto_detect(record: &Map<String, Value>) -> Option<Self> {
        let has = |k: &str| record.contains_key(k);
        if has("messages") {
            return Some(Self::messages());
        }
        if has("prompt") && has("completion") {
            return Some(Self::prompt_completion());
        }
        if has("instruction") && (has("response") || has("output")) {
            let response = if has("response") { d_response() } else { "output".into() };
            let context = if !has("context") && has("input") { "input".into() } else { d_context() };
            return Some(DataFormat::Instruction { instruction: d_instruction(), context, response });
        }
        if has("text") {
            return Some(Self::text());
        }
        None
    }

    /// Every field name the shape reads, required or not.
    pub fn fields(&self) -> Vec<&str> {
        match self {
            DataFormat::Instruction { instruction, context, response } => vec![instruction, context, response],
            _ => self.required_fields(),
        }
    }

    /// Field names a record must have (the context field is optional).
    pub fn required_fields(&self) -> Vec<&str> {
        match self {
            DataFormat::Instruction { instruction, response, .. } => vec![instruction, response],
            DataFormat::PromptCompletion { prompt, completion } => vec![prompt, completion],
            DataFormat::Messages { field } | DataFormat::Text { field } => vec![field],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(keys: &[&str]) -> Map<String, Value> {
        keys.iter().map(|k| (k.to_string(), Value::String("x".into()))).collect()
    }

    #[test]
    fn auto_detect_table() {
        let cases: &[(&[&str], Option<DataFormat>)] = &[
            (&["instruction", "context", "response", "category"], Some(DataFormat::instruction())),
            (&["instruction", "input", "output"], Some(DataFormat::alpaca())),
            (&["instruction", "response"], Some(DataFormat::instruction())),
            (&["prompt", "completion"], Some(DataFormat::prompt_completion())),
            (&["messages", "id"], Some(DataFormat::messages())),
            (&["text"], Some(DataFormat::text())),
            (&["prompt"], None),
            (&["foo", "bar"], None),
        ];
        for (keys, want) in cases {
            assert_eq!(&DataFormat::auto_detect(&obj(keys)), want, "keys {keys:?}");
        }
    }

    #[test]
    fn serde_defaults_and_overrides() -> Result<(), serde_json::Error> {
        let f: DataFormat = serde_json::from_str(r#"{"kind":"instruction","context":"input","response":"output"}"#)?;
        assert_eq!(f, DataFormat::alpaca());
        let f: DataFormat = serde_json::from_str(r#"{"kind":"messages"}"#)?;
        assert_eq!(f, DataFormat::messages());
        let f: DataFormat = serde_json::from_str(r#"{"kind":"text","field":"body"}"#)?;
        assert_eq!(f, DataFormat::Text { field: "body".into() });
        let back: DataFormat = serde_json::from_str(&serde_json::to_string(&DataFormat::prompt_completion())?)?;
        assert_eq!(back, DataFormat::prompt_completion());
        Ok(())
    }

    #[test]
    fn serde_rejects_unknown_keys_and_kinds() {
        assert!(serde_json::from_str::<DataFormat>(r#"{"kind":"text","feild":"body"}"#).is_err());
        assert!(serde_json::from_str::<DataFormat>(r#"{"kind":"alpaca"}"#).is_err());
    }
}
