use gemm::{gemm, Parallelism};
use std::time::Instant;
fn main() {
    for (m, k, n) in [(512usize, 576usize, 576usize), (512, 576, 1536), (512, 1536, 576)] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut y = vec![0f32; m * n];
        let fl = 2.0 * (m * k * n) as f64 / 1e9;
        // layouts: (dst_cs, dst_rs, lhs_cs, lhs_rs, rhs_cs, rhs_rs)
        let variants: [(&str, [isize; 6]); 4] = [
            ("y row, W (n,k)", [1, n as isize, 1, k as isize, k as isize, 1]),
            ("y row, W (k,n)", [1, n as isize, 1, k as isize, 1, n as isize]),
            ("y col, W (n,k)", [m as isize, 1, 1, k as isize, k as isize, 1]),
            ("y col, x col, W(k,n)", [m as isize, 1, m as isize, 1, 1, n as isize]),
        ];
        for (name, s) in variants {
            for par in [Parallelism::None, Parallelism::Rayon(2)] {
                let run = |y: &mut Vec<f32>| unsafe {
                    gemm(
                        m,
                        n,
                        k,
                        y.as_mut_ptr(),
                        s[0],
                        s[1],
                        false,
                        x.as_ptr(),
                        s[2],
                        s[3],
                        w.as_ptr(),
                        s[4],
                        s[5],
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    )
                };
                run(&mut y);
                let t = Instant::now();
                for _ in 0..20 {
                    run(&mut y);
                }
                let sec = t.elapsed().as_secs_f64() / 20.0;
                println!("{m}x{k}x{n} {name} {:?}: {:.1}", matches!(par, Parallelism::None), fl / sec);
            }
        }
    }
}
