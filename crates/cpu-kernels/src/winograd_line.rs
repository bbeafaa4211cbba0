//! Stride-1 convolutions at least 3 taps wide (Inception-v3's 1x7 / 7x1 and 1x3 / 3x1,
//! and below, 2-D kernels one line per kernel row) by one-dimensional Winograd minimal
//! filtering, F(3, 3), along the kernel's axis.
//!
//! The filter's taps are cut into pieces of three (taps 0-2, 3-5, ...) and, when
//! `r % 3 == 1`, one last tap. Piece `q` is an F(3, 3) convolution of the input shifted by
//! `3 q` cells: output tile `t` (outputs `3t .. 3t + 3`) of piece `q` reads input cells
//! `3(t + q) .. 3(t + q) + 5`, the patch of tile `t + q`, so every input transform
//! `B^T d` is computed once and shared by all pieces. `A^T [(G g) . (B^T d)]` is linear in
//! the five products, so the pieces' products add up in the same five planes: plane `i`
//! is one GEMM whose reduction runs over the pieces (an indirect row pointer per piece,
//! the microkernel's taps) against the pieces' transformed weights. The last tap is a
//! direct product: output 0's is a further reduction tap of plane 0 (only output 0 reads
//! plane 0), output 2's of plane 4 (only output 2 reads it), output 1's a sixth plane.
//! A 1x7 filter costs 13 `cin x cout` products per 3 outputs instead of 21 (1.6x fewer
//! multiplies), a 1x3 one 5 instead of 9. Taps past the last piece beyond one (a 1x5's two)
//! are all direct products of those planes.
//!
//! A `kh x r` kernel (Inception's 5x5, a 3x3 too wide for the 2-D forms) runs along the
//! width, one line convolution per kernel row: the input transforms are per input row,
//! shared by the `kh` output rows that read it, and each plane's reduction runs over the
//! kernel rows too (5x5: 55 products per 3 outputs instead of 75).
//!
//! Interpolation points 0, 1, -1, 2 and infinity: the input transform scales by at most 3
//! and the output transform by 4, and the rounding, measured against f64 sums, is about
//! twice the direct sum's (half that of the 2-D F(4x4, 3x3) inference uses).

// Index loops mirror the transform matrices.
#![allow(clippy::needless_range_loop)]

use crate::aligned::AlignedBuf;
use crate::conv::{SendPtr, ITEMS_PER_THREAD};
use crate::microkernel::{Act, ChannelAffine, Isa};
use crate::scratch::with_scratch;
use crate::simd::Simd;
use crate::tensor::View;
use crate::winograd::plane_product;
use rayon::prelude::*;

/// `G` of F(3, 3) with the points 0, 1, -1, 2 and infinity: `[5][3]`.
pub(crate) const G3: [[f64; 3]; 5] = [
    [0.5, 0.0, 0.0],
    [-0.5, -0.5, -0.5],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
    [0.0, 0.0, 1.0],
];

/// Outputs per tile.
pub(crate) const M: usize = 3;
/// Input cells per tile (`M + 2`), and transformed planes.
pub(crate) const ALPHA: usize = 5;
/// The plane holding output `j`'s extra (direct) taps: 0 and 4, which only outputs 0 and 2
/// read, and a sixth plane for output 1.
pub(crate) const EXTRA_PLANES: [usize; M] = [0, ALPHA, 4];

/// The axis a line convolution runs along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineAxis {
    /// An `r x 1` kernel: along the height.
    Rows,
    /// A `1 x r` kernel: along the width.
    Cols,
}

/// Transformed, packed weights of one `1 x r` / `r x 1` convolution, or of a `kh x r` one
/// along the width (each kernel row a line convolution of its input row).
#[derive(Debug, Clone)]
pub(crate) struct WinogradLine {
    axis: LineAxis,
    /// Kernel rows across the axis: `kh` of a `kh x r` kernel along the width, 1 otherwise.
    rows: usize,
    /// Three-tap pieces per kernel row.
    pieces: usize,
    /// Taps after the pieces (`r % 3`), direct products.
    rem: usize,
    cin: usize,
    cout: usize,
    act: Act,
    panels: usize,
    /// Per plane: (offset into `packed`, reduction taps of `cin` rows). A plane's taps run
    /// over the kernel rows, each row's pieces then (planes 0, 4 and 5) its extra taps.
    planes: Vec<(usize, usize)>,
    /// Per plane `[panels][taps][cin][nr]`.
    packed: AlignedBuf,
    bias: Vec<f32>,
    /// A per-channel scale and shift after the bias and the activation they come before
    /// (`act` is then the identity): [`crate::Conv2d::with_channel_affine`].
    affine: Option<ChannelAffine>,
}

impl WinogradLine {
    /// Scales and shifts every output channel after the bias, before the activation
    /// ([`crate::Conv2d::with_channel_affine`]): the output transforms then store the biased
    /// sums and each pixel is finished by [`ChannelAffine::finish`] while it is in the cache.
    pub(crate) fn set_channel_affine(&mut self, scale: &[f32], shift: &[f32]) {
        assert!(scale.len() == self.cout && shift.len() == self.cout);
        let act = std::mem::take(&mut self.act);
        self.affine = Some(ChannelAffine::new(scale, shift, act));
    }

    /// Whether a kernel of `r` taps along the axis has this form (any `r` from 3: the taps
    /// past the last piece are direct products).
    pub(crate) fn supports(r: usize) -> bool {
        r >= 3
    }

    /// `hwio`: `[rows][r][cin][cout]` (TensorFlow's layout of a `rows x r` filter along the
    /// width, or of an `r x 1` one along the height with `rows` 1).
    pub(crate) fn new(
        isa: Isa,
        axis: LineAxis,
        hwio: &[f32],
        (rows, r, cin, cout): (usize, usize, usize, usize),
        bias: Option<&[f32]>,
        act: Act,
    ) -> WinogradLine {
        assert!(
            Self::supports(r),
            "a line Winograd filter has 3 taps or more"
        );
        assert!(rows >= 1 && (rows == 1 || axis == LineAxis::Cols));
        assert_eq!(
            hwio.len(),
            rows * r * cin * cout,
            "weights must be [rows, r, cin, cout]"
        );
        let (pieces, rem) = (r / 3, r % 3);
        let nr = isa.nr();
        let panels = cout.div_ceil(nr);
        let mut planes = Vec::new();
        let mut offset = 0;
        for i in 0..ALPHA + usize::from(rem > 0) {
            let taps = rows * Self::row_taps(i, pieces, rem);
            planes.push((offset, taps));
            offset += panels * taps * cin * nr;
        }
        let mut packed = AlignedBuf::zeros(offset);
        // Every (plane, panel) is a contiguous `[taps][cin][nr]` block: transformed in
        // parallel (Inception's 7x1 192 -> 192 has 0.5 M weights to transform each step).
        let mut blocks = Vec::new();
        let mut rest = packed.as_mut_slice();
        for (i, &(_, taps)) in planes.iter().enumerate() {
            for p in 0..panels {
                let (block, tail) = std::mem::take(&mut rest).split_at_mut(taps * cin * nr);
                blocks.push((i, p, taps, block));
                rest = tail;
            }
        }
        let per_row = |i: usize| Self::row_taps(i, pieces, rem);
        blocks.into_par_iter().for_each(|(i, p, taps, dst)| {
            let cols = nr.min(cout - p * nr);
            let w = |a: usize, c: usize, ci: usize| {
                &hwio[((a * r + c) * cin + ci) * cout + p * nr..][..cols]
            };
            for tap in 0..taps {
                let (a, q) = (tap / per_row(i), tap % per_row(i));
                for ci in 0..cin {
                    let out = &mut dst[(tap * cin + ci) * nr..][..cols];
                    if i == ALPHA || q >= pieces {
                        // An extra tap, untransformed.
                        let e = if i == ALPHA { q } else { q - pieces };
                        out.copy_from_slice(w(a, 3 * pieces + e, ci));
                        continue;
                    }
                    let k3: [&[f32]; 3] = std::array::from_fn(|k| w(a, 3 * q + k, ci));
                    let gi = G3[i];
                    for (j, o) in out.iter_mut().enumerate() {
                        let u = gi[0] * k3[0][j] as f64
                            + gi[1] * k3[1][j] as f64
                            + gi[2] * k3[2][j] as f64;
                        *o = u as f32;
                    }
                }
            }
        });
        WinogradLine {
            axis,
            rows,
            pieces,
            rem,
            cin,
            cout,
            act,
            panels,
            planes,
            packed,
            bias: bias.map_or_else(|| vec![0.0; cout], <[f32]>::to_vec),
            affine: None,
        }
    }

    /// Reduction taps of plane `i` per kernel row: the pieces, and for planes 0 and 4 (read
    /// only by outputs 0 and 2) the extra taps of that output; plane 5 holds output 1's.
    fn row_taps(i: usize, pieces: usize, rem: usize) -> usize {
        match i {
            0 | 4 => pieces + rem,
            ALPHA => rem,
            _ => pieces,
        }
    }

    /// Output tiles of 3 for an output of `ho x wo` over `n` images.
    pub(crate) fn tiles(&self, n: usize, ho: usize, wo: usize) -> usize {
        match self.axis {
            LineAxis::Rows => n * wo * ho.div_ceil(M),
            LineAxis::Cols => n * ho * wo.div_ceil(M),
        }
    }

    /// Computes the convolution of `x` into `out` (`n * ho * wo` rows `ldc` floats apart).
    /// `ys` / `xs` map padded cells to input rows / columns (-1: zero padding).
    ///
    /// # Safety
    /// `out` must be valid for writes of `cout` floats at every output row, and `isa`
    /// supported.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn run(
        &self,
        isa: Isa,
        x: View,
        ys: &[i32],
        xs: &[i32],
        ho: usize,
        wo: usize,
        out: *mut f32,
        ldc: usize,
    ) {
        let mr = isa.mr();
        let (cin, cout, pieces, rows) = (self.cin, self.cout, self.pieces, self.rows);
        // A line: one output row (Cols) or column (Rows) of one image. `across` maps the
        // padded cells across the axis (the kernel rows' input rows) to input rows / columns.
        let (per_image, len, cells, across) = match self.axis {
            LineAxis::Cols => (ho, wo, xs, ys),
            LineAxis::Rows => (wo, ho, ys, xs),
        };
        let tiles = len.div_ceil(M);
        // Input transforms per input line: the output tiles' and the next `pieces - 1`.
        let vtiles = tiles + pieces.max(1) - 1;
        if x.n * per_image == 0 || tiles == 0 {
            return;
        }
        let ldm = self.panels * isa.nr();
        let nplanes = self.planes.len();
        let threads = rayon::current_num_threads().max(1);
        // Output lines per block (within one image; the block transforms its lines' input
        // lines, `rows - 1` more): V and M of a block about 512 KiB, and enough blocks for
        // every thread.
        let per_tile = ALPHA * cin + nplanes * ldm;
        let lb_cache = (128 * 1024 / (per_tile * tiles)).max(1);
        let lb_spread = (x.n * per_image)
            .div_ceil(ITEMS_PER_THREAD * threads)
            .max(1);
        // A block also transforms its last output line's `rows - 1` further input lines:
        // at least 4x as many output lines, so that those add at most a quarter.
        let lb = lb_cache.max(4 * (rows - 1)).min(lb_spread).min(per_image);
        let per_block_image = per_image.div_ceil(lb);
        let blocks = x.n * per_block_image;
        let out = SendPtr(out);
        let xbase = SendPtr(x.data.as_ptr().add(x.offset) as *mut f32);
        let packed = SendPtr(self.packed.as_slice().as_ptr() as *mut f32);
        let zeros = vec![0f32; cin];
        // The input pixel of image `b` at padded cell `line` across the axis and `cell`
        // along it (zeros in the padding).
        let pixel = |b: usize, line: usize, cell: usize| -> *const f32 {
            let src = cells.get(cell).copied().unwrap_or(-1);
            let other = across.get(line).copied().unwrap_or(-1);
            if src < 0 || other < 0 {
                return zeros.as_ptr();
            }
            let (sy, sx) = match self.axis {
                LineAxis::Cols => (other as usize, src as usize),
                LineAxis::Rows => (src as usize, other as usize),
            };
            xbase.get().add(((b * x.h + sy) * x.w + sx) * x.stride)
        };

        let block = |bi: usize| {
            let (b, o0) = (bi / per_block_image, (bi % per_block_image) * lb);
            let nl = lb.min(per_image - o0);
            // Input lines o0 .. o0 + nl + rows - 1 (padded cells across the axis).
            let vl = nl + rows - 1;
            let (nt, nv) = (nl * tiles, vl * vtiles);
            // Scratch (not zero-filled): the transforms write all of V, the tiles every
            // valid column of M (the output transform reads no other).
            with_scratch(0, ALPHA * nv * cin, |v| {
                with_scratch(1, nplanes * nt * ldm, |mbuf| {
                    // Input transforms V[i][line][s] = (B^T d)[i] of cells 3s .. 3s + 5.
                    for l in 0..vl {
                        for s in 0..vtiles {
                            let d: [*const f32; ALPHA] =
                                std::array::from_fn(|j| pixel(b, o0 + l, M * s + j));
                            let dst: [*mut f32; ALPHA] = std::array::from_fn(|i| {
                                v.as_mut_ptr().add((i * nv + l * vtiles + s) * cin)
                            });
                            input_tile(isa, &d, &dst, cin);
                        }
                    }
                    // One GEMM per plane over the block's output tiles; tap (a, q) of a plane
                    // reads kernel row a's input line.
                    let groups = nt.div_ceil(mr);
                    let mut ptrs: Vec<*const f32> = Vec::new();
                    for (i, &(off, taps)) in self.planes.iter().enumerate() {
                        let per_row = Self::row_taps(i, pieces, self.rem);
                        // The output whose extra taps the plane holds (planes 1-3 have none).
                        let extra_of = EXTRA_PLANES.iter().position(|&p| p == i).unwrap_or(0);
                        for g in 0..groups {
                            ptrs.clear();
                            for tap in 0..taps {
                                let (a, q) = (tap / per_row, tap % per_row);
                                for r in 0..mr {
                                    let idx = g * mr + r;
                                    ptrs.push(if idx >= nt {
                                        zeros.as_ptr()
                                    } else {
                                        let (l, t) = (idx / tiles, idx % tiles);
                                        if i < ALPHA && q < pieces {
                                            let line = (l + a) * vtiles + t + q;
                                            v.as_ptr().add((i * nv + line) * cin)
                                        } else {
                                            // Extra tap e of the plane's output.
                                            let e = if i < ALPHA { q - pieces } else { q };
                                            let c = M * t + 3 * pieces + extra_of + e;
                                            pixel(b, o0 + l + a, c)
                                        }
                                    });
                                }
                            }
                            plane_product(
                                isa,
                                (&ptrs, taps, cin),
                                packed.get().add(off),
                                mbuf.as_mut_ptr().add((i * nt + g * mr) * ldm),
                                (ldm, (nt - g * mr).min(mr), cout),
                            );
                        }
                    }
                    // Output transforms Y = A^T M (+ the extra taps' plane), bias, activation.
                    for l in 0..nl {
                        let o = o0 + l;
                        for t in 0..tiles {
                            let dst: [*mut f32; M] = std::array::from_fn(|j| {
                                let c = M * t + j;
                                if c >= len {
                                    return std::ptr::null_mut();
                                }
                                let (oy, ox) = match self.axis {
                                    LineAxis::Cols => (o, c),
                                    LineAxis::Rows => (c, o),
                                };
                                out.get().add(((b * ho + oy) * wo + ox) * ldc)
                            });
                            let idx = l * tiles + t;
                            let src: [*const f32; ALPHA + 1] = std::array::from_fn(|i| {
                                if i < nplanes {
                                    mbuf.as_ptr().add((i * nt + idx) * ldm)
                                } else {
                                    std::ptr::null()
                                }
                            });
                            output_tile(isa, &src, &dst, cout, &self.bias, self.act);
                            if let Some(a) = &self.affine {
                                a.finish(&dst);
                            }
                        }
                    }
                })
            })
        };
        if blocks == 1 || threads == 1 {
            (0..blocks).for_each(block);
        } else {
            (0..blocks).into_par_iter().for_each(block);
        }
    }
}

/// `dst[i][c] = (B^T d)[i]` for the five cells `d[j][c]`, `c < cin`.
pub(crate) unsafe fn input_tile(
    isa: Isa,
    d: &[*const f32; ALPHA],
    dst: &[*mut f32; ALPHA],
    cin: usize,
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return x86::input_tile_512(d, dst, cin),
        Isa::Avx2 => return x86::input_tile_256(d, dst, cin),
        Isa::Portable => {}
    }
    let _ = isa;
    input_tile_with::<crate::simd::Portable>(d, dst, cin)
}

/// `Y = act(A^T m + bias)` for the planes `m[i][c]` (`m[5]` the last tap's plane, or
/// null); `dst[j]` is output `j` of the tile, null where it falls outside the output.
unsafe fn output_tile(
    isa: Isa,
    m: &[*const f32; ALPHA + 1],
    dst: &[*mut f32; M],
    cout: usize,
    bias: &[f32],
    act: Act,
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return x86::output_tile_512(m, dst, cout, bias, act),
        Isa::Avx2 => return x86::output_tile_256(m, dst, cout, bias, act),
        Isa::Portable => {}
    }
    let _ = isa;
    output_tile_with::<crate::simd::Portable>(m, dst, cout, bias, act)
}

/// The filter gradient's `dM = A dY` of one tile: `g[j]` is output `j`'s gradient (`cout`
/// floats; zeros past the end), `dst[i]` plane `i`'s row (A^T's columns), `dst[ALPHA]` the
/// middle output's alone (for the extra taps).
pub(crate) unsafe fn grad_output_tile(
    isa: Isa,
    g: &[*const f32; M],
    dst: &[*mut f32; ALPHA + 1],
    cout: usize,
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return x86::grad_output_tile_512(g, dst, cout),
        Isa::Avx2 => return x86::grad_output_tile_256(g, dst, cout),
        Isa::Portable => {}
    }
    let _ = isa;
    grad_output_tile_with::<crate::simd::Portable>(g, dst, cout)
}

#[inline(always)]
unsafe fn grad_output_tile_with<S: Simd>(
    g: &[*const f32; M],
    dst: &[*mut f32; ALPHA + 1],
    cout: usize,
) {
    let mut c = 0;
    while c < cout {
        let k = S::mask(cout - c);
        let [a, b, e]: [S::V; M] = std::array::from_fn(|j| S::load_m(g[j].add(c), k));
        // A^T's columns: [1, 0, 0], [1, 1, 1], [1, -1, 1], [1, 2, 4], [0, 0, 1] (2b and 4e
        // as sums: exact).
        let (b2, e2) = (S::add(b, b), S::add(e, e));
        let v = [
            a,
            S::add(S::add(a, b), e),
            S::add(S::sub(a, b), e),
            S::add(S::add(a, b2), S::add(e2, e2)),
            e,
            b,
        ];
        for i in 0..=ALPHA {
            S::store_m(dst[i].add(c), v[i], k);
        }
        c += S::LANES;
    }
}

#[inline(always)]
unsafe fn input_tile_with<S: Simd>(d: &[*const f32; ALPHA], dst: &[*mut f32; ALPHA], cin: usize) {
    let two = S::splat(2.0);
    let mut c = 0;
    while c < cin {
        let k = S::mask(cin - c);
        let e: [S::V; ALPHA] = std::array::from_fn(|j| S::load_m(d[j].add(c), k));
        // B^T rows: [2, -1, -2, 1, 0], [0, -2, -1, 1, 0], [0, 2, -3, 1, 0], [0, -1, 0, 1, 0],
        // [0, 2, -1, -2, 1].
        let d31 = S::sub(e[3], e[1]);
        let d32 = S::sub(e[3], e[2]);
        let v = [
            S::fma(two, S::sub(e[0], e[2]), d31),
            S::fma(S::splat(-2.0), e[1], d32),
            S::fma(two, S::sub(e[1], e[2]), d32),
            d31,
            S::fma(two, S::sub(e[1], e[3]), S::sub(e[4], e[2])),
        ];
        for i in 0..ALPHA {
            S::store_m(dst[i].add(c), v[i], k);
        }
        c += S::LANES;
    }
}

#[inline(always)]
unsafe fn output_tile_with<S: Simd>(
    m: &[*const f32; ALPHA + 1],
    dst: &[*mut f32; M],
    cout: usize,
    bias: &[f32],
    act: Act,
) {
    let mut c = 0;
    while c < cout {
        let k = S::mask(cout - c);
        let b = S::load_m(bias.as_ptr().add(c), k);
        let e: [S::V; ALPHA] = std::array::from_fn(|i| S::load_m(m[i].add(c), k));
        // A^T rows: [1, 1, 1, 1, 0], [0, 1, -1, 2, 0], [0, 1, 1, 4, 1].
        let s12 = S::add(e[1], e[2]);
        let mut y1 = S::fma(S::splat(2.0), e[3], S::sub(e[1], e[2]));
        if !m[ALPHA].is_null() {
            y1 = S::add(y1, S::load_m(m[ALPHA].add(c), k));
        }
        let y = [
            S::add(S::add(e[0], s12), e[3]),
            y1,
            S::add(S::fma(S::splat(4.0), e[3], s12), e[4]),
        ];
        for j in 0..M {
            if !dst[j].is_null() {
                S::store_m(dst[j].add(c), S::act(S::add(y[j], b), act), k);
            }
        }
        c += S::LANES;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Act, ALPHA, M};
    use crate::simd::{Avx2, Avx512};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_tile_512(
        d: &[*const f32; ALPHA],
        dst: &[*mut f32; ALPHA],
        cin: usize,
    ) {
        super::input_tile_with::<Avx512>(d, dst, cin)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_tile_256(
        d: &[*const f32; ALPHA],
        dst: &[*mut f32; ALPHA],
        cin: usize,
    ) {
        super::input_tile_with::<Avx2>(d, dst, cin)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_tile_512(
        m: &[*const f32; ALPHA + 1],
        dst: &[*mut f32; M],
        cout: usize,
        bias: &[f32],
        act: Act,
    ) {
        super::output_tile_with::<Avx512>(m, dst, cout, bias, act)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_tile_256(
        m: &[*const f32; ALPHA + 1],
        dst: &[*mut f32; M],
        cout: usize,
        bias: &[f32],
        act: Act,
    ) {
        super::output_tile_with::<Avx2>(m, dst, cout, bias, act)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn grad_output_tile_512(
        g: &[*const f32; M],
        dst: &[*mut f32; ALPHA + 1],
        cout: usize,
    ) {
        super::grad_output_tile_with::<Avx512>(g, dst, cout)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_output_tile_256(
        g: &[*const f32; M],
        dst: &[*mut f32; ALPHA + 1],
        cout: usize,
    ) {
        super::grad_output_tile_with::<Avx2>(g, dst, cout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter gradient's tile transform on every instruction set the machine has, against
    /// A^T's columns written out (a width with a partial vector at the end).
    #[test]
    fn grad_output_tile_is_a_times_dy() {
        let cout = 37;
        let g: Vec<Vec<f32>> = (0..M)
            .map(|j| {
                (0..cout)
                    .map(|c| ((c * 7 + j * 13) % 17) as f32 - 8.5)
                    .collect()
            })
            .collect();
        for isa in Isa::all_supported() {
            let mut out = vec![vec![f32::NAN; cout]; ALPHA + 1];
            let src: [*const f32; M] = std::array::from_fn(|j| g[j].as_ptr());
            let dst: [*mut f32; ALPHA + 1] = std::array::from_fn(|i| out[i].as_mut_ptr());
            // SAFETY: every row holds `cout` floats.
            unsafe { grad_output_tile(isa, &src, &dst, cout) };
            for c in 0..cout {
                let (a, b, e) = (g[0][c], g[1][c], g[2][c]);
                let want = [a, a + b + e, a - b + e, a + 2.0 * b + 4.0 * e, e, b];
                for i in 0..=ALPHA {
                    assert_eq!(out[i][c], want[i], "{isa:?} plane {i} channel {c}");
                }
            }
        }
    }
}
