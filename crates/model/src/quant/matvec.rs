//! Fused dequantize + matrix-vector product, the decode hot path (batch 1..8).
//!
//! `W` is row-major `(rows, cols)` with each row stored as `cols / block_size` ggml blocks, as in
//! a GGUF weight whose `ne[0]` is `cols`. Rows are split over rayon's pool in chunks; each row is
//! dotted with the f32 activations by a SIMD kernel (`simd.rs`) or, for types without one, by
//! dequantizing the row into a per-task buffer first.

use rayon::prelude::*;

use super::dequant::dequantize_row_unchecked;
use super::{GgmlType, QuantError};

/// Below this many weights a call stays on the calling thread (rayon overhead dominates).
const PAR_MIN_WEIGHTS: usize = 1 << 15;

/// Whether `ty` has a SIMD row-dot kernel (others dequantize a row at a time, ~2-4x slower).
pub fn has_fast_matvec(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// `y[r] = sum_c W[r, c] * x[c]` for `W` of type `ty`, shape `(rows, cols)`, from raw bytes `w`.
///
/// `x.len() == cols`, `y.len() == rows`, `cols` a multiple of `ty.block_size()` and
/// `w.len() == rows * cols / block_size * type_size`; otherwise an error and `y` is untouched.
/// The result equals the f32 dot of each [`dequantize`](super::dequantize)d row with `x` up to
/// summation order (x is never quantized).
pub fn matvec(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<(), QuantError> {
    matmul_rows(ty, w, rows, cols, x, 1, y)
}

/// `Y = X W^T` for a few tokens: `x` is `(n, cols)` row-major, `y` is `(n, rows)` row-major,
/// i.e. `y[t*rows + r] = sum_c W[r, c] * x[t*cols + c]`. Each weight row is decoded once and
/// dotted with all `n` tokens while it is hot in L1; meant for small `n` (prompt chunks of 2..8).
pub fn matmul_rows(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    if !ty.is_supported() {
        return Err(QuantError::Unsupported(ty));
    }
    let row_bytes = ty.data_len(cols)?;
    let expected =
        row_bytes.checked_mul(rows).ok_or(QuantError::DataLength { ty, expected: usize::MAX, got: w.len() })?;
    if w.len() != expected {
        return Err(QuantError::DataLength { ty, expected, got: w.len() });
    }
    check_len("x", x.len(), n.checked_mul(cols))?;
    check_len("y", y.len(), n.checked_mul(rows))?;
    if rows == 0 || n == 0 {
        return Ok(());
    }
    if cols == 0 {
        y.fill(0.0);
        return Ok(());
    }

    let chunk = rows_per_task(rows);
    let serial = rows.saturating_mul(cols) < PAR_MIN_WEIGHTS || rayon::current_num_threads() == 1;
    if n == 1 {
        let task = |(i, yc): (usize, &mut [f32])| {
            let wc = &w[i * chunk * row_bytes..][..yc.len() * row_bytes];
            dot_rows(ty, wc, row_bytes, x, yc);
        };
        if serial {
            y.chunks_mut(chunk).enumerate().for_each(task);
        } else {
            y.par_chunks_mut(chunk).enumerate().for_each(task);
        }
        return Ok(());
    }

    // Row-major (rows, n) scratch so that tasks own disjoint slices; transposed into y below.
    let mut yt = vec![0.0f32; rows * n];
    let task = |(i, yc): (usize, &mut [f32])| {
        let r0 = i * chunk;
        let nr = yc.len() / n;
        let wc = &w[r0 * row_bytes..][..nr * row_bytes];
        let mut col = vec![0.0f32; nr];
        for t in 0..n {
            dot_rows(ty, wc, row_bytes, &x[t * cols..][..cols], &mut col);
            for (r, v) in col.iter().enumerate() {
                yc[r * n + t] = *v;
            }
        }
    };
    if serial {
        yt.chunks_mut(chunk * n).enumerate().for_each(task);
    } else {
        yt.par_chunks_mut(chunk * n).enumerate().for_each(task);
    }
    for (r, yr) in yt.chunks_exact(n).enumerate() {
        for (t, v) in yr.iter().enumerate() {
            y[t * rows + r] = *v;
        }
    }
    Ok(())
}

fn check_len(what: &'static str, got: usize, expected: Option<usize>) -> Result<(), QuantError> {
    match expected {
        Some(e) if e == got => Ok(()),
        e => Err(QuantError::Shape { what, expected: e.unwrap_or(usize::MAX), got }),
    }
}

/// 16..64 rows per rayon task: about 4 tasks per thread for load balance on small matrices,
/// capped so per-task overhead stays small on large ones.
fn rows_per_task(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads * 4).clamp(16, 64)
}

/// `y[i] = dot(row i, x)` for the `y.len()` rows of `w` (each `row_bytes` long).
pub(super) fn dot_rows(ty: GgmlType, w: &[u8], row_bytes: usize, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::dot_rows(ty, w, row_bytes, x, y) {
        return;
    }
    dot_rows_portable(ty, w, row_bytes, x, y);
}

/// Dot of one row's raw bytes with `x`.
type RowDot = fn(&[u8], &[f32]) -> f32;

/// [`dot_rows`] without SIMD (also what non-x86 targets run).
pub(super) fn dot_rows_portable(ty: GgmlType, w: &[u8], row_bytes: usize, x: &[f32], y: &mut [f32]) {
    let scalar: Option<RowDot> = match ty {
        GgmlType::F32 => Some(scalar::dot_f32_bytes),
        GgmlType::Q4_0 => Some(scalar::dot_q4_0),
        GgmlType::Q4_1 => Some(scalar::dot_q4_1),
        GgmlType::Q8_0 => Some(scalar::dot_q8_0),
        _ => None,
    };
    if let Some(kernel) = scalar {
        for (yr, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
            *yr = kernel(row, x);
        }
        return;
    }
    // Generic path: dequantize the row into a buffer owned by this task, then dot.
    let mut buf = vec![0.0f32; x.len()];
    for (yr, row) in y.iter_mut().zip(w.chunks_exact(row_bytes)) {
        dequantize_row_unchecked(ty, row, &mut buf);
        *yr = dot_f32(&buf, x);
    }
}

/// f32 dot product (SIMD when available).
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = super::simd::dot_f32(a, b) {
        return s;
    }
    scalar::dot_f32(a, b)
}

/// Portable kernels: same arithmetic as `simd.rs`, 8 partial sums so LLVM can vectorize.
mod scalar {
    use super::super::dequant::f16;

    pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            for k in 0..8 {
                acc[k] += xa[k] * xb[k];
            }
        }
        acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(p, q)| p * q).sum::<f32>()
    }

    pub(super) fn dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        for (wc, xc) in w.chunks_exact(32).zip(x.chunks_exact(8)) {
            for k in 0..8 {
                let b = &wc[4 * k..4 * k + 4];
                acc[k] += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xc[k];
            }
        }
        let done = (w.len() / 32).min(x.len() / 8) * 8;
        let tail: f32 = w[4 * done..]
            .chunks_exact(4)
            .zip(&x[done..])
            .map(|(b, xv)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xv)
            .sum();
        acc.iter().sum::<f32>() + tail
    }

    pub(super) fn dot_q4_0(w: &[u8], x: &[f32]) -> f32 {
        let mut acc = [0.0f32; 16];
        for (b, xb) in w.chunks_exact(18).zip(x.chunks_exact(32)) {
            let d = f16(b, 0);
            for j in 0..16 {
                let q = b[2 + j];
                acc[j] += ((q & 0x0F) as i32 - 8) as f32 * d * xb[j];
                acc[j] += ((q >> 4) as i32 - 8) as f32 * d * xb[j + 16];
            }
        }
        acc.iter().sum()
    }

    pub(super) fn dot_q4_1(w: &[u8], x: &[f32]) -> f32 {
        let mut acc = [0.0f32; 16];
        for (b, xb) in w.chunks_exact(20).zip(x.chunks_exact(32)) {
            let (d, m) = (f16(b, 0), f16(b, 2));
            for j in 0..16 {
                let q = b[4 + j];
                acc[j] += ((q & 0x0F) as f32 * d + m) * xb[j];
                acc[j] += ((q >> 4) as f32 * d + m) * xb[j + 16];
            }
        }
        acc.iter().sum()
    }

    pub(super) fn dot_q8_0(w: &[u8], x: &[f32]) -> f32 {
        let mut acc = [0.0f32; 32];
        for (b, xb) in w.chunks_exact(34).zip(x.chunks_exact(32)) {
            let d = f16(b, 0);
            for j in 0..32 {
                acc[j] += b[2 + j] as i8 as f32 * d * xb[j];
            }
        }
        acc.iter().sum()
    }
}
