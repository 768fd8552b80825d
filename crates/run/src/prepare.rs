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
use sha2::{Digest, Sha256};
use tuneguard_data::tokenize::{ChatTokenizer, TokenizedExample};
use tuneguard_data::Rejected;

use crate::recipe::Recipe;
use crate::{Progress, Result};

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
            hash_examples(&mut h, tag, set);
        }
        hex::encode(h.finalize())
    }
}

/// Adds every example's `tag`, token ids and labels to `h` (the data fingerprints).
pub(crate) fn hash_examples(h: &mut Sha256, tag: u8, examples: &[TokenizedExample]) {
    for e in examples {
        h.update([tag]);
        e.input_ids.iter().for_each(|i| h.update(i.to_le_bytes()));
        e.labels.iter().for_each(|l| h.update(l.to_le_bytes()));
    }
}

/// Checks the data files against the recipe's manifest and trusted keys, before any is read.
pub fn authenticate(config: &crate::RunConfig, progress: &mut dyn Progress) -> Result<()> {
    let d = &config.recipe.data;
    let Some(manifest) = &d.manifest else { return Ok(()) };
    let sources: Vec<std::path::PathBuf> = std::iter::once(d.train.clone()).chain(d.val_file.clone()).collect();
    let v = tuneguard_data::provenance::verify(manifest, &sources, &d.trusted_keys, config.require_signature)?;
    let signer = v.signer.map_or("unsigned".to_string(), |s| format!("signed by {}", s.fingerprint));
    progress.message(&format!("data verified against {} ({signer})", manifest.display()));
    Ok(())
}

/// Loads and audits the data, splits it, checks leakage, augments, lints and tokenizes it
/// (the stages of [`crate::stages`]).
pub fn prepare(recipe: &Recipe, cx: &PrepareCtx, progress: &mut dyn Progress) -> Result<Prepared> {
    use crate::stages::{audit, augment, leakage, load, split, tokenize};
    let loaded = load::load(recipe, cx.tok, cx.out, progress)?;
    let audited = audit::audit(recipe, cx.tok, cx.out, loaded, progress)?;
    let sets = split::split(recipe, audited)?;
    let sets = leakage::remove(recipe, sets, progress);
    let sets = augment::augment(recipe, sets);
    tokenize::tokenize(recipe, cx, sets, progress)
}
