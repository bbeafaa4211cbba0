//! 2-D convolution on NHWC tensors as an indirect GEMM with weights packed once.
//!
//! Rows of the GEMM are output pixels (`n * ho * wo`), columns output channels, and the
//! reduction runs over kernel taps and input channels. For every group of `MR` output
//! pixels and every tap the driver computes one pointer per pixel into the input (or to
//! a zero vector where the tap falls into zero padding); reflection padding and nearest
//! upsampling only change which input pixel a pointer names. Inputs with few channels
//! (`< 16`) are first copied once into a padded (and upsampled) image, so that the taps of
//! one kernel row are contiguous and the reduction runs over `kw * cin` floats per pointer
//! instead of `cin`.
//!
//! Several convolutions with the same input and kernel geometry can be packed into one
//! [`Conv2d`] as *segments* (e.g. the sibling 1x1 convs of an Inception block): one pass
//! over the input computes all of them, and each segment writes to its own output slot
//! with its own bias and activation.

use crate::aligned::AlignedBuf;
use crate::microkernel::{self, Act, DotTile, Isa, Tile, DOT_OUTS};
use crate::tensor::{Nhwc, Slot, View};
use crate::winograd::Winograd;
use crate::winograd_line::{LineAxis, WinogradLine};
use rayon::prelude::*;

/// How the input is padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// No padding.
    Valid,
    /// TensorFlow `SAME`: output `ceil(in / stride)`, zero padding split with the odd
    /// cell at the bottom / right.
    Same,
    /// Explicit zero padding `[top, bottom, left, right]`.
    Zero([usize; 4]),
    /// TensorFlow `REFLECT` padding by this many cells on every side (must be smaller
    /// than the input side).
    Reflect(usize),
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kh: usize,
    pub kw: usize,
    pub cin: usize,
    pub stride: [usize; 2],
    pub padding: Padding,
    /// Nearest-neighbour upsampling factor applied to the input before padding (1 = none).
    pub upsample: usize,
}

impl ConvGeometry {
    /// A stride-1, unpadded, non-upsampling `kh x kw` convolution over `cin` channels.
    pub fn new(kh: usize, kw: usize, cin: usize) -> Self {
        ConvGeometry {
            kh,
            kw,
            cin,
            stride: [1, 1],
            padding: Padding::Valid,
            upsample: 1,
        }
    }

    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }

    /// Different strides `[vertical, horizontal]`.
    pub fn strides(mut self, s: [usize; 2]) -> Self {
        self.stride = s;
        self
    }

    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }

    pub fn upsample(mut self, u: usize) -> Self {
        self.upsample = u;
        self
    }

    /// Rows of the reduction, `kh * kw * cin`.
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// `(pad_before, output)` along one axis of input length `len`, or `None` if the
    /// input is too small.
    pub(crate) fn axis(
        &self,
        len: usize,
        k: usize,
        s: usize,
        pads: (usize, usize),
    ) -> Option<(usize, usize)> {
        let len = len * self.upsample;
        if len == 0 {
            return None;
        }
        match self.padding {
            Padding::Valid => (len >= k).then(|| (0, (len - k) / s + 1)),
            Padding::Same => {
                let out = len.div_ceil(s);
                let total = ((out - 1) * s + k).saturating_sub(len);
                Some((total / 2, out))
            }
            Padding::Zero(_) => {
                let l = len + pads.0 + pads.1;
                (l >= k).then(|| (pads.0, (l - k) / s + 1))
            }
            Padding::Reflect(p) => {
                let l = len + 2 * p;
                (p < len && l >= k).then(|| (p, (l - k) / s + 1))
            }
        }
    }

    /// Output `(height, width)` for an input of `h x w`, or `None` when it is too small.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (zh, zw) = self.zero_pads();
        let (_, ho) = self.axis(h, self.kh, self.stride[0], zh)?;
        let (_, wo) = self.axis(w, self.kw, self.stride[1], zw)?;
        Some((ho, wo))
    }

    /// Explicit zero padding `((top, bottom), (left, right))`; zeros for the other modes.
    pub(crate) fn zero_pads(&self) -> ((usize, usize), (usize, usize)) {
        match self.padding {
            Padding::Zero([t, b, l, r]) => ((t, b), (l, r)),
            _ => ((0, 0), (0, 0)),
        }
    }

    /// The padded-cell tables ([`ConvGeometry::padded_sources`]) of both axes of an
    /// `h x w` input (which must not be too small).
    pub(crate) fn padded_cells(&self, h: usize, w: usize) -> (Vec<i32>, Vec<i32>) {
        let (zh, zw) = self.zero_pads();
        (
            self.padded_sources(h, self.kh, self.stride[0], zh),
            self.padded_sources(w, self.kw, self.stride[1], zw),
        )
    }

    /// For every cell of the padded (and upsampled) input along one axis, the source
    /// index in the input, or -1 for zero padding. Cell `o * s + d` is what output `o`
    /// reads at kernel offset `d`.
    fn padded_sources(&self, len: usize, k: usize, s: usize, pads: (usize, usize)) -> Vec<i32> {
        let (before, out) = self.axis(len, k, s, pads).expect("checked by the caller");
        let up_len = (len * self.upsample) as isize;
        (0..(out - 1) * s + k)
            .map(|c| {
                let mut i = c as isize - before as isize;
                if let Padding::Reflect(_) = self.padding {
                    if i < 0 {
                        i = -i;
                    } else if i >= up_len {
                        i = 2 * (up_len - 1) - i;
                    }
                }
                if i < 0 || i >= up_len {
                    -1
                } else {
                    (i as usize / self.upsample) as i32
                }
            })
            .collect()
    }
}

/// Weights of one segment: HWIO `[kh][kw][cin][cout]` flattened (TensorFlow's layout),
/// a bias per output channel and the activation after it.
#[derive(Debug, Clone)]
pub struct ConvWeights<'a> {
    pub hwio: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub cout: usize,
    pub act: Act,
}

#[derive(Debug, Clone)]
struct Segment {
    cout: usize,
    first_panel: usize,
    panels: usize,
    act: Act,
}

/// A convolution with its weights packed for the kernels of one [`Isa`].
#[derive(Debug, Clone)]
pub struct Conv2d {
    geometry: ConvGeometry,
    isa: Isa,
    segments: Vec<Segment>,
    /// `panels * k * nr` floats.
    packed: AlignedBuf,
    /// `panels * nr` biases.
    bias: Vec<f32>,
    /// `panels * nr` scales and shifts applied after the bias, before the activation
    /// ([`Conv2d::with_channel_affine`]; the Winograd forms hold their own).
    affine: Option<(Vec<f32>, Vec<f32>)>,
    /// Run over a padded copy of the input, one pointer per kernel row (see module docs).
    padded_rows: bool,
    /// For convolutions with at most `DOT_OUTS` outputs in one segment: weights
    /// `[DOT_OUTS][k]` and biases for the dot kernels, used instead of the panels.
    dot: Option<(Vec<f32>, Vec<f32>)>,
    /// For single-segment 3x3 stride-1 convolutions: the Winograd F(2x2, 3x3) or F(4x4,
    /// 3x3) weights, used when the output has at least `WINOGRAD_MIN_PIXELS` pixels' worth
    /// of tiles.
    winograd: Option<Winograd>,
    /// For single-segment stride-1 convolutions at least 3 taps wide without a 2-D Winograd
    /// form ([`Conv2d::with_line_winograd`], inference's constructors): the one-dimensional
    /// Winograd form, used from `WINOGRAD_MIN_PIXELS` output pixels' worth of tiles.
    line: Option<WinogradLine>,
}

/// Input channels below which a kernel wider than 1 runs over a padded copy of the input
/// (measured: a clear gain at 3 channels, a loss at 32).
const PADDED_ROWS_BELOW: usize = 16;

/// Output pixels (counted over whole tiles) from which a 3x3 stride-1 convolution runs
/// by Winograd: 64 tiles of 2x2.
const WINOGRAD_MIN_PIXELS: usize = 256;

/// The output tile side of the Winograd form [`Conv2d::new`] builds.
const WINOGRAD_TILE: usize = 4;

/// Output bytes from which full, line-aligned tile rows are stored non-temporally: far
/// beyond the caches, a store that misses first reads the line it will overwrite (measured
/// on a 1x1 convolution writing 77 MB: 80 -> 140 GFLOP/s).
const STREAM_MIN_BYTES: usize = 16 << 20;

/// Bytes of packed weights up to which a chunk's rows run over all panels in turn.
const ROWS_OUTER_MAX_WEIGHTS: usize = 32 * 1024;

/// Inputs up to this size (bytes) are read in few row chunks, the panels split instead
/// (see `Conv2d::run`).
const SMALL_INPUT_BYTES: usize = 1 << 20;

/// Reductions from this long (`kh * kw * cin`) over more than [`BLOCKED_MIN_WEIGHT_BYTES`] of
/// packed weights run in blocks of the reduction (`Conv2d::run`). Measured at batch 12 (`cargo
/// bench -p cpu-kernels --bench train_conv`, the fastest of alternating runs): Inception's
/// 3x3 stride-2 288 -> 384 (2,592 long, 4 MB of weights) forward ~42 -> ~32 ms, the 8x8 1x1
/// 2048 -> 448 ~10.5 -> ~8.8 ms; 1280 -> 320 and 768 -> 192 no faster.
const BLOCKED_MIN_REDUCTION: usize = 1536;
/// Packed weight bytes beyond which a long reduction is blocked (they no longer stay in L2
/// between groups of rows).
const BLOCKED_MIN_WEIGHT_BYTES: usize = 1 << 20;
/// Reduction rows per block at most (whole taps when a tap's channels fit): a block of a
/// 32-wide panel, 40 KB, stays in L1.
const REDUCTION_BLOCK: usize = 320;
/// Input floats a blocked chunk's rows read (about 1 MB, in L2).
const BLOCKED_CHUNK_FLOATS: usize = 256 * 1024;

/// Work items per thread below which the output channels are split too.
pub(crate) const ITEMS_PER_THREAD: usize = 4;

/// A residual added in the tiles' epilogue: pixel `p` at `base + p * stride`.
struct Residual {
    base: SendPtr<f32>,
    stride: usize,
    act: Act,
}

/// A raw pointer the worker threads share (each writes its own part of the target).
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// (A method, so closures capture the wrapper, not the raw field.)
    #[inline(always)]
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

/// Packs a `k x n` matrix, element `(kk, j)` at `src[at + kk * row + j * col]`, into
/// `n.div_ceil(nr)` panels of `k` rows of `nr` columns (`dst`, zeroed beyond column `n`),
/// reading along whichever of the source's axes is contiguous; panels in parallel when the
/// matrix is large (the training step packs every filter on every call).
fn pack_panels(
    dst: &mut [f32],
    nr: usize,
    (k, n): (usize, usize),
    src: &[f32],
    (at, row, col): (usize, usize, usize),
) {
    let panel = |(p, dst): (usize, &mut [f32])| {
        let j0 = p * nr;
        let width = nr.min(n - j0);
        if col == 1 {
            for kk in 0..k {
                let s = at + kk * row + j0;
                dst[kk * nr..][..width].copy_from_slice(&src[s..s + width]);
            }
        } else if col <= row {
            for kk in 0..k {
                for jj in 0..width {
                    dst[kk * nr + jj] = src[at + kk * row + (j0 + jj) * col];
                }
            }
        } else {
            for jj in 0..width {
                let first = at + (j0 + jj) * col;
                for kk in 0..k {
                    dst[kk * nr + jj] = src[first + kk * row];
                }
            }
        }
    };
    let dst = &mut dst[..n.div_ceil(nr) * k * nr];
    if k * n >= PARALLEL_PACK {
        dst.par_chunks_mut(k * nr).enumerate().for_each(panel);
    } else {
        dst.chunks_mut(k * nr).enumerate().for_each(panel);
    }
}

/// Matrices of at least this many elements are packed in parallel.
const PARALLEL_PACK: usize = 1 << 16;

impl Conv2d {
    /// Packs `segments` (all with the geometry's `kh * kw * cin` rows) for the best
    /// kernels of this CPU.
    pub fn new(geometry: ConvGeometry, segments: &[ConvWeights]) -> Conv2d {
        Self::with_isa(Isa::detect(), geometry, segments)
    }

    /// [`Conv2d::new`] without the Winograd form of a 3x3 convolution (whose transformed
    /// weights [`Conv2d::without_winograd`] would build only to drop): for weights used once,
    /// as a training step's are.
    pub fn new_direct(geometry: ConvGeometry, segments: &[ConvWeights]) -> Conv2d {
        Self::build(Isa::detect(), geometry, segments, None, false)
    }

    /// Like [`Conv2d::new_direct`], but a single-segment stride-1 convolution `r` >= 3 taps
    /// wide (`1 x r`, `r x 1` along the height, or `kh x r` one line per kernel row) runs by
    /// the one-dimensional Winograd F(3, 3) of `winograd_line` where the output is large
    /// enough: 1.6x fewer multiplies for 1x7, 1.36x for 5x5.
    pub fn with_line_winograd(
        isa: Isa,
        geometry: ConvGeometry,
        segments: &[ConvWeights],
    ) -> Conv2d {
        Self::build(isa, geometry, segments, None, true)
    }

    /// Like [`Conv2d::new`] for a given instruction set (must be supported).
    pub fn with_isa(isa: Isa, geometry: ConvGeometry, segments: &[ConvWeights]) -> Conv2d {
        Self::build(isa, geometry, segments, Some(WINOGRAD_TILE), true)
    }

    /// Like [`Conv2d::with_isa`], a 3x3 stride-1 convolution taking Winograd with output
    /// tiles of `tile x tile` (2 or 4) where it takes Winograd at all.
    pub fn with_winograd_tile(
        isa: Isa,
        geometry: ConvGeometry,
        segments: &[ConvWeights],
        tile: usize,
    ) -> Conv2d {
        assert!(tile == 2 || tile == 4, "Winograd tiles are 2x2 or 4x4");
        Self::build(isa, geometry, segments, Some(tile), false)
    }

    fn build(
        isa: Isa,
        geometry: ConvGeometry,
        segments: &[ConvWeights],
        winograd: Option<usize>,
        line: bool,
    ) -> Conv2d {
        assert!(
            isa.is_supported(),
            "{isa:?} kernels are not supported by this CPU"
        );
        assert!(geometry.kh > 0 && geometry.kw > 0 && geometry.cin > 0);
        assert!(geometry.stride[0] > 0 && geometry.stride[1] > 0 && geometry.upsample > 0);
        assert!(
            !segments.is_empty(),
            "a convolution needs at least one segment"
        );
        let k = geometry.k();
        let nr = isa.nr();
        let mut segs = Vec::new();
        let mut panels = 0;
        for s in segments {
            assert!(s.cout > 0, "segment with no output channels");
            assert_eq!(
                s.hwio.len(),
                k * s.cout,
                "weights must be [kh, kw, cin, cout]"
            );
            if let Some(b) = s.bias {
                assert_eq!(b.len(), s.cout, "bias length");
            }
            let p = s.cout.div_ceil(nr);
            segs.push(Segment {
                cout: s.cout,
                first_panel: panels,
                panels: p,
                act: s.act,
            });
            panels += p;
        }
        let mut packed = AlignedBuf::zeros(panels * k * nr);
        let mut bias = vec![0f32; panels * nr];
        for (s, seg) in segments.iter().zip(&segs) {
            let first = seg.first_panel * k * nr;
            pack_panels(
                &mut packed.as_mut_slice()[first..first + seg.panels * k * nr],
                nr,
                (k, s.cout),
                s.hwio,
                (0, s.cout, 1),
            );
            if let Some(b) = s.bias {
                bias[seg.first_panel * nr..][..s.cout].copy_from_slice(b);
            }
        }
        let dot = (segments.len() == 1 && segments[0].cout <= DOT_OUTS && k >= 32).then(|| {
            let s = &segments[0];
            let mut w = vec![0f32; DOT_OUTS * k];
            let mut b = vec![0f32; DOT_OUTS];
            for o in 0..s.cout {
                for kk in 0..k {
                    w[o * k + kk] = s.hwio[kk * s.cout + o];
                }
                b[o] = s.bias.map_or(0.0, |b| b[o]);
            }
            (w, b)
        });
        let winograd = winograd.filter(|_| {
            segments.len() == 1
                && geometry.kh == 3
                && geometry.kw == 3
                && geometry.stride == [1, 1]
                && geometry.cin >= 16
                && segments[0].cout > DOT_OUTS
        });
        let winograd = winograd.map(|tile| {
            let s = &segments[0];
            Winograd::new(isa, s.hwio, (geometry.cin, s.cout), s.bias, s.act, tile)
        });
        // 1 x r along the width, r x 1 along the height, and a wider kernel without a 2-D
        // Winograd form along the width, one line convolution per kernel row.
        let line_axis = match (geometry.kh, geometry.kw) {
            (1, r) if WinogradLine::supports(r) => Some((LineAxis::Cols, 1, r)),
            (r, 1) if WinogradLine::supports(r) => Some((LineAxis::Rows, 1, r)),
            (rows, r) if WinogradLine::supports(r) && winograd.is_none() => {
                Some((LineAxis::Cols, rows, r))
            }
            _ => None,
        };
        let line = line_axis.filter(|_| {
            line && segments.len() == 1
                && geometry.stride == [1, 1]
                && geometry.upsample == 1
                && matches!(
                    geometry.padding,
                    Padding::Valid | Padding::Same | Padding::Zero(_)
                )
                && geometry.cin >= 16
                && segments[0].cout > DOT_OUTS
        });
        let line = line.map(|(axis, rows, r)| {
            let s = &segments[0];
            WinogradLine::new(
                isa,
                axis,
                s.hwio,
                (rows, r, geometry.cin, s.cout),
                s.bias,
                s.act,
            )
        });
        Conv2d {
            winograd,
            line,
            geometry,
            isa,
            segments: segs,
            packed,
            bias,
            affine: None,
            // The dot kernels reload pointers per tap: give them one per kernel row.
            padded_rows: (geometry.cin < PADDED_ROWS_BELOW || dot.is_some()) && geometry.kw > 1,
            dot,
        }
    }

    /// This convolution with every output channel `j` of its single segment scaled and
    /// shifted after the bias, before the activation: `act((sum + bias[j]) * scale[j] +
    /// shift[j])`, a multiply then an add, in every form it runs in (direct tiles, Winograd
    /// output transforms). A training convolution followed by an inference-mode batch norm
    /// (its bias `-mean`) computes the batch norm's output in the convolution's epilogue,
    /// each value as the separate pass computes it. The dot kernels are dropped (they have
    /// no such epilogue).
    ///
    /// Panics unless the convolution has one segment and `scale` and `shift` one value per
    /// output channel.
    pub(crate) fn with_channel_affine(mut self, scale: &[f32], shift: &[f32]) -> Conv2d {
        assert_eq!(self.segments.len(), 1, "one segment");
        let cout = self.segments[0].cout;
        assert!(
            scale.len() == cout && shift.len() == cout,
            "one scale and shift per channel"
        );
        let padded = |v: &[f32]| {
            let mut p = vec![0f32; self.segments[0].panels * self.isa.nr()];
            p[..cout].copy_from_slice(v);
            p
        };
        self.affine = Some((padded(scale), padded(shift)));
        if let Some(w) = &mut self.winograd {
            w.set_channel_affine(scale, shift);
        }
        if let Some(l) = &mut self.line {
            l.set_channel_affine(scale, shift);
        }
        self.dot = None;
        self
    }

    /// A matrix product `x (rows of k) * b` as a 1x1 convolution, `b`'s element `(kk, j)`
    /// (`k x n`) at `b[at + kk * row + j * col]`, packed straight from there (attention's
    /// keys and values, one product per image and head); the few-output products that take
    /// the dot kernels are gathered and built through [`Conv2d::with_isa`].
    ///
    /// Panics when an element lies outside `b`.
    pub(crate) fn matrix(
        isa: Isa,
        (k, n): (usize, usize),
        b: &[f32],
        (at, row, col): (usize, usize, usize),
    ) -> Conv2d {
        assert!(isa.is_supported() && k > 0 && n > 0);
        let last = at + (k - 1) * row + (n - 1) * col;
        assert!(last < b.len(), "matrix element past its buffer");
        let geometry = ConvGeometry::new(1, 1, k);
        if n <= DOT_OUTS && k >= 32 {
            let mut w = vec![0f32; k * n];
            for kk in 0..k {
                for j in 0..n {
                    w[kk * n + j] = b[at + kk * row + j * col];
                }
            }
            let seg = ConvWeights {
                hwio: &w,
                bias: None,
                cout: n,
                act: Act::Identity,
            };
            return Conv2d::with_isa(isa, geometry, &[seg]);
        }
        let nr = isa.nr();
        let panels = n.div_ceil(nr);
        let mut packed = AlignedBuf::zeros(panels * k * nr);
        pack_panels(packed.as_mut_slice(), nr, (k, n), b, (at, row, col));
        Conv2d {
            winograd: None,
            line: None,
            geometry,
            isa,
            segments: vec![Segment {
                cout: n,
                first_panel: 0,
                panels,
                act: Act::Identity,
            }],
            packed,
            bias: vec![0f32; panels * nr],
            affine: None,
            padded_rows: false,
            dot: None,
        }
    }

    /// The same convolution computed directly (no Winograd), e.g. to compare the two.
    pub fn without_winograd(mut self) -> Conv2d {
        self.winograd = None;
        self.line = None;
        self
    }

    /// Whether an output of `ho x wo` over `n` images is computed by Winograd (the 2-D or
    /// the line form).
    pub fn uses_winograd(&self, n: usize, ho: usize, wo: usize) -> bool {
        self.uses_line_winograd(n, ho, wo)
            || self.winograd.as_ref().is_some_and(|w| {
                let m = w.tile();
                Winograd::tiles(m, n, ho, wo) * m * m >= WINOGRAD_MIN_PIXELS
            })
    }

    fn uses_line_winograd(&self, n: usize, ho: usize, wo: usize) -> bool {
        self.line
            .as_ref()
            .is_some_and(|l| l.tiles(n, ho, wo) * 3 >= WINOGRAD_MIN_PIXELS)
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Output channels of each segment.
    pub fn couts(&self) -> Vec<usize> {
        self.segments.iter().map(|s| s.cout).collect()
    }

    /// Total output channels (all segments).
    pub fn cout(&self) -> usize {
        self.segments.iter().map(|s| s.cout).sum()
    }

    /// Output `(height, width)` for an input of `h x w`, or `None` when it is too small.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        self.geometry.output_hw(h, w)
    }

    /// Runs the convolution into a new tensor holding the segments' outputs one after
    /// the other along the channels.
    ///
    /// Panics when `x` has other than `cin` channels or is too small (callers check sizes
    /// with [`Conv2d::output_hw`] first).
    pub fn forward(&self, x: View) -> Nhwc {
        let (ho, wo) = self
            .output_hw(x.h, x.w)
            .expect("input too small for the convolution");
        let stride = self.cout();
        // SAFETY: the segments' channel ranges cover all `stride` channels, and `run` writes
        // every pixel of each through the pointers (the tiles store whole rows of their
        // panel's valid columns); `out` has exactly n * ho * wo pixels of `stride` floats.
        unsafe {
            Nhwc::filled_by(x.n, ho, wo, stride, |base| {
                let mut offset = 0;
                let targets: Vec<(SendPtr<f32>, usize)> = self
                    .segments
                    .iter()
                    .map(|s| {
                        let t = (SendPtr(base.add(offset)), stride);
                        offset += s.cout;
                        t
                    })
                    .collect();
                self.run(x, &targets, true, None)
            })
        }
    }

    /// Runs the convolution writing segment `i` into `outs[i]` (each with the segment's
    /// channel count and `n * ho * wo` pixels).
    pub fn forward_into(&self, x: View, outs: &mut [Slot]) {
        let (ho, wo) = self
            .output_hw(x.h, x.w)
            .expect("input too small for the convolution");
        assert_eq!(
            outs.len(),
            self.segments.len(),
            "one output slot per segment"
        );
        let targets: Vec<(SendPtr<f32>, usize)> = outs
            .iter_mut()
            .zip(&self.segments)
            .map(|(o, s)| {
                o.check();
                assert_eq!(
                    (o.n, o.h, o.w, o.c),
                    (x.n, ho, wo, s.cout),
                    "output slot shape"
                );
                (SendPtr(o.base()), o.stride)
            })
            .collect();
        // SAFETY: the slots are distinct mutable borrows, checked for size above.
        unsafe { self.run(x, &targets, true, None) };
    }

    /// A one-segment convolution plus a residual of the output's shape, added before an
    /// activation `act` that replaces the segment's (ResNet's `relu(conv(x) + shortcut)`),
    /// in one pass: `act(conv(x) + bias + residual)`, the sums in that order.
    /// `None` (nothing computed) for the convolutions whose kernels take no residual
    /// (Winograd, the dot kernels, several segments) or a residual of another shape.
    pub fn forward_residual(&self, x: View, residual: View, act: Act) -> Option<Nhwc> {
        let (ho, wo) = self.output_hw(x.h, x.w)?;
        let cout = self.cout();
        if !self.takes_residual(x.n, ho, wo)
            || (residual.n, residual.h, residual.w, residual.c) != (x.n, ho, wo, cout)
        {
            return None;
        }
        residual.check();
        let r = Residual {
            base: SendPtr(residual.data[residual.offset..].as_ptr() as *mut f32),
            stride: residual.stride,
            act,
        };
        // SAFETY: `run` writes all n * ho * wo pixels of `cout` floats through the
        // pointer, and reads the residual's, checked above to be as many.
        Some(unsafe {
            Nhwc::filled_by(x.n, ho, wo, cout, |dst| {
                self.run(x, &[(SendPtr(dst), cout)], true, Some(&r))
            })
        })
    }

    /// Runs a one-segment convolution on the calling thread (for callers that spread
    /// their own work over the threads), writing pixel `p` at `dst + p * ldc`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `n * ho * wo` rows of `cout` floats, `ldc` apart.
    pub(crate) unsafe fn run_on_this_thread(&self, x: View, dst: *mut f32, ldc: usize) {
        debug_assert_eq!(self.segments.len(), 1);
        unsafe { self.run(x, &[(SendPtr(dst), ldc)], false, None) };
    }

    /// Runs a one-segment convolution on the calling thread writing pixel `p` at `dst + p *
    /// ldc`, plus `residual` (the output's shape) added in the tiles' epilogue as
    /// [`Conv2d::forward_residual`] adds it. `false` (nothing written) for a convolution
    /// whose kernels take no residual ([`Conv2d::takes_residual`]).
    ///
    /// # Safety
    /// As [`Conv2d::run_on_this_thread`].
    pub(crate) unsafe fn run_with_residual_on_this_thread(
        &self,
        x: View,
        dst: *mut f32,
        ldc: usize,
        residual: View,
    ) -> bool {
        let Some((ho, wo)) = self.output_hw(x.h, x.w) else {
            return false;
        };
        if !self.takes_residual(x.n, ho, wo)
            || (residual.n, residual.h, residual.w, residual.c) != (x.n, ho, wo, self.cout())
        {
            return false;
        }
        residual.check();
        let r = Residual {
            base: SendPtr(residual.data[residual.offset..].as_ptr() as *mut f32),
            stride: residual.stride,
            act: Act::Identity,
        };
        unsafe { self.run(x, &[(SendPtr(dst), ldc)], false, Some(&r)) };
        true
    }

    /// Whether the kernels add a residual in their epilogue for an output of `n x ho x wo`:
    /// one segment, neither the dot kernels nor Winograd.
    pub(crate) fn takes_residual(&self, n: usize, ho: usize, wo: usize) -> bool {
        self.segments.len() == 1 && self.dot.is_none() && !self.uses_winograd(n, ho, wo)
    }

    /// # Safety
    /// `targets[i].0` must be valid for writes of `n * ho * wo` rows of
    /// `segments[i].cout` floats, `targets[i].1` floats apart, and no two targets may overlap.
    unsafe fn run(
        &self,
        x: View,
        targets: &[(SendPtr<f32>, usize)],
        parallel: bool,
        residual: Option<&Residual>,
    ) {
        x.check();
        let g = &self.geometry;
        assert_eq!(x.c, g.cin, "input channels");
        let (ho, wo) = self.output_hw(x.h, x.w).expect("input too small");
        let (ys, xs) = g.padded_cells(x.h, x.w);
        let m = x.n * ho * wo;
        if m == 0 {
            return;
        }
        let isa = self.isa;
        if let Some(l) = &self.line {
            if self.uses_line_winograd(x.n, ho, wo) {
                l.run(isa, x, &ys, &xs, ho, wo, targets[0].0.get(), targets[0].1);
                return;
            }
        }
        if let Some(w) = &self.winograd {
            if self.uses_winograd(x.n, ho, wo) {
                w.run(isa, x, &ys, &xs, ho, wo, targets[0].0.get(), targets[0].1);
                return;
            }
        }
        let (mr, nr) = (isa.mr(), isa.nr());
        let k = g.k();
        let taps = g.kh * g.kw;
        let (kt, kc) = if self.padded_rows {
            (g.kh, g.kw * g.cin)
        } else {
            (taps, g.cin)
        };
        let zeros = vec![0f32; kc];
        let (hp, wp) = (ys.len(), xs.len());
        // The padded copy: [n][hp][wp][cin]. Runs of consecutive source pixels (all of a
        // row but its padding, unless reflected or upsampled) are copied in one go, and
        // the rows are shared out in a few chunks per thread (a task per row, and a copy
        // per pixel, cost more than the convolution of a 3-channel image).
        let padded: Vec<f32> = if self.padded_rows {
            let row_len = wp * g.cin;
            let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // (dst px, src px, len)
            for (j, &src) in xs.iter().enumerate() {
                if src < 0 {
                    continue;
                }
                match runs.last_mut() {
                    Some((d, s0, len)) if *d + *len == j && *s0 + *len == src as usize => *len += 1,
                    _ => runs.push((j, src as usize, 1)),
                }
            }
            let contiguous = x.stride == g.cin;
            let mut p = vec![0f32; x.n * hp * row_len];
            let rows_total = x.n * hp;
            let per_chunk = rows_total
                .div_ceil(ITEMS_PER_THREAD * rayon::current_num_threads().max(1))
                .max(1);
            let fill = |(ci, chunk): (usize, &mut [f32])| {
                for (k, row) in chunk.chunks_exact_mut(row_len).enumerate() {
                    let r = ci * per_chunk + k;
                    let (b, i) = (r / hp, r % hp);
                    if ys[i] < 0 {
                        continue;
                    }
                    let y = ys[i] as usize;
                    for &(d, s0, len) in &runs {
                        if contiguous {
                            let src = &x.data[x.offset + ((b * x.h + y) * x.w + s0) * x.stride..];
                            row[d * g.cin..(d + len) * g.cin].copy_from_slice(&src[..len * g.cin]);
                        } else {
                            for t in 0..len {
                                row[(d + t) * g.cin..(d + t + 1) * g.cin].copy_from_slice(x.pixel(
                                    b,
                                    y,
                                    s0 + t,
                                ));
                            }
                        }
                    }
                }
            };
            if parallel && rows_total > per_chunk {
                p.par_chunks_mut(per_chunk * row_len)
                    .enumerate()
                    .for_each(fill);
            } else {
                p.chunks_mut(per_chunk * row_len).enumerate().for_each(fill);
            }
            p
        } else {
            Vec::new()
        };
        let groups = m.div_ceil(mr);
        let panels: usize = self.segments.iter().map(|s| s.panels).sum();
        let threads = if parallel {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        // Rows per chunk: keep a chunk's part of A around 96 KiB (L2). But when the whole
        // input fits in L2 and the weights do not (ResNet's 3x3 convolutions at batch 1:
        // 200 KB of input, 2.4-9.4 MB of weights), few row chunks, each over a share of the
        // panels: the weights stream from memory once instead of once per 12 rows.
        let small_input = x.n * x.h * x.w * x.c * 4 <= SMALL_INPUT_BYTES
            && panels * k * nr * 4 > ROWS_OUTER_MAX_WEIGHTS
            && self.dot.is_none();
        // Weights too large for L2 over a long reduction: the reduction runs in blocks
        // ([`REDUCTION_BLOCK`]; each block's part of a panel stays in L1 while the chunk's
        // groups of rows pass over it, the partial sums kept in the output) and the chunks of
        // rows grow ([`BLOCKED_CHUNK_FLOATS`]) so that each panel, streamed from L3, serves
        // many rows instead of one group.
        let blocked = !small_input
            && self.dot.is_none()
            && k >= BLOCKED_MIN_REDUCTION
            && panels * k * nr * 4 > BLOCKED_MIN_WEIGHT_BYTES;
        let gpc = if small_input {
            groups.div_ceil((ITEMS_PER_THREAD * threads).div_ceil(panels).max(1))
        } else if blocked {
            (BLOCKED_CHUNK_FLOATS / k)
                .clamp(mr, 64 * mr)
                .div_ceil(mr)
                .min(groups.div_ceil(ITEMS_PER_THREAD * threads).max(1))
        } else {
            (24 * 1024 / k).clamp(mr, 32 * mr).div_ceil(mr)
        };
        // The reduction's blocks: (first tap, taps, first channel, channels).
        let blocks: Vec<(usize, usize, usize, usize)> = if !blocked {
            vec![(0, kt, 0, kc)]
        } else if kc > REDUCTION_BLOCK {
            let parts = kc.div_ceil(REDUCTION_BLOCK);
            (0..kt)
                .flat_map(|t| {
                    (0..parts)
                        .map(move |i| (t, 1, i * kc / parts, (i + 1) * kc / parts - i * kc / parts))
                })
                .collect()
        } else {
            let per = (REDUCTION_BLOCK / kc).max(1);
            (0..kt.div_ceil(per))
                .map(|i| (i * per, per.min(kt - i * per), 0, kc))
                .collect()
        };
        let chunks = groups.div_ceil(gpc);
        let splits = if chunks >= ITEMS_PER_THREAD * threads || self.dot.is_some() {
            1
        } else {
            (ITEMS_PER_THREAD * threads).div_ceil(chunks).min(panels)
        };
        let packed = SendPtr(self.packed.as_slice().as_ptr() as *mut f32);
        let panel_seg: Vec<usize> = self
            .segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| std::iter::repeat_n(i, s.panels))
            .collect();
        let hw = ho * wo;
        let xbase = SendPtr(x.data.as_ptr().add(x.offset) as *mut f32);
        let pbase = SendPtr(padded.as_ptr() as *mut f32);
        let zero_ptr = SendPtr(zeros.as_ptr() as *mut f32);

        // With all the weight panels small enough to stay in L1, each group of rows runs
        // over all its panels before the next: the output is then written row after row,
        // which the hardware prefetchers follow (panel by panel, the stores of a short
        // reduction wait on cache misses).
        let rows_outer = panels * k * nr * 4 <= ROWS_OUTER_MAX_WEIGHTS;
        // 1x1, stride 1, no padding: each row reads its own input pixel.
        let direct = !self.padded_rows
            && taps == 1
            && g.stride == [1, 1]
            && ys.len() == x.h
            && xs.len() == x.w
            && ys.first() == Some(&0)
            && xs.first() == Some(&0);
        let out_bytes = m * 4 * targets.iter().map(|t| t.1).max().unwrap_or(0);
        let stream = out_bytes >= STREAM_MIN_BYTES;
        let work = |item: usize| {
            let (chunk, split) = (item / splits, item % splits);
            let g0 = chunk * gpc;
            let g1 = (g0 + gpc).min(groups);
            let p0 = split * panels / splits;
            let p1 = (split + 1) * panels / splits;
            if p0 == p1 {
                return;
            }
            let ngroups = g1 - g0;
            // Row pointers [group][tap][mr]. The output pixel (b, oy, ox) of each row is
            // stepped along, not divided out per row (the divisions cost as much as the
            // FMAs of a 1x1 convolution over 16 channels).
            let mut ptrs: Vec<*const f32> = vec![zero_ptr.get(); ngroups * kt * mr];
            let (sy, sx) = (g.stride[0], g.stride[1]);
            let row_start = g0 * mr;
            let row_end = ((g0 + ngroups) * mr).min(m);
            let (mut b, rem) = (row_start / hw, row_start % hw);
            let (mut oy, mut ox) = (rem / wo, rem % wo);
            let (mut gi, mut r) = (0, 0);
            for _ in row_start..row_end {
                if direct {
                    ptrs[gi * mr + r] = xbase.get().add(((b * x.h + oy) * x.w + ox) * x.stride);
                } else if self.padded_rows {
                    for dy in 0..g.kh {
                        ptrs[(gi * kt + dy) * mr + r] = pbase
                            .get()
                            .add(((b * hp + oy * sy + dy) * wp + ox * sx) * g.cin);
                    }
                } else {
                    for t in 0..taps {
                        let (dy, dx) = (t / g.kw, t % g.kw);
                        let py = ys[oy * sy + dy];
                        let px = xs[ox * sx + dx];
                        ptrs[(gi * taps + t) * mr + r] = if py < 0 || px < 0 {
                            zero_ptr.get()
                        } else {
                            xbase
                                .get()
                                .add(((b * x.h + py as usize) * x.w + px as usize) * x.stride)
                        };
                    }
                }
                r += 1;
                if r == mr {
                    r = 0;
                    gi += 1;
                }
                ox += 1;
                if ox == wo {
                    ox = 0;
                    oy += 1;
                    if oy == ho {
                        oy = 0;
                        b += 1;
                    }
                }
            }
            if let Some((w, b)) = &self.dot {
                let (dst, ldc) = &targets[0];
                for gi in 0..ngroups {
                    let row0 = (g0 + gi) * mr;
                    let tile = DotTile {
                        taps: kt,
                        kc,
                        a: ptrs.as_ptr().add(gi * kt * mr),
                        stride: mr,
                        rows: (m - row0).min(mr),
                        w: w.as_ptr(),
                        bias: b.as_ptr(),
                        c: dst.get().add(row0 * ldc),
                        ldc: *ldc,
                        cols: self.segments[0].cout,
                        act: self.segments[0].act,
                    };
                    microkernel::run_dot(isa, &tile);
                }
                return;
            }
            let block_tile = |p: usize,
                              gi: usize,
                              (t0, nt, c0, nc): (usize, usize, usize, usize),
                              resume: bool,
                              partial: bool| {
                let seg = &self.segments[panel_seg[p]];
                let (dst, ldc) = &targets[panel_seg[p]];
                let col0 = (p - seg.first_panel) * nr;
                let row0 = (g0 + gi) * mr;
                Tile {
                    taps: nt,
                    kc: nc,
                    a: ptrs.as_ptr().add((gi * kt + t0) * mr),
                    b: packed.get().add(p * k * nr + (t0 * kc + c0) * nr),
                    ldb: nr,
                    bias: self.bias.as_ptr().add(p * nr),
                    scale: self
                        .affine
                        .as_ref()
                        .map_or(std::ptr::null(), |(s, _)| s.as_ptr().add(p * nr)),
                    shift: self
                        .affine
                        .as_ref()
                        .map_or(std::ptr::null(), |(_, h)| h.as_ptr().add(p * nr)),
                    c: dst.get().add(row0 * ldc + col0),
                    ldc: *ldc,
                    rows: (m - row0).min(mr),
                    cols: (seg.cout - col0).min(nr),
                    act: residual.map_or(seg.act, |r| r.act),
                    stream,
                    res: residual.map_or(std::ptr::null(), |r| unsafe {
                        r.base.get().add(row0 * r.stride + col0)
                    }),
                    ldr: residual.map_or(0, |r| r.stride),
                    a_stride: 0,
                    a_off: c0,
                    resume,
                    partial,
                }
            };
            let tile = |p: usize, gi: usize| block_tile(p, gi, (0, kt, 0, kc), false, false);
            if rows_outer {
                for gi in 0..ngroups {
                    for p in p0..p1 {
                        microkernel::run(isa, &tile(p, gi));
                    }
                }
            } else if blocks.len() == 1 {
                for p in p0..p1 {
                    for gi in 0..ngroups {
                        microkernel::run(isa, &tile(p, gi));
                    }
                }
            } else {
                let last = blocks.len() - 1;
                for p in p0..p1 {
                    for (bi, &block) in blocks.iter().enumerate() {
                        for gi in 0..ngroups {
                            let t = block_tile(p, gi, block, bi > 0, bi < last);
                            microkernel::run(isa, &t);
                        }
                    }
                }
            }
            if stream {
                microkernel::store_fence();
            }
        };
        let items = chunks * splits;
        if items == 1 || threads == 1 {
            (0..items).for_each(work);
        } else {
            (0..items).into_par_iter().for_each(work);
        }
    }
}

/// A grouped convolution (TensorFlow `conv2d` whose filter has `cin / groups` input
/// channels): group `i` is a dense convolution from input channels
/// `i * cin/groups ..` to output channels `i * cout/groups ..`. Run as one packed
/// [`Conv2d`] per group, reading its channel slice of the input and writing its slice of
/// the output, one group after the other (each group's pass is parallel in itself).
/// Meant for a few wide groups (ResNeXt-style); with one input channel per group
/// (`groups == cin`) use [`DepthwiseConv2d`](crate::DepthwiseConv2d), which is far faster.
#[derive(Debug, Clone)]
pub struct GroupedConv2d {
    groups: Vec<Conv2d>,
    cout: usize,
}

impl GroupedConv2d {
    /// `geometry.cin` is the whole input's channels; `hwio` is TensorFlow's filter
    /// `[kh][kw][cin / groups][cout]` (flattened), `bias` one per output channel. Both
    /// channel counts must be multiples of `groups`.
    pub fn new(
        geometry: ConvGeometry,
        groups: usize,
        hwio: &[f32],
        bias: Option<&[f32]>,
        cout: usize,
        act: Act,
    ) -> GroupedConv2d {
        Self::with_isa(Isa::detect(), geometry, groups, hwio, bias, cout, act)
    }

    /// Like [`GroupedConv2d::new`] for a given instruction set (must be supported).
    pub fn with_isa(
        isa: Isa,
        geometry: ConvGeometry,
        groups: usize,
        hwio: &[f32],
        bias: Option<&[f32]>,
        cout: usize,
        act: Act,
    ) -> GroupedConv2d {
        assert!(groups > 0, "at least one group");
        assert_eq!(
            geometry.cin % groups,
            0,
            "input channels not a multiple of the groups"
        );
        assert_eq!(
            cout % groups,
            0,
            "output channels not a multiple of the groups"
        );
        let (cin_g, cout_g) = (geometry.cin / groups, cout / groups);
        let gg = ConvGeometry {
            cin: cin_g,
            ..geometry
        };
        let k = gg.k();
        assert_eq!(
            hwio.len(),
            k * cout,
            "filter must be [kh, kw, cin / groups, cout]"
        );
        if let Some(b) = bias {
            assert_eq!(b.len(), cout, "bias length");
        }
        let groups = (0..groups)
            .map(|i| {
                let w: Vec<f32> = (0..k)
                    .flat_map(|kk| &hwio[kk * cout + i * cout_g..][..cout_g])
                    .copied()
                    .collect();
                Conv2d::with_isa(
                    isa,
                    gg,
                    &[ConvWeights {
                        hwio: &w,
                        bias: bias.map(|b| &b[i * cout_g..][..cout_g]),
                        cout: cout_g,
                        act,
                    }],
                )
            })
            .collect();
        GroupedConv2d { groups, cout }
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Output `(height, width)` for an input of `h x w`, or `None` when it is too small.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        self.groups[0].output_hw(h, w)
    }

    /// Runs the convolution into a new `[n, ho, wo, cout]` tensor.
    pub fn forward(&self, x: View) -> Nhwc {
        let (ho, wo) = self
            .output_hw(x.h, x.w)
            .expect("input too small for the convolution");
        let mut out = Nhwc::zeros(x.n, ho, wo, self.cout);
        self.forward_into(x, &mut out.slot_all());
        out
    }

    /// Runs the convolution into `out` (`[n, ho, wo, cout]`, possibly a channel slice
    /// of a wider tensor).
    pub fn forward_into(&self, x: View, out: &mut Slot) {
        let cin_g = self.groups[0].geometry().cin;
        assert_eq!(x.c, cin_g * self.groups.len(), "input channels");
        assert_eq!(out.c, self.cout, "output channels");
        let cout_g = self.cout / self.groups.len();
        for (i, conv) in self.groups.iter().enumerate() {
            let xi = View {
                c: cin_g,
                offset: x.offset + i * cin_g,
                ..x
            };
            conv.forward_into(xi, &mut [out.sub(i * cout_g, cout_g)]);
        }
    }
}
