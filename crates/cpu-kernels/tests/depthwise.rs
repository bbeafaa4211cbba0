//! `DepthwiseConv2d` and `GroupedConv2d` against direct f64 implementations written from
//! TensorFlow's definitions (`depthwise_conv2d` with filter `[kh, kw, C, M]` and output
//! channel `c * M + m`; grouped `conv2d`), for every kernel set the CPU runs.

use cpu_kernels::{
    Act, ConvGeometry, DepthwiseConv2d, DepthwiseGeometry, GroupedConv2d, Isa, Nhwc, Padding,
};

mod common;
use common::*;

/// The kernels write their outputs into buffers that are not zeroed first: with this
/// allocator, a freed buffer of the same size comes back as it was left, so a poisoned one
/// (`poison`) shows any element a kernel fails to write.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn activate(x: f64, act: Act) -> f64 {
    match act {
        Act::Identity => x,
        Act::Relu => x.max(0.0),
        Act::Relu6 => x.clamp(0.0, 6.0),
        Act::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::Swish => x / (1.0 + (-x).exp()),
        Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Act::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::Gelu => 0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2),
        Act::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

/// `(pad_before, pad_after)` of one axis, for a kernel spanning `extent` cells.
fn pads(len: usize, extent: usize, s: usize, p: Padding, axis: usize) -> (usize, usize) {
    match p {
        Padding::Valid => (0, 0),
        Padding::Same => {
            let out = len.div_ceil(s);
            let total = ((out - 1) * s + extent).saturating_sub(len);
            (total / 2, total - total / 2)
        }
        Padding::Zero(z) => (z[2 * axis], z[2 * axis + 1]),
        Padding::Reflect(r) => (r, r),
    }
}

/// Source index of padded cell `i` along an axis of `len`, or `None` in zero padding.
fn source(i: isize, len: usize, p: Padding) -> Option<usize> {
    let l = len as isize;
    let i = match p {
        Padding::Reflect(_) if i < 0 => -i,
        Padding::Reflect(_) if i >= l => 2 * (l - 1) - i,
        _ => i,
    };
    (0..l).contains(&i).then_some(i as usize)
}

/// Direct depthwise convolution in f64.
fn depthwise_reference(x: &Nhwc, g: &DepthwiseGeometry, f: &[f32], bias: &[f32], act: Act) -> Nhwc {
    let (eh, ew) = (
        (g.kh - 1) * g.dilation[0] + 1,
        (g.kw - 1) * g.dilation[1] + 1,
    );
    let (pt, pb) = pads(x.h, eh, g.stride[0], g.padding, 0);
    let (pl, pr) = pads(x.w, ew, g.stride[1], g.padding, 1);
    let ho = (x.h + pt + pb - eh) / g.stride[0] + 1;
    let wo = (x.w + pl + pr - ew) / g.stride[1] + 1;
    let (c, m) = (g.channels, g.multiplier);
    let mut out = Nhwc::zeros(x.n, ho, wo, c * m);
    for b in 0..x.n {
        for oy in 0..ho {
            for ox in 0..wo {
                for ci in 0..c {
                    for mi in 0..m {
                        let o = ci * m + mi;
                        let mut acc = bias[o] as f64;
                        for dy in 0..g.kh {
                            for dx in 0..g.kw {
                                let iy = (oy * g.stride[0] + dy * g.dilation[0]) as isize;
                                let ix = (ox * g.stride[1] + dx * g.dilation[1]) as isize;
                                let iy = source(iy - pt as isize, x.h, g.padding);
                                let ix = source(ix - pl as isize, x.w, g.padding);
                                let (Some(iy), Some(ix)) = (iy, ix) else {
                                    continue;
                                };
                                let v = x.data[((b * x.h + iy) * x.w + ix) * c + ci] as f64;
                                acc += v * f[((dy * g.kw + dx) * c + ci) * m + mi] as f64;
                            }
                        }
                        out.data[((b * ho + oy) * wo + ox) * c * m + o] = activate(acc, act) as f32;
                    }
                }
            }
        }
    }
    out
}

/// `|got - want| <= 1e-5 * max(|want|, 1)` elementwise.
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// Checks one depthwise convolution on every kernel set, through `forward` and through
/// `forward_into` a channel slice of a wider tensor (from a channel slice of the input).
fn check(n: usize, h: usize, w: usize, g: DepthwiseGeometry, act: Act, seed: u64) {
    let c = g.channels;
    let x = Nhwc::from_vec(n, h, w, c, values(n * h * w * c, seed)).unwrap();
    let f: Vec<f32> = values(g.kh * g.kw * g.cout(), seed + 1);
    // Biases over [-4, 4): both corners of hard-swish, ReLU6's clamp.
    let bias: Vec<f32> = values(g.cout(), seed + 2).iter().map(|v| v * 4.0).collect();
    let want = depthwise_reference(&x, &g, &f, &bias, act);
    // The same input as channels 3 .. 3 + c of a wider tensor.
    let wide_c = c + 5;
    let mut wide = Nhwc::zeros(n, h, w, wide_c);
    for p in 0..n * h * w {
        wide.data[p * wide_c + 3..][..c].copy_from_slice(&x.data[p * c..][..c]);
    }
    for isa in Isa::all_supported() {
        let what = format!("{isa:?} {n}x{h}x{w} {g:?} {act:?}");
        let conv = DepthwiseConv2d::with_isa(isa, g, &f, Some(&bias), act);
        assert_eq!(conv.output_hw(h, w), Some((want.h, want.w)), "{what}");
        poison(want.data.len());
        let got = conv.forward(x.view());
        assert_eq!(
            (got.n, got.h, got.w, got.c),
            (want.n, want.h, want.w, want.c)
        );
        assert_close(&got.data, &want.data, &what);
        let co = g.cout();
        let mut out = Nhwc::from_vec(
            n,
            want.h,
            want.w,
            co + 2,
            vec![9.0; want.data.len() / co * (co + 2)],
        )
        .unwrap();
        conv.forward_into(wide.channels(3, c), &mut out.slot(1, co));
        for p in 0..n * want.h * want.w {
            let px = &out.data[p * (co + 2)..][..co + 2];
            assert!(
                px[0] == 9.0 && px[co + 1] == 9.0,
                "{what}: other channels written"
            );
            assert_close(
                &px[1..=co],
                &want.data[p * co..][..co],
                &format!("{what} (slot)"),
            );
        }
    }
}

#[test]
fn mobilenet_3x3_same_strides_1_and_2() {
    // Channel counts around the 8 / 16 lane blocks, odd sides, SAME and VALID.
    for (i, &c) in [1, 3, 8, 15, 16, 17, 24, 32, 33, 40, 56, 112]
        .iter()
        .enumerate()
    {
        for s in [1, 2] {
            for p in [Padding::Same, Padding::Valid] {
                let g = DepthwiseGeometry::new(3, 3, c).stride(s).padding(p);
                check(1, 9, 11, g, Act::Relu6, (i * 10 + s) as u64);
            }
        }
    }
}

#[test]
fn efficientnet_5x5_and_other_kernels() {
    for (i, (kh, kw, c, s)) in [
        (5, 5, 20, 1),
        (5, 5, 40, 2),
        (5, 5, 7, 2),
        (7, 7, 17, 1),
        (1, 1, 19, 1),
        (3, 1, 10, 1),
        (1, 5, 9, 2),
        (2, 2, 16, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let g = DepthwiseGeometry::new(kh, kw, c)
            .stride(s)
            .padding(Padding::Same);
        check(1, 12, 13, g, Act::Swish, 100 + i as u64);
    }
}

#[test]
fn depth_multiplier_two_and_three() {
    for (i, (m, c, s, p)) in [
        (2, 1, 1, Padding::Same),
        (2, 3, 2, Padding::Same),
        (2, 9, 1, Padding::Valid),
        (2, 16, 2, Padding::Valid),
        (3, 5, 1, Padding::Zero([2, 0, 1, 1])),
    ]
    .into_iter()
    .enumerate()
    {
        let g = DepthwiseGeometry::new(3, 3, c)
            .multiplier(m)
            .stride(s)
            .padding(p);
        check(2, 7, 8, g, Act::Identity, 200 + i as u64);
    }
}

#[test]
fn dilation_and_explicit_padding() {
    for (i, g) in [
        DepthwiseGeometry::new(3, 3, 18)
            .dilation(2)
            .padding(Padding::Same),
        DepthwiseGeometry::new(3, 3, 18).dilation(2),
        DepthwiseGeometry::new(3, 3, 18)
            .dilation(2)
            .stride(2)
            .padding(Padding::Same),
        DepthwiseGeometry::new(5, 5, 12)
            .dilation(2)
            .padding(Padding::Same),
        DepthwiseGeometry {
            dilation: [2, 3],
            stride: [1, 2],
            ..DepthwiseGeometry::new(3, 3, 10).padding(Padding::Same)
        },
        DepthwiseGeometry::new(3, 3, 16).padding(Padding::Zero([1, 2, 0, 3])),
        DepthwiseGeometry::new(3, 3, 16).padding(Padding::Reflect(1)),
        DepthwiseGeometry::new(3, 3, 20)
            .multiplier(2)
            .dilation(2)
            .padding(Padding::Same),
    ]
    .into_iter()
    .enumerate()
    {
        check(1, 13, 11, g, Act::Relu, 300 + i as u64);
    }
}

#[test]
fn tiny_inputs_batches_and_every_activation() {
    for (i, act) in [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::HardSwish,
        Act::Swish,
        Act::Gelu,
        Act::GeluTanh,
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as u64;
        // 1x1 inputs under SAME 3x3 (every tap but the centre is padding), stride 2.
        check(
            3,
            1,
            1,
            DepthwiseGeometry::new(3, 3, 21).padding(Padding::Same),
            act,
            400 + i,
        );
        check(
            2,
            1,
            1,
            DepthwiseGeometry::new(3, 3, 5)
                .stride(2)
                .padding(Padding::Same),
            act,
            410 + i,
        );
        check(
            2,
            2,
            3,
            DepthwiseGeometry::new(5, 5, 32).padding(Padding::Same),
            act,
            420 + i,
        );
        check(
            3,
            6,
            5,
            DepthwiseGeometry::new(3, 3, 35)
                .stride(2)
                .padding(Padding::Same),
            act,
            430 + i,
        );
    }
}

#[test]
fn large_rows_run_in_parallel() {
    // Enough work for the parallel path, MobileNetV2-like.
    check(
        1,
        56,
        56,
        DepthwiseGeometry::new(3, 3, 48).padding(Padding::Same),
        Act::Relu6,
        500,
    );
    check(
        2,
        29,
        30,
        DepthwiseGeometry::new(3, 3, 40)
            .stride(2)
            .padding(Padding::Same),
        Act::Relu6,
        501,
    );
    check(
        1,
        14,
        14,
        DepthwiseGeometry::new(5, 5, 200).padding(Padding::Same),
        Act::Swish,
        502,
    );
}

#[test]
fn output_sizes_follow_tensorflow() {
    let g = DepthwiseGeometry::new(3, 3, 8);
    assert_eq!(
        g.padding(Padding::Same).stride(2).output_hw(112, 113),
        Some((56, 57))
    );
    assert_eq!(g.output_hw(7, 7), Some((5, 5)));
    assert_eq!(g.dilation(2).output_hw(7, 5), Some((3, 1)));
    assert_eq!(g.dilation(3).output_hw(7, 6), None);
    assert_eq!(
        g.dilation(3).padding(Padding::Same).output_hw(7, 6),
        Some((7, 6))
    );
    assert_eq!(g.multiplier(3).cout(), 24);
}

/// Direct grouped convolution in f64 (`[kh][kw][cin / groups][cout]` filter).
#[allow(clippy::too_many_arguments)]
fn grouped_reference(
    x: &Nhwc,
    g: &ConvGeometry,
    groups: usize,
    f: &[f32],
    bias: &[f32],
    cout: usize,
    act: Act,
) -> Nhwc {
    let (pt, pb) = pads(x.h, g.kh, g.stride[0], g.padding, 0);
    let (pl, pr) = pads(x.w, g.kw, g.stride[1], g.padding, 1);
    let ho = (x.h + pt + pb - g.kh) / g.stride[0] + 1;
    let wo = (x.w + pl + pr - g.kw) / g.stride[1] + 1;
    let (cin_g, cout_g) = (g.cin / groups, cout / groups);
    let mut out = Nhwc::zeros(x.n, ho, wo, cout);
    for b in 0..x.n {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..cout {
                    let gi = co / cout_g;
                    let mut acc = bias[co] as f64;
                    for dy in 0..g.kh {
                        for dx in 0..g.kw {
                            let iy = source(
                                (oy * g.stride[0] + dy) as isize - pt as isize,
                                x.h,
                                g.padding,
                            );
                            let ix = source(
                                (ox * g.stride[1] + dx) as isize - pl as isize,
                                x.w,
                                g.padding,
                            );
                            let (Some(iy), Some(ix)) = (iy, ix) else {
                                continue;
                            };
                            for ci in 0..cin_g {
                                let v = x.data[((b * x.h + iy) * x.w + ix) * x.c + gi * cin_g + ci];
                                let wt = f[((dy * g.kw + dx) * cin_g + ci) * cout + co];
                                acc += v as f64 * wt as f64;
                            }
                        }
                    }
                    out.data[((b * ho + oy) * wo + ox) * cout + co] = activate(acc, act) as f32;
                }
            }
        }
    }
    out
}

#[test]
fn grouped_convolutions() {
    for (i, (groups, cin, cout, k, s, p, act)) in [
        (2, 8, 6, 3, 1, Padding::Same, Act::Relu),
        (4, 32, 64, 3, 1, Padding::Same, Act::Identity),
        (3, 9, 12, 1, 1, Padding::Valid, Act::HardSwish),
        (4, 64, 32, 3, 2, Padding::Valid, Act::Relu6),
        (8, 8, 8, 3, 1, Padding::Same, Act::Swish),
        (1, 10, 7, 3, 2, Padding::Same, Act::Relu),
    ]
    .into_iter()
    .enumerate()
    {
        let (n, h, w) = (2, 11, 10);
        let g = ConvGeometry::new(k, k, cin).stride(s).padding(p);
        let x = Nhwc::from_vec(n, h, w, cin, values(n * h * w * cin, 600 + i as u64)).unwrap();
        let f = values(k * k * (cin / groups) * cout, 610 + i as u64);
        let bias = values(cout, 620 + i as u64);
        let want = grouped_reference(&x, &g, groups, &f, &bias, cout, act);
        for isa in Isa::all_supported() {
            let conv = GroupedConv2d::with_isa(isa, g, groups, &f, Some(&bias), cout, act);
            assert_eq!(conv.groups(), groups);
            assert_eq!(conv.output_hw(h, w), Some((want.h, want.w)));
            poison(want.data.len());
            let got = conv.forward(x.view());
            // Sums of up to 9 * 32 products: 2e-5 of the largest magnitude.
            let scale = want.data.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (j, (a, b)) in got.data.iter().zip(&want.data).enumerate() {
                assert!(
                    (a - b).abs() <= 2e-5 * scale,
                    "{isa:?} case {i}: element {j}: got {a}, want {b}"
                );
            }
        }
    }
}

/// Outputs of 1 MiB and more come from the caching allocator's reused (here NaN-poisoned)
/// buffers, not zeroed: every element must still be written.
#[test]
fn large_outputs_are_fully_written_into_reused_buffers() {
    let g = DepthwiseGeometry::new(3, 3, 40)
        .stride(2)
        .padding(Padding::Same);
    check(2, 130, 127, g, Act::Relu6, 950);
    check(
        1,
        100,
        90,
        DepthwiseGeometry::new(3, 3, 36).padding(Padding::Same),
        Act::HardSwish,
        951,
    );
}
