//! AdamW with decoupled weight decay (Loshchilov & Hutter 2019), as `torch.optim.AdamW`, and
//! global-norm gradient clipping, as `torch.nn.utils.clip_grad_norm_`, over the LoRA matrices.
use rayon::prelude::*;
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

/// One parameter's AdamW update (torch's order of operations): decay, moments, step.
#[inline(always)]
fn adamw_element(c: &AdamWConfig, p: &mut f32, m: &mut f32, v: &mut f32, g: f32, step_size: f32, bc2_sqrt: f32) {
    *p *= 1.0 - c.lr * c.weight_decay;
    *m = c.beta1 * *m + (1.0 - c.beta1) * g;
    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
    *p -= step_size * *m / (v.sqrt() / bc2_sqrt + c.eps);
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

    /// First and second moments, one pair per trainable tensor (in [`trainable_params`] order).
    pub fn moments(&self) -> &[(Vec<f32>, Vec<f32>)] {
        &self.moments
    }

    /// Restores the state saved in a checkpoint: the step count and the moments.
    pub fn restore(&mut self, step: u64, moments: Vec<(Vec<f32>, Vec<f32>)>) {
        self.step = step;
        self.moments = moments;
    }

    /// Counts a step; returns the bias-corrected step size lr/(1 − β1ᵗ) and √(1 − β2ᵗ).
    fn advance(&mut self) -> (f32, f32) {
        let c = self.config;
        self.step += 1;
        let bc1 = 1.0 - (c.beta1 as f64).powi(self.step as i32);
        let bc2 = 1.0 - (c.beta2 as f64).powi(self.step as i32);
        ((c.lr as f64 / bc1) as f32, bc2.sqrt() as f32)
    }

    /// One update of every LoRA matrix of `model` from `grads` (missing gradients count as 0).
    ///
    /// # Errors
    /// `NoTrainableWeights` when the model has no LoRA weights.
    pub fn update(&mut self, model: &mut Llama, grads: &Grads) -> Result<()> {
        let c = self.config;
        let (step_size, bc2_sqrt) = self.advance();
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
                        adamw_element(
                            &c,
                            &mut p[i],
                            &mut m[i],
                            &mut v[i],
                            grad.map_or(0.0, |g| g[i]),
                            step_size,
                            bc2_sqrt,
                        );
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

/// The trainable tensors: every LoRA matrix in (layer, projection, A|B) order — the order of the
/// optimizer's moments — or, for full fine-tuning, [`full_params`].
pub fn trainable_params(model: &mut Llama, full: bool) -> Vec<&mut Vec<f32>> {
    if full {
        return full_params(model);
    }
    let mut out = Vec::new();
    for layer in &mut model.layers {
        for (_, lin) in layer.projections_mut() {
            if let Some(l) = lin.lora.as_mut() {
                out.push(&mut l.a);
                out.push(&mut l.b);
            }
        }
    }
    out
}

/// Shared views of [`trainable_params`], in the same order.
pub fn trainable_refs(model: &Llama, full: bool) -> Vec<&[f32]> {
    let mut out: Vec<&[f32]> = Vec::new();
    for layer in &model.layers {
        if full {
            for (_, p) in layer.projections() {
                out.push(&p.weight);
                if let Some(b) = &p.bias {
                    out.push(b);
                }
            }
            out.push(&layer.input_norm);
            out.push(&layer.post_attention_norm);
        } else {
            for (_, lin) in layer.projections() {
                if let Some(l) = &lin.lora {
                    out.push(&l.a);
                    out.push(&l.b);
                }
            }
        }
    }
    if full {
        out.push(&model.embed_tokens.weight);
        out.push(&model.norm);
        if let Some(h) = &model.lm_head {
            out.push(&h.weight);
        }
    }
    out
}

/// Every trainable weight for full fine-tuning, in the order of
/// [`crate::step::FullGrads::buffers_mut`]: per layer the seven projections (weight, then bias
/// if any) and the two norms, then the embedding, the final norm and an untied `lm_head`.
pub fn full_params(model: &mut Llama) -> Vec<&mut Vec<f32>> {
    let mut out = Vec::new();
    for layer in &mut model.layers {
        let tuneguard_model::llama::Layer {
            input_norm,
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            post_attention_norm,
            gate_proj,
            up_proj,
            down_proj,
        } = layer;
        for p in [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] {
            out.push(&mut p.weight);
            if let Some(b) = p.bias.as_mut() {
                out.push(b);
            }
        }
        out.push(input_norm);
        out.push(post_attention_norm);
    }
    out.push(&mut model.embed_tokens.weight);
    out.push(&mut model.norm);
    if let Some(h) = model.lm_head.as_mut() {
        out.push(&mut h.weight);
    }
    out
}

/// Readies a model for full fine-tuning: drops LoRA weights and the packed copies of the base
/// weights (quantized blocks, pre-packed matmul panels), which would go stale after an update.
pub fn prepare_full_finetune(model: &mut Llama) {
    for layer in &mut model.layers {
        for (_, p) in layer.projections_mut() {
            p.lora = None;
            p.packed = None;
            p.prepacked = None;
        }
    }
    for l in std::iter::once(&mut model.embed_tokens).chain(model.lm_head.as_mut()) {
        l.packed = None;
        l.prepacked = None;
    }
}

/// Global-norm clipping of full fine-tuning gradients; returns the norm before clipping.
pub fn clip_full_grad_norm(grads: &mut crate::step::FullGrads, max_norm: f64) -> f64 {
    let mut bufs = grads.buffers_mut();
    let norm = bufs.iter().flat_map(|b| b.iter()).map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
    let coef = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && coef < 1.0 {
        bufs.iter_mut().for_each(|b| b.iter_mut().for_each(|x| *x *= coef as f32));
    }
    norm
}

impl AdamW {
    /// One AdamW update of every weight from full fine-tuning gradients.
    pub fn update_full(&mut self, model: &mut Llama, grads: &mut crate::step::FullGrads) {
        let c = self.config;
        let (step_size, bc2_sqrt) = self.advance();
        let params = full_params(model);
        let grads = grads.buffers_mut();
        if self.moments.len() != params.len() {
            self.moments = params.iter().map(|p| (vec![0.0; p.len()], vec![0.0; p.len()])).collect();
        }
        params.into_par_iter().zip(grads).zip(self.moments.par_iter_mut()).for_each(|((p, g), (m, v))| {
            for i in 0..p.len() {
                adamw_element(&c, &mut p[i], &mut m[i], &mut v[i], g[i], step_size, bc2_sqrt);
            }
        });
    }
}
