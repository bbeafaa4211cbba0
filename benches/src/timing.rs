//! Timing helpers.

use std::time::Instant;

/// Median milliseconds of `iters` calls of `f` after `warmup` calls.
pub fn median_ms(warmup: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Items per second of `f` (which handles `batch` items) over `iters` passes after one
/// warm-up: (mean over all passes, median pass).
pub fn rate(batch: usize, iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let iters = iters.max(1);
    let mut times = Vec::with_capacity(iters);
    let t0 = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = (batch * iters) as f64 / t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    (mean, batch as f64 / times[times.len() / 2])
}

/// A value of `--name` in `args`.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Deterministic pseudo-random values in `[0, 1)` (xorshift), for synthetic images.
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}
