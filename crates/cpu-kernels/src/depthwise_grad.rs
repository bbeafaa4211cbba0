//! The gradients of a depthwise training convolution ([`crate::TrainConv`] with
//! `depthwise`) on vectors of channels (AVX-512, AVX2, portable): per output row, the
//! filter gradient's terms with one register accumulator per tap (3x3 and 5x5 filters),
//! and per input row, the input gradient with one accumulator per pixel and vector of
//! channels, several vectors side by side. Each element is summed in the same order as
//! the scalar loops they replace (pixels in order for a tap; kernel rows, then columns,
//! for an input pixel), with fused multiply-adds on the vector ISAs.

use crate::microkernel::Isa;
use crate::simd::{self, Simd};

/// The geometry of a depthwise convolution's gradients.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DwGrad {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    /// `[top, left]` zero padding.
    pub pads: [usize; 2],
}

/// Whether [`filter_row`] takes this filter size (the others keep the scalar loop).
pub(crate) fn filter_row_supported(kh: usize, kw: usize) -> bool {
    matches!((kh, kw), (3, 3) | (5, 5))
}

/// Output row `y`'s terms of the filter gradient: `out[tap * c + ch]` = the sum over the
/// row's pixels, in order, of input times output gradient (zero for taps that read only
/// padding). `x` is the image's input (`h * w * c`), `dy` the row's output gradient
/// (`ow * c`), `out` `kh * kw * c` long.
pub(crate) fn filter_row(isa: Isa, g: &DwGrad, x: &[f32], dy: &[f32], y: usize, out: &mut [f32]) {
    assert!(filter_row_supported(g.kh, g.kw) && y < g.oh);
    assert!(x.len() == g.h * g.w * g.c && dy.len() == g.ow * g.c);
    assert_eq!(out.len(), g.kh * g.kw * g.c);
    let (x, dy, out) = (x.as_ptr(), dy.as_ptr(), out.as_mut_ptr());
    // SAFETY: the ISA is the detected one; the lengths are checked above, and the kernels
    // read input cells inside the image (rows and columns checked against `h`, `w`) and
    // the row's `ow` pixels, `c` channels each (the last vector masked).
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => filter_row_avx512(g, x, dy, y, out),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => filter_row_avx2(g, x, dy, y, out),
            _ => filter_row_generic::<simd::Portable>(g, x, dy, y, out),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn filter_row_avx512(g: &DwGrad, x: *const f32, dy: *const f32, y: usize, out: *mut f32) {
    filter_row_generic::<simd::Avx512>(g, x, dy, y, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn filter_row_avx2(g: &DwGrad, x: *const f32, dy: *const f32, y: usize, out: *mut f32) {
    filter_row_generic::<simd::Avx2>(g, x, dy, y, out)
}

#[inline(always)]
unsafe fn filter_row_generic<S: Simd>(
    g: &DwGrad,
    x: *const f32,
    dy: *const f32,
    y: usize,
    out: *mut f32,
) {
    match (g.kh, g.kw) {
        (3, 3) => filter_row_k::<S, 3, 3>(g, x, dy, y, out),
        (5, 5) => filter_row_k::<S, 5, 5>(g, x, dy, y, out),
        _ => unreachable!("checked by filter_row_supported"),
    }
}

/// A vector of `n` channels at `p` (all lanes when `n` is the vector's width).
#[inline(always)]
unsafe fn load<S: Simd>(p: *const f32, n: usize, m: S::M) -> S::V {
    if n == S::LANES {
        S::load(p)
    } else {
        S::load_m(p, m)
    }
}

#[inline(always)]
unsafe fn store<S: Simd>(p: *mut f32, v: S::V, n: usize, m: S::M) {
    if n == S::LANES {
        S::store(p, v)
    } else {
        S::store_m(p, v, m)
    }
}

#[inline(always)]
unsafe fn filter_row_k<S: Simd, const KH: usize, const KW: usize>(
    g: &DwGrad,
    x: *const f32,
    dy: *const f32,
    y: usize,
    out: *mut f32,
) {
    let c = g.c;
    // The kernel rows' input rows (as offsets), `None` on the padding.
    let rows: [Option<usize>; KH] = std::array::from_fn(|a| {
        (y * g.stride[0] + a)
            .checked_sub(g.pads[0])
            .filter(|&iy| iy < g.h)
            .map(|iy| iy * g.w * c)
    });
    for c0 in (0..c).step_by(S::LANES) {
        let n = (c - c0).min(S::LANES);
        let m = S::mask(n);
        let mut acc = [[S::splat(0.0); KW]; KH];
        for xo in 0..g.ow {
            let gv = load::<S>(dy.add(xo * c + c0), n, m);
            let x0 = xo * g.stride[1];
            for (a, row) in rows.iter().enumerate() {
                let Some(row) = *row else { continue };
                for (e, acc) in acc[a].iter_mut().enumerate() {
                    let Some(ix) = (x0 + e).checked_sub(g.pads[1]).filter(|&ix| ix < g.w) else {
                        continue;
                    };
                    let v = load::<S>(x.add(row + ix * c + c0), n, m);
                    *acc = S::fma(v, gv, *acc);
                }
            }
        }
        for (a, accs) in acc.iter().enumerate() {
            for (e, v) in accs.iter().enumerate() {
                store::<S>(out.add((a * KW + e) * c + c0), *v, n, m);
            }
        }
    }
}

/// The filter taps of each input column: `(kernel column, output column)` pairs, `ix`'s
/// at `pairs[starts[ix]..starts[ix + 1]]`.
pub(crate) struct ColumnTaps {
    starts: Vec<usize>,
    pairs: Vec<(usize, usize)>,
}

impl ColumnTaps {
    pub(crate) fn new(g: &DwGrad) -> ColumnTaps {
        let mut starts = Vec::with_capacity(g.w + 1);
        let mut pairs = Vec::new();
        for ix in 0..g.w {
            starts.push(pairs.len());
            pairs.extend(taps(ix, g.pads[1], g.kw, g.stride[1], g.ow));
        }
        starts.push(pairs.len());
        ColumnTaps { starts, pairs }
    }

    fn of(&self, ix: usize) -> &[(usize, usize)] {
        &self.pairs[self.starts[ix]..self.starts[ix + 1]]
    }
}

/// Input row or column `i`'s filter taps: `(kernel row or column, output row or column)`
/// pairs, in kernel order.
fn taps(
    i: usize,
    pad: usize,
    k: usize,
    s: usize,
    out: usize,
) -> impl Iterator<Item = (usize, usize)> {
    (0..k).filter_map(move |a| {
        let t = (i + pad).checked_sub(a)?;
        (t % s == 0 && t / s < out).then_some((a, t / s))
    })
}

/// Input row `iy`'s gradient, written to every element of `dx` (`w * c`, uninitialised
/// before): for each pixel and channel the
/// sum over its kernel rows, then columns, of output gradient times filter. `dy` is the
/// image's output gradient (`oh * ow * c`), `filter` the depthwise filter (`kh * kw * c`).
pub(crate) fn input_row(
    isa: Isa,
    g: &DwGrad,
    (dy, filter): (&[f32], &[f32]),
    iy: usize,
    cols: &ColumnTaps,
    dx: &mut [std::mem::MaybeUninit<f32>],
) {
    assert!(iy < g.h && dy.len() == g.oh * g.ow * g.c && filter.len() == g.kh * g.kw * g.c);
    assert!(dx.len() == g.w * g.c && cols.starts.len() == g.w + 1);
    let rows: Vec<(usize, usize)> = taps(iy, g.pads[0], g.kh, g.stride[0], g.oh).collect();
    let (dy, filter, dx) = (dy.as_ptr(), filter.as_ptr(), dx.as_mut_ptr().cast::<f32>());
    // SAFETY: the ISA is the detected one; `taps` gives kernel rows / columns below `kh`,
    // `kw` and output rows / columns below `oh`, `ow`, so every read lies inside `dy` and
    // `filter`, and every write inside the row (lengths checked above; the last vector of
    // channels masked).
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => input_row_avx512(g, dy, filter, &rows, cols, dx),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => input_row_avx2(g, dy, filter, &rows, cols, dx),
            _ => input_row_generic::<simd::Portable>(g, dy, filter, &rows, cols, dx),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_row_avx512(
    g: &DwGrad,
    dy: *const f32,
    filter: *const f32,
    rows: &[(usize, usize)],
    cols: &ColumnTaps,
    dx: *mut f32,
) {
    input_row_generic::<simd::Avx512>(g, dy, filter, rows, cols, dx)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_row_avx2(
    g: &DwGrad,
    dy: *const f32,
    filter: *const f32,
    rows: &[(usize, usize)],
    cols: &ColumnTaps,
    dx: *mut f32,
) {
    input_row_generic::<simd::Avx2>(g, dy, filter, rows, cols, dx)
}

/// Vectors of channels per pixel side by side (independent accumulators, so that the
/// multiply-adds of one pixel's taps do not wait on each other).
const BLOCKS: usize = 4;

#[inline(always)]
unsafe fn input_row_generic<S: Simd>(
    g: &DwGrad,
    dy: *const f32,
    filter: *const f32,
    rows: &[(usize, usize)],
    cols: &ColumnTaps,
    dx: *mut f32,
) {
    let c = g.c;
    let group = BLOCKS * S::LANES;
    for c0 in (0..c).step_by(group) {
        let vectors = (c - c0).div_ceil(S::LANES).min(BLOCKS);
        match vectors {
            4 => input_group::<S, 4>(g, dy, filter, rows, cols, dx, c0),
            3 => input_group::<S, 3>(g, dy, filter, rows, cols, dx, c0),
            2 => input_group::<S, 2>(g, dy, filter, rows, cols, dx, c0),
            _ => input_group::<S, 1>(g, dy, filter, rows, cols, dx, c0),
        }
    }
}

/// Channels `c0 ..` in `N` vectors (the last possibly partial) of every pixel of the row.
#[inline(always)]
unsafe fn input_group<S: Simd, const N: usize>(
    g: &DwGrad,
    dy: *const f32,
    filter: *const f32,
    rows: &[(usize, usize)],
    cols: &ColumnTaps,
    dx: *mut f32,
    c0: usize,
) {
    let c = g.c;
    let widths: [usize; N] = std::array::from_fn(|q| (c - c0 - q * S::LANES).min(S::LANES));
    let masks: [S::M; N] = std::array::from_fn(|q| S::mask(widths[q]));
    for ix in 0..g.w {
        let mut acc = [S::splat(0.0); N];
        for &(a, yo) in rows {
            let grow = dy.add(yo * g.ow * c + c0);
            let frow = filter.add(a * g.kw * c + c0);
            for &(e, xo) in cols.of(ix) {
                let (gp, fp) = (grow.add(xo * c), frow.add(e * c));
                for q in 0..N {
                    let o = q * S::LANES;
                    let gv = load::<S>(gp.add(o), widths[q], masks[q]);
                    let fv = load::<S>(fp.add(o), widths[q], masks[q]);
                    acc[q] = S::fma(gv, fv, acc[q]);
                }
            }
        }
        for q in 0..N {
            store::<S>(
                dx.add(ix * c + c0 + q * S::LANES),
                acc[q],
                widths[q],
                masks[q],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let h = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ seed) >> 40;
                h as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Both row kernels on every ISA of this machine against f64 sums of the definition:
    /// 3x3 and 5x5, stride 1 and 2, asymmetric padding, channel counts that leave a partial
    /// vector and groups of fewer than four vectors.
    #[test]
    fn rows_match_the_definition_on_every_isa() {
        for (c, k, s, pads) in [(5, 3, 1, [1, 1]), (70, 3, 2, [0, 1]), (37, 5, 1, [2, 1])] {
            let (h, w) = (7, 9);
            let oh = (h + 2 * pads[0] - k) / s + 1;
            let ow = (w + 2 * pads[1] - k) / s + 1;
            let g = DwGrad {
                c,
                h,
                w,
                oh,
                ow,
                kh: k,
                kw: k,
                stride: [s, s],
                pads,
            };
            let x = values(h * w * c, 1);
            let dy = values(oh * ow * c, 2);
            let f = values(k * k * c, 3);
            // The definition: dW[tap][ch] per output row, dX over the whole image.
            let mut dw = vec![vec![0f64; k * k * c]; oh];
            let mut dx = vec![0f64; h * w * c];
            for y in 0..oh {
                for xo in 0..ow {
                    for a in 0..k {
                        for e in 0..k {
                            let iy = (y * s + a) as isize - pads[0] as isize;
                            let ix = (xo * s + e) as isize - pads[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xi = (iy as usize * w + ix as usize) * c;
                            for ch in 0..c {
                                let gy = dy[(y * ow + xo) * c + ch] as f64;
                                dw[y][(a * k + e) * c + ch] += x[xi + ch] as f64 * gy;
                                dx[xi + ch] += f[(a * k + e) * c + ch] as f64 * gy;
                            }
                        }
                    }
                }
            }
            let cols = ColumnTaps::new(&g);
            for isa in Isa::all_supported() {
                let what = format!("{isa:?} c {c} k {k} s {s}");
                for (y, want) in dw.iter().enumerate() {
                    let mut out = vec![f32::NAN; k * k * c];
                    filter_row(isa, &g, &x, &dy[y * ow * c..][..ow * c], y, &mut out);
                    for (i, (o, w)) in out.iter().zip(want).enumerate() {
                        assert!(
                            (*o as f64 - w).abs() < 1e-5,
                            "{what}: dw row {y} [{i}] {o} vs {w}"
                        );
                    }
                }
                for iy in 0..h {
                    let mut out = vec![std::mem::MaybeUninit::new(f32::NAN); w * c];
                    input_row(isa, &g, (&dy, &f), iy, &cols, &mut out);
                    // SAFETY: initialised (NaN before, so an element left unwritten fails).
                    let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                    for (i, o) in out.iter().enumerate() {
                        let want = dx[iy * w * c + i];
                        assert!(
                            (*o as f64 - want).abs() < 1e-5,
                            "{what}: dx row {iy} [{i}] {o} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
