//! A linear layer `y = x Wᵀ + b (+ LoRA)` with PyTorch's `(out, in)` weight layout.
//!
//! The dense f32 weight drives batched matmuls (prefill, training). When the weight came from a
//! quantized GGUF tensor, its original ggml blocks are kept too: single-token decode is memory-bound,
//! and the fused dequantize-dot kernels read 4-7x fewer bytes for the same values.
use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops;
use crate::quant::{self, GgmlType};

/// Up to this many rows go through the matrix-vector kernels rather than gemm (for a quantized
/// weight: its own blocks, rounded differently), so a caller that must reproduce another call's
/// rows exactly passes at least as many rows as that call did, up to this bound.
pub const MATVEC_MAX_ROWS: usize = 4;

/// LoRA update `scale · B (A x)` (Hu et al. 2021), PEFT layout: A (r, in), B (out, r),
/// scale = lora_alpha / r.
#[derive(Debug, Clone)]
pub struct LoraWeights {
    pub rank: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub scale: f32,
}

impl LoraWeights {
    /// `y (t, out) += scale · (x Aᵀ) Bᵀ` for x (t, in).
    pub fn add_update(&self, x: &[f32], t: usize, n_in: usize, n_out: usize, y: &mut [f32]) {
        let mut ax = vec![0f32; t * self.rank];
        ops::matmul_wt(x, &self.a, &mut ax, t, n_in, self.rank, false, Parallelism::None);
        ax.iter_mut().for_each(|v| *v *= self.scale);
        ops::matmul_wt(&ax, &self.b, y, t, self.rank, n_out, true, ops::parallelism());
    }
}

#[derive(Debug, Clone)]
pub struct Linear {
    pub out_features: usize,
    pub in_features: usize,
    /// (out, in), row-major.
    pub weight: Vec<f32>,
    /// Original ggml blocks of `weight`, row-major along `in`.
    pub packed: Option<(GgmlType, Vec<u8>)>,
    pub bias: Option<Vec<f32>>,
    pub lora: Option<LoraWeights>,
    /// `weight` pre-packed for the AVX-512 matmul (see [`Linear::prepack`]).
    pub prepacked: Option<crate::sgemm::PackedWeight>,
}

/// The bytes of an f32 slice (native little-endian on the targets we build for).
pub(crate) fn f32_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

impl Linear {
    pub fn new(out_features: usize, in_features: usize, weight: Vec<f32>) -> Self {
        Linear { out_features, in_features, weight, packed: None, bias: None, lora: None, prepacked: None }
    }

    /// Packs the weight once for the batched matmul where the AVX-512 kernel runs (one more copy
    /// of the weight in memory, no per-call packing).
    pub fn prepack(&mut self) {
        if crate::sgemm::available() {
            self.prepacked = Some(crate::sgemm::PackedWeight::new(&self.weight, self.out_features, self.in_features));
        }
    }

    /// `y (t, out) = x (t, in) · Wᵀ + b + scale · (x Aᵀ) Bᵀ`.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        self.forward_base(x, t, y);
        if let Some(l) = &self.lora {
            l.add_update(x, t, self.in_features, self.out_features, y);
        }
    }

    /// `y (t, out) = x (t, in) · Wᵀ + b`, without the LoRA update.
    pub fn forward_base(&self, x: &[f32], t: usize, y: &mut [f32]) {
        let (n_out, n_in) = (self.out_features, self.in_features);
        debug_assert_eq!(x.len(), t * n_in);
        debug_assert_eq!(y.len(), t * n_out);
        if t <= MATVEC_MAX_ROWS {
            let (ty, bytes) = match &self.packed {
                Some((ty, b)) => (*ty, b.as_slice()),
                None => (GgmlType::F32, f32_bytes(&self.weight)),
            };
            quant::matmul_rows(ty, bytes, n_out, n_in, x, t, y).expect("weight shapes are checked at load");
        } else if let Some(pw) = &self.prepacked {
            crate::sgemm::matmul_packed(x, pw, y, t);
        } else {
            ops::matmul_wt(x, &self.weight, y, t, n_in, n_out, false, ops::parallelism());
        }
        if let Some(b) = &self.bias {
            for row in y.chunks_mut(n_out) {
                for (o, &bv) in row.iter_mut().zip(b) {
                    *o += bv;
                }
            }
        }
    }

    /// Folds the LoRA update into the dense weight (`W += scale · B A`) and drops the packed
    /// copy, which no longer holds the same values.
    pub fn merge_lora(&mut self) {
        if let Some(l) = self.lora.take() {
            // W (out, in) += scale · B (out, r) · A (r, in), summed in f64 and rounded once, so the
            // merged weight is the closest f32 to the exact sum.
            let (n_in, r) = (self.in_features, l.rank);
            self.weight.par_chunks_mut(n_in).zip(l.b.par_chunks(r)).for_each(|(w_row, b_row)| {
                for (i, w) in w_row.iter_mut().enumerate() {
                    let delta: f64 =
                        b_row.iter().enumerate().map(|(k, &bk)| bk as f64 * l.a[k * n_in + i] as f64).sum();
                    *w = (*w as f64 + l.scale as f64 * delta) as f32;
                }
            });
            self.packed = None;
            if self.prepacked.is_some() {
                self.prepack();
            }
        }
    }
}
