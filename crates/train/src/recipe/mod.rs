//! The training recipe: one TOML file per run, sections `[model] [data] [lora] [optim] [train]
//! [output]`. Unknown keys and invalid values are errors naming the key. Command-line overrides
//! are `section.key=value` with the value written as in TOML (`optim.lr=1e-4`,
//! `data.train="x.jsonl"`, bare strings are accepted too).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schedule::Schedule;

mod sections;
pub use sections::*;

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// Syntax errors and unknown keys (the message names the key and line).
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid recipe value `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

type Result<T> = std::result::Result<T, RecipeError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default)]
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub lora: LoraSection,
    #[serde(default)]
    pub optim: OptimSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub early_stopping: EarlyStoppingSection,
    #[serde(default)]
    pub augment: AugmentSection,
    #[serde(default)]
    pub audit: AuditSection,
    pub output: OutputSection,
}

/// Sets `a.b.c = value` in a TOML table, creating sections as needed. The value is parsed as
/// TOML; a value that does not parse (e.g. `runs/x`) is taken as a string.
fn set_override(doc: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| RecipeError::Invalid {
        key: spec.to_string(),
        reason: "an override is written section.key=value".into(),
    })?;
    let key = key.trim();
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let (last, sections) = parts
        .split_last()
        .filter(|(l, _)| !l.is_empty())
        .ok_or_else(|| RecipeError::Invalid { key: key.to_string(), reason: "empty key".into() })?;
    let mut table = doc;
    for s in sections {
        let entry = table.entry(s.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| RecipeError::Invalid { key: key.to_string(), reason: format!("`{s}` is not a section") })?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

impl Recipe {
    /// Reads `path`, applies `overrides`, checks every value, and makes relative paths relative
    /// to the recipe's folder.
    ///
    /// # Errors
    /// `Io`, `Parse` (syntax, unknown key, wrong type — naming the key) or `Invalid` (naming the key).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| RecipeError::Io { path: path.to_path_buf(), err })?;
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| RecipeError::Parse { path: path.to_path_buf(), reason: one_line(&e) })?;
        for o in overrides {
            set_override(&mut doc, o)?;
        }
        let origin =
            if overrides.is_empty() { String::new() } else { " (after the command-line overrides)".to_string() };
        let mut recipe: Recipe = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| {
            RecipeError::Parse { path: path.to_path_buf(), reason: format!("{}{origin}", one_line(&e)) }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = lexical_normalize(&base.join(&*p));
            }
        };
        rel(&mut recipe.data.train);
        for p in recipe
            .data
            .val_file
            .iter_mut()
            .chain(recipe.data.manifest.iter_mut())
            .chain(recipe.data.chat_template.iter_mut())
        {
            rel(p);
        }
        recipe.data.trusted_keys.iter_mut().for_each(rel);
        rel(&mut recipe.output.dir);
        if let Some(p) = recipe.model.path.as_mut() {
            rel(p);
        }
        recipe.validate()?;
        Ok(recipe)
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| Err(RecipeError::Invalid { key: key.to_string(), reason });
        let o = &self.optim;
        if !o.lr.is_finite() || o.lr <= 0.0 {
            return bad("optim.lr", format!("must be a finite number > 0, got {}", o.lr));
        }
        if o.weight_decay.is_nan() || o.weight_decay < 0.0 {
            return bad("optim.weight_decay", format!("must be >= 0, got {}", o.weight_decay));
        }
        if o.max_grad_norm.is_nan() || o.max_grad_norm < 0.0 {
            return bad("optim.max_grad_norm", format!("must be >= 0, got {}", o.max_grad_norm));
        }
        if let Err(e) = o.schedule.parse::<Schedule>() {
            return bad("optim.schedule", e);
        }
        if !matches!(self.train.method.as_str(), "lora" | "full") {
            return bad("train.method", format!("must be `lora` or `full`, got `{}`", self.train.method));
        }
        if self.lora.r == 0 {
            return bad("lora.r", "must be at least 1".into());
        }
        if !self.lora.alpha.is_finite() || self.lora.alpha <= 0.0 {
            return bad("lora.alpha", format!("must be > 0, got {}", self.lora.alpha));
        }
        if !(0.0..1.0).contains(&self.lora.dropout) {
            return bad("lora.dropout", format!("must be in [0, 1), got {}", self.lora.dropout));
        }
        if self.data.max_len < 2 {
            return bad("data.max_len", format!("must be at least 2 tokens, got {}", self.data.max_len));
        }
        if let Some(f) = self.data.max_reject_fraction {
            if !(0.0..=1.0).contains(&f) {
                return bad("data.max_reject_fraction", format!("must be in [0, 1], got {f}"));
            }
        }
        match self.data.val_size {
            ValSizeSpec::Fraction(f) if !(f > 0.0 && f < 1.0) => {
                return bad(
                    "data.val_size",
                    format!("a fraction must be in (0, 1), got {f}; write a count as an integer"),
                );
            }
            _ => {}
        }
        let th = self.data.near_dup_threshold;
        if !(th > 0.0 && th <= 1.0) {
            return bad("data.near_dup_threshold", format!("must be in (0, 1], got {th}"));
        }
        if o.l1.is_nan() || o.l1 < 0.0 || o.l1.is_infinite() {
            return bad("optim.l1", format!("must be a finite number >= 0, got {}", o.l1));
        }
        let t = &self.train;
        if t.neftune_noise_alpha.is_nan() || t.neftune_noise_alpha < 0.0 || t.neftune_noise_alpha.is_infinite() {
            return bad(
                "train.neftune_noise_alpha",
                format!("must be a finite number >= 0, got {}", t.neftune_noise_alpha),
            );
        }
        if !(0.0..1.0).contains(&t.loss_ema) {
            return bad("train.loss_ema", format!("must be in [0, 1), got {}", t.loss_ema));
        }
        let es = &self.early_stopping;
        if !matches!(es.metric.as_str(), "val_loss" | "val_perplexity" | "val_token_accuracy") {
            return bad(
                "early_stopping.metric",
                format!("must be `val_loss`, `val_perplexity` or `val_token_accuracy`, got `{}`", es.metric),
            );
        }
        if let Some(d) = &es.direction {
            if !matches!(d.as_str(), "minimize" | "maximize") {
                return bad("early_stopping.direction", format!("must be `minimize` or `maximize`, got `{d}`"));
            }
        }
        if es.patience == 0 {
            return bad("early_stopping.patience", "must be at least 1 evaluation".into());
        }
        if es.min_delta.is_nan() || es.min_delta < 0.0 {
            return bad("early_stopping.min_delta", format!("must be >= 0, got {}", es.min_delta));
        }
        if self.data.manifest.is_none()
            && (!self.data.trusted_keys.is_empty() || self.data.require_signature == Some(true))
        {
            return bad(
                "data.manifest",
                "trusted_keys and require_signature need a manifest (`tuneguard data lock`)".into(),
            );
        }
        if !matches!(self.audit.lint.as_str(), "fail" | "warn" | "off") {
            return bad("audit.lint", format!("must be `fail`, `warn` or `off`, got `{}`", self.audit.lint));
        }
        if let Err(e) = self.audit.checks.resolve() {
            return Err(RecipeError::Invalid { key: "audit.checks".into(), reason: e.to_string() });
        }
        if self.augment.system_prompt_copies > 64 {
            return bad(
                "augment.system_prompt_copies",
                format!("{} copies of every example is too many (at most 64)", self.augment.system_prompt_copies),
            );
        }
        let df = self.train.divergence_factor;
        if df.is_nan() || df < 0.0 {
            return bad("train.divergence_factor", format!("must be >= 0 (0 = off), got {df}"));
        }
        if self.augment.system_prompts.iter().any(|p| p.trim().is_empty()) {
            return bad("augment.system_prompts", "an empty system prompt is not a variation".into());
        }
        for (key, v) in [
            ("train.batch_size", self.train.batch_size),
            ("train.grad_accum", self.train.grad_accum),
            ("train.epochs", self.train.epochs),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The recipe with every path made absolute (as written to a run's `config.toml`, so
    /// `--resume` works from any folder).
    pub fn absolutized(&self) -> Recipe {
        let mut r = self.clone();
        let abs = |p: &mut PathBuf| {
            if let Ok(a) = std::path::absolute(&*p) {
                *p = lexical_normalize(&a);
            }
        };
        abs(&mut r.data.train);
        abs(&mut r.output.dir);
        for p in r
            .data
            .val_file
            .iter_mut()
            .chain(r.model.path.iter_mut())
            .chain(r.data.manifest.iter_mut())
            .chain(r.data.chat_template.iter_mut())
        {
            abs(p);
        }
        r.data.trusted_keys.iter_mut().for_each(abs);
        r
    }

    /// sha256 of everything that decides the training result (the resolved recipe without its
    /// output folder): a resumed run must match the checkpoint's.
    pub fn training_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut r = self.absolutized();
        r.output.dir = PathBuf::new();
        r.train.keep_checkpoints = 0;
        Sha256::digest(r.to_toml().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Full fine-tuning rather than LoRA.
    pub fn is_full(&self) -> bool {
        self.train.method == "full"
    }

    /// Whether smaller values of the early-stopping metric are better.
    pub fn minimize_metric(&self) -> bool {
        match self.early_stopping.direction.as_deref() {
            Some(d) => d == "minimize",
            None => self.early_stopping.metric != "val_token_accuracy",
        }
    }

    pub fn schedule(&self) -> Schedule {
        self.optim.schedule.parse().unwrap_or_default()
    }

    /// The resolved recipe as TOML (every default written out).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Removes `.` and `name/..` pairs without touching the file system
/// (`configs/../runs/x` → `runs/x`), so paths print the way users wrote them.
fn lexical_normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.toml");
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    const MINIMAL: &str = "[data]\ntrain = \"d.jsonl\"\n[output]\ndir = \"out\"\n";

    #[test]
    fn defaults_and_relative_paths() {
        let (dir, p) = write(MINIMAL);
        let r = Recipe::load(&p, &[]).expect("load");
        assert_eq!(r.data.train, dir.path().join("d.jsonl"));
        assert_eq!(r.lora.r, 16);
        assert_eq!(r.schedule(), Schedule::Cosine);
        let again: Recipe = toml::from_str(&r.to_toml()).expect("round trip");
        assert_eq!(again, r);
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(lexical_normalize(Path::new("configs/../runs/q")), PathBuf::from("runs/q"));
        assert_eq!(lexical_normalize(Path::new("./a/./b")), PathBuf::from("a/b"));
        assert_eq!(lexical_normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(lexical_normalize(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn overrides_apply() {
        let (_d, p) = write(MINIMAL);
        let r = Recipe::load(&p, &["optim.lr=1e-3".into(), "train.seed=7".into(), "output.dir=runs/x".into()])
            .expect("load");
        assert_eq!(r.optim.lr, 1e-3);
        assert_eq!(r.train.seed, 7);
        assert!(r.output.dir.ends_with("runs/x"));
    }

    #[test]
    fn errors_name_the_key() {
        let (_d, p) = write(&format!("{MINIMAL}[optim]\nlearning_rate = 1\n"));
        let e = Recipe::load(&p, &[]).expect_err("unknown key").to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let (_d, p) = write(MINIMAL);
        for (o, key) in [
            ("optim.lr=0", "optim.lr"),
            ("optim.lr=-1", "optim.lr"),
            ("lora.r=0", "lora.r"),
            ("optim.schedule=\"exp\"", "optim.schedule"),
            ("augment.system_prompt_copies=1000", "augment.system_prompt_copies"),
            ("train.divergence_factor=nan", "train.divergence_factor"),
            ("data.val_size=1.5", "data.val_size"),
            ("early_stopping.metric=\"bleu\"", "early_stopping.metric"),
            ("early_stopping.patience=0", "early_stopping.patience"),
            ("optim.l1=-1", "optim.l1"),
            ("train.neftune_noise_alpha=-1", "train.neftune_noise_alpha"),
            ("audit.lint=\"maybe\"", "audit.lint"),
        ] {
            let e = Recipe::load(&p, &[o.into()]).expect_err(o).to_string();
            assert!(e.contains(key), "{o}: {e}");
        }
        let e = Recipe::load(&p, &["lora.r=\"x\"".into()]).expect_err("type").to_string();
        assert!(e.contains('r'), "{e}");
    }
}
