//! 3x3 stride-1 convolution by Winograd's minimal filtering (Lavin & Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2015), F(2x2, 3x3) or F(4x4, 3x3): each
//! `m x m` block of outputs is `A^T [(G g G^T) . (B^T d B)] A` for its `(m+2) x (m+2)`
//! input patch `d`, so the multiplies become `(m+2)^2` GEMMs of `cin x cout` over the
//! tiles: 2.25 (m = 2) or 4 (m = 4) times fewer than the direct convolution's. Weights are
//! transformed and packed once; inputs are gathered through the same padded-cell tables
//! as the direct path (zero, SAME or reflection padding, nearest upsampling), in blocks of
//! tiles that stay in L2 from input transform to output. Rounding differs from the direct
//! sum by a few ulps for F(2x2) (transforms use only additions and halvings), by some
//! more for F(4x4) (its transforms scale by up to 8 and 1/24).

// Index loops mirror the transform matrices.
#![allow(clippy::needless_range_loop)]

use crate::aligned::AlignedBuf;
use crate::conv::{SendPtr, ITEMS_PER_THREAD};
use crate::microkernel::{self, act_scalar, Act, ChannelAffine, Isa, Tile};
use crate::simd::Simd;
use crate::tensor::View;
use rayon::prelude::*;

/// `G` of F(2x2, 3x3): `[4][3]` (the training filter gradient's `dW = G^T dU G` too).
pub(crate) const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `G` of F(4x4, 3x3) (interpolation points 0, -1, 1, -2, 2 and infinity): `[6][3]`.
const G4: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Transformed, packed weights of one 3x3 convolution.
#[derive(Debug, Clone)]
pub(crate) struct Winograd {
    /// Output tile side: 2 or 4.
    m: usize,
    cin: usize,
    cout: usize,
    act: Act,
    panels: usize,
    /// `[(m+2)^2][panels][cin][nr]`.
    packed: AlignedBuf,
    bias: Vec<f32>,
    /// A per-channel scale and shift after the bias and the activation they come before
    /// (`act` is then the identity): [`crate::Conv2d::with_channel_affine`].
    affine: Option<ChannelAffine>,
}

impl Winograd {
    /// Scales and shifts every output channel after the bias, before the activation
    /// ([`crate::Conv2d::with_channel_affine`]): the output transforms then store the biased
    /// sums and each pixel is finished by [`ChannelAffine::finish`] while it is in the cache.
    pub(crate) fn set_channel_affine(&mut self, scale: &[f32], shift: &[f32]) {
        assert!(scale.len() == self.cout && shift.len() == self.cout);
        let act = std::mem::take(&mut self.act);
        self.affine = Some(ChannelAffine::new(scale, shift, act));
    }

    /// `hwio`: `[3][3][cin][cout]`; `m`: the output tile side, 2 or 4.
    pub(crate) fn new(
        isa: Isa,
        hwio: &[f32],
        (cin, cout): (usize, usize),
        bias: Option<&[f32]>,
        act: Act,
        m: usize,
    ) -> Winograd {
        assert!(m == 2 || m == 4, "Winograd tiles are 2x2 or 4x4");
        let g_rows: &[[f64; 3]] = if m == 2 { &G2 } else { &G4 };
        let alpha = m + 2;
        let nr = isa.nr();
        let panels = cout.div_ceil(nr);
        let mut packed = AlignedBuf::zeros(alpha * alpha * panels * cin * nr);
        let dst = packed.as_mut_slice();
        for ci in 0..cin {
            for co in 0..cout {
                let g = |y: usize, x: usize| hwio[((y * 3 + x) * cin + ci) * cout + co] as f64;
                // U = G g G^T
                let gg: Vec<[f64; 3]> = g_rows
                    .iter()
                    .map(|gr| std::array::from_fn(|x| (0..3).map(|y| gr[y] * g(y, x)).sum()))
                    .collect();
                let (p, j) = (co / nr, co % nr);
                for (i, row) in gg.iter().enumerate() {
                    for (l, gl) in g_rows.iter().enumerate() {
                        let u: f64 = (0..3).map(|x| row[x] * gl[x]).sum();
                        let xi = i * alpha + l;
                        dst[((xi * panels + p) * cin + ci) * nr + j] = u as f32;
                    }
                }
            }
        }
        Winograd {
            m,
            cin,
            cout,
            act,
            panels,
            packed,
            bias: bias.map_or_else(|| vec![0.0; cout], <[f32]>::to_vec),
            affine: None,
        }
    }

    /// The output tile side (2 or 4).
    pub(crate) fn tile(&self) -> usize {
        self.m
    }

    /// Number of `m x m` output tiles for an output of `ho x wo` over `n` images.
    pub(crate) fn tiles(m: usize, n: usize, ho: usize, wo: usize) -> usize {
        n * ho.div_ceil(m) * wo.div_ceil(m)
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
        let (mr, nr) = (isa.mr(), isa.nr());
        let (cin, cout) = (self.cin, self.cout);
        let m = self.m;
        let alpha = m + 2;
        let nx = alpha * alpha;
        let (th, tw) = (ho.div_ceil(m), wo.div_ceil(m));
        let total = x.n * th * tw;
        if total == 0 {
            return;
        }
        let ldm = self.panels * nr;
        let threads = rayon::current_num_threads().max(1);
        // Tiles per block: V and M of a block (nx * tb * (cin + ldm) floats) about 512 KiB,
        // and enough blocks for every thread.
        let tb_cache = (128 * 1024 / (nx * (cin + ldm))).max(mr);
        let tb_spread = total.div_ceil(ITEMS_PER_THREAD * threads).max(mr);
        let tb = tb_cache.min(tb_spread).div_ceil(mr) * mr;
        let blocks = total.div_ceil(tb);
        let out = SendPtr(out);
        let xbase = SendPtr(x.data.as_ptr().add(x.offset) as *mut f32);
        let packed = SendPtr(self.packed.as_slice().as_ptr() as *mut f32);
        let zeros = vec![0f32; cin];
        let cell = |r: usize, len: &[i32]| -> i32 { len.get(r).copied().unwrap_or(-1) };

        let block = |bi: usize| {
            let t0 = bi * tb;
            let nt = tb.min(total - t0);
            let mut v = vec![0f32; nx * tb * cin];
            let mut mbuf = vec![0f32; nx * tb * ldm];
            // Input transform V[xi][t][c] = (B^T d B)[xi].
            for t in 0..nt {
                let tile = t0 + t;
                let (b, rem) = (tile / (th * tw), tile % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                let mut rows: [*const f32; 36] = [zeros.as_ptr(); 36];
                for i in 0..alpha {
                    let sy = cell(m * ty + i, ys);
                    for j in 0..alpha {
                        let sx = cell(m * tx + j, xs);
                        if sy >= 0 && sx >= 0 {
                            rows[i * alpha + j] = xbase
                                .get()
                                .add(((b * x.h + sy as usize) * x.w + sx as usize) * x.stride);
                        }
                    }
                }
                if m == 2 {
                    let rows: [*const f32; 16] = std::array::from_fn(|i| rows[i]);
                    let dst: [*mut f32; 16] =
                        std::array::from_fn(|xi| v.as_mut_ptr().add((xi * tb + t) * cin));
                    input_tile(isa, &rows, dst, cin);
                } else {
                    let dst: [*mut f32; 36] =
                        std::array::from_fn(|xi| v.as_mut_ptr().add((xi * tb + t) * cin));
                    input_tile4(isa, &rows, &dst, cin);
                }
            }
            // nx GEMMs M[xi] = V[xi] U[xi].
            let groups = nt.div_ceil(mr);
            let mut ptrs: Vec<*const f32> = vec![zeros.as_ptr(); mr];
            for xi in 0..nx {
                for g in 0..groups {
                    for (r, p) in ptrs.iter_mut().enumerate() {
                        let t = g * mr + r;
                        *p = if t < nt {
                            v.as_ptr().add((xi * tb + t) * cin)
                        } else {
                            zeros.as_ptr()
                        };
                    }
                    plane_product(
                        isa,
                        (&ptrs, 1, cin),
                        packed.get().add(xi * self.panels * cin * nr),
                        mbuf.as_mut_ptr().add((xi * tb + g * mr) * ldm),
                        (ldm, (nt - g * mr).min(mr), cout),
                    );
                }
            }
            // Output transform Y = A^T M A, bias, activation.
            for t in 0..nt {
                let tile = t0 + t;
                let (b, rem) = (tile / (th * tw), tile % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                let (oy, ox) = (m * ty, m * tx);
                let (ny, nxo) = ((ho - oy).min(m), (wo - ox).min(m));
                let mut dst: [*mut f32; 16] = [std::ptr::null_mut(); 16];
                for a in 0..ny {
                    for bb in 0..nxo {
                        dst[a * m + bb] = out.get().add(((b * ho + oy + a) * wo + ox + bb) * ldc);
                    }
                }
                if m == 2 {
                    let src: [*const f32; 16] =
                        std::array::from_fn(|xi| mbuf.as_ptr().add((xi * tb + t) * ldm));
                    let dst: [*mut f32; 4] = std::array::from_fn(|i| dst[i]);
                    output_tile(isa, &src, dst, cout, &self.bias, self.act);
                    if let Some(a) = &self.affine {
                        a.finish(&dst);
                    }
                } else {
                    let src: [*const f32; 36] =
                        std::array::from_fn(|xi| mbuf.as_ptr().add((xi * tb + t) * ldm));
                    output_tile4(isa, &src, &dst, cout, &self.bias, self.act);
                    if let Some(a) = &self.affine {
                        a.finish(&dst);
                    }
                }
            }
        };
        if blocks == 1 || threads == 1 {
            (0..blocks).for_each(block);
        } else {
            (0..blocks).into_par_iter().for_each(block);
        }
    }
}

/// One group of rows of a transformed plane's product (the Winograd forms' GEMMs): row `r`
/// of `c` is the sum over the taps of row pointer `a[tap * MR + r]` (`kc` floats) times the
/// tap's `kc` weight rows, for the `cout` columns of the plane's panels (`b`:
/// `[panels][taps][kc][nr]`, packed). `rows` rows of `c`, `ldc` apart, are stored, and only
/// their valid columns.
///
/// # Safety
/// As [`microkernel::run`] for each panel's tile.
pub(crate) unsafe fn plane_product(
    isa: Isa,
    (a, taps, kc): (&[*const f32], usize, usize),
    b: *const f32,
    c: *mut f32,
    (ldc, rows, cout): (usize, usize, usize),
) {
    let nr = isa.nr();
    let zero_bias = [0f32; 32];
    debug_assert!(nr <= zero_bias.len() && a.len() >= taps * isa.mr());
    for p in 0..cout.div_ceil(nr) {
        let tile = Tile {
            taps,
            kc,
            a: a.as_ptr(),
            b: b.add(p * taps * kc * nr),
            ldb: nr,
            bias: zero_bias.as_ptr(),
            scale: std::ptr::null(),
            shift: std::ptr::null(),
            c: c.add(p * nr),
            ldc,
            rows,
            cols: nr.min(cout - p * nr),
            act: Act::Identity,
            stream: false,
            res: std::ptr::null(),
            ldr: 0,
            a_stride: 0,
            a_off: 0,
            resume: false,
            partial: false,
        };
        microkernel::run(isa, &tile);
    }
}

/// `dst[xi][c] = (B^T d B)[xi]` for the 4x4 patch `d[i * 4 + j][c]`, `c < cin`.
pub(crate) unsafe fn input_tile(isa: Isa, d: &[*const f32; 16], dst: [*mut f32; 16], cin: usize) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return x86::input_tile(d, dst, cin);
    }
    let _ = isa;
    for c in 0..cin {
        let e = |i: usize, j: usize| *d[i * 4 + j].add(c);
        let mut r = [[0f32; 4]; 4];
        for j in 0..4 {
            r[0][j] = e(0, j) - e(2, j);
            r[1][j] = e(1, j) + e(2, j);
            r[2][j] = e(2, j) - e(1, j);
            r[3][j] = e(1, j) - e(3, j);
        }
        for (i, row) in r.iter().enumerate() {
            *dst[i * 4].add(c) = row[0] - row[2];
            *dst[i * 4 + 1].add(c) = row[1] + row[2];
            *dst[i * 4 + 2].add(c) = row[2] - row[1];
            *dst[i * 4 + 3].add(c) = row[1] - row[3];
        }
    }
}

/// The filter gradient's `dM = A dY A^T` of one 2x2 tile: `g[a * 2 + b]` is output pixel
/// `(a, b)`'s gradient (`cout` floats; zeros past the edge), `dst[i * 4 + j]` plane `(i, j)`'s
/// row, `A = [[1, 0], [1, 1], [1, -1], [0, -1]]`.
pub(crate) unsafe fn grad_output_tile(
    isa: Isa,
    g: &[*const f32; 4],
    dst: &[*mut f32; 16],
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
unsafe fn grad_output_tile_with<S: Simd>(g: &[*const f32; 4], dst: &[*mut f32; 16], cout: usize) {
    let mut c = 0;
    while c < cout {
        let k = S::mask(cout - c);
        let [g00, g01, g10, g11]: [S::V; 4] = std::array::from_fn(|i| S::load_m(g[i].add(c), k));
        let zero = S::splat(0.0);
        // A's rows over the tile's rows, then over its columns.
        let rows = [
            (g00, g01),
            (S::add(g00, g10), S::add(g01, g11)),
            (S::sub(g00, g10), S::sub(g01, g11)),
            (S::sub(zero, g10), S::sub(zero, g11)),
        ];
        for (i, (a, b)) in rows.into_iter().enumerate() {
            S::store_m(dst[i * 4].add(c), a, k);
            S::store_m(dst[i * 4 + 1].add(c), S::add(a, b), k);
            S::store_m(dst[i * 4 + 2].add(c), S::sub(a, b), k);
            S::store_m(dst[i * 4 + 3].add(c), S::sub(zero, b), k);
        }
        c += S::LANES;
    }
}

/// `Y = act(A^T M A + bias)` for the 16 transformed products `m[xi][c]`; `dst[a * 2 + b]`
/// is output pixel `(a, b)` of the tile, null where it falls outside the output.
unsafe fn output_tile(
    isa: Isa,
    m: &[*const f32; 16],
    dst: [*mut f32; 4],
    cout: usize,
    bias: &[f32],
    act: Act,
) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        return x86::output_tile(m, dst, cout, bias.as_ptr(), act);
    }
    let _ = isa;
    for c in 0..cout {
        let e = |i: usize, j: usize| *m[i * 4 + j].add(c);
        let mut s = [[0f32; 4]; 2];
        for j in 0..4 {
            s[0][j] = e(0, j) + e(1, j) + e(2, j);
            s[1][j] = e(1, j) - e(2, j) - e(3, j);
        }
        for (a, row) in s.iter().enumerate() {
            let y = [row[0] + row[1] + row[2], row[1] - row[2] - row[3]];
            for (b, &val) in y.iter().enumerate() {
                let p = dst[a * 2 + b];
                if !p.is_null() {
                    *p.add(c) = act_scalar(val + bias[c], act);
                }
            }
        }
    }
}

/// `dst[xi][c] = (B^T d B)[xi]` of F(4x4, 3x3) for the 6x6 patch `d[i * 6 + j][c]`.
unsafe fn input_tile4(isa: Isa, d: &[*const f32; 36], dst: &[*mut f32; 36], cin: usize) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return x86::input_tile4_512(d, dst, cin),
        Isa::Avx2 => return x86::input_tile4_256(d, dst, cin),
        Isa::Portable => {}
    }
    let _ = isa;
    input_tile4_with::<crate::simd::Portable>(d, dst, cin)
}

/// `Y = act(A^T M A + bias)` of F(4x4, 3x3) for the 36 transformed products `m[xi][c]`;
/// `dst[a * 4 + b]` is output pixel `(a, b)` of the tile, null outside the output.
unsafe fn output_tile4(
    isa: Isa,
    m: &[*const f32; 36],
    dst: &[*mut f32; 16],
    cout: usize,
    bias: &[f32],
    act: Act,
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return x86::output_tile4_512(m, dst, cout, bias, act),
        Isa::Avx2 => return x86::output_tile4_256(m, dst, cout, bias, act),
        Isa::Portable => {}
    }
    let _ = isa;
    output_tile4_with::<crate::simd::Portable>(m, dst, cout, bias, act)
}

/// `B^T d` for one column `d` of six vectors (F(4x4, 3x3)).
#[inline(always)]
unsafe fn bt4<S: Simd>(d: [S::V; 6]) -> [S::V; 6] {
    let (four, two) = (S::splat(4.0), S::splat(2.0));
    let (n4, n5, n2) = (S::splat(-4.0), S::splat(-5.0), S::splat(-2.0));
    let d13 = S::sub(d[1], d[3]);
    let d42 = S::sub(d[4], d[2]);
    [
        S::fma(four, d[0], S::fma(n5, d[2], d[4])),
        S::fma(n4, S::add(d[1], d[2]), S::add(d[3], d[4])),
        S::fma(four, S::sub(d[1], d[2]), S::sub(d[4], d[3])),
        S::fma(n2, d13, d42),
        S::fma(two, d13, d42),
        S::fma(four, d[1], S::fma(n5, d[3], d[5])),
    ]
}

/// `A^T m` for one column `m` of six vectors (F(4x4, 3x3)).
#[inline(always)]
unsafe fn at4<S: Simd>(m: [S::V; 6]) -> [S::V; 4] {
    let (two, four, eight) = (S::splat(2.0), S::splat(4.0), S::splat(8.0));
    let (s12, d12) = (S::add(m[1], m[2]), S::sub(m[1], m[2]));
    let (s34, d34) = (S::add(m[3], m[4]), S::sub(m[3], m[4]));
    [
        S::add(S::add(m[0], s12), s34),
        S::fma(two, d34, d12),
        S::fma(four, s34, s12),
        S::add(S::fma(eight, d34, d12), m[5]),
    ]
}

/// `F e F^T` for a 6x6 patch and the 1-D transform `$f` (six vectors to `$r`): the columns
/// first, then the rows; `$load` gives patch value `$e` (`i * 6 + j`). A macro, not a
/// generic function taking closures: written that way the kernels ran 2.5x slower.
macro_rules! separable {
    ($S:ty, $r:literal, $f:ident, |$e:ident| $load:expr) => {{
        let mut t = [[<$S>::splat(0.0); 6]; $r];
        for j in 0..6 {
            let col = $f::<$S>(std::array::from_fn(|i| {
                let $e = i * 6 + j;
                $load
            }));
            for i in 0..$r {
                t[i][j] = col[i];
            }
        }
        let mut out = [[<$S>::splat(0.0); $r]; $r];
        for i in 0..$r {
            out[i] = $f::<$S>(t[i]);
        }
        out
    }};
}

#[inline(always)]
unsafe fn input_tile4_with<S: Simd>(d: &[*const f32; 36], dst: &[*mut f32; 36], cin: usize) {
    let mut c = 0;
    while c < cin {
        let k = S::mask(cin - c);
        let v = separable!(S, 6, bt4, |e| S::load_m(d[e].add(c), k));
        for i in 0..6 {
            for l in 0..6 {
                S::store_m(dst[i * 6 + l].add(c), v[i][l], k);
            }
        }
        c += S::LANES;
    }
}

#[inline(always)]
unsafe fn output_tile4_with<S: Simd>(
    m: &[*const f32; 36],
    dst: &[*mut f32; 16],
    cout: usize,
    bias: &[f32],
    act: Act,
) {
    let mut c = 0;
    while c < cout {
        let k = S::mask(cout - c);
        let b = S::load_m(bias.as_ptr().add(c), k);
        let y = separable!(S, 4, at4, |e| S::load_m(m[e].add(c), k));
        for (a, y) in y.iter().enumerate() {
            for bb in 0..4 {
                let p = dst[a * 4 + bb];
                if !p.is_null() {
                    S::store_m(p.add(c), S::act(S::add(y[bb], b), act), k);
                }
            }
        }
        c += S::LANES;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Act;
    use crate::simd::{Avx2, Avx512};
    use std::arch::x86_64::*;

    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as u16
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_tile(d: &[*const f32; 16], dst: [*mut f32; 16], cin: usize) {
        let mut c = 0;
        while c < cin {
            let k = mask(cin - c);
            let e: [__m512; 16] = std::array::from_fn(|i| _mm512_maskz_loadu_ps(k, d[i].add(c)));
            let mut r = [_mm512_setzero_ps(); 16];
            for j in 0..4 {
                r[j] = _mm512_sub_ps(e[j], e[8 + j]);
                r[4 + j] = _mm512_add_ps(e[4 + j], e[8 + j]);
                r[8 + j] = _mm512_sub_ps(e[8 + j], e[4 + j]);
                r[12 + j] = _mm512_sub_ps(e[4 + j], e[12 + j]);
            }
            for i in 0..4 {
                let row = &r[i * 4..i * 4 + 4];
                _mm512_mask_storeu_ps(dst[i * 4].add(c), k, _mm512_sub_ps(row[0], row[2]));
                _mm512_mask_storeu_ps(dst[i * 4 + 1].add(c), k, _mm512_add_ps(row[1], row[2]));
                _mm512_mask_storeu_ps(dst[i * 4 + 2].add(c), k, _mm512_sub_ps(row[2], row[1]));
                _mm512_mask_storeu_ps(dst[i * 4 + 3].add(c), k, _mm512_sub_ps(row[1], row[3]));
            }
            c += 16;
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_tile(
        m: &[*const f32; 16],
        dst: [*mut f32; 4],
        cout: usize,
        bias: *const f32,
        act: Act,
    ) {
        let mut c = 0;
        while c < cout {
            let k = mask(cout - c);
            let e: [__m512; 16] = std::array::from_fn(|i| _mm512_maskz_loadu_ps(k, m[i].add(c)));
            let b = _mm512_maskz_loadu_ps(k, bias.add(c));
            for a in 0..2 {
                let s: [__m512; 4] = std::array::from_fn(|j| {
                    if a == 0 {
                        _mm512_add_ps(_mm512_add_ps(e[j], e[4 + j]), e[8 + j])
                    } else {
                        _mm512_sub_ps(_mm512_sub_ps(e[4 + j], e[8 + j]), e[12 + j])
                    }
                });
                let y = [
                    _mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]),
                    _mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]),
                ];
                for (bb, &v) in y.iter().enumerate() {
                    let p = dst[a * 2 + bb];
                    if !p.is_null() {
                        let v = _mm512_add_ps(v, b);
                        let v = crate::simd::act512(v, act);
                        _mm512_mask_storeu_ps(p.add(c), k, v);
                    }
                }
            }
            c += 16;
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_tile4_512(d: &[*const f32; 36], dst: &[*mut f32; 36], cin: usize) {
        super::input_tile4_with::<Avx512>(d, dst, cin)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_tile4_256(d: &[*const f32; 36], dst: &[*mut f32; 36], cin: usize) {
        super::input_tile4_with::<Avx2>(d, dst, cin)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_tile4_512(
        m: &[*const f32; 36],
        dst: &[*mut f32; 16],
        cout: usize,
        bias: &[f32],
        act: Act,
    ) {
        super::output_tile4_with::<Avx512>(m, dst, cout, bias, act)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_tile4_256(
        m: &[*const f32; 36],
        dst: &[*mut f32; 16],
        cout: usize,
        bias: &[f32],
        act: Act,
    ) {
        super::output_tile4_with::<Avx2>(m, dst, cout, bias, act)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn grad_output_tile_512(
        g: &[*const f32; 4],
        dst: &[*mut f32; 16],
        cout: usize,
    ) {
        super::grad_output_tile_with::<Avx512>(g, dst, cout)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn grad_output_tile_256(
        g: &[*const f32; 4],
        dst: &[*mut f32; 16],
        cout: usize,
    ) {
        super::grad_output_tile_with::<Avx2>(g, dst, cout)
    }
}

#[cfg(test)]
mod grad_tile_tests {
    use super::*;

    /// The F(2x2) filter gradient's tile transform on every instruction set the machine has,
    /// against `A dY A^T` written out (a width with a partial vector at the end).
    #[test]
    fn grad_output_tile_is_a_dy_a_transposed() {
        let cout = 21;
        let g: Vec<Vec<f32>> = (0..4)
            .map(|j| {
                (0..cout)
                    .map(|c| ((c * 5 + j * 11) % 13) as f32 - 6.5)
                    .collect()
            })
            .collect();
        let a = [[1.0f32, 0.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]];
        for isa in Isa::all_supported() {
            let mut out = vec![vec![f32::NAN; cout]; 16];
            let src: [*const f32; 4] = std::array::from_fn(|j| g[j].as_ptr());
            let dst: [*mut f32; 16] = std::array::from_fn(|i| out[i].as_mut_ptr());
            // SAFETY: every row holds `cout` floats.
            unsafe { grad_output_tile(isa, &src, &dst, cout) };
            for c in 0..cout {
                for i in 0..4 {
                    for j in 0..4 {
                        let mut want = 0.0f32;
                        for p in 0..2 {
                            for q in 0..2 {
                                want += a[i][p] * g[p * 2 + q][c] * a[j][q];
                            }
                        }
                        assert_eq!(out[i * 4 + j][c], want, "{isa:?} plane {i},{j} channel {c}");
                    }
                }
            }
        }
    }
}
