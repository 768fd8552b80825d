//! Stage 2: the row audit (`[audit]`): quarantined rows leave the data.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use tuneguard_data::load::LoadedData;
use tuneguard_data::tokenize::ChatTokenizer;

use super::{AuditedSets, LoadedSets};
use crate::recipe::Recipe;
use crate::{Progress, Result};

/// Runs the row checks on the data files (when `audit.enabled`), writing `audit.json` and
/// `quarantine.jsonl` into `out`, and drops the quarantined rows.
///
/// # Errors
/// Audit errors (a `fail` check that fired, unreadable files), I/O errors.
pub(crate) fn audit(
    recipe: &Recipe,
    tok: &ChatTokenizer<'_>,
    out: &std::path::Path,
    mut sets: LoadedSets,
    progress: &mut dyn Progress,
) -> Result<AuditedSets> {
    if recipe.audit.enabled {
        let files: Vec<PathBuf> =
            std::iter::once(sets.train.path.clone()).chain(sets.val.as_ref().map(|v| v.path.clone())).collect();
        let outcome = crate::preflight::audit(recipe, &files, tok, out, progress)?;
        let summary = &mut sets.trail.summary;
        summary.quarantined = drop_quarantined(&mut sets.train, &outcome.quarantined)
            + sets.val.as_mut().map_or(0, |v| drop_quarantined(v, &outcome.quarantined));
        summary.audit_warned = outcome.warned;
        summary.audit_findings = outcome.found;
    }
    Ok(AuditedSets(sets))
}

/// Drops the examples the audit quarantined; returns how many. Rows the loader rejected are
/// quarantined by the audit's schema checks too, and counted once, as rejected.
fn drop_quarantined(data: &mut LoadedData, q: &HashMap<PathBuf, HashSet<usize>>) -> usize {
    let Some(lines) = q.get(&data.path) else { return 0 };
    let before = data.examples.len();
    data.retain_lines(|l| !lines.contains(&l));
    before - data.examples.len()
}
