//! Reading JSONL and CSV data files into [`Example`]s. Bad rows are rejected with file, line and
//! reason (see [`Rejected`]) and the load goes on; only unreadable files, an undetectable format,
//! an empty result or too many rejects are errors.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::csv_records::{CsvItem, CsvRecords};
use crate::error::{DataError, Result};
use crate::format::DataFormat;
pub use crate::raw_rows::raw_rows;
use crate::record::{to_example_parts, Example, Reject, RejectKind};
use crate::rejected::{raw_text, LoadStats, Rejected};
use crate::strict_json::{self, JsonError};
pub use tuneguard_records::{ShapeReport, ShapeSource};

/// File syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// One JSON object per line. Blank lines are skipped (and counted).
    Jsonl,
    /// Comma-separated values with a header row naming the fields.
    Csv,
}

impl FileKind {
    /// From the extension: `.jsonl`, `.ndjson`, `.json` → JSONL; `.csv` → CSV.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(FileKind::Jsonl),
            "csv" => Some(FileKind::Csv),
            _ => None,
        }
    }
}

/// How to load a file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// Record shape; `None` detects it from the first record that fits ([`DataFormat::auto_detect`]).
    pub format: Option<DataFormat>,
    /// File syntax; `None` picks it from the extension.
    pub file_kind: Option<FileKind>,
    /// Largest tolerated fraction (0–1) of rejected rows among rows read; `None` tolerates any
    /// number as long as one example is accepted.
    pub max_reject_fraction: Option<f64>,
    /// Return the data even when nothing was accepted or too much was rejected, so the caller
    /// can report the rejected rows first and then call [`LoadedData::check`].
    pub keep_empty: bool,
}

/// The result of loading one file.
#[derive(Debug, Clone)]
pub struct LoadedData {
    /// The file.
    pub path: PathBuf,
    /// The format used (given or detected).
    pub format: DataFormat,
    /// Where `format` came from.
    pub shape_source: ShapeSource,
    /// Accepted examples, in file order.
    pub examples: Vec<Example>,
    /// 1-based source line of each example (same length as `examples`).
    pub lines: Vec<usize>,
    /// Per example, the byte length of the instruction at the start of its user turn
    /// (instruction-format rows; `None` otherwise), for [`crate::parts::split_shared`].
    pub instruction_lens: Vec<Option<usize>>,
    /// Rejected rows, in file order.
    pub rejected: Vec<Rejected>,
    /// Counts.
    pub stats: LoadStats,
}

/// Loads `path` (see [`load_reader`]).
///
/// # Errors
/// `Io` when the file cannot be opened or read; `InvalidOption` when the syntax cannot be told
/// from the extension; otherwise as [`load_reader`].
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<LoadedData> {
    let kind = match opts.file_kind.or_else(|| FileKind::from_path(path)) {
        Some(k) => k,
        None => {
            return Err(DataError::InvalidOption {
                field: "file_kind".into(),
                reason: format!("{}: unknown extension; expected .jsonl, .ndjson, .json or .csv", path.display()),
            })
        }
    };
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    load_reader(path, BufReader::new(file), kind, opts)
}

/// Loads records from `reader`; `path` is used for reports only.
///
/// # Errors
/// `Io` on read errors; `InvalidOption` for a `max_reject_fraction` outside 0–1;
/// `UnknownFormat` when no record fits a known shape; `InvalidRecord` for a CSV header that is
/// not UTF-8 or lacks a required column; `EmptyDataset` when nothing is accepted;
/// `TooManyRejected` above `max_reject_fraction`.
pub fn load_reader<R: BufRead>(path: &Path, reader: R, kind: FileKind, opts: &LoadOptions) -> Result<LoadedData> {
    if let Some(max) = opts.max_reject_fraction {
        if !(0.0..=1.0).contains(&max) {
            return Err(DataError::InvalidOption {
                field: "max_reject_fraction".into(),
                reason: format!("{max} is not a fraction between 0 and 1"),
            });
        }
    }
    let mut sink = Sink::new(path, opts.format.clone());
    match kind {
        FileKind::Jsonl => read_jsonl(&mut sink, reader)?,
        FileKind::Csv => read_csv(&mut sink, reader)?,
    }
    sink.finish(opts.max_reject_fraction, opts.keep_empty)
}

/// Collects examples and rejects while reading.
struct Sink {
    path: PathBuf,
    format: Option<DataFormat>,
    shape_source: ShapeSource,
    first_keys: Option<Vec<String>>,
    examples: Vec<Example>,
    lines: Vec<usize>,
    instruction_lens: Vec<Option<usize>>,
    rejected: Vec<Rejected>,
    stats: LoadStats,
}

impl Sink {
    fn new(path: &Path, format: Option<DataFormat>) -> Self {
        Sink {
            path: path.to_path_buf(),
            shape_source: if format.is_some() { ShapeSource::Given } else { ShapeSource::Unknown },
            format,
            first_keys: None,
            examples: Vec::new(),
            lines: Vec::new(),
            instruction_lens: Vec::new(),
            rejected: Vec::new(),
            stats: LoadStats::default(),
        }
    }

    fn reject(&mut self, line: usize, raw: &[u8], (kind, reason): Reject) {
        tracing::debug!(path = %self.path.display(), line, %reason, "rejected row");
        self.stats.reject(kind);
        self.rejected.push(Rejected { path: self.path.clone(), line, kind, reason, raw: raw_text(raw) });
    }

    /// One parsed record: detect the format if needed, convert, and keep or reject.
    fn record(&mut self, line: usize, raw: &[u8], obj: &Map<String, Value>, messages_from_string: bool) {
        if self.first_keys.is_none() {
            self.first_keys = Some(obj.keys().cloned().collect());
        }
        if self.format.is_none() {
            self.format = DataFormat::auto_detect(obj);
            if let Some(f) = &self.format {
                tracing::debug!(path = %self.path.display(), line, format = f.kind(), "detected data format");
                self.shape_source = ShapeSource::Detected(line);
            }
        }
        let Some(format) = &self.format else {
            let keys: Vec<&String> = obj.keys().collect();
            return self.reject(line, raw, (RejectKind::UnknownFormat, format!("no known fields in {keys:?}")));
        };
        if format.required_fields().iter().any(|f| obj.get(*f).is_none_or(Value::is_null)) {
            self.stats.shape_misfits += 1;
        }
        match to_example_parts(obj, format, messages_from_string) {
            Ok((ex, instruction_len)) => {
                self.stats.accepted += 1;
                self.examples.push(ex);
                self.lines.push(line);
                self.instruction_lens.push(instruction_len);
            }
            Err(r) => self.reject(line, raw, r),
        }
    }

    fn finish(self, max_reject_fraction: Option<f64>, keep_empty: bool) -> Result<LoadedData> {
        let format = match self.format {
            Some(f) => f,
            None => match self.first_keys {
                Some(keys) => {
                    return Err(DataError::UnknownFormat {
                        path: self.path,
                        reason: format!("no known fields in the first record's keys {keys:?}; set the format"),
                    })
                }
                // No row parsed at all; with `keep_empty` the caller still gets the rejects.
                None if keep_empty => DataFormat::text(),
                None => {
                    return Err(DataError::EmptyDataset {
                        path: self.path,
                        rows: self.stats.rows,
                        rejected: self.stats.rejected,
                    })
                }
            },
        };
        let data = LoadedData {
            path: self.path,
            format,
            shape_source: self.shape_source,
            examples: self.examples,
            lines: self.lines,
            instruction_lens: self.instruction_lens,
            rejected: self.rejected,
            stats: self.stats,
        };
        if !keep_empty {
            data.check(max_reject_fraction)?;
        }
        Ok(data)
    }
}

impl LoadedData {
    /// Keeps the examples whose line `keep` accepts, with their lines and instruction lengths.
    pub fn retain_lines(&mut self, keep: impl Fn(usize) -> bool) {
        let flags: Vec<bool> = self.lines.iter().map(|&l| keep(l)).collect();
        retain_flagged(&mut self.examples, &flags);
        retain_flagged(&mut self.instruction_lens, &flags);
        retain_flagged(&mut self.lines, &flags);
    }

    /// The shape the rows were read with and how many did not fit it.
    pub fn shape(&self) -> ShapeReport {
        ShapeReport {
            file: self.path.clone(),
            format: (self.shape_source != ShapeSource::Unknown).then(|| self.format.clone()),
            source: self.shape_source,
            rows: self.stats.rows,
            rows_not_fitting: self.stats.shape_misfits,
        }
    }

    /// Fails when no example was accepted, or more than `max_reject_fraction` of the rows were
    /// rejected (what [`load_file`] checks unless `LoadOptions::keep_empty` is set).
    ///
    /// # Errors
    /// `EmptyDataset`, `TooManyRejected`.
    pub fn check(&self, max_reject_fraction: Option<f64>) -> Result<()> {
        if self.examples.is_empty() {
            return Err(DataError::EmptyDataset {
                path: self.path.clone(),
                rows: self.stats.rows,
                rejected: self.stats.rejected,
            });
        }
        let fraction = self.stats.reject_fraction();
        if let Some(max) = max_reject_fraction {
            if fraction > max {
                return Err(DataError::TooManyRejected {
                    path: self.path.clone(),
                    rows: self.stats.rows,
                    rejected: self.stats.rejected,
                    fraction,
                    max,
                });
            }
        }
        Ok(())
    }
}

fn retain_flagged<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    v.retain(|_| flags.next().copied().unwrap_or(true));
}

/// Reads JSONL line by line as bytes, so a non-UTF-8 line is rejected rather than fatal. An
/// object that repeats a key is rejected too ([`crate::strict_json`]).
fn read_jsonl<R: BufRead>(sink: &mut Sink, mut reader: R) -> Result<()> {
    let mut buf = Vec::new();
    let mut line = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| DataError::io(&sink.path, e))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let mut bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            sink.stats.blank_lines += 1;
            continue;
        }
        sink.stats.rows += 1;
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("not valid UTF-8 (bad byte at column {})", e.valid_up_to() + 1);
                sink.reject(line, bytes, (RejectKind::InvalidUtf8, reason));
                continue;
            }
        };
        match strict_json::parse(text, "") {
            Ok(Value::Object(obj)) => sink.record(line, bytes, &obj, false),
            Ok(other) => {
                let reason = format!("expected a JSON object, found {}", crate::record::type_name(&other));
                sink.reject(line, bytes, (RejectKind::NotAnObject, reason));
            }
            Err(e @ JsonError::Syntax(_)) => sink.reject(line, bytes, (RejectKind::InvalidJson, e.reason())),
            Err(e @ JsonError::DuplicateKey { .. }) => sink.reject(line, bytes, (RejectKind::DuplicateKey, e.reason())),
        }
    }
}

/// Reads CSV with a header row (see [`crate::csv_records`] for the syntax and why it is strict).
/// Every cell is a string; a `messages` cell holds a JSON list.
fn read_csv<R: BufRead>(sink: &mut Sink, reader: R) -> Result<()> {
    let mut csv = CsvRecords::new(reader);
    let io = |sink: &Sink, e: std::io::Error| DataError::io(&sink.path, e);
    let header_err = |sink: &Sink, reason: String| DataError::InvalidRecord {
        path: sink.path.clone(),
        line: 1,
        field: "header".into(),
        reason,
    };
    let mut names = Vec::new();
    loop {
        match csv.next_item().map_err(|e| io(sink, e))? {
            None => break,
            Some(CsvItem::Blank { .. }) => continue,
            Some(CsvItem::Malformed { reason, .. }) => return Err(header_err(sink, reason)),
            Some(CsvItem::Record { fields, .. }) => {
                for (i, h) in fields.iter().enumerate() {
                    let name = std::str::from_utf8(h)
                        .map_err(|_| header_err(sink, format!("column {} is not valid UTF-8", i + 1)))?;
                    let name = name.trim().to_string();
                    if let Some(j) = names.iter().position(|n| *n == name) {
                        // Each row would keep only the last of the two cells.
                        return Err(DataError::InvalidRecord {
                            path: sink.path.clone(),
                            line: 1,
                            field: name,
                            reason: format!("the CSV header names this column twice (columns {} and {})", j + 1, i + 1),
                        });
                    }
                    names.push(name);
                }
                break;
            }
        }
    }
    if let Some(format) = &sink.format {
        for field in format.required_fields() {
            if !names.iter().any(|n| n == field) {
                return Err(DataError::InvalidRecord {
                    path: sink.path.clone(),
                    line: 1,
                    field: field.to_string(),
                    reason: format!("column missing from the CSV header {names:?}"),
                });
            }
        }
    }
    loop {
        match csv.next_item().map_err(|e| io(sink, e))? {
            None => return Ok(()),
            Some(CsvItem::Blank { .. }) => sink.stats.blank_lines += 1,
            Some(CsvItem::Malformed { line, raw, reason }) => {
                sink.stats.rows += 1;
                sink.reject(line, &raw, (RejectKind::InvalidCsv, reason));
            }
            Some(CsvItem::Record { line, raw, fields }) => csv_row(sink, &names, line, &raw, &fields),
        }
    }
}

fn csv_row(sink: &mut Sink, names: &[String], line: usize, raw: &[u8], fields: &[Vec<u8>]) {
    sink.stats.rows += 1;
    if fields.len() != names.len() {
        let reason = format!("expected {} fields (as in the header), found {}", names.len(), fields.len());
        return sink.reject(line, raw, (RejectKind::FieldCount, reason));
    }
    let mut obj = Map::new();
    for (name, cell) in names.iter().zip(fields) {
        match std::str::from_utf8(cell) {
            Ok(s) => {
                obj.insert(name.clone(), Value::String(s.to_string()));
            }
            Err(_) => {
                let reason = format!("field `{name}` is not valid UTF-8");
                return sink.reject(line, raw, (RejectKind::InvalidUtf8, reason));
            }
        }
    }
    sink.record(line, raw, &obj, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(bytes: &[u8], kind: FileKind) -> Result<LoadedData> {
        load_reader(Path::new("t"), std::io::Cursor::new(bytes.to_vec()), kind, &LoadOptions::default())
    }

    #[test]
    fn jsonl_bom_crlf_and_missing_final_newline() -> Result<()> {
        let data = load(b"\xEF\xBB\xBF{\"text\":\"a\"}\r\n\r\n{\"text\":\"b\"}", FileKind::Jsonl)?;
        assert_eq!(data.examples, [Example::Text("a".into()), Example::Text("b".into())]);
        assert_eq!(data.lines, [1, 3]);
        assert_eq!((data.stats.rows, data.stats.blank_lines), (2, 1));
        Ok(())
    }

    #[test]
    fn csv_non_utf8_cell_is_rejected() -> Result<()> {
        let data = load(b"text,id\nok,1\ncaf\xe9,2\n", FileKind::Csv)?;
        assert_eq!(data.lines, [2]);
        assert_eq!(data.rejected.len(), 1);
        assert_eq!((data.rejected[0].line, data.rejected[0].kind), (3, RejectKind::InvalidUtf8));
        assert_eq!(data.rejected[0].reason, "field `text` is not valid UTF-8");
        assert_eq!(data.rejected[0].raw, "caf\u{fffd},2");
        Ok(())
    }

    /// Each row would keep only the last of two same-named cells.
    #[test]
    fn csv_header_naming_a_column_twice_is_an_error() {
        match load(b"instruction,response,response\nq,a,IGNORE\n", FileKind::Csv) {
            Err(DataError::InvalidRecord { line: 1, field, reason, .. }) => {
                assert_eq!(field, "response");
                assert_eq!(reason, "the CSV header names this column twice (columns 2 and 3)");
            }
            other => panic!("expected InvalidRecord, got {other:?}"),
        }
    }

    #[test]
    fn raw_rows_are_the_loaders_rows() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| DataError::io("tempdir", e))?;
        let csv = dir.path().join("d.csv");
        std::fs::write(&csv, "a,b\nx,\"two\nlines\"\ny,z\n").map_err(|e| DataError::io(&csv, e))?;
        let got = raw_rows(&csv, &[2, 4, 9])?;
        assert_eq!(got.len(), 2);
        assert_eq!((got[&2].as_str(), got[&4].as_str()), ("x,\"two\nlines\"", "y,z"));
        let jsonl = dir.path().join("d.jsonl");
        std::fs::write(&jsonl, "\u{feff}{\"text\": \"a\"}\r\n\n{\"text\": \"b\"}")
            .map_err(|e| DataError::io(&jsonl, e))?;
        let got = raw_rows(&jsonl, &[1, 3])?;
        assert_eq!((got[&1].as_str(), got[&3].as_str()), ("{\"text\": \"a\"}", "{\"text\": \"b\"}"));
        Ok(())
    }

    #[test]
    fn bad_options_are_errors() {
        let opts = LoadOptions { max_reject_fraction: Some(1.5), ..Default::default() };
        let r = load_reader(Path::new("t"), std::io::Cursor::new(b"{}".to_vec()), FileKind::Jsonl, &opts);
        assert!(matches!(r, Err(DataError::InvalidOption { field, .. }) if field == "max_reject_fraction"));
        assert!(matches!(
            load_file(Path::new("x.parquet"), &LoadOptions::default()),
            Err(DataError::InvalidOption { .. })
        ));
    }
}
