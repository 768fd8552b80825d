//! AVX2 + FMA + F16C row-dot kernels for the decode matvec (x86_64, runtime-detected).
//!
//! Each kernel computes `sum_c W[c] * x[c]` for one row straight from its ggml blocks: the
//! weights are rebuilt exactly as `dequantize` does (`q*d`, `q*d + m`) and multiplied with the
//! f32 activations, so the only difference from a dequantize-then-dot is summation order.
//! Block layouts: `ggml-common.h`.

use std::arch::x86_64::*;

use super::GgmlType;

/// Whether the CPU has everything these kernels use (std caches the detection).
#[inline]
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// `y[i] = dot(row i of w, x)` for the fast types; `false` (nothing written) when the CPU lacks
/// the features or `ty` has no kernel here. `w` holds `y.len()` rows of `row_bytes` bytes.
pub(super) fn dot_rows(ty: GgmlType, w: &[u8], row_bytes: usize, x: &[f32], y: &mut [f32]) -> bool {
    if !available() {
        return false;
    }
    let kernel: unsafe fn(&[u8], &[f32]) -> f32 = match ty {
        GgmlType::F32 => dot_f32_bytes,
        GgmlType::F16 => dot_f16,
        GgmlType::Q4_0 => dot_q4_0,
        GgmlType::Q4_1 => dot_q4_1,
        GgmlType::Q8_0 => dot_q8_0,
        _ => return false,
    };
    for (yr, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
        // SAFETY: the features were detected above; kernels bound every access by both lengths.
        *yr = unsafe { kernel(row, x) };
    }
    true
}

/// f32 dot product of two slices (over the shorter length), AVX2 when available.
pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> Option<f32> {
    if !available() {
        return None;
    }
    // SAFETY: features detected above; the kernel bounds accesses by both lengths.
    Some(unsafe { dot_f32_impl(a, b) })
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const u8) -> f32 {
    // SAFETY: caller guarantees 2 readable bytes at p.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Σ a[j]·b[j] over the first multiple-of-8 elements of n; returns the sum and where it stopped.
///
/// # Safety
/// `pa` and `pb` are readable for n f32s (any alignment); the CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_simd_part(pa: *const f32, pb: *const f32, n: usize) -> (f32, usize) {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + width <= n, and both pointers hold n f32s.
    unsafe {
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * k;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    (unsafe { hsum(v) }, i)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: both slices hold at least n f32s.
    let (s, i) = unsafe { dot_simd_part(a.as_ptr(), b.as_ptr(), n) };
    s + a[i..n].iter().zip(&b[i..n]).map(|(p, q)| p * q).sum::<f32>()
}

/// F32 row given as little-endian bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 4).min(x.len());
    // SAFETY: w holds n f32s (read unaligned) and x holds n.
    let (mut s, i) = unsafe { dot_simd_part(w.as_ptr().cast::<f32>(), x.as_ptr(), n) };
    for (b, xv) in w[4 * i..4 * n].chunks_exact(4).zip(&x[i..n]) {
        s += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xv;
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 2).min(x.len());
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + width <= n elements of both w (2 bytes each) and x.
    unsafe {
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let o = i + 8 * k;
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(2 * o).cast()));
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(o)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let wv = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(2 * i).cast()));
            acc[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(i)), acc[0]);
            i += 8;
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = unsafe { hsum(v) };
    for (b, xv) in w[2 * i..2 * n].chunks_exact(2).zip(&x[i..n]) {
        s += super::dequant::f16(b, 0) * xv;
    }
    s
}

/// Number of whole blocks both `w` and `x` cover.
#[inline(always)]
fn n_blocks(w: &[u8], x: &[f32], type_size: usize) -> usize {
    (w.len() / type_size).min(x.len() / 32)
}

/// `block_q4_0 { f16 d; u8 qs[16] }`, weights `(q - 8) * d`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0(w: &[u8], x: &[f32]) -> f32 {
    let nb = n_blocks(w, x, 18);
    let mask = _mm_set1_epi8(0x0F);
    let eight = _mm_set1_epi8(8);
    let mut acc = [_mm256_setzero_ps(); 4];
    for b in 0..nb {
        // SAFETY: block b is within both w (18 bytes) and x (32 floats).
        unsafe {
            let p = w.as_ptr().add(b * 18);
            let px = x.as_ptr().add(b * 32);
            let d = _mm256_set1_ps(load_f16(p));
            let qs = _mm_loadu_si128(p.add(2).cast());
            let lo = _mm_sub_epi8(_mm_and_si128(qs, mask), eight);
            let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), mask), eight);
            let q = [lo, _mm_unpackhi_epi64(lo, lo), hi, _mm_unpackhi_epi64(hi, hi)];
            for k in 0..4 {
                let wv = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q[k])), d);
                acc[k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(8 * k)), acc[k]);
            }
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    unsafe { hsum(v) }
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16] }`, weights `q * d + m`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1(w: &[u8], x: &[f32]) -> f32 {
    let nb = n_blocks(w, x, 20);
    let mask = _mm_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); 4];
    for b in 0..nb {
        // SAFETY: block b is within both w (20 bytes) and x (32 floats).
        unsafe {
            let p = w.as_ptr().add(b * 20);
            let px = x.as_ptr().add(b * 32);
            let d = _mm256_set1_ps(load_f16(p));
            let m = _mm256_set1_ps(load_f16(p.add(2)));
            let qs = _mm_loadu_si128(p.add(4).cast());
            let lo = _mm_and_si128(qs, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
            let q = [lo, _mm_unpackhi_epi64(lo, lo), hi, _mm_unpackhi_epi64(hi, hi)];
            for k in 0..4 {
                let wv = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q[k])), d), m);
                acc[k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(8 * k)), acc[k]);
            }
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    unsafe { hsum(v) }
}

/// `block_q8_0 { f16 d; i8 qs[32] }`, weights `q * d`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0(w: &[u8], x: &[f32]) -> f32 {
    let nb = n_blocks(w, x, 34);
    let mut acc = [_mm256_setzero_ps(); 4];
    for b in 0..nb {
        // SAFETY: block b is within both w (34 bytes) and x (32 floats).
        unsafe {
            let p = w.as_ptr().add(b * 34);
            let px = x.as_ptr().add(b * 32);
            let d = _mm256_set1_ps(load_f16(p));
            for (k, acc) in acc.iter_mut().enumerate() {
                let q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(2 + 8 * k).cast()));
                let wv = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(8 * k)), *acc);
            }
        }
    }
    let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    unsafe { hsum(v) }
}
