//! Stage 6: the pre-flight lint, then the chat template and loss masks; rows tokenization
//! leaves out join `rejected.jsonl` with file and line.
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tuneguard_data::tokenize::{Dropped, TokenizeOptions, TokenizeStats};
use tuneguard_data::{DataError, Rejected};

use super::{Loc, Rows, SplitSets};
use crate::prepare::{PrepareCtx, Prepared};
use crate::recipe::Recipe;
use crate::{Progress, Result, RunError};

/// Lints and tokenizes the sets into [`Prepared`].
///
/// # Errors
/// A lint error under `audit.lint = "fail"`; a set the chat template cannot render; a set left
/// empty by tokenization (except for an audit only).
pub(crate) fn tokenize(
    recipe: &Recipe,
    cx: &PrepareCtx,
    sets: SplitSets,
    progress: &mut dyn Progress,
) -> Result<Prepared> {
    let SplitSets { train, val, max_bytes, trail } = sets;
    let (mut summary, mut rejected, rejected_path) = (trail.summary, trail.rejected, trail.rejected_path);
    let tok = cx.tok;
    let topts = TokenizeOptions { max_len: recipe.data.max_len, overflow: recipe.data.overflow };
    let train_lines: Vec<usize> = train.at.iter().map(|l| l.line).collect();
    let lint_data = crate::preflight::LintData {
        train: &train.examples,
        train_lines: &train_lines,
        val: &val.examples,
        tokenize: topts,
    };
    let lints = match crate::preflight::run_lint(recipe, cx.loaded, cx.data_template, &lint_data, progress) {
        Err(RunError::AuditInput(tuneguard_audit::AuditError::Data(DataError::Tokenize { example, reason }))) => {
            return Err(unrenderable("training", &train.at, example, reason))
        }
        other => other?,
    };
    let t = tok.tokenize_each(&train.examples, topts)?;
    let v = tok.tokenize_each(&val.examples, topts)?;
    // Rows left out here join the rows the loader rejected, before anything can stop the run.
    let dropped = dropped_rows(&[(&t.dropped, &train), (&v.dropped, &val)], max_bytes)?;
    if !dropped.is_empty() {
        rejected.extend(dropped);
        tuneguard_data::rejected::write_rejected(&rejected_path, &rejected)?;
    }
    let checked = t
        .check()
        .map_err(|e| named("training", &train.at, e))
        .and_then(|()| v.check().map_err(|e| named("validation", &val.at, e)));
    let (t, v) = match checked {
        Err(e) if cx.audit_only => {
            progress.message(&format!("the data cannot be tokenized for training: {e}"));
            Default::default()
        }
        Err(e) => return Err(e),
        Ok(()) => (t, v),
    };
    let dropped = |s: &TokenizeStats| s.dropped_too_long + s.dropped_no_supervised + s.dropped_template_error;
    summary.train_examples = t.examples.len();
    summary.val_examples = v.examples.len();
    summary.truncated = t.stats.truncated;
    summary.dropped = dropped(&t.stats);
    summary.val_truncated = v.stats.truncated;
    summary.val_dropped = dropped(&v.stats);
    summary.tokenize = t.stats;
    summary.val_tokenize = v.stats;
    Ok(Prepared { train: t.examples, val: v.examples, summary, rejected, lints })
}

/// The error for a set no example of which the chat template can render, naming the first.
fn unrenderable(set: &'static str, at: &[Loc], example: usize, reason: String) -> RunError {
    let at = at.get(example).map_or_else(|| format!("example {example}"), Loc::to_string);
    RunError::Unrenderable { set, at, reason }
}

/// A tokenization error of `set`, naming the row instead of the example's index.
fn named(set: &'static str, at: &[Loc], e: DataError) -> RunError {
    match e {
        DataError::Tokenize { example, reason } => unrenderable(set, at, example, reason),
        other => other.into(),
    }
}

/// The examples tokenization left out, as `rejected.jsonl` rows (each set's in line order), with
/// their raw text read back from the data files.
fn dropped_rows(sets: &[(&[Dropped], &Rows)], max_bytes: Option<usize>) -> Result<Vec<Rejected>> {
    let mut wanted: BTreeMap<&Path, Vec<usize>> = BTreeMap::new();
    for (dropped, rows) in sets {
        for d in dropped.iter() {
            let at = &rows.at[d.index];
            wanted.entry(&at.path).or_default().push(at.line);
        }
    }
    let mut raw: HashMap<&Path, HashMap<usize, String>> = HashMap::new();
    for (path, lines) in wanted {
        raw.insert(path, tuneguard_data::raw_rows(path, &lines)?);
    }
    let mut out = Vec::new();
    for (dropped, rows) in sets {
        let mut set: Vec<Rejected> = dropped
            .iter()
            .map(|d| {
                let at = &rows.at[d.index];
                let mut reason = d.reason.clone();
                if let (Some(bytes), Some(max)) = (at.cut_from, max_bytes) {
                    reason.push_str(&format!(
                        "; the row has {bytes} bytes of text, cut to its first {max} before tokenizing (token counts \
                         are of that part)"
                    ));
                }
                if at.augmented {
                    reason = format!("augmented copy (varied system prompt): {reason}");
                }
                let raw = raw.get(at.path.as_ref()).and_then(|r| r.get(&at.line)).cloned().unwrap_or_default();
                Rejected { path: at.path.to_path_buf(), line: at.line, kind: d.kind, reason, raw }
            })
            .collect();
        set.sort_by_key(|r| r.line);
        out.extend(set);
    }
    Ok(out)
}
