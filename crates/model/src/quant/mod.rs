//! ggml tensor types: block layouts, dequantization to f32 and fused dequantize-matvec kernels.
//!
//! Block layouts and the arithmetic of dequantization follow ggml's `ggml-common.h` /
//! `ggml-quants.c` (`dequantize_row_*`); type ids and sizes follow `ggml.h` and ggml's type
//! traits. All multi-byte fields are little-endian.
//!
//! * [`dequantize`] converts a run of blocks to f32, bit-exact with ggml's reference.
//! * [`matvec`] / [`matmul_rows`] compute `y = W x` straight from the quantized bytes, with
//!   AVX2/FMA kernels (runtime-detected) for the types in [`has_fast_matvec`]. The activations
//!   stay f32 (no Q8 activation quantization), so results equal the f32 dot of the
//!   dequantized rows up to summation-order rounding.

mod dequant;
mod matvec;
#[cfg(target_arch = "x86_64")]
mod simd;
#[cfg(test)]
mod tests;

use std::fmt;

pub use dequant::dequantize;
pub use matvec::{has_fast_matvec, matmul_rows, matvec};

/// Errors of dequantization and the matvec kernels (bad input, never a panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The type exists in ggml but this crate cannot decode it.
    #[error("unsupported quantization type {0}")]
    Unsupported(GgmlType),
    /// Element count not a whole number of blocks.
    #[error("{ty}: {elements} elements is not a multiple of the block size {block_size}")]
    NotBlockAligned { ty: GgmlType, elements: usize, block_size: usize },
    /// Raw data length does not match the element count.
    #[error("{ty}: expected {expected} bytes of data, got {got}")]
    DataLength { ty: GgmlType, expected: usize, got: usize },
    /// A dense argument (`x`, `y`) has the wrong length for the given shape.
    #[error("{what}: expected length {expected}, got {got}")]
    Shape { what: &'static str, expected: usize, got: usize },
}

/// ggml tensor type (ids as in `ggml.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// Elements per super-block of the K-quants (`QK_K`).
pub(crate) const QK_K: usize = 256;

impl GgmlType {
    /// The type for a ggml type id, `None` for ids that are unknown or were removed from ggml.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            _ => return None,
        })
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S | IQ2_S | IQ4_XS
            | IQ1_M | TQ1_0 | TQ2_0 => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        const K: usize = QK_K;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            I8 => 1,
            I16 => 2,
            I32 => 4,
            I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
            IQ2_XXS => 2 + K / 4,
            IQ2_XS => 2 + K / 4 + K / 32,
            IQ3_XXS => 2 + K / 4 + K / 8,
            IQ1_S => 2 + K / 8 + K / 16,
            IQ4_NL => 18,
            IQ3_S => 2 + K / 4 + K / 8 + K / 32 + 4,
            IQ2_S => 2 + K / 4 + K / 16,
            IQ4_XS => 2 + 2 + K / 2 + K / 64,
            IQ1_M => K / 8 + K / 16 + K / 32,
            TQ1_0 => 2 + 4 * 13,
            TQ2_0 => 2 + 64,
            MXFP4 => 17,
        }
    }

    /// ggml's name of the type (`"Q4_1"`, `"F32"`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }

    /// Whether [`dequantize`] (and so [`matvec`]) can decode this type.
    pub fn is_supported(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K)
    }

    /// Bytes taken by `n_elements` elements, or an error if that is not a whole number of blocks.
    pub fn data_len(self, n_elements: usize) -> Result<usize, QuantError> {
        let bs = self.block_size();
        #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87, MSRV is 1.85
        if n_elements % bs != 0 {
            return Err(QuantError::NotBlockAligned { ty: self, elements: n_elements, block_size: bs });
        }
        (n_elements / bs).checked_mul(self.type_size()).ok_or(QuantError::DataLength {
            ty: self,
            expected: usize::MAX,
            got: 0,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
