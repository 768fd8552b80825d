//! Building a [`Llama`] from weights on disk (GGUF file or Hugging Face directory).
pub mod gguf_source;
pub mod safetensors_source;

use std::path::Path;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::llama::{Layer, Llama};
use crate::quant::GgmlType;

/// A tensor in host memory, f32, row-major, plus its original ggml blocks when quantized.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub packed: Option<(GgmlType, Vec<u8>)>,
}

/// Something that yields tensors by their Hugging Face name.
pub trait TensorSource: Sync {
    /// `Ok(None)` when the tensor is absent.
    fn load(&self, hf_name: &str) -> Result<Option<HostTensor>>;
    /// The file or directory the tensors come from (for error messages).
    fn origin(&self) -> &Path;
}

fn require(src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let t = src
        .load(name)?
        .ok_or_else(|| ModelError::MissingTensor { path: src.origin().to_path_buf(), tensor: name.to_string() })?;
    if t.shape != shape {
        return Err(ModelError::ShapeMismatch {
            path: src.origin().to_path_buf(),
            tensor: name.to_string(),
            expected: shape.to_vec(),
            got: t.shape,
        });
    }
    Ok(t)
}

fn linear(src: &dyn TensorSource, prefix: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
    let w = require(src, &format!("{prefix}.weight"), &[out, inp])?;
    let mut l = Linear::new(out, inp, w.data);
    l.packed = w.packed;
    if bias {
        l.bias = Some(require(src, &format!("{prefix}.bias"), &[out])?.data);
    }
    Ok(l)
}

/// Loads every tensor the config calls for, checking names and shapes.
///
/// # Errors
/// `MissingTensor`, `ShapeMismatch`, `UnsupportedQuantization` naming the tensor and file.
pub fn build_llama(cfg: &ModelConfig, src: &dyn TensorSource) -> Result<Llama> {
    use rayon::prelude::*;
    let (d, ff, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q_out, kv_out) = (cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
    let layers = (0..cfg.num_layers)
        .into_par_iter()
        .map(|i| {
            let p = format!("model.layers.{i}");
            Ok(Layer {
                input_norm: require(src, &format!("{p}.input_layernorm.weight"), &[d])?.data,
                q_proj: linear(src, &format!("{p}.self_attn.q_proj"), q_out, d, cfg.qkv_bias)?,
                k_proj: linear(src, &format!("{p}.self_attn.k_proj"), kv_out, d, cfg.qkv_bias)?,
                v_proj: linear(src, &format!("{p}.self_attn.v_proj"), kv_out, d, cfg.qkv_bias)?,
                o_proj: linear(src, &format!("{p}.self_attn.o_proj"), d, q_out, cfg.o_bias)?,
                post_attention_norm: require(src, &format!("{p}.post_attention_layernorm.weight"), &[d])?.data,
                gate_proj: linear(src, &format!("{p}.mlp.gate_proj"), ff, d, false)?,
                up_proj: linear(src, &format!("{p}.mlp.up_proj"), ff, d, false)?,
                down_proj: linear(src, &format!("{p}.mlp.down_proj"), d, ff, false)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let embed_tokens = linear(src, "model.embed_tokens", v, d, false)?;
    let norm = require(src, "model.norm.weight", &[d])?.data;
    let lm_head = if cfg.tie_word_embeddings { None } else { Some(linear(src, "lm_head", v, d, false)?) };
    let mut model = Llama::new(cfg.clone(), embed_tokens, layers, norm, lm_head);
    model.layers.par_iter_mut().for_each(|l| l.projections_mut().into_iter().for_each(|(_, p)| p.prepack()));
    match &mut model.lm_head {
        Some(head) => head.prepack(),
        None => model.embed_tokens.prepack(),
    }
    Ok(model)
}
