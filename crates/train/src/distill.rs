//! Knowledge distillation from the frozen base model (Hinton, Vinyals and Dean 2015, "Distilling
//! the Knowledge in a Neural Network"): the forward KL divergence between the base's and the
//! tuned model's next-token distributions, both softened by a temperature T,
//!
//! ```text
//! L_kd = λ · T² · (1/N) · Σ_positions KL(softmax(z_base / T) ‖ softmax(z / T))
//! ```
//!
//! averaged over the N distilled positions of the optimizer step. The T² keeps the gradient's
//! scale independent of T, as in the paper: ∂L_kd/∂z = λ · T · (p − p_base) / N, where p and
//! p_base are the softened distributions. With LoRA the base is the same weights with the adapter
//! switched off, so no second copy of the model is held.

/// Which positions are distilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DistillOn {
    /// Every supervised position of every row (task and replay rows).
    #[default]
    Supervised,
    /// Only the replay rows (general text), which then get no cross-entropy: the tuned model is
    /// kept close to the base on general text while the task rows train as usual.
    Replay,
}

/// The distillation term of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distill {
    /// Weight λ (> 0).
    pub lambda: f32,
    /// Temperature T (> 0).
    pub temperature: f32,
    pub on: DistillOn,
    /// Distilled positions of the whole optimizer step (the N above; see
    /// [`crate::step::count_targets`]).
    pub n_norm: usize,
}

impl Distill {
    /// Adds the term of one position to `grad` (the d(loss)/d(logits) row, (v,)) and returns
    /// its share of the loss, λ·T²·KL/N. `student` and `teacher` are the raw logits (v,).
    ///
    /// Both softened distributions come from the vectorized softmax; the KL needs no logarithm
    /// per element: ln q_i − ln p_i = (t_i − s_i)/T − (lse_t − lse_s), and each log-sum-exp is
    /// read off the softmax at its largest logit (lse = z_max/T − ln p_max, with p_max ≥ 1/v).
    pub fn add_position(&self, student: &[f32], teacher: &[f32], grad: &mut [f32]) -> f64 {
        let inv_t = 1.0 / self.temperature;
        let n = self.n_norm.max(1) as f64;
        let (p, lse_s) = softened(student, inv_t);
        let (q, lse_t) = softened(teacher, inv_t);
        let scale = self.lambda * self.temperature / n as f32;
        let mut dot = 0.0f64; // Σ q_i (t_i − s_i)
        for (((g, &pi), &qi), (&si, &ti)) in grad.iter_mut().zip(&p).zip(&q).zip(student.iter().zip(teacher)) {
            dot += qi as f64 * (ti - si) as f64;
            *g += scale * (pi - qi);
        }
        let kl = dot * inv_t as f64 - (lse_t - lse_s);
        let t = self.temperature as f64;
        self.lambda as f64 * t * t * kl.max(0.0) / n
    }
}

/// softmax(z / T) and its log-sum-exp ln Σ exp(z_i / T).
fn softened(z: &[f32], inv_t: f32) -> (Vec<f32>, f64) {
    let mut p: Vec<f32> = z.iter().map(|&v| v * inv_t).collect();
    let (arg, &top) =
        p.iter().enumerate().fold((0, &f32::NEG_INFINITY), |b, (i, v)| if *v > *b.1 { (i, v) } else { b });
    tuneguard_model::ops::softmax_in_place(&mut p);
    let lse = top as f64 - (p[arg] as f64).ln();
    (p, lse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kd(lambda: f32, temperature: f32, n: usize) -> Distill {
        Distill { lambda, temperature, on: DistillOn::Supervised, n_norm: n }
    }

    #[test]
    fn identical_distributions_cost_nothing() {
        let z = [1.0f32, -0.5, 2.0, 0.0];
        let mut g = [0f32; 4];
        let l = kd(1.0, 2.0, 1).add_position(&z, &z, &mut g);
        assert!(l.abs() < 1e-12);
        assert!(g.iter().all(|v| v.abs() < 1e-7));
    }

    #[test]
    fn loss_equals_the_kl_by_hand() {
        // T = 1: p = softmax([0, ln 3]) = (1/4, 3/4), q = softmax([0, 0]) = (1/2, 1/2).
        // KL(q ‖ p) = ½ ln(½ / ¼) + ½ ln(½ / ¾) = ½ ln(4/3).
        let mut g = [0f32; 2];
        let l = kd(1.0, 1.0, 1).add_position(&[0.0, 3f32.ln()], &[0.0, 0.0], &mut g);
        assert!((l - 0.5 * (4.0f64 / 3.0).ln()).abs() < 1e-7, "{l}");
        // ∂/∂z = p − q = (−¼, ¼).
        assert!((g[0] + 0.25).abs() < 1e-6 && (g[1] - 0.25).abs() < 1e-6, "{g:?}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let teacher = [0.3f32, -1.0, 2.2, 0.5, -0.2];
        let student = [1.1f32, 0.4, -0.3, 0.9, 0.0];
        let d = kd(0.7, 2.5, 3);
        let mut g = [0f32; 5];
        d.add_position(&student, &teacher, &mut g);
        let loss = |z: &[f32]| d.add_position(z, &teacher, &mut [0f32; 5]);
        for i in 0..5 {
            let (mut up, mut down) = (student, student);
            up[i] += 1e-3;
            down[i] -= 1e-3;
            let numeric = (loss(&up) - loss(&down)) / 2e-3;
            assert!((numeric - g[i] as f64).abs() < 1e-4, "{i}: {numeric} vs {}", g[i]);
        }
    }
}
