//! The training recipe: one TOML file per run, sections `[model] [data] [lora] [optim] [train]
//! [output]`. Unknown keys and invalid values are errors naming the key. Command-line overrides
//! are `section.key=value` with the value written as in TOML (`optim.lr=1e-4`,
//! `data.train="x.jsonl"`, bare strings are accepted too).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tuneguard_data::format::DataFormat;
use tuneguard_data::tokenize::Overflow;

use crate::schedule::Schedule;

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
    pub output: OutputSection,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// GGUF file or Hugging Face directory; empty = the default model.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// JSONL or CSV file of training examples (relative paths: from the recipe's folder).
    pub train: PathBuf,
    /// Record shape; detected from the first record when absent.
    #[serde(default)]
    pub format: Option<DataFormat>,
    /// Longest example in tokens.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    /// `truncate` or `drop` for longer examples.
    #[serde(default)]
    pub overflow: Overflow,
    /// Pack several examples into each row of up to `max_len` tokens (per-example positions,
    /// no attention across examples).
    #[serde(default)]
    pub packing: bool,
    /// Examples held out to measure the loss before and after training (count, seeded).
    #[serde(default)]
    pub val_size: usize,
    /// Largest tolerated fraction (0–1) of rejected rows.
    #[serde(default)]
    pub max_reject_fraction: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank r (≥ 1).
    #[serde(default = "d_r")]
    pub r: usize,
    /// lora_alpha; the update is scaled by alpha / r.
    #[serde(default = "d_alpha")]
    pub alpha: f32,
    /// Dropout probability on the LoRA branch's input, in [0, 1).
    #[serde(default)]
    pub dropout: f32,
    /// Projections to adapt, PEFT names.
    #[serde(default = "d_targets")]
    pub target_modules: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Peak learning rate (> 0).
    #[serde(default = "d_lr")]
    pub lr: f32,
    /// Decoupled weight decay (AdamW).
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default = "d_beta1")]
    pub beta1: f32,
    #[serde(default = "d_beta2")]
    pub beta2: f32,
    #[serde(default = "d_eps")]
    pub eps: f32,
    /// Global gradient-norm clip (0 = off).
    #[serde(default = "d_clip")]
    pub max_grad_norm: f32,
    /// `constant`, `linear` or `cosine`.
    #[serde(default = "d_schedule")]
    pub schedule: String,
    /// Warm-up, in optimizer steps.
    #[serde(default)]
    pub warmup_steps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// `lora` (adapter only) or `full` (every weight).
    #[serde(default = "d_method")]
    pub method: String,
    /// Examples per micro-batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    /// Passes over the training data (used when `max_steps` is 0).
    #[serde(default = "d_one")]
    pub epochs: usize,
    /// Optimizer steps (0 = as many as `epochs` take).
    #[serde(default)]
    pub max_steps: u64,
    /// Seed for the split, shuffling and LoRA initialization.
    #[serde(default)]
    pub seed: u64,
    /// Loss watchdog: stop when a step's loss exceeds this multiple of the first step's
    /// (0 = off; a NaN or infinite loss always stops the run).
    #[serde(default = "d_divergence")]
    pub divergence_factor: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Run folder (relative paths: from the recipe's folder).
    pub dir: PathBuf,
}

fn d_max_len() -> usize {
    512
}
fn d_r() -> usize {
    16
}
fn d_alpha() -> f32 {
    32.0
}
fn d_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn d_lr() -> f32 {
    2e-4
}
fn d_beta1() -> f32 {
    0.9
}
fn d_beta2() -> f32 {
    0.999
}
fn d_eps() -> f32 {
    1e-8
}
fn d_clip() -> f32 {
    1.0
}
fn d_schedule() -> String {
    "cosine".into()
}
fn d_method() -> String {
    "lora".into()
}
fn d_divergence() -> f64 {
    3.0
}
fn d_batch() -> usize {
    4
}
fn d_one() -> usize {
    1
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection { r: d_r(), alpha: d_alpha(), dropout: 0.0, target_modules: d_targets() }
    }
}
impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            lr: d_lr(),
            weight_decay: 0.0,
            beta1: d_beta1(),
            beta2: d_beta2(),
            eps: d_eps(),
            max_grad_norm: d_clip(),
            schedule: d_schedule(),
            warmup_steps: 0,
        }
    }
}
impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            method: d_method(),
            batch_size: d_batch(),
            grad_accum: 1,
            epochs: 1,
            max_steps: 0,
            seed: 0,
            divergence_factor: d_divergence(),
        }
    }
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

    /// Full fine-tuning rather than LoRA.
    pub fn is_full(&self) -> bool {
        self.train.method == "full"
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
        ] {
            let e = Recipe::load(&p, &[o.into()]).expect_err(o).to_string();
            assert!(e.contains(key), "{o}: {e}");
        }
        let e = Recipe::load(&p, &["lora.r=\"x\"".into()]).expect_err("type").to_string();
        assert!(e.contains('r'), "{e}");
    }
}
