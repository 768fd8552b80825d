//! Model hyper-parameters of the Llama family, read from a Hugging Face `config.json` or from GGUF
//! metadata, and validated once so the forward pass never sees an inconsistent shape.
use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;

/// Architectures that share the Llama decoder (RMSNorm, RoPE, GQA, SwiGLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 2/3, SmolLM/SmolLM2 and other `LlamaForCausalLM` checkpoints.
    Llama,
    /// Mistral: Llama plus an optional sliding attention window.
    Mistral,
    /// Qwen2: Llama with biases on the q/k/v projections.
    Qwen2,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// Llama 3 style RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Validated hyper-parameters. Shapes use the legend d = hidden, h = heads, kv = kv-heads,
/// hd = head dim, v = vocab.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Context window in tokens.
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// `lm_head` shares the token-embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2, or Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// o_proj carries a bias (Llama `attention_bias`).
    pub o_bias: bool,
    /// Mistral's sliding attention window in tokens, if any.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    /// transformers >= 5 moves `rope_theta` and `rope_scaling` here.
    rope_parameters: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    sliding_window: Option<serde_json::Value>,
    #[serde(default)]
    use_sliding_window: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
    eos_token_id: Option<serde_json::Value>,
    hidden_act: Option<String>,
}

fn token_ids(v: &Option<serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect(),
        _ => Vec::new(),
    }
}

fn parse_rope_scaling(v: &serde_json::Value, path: &Path) -> Result<Option<Llama3RopeScaling>> {
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default");
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64());
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let get = |k: &str| {
                num(k).ok_or_else(|| ModelError::InvalidConfig {
                    path: path.to_path_buf(),
                    reason: format!("rope_scaling.{k} is missing"),
                })
            };
            Ok(Some(Llama3RopeScaling {
                factor: get("factor")?,
                low_freq_factor: get("low_freq_factor")?,
                high_freq_factor: get("high_freq_factor")?,
                original_max_position_embeddings: get("original_max_position_embeddings")? as usize,
            }))
        }
        other => Err(ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason: format!("rope scaling type `{other}` is not supported (supported: default, llama3)"),
        }),
    }
}

impl ModelConfig {
    /// Reads and validates a Hugging Face `config.json`.
    ///
    /// # Errors
    /// `UnsupportedArchitecture` for a `model_type` outside llama/mistral/qwen2, `InvalidConfig`
    /// for missing or inconsistent fields.
    pub fn from_hf_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let raw: HfConfig = serde_json::from_str(&text)
            .map_err(|e| ModelError::InvalidConfig { path: path.to_path_buf(), reason: e.to_string() })?;
        let model_type =
            raw.model_type.clone().or_else(|| raw.architectures.first().cloned()).unwrap_or_else(|| "<none>".into());
        let architecture = match model_type.as_str() {
            "llama" | "LlamaForCausalLM" => Architecture::Llama,
            "mistral" | "MistralForCausalLM" => Architecture::Mistral,
            "qwen2" | "Qwen2ForCausalLM" => Architecture::Qwen2,
            other => {
                return Err(ModelError::UnsupportedArchitecture { path: path.to_path_buf(), arch: other.to_string() })
            }
        };
        let missing =
            |k: &str| ModelError::InvalidConfig { path: path.to_path_buf(), reason: format!("`{k}` is missing") };
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(ModelError::InvalidConfig {
                    path: path.to_path_buf(),
                    reason: format!("hidden_act `{act}` is not supported (only silu)"),
                });
            }
        }
        if raw.mlp_bias == Some(true) {
            return Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: "mlp_bias=true is not supported".into(),
            });
        }
        let hidden_size = raw.hidden_size.ok_or_else(|| missing("hidden_size"))?;
        let num_heads = raw.num_attention_heads.ok_or_else(|| missing("num_attention_heads"))?;
        let rope = raw.rope_parameters.as_ref();
        let rope_theta = raw
            .rope_theta
            .or_else(|| rope.and_then(|r| r.get("rope_theta")).and_then(|t| t.as_f64()))
            .unwrap_or(10_000.0);
        let rope_scaling = match raw.rope_scaling.as_ref().or(rope) {
            Some(v) if !v.is_null() => parse_rope_scaling(v, path)?,
            _ => None,
        };
        let sliding_window = match (architecture, raw.use_sliding_window, &raw.sliding_window) {
            (Architecture::Qwen2, Some(false) | None, _) => None,
            (_, _, Some(v)) => v.as_u64().map(|w| w as usize),
            _ => None,
        };
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let cfg = ModelConfig {
            architecture,
            vocab_size: raw.vocab_size.ok_or_else(|| missing("vocab_size"))?,
            hidden_size,
            intermediate_size: raw.intermediate_size.ok_or_else(|| missing("intermediate_size"))?,
            num_layers: raw.num_hidden_layers.ok_or_else(|| missing("num_hidden_layers"))?,
            num_heads,
            num_kv_heads: raw.num_key_value_heads.unwrap_or(num_heads),
            head_dim: raw.head_dim.unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0)),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: architecture == Architecture::Qwen2 || attention_bias,
            o_bias: architecture != Architecture::Qwen2 && attention_bias,
            sliding_window,
            bos_token_id: token_ids(&raw.bos_token_id).first().copied(),
            eos_token_ids: token_ids(&raw.eos_token_id),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Reads the config from GGUF metadata (`general.architecture` must be `llama`).
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let arch = g.get_str("general.architecture").unwrap_or("<none>");
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture { path: g.path.clone(), arch: arch.to_string() });
        }
        let req = |k: &str| -> Result<usize> {
            let key = format!("llama.{k}");
            g.require(&key)?.as_u64().map(|v| v as usize).ok_or_else(|| ModelError::InvalidGguf {
                path: g.path.clone(),
                reason: format!("metadata `{key}` is not an integer"),
            })
        };
        let hidden_size = req("embedding_length")?;
        let num_heads = req("attention.head_count")?;
        let vocab_size = match g.get_u64("llama.vocab_size") {
            Some(v) => v as usize,
            None => g.get_str_array("tokenizer.ggml.tokens").map(|t| t.len()).unwrap_or(0),
        };
        let head_dim = g
            .get_u64("llama.attention.key_length")
            .or_else(|| g.get_u64("llama.rope.dimension_count"))
            .map(|v| v as usize)
            .unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let rope_scaling = match g.get_str("llama.rope.scaling.type") {
            None | Some("none") => None,
            Some(other) => {
                return Err(ModelError::InvalidGguf {
                    path: g.path.clone(),
                    reason: format!("rope scaling `{other}` is not supported"),
                })
            }
        };
        let cfg = ModelConfig {
            architecture: Architecture::Llama,
            vocab_size,
            hidden_size,
            intermediate_size: req("feed_forward_length")?,
            num_layers: req("block_count")?,
            num_heads,
            num_kv_heads: g.get_u64("llama.attention.head_count_kv").map(|v| v as usize).unwrap_or(num_heads),
            head_dim,
            max_position_embeddings: req("context_length")?,
            rms_norm_eps: g.get_f64("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: g.get_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rope_scaling,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            o_bias: g.tensor("blk.0.attn_output.bias").is_some(),
            sliding_window: None,
            bos_token_id: g.get_u64("tokenizer.ggml.bos_token_id").map(|v| v as u32),
            eos_token_ids: g.get_u64("tokenizer.ggml.eos_token_id").map(|v| vec![v as u32]).unwrap_or_default(),
        };
        cfg.validate(&g.path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(ModelError::InvalidConfig { path: path.to_path_buf(), reason });
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        // Written so that NaN fails too.
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 || self.rope_theta.is_nan() || self.rope_theta <= 0.0
        {
            return bad("rms_norm_eps and rope_theta must be > 0".into());
        }
        Ok(())
    }

    /// Parameters in the matrices and norms (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn = d * q + 2 * d * kv + q * d;
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 } + if self.o_bias { d } else { 0 };
        let mlp = 3 * d * self.intermediate_size;
        let per_layer = attn + bias + mlp + 2 * d;
        let embed = self.vocab_size * d * if self.tie_word_embeddings { 1 } else { 2 };
        self.num_layers * per_layer + embed + d
    }
}
