//! tuneguard-records: the records of a run folder as types, one definition for the writer
//! (tuneguard-run writes them) and the readers (tuneguard-report reads them back).
//!
//! - [`METRICS_FILE`] (`metrics.jsonl`): one [`StepMetrics`] line per optimizer step and one
//!   [`EvalRecord`] line per evaluation; a reader takes a line with [`MetricsLine::parse`];
//! - [`SUMMARY_FILE`] (`summary.json`): the [`Summary`], with the [`DataSummary`], the
//!   [`EvalMetrics`] of the written weights, the [`EarlyStoppingSummary`], [`Alarm`]s, lints
//!   and the [`RunRecord`] (also `[run]` of `config.toml`).
//!
//! Every record takes a [`Presence`]: [`Written`] (the default) holds every field as the
//! writer writes it, [`Partial`] holds each as an `Option` and keeps unknown keys, for reading
//! run folders of any version. Field order is the order written; units are in the field docs.
//!
//! The crate is a leaf (serde and serde_json only): the plain-data types the summary embeds
//! live here and their crates re-export them under their old paths ([`TokenizeStats`],
//! [`ShapeReport`], [`ShapeSource`], [`DataFormat`] and [`SharedKind`] from tuneguard-data,
//! [`EvalMetrics`] from tuneguard-train, [`Lint`] and [`Severity`] from tuneguard-audit). Metric
//! names are [`Metric`], the recipe's `early_stopping.metric`.
mod data;
pub mod format;
mod line;
mod lint;
mod metric;
mod presence;
mod shape;
mod shared;
mod summary;

pub use data::{DataSummary, GeneralData, LeakReport, TokenizeStats};
pub use format::DataFormat;
pub use line::{EvalLine, EvalRecord, LineError, LineKind, MetricsLine, StepMetrics};
pub use lint::{Lint, Severity};
pub use metric::{Direction, EvalMetrics, Metric, UnknownMetric};
pub use presence::{Partial, Plain, Presence, Written};
pub use shape::{ShapeReport, ShapeSource};
pub use shared::SharedKind;
pub use summary::{Alarm, EarlyStoppingSummary, ForgettingSummary, GeneralSetSummary, RunRecord, Summary};

/// The metrics log of a run folder, one JSON object per line.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The summary of a finished run, pretty-printed JSON.
pub const SUMMARY_FILE: &str = "summary.json";
