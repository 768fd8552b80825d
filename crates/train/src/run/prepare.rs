//! Data preparation for a run: load, split train/validation (or read a validation file), remove
//! validation examples that leak from training, augment the training examples, tokenize.
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

/// (train, val) examples with their `file:line`, by the recipe's split rule.
type Rows = Vec<(Example, String)>;

fn split(recipe: &Recipe, data: LoadedData, progress: &mut dyn Progress) -> Result<(Rows, Rows, String)> {
    let file = data.path.display().to_string();
    let rows: Rows = data.examples.into_iter().zip(&data.lines).map(|(e, l)| (e, format!("{file}:{l}"))).collect();
    let n = rows.len();
    let size = match recipe.data.val_size {
        ValSizeSpec::Count(0) => return Ok((rows, Vec::new(), "none".into())),
        ValSizeSpec::Count(asked) if asked >= n => {
            let k = n.saturating_sub(1);
            progress.message(&format!(
                "warning: data.val_size {asked} leaves no training data; holding out {k} of {n} examples"
            ));
            if k == 0 {
                return Ok((rows, Vec::new(), "none".into()));
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
    let (ti, vi) =
        split_indices(n, size, recipe.train.seed, strata.as_deref()).map_err(|e| RunError::Split(e.to_string()))?;
    let mut slots: Vec<Option<(Example, String)>> = rows.into_iter().map(Some).collect();
    let mut take = |idx: Vec<usize>| idx.into_iter().filter_map(|i| slots[i].take()).collect::<Rows>();
    let val = take(vi);
    Ok((take(ti), val, "split".into()))
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
fn drop_quarantined(data: &mut LoadedData, q: &std::collections::HashSet<(std::path::PathBuf, usize)>) {
    if q.is_empty() {
        return;
    }
    let path = data.path.clone();
    let keep: Vec<bool> = data.lines.iter().map(|&l| !q.contains(&(path.clone(), l))).collect();
    let mut it = keep.iter();
    data.examples.retain(|_| *it.next().unwrap_or(&true));
    let mut it = keep.iter();
    data.lines.retain(|_| *it.next().unwrap_or(&true));
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
        summary.quarantined = outcome.quarantined.len();
        summary.audit_warned = outcome.warned;
        summary.audit_findings = outcome.found;
    }
    let (train, mut val, source) = match val_data {
        Some(v) => {
            let file = v.path.display().to_string();
            let val = v.examples.into_iter().zip(&v.lines).map(|(e, l)| (e, format!("{file}:{l}"))).collect();
            let f = data.path.display().to_string();
            let train = data.examples.into_iter().zip(&data.lines).map(|(e, l)| (e, format!("{f}:{l}"))).collect();
            (train, val, file)
        }
        None => split(recipe, data, progress)?,
    };
    summary.rejected = rejected.len();
    summary.val_source = source;
    if recipe.data.leakage_check && !val.is_empty() {
        remove_leaks(recipe, &train, &mut val, &mut summary, progress);
    }
    let mut train_ex: Vec<Example> = train.into_iter().map(|(e, _)| e).collect();
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
    let val_ex: Vec<Example> = val.into_iter().map(|(e, _)| e).collect();
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
    let t: Vec<Example> = train.iter().map(|(e, _)| e.clone()).collect();
    let v: Vec<Example> = val.iter().map(|(e, _)| e.clone()).collect();
    let leaks = find_leaks(&t, &v, &opts);
    if leaks.is_empty() {
        return;
    }
    for l in &leaks {
        match l.kind {
            LeakKind::Exact => s.leaked_exact += 1,
            LeakKind::Near => s.leaked_near += 1,
        }
        if s.leaks.len() < 20 {
            let text: String = example_text(&v[l.val_index]).chars().take(160).collect();
            s.leaks.push(LeakReport {
                kind: format!("{:?}", l.kind).to_lowercase(),
                jaccard: l.jaccard,
                val_row: val[l.val_index].1.clone(),
                train_row: train[l.train_index].1.clone(),
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
    let mut i = 0;
    val.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
}
