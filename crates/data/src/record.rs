//! One record (a JSON object, or a CSV row seen as an object of strings) → one [`Example`], or
//! the reason it is rejected.
use serde_json::{Map, Value};
use tuneguard_model::chat::ChatMessage;

use crate::format::DataFormat;
use crate::strict_json::JsonError;

/// One training example, before templating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Example {
    /// A conversation (roles `system`, `user`, `assistant`; at least one assistant turn). It is
    /// rendered with the model's chat template and only assistant turns are supervised.
    Chat(Vec<ChatMessage>),
    /// Plain text, supervised on every token.
    Text(String),
}

impl Example {
    /// Bytes of its texts: every message's content, or the text.
    pub fn text_bytes(&self) -> usize {
        match self {
            Example::Chat(m) => m.iter().map(|m| m.content.len()).sum(),
            Example::Text(t) => t.len(),
        }
    }

    /// The example cut to its first `max_bytes` bytes of text, or `None` when it has no more.
    /// A conversation keeps its messages in order until their contents reach `max_bytes`: the
    /// message that crosses the limit is cut (at a character boundary) and later ones are left
    /// out, even when that leaves no assistant turn. Used to bound what tokenization and the
    /// duplicate checks see of an over-long row ([`crate::ChatTokenizer::max_example_bytes`]).
    pub fn cut_to(&self, max_bytes: usize) -> Option<Example> {
        if self.text_bytes() <= max_bytes {
            return None;
        }
        let cut = |s: &str, n: usize| {
            let mut end = n.min(s.len());
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        Some(match self {
            Example::Text(t) => Example::Text(cut(t, max_bytes)),
            Example::Chat(messages) => {
                let mut left = max_bytes;
                let mut out = Vec::new();
                for m in messages {
                    if left == 0 {
                        break;
                    }
                    let content = cut(&m.content, left);
                    left -= content.len();
                    let whole = content.len() == m.content.len();
                    out.push(ChatMessage::new(m.role.clone(), content));
                    if !whole {
                        break;
                    }
                }
                Example::Chat(out)
            }
        })
    }
}

/// Calls `$callback! { ... }` with the loader's row problems, one `Variant = "name",` each (with
/// its doc comment), in order. It is the one list from which [`RejectKind`] and the audit's
/// `CheckId` (`tuneguard_audit::CheckId`) take their schema variants, names and order, so the
/// two cannot drift apart.
#[macro_export]
macro_rules! with_schema_kinds {
    ($callback:ident) => {
        $callback! {
            /// The line is not valid UTF-8.
            InvalidUtf8 = "invalid_utf8",
            /// The line is not valid JSON.
            InvalidJson = "invalid_json",
            /// The JSON value is not an object.
            NotAnObject = "not_an_object",
            /// An object (at any depth) gives one key twice; JSON readers keep only one of the values.
            DuplicateKey = "duplicate_key",
            /// A required field is absent (or null).
            MissingField = "missing_field",
            /// A required field is empty or only whitespace.
            EmptyField = "empty_field",
            /// A field has the wrong JSON type.
            WrongType = "wrong_type",
            /// A `messages` list has a role other than system/user/assistant.
            BadRole = "bad_role",
            /// A `messages` list has no assistant turn.
            NoAssistantTurn = "no_assistant_turn",
            /// A `messages` list opens (after any system turns) with an assistant turn: a reply to no
            /// prompt, which chat templates cannot render as a prompt followed by its reply.
            AssistantFirst = "assistant_first",
            /// A CSV record cannot be parsed.
            InvalidCsv = "invalid_csv",
            /// A CSV row has a different number of fields from the header.
            FieldCount = "field_count",
            /// The format could not be detected from this record's keys.
            UnknownFormat = "unknown_format",
        }
    };
}

macro_rules! reject_kind {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)*) => {
        /// Why a row was rejected (the category counted in [`crate::LoadStats`]), or left out at
        /// tokenization ([`RejectKind::is_tokenization`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum RejectKind {
            $($(#[$doc])* $kind,)*
            /// Tokenization: longer than `max_len` tokens under `overflow = "drop"`.
            TooLong,
            /// Tokenization: no supervised token left after templating and truncation.
            NoSupervisedTokens,
            /// Tokenization: the chat template (or the tokenizer) fails on this conversation.
            TemplateError,
            /// Tokenization: a general-domain text row with fewer tokens than a replay example
            /// needs.
            TooShort,
        }

        impl RejectKind {
            /// The kinds the loader gives (all but those of tokenization), in order.
            pub const SCHEMA: &'static [RejectKind] = &[$(RejectKind::$kind),*];

            /// Stable snake_case name, as written in stats.
            pub fn name(self) -> &'static str {
                match self {
                    $(RejectKind::$kind => $name,)*
                    RejectKind::TooLong => "too_long",
                    RejectKind::NoSupervisedTokens => "no_supervised_tokens",
                    RejectKind::TemplateError => "template_error",
                    RejectKind::TooShort => "too_short",
                }
            }
        }
    };
}

with_schema_kinds!(reject_kind);

impl RejectKind {
    /// Whether the kind comes from tokenization (after the loader and the audit), rather than
    /// from reading the row.
    pub fn is_tokenization(self) -> bool {
        matches!(
            self,
            RejectKind::TooLong | RejectKind::NoSupervisedTokens | RejectKind::TemplateError | RejectKind::TooShort
        )
    }
}

/// A rejection reason before it is tied to a file and line.
pub(crate) type Reject = (RejectKind, String);

/// How a JSON value's type reads in a rejection reason ("a number", "a list"...).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The non-empty string at `key`, naming `label` (e.g. `messages[2].content`) in the reason.
fn required_str<'a>(obj: &'a Map<String, Value>, key: &str, label: &str) -> Result<&'a str, Reject> {
    match obj.get(key) {
        None | Some(Value::Null) => Err((RejectKind::MissingField, format!("missing field `{label}`"))),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err((RejectKind::EmptyField, format!("field `{label}` is empty")))
        }
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err((RejectKind::WrongType, format!("field `{label}` must be a string, found {}", type_name(v)))),
    }
}

/// The optional string at `key`: absent, null and whitespace-only give `None`.
fn optional_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Reject> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err((RejectKind::WrongType, format!("field `{key}` must be a string, found {}", type_name(v)))),
    }
}

/// Converts one record. `messages_from_string`: a messages field given as a JSON string is
/// parsed (CSV cells are always strings).
#[cfg(test)]
pub(crate) fn to_example(
    obj: &Map<String, Value>,
    format: &DataFormat,
    messages_from_string: bool,
) -> Result<Example, Reject> {
    to_example_parts(obj, format, messages_from_string).map(|(e, _)| e)
}

/// [`to_example`] and, for an instruction-format record, the byte length of the instruction at
/// the start of the user turn ([`crate::parts::split_shared`] splits it off again).
pub(crate) fn to_example_parts(
    obj: &Map<String, Value>,
    format: &DataFormat,
    messages_from_string: bool,
) -> Result<(Example, Option<usize>), Reject> {
    let example = match format {
        DataFormat::Instruction { instruction, context, response } => {
            let ins = required_str(obj, instruction, instruction)?;
            let ctx = optional_str(obj, context)?;
            let resp = required_str(obj, response, response)?;
            let user = match ctx {
                Some(c) => format!("{ins}\n\n{c}"),
                None => ins.to_string(),
            };
            let chat = vec![ChatMessage::new("user", user), ChatMessage::new("assistant", resp)];
            return Ok((Example::Chat(chat), Some(ins.len())));
        }
        DataFormat::PromptCompletion { prompt, completion } => {
            let p = required_str(obj, prompt, prompt)?;
            let c = required_str(obj, completion, completion)?;
            Example::Chat(vec![ChatMessage::new("user", p), ChatMessage::new("assistant", c)])
        }
        DataFormat::Messages { field } => {
            let parsed;
            let list = match obj.get(field) {
                None | Some(Value::Null) => return Err((RejectKind::MissingField, format!("missing field `{field}`"))),
                Some(Value::String(s)) if messages_from_string => {
                    parsed = crate::strict_json::parse(s, field).map_err(|e| match e {
                        JsonError::Syntax(e) => {
                            (RejectKind::InvalidJson, format!("field `{field}` is not a JSON list of messages: {e}"))
                        }
                        dup => (RejectKind::DuplicateKey, format!("field `{field}`: {}", dup.reason())),
                    })?;
                    &parsed
                }
                Some(v) => v,
            };
            Example::Chat(messages(list, field)?)
        }
        DataFormat::Text { field } => Example::Text(required_str(obj, field, field)?.to_string()),
    };
    Ok((example, None))
}

/// Validates an OpenAI-style message list.
fn messages(list: &Value, field: &str) -> Result<Vec<ChatMessage>, Reject> {
    let Value::Array(items) = list else {
        return Err((RejectKind::WrongType, format!("field `{field}` must be a list, found {}", type_name(list))));
    };
    if items.is_empty() {
        return Err((RejectKind::EmptyField, format!("field `{field}` is an empty list")));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err((
                RejectKind::WrongType,
                format!("`{field}[{i}]` must be an object with `role` and `content`, found {}", type_name(item)),
            ));
        };
        let role = required_str(m, "role", &format!("{field}[{i}].role"))?;
        if !matches!(role, "system" | "user" | "assistant") {
            return Err((
                RejectKind::BadRole,
                format!("`{field}[{i}].role` is `{role}`; expected system, user or assistant"),
            ));
        }
        let content = required_str(m, "content", &format!("{field}[{i}].content"))?;
        out.push(ChatMessage::new(role, content));
    }
    if !out.iter().any(|m| m.role == "assistant") {
        return Err((RejectKind::NoAssistantTurn, format!("`{field}` has no assistant turn")));
    }
    // Templates render the prompt before a reply; with no user turn before it there is none
    // (SmolLM2's template then renders no prefix of the reply and the whole run used to stop).
    if let Some(i) = out.iter().position(|m| m.role != "system").filter(|&i| out[i].role == "assistant") {
        let after = if i == 0 { String::new() } else { " after the system prompt".to_string() };
        return Err((
            RejectKind::AssistantFirst,
            format!(
                "`{field}[{i}]`, the first turn{after}, is the assistant's; a conversation must open with a user turn"
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(json: &str) -> Map<String, Value> {
        match serde_json::from_str(json) {
            Ok(Value::Object(m)) => m,
            other => panic!("bad test record {json}: {other:?}"),
        }
    }

    fn chat(pairs: &[(&str, &str)]) -> Example {
        Example::Chat(pairs.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect())
    }

    #[test]
    fn accepted_records() {
        let cases: &[(&str, DataFormat, Example)] = &[
            (
                r#"{"instruction":"Sum.","context":"2 3","response":"5"}"#,
                DataFormat::instruction(),
                chat(&[("user", "Sum.\n\n2 3"), ("assistant", "5")]),
            ),
            (
                r#"{"instruction":"Hi.","context":"  ","response":"Hello"}"#,
                DataFormat::instruction(),
                chat(&[("user", "Hi."), ("assistant", "Hello")]),
            ),
            (
                r#"{"instruction":"Hi.","output":"Yo"}"#,
                DataFormat::alpaca(),
                chat(&[("user", "Hi."), ("assistant", "Yo")]),
            ),
            (
                r#"{"prompt":"P","completion":"C"}"#,
                DataFormat::prompt_completion(),
                chat(&[("user", "P"), ("assistant", "C")]),
            ),
            (
                r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"U"},{"role":"assistant","content":"A"},{"role":"user","content":"U2"},{"role":"assistant","content":"A2"}]}"#,
                DataFormat::messages(),
                chat(&[("system", "S"), ("user", "U"), ("assistant", "A"), ("user", "U2"), ("assistant", "A2")]),
            ),
            (r#"{"text":"Some text."}"#, DataFormat::text(), Example::Text("Some text.".into())),
        ];
        for (json, format, want) in cases {
            assert_eq!(to_example(&rec(json), format, false).as_ref(), Ok(want), "{json}");
        }
    }

    #[test]
    fn rejected_records_name_the_field() {
        let cases: &[(&str, DataFormat, RejectKind, &str)] = &[
            (r#"{"instruction":"x"}"#, DataFormat::instruction(), RejectKind::MissingField, "missing field `response`"),
            (
                r#"{"instruction":"x","response":""}"#,
                DataFormat::instruction(),
                RejectKind::EmptyField,
                "field `response` is empty",
            ),
            (
                r#"{"instruction":"x","response":null}"#,
                DataFormat::instruction(),
                RejectKind::MissingField,
                "missing field `response`",
            ),
            (
                r#"{"instruction":3,"response":"y"}"#,
                DataFormat::instruction(),
                RejectKind::WrongType,
                "field `instruction` must be a string, found a number",
            ),
            (
                r#"{"prompt":"p","completion":" "}"#,
                DataFormat::prompt_completion(),
                RejectKind::EmptyField,
                "field `completion` is empty",
            ),
            (
                r#"{"messages":[{"role":"user","content":"U"}]}"#,
                DataFormat::messages(),
                RejectKind::NoAssistantTurn,
                "`messages` has no assistant turn",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":"A"}]}"#,
                DataFormat::messages(),
                RejectKind::AssistantFirst,
                "`messages[0]`, the first turn, is the assistant's; a conversation must open with a user turn",
            ),
            (
                r#"{"messages":[{"role":"system","content":"S"},{"role":"assistant","content":"A"},{"role":"user","content":"U"},{"role":"assistant","content":"B"}]}"#,
                DataFormat::messages(),
                RejectKind::AssistantFirst,
                "`messages[1]`, the first turn after the system prompt, is the assistant's; a conversation must open with a user turn",
            ),
            (r#"{"messages":[]}"#, DataFormat::messages(), RejectKind::EmptyField, "field `messages` is an empty list"),
            (
                r#"{"messages":"hi"}"#,
                DataFormat::messages(),
                RejectKind::WrongType,
                "field `messages` must be a list, found a string",
            ),
            (
                r#"{"messages":[{"role":"tool","content":"x"}]}"#,
                DataFormat::messages(),
                RejectKind::BadRole,
                "`messages[0].role` is `tool`; expected system, user or assistant",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":""}]}"#,
                DataFormat::messages(),
                RejectKind::EmptyField,
                "field `messages[1].content` is empty",
            ),
            (
                r#"{"messages":[{"role":"user"}]}"#,
                DataFormat::messages(),
                RejectKind::MissingField,
                "missing field `messages[0].content`",
            ),
            (r#"{"body":"x"}"#, DataFormat::text(), RejectKind::MissingField, "missing field `text`"),
        ];
        for (json, format, kind, reason) in cases {
            assert_eq!(to_example(&rec(json), format, false), Err((*kind, reason.to_string())), "{json}");
        }
    }

    #[test]
    fn cut_to_keeps_the_first_bytes_in_message_order() {
        let ex = chat(&[("system", "S"), ("user", "héllo"), ("assistant", "world"), ("user", "more")]);
        assert_eq!(ex.text_bytes(), 16);
        assert_eq!(ex.cut_to(16), None);
        // 1 + 6 bytes, then "wo": the rest is left out, even the later user turn.
        assert_eq!(ex.cut_to(9), Some(chat(&[("system", "S"), ("user", "héllo"), ("assistant", "wo")])));
        // Never inside a character: "h" and the two bytes of "é" would be 3.
        assert_eq!(ex.cut_to(3), Some(chat(&[("system", "S"), ("user", "h")])));
        assert_eq!(ex.cut_to(7), Some(chat(&[("system", "S"), ("user", "héllo")])));
        assert_eq!(Example::Text("abcdef".into()).cut_to(4), Some(Example::Text("abcd".into())));
    }

    #[test]
    fn messages_as_json_string_when_allowed() {
        let r =
            rec(r#"{"messages":"[{\"role\":\"user\",\"content\":\"U\"},{\"role\":\"assistant\",\"content\":\"A\"}]"}"#);
        assert_eq!(to_example(&r, &DataFormat::messages(), true), Ok(chat(&[("user", "U"), ("assistant", "A")])));
        assert_eq!(to_example(&r, &DataFormat::messages(), false).map_err(|e| e.0), Err(RejectKind::WrongType));
    }
}
