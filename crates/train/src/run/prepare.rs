//! Data preparation for a run: load, split train/validation (or read a validation file), remove
//! validation examples that leak from training, augment the training examples, tokenize.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tuneguard_data::leakage::{example_text, find_leaks, LeakKind, LeakageOptions};
use tuneguard_data::load::{load_file, LoadOptions, LoadedData};
use tuneguard_data::split::{read_field_values, split_indices, ValSize};
use tuneguard_data::tokenize::{ChatTokenizer, TokenizeOptions, TokenizeStats, TokenizedExample};
use tuneguard_data::{Example, Rejected};

use super::{Progress, Result, RunError};
use crate::recipe::{Recipe, ValSizeSpec};

/// What happened to the data on its way to training (the run's data summary).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataSummary {
    /// Data rows read (training file, plus the validation file if any).
    pub rows_read: usize,
    pub rejected: usize,
    /// Rows the audit quarantined (see `quarantine.jsonl`), and rows it kept with a warning.
    pub quarantined: usize,
    pub audit_warned: usize,
    /// (check id, rows found, action) of every audit check that found something.
    pub audit_findings: Vec<(String, usize, String)>,
    /// `split` (held out of the training file), the validation file's path, or `none`.
    pub val_source: String,
    pub train_examples: usize,
    pub val_examples: usize,
    /// Validation examples removed because they repeat a training example.
    pub leaked_exact: usize,
    pub leaked_near: usize,
    /// Up to 20 of them: where they were and what they matched.
    pub leaks: Vec<LeakReport>,
    /// Training examples left out by `data.max_train_examples`.
    pub unused: usize,
    /// Augmented copies added to training, and how they were made.
    pub augmented: usize,
    pub augmentation: Option<String>,
    /// Examples cut to `max_len`, or dropped (too long, or nothing supervised), in training.
    pub truncated: usize,
    pub dropped: usize,
    pub tokenize: TokenizeStats,
    pub val_tokenize: TokenizeStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeakReport {
    pub kind: String,
    pub jaccard: f64,
    /// `file:line` of the validation example and of the training example it repeats.
    pub val_row: String,
    pub train_row: String,
    /// The validation example's text, cut to 160 characters.
    pub text: String,
}

/// The data of a run, ready for the training loop.
pub struct Prepared {
    pub train: Vec<TokenizedExample>,
    pub val: Vec<TokenizedExample>,
    pub summary: DataSummary,
    pub rejected: Vec<Rejected>,
    pub lints: Vec<tuneguard_audit::lint::Lint>,
}

/// The model side of data preparation: the tokenizer, the template the data is rendered with
/// (the recipe's `data.chat_template` or the model's own), and the folder audit files go to.
pub struct PrepareCtx<'a> {
    pub loaded: &'a tuneguard_model::LoadedModel,
    pub data_template: Option<&'a tuneguard_model::chat::ChatTemplate>,
    pub tok: &'a ChatTokenizer<'a>,
    pub out: &'a std::path::Path,
    /// For an audit only: data that cannot be tokenized leaves the sets empty (the lint has said
    /// why) instead of failing.
    pub audit_only: bool,
}

impl Prepared {
    /// sha256 of every token id and label, so a resumed run can check it sees the same data.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (tag, set) in [(b'T', &self.train), (b'V', &self.val)] {
            for e in set {
                h.update([tag]);
                e.input_ids.iter().for_each(|i| h.update(i.to_le_bytes()));
                e.labels.iter().for_each(|l| h.update(l.to_le_bytes()));
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn load(recipe: &Recipe, path: &std::path::Path) -> Result<LoadedData> {
    let opts = LoadOptions {
        format: recipe.data.format.clone(),
        file_kind: None,
        max_reject_fraction: recipe.data.max_reject_fraction,
        keep_empty: true,
    };
    Ok(load_file(path, &opts)?)
}

/// Examples with the `file:line` each came from.
#[derive(Default)]
struct Rows {
    examples: Vec<Example>,
    at: Vec<String>,
}

impl Rows {
    fn of(data: LoadedData) -> Rows {
        let file = data.path.display().to_string();
        Rows { at: data.lines.iter().map(|l| format!("{file}:{l}")).collect(), examples: data.examples }
    }

    fn push(&mut self, example: Example, at: String) {
        self.examples.push(example);
        self.at.push(at);
    }

    /// Keeps the rows whose index `keep` accepts.
    fn retain_index(&mut self, keep: impl Fn(usize) -> bool) {
        let rows = std::mem::take(self);
        for (i, (e, a)) in rows.examples.into_iter().zip(rows.at).enumerate() {
            if keep(i) {
                self.push(e, a);
            }
        }
    }
}

/// (train, val, source) by the recipe's split rule.
fn split(recipe: &Recipe, data: LoadedData, progress: &mut dyn Progress) -> Result<(Rows, Rows, String)> {
    let n = data.examples.len();
    let size = match recipe.data.val_size {
        ValSizeSpec::Count(0) => return Ok((Rows::of(data), Rows::default(), "none".into())),
        ValSizeSpec::Count(asked) if asked >= n => {
            let k = n.saturating_sub(1);
            progress.message(&format!(
                "warning: data.val_size {asked} leaves no training data; holding out {k} of {n} examples"
            ));
            if k == 0 {
                return Ok((Rows::of(data), Rows::default(), "none".into()));
            }
            ValSize::Count(k)
        }
        ValSizeSpec::Count(k) => ValSize::Count(k),
        ValSizeSpec::Fraction(f) => ValSize::Fraction(f),
    };
    let strata = match &recipe.data.stratify_by {
        None => None,
        Some(field) => {
            let values = read_field_values(&data.path, field)?;
            if values.is_empty() {
                return Err(RunError::Split(format!(
                    "data.stratify_by: no record of {} has a `{field}` field",
                    data.path.display()
                )));
            }
            Some(data.lines.iter().map(|l| values.get(l).cloned()).collect::<Vec<_>>())
        }
    };
    let (_, vi) =
        split_indices(n, size, recipe.train.seed, strata.as_deref()).map_err(|e| RunError::Split(e.to_string()))?;
    let mut is_val = vec![false; n];
    vi.iter().for_each(|&i| is_val[i] = true);
    let (mut train, mut val) = (Rows::default(), Rows::default());
    let all = Rows::of(data);
    for (i, (e, a)) in all.examples.into_iter().zip(all.at).enumerate() {
        if is_val[i] {
            val.push(e, a);
        } else {
            train.push(e, a);
        }
    }
    Ok((train, val, "split".into()))
}

fn report_rejected(rejected: &[Rejected], path: &std::path::Path, progress: &mut dyn Progress) {
    for r in rejected.iter().take(5) {
        progress.message(&format!("rejected {r}"));
    }
    if rejected.len() > 5 {
        progress.message(&format!("... {} rejected rows in all, see {}", rejected.len(), path.display()));
    }
}

/// Drops the examples the audit quarantined.
fn drop_quarantined(data: &mut LoadedData, q: &HashMap<PathBuf, HashSet<usize>>) {
    let Some(lines) = q.get(&data.path) else { return };
    let keep: Vec<bool> = data.lines.iter().map(|l| !lines.contains(l)).collect();
    let mut it = keep.iter();
    data.examples.retain(|_| *it.next().unwrap_or(&true));
    data.lines.retain(|l| !lines.contains(l));
}

/// Loads and audits the data, splits it, checks leakage, augments, lints and tokenizes it.
pub fn prepare(recipe: &Recipe, cx: &PrepareCtx, progress: &mut dyn Progress) -> Result<Prepared> {
    let tok = cx.tok;
    let mut data = load(recipe, &recipe.data.train)?;
    let mut summary = DataSummary { rows_read: data.stats.rows, ..Default::default() };
    let mut rejected = data.rejected.clone();
    let mut val_data = match &recipe.data.val_file {
        Some(path) => {
            let v = load(recipe, path)?;
            summary.rows_read += v.stats.rows;
            rejected.extend(v.rejected.iter().cloned());
            Some(v)
        }
        None => None,
    };
    // Rejected rows are reported and written before any check can stop the run.
    tuneguard_data::rejected::write_rejected(&cx.out.join("rejected.jsonl"), &rejected)?;
    report_rejected(&rejected, &cx.out.join("rejected.jsonl"), progress);
    data.check(recipe.data.max_reject_fraction)?;
    if let Some(v) = &val_data {
        v.check(recipe.data.max_reject_fraction)?;
    }
    if recipe.audit.enabled {
        let files: Vec<std::path::PathBuf> =
            std::iter::once(data.path.clone()).chain(val_data.as_ref().map(|v| v.path.clone())).collect();
        let outcome = super::preflight::audit(recipe, &files, tok, cx.out, progress)?;
        drop_quarantined(&mut data, &outcome.quarantined);
        if let Some(v) = val_data.as_mut() {
            drop_quarantined(v, &outcome.quarantined);
        }
        summary.quarantined = outcome.quarantined.values().map(HashSet::len).sum();
        summary.audit_warned = outcome.warned;
        summary.audit_findings = outcome.found;
    }
    let (train, mut val, source) = match val_data {
        Some(v) => {
            let file = v.path.display().to_string();
            (Rows::of(data), Rows::of(v), file)
        }
        None => split(recipe, data, progress)?,
    };
    summary.rejected = rejected.len();
    summary.val_source = source;
    if recipe.data.leakage_check && !val.examples.is_empty() {
        remove_leaks(recipe, &train, &mut val, &mut summary, progress);
    }
    let mut train_ex = train.examples;
    let limit = recipe.data.max_train_examples;
    if limit > 0 && train_ex.len() > limit {
        summary.unused = train_ex.len() - limit;
        train_ex.truncate(limit);
    }
    let a = &recipe.augment;
    if a.system_prompt_copies > 0 {
        let copies = tuneguard_data::augment::system_prompt_variants(
            &train_ex,
            a.system_prompt_copies,
            &a.system_prompts,
            recipe.train.seed,
        );
        summary.augmented = copies.len();
        summary.augmentation = Some(format!(
            "{} cop{} of each chat example with a varied system prompt ({} prompts)",
            a.system_prompt_copies,
            if a.system_prompt_copies == 1 { "y" } else { "ies" },
            if a.system_prompts.is_empty() {
                tuneguard_data::augment::DEFAULT_SYSTEM_PROMPTS.len()
            } else {
                a.system_prompts.len()
            }
        ));
        train_ex.extend(copies.into_iter().map(|(_, e)| e));
    }
    let val_ex = val.examples;
    let topts = TokenizeOptions { max_len: recipe.data.max_len, overflow: recipe.data.overflow };
    let lint_data = super::preflight::LintData { train: &train_ex, val: &val_ex, tokenize: topts };
    let lints = super::preflight::run_lint(recipe, cx.loaded, cx.data_template, &lint_data, progress)?;
    let tokenized = tok.tokenize_all(&train_ex, topts).and_then(|t| {
        let v = if val_ex.is_empty() { (Vec::new(), Default::default()) } else { tok.tokenize_all(&val_ex, topts)? };
        Ok((t, v))
    });
    let ((train, tstats), (val, vstats)) = match tokenized {
        Err(e) if cx.audit_only => {
            progress.message(&format!("the data cannot be tokenized for training: {e}"));
            Default::default()
        }
        other => other?,
    };
    summary.train_examples = train.len();
    summary.val_examples = val.len();
    summary.truncated = tstats.truncated;
    summary.dropped = tstats.dropped_too_long + tstats.dropped_no_supervised;
    summary.tokenize = tstats;
    summary.val_tokenize = vstats;
    Ok(Prepared { train, val, summary, rejected, lints })
}

/// Checks the data files against the recipe's manifest and trusted keys, before any is read.
pub fn authenticate(recipe: &Recipe, progress: &mut dyn Progress) -> Result<()> {
    let d = &recipe.data;
    let Some(manifest) = &d.manifest else { return Ok(()) };
    let sources: Vec<std::path::PathBuf> = std::iter::once(d.train.clone()).chain(d.val_file.clone()).collect();
    let require = d.require_signature.unwrap_or(!d.trusted_keys.is_empty());
    let v = tuneguard_data::provenance::verify(manifest, &sources, &d.trusted_keys, require)?;
    let signer = v.signer.map_or("unsigned".to_string(), |s| format!("signed by {}", s.fingerprint));
    progress.message(&format!("data verified against {} ({signer})", manifest.display()));
    Ok(())
}

fn remove_leaks(recipe: &Recipe, train: &Rows, val: &mut Rows, s: &mut DataSummary, progress: &mut dyn Progress) {
    let opts = LeakageOptions {
        near_threshold: recipe.data.near_dup_threshold,
        seed: recipe.train.seed,
        ..Default::default()
    };
    let leaks = find_leaks(&train.examples, &val.examples, &opts);
    if leaks.is_empty() {
        return;
    }
    for l in &leaks {
        match l.kind {
            LeakKind::Exact => s.leaked_exact += 1,
            LeakKind::Near => s.leaked_near += 1,
        }
        if s.leaks.len() < 20 {
            let text: String = example_text(&val.examples[l.val_index]).chars().take(160).collect();
            s.leaks.push(LeakReport {
                kind: format!("{:?}", l.kind).to_lowercase(),
                jaccard: l.jaccard,
                val_row: val.at[l.val_index].clone(),
                train_row: train.at[l.train_index].clone(),
                text,
            });
        }
    }
    progress.message(&format!(
        "leakage: removed {} validation examples that repeat training ones ({} exact, {} near-duplicate)",
        leaks.len(),
        s.leaked_exact,
        s.leaked_near
    ));
    for r in s.leaks.iter().take(3) {
        progress.message(&format!("  {} ({}, Jaccard {:.2}) repeats {}", r.val_row, r.kind, r.jaccard, r.train_row));
    }
    let drop: std::collections::HashSet<usize> = leaks.iter().map(|l| l.val_index).collect();
    val.retain_index(|i| !drop.contains(&i));
}
