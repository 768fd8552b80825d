//! [`audit_files`]: one streaming pass over the data runs every check; the length outliers are
//! decided at the end, once the median and MAD of all lengths are known.
use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use tuneguard_data::{Example, LoadOptions, LoadStats, LoadedData, ShapeReport};

use super::config::{Actions, AuditConfig};
use super::duplicates::{DupChecks, DupIndex, DupVerdict, RowKeys};
use super::local::{Checker, RowFacts, DUP_CHECKS};
use super::report::{AuditReport, CheckCounts, Detail, Finding, LengthSummary, RowCounts, RowRef, SourcedExample};
use super::{length, stream, Action, CheckId};
use crate::error::Result;

/// Length of an example in tokens (e.g. its chat-template rendering through the tokenizer).
pub type LengthFn<'a> = dyn Fn(&Example) -> usize + Sync + 'a;

/// How to read and measure the data.
#[derive(Default)]
pub struct AuditOptions<'a> {
    /// Format and file syntax (`max_reject_fraction` and `keep_empty` are not used: the audit
    /// reports every row instead).
    pub load: LoadOptions,
    /// Measures lengths in tokens; `None` measures characters.
    pub length_fn: Option<&'a LengthFn<'a>>,
    /// Keep the rows that pass in [`AuditReport::clean`] (for training); off, memory does not
    /// grow with the data beyond the duplicate indexes and 24 bytes per row.
    pub keep_clean: bool,
    /// Rows with more bytes of text are cut to this many ([`Example::cut_to`]) before their
    /// length, duplicate keys and MinHash signature are computed, as training cuts them before
    /// tokenizing ([`tuneguard_data::ChatTokenizer::max_example_bytes`]); the control-character
    /// and PII checks read the whole row. `None` reads every row whole.
    pub max_example_bytes: Option<usize>,
}

/// Audits `paths` in order: a row is compared with the rows of earlier files too.
///
/// A reader thread loads chunks and runs the row-local checks on the rayon pool while this
/// thread compares the previous chunk's rows with the rows before them (that part is
/// sequential, so findings do not depend on the thread count); at most two chunks wait.
///
/// # Errors
/// `Config` for an invalid `cfg`; `Io`/`Data` for a file that cannot be read or whose format
/// cannot be detected. Bad rows are findings, not errors.
pub fn audit_files(paths: &[PathBuf], cfg: &AuditConfig, opts: &AuditOptions<'_>) -> Result<AuditReport> {
    let actions = cfg.resolve()?;
    let checker = Checker::new(cfg, actions, opts.length_fn).with_max_bytes(opts.max_example_bytes);
    let mut state = State::new(cfg, actions, opts.keep_clean, opts.length_fn.is_some());
    let load = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, LoadedData, Vec<RowFacts>)>(1);
        let checker = &checker;
        let reader = s.spawn(move || -> Result<(LoadStats, Vec<ShapeReport>)> {
            let mut load = LoadStats::default();
            let mut shapes = Vec::with_capacity(paths.len());
            for (file, path) in paths.iter().enumerate() {
                let (stats, shape) = stream::for_each_chunk(path, &opts.load, |data| {
                    let facts = data
                        .examples
                        .par_iter()
                        .zip(&data.instruction_lens)
                        .map(|(e, &ins)| checker.facts(e, ins))
                        .collect();
                    // The receiver lives until the reader ends: a failed send cannot happen.
                    let _ = tx.send((file, data, facts));
                    Ok(())
                })?;
                load.merge(&stats);
                shapes.push(shape);
            }
            Ok((load, shapes))
        });
        for (file, chunk, facts) in rx {
            state.chunk(file, chunk, facts);
        }
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })?;
    let (load, shapes) = load;
    Ok(state.finish(paths, load, shapes, cfg))
}

/// A parsed row kept for the length pass: where it is, its length, and its state so far.
struct Parsed {
    row: RowRef,
    len: u32,
    warned: bool,
    removed: bool,
}

struct State {
    actions: Actions,
    keep_clean: bool,
    tokens: bool,
    dup: Option<DupIndex>,
    max_listed: usize,
    counts: BTreeMap<CheckId, CheckCounts>,
    findings: Vec<Finding>,
    parsed: Vec<Parsed>,
    clean: Vec<SourcedExample>,
    rejected_rows: usize,
}

impl State {
    fn new(cfg: &AuditConfig, actions: Actions, keep_clean: bool, tokens: bool) -> Self {
        let on = |c| actions.get(c) != Action::Off;
        let checks = DupChecks {
            exact: on(CheckId::ExactDuplicate),
            conflict: on(CheckId::ConflictingAnswer),
            near: on(CheckId::NearDuplicate),
        };
        let dup =
            actions.any_on(&DUP_CHECKS).then(|| DupIndex::new(checks, cfg.num_perm, cfg.near_duplicate_threshold));
        let counts = CheckId::ALL.map(|c| (c, CheckCounts { found: 0, action: actions.get(c), listed: 0 })).into();
        State {
            actions,
            keep_clean,
            tokens,
            dup,
            max_listed: cfg.max_listed_per_check,
            counts,
            findings: Vec::new(),
            parsed: Vec::new(),
            clean: Vec::new(),
            rejected_rows: 0,
        }
    }

    /// Records a finding (listing it unless it only warns and its check's list is full).
    fn add(&mut self, row: RowRef, check: CheckId, detail: Detail) -> Action {
        let action = self.actions.get(check);
        let c = self.counts.entry(check).or_insert(CheckCounts { found: 0, action, listed: 0 });
        c.found += 1;
        if action.removes_row() || c.listed < self.max_listed {
            c.listed += 1;
            self.findings.push(Finding { row, check, action, detail });
        }
        action
    }

    fn chunk(&mut self, file: usize, data: LoadedData, facts: Vec<RowFacts>) {
        for r in data.rejected {
            self.rejected_rows += 1;
            // The loader gives schema kinds only; tokenization kinds come later, in training.
            let check = CheckId::of_reject(r.kind).unwrap_or(CheckId::InvalidJson);
            self.add(RowRef { file, line: r.line }, check, Detail::Text(r.reason));
        }
        for ((example, line), facts) in data.examples.into_iter().zip(data.lines).zip(facts) {
            let row = RowRef { file, line };
            let mut p = Parsed { row, len: facts.len, warned: false, removed: false };
            for (check, reason) in facts.local {
                self.mark(&mut p, check, Detail::Text(reason));
            }
            if let Some(keys) = &facts.keys {
                self.compare(&mut p, keys);
            }
            if self.keep_clean && !p.removed {
                self.clean.push(SourcedExample { row, example });
            }
            self.parsed.push(p);
        }
    }

    fn mark(&mut self, p: &mut Parsed, check: CheckId, detail: Detail) {
        match self.add(p.row, check, detail) {
            Action::Warn => p.warned = true,
            Action::Quarantine | Action::Fail => p.removed = true,
            Action::Off => {}
        }
    }

    /// Duplicate checks against the rows before; a row that stays is added to the index.
    fn compare(&mut self, p: &mut Parsed, keys: &RowKeys) {
        let Some(verdict) = self.dup.as_ref().and_then(|d| d.check(keys)) else {
            return self.remember(p, keys);
        };
        let (check, detail) = match verdict {
            DupVerdict::Exact(of) => (CheckId::ExactDuplicate, Detail::Exact { of }),
            DupVerdict::Conflict(of) => (CheckId::ConflictingAnswer, Detail::Conflict { of }),
            DupVerdict::Near(of, j, shared) => (CheckId::NearDuplicate, Detail::Near { of, jaccard: j as f32, shared }),
        };
        self.mark(p, check, detail);
        self.remember(p, keys);
    }

    fn remember(&mut self, p: &Parsed, keys: &RowKeys) {
        if let (false, Some(d)) = (p.removed, self.dup.as_mut()) {
            d.insert(p.row, keys);
        }
    }

    /// Decides the length outliers and builds the report.
    fn finish(
        mut self,
        paths: &[PathBuf],
        load: LoadStats,
        shapes: Vec<ShapeReport>,
        cfg: &AuditConfig,
    ) -> AuditReport {
        let length = self.length_outliers(cfg.length_z);
        let mut rows = RowCounts {
            read: load.rows,
            blank_lines: load.blank_lines,
            quarantined: self.rejected_rows,
            ..Default::default()
        };
        for p in &self.parsed {
            match (p.removed, p.warned) {
                (true, _) => rows.quarantined += 1,
                (false, true) => rows.warned += 1,
                (false, false) => rows.clean += 1,
            }
        }
        self.findings.sort_by_key(|f| (f.row, f.check));
        AuditReport {
            files: paths.to_vec(),
            actions: self.actions,
            counts: self.counts,
            rows,
            load,
            shapes,
            findings: self.findings,
            clean: self.clean,
            length,
            near_index_rows: self.dup.as_ref().map_or(0, DupIndex::near_len),
            max_listed_per_check: self.max_listed,
        }
    }

    fn length_outliers(&mut self, z_max: f64) -> Option<LengthSummary> {
        if self.actions.get(CheckId::LengthOutlier) == Action::Off {
            return None;
        }
        let lens: Vec<u32> = self.parsed.iter().map(|p| p.len).collect();
        let stats = length::length_stats(&lens)?;
        let mut removed = Vec::new();
        let mut parsed = std::mem::take(&mut self.parsed);
        for p in &mut parsed {
            let z = stats.z(length::log_len(p.len as usize));
            if z.abs() > z_max {
                let before = p.removed;
                self.mark(p, CheckId::LengthOutlier, Detail::Length { len: p.len, z: z as f32 });
                if p.removed && !before {
                    removed.push(p.row);
                }
            }
        }
        self.parsed = parsed;
        if !removed.is_empty() {
            // `removed` is in row order, as is `clean`.
            let mut it = removed.iter().peekable();
            self.clean.retain(|s| it.next_if(|r| **r == s.row).is_none());
        }
        let bound = |sign: f64| (stats.median + sign * z_max * stats.scale).exp();
        let unit = if self.tokens { "tokens" } else { "chars" };
        Some(LengthSummary { unit, median: stats.median.exp(), upper: bound(1.0), lower: bound(-1.0), z: z_max })
    }
}
