//! Prints GFLOP/s of the dense matmul at the model's prefill shapes (a quick probe, not a test).
use std::time::Instant;
fn main() {
    rayon::ThreadPoolBuilder::new().num_threads(2).build_global().expect("pool");
    for (m, k, n) in [(512, 576, 576), (512, 576, 1536), (512, 1536, 576), (512, 576, 192)] {
        let x = vec![0.5f32; m * k];
        let w = vec![0.25f32; n * k];
        let mut y = vec![0f32; m * n];
        let par = tuneguard_model::ops::parallelism();
        tuneguard_model::ops::matmul_wt(&x, &w, &mut y, m, k, n, false, par);
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            tuneguard_model::ops::matmul_wt(&x, &w, &mut y, m, k, n, false, par);
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("{m}x{k}x{n}: {:.1} GFLOP/s", 2.0 * (m * k * n) as f64 / s / 1e9);
    }
}
