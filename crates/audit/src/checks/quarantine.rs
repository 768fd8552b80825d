//! `quarantine.jsonl` (every removed row with its raw text) and `audit.json` (counts and the
//! listed findings), both written atomically: a temporary file in the same folder is renamed
//! over the target.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::json;
use tuneguard_data::MAX_RAW_CHARS;

use super::report::{AuditReport, Finding, RowRef};
use crate::error::{AuditError, Result};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |err| AuditError::Io { path: path.to_path_buf(), err }
}

/// Writes `path` through `fill` into a temporary file that is renamed over `path` when complete.
pub(crate) fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    tuneguard_fs::write_atomically(path, 0o644, tuneguard_fs::Existing::Replace, fill, |p, err| AuditError::Io {
        path: p.to_path_buf(),
        err,
    })
}

#[derive(Serialize)]
struct QuarantineLine<'a> {
    file: String,
    line: usize,
    /// The first removing check (in check order) and its reason.
    check: &'a str,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    related: Option<String>,
    /// Every removing check of the row.
    checks: Vec<&'a str>,
    /// The row as text (invalid UTF-8 replaced), cut to `MAX_RAW_CHARS` characters.
    raw: String,
}

/// Writes one JSON line per removed row (`file`, `line`, `check`, `reason`, `related`,
/// `checks`, `raw`), in file and line order, re-reading each data file once for the raw text.
/// Returns the number of rows written.
///
/// # Errors
/// `Io` naming the data file or `path`.
pub fn write_quarantine(path: &Path, report: &AuditReport) -> Result<usize> {
    let mut by_row: BTreeMap<RowRef, Vec<&Finding>> = BTreeMap::new();
    for f in report.findings.iter().filter(|f| f.action.removes_row()) {
        by_row.entry(f.row).or_default().push(f);
    }
    let rows = by_row.len();
    write_atomic(path, |w| {
        let mut pending = by_row.into_iter().peekable();
        while let Some((first, _)) = pending.peek() {
            let file = first.file;
            let source = report.files.get(file).map(|p| p.as_path()).unwrap_or(Path::new(""));
            let reader = std::fs::File::open(source).map(BufReader::new).map_err(io_err(source))?;
            let mut lines = RawLines { reader, line: 0, buf: Vec::new(), path: source };
            while let Some((row, findings)) = pending.next_if(|(r, _)| r.file == file) {
                let raw = lines.get(row.line)?;
                let f = findings[0];
                let entry = QuarantineLine {
                    file: source.display().to_string(),
                    line: row.line,
                    check: f.check.name(),
                    reason: report.reason(f),
                    related: f.related().map(|r| report.locate(r)),
                    checks: findings.iter().map(|f| f.check.name()).collect(),
                    raw,
                };
                serde_json::to_writer(&mut *w, &entry)
                    .map_err(|e| AuditError::Io { path: path.into(), err: e.into() })?;
                w.write_all(b"\n").map_err(io_err(path))?;
            }
        }
        Ok(())
    })?;
    Ok(rows)
}

/// Reads a file's lines forward, as the loader numbers them.
struct RawLines<'a, R> {
    reader: R,
    line: usize,
    buf: Vec<u8>,
    path: &'a Path,
}

impl<R: BufRead> RawLines<'_, R> {
    /// The text of 1-based line `n` (≥ the last one asked for); empty past the end of the file.
    fn get(&mut self, n: usize) -> Result<String> {
        while self.line < n {
            self.buf.clear();
            let read = self.reader.read_until(b'\n', &mut self.buf).map_err(io_err(self.path))?;
            if read == 0 {
                return Ok(String::new());
            }
            self.line += 1;
        }
        let mut bytes = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if n == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let text = String::from_utf8_lossy(bytes);
        Ok(match text.char_indices().nth(MAX_RAW_CHARS) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.into_owned(),
        })
    }
}

/// Writes `audit.json`: `files`, `shapes` (per file: `format`, `source` (`given` or
/// `{"detected": LINE}`), `rows`, `rows_not_fitting`), `rows`, `counts` (per check id: `found`, `action`, `listed`),
/// `length`, `near_index_rows`, `failed` (null or the first failing finding) and `findings`
/// (at most `max_listed_per_check` per check; `quarantine.jsonl` has every removed row).
///
/// # Errors
/// `Io` naming `path`.
pub fn write_audit_json(path: &Path, report: &AuditReport) -> Result<()> {
    let mut listed: BTreeMap<_, usize> = BTreeMap::new();
    let findings: Vec<_> = report
        .findings
        .iter()
        .filter(|f| {
            let n = listed.entry(f.check).or_insert(0);
            *n += 1;
            *n <= report.max_listed_per_check
        })
        .map(|f| {
            json!({
                "file": report.files.get(f.row.file).map(|p| p.display().to_string()),
                "line": f.row.line,
                "check": f.check,
                "action": f.action,
                "reason": report.reason(f),
                "related": f.related().map(|r| report.locate(r)),
            })
        })
        .collect();
    let counts: BTreeMap<&str, _> = report
        .counts
        .iter()
        .map(|(c, n)| {
            (
                c.name(),
                json!({"found": n.found, "action": n.action, "listed": n.listed.min(report.max_listed_per_check)}),
            )
        })
        .collect();
    let doc = json!({
        "files": report.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "shapes": report.shapes,
        "rows": report.rows,
        "counts": counts,
        "length": report.length,
        "near_index_rows": report.near_index_rows,
        "failed": report.failed(),
        "findings": findings,
    });
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, &doc).map_err(|e| AuditError::Io { path: path.into(), err: e.into() })?;
        w.write_all(b"\n").map_err(io_err(path))
    })
}
