//! Training convolution throughput (not a test): `TrainConv`'s forward pass, input gradient
//! and filter gradient on Inception-v3's layer shapes at 299x299 (batch 12 by default), the
//! layers the whole-network fine-tuning benchmark spends its time in, then MobileNetV2's at
//! 224x224 (`--only MNv2`). Run:
//! `cargo bench -p cpu-kernels --bench train_conv [-- --batch N] [--only <label part>] [--cold]`.
//! GFLOP/s counts 2 flops per multiply-add of each pass; times are the best of 3 calls.
//! `dx+dw`: both gradients by one call (`TrainConv::grad_input_and_filter`, the flops of
//! both). Then the backward pass of a convolution and the training batch norm after it
//! (ReLU6) on MobileNetV2's 1x1 layers: the batch norm's gradient written whole, then the
//! convolution's, against `TrainConv::grad_input_and_filter_after` (ms). `--cold`: the caches are flushed before each call (a 320 MB buffer written), as a
//! training step finds its activations and gradients in memory.
//! Then Inception's pools (`TrainPool`: forward and input gradient, GB/s of input and
//! output read and written once).

use cpu_kernels::{TrainConv, TrainPool};
use std::time::Instant;

#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn best(cold: bool, mut f: impl FnMut()) -> f64 {
    let mut junk = vec![0u8; if cold { 320 << 20 } else { 0 }];
    (0..3)
        .map(|i| {
            for b in junk.iter_mut().step_by(64) {
                *b = i as u8;
            }
            std::hint::black_box(&junk);
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// One table row: `work / time / 1e9` per pass (GFLOP/s or GB/s), then the times in ms;
/// the times added to `totals`.
fn row(label: &str, works: &[f64], times: &[f64], totals: &mut [f64]) {
    let rates: Vec<String> = times
        .iter()
        .zip(works)
        .map(|(t, work)| format!("{:>9.1}", work / t / 1e9))
        .collect();
    let ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t * 1e3)).collect();
    println!("{label:<18} {}  ({} ms)", rates.join(" "), ms.join(" / "));
    for (tot, t) in totals.iter_mut().zip(times) {
        *tot += t;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--batch")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(12);
    let cold = args.iter().any(|a| a == "--cold");
    // (label, side, cin, cout, kh, kw, stride, pad top/left (SAME: symmetric))
    // MobileNetV2's (224x224) dense convolutions: its first, expansions and projections.
    // Labels with " dw " are depthwise (cin = cout channels, a filter per channel).
    let cases: [(&str, usize, usize, usize, usize, usize, usize, [usize; 2]); 23] = [
        ("Conv2d_2a_3x3", 149, 32, 32, 3, 3, 1, [0, 0]),
        ("Conv2d_2b_3x3", 147, 32, 64, 3, 3, 1, [1, 1]),
        ("Conv2d_3b_1x1", 73, 64, 80, 1, 1, 1, [0, 0]),
        ("Conv2d_4a_3x3", 73, 80, 192, 3, 3, 1, [0, 0]),
        ("5b 1x1 192-64", 35, 192, 64, 1, 1, 1, [0, 0]),
        ("5b 5x5 48-64", 35, 48, 64, 5, 5, 1, [2, 2]),
        ("5b 3x3 64-96", 35, 64, 96, 3, 3, 1, [1, 1]),
        ("6a 3x3/2 288-384", 35, 288, 384, 3, 3, 2, [0, 0]),
        ("6b 1x1 768-192", 17, 768, 192, 1, 1, 1, [0, 0]),
        ("6b 1x7 128-128", 17, 128, 128, 1, 7, 1, [0, 3]),
        ("6e 7x1 192-192", 17, 192, 192, 7, 1, 1, [3, 0]),
        ("7b 1x1 1280-320", 8, 1280, 320, 1, 1, 1, [0, 0]),
        ("7c 1x1 2048-448", 8, 2048, 448, 1, 1, 1, [0, 0]),
        ("7b 3x3 448-384", 8, 448, 384, 3, 3, 1, [1, 1]),
        ("MNv2 3x3/2 3-32", 224, 3, 32, 3, 3, 2, [0, 0]),
        ("MNv2 1x1 16-96", 112, 16, 96, 1, 1, 1, [0, 0]),
        ("MNv2 1x1 24-144", 56, 24, 144, 1, 1, 1, [0, 0]),
        ("MNv2 1x1 144-24", 56, 144, 24, 1, 1, 1, [0, 0]),
        ("MNv2 1x1 96-576", 14, 96, 576, 1, 1, 1, [0, 0]),
        ("MNv2 dw 3x3/2 96", 112, 96, 96, 3, 3, 2, [0, 0]),
        ("MNv2 dw 3x3 144", 56, 144, 144, 3, 3, 1, [1, 1]),
        ("MNv2 dw 3x3 576", 14, 576, 576, 3, 3, 1, [1, 1]),
        ("EffB0 dw 5x5 240", 28, 240, 240, 5, 5, 1, [2, 2]),
    ];
    // Optional: only the layers whose label contains `--only <text>`.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    println!("{} threads, batch {n}", rayon::current_num_threads());
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9}  (GFLOP/s: forward, input grad, filter grad, both)",
        "layer", "fwd", "dx", "dw", "dx+dw"
    );
    let mut totals = [0f64; 4];
    for (label, side, cin, cout, kh, kw, s, [pt, pl]) in cases {
        if only.as_ref().is_some_and(|o| !label.contains(o.as_str())) {
            continue;
        }
        let t = TrainConv {
            n,
            h: side,
            w: side,
            cin,
            cout,
            kh,
            kw,
            stride: [s, s],
            pads: [pt, pt, pl, pl],
            depthwise: label.contains(" dw "),
        };
        let (oh, ow) = t.output_hw().unwrap();
        let x: Vec<f32> = (0..n * side * side * cin)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let w: Vec<f32> = (0..t.sizes().1)
            .map(|i| ((i % 89) as f32 - 44.0) / 890.0)
            .collect();
        let dy: Vec<f32> = (0..n * oh * ow * cout)
            .map(|i| ((i % 83) as f32 - 41.0) / 83.0)
            .collect();
        let per_output = if t.depthwise { kh * kw } else { kh * kw * cin };
        let flops = 2.0 * (n * oh * ow * cout * per_output) as f64;
        let times = [
            best(cold, || drop(std::hint::black_box(t.forward(&x, &w)))),
            best(cold, || drop(std::hint::black_box(t.grad_input(&dy, &w)))),
            best(cold, || drop(std::hint::black_box(t.grad_filter(&x, &dy)))),
            best(cold, || {
                drop(std::hint::black_box(
                    t.grad_input_and_filter(&x, &dy, &w, None),
                ))
            }),
        ];
        row(
            label,
            &[flops, flops, flops, 2.0 * flops],
            &times,
            &mut totals,
        );
    }
    println!(
        "total ms: forward {:.1}, input grad {:.1}, filter grad {:.1}, both {:.1}",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3,
        totals[3] * 1e3
    );
    conv_batch_norms(n, only.as_deref(), cold);
    pools(n, only.as_deref(), cold);
}

/// MobileNetV2's 1x1 convolutions with their batch norms: (label, side, cin, cout).
fn conv_batch_norms(n: usize, only: Option<&str>, cold: bool) {
    use cpu_kernels::train_norm::{self, BatchNormGrad, Rows};
    let cases: [(&str, usize, usize, usize); 4] = [
        ("MNv2 1x1+BN 16-96", 112, 16, 96),
        ("MNv2 1x1+BN 24-144", 56, 24, 144),
        ("MNv2 1x1+BN 144-24", 56, 144, 24),
        ("MNv2 1x1+BN 96-576", 14, 96, 576),
    ];
    println!(
        "{:<18} {:>9} {:>9}  (ms: two steps, one op)",
        "conv + batch norm", "apart", "fused"
    );
    for (label, side, cin, cout) in cases {
        if only.is_some_and(|o| !label.contains(o)) {
            continue;
        }
        let t = TrainConv {
            n,
            h: side,
            w: side,
            cin,
            cout,
            kh: 1,
            kw: 1,
            stride: [1, 1],
            pads: [0; 4],
            depthwise: false,
        };
        let x: Vec<f32> = (0..n * side * side * cin)
            .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
            .collect();
        let w: Vec<f32> = (0..cin * cout)
            .map(|i| ((i % 89) as f32 - 44.0) / 89.0)
            .collect();
        let y = t.forward(&x, &w);
        let d_out: Vec<f32> = (0..y.len())
            .map(|i| ((i % 83) as f32 - 41.0) / 83.0)
            .collect();
        let moments = train_norm::channel_moments(&y, cout);
        let (gamma, beta) = (vec![1.0f32; cout], vec![0.1f32; cout]);
        let bn = |y| {
            let rows = Rows::of(&d_out, cout);
            BatchNormGrad::new(
                y,
                rows,
                &moments,
                &gamma,
                &beta,
                1e-3,
                Some((0.0, 6.0)),
                false,
            )
        };
        let apart = best(cold, || {
            // `train_norm::batch_norm_grad`'s two steps: the sums, the whole input gradient.
            let dy = bn(&y).input_gradient();
            drop(std::hint::black_box(
                t.grad_input_and_filter(&x, &dy, &w, None),
            ));
        });
        let fused = best(cold, || {
            let g = bn(&y);
            drop(std::hint::black_box(
                t.grad_input_and_filter_after(&x, &g, &w, None),
            ));
        });
        println!("{label:<18} {:>9.1} {:>9.1}", apart * 1e3, fused * 1e3);
    }
}

/// Inception-v3's pools at 299x299: (label, side, channels, max, stride, pad).
fn pools(n: usize, only: Option<&str>, cold: bool) {
    let cases: [(&str, usize, usize, bool, usize, usize); 6] = [
        ("MaxPool_3a 3x3/2", 147, 64, true, 2, 0),
        ("MaxPool_5a 3x3/2", 71, 192, true, 2, 0),
        ("5d avg 3x3 SAME", 35, 288, false, 1, 1),
        ("6a max 3x3/2", 35, 288, true, 2, 0),
        ("6e avg 3x3 SAME", 17, 768, false, 1, 1),
        ("7c avg 3x3 SAME", 8, 2048, false, 1, 1),
    ];
    println!(
        "{:<18} {:>9} {:>9}  (GB/s: forward, input grad)",
        "pool", "fwd", "dx"
    );
    let mut totals = [0f64; 2];
    for (label, side, c, max, s, pad) in cases {
        if only.is_some_and(|o| !label.contains(o)) {
            continue;
        }
        let t = TrainPool {
            n,
            h: side,
            w: side,
            c,
            kh: 3,
            kw: 3,
            stride: [s, s],
            pads: [pad; 4],
            max,
        };
        let (oh, ow) = t.output_hw().unwrap();
        // Pseudo-random values, half of them zeros as after a ReLU (a periodic pattern made
        // the max pool's comparisons predictable, as real activations do not).
        let x: Vec<f32> = (0..n * side * side * c)
            .map(|i| {
                let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                (h as f32 / (1u64 << 24) as f32 - 0.5).max(0.0)
            })
            .collect();
        let dy: Vec<f32> = (0..n * oh * ow * c)
            .map(|i| ((i % 83) as f32 - 41.0) / 83.0)
            .collect();
        let bytes = 4.0 * (x.len() + dy.len()) as f64;
        let times = [
            best(cold, || drop(std::hint::black_box(t.forward(&x)))),
            best(cold, || drop(std::hint::black_box(t.grad_input(&x, &dy)))),
        ];
        row(label, &[bytes, bytes], &times, &mut totals);
    }
    println!(
        "total ms: forward {:.1}, input grad {:.1}",
        totals[0] * 1e3,
        totals[1] * 1e3
    );
}
