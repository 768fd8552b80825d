//! Causal grouped-query attention over a key/value cache, in (head, query-chunk) tasks.
//!
//! Shapes legend: t new queries, T = past + t cached positions, h heads, kv kv-heads, hd head dim.
use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops;

/// Query rows per attention task: keys past the last row of a chunk are never computed, which
/// skips most of the masked upper triangle, and (head, chunk) tasks balance across threads.
const QUERY_CHUNK: usize = 64;

/// Causal grouped-query attention of t new queries against all T = past + t cached positions.
/// q (t, h·hd), keys/values (T, kv·hd) → (t, h·hd). Query i sits at position past + i and sees
/// keys 0..=past+i (and, with a sliding window w, only the last w of them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    t: usize,
    past: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let kvw = nkv * hd;
    let group = nh / nkv;
    let scale = 1.0 / (hd as f32).sqrt();
    let chunks = t.div_ceil(QUERY_CHUNK);
    let tasks: Vec<(usize, usize)> = (0..nh).flat_map(|h| (0..chunks).map(move |c| (h, c))).collect();
    let outs: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(head, c)| {
            let kvh = head / group;
            let (r0, r1) = (c * QUERY_CHUNK, ((c + 1) * QUERY_CHUNK).min(t));
            let rows = r1 - r0;
            let lo = window.map_or(0, |w| (past + r0 + 1).saturating_sub(w)); // first key any row sees
            let n_keys = past + r1 - lo;
            // scores (rows, keys lo..past+r1) = q_h (rows, hd) · K_kvh (keys, hd)ᵀ · scale
            let mut scores = vec![0f32; rows * n_keys];
            let q_h = &q[r0 * nh * hd + head * hd..];
            ops::matmul_strided(
                q_h,
                (nh * hd, 1),
                &keys[lo * kvw + kvh * hd..],
                (1, kvw),
                &mut scores,
                rows,
                hd,
                n_keys,
                scale,
                Parallelism::None,
            );
            for (i, row) in scores.chunks_mut(n_keys).enumerate() {
                let pos = past + r0 + i;
                let first = window.map_or(0, |w| (pos + 1).saturating_sub(w)) - lo;
                let last = pos - lo; // inclusive
                row[last + 1..].fill(0.0);
                row[..first].fill(0.0);
                ops::softmax_in_place(&mut row[first..=last]);
            }
            let mut out = vec![0f32; rows * hd]; // (rows, hd) = P (rows, keys) · V_kvh (keys, hd)
            let v_h = &values[lo * kvw + kvh * hd..];
            ops::matmul_strided(
                &scores,
                (n_keys, 1),
                v_h,
                (kvw, 1),
                &mut out,
                rows,
                n_keys,
                hd,
                1.0,
                Parallelism::None,
            );
            out
        })
        .collect();
    let mut attn = vec![0f32; t * nh * hd];
    for (&(head, c), out) in tasks.iter().zip(&outs) {
        for (i, row) in out.chunks(hd).enumerate() {
            attn[(c * QUERY_CHUNK + i) * nh * hd + head * hd..][..hd].copy_from_slice(row);
        }
    }
    attn
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct O(t·T) attention, one query and one head at a time.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        past: usize,
        nh: usize,
        nkv: usize,
        hd: usize,
        window: Option<usize>,
    ) -> Vec<f32> {
        let mut out = vec![0f32; t * nh * hd];
        for i in 0..t {
            let pos = past + i;
            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let qv = &q[i * nh * hd + h * hd..][..hd];
                let mut s: Vec<f32> = (lo..=pos)
                    .map(|j| {
                        qv.iter().zip(&k[j * nkv * hd + kvh * hd..][..hd]).map(|(a, b)| a * b).sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                ops::softmax_in_place(&mut s);
                for (p, j) in s.iter().zip(lo..=pos) {
                    for c in 0..hd {
                        out[i * nh * hd + h * hd + c] += p * v[j * nkv * hd + kvh * hd + c];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn chunked_attention_equals_naive() {
        let (nh, nkv, hd, past, t) = (4, 2, 8, 5, 130);
        let total = past + t;
        let f = |n: usize, s: f32| (0..n).map(|i| ((i as f32) * s).sin()).collect::<Vec<f32>>();
        let (q, k, v) = (f(t * nh * hd, 0.37), f(total * nkv * hd, 0.11), f(total * nkv * hd, 0.23));
        for window in [None, Some(50)] {
            let got = attention(&q, &k, &v, t, past, nh, nkv, hd, window);
            let want = naive(&q, &k, &v, t, past, nh, nkv, hd, window);
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "window {window:?}: max diff {diff}");
        }
    }
}
