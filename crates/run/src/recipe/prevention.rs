//! The forgetting-prevention sections of the recipe, `[replay] [distill] [ewc] [l2sp]`, each off
//! by default and left out of a written `config.toml` while it is (so older recipes keep their
//! fingerprint). Every field's doc gives its unit.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tuneguard_data::format::DataFormat;

/// `[replay]`: general-domain examples mixed into every optimizer step against forgetting
/// (experience replay; e.g. Rolnick et al. 2019, "Experience Replay for Continual Learning").
/// They are read like the training data (text rows are supervised on every token, chat rows on
/// the assistant turns), cut to `data.max_len`, used in a seeded order, counted in the data
/// summary and never part of validation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReplaySection {
    /// JSONL or CSV file of general-domain examples (relative paths: from the recipe's folder).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Record shape; detected from the first record when absent.
    #[serde(default)]
    pub format: Option<DataFormat>,
    /// Fraction of each optimizer step's rows that are replay rows, in [0, 1) (0 = off): with
    /// `n` task rows per step, n·ratio/(1 − ratio) replay rows are added (the fraction carried
    /// over to later steps).
    #[serde(default)]
    pub ratio: f64,
}

impl ReplaySection {
    pub fn is_default(&self) -> bool {
        *self == ReplaySection::default()
    }
}

/// Where distillation applies (see `tuneguard_train::distill::DistillOn`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DistillOnSpec {
    /// The supervised tokens of every row.
    #[default]
    Supervised,
    /// The replay rows only (needs `[replay]`); they then get no cross-entropy.
    Replay,
}

/// `[distill]`: knowledge distillation from the frozen base (Hinton et al. 2015): λ·T²·KL(base ‖
/// tuned) of the next-token distributions at temperature T, added to the loss. With LoRA the base
/// is the same weights with the adapter off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistillSection {
    /// Weight λ, ≥ 0 (0 = off).
    #[serde(default)]
    pub lambda: f64,
    /// Temperature T (> 0).
    #[serde(default = "d_temperature")]
    pub temperature: f64,
    /// `supervised` or `replay`.
    #[serde(default)]
    pub on: DistillOnSpec,
}

impl Default for DistillSection {
    fn default() -> Self {
        DistillSection { lambda: 0.0, temperature: d_temperature(), on: DistillOnSpec::Supervised }
    }
}

impl DistillSection {
    pub fn is_default(&self) -> bool {
        *self == DistillSection::default()
    }
}

fn d_temperature() -> f64 {
    2.0
}

/// `[ewc]`: elastic weight consolidation (Kirkpatrick et al. 2017): λ/2·Σ F·ΔW² over the adapted
/// projections, F the diagonal Fisher information of the base weights on general examples,
/// computed once before training and cached as safetensors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EwcSection {
    /// Weight λ, ≥ 0 (0 = off).
    #[serde(default)]
    pub lambda: f64,
    /// General-domain examples for the Fisher (relative: from the recipe's folder); default:
    /// `replay.data`.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Record shape of `data`; detected when absent.
    #[serde(default)]
    pub format: Option<DataFormat>,
    /// Examples the Fisher is estimated on (the first ones of `data`, ≥ 1).
    #[serde(default = "d_fisher_examples")]
    pub examples: usize,
    /// Divide the Fisher by its mean (so λ is on L2-SP's scale) instead of using it raw.
    #[serde(default = "d_normalize")]
    pub normalize: bool,
    /// Cache file of the Fisher (relative: from the recipe's folder); default:
    /// `ewc_fisher.safetensors` in the run folder. Reused when model, data and settings match.
    #[serde(default)]
    pub fisher: Option<PathBuf>,
}

impl Default for EwcSection {
    fn default() -> Self {
        EwcSection {
            lambda: 0.0,
            data: None,
            format: None,
            examples: d_fisher_examples(),
            normalize: true,
            fisher: None,
        }
    }
}

impl EwcSection {
    pub fn is_default(&self) -> bool {
        *self == EwcSection::default()
    }
}

fn d_fisher_examples() -> usize {
    32
}

/// `[l2sp]`: L2-SP (Li et al. 2018): λ/2·‖ΔW‖² over the adapted projections, pulling the tuned
/// weights towards the base ("starting point") instead of towards 0.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct L2spSection {
    /// Weight λ, ≥ 0 (0 = off).
    #[serde(default)]
    pub lambda: f64,
}

impl L2spSection {
    pub fn is_default(&self) -> bool {
        *self == L2spSection::default()
    }
}

fn d_normalize() -> bool {
    true
}
