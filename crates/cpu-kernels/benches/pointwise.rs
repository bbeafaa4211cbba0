//! Pointwise (1x1) convolution throughput on the shapes of MobileNetV2 at 224x224, batch 16
//! (not a test): the expansions (few input channels, many outputs) and projections (the
//! reverse) that are most of its time; then ResNet50's 1x1 convolutions. Run:
//! `cargo bench -p cpu-kernels --bench pointwise [-- --isa avx512|avx2|portable] [--batch N] [--only '<side> <cin> <cout>'] [--flat] [--into] [--cold]`.
//! GFLOP/s counts 2 flops per multiply-add; GB/s the input read and output written once;
//! times are the best of 5 batches of calls, the output buffers reused as in the programs.

use cpu_kernels::{Act, Conv2d, ConvGeometry, ConvWeights, Isa, Nhwc};
use std::time::Instant;

#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .map(|i| args[i + 1].clone())
    };
    let isa = match arg("--isa").as_deref() {
        Some("avx2") => Isa::Avx2,
        Some("portable") => Isa::Portable,
        Some("avx512") => Isa::Avx512,
        _ => Isa::detect(),
    };
    let n: usize = arg("--batch").and_then(|b| b.parse().ok()).unwrap_or(16);
    // (side, cin, cout)
    let cases = [
        (112, 32, 16),
        (112, 16, 96),
        (56, 24, 144),
        (56, 144, 24),
        (28, 32, 192),
        (28, 192, 32),
        (14, 64, 384),
        (14, 384, 64),
        (14, 96, 576),
        (14, 576, 96),
        (7, 160, 960),
        (7, 960, 160),
        (7, 320, 1280),
        // ResNet50's bottleneck 1x1s.
        (56, 256, 64),
        (56, 64, 256),
        (28, 512, 128),
        (14, 1024, 256),
        (7, 2048, 512),
        // ViT-Ti (192 wide, MLP 768) dense layers: 196 tokens per image.
        (14, 192, 576),
        (14, 192, 192),
        (14, 192, 768),
        (14, 768, 192),
    ];
    println!(
        "isa {isa:?}, {} threads, batch {n}",
        rayon::current_num_threads()
    );
    let mut total_t = 0.0;
    // Optional: only the cases whose label (`side cin cout`) contains `--only <text>`.
    let only = arg("--only");
    // `--into`: into one preallocated output instead of a new (reused) buffer per call.
    let preallocated = args.iter().any(|a| a == "--into");
    // `--flat`: the pixels as one column of rows (`[1, n * side * side, 1]`), as the graph
    // executor runs a matrix product.
    let flat = args.iter().any(|a| a == "--flat");
    // `--cold`: a different input each call, from 16 (not in the caches, as in a network).
    let cold = args.iter().any(|a| a == "--cold");
    for (side, cin, cout) in cases {
        let label = format!("{side} {cin} {cout}");
        if only.as_ref().is_some_and(|o| !label.contains(o.as_str())) {
            continue;
        }
        let (bn, bh, bw) = if flat {
            (1, n * side * side, 1)
        } else {
            (n, side, side)
        };
        let xs: Vec<Nhwc> = (0..if cold { 16 } else { 1 })
            .map(|i| {
                Nhwc::from_vec(bn, bh, bw, cin, vec![0.5 + i as f32; n * side * side * cin])
                    .unwrap()
            })
            .collect();
        let x = &xs[0];
        let wts: Vec<f32> = (0..cin * cout).map(|i| (i % 7) as f32 * 0.01).collect();
        let conv = Conv2d::with_isa(
            isa,
            ConvGeometry::new(1, 1, cin),
            &[ConvWeights {
                hwio: &wts,
                bias: None,
                cout,
                act: if args.iter().any(|a| a == "--gelu") {
                    Act::Gelu
                } else {
                    Act::Relu6
                },
            }],
        );
        let px = (n * side * side) as f64;
        let flop = 2.0 * px * (cin * cout) as f64;
        let bytes = 4.0 * px * (cin + cout) as f64;
        let iters = ((2e9 / flop) as usize).clamp(2, 200);
        let _ = conv.forward(x.view());
        let mut out = Nhwc::zeros(bn, bh, bw, cout);
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t0 = Instant::now();
            for i in 0..iters {
                let x = &xs[i % xs.len()];
                if preallocated {
                    conv.forward_into(x.view(), &mut [out.slot_all()]);
                } else {
                    std::hint::black_box(conv.forward(x.view()));
                }
            }
            best = best.min(t0.elapsed().as_secs_f64() / iters as f64);
        }
        total_t += best;
        println!(
            "{side:4}x{side:<4} {cin:4} -> {cout:<5} {:8.3} ms {:7.1} GFLOP/s {:6.1} GB/s",
            best * 1e3,
            flop / best / 1e9,
            bytes / best / 1e9
        );
    }
    println!("total {:.1} ms", total_t * 1e3);
}
