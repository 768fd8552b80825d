//! PEFT LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models";
//! file layout of Hugging Face PEFT): `adapter_config.json` + `adapter_model.safetensors` with keys
//! `base_model.model.model.layers.{i}.{module}.lora_{A,B}.weight`, A (r, in), B (out, r), and
//! the update `W x + (lora_alpha / r) · B (A x)` (`lora_alpha / sqrt(r)` with `use_rslora`).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::linear::LoraWeights;
use crate::llama::Llama;
use crate::load::safetensors_source::SafetensorsSource;
use crate::load::TensorSource;

/// The fields of PEFT's `adapter_config.json` that tuneguard reads.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub target_modules: serde_json::Value,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub bias: Option<String>,
    #[serde(default)]
    pub peft_type: Option<String>,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

/// A loaded adapter: per (layer, module) the A and B matrices.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    pub dir: PathBuf,
    pub config: AdapterConfig,
    pub scale: f32,
    /// (layer index, PEFT module name such as `self_attn.q_proj`) → weights.
    pub weights: BTreeMap<(usize, String), LoraWeights>,
}

/// A tensor's shape and f32 values.
type ShapedData = (Vec<usize>, Vec<f32>);

fn invalid(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::InvalidAdapter { path: path.to_path_buf(), reason: reason.into() }
}

/// Splits `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` into
/// (3, "self_attn.q_proj", 'A').
fn parse_key(key: &str) -> Option<(usize, String, char)> {
    let rest = key.strip_prefix("base_model.model.model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, tail) = rest.rsplit_once(".lora_")?;
    let which = match tail {
        "A.weight" | "A.default.weight" => 'A',
        "B.weight" | "B.default.weight" => 'B',
        _ => return None,
    };
    Some((layer.parse().ok()?, module.to_string(), which))
}

impl LoraAdapter {
    /// Reads a PEFT adapter directory.
    ///
    /// # Errors
    /// `Io`/`InvalidAdapter` naming the file: missing files, DoRA, `fan_in_fan_out`, bias
    /// training, rank/alpha patterns, unknown keys or an A without its B.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
        let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| invalid(&cfg_path, e.to_string()))?;
        if config.peft_type.as_deref().is_some_and(|t| t != "LORA") {
            return Err(invalid(&cfg_path, format!("peft_type {:?} is not LORA", config.peft_type)));
        }
        if config.r == 0 {
            return Err(invalid(&cfg_path, "r must be > 0"));
        }
        for (bad, what) in [
            (config.use_dora, "use_dora"),
            (config.fan_in_fan_out, "fan_in_fan_out"),
            (!config.rank_pattern.is_empty(), "rank_pattern"),
            (!config.alpha_pattern.is_empty(), "alpha_pattern"),
            (config.bias.as_deref().is_some_and(|b| b != "none"), "bias"),
        ] {
            if bad {
                return Err(invalid(&cfg_path, format!("`{what}` is not supported")));
            }
        }
        let scale = if config.use_rslora {
            config.lora_alpha / (config.r as f64).sqrt()
        } else {
            config.lora_alpha / config.r as f64
        } as f32;
        let st_path = dir.join("adapter_model.safetensors");
        if !st_path.is_file() {
            return Err(invalid(&st_path, "file not found (adapter_model.bin is not supported)"));
        }
        let src = SafetensorsSource::open_files(dir, std::slice::from_ref(&st_path))?;
        let mut pairs: BTreeMap<(usize, String), (Option<ShapedData>, Option<ShapedData>)> = BTreeMap::new();
        let mut names: Vec<String> = src.tensor_names().map(str::to_string).collect();
        names.sort();
        for name in names {
            let (layer, module, which) =
                parse_key(&name).ok_or_else(|| invalid(&st_path, format!("unexpected tensor `{name}`")))?;
            let t = src.load(&name)?.ok_or_else(|| invalid(&st_path, format!("cannot read `{name}`")))?;
            let slot = pairs.entry((layer, module)).or_default();
            let v = Some((t.shape, t.data));
            if which == 'A' {
                slot.0 = v;
            } else {
                slot.1 = v;
            }
        }
        let mut weights = BTreeMap::new();
        for ((layer, module), (a, b)) in pairs {
            let (Some((sa, a)), Some((sb, b))) = (a, b) else {
                return Err(invalid(
                    &st_path,
                    format!("layer {layer} {module}: lora_A and lora_B must both be present"),
                ));
            };
            if sa.len() != 2 || sb.len() != 2 || sa[0] != config.r || sb[1] != config.r {
                return Err(invalid(
                    &st_path,
                    format!("layer {layer} {module}: shapes A {sa:?} B {sb:?} do not match r = {}", config.r),
                ));
            }
            weights.insert((layer, module), LoraWeights { rank: config.r, a, b, scale });
        }
        if weights.is_empty() {
            return Err(invalid(&st_path, "no LoRA tensors found"));
        }
        Ok(LoraAdapter { dir: dir.to_path_buf(), config, scale, weights })
    }

    /// Attaches the adapter to the model's projections (replacing any adapter already there).
    ///
    /// # Errors
    /// `InvalidAdapter` when a layer or module does not exist or a shape disagrees with the model.
    pub fn apply(&self, model: &mut Llama) -> Result<()> {
        let n_layers = model.layers.len();
        for ((layer, module), w) in &self.weights {
            let bad = |r: String| invalid(&self.dir, r);
            let l = model
                .layers
                .get_mut(*layer)
                .ok_or_else(|| bad(format!("layer {layer} does not exist (the model has {n_layers})")))?;
            let (_, lin) = l
                .projections_mut()
                .into_iter()
                .find(|(n, _)| n == module)
                .ok_or_else(|| bad(format!("module `{module}` is not a LoRA target tuneguard knows")))?;
            if w.a.len() != w.rank * lin.in_features || w.b.len() != lin.out_features * w.rank {
                return Err(bad(format!(
                    "layer {layer} {module}: adapter shapes do not fit the model's ({}, {}) weight",
                    lin.out_features, lin.in_features
                )));
            }
            lin.lora = Some(w.clone());
        }
        Ok(())
    }
}

/// Writes the LoRA weights attached to `model` as a PEFT adapter directory
/// (`adapter_config.json` + `adapter_model.safetensors`, PEFT key names) that
/// `peft.PeftModel.from_pretrained` and [`LoraAdapter::load`] read. The directory is written
/// under a temporary name and renamed into place; `out` must not exist.
///
/// # Errors
/// `InvalidAdapter` when the model has no LoRA weights or ranks/scales differ between modules,
/// `Io` naming the path when writing fails.
pub fn save_adapter(model: &Llama, out: &Path, base_model: &str, lora_dropout: f64) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    let mut modules = std::collections::BTreeSet::new();
    let mut rank_scale: Option<(usize, f32)> = None;
    for (i, layer) in model.layers.iter().enumerate() {
        for (module, lin) in layer.projections() {
            let Some(l) = &lin.lora else { continue };
            if rank_scale.is_some_and(|rs| rs != (l.rank, l.scale)) {
                return Err(invalid(
                    out,
                    "modules with different ranks or scales cannot share one adapter_config.json",
                ));
            }
            rank_scale = Some((l.rank, l.scale));
            modules.insert(module.rsplit('.').next().unwrap_or(module).to_string());
            let key = |w: &str| format!("base_model.model.model.layers.{i}.{module}.lora_{w}.weight");
            tensors.push((key("A"), vec![l.rank, lin.in_features], &l.a));
            tensors.push((key("B"), vec![lin.out_features, l.rank], &l.b));
        }
    }
    let Some((r, scale)) = rank_scale else { return Err(invalid(out, "the model has no LoRA weights")) };
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": (scale as f64 * r as f64 * 1e6).round() / 1e6,
        "lora_dropout": lora_dropout,
        "target_modules": modules.into_iter().collect::<Vec<_>>(),
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": null,
    });
    crate::save::write_dir_atomically(out, |dir| {
        let cfg_path = dir.join("adapter_config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| invalid(&cfg_path, e.to_string()))?;
        std::fs::write(&cfg_path, text).map_err(|e| ModelError::io(&cfg_path, e))?;
        crate::save::write_f32_safetensors(
            &dir.join("adapter_model.safetensors"),
            tensors.iter().map(|(n, shape, d)| (n.as_str(), shape.as_slice(), *d)),
            None,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_adapter_reloads_with_peft_layout() {
        let Some(model) = crate::testutil::require_default_model() else { return };
        let init = crate::testutil::shared_dir().join("golden/peft_lora_r4/adapter_init");
        let m = crate::engine::load_with_adapter(&model, Some(&init)).expect("load");
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("adapter");
        save_adapter(&m.model, &out, "HuggingFaceTB/SmolLM2-135M-Instruct", 0.0).expect("save");
        let (a, b) = (LoraAdapter::load(&init).expect("init"), LoraAdapter::load(&out).expect("saved"));
        assert_eq!(a.scale, b.scale);
        assert_eq!(a.config.r, b.config.r);
        assert_eq!(a.weights.keys().collect::<Vec<_>>(), b.weights.keys().collect::<Vec<_>>());
        for (k, w) in &a.weights {
            assert_eq!((&w.a, &w.b), (&b.weights[k].a, &b.weights[k].b), "{k:?}");
        }
        // Same key names as the file PEFT wrote.
        let keys = |p: &Path| -> Vec<String> {
            let bytes = std::fs::read(p.join("adapter_model.safetensors")).expect("read");
            let mut k: Vec<String> = safetensors::SafeTensors::deserialize(&bytes)
                .expect("st")
                .names()
                .into_iter()
                .map(str::to_string)
                .collect();
            k.sort();
            k
        };
        assert_eq!(keys(&init), keys(&out));
        assert!(save_adapter(&m.model, &out, "x", 0.0).is_err(), "an existing output is refused");
    }

    #[test]
    fn parses_peft_keys() {
        assert_eq!(
            parse_key("base_model.model.model.layers.12.mlp.down_proj.lora_B.weight"),
            Some((12, "mlp.down_proj".to_string(), 'B'))
        );
        assert_eq!(parse_key("base_model.model.lm_head.weight"), None);
    }
}
