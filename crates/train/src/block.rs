//! One decoder block, forward with saved activations and backward, for one sequence of t tokens
//! at positions 0..t (full causal attention, no cache). Shapes: d hidden, h heads, kv kv-heads,
//! hd head dim, ff MLP width.
use rayon::prelude::*;
use tuneguard_model::config::ModelConfig;
use tuneguard_model::llama::Layer;
use tuneguard_model::ops;
use tuneguard_model::rope::RopeAngles;

use crate::linear_grad::{self, Dropout, FullLinearGrad, LoraCache, LoraGrad};
use crate::tensor_ops::{add_into, mm, rms_norm_bwd, rms_norm_fwd, rms_norm_weight_grad, sigmoid};
use tuneguard_data::splitmix64;

/// Activations of one block kept for its backward pass.
pub struct BlockCache {
    x_in: Vec<f32>,
    rstd1: Vec<f32>,
    h1: Vec<f32>,
    /// LoRA branch caches per projection, in [`Layer::projections`] order.
    u: [Option<LoraCache>; 7],
    /// Rotated q (t, h·hd), rotated k and v (t, kv·hd).
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention probabilities per head, (t, t) each (zero above the diagonal).
    probs: Vec<Vec<f32>>,
    attn: Vec<f32>,
    x_mid: Vec<f32>,
    rstd2: Vec<f32>,
    h2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
}

/// Gradients of the seven projections' LoRA pairs of one block ([`Layer::projections`] order).
pub type BlockGrads = [Option<LoraGrad>; 7];

/// Full fine-tuning gradients of one block: the seven projections ([`Layer::projections`]
/// order) and the two norm weights.
#[derive(Debug, Clone)]
pub struct FullBlockGrads {
    pub proj: Vec<FullLinearGrad>,
    pub input_norm: Vec<f32>,
    pub post_attention_norm: Vec<f32>,
}

impl FullBlockGrads {
    pub fn zeros(l: &Layer) -> Self {
        FullBlockGrads {
            proj: l.projections().iter().map(|(_, p)| FullLinearGrad::zeros(p)).collect(),
            input_norm: vec![0.0; l.input_norm.len()],
            post_attention_norm: vec![0.0; l.post_attention_norm.len()],
        }
    }
}

/// x (t, d) → block output (t, d), plus what the backward pass needs. Query i attends keys
/// `first_key[i]..=i` (0 for plain causal attention; its example's first token when examples
/// are packed into one row). `dropout` (p, seed) is applied to each LoRA branch's input with a
/// seed derived per projection. With `adapter` false the LoRA branches are left out: the frozen
/// base model's block (what distillation's teacher runs).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    cfg: &ModelConfig,
    l: &Layer,
    x: Vec<f32>,
    t: usize,
    angles: &RopeAngles,
    first_key: &[usize],
    dropout: Option<Dropout>,
    adapter: bool,
) -> (Vec<f32>, BlockCache) {
    let drop = |i: u64| dropout.map(|d| Dropout { p: d.p, seed: splitmix64(d.seed ^ (i << 56)) });
    let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
    let eps = cfg.rms_norm_eps as f32;
    let (h1, rstd1) = rms_norm_fwd(&x, &l.input_norm, eps);
    let (mut q, uq) = linear_grad::forward(&l.q_proj, &h1, t, drop(0), adapter);
    let (mut k, uk) = linear_grad::forward(&l.k_proj, &h1, t, drop(1), adapter);
    let (v, uv) = linear_grad::forward(&l.v_proj, &h1, t, drop(2), adapter);
    angles.apply(&mut q, nh);
    angles.apply(&mut k, nkv);
    let (group, kvw, scale) = (nh / nkv, nkv * hd, 1.0 / (hd as f32).sqrt());
    let per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..nh)
        .into_par_iter()
        .map(|h| {
            let g = h / group;
            // P = softmax(scale · q_h k_gᵀ) with the causal mask; O_h = P v_g.
            let mut p = vec![0f32; t * t];
            ops::matmul_strided(
                &q[h * hd..],
                (nh * hd, 1),
                &k[g * hd..],
                (1, kvw),
                &mut p,
                t,
                hd,
                t,
                scale,
                gemm::Parallelism::None,
            );
            for (i, row) in p.chunks_mut(t).enumerate() {
                row[i + 1..].fill(0.0);
                row[..first_key[i]].fill(0.0);
                ops::softmax_in_place(&mut row[first_key[i]..=i]);
            }
            let o = mm(&p, (t, 1), &v[g * hd..], (kvw, 1), t, t, hd);
            (p, o)
        })
        .collect();
    let mut attn = vec![0f32; t * nh * hd];
    for (h, (_, o)) in per_head.iter().enumerate() {
        for (i, row) in o.chunks(hd).enumerate() {
            attn[i * nh * hd + h * hd..][..hd].copy_from_slice(row);
        }
    }
    let probs = per_head.into_iter().map(|(p, _)| p).collect();
    let (o, uo) = linear_grad::forward(&l.o_proj, &attn, t, drop(3), adapter);
    let mut x_mid = x.clone();
    add_into(&mut x_mid, &o);
    let (h2, rstd2) = rms_norm_fwd(&x_mid, &l.post_attention_norm, eps);
    let (gate, ug) = linear_grad::forward(&l.gate_proj, &h2, t, drop(4), adapter);
    let (up, uu) = linear_grad::forward(&l.up_proj, &h2, t, drop(5), adapter);
    let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| g * sigmoid(g) * u).collect();
    let (down, ud) = linear_grad::forward(&l.down_proj, &act, t, drop(6), adapter);
    let mut out = x_mid.clone();
    add_into(&mut out, &down);
    let cache = BlockCache {
        x_in: x,
        rstd1,
        h1,
        u: [uq, uk, uv, uo, ug, uu, ud],
        q,
        k,
        v,
        probs,
        attn,
        x_mid,
        rstd2,
        h2,
        gate,
        up,
        act,
    };
    (out, cache)
}

/// d(block output) (t, d) → d(block input) (t, d); LoRA gradients are added into `grads`, and
/// with `full` every weight's gradient.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    cfg: &ModelConfig,
    l: &Layer,
    c: &BlockCache,
    d_out: Vec<f32>,
    t: usize,
    angles: &RopeAngles,
    grads: &mut BlockGrads,
    mut full: Option<&mut FullBlockGrads>,
) -> Vec<f32> {
    let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
    let [gq, gk, gv, go, gg, gu, gd] = grads;
    let u = |i: usize| c.u[i].as_ref();
    // Full fine-tuning: the projection's weight gradient, if trained.
    macro_rules! fg {
        ($i:expr) => {
            full.as_deref_mut().map(|f| &mut f.proj[$i])
        };
    }
    // MLP: out = x_mid + down(silu(gate) ⊙ up).
    let d_act = linear_grad::backward(&l.down_proj, &c.act, u(6), &d_out, t, gd, fg!(6));
    let mut d_gate = vec![0f32; d_act.len()];
    let mut d_up = vec![0f32; d_act.len()];
    for i in 0..d_act.len() {
        let (g, s) = (c.gate[i], sigmoid(c.gate[i]));
        d_up[i] = d_act[i] * g * s;
        d_gate[i] = d_act[i] * c.up[i] * s * (1.0 + g * (1.0 - s));
    }
    let mut d_h2 = linear_grad::backward(&l.gate_proj, &c.h2, u(4), &d_gate, t, gg, fg!(4));
    add_into(&mut d_h2, &linear_grad::backward(&l.up_proj, &c.h2, u(5), &d_up, t, gu, fg!(5)));
    let mut d_mid = d_out;
    add_into(&mut d_mid, &rms_norm_bwd(&c.x_mid, &l.post_attention_norm, &c.rstd2, &d_h2));
    if let Some(f) = full.as_deref_mut().filter(|f| !f.post_attention_norm.is_empty()) {
        rms_norm_weight_grad(&c.x_mid, &c.rstd2, &d_h2, &mut f.post_attention_norm);
    }
    // Attention: x_mid = x_in + o_proj(attn).
    let d_attn = linear_grad::backward(&l.o_proj, &c.attn, u(3), &d_mid, t, go, fg!(3));
    let (group, kvw, scale) = (nh / nkv, nkv * hd, 1.0 / (hd as f32).sqrt());
    let per_head: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..nh)
        .into_par_iter()
        .map(|h| {
            let g = h / group;
            let p = &c.probs[h];
            let d_o = &d_attn[h * hd..];
            let d_p = mm(d_o, (nh * hd, 1), &c.v[g * hd..], (1, kvw), t, hd, t); // dO vᵀ (t, t)
            let d_v = mm(p, (1, t), d_o, (nh * hd, 1), t, t, hd); // Pᵀ dO (t, hd)
            let mut d_s = vec![0f32; t * t];
            for i in 0..t {
                let (pr, dpr) = (&p[i * t..(i + 1) * t], &d_p[i * t..(i + 1) * t]);
                let dot: f32 = pr[..=i].iter().zip(&dpr[..=i]).map(|(a, b)| a * b).sum();
                for j in 0..=i {
                    d_s[i * t + j] = scale * pr[j] * (dpr[j] - dot);
                }
            }
            let d_q = mm(&d_s, (t, 1), &c.k[g * hd..], (kvw, 1), t, t, hd); // dS k (t, hd)
            let d_k = mm(&d_s, (1, t), &c.q[h * hd..], (nh * hd, 1), t, t, hd); // dSᵀ q (t, hd)
            (d_q, d_k, d_v)
        })
        .collect();
    let mut d_q = vec![0f32; t * nh * hd];
    let mut d_k = vec![0f32; t * kvw];
    let mut d_v = vec![0f32; t * kvw];
    for (h, (dq, dk, dv)) in per_head.iter().enumerate() {
        let g = h / group;
        for i in 0..t {
            d_q[i * nh * hd + h * hd..][..hd].copy_from_slice(&dq[i * hd..(i + 1) * hd]);
            add_into(&mut d_k[i * kvw + g * hd..][..hd], &dk[i * hd..(i + 1) * hd]);
            add_into(&mut d_v[i * kvw + g * hd..][..hd], &dv[i * hd..(i + 1) * hd]);
        }
    }
    angles.apply_transposed(&mut d_q, nh);
    angles.apply_transposed(&mut d_k, nkv);
    let mut d_h1 = linear_grad::backward(&l.q_proj, &c.h1, u(0), &d_q, t, gq, fg!(0));
    add_into(&mut d_h1, &linear_grad::backward(&l.k_proj, &c.h1, u(1), &d_k, t, gk, fg!(1)));
    add_into(&mut d_h1, &linear_grad::backward(&l.v_proj, &c.h1, u(2), &d_v, t, gv, fg!(2)));
    let mut d_in = d_mid;
    add_into(&mut d_in, &rms_norm_bwd(&c.x_in, &l.input_norm, &c.rstd1, &d_h1));
    if let Some(f) = full.filter(|f| !f.input_norm.is_empty()) {
        rms_norm_weight_grad(&c.x_in, &c.rstd1, &d_h1, &mut f.input_norm);
    }
    d_in
}
