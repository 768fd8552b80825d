//! Rejected rows, load statistics and the `rejected.jsonl` report.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::record::RejectKind;

/// Longest `raw` text kept for a rejected row, in characters.
pub const MAX_RAW_CHARS: usize = 2000;

/// One row that was not used, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The data file.
    pub path: PathBuf,
    /// 1-based line number (for CSV: the line where the record starts).
    pub line: usize,
    /// Category, counted in [`LoadStats::rejected_by_kind`].
    pub kind: RejectKind,
    /// Human-readable reason naming the field at fault.
    pub reason: String,
    /// The row as text (invalid UTF-8 replaced by U+FFFD), cut to [`MAX_RAW_CHARS`] characters.
    pub raw: String,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Lossy text of `bytes`, cut to [`MAX_RAW_CHARS`] characters (with `…` when cut).
pub(crate) fn raw_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_RAW_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

/// Counts from loading one or more files. Rows are non-blank lines (JSONL) or records (CSV).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadStats {
    /// Rows read (blank lines excluded).
    pub rows: usize,
    /// Rows turned into examples.
    pub accepted: usize,
    /// Rows rejected, all kinds.
    pub rejected: usize,
    /// Rejected rows per [`RejectKind::name`].
    pub rejected_by_kind: BTreeMap<String, usize>,
    /// Blank lines (JSONL: empty or whitespace-only; CSV: empty), skipped without rejecting.
    pub blank_lines: usize,
    /// Rows (objects) that lack a field the record shape requires: rows of another shape.
    pub shape_misfits: usize,
}

impl LoadStats {
    pub(crate) fn reject(&mut self, kind: RejectKind) {
        self.rejected += 1;
        *self.rejected_by_kind.entry(kind.name().to_string()).or_insert(0) += 1;
    }

    /// Adds another file's counts.
    pub fn merge(&mut self, other: &LoadStats) {
        self.rows += other.rows;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        self.blank_lines += other.blank_lines;
        self.shape_misfits += other.shape_misfits;
        for (k, v) in &other.rejected_by_kind {
            *self.rejected_by_kind.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Rejected rows / rows read (0 when no rows).
    pub fn reject_fraction(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.rejected as f64 / self.rows as f64
        }
    }
}

#[derive(serde::Serialize)]
struct RejectedLine<'a> {
    file: String,
    line: usize,
    kind: &'a str,
    reason: &'a str,
    raw: &'a str,
}

/// Writes `rejected` as JSONL (`{"file", "line", "kind", "reason", "raw"}` per row) to `path`,
/// atomically: a temporary file in the same folder is renamed over `path`.
///
/// # Errors
/// `Io` naming `path` when the folder is not writable.
pub fn write_rejected(path: &Path, rejected: &[Rejected]) -> Result<()> {
    let fill = |w: &mut dyn Write| {
        for r in rejected {
            let line = RejectedLine {
                file: r.path.display().to_string(),
                line: r.line,
                kind: r.kind.name(),
                reason: &r.reason,
                raw: &r.raw,
            };
            serde_json::to_writer(&mut *w, &line).map_err(|e| DataError::io(path, e.into()))?;
            w.write_all(b"\n").map_err(|e| DataError::io(path, e))?;
        }
        Ok(())
    };
    tuneguard_fs::write_atomically(path, 0o644, tuneguard_fs::Existing::Replace, fill, |p, e| DataError::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_text_is_lossy_and_truncated() {
        assert_eq!(raw_text(b"ab\xffc"), "ab\u{fffd}c");
        let long = "é".repeat(MAX_RAW_CHARS + 5);
        let cut = raw_text(long.as_bytes());
        assert_eq!(cut.chars().count(), MAX_RAW_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn write_rejected_round_trips() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("rejected.jsonl");
        let rows = vec![Rejected {
            path: "data.jsonl".into(),
            line: 3,
            kind: RejectKind::InvalidJson,
            reason: "invalid JSON: EOF".into(),
            raw: "{\"a\":".into(),
        }];
        write_rejected(&out, &rows)?;
        let text = std::fs::read_to_string(&out)?;
        let v: serde_json::Value = serde_json::from_str(text.trim_end())?;
        assert_eq!(v["file"], "data.jsonl");
        assert_eq!(v["line"], 3);
        assert_eq!(v["kind"], "invalid_json");
        assert_eq!(v["raw"], "{\"a\":");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "no temporary file left behind");
        Ok(())
    }

    #[test]
    fn stats_merge_and_fraction() {
        let mut a = LoadStats { rows: 4, accepted: 3, ..Default::default() };
        a.reject(RejectKind::InvalidJson);
        let mut b = LoadStats { rows: 4, accepted: 3, ..Default::default() };
        b.reject(RejectKind::InvalidJson);
        a.merge(&b);
        assert_eq!(a.rejected_by_kind.get("invalid_json"), Some(&2));
        assert!((a.reject_fraction() - 0.25).abs() < 1e-12);
    }
}
