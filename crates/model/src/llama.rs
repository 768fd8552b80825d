//! The Llama-family decoder (Touvron et al. 2023), as `transformers`' `LlamaForCausalLM`:
//! pre-RMSNorm blocks of grouped-query attention with RoPE and a SwiGLU MLP, f32 throughout.
//!
//! Shapes legend: t tokens of this call, T tokens in the cache, d hidden, h heads, kv kv-heads,
//! hd head dim, ff MLP width, v vocab.
use gemm::Parallelism;
use rayon::prelude::*;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::linear::Linear;
use crate::ops;
use crate::profile::{timed, Section};
use crate::rope::Rope;

/// A LoRA-targetable projection of a decoder layer, named as in PEFT's `target_modules`
/// (`q_proj`; the module path `self_attn.q_proj` reads as the same projection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    #[serde(alias = "self_attn.q_proj")]
    QProj,
    #[serde(alias = "self_attn.k_proj")]
    KProj,
    #[serde(alias = "self_attn.v_proj")]
    VProj,
    #[serde(alias = "self_attn.o_proj")]
    OProj,
    #[serde(alias = "mlp.gate_proj")]
    GateProj,
    #[serde(alias = "mlp.up_proj")]
    UpProj,
    #[serde(alias = "mlp.down_proj")]
    DownProj,
}

impl Projection {
    /// Every projection, in the order of [`Layer::projections`].
    pub const ALL: [Projection; 7] = [
        Projection::QProj,
        Projection::KProj,
        Projection::VProj,
        Projection::OProj,
        Projection::GateProj,
        Projection::UpProj,
        Projection::DownProj,
    ];

    /// The PEFT module path inside a layer (`self_attn.q_proj`), as [`Layer::projections`]
    /// names it.
    pub fn module(self) -> &'static str {
        match self {
            Projection::QProj => "self_attn.q_proj",
            Projection::KProj => "self_attn.k_proj",
            Projection::VProj => "self_attn.v_proj",
            Projection::OProj => "self_attn.o_proj",
            Projection::GateProj => "mlp.gate_proj",
            Projection::UpProj => "mlp.up_proj",
            Projection::DownProj => "mlp.down_proj",
        }
    }

    /// The short name (`q_proj`), as a recipe and `adapter_config.json` write it.
    pub fn name(self) -> &'static str {
        let m = self.module();
        m.rsplit('.').next().unwrap_or(m)
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub input_norm: Vec<f32>,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub post_attention_norm: Vec<f32>,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Layer {
    /// The LoRA-targetable projections under their PEFT module names, in a fixed order.
    pub fn projections(&self) -> [(&'static str, &Linear); 7] {
        [
            ("self_attn.q_proj", &self.q_proj),
            ("self_attn.k_proj", &self.k_proj),
            ("self_attn.v_proj", &self.v_proj),
            ("self_attn.o_proj", &self.o_proj),
            ("mlp.gate_proj", &self.gate_proj),
            ("mlp.up_proj", &self.up_proj),
            ("mlp.down_proj", &self.down_proj),
        ]
    }

    /// The LoRA-targetable projections under their PEFT module names (same order).
    pub fn projections_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        [
            ("self_attn.q_proj", &mut self.q_proj),
            ("self_attn.k_proj", &mut self.k_proj),
            ("self_attn.v_proj", &mut self.v_proj),
            ("self_attn.o_proj", &mut self.o_proj),
            ("mlp.gate_proj", &mut self.gate_proj),
            ("mlp.up_proj", &mut self.up_proj),
            ("mlp.down_proj", &mut self.down_proj),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub config: ModelConfig,
    /// Token embedding (v, d); also the output projection when embeddings are tied.
    pub embed_tokens: Linear,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    /// Untied output projection (v, d).
    pub lm_head: Option<Linear>,
    rope: Rope,
}

/// Keys and values of the tokens seen so far, per layer (T, kv·hd) each.
#[derive(Debug, Clone)]
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    pub fn new(cfg: &ModelConfig) -> Self {
        KvCache { keys: vec![Vec::new(); cfg.num_layers], values: vec![Vec::new(); cfg.num_layers], len: 0 }
    }
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Which positions' logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Only the last position, (1, v): what generation needs.
    Last,
    /// Every position, (t, v).
    All,
}

impl Llama {
    pub fn new(
        config: ModelConfig,
        embed_tokens: Linear,
        layers: Vec<Layer>,
        norm: Vec<f32>,
        lm_head: Option<Linear>,
    ) -> Self {
        let rope = Rope::new(&config);
        Llama { config, embed_tokens, layers, norm, lm_head, rope }
    }

    /// The rotary embedding this model uses (for training code that re-runs the blocks).
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Runs `tokens` (t,) at positions `cache.len()..` and appends their keys/values to `cache`.
    /// Returns the logits, (1, v) or (t, v) row-major as `which` asks.
    ///
    /// # Errors
    /// `InvalidRequest` for an empty call, a token id outside the vocabulary or a position past
    /// the context window.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, which: LogitsFor) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let (t, d) = (tokens.len(), cfg.hidden_size);
        if t == 0 {
            return Err(ModelError::InvalidRequest("forward called with no tokens".into()));
        }
        if cache.len + t > cfg.max_position_embeddings {
            return Err(ModelError::InvalidRequest(format!(
                "{} tokens exceed the context window of {} tokens",
                cache.len + t,
                cfg.max_position_embeddings
            )));
        }
        let vocab_rows = self.embed_tokens.out_features;
        let mut x = vec![0f32; t * d]; // (t, d)
        for (row, &tok) in x.chunks_mut(d).zip(tokens) {
            let tok = tok as usize;
            if tok >= vocab_rows {
                return Err(ModelError::InvalidRequest(format!(
                    "token id {tok} is outside the vocabulary of {vocab_rows}"
                )));
            }
            row.copy_from_slice(&self.embed_tokens.weight[tok * d..(tok + 1) * d]);
        }
        let angles = self.rope.angles(cache.len, t);
        for (i, layer) in self.layers.iter().enumerate() {
            self.block(layer, &mut x, t, &angles, &mut cache.keys[i], &mut cache.values[i], cache.len);
        }
        cache.len += t;
        let rows = match which {
            LogitsFor::Last => &x[(t - 1) * d..],
            LogitsFor::All => &x[..],
        };
        let n = rows.len() / d;
        let mut normed = vec![0f32; n * d];
        ops::rms_norm(rows, &self.norm, cfg.rms_norm_eps as f32, &mut normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let mut logits = vec![0f32; n * head.out_features];
        timed(Section::LmHead, || head.forward(&normed, n, &mut logits));
        Ok(logits)
    }

    /// One decoder block, updating the residual stream x (t, d) in place.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        l: &Layer,
        x: &mut [f32],
        t: usize,
        angles: &crate::rope::RopeAngles,
        k_cache: &mut Vec<f32>,
        v_cache: &mut Vec<f32>,
        past: usize,
    ) {
        let cfg = &self.config;
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_heads, cfg.num_kv_heads);
        let eps = cfg.rms_norm_eps as f32;
        let mut h = vec![0f32; t * d];
        timed(Section::Norm, || ops::rms_norm(x, &l.input_norm, eps, &mut h));
        let mut q = vec![0f32; t * nh * hd]; // (t, h·hd)
        let mut k = vec![0f32; t * nkv * hd]; // (t, kv·hd)
        let mut v = vec![0f32; t * nkv * hd];
        timed(Section::Linear, || {
            l.q_proj.forward(&h, t, &mut q);
            l.k_proj.forward(&h, t, &mut k);
            l.v_proj.forward(&h, t, &mut v);
        });
        timed(Section::Rope, || {
            angles.apply(&mut q, nh);
            angles.apply(&mut k, nkv);
        });
        k_cache.extend_from_slice(&k);
        v_cache.extend_from_slice(&v);
        let attn =
            timed(Section::Attention, || attention(&q, k_cache, v_cache, t, past, nh, nkv, hd, cfg.sliding_window));
        let mut o = vec![0f32; t * d];
        timed(Section::Linear, || l.o_proj.forward(&attn, t, &mut o));
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

        timed(Section::Norm, || ops::rms_norm(x, &l.post_attention_norm, eps, &mut h));
        let ff = cfg.intermediate_size;
        let mut gate = vec![0f32; t * ff];
        let mut up = vec![0f32; t * ff];
        timed(Section::Linear, || {
            l.gate_proj.forward(&h, t, &mut gate);
            l.up_proj.forward(&h, t, &mut up);
        });
        timed(Section::Mlp, || ops::silu_mul(&mut gate, &up));
        timed(Section::Linear, || l.down_proj.forward(&gate, t, &mut o));
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
    }
}

/// Query rows per attention task: keys past the last row of a chunk are never computed, which
/// skips most of the masked upper triangle, and (head, chunk) tasks balance across threads.
const QUERY_CHUNK: usize = 64;

/// Causal grouped-query attention of t new queries against all T = past + t cached positions.
/// q (t, h·hd), keys/values (T, kv·hd) → (t, h·hd). Query i sits at position past + i and sees
/// keys 0..=past+i (and, with a sliding window w, only the last w of them).
#[allow(clippy::too_many_arguments)]
fn attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    t: usize,
    past: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let kvw = nkv * hd;
    let group = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let chunks = t.div_ceil(QUERY_CHUNK);
    let tasks: Vec<(usize, usize)> = (0..nh).flat_map(|h| (0..chunks).map(move |c| (h, c))).collect();
    let outs: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(head, c)| {
            let kvh = head / group;
            let (r0, r1) = (c * QUERY_CHUNK, ((c + 1) * QUERY_CHUNK).min(t));
            let rows = r1 - r0;
            let lo = window.map_or(0, |w| (past + r0 + 1).saturating_sub(w)); // first key any row sees
            let n_keys = past + r1 - lo;
            // scores (rows, keys lo..past+r1) = q_h (rows, hd) · K_kvh (keys, hd)ᵀ · scale
            let mut scores = vec![0f32; rows * n_keys];
            let q_h = &q[r0 * nh * hd + head * hd..];
            ops::matmul_strided(
                q_h,
                (nh * hd, 1),
                &keys[lo * kvw + kvh * hd..],
                (1, kvw),
                &mut scores,
                rows,
                hd,
                n_keys,
                scale,
                Parallelism::None,
            );
            for (i, row) in scores.chunks_mut(n_keys).enumerate() {
                let pos = past + r0 + i;
                let first = window.map_or(0, |w| (pos + 1).saturating_sub(w)) - lo;
                let last = pos - lo; // inclusive
                row[last + 1..].fill(0.0);
                row[..first].fill(0.0);
                ops::softmax_in_place(&mut row[first..=last]);
            }
            let mut out = vec![0f32; rows * hd]; // (rows, hd) = P (rows, keys) · V_kvh (keys, hd)
            let v_h = &values[lo * kvw + kvh * hd..];
            ops::matmul_strided(
                &scores,
                (n_keys, 1),
                v_h,
                (kvw, 1),
                &mut out,
                rows,
                n_keys,
                hd,
                1.0,
                Parallelism::None,
            );
            out
        })
        .collect();
    let mut attn = vec![0f32; t * nh * hd];
    for (&(head, c), out) in tasks.iter().zip(&outs) {
        for (i, row) in out.chunks(hd).enumerate() {
            attn[(c * QUERY_CHUNK + i) * nh * hd + head * hd..][..hd].copy_from_slice(row);
        }
    }
    attn
}

#[cfg(test)]
mod projection_tests {
    use super::*;

    #[test]
    fn projections_are_named_as_the_layer_names_them() {
        let layer_names: Vec<&str> = [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ]
        .to_vec();
        assert_eq!(Projection::ALL.map(Projection::module).to_vec(), layer_names);
        assert_eq!(
            Projection::ALL.map(Projection::name),
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        );
        for p in Projection::ALL {
            assert_eq!(serde_json::to_string(&p).ok(), Some(format!("\"{}\"", p.name())));
            for spelling in [p.name(), p.module()] {
                assert_eq!(serde_json::from_str::<Projection>(&format!("\"{spelling}\"")).ok(), Some(p));
            }
        }
        let e = serde_json::from_str::<Projection>("\"qproj\"").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown variant `qproj`") && e.contains("`q_proj`"), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct O(t·T) attention, one query and one head at a time.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        past: usize,
        nh: usize,
        nkv: usize,
        hd: usize,
        window: Option<usize>,
    ) -> Vec<f32> {
        let mut out = vec![0f32; t * nh * hd];
        for i in 0..t {
            let pos = past + i;
            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let qv = &q[i * nh * hd + h * hd..][..hd];
                let mut s: Vec<f32> = (lo..=pos)
                    .map(|j| {
                        qv.iter().zip(&k[j * nkv * hd + kvh * hd..][..hd]).map(|(a, b)| a * b).sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                ops::softmax_in_place(&mut s);
                for (p, j) in s.iter().zip(lo..=pos) {
                    for c in 0..hd {
                        out[i * nh * hd + h * hd + c] += p * v[j * nkv * hd + kvh * hd + c];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn chunked_attention_equals_naive() {
        let (nh, nkv, hd, past, t) = (4, 2, 8, 5, 130);
        let total = past + t;
        let f = |n: usize, s: f32| (0..n).map(|i| ((i as f32) * s).sin()).collect::<Vec<f32>>();
        let (q, k, v) = (f(t * nh * hd, 0.37), f(total * nkv * hd, 0.11), f(total * nkv * hd, 0.23));
        for window in [None, Some(50)] {
            let got = attention(&q, &k, &v, t, past, nh, nkv, hd, window);
            let want = naive(&q, &k, &v, t, past, nh, nkv, hd, window);
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "window {window:?}: max diff {diff}");
        }
    }
}
