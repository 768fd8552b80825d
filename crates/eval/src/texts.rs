//! The rows of text an evaluation reads: a JSONL file (one object per line, the text in a
//! string field, `text` by default) or a plain-text file (its whole content as one row).
//! A line that is not a JSON object with that string field stops the evaluation with its
//! file and line: a score computed on part of a file silently would not be the file's score.
use std::path::Path;

use crate::rows::{field as field_of, kind, read_rows, row_error};
use crate::{EvalError, Result};

/// The rows of `path`, in order. Blank JSONL lines are skipped (they hold no row).
///
/// # Errors
/// `Io`; `Row` (file:line) for a line that is not a JSON object with a string `field`;
/// `Empty` when the file holds no row or only empty text.
pub fn read_texts(path: &Path, field: &str) -> Result<Vec<String>> {
    let is_jsonl = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"));
    let rows = if is_jsonl {
        jsonl_rows(path, field)?
    } else {
        vec![std::fs::read_to_string(path).map_err(|err| EvalError::Io { path: path.to_path_buf(), err })?]
    };
    if rows.is_empty() {
        return Err(EvalError::Empty { path: path.to_path_buf(), reason: "the file has no row".into() });
    }
    if rows.iter().all(|r| r.trim().is_empty()) {
        return Err(EvalError::Empty { path: path.to_path_buf(), reason: format!("every `{field}` is empty") });
    }
    Ok(rows)
}

fn jsonl_rows(path: &Path, field: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in read_rows(path)? {
        match field_of(path, &row, field)? {
            serde_json::Value::String(s) => out.push(s.clone()),
            other => return Err(row_error(path, &row, format!("`{field}` is not a string but {}", kind(other)))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> std::io::Result<(tempfile::TempDir, std::path::PathBuf)> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok((dir, p))
    }

    #[test]
    fn rows_and_errors_with_their_line() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let (_d, p) = file("a.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"x\": 1}\n")?;
        assert_eq!(read_texts(&p, "text")?, ["one", "two"]);
        let (_d, p) = file("b.txt", "all of it\n\nstays")?;
        assert_eq!(read_texts(&p, "text")?, ["all of it\n\nstays"]);
        let cases = [
            ("{\"text\": \"ok\"}\n{\"text\": 3}\n", "b.jsonl:2: `text` is not a string but a number"),
            ("{\"text\": \"ok\"}\n{\"body\": \"x\"}\n", "b.jsonl:2: no `text` field"),
            ("[1]\n", "b.jsonl:1: not a JSON object"),
            ("{\"text\": \"ok\"\n", "b.jsonl:1: invalid JSON"),
            ("\n\n", "no text to evaluate (the file has no row)"),
            ("{\"text\": \" \"}\n", "no text to evaluate (every `text` is empty)"),
        ];
        for (text, want) in cases {
            let (_d, p) = file("b.jsonl", text)?;
            let e = read_texts(&p, "text").err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = read_texts(Path::new("/nonexistent/x.jsonl"), "text").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("/nonexistent/x.jsonl: ")));
        Ok(())
    }
}
