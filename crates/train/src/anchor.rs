//! Penalties that anchor the tuned weights θ to the base weights θ* against catastrophic
//! forgetting:
//!
//! - **EWC** (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks"):
//!   λ/2 · Σ F ⊙ (θ − θ*)², with F the diagonal Fisher information of the base weights on general
//!   examples ([`fisher_diagonal`]);
//! - **L2-SP** (Li, Grandvalet and Davoine 2018, "Explicit Inductive Bias for Transfer Learning
//!   with Convolutional Networks"): λ/2 · ‖θ − θ*‖².
//!
//! With LoRA, θ − θ* of an adapted projection is exactly its update ΔW = s·B·A (s = alpha / r,
//! B (out, r), A (r, in)), so the penalty and its gradients are exact:
//! with G = λ·F ⊙ ΔW (out, in), ∂/∂B = s·G·Aᵀ and ∂/∂A = s·Bᵀ·G. For L2-SP (F = 1) the same
//! gradients are λ·s²·B·(A·Aᵀ) and λ·s²·(BᵀB)·A, and ‖ΔW‖² = s²·tr((BᵀB)(AAᵀ)), so ΔW is never
//! formed.
use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;
use tuneguard_model::llama::Llama;

use crate::error::{Result, TrainError};
use crate::linear_grad::LoraGrad;
use crate::step::{FullGrads, Grads, Sequence};
use crate::tensor_ops::mm;

/// Diagonal Fisher information of the base weight W (out, in) of every adapted projection, per
/// layer in [`tuneguard_model::llama::Layer::projections`] order (`None`: not adapted).
#[derive(Debug, Clone, PartialEq)]
pub struct Fisher {
    pub layers: Vec<[Option<Vec<f32>>; 7]>,
    /// General examples it was estimated on.
    pub examples: usize,
}

impl Fisher {
    /// Mean of every stored value.
    pub fn mean(&self) -> f64 {
        let (sum, n) = self
            .values()
            .fold((0.0f64, 0usize), |(s, n), v| (s + v.iter().map(|&x| x as f64).sum::<f64>(), n + v.len()));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    }

    fn values(&self) -> impl Iterator<Item = &Vec<f32>> {
        self.layers.iter().flatten().flatten()
    }

    /// Divides every value by the mean, so the mean is 1 and EWC's λ is on L2-SP's scale (a
    /// constant rescaling of λ; the shape of the penalty is unchanged).
    pub fn normalize(&mut self) {
        let mean = self.mean();
        if mean > 0.0 {
            let inv = (1.0 / mean) as f32;
            self.layers.iter_mut().flatten().flatten().for_each(|v| v.iter_mut().for_each(|x| *x *= inv));
        }
    }

    /// Tensor name of layer `li`'s projection `name` (`self_attn.q_proj`), as in the model's own
    /// safetensors.
    fn tensor_name(li: usize, name: &str) -> String {
        format!("model.layers.{li}.{name}.weight")
    }

    /// Writes the Fisher atomically as f32 safetensors (one (out, in) tensor per adapted
    /// projection, under the base weight's name), with `key` in the metadata.
    ///
    /// # Errors
    /// `Checkpoint` naming the file.
    pub fn save(&self, model: &Llama, path: &Path, key: &str) -> Result<()> {
        let fail = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
        let mut views = Vec::new();
        for (li, (layer, fs)) in model.layers.iter().zip(&self.layers).enumerate() {
            for ((name, lin), f) in layer.projections().into_iter().zip(fs) {
                if let Some(f) = f {
                    let bytes: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
                    views.push((Self::tensor_name(li, name), vec![lin.out_features, lin.in_features], bytes));
                }
            }
        }
        let tensors = views
            .iter()
            .map(|(n, shape, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| fail(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("key".to_string(), key.to_string()),
            ("examples".to_string(), self.examples.to_string()),
        ]);
        let bytes = safetensors::serialize(tensors, Some(meta)).map_err(|e| fail(e.to_string()))?;
        tuneguard_fs::write_bytes(path, &bytes, |p, e| TrainError::Checkpoint {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Reads a Fisher written by [`Fisher::save`] for `model` and `key`.
    ///
    /// # Errors
    /// `Checkpoint` for a file that cannot be read, is not a tuneguard Fisher (it is never
    /// overwritten then), or does not fit the model's adapted projections.
    pub fn load(model: &Llama, path: &Path, key: &str) -> Result<Cached> {
        let fail = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cached::Missing),
            Err(e) => return Err(fail(e.to_string())),
        };
        let not_ours = |why: String| {
            fail(format!("{why}: not a Fisher written by tuneguard, so it is left as it is; name another file"))
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| not_ours(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(not_ours("its metadata has no `format` = tuneguard-ewc-fisher".into()));
        }
        if meta.get("key").map(String::as_str) != Some(key) {
            return Ok(Cached::Stale);
        }
        let examples = meta.get("examples").and_then(|n| n.parse().ok()).unwrap_or(0);
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
        let mut layers = Vec::with_capacity(model.layers.len());
        for (li, layer) in model.layers.iter().enumerate() {
            let mut fs: [Option<Vec<f32>>; 7] = Default::default();
            for ((name, lin), f) in layer.projections().into_iter().zip(fs.iter_mut()) {
                if lin.lora.is_none() {
                    continue;
                }
                let n = Self::tensor_name(li, name);
                let t = st.tensor(&n).map_err(|e| fail(format!("{n}: {e}")))?;
                if t.dtype() != safetensors::Dtype::F32 || t.shape() != [lin.out_features, lin.in_features] {
                    return Err(fail(format!(
                        "{n}: {:?} {:?}, expected F32 {:?}",
                        t.dtype(),
                        t.shape(),
                        [lin.out_features, lin.in_features]
                    )));
                }
                *f = Some(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
            }
            layers.push(fs);
        }
        Ok(Cached::Found(Fisher { layers, examples }))
    }
}

/// The `format` metadata of a Fisher file.
const FORMAT: &str = "tuneguard-ewc-fisher";

/// What a Fisher cache file holds.
#[derive(Debug)]
pub enum Cached {
    /// No file.
    Missing,
    /// A tuneguard Fisher made for another model, projections or examples (safe to replace).
    Stale,
    Found(Fisher),
}

/// The diagonal (empirical) Fisher information of the base weights of every LoRA-adapted
/// projection: F = (1/N) Σ_n (∂ℓ_n/∂W)², with ℓ_n the mean token negative log-likelihood of
/// general example n, at the base weights (call it before training, while every LoRA B is zero,
/// so the model is the base). `progress(done)` is called after each example.
///
/// # Errors
/// `Batch` for an example that does not fit the model, naming it; `NoTrainableWeights` when no
/// projection has LoRA weights.
pub fn fisher_diagonal(model: &Llama, examples: &[Sequence], progress: impl Fn(usize) + Sync) -> Result<Fisher> {
    let adapted: Vec<[bool; 7]> =
        model.layers.iter().map(|l| l.projections().map(|(_, lin)| lin.lora.is_some())).collect();
    if !adapted.iter().flatten().any(|&a| a) {
        return Err(TrainError::NoTrainableWeights);
    }
    let mut fisher = Fisher {
        layers: model
            .layers
            .iter()
            .zip(&adapted)
            .map(|(l, a)| {
                let ps = l.projections();
                std::array::from_fn(|i| a[i].then(|| vec![0f32; ps[i].1.weight.len()]))
            })
            .collect(),
        examples: examples.len(),
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Two examples at a time: each holds the gradients of the adapted base weights.
    for pair in examples.chunks(2) {
        let squares: Vec<Result<FullGrads>> = pair
            .par_iter()
            .map(|seq| {
                let mut g = FullGrads::adapted_projections(model);
                let n = crate::step::count_supervised(std::slice::from_ref(seq));
                crate::step::loss_and_full_grads(model, std::slice::from_ref(seq), n, &mut g)?;
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                Ok(g)
            })
            .collect();
        for g in squares {
            let g = g?;
            for (fl, gl) in fisher.layers.iter_mut().zip(&g.layers) {
                for (f, gp) in fl.iter_mut().zip(&gl.proj) {
                    if let Some(f) = f {
                        f.iter_mut().zip(&gp.w).for_each(|(a, &w)| *a += w * w);
                    }
                }
            }
        }
    }
    let inv = 1.0 / examples.len().max(1) as f32;
    fisher.layers.iter_mut().flatten().flatten().for_each(|v| v.iter_mut().for_each(|x| *x *= inv));
    Ok(fisher)
}

/// Adds λ/2 · Σ F ⊙ ΔW² (EWC, with `fisher`) or λ/2 · Σ ΔW² (L2-SP, `None`) over every LoRA
/// projection to the gradients and returns the penalty. Call before clipping.
pub fn add_anchor_penalty(model: &Llama, grads: &mut Grads, lambda: f32, fisher: Option<&Fisher>) -> f64 {
    if grads.len() != model.layers.len() {
        *grads = (0..model.layers.len()).map(|_| Default::default()).collect();
    }
    let work: Vec<(usize, usize)> = (0..model.layers.len()).flat_map(|li| (0..7).map(move |pi| (li, pi))).collect();
    let parts: Vec<(usize, usize, f64, LoraGrad)> = work
        .par_iter()
        .filter_map(|&(li, pi)| {
            let lin = model.layers[li].projections()[pi].1;
            let lora = lin.lora.as_ref()?;
            let f = match fisher {
                Some(fi) => Some(fi.layers.get(li)?[pi].as_deref()?),
                None => None,
            };
            let (p, g) =
                lora_penalty(&lora.a, &lora.b, lora.rank, lin.out_features, lin.in_features, lora.scale, lambda, f);
            Some((li, pi, p, g))
        })
        .collect();
    let mut total = 0.0;
    for (li, pi, p, g) in parts {
        total += p;
        match grads[li][pi].as_mut() {
            Some(acc) => {
                crate::tensor_ops::add_into(&mut acc.a, &g.a);
                crate::tensor_ops::add_into(&mut acc.b, &g.b);
            }
            None => grads[li][pi] = Some(g),
        }
    }
    total
}

/// One projection's penalty and its gradients w.r.t. A (r, in) and B (out, r); see the module
/// comment. `f` is the Fisher (out, in), or `None` for L2-SP.
#[allow(clippy::too_many_arguments)]
pub fn lora_penalty(
    a: &[f32],
    b: &[f32],
    r: usize,
    n_out: usize,
    n_in: usize,
    s: f32,
    lambda: f32,
    f: Option<&[f32]>,
) -> (f64, LoraGrad) {
    match f {
        None => {
            let aat = mm(a, (n_in, 1), a, (1, n_in), r, n_in, r); // (r, r) = A Aᵀ
            let btb = mm(b, (1, r), b, (r, 1), r, n_out, r); // (r, r) = Bᵀ B
            let k = lambda * s * s;
            let mut db = mm(b, (r, 1), &aat, (r, 1), n_out, r, r);
            db.iter_mut().for_each(|v| *v *= k);
            let mut da = mm(&btb, (r, 1), a, (n_in, 1), r, r, n_in);
            da.iter_mut().for_each(|v| *v *= k);
            // ‖ΔW‖² = s²·tr((BᵀB)(AAᵀ)) = s²·Σ_ij (BᵀB)_ij (AAᵀ)_ij (both symmetric).
            let tr: f64 = btb.iter().zip(&aat).map(|(&x, &y)| x as f64 * y as f64).sum();
            (0.5 * lambda as f64 * (s as f64).powi(2) * tr, LoraGrad { a: da, b: db })
        }
        Some(f) => {
            let mut dw = mm(b, (r, 1), a, (n_in, 1), n_out, r, n_in); // (out, in) = B A
            let mut penalty = 0.0f64;
            for (w, &fi) in dw.iter_mut().zip(f) {
                let delta = s * *w;
                penalty += fi as f64 * delta as f64 * delta as f64;
                *w = lambda * fi * delta; // G
            }
            let mut db = mm(&dw, (n_in, 1), a, (1, n_in), n_out, n_in, r); // G Aᵀ
            db.iter_mut().for_each(|v| *v *= s);
            let mut da = mm(b, (1, r), &dw, (n_in, 1), r, n_out, n_in); // Bᵀ G
            da.iter_mut().for_each(|v| *v *= s);
            (0.5 * lambda as f64 * penalty, LoraGrad { a: da, b: db })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// λ/2 Σ f ⊙ (s·B·A)², written out element by element in f64.
    #[allow(clippy::too_many_arguments)]
    fn penalty_by_hand(
        a: &[f32],
        b: &[f32],
        r: usize,
        n_out: usize,
        n_in: usize,
        s: f32,
        lambda: f32,
        f: Option<&[f32]>,
    ) -> f64 {
        let mut p = 0.0;
        for o in 0..n_out {
            for i in 0..n_in {
                let dw: f64 = (0..r).map(|k| b[o * r + k] as f64 * a[k * n_in + i] as f64).sum::<f64>() * s as f64;
                p += f.map_or(1.0, |f| f[o * n_in + i] as f64) * dw * dw;
            }
        }
        0.5 * lambda as f64 * p
    }

    fn fixture() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (r, n_out, n_in) = (3, 4, 5);
        let a: Vec<f32> = (0..r * n_in).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect();
        let b: Vec<f32> = (0..n_out * r).map(|i| ((i * 5 % 13) as f32 - 6.0) / 12.0).collect();
        let f: Vec<f32> = (0..n_out * n_in).map(|i| 0.1 + (i % 7) as f32 / 3.0).collect();
        (a, b, f)
    }

    #[test]
    fn penalties_equal_the_sum_by_hand_and_their_gradients_finite_differences() {
        let (r, n_out, n_in, s, lambda) = (3, 4, 5, 2.0f32, 0.3f32);
        let (a, b, f) = fixture();
        for fisher in [None, Some(f.as_slice())] {
            let (p, g) = lora_penalty(&a, &b, r, n_out, n_in, s, lambda, fisher);
            let want = penalty_by_hand(&a, &b, r, n_out, n_in, s, lambda, fisher);
            assert!((p - want).abs() < 1e-6 * want.max(1.0), "{p} vs {want}");
            let eps = 1e-3f32;
            for (which, len) in [("A", a.len()), ("B", b.len())] {
                for i in 0..len {
                    let bumped = |d: f32| {
                        let (mut a2, mut b2) = (a.clone(), b.clone());
                        if which == "A" {
                            a2[i] += d;
                        } else {
                            b2[i] += d;
                        }
                        penalty_by_hand(&a2, &b2, r, n_out, n_in, s, lambda, fisher)
                    };
                    let numeric = (bumped(eps) - bumped(-eps)) / (2.0 * eps as f64);
                    let analytic = if which == "A" { g.a[i] } else { g.b[i] } as f64;
                    assert!(
                        (numeric - analytic).abs() < 1e-3 * analytic.abs().max(1e-2),
                        "{which}[{i}] {fisher:?}: {numeric} vs {analytic}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_uniform_fisher_of_one_is_l2_sp() {
        let (r, n_out, n_in, s, lambda) = (3, 4, 5, 0.5f32, 1.7f32);
        let (a, b, _) = fixture();
        let ones = vec![1f32; n_out * n_in];
        let (p1, g1) = lora_penalty(&a, &b, r, n_out, n_in, s, lambda, None);
        let (p2, g2) = lora_penalty(&a, &b, r, n_out, n_in, s, lambda, Some(&ones));
        assert!((p1 - p2).abs() < 1e-6, "{p1} vs {p2}");
        for (x, y) in g1.a.iter().chain(&g1.b).zip(g2.a.iter().chain(&g2.b)) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }

    #[test]
    fn zero_b_means_no_penalty_and_no_gradient_on_a() {
        let (r, n_out, n_in) = (3, 4, 5);
        let (a, _, f) = fixture();
        let b = vec![0f32; n_out * r];
        let (p, g) = lora_penalty(&a, &b, r, n_out, n_in, 2.0, 1.0, Some(&f));
        assert_eq!(p, 0.0);
        assert!(g.a.iter().chain(&g.b).all(|&x| x == 0.0));
    }

    #[test]
    fn normalize_makes_the_mean_one() {
        let mut f = Fisher {
            layers: vec![[Some(vec![1.0, 3.0]), None, None, None, None, None, Some(vec![4.0, 0.0])]],
            examples: 2,
        };
        f.normalize();
        assert!((f.mean() - 1.0).abs() < 1e-7);
        assert_eq!(f.layers[0][0], Some(vec![0.5, 1.5]));
    }
}
