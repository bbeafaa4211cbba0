//! Training batch-norm and activation throughput (not a test): `train_norm`'s passes on
//! tensors of the sizes the fine-tuning benchmark's networks normalise at batch 12
//! (MobileNetV2's 112x112x96 expansion, Inception-v3's 147x147x64). Run:
//! `cargo bench -p cpu-kernels --bench train_norm`. GB/s counts each tensor a pass reads or
//! writes once (the memory traffic an ideal pass needs); times are the best of 5 calls.

use cpu_kernels::train_norm;
use std::time::Instant;

#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn best(mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    println!("{} threads", rayon::current_num_threads());
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9}  (GB/s: moments, forward, backward, ReLU grad)",
        "tensor", "moments", "fwd", "bwd", "relu'"
    );
    let cases: [(&str, usize, usize); 3] = [
        ("MobileNetV2 112x112x96", 12 * 112 * 112, 96),
        ("Inception 147x147x64", 12 * 147 * 147, 64),
        ("MobileNetV2 7x7x960", 12 * 7 * 7, 960),
    ];
    let mut totals = [0f64; 4];
    for (label, rows, c) in cases {
        let len = rows * c;
        let x: Vec<f32> = (0..len)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                h as f32 / (1u64 << 24) as f32 * 4.0 - 1.0 + (i % c) as f32 * 0.01
            })
            .collect();
        let dy: Vec<f32> = (0..len).map(|i| ((i % 83) as f32 - 41.0) / 83.0).collect();
        let gamma: Vec<f32> = (0..c).map(|j| 0.5 + j as f32 / c as f32).collect();
        let beta: Vec<f32> = (0..c).map(|j| j as f32 / c as f32 - 0.3).collect();
        let moments = train_norm::channel_moments(&x, c);
        let bytes = 4.0 * len as f64;
        let times = [
            best(|| drop(std::hint::black_box(train_norm::channel_moments(&x, c)))),
            best(|| {
                drop(std::hint::black_box(train_norm::batch_norm(
                    &x,
                    &moments,
                    &gamma,
                    &beta,
                    1e-3,
                    (0.0, 6.0),
                )))
            }),
            best(|| {
                drop(std::hint::black_box(train_norm::batch_norm_grad(
                    &x,
                    train_norm::Rows::of(&dy, c),
                    &moments,
                    &gamma,
                    &beta,
                    1e-3,
                    Some((0.0, 6.0)),
                    false,
                )))
            }),
            best(|| {
                drop(std::hint::black_box(train_norm::clamp_grad(
                    &x, &dy, 0.0, 6.0,
                )))
            }),
        ];
        // Ideal traffic: moments read x; forward reads x, writes y; backward reads x, dy
        // and writes dx; the ReLU gradient reads x, dy and writes dx.
        let traffic = [1.0, 2.0, 3.0, 3.0];
        let rates: Vec<String> = times
            .iter()
            .zip(traffic)
            .map(|(t, k)| format!("{:>9.1}", k * bytes / t / 1e9))
            .collect();
        let ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
        println!("{label:<24} {}  ({} ms)", rates.join(" "), ms.join(" / "));
        for (tot, t) in totals.iter_mut().zip(times) {
            *tot += t;
        }
    }
    println!(
        "total ms: moments {:.1}, forward {:.1}, backward {:.1}, ReLU grad {:.1}",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3,
        totals[3] * 1e3
    );
}
