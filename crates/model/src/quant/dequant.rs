//! Block dequantization to f32, a port of ggml's `dequantize_row_*` (`ggml-quants.c`).
//!
//! The arithmetic is kept in exactly ggml's order and in f32 (e.g. Q4_1: `d*q + m`, Q6_K:
//! `(d*sc)*q`), and Rust never contracts `a*b + c` into an FMA, so the output is bit-exact
//! with the reference. Block layouts are `block_q*` from `ggml-common.h`.

use rayon::prelude::*;

use super::{GgmlType, QuantError, QK_K};

/// Below this many output elements `dequantize` stays on the calling thread.
const PAR_MIN_ELEMENTS: usize = 1 << 16;
/// Output elements per rayon task when parallel.
const PAR_CHUNK_ELEMENTS: usize = 1 << 14;

/// Dequantize `out.len()` elements of type `ty` from its raw ggml bytes.
///
/// `out.len()` must be a multiple of `ty.block_size()` and `data.len()` must equal
/// `out.len() / block_size * type_size`. Large tensors are split over rayon's pool by blocks.
/// Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K;
/// other types give [`QuantError::Unsupported`].
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let block_fn = block_fn(ty)?;
    let expected = ty.data_len(out.len())?;
    if data.len() != expected {
        return Err(QuantError::DataLength { ty, expected, got: data.len() });
    }
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if out.len() < PAR_MIN_ELEMENTS {
        run_blocks(ty, block_fn, data, out);
    } else {
        let blocks_per_task = (PAR_CHUNK_ELEMENTS / bs).max(1);
        out.par_chunks_mut(blocks_per_task * bs)
            .zip(data.par_chunks(blocks_per_task * ts))
            .for_each(|(o, d)| run_blocks(ty, block_fn, d, o));
    }
    Ok(())
}

/// Dequantize one row whose lengths the caller has already validated (`data.len()` ==
/// `out.len() / block_size * type_size`, `ty` supported). Used by the matvec fallback.
pub(crate) fn dequantize_row_unchecked(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    if let Ok(f) = block_fn(ty) {
        run_blocks(ty, f, data, out);
    }
}

/// Decodes one block: `(block bytes, block_size outputs)`.
type BlockFn = fn(&[u8], &mut [f32]);

fn run_blocks(ty: GgmlType, f: BlockFn, data: &[u8], out: &mut [f32]) {
    // Dense types: a per-element indirect call would dominate, so use plain loops.
    match ty {
        GgmlType::F32 => {
            for (b, o) in data.chunks_exact(4).zip(out.iter_mut()) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, o) in data.chunks_exact(2).zip(out.iter_mut()) {
                *o = f16(b, 0);
            }
        }
        GgmlType::BF16 => {
            for (b, o) in data.chunks_exact(2).zip(out.iter_mut()) {
                *o = bf16(b);
            }
        }
        _ => {
            for (b, o) in data.chunks_exact(ty.type_size()).zip(out.chunks_exact_mut(ty.block_size())) {
                f(b, o);
            }
        }
    }
}

fn block_fn(ty: GgmlType) -> Result<BlockFn, QuantError> {
    use GgmlType::*;
    Ok(match ty {
        F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        F16 => |b, y| y[0] = f16(b, 0),
        BF16 => |b, y| y[0] = bf16(b),
        Q4_0 => q4_0,
        Q4_1 => q4_1,
        Q5_0 => q5_0,
        Q5_1 => q5_1,
        Q8_0 => q8_0,
        Q2_K => q2_k,
        Q3_K => q3_k,
        Q4_K => q4_k,
        Q5_K => q5_k,
        Q6_K => q6_k,
        Q8_K => q8_k,
        _ => return Err(QuantError::Unsupported(ty)),
    })
}

/// Little-endian bf16 at the start of `b`, widened to f32 (exact: the high half of the bits).
#[inline(always)]
fn bf16(b: &[u8]) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)
}

/// Little-endian f16 at byte `off`, widened exactly to f32.
#[inline(always)]
pub(crate) fn f16(b: &[u8], off: usize) -> f32 {
    half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

// ---- 32-element blocks (QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = 32) ----

/// `block_q4_0 { f16 d; u8 qs[16] }`: low nibbles are elements 0..16, high nibbles 16..32.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        let x0 = (qs[j] & 0x0F) as i32 - 8;
        let x1 = (qs[j] >> 4) as i32 - 8;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16] }`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16(b, 0), f16(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16] }`: bit j of `qh` is the 5th bit of element j.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((qs[j] as u32 & 0x0F) | xh0) as i32 - 16;
        let x1 = ((qs[j] as u32 >> 4) | xh1) as i32 - 16;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16] }`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16(b, 0), f16(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        let x0 = (qs[j] as u32 & 0x0F) | xh0;
        let x1 = (qs[j] as u32 >> 4) | xh1;
        y[j] = x0 as f32 * d + m;
        y[j + 16] = x1 as f32 * d + m;
    }
}

/// `block_q8_0 { f16 d; i8 qs[32] }`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[2..34]) {
        *yj = q as i8 as f32 * d;
    }
}

// ---- K-quants: 256-element super-blocks ----

/// `block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }`: 16 sub-blocks of 16, each with a
/// 4-bit scale (low nibble) and 4-bit min (high nibble).
fn q2_k(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, min) = (f16(b, 80), f16(b, 82));
    let mut is = 0;
    let mut out = 0;
    for q in qs.chunks_exact(32) {
        for shift in [0u32, 2, 4, 6] {
            for half in [&q[0..16], &q[16..32]] {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = min * (sc >> 4) as f32;
                for &ql in half {
                    y[out] = dl * ((ql >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// `block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`: 2 low bits in `qs`, the high
/// bit in `hmask` (set means +0, clear means -4), 16 six-bit scales offset by 32.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let d_all = f16(b, 108);
    let scales = q3_k_scales(&b[96..108]);
    let mut is = 0;
    let mut out = 0;
    let mut m: u8 = 1;
    for q in qs.chunks_exact(32) {
        for shift in [0u32, 2, 4, 6] {
            for (lo, hi) in [(0usize, 16usize), (16, 32)] {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in lo..hi {
                    let low = ((q[l] >> shift) & 3) as i32;
                    let high = if hmask[l] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// Unpack Q3_K's 12 bytes into 16 six-bit scales (ggml's `kmask1`/`kmask2` shuffle).
fn q3_k_scales(s: &[u8]) -> [u8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    let a1 = u32::from_le_bytes([s[4], s[5], s[6], s[7]]);
    let tmp = u32::from_le_bytes([s[8], s[9], s[10], s[11]]);
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0u8; 16];
    for (o, a) in out.chunks_exact_mut(4).zip(aux) {
        o.copy_from_slice(&a.to_le_bytes());
    }
    out
}

/// ggml's `get_scale_min_k4`: 6-bit scale and min of sub-block `j` (0..8) of Q4_K / Q5_K.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`: 8 sub-blocks of 32.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16(b, 0), f16(b, 2));
    let scales = &b[4..16];
    for (i, (q, y)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (f16(b, 0), f16(b, 2));
    let (scales, qh) = (&b[4..16], &b[16..48]);
    for (i, (ql, y)) in b[48..176].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`: 6-bit values offset by 32.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

/// `block_q8_K { f32 d; i8 qs[256]; i16 bsums[16] }` (`bsums` is only used by dot kernels).
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (yj, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
        *yj = d * q as i8 as f32;
    }
}
