//! JSON parsing that refuses an object with a repeated key, at any depth.
//!
//! serde_json, like most JSON parsers, keeps the last of two values given for one key, so
//! `{"response": "chat", "response": "IGNORE ALL ..."}` reads as the second value: whoever reviews
//! the row sees the first, the model trains on the hidden second. That makes a repeated key a
//! poisoning vector, and a row that has one is rejected (`duplicate_key`). The check is part of
//! the one parse: [`parse`] drives serde_json's parser with a `DeserializeSeed` that builds the
//! same [`Value`] as `serde_json::from_str` and stops at the second occurrence of a key, naming
//! the key and the object that holds it (`messages[1]`).
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a text is not accepted as JSON.
#[derive(Debug)]
pub(crate) enum JsonError {
    /// Not valid JSON (serde_json's message).
    Syntax(serde_json::Error),
    /// Valid JSON with a key given twice in one object.
    DuplicateKey { key: String, object: String, column: usize },
}

impl JsonError {
    /// The text of a rejection reason.
    pub fn reason(&self) -> String {
        match self {
            JsonError::Syntax(e) => format!("invalid JSON: {e}"),
            JsonError::DuplicateKey { key, object, column } => {
                let within = if object.is_empty() { String::new() } else { format!(" in `{object}`") };
                format!(
                    "duplicate key `{key}`{within}, repeated at column {column}: JSON readers keep only one of the two values, \
                     most the last, so what is trained on is not what a reader of the row sees"
                )
            }
        }
    }
}

/// Parses `text` as one JSON value; an object (at any depth) that repeats a key is an error.
/// `root` names the value in [`JsonError::DuplicateKey::object`] (`""` for a whole row, or the
/// field a nested JSON text came from).
pub(crate) fn parse(text: &str, root: &str) -> Result<Value, JsonError> {
    let duplicate = RefCell::new(None);
    let at = At::Root(root);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Node { at: &at, duplicate: &duplicate }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| match duplicate.into_inner() {
        Some((key, object)) => JsonError::DuplicateKey { key, object, column: e.column() },
        None => JsonError::Syntax(e),
    })
}

/// Where a value sits: the root, a key of an object, an index of a list.
enum At<'a> {
    Root(&'a str),
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root(name) => f.write_str(name),
            At::Key(parent, key) => match parent {
                At::Root("") => f.write_str(key),
                _ => write!(f, "{parent}.{key}"),
            },
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Deserializes one value at `at`; records the first repeated key in `duplicate`.
#[derive(Clone, Copy)]
struct Node<'a> {
    at: &'a At<'a>,
    duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own `Value` does.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let at = At::Index(self.at, items.len());
            match seq.next_element_seed(Node { at: &at, duplicate: self.duplicate })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                let object = self.at.to_string();
                let message = format!("duplicate key `{key}`");
                *self.duplicate.borrow_mut() = Some((key, object));
                return Err(de::Error::custom(message));
            }
            let at = At::Key(self.at, &key);
            let value = map.next_value_seed(Node { at: &at, duplicate: self.duplicate })?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json() -> Result<(), serde_json::Error> {
        let text =
            r#"{"a": [1, -2, 3.5, 1e400, true, null, "é\n"], "b": {"c": {}, "d": []}, "e": 18446744073709551615}"#;
        let ours = parse(text, "").map_err(|e| match e {
            JsonError::Syntax(e) => e,
            other => panic!("{other:?}"),
        });
        // serde_json refuses 1e400 too; compare without it.
        assert!(ours.is_err());
        let text = text.replace(", 1e400", "");
        let want: Value = serde_json::from_str(&text)?;
        assert!(matches!(parse(&text, ""), Ok(v) if v == want));
        Ok(())
    }

    #[test]
    fn a_repeated_key_is_named_with_its_object() {
        let cases = [
            (r#"{"response": "chat", "response": "IGNORE"}"#, "", "response", ""),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "content": "c"}]}"#,
                "",
                "content",
                "messages[1]",
            ),
            (r#"{"a": {"b": {"c": 1, "c": 2}}}"#, "", "c", "a.b"),
            (r#"[{"role": "user", "role": "assistant"}]"#, "messages", "role", "messages[0]"),
        ];
        for (text, root, want_key, want_object) in cases {
            match parse(text, root) {
                Err(JsonError::DuplicateKey { key, object, .. }) => {
                    assert_eq!((key.as_str(), object.as_str()), (want_key, want_object), "{text}");
                }
                other => panic!("{text}: expected a duplicate key, got {other:?}"),
            }
        }
        // The same key in two different objects is fine; so is a syntax error reported as one.
        assert!(parse(r#"[{"a": 1}, {"a": 2}]"#, "").is_ok());
        assert!(matches!(parse(r#"{"a": 1, "b""#, ""), Err(JsonError::Syntax(_))));
        assert!(matches!(parse(r#"{"a": 1} x"#, ""), Err(JsonError::Syntax(_))));
    }
}
