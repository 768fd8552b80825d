//! Small dense helpers for the backward pass (row-major f32, shapes in each doc).
use tuneguard_model::ops;

/// `a (m, k) · b (k, n)` with (row, col) strides for a and b; returns c (m, n).
pub fn mm(a: &[f32], a_s: (usize, usize), b: &[f32], b_s: (usize, usize), m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    if k == 0 {
        return c;
    }
    // Large products use the whole pool: a single batch row must still use every core.
    let par = if m * n * k >= 1 << 22 { ops::parallelism() } else { gemm::Parallelism::None };
    ops::matmul_strided(a, a_s, b, b_s, &mut c, m, k, n, 1.0, par);
    c
}

/// `dst += src`.
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
}

/// RMSNorm forward that also returns the per-row reciprocal RMS, x (t, d) → (y, rstd (t,)).
pub fn rms_norm_fwd(x: &[f32], w: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let d = w.len();
    let mut y = vec![0f32; x.len()];
    let mut rstd = Vec::with_capacity(x.len() / d);
    for (yr, xr) in y.chunks_mut(d).zip(x.chunks(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let r = 1.0 / (ms + eps).sqrt();
        rstd.push(r);
        for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
            *o = wv * (v * r);
        }
    }
    (y, rstd)
}

/// RMSNorm backward for a frozen weight: `dx = r·(g − x·r²·mean(g⊙x))` with `g = dy ⊙ w`.
pub fn rms_norm_bwd(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32]) -> Vec<f32> {
    let d = w.len();
    let mut dx = vec![0f32; x.len()];
    for (((dxr, xr), dyr), &r) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)).zip(rstd) {
        let dot: f32 = xr.iter().zip(dyr).zip(w).map(|((&xv, &g), &wv)| xv * g * wv).sum();
        let c = r * r * dot / d as f32;
        for (((o, &xv), &g), &wv) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
            *o = r * (g * wv - xv * c);
        }
    }
    dx
}

/// RMSNorm weight gradient: `dw_j = Σ_t dy[t, j] · x[t, j] · rstd[t]`, added into `dw`.
pub fn rms_norm_weight_grad(x: &[f32], rstd: &[f32], dy: &[f32], dw: &mut [f32]) {
    let d = dw.len();
    for ((xr, dyr), &r) in x.chunks(d).zip(dy.chunks(d)).zip(rstd) {
        for ((g, &xv), &dv) in dw.iter_mut().zip(xr).zip(dyr) {
            *g += dv * xv * r;
        }
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_backward_matches_finite_differences() {
        let x = [0.3f32, -1.2, 0.7, 2.0, -0.4, 0.1];
        let w = [1.5f32, 0.5, -0.8];
        let dy = [0.2f32, -0.1, 0.4, 0.3, 0.9, -0.6];
        let (_, rstd) = rms_norm_fwd(&x, &w, 1e-5);
        let dx = rms_norm_bwd(&x, &w, &rstd, &dy);
        let f = |x: &[f32]| -> f64 {
            let (y, _) = rms_norm_fwd(x, &w, 1e-5);
            y.iter().zip(&dy).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
        };
        for i in 0..x.len() {
            let (mut p, mut m) = (x, x);
            p[i] += 1e-3;
            m[i] -= 1e-3;
            let num = (f(&p) - f(&m)) / 2e-3;
            assert!((num - dx[i] as f64).abs() < 1e-3, "{i}: {num} vs {}", dx[i]);
        }
    }
}
