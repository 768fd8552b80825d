//! The raw text of accepted rows, read again by line (for quarantine files and reports, which
//! show a row as the file holds it).
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::csv_records::{CsvItem, CsvRecords};
use crate::error::{DataError, Result};
use crate::load::FileKind;
use crate::rejected::raw_text;

/// The raw text of the rows of `path` that start on `lines` (1-based, as in
/// [`crate::LoadedData::lines`]), as a rejected row's [`crate::Rejected::raw`] holds it: for CSV the whole
/// record, for JSONL the line. Lines past the end are absent.
///
/// # Errors
/// `Io` when the file cannot be read; `InvalidOption` for an unknown extension.
pub fn raw_rows(path: &Path, lines: &[usize]) -> Result<std::collections::HashMap<usize, String>> {
    let mut out = std::collections::HashMap::new();
    let wanted: std::collections::BTreeSet<usize> = lines.iter().copied().collect();
    let Some(&last) = wanted.last() else { return Ok(out) };
    let kind = FileKind::from_path(path).ok_or_else(|| DataError::InvalidOption {
        field: "file_kind".into(),
        reason: format!("{}: unknown extension; expected .jsonl, .ndjson, .json or .csv", path.display()),
    })?;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::new(file);
    match kind {
        FileKind::Csv => {
            let mut csv = CsvRecords::new(reader);
            while let Some(item) = csv.next_item().map_err(|e| DataError::io(path, e))? {
                let (line, raw) = match item {
                    CsvItem::Record { line, raw, .. } | CsvItem::Malformed { line, raw, .. } => (line, raw),
                    CsvItem::Blank { line } => (line, Vec::new()),
                };
                if wanted.contains(&line) {
                    out.insert(line, raw_text(&raw));
                }
                if line >= last {
                    break;
                }
            }
        }
        FileKind::Jsonl => {
            let mut buf = Vec::new();
            for line in 1..=last {
                buf.clear();
                if reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))? == 0 {
                    break;
                }
                if wanted.contains(&line) {
                    let mut bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
                    bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
                    if line == 1 {
                        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                    }
                    out.insert(line, raw_text(bytes));
                }
            }
        }
    }
    Ok(out)
}
