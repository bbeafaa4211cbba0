//! Convolution throughput on the shapes of Inception-v3 and Magenta's transformer (not a
//! test). Run: `cargo bench -p cpu-kernels --bench conv [-- --isa avx512|avx2|portable] [--only <name part>]`.

use cpu_kernels::{Act, Conv2d, ConvGeometry, ConvWeights, Isa, Nhwc, Padding};
use std::time::Instant;

/// Freed output buffers are reused, as in the programs.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

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
    let same = Padding::Same;
    // (name, n, h, w, geometry, cout)
    let cases: Vec<(&str, usize, usize, usize, ConvGeometry, usize)> = vec![
        (
            "Conv2d_1a 3x3/2 3->32",
            1,
            299,
            299,
            ConvGeometry::new(3, 3, 3).stride(2),
            32,
        ),
        (
            "Conv2d_2a 3x3 32->32",
            1,
            149,
            149,
            ConvGeometry::new(3, 3, 32),
            32,
        ),
        (
            "Conv2d_2b 3x3 32->64",
            1,
            147,
            147,
            ConvGeometry::new(3, 3, 32).padding(same),
            64,
        ),
        (
            "Conv2d_3b 1x1 64->80",
            1,
            73,
            73,
            ConvGeometry::new(1, 1, 64),
            80,
        ),
        (
            "Conv2d_4a 3x3 80->192",
            1,
            73,
            73,
            ConvGeometry::new(3, 3, 80),
            192,
        ),
        (
            "5b 1x1 192->176",
            1,
            35,
            35,
            ConvGeometry::new(1, 1, 192),
            176,
        ),
        (
            "5b 5x5 48->64",
            1,
            35,
            35,
            ConvGeometry::new(5, 5, 48).padding(same),
            64,
        ),
        (
            "5b 3x3 96->96",
            1,
            35,
            35,
            ConvGeometry::new(3, 3, 96).padding(same),
            96,
        ),
        (
            "6a 3x3/2 288->384",
            1,
            35,
            35,
            ConvGeometry::new(3, 3, 288).stride(2),
            384,
        ),
        (
            "6b 1x1 768->576",
            1,
            17,
            17,
            ConvGeometry::new(1, 1, 768),
            576,
        ),
        (
            "6c 1x7 160->160",
            1,
            17,
            17,
            ConvGeometry::new(1, 7, 160).padding(same),
            160,
        ),
        (
            "6e 7x1 192->192",
            1,
            17,
            17,
            ConvGeometry::new(7, 1, 192).padding(same),
            192,
        ),
        (
            "7b 1x1 1280->1152",
            1,
            8,
            8,
            ConvGeometry::new(1, 1, 1280),
            1152,
        ),
        (
            "7b 3x3 448->384",
            1,
            8,
            8,
            ConvGeometry::new(3, 3, 448).padding(same),
            384,
        ),
        (
            "7c 1x1 2048->1152 b16",
            16,
            8,
            8,
            ConvGeometry::new(1, 1, 2048),
            1152,
        ),
        (
            "6b 1x1 768->576 b16",
            16,
            17,
            17,
            ConvGeometry::new(1, 1, 768),
            576,
        ),
        (
            "style 9x9 3->32",
            1,
            384,
            384,
            ConvGeometry::new(9, 9, 3).padding(Padding::Reflect(4)),
            32,
        ),
        (
            "style res 3x3 128->128",
            1,
            96,
            96,
            ConvGeometry::new(3, 3, 128).padding(Padding::Reflect(1)),
            128,
        ),
        (
            "style up 3x3 64->32 x2",
            1,
            192,
            192,
            ConvGeometry::new(3, 3, 64)
                .padding(Padding::Reflect(1))
                .upsample(2),
            32,
        ),
        (
            "style 9x9 32->3",
            1,
            384,
            384,
            ConvGeometry::new(9, 9, 32).padding(Padding::Reflect(4)),
            3,
        ),
        // ResNet50 at batch 1: the 3x3 convolutions of stages 2-5 (SAME) and the stem.
        (
            "resnet conv2 3x3 64->64",
            1,
            56,
            56,
            ConvGeometry::new(3, 3, 64).padding(same),
            64,
        ),
        (
            "resnet conv3 3x3 128->128",
            1,
            28,
            28,
            ConvGeometry::new(3, 3, 128).padding(same),
            128,
        ),
        (
            "resnet conv4 3x3 256->256",
            1,
            14,
            14,
            ConvGeometry::new(3, 3, 256).padding(same),
            256,
        ),
        (
            "resnet conv5 3x3 512->512",
            1,
            7,
            7,
            ConvGeometry::new(3, 3, 512).padding(same),
            512,
        ),
        (
            "resnet conv4 3x3 256->256 b16",
            16,
            14,
            14,
            ConvGeometry::new(3, 3, 256).padding(same),
            256,
        ),
        (
            "resnet conv5 3x3 512->512 b16",
            16,
            7,
            7,
            ConvGeometry::new(3, 3, 512).padding(same),
            512,
        ),
        (
            "7b 3x3 448->384 b16",
            16,
            8,
            8,
            ConvGeometry::new(3, 3, 448).padding(same),
            384,
        ),
        (
            "resnet conv1 7x7/2 3->64",
            1,
            230,
            230,
            ConvGeometry::new(7, 7, 3).stride(2),
            64,
        ),
    ];
    println!("isa {isa:?}, {} threads", rayon::current_num_threads());
    let mut total_t = 0.0;
    // Optional: only the cases whose name contains `--only <text>`.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    for (name, n, h, w, g, cout) in cases {
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let x = Nhwc::from_vec(n, h, w, g.cin, vec![0.5; n * h * w * g.cin]).unwrap();
        let wts = vec![0.01f32; g.k() * cout];
        let conv = Conv2d::with_isa(
            isa,
            g,
            &[ConvWeights {
                hwio: &wts,
                bias: None,
                cout,
                act: Act::Relu,
            }],
        );
        let (ho, wo) = conv.output_hw(h, w).unwrap();
        let flop = 2.0 * (n * ho * wo * g.k() * cout) as f64;
        let time = |conv: &Conv2d| {
            let _ = conv.forward(x.view());
            let iters = ((3e9 / flop) as usize).clamp(3, 500);
            let t0 = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(conv.forward(x.view()));
            }
            t0.elapsed().as_secs_f64() / iters as f64
        };
        let t = time(&conv);
        total_t += t;
        print!(
            "{name:28} {:8.3} ms  {:6.1} GFLOP/s",
            t * 1e3,
            flop / t / 1e9
        );
        if conv.uses_winograd(n, ho, wo) {
            let d = time(&conv.clone().without_winograd());
            let seg = [ConvWeights {
                hwio: &wts,
                bias: None,
                cout,
                act: Act::Relu,
            }];
            let f4 = Conv2d::with_winograd_tile(isa, g, &seg, 4);
            let t4 = time(&f4);
            print!(
                "  (Winograd; direct {:.3} ms, F(4x4) {:.3} ms)",
                d * 1e3,
                t4 * 1e3
            );
        }
        println!();
    }
    println!("total {:.1} ms", total_t * 1e3);
}
