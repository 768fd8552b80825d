//! Command-line overrides of recipe keys (`section.key=value`, the value written as in TOML).
use super::{RecipeError, Result};

/// Sets `a.b.c = value` in a TOML table, creating sections as needed. The value is parsed as
/// TOML; a value that does not parse (e.g. `runs/x`) is taken as a string.
pub(super) fn set_override(doc: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| RecipeError::Invalid {
        key: spec.to_string(),
        reason: "an override is written section.key=value".into(),
    })?;
    let key = key.trim();
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_string())),
        // A number TOML cannot hold (beyond a 64-bit integer or a finite float) is not a string.
        Err(_) if looks_numeric(raw.trim()) => {
            return Err(RecipeError::Invalid {
                key: key.to_string(),
                reason: format!("{} is out of range (integers fit in 64 bits, floats must be finite)", raw.trim()),
            })
        }
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let (last, sections) = parts
        .split_last()
        .filter(|(l, _)| !l.is_empty())
        .ok_or_else(|| RecipeError::Invalid { key: key.to_string(), reason: "empty key".into() })?;
    let mut table = doc;
    for s in sections {
        let entry = table.entry(s.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| RecipeError::Invalid { key: key.to_string(), reason: format!("`{s}` is not a section") })?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

/// Whether `s` is written as a number (digits with an optional sign, point and exponent).
fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
}
