//! `Bottleneck` (expansion, depthwise, projection strip by strip) against the same three
//! kernels run one after the other over the whole batch, which `tests/conv.rs` and
//! `tests/depthwise.rs` check against direct f64 implementations of TensorFlow's
//! definitions: the block must give the same floats bit for bit, for every kernel set
//! the CPU runs, whatever the strips' cut.

use cpu_kernels::{
    Act, Bottleneck, Conv2d, ConvGeometry, ConvWeights, DepthwiseConv2d, DepthwiseGeometry, Isa,
    Nhwc, Padding,
};

mod common;
use common::*;

/// A freed buffer of the same size comes back as it was left: the poisoned ones show any
/// element the block fails to write.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn pointwise(isa: Isa, cin: usize, cout: usize, act: Act, seed: u64) -> Conv2d {
    let w = values(cin * cout, seed);
    let b = values(cout, seed + 1);
    Conv2d::with_isa(
        isa,
        ConvGeometry::new(1, 1, cin),
        &[ConvWeights {
            hwio: &w,
            bias: Some(&b),
            cout,
            act,
        }],
    )
}

struct Case {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    expanded: usize,
    cout: usize,
    k: usize,
    stride: [usize; 2],
    padding: Padding,
    expand: bool,
    project: bool,
    /// Input channels are a slice of a wider tensor (a view with stride > channels).
    sliced: bool,
}

fn check(isa: Isa, c: &Case) {
    let ce = if c.expand { c.expanded } else { c.cin };
    let expand = c.expand.then(|| pointwise(isa, c.cin, ce, Act::Relu6, 1));
    let geo = DepthwiseGeometry {
        stride: c.stride,
        padding: c.padding,
        ..DepthwiseGeometry::new(c.k, c.k, ce)
    };
    let dw = DepthwiseConv2d::with_isa(
        isa,
        geo,
        &values(c.k * c.k * ce, 3),
        Some(&values(ce, 4)),
        Act::Relu6,
    );
    let project = c
        .project
        .then(|| pointwise(isa, ce, c.cout, Act::Identity, 5));
    let extra = if c.sliced { 5 } else { 0 };
    let wide = Nhwc::from_vec(
        c.n,
        c.h,
        c.w,
        c.cin + extra,
        values(c.n * c.h * c.w * (c.cin + extra), 7),
    )
    .unwrap();
    let x = wide.channels(extra.min(3), c.cin);

    let e = expand.as_ref().map(|e| e.forward(x));
    let d = dw.forward(e.as_ref().map_or(x, |e| e.view()));
    let want = match &project {
        Some(p) => p.forward(d.view()),
        None => d,
    };

    let block = Bottleneck::new(expand, dw, project).unwrap();
    assert_eq!(block.output_hw(c.h, c.w), Some((want.h, want.w)));
    assert_eq!(block.cout(), want.c);
    // As cut by default (small images: layer by layer), one output row per strip, and
    // strips of a few rows.
    for (cut, block) in [
        ("default", block.clone()),
        ("rows", block.clone().in_strips_of(0)),
        ("strips", block.in_strips_of(c.w * 4 * 96 * 5)),
    ] {
        drop(std::hint::black_box(vec![f32::NAN; want.data.len()]));
        compare(&block.forward(x), &want, c, isa, cut);
    }
}

fn compare(got: &Nhwc, want: &Nhwc, c: &Case, isa: Isa, cut: &str) {
    assert_eq!(
        (got.n, got.h, got.w, got.c),
        (want.n, want.h, want.w, want.c)
    );
    let differ = got
        .data
        .iter()
        .zip(&want.data)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(
        differ.is_none(),
        "{isa:?} {}x{}x{} k{} stride {:?} {:?} expand {} project {} ({cut}): element {} is \
         {} in the block, {} layer by layer",
        c.h,
        c.w,
        c.cin,
        c.k,
        c.stride,
        c.padding,
        c.expand,
        c.project,
        differ.unwrap(),
        got.data[differ.unwrap()],
        want.data[differ.unwrap()]
    );
}

fn case(h: usize, w: usize, k: usize, s: usize, padding: Padding) -> Case {
    Case {
        n: 2,
        h,
        w,
        cin: 16,
        expanded: 96,
        cout: 24,
        k,
        stride: [s, s],
        padding,
        expand: true,
        project: true,
        sliced: false,
    }
}

#[test]
fn the_block_equals_its_layers_for_strides_kernels_and_paddings() {
    for isa in Isa::all_supported() {
        for (h, w) in [(17, 13), (56, 56), (7, 7), (3, 5)] {
            for (k, s) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
                for p in [Padding::Same, Padding::Valid, Padding::Zero([2, 0, 1, 2])] {
                    if (h < k || w < k) && p == Padding::Valid {
                        continue;
                    }
                    check(isa, &case(h, w, k, s, p));
                }
            }
        }
    }
}

#[test]
fn the_block_equals_its_layers_without_expansion_or_projection_and_on_slices() {
    for isa in Isa::all_supported() {
        for (expand, project) in [(false, true), (true, false), (false, false)] {
            let c = Case {
                expand,
                project,
                ..case(29, 31, 3, 2, Padding::Same)
            };
            check(isa, &c);
        }
        let c = Case {
            sliced: true,
            cin: 24,
            expanded: 144,
            cout: 3,
            n: 1,
            ..case(40, 40, 3, 1, Padding::Same)
        };
        check(isa, &c);
        let c = Case {
            stride: [2, 1],
            ..case(19, 11, 5, 2, Padding::Same)
        };
        check(isa, &c);
    }
}

#[test]
fn wide_images_at_batch_16_are_cut_into_many_strips() {
    // 112x112x96 expanded rows are 43 KB each: the strips are a few rows high.
    let c = Case {
        n: 3,
        expanded: 96,
        ..case(112, 112, 3, 2, Padding::Same)
    };
    check(Isa::detect(), &c);
}

#[test]
fn layers_that_do_not_form_a_block_are_refused() {
    let isa = Isa::detect();
    let dw = |geo: DepthwiseGeometry| {
        DepthwiseConv2d::with_isa(
            isa,
            geo,
            &vec![0.5; geo.kh * geo.kw * geo.cout()],
            None,
            Act::Relu6,
        )
    };
    let g = DepthwiseGeometry::new(3, 3, 8);
    let e = pointwise(isa, 4, 8, Act::Relu6, 1);
    let wrong_channels = pointwise(isa, 4, 6, Act::Relu6, 1);
    let spatial = Conv2d::with_isa(
        isa,
        ConvGeometry::new(3, 3, 4),
        &[ConvWeights {
            hwio: &[0.5; 3 * 3 * 4 * 8],
            bias: None,
            cout: 8,
            act: Act::Relu,
        }],
    );
    let err = |r: Result<Bottleneck, String>| r.expect_err("refused");
    assert!(err(Bottleneck::new(Some(wrong_channels), dw(g), None)).contains("6 channels"));
    assert!(err(Bottleneck::new(Some(spatial), dw(g), None)).contains("1x1"));
    assert!(err(Bottleneck::new(Some(e.clone()), dw(g.dilation(2)), None)).contains("dilated"));
    assert!(
        err(Bottleneck::new(Some(e.clone()), dw(g.multiplier(2)), None)).contains("multiplied")
    );
    assert!(err(Bottleneck::new(
        None,
        dw(g),
        Some(pointwise(isa, 9, 4, Act::Identity, 2))
    ))
    .contains("takes 9"));
    assert!(Bottleneck::new(Some(e), dw(g), Some(pointwise(isa, 8, 4, Act::Identity, 2))).is_ok());
}
