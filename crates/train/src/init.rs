//! Fresh LoRA weights as PEFT initializes them (`init_lora_weights=True`): A Kaiming-uniform
//! with a = √5, i.e. U(−1/√in, 1/√in) (PyTorch's `nn.Linear` default), B zero, so the adapted
//! model starts equal to the base model; scale = alpha / r.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use tuneguard_model::linear::LoraWeights;
use tuneguard_model::llama::{Llama, Projection};

use crate::error::{Result, TrainError};

/// Attaches new LoRA weights of rank `r` to the `targets` projections of every layer; returns
/// the number of trainable parameters.
///
/// # Errors
/// `Optimizer`-style setting errors naming `lora.r`, `lora.alpha` or `lora.target_modules`.
pub fn init_lora(model: &mut Llama, r: usize, alpha: f32, targets: &[Projection], seed: u64) -> Result<usize> {
    let bad = |key: &'static str, reason: String| Err(TrainError::Optimizer { key, reason });
    if r == 0 {
        return bad("lora.r", "must be at least 1".into());
    }
    if !alpha.is_finite() || alpha <= 0.0 {
        return bad("lora.alpha", format!("must be > 0, got {alpha}"));
    }
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut n = 0;
    for layer in &mut model.layers {
        for (name, lin) in layer.projections_mut() {
            if !targets.iter().any(|t| t.module() == name) {
                lin.lora = None;
                continue;
            }
            let full_rank = lin.in_features.min(lin.out_features);
            if r > full_rank {
                return bad(
                    "lora.r",
                    format!("{r} exceeds the rank of {name} ({} × {}), {full_rank}", lin.out_features, lin.in_features),
                );
            }
            let bound = 1.0 / (lin.in_features as f32).sqrt();
            let a = (0..r * lin.in_features).map(|_| rng.random_range(-bound..bound)).collect();
            let b = vec![0.0; lin.out_features * r];
            n += r * (lin.in_features + lin.out_features);
            lin.lora = Some(LoraWeights { rank: r, a, b, scale: alpha / r as f32 });
        }
    }
    if n == 0 {
        return bad(
            "lora.target_modules",
            "is empty: name at least one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj".into(),
        );
    }
    Ok(n)
}
