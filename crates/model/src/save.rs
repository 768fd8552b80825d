//! Writing a model as a Hugging Face directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`) that transformers and tuneguard both load.
//! The directory is written under a temporary name, flushed to disk and renamed into place.
use std::path::Path;

use std::borrow::Cow;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::config::Architecture;
use crate::engine::LoadedModel;
use crate::error::{ModelError, Result};
use crate::linear::{f32_bytes, Linear};

/// (Hugging Face name, shape, f32 values).
pub type NamedTensor<'a> = (String, Vec<usize>, Cow<'a, [f32]>);

/// Every weight under its Hugging Face name with its shape (LoRA merged in if attached).
pub fn named_tensors(m: &crate::llama::Llama) -> Vec<NamedTensor<'_>> {
    let mut out = Vec::new();
    fn lin<'a>(out: &mut Vec<NamedTensor<'a>>, name: String, l: &'a Linear) {
        let weight: Cow<'_, [f32]> = if l.lora.is_some() {
            let mut merged = l.clone();
            merged.merge_lora();
            Cow::Owned(merged.weight)
        } else {
            Cow::Borrowed(&l.weight)
        };
        out.push((format!("{name}.weight"), vec![l.out_features, l.in_features], weight));
        if let Some(b) = &l.bias {
            out.push((format!("{name}.bias"), vec![l.out_features], Cow::Borrowed(b.as_slice())));
        }
    }
    lin(&mut out, "model.embed_tokens".into(), &m.embed_tokens);
    for (i, l) in m.layers.iter().enumerate() {
        let p = format!("model.layers.{i}");
        lin(&mut out, format!("{p}.self_attn.q_proj"), &l.q_proj);
        lin(&mut out, format!("{p}.self_attn.k_proj"), &l.k_proj);
        lin(&mut out, format!("{p}.self_attn.v_proj"), &l.v_proj);
        lin(&mut out, format!("{p}.self_attn.o_proj"), &l.o_proj);
        lin(&mut out, format!("{p}.mlp.gate_proj"), &l.gate_proj);
        lin(&mut out, format!("{p}.mlp.up_proj"), &l.up_proj);
        lin(&mut out, format!("{p}.mlp.down_proj"), &l.down_proj);
    }
    if let Some(h) = &m.lm_head {
        lin(&mut out, "lm_head".into(), h);
    }
    let d = m.config.hidden_size;
    for (i, l) in m.layers.iter().enumerate() {
        out.push((format!("model.layers.{i}.input_layernorm.weight"), vec![d], Cow::Borrowed(l.input_norm.as_slice())));
        out.push((
            format!("model.layers.{i}.post_attention_layernorm.weight"),
            vec![d],
            Cow::Borrowed(l.post_attention_norm.as_slice()),
        ));
    }
    out.push(("model.norm.weight".into(), vec![d], Cow::Borrowed(m.norm.as_slice())));
    out
}

fn hf_config(m: &LoadedModel) -> serde_json::Value {
    let c = &m.model.config;
    let (model_type, arch) = match c.architecture {
        Architecture::Llama => ("llama", "LlamaForCausalLM"),
        Architecture::Mistral => ("mistral", "MistralForCausalLM"),
        Architecture::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
    };
    let mut v = serde_json::json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tie_word_embeddings,
        "attention_bias": c.o_bias,
        "mlp_bias": false,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_ids.first(),
    });
    if let Some(s) = &c.rope_scaling {
        v["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
    }
    if let Some(w) = c.sliding_window {
        v["sliding_window"] = w.into();
    }
    v
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| ModelError::io(path, std::io::Error::other(e)))?;
    std::fs::write(path, text).map_err(|e| ModelError::io(path, e))
}

/// Writes `m` (LoRA merged in) as a float32 Hugging Face model directory at `out`, which must
/// not exist yet.
///
/// # Errors
/// `Io` naming the path when `out` exists or a file cannot be written.
pub fn save_hf_dir(m: &LoadedModel, out: &Path) -> Result<()> {
    write_dir_atomically(out, |tmp| write_contents(m, tmp))
}

/// [`tuneguard_fs::write_dir_atomically`] with model errors: creates the directory `out`
/// (which must not exist) through `write`, under a temporary name, flushed to disk and renamed
/// into place, so `out` never appears half-written.
pub fn write_dir_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    tuneguard_fs::write_dir_atomically(out, write, |p, e| ModelError::io(p, e))
}

/// Writes f32 tensors `(name, shape, values)` as a safetensors file with mode 0644.
pub fn write_f32_safetensors<'a>(
    path: &Path,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let invalid = |reason: String| ModelError::InvalidSafetensors { path: path.to_path_buf(), reason };
    let views = tensors
        .map(|(n, shape, data)| {
            TensorView::new(Dtype::F32, shape.to_vec(), f32_bytes(data))
                .map(|v| (n.to_string(), v))
                .map_err(|e| invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => ModelError::io(path, io),
        other => invalid(other.to_string()),
    })?;
    // serialize_to_file creates the file owner-only; give it the mode of the other files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(|e| ModelError::io(path, e))?;
    }
    Ok(())
}

fn write_contents(m: &LoadedModel, dir: &Path) -> Result<()> {
    write_json(&dir.join("config.json"), &hf_config(m))?;
    let tensors = named_tensors(&m.model);
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    write_f32_safetensors(
        &dir.join("model.safetensors"),
        tensors.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), &**d)),
        Some(meta),
    )?;
    let tok_path = dir.join("tokenizer.json");
    m.tokenizer
        .inner()
        .save(&tok_path, false)
        .map_err(|e| ModelError::Tokenizer { path: tok_path.clone(), reason: e.to_string() })?;
    let name = |id: Option<u32>| id.and_then(|i| m.tokenizer.id_to_token(i));
    let mut tc = serde_json::json!({
        "bos_token": name(m.tokenizer.bos_id()),
        "eos_token": name(m.tokenizer.eos_id()),
        "pad_token": name(m.tokenizer.pad_id()),
        "unk_token": name(m.tokenizer.unk_id()),
        "add_bos_token": m.tokenizer.add_bos_token(),
        "add_eos_token": m.tokenizer.add_eos_token(),
        "model_max_length": m.model.config.max_position_embeddings,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    if let Some(t) = &m.chat_template {
        tc["chat_template"] = t.source().into();
    }
    write_json(&dir.join("tokenizer_config.json"), &tc)
}
