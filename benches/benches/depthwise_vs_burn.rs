//! Depthwise convolution: `cpu_kernels::DepthwiseConv2d` (NHWC) against Burn flex's own
//! `conv2d` with groups = C (NCHW, its depthwise fast path), on MobileNetV2 / EfficientNet-B0
//! shapes (not a test). Run: `cargo bench -p benches --bench depthwise_vs_burn`.
//! "ours" writes into one preallocated output, "ours+alloc" allocates it per call as
//! Burn does; the ratio is against the latter. Stride-1 results are compared too.
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use cpu_kernels::{Act, DepthwiseConv2d, DepthwiseGeometry, Nhwc, Padding};
use std::time::Instant;

fn best(mut f: impl FnMut(), iters: usize) -> f64 {
    f();
    (0..10)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..iters {
                f();
            }
            t0.elapsed().as_secs_f64() / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Freed activation buffers are reused, as in the programs.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn main() {
    let device = Device::flex();
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
    println!(
        "{} threads; ms per call, best of 10 batches",
        rayon::current_num_threads()
    );
    println!(
        "{:26} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "shape", "ours", "ours+alloc", "burn", "GFLOP/s", "burn/ours"
    );
    let (mut to, mut tb) = (0.0, 0.0);
    for (name, n, side, k, c, s) in cases {
        let vals = |len: usize| {
            (0..len)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect::<Vec<f32>>()
        };
        let x = vals(n * side * side * c);
        let f = vals(k * k * c);
        let b = vals(c);
        let g = DepthwiseGeometry::new(k, k, c)
            .stride(s)
            .padding(Padding::Same);
        let conv = DepthwiseConv2d::new(g, &f, Some(&b), Act::Identity);
        let xn = Nhwc::from_vec(n, side, side, c, x.clone()).unwrap();
        let (ho, wo) = conv.output_hw(side, side).unwrap();
        let flop = 2.0 * (n * ho * wo * c * k * k) as f64;
        let iters = ((1e8 / flop) as usize).clamp(3, 200);
        let mut out = conv.forward(xn.view());
        let t_ours = best(
            || {
                conv.forward_into(xn.view(), &mut out.slot_all());
                std::hint::black_box(&out);
            },
            iters,
        );
        let t_alloc = best(
            || {
                std::hint::black_box(conv.forward(xn.view()));
            },
            iters,
        );
        // Burn: NCHW input, [C, 1, k, k] weights, symmetric padding (k-1)/2 (the same
        // output size as SAME here).
        let mut xc = vec![0f32; x.len()];
        for bb in 0..n {
            for y in 0..side {
                for xx in 0..side {
                    for ch in 0..c {
                        xc[((bb * c + ch) * side + y) * side + xx] =
                            x[((bb * side + y) * side + xx) * c + ch];
                    }
                }
            }
        }
        let mut wc = vec![0f32; f.len()];
        for t in 0..k * k {
            for ch in 0..c {
                wc[ch * k * k + t] = f[t * c + ch];
            }
        }
        let xt = Tensor::<4>::from_data(TensorData::new(xc, [n, c, side, side]), &device);
        let wt = Tensor::<4>::from_data(TensorData::new(wc, [c, 1, k, k]), &device);
        let bt = Tensor::<1>::from_data(TensorData::new(b.clone(), [c]), &device);
        let p = (k - 1) / 2;
        let opts = ConvOptions::new([s, s], [p, p], [1, 1], c);
        let yb = conv2d(xt.clone(), wt.clone(), Some(bt.clone()), opts.clone());
        assert_eq!(yb.dims(), [n, c, ho, wo]);
        // Same results (stride 1: identical padding).
        if s == 1 {
            let yd: Vec<f32> = yb.into_data().try_to_vec::<f32>().unwrap();
            let mut maxd = 0f32;
            for bb in 0..n {
                for y in 0..ho {
                    for xx in 0..wo {
                        for ch in 0..c {
                            let a = yd[((bb * c + ch) * ho + y) * wo + xx];
                            let o = out.data[((bb * ho + y) * wo + xx) * c + ch];
                            maxd = maxd.max((a - o).abs());
                        }
                    }
                }
            }
            assert!(maxd < 1e-4, "{name}: burn and cpu-kernels differ by {maxd}");
        }
        let t_burn = best(
            || {
                // Flex runs eagerly: the call computes the output.
                std::hint::black_box(conv2d(
                    xt.clone(),
                    wt.clone(),
                    Some(bt.clone()),
                    opts.clone(),
                ));
            },
            iters,
        );
        to += t_alloc;
        tb += t_burn;
        println!(
            "{name:26} {:9.3} {:9.3} {:9.3} {:8.1} {:8.2}x",
            t_ours * 1e3,
            t_alloc * 1e3,
            t_burn * 1e3,
            flop / t_ours / 1e9,
            t_burn / t_alloc
        );
    }
    println!(
        "total: ours (with output allocation) {:.2} ms, burn {:.2} ms ({:.2}x)",
        to * 1e3,
        tb * 1e3,
        tb / to
    );
}
