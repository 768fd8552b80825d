//! What an audit found: counts per check, the findings, the rows that pass.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use tuneguard_data::{Example, LoadStats, ShapeReport};

use super::config::Actions;
use super::duplicates::SharedKind;
use super::{Action, CheckId};

/// A row: index into [`AuditReport::files`] and 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RowRef {
    pub file: usize,
    pub line: usize,
}

/// What a finding says, kept compact (many findings may be held at once).
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A ready reason (schema, control characters, PII).
    Text(String),
    /// Same normalized text as `of`.
    Exact { of: RowRef },
    /// Same normalized prompt as `of`, different answer.
    Conflict { of: RowRef },
    /// Estimated Jaccard with `of`: of the rows after their common shared part (`shared`), or
    /// of the whole rows.
    Near { of: RowRef, jaccard: f32, shared: Option<SharedKind> },
    /// Length (in [`LengthSummary::unit`]) and its modified z-score.
    Length { len: u32, z: f32 },
}

/// One check that fired on one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub row: RowRef,
    pub check: CheckId,
    pub action: Action,
    pub detail: Detail,
}

impl Finding {
    /// The earlier row a duplicate finding names.
    pub fn related(&self) -> Option<RowRef> {
        match self.detail {
            Detail::Exact { of } | Detail::Conflict { of } | Detail::Near { of, .. } => Some(of),
            _ => None,
        }
    }
}

/// Per check: rows found, the action taken, and how many findings the report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckCounts {
    pub found: usize,
    pub action: Action,
    pub listed: usize,
}

/// Row totals. `read = clean + warned + quarantined`; rows that pass = clean + warned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    /// Non-blank rows read.
    pub read: usize,
    /// Rows with no finding.
    pub clean: usize,
    /// Rows kept with at least one warning.
    pub warned: usize,
    /// Rows removed (a `quarantine` or `fail` finding).
    pub quarantined: usize,
    /// Blank lines skipped (not rows).
    pub blank_lines: usize,
}

/// The length distribution the outlier check used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LengthSummary {
    /// `tokens` or `chars`.
    pub unit: &'static str,
    /// Median length, in `unit`.
    pub median: f64,
    /// Length above which rows are outliers (modified z of the log length > `z`), in `unit`.
    pub upper: f64,
    /// Length below which rows are outliers, in `unit`.
    pub lower: f64,
    pub z: f64,
}

/// A row that passed, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedExample {
    pub row: RowRef,
    pub example: Example,
}

/// The result of [`super::audit_files`].
#[derive(Debug, Clone)]
pub struct AuditReport {
    pub files: Vec<PathBuf>,
    /// The resolved action of every check.
    pub actions: Actions,
    /// Every check, also those that found nothing.
    pub counts: BTreeMap<CheckId, CheckCounts>,
    pub rows: RowCounts,
    /// The loader's counts over all files.
    pub load: LoadStats,
    /// Per file: the record shape its rows were read with (given or detected, and from which
    /// line) and how many rows do not fit it.
    pub shapes: Vec<ShapeReport>,
    /// Sorted by row, then check. All findings that remove a row are here; of `warn` checks the
    /// first `max_listed_per_check` per check.
    pub findings: Vec<Finding>,
    /// The rows that pass, in file order (only when asked for with `AuditOptions::keep_clean`).
    pub clean: Vec<SourcedExample>,
    /// `None` when the length check was off or had too few rows.
    pub length: Option<LengthSummary>,
    /// Rows held in the near-duplicate index (its memory is about 2·num_perm + 40 bytes each, and
    /// num_perm + 50 more for rows with a shared part, whose rest is indexed too).
    pub near_index_rows: usize,
    /// Cap on listed `warn` findings per check, also used for audit.json.
    pub max_listed_per_check: usize,
}

impl AuditReport {
    /// `file:line` of a row.
    pub fn locate(&self, row: RowRef) -> String {
        let file = self.files.get(row.file).map_or_else(|| "?".into(), |p| p.display().to_string());
        format!("{file}:{}", row.line)
    }

    /// The human-readable reason of a finding.
    pub fn reason(&self, f: &Finding) -> String {
        match &f.detail {
            Detail::Text(s) => s.clone(),
            Detail::Exact { of } => format!("same text as {} (after normalization)", self.locate(*of)),
            Detail::Conflict { of } => format!("same prompt as {} but a different answer", self.locate(*of)),
            Detail::Near { of, jaccard, shared: None } => {
                format!("near duplicate of {} (estimated Jaccard {jaccard:.2})", self.locate(*of))
            }
            Detail::Near { of, jaccard, shared: Some(kind) } => format!(
                "near duplicate of {}: same {}, the rest has estimated Jaccard {jaccard:.2}",
                self.locate(*of),
                kind.name()
            ),
            Detail::Length { len, z } => {
                let (unit, median) = self.length.map_or(("chars", 0.0), |l| (l.unit, l.median));
                format!("length {len} {unit} is an outlier (modified z {z:.2}; median {median:.0} {unit})")
            }
        }
    }

    /// `file:line: check: reason`.
    pub fn describe(&self, f: &Finding) -> String {
        format!("{}: {}: {}", self.locate(f.row), f.check, self.reason(f))
    }

    /// The first finding whose check has action `fail`, described; `None` when the data may be
    /// used.
    pub fn failed(&self) -> Option<String> {
        self.findings.iter().find(|f| f.action == Action::Fail).map(|f| self.describe(f))
    }

    /// Rows that pass (clean + warned).
    pub fn kept_rows(&self) -> usize {
        self.rows.clean + self.rows.warned
    }
}
