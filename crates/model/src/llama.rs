//! The Llama-family decoder (Touvron et al. 2023), as `transformers`' `LlamaForCausalLM`:
//! pre-RMSNorm blocks of grouped-query attention with RoPE and a SwiGLU MLP, f32 throughout.
//!
//! Shapes legend: t tokens of this call, T tokens in the cache, d hidden, h heads, kv kv-heads,
//! hd head dim, ff MLP width, v vocab.
use rayon::prelude::*;

use crate::attention::attention;
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
        self.check_context(cache.len + t)?;
        let mut x = self.embed(tokens)?;
        let angles = self.rope.angles(cache.len, t);
        let (nh, nkv, hd, past) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cache.len);
        for (i, layer) in self.layers.iter().enumerate() {
            let (keys, values) = (&mut cache.keys[i], &mut cache.values[i]);
            self.block(layer, &mut x, t, |q, k, v| {
                timed(Section::Rope, || {
                    angles.apply(q, nh);
                    angles.apply(k, nkv);
                });
                keys.extend_from_slice(k);
                values.extend_from_slice(v);
                timed(Section::Attention, || attention(q, keys, values, t, past, nh, nkv, hd, cfg.sliding_window))
            });
        }
        cache.len += t;
        let from = match which {
            LogitsFor::Last => t - 1,
            LogitsFor::All => 0,
        };
        Ok(self.logits(&x[from * d..]))
    }

    /// Several independent sequences in one pass, each from position 0 without a cache: the
    /// projections and the MLP run once on all their rows stacked, (Σt, d), so short sequences
    /// share each weight pass; attention stays within each sequence. `seqs[i] = (tokens, from)`
    /// asks for the logits of positions `from..t` of sequence i; returns them, (t − from, v) each.
    /// The result equals [`Llama::forward`] on each sequence alone, up to float rounding.
    ///
    /// # Errors
    /// As [`Llama::forward`]; `InvalidRequest` also when `from` is not below the sequence length.
    pub fn forward_batch(&self, seqs: &[(&[u32], usize)]) -> Result<Vec<Vec<f32>>> {
        let cfg = &self.config;
        let (d, v) = (cfg.hidden_size, cfg.vocab_size);
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let mut tokens = Vec::new();
        let mut starts = Vec::with_capacity(seqs.len() + 1);
        let mut positions = Vec::new();
        for &(s, from) in seqs {
            if from >= s.len() {
                return Err(ModelError::InvalidRequest(format!(
                    "logits asked from position {from} of a {}-token sequence",
                    s.len()
                )));
            }
            self.check_context(s.len())?;
            starts.push(tokens.len());
            tokens.extend_from_slice(s);
            positions.extend(0..s.len());
        }
        starts.push(tokens.len());
        let rows = tokens.len();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let mut x = self.embed(&tokens)?;
        let angles = self.rope.angles_at(&positions);
        for layer in &self.layers {
            self.block(layer, &mut x, rows, |q, k, vals| {
                timed(Section::Rope, || {
                    angles.apply(q, nh);
                    angles.apply(k, nkv);
                });
                let (qw, kvw) = (nh * hd, nkv * hd);
                let (q, k) = (&*q, &*k);
                timed(Section::Attention, || {
                    let outs: Vec<Vec<f32>> = starts
                        .par_windows(2)
                        .map(|w| {
                            let (a, b) = (w[0], w[1]);
                            let (q, k, vals) = (&q[a * qw..b * qw], &k[a * kvw..b * kvw], &vals[a * kvw..b * kvw]);
                            attention(q, k, vals, b - a, 0, nh, nkv, hd, cfg.sliding_window)
                        })
                        .collect();
                    outs.concat()
                })
            });
        }
        // Only the rows whose logits are asked for go through the head.
        let mut wanted = Vec::new();
        for (w, &(_, from)) in starts.windows(2).zip(seqs) {
            wanted.extend_from_slice(&x[(w[0] + from) * d..w[1] * d]);
        }
        let logits = self.logits(&wanted);
        let mut out = Vec::with_capacity(seqs.len());
        let mut at = 0;
        for &(s, from) in seqs {
            let n = (s.len() - from) * v;
            out.push(logits[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }

    fn check_context(&self, positions: usize) -> Result<()> {
        let context = self.config.max_position_embeddings;
        if positions > context {
            return Err(ModelError::InvalidRequest(format!(
                "{positions} tokens exceed the context window of {context} tokens"
            )));
        }
        Ok(())
    }

    /// The embeddings (t, d) of `tokens`.
    fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let d = self.config.hidden_size;
        let vocab_rows = self.embed_tokens.out_features;
        let mut x = vec![0f32; tokens.len() * d];
        for (row, &tok) in x.chunks_mut(d).zip(tokens) {
            let tok = tok as usize;
            if tok >= vocab_rows {
                return Err(ModelError::InvalidRequest(format!(
                    "token id {tok} is outside the vocabulary of {vocab_rows}"
                )));
            }
            row.copy_from_slice(&self.embed_tokens.weight[tok * d..(tok + 1) * d]);
        }
        Ok(x)
    }

    /// The final norm and the output head: hidden rows (n, d) → logits (n, v).
    fn logits(&self, rows: &[f32]) -> Vec<f32> {
        let d = self.config.hidden_size;
        let n = rows.len() / d;
        let mut normed = vec![0f32; n * d];
        ops::rms_norm(rows, &self.norm, self.config.rms_norm_eps as f32, &mut normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let mut logits = vec![0f32; n * head.out_features];
        timed(Section::LmHead, || head.forward(&normed, n, &mut logits));
        logits
    }

    /// One decoder block, updating the residual stream x (t, d) in place. `attend` gets the
    /// projected q (t, h·hd), k and v (t, kv·hd), applies RoPE and returns the attention output
    /// (t, h·hd): with a cache for [`Llama::forward`], per sequence for [`Llama::forward_batch`].
    fn block(
        &self,
        l: &Layer,
        x: &mut [f32],
        t: usize,
        attend: impl FnOnce(&mut [f32], &mut [f32], &[f32]) -> Vec<f32>,
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
        let attn = attend(&mut q, &mut k, &v);
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
