//! MobileNetV2's inverted-residual blocks at 224x224 (not a test): the block strip by
//! strip ([`Bottleneck`]) against its three layers one after the other over the batch.
//! Run: `cargo bench -p cpu-kernels --bench bottleneck [-- --batch N] [--only <name part>]`.
//! GFLOP/s counts 2 flops per multiply-add of the three layers; times are the best of 5
//! batches of calls.

use cpu_kernels::{
    Act, Bottleneck, Conv2d, ConvGeometry, ConvWeights, DepthwiseConv2d, DepthwiseGeometry, Nhwc,
    Padding,
};
use std::time::Instant;

#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn pointwise(cin: usize, cout: usize, act: Act) -> Conv2d {
    let w: Vec<f32> = (0..cin * cout).map(|i| (i % 7) as f32 * 0.01).collect();
    Conv2d::new(
        ConvGeometry::new(1, 1, cin),
        &[ConvWeights {
            hwio: &w,
            bias: Some(&vec![0.1; cout]),
            cout,
            act,
        }],
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .map(|i| args[i + 1].clone())
    };
    let n: usize = arg("--batch").and_then(|b| b.parse().ok()).unwrap_or(16);
    let only = arg("--only");
    // (name, input side, cin, expanded (0: no expansion), stride, cout)
    let cases = [
        ("expanded_conv", 112, 32, 0, 1, 16),
        ("block_1", 112, 16, 96, 2, 24),
        ("block_2", 56, 24, 144, 1, 24),
        ("block_3", 56, 24, 144, 2, 32),
        ("block_4", 28, 32, 192, 1, 32),
        ("block_7", 14, 64, 384, 1, 64),
        ("block_11", 14, 96, 576, 1, 96),
        ("block_14", 7, 160, 960, 1, 160),
        ("block_16", 7, 160, 960, 1, 320),
    ];
    println!("{} threads, batch {n}", rayon::current_num_threads());
    let (mut total_block, mut total_layers) = (0.0, 0.0);
    for (name, side, cin, expanded, stride, cout) in cases {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let ce = if expanded == 0 { cin } else { expanded };
        let expand = (expanded > 0).then(|| pointwise(cin, ce, Act::Relu6));
        let geo = DepthwiseGeometry::new(3, 3, ce)
            .stride(stride)
            .padding(Padding::Same);
        let dw = DepthwiseConv2d::new(geo, &vec![0.1; 9 * ce], Some(&vec![0.0; ce]), Act::Relu6);
        let project = pointwise(ce, cout, Act::Identity);
        let x = Nhwc::from_vec(n, side, side, cin, vec![0.5; n * side * side * cin]).unwrap();
        let (ho, wo) = dw.output_hw(side, side).unwrap();
        let flop = 2.0
            * n as f64
            * ((side * side * cin * ce) as f64 * (expanded > 0) as u8 as f64
                + (ho * wo * ce * 9) as f64
                + (ho * wo * ce * cout) as f64);
        let layers = || {
            let e = expand.as_ref().map(|e| e.forward(x.view()));
            let d = dw.forward(e.as_ref().map_or(x.view(), |e| e.view()));
            project.forward(d.view())
        };
        let block = Bottleneck::new(expand.clone(), dw.clone(), Some(project.clone())).unwrap();
        let time = |f: &dyn Fn() -> Nhwc| {
            let iters = ((1e9 / flop) as usize).clamp(2, 200);
            let _ = f();
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t0 = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(f());
                }
                best = best.min(t0.elapsed().as_secs_f64() / iters as f64);
            }
            best
        };
        let tb = time(&|| block.forward(x.view()));
        let tl = time(&layers);
        total_block += tb;
        total_layers += tl;
        println!(
            "{name:14} {side:3}x{side:<3} {cin:3}->{ce:4}/{stride}->{cout:<4} block {:7.3} ms {:6.1} GFLOP/s   layers {:7.3} ms {:6.1} GFLOP/s",
            tb * 1e3,
            flop / tb / 1e9,
            tl * 1e3,
            flop / tl / 1e9
        );
    }
    println!(
        "total: block {:.1} ms, layers {:.1} ms",
        total_block * 1e3,
        total_layers * 1e3
    );
}
