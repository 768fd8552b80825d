//! `tuneguard audit RECIPE.toml`: everything `train` checks before training, without training:
//! data authentication, the row checks with the recipe's actions, the leakage check of the
//! validation split and the pre-flight lint. Exit 1 when `train` would stop on the findings.
use std::path::Path;

use anyhow::Result;
use tuneguard_audit::lint::Severity;
use tuneguard_run::recipe::{LintPolicy, Recipe};
use tuneguard_run::{preflight, Progress, RunConfig, RunError, StepMetrics};

use crate::model_path;

struct Stderr;

impl Progress for Stderr {
    fn message(&mut self, text: &str) {
        eprintln!("{text}");
    }
    fn step(&mut self, _: &StepMetrics) {}
}

/// Why `train` would stop, as the error that makes `tuneguard audit` exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WouldStop(pub String);

pub fn run(recipe_path: &Path, out: &Path) -> Result<()> {
    let mut recipe = Recipe::load(recipe_path, &[])?;
    let lint_policy = recipe.audit.lint;
    // Report lint errors here rather than stop on the first.
    if lint_policy == LintPolicy::Fail {
        recipe.audit.lint = LintPolicy::Warn;
    }
    let model = model_path::resolve(recipe.model.path.as_deref())?;
    let prepared = match preflight(&RunConfig::new(recipe, model), out, &mut Stderr) {
        Err(RunError::Audit(why)) => return Err(WouldStop(why).into()),
        other => other?,
    };
    let d = &prepared.summary;
    out!(
        "{} rows read: {} training and {} validation examples; {} rejected, {} quarantined, {} kept with warnings",
        d.rows_read,
        d.train_examples,
        d.val_examples,
        d.rejected,
        d.quarantined,
        d.audit_warned
    );
    for (id, n, action) in &d.audit_findings {
        out!("  {id:<20} {n:>7}  {action}");
    }
    out!("leakage: {} exact and {} near-duplicate validation examples removed", d.leaked_exact, d.leaked_near);
    if prepared.lints.is_empty() {
        out!("lint: no findings");
    }
    for l in &prepared.lints {
        out!("lint {}[{}]: {}\n  fix: {}", l.severity.name(), l.id, l.message, l.fix);
    }
    out!("wrote {} and {}", out.join("audit.json").display(), out.join("quarantine.jsonl").display());
    let errors = prepared.lints.iter().filter(|l| l.severity == Severity::Error).count();
    if errors > 0 && lint_policy == LintPolicy::Fail {
        return Err(WouldStop(format!("{errors} lint error(s) would stop `tuneguard train`")).into());
    }
    Ok(())
}
