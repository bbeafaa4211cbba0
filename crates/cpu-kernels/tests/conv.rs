//! `Conv2d` against a direct f64 convolution written from the definition (TensorFlow's
//! conv2d semantics: HWIO weights, SAME / VALID / explicit / REFLECT padding), for every
//! kernel set the CPU runs, over geometries that hit every edge of the tiling.

use cpu_kernels::{Act, Conv2d, ConvGeometry, ConvWeights, Isa, Nhwc, Padding};

mod common;
use common::*;

/// The kernels write their outputs into buffers that are not zeroed first: with this
/// allocator, a freed buffer of the same size comes back as it was left, so a poisoned one
/// (`poison`) shows any element a kernel fails to write.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

/// Direct convolution: pads (zero or reflect) an upsampled copy of the input, then slides.
#[allow(clippy::too_many_arguments)]
fn reference(x: &Nhwc, g: &ConvGeometry, w: &[f32], bias: &[f32], cout: usize, act: Act) -> Nhwc {
    let u = g.upsample;
    let (h, wd) = (x.h * u, x.w * u);
    let up = |b: usize, y: usize, xx: usize, c: usize| {
        x.data[((b * x.h + y / u) * x.w + xx / u) * x.c + c]
    };
    let (pt, pb, pl, pr) = match g.padding {
        Padding::Valid => (0, 0, 0, 0),
        Padding::Same => {
            let oh = h.div_ceil(g.stride[0]);
            let ow = wd.div_ceil(g.stride[1]);
            let th = ((oh - 1) * g.stride[0] + g.kh).saturating_sub(h);
            let tw = ((ow - 1) * g.stride[1] + g.kw).saturating_sub(wd);
            (th / 2, th - th / 2, tw / 2, tw - tw / 2)
        }
        Padding::Zero([t, b, l, r]) => (t, b, l, r),
        Padding::Reflect(p) => (p, p, p, p),
    };
    let reflect = matches!(g.padding, Padding::Reflect(_));
    let (hp, wp) = (h + pt + pb, wd + pl + pr);
    let ho = (hp - g.kh) / g.stride[0] + 1;
    let wo = (wp - g.kw) / g.stride[1] + 1;
    let src = |i: isize, len: usize| -> Option<usize> {
        let l = len as isize;
        let i = if reflect {
            if i < 0 {
                -i
            } else if i >= l {
                2 * (l - 1) - i
            } else {
                i
            }
        } else {
            i
        };
        (0..l).contains(&i).then_some(i as usize)
    };
    let mut out = Nhwc::zeros(x.n, ho, wo, cout);
    for b in 0..x.n {
        for oy in 0..ho {
            for ox in 0..wo {
                for co in 0..cout {
                    let mut acc = bias[co] as f64;
                    for dy in 0..g.kh {
                        for dx in 0..g.kw {
                            let iy = src((oy * g.stride[0] + dy) as isize - pt as isize, h);
                            let ix = src((ox * g.stride[1] + dx) as isize - pl as isize, wd);
                            let (Some(iy), Some(ix)) = (iy, ix) else {
                                continue;
                            };
                            for ci in 0..g.cin {
                                let wi = ((dy * g.kw + dx) * g.cin + ci) * cout + co;
                                acc += up(b, iy, ix, ci) as f64 * w[wi] as f64;
                            }
                        }
                    }
                    let v = acc as f32;
                    out.data[((b * ho + oy) * wo + ox) * cout + co] = activate(v, act);
                }
            }
        }
    }
    out
}

/// The activations from their definitions, in f64.
fn activate(v: f32, act: Act) -> f32 {
    let x = v as f64;
    (match act {
        Act::Identity => x,
        Act::Relu => x.max(0.0),
        Act::Relu6 => x.clamp(0.0, 6.0),
        Act::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::Swish => x / (1.0 + (-x).exp()),
        Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Act::HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::Gelu => gelu(x),
        Act::GeluTanh => gelu_tanh(x),
    }) as f32
}

/// `0.5 x erfc(-x / sqrt 2)` in f64 from `-x / sqrt 2` rounded to f32, as TensorFlow's
/// exact GELU computes it (that rounding alone moves erfc by up to `2 a^2` ulps).
fn gelu(x: f64) -> f64 {
    let z = -(x as f32) * std::f32::consts::FRAC_1_SQRT_2;
    0.5 * x * libm::erfc(z as f64)
}

/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))` in f64.
fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// `max |got - want|` over `max(1, max |want|)`.
fn max_rel_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()))
        / scale
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 2e-5 * scale,
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    g: ConvGeometry,
    act: Act,
    seed: u64,
) {
    let x = Nhwc::from_vec(n, h, w, cin, values(n * h * w * cin, seed)).unwrap();
    let wts = values(g.k() * cout, seed + 1);
    let bias = values(cout, seed + 2);
    let want = reference(&x, &g, &wts, &bias, cout, act);
    for isa in Isa::all_supported() {
        let conv = Conv2d::with_isa(
            isa,
            g,
            &[ConvWeights {
                hwio: &wts,
                bias: Some(&bias),
                cout,
                act,
            }],
        );
        assert_eq!(
            conv.output_hw(h, w),
            Some((want.h, want.w)),
            "{isa:?} {g:?}"
        );
        poison(want.data.len());
        let got = conv.forward(x.view());
        assert_close(
            &got.data,
            &want.data,
            &format!("{isa:?} {n}x{h}x{w}x{cin}->{cout} {g:?}"),
        );
    }
}

#[test]
fn one_by_one_convs_of_every_tile_remainder() {
    for (m, cin, cout) in [
        (1, 1, 1),
        (5, 7, 3),
        (13, 16, 31),
        (25, 33, 32),
        (37, 48, 33),
        (50, 64, 80),
        (7, 20, 100),
    ] {
        check(
            1,
            1,
            m,
            cin,
            cout,
            ConvGeometry::new(1, 1, cin),
            Act::Identity,
            m as u64,
        );
    }
    check(3, 5, 7, 24, 40, ConvGeometry::new(1, 1, 24), Act::Relu, 9);
}

/// Long reductions over weights too large for L2 run in blocks, the partial sums kept in the
/// output between them (`Conv2d::run`): whole taps per block (3x3 stride 2, 192 -> 200,
/// 1,728 long, 1.5 MB packed), and a tap's channels cut in blocks (1x1 2048 -> 150); inputs
/// over 1 MB (smaller ones run another way), row counts that leave a partial group, bias
/// and activation after the last block only.
#[test]
fn long_reductions_over_large_weights_run_in_blocks() {
    check(
        2,
        27,
        27,
        192,
        200,
        ConvGeometry::new(3, 3, 192)
            .stride(2)
            .padding(Padding::Same),
        Act::Relu,
        41,
    );
    check(
        1,
        9,
        15,
        2048,
        150,
        ConvGeometry::new(1, 1, 2048),
        Act::Relu6,
        43,
    );
}

#[test]
fn same_and_valid_padding_with_strides() {
    for (h, w, k, s) in [
        (8, 8, 3, 1),
        (9, 7, 3, 2),
        (35, 35, 3, 2),
        (10, 11, 5, 1),
        (6, 9, 1, 2),
        (12, 12, 7, 1),
    ] {
        for p in [Padding::Valid, Padding::Same] {
            let g = ConvGeometry::new(k, k, 20).stride(s).padding(p);
            check(2, h, w, 20, 35, g, Act::Relu, (h * w * k) as u64);
        }
    }
}

#[test]
fn asymmetric_kernels_like_inception_factorised_convs() {
    for (kh, kw) in [(1, 7), (7, 1), (1, 3), (3, 1)] {
        let g = ConvGeometry::new(kh, kw, 18).padding(Padding::Same);
        check(1, 9, 8, 18, 19, g, Act::Relu6, (kh * 10 + kw) as u64);
    }
}

#[test]
fn few_input_channels_run_over_a_padded_copy() {
    // cin < 16 with kw > 1: one pointer per kernel row of a padded copy of the input.
    check(
        2,
        17,
        15,
        3,
        32,
        ConvGeometry::new(3, 3, 3).stride(2),
        Act::Relu,
        1,
    );
    check(
        1,
        12,
        13,
        3,
        8,
        ConvGeometry::new(9, 9, 3).padding(Padding::Reflect(4)),
        Act::Identity,
        2,
    );
    check(
        1,
        7,
        9,
        8,
        16,
        ConvGeometry::new(3, 3, 8).padding(Padding::Zero([1, 0, 2, 1])),
        Act::Relu,
        3,
    );
}

#[test]
fn reflection_padding_and_nearest_upsampling() {
    check(
        1,
        9,
        10,
        16,
        24,
        ConvGeometry::new(3, 3, 16).padding(Padding::Reflect(1)),
        Act::Identity,
        4,
    );
    check(
        2,
        9,
        8,
        32,
        16,
        ConvGeometry::new(3, 3, 32)
            .stride(2)
            .padding(Padding::Reflect(1)),
        Act::Relu,
        5,
    );
    check(
        1,
        5,
        6,
        17,
        20,
        ConvGeometry::new(3, 3, 17)
            .padding(Padding::Reflect(1))
            .upsample(2),
        Act::Relu,
        6,
    );
    check(
        1,
        4,
        4,
        16,
        3,
        ConvGeometry::new(9, 9, 16)
            .padding(Padding::Reflect(4))
            .upsample(2),
        Act::Identity,
        7,
    );
}

/// Channels `start..start + len` of `x` as a tensor of their own.
fn channel_copy(x: &Nhwc, start: usize, len: usize) -> Nhwc {
    let mut out = Nhwc::zeros(x.n, x.h, x.w, len);
    for p in 0..x.n * x.h * x.w {
        out.data[p * len..(p + 1) * len].copy_from_slice(&x.data[p * x.c + start..][..len]);
    }
    out
}

#[test]
fn segments_and_channel_slices() {
    // Two convs sharing one input, read from a channel slice of a wider tensor, written
    // to slices of two outputs.
    let (n, h, w) = (2, 6, 7);
    let x = Nhwc::from_vec(n, h, w, 40, values(n * h * w * 40, 11)).unwrap();
    let g = ConvGeometry::new(3, 3, 24).padding(Padding::Same);
    let w1 = values(g.k() * 20, 12);
    let b1 = values(20, 13);
    let w2 = values(g.k() * 33, 14);
    let b2 = values(33, 15);
    // Reference on the sliced input.
    let sliced = channel_copy(&x, 10, 24);
    let want1 = reference(&sliced, &g, &w1, &b1, 20, Act::Relu);
    let want2 = reference(&sliced, &g, &w2, &b2, 33, Act::Identity);
    for isa in Isa::all_supported() {
        let conv = Conv2d::with_isa(
            isa,
            g,
            &[
                ConvWeights {
                    hwio: &w1,
                    bias: Some(&b1),
                    cout: 20,
                    act: Act::Relu,
                },
                ConvWeights {
                    hwio: &w2,
                    bias: Some(&b2),
                    cout: 33,
                    act: Act::Identity,
                },
            ],
        );
        // Concatenated output.
        let cat = conv.forward(x.channels(10, 24));
        assert_eq!(cat.c, 53);
        let (mut got1, mut got2) = (Vec::new(), Vec::new());
        for p in 0..n * h * w {
            got1.extend_from_slice(&cat.data[p * 53..p * 53 + 20]);
            got2.extend_from_slice(&cat.data[p * 53 + 20..p * 53 + 53]);
        }
        assert_close(&got1, &want1.data, &format!("{isa:?} segment 1"));
        assert_close(&got2, &want2.data, &format!("{isa:?} segment 2"));
        // Into slots of other tensors, leaving their other channels alone.
        let mut o1 = Nhwc::from_vec(n, h, w, 25, vec![7.0; n * h * w * 25]).unwrap();
        let mut o2 = Nhwc::zeros(n, h, w, 33);
        conv.forward_into(x.channels(10, 24), &mut [o1.slot(5, 20), o2.slot_all()]);
        for p in 0..n * h * w {
            assert!(o1.data[p * 25..p * 25 + 5].iter().all(|&v| v == 7.0));
            assert_close(
                &o1.data[p * 25 + 5..p * 25 + 25],
                &want1.data[p * 20..p * 20 + 20],
                "slot 1",
            );
        }
        assert_close(&o2.data, &want2.data, "slot 2");
    }
}

#[test]
fn large_problems_split_across_threads() {
    // Enough rows for many chunks, and a wide output for panel splits at batch 1.
    check(
        1,
        40,
        40,
        32,
        64,
        ConvGeometry::new(3, 3, 32).padding(Padding::Same),
        Act::Relu,
        21,
    );
    check(1, 3, 3, 64, 300, ConvGeometry::new(1, 1, 64), Act::Relu, 22);
}

#[test]
fn output_sizes_follow_tensorflow() {
    let g = |k, s, p| ConvGeometry::new(k, k, 1).stride(s).padding(p);
    assert_eq!(
        g(3, 2, Padding::Valid).output_hw(299, 299),
        Some((149, 149))
    );
    assert_eq!(g(3, 2, Padding::Same).output_hw(299, 300), Some((150, 150)));
    assert_eq!(g(3, 1, Padding::Valid).output_hw(2, 5), None);
    assert_eq!(
        g(9, 1, Padding::Reflect(4)).output_hw(384, 100),
        Some((384, 100))
    );
    assert_eq!(
        g(3, 1, Padding::Reflect(1)).upsample(2).output_hw(96, 50),
        Some((192, 100))
    );
    // Reflection needs a pad smaller than the side.
    assert_eq!(g(9, 1, Padding::Reflect(4)).output_hw(4, 10), None);
}

#[test]
fn few_output_channels_take_the_dot_path() {
    // cout <= 4 with a long reduction: dot kernels, incl. channel tails and im2col input.
    for (cout, cin) in [(1, 32), (2, 20), (3, 32), (4, 17)] {
        let g = ConvGeometry::new(9, 9, cin).padding(Padding::Reflect(4));
        check(
            1,
            11,
            14,
            cin,
            cout,
            g,
            Act::Identity,
            (cout * 100 + cin) as u64,
        );
    }
    check(
        2,
        13,
        9,
        3,
        3,
        ConvGeometry::new(9, 9, 3).padding(Padding::Same),
        Act::Relu,
        31,
    );
    check(
        1,
        30,
        31,
        64,
        2,
        ConvGeometry::new(3, 3, 64).stride(2),
        Act::Relu6,
        32,
    );
}

#[test]
fn winograd_for_3x3_stride_1_matches_the_direct_sum() {
    // Odd output sides (partial 2x2 tiles), zero / SAME / reflection padding, nearest
    // upsampling, batches, every activation; each against the f64 reference, and the
    // direct kernels of the same convolution against it too.
    let cases = [
        (
            1,
            17,
            15,
            16,
            24,
            ConvGeometry::new(3, 3, 16).padding(Padding::Same),
            Act::Relu,
        ),
        (
            2,
            15,
            14,
            32,
            40,
            ConvGeometry::new(3, 3, 32),
            Act::Identity,
        ),
        (
            1,
            18,
            19,
            20,
            33,
            ConvGeometry::new(3, 3, 20).padding(Padding::Reflect(1)),
            Act::Relu6,
        ),
        (
            1,
            9,
            8,
            24,
            16,
            ConvGeometry::new(3, 3, 24)
                .padding(Padding::Reflect(1))
                .upsample(2),
            Act::Relu,
        ),
        (
            1,
            20,
            16,
            17,
            50,
            ConvGeometry::new(3, 3, 17).padding(Padding::Zero([1, 0, 0, 1])),
            Act::Identity,
        ),
    ];
    for (i, (n, h, w, cin, cout, g, act)) in cases.into_iter().enumerate() {
        let x = Nhwc::from_vec(n, h, w, cin, values(n * h * w * cin, 40 + i as u64)).unwrap();
        let wts = values(g.k() * cout, 50 + i as u64);
        let bias = values(cout, 60 + i as u64);
        let want = reference(&x, &g, &wts, &bias, cout, act);
        for isa in Isa::all_supported() {
            let seg = [ConvWeights {
                hwio: &wts,
                bias: Some(&bias),
                cout,
                act,
            }];
            for tile in [2, 4] {
                let conv = Conv2d::with_winograd_tile(isa, g, &seg, tile);
                assert!(
                    conv.uses_winograd(n, want.h, want.w),
                    "case {i}: not Winograd"
                );
                poison(want.data.len());
                let got = conv.forward(x.view());
                let err = max_rel_error(&got.data, &want.data);
                println!("{isa:?} F({tile}x{tile}, 3x3) case {i}: {err:.2e} of max|output|");
                assert_close(
                    &got.data,
                    &want.data,
                    &format!("{isa:?} Winograd F({tile}x{tile}) case {i} {g:?}"),
                );
            }
            let direct = Conv2d::with_isa(isa, g, &seg).without_winograd();
            assert!(!direct.uses_winograd(n, want.h, want.w));
            assert_close(
                &direct.forward(x.view()).data,
                &want.data,
                &format!("{isa:?} direct case {i}"),
            );
        }
    }
    // Too few tiles: the direct kernels.
    let g = ConvGeometry::new(3, 3, 16).padding(Padding::Same);
    let w = values(g.k() * 16, 1);
    let conv = Conv2d::new(
        g,
        &[ConvWeights {
            hwio: &w,
            bias: None,
            cout: 16,
            act: Act::Identity,
        }],
    );
    assert!(!conv.uses_winograd(1, 8, 8));
    assert!(conv.uses_winograd(1, 16, 16));
}

#[test]
fn line_winograd_for_1xr_and_rx1_matches_the_direct_sum() {
    // 1x7 / 7x1 (two three-tap pieces and a last tap: six planes), 1x3 / 3x1 (one piece),
    // 4 and 6 taps, 1x5 (two extra taps); 2-D kernels along the width (3x3 and 5x5 SAME,
    // 4x6), padding across the axis; output lengths off the 3-output tile, zero padding
    // along the axis (symmetric, one-sided, none), biases and activations, batches; against
    // the f64 reference on every instruction set.
    let cases = [
        (
            2,
            12,
            13,
            20,
            24,
            ConvGeometry::new(3, 3, 20).padding(Padding::Same),
            Act::Relu,
        ),
        (
            1,
            16,
            17,
            16,
            40,
            ConvGeometry::new(5, 5, 16).padding(Padding::Same),
            Act::Identity,
        ),
        (
            1,
            16,
            20,
            17,
            18,
            ConvGeometry::new(4, 6, 17).padding(Padding::Zero([2, 1, 0, 3])),
            Act::Relu6,
        ),
        (
            2,
            11,
            16,
            16,
            20,
            ConvGeometry::new(1, 5, 16).padding(Padding::Zero([1, 0, 2, 2])),
            Act::Identity,
        ),
        (
            1,
            16,
            13,
            24,
            30,
            ConvGeometry::new(7, 1, 24).padding(Padding::Zero([3, 3, 2, 1])),
            Act::Relu,
        ),
        (
            2,
            17,
            17,
            24,
            40,
            ConvGeometry::new(1, 7, 24).padding(Padding::Zero([0, 0, 3, 3])),
            Act::Relu,
        ),
        (
            2,
            17,
            16,
            24,
            40,
            ConvGeometry::new(7, 1, 24).padding(Padding::Zero([3, 3, 0, 0])),
            Act::Identity,
        ),
        (
            1,
            14,
            19,
            16,
            33,
            ConvGeometry::new(1, 3, 16).padding(Padding::Zero([0, 0, 1, 1])),
            Act::Relu6,
        ),
        (
            1,
            20,
            13,
            32,
            70,
            ConvGeometry::new(3, 1, 32).padding(Padding::Same),
            Act::Identity,
        ),
        (
            3,
            14,
            13,
            16,
            20,
            ConvGeometry::new(1, 4, 16),
            Act::Identity,
        ),
        (
            1,
            23,
            12,
            20,
            24,
            ConvGeometry::new(6, 1, 20).padding(Padding::Zero([4, 0, 0, 0])),
            Act::Relu,
        ),
        (
            1,
            16,
            16,
            17,
            17,
            ConvGeometry::new(1, 7, 17).padding(Padding::Zero([0, 0, 1, 5])),
            Act::Identity,
        ),
    ];
    for (i, (n, h, w, cin, cout, g, act)) in cases.into_iter().enumerate() {
        let x = Nhwc::from_vec(n, h, w, cin, values(n * h * w * cin, 70 + i as u64)).unwrap();
        let wts = values(g.k() * cout, 80 + i as u64);
        let bias = values(cout, 90 + i as u64);
        let want = reference(&x, &g, &wts, &bias, cout, act);
        for isa in Isa::all_supported() {
            let seg = [ConvWeights {
                hwio: &wts,
                bias: Some(&bias),
                cout,
                act,
            }];
            let conv = Conv2d::with_line_winograd(isa, g, &seg);
            assert!(
                conv.uses_winograd(n, want.h, want.w),
                "case {i}: not Winograd"
            );
            poison(want.data.len());
            let got = conv.forward(x.view());
            let err = max_rel_error(&got.data, &want.data);
            println!("{isa:?} line F(3, 3) case {i}: {err:.2e} of max|output|");
            assert_close(
                &got.data,
                &want.data,
                &format!("{isa:?} line Winograd case {i} {g:?}"),
            );
        }
    }
    // Read from a channel slice of a wider tensor and written into a slot of another (as
    // inference's Inception-v3 reads a block output and writes its branch of the next), the
    // slot's other channels left alone.
    let (n, h, w) = (2, 17, 17);
    let x = Nhwc::from_vec(n, h, w, 40, values(n * h * w * 40, 77)).unwrap();
    let g = ConvGeometry::new(7, 1, 24).padding(Padding::Zero([3, 3, 0, 0]));
    let wts = values(g.k() * 20, 78);
    let bias = values(20, 79);
    let sliced = channel_copy(&x, 10, 24);
    let want = reference(&sliced, &g, &wts, &bias, 20, Act::Relu);
    for isa in Isa::all_supported() {
        let seg = [ConvWeights {
            hwio: &wts,
            bias: Some(&bias),
            cout: 20,
            act: Act::Relu,
        }];
        let conv = Conv2d::with_isa(isa, g, &seg);
        assert!(conv.uses_winograd(n, h, w));
        let mut o = Nhwc::from_vec(n, h, w, 25, vec![7.0; n * h * w * 25]).unwrap();
        conv.forward_into(x.channels(10, 24), &mut [o.slot(5, 20)]);
        for p in 0..n * h * w {
            assert!(o.data[p * 25..p * 25 + 5].iter().all(|&v| v == 7.0));
            assert_close(
                &o.data[p * 25 + 5..p * 25 + 25],
                &want.data[p * 20..p * 20 + 20],
                &format!("{isa:?} line Winograd into a slot"),
            );
        }
    }
    // Not this form: strides, fewer than 3 taps along the width, too few outputs.
    fn seg(w: &[f32], cout: usize) -> [ConvWeights<'_>; 1] {
        [ConvWeights {
            hwio: w,
            bias: None,
            cout,
            act: Act::Identity,
        }]
    }
    let w = values(7 * 16 * 16, 1);
    let line =
        |g: ConvGeometry| Conv2d::with_line_winograd(Isa::detect(), g, &seg(&w[..g.k() * 16], 16));
    assert!(!line(ConvGeometry::new(1, 7, 16).stride(2)).uses_winograd(1, 17, 17));
    assert!(!line(ConvGeometry::new(3, 2, 16)).uses_winograd(1, 17, 17));
    assert!(!line(ConvGeometry::new(7, 1, 16)).uses_winograd(1, 6, 6));
    assert!(line(ConvGeometry::new(7, 1, 16)).uses_winograd(1, 17, 17));
    // Inference's constructor takes it too; the one for weights used once does not.
    assert!(Conv2d::new(ConvGeometry::new(7, 1, 16), &seg(&w, 16)).uses_winograd(1, 17, 17));
    assert!(
        !Conv2d::new_direct(ConvGeometry::new(7, 1, 16), &seg(&w, 16)).uses_winograd(1, 17, 17)
    );
}

#[test]
fn small_inputs_with_large_weights_split_the_panels() {
    // Inputs under 1 MiB with over 32 KiB of weights run in few row chunks, each thread
    // over a share of the panels (ResNet's 3x3 convolutions at batch 1): row counts off the
    // tile, panel counts off the split, one and two images.
    let same = Padding::Same;
    check(
        1,
        7,
        7,
        96,
        80,
        ConvGeometry::new(3, 3, 96).padding(same),
        Act::Relu,
        90,
    );
    check(
        2,
        5,
        9,
        64,
        200,
        ConvGeometry::new(3, 3, 64).padding(same),
        Act::Identity,
        91,
    );
    check(
        1,
        3,
        3,
        512,
        40,
        ConvGeometry::new(1, 1, 512),
        Act::Relu6,
        92,
    );
}

#[test]
fn gelu_activations_match_their_definitions_to_a_few_ulps() {
    // A 1x1 convolution by the identity (exact), so the store's activation is all that
    // differs from the f64 definitions; inputs from -12 to 12 cover both tails, zero and
    // the values around it.
    let c = 16;
    let xs: Vec<f32> = (0..c * 150)
        .map(|i| (i as f32 - 1200.0) / 100.0 + (i % 7) as f32 * 1e-3)
        .collect();
    let x = Nhwc::from_vec(1, 1, xs.len() / c, c, xs.clone()).unwrap();
    let eye: Vec<f32> = (0..c * c).map(|i| (i / c == i % c) as u8 as f32).collect();
    for act in [Act::Gelu, Act::GeluTanh] {
        for isa in Isa::all_supported() {
            let seg = [ConvWeights {
                hwio: &eye,
                bias: None,
                cout: c,
                act,
            }];
            let y = Conv2d::with_isa(isa, ConvGeometry::new(1, 1, c), &seg).forward(x.view());
            for (&v, &got) in xs.iter().zip(&y.data) {
                let want = activate(v, act) as f64;
                let err = (got as f64 - want).abs();
                // Relative 1e-6 where the value is not in the far negative tail, where it
                // is below 4e-3 in size: there 1e-8 absolute.
                let tol = if v > -3.0 {
                    1e-6 * want.abs().max(1e-3)
                } else {
                    1e-8
                };
                assert!(
                    err <= tol,
                    "{isa:?} {act:?} at {v}: got {got}, want {want} (error {err:e})"
                );
            }
        }
    }
}

#[test]
fn swish_sigmoid_and_their_hard_versions_in_every_store_path() {
    // GEMM tiles (1x1 and 3x3 stride 2), the dot path (cout <= 4) and Winograd, with the
    // bias pushing values across hard-swish's corners at -3 and 3 and far into swish's
    // tails.
    for act in [
        Act::HardSwish,
        Act::Swish,
        Act::Sigmoid,
        Act::HardSigmoid,
        Act::Gelu,
        Act::GeluTanh,
    ] {
        check(2, 5, 7, 24, 37, ConvGeometry::new(1, 1, 24), act, 70);
        check(
            1,
            9,
            11,
            20,
            35,
            ConvGeometry::new(3, 3, 20).stride(2),
            act,
            71,
        );
        check(
            1,
            11,
            14,
            32,
            3,
            ConvGeometry::new(9, 9, 32).padding(Padding::Same),
            act,
            72,
        );
        let g = ConvGeometry::new(3, 3, 16).padding(Padding::Same);
        let (n, h, w, cout) = (1, 17, 15, 24);
        let x = Nhwc::from_vec(n, h, w, 16, values(n * h * w * 16, 73)).unwrap();
        let wts: Vec<f32> = values(g.k() * cout, 74).iter().map(|v| v * 3.0).collect();
        let bias: Vec<f32> = values(cout, 75).iter().map(|v| v * 40.0).collect();
        let want = reference(&x, &g, &wts, &bias, cout, act);
        for isa in Isa::all_supported() {
            let seg = [ConvWeights {
                hwio: &wts,
                bias: Some(&bias),
                cout,
                act,
            }];
            let conv = Conv2d::with_isa(isa, g, &seg);
            assert!(conv.uses_winograd(n, h, w));
            let what = format!("{isa:?} {act:?} Winograd");
            assert_close(&conv.forward(x.view()).data, &want.data, &what);
            let direct = conv.without_winograd().forward(x.view());
            assert_close(&direct.data, &want.data, &format!("{isa:?} {act:?} direct"));
        }
    }
}

/// Outputs of 1 MiB and more come from the caching allocator's reused (here NaN-poisoned)
/// buffers, not zeroed: every element must still be written (a partial last panel of 24 of
/// 32 columns, Winograd-sized 3x3).
#[test]
fn large_outputs_are_fully_written_into_reused_buffers() {
    check(
        2,
        128,
        128,
        16,
        24,
        ConvGeometry::new(1, 1, 16),
        Act::Relu6,
        900,
    );
    check(
        1,
        64,
        64,
        8,
        72,
        ConvGeometry::new(3, 3, 8).padding(Padding::Same),
        Act::Identity,
        901,
    );
    // Over 16 MiB of output: full 32-channel tiles are stored non-temporally, the last
    // 16 channels of each pixel by masked stores.
    check(
        2,
        170,
        170,
        8,
        80,
        ConvGeometry::new(1, 1, 8),
        Act::Relu,
        902,
    );
}

#[test]
fn a_residual_is_added_before_the_activation() {
    // ResNet's `relu(conv1x1(x) + bias + shortcut)`, over tile remainders of rows and
    // columns, with the shortcut a channel slice of a wider tensor.
    for (n, h, w, cin, cout) in [(2, 7, 9, 16, 40), (1, 13, 5, 64, 256), (3, 3, 3, 8, 33)] {
        let g = ConvGeometry::new(1, 1, cin);
        let x = Nhwc::from_vec(n, h, w, cin, values(n * h * w * cin, 60)).unwrap();
        let wts = values(cin * cout, 61);
        let bias = values(cout, 62);
        let wide = Nhwc::from_vec(n, h, w, cout + 3, values(n * h * w * (cout + 3), 63)).unwrap();
        let shortcut = wide.channels(2, cout);
        let plain = reference(&x, &g, &wts, &bias, cout, Act::Identity);
        let want: Vec<f32> = plain
            .data
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (p, c) = (i / cout, i % cout);
                let r = wide.data[p * (cout + 3) + 2 + c];
                (v + r).max(0.0)
            })
            .collect();
        for isa in Isa::all_supported() {
            let conv = Conv2d::with_isa(
                isa,
                g,
                &[ConvWeights {
                    hwio: &wts,
                    bias: Some(&bias),
                    cout,
                    act: Act::Identity,
                }],
            );
            poison(want.len());
            let got = conv
                .forward_residual(x.view(), shortcut, Act::Relu)
                .expect("a 1x1 convolution takes a residual");
            assert_close(
                &got.data,
                &want,
                &format!("{isa:?} {n}x{h}x{w}x{cin}->{cout} + residual"),
            );
            // A residual of another shape is refused.
            let small = wide.channels(0, cout - 1);
            assert!(conv.forward_residual(x.view(), small, Act::Relu).is_none());
        }
    }
}

/// `TrainConv` (training convolutions) against the definitions in f64: the forward sum, its
/// input gradient and its filter gradient, written as the same loop over every (output
/// pixel, tap, input channel, output channel).
mod training {
    use super::common::values;
    use cpu_kernels::TrainConv;

    /// `(y, dx, dw)` for input `x`, filter `w` and output gradient `dy`.
    fn reference(
        t: &TrainConv,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (oh, ow) = t.output_hw().unwrap();
        let (ci, co) = (t.cin, t.cout);
        let (_, wl, yl) = t.sizes();
        let mut y = vec![0f64; yl];
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; wl];
        for b in 0..t.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for a in 0..t.kh {
                        let iy = (oy * t.stride[0] + a) as isize - t.pads[0] as isize;
                        for e in 0..t.kw {
                            let ix = (ox * t.stride[1] + e) as isize - t.pads[2] as isize;
                            if iy < 0 || ix < 0 || iy >= t.h as isize || ix >= t.w as isize {
                                continue;
                            }
                            let xi = ((b * t.h + iy as usize) * t.w + ix as usize) * ci;
                            let yi = ((b * oh + oy) * ow + ox) * co;
                            for i in 0..ci {
                                let outs: Vec<usize> = if t.depthwise {
                                    vec![i]
                                } else {
                                    (0..co).collect()
                                };
                                for o in outs {
                                    let wi = if t.depthwise {
                                        (a * t.kw + e) * ci + i
                                    } else {
                                        ((a * t.kw + e) * ci + i) * co + o
                                    };
                                    y[yi + o] += x[xi + i] as f64 * w[wi] as f64;
                                    dx[xi + i] += dy[yi + o] as f64 * w[wi] as f64;
                                    dw[wi] += dy[yi + o] as f64 * x[xi + i] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                ((*g as f64) - w).abs() <= 2e-5 * scale,
                "{what}[{i}]: {g} vs {w} (scale {scale})"
            );
        }
    }

    fn check(t: TrainConv) {
        let (xl, wl, yl) = t.sizes();
        let x = values(xl, 1);
        let w = values(wl, 2);
        let dy = values(yl, 3);
        let (y, dx, dw) = reference(&t, &x, &w, &dy);
        close(&t.forward(&x, &w), &y, &format!("{t:?} forward"));
        let dx_got = t.grad_input(&dy, &w);
        close(&dx_got, &dx, &format!("{t:?} input gradient"));
        // Onto another gradient of the same input (in the tiles' epilogue where the input
        // gradient runs directly, else a pass of its own): the same bits as adding after.
        let prior = values(xl, 4);
        let onto = t.grad_input_onto(&dy, &w, &prior);
        assert_eq!(onto.len(), xl, "{t:?} input gradient onto a prior");
        for (i, ((&o, &d), &p)) in onto.iter().zip(&dx_got).zip(&prior).enumerate() {
            assert_eq!(o.to_bits(), (d + p).to_bits(), "{t:?} onto a prior [{i}]");
        }
        close(
            &t.grad_filter(&x, &dy),
            &dw,
            &format!("{t:?} filter gradient"),
        );
    }

    fn conv(
        n: usize,
        hw: [usize; 2],
        io: [usize; 2],
        k: [usize; 2],
        s: usize,
        pads: [usize; 4],
    ) -> TrainConv {
        TrainConv {
            n,
            h: hw[0],
            w: hw[1],
            cin: io[0],
            cout: io[1],
            kh: k[0],
            kw: k[1],
            stride: [s, s],
            pads,
            depthwise: false,
        }
    }

    #[test]
    fn regular_convolutions_match_the_definition() {
        // 1x1 direct (the input is the filter gradient's operand), padded / strided 1x1,
        // 3x3 SAME stride 1 (flipped-filter input gradient) and 2 (scattered columns), odd
        // sizes, asymmetric padding, few outputs (the dot kernels) and many (several
        // panels), more output pixels than one filter-gradient chunk.
        check(conv(2, [5, 7], [16, 40], [1, 1], 1, [0; 4]));
        check(conv(3, [30, 31], [3, 8], [1, 1], 1, [0; 4]));
        check(conv(1, [6, 6], [5, 3], [1, 1], 2, [0; 4]));
        check(conv(2, [7, 9], [6, 33], [3, 3], 1, [1, 1, 1, 1]));
        check(conv(2, [9, 8], [4, 7], [3, 3], 2, [0, 1, 1, 0]));
        check(conv(1, [11, 10], [3, 12], [3, 5], 2, [1, 2, 2, 1]));
        check(conv(2, [8, 8], [40, 2], [3, 1], 1, [2, 0, 0, 0]));
        check(conv(1, [5, 5], [2, 3], [5, 5], 1, [0; 4]));
        check(conv(3, [48, 40], [2, 5], [3, 3], 1, [1, 1, 1, 1]));
        // Filter rows fewer than outputs (the filter gradient transposes its gathered input
        // columns, not the output gradient), over several chunks.
        check(conv(3, [24, 22], [4, 48], [3, 1], 1, [1, 1, 0, 0]));
        // Filters large enough to be packed and transposed in parallel (3 panels, the last
        // partial).
        check(conv(1, [6, 6], [96, 80], [3, 3], 1, [1, 1, 1, 1]));
        check(conv(1, [7, 7], [96, 80], [3, 3], 2, [0; 4]));
        // 3x3 stride 1 with at least 16 inputs and 64 2x2 output tiles: the forward pass and
        // the flipped-filter input gradient by the line Winograd along the width with at most
        // 96 channels each way, by Winograd F(2x2, 3x3) with more (SAME and VALID, odd sizes:
        // partial tiles).
        check(conv(2, [16, 17], [24, 40], [3, 3], 1, [1, 1, 1, 1]));
        check(conv(1, [19, 21], [16, 20], [3, 3], 1, [0; 4]));
        check(conv(1, [16, 17], [24, 120], [3, 3], 1, [1, 1, 1, 1]));
        // The filter gradient by Winograd too: over more tiles than one chunk (128), with
        // asymmetric padding (a 2-wide left border).
        check(conv(3, [20, 23], [16, 24], [3, 3], 1, [1, 0, 2, 1]));
        // 1x7 / 7x1 / 1x3 stride 1: the forward pass, the flipped-filter input gradient and
        // the filter gradient by the line Winograd F(3, 3) (partial tiles; the input
        // gradient's padding mirrored; the 1x7 and 7x1 filter gradients over 2 chunks of
        // tiles, with the 7th tap's direct sums).
        check(conv(2, [17, 17], [24, 40], [1, 7], 1, [0, 0, 3, 3]));
        check(conv(2, [16, 17], [40, 24], [7, 1], 1, [3, 3, 0, 0]));
        check(conv(2, [8, 20], [32, 16], [1, 3], 1, [0, 0, 2, 0]));
        // 5x5 SAME: the forward pass and the input gradient by the line form along the width,
        // one line per kernel row (two extra taps past the piece).
        check(conv(2, [12, 12], [16, 24], [5, 5], 1, [2, 2, 2, 2]));
    }

    #[test]
    fn depthwise_convolutions_match_the_definition() {
        for (n, hw, c, k, s, pads) in [
            (2, [7, 9], 5, 3, 1, [1, 1, 1, 1]),
            (3, [9, 8], 17, 3, 2, [0, 1, 0, 1]),
            (1, [12, 11], 33, 5, 2, [1, 2, 2, 1]),
            (2, [6, 6], 8, 1, 1, [0; 4]),
        ] {
            let mut t = conv(n, hw, [c, c], [k, k], s, pads);
            t.depthwise = true;
            check(t);
        }
    }

    #[test]
    fn sizes_the_filter_does_not_fit_have_no_output() {
        let t = conv(1, [2, 2], [1, 1], [3, 3], 1, [0; 4]);
        assert_eq!(t.output_hw(), None);
        let t = conv(1, [2, 2], [1, 1], [3, 3], 1, [1, 0, 1, 0]);
        assert_eq!(t.output_hw(), Some((1, 1)));
        // Padding from a hostile graph: the padded size overflows.
        let t = conv(
            1,
            [2, 2],
            [1, 1],
            [3, 3],
            1,
            [usize::MAX / 2 + 1, usize::MAX / 2, 0, 0],
        );
        assert_eq!(t.output_hw(), None);
    }
}

/// `TrainPool` against the definitions in f64 (TF's: padded cells not counted, the max
/// pool's gradient to the first maximum of its window).
mod training_pools {
    use super::common::values;
    use cpu_kernels::TrainPool;

    /// `(y, dx)` for input `x` and output gradient `dy`.
    fn reference(t: &TrainPool, x: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (oh, ow) = t.output_hw().unwrap();
        let c = t.c;
        let mut y = vec![0f64; t.n * oh * ow * c];
        let mut dx = vec![0f64; x.len()];
        for b in 0..t.n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut cells = Vec::new();
                        for a in 0..t.kh {
                            for e in 0..t.kw {
                                let iy = (oy * t.stride[0] + a) as isize - t.pads[0] as isize;
                                let ix = (ox * t.stride[1] + e) as isize - t.pads[2] as isize;
                                if iy >= 0 && ix >= 0 && iy < t.h as isize && ix < t.w as isize {
                                    cells.push(
                                        ((b * t.h + iy as usize) * t.w + ix as usize) * c + ch,
                                    );
                                }
                            }
                        }
                        let yi = ((b * oh + oy) * ow + ox) * c + ch;
                        if t.max {
                            let mut best = cells[0];
                            for &i in &cells {
                                if x[i] > x[best] {
                                    best = i;
                                }
                            }
                            y[yi] = x[best] as f64;
                            dx[best] += dy[yi] as f64;
                        } else {
                            let n = cells.len() as f64;
                            y[yi] = cells.iter().map(|&i| x[i] as f64).sum::<f64>() / n;
                            for &i in &cells {
                                dx[i] += dy[yi] as f64 / n;
                            }
                        }
                    }
                }
            }
        }
        (y, dx)
    }

    fn check(t: TrainPool, ties: bool) {
        let (oh, ow) = t.output_hw().unwrap();
        let mut x = values(t.n * t.h * t.w * t.c, 41);
        if ties {
            // Few distinct values: windows with several equal maxima.
            x.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
        }
        let dy = values(t.n * oh * ow * t.c, 42);
        let (y, dx) = reference(&t, &x, &dy);
        for (what, got, want) in [
            ("output", t.forward(&x), y),
            ("input gradient", t.grad_input(&x, &dy), dx),
        ] {
            assert_eq!(got.len(), want.len(), "{what} size, {t:?}");
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()),
                    "{what}[{i}]: {g} vs {w}, {t:?}"
                );
            }
        }
    }

    fn pool(h: usize, w: usize, k: [usize; 2], s: usize, pads: [usize; 4], max: bool) -> TrainPool {
        TrainPool {
            n: 2,
            h,
            w,
            c: 5,
            kh: k[0],
            kw: k[1],
            stride: [s, s],
            pads,
            max,
        }
    }

    #[test]
    fn pools_and_their_gradients_match_the_definition() {
        for max in [false, true] {
            // Inception's block pool (3x3, stride 1, SAME) and reduction pool (3x3,
            // stride 2, VALID); an asymmetric SAME (2x2 stride 2 on an odd side); a
            // rectangular window; a window larger than the stride.
            check(pool(7, 6, [3, 3], 1, [1, 1, 1, 1], max), false);
            check(pool(9, 8, [3, 3], 2, [0; 4], max), false);
            check(pool(5, 7, [2, 2], 2, [0, 1, 0, 1], max), false);
            check(pool(6, 5, [1, 3], 1, [0, 0, 1, 1], max), false);
            check(pool(8, 8, [3, 3], 2, [1, 1, 1, 1], max), true);
        }
    }

    #[test]
    fn geometries_without_real_cells_have_no_output() {
        let ok = pool(4, 4, [3, 3], 1, [1, 1, 1, 1], true);
        assert_eq!(ok.output_hw(), Some((4, 4)));
        for bad in [
            // Padding as wide as the window: windows of padding only.
            TrainPool {
                pads: [3, 0, 0, 0],
                ..ok
            },
            TrainPool { h: 0, ..ok },
            TrainPool { kw: 0, ..ok },
            TrainPool {
                stride: [1, 0],
                ..ok
            },
            TrainPool {
                h: 1,
                pads: [0; 4],
                ..ok
            },
            TrainPool {
                n: usize::MAX / 2,
                ..ok
            },
        ] {
            assert_eq!(bad.output_hw(), None, "{bad:?}");
        }
    }
}
