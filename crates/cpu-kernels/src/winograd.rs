//! 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015): each 2x2 block of outputs
//! is `A^T [(G g G^T) . (B^T d B)] A` for its 4x4 input patch `d`, so the multiplies
//! become 16 GEMMs of `cin x cout` over the tiles, 2.25 times fewer than the direct
//! convolution's. Weights are transformed and packed once; inputs are gathered through
//! the same padded-cell tables as the direct path (zero, SAME or reflection padding,
//! nearest upsampling), in blocks of tiles that stay in L2 from input transform to
//! output. Rounding differs from the direct sum by a few ulps (transforms use only
//! additions and halvings).

// Index loops mirror the transform matrices.
#![allow(clippy::needless_range_loop)]

use crate::aligned::AlignedBuf;
use crate::conv::{SendPtr, ITEMS_PER_THREAD};
use crate::microkernel::{self, act_scalar, Act, Isa, Tile};
use crate::tensor::View;
use rayon::prelude::*;

/// Transformed, packed weights of one 3x3 convolution.
#[derive(Debug, Clone)]
pub(crate) struct Winograd {
    cin: usize,
    cout: usize,
    act: Act,
    panels: usize,
    /// `[16][panels][cin][nr]`.
    packed: AlignedBuf,
    bias: Vec<f32>,
}

impl Winograd {
    /// `hwio`: `[3][3][cin][cout]`.
    pub(crate) fn new(
        isa: Isa,
        hwio: &[f32],
        cin: usize,
        cout: usize,
        bias: Option<&[f32]>,
        act: Act,
    ) -> Winograd {
        let nr = isa.nr();
        let panels = cout.div_ceil(nr);
        let mut packed = AlignedBuf::zeros(16 * panels * cin * nr);
        let dst = packed.as_mut_slice();
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        for ci in 0..cin {
            for co in 0..cout {
                let g = |y: usize, x: usize| hwio[((y * 3 + x) * cin + ci) * cout + co] as f64;
                // U = G g G^T
                let mut gg = [[0f64; 3]; 4];
                for (i, row) in gg.iter_mut().enumerate() {
                    for (x, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|y| G[i][y] * g(y, x)).sum();
                    }
                }
                let (p, j) = (co / nr, co % nr);
                for i in 0..4 {
                    for l in 0..4 {
                        let u: f64 = (0..3).map(|x| gg[i][x] * G[l][x]).sum();
                        let xi = i * 4 + l;
                        dst[((xi * panels + p) * cin + ci) * nr + j] = u as f32;
                    }
                }
            }
        }
        Winograd {
            cin,
            cout,
            act,
            panels,
            packed,
            bias: bias.map_or_else(|| vec![0.0; cout], <[f32]>::to_vec),
        }
    }

    /// Number of 2x2 output tiles for an output of `ho x wo` over `n` images.
    pub(crate) fn tiles(n: usize, ho: usize, wo: usize) -> usize {
        n * ho.div_ceil(2) * wo.div_ceil(2)
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
        let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
        let total = x.n * th * tw;
        if total == 0 {
            return;
        }
        let ldm = self.panels * nr;
        let threads = rayon::current_num_threads().max(1);
        // Tiles per block: V and M of a block (16 * tb * (cin + ldm) floats) about 512 KiB,
        // and enough blocks for every thread.
        let tb_cache = (128 * 1024 / (16 * (cin + ldm))).max(mr);
        let tb_spread = total.div_ceil(ITEMS_PER_THREAD * threads).max(mr);
        let tb = tb_cache.min(tb_spread).div_ceil(mr) * mr;
        let blocks = total.div_ceil(tb);
        let out = SendPtr(out);
        let xbase = SendPtr(x.data.as_ptr().add(x.offset) as *mut f32);
        let packed = SendPtr(self.packed.as_slice().as_ptr() as *mut f32);
        let zero_bias = vec![0f32; nr];
        let zeros = vec![0f32; cin];
        let cell = |r: usize, len: &[i32]| -> i32 { len.get(r).copied().unwrap_or(-1) };

        let block = |bi: usize| {
            let t0 = bi * tb;
            let nt = tb.min(total - t0);
            let mut v = vec![0f32; 16 * tb * cin];
            let mut mbuf = vec![0f32; 16 * tb * ldm];
            // Input transform V[xi][t][c] = (B^T d B)[xi].
            for t in 0..nt {
                let tile = t0 + t;
                let (b, rem) = (tile / (th * tw), tile % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                let mut rows: [*const f32; 16] = [zeros.as_ptr(); 16];
                for i in 0..4 {
                    let sy = cell(2 * ty + i, ys);
                    for j in 0..4 {
                        let sx = cell(2 * tx + j, xs);
                        if sy >= 0 && sx >= 0 {
                            rows[i * 4 + j] = xbase
                                .get()
                                .add(((b * x.h + sy as usize) * x.w + sx as usize) * x.stride);
                        }
                    }
                }
                let dst: [*mut f32; 16] =
                    std::array::from_fn(|xi| v.as_mut_ptr().add((xi * tb + t) * cin));
                input_tile(isa, &rows, dst, cin);
            }
            // 16 GEMMs M[xi] = V[xi] U[xi].
            let groups = nt.div_ceil(mr);
            let mut ptrs: Vec<*const f32> = vec![zeros.as_ptr(); mr];
            for xi in 0..16 {
                for g in 0..groups {
                    for (r, p) in ptrs.iter_mut().enumerate() {
                        let t = g * mr + r;
                        *p = if t < nt {
                            v.as_ptr().add((xi * tb + t) * cin)
                        } else {
                            zeros.as_ptr()
                        };
                    }
                    for p in 0..self.panels {
                        let tile = Tile {
                            taps: 1,
                            kc: cin,
                            a: ptrs.as_ptr(),
                            b: packed.get().add((xi * self.panels + p) * cin * nr),
                            ldb: nr,
                            bias: zero_bias.as_ptr(),
                            c: mbuf.as_mut_ptr().add((xi * tb + g * mr) * ldm + p * nr),
                            ldc: ldm,
                            rows: (nt - g * mr).min(mr),
                            cols: nr,
                            act: Act::Identity,
                            stream: false,
                            res: std::ptr::null(),
                            ldr: 0,
                        };
                        microkernel::run(isa, &tile);
                    }
                }
            }
            // Output transform Y = A^T M A, bias, activation.
            for t in 0..nt {
                let tile = t0 + t;
                let (b, rem) = (tile / (th * tw), tile % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                let src: [*const f32; 16] =
                    std::array::from_fn(|xi| mbuf.as_ptr().add((xi * tb + t) * ldm));
                let (oy, ox) = (2 * ty, 2 * tx);
                let (ny, nx) = ((ho - oy).min(2), (wo - ox).min(2));
                let mut dst: [*mut f32; 4] = [std::ptr::null_mut(); 4];
                for a in 0..ny {
                    for bb in 0..nx {
                        dst[a * 2 + bb] = out.get().add(((b * ho + oy + a) * wo + ox + bb) * ldc);
                    }
                }
                output_tile(isa, &src, dst, cout, &self.bias, self.act);
            }
        };
        if blocks == 1 || threads == 1 {
            (0..blocks).for_each(block);
        } else {
            (0..blocks).into_par_iter().for_each(block);
        }
    }
}

/// `dst[xi][c] = (B^T d B)[xi]` for the 4x4 patch `d[i * 4 + j][c]`, `c < cin`.
unsafe fn input_tile(isa: Isa, d: &[*const f32; 16], dst: [*mut f32; 16], cin: usize) {
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Act;
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
}
