//! `quarantine.jsonl` (every removed row with its raw text) and `audit.json` (counts and the
//! listed findings), each written atomically: a temporary file in the same folder is renamed
//! over the target.
//!
//! The two are one result: `audit.json` counts the rows that `quarantine.jsonl` lists, and a
//! reader (the report, a person) takes them together. [`write_audit_outputs`] writes them so that
//! an `audit.json` in the folder always sits beside its own `quarantine.jsonl`:
//! 1. both files are written in full under temporary names in the folder and synced (the step
//!    that fails on a full disk or an unreadable data file); on any error the temporary files
//!    are removed and the old pair is left as it was;
//! 2. the old `audit.json` is removed, then `quarantine.jsonl` is renamed into place, then
//!    `audit.json`, and the folder is synced.
//!
//! Renames in one folder do not fail for lack of space, but a crash can come between them: then
//! the folder holds a quarantine file and no `audit.json` (no audit result, rather than the new
//! quarantine beside the old counts). `audit.json` is the commit record of the pair.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use tuneguard_data::MAX_RAW_CHARS;

use super::report::{AuditReport, Finding, RowRef};
use crate::error::{AuditError, Result};

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |err| AuditError::Io { path: path.to_path_buf(), err }
}

fn fs_err(path: &Path, err: std::io::Error) -> AuditError {
    AuditError::Io { path: path.to_path_buf(), err }
}

/// Writes `path` through `fill` into a temporary file that is renamed over `path` when complete.
pub(crate) fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    tuneguard_fs::write_atomically(path, 0o644, tuneguard_fs::Existing::Replace, fill, fs_err)
}

/// A file of a set written by [`write_together`], and what fills it.
type Part<'a> = (PathBuf, Box<dyn FnOnce(&mut dyn Write) -> Result<()> + 'a>);

/// Stages every part, then removes the last part's old file and commits the parts in order (see
/// the module docs): the last part is the commit record of the set.
fn write_together(dir: &Path, parts: Vec<Part<'_>>) -> Result<()> {
    let mut staged = Vec::with_capacity(parts.len());
    for (path, fill) in parts {
        staged.push(tuneguard_fs::stage(&path, 0o644, fill, fs_err)?);
    }
    if let Some(record) = staged.last() {
        match std::fs::remove_file(record.path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fs_err(record.path(), e)),
            _ => {}
        }
    }
    for s in staged {
        s.commit(tuneguard_fs::Existing::Replace, fs_err)?;
    }
    tuneguard_fs::sync_dir(dir).map_err(|e| fs_err(dir, e))
}

/// Writes `dir/quarantine.jsonl` ([`write_quarantine`]) and `dir/audit.json`
/// ([`write_audit_json`]) as one pair: both or, on an error, neither replaces the old pair (see
/// the module docs). Returns the number of quarantined rows written.
///
/// # Errors
/// `Io` naming a data file (re-read for the raw text), one of the two files or `dir`.
pub fn write_audit_outputs(dir: &Path, report: &AuditReport) -> Result<usize> {
    let quarantine = dir.join("quarantine.jsonl");
    let audit_json = dir.join("audit.json");
    let mut rows = 0;
    let parts: Vec<Part<'_>> = vec![
        (quarantine.clone(), Box::new(|w| fill_quarantine(&quarantine, report, w).map(|n| rows = n))),
        (audit_json.clone(), Box::new(|w| fill_audit_json(&audit_json, report, w))),
    ];
    write_together(dir, parts)?;
    Ok(rows)
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
    let mut rows = 0;
    write_atomic(path, |w| fill_quarantine(path, report, w).map(|n| rows = n))?;
    Ok(rows)
}

fn fill_quarantine(path: &Path, report: &AuditReport, w: &mut dyn Write) -> Result<usize> {
    let mut by_row: BTreeMap<RowRef, Vec<&Finding>> = BTreeMap::new();
    for f in report.findings.iter().filter(|f| f.action.removes_row()) {
        by_row.entry(f.row).or_default().push(f);
    }
    let rows = by_row.len();
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
            serde_json::to_writer(&mut *w, &entry).map_err(|e| AuditError::Io { path: path.into(), err: e.into() })?;
            w.write_all(b"\n").map_err(io_err(path))?;
        }
    }
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
    write_atomic(path, |w| fill_audit_json(path, report, w))
}

fn fill_audit_json(path: &Path, report: &AuditReport, w: &mut dyn Write) -> Result<()> {
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
    serde_json::to_writer_pretty(&mut *w, &doc).map_err(|e| AuditError::Io { path: path.into(), err: e.into() })?;
    w.write_all(b"\n").map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(text: &'static str) -> Box<dyn FnOnce(&mut dyn Write) -> Result<()>> {
        Box::new(move |w| w.write_all(text.as_bytes()).map_err(|e| fs_err(Path::new("x"), e)))
    }

    fn failing() -> Box<dyn FnOnce(&mut dyn Write) -> Result<()>> {
        Box::new(|w| {
            w.write_all(b"half").map_err(|e| fs_err(Path::new("x"), e))?;
            Err(fs_err(Path::new("x"), std::io::Error::other("No space left on device")))
        })
    }

    fn listing(dir: &Path) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap_or_default())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_failed_part_leaves_the_old_pair_and_no_temporary_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| fs_err(Path::new("tmp"), e))?;
        let (q, a) = (dir.path().join("quarantine.jsonl"), dir.path().join("audit.json"));
        write_together(dir.path(), vec![(q.clone(), fill("old q")), (a.clone(), fill("old a"))])?;
        let old = listing(dir.path());
        assert_eq!(old, [("audit.json".into(), "old a".into()), ("quarantine.jsonl".into(), "old q".into())]);
        for parts in [
            vec![(q.clone(), failing()), (a.clone(), fill("new a"))],
            vec![(q.clone(), fill("new q")), (a.clone(), failing())],
        ] {
            assert!(write_together(dir.path(), parts).is_err());
            assert_eq!(listing(dir.path()), old);
        }
        write_together(dir.path(), vec![(q, fill("new q")), (a, fill("new a"))])?;
        assert_eq!(
            listing(dir.path()),
            [("audit.json".into(), "new a".into()), ("quarantine.jsonl".into(), "new q".into())]
        );
        Ok(())
    }
}
