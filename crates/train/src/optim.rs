//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), as `torch.optim.AdamW`, and
//! global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`, over the LoRA matrices.
use tuneguard_model::llama::Llama;

use crate::error::{Result, TrainError};
use crate::step::Grads;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (> 0).
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay: each step multiplies weights by (1 − lr·weight_decay).
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// First and second moments per LoRA matrix, in (layer, projection, A|B) order.
#[derive(Debug, Clone, Default)]
pub struct AdamW {
    pub config: AdamWConfig,
    pub step: u64,
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Global L2 norm of all gradients (computed in f64).
pub fn grad_norm(grads: &Grads) -> f64 {
    let sq: f64 =
        grads.iter().flatten().flatten().flat_map(|g| g.a.iter().chain(&g.b)).map(|&x| (x as f64) * (x as f64)).sum();
    sq.sqrt()
}

/// Scales gradients so their global norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> f64 {
    let norm = grad_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.iter_mut().flatten().flatten() {
            g.a.iter_mut().chain(g.b.iter_mut()).for_each(|x| *x *= coef as f32);
        }
    }
    norm
}

impl AdamW {
    /// # Errors
    /// `Optimizer` naming the setting when lr ≤ 0, a beta outside [0, 1), eps ≤ 0 or a
    /// negative weight decay.
    pub fn new(config: AdamWConfig) -> Result<Self> {
        let bad = |key: &'static str, reason: String| Err(TrainError::Optimizer { key, reason });
        if !config.lr.is_finite() || config.lr <= 0.0 {
            return bad("lr", format!("must be > 0, got {}", config.lr));
        }
        for (key, b) in [("beta1", config.beta1), ("beta2", config.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(key, format!("must be in [0, 1), got {b}"));
            }
        }
        if config.eps.is_nan() || config.eps <= 0.0 {
            return bad("eps", format!("must be > 0, got {}", config.eps));
        }
        if config.weight_decay.is_nan() || config.weight_decay < 0.0 {
            return bad("weight_decay", format!("must be >= 0, got {}", config.weight_decay));
        }
        Ok(AdamW { config, step: 0, moments: Vec::new() })
    }

    /// One update of every LoRA matrix of `model` from `grads` (missing gradients count as 0).
    ///
    /// # Errors
    /// `NoTrainableWeights` when the model has no LoRA weights.
    pub fn update(&mut self, model: &mut Llama, grads: &Grads) -> Result<()> {
        let c = self.config;
        self.step += 1;
        let bc1 = 1.0 - (c.beta1 as f64).powi(self.step as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(self.step as i32);
        let step_size = (c.lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let mut slot = 0;
        for (li, layer) in model.layers.iter_mut().enumerate() {
            for (pi, (_, lin)) in layer.projections_mut().into_iter().enumerate() {
                let Some(lora) = lin.lora.as_mut() else { continue };
                let g = grads.get(li).and_then(|b| b[pi].as_ref());
                for (which, p) in [&mut lora.a, &mut lora.b].into_iter().enumerate() {
                    if self.moments.len() <= slot {
                        self.moments.push((vec![0.0; p.len()], vec![0.0; p.len()]));
                    }
                    let (m, v) = &mut self.moments[slot];
                    let grad = g.map(|g| if which == 0 { &g.a } else { &g.b });
                    for i in 0..p.len() {
                        let gi = grad.map_or(0.0, |g| g[i]);
                        p[i] *= 1.0 - c.lr * c.weight_decay;
                        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
                        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
                        let denom = v[i].sqrt() / bc2_sqrt + c.eps;
                        p[i] -= step_size * m[i] / denom;
                    }
                    slot += 1;
                }
            }
        }
        if slot == 0 {
            return Err(TrainError::NoTrainableWeights);
        }
        Ok(())
    }
}
