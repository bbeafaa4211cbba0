//! Depthwise 2-D convolution on NHWC tensors (TensorFlow's `DepthwiseConv2dNative`), the
//! spatial filter of MobileNet / EfficientNet blocks.
//!
//! Output channel `o = c * M + m` (depth multiplier `M`) is input channel `c` filtered by
//! its own `kh x kw` kernel. The kernels run SIMD over output channels (16 lanes on
//! AVX-512, 8 on AVX2 and portable), one output row per call: a tile of up to 4 vectors
//! of channels sweeps the row 4 pixels at a time, one FMA per pixel, vector and tap,
//! bias and activation fused into the store. Interior pixels address their taps from one
//! pointer per tap (plus the pixel's offset); with stride 1 and no horizontal dilation,
//! 3- and 5-wide kernels load each input column of a 4-pixel group once per kernel row.
//! Pixels whose taps reach into horizontal padding get one pointer per tap (to the input
//! or to zeros), and kernel rows in vertical padding read a row of zeros, so padding
//! costs no branches. With `M > 1` the input is first copied once with every channel
//! repeated `M` times, which makes it `M = 1`. Weights are packed once, per vector of
//! channels and tap. Output rows are spread over rayon's pool.

use crate::aligned::AlignedBuf;
use crate::conv::{ConvGeometry, Padding, SendPtr};
use crate::microkernel::{Act, Isa};
use crate::simd::{self, Simd};
use crate::tensor::{Nhwc, Slot, View};
use rayon::prelude::*;

/// Geometry of a depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthwiseGeometry {
    pub kh: usize,
    pub kw: usize,
    /// Input channels `C`.
    pub channels: usize,
    /// Depth multiplier `M`: output channels per input channel.
    pub multiplier: usize,
    /// `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// `[vertical, horizontal]` dilation rates (1 = none); the kernel spans
    /// `(k - 1) * d + 1` input cells.
    pub dilation: [usize; 2],
    /// Zero padding modes as for [`Conv2d`](crate::Conv2d): `Valid`, `Same` (TensorFlow:
    /// the odd cell at the bottom / right, computed on the dilated kernel), explicit
    /// `Zero`; `Reflect` works too.
    pub padding: Padding,
}

impl DepthwiseGeometry {
    /// A `kh x kw` depthwise convolution over `channels` channels: multiplier 1, stride 1,
    /// no dilation, VALID.
    pub fn new(kh: usize, kw: usize, channels: usize) -> Self {
        DepthwiseGeometry {
            kh,
            kw,
            channels,
            multiplier: 1,
            stride: [1, 1],
            dilation: [1, 1],
            padding: Padding::Valid,
        }
    }

    pub fn multiplier(mut self, m: usize) -> Self {
        self.multiplier = m;
        self
    }

    /// The same stride along both axes (set the field for different ones).
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }

    /// The same dilation along both axes (set the field for different ones).
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }

    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }

    /// Output channels, `channels * multiplier`.
    pub fn cout(&self) -> usize {
        self.channels * self.multiplier
    }

    /// The padding/output arithmetic is that of a dense convolution with the dilated
    /// kernel's extent.
    pub(crate) fn extent(&self) -> ConvGeometry {
        ConvGeometry::new(
            (self.kh - 1) * self.dilation[0] + 1,
            (self.kw - 1) * self.dilation[1] + 1,
            self.channels,
        )
        .padding(self.padding)
        .strides(self.stride)
    }

    /// Output `(height, width)` for an input of `h x w`, or `None` when it is too small.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        self.extent().output_hw(h, w)
    }
}

/// A depthwise convolution with its weights packed for the kernels of one [`Isa`].
#[derive(Debug, Clone)]
pub struct DepthwiseConv2d {
    geometry: DepthwiseGeometry,
    isa: Isa,
    act: Act,
    /// `[blocks][kh * kw][lanes]`, zero beyond the last output channel.
    packed: AlignedBuf,
    /// `blocks * lanes` biases.
    bias: Vec<f32>,
}

/// Multiply-adds below which a convolution runs on the calling thread.
const PARALLEL_ABOVE: usize = 1 << 16;

impl DepthwiseConv2d {
    /// Packs a TensorFlow depthwise filter `[kh][kw][C][M]` (flattened; output channel
    /// `c * M + m`), an optional bias per output channel (`C * M`) and the activation
    /// after it, for the best kernels of this CPU.
    pub fn new(
        geometry: DepthwiseGeometry,
        filter: &[f32],
        bias: Option<&[f32]>,
        act: Act,
    ) -> DepthwiseConv2d {
        Self::with_isa(Isa::detect(), geometry, filter, bias, act)
    }

    /// Like [`DepthwiseConv2d::new`] for a given instruction set (must be supported).
    pub fn with_isa(
        isa: Isa,
        geometry: DepthwiseGeometry,
        filter: &[f32],
        bias: Option<&[f32]>,
        act: Act,
    ) -> DepthwiseConv2d {
        assert!(
            isa.is_supported(),
            "{isa:?} kernels are not supported by this CPU"
        );
        let g = &geometry;
        assert!(g.kh > 0 && g.kw > 0 && g.channels > 0 && g.multiplier > 0);
        assert!(g.stride[0] > 0 && g.stride[1] > 0);
        assert!(g.dilation[0] > 0 && g.dilation[1] > 0);
        let (taps, cout) = (g.kh * g.kw, g.cout());
        assert_eq!(filter.len(), taps * cout, "filter must be [kh, kw, C, M]");
        if let Some(b) = bias {
            assert_eq!(b.len(), cout, "bias length");
        }
        let lanes = match isa {
            Isa::Avx512 => simd::Avx512::LANES,
            Isa::Avx2 => simd::Avx2::LANES,
            Isa::Portable => simd::Portable::LANES,
        };
        let blocks = cout.div_ceil(lanes);
        let mut packed = AlignedBuf::zeros(blocks * taps * lanes);
        let dst = packed.as_mut_slice();
        for o in 0..cout {
            let (blk, j) = (o / lanes, o % lanes);
            for t in 0..taps {
                dst[(blk * taps + t) * lanes + j] = filter[t * cout + o];
            }
        }
        let mut b = vec![0f32; blocks * lanes];
        if let Some(bias) = bias {
            b[..cout].copy_from_slice(bias);
        }
        DepthwiseConv2d {
            geometry,
            isa,
            act,
            packed,
            bias: b,
        }
    }

    pub fn geometry(&self) -> &DepthwiseGeometry {
        &self.geometry
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Output channels, `C * M`.
    pub fn cout(&self) -> usize {
        self.geometry.cout()
    }

    /// Output `(height, width)` for an input of `h x w`, or `None` when it is too small.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        self.geometry.output_hw(h, w)
    }

    /// Runs the convolution into a new `[n, ho, wo, C * M]` tensor.
    ///
    /// Panics when `x` has other than `C` channels or is too small (check sizes with
    /// [`DepthwiseConv2d::output_hw`] first).
    pub fn forward(&self, x: View) -> Nhwc {
        let (ho, wo) = self
            .output_hw(x.h, x.w)
            .expect("input too small for the convolution");
        let cout = self.cout();
        // SAFETY: `run` writes all n * ho * wo pixels of `cout` floats through the pointer.
        unsafe { Nhwc::filled_by(x.n, ho, wo, cout, |dst| self.run(x, dst, cout)) }
    }

    /// Runs the convolution into `out` (`[n, ho, wo, C * M]`, possibly a channel slice
    /// of a wider tensor; its other channels are left alone).
    pub fn forward_into(&self, x: View, out: &mut Slot) {
        let (ho, wo) = self
            .output_hw(x.h, x.w)
            .expect("input too small for the convolution");
        out.check();
        assert_eq!(
            (out.n, out.h, out.w, out.c),
            (x.n, ho, wo, self.cout()),
            "output slot shape"
        );
        // SAFETY: the slot is an exclusive borrow, checked for size above.
        unsafe { self.run(x, out.base(), out.stride) };
    }

    /// # Safety
    /// `dst` must be valid for writes of `n * ho * wo` rows of `C * M` floats, `ldc`
    /// floats apart.
    unsafe fn run(&self, x: View, dst: *mut f32, ldc: usize) {
        unsafe { self.run_as(&self.geometry, x, dst, ldc, true) }
    }

    /// [`DepthwiseConv2d::run`] with the padding of `g` (any geometry with this one's
    /// kernel, channels and multiplier), on the calling thread unless `parallel`.
    ///
    /// # Safety
    /// As [`DepthwiseConv2d::run`], for the output size of `g`.
    pub(crate) unsafe fn run_as(
        &self,
        g: &DepthwiseGeometry,
        x: View,
        dst: *mut f32,
        ldc: usize,
        parallel: bool,
    ) {
        debug_assert!(
            (g.kh, g.kw, g.channels, g.multiplier)
                == (
                    self.geometry.kh,
                    self.geometry.kw,
                    self.geometry.channels,
                    self.geometry.multiplier
                )
        );
        x.check();
        assert_eq!(x.c, g.channels, "input channels");
        let (ho, wo) = g.output_hw(x.h, x.w).expect("input too small");
        if x.n * ho * wo == 0 {
            return;
        }
        let e = g.extent();
        let (ys, xs) = e.padded_cells(x.h, x.w);
        let cout = g.cout();
        let mm = g.multiplier;
        // With M > 1: the input with every channel repeated M times.
        let expanded: Vec<f32> = if mm > 1 {
            let mut v = vec![0f32; x.n * x.h * x.w * cout];
            v.par_chunks_mut(x.w * cout)
                .enumerate()
                .for_each(|(r, row)| {
                    let (b, y) = (r / x.h, r % x.h);
                    for (xx, px) in row.chunks_exact_mut(cout).enumerate() {
                        for (c, &val) in x.pixel(b, y, xx).iter().enumerate() {
                            px[c * mm..(c + 1) * mm].fill(val);
                        }
                    }
                });
            v
        } else {
            Vec::new()
        };
        let (xbase, xstride) = if mm > 1 {
            (SendPtr(expanded.as_ptr() as *mut f32), cout)
        } else {
            (SendPtr(x.data.as_ptr().add(x.offset) as *mut f32), x.stride)
        };
        let dst = SendPtr(dst);
        let (kh, kw) = (g.kh, g.kw);
        let taps = kh * kw;
        let ([sy, sx], [dh, dw]) = (g.stride, g.dilation);
        // Zeros for the taps in padding: a whole input row (rows of padding read it like
        // an input row), at least one padded channel vector.
        let zeros = vec![0f32; (x.w * xstride).max(self.bias.len())];
        let zero = SendPtr(zeros.as_ptr() as *mut f32);
        // Interior pixels: those whose taps along x read input columns
        // `ox * sx + x0 + dx * dw`, all inside the input (not padding, not reflected), for
        // the `x0` of the first such pixel; they are a range `lo .. hi`.
        let shift = |ox: usize| xs[ox * sx] as isize - (ox * sx) as isize;
        let linear = |ox: usize, x0: isize| {
            (0..kw).all(|dx| {
                let c = ox * sx + dx * dw;
                xs[c] >= 0 && xs[c] as isize == c as isize + x0
            })
        };
        let lo = (0..wo)
            .find(|&ox| xs[ox * sx] >= 0 && linear(ox, shift(ox)))
            .unwrap_or(wo);
        let x0 = if lo < wo { shift(lo) } else { 0 };
        let hi = (lo..wo).find(|&ox| !linear(ox, x0)).unwrap_or(wo);
        // The interior's last (hi - lo) % 4 pixels join the edges' pointer lists, which
        // run 4 pixels at a time too.
        let hi = lo + (hi - lo) / 4 * 4;
        let edges: Vec<usize> = (0..lo).chain(hi..wo).collect();
        let (isa, act) = (self.isa, self.act);
        let packed = SendPtr(self.packed.as_slice().as_ptr() as *mut f32);
        let bias = SendPtr(self.bias.as_ptr() as *mut f32);
        let row = |(tp, ep): &mut (Vec<*const f32>, Vec<*const f32>), r: usize| {
            let (b, oy) = (r / ho, r % ho);
            let row_ptr = |dy: usize| {
                let py = ys[oy * sy + dy * dh];
                (py >= 0).then(|| xbase.get().add((b * x.h + py as usize) * x.w * xstride))
            };
            tp.clear();
            for dy in 0..kh {
                let base = row_ptr(dy).unwrap_or(zero.get());
                for dx in 0..kw {
                    let col = x0 + (dx * dw) as isize;
                    tp.push(base.wrapping_offset(col * xstride as isize) as *const f32);
                }
            }
            ep.clear();
            for &ox in &edges {
                for dy in 0..kh {
                    let base = row_ptr(dy);
                    for dx in 0..kw {
                        let px = xs[ox * sx + dx * dw];
                        ep.push(match base {
                            Some(p) if px >= 0 => p.add(px as usize * xstride),
                            _ => zero.get(),
                        });
                    }
                }
            }
            let args = Row {
                taps,
                tp: tp.as_ptr(),
                step: sx * xstride,
                xstride,
                kw,
                dw,
                lo,
                hi,
                edge: edges.as_ptr(),
                ep: ep.as_ptr(),
                edges: edges.len(),
                w: packed.get(),
                bias: bias.get(),
                c: dst.get().add(r * wo * ldc),
                ldc,
                cout,
                act,
            };
            run_row(isa, &args);
        };
        let rows = x.n * ho;
        if !parallel || rows == 1 || rows * wo * taps * cout < PARALLEL_ABOVE {
            let mut bufs = Default::default();
            (0..rows).for_each(|r| row(&mut bufs, r));
        } else {
            (0..rows)
                .into_par_iter()
                .for_each_init(Default::default, row);
        }
    }
}

/// Arguments of one output row.
struct Row {
    taps: usize,
    /// Interior pixels `lo .. hi` (a multiple of 4 of them) read tap `t` at
    /// `tp[t] + p * step` (`p` the pixel's index in the row; `tp` computed with wrapping
    /// arithmetic, valid for those pixels).
    tp: *const *const f32,
    step: usize,
    /// Floats between input pixels; kernel width and horizontal dilation.
    xstride: usize,
    kw: usize,
    dw: usize,
    lo: usize,
    hi: usize,
    /// The other pixels (those reaching into padding and the interior's last
    /// `(hi - lo) % 4`), `edge[e]`, read tap `t` at `ep[e * taps + t]`.
    edge: *const usize,
    ep: *const *const f32,
    edges: usize,
    /// `[blocks][taps][LANES]` weights.
    w: *const f32,
    /// `blocks * LANES` biases.
    bias: *const f32,
    /// Pixel `p` of the row starts at `c + p * ldc`.
    c: *mut f32,
    ldc: usize,
    cout: usize,
    act: Act,
}

/// # Safety
/// `isa` must be supported; the pointers of `r` valid as documented on [`Row`], each
/// input pointer for `cout` floats.
unsafe fn run_row(isa: Isa, r: &Row) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => row_avx512(r),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => row_avx2(r),
        _ => row_generic::<simd::Portable>(r),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_avx512(r: &Row) {
    row_generic::<simd::Avx512>(r)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(r: &Row) {
    row_generic::<simd::Avx2>(r)
}

/// Tiles are up to 4 pixels x `N` vectors of channels: enough independent accumulators
/// to keep the FMA units busy, and `N * LANES` contiguous channels per pixel and tap for
/// the prefetchers. `N` = 4 with 32 registers (AVX-512), 2 with 16.
#[inline(always)]
unsafe fn row_generic<S: Simd>(r: &Row) {
    // Stride 1 without dilation along x: the 4 pixels' taps share input columns.
    match (r.step == r.xstride && r.dw == 1, r.kw) {
        (true, 3) => tiles::<S, 3>(r),
        (true, 5) => tiles::<S, 5>(r),
        _ => tiles::<S, 0>(r),
    }
}

#[inline(always)]
unsafe fn tiles<S: Simd, const KW: usize>(r: &Row) {
    let vectors = r.cout.div_ceil(S::LANES);
    let full = r.cout / S::LANES;
    let mut v = 0;
    if S::LANES >= 16 {
        while v + 4 <= full {
            tile::<S, 4, KW, false>(r, v);
            v += 4;
        }
    }
    while v + 2 <= full {
        tile::<S, 2, KW, false>(r, v);
        v += 2;
    }
    if v < full {
        tile::<S, 1, KW, false>(r, v);
        v += 1;
    }
    if v < vectors {
        tile::<S, 1, KW, true>(r, v);
    }
}

/// Channels `v * LANES ..` (`N` vectors) over the row; `TAIL`: the one vector is the last,
/// partial one (masked loads and stores). `KW` > 0: the row's kernel is `KW` wide at
/// stride 1 without dilation, so groups of 4 interior pixels load each of their
/// `KW + 3` input columns once per kernel row and vector. (Macros, not closures: a closure is a function
/// of its own, compiled without the caller's target features, and would not inline the
/// intrinsics.)
#[inline(always)]
#[allow(clippy::needless_range_loop)] // the loops index several arrays alike
unsafe fn tile<S: Simd, const N: usize, const KW: usize, const TAIL: bool>(r: &Row, v: usize) {
    let taps = r.taps;
    let c0 = v * S::LANES;
    let m = S::mask(r.cout - c0);
    macro_rules! load {
        ($p:expr) => {
            if TAIL {
                S::load_m($p, m)
            } else {
                S::load($p)
            }
        };
    }
    macro_rules! store {
        ($p:expr, $v:expr) => {{
            let v = S::act($v, r.act);
            if TAIL {
                S::store_m($p, v, m)
            } else {
                S::store($p, v)
            }
        }};
    }
    // Vector j of tap t: w + (j * taps + t) * LANES.
    let w = r.w.add(v * taps * S::LANES);
    let wstride = taps * S::LANES;
    let bias: [S::V; N] = std::array::from_fn(|j| S::load(r.bias.add(c0 + j * S::LANES)));
    let step = r.step;
    debug_assert_eq!((r.hi - r.lo) % 4, 0);
    let mut p = r.lo;
    while KW > 0 && p + 4 <= r.hi {
        let mut acc = [bias; 4];
        for dy in 0..taps / KW {
            let t0 = dy * KW;
            let a = (*r.tp.add(t0)).wrapping_add(p * step + c0);
            for j in 0..N {
                let wv: [S::V; KW] =
                    std::array::from_fn(|dx| S::load(w.add(j * wstride + (t0 + dx) * S::LANES)));
                // Input column i feeds pixel i - dx through tap dx.
                for i in 0..KW + 3 {
                    let x = load!(a.add(i * step + j * S::LANES));
                    for dx in 0..KW {
                        if i >= dx && i - dx < 4 {
                            acc[i - dx][j] = S::fma(x, wv[dx], acc[i - dx][j]);
                        }
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let c = r.c.add((p + i) * r.ldc + c0);
            for (j, &a) in acc.iter().enumerate() {
                store!(c.add(j * S::LANES), a);
            }
        }
        p += 4;
    }
    while p + 4 <= r.hi {
        let mut acc = [bias; 4];
        for t in 0..taps {
            let a = (*r.tp.add(t)).wrapping_add(p * step + c0);
            for j in 0..N {
                let wv = S::load(w.add(j * wstride + t * S::LANES));
                for (i, acc) in acc.iter_mut().enumerate() {
                    acc[j] = S::fma(load!(a.add(i * step + j * S::LANES)), wv, acc[j]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let c = r.c.add((p + i) * r.ldc + c0);
            for (j, &a) in acc.iter().enumerate() {
                store!(c.add(j * S::LANES), a);
            }
        }
        p += 4;
    }
    // Pointer-addressed pixels, 4 at a time too (a short group repeats its first pixel,
    // computed but not stored).
    let mut e = 0;
    while e < r.edges {
        let n = (r.edges - e).min(4);
        let ap: [*const *const f32; 4] =
            std::array::from_fn(|i| r.ep.add((e + if i < n { i } else { 0 }) * taps));
        let mut acc = [bias; 4];
        for t in 0..taps {
            for j in 0..N {
                let wv = S::load(w.add(j * wstride + t * S::LANES));
                for i in 0..4 {
                    let a = (*ap[i].add(t)).add(c0 + j * S::LANES);
                    acc[i][j] = S::fma(load!(a), wv, acc[i][j]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate().take(n) {
            let c = r.c.add(*r.edge.add(e + i) * r.ldc + c0);
            for (j, &a) in acc.iter().enumerate() {
                store!(c.add(j * S::LANES), a);
            }
        }
        e += 4;
    }
}
