//! The rows of a JSONL evaluation set, each with its 1-based line so that a task can name
//! `file:line` for a row it cannot use, and the prompt templates that turn a row into text.
//!
//! Templates are Jinja (minijinja, the engine of the chat templates), as lm-evaluation-harness
//! writes `doc_to_text`: `"{{text}}\nQuestion: Is this sentence positive or negative?\nAnswer:"`.
//! An undefined field is an error, never an empty string; as in Jinja (and lm-eval), a single
//! trailing newline of the template is dropped.
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::{EvalError, Result};

/// One JSONL row.
#[derive(Debug, Clone)]
pub struct Row {
    pub line: usize,
    pub fields: Map<String, Value>,
}

/// The rows of `path`, in order (blank lines hold no row).
///
/// # Errors
/// `Io`; `Row` for a line that is not a JSON object; `Empty` for a file without rows.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let content = std::fs::read_to_string(path).map_err(|err| EvalError::Io { path: path.to_path_buf(), err })?;
    let mut rows = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| EvalError::Row { path: path.to_path_buf(), line: i + 1, reason };
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(fields)) => rows.push(Row { line: i + 1, fields }),
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
        }
    }
    if rows.is_empty() {
        return Err(EvalError::Empty { path: path.to_path_buf(), reason: "the file has no row".into() });
    }
    Ok(rows)
}

/// A compiled prompt template.
pub struct Template {
    env: Environment<'static>,
    /// Which setting the template came from, for errors.
    flag: &'static str,
}

impl Template {
    /// # Errors
    /// `Setting` naming `flag` for a template that does not parse.
    pub fn new(flag: &'static str, source: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template_owned(flag, source.to_string())
            .map_err(|e| EvalError::Setting { flag, reason: format!("the template does not parse: {e}") })?;
        Ok(Template { env, flag })
    }

    /// The template filled with the row's fields.
    ///
    /// # Errors
    /// `Row` (file:line) when the template names a field the row lacks.
    pub fn render(&self, path: &Path, row: &Row) -> Result<String> {
        let t = self.env.get_template(self.flag).map_err(|e| self.setting(e))?;
        t.render(minijinja::value::Serde(&row.fields)).map_err(|e| EvalError::Row {
            path: path.to_path_buf(),
            line: row.line,
            reason: format!("{}: {}", self.flag, e.detail().map_or_else(|| e.to_string(), str::to_string)),
        })
    }

    fn setting(&self, e: minijinja::Error) -> EvalError {
        EvalError::Setting { flag: self.flag, reason: e.to_string() }
    }
}

/// A field of `row` by name, or a `Row` error naming it.
pub fn field<'a>(path: &Path, row: &'a Row, name: &str) -> Result<&'a Value> {
    row.fields.get(name).ok_or_else(|| row_error(path, row, format!("no `{name}` field")))
}

/// The name of a row in per-item output: its `id_field` (a string as it is, another value as
/// JSON), or `line N` without one.
///
/// # Errors
/// `Row` when the row lacks `id_field`.
pub fn item_id(path: &Path, row: &Row, id_field: Option<&str>) -> Result<String> {
    Ok(match id_field {
        Some(name) => match field(path, row, name)? {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        None => format!("line {}", row.line),
    })
}

pub fn row_error(path: &Path, row: &Row, reason: String) -> EvalError {
    EvalError::Row { path: PathBuf::from(path), line: row.line, reason }
}

/// A JSON value's kind, for errors.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_fields_and_name_a_missing_one() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("r.jsonl");
        std::fs::write(&p, "{\"text\": \"good film\", \"label\": 1}\n\n{\"body\": \"x\"}\n")?;
        let rows = read_rows(&p)?;
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
        let t = Template::new("prompt", "{{text}}\nQuestion: positive or negative?\nAnswer:")?;
        assert_eq!(t.render(&p, &rows[0])?, "good film\nQuestion: positive or negative?\nAnswer:");
        let e = t.render(&p, &rows[1]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("r.jsonl:3: prompt:"), "{e}");
        let e = Template::new("prompt", "{{text").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("prompt: the template does not parse"), "{e}");
        std::fs::write(&p, "[1]\n")?;
        assert!(read_rows(&p).err().is_some_and(|e| e.to_string().ends_with("r.jsonl:1: not a JSON object")));
        Ok(())
    }
}
