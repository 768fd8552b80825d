//! The data guard before training: the row checks of `tuneguard audit` (quarantining, warning or
//! failing per the recipe's `[audit]` section) and the pre-flight lint of silent bugs.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tuneguard_audit::checks::{self, Action, AuditOptions};
use tuneguard_audit::lint::{self, LintInput, Severity};
use tuneguard_data::load::LoadOptions;
use tuneguard_data::tokenize::{ChatTokenizer, TokenizeOptions};
use tuneguard_data::Example;
use tuneguard_model::LoadedModel;

use crate::recipe::{LintPolicy, Recipe};
use crate::types::{Progress, Result, RunError};

/// What the audit removed and found.
pub struct AuditOutcome {
    /// Lines of every row the checks quarantined, per file.
    pub quarantined: HashMap<PathBuf, HashSet<usize>>,
    pub warned: usize,
    /// Rows found per check id (only checks that found something).
    pub found: Vec<(String, usize, String)>,
}

/// Runs the row checks on `files`, writes `audit.json` and `quarantine.jsonl` into `out`, and
/// stops the run when a check set to `fail` fired. Lengths are counted in tokens.
pub fn audit(
    recipe: &Recipe,
    files: &[PathBuf],
    tok: &ChatTokenizer,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<AuditOutcome> {
    // Over-long rows are measured and hashed cut, as training cuts them (memory stays bounded).
    let max_len = recipe.data.max_len;
    let length = |e: &Example| tok.tokenize_bounded(e, max_len).map_or(0, |t| t.input_ids.len());
    let opts = AuditOptions {
        load: LoadOptions { format: recipe.data.format.clone(), ..Default::default() },
        length_fn: Some(&length),
        keep_clean: false,
        max_example_bytes: tok.max_example_bytes(max_len),
    };
    let report = checks::audit_files(files, &recipe.audit.checks, &opts)?;
    let n = checks::write_audit_outputs(out, &report)?;
    let found: Vec<(String, usize, String)> = report
        .counts
        .iter()
        .filter(|(_, c)| c.found > 0)
        .map(|(id, c)| (id.name().to_string(), c.found, c.action.name().to_string()))
        .collect();
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|(id, n, a)| format!("{id} {n} ({a})")).collect();
        progress.message(&format!("audit: {}", list.join(", ")));
    }
    if n > 0 {
        progress.message(&format!("audit: {n} rows quarantined, see {}", out.join("quarantine.jsonl").display()));
    }
    if let Some(first) = report.failed() {
        return Err(RunError::Audit(format!(
            "{first} (the recipe's [audit.checks] sets this check to `fail`; see {})",
            out.join("audit.json").display()
        )));
    }
    let mut quarantined: HashMap<PathBuf, HashSet<usize>> = HashMap::new();
    for f in report.findings.iter().filter(|f| f.action == Action::Quarantine || f.check.is_schema()) {
        quarantined.entry(report.files[f.row.file].clone()).or_default().insert(f.row.line);
    }
    Ok(AuditOutcome { quarantined, warned: report.rows.warned, found })
}

/// The examples and settings the lint looks at.
pub struct LintData<'a> {
    pub train: &'a [Example],
    /// The line of `data.train` each training example comes from, so findings name `file:line`.
    pub train_lines: &'a [usize],
    pub val: &'a [Example],
    pub tokenize: TokenizeOptions,
}

/// Runs the pre-flight lint; an `error` finding stops the run when `audit.lint = "fail"`.
pub fn run_lint(
    recipe: &Recipe,
    loaded: &LoadedModel,
    data_template: Option<&tuneguard_model::chat::ChatTemplate>,
    data: &LintData,
    progress: &mut dyn Progress,
) -> Result<Vec<lint::Lint>> {
    if recipe.audit.lint == LintPolicy::Off {
        return Ok(Vec::new());
    }
    let input = LintInput {
        tokenizer: &loaded.tokenizer,
        model_vocab_size: loaded.model.config.vocab_size,
        model_chat_template: loaded.chat_template.as_ref(),
        data_chat_template: data_template,
        end_of_turn: None,
        train: data.train,
        train_lines: Some(data.train_lines),
        train_path: Some(&recipe.data.train),
        val: data.val,
        tokenize: data.tokenize,
        packing: recipe.data.packing,
        packing_uses_masks: true,
        pad_token_id: loaded.tokenizer.pad_id(),
        batch_size: recipe.train.batch_size,
    };
    let lints = lint::run_lints(&input)?;
    for l in &lints {
        progress.message(&format!("lint {}[{}]: {} (fix: {})", l.severity.name(), l.id, l.message, l.fix));
    }
    let errors: Vec<&str> = lints.iter().filter(|l| l.severity == Severity::Error).map(|l| l.id).collect();
    if !errors.is_empty() && recipe.audit.lint == LintPolicy::Fail {
        return Err(RunError::Audit(format!(
            "the pre-flight lint found {} error(s): {}; fix them, or set audit.lint = \"warn\" to train anyway",
            errors.len(),
            errors.join(", ")
        )));
    }
    Ok(lints)
}
