//! The recipe's sections, with their defaults. Every field's doc gives its unit.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tuneguard_data::format::DataFormat;
use tuneguard_data::tokenize::Overflow;
use tuneguard_model::llama::Projection;
use tuneguard_records::{Direction, Metric};
use tuneguard_train::schedule::Schedule;

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
    /// Longest example in tokens (2 up to the model's context length).
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    /// `truncate` or `drop` for longer examples.
    #[serde(default)]
    pub overflow: Overflow,
    /// Pack several examples into each row of up to `max_len` tokens (per-example positions,
    /// no attention across examples).
    #[serde(default)]
    pub packing: bool,
    /// Validation examples held out of `train` (seeded): a count (`25`) or a fraction of the
    /// examples (`0.1`). Ignored when `val_file` is given. 0 = no validation set.
    #[serde(default)]
    pub val_size: ValSizeSpec,
    /// A separate validation file (same format as `train`); replaces the split.
    #[serde(default)]
    pub val_file: Option<PathBuf>,
    /// Stratify the split by this field of the records (e.g. `category`): each value keeps its
    /// share in the validation set.
    #[serde(default)]
    pub stratify_by: Option<String>,
    /// Remove validation examples that duplicate a training example (exact after NFKC, case and
    /// whitespace normalization, or near: word-shingle Jaccard ≥ `near_dup_threshold`).
    #[serde(default = "d_true")]
    pub leakage_check: bool,
    /// Train on at most the first this many training examples (file order, before augmentation;
    /// 0 = all). For quick experiments and small-data demonstrations.
    #[serde(default)]
    pub max_train_examples: usize,
    /// Jaccard similarity (0–1) of word 3-gram sets above which two examples are near duplicates.
    #[serde(default = "d_near")]
    pub near_dup_threshold: f64,
    /// A chat template (a `.jinja` file, or a Hugging Face model folder with one) to render the
    /// data with instead of the model's own. The lint warns when it renders differently.
    #[serde(default)]
    pub chat_template: Option<PathBuf>,
    /// Data manifest from `tuneguard data lock` (relative paths: from the recipe's folder). When
    /// given, every data file must be listed in it with the same size and sha256.
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// Public keys (`tuneguard data keygen`) trusted to sign the manifest.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Require a valid signature by a trusted key (default: when `trusted_keys` is non-empty).
    #[serde(default)]
    pub require_signature: Option<bool>,
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
    /// lora_alpha (> 0); the update is scaled by alpha / r.
    #[serde(default = "d_alpha")]
    pub alpha: f32,
    /// Dropout probability on the LoRA branch's input, in [0, 1).
    #[serde(default)]
    pub dropout: f32,
    /// Projections to adapt, PEFT names (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`); an unknown name is an error.
    #[serde(default = "d_targets")]
    pub target_modules: Vec<Projection>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// Peak learning rate (> 0).
    #[serde(default = "d_lr")]
    pub lr: f32,
    /// Decoupled weight decay (AdamW), ≥ 0: each step multiplies the weights by
    /// 1 − lr·weight_decay, so lr·weight_decay must stay below 1.
    #[serde(default)]
    pub weight_decay: f32,
    /// AdamW's first-moment decay, in [0, 1).
    #[serde(default = "d_beta1")]
    pub beta1: f32,
    /// AdamW's second-moment decay, in [0, 1).
    #[serde(default = "d_beta2")]
    pub beta2: f32,
    /// AdamW's denominator term (> 0).
    #[serde(default = "d_eps")]
    pub eps: f32,
    /// L1 penalty λ·Σ|w| over the trainable weights, added to the loss (0 = off).
    #[serde(default)]
    pub l1: f32,
    /// Global gradient-norm clip, ≥ 0 (0 = off).
    #[serde(default = "d_clip")]
    pub max_grad_norm: f32,
    /// `constant`, `linear` or `cosine` (default).
    #[serde(default = "d_schedule")]
    pub schedule: Schedule,
    /// Warm-up, in optimizer steps (a warning when it is not below the run's steps).
    #[serde(default)]
    pub warmup_steps: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// `lora` (adapter only, default) or `full` (every weight).
    #[serde(default)]
    pub method: Method,
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
    /// Loss watchdog: stop when a step's loss exceeds this multiple (≥ 1) of the first step's
    /// (0 = off; a NaN or infinite loss always stops the run).
    #[serde(default = "d_divergence")]
    pub divergence_factor: f64,
    /// Evaluate the validation set every this many optimizer steps, and at the end
    /// (0 = about ten evaluations per run).
    #[serde(default)]
    pub eval_steps: u64,
    /// NEFTune: uniform noise of magnitude alpha/√(t·d) on the input embeddings while training
    /// (Jain et al. 2023; 5 is the paper's usual value; ≥ 0, 0 = off).
    #[serde(default)]
    pub neftune_noise_alpha: f32,
    /// Overfitting alarm: raised when the validation metric worsens while the smoothed training
    /// loss improves for this many evaluations in a row (0 = off).
    #[serde(default = "d_alarm")]
    pub overfit_alarm_evals: usize,
    /// Smoothing factor β of the training loss's exponential moving average, in [0, 1) (0 = none).
    #[serde(default = "d_ema")]
    pub loss_ema: f64,
    /// Checkpoints kept besides the best one (a checkpoint is written at every evaluation).
    #[serde(default = "d_keep")]
    pub keep_checkpoints: usize,
}

/// `[early_stopping]`: stop when the validation metric stops improving and keep the best weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSection {
    /// On by default when there is a validation set.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `val_loss`, `val_perplexity` or `val_token_accuracy`.
    #[serde(default = "d_metric")]
    pub metric: Metric,
    /// `minimize` or `maximize`; by default the metric's natural direction.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Evaluations without improvement before stopping.
    #[serde(default = "d_patience")]
    pub patience: usize,
    /// Smallest change that counts as an improvement, in the metric's unit (≥ 0).
    #[serde(default)]
    pub min_delta: f64,
    /// At the end, write the best evaluation's weights (not the last) to `adapter/` or `model/`.
    #[serde(default = "d_true")]
    pub restore_best: bool,
}

/// `[augment]`: modified copies of training examples (never of validation examples).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AugmentSection {
    /// Extra copies of each chat example, each rendered with a system prompt drawn (seeded)
    /// from `system_prompts` (0 = off).
    #[serde(default)]
    pub system_prompt_copies: usize,
    /// System prompts to draw from; empty = a built-in pool of generic assistant prompts.
    #[serde(default)]
    pub system_prompts: Vec<String>,
}

/// `[audit]`: the data guard run before training (row checks, then the pre-flight lint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Run the row checks on the data files before training (the lint always runs unless `lint = "off"`).
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// What a lint finding of severity `error` does: `fail` (stop before training, default),
    /// `warn`, or `off` (no lint). Warnings are always only reported.
    #[serde(default)]
    pub lint: LintPolicy,
    /// The row checks: `actions = { near_duplicate = "warn", pii = "quarantine" }` (check ids or
    /// the groups `schema`, `duplicates`, `pii`; `off`, `warn`, `quarantine` or `fail`) and
    /// thresholds; see `tuneguard audit --help`.
    #[serde(default)]
    pub checks: tuneguard_audit::checks::AuditConfig,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { enabled: true, lint: LintPolicy::default(), checks: Default::default() }
    }
}

/// `train.method`: what is trained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A LoRA adapter on the frozen model (Hu et al. 2021).
    #[default]
    Lora,
    /// Every weight of the model.
    Full,
}

/// `audit.lint`: what a pre-flight lint finding of severity `error` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LintPolicy {
    /// Stop before training.
    #[default]
    Fail,
    /// Report it and train.
    Warn,
    /// Run no lint.
    Off,
}

/// A validation size: a count of examples or a fraction of them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ValSizeSpec {
    Count(usize),
    Fraction(f64),
}

impl Default for ValSizeSpec {
    fn default() -> Self {
        ValSizeSpec::Count(0)
    }
}

/// `[forgetting]`: general-domain sets measured with the base model at step 0 and at every
/// evaluation (`general_*` fields in `metrics.jsonl`, `forgetting` in `summary.json`), and the
/// alarm on their relative rise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForgettingSection {
    /// The sets, as `[[forgetting.task]]` tables of a `tuneguard eval` suite: `kind =
    /// "perplexity"` (general text) or `"multiple_choice"`; `data` relative to the recipe.
    #[serde(default)]
    pub task: Vec<tuneguard_eval::suite::TaskConfig>,
    /// The relative rise against the base model (positive = worse) that fires the alarm
    /// (0.1 = 10 %).
    #[serde(default = "d_max_rise")]
    pub max_rise: f64,
    /// Stop the run (keeping the best weights) when the rise passes `max_rise`, instead of
    /// warning.
    #[serde(default)]
    pub stop: bool,
}

impl ForgettingSection {
    /// No set and default settings: left out of a written `config.toml` (so recipes without
    /// it keep their fingerprint).
    pub fn is_default(&self) -> bool {
        *self == ForgettingSection::default()
    }
}

impl Default for ForgettingSection {
    fn default() -> Self {
        ForgettingSection { task: Vec::new(), max_rise: d_max_rise(), stop: false }
    }
}

fn d_max_rise() -> f64 {
    0.1
}

/// `[run]` of a run folder's `config.toml`, and `run` of its `summary.json` (defined in
/// tuneguard-records, with the summary).
pub use tuneguard_records::RunRecord;

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
fn d_targets() -> Vec<Projection> {
    Projection::ALL.to_vec()
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
fn d_schedule() -> Schedule {
    Schedule::Cosine
}
fn d_divergence() -> f64 {
    3.0
}
fn d_true() -> bool {
    true
}
fn d_near() -> f64 {
    0.8
}
fn d_alarm() -> usize {
    2
}
fn d_ema() -> f64 {
    0.9
}
fn d_keep() -> usize {
    2
}
fn d_metric() -> Metric {
    Metric::ValLoss
}
fn d_patience() -> usize {
    3
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
            l1: 0.0,
        }
    }
}
impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            method: Method::default(),
            batch_size: d_batch(),
            grad_accum: 1,
            epochs: 1,
            max_steps: 0,
            seed: 0,
            divergence_factor: d_divergence(),
            eval_steps: 0,
            neftune_noise_alpha: 0.0,
            overfit_alarm_evals: d_alarm(),
            loss_ema: d_ema(),
            keep_checkpoints: d_keep(),
        }
    }
}
impl Default for EarlyStoppingSection {
    fn default() -> Self {
        EarlyStoppingSection {
            enabled: None,
            metric: d_metric(),
            direction: None,
            patience: d_patience(),
            min_delta: 0.0,
            restore_best: true,
        }
    }
}
