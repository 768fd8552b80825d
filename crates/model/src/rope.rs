//! Rotary position embedding (Su et al. 2021, RoFormer) in Hugging Face's "rotate half" layout:
//! dimension `i` of a head pairs with `i + hd/2`. Frequencies are computed in f32 as transformers
//! does, with optional Llama 3 frequency scaling (`_compute_llama3_parameters`).
use crate::config::{Llama3RopeScaling, ModelConfig};

#[derive(Debug, Clone)]
pub struct Rope {
    /// Inverse frequencies, (hd/2,).
    inv_freq: Vec<f32>,
}

/// cos and sin for a run of positions, each (t, hd/2).
pub struct RopeAngles {
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
    pub half: usize,
}

fn llama3_scale(inv_freq: &mut [f32], s: &Llama3RopeScaling) {
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    for f in inv_freq.iter_mut() {
        let freq = *f as f64;
        let wavelen = 2.0 * std::f64::consts::PI / freq;
        let scaled = if wavelen > low_wavelen { freq / s.factor } else { freq };
        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
        *f = if medium {
            let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            ((1.0 - smooth) * scaled / s.factor + smooth * scaled) as f32
        } else {
            scaled as f32
        };
    }
}

impl Rope {
    pub fn new(cfg: &ModelConfig) -> Self {
        let hd = cfg.head_dim;
        let base = cfg.rope_theta as f32;
        let mut inv_freq: Vec<f32> = (0..hd / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / hd as f32)).collect();
        if let Some(s) = &cfg.rope_scaling {
            llama3_scale(&mut inv_freq, s);
        }
        Rope { inv_freq }
    }

    /// Angles for positions `start..start + t`.
    pub fn angles(&self, start: usize, t: usize) -> RopeAngles {
        let positions: Vec<usize> = (start..start + t).collect();
        self.angles_at(&positions)
    }

    /// Angles for arbitrary positions, one row each (packed rows restart at 0 per example).
    pub fn angles_at(&self, positions: &[usize]) -> RopeAngles {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        RopeAngles { cos, sin, half }
    }
}

impl RopeAngles {
    /// Rotates x (t, heads·hd) in place; row `i` uses the angles of position `i`.
    pub fn apply(&self, x: &mut [f32], heads: usize) {
        self.rotate(x, heads, 1.0);
    }

    /// The transpose of [`RopeAngles::apply`] (rotation by the negative angle), for the
    /// backward pass: maps d(rotated) to d(input), x (t, heads·hd) in place.
    pub fn apply_transposed(&self, x: &mut [f32], heads: usize) {
        self.rotate(x, heads, -1.0);
    }

    /// Rotation of each (i, i + hd/2) pair by `sign` × the angle.
    fn rotate(&self, x: &mut [f32], heads: usize, sign: f32) {
        let half = self.half;
        let hd = 2 * half;
        for (row, (cos, sin)) in x.chunks_mut(heads * hd).zip(self.cos.chunks(half).zip(self.sin.chunks(half))) {
            for head in row.chunks_mut(hd) {
                let (a, b) = head.split_at_mut(half);
                for i in 0..half {
                    let (x1, x2, s) = (a[i], b[i], sign * sin[i]);
                    a[i] = x1 * cos[i] - x2 * s;
                    b[i] = x2 * cos[i] + x1 * s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_by_hand() {
        // hd = 2: one frequency, inv_freq = 1; position 1 rotates (1, 0) by 1 radian.
        let rope = Rope { inv_freq: vec![1.0] };
        let ang = rope.angles(1, 1);
        let mut x = [1.0, 0.0];
        ang.apply(&mut x, 1);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn transposed_rotation_undoes_the_rotation() {
        let rope = Rope { inv_freq: vec![1.0, 0.3] };
        let ang = rope.angles(3, 2);
        let orig = [0.5, -1.0, 2.0, 0.25, 1.5, 0.75, -0.5, 3.0];
        let mut x = orig;
        ang.apply(&mut x, 1);
        ang.apply_transposed(&mut x, 1);
        for (a, b) in x.iter().zip(&orig) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn position_zero_is_identity() {
        let rope = Rope { inv_freq: vec![1.0, 0.1, 0.01] };
        let ang = rope.angles(0, 1);
        let mut x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        ang.apply(&mut x, 1);
        assert_eq!(x, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
