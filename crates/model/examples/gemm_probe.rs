//! Prints GFLOP/s of the dense matmul (`ops::matmul_wt` over the gemm crate) at the model's
//! prefill shapes, on 1 thread, on gemm's 2-thread rayon mode and with the rows split over 2
//! rayon tasks: a quick probe for choosing how linear layers are parallelized, not a test.
//!
//!   cargo run --release -p tuneguard-model --example gemm_probe
use gemm::Parallelism;
use std::time::Instant;
use tuneguard_model::ops::matmul_wt;

fn time(f: &mut dyn FnMut()) -> f64 {
    f();
    let reps = 20;
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    rayon::ThreadPoolBuilder::new().num_threads(2).build_global().expect("pool");
    for (m, k, n) in
        [(512, 576, 576), (512, 576, 1536), (512, 1536, 576), (512, 576, 960), (512, 576, 3072), (512, 576, 49152)]
    {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut y = vec![0f32; m * n];
        let fl = 2.0 * (m * k * n) as f64 / 1e9;
        let s1 = time(&mut || matmul_wt(&x, &w, &mut y, m, k, n, false, Parallelism::None));
        let s2 = time(&mut || matmul_wt(&x, &w, &mut y, m, k, n, false, Parallelism::Rayon(2)));
        let s3 = time(&mut || {
            let (ya, yb) = y.split_at_mut(m / 2 * n);
            let (xa, xb) = x.split_at(m / 2 * k);
            rayon::join(
                || matmul_wt(xa, &w, ya, m / 2, k, n, false, Parallelism::None),
                || matmul_wt(xb, &w, yb, m - m / 2, k, n, false, Parallelism::None),
            );
        });
        println!("{m}x{k}x{n}: 1 thread {:.1}, rayon(2) {:.1}, split rows {:.1} GFLOP/s", fl / s1, fl / s2, fl / s3);
    }
}
