//! The record shape a file is read with, where it came from, and how many rows fit it.
use std::path::PathBuf;

use crate::format::DataFormat;

/// Where the record shape of a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShapeSource {
    /// Given (tuneguard-data's `LoadOptions::format`: a recipe's `data.format`, `audit --format`).
    Given,
    /// Detected from the keys of the first object row, on this line ([`DataFormat::auto_detect`]).
    Detected(usize),
    /// No row fitted a known shape (or none was read).
    Unknown,
}

/// The record shape a file was read with, and how many rows do not fit it. The shape is
/// guessed from the first object row unless it is given, so a file whose first row has another
/// shape than the rest rejects the rest ("missing field"); [`ShapeReport::warning`] says so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShapeReport {
    pub file: PathBuf,
    /// `None` when no shape was found.
    pub format: Option<DataFormat>,
    pub source: ShapeSource,
    /// Rows read, and rows that lack a field the shape requires.
    pub rows: usize,
    pub rows_not_fitting: usize,
}

impl ShapeReport {
    /// `FILE: instruction rows (fields instruction, context, response), shape detected from line 1`.
    pub fn describe(&self) -> String {
        let Some(f) = &self.format else {
            return format!("{}: no row has a known shape", self.file.display());
        };
        let how = match self.source {
            ShapeSource::Detected(line) => format!("shape detected from line {line}"),
            ShapeSource::Given => "shape as configured".to_string(),
            ShapeSource::Unknown => "shape unknown".to_string(),
        };
        format!("{}: {} rows (fields {}), {how}", self.file.display(), f.kind(), f.fields().join(", "))
    }

    /// A warning when more than half the rows do not fit a detected shape: the guess from the
    /// first row was probably wrong. `set_it` says how to set the shape (`data.format`...).
    pub fn warning(&self, set_it: &str) -> Option<String> {
        let (Some(f), ShapeSource::Detected(line)) = (&self.format, self.source) else { return None };
        if 2 * self.rows_not_fitting <= self.rows {
            return None;
        }
        Some(format!(
            "{}: {} of {} rows ({:.1}%) do not fit the {} shape detected from line {line} (they lack its fields {}) \
             and are rejected; if the file holds another shape, set it with {set_it}",
            self.file.display(),
            self.rows_not_fitting,
            self.rows,
            100.0 * self.rows_not_fitting as f64 / self.rows.max(1) as f64,
            f.kind(),
            f.required_fields().join(", "),
        ))
    }
}
