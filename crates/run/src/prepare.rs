//! Data preparation for a run: load, split train/validation (or read a validation file), remove
//! validation examples that leak from training, augment the training examples, tokenize.
//!
//! No row is lost without a trace. `rejected.jsonl` lists, with file and line, the rows the
//! loader rejects (written first, before any check can stop the run) and then, once
//! tokenization is done, the rows it leaves out (`too_long`, `no_supervised_tokens`,
//! `template_error`), by rewriting the file with both. Rows the audit removes are in
//! `quarantine.jsonl`.
//!
//! A row with more text than `max_len` tokens can hold ([`ChatTokenizer::max_example_bytes`]) is
//! cut right after loading, so the leakage check, augmentation, lint and tokenization never
//! hold it whole; training keeps the same first `max_len` tokens of it as before, and shorter
//! rows are not touched.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};
use tuneguard_data::leakage::{example_text, find_leaks, LeakKind, LeakRows, LeakageOptions};
use tuneguard_data::load::{load_file, LoadOptions, LoadedData};
use tuneguard_data::split::{read_field_values, split_indices, ValSize};
use tuneguard_data::tokenize::{ChatTokenizer, Dropped, TokenizeOptions, TokenizeStats, TokenizedExample};
use tuneguard_data::{DataError, Example, Rejected, ShapeSource};

use crate::recipe::{Recipe, ValSizeSpec};
use crate::{Progress, Result, RunError};

pub use tuneguard_records::{DataSummary, LeakReport};

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

/// Where an example came from.
#[derive(Debug, Clone)]
struct Loc {
    path: Rc<Path>,
    line: usize,
    /// The row's bytes of text, when it was cut before tokenizing.
    cut_from: Option<usize>,
    /// An augmented copy of the row.
    augmented: bool,
    /// The byte length of the instruction at the start of the user turn
    /// ([`LoadedData::instruction_lens`]).
    instruction_len: Option<usize>,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Examples with where each came from.
#[derive(Default)]
struct Rows {
    examples: Vec<Example>,
    at: Vec<Loc>,
}

impl Rows {
    /// The file's examples; `cut` maps the lines of rows cut before tokenizing to their bytes.
    fn of(data: LoadedData, cut: &HashMap<usize, usize>) -> Rows {
        let path: Rc<Path> = Rc::from(data.path.as_path());
        let at = data
            .lines
            .iter()
            .zip(&data.instruction_lens)
            .map(|(&line, &instruction_len)| Loc {
                path: path.clone(),
                line,
                cut_from: cut.get(&line).copied(),
                augmented: false,
                instruction_len,
            })
            .collect();
        Rows { at, examples: data.examples }
    }

    fn push(&mut self, example: Example, at: Loc) {
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

/// Cuts the examples with more than `max_bytes` bytes of text ([`Example::cut_to`]); returns
/// the line and original bytes of each.
fn cut_long_rows(data: &mut LoadedData, max_bytes: Option<usize>) -> HashMap<usize, usize> {
    let mut cut = HashMap::new();
    let Some(max) = max_bytes else { return cut };
    for (e, &line) in data.examples.iter_mut().zip(&data.lines) {
        if let Some(short) = e.cut_to(max) {
            cut.insert(line, e.text_bytes());
            *e = short;
        }
    }
    cut
}

/// (train, val, source) by the recipe's split rule; `cut` as in [`Rows::of`].
fn split(recipe: &Recipe, data: LoadedData, cut: &HashMap<usize, usize>) -> Result<(Rows, Rows, String)> {
    let n = data.examples.len();
    let size = match recipe.data.val_size {
        ValSizeSpec::Count(0) => return Ok((Rows::of(data, cut), Rows::default(), "none".into())),
        ValSizeSpec::Count(asked) if asked >= n => {
            return Err(RunError::Split(format!(
                "data.val_size = {asked} asks for {asked} validation examples, but {} has only {n} usable examples \
                 (after rejected and quarantined rows), which would leave none for training; hold out fewer than {n}, \
                 or give a fraction (data.val_size = 0.1)",
                data.path.display()
            )))
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
    let all = Rows::of(data, cut);
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

/// Drops the examples the audit quarantined; returns how many. Rows the loader rejected are
/// quarantined by the audit's schema checks too, and counted once, as rejected.
fn drop_quarantined(data: &mut LoadedData, q: &HashMap<PathBuf, HashSet<usize>>) -> usize {
    let Some(lines) = q.get(&data.path) else { return 0 };
    let before = data.examples.len();
    data.retain_lines(|l| !lines.contains(&l));
    before - data.examples.len()
}

/// Says which record shape each file is read with, and warns when most rows do not fit a
/// detected one.
fn report_shapes(files: &[&LoadedData], summary: &mut DataSummary, progress: &mut dyn Progress) {
    for d in files {
        let shape = d.shape();
        if matches!(shape.source, ShapeSource::Detected(_)) {
            progress.message(&shape.describe());
        }
        let set_it = "data.format (e.g. data.format = { kind = \"instruction\" }; kinds: instruction, \
                      prompt_completion, messages, text)";
        if let Some(w) = shape.warning(set_it) {
            progress.message(&format!("warning: {w}"));
        }
        summary.shapes.push(shape);
    }
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
    let rejected_path = cx.out.join("rejected.jsonl");
    tuneguard_data::rejected::write_rejected(&rejected_path, &rejected)?;
    report_rejected(&rejected, &rejected_path, progress);
    report_shapes(&std::iter::once(&data).chain(val_data.as_ref()).collect::<Vec<_>>(), &mut summary, progress);
    data.check(recipe.data.max_reject_fraction)?;
    if let Some(v) = &val_data {
        v.check(recipe.data.max_reject_fraction)?;
    }
    // Over-long rows are cut before anything else holds them whole.
    let max_bytes = tok.max_example_bytes(recipe.data.max_len);
    let cut_train = cut_long_rows(&mut data, max_bytes);
    let cut_val = val_data.as_mut().map(|v| cut_long_rows(v, max_bytes)).unwrap_or_default();
    summary.cut_before_tokenizing = cut_train.len() + cut_val.len();
    if recipe.audit.enabled {
        let files: Vec<std::path::PathBuf> =
            std::iter::once(data.path.clone()).chain(val_data.as_ref().map(|v| v.path.clone())).collect();
        let outcome = crate::preflight::audit(recipe, &files, tok, cx.out, progress)?;
        summary.quarantined = drop_quarantined(&mut data, &outcome.quarantined)
            + val_data.as_mut().map_or(0, |v| drop_quarantined(v, &outcome.quarantined));
        summary.audit_warned = outcome.warned;
        summary.audit_findings = outcome.found;
    }
    let (mut train, mut val, source) = match val_data {
        Some(v) => {
            let file = v.path.display().to_string();
            (Rows::of(data, &cut_train), Rows::of(v, &cut_val), file)
        }
        None => split(recipe, data, &cut_train)?,
    };
    summary.rejected = rejected.len();
    summary.val_source = source;
    if recipe.data.leakage_check && !val.examples.is_empty() {
        remove_leaks(recipe, &train, &mut val, &mut summary, progress);
    }
    let limit = recipe.data.max_train_examples;
    if limit > 0 && train.examples.len() > limit {
        summary.unused = train.examples.len() - limit;
        train.examples.truncate(limit);
        train.at.truncate(limit);
    }
    let a = &recipe.augment;
    if a.system_prompt_copies > 0 {
        let copies = tuneguard_data::augment::system_prompt_variants(
            &train.examples,
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
        for (i, e) in copies {
            let at = Loc { augmented: true, ..train.at[i].clone() };
            train.push(e, at);
        }
    }
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
    let lens = |rows: &Rows| rows.at.iter().map(|a| a.instruction_len).collect::<Vec<_>>();
    let (train_lens, val_lens) = (lens(train), lens(val));
    let leaks = find_leaks(
        LeakRows { examples: &train.examples, instruction_lens: &train_lens },
        LeakRows { examples: &val.examples, instruction_lens: &val_lens },
        &opts,
    );
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
                shared: l.shared,
                val_row: val.at[l.val_index].to_string(),
                train_row: train.at[l.train_index].to_string(),
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
        let of = r.shared.map_or(String::new(), |k| format!(" of the {}", k.rest_name()));
        progress
            .message(&format!("  {} ({}, Jaccard {:.2}{of}) repeats {}", r.val_row, r.kind, r.jaccard, r.train_row));
    }
    let drop: std::collections::HashSet<usize> = leaks.iter().map(|l| l.val_index).collect();
    val.retain_index(|i| !drop.contains(&i));
}
