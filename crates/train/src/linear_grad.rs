//! Forward and backward of a frozen linear layer with an optional trainable LoRA update
//! `y = W x + b + s·B(A·dropout(x))` (Hu et al. 2021; dropout on the LoRA input as PEFT's
//! `lora_dropout`). The frozen W gets no gradient: only dx, dA, dB.
use tuneguard_data::splitmix64;
use tuneguard_model::linear::Linear;

use crate::tensor_ops::{add_into, mm};

/// Gradients of one LoRA pair, same layouts as the weights: A (r, in), B (out, r).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraGrad {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// Gradients of a trained base weight (full fine-tuning): W (out, in) and the bias (out,).
#[derive(Debug, Clone, PartialEq)]
pub struct FullLinearGrad {
    pub w: Vec<f32>,
    pub b: Option<Vec<f32>>,
}

impl FullLinearGrad {
    pub fn zeros(l: &Linear) -> Self {
        FullLinearGrad { w: vec![0.0; l.weight.len()], b: l.bias.as_ref().map(|b| vec![0.0; b.len()]) }
    }
}

/// Inverted dropout on the LoRA branch's input: each element is kept with probability 1 − p and
/// scaled by 1/(1 − p). The mask is a pure function of `seed` and the element index, so a run
/// is reproducible whatever the thread schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
}

impl Dropout {
    /// Whether element `i` is kept.
    fn keep(&self, i: usize) -> bool {
        let threshold = (self.p as f64 * (1u64 << 53) as f64) as u64;
        splitmix64(self.seed ^ i as u64) >> 11 >= threshold
    }

    /// `v · mask / (1 − p)` element-wise.
    fn apply(&self, v: &[f32]) -> Vec<f32> {
        let scale = 1.0 / (1.0 - self.p);
        v.iter().enumerate().map(|(i, &x)| if self.keep(i) { x * scale } else { 0.0 }).collect()
    }
}

/// What the LoRA branch keeps for backward: `u = x_d Aᵀ` (t, r) and the dropped-out input x_d
/// (absent without dropout, where x_d = x).
#[derive(Debug, Clone)]
pub struct LoraCache {
    u: Vec<f32>,
    x_drop: Option<Vec<f32>>,
    dropout: Option<Dropout>,
}

/// `y (t, out)` and, with LoRA, what the backward pass needs. `adapter` false leaves the LoRA
/// update out (the frozen base layer).
pub fn forward(
    l: &Linear,
    x: &[f32],
    t: usize,
    dropout: Option<Dropout>,
    adapter: bool,
) -> (Vec<f32>, Option<LoraCache>) {
    let mut y = vec![0f32; t * l.out_features];
    l.forward_base(x, t, &mut y);
    let Some(lo) = l.lora.as_ref().filter(|_| adapter) else { return (y, None) };
    let dropout = dropout.filter(|d| d.p > 0.0);
    let x_drop = dropout.map(|d| d.apply(x));
    let xd = x_drop.as_deref().unwrap_or(x);
    lo.add_update(xd, t, l.in_features, l.out_features, &mut y);
    let u = mm(xd, (l.in_features, 1), &lo.a, (1, l.in_features), t, l.in_features, lo.rank);
    (y, Some(LoraCache { u, x_drop, dropout }))
}

/// Backward of [`forward`]: returns dx (t, in) and adds dA, dB into `grad` (created on first use).
/// dB = s·dyᵀu, du = s·dy B, dA = duᵀx_d, dx = dy W + (du A)·(mask/(1 − p)).
pub fn backward(
    l: &Linear,
    x: &[f32],
    cache: Option<&LoraCache>,
    dy: &[f32],
    t: usize,
    grad: &mut Option<LoraGrad>,
    full: Option<&mut FullLinearGrad>,
) -> Vec<f32> {
    let (n_in, n_out) = (l.in_features, l.out_features);
    let mut dx = mm(dy, (n_out, 1), &l.weight, (n_in, 1), t, n_out, n_in);
    // An empty weight gradient is one the caller does not want (the Fisher of adapted
    // projections only): it is not computed.
    if let Some(f) = full.filter(|f| !f.w.is_empty()) {
        add_into(&mut f.w, &mm(dy, (1, n_out), x, (n_in, 1), n_out, t, n_in)); // dW = dyᵀ x
        if let Some(b) = f.b.as_mut() {
            for row in dy.chunks(n_out) {
                add_into(b, row);
            }
        }
    }
    if let (Some(lo), Some(c)) = (&l.lora, cache) {
        let r = lo.rank;
        let xd = c.x_drop.as_deref().unwrap_or(x);
        let mut db = mm(dy, (1, n_out), &c.u, (r, 1), n_out, t, r); // (out, r) = dyᵀ u
        db.iter_mut().for_each(|v| *v *= lo.scale);
        let mut du = mm(dy, (n_out, 1), &lo.b, (r, 1), t, n_out, r); // (t, r) = dy B
        du.iter_mut().for_each(|v| *v *= lo.scale);
        let da = mm(&du, (1, r), xd, (n_in, 1), r, t, n_in); // (r, in) = duᵀ x_d
        let dxd = mm(&du, (r, 1), &lo.a, (n_in, 1), t, r, n_in); // d(x_d) = du A
                                                                 // d(x_d)/dx is the same mask scaled by 1/(1 − p).
        let dxd = match c.dropout {
            Some(d) => d.apply(&dxd),
            None => dxd,
        };
        add_into(&mut dx, &dxd);
        match grad {
            Some(g) => {
                add_into(&mut g.a, &da);
                add_into(&mut g.b, &db);
            }
            None => *grad = Some(LoraGrad { a: da, b: db }),
        }
    }
    dx
}
