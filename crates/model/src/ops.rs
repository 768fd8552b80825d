//! Dense f32 kernels of the forward pass. Row-major everywhere; shapes in the doc of each op.
use gemm::Parallelism;
use rayon::prelude::*;

/// Threads the matmuls use (the rayon pool's size).
pub fn parallelism() -> Parallelism {
    let n = rayon::current_num_threads();
    if n > 1 {
        Parallelism::Rayon(n)
    } else {
        Parallelism::None
    }
}

/// From this many rows on, the AVX-512 kernel beats the `gemm` crate at the model's shapes.
const SGEMM_MIN_ROWS: usize = 16;

/// `y (m, n) (+)= x (m, k) · w (n, k)ᵀ`, i.e. a linear layer with PyTorch's `(out, in)` weight.
/// `accumulate` adds into `y` instead of overwriting it.
#[allow(clippy::too_many_arguments)]
pub fn matmul_wt(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    accumulate: bool,
    par: Parallelism,
) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n, "matmul_wt shape");
    if m == 0 || n == 0 {
        return;
    }
    if !accumulate && m >= SGEMM_MIN_ROWS && crate::sgemm::available() {
        return crate::sgemm::matmul_wt(x, w, y, m, k, n);
    }
    // SAFETY: the asserts above bound every index gemm touches with these strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// General strided matmul `c (m, n) = alpha · a (m, k) · b (k, n)` with explicit (row, col)
/// strides, on `par` threads.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |s: (usize, usize), r: usize, cc: usize| (r.saturating_sub(1)) * s.0 + (cc.saturating_sub(1)) * s.1;
    assert!(last(a_strides, m, k) < a.len() && last(b_strides, k, n) < b.len() && m * n <= c.len());
    // SAFETY: bounds checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_strides.1 as isize,
            a_strides.0 as isize,
            b.as_ptr(),
            b_strides.1 as isize,
            b_strides.0 as isize,
            0.0,
            alpha,
            false,
            false,
            false,
            par,
        )
    }
}

/// RMSNorm over the last axis: `y = x / sqrt(mean(x²) + eps) * weight`, x (t, d).
/// Zhang & Sennrich 2019; as `LlamaRMSNorm` (mean of squares in f32).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, y: &mut [f32]) {
    let d = weight.len();
    y.par_chunks_mut(d).zip(x.par_chunks(d)).for_each(|(yr, xr)| {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &w) in yr.iter_mut().zip(xr).zip(weight) {
            *o = w * (v * inv);
        }
    });
}

/// `e^x` in f32 without a libm call, so loops over it vectorize: Cody–Waite range reduction
/// `x = n·ln2 + r` and a degree-6 Taylor polynomial for `e^r` on |r| ≤ ln2/2 (as Cephes
/// `expf`). Relative error ≤ 3e-7, about 2 ulp (checked against f64 in the tests); 0 below -87.3,
/// +inf above 88.7, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.7);
    let n = (xc * LOG2E).round();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let ni = n as i32;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n as 2^(n/2)·2^(n-n/2): n spans -126..=128, past the exponent field's range for 2^n.
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let y = p * pow2(ni >> 1) * pow2(ni - (ni >> 1));
    if x.is_nan() {
        x
    } else if x < -87.3 {
        0.0
    } else if x > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}

/// Runs `$body` compiled for AVX-512 when the CPU has it (so the loops vectorize 16 wide),
/// else for the baseline target.
macro_rules! simd_dispatch {
    ($name:ident($($arg:ident: $ty:ty),*) $body:block) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
        unsafe fn fast($($arg: $ty),*) $body
        fn portable($($arg: $ty),*) $body
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
                // SAFETY: the features were just detected.
                return unsafe { fast($($arg),*) };
            }
        }
        portable($($arg),*)
    }};
}

/// SwiGLU gate: `gate = silu(gate) * up` in place, both (t, ff).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(4096).zip(up.par_chunks(4096)).for_each(|(g, u)| silu_mul_chunk(g, u));
}

fn silu_mul_chunk(g: &mut [f32], u: &[f32]) {
    simd_dispatch!(silu(g: &mut [f32], u: &[f32]) {
        for (g, &u) in g.iter_mut().zip(u) {
            *g = *g / (1.0 + exp_f32(-*g)) * u;
        }
    })
}

/// `ln Σ exp(row)` in f64 (max-shifted), for cross-entropy and log-likelihoods:
/// `-log softmax(row)[i] = log_sum_exp(row) - row[i]`.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln()
}

/// In-place softmax of one row; the row then sums to 1.
pub fn softmax_in_place(row: &mut [f32]) {
    simd_dispatch!(softmax(row: &mut [f32]) { softmax_body(row) })
}

#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    // Lane-wise partial max and sum (16 lanes) so the loops vectorize; a single running
    // accumulator would be a serial dependency chain.
    const L: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let max = chunks.remainder().iter().fold(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), |a, &b| a.max(b));
    for v in row.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let mut sums = [0f32; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += v;
        }
    }
    let sum: f32 = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_wt_matches_naive() {
        let (m, k, n) = (3, 5, 4);
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut y = vec![1.0; m * n];
        matmul_wt(&x, &w, &mut y, m, k, n, true, Parallelism::None);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|c| x[i * k + c] * w[j * k + c]).sum::<f32>();
                assert!((y[i * n + j] - want).abs() < 1e-5, "{i},{j}");
            }
        }
    }

    #[test]
    fn rms_norm_by_hand() {
        // x = [3, 4]: mean square 12.5, rsqrt ≈ 0.282843; weight [1, 2].
        let mut y = [0.0; 2];
        rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0, &mut y);
        assert!((y[0] - 0.848528).abs() < 1e-5 && (y[1] - 2.262742).abs() < 1e-5, "{y:?}");
    }

    #[test]
    fn exp_matches_f64_reference() {
        let mut worst = 0f64;
        for i in -870_000..=887_000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            let rel = ((exp_f32(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut r = [1.0, 2.0, 3.0];
        softmax_in_place(&mut r);
        assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((r[2] - 0.665241).abs() < 1e-5);
    }
}
