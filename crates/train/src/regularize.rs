//! Regularizers applied inside a training step: NEFTune embedding noise and an L1 penalty.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tuneguard_data::splitmix64;
use tuneguard_model::llama::Llama;

use crate::step::{FullGrads, Grads};

/// NEFTune (Jain et al. 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"): during
/// training, add noise drawn uniformly from [−α/√(t·d), α/√(t·d)] to the input embeddings of a
/// row of t tokens and hidden size d. transformers' `neftune_post_forward_hook` uses the padded
/// length for t; rows here are never padded, so t is the row's own length.
#[derive(Debug, Clone, Copy)]
pub struct Neftune {
    pub alpha: f32,
    /// The step's seed; each row derives its own, so the noise does not depend on threads.
    pub seed: u64,
}

impl Neftune {
    /// Adds the noise to the embeddings `x` (t, d) of batch row `row`.
    pub fn apply(&self, x: &mut [f32], t: usize, d: usize, row: usize) {
        let mag = self.alpha / ((t * d) as f32).sqrt();
        if mag <= 0.0 {
            return;
        }
        let mut rng = ChaCha12Rng::seed_from_u64(splitmix64(self.seed ^ (row as u64).wrapping_mul(0x9E37_79B9)));
        x.iter_mut().for_each(|v| *v += rng.random_range(-mag..=mag));
    }
}

/// L1 penalty λ·Σ|w| over the LoRA matrices: adds λ·sign(w) to the gradients and returns the
/// penalty. Call before clipping, so the penalty's gradient is clipped with the rest.
pub fn add_l1_lora(model: &Llama, grads: &mut Grads, lambda: f32) -> f64 {
    let mut penalty = 0.0f64;
    for (li, layer) in model.layers.iter().enumerate() {
        for (pi, (_, lin)) in layer.projections().into_iter().enumerate() {
            let Some(lora) = &lin.lora else { continue };
            let Some(g) = grads.get_mut(li).and_then(|b| b[pi].as_mut()) else { continue };
            for (w, gw) in [(&lora.a, &mut g.a), (&lora.b, &mut g.b)] {
                penalty += add_l1(w, gw, lambda);
            }
        }
    }
    penalty
}

/// L1 penalty over every weight for full fine-tuning (see [`add_l1_lora`]).
pub fn add_l1_full(model: &mut Llama, grads: &mut FullGrads, lambda: f32) -> f64 {
    let params = crate::optim::full_params(model);
    params.into_iter().zip(grads.buffers_mut()).map(|(w, g)| add_l1(w, g, lambda)).sum()
}

/// `g += λ·sign(w)` (sign(0) = 0, the subgradient torch's `abs` backward uses); returns λ·Σ|w|.
fn add_l1(w: &[f32], g: &mut [f32], lambda: f32) -> f64 {
    let mut sum = 0.0f64;
    for (wi, gi) in w.iter().zip(g.iter_mut()) {
        sum += wi.abs() as f64;
        if *wi != 0.0 {
            *gi += lambda * wi.signum();
        }
    }
    lambda as f64 * sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_adds_lambda_sign_and_returns_the_penalty() {
        let w = [0.5f32, -2.0, 0.0, 1.0];
        let mut g = [0.1f32, 0.1, 0.1, -0.1];
        let p = add_l1(&w, &mut g, 0.01);
        assert!((p - 0.01 * 3.5).abs() < 1e-9);
        let want = [0.11f32, 0.09, 0.1, -0.09];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{g:?}");
        }
    }

    #[test]
    fn neftune_noise_is_bounded_seeded_and_scaled() {
        let (t, d) = (8, 32);
        let n = Neftune { alpha: 5.0, seed: 3 };
        let mut x = vec![0f32; t * d];
        n.apply(&mut x, t, d, 0);
        let mag = 5.0 / ((t * d) as f32).sqrt(); // 0.3125
        assert!(x.iter().all(|v| v.abs() <= mag));
        // Uniform on [−m, m]: mean ≈ 0, mean |v| ≈ m/2.
        let mean_abs = x.iter().map(|v| v.abs()).sum::<f32>() / x.len() as f32;
        assert!((mean_abs - mag / 2.0).abs() < 0.05 * mag * 2.0, "{mean_abs} vs {}", mag / 2.0);
        let mut again = vec![0f32; t * d];
        n.apply(&mut again, t, d, 0);
        assert_eq!(x, again, "same seed and row, same noise");
        let mut other = vec![0f32; t * d];
        n.apply(&mut other, t, d, 1);
        assert_ne!(x, other, "rows get different noise");
    }
}
