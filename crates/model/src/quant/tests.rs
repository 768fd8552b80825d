//! Tests: golden fixture from gguf-py (scripts/make_quant_fixture.py), matvec vs
//! dequantize + naive dot, error cases. `perf_matvec` (ignored) prints GFLOP/s.

use super::matvec::{dot_rows, dot_rows_portable};
use super::*;

const FIXTURE: &str = include_str!("../../tests/fixtures/quant_fixture.json");

/// Every type `dequantize` supports.
const SUPPORTED: [GgmlType; 14] = {
    use GgmlType::*;
    [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K]
};

fn type_by_name(name: &str) -> Option<GgmlType> {
    (0..64).filter_map(GgmlType::from_id).find(|t| t.name() == name)
}

fn hex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let v = |c: u8| (c as char).to_digit(16).expect("fixture hex digit") as u8;
            v(p[0]) << 4 | v(p[1])
        })
        .collect()
}

#[test]
fn quant_dequantize_matches_gguf_py_bit_exact() {
    let fx: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture json");
    let n = (fx["rows"].as_u64().expect("rows") * fx["cols"].as_u64().expect("cols")) as usize;
    let types = fx["types"].as_object().expect("types");
    assert_eq!(types.len(), 13, "fixture should cover every type gguf-py can dequantize");
    for (name, entry) in types {
        let ty = type_by_name(name).unwrap_or_else(|| panic!("unknown type {name}"));
        let raw = hex(entry["raw"].as_str().expect("raw"));
        let want: Vec<u32> = hex(entry["f32"].as_str().expect("f32"))
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(want.len(), n);
        let mut out = vec![f32::NAN; n];
        dequantize(ty, &raw, &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, (g, w)) in out.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), *w, "{name}[{i}]: got {g:e}, gguf-py {:e}", f32::from_bits(*w));
        }
    }
}

#[test]
fn quant_q8_k_dequantize() {
    // gguf-py cannot dequantize Q8_K; ggml: y = d * qs[i].
    let mut b = vec![0u8; GgmlType::Q8_K.type_size()];
    b[0..4].copy_from_slice(&0.5f32.to_le_bytes());
    for i in 0..256 {
        b[4 + i] = (i as i32 - 128) as i8 as u8;
    }
    let mut out = vec![0.0; 256];
    dequantize(GgmlType::Q8_K, &b, &mut out).expect("q8_k");
    for (i, v) in out.iter().enumerate() {
        assert_eq!(*v, 0.5 * (i as f32 - 128.0));
    }
}

/// xorshift64*: deterministic test data without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random but valid raw data: random quant bits, small finite scales.
fn random_data(ty: GgmlType, n_elements: usize, rng: &mut Rng) -> Vec<u8> {
    use GgmlType::*;
    let mut v: Vec<u8> = (0..ty.data_len(n_elements).expect("aligned")).map(|_| rng.next() as u8).collect();
    let f16_fields: &[usize] = match ty {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        F16 => &[0],
        _ => &[],
    };
    for b in v.chunks_exact_mut(ty.type_size()) {
        for &off in f16_fields {
            let s = if ty == F16 { rng.f() * 3.0 } else { rng.f() * 0.05 };
            b[off..off + 2].copy_from_slice(&half::f16::from_f32(s).to_le_bytes());
        }
        match ty {
            F32 => b.copy_from_slice(&(rng.f() * 3.0).to_le_bytes()),
            BF16 => b.copy_from_slice(&half::bf16::from_f32(rng.f() * 3.0).to_le_bytes()),
            Q8_K => b[0..4].copy_from_slice(&(rng.f() * 0.01).to_le_bytes()),
            _ => {}
        }
    }
    v
}

/// Reference: dequantize the whole matrix, then a plain f64 dot per row. Returns (y, sum|w x|).
fn reference(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32]) -> (Vec<f32>, Vec<f64>) {
    let mut wf = vec![0.0f32; rows * cols];
    dequantize(ty, w, &mut wf).expect("dequantize");
    wf.chunks_exact(cols)
        .map(|r| {
            let dot: f64 = r.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let mag: f64 = r.iter().zip(x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
            (dot as f32, mag)
        })
        .unzip()
}

fn assert_close(ty: GgmlType, what: &str, got: &[f32], want: &[f32], mag: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (r, ((g, w), m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (*g as f64 - *w as f64).abs();
        assert!(err <= 1e-5 * m + 1e-30, "{ty} {what} row {r}: got {g}, want {w} (sum|wx| {m})");
    }
}

#[test]
fn quant_matvec_matches_dequantized_dot() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for ty in SUPPORTED {
        let bs = ty.block_size();
        // rows not multiples of the 16..64-row chunks; the last shape is big enough to go parallel
        let shapes = [(1, bs), (3, 2 * bs.max(8)), (17, 3 * bs.max(32)), (130, 1024 * bs.div_ceil(256).max(1))];
        for (rows, cols) in shapes {
            let w = random_data(ty, rows * cols, &mut rng);
            let x: Vec<f32> = (0..cols).map(|_| rng.f()).collect();
            let (want, mag) = reference(ty, &w, rows, cols, &x);
            let mut y = vec![f32::NAN; rows];
            matvec(ty, &w, rows, cols, &x, &mut y).expect("matvec");
            assert_close(ty, &format!("matvec {rows}x{cols}"), &y, &want, &mag);

            let row_bytes = ty.data_len(cols).expect("row");
            let mut yp = vec![f32::NAN; rows];
            dot_rows_portable(ty, &w, row_bytes, &x, &mut yp);
            assert_close(ty, &format!("portable {rows}x{cols}"), &yp, &want, &mag);
        }
    }
}

#[test]
fn quant_fast_kernels_on_fixture_data() {
    // Real quantizer output (gguf-py) rather than random bits, through the dispatching kernels.
    let fx: serde_json::Value = serde_json::from_str(FIXTURE).expect("fixture json");
    let (rows, cols) = (4, 512);
    let mut rng = Rng(7);
    let x: Vec<f32> = (0..cols).map(|_| rng.f()).collect();
    for (name, entry) in fx["types"].as_object().expect("types") {
        let ty = type_by_name(name).expect("type");
        let w = hex(entry["raw"].as_str().expect("raw"));
        let (want, mag) = reference(ty, &w, rows, cols, &x);
        let mut y = vec![f32::NAN; rows];
        dot_rows(ty, &w, ty.data_len(cols).expect("row"), &x, &mut y);
        assert_close(ty, "fixture", &y, &want, &mag);
    }
}

#[test]
fn quant_matmul_rows_matches_matvec() {
    let mut rng = Rng(42);
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::F16] {
        let (rows, cols) = (77, 512);
        let w = random_data(ty, rows * cols, &mut rng);
        for n in [1, 2, 5] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f()).collect();
            let mut y = vec![f32::NAN; n * rows];
            matmul_rows(ty, &w, rows, cols, &x, n, &mut y).expect("matmul_rows");
            for t in 0..n {
                let mut yt = vec![0.0; rows];
                matvec(ty, &w, rows, cols, &x[t * cols..(t + 1) * cols], &mut yt).expect("matvec");
                assert_eq!(&y[t * rows..(t + 1) * rows], &yt[..], "{ty} n={n} token {t}");
            }
        }
    }
}

#[test]
fn quant_parallel_dequantize_matches_blockwise() {
    let mut rng = Rng(3);
    for ty in [GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16] {
        let n = 1 << 17;
        let data = random_data(ty, n, &mut rng);
        let mut big = vec![0.0f32; n];
        dequantize(ty, &data, &mut big).expect("parallel");
        let (bs, ts) = (ty.block_size(), ty.type_size());
        for (b, (d, o)) in data.chunks_exact(ts).zip(big.chunks_exact(bs)).enumerate().step_by(97) {
            let mut one = vec![0.0f32; bs];
            dequantize(ty, d, &mut one).expect("one block");
            assert_eq!(one, o, "{ty} block {b}");
        }
    }
}

#[test]
fn quant_errors() {
    use GgmlType::*;
    let mut out = vec![0.0f32; 64];
    assert_eq!(dequantize(Q4_0, &[0u8; 35], &mut out), Err(QuantError::DataLength { ty: Q4_0, expected: 36, got: 35 }));
    assert!(matches!(dequantize(Q4_K, &[0u8; 144], &mut out), Err(QuantError::NotBlockAligned { .. })));
    assert_eq!(dequantize(IQ2_XXS, &[0u8; 66], &mut vec![0.0; 256]), Err(QuantError::Unsupported(IQ2_XXS)));
    assert_eq!(dequantize(Q8_1, &[0u8; 72], &mut out), Err(QuantError::Unsupported(Q8_1)));
    assert!(!IQ4_XS.is_supported() && Q6_K.is_supported());

    let w = vec![0u8; 2 * 36];
    let (x, mut y) = (vec![0.0f32; 64], vec![0.0f32; 2]);
    assert!(matvec(Q4_0, &w, 2, 64, &x, &mut y).is_ok());
    assert!(matches!(matvec(Q4_0, &w[1..], 2, 64, &x, &mut y), Err(QuantError::DataLength { .. })));
    assert!(matches!(matvec(Q4_0, &w, 2, 64, &x[1..], &mut y), Err(QuantError::Shape { what: "x", .. })));
    assert!(matches!(matvec(Q4_0, &w, 2, 64, &x, &mut y[1..]), Err(QuantError::Shape { what: "y", .. })));
    assert!(matches!(matvec(Q4_0, &w, 1, 72, &x, &mut y[..1]), Err(QuantError::NotBlockAligned { .. })));
    assert!(matches!(matvec(IQ4_NL, &w, 2, 64, &x, &mut y), Err(QuantError::Unsupported(IQ4_NL))));
    assert!(matches!(matmul_rows(Q4_0, &w, 2, 64, &x, 2, &mut y), Err(QuantError::Shape { .. })));
    assert!(matvec(F32, &[], usize::MAX, usize::MAX, &[], &mut []).is_err());
    let msg = QuantError::Unsupported(IQ2_XXS).to_string();
    assert_eq!(msg, "unsupported quantization type IQ2_XXS");
}

#[test]
fn quant_type_table() {
    for id in 0..64 {
        if let Some(t) = GgmlType::from_id(id) {
            assert_eq!(type_by_name(t.name()), Some(t));
            assert_eq!(t.to_string(), t.name());
        }
    }
    assert_eq!(GgmlType::from_id(4), None); // removed Q4_2
                                            // A few sizes from gguf-py's GGML_QUANT_SIZES.
    use GgmlType::*;
    let sizes = [(IQ2_XXS, 256, 66), (IQ3_S, 256, 110), (IQ4_XS, 256, 136), (IQ1_M, 256, 56), (TQ1_0, 256, 54)];
    for (t, bs, ts) in sizes {
        assert_eq!((t.block_size(), t.type_size()), (bs, ts), "{t}");
    }
    assert!(has_fast_matvec(Q4_1) && !has_fast_matvec(Q6_K));
}

/// `cargo test -p tuneguard-model --release quant_perf -- --ignored --nocapture`
/// (set RAYON_NUM_THREADS to pin the thread count).
#[test]
#[ignore]
fn quant_perf_matvec() {
    let mut rng = Rng(1);
    let cases = [
        (GgmlType::Q4_1, 1536, 576),
        (GgmlType::Q4_1, 576, 1536),
        (GgmlType::Q8_0, 49152, 576),
        (GgmlType::Q4_0, 1536, 576),
        (GgmlType::F16, 1536, 576),
        (GgmlType::F32, 1536, 576),
        (GgmlType::Q4_K, 1536, 512),
        (GgmlType::Q6_K, 1536, 768),
    ];
    for (ty, rows, cols) in cases {
        let cols = cols / ty.block_size() * ty.block_size();
        let w = random_data(ty, rows * cols, &mut rng);
        let x: Vec<f32> = (0..cols).map(|_| rng.f()).collect();
        let mut y = vec![0.0f32; rows];
        let flops = 2.0 * rows as f64 * cols as f64;
        let iters = ((2e9 / flops) as usize).clamp(5, 20_000);
        for _ in 0..iters.min(50) {
            matvec(ty, &w, rows, cols, &x, &mut y).expect("matvec");
        }
        let t0 = std::time::Instant::now();
        for _ in 0..iters {
            matvec(ty, &w, rows, cols, &x, &mut y).expect("matvec");
        }
        let dt = t0.elapsed().as_secs_f64() / iters as f64;
        println!(
            "{ty:>5} {rows:>6}x{cols:<5} {:>8.1} us  {:>6.1} GFLOP/s  {:>5.1} GB/s  ({} threads)",
            dt * 1e6,
            flops / dt / 1e9,
            w.len() as f64 / dt / 1e9,
            rayon::current_num_threads()
        );
    }
}
