//! Forward and backward of a frozen linear layer with an optional trainable LoRA update
//! `y = W x + b + s·B(A x)` (Hu et al. 2021). The frozen W gets no gradient: only dx, dA, dB.
use tuneguard_model::linear::Linear;

use crate::tensor_ops::{add_into, mm};

/// Gradients of one LoRA pair, same layouts as the weights: A (r, in), B (out, r).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraGrad {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// `y (t, out)` and, with LoRA, `u = x Aᵀ (t, r)` kept for the backward pass.
pub fn forward(l: &Linear, x: &[f32], t: usize) -> (Vec<f32>, Option<Vec<f32>>) {
    let mut y = vec![0f32; t * l.out_features];
    l.forward(x, t, &mut y);
    let u = l.lora.as_ref().map(|lo| mm(x, (l.in_features, 1), &lo.a, (1, l.in_features), t, l.in_features, lo.rank));
    (y, u)
}

/// Backward of [`forward`]: returns dx (t, in) and adds dA, dB into `grad` (created on first use).
/// dB = s·dyᵀu, du = s·dy B, dA = duᵀx, dx = dy W + du A.
pub fn backward(
    l: &Linear,
    x: &[f32],
    u: Option<&[f32]>,
    dy: &[f32],
    t: usize,
    grad: &mut Option<LoraGrad>,
) -> Vec<f32> {
    let (n_in, n_out) = (l.in_features, l.out_features);
    let mut dx = mm(dy, (n_out, 1), &l.weight, (n_in, 1), t, n_out, n_in);
    if let (Some(lo), Some(u)) = (&l.lora, u) {
        let r = lo.rank;
        let mut db = mm(dy, (1, n_out), u, (r, 1), n_out, t, r); // (out, r) = dyᵀ u
        db.iter_mut().for_each(|v| *v *= lo.scale);
        let mut du = mm(dy, (n_out, 1), &lo.b, (r, 1), t, n_out, r); // (t, r) = dy B
        du.iter_mut().for_each(|v| *v *= lo.scale);
        let da = mm(&du, (1, r), x, (n_in, 1), r, t, n_in); // (r, in) = duᵀ x
        add_into(&mut dx, &mm(&du, (r, 1), &lo.a, (n_in, 1), t, r, n_in));
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
