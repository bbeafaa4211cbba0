//! Depthwise convolution throughput on the shapes of MobileNetV2 (3x3) and
//! EfficientNet-B0 (5x5), 224x224 input (not a test). Run:
//! `cargo bench -p cpu-kernels --bench depthwise [-- --isa avx512|avx2|portable] [--only <name part>]`.
//! GFLOP/s counts 2 flops per multiply-add; GB/s the input read and output written once;
//! times are the best of 10 batches of calls into one preallocated output.

use cpu_kernels::{Act, DepthwiseConv2d, DepthwiseGeometry, Isa, Nhwc, Padding};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let isa = match args
        .iter()
        .position(|a| a == "--isa")
        .map(|i| args[i + 1].as_str())
    {
        Some("avx2") => Isa::Avx2,
        Some("portable") => Isa::Portable,
        Some("avx512") => Isa::Avx512,
        _ => Isa::detect(),
    };
    // (name, n, side, k, channels, stride)
    let cases = [
        ("mnv2 112x112x32 3x3/1", 1, 112, 3, 32, 1),
        ("mnv2 112x112x96 3x3/2", 1, 112, 3, 96, 2),
        ("mnv2 56x56x144 3x3/1", 1, 56, 3, 144, 1),
        ("mnv2 56x56x144 3x3/2", 1, 56, 3, 144, 2),
        ("mnv2 28x28x192 3x3/1", 1, 28, 3, 192, 1),
        ("mnv2 14x14x384 3x3/1", 1, 14, 3, 384, 1),
        ("mnv2 14x14x576 3x3/2", 1, 14, 3, 576, 2),
        ("mnv2 7x7x960 3x3/1", 1, 7, 3, 960, 1),
        ("mnv2 56x56x144 3x3/1 b16", 16, 56, 3, 144, 1),
        ("effb0 28x28x240 5x5/1", 1, 28, 5, 240, 1),
        ("effb0 14x14x672 5x5/1", 1, 14, 5, 672, 1),
        ("effb0 7x7x1152 5x5/1", 1, 7, 5, 1152, 1),
    ];
    println!("isa {isa:?}, {} threads", rayon::current_num_threads());
    let mut total_t = 0.0;
    // Optional: only the cases whose name contains `--only <text>`.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    for (name, n, side, k, c, s) in cases {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let g = DepthwiseGeometry::new(k, k, c)
            .stride(s)
            .padding(Padding::Same);
        let x = Nhwc::from_vec(n, side, side, c, vec![0.5; n * side * side * c]).unwrap();
        let f = vec![0.01f32; k * k * c];
        let b = vec![0.1f32; c];
        let conv = DepthwiseConv2d::with_isa(isa, g, &f, Some(&b), Act::Relu6);
        let (ho, wo) = conv.output_hw(side, side).unwrap();
        let flop = 2.0 * (n * ho * wo * c * k * k) as f64;
        let bytes = 4.0 * (x.data.len() + n * ho * wo * c) as f64;
        // Into one output allocated up front (a fresh one each call would time the
        // page faults of its first touch).
        let mut out = conv.forward(x.view());
        // The best of 10 batches: the machine is shared, this is the kernel's own speed.
        let iters = ((1e8 / flop) as usize).clamp(3, 200);
        let t = (0..10)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    conv.forward_into(x.view(), &mut out.slot_all());
                    std::hint::black_box(&out);
                }
                t0.elapsed().as_secs_f64() / iters as f64
            })
            .fold(f64::INFINITY, f64::min);
        total_t += t;
        println!(
            "{name:26} {:8.3} ms  {:6.1} GFLOP/s  {:6.1} GB/s",
            t * 1e3,
            flop / t / 1e9,
            bytes / t / 1e9
        );
    }
    println!("total {:.2} ms", total_t * 1e3);
}
