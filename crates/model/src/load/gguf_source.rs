//! Tensors from a GGUF file under their Hugging Face names and layout.
use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use crate::load::{HostTensor, TensorSource};
use crate::quant::{self, GgmlType};

/// Maps a Hugging Face tensor name to llama.cpp's GGUF name.
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (module, kind) = tail.rsplit_once('.')?;
    let g = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// llama.cpp's converter interleaves the two RoPE halves of each head's q/k rows
/// (`reshape(h, 2, hd/2).swapaxes(1, 2)`); this is the inverse row map: HF row -> GGUF row.
fn unpermuted_row(hf_row: usize, head_dim: usize) -> usize {
    let half = head_dim / 2;
    let (head, j) = (hf_row / head_dim, hf_row % head_dim);
    let (two, i) = (j / half, j % half);
    head * head_dim + i * 2 + two
}

/// Reorders whole rows (each `row_bytes` long) from the GGUF layout to the HF layout.
fn unpermute_rows<T: Copy>(data: &[T], row_len: usize, head_dim: usize) -> Vec<T> {
    let rows = data.len() / row_len;
    let mut out = Vec::with_capacity(data.len());
    for r in 0..rows {
        let src = unpermuted_row(r, head_dim);
        out.extend_from_slice(&data[src * row_len..(src + 1) * row_len]);
    }
    out
}

pub struct GgufSource<'a> {
    pub file: &'a GgufFile,
    pub head_dim: usize,
}

impl TensorSource for GgufSource<'_> {
    fn load(&self, hf_name: &str) -> Result<Option<HostTensor>> {
        let Some(name) = gguf_name(hf_name) else {
            return Ok(None);
        };
        let Some(info) = self.file.tensor(&name) else {
            return Ok(None);
        };
        let bytes = self.file.tensor_bytes(info);
        let mut data = vec![0f32; info.n_elements()];
        quant::dequantize(info.ty, bytes, &mut data).map_err(|e| match e {
            quant::QuantError::Unsupported(ty) => ModelError::UnsupportedQuantization {
                path: self.file.path.clone(),
                tensor: name.clone(),
                ty: ty.to_string(),
            },
            other => {
                ModelError::InvalidGguf { path: self.file.path.clone(), reason: format!("tensor `{name}`: {other}") }
            }
        })?;
        let shape = info.shape();
        let permuted = name.ends_with("attn_q.weight")
            || name.ends_with("attn_k.weight")
            || name.ends_with("attn_q.bias")
            || name.ends_with("attn_k.bias");
        let row_len = if shape.len() == 2 { shape[1] } else { 1 };
        let packed_row = bytes.len() / shape.first().copied().unwrap_or(1).max(1);
        // Keep the original blocks for the fused decode kernels (same values, fewer bytes).
        let keep_packed = shape.len() == 2 && info.ty != GgmlType::F32 && quant::has_fast_matvec(info.ty);
        let (data, packed) = if permuted {
            let packed = keep_packed.then(|| unpermute_rows(bytes, packed_row, self.head_dim));
            (unpermute_rows(&data, row_len, self.head_dim), packed)
        } else {
            (data, keep_packed.then(|| bytes.to_vec()))
        };
        Ok(Some(HostTensor { shape, data, packed: packed.map(|p| (info.ty, p)) }))
    }

    fn origin(&self) -> &std::path::Path {
        &self.file.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: gguf_row(h, i, two) = h*hd + i*2 + two holds hf_row(h, two, i) = h*hd + two*hd/2 + i.
        let hd = 8;
        let rows: Vec<usize> = (0..16).collect();
        let permuted: Vec<usize> = (0..16)
            .map(|g| {
                let (h, j) = (g / hd, g % hd);
                h * hd + (j % 2) * (hd / 2) + j / 2
            })
            .collect();
        assert_eq!(unpermute_rows(&permuted, 1, hd), rows);
    }

    #[test]
    fn names_map_to_llama_cpp() {
        assert_eq!(gguf_name("model.layers.3.self_attn.k_proj.weight").as_deref(), Some("blk.3.attn_k.weight"));
        assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight").as_deref(), Some("blk.0.ffn_down.weight"));
        assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.foo"), None);
    }
}
