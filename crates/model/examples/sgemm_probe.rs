//! GFLOP/s of tuneguard's AVX-512 sgemm (`sgemm::matmul_wt`) vs the gemm crate at the model's
//! prefill shapes, on 1 and 2 threads: a probe for tuning the kernel, not a test (the
//! benchmark of the whole forward pass is `benches/infer.rs`).
//!
//!   cargo run --release -p tuneguard-model --example sgemm_probe
use std::time::Instant;
fn time(f: &mut dyn FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..10 {
        f();
    }
    t.elapsed().as_secs_f64() / 10.0
}
fn main() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        pool.install(|| {
            for (m, k, n) in [(512, 576, 576), (512, 576, 1536), (512, 1536, 576), (512, 576, 192)] {
                let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
                let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
                let mut y = vec![0f32; m * n];
                let fl = 2.0 * (m * k * n) as f64 / 1e9;
                let a = time(&mut || tuneguard_model::sgemm::matmul_wt(&x, &w, &mut y, m, k, n));
                let par = if threads == 1 { gemm::Parallelism::None } else { gemm::Parallelism::Rayon(threads) };
                let b = time(&mut || tuneguard_model::ops::matmul_wt(&x, &w, &mut y, m, k, n, true, par));
                println!("{threads} thr {m}x{k}x{n}: ours {:.1}  gemm crate {:.1} GFLOP/s", fl / a, fl / b);
            }
        });
    }
}
