//! Attention's batched products on [`cpu_kernels::matmul_batches`] (not a test): ViT-Ti's
//! scores `q k^T` and context `p v` at batch 16 (197 tokens, 3 heads of 64), read from and
//! written to `[batch, tokens, heads, dim]` layouts. Run:
//! `cargo bench -p cpu-kernels --bench attention [-- --batch N --tokens T --heads H --dim D]`.

use cpu_kernels::{matmul_batches, Layout};
use std::time::Instant;

#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |f: &str, d: usize| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1)?.parse().ok())
            .unwrap_or(d)
    };
    let (nb, t, h, d) = (
        arg("--batch", 16),
        arg("--tokens", 197),
        arg("--heads", 3),
        arg("--dim", 64),
    );
    let q: Vec<f32> = (0..nb * t * h * d)
        .map(|i| (i % 13) as f32 * 0.01)
        .collect();
    let mut s = vec![0f32; nb * h * t * t];
    let mut ctx = vec![0f32; nb * t * h * d];
    let bthd = |bh: usize| ((bh / h) * t * h + bh % h) * d;
    let bhqk = |bh: usize| bh * t * t;
    let flop = 2.0 * (nb * h * t * t * d) as f64;
    let time = |f: &mut dyn FnMut()| {
        f();
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t0 = Instant::now();
            for _ in 0..10 {
                f();
            }
            best = best.min(t0.elapsed().as_secs_f64() / 10.0);
        }
        best
    };
    let scores = time(&mut || {
        matmul_batches(
            nb * h,
            (t, d, t),
            &q,
            &Layout {
                at: &bthd,
                row: h * d,
                col: 1,
            },
            &q,
            &Layout {
                at: &bthd,
                row: 1,
                col: h * d,
            },
            &mut s,
            &Layout {
                at: &bhqk,
                row: t,
                col: 1,
            },
        )
    });
    let context = time(&mut || {
        matmul_batches(
            nb * h,
            (t, t, d),
            &s,
            &Layout {
                at: &bhqk,
                row: t,
                col: 1,
            },
            &q,
            &Layout {
                at: &bthd,
                row: h * d,
                col: 1,
            },
            &mut ctx,
            &Layout {
                at: &bthd,
                row: h * d,
                col: 1,
            },
        )
    });
    println!(
        "batch {nb}, {t} tokens, {h} heads of {d}, {} threads",
        rayon::current_num_threads()
    );
    for (what, secs) in [("scores  q k^T", scores), ("context p v  ", context)] {
        println!(
            "{what} {:8.3} ms {:7.1} GFLOP/s",
            secs * 1e3,
            flop / secs / 1e9
        );
    }
}
