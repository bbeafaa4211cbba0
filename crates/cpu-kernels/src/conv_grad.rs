//! Convolutions for training: the forward pass and both gradients (input and filter) of an
//! NHWC convolution with a TensorFlow HWIO filter, or of a depthwise convolution
//! (multiplier 1), with strides and explicit zero padding. The heavy products run on the
//! inference kernels ([`Conv2d`]):
//! - the input gradient of a stride-1 convolution is a convolution of the output gradient
//!   with the flipped, transposed filter; with strides, the gradient of every output pixel
//!   `dY W^T` (a 1x1 convolution) scattered back onto the input pixels it read;
//! - the filter gradient `X_col^T dY` as `dY^T X_col` over chunks of output pixels
//!   (`X_col` is the input itself for unpadded stride-1 1x1 filters, otherwise gathered per
//!   chunk), the chunks' sums added in a fixed order: the same result on every run.
//!
//! Depthwise gradients are direct loops over the channels (vectorised by the compiler).

use crate::aligned::{aligned_mut, SLACK};
use crate::conv::{Conv2d, ConvGeometry, ConvWeights, Padding, SendPtr};
use crate::depthwise::{DepthwiseConv2d, DepthwiseGeometry};
use crate::depthwise_grad::{self, ColumnTaps, DwGrad};
use crate::microkernel::{self, Act, Isa};
use crate::ops::{add_inplace, zeroed};
use crate::ordered::{
    accumulate_groups, balanced_chunks, ordered_accumulate, ordered_sum, SUM_GROUPS,
};
use crate::scratch::with_scratch;
use crate::simd::vectorised;
use crate::tensor::View;
use crate::train_norm::BatchNormGrad;
use crate::transpose::transpose_into;
use crate::winograd_line::{
    grad_output_tile as line_grad_output_tile, input_tile as line_input_tile, LineAxis,
    WinogradLine, ALPHA as LINE_ALPHA, EXTRA_PLANES as LINE_EXTRA_PLANES, G3 as LINE_G,
    M as LINE_M,
};
use rayon::prelude::*;

/// The shapes of a training convolution: input `[n, h, w, cin]`, filter `[kh, kw, cin,
/// cout]` (depthwise: `[kh, kw, cin, 1]`, `cout == cin`), output `[n, oh, ow, cout]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainConv {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    /// `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Zero padding `[top, bottom, left, right]`.
    pub pads: [usize; 4],
    pub depthwise: bool,
}

/// Output pixels per chunk of the filter gradient (fewer in the last): each chunk's sum runs in one
/// accumulator per element, the chunks' sums are added pairwise, so the rounding error
/// grows with this length (2048 put MobileNetV2's first filter gradient 1.6e-5 from
/// TensorFlow's, 256 keeps it at TensorFlow's own spread); the chunk's gathered input stays
/// small.
const MAX_CHUNK_ROWS: usize = 256;
/// Floats of gathered input-gradient columns computed before they are scattered.
const COLUMN_BUDGET: usize = 16 << 20;
/// A 3x3 stride-1 convolution of a training step (forward, or the flipped one of the input
/// gradient) runs by Winograd F(2x2, 3x3) (not inference's F(4x4, 3x3): a training step is
/// checked against Keras' to 1e-5, and F(4x4)'s rounding is about ten times F(2x2)'s) when
/// `cin * cout` is at most this: 2.25x fewer
/// multiplies, and its 16 transformed weight matrices (here at most 2 MiB) stay in the
/// cache across the blocks of tiles. Wider ones (Inception's 8x8 Mixed_7 448 -> 384) ran
/// slower by Winograd than directly (`cargo bench -p cpu-kernels --bench train_conv`).
const WINOGRAD_MAX_WEIGHTS: usize = 1 << 15;

/// A 3x3 stride-1 convolution of a training step with at most this many input and output
/// channels runs by the line Winograd along the width (per plane a reduction over the 3
/// kernel rows, `3 cin` long; 15 products per 3 outputs) rather than F(2x2, 3x3) (`cin`
/// long; 16 per 4): with few channels the short reductions cost F(2x2) more than its fewer
/// multiplies save (`cargo bench -p cpu-kernels --bench train_conv`: Conv2d_2b 32 -> 64 at
/// batch 12 forward 40 -> 33 ms; Conv2d_4a's 80 -> 192 is faster by F(2x2), 44 against 46).
const LINE_3X3_MAX_CHANNELS: usize = 96;

/// 2x2 output tiles per chunk of the Winograd filter gradient (each element of a chunk's
/// product is one sum over its tiles, as the direct path's over its `MAX_CHUNK_ROWS` pixels).
const WINOGRAD_CHUNK_TILES: usize = 128;
/// Output tiles from which the filter gradient of a narrow 3x3 stride-1 convolution runs by
/// Winograd (as the forward pass's 64 tiles).
const WINOGRAD_GRAD_MIN_TILES: usize = 64;

impl TrainConv {
    /// `(oh, ow)`, or `None` when the padded input is smaller than the filter, a size is
    /// zero or the padded size overflows.
    pub fn output_hw(&self) -> Option<(usize, usize)> {
        let [t, b, l, r] = self.pads;
        let ph = self.h.checked_add(t)?.checked_add(b)?;
        let pw = self.w.checked_add(l)?.checked_add(r)?;
        if self.kh == 0 || self.kw == 0 || self.stride.contains(&0) || ph < self.kh || pw < self.kw
        {
            return None;
        }
        Some((
            (ph - self.kh) / self.stride[0] + 1,
            (pw - self.kw) / self.stride[1] + 1,
        ))
    }

    fn out_hw(&self) -> (usize, usize) {
        self.output_hw()
            .expect("convolution larger than its padded input")
    }

    /// Elements of the input, the filter and the output.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let (oh, ow) = self.output_hw().unwrap_or((0, 0));
        let filter = self.kh * self.kw * self.cin * if self.depthwise { 1 } else { self.cout };
        (
            self.n * self.h * self.w * self.cin,
            filter,
            self.n * oh * ow * self.cout,
        )
    }

    fn check(&self, input: usize, filter: usize, output: usize) {
        assert!(
            !self.depthwise || self.cin == self.cout,
            "depthwise: cout must equal cin"
        );
        let (ox, of, oy) = self.sizes();
        assert_eq!((input, filter, output), (ox, of, oy), "tensor sizes");
    }

    fn view<'a>(data: &'a [f32], n: usize, h: usize, w: usize, c: usize) -> View<'a> {
        View {
            data,
            n,
            h,
            w,
            c,
            stride: c,
            offset: 0,
        }
    }

    /// The convolution: `y = conv(x, filter)`.
    pub fn forward(&self, x: &[f32], filter: &[f32]) -> Vec<f32> {
        let (oh, ow) = self.out_hw();
        self.check(x.len(), filter.len(), self.n * oh * ow * self.cout);
        if self.n == 0 || self.cin == 0 || self.cout == 0 {
            return vec![0.0; self.n * oh * ow * self.cout];
        }
        let xv = Self::view(x, self.n, self.h, self.w, self.cin);
        if self.depthwise {
            let g = DepthwiseGeometry {
                kh: self.kh,
                kw: self.kw,
                channels: self.cin,
                multiplier: 1,
                stride: self.stride,
                dilation: [1, 1],
                padding: Padding::Zero(self.pads),
            };
            DepthwiseConv2d::new(g, filter, None, Act::Identity)
                .forward(xv)
                .data
        } else {
            let g = ConvGeometry::new(self.kh, self.kw, self.cin)
                .strides(self.stride)
                .padding(Padding::Zero(self.pads));
            let seg = ConvWeights {
                hwio: filter,
                bias: None,
                cout: self.cout,
                act: Act::Identity,
            };
            Self::conv(g, &seg).forward(xv).data
        }
    }

    /// The convolution and the inference-mode batch norm of its output, clamped to `[lo, hi]`,
    /// in one pass: `clamp((conv(x, filter) - mean) * scale + beta)` (`scale` as
    /// [`crate::train_norm::batch_norm_scale`] makes it), each value as
    /// [`crate::train_norm::batch_norm`] computes it from [`TrainConv::forward`]'s output: the
    /// kernels' epilogue adds `-mean` as the bias, then multiplies and adds per channel
    /// ([`Conv2d::with_channel_affine`]). The convolution's output is never written. `None`
    /// for a depthwise convolution or bounds that are no activation of the kernels (none,
    /// ReLU, ReLU6).
    pub fn forward_batch_norm(
        &self,
        x: &[f32],
        filter: &[f32],
        (mean, scale, beta): (&[f32], &[f32], &[f32]),
        (lo, hi): (f32, f32),
    ) -> Option<Vec<f32>> {
        let act = match (lo, hi) {
            (f32::NEG_INFINITY, f32::INFINITY) => Act::Identity,
            (0.0, f32::INFINITY) => Act::Relu,
            (0.0, 6.0) => Act::Relu6,
            _ => return None,
        };
        if self.depthwise {
            return None;
        }
        let (oh, ow) = self.out_hw();
        self.check(x.len(), filter.len(), self.n * oh * ow * self.cout);
        let c = self.cout;
        assert!(
            mean.len() == c && scale.len() == c && beta.len() == c,
            "one value per channel"
        );
        if self.n == 0 || self.cin == 0 || c == 0 {
            // No sums: the batch norm of zeros.
            let row: Vec<f32> = (0..c)
                .map(|j| ((0.0 - mean[j]) * scale[j] + beta[j]).max(lo).min(hi))
                .collect();
            return Some(row.repeat(self.n * oh * ow));
        }
        let xv = Self::view(x, self.n, self.h, self.w, self.cin);
        let g = ConvGeometry::new(self.kh, self.kw, self.cin)
            .strides(self.stride)
            .padding(Padding::Zero(self.pads));
        let neg_mean: Vec<f32> = mean.iter().map(|m| -m).collect();
        let seg = ConvWeights {
            hwio: filter,
            bias: Some(&neg_mean),
            cout: c,
            act,
        };
        Some(
            Self::conv(g, &seg)
                .with_channel_affine(scale, beta)
                .forward(xv)
                .data,
        )
    }

    /// A stride-1 or strided convolution of a training step: a narrow 3x3 stride-1 one by
    /// Winograd F(2x2, 3x3) ([`WINOGRAD_MAX_WEIGHTS`]) unless it is narrower still
    /// ([`LINE_3X3_MAX_CHANNELS`]), the other stride-1 ones at least 3 taps wide by the line
    /// Winograd F(3, 3) ([`Conv2d::with_line_winograd`]), the rest direct, without building
    /// Winograd weights they would not use.
    fn conv(g: ConvGeometry, seg: &ConvWeights) -> Conv2d {
        let segs = std::slice::from_ref(seg);
        if g.kh == 3 && g.kw == 3 && Self::f2x2_channels(g.cin, seg.cout) {
            Conv2d::with_winograd_tile(Isa::detect(), g, segs, 2)
        } else {
            Conv2d::with_line_winograd(Isa::detect(), g, segs)
        }
    }

    /// The gradient of the input, `[n, h, w, cin]`, from the output's gradient `dy`.
    pub fn grad_input(&self, dy: &[f32], filter: &[f32]) -> Vec<f32> {
        self.grad_input_with(dy, filter, None)
    }

    /// [`TrainConv::grad_input`] plus `prior`, another gradient of the same input (`[n, h,
    /// w, cin]`: the input feeds several operations), each element `dx + prior` as adding
    /// the two afterwards gives. A stride-1 convolution whose input gradient runs directly
    /// (Inception's 1x1 branch heads that read a Mixed block's input) adds `prior` in its
    /// tiles' epilogue instead of in a pass of its own; the others add it on the thread
    /// pool.
    pub fn grad_input_onto(&self, dy: &[f32], filter: &[f32], prior: &[f32]) -> Vec<f32> {
        assert_eq!(
            prior.len(),
            self.n * self.h * self.w * self.cin,
            "prior input gradient size"
        );
        self.grad_input_with(dy, filter, Some(prior))
    }

    /// The input gradient of a stride-1 convolution (pads below the kernel's size) as a
    /// convolution of `dy`: the flipped filter with `cin` and `cout` swapped, padded by
    /// `k - 1 - p`.
    fn input_gradient_conv(&self, filter: &[f32]) -> Conv2d {
        let [t, b, l, r] = self.pads;
        let (kh, kw, ci, co) = (self.kh, self.kw, self.cin, self.cout);
        // The taps side by side: most are too small for transpose_into's own threads,
        // and this runs on the training step's main thread for every convolution.
        let mut flipped = zeroed(filter.len());
        flipped
            .par_chunks_mut(ci * co)
            .enumerate()
            .for_each(|(tap, dst)| {
                let (a, c) = (tap / kw, tap % kw);
                let src = &filter[((kh - 1 - a) * kw + (kw - 1 - c)) * ci * co..][..ci * co];
                transpose_into(src, ci, co, dst);
            });
        let g = ConvGeometry::new(kh, kw, co).padding(Padding::Zero([
            kh - 1 - t,
            kh - 1 - b,
            kw - 1 - l,
            kw - 1 - r,
        ]));
        let seg = ConvWeights {
            hwio: &flipped,
            bias: None,
            cout: ci,
            act: Act::Identity,
        };
        Self::conv(g, &seg)
    }

    fn grad_input_with(&self, dy: &[f32], filter: &[f32], prior: Option<&[f32]>) -> Vec<f32> {
        let (oh, ow) = self.out_hw();
        self.check(self.n * self.h * self.w * self.cin, filter.len(), dy.len());
        let len = self.n * self.h * self.w * self.cin;
        if len == 0 || self.cout == 0 {
            return add_onto(vec![0f32; len], prior);
        }
        if self.depthwise {
            return add_onto(self.depthwise_grad_input(dy, filter, (oh, ow)), prior);
        }
        let [t, b, l, r] = self.pads;
        let (kh, kw) = (self.kh, self.kw);
        if self.stride == [1, 1] && t < kh && b < kh && l < kw && r < kw {
            let (ci, co) = (self.cin, self.cout);
            let conv = self.input_gradient_conv(filter);
            let dyv = Self::view(dy, self.n, oh, ow, co);
            if let Some(prior) = prior {
                let pv = Self::view(prior, self.n, self.h, self.w, ci);
                if let Some(out) = conv.forward_residual(dyv, pv, Act::Identity) {
                    return out.data;
                }
            }
            let out = conv.forward(dyv);
            debug_assert_eq!((out.h, out.w), (self.h, self.w));
            return add_onto(out.data, prior);
        }
        // Columns dY W^T ([pixels, kh*kw*cin], a 1x1 convolution), scattered onto the input.
        let mut dx = zeroed(len);
        let k = kh * kw * self.cin;
        let mut wt = zeroed(filter.len());
        transpose_into(filter, k, self.cout, &mut wt);
        let seg = ConvWeights {
            hwio: &wt,
            bias: None,
            cout: k,
            act: Act::Identity,
        };
        let conv = Conv2d::new(ConvGeometry::new(1, 1, self.cout), &[seg]);
        let per_image = (oh * ow * k).max(1);
        let group = (COLUMN_BUDGET / per_image).clamp(1, self.n);
        let image = self.h * self.w * self.cin;
        for first in (0..self.n).step_by(group) {
            let count = group.min(self.n - first);
            let dyv = &dy[first * oh * ow * self.cout..][..count * oh * ow * self.cout];
            let cols = conv.forward(Self::view(dyv, count, oh, ow, self.cout)).data;
            dx[first * image..][..count * image]
                .par_chunks_mut(image)
                .zip(cols.par_chunks(per_image))
                .for_each(|(dxi, col)| self.scatter_columns(col, dxi, (oh, ow)));
        }
        add_onto(dx, prior)
    }

    /// The input cells output pixel `(y, x)` reads: `(tap, pixel)` pairs, the tap
    /// `kernel_row * kw + kernel_column`, the pixel counted within the image; taps on the
    /// padding left out.
    fn reads(&self, y: usize, x: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let [t, _, l, _] = self.pads;
        (0..self.kh).flat_map(move |a| {
            let iy = (y * self.stride[0] + a)
                .checked_sub(t)
                .filter(|&v| v < self.h);
            (0..self.kw).filter_map(move |c| {
                let ix = (x * self.stride[1] + c)
                    .checked_sub(l)
                    .filter(|&v| v < self.w)?;
                Some((a * self.kw + c, iy? * self.w + ix))
            })
        })
    }

    /// Adds one image's columns (`[oh, ow, kh, kw, cin]`) onto the input pixels they read.
    fn scatter_columns(&self, cols: &[f32], dx: &mut [f32], (oh, ow): (usize, usize)) {
        let ci = self.cin;
        let k = self.kh * self.kw * ci;
        for y in 0..oh {
            for x in 0..ow {
                let col = &cols[(y * ow + x) * k..][..k];
                for (tap, pixel) in self.reads(y, x) {
                    let d = &mut dx[pixel * ci..][..ci];
                    for (d, s) in d.iter_mut().zip(&col[tap * ci..][..ci]) {
                        *d += s;
                    }
                }
            }
        }
    }

    /// The gradient of the filter (its layout) from the input `x` and the output's
    /// gradient `dy`.
    pub fn grad_filter(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (oh, ow) = self.out_hw();
        let (_, filter_len, _) = self.sizes();
        self.check(x.len(), filter_len, dy.len());
        if self.depthwise {
            return self.depthwise_grad_filter(x, dy, (oh, ow));
        }
        let (k, co) = (self.kh * self.kw * self.cin, self.cout);
        let rows = self.n * oh * ow;
        if rows == 0 || k == 0 || co == 0 {
            return vec![0f32; k * co];
        }
        if self.winograd_filter_gradient(oh, ow) {
            return self.winograd_grad_filter(x, dy, (oh, ow));
        }
        if let Some(axis) = self.line_filter_gradient(oh, ow) {
            return self.line_grad_filter(x, dy, (oh, ow), axis);
        }
        self.pixel_chunks_grad_filter(x, DyRows::Tensor(dy), (oh, ow), |_, _, _| {})
    }

    /// Both gradients of a training step's convolution, `(dx, dw)`: [`TrainConv::grad_input`]
    /// (plus `prior` when given, as [`TrainConv::grad_input_onto`] adds it) and
    /// [`TrainConv::grad_filter`], the same values. An unpadded 1x1 stride-1 convolution to
    /// more channels than it reads, over many pixels, reads `dy` once for both: each chunk of
    /// the filter gradient's pixels first computes its rows of `dx`, while that part of `dy`
    /// is in cache. `cargo bench -p cpu-kernels --bench train_conv -- --only MNv2 --cold`
    /// (caches flushed, as a training step finds its tensors): MobileNetV2's 112x112 16 -> 96
    /// at batch 12, dx and dw 14.1-16.6 ms apart, 10.5-13.6 ms in one pass; 56x56 24 -> 144
    /// 5.3-6.0 against 4.0-4.4. Toward fewer channels (144 -> 24) the input gradient is the
    /// larger tensor, which the separate pass writes with streaming stores: 4.7-5.4 ms apart,
    /// 5.5-6.2 in one pass, so those run apart.
    pub fn grad_input_and_filter(
        &self,
        x: &[f32],
        dy: &[f32],
        filter: &[f32],
        prior: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        if let Some(both) = self.pointwise_grads_in_one_pass(x, DyRows::Tensor(dy), filter, prior) {
            return both;
        }
        (
            self.grad_input_with(dy, filter, prior),
            self.grad_filter(x, dy),
        )
    }

    /// [`TrainConv::grad_input_and_filter`] of a convolution whose output a training batch
    /// norm reads: `dy` is that batch norm's input gradient, `bn` (its channel sums taken).
    /// Where the single pass applies, each chunk of pixels makes its rows of `dy` into a
    /// scratch block and both gradients read them there: `dy` is never written out whole
    /// nor read back from memory. Otherwise it is made whole first, as the batch norm's
    /// backward pass would. The same values either way.
    pub fn grad_input_and_filter_after(
        &self,
        x: &[f32],
        bn: &BatchNormGrad,
        filter: &[f32],
        prior: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        if let Some(both) = self.pointwise_grads_in_one_pass(x, DyRows::Made(bn), filter, prior) {
            return both;
        }
        // Apart (the single pass does not apply to the whole `dy` either).
        let dy = bn.input_gradient();
        (
            self.grad_input_with(&dy, filter, prior),
            self.grad_filter(x, &dy),
        )
    }

    /// [`TrainConv::grad_input_and_filter`]'s single pass, or `None` where it does not apply:
    /// not an unpadded 1x1 stride-1 convolution to more channels, or too few chunks of pixels
    /// for the filter gradient's groups to keep the threads busy (the chunks' products then
    /// share out their panels instead, and a chunk's `dx` rows would run on one thread).
    fn pointwise_grads_in_one_pass(
        &self,
        x: &[f32],
        dy: DyRows,
        filter: &[f32],
        prior: Option<&[f32]>,
    ) -> Option<(Vec<f32>, Vec<f32>)> {
        let pointwise = !self.depthwise
            && self.cout > self.cin
            && (self.kh, self.kw) == (1, 1)
            && self.stride == [1, 1]
            && self.pads == [0; 4];
        if !pointwise {
            return None;
        }
        let (oh, ow) = self.out_hw();
        let dy_len = match dy {
            DyRows::Tensor(dy) => dy.len(),
            DyRows::Made(bn) => bn.len(),
        };
        self.check(x.len(), self.sizes().1, dy_len);
        let (ci, co) = (self.cin, self.cout);
        let rows = self.n * oh * ow;
        if let Some(prior) = prior {
            assert_eq!(prior.len(), rows * ci, "prior input gradient size");
        }
        let (_, chunks) = balanced_chunks(rows, MAX_CHUNK_ROWS);
        if rows == 0
            || ci == 0
            || co == 0
            || accumulate_groups(chunks) < 2 * rayon::current_num_threads()
        {
            return None;
        }
        // dx = dY W^T, the 1x1 convolution of `co -> ci` channels that grad_input runs.
        let conv = self.input_gradient_conv(filter);
        if prior.is_some() && !conv.takes_residual(1, 1, MAX_CHUNK_ROWS) {
            return None;
        }
        let mut dx: Vec<f32> = Vec::with_capacity(rows * ci);
        let dx_base = SendPtr(dx.as_mut_ptr());
        let dw = self.pixel_chunks_grad_filter(x, dy, (oh, ow), |m0, m1, dy| {
            let mc = m1 - m0;
            let dyv = Self::view(dy, 1, 1, mc, co);
            // SAFETY: rows `m0..m1` of `dx` (within its capacity), written by this chunk
            // alone: every row, all `ci` values (the tiles store whole rows).
            unsafe {
                let dst = dx_base.get().add(m0 * ci);
                match prior {
                    Some(p) => {
                        let pv = Self::view(&p[m0 * ci..m1 * ci], 1, 1, mc, ci);
                        let written = conv.run_with_residual_on_this_thread(dyv, dst, ci, pv);
                        assert!(written, "the input gradient's kernels take the prior");
                    }
                    None => conv.run_on_this_thread(dyv, dst, ci),
                }
            }
        });
        // SAFETY: the chunks cover rows 0..rows, each written whole above.
        unsafe { dx.set_len(rows * ci) };
        Some((dx, dw))
    }

    /// The filter gradient `X_col^T dY` over chunks of output pixels (the general path of
    /// [`TrainConv::grad_filter`]), `before_chunk(m0, m1)` run before each chunk's product,
    /// on the thread that computes it.
    fn pixel_chunks_grad_filter(
        &self,
        x: &[f32],
        dy: DyRows,
        (oh, ow): (usize, usize),
        before_chunk: impl Fn(usize, usize, &[f32]) + Sync,
    ) -> Vec<f32> {
        let (k, co) = (self.kh * self.kw * self.cin, self.cout);
        let rows = self.n * oh * ow;
        // Chunks as long as the rounding allows: each chunk's product is written out and
        // added to the running sum, so short chunks over wide filters (late layers: few
        // pixels, thousands of filter rows) cost more in memory traffic than in FLOPs. Few
        // groups of chunks (ordered_accumulate) run their panels in parallel instead.
        let (chunk, chunks) = balanced_chunks(rows, MAX_CHUNK_ROWS);
        let parallel = accumulate_groups(chunks) < 2 * rayon::current_num_threads();
        let direct =
            self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pads == [0, 0, 0, 0];
        let isa = Isa::detect();
        // Each chunk's product is dW = X_col^T dY in the filter's own layout, or dW^T =
        // dY^T X_col (transposed once at the end), both operands read where they lie, the
        // left one by columns: the narrower one, whose rows lie closer together (Inception's
        // 3x3 stride-2 288 -> 384 at batch 12: X_col's 2,592-float rows read by columns took
        // 61 ms, dY's 384-float rows 31). Each element is the same sum in the same order
        // either way.
        let transpose_x = k < co;
        let sum = ordered_accumulate(chunks, co * k, |ci, acc, first| {
            let (m0, m1) = (ci * chunk, ((ci + 1) * chunk).min(rows));
            let mc = m1 - m0;
            let chunk_product = |dy: &[f32], acc: &mut [f32]| {
                before_chunk(m0, m1, dy);
                // The chunk's columns: the input itself, or gathered into scratch slot 0
                // (overwritten whole, never zeroed).
                let product = |x_col: &[f32], acc: &mut [f32]| {
                    if transpose_x {
                        transposed_times_matrix(
                            isa,
                            (x_col, mc, k),
                            dy,
                            co,
                            acc,
                            !first,
                            parallel,
                            Operands::Packed,
                        );
                    } else {
                        transposed_times_matrix(
                            isa,
                            (dy, mc, co),
                            x_col,
                            k,
                            acc,
                            !first,
                            parallel,
                            Operands::Packed,
                        );
                    }
                };
                if direct {
                    product(&x[m0 * k..m1 * k], acc);
                } else {
                    with_scratch(0, mc * k, |cols| {
                        self.gather_columns(x, m0, m1, (oh, ow), cols);
                        product(cols, acc);
                    });
                }
            };
            match dy {
                DyRows::Tensor(dy) => chunk_product(&dy[m0 * co..m1 * co], acc),
                // The chunk's rows made into scratch slot 1 (written whole).
                DyRows::Made(bn) => with_scratch(1, mc * co, |dy| {
                    bn.rows(m0, dy);
                    chunk_product(dy, acc);
                }),
            }
        });
        if transpose_x {
            return sum;
        }
        let mut dw = zeroed(k * co);
        transpose_into(&sum, co, k, &mut dw);
        dw
    }

    /// Whether a 3x3 stride-1 convolution of `cin -> cout` channels takes F(2x2, 3x3) (its
    /// forward pass and its filter gradient alike): narrow enough for its 16 planes
    /// ([`WINOGRAD_MAX_WEIGHTS`]), but not so narrow that the line form is faster
    /// ([`LINE_3X3_MAX_CHANNELS`]).
    fn f2x2_channels(cin: usize, cout: usize) -> bool {
        cin * cout <= WINOGRAD_MAX_WEIGHTS && cin.max(cout) > LINE_3X3_MAX_CHANNELS
    }

    /// Whether the filter gradient runs by Winograd F(2x2, 3x3): the narrow 3x3 stride-1
    /// convolutions whose forward pass does, with at least [`WINOGRAD_GRAD_MIN_TILES`] tiles.
    fn winograd_filter_gradient(&self, oh: usize, ow: usize) -> bool {
        !self.depthwise
            && (self.kh, self.kw) == (3, 3)
            && self.stride == [1, 1]
            && self.cin >= 16
            && Self::f2x2_channels(self.cin, self.cout)
            && self.n * oh.div_ceil(2) * ow.div_ceil(2) >= WINOGRAD_GRAD_MIN_TILES
    }

    /// The filter gradient by Winograd F(2x2, 3x3), the adjoint of the forward pass: with
    /// `V = B^T d B` (each 2x2 output tile's 4x4 input patch, as the forward pass transforms
    /// it) and `dM = A dY A^T` (the tile's output gradient), `dU[xi] = sum over tiles of
    /// V[xi]^T dM[xi]` (16 products of `cin x tiles x cout`, 2.25x fewer multiplies than
    /// `X_col^T dY`, and 4 instead of 9 input values per pixel read), then `dW = G^T dU G`
    /// in f64. Tiles in chunks of [`WINOGRAD_CHUNK_TILES`], the chunks' sums added in a fixed
    /// order ([`ordered_accumulate`]).
    fn winograd_grad_filter(&self, x: &[f32], dy: &[f32], (oh, ow): (usize, usize)) -> Vec<f32> {
        use crate::winograd::G2 as G;
        let isa = Isa::detect();
        let (ci, co) = (self.cin, self.cout);
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        let tiles = self.n * th * tw;
        let (chunk, chunks) = balanced_chunks(tiles, WINOGRAD_CHUNK_TILES);
        let parallel = accumulate_groups(chunks) < 2 * rayon::current_num_threads();
        let zeros = vec![0f32; ci.max(co)];
        let du = ordered_accumulate(chunks, 16 * ci * co, |k, acc, first| {
            let (t0, t1) = (k * chunk, ((k + 1) * chunk).min(tiles));
            let nt = t1 - t0;
            // V [16][nt][ci], dM [16][nt][co] in scratch slots 0 and 1 (written whole).
            with_scratch(0, 16 * nt * ci, |v| {
                with_scratch(1, 16 * nt * co, |dm| {
                    self.winograd_grad_tiles(isa, (x, dy), (oh, ow), t0..t1, &zeros, (v, dm));
                    // dU[xi] (+)= V[xi]^T dM[xi].
                    for xi in 0..16 {
                        transposed_times_matrix(
                            isa,
                            (&v[xi * nt * ci..][..nt * ci], nt, ci),
                            &dm[xi * nt * co..][..nt * co],
                            co,
                            &mut acc[xi * ci * co..][..ci * co],
                            !first,
                            parallel,
                            Operands::InPlace,
                        );
                    }
                })
            });
        });
        // dW[y][x] = sum_ij G[i][y] G[j][x] dU[i * 4 + j].
        combine_products(&du, ci * co, 9, |tap| {
            let (y, xx) = (tap / 3, tap % 3);
            (0..16)
                .map(|xi| (xi, G[xi / 4][y] * G[xi % 4][xx]))
                .collect()
        })
    }

    /// The axis along which the filter gradient runs by the line Winograd F(3, 3) of the
    /// forward pass ([`Conv2d::with_line_winograd`]): stride-1 filters at least 3 taps wide
    /// (`1 x r` and `kh x r` along the width, `r x 1` along the height) that no F(2x2) takes,
    /// with at least [`WINOGRAD_GRAD_MIN_TILES`] tiles.
    fn line_filter_gradient(&self, oh: usize, ow: usize) -> Option<LineAxis> {
        let axis = match (self.kh, self.kw) {
            (k, 1) if WinogradLine::supports(k) => LineAxis::Rows,
            (_, k) if WinogradLine::supports(k) => LineAxis::Cols,
            _ => return None,
        };
        let tiles = match axis {
            LineAxis::Cols => self.n * oh * ow.div_ceil(LINE_M),
            LineAxis::Rows => self.n * ow * oh.div_ceil(LINE_M),
        };
        (!self.depthwise
            && self.stride == [1, 1]
            && self.cin >= 16
            && tiles >= WINOGRAD_GRAD_MIN_TILES)
            .then_some(axis)
    }

    /// The filter gradient by the line Winograd F(3, 3), the adjoint of its forward pass:
    /// for output tile `t` (3 outputs), kernel row `a` and three-tap piece `q`, `V = B^T d`
    /// of the input cells `3(t + q) .. 3(t + q) + 5` of row `a`'s input line and `dM = A dY`
    /// of the tile's output gradient; `dU[a][q][i] = sum over tiles of V[i]^T dM[i]` (5
    /// products per piece, against 3 per output for each of its 3 taps), then
    /// `dW[a][3q + k] = sum_i G[i][k] dU[a][q][i]` in f64. The taps past the last piece
    /// (`r % 3` of them) are the direct sums of their input cells times the output gradients.
    /// Tiles in chunks of [`WINOGRAD_CHUNK_TILES`], the chunks' sums added in a fixed order.
    fn line_grad_filter(
        &self,
        x: &[f32],
        dy: &[f32],
        (oh, ow): (usize, usize),
        axis: LineAxis,
    ) -> Vec<f32> {
        let isa = Isa::detect();
        let by_output = self.line_grad_by_output(isa);
        self.line_grad_filter_with(isa, x, dy, (oh, ow), axis, by_output)
    }

    /// The line filter gradient's layout along `axis` (see [`LineGradShape`]).
    fn line_grad_shape(&self, axis: LineAxis) -> LineGradShape {
        let (rows, r) = match axis {
            LineAxis::Cols => (self.kh, self.kw),
            LineAxis::Rows => (1, self.kh),
        };
        let (pieces, rem) = (r / 3, r % 3);
        let transformed = rows * pieces * LINE_ALPHA;
        LineGradShape {
            rows,
            r,
            pieces,
            rem,
            transformed,
            products: transformed + rows * rem * 3,
        }
    }

    /// Which way round [`TrainConv::line_grad_filter`] multiplies each product: `false`,
    /// `dU[p] (cin x cout) = V[p]^T dM`; `true`, `dU[p]^T (cout x cin) = dM^T V[p]`, the
    /// taps transposed at the end. Both read their operands where they lie; the same sums in
    /// the same order either way; the one with fewer padded rows and columns of the
    /// register tiles.
    fn line_grad_by_output(&self, isa: Isa) -> bool {
        let (ci, co) = (self.cin, self.cout);
        padded_work(isa, co, ci) < padded_work(isa, ci, co)
    }

    /// [`TrainConv::line_grad_filter`], each product's way round chosen by `by_output`.
    fn line_grad_filter_with(
        &self,
        isa: Isa,
        x: &[f32],
        dy: &[f32],
        (oh, ow): (usize, usize),
        axis: LineAxis,
        by_output: bool,
    ) -> Vec<f32> {
        let (ci, co) = (self.cin, self.cout);
        let LineGradShape {
            rows,
            r,
            pieces,
            rem,
            transformed,
            products,
        } = self.line_grad_shape(axis);
        let (per_image, len) = match axis {
            LineAxis::Cols => (oh, ow),
            LineAxis::Rows => (ow, oh),
        };
        let per_line = len.div_ceil(LINE_M);
        let tiles = self.n * per_image * per_line;
        let (chunk, chunks) = balanced_chunks(tiles, WINOGRAD_CHUNK_TILES);
        let parallel = accumulate_groups(chunks) < 2 * rayon::current_num_threads();
        let zeros = vec![0f32; ci.max(co)];
        let [top, _, left, _] = self.pads;
        let image = self.h * self.w;
        // The input pixel of output line `line`'s kernel row `a` at padded `cell` along the
        // axis (or zeros).
        let pixel = |line: usize, a: usize, cell: usize| -> &[f32] {
            let (b, o) = (line / per_image, line % per_image);
            // Padded coordinate `v` inside `0..n` once its `pad` cells are taken off.
            let inside = |v: usize, pad: usize, n: usize| v.checked_sub(pad).filter(|&u| u < n);
            let (iy, ix) = match axis {
                LineAxis::Cols => (inside(o + a, top, self.h), inside(cell, left, self.w)),
                LineAxis::Rows => (inside(cell, top, self.h), inside(o, left, self.w)),
            };
            let src = iy.zip(ix).map(|(iy, ix)| iy * self.w + ix);
            match src {
                Some(p) => &x[(b * image + p) * ci..][..ci],
                None => &zeros[..ci],
            }
        };
        let grad = |line: usize, o: usize| -> &[f32] {
            if o >= len {
                return &zeros[..co];
            }
            let (b, l) = (line / per_image, line % per_image);
            let (oy, ox) = match axis {
                LineAxis::Cols => (l, o),
                LineAxis::Rows => (o, l),
            };
            &dy[((b * oh + oy) * ow + ox) * co..][..co]
        };
        let du = ordered_accumulate(chunks, products * ci * co, |k, acc, first| {
            let (t0, t1) = (k * chunk, ((k + 1) * chunk).min(tiles));
            let nt = t1 - t0;
            // V [products][nt][ci] and dM [6][nt][co] in scratch (written whole).
            with_scratch(0, products * nt * ci, |v| {
                with_scratch(1, (LINE_ALPHA + 1) * nt * co, |dm| {
                    let (vbase, dmbase) = (v.as_mut_ptr(), dm.as_mut_ptr());
                    for (j, tile) in (t0..t1).enumerate() {
                        let (line, t) = (tile / per_line, tile % per_line);
                        for a in 0..rows {
                            for q in 0..pieces {
                                let d: [*const f32; LINE_ALPHA] = std::array::from_fn(|e| {
                                    pixel(line, a, LINE_M * (t + q) + e).as_ptr()
                                });
                                let first = (a * pieces + q) * LINE_ALPHA;
                                // SAFETY: each source holds `ci` floats (a pixel or
                                // `zeros`), each destination is `ci` floats of `v` (tile
                                // j < nt).
                                unsafe {
                                    let dst: [*mut f32; LINE_ALPHA] = std::array::from_fn(|i| {
                                        vbase.add(((first + i) * nt + j) * ci)
                                    });
                                    line_input_tile(isa, &d, &dst, ci);
                                }
                            }
                            for e in 0..rem {
                                for o in 0..3 {
                                    let src = pixel(line, a, LINE_M * t + 3 * pieces + o + e);
                                    let p = transformed + (a * rem + e) * 3 + o;
                                    v[(p * nt + j) * ci..][..ci].copy_from_slice(src);
                                }
                            }
                        }
                        // dM = A dY over the tile's 3 output gradients (outputs past the
                        // end have none); plane 5 is output 1's.
                        let g: [*const f32; LINE_M] =
                            std::array::from_fn(|o| grad(line, LINE_M * t + o).as_ptr());
                        // SAFETY: each source holds `co` floats (an output gradient or
                        // `zeros`), each destination is `co` floats of `dm` (tile j < nt).
                        unsafe {
                            let dst: [*mut f32; LINE_ALPHA + 1] =
                                std::array::from_fn(|i| dmbase.add((i * nt + j) * co));
                            line_grad_output_tile(isa, &g, &dst, co);
                        }
                    }
                    let plane_of = |p: usize| {
                        if p < transformed {
                            p % LINE_ALPHA
                        } else {
                            // An extra tap's cells of output o: the plane of its direct
                            // products, A's column of dY_o alone.
                            LINE_EXTRA_PLANES[(p - transformed) % 3]
                        }
                    };
                    for p in 0..products {
                        let (v, dm) = (
                            &v[p * nt * ci..][..nt * ci],
                            &dm[plane_of(p) * nt * co..][..nt * co],
                        );
                        let acc = &mut acc[p * ci * co..][..ci * co];
                        if by_output {
                            // dU[p]^T (+)= dM[plane of p]^T V[p].
                            transposed_times_matrix(
                                isa,
                                (dm, nt, co),
                                v,
                                ci,
                                acc,
                                !first,
                                parallel,
                                Operands::InPlace,
                            );
                        } else {
                            // dU[p] (+)= V[p]^T dM[plane of p].
                            transposed_times_matrix(
                                isa,
                                (v, nt, ci),
                                dm,
                                co,
                                acc,
                                !first,
                                parallel,
                                Operands::InPlace,
                            );
                        }
                    }
                })
            });
        });
        // dW[a][3q + k] = sum_i G[i][k] dU[a][q][i]; an extra tap: its three sums.
        let dw = combine_products(&du, ci * co, rows * r, |tap| {
            let (a, c) = (tap / r, tap % r);
            if c < 3 * pieces {
                let (q, k) = (c / 3, c % 3);
                (0..LINE_ALPHA)
                    .map(|i| ((a * pieces + q) * LINE_ALPHA + i, LINE_G[i][k]))
                    .collect()
            } else {
                let e = c - 3 * pieces;
                (0..3)
                    .map(|o| (transformed + (a * rem + e) * 3 + o, 1.0))
                    .collect()
            }
        });
        if !by_output {
            return dw;
        }
        // Each tap's cout x cin back to the filter's cin x cout, the taps side by side.
        let mut out = zeroed(dw.len());
        out.par_chunks_mut(ci * co)
            .zip(dw.par_chunks(ci * co))
            .for_each(|(dst, src)| transpose_into(src, co, ci, dst));
        out
    }

    /// One chunk of [`TrainConv::winograd_grad_filter`]'s tiles (`tiles`, counted over the
    /// batch): each tile's transformed input patch `V = B^T d B` into `v` (`[16][tiles][cin]`)
    /// and transformed output gradient `dM = A dY A^T` into `dm` (`[16][tiles][cout]`),
    /// every element written; `zeros` (at least `max(cin, cout)`) stands for padding.
    fn winograd_grad_tiles(
        &self,
        isa: Isa,
        (x, dy): (&[f32], &[f32]),
        (oh, ow): (usize, usize),
        tiles: std::ops::Range<usize>,
        zeros: &[f32],
        (v, dm): (&mut [f32], &mut [f32]),
    ) {
        let (ci, co) = (self.cin, self.cout);
        let [top, _, left, _] = self.pads;
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        let image = self.h * self.w;
        let (t0, t1) = (tiles.start, tiles.end);
        let nt = t1 - t0;
        assert!(v.len() == 16 * nt * ci && dm.len() == 16 * nt * co && zeros.len() >= ci.max(co));
        let (vbase, dmbase) = (v.as_mut_ptr(), dm.as_mut_ptr());
        for (j, tile) in (t0..t1).enumerate() {
            let (b, rem) = (tile / (th * tw), tile % (th * tw));
            let (ty, tx) = (rem / tw, rem % tw);
            let mut rows = [zeros.as_ptr(); 16];
            for i in 0..4 {
                let Some(iy) = (2 * ty + i).checked_sub(top).filter(|&y| y < self.h) else {
                    continue;
                };
                for e in 0..4 {
                    if let Some(ix) = (2 * tx + e).checked_sub(left).filter(|&v| v < self.w) {
                        rows[i * 4 + e] = x[(b * image + iy * self.w + ix) * ci..].as_ptr();
                    }
                }
            }
            // SAFETY: each row pointer holds `ci` floats (an input pixel or `zeros`);
            // each destination is `ci` floats inside `v` (tile `j < nt` of plane `xi`).
            unsafe {
                let dst: [*mut f32; 16] = std::array::from_fn(|xi| vbase.add((xi * nt + j) * ci));
                crate::winograd::input_tile(isa, &rows, dst, ci);
            }
            // dM = A dY A^T (outputs past the edge have no gradient).
            let g = |a: usize, e: usize| -> *const f32 {
                let (oy, ox) = (2 * ty + a, 2 * tx + e);
                if oy < oh && ox < ow {
                    dy[((b * oh + oy) * ow + ox) * co..][..co].as_ptr()
                } else {
                    zeros.as_ptr()
                }
            };
            // SAFETY: each source holds `co` floats (an output gradient or `zeros`), each
            // destination is `co` floats inside `dm` (tile `j < nt` of plane `xi`).
            unsafe {
                let dst: [*mut f32; 16] = std::array::from_fn(|xi| dmbase.add((xi * nt + j) * co));
                crate::winograd::grad_output_tile(
                    isa,
                    &[g(0, 0), g(0, 1), g(1, 0), g(1, 1)],
                    &dst,
                    co,
                );
            }
        }
    }

    /// Writes the input cells output pixels `m0..m1` (counted over the batch) read into
    /// `cols` (`[pixels, kh, kw, cin]`, every element: zeros where they read padding).
    fn gather_columns(
        &self,
        x: &[f32],
        m0: usize,
        m1: usize,
        (oh, ow): (usize, usize),
        cols: &mut [f32],
    ) {
        let ci = self.cin;
        let k = self.kh * self.kw * ci;
        let image = self.h * self.w;
        let [t, _, l, _] = self.pads;
        let row = self.kw * ci;
        for (i, m) in (m0..m1).enumerate() {
            let (b, y, xo) = (m / (oh * ow), (m / ow) % oh, m % ow);
            let col = &mut cols[i * k..][..k];
            let top = (y * self.stride[0]).checked_sub(t);
            let left = (xo * self.stride[1]).checked_sub(l);
            match (top, left) {
                // The window inside the input: each kernel row reads `kw` consecutive
                // pixels, one copy.
                (Some(iy), Some(ix)) if iy + self.kh <= self.h && ix + self.kw <= self.w => {
                    for (a, dst) in col.chunks_exact_mut(row).enumerate() {
                        dst.copy_from_slice(&x[(b * image + (iy + a) * self.w + ix) * ci..][..row]);
                    }
                }
                // On the border: zeros, then the taps inside the input.
                _ => {
                    col.fill(0.0);
                    for (tap, pixel) in self.reads(y, xo) {
                        col[tap * ci..][..ci].copy_from_slice(&x[(b * image + pixel) * ci..][..ci]);
                    }
                }
            }
        }
    }

    fn dw_grad(&self, (oh, ow): (usize, usize)) -> DwGrad {
        DwGrad {
            c: self.cin,
            h: self.h,
            w: self.w,
            oh,
            ow,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pads: [self.pads[0], self.pads[2]],
        }
    }

    /// The input gradient, every row written once (by [`depthwise_grad::input_row`]) in
    /// parallel, not zeroed first.
    fn depthwise_grad_input(
        &self,
        dy: &[f32],
        filter: &[f32],
        (oh, ow): (usize, usize),
    ) -> Vec<f32> {
        let g = self.dw_grad((oh, ow));
        let cols = ColumnTaps::new(&g);
        let isa = Isa::detect();
        let (c, h, w) = (self.cin, self.h, self.w);
        let (len, per_image) = (self.n * h * w * c, oh * ow * c);
        let mut dx = Vec::with_capacity(len);
        dx.spare_capacity_mut()[..len]
            .par_chunks_mut(w * c)
            .enumerate()
            .for_each(|(row, dxr)| {
                let (b, iy) = (row / h, row % h);
                let dy = &dy[b * per_image..][..per_image];
                depthwise_grad::input_row(isa, &g, (dy, filter), iy, &cols, dxr);
            });
        // SAFETY: the rows cover all `len` elements and input_row writes each of its row.
        unsafe { dx.set_len(len) };
        dx
    }

    fn depthwise_grad_filter(&self, x: &[f32], dy: &[f32], (oh, ow): (usize, usize)) -> Vec<f32> {
        let c = self.cin;
        let taps = self.kh * self.kw;
        let rows = self.n * oh;
        if rows == 0 || c == 0 {
            return vec![0f32; taps * c];
        }
        let image = self.h * self.w;
        let chunk = rows.div_ceil(SUM_GROUPS).max(1);
        // 3x3 and 5x5 filters on vectors of channels, one accumulator per tap.
        let vectors = depthwise_grad::filter_row_supported(self.kh, self.kw);
        let g = self.dw_grad((oh, ow));
        let isa = Isa::detect();
        ordered_sum(rows.div_ceil(chunk), |ci| {
            // Each output row's sums first, then added to the chunk's (the rounding
            // grows with `ow + rows`, not with their product).
            let mut acc = vec![0f32; taps * c];
            let mut row_acc = vec![0f32; taps * c];
            for row in ci * chunk..((ci + 1) * chunk).min(rows) {
                let (b, y) = (row / oh, row % oh);
                if vectors {
                    let x = &x[b * image * c..][..image * c];
                    let dy = &dy[(b * oh + y) * ow * c..][..ow * c];
                    depthwise_grad::filter_row(isa, &g, x, dy, y, &mut row_acc);
                } else {
                    row_acc.fill(0.0);
                    for xo in 0..ow {
                        let g = &dy[((b * oh + y) * ow + xo) * c..][..c];
                        for (tap, pixel) in self.reads(y, xo) {
                            let v = &x[(b * image + pixel) * c..][..c];
                            let s = &mut row_acc[tap * c..][..c];
                            for ((s, v), g) in s.iter_mut().zip(v).zip(g) {
                                *s += v * g;
                            }
                        }
                    }
                }
                for (s, r) in acc.iter_mut().zip(&row_acc) {
                    *s += r;
                }
            }
            acc
        })
    }
}

/// Where the filter gradient's chunks of pixels read the output's gradient: a whole tensor,
/// or a batch norm's input gradient made chunk by chunk (see
/// [`TrainConv::grad_input_and_filter_after`]).
#[derive(Clone, Copy)]
enum DyRows<'a, 'b> {
    Tensor(&'a [f32]),
    Made(&'a BatchNormGrad<'b>),
}

/// How [`TrainConv::line_grad_filter`] lays out its products.
struct LineGradShape {
    /// Kernel rows across the axis.
    rows: usize,
    /// Taps along the axis: `pieces` of three, then `rem` extra taps.
    r: usize,
    pieces: usize,
    rem: usize,
    /// The pieces' products: (row a, piece q, plane i) at `(a * pieces + q) * ALPHA + i`.
    transformed: usize,
    /// All of them: the extra taps' (row a, tap e, output j) after the pieces', at
    /// `transformed + (a * rem + e) * 3 + j`.
    products: usize,
}

/// The register tiles' work for an `m x n` product (per unit of its reduction): rows in
/// whole tiles; columns in whole panels, a last one of at most half a panel at half cost
/// (the half-width tile).
fn padded_work(isa: Isa, m: usize, n: usize) -> usize {
    let (mr, nr) = (isa.mr(), isa.nr());
    let cols = match n % nr {
        0 => n,
        t if 2 * t <= nr => n - t + nr / 2,
        t => n - t + nr,
    };
    m.next_multiple_of(mr) * cols
}

/// `v + prior` element by element (`v` when there is no `prior`), on the thread pool when
/// large ([`add_inplace`]).
fn add_onto(mut v: Vec<f32>, prior: Option<&[f32]>) -> Vec<f32> {
    if let Some(prior) = prior {
        add_inplace(&mut v, prior);
    }
    v
}

/// A Winograd filter gradient from its transformed products: `taps` filter taps of `plane`
/// elements each, tap `t`'s element `e` the f64 sum of `c * du[p * plane + e]` over the
/// `(p, c)` of `terms(t)` (zero coefficients skipped), the taps in parallel.
fn combine_products(
    du: &[f32],
    plane: usize,
    taps: usize,
    terms: impl Fn(usize) -> Vec<(usize, f64)> + Sync,
) -> Vec<f32> {
    // Blocks of a tap's elements: each term adds its plane's block onto the block's f64
    // sums (kept in L1), compiled for the CPU's widest vectors. Each element is the same sum
    // in the same order as `terms.map(..).sum::<f64>()`, which starts from -0.0.
    const BLOCK: usize = 512;
    let mut dw = zeroed(taps * plane);
    dw.par_chunks_mut(plane).enumerate().for_each(|(tap, out)| {
        let terms: Vec<(usize, f64)> = terms(tap).into_iter().filter(|&(_, c)| c != 0.0).collect();
        let mut acc = [0f64; BLOCK];
        for (b, out) in out.chunks_mut(BLOCK).enumerate() {
            let (e0, n) = (b * BLOCK, out.len());
            vectorised(
                #[inline(always)]
                || {
                    let acc = &mut acc[..n];
                    acc.fill(-0.0);
                    for &(p, c) in &terms {
                        let src = &du[p * plane + e0..][..n];
                        for i in 0..n {
                            acc[i] += c * src[i] as f64;
                        }
                    }
                    for i in 0..n {
                        out[i] = acc[i] as f32;
                    }
                },
            );
        }
    });
    dw
}

/// How [`transposed_times_matrix`] reads its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operands {
    /// Where they lie; only the last, partial group of `MR` columns of `a` and panel of `NR`
    /// columns of `b` are copied (zero-padded). For the small products of the Winograd
    /// filter gradients (a plane's `cin x cout` over at most 128 tiles), which packing made
    /// slower (Conv2d_2b 3x3 32 -> 64 at batch 12: 46 -> 52 ms).
    InPlace,
    /// Packed where reused: all of `a`'s groups `[kc][MR]` once when several panels read
    /// them, each panel of `b` `[kc][NR]` (by the thread that runs it) when it is strided
    /// (`n > NR`) and several groups read it. Read where they lie, a tile's `kc` rows `m` or
    /// `n` floats apart fall into a few cache sets: the direct filter gradients over
    /// 256-pixel chunks (batch 12, 25 cold calls: Inception-v3's 6a 3x3/2 288 -> 384
    /// 29.9 -> 26.2 ms; 7c 1x1 2048 -> 448 7.2 -> 5.6 ms).
    Packed,
}

/// `c[m x n] = a^T b` for `a[kc x m]` (`+ c` when `accumulate`: the tile's sum over `kc` is
/// added to `c` as one addition), all row-major, on the GEMM tiles, `a` read by columns
/// (no transposed copy), as [`Operands`] says. Each element is one accumulator over `kc` in
/// order, as [`Conv2d::matrix`]'s kernels sum.
/// `parallel`: the panels are shared out over the thread pool (for callers with few such
/// products to run side by side).
#[allow(clippy::too_many_arguments)] // one GEMM's operands and modes
fn transposed_times_matrix(
    isa: Isa,
    (a, kc, m): (&[f32], usize, usize),
    b: &[f32],
    n: usize,
    c: &mut [f32],
    accumulate: bool,
    parallel: bool,
    operands: Operands,
) {
    assert!(a.len() == kc * m && b.len() == kc * n && c.len() == m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (mr, nr) = (isa.mr(), isa.nr());
    let groups = m.div_ceil(mr);
    let count = n.div_ceil(nr);
    let packing = operands == Operands::Packed;
    // The groups of `a` read from a packed copy: all, or only a last one of fewer than `MR`
    // columns (the kernel reads `MR` values of each row, which would run off `a`'s end).
    let first_packed = if packing && count > 1 {
        0
    } else if !m.is_multiple_of(mr) {
        groups - 1
    } else {
        groups
    };
    let pack_b = packing && groups > 1 && n > nr;
    let block_a = kc * mr;
    let packed_len = (groups - first_packed) * block_a;
    with_scratch(2, packed_len + SLACK, |a_buf| {
        let packed_a = aligned_mut(a_buf);
        pack_columns(
            a,
            m,
            (mr, first_packed),
            &mut packed_a[..packed_len],
            parallel,
        );
        let packed_a = &*packed_a;
        // The tiles' biases (`NR` of them, at most 32): none.
        let zero_bias = [0f32; 32];
        debug_assert!(nr <= zero_bias.len());
        let c_base = SendPtr(c.as_mut_ptr());
        // Panels `p0..p1` (their own columns of `c`).
        let panels = |p0: usize, p1: usize| {
            with_scratch(3, kc * nr + SLACK, |b_buf| {
                let packed_b = &mut aligned_mut(b_buf)[..kc * nr];
                for p in p0..p1 {
                    let cols = (n - p * nr).min(nr);
                    let (panel, ldb) = if pack_b || cols < nr {
                        for (dst, row) in packed_b.chunks_exact_mut(nr).zip(b.chunks_exact(n)) {
                            dst[..cols].copy_from_slice(&row[p * nr..p * nr + cols]);
                            dst[cols..].fill(0.0);
                        }
                        (packed_b.as_ptr(), nr)
                    } else {
                        (b[p * nr..].as_ptr(), n)
                    };
                    for g in 0..groups {
                        let (column, a_stride): ([*const f32; 1], usize) = if g >= first_packed {
                            ([packed_a[(g - first_packed) * block_a..].as_ptr()], mr)
                        } else {
                            ([a[g * mr..].as_ptr()], m)
                        };
                        // SAFETY: inside `c` (row `g * mr`, column `p * nr`).
                        let out = unsafe { c_base.get().add(g * mr * n + p * nr) };
                        let tile = microkernel::Tile {
                            taps: 1,
                            kc,
                            a: column.as_ptr(),
                            b: panel,
                            ldb,
                            bias: zero_bias.as_ptr(),
                            scale: std::ptr::null(),
                            shift: std::ptr::null(),
                            c: out,
                            ldc: n,
                            rows: (m - g * mr).min(mr),
                            cols,
                            act: Act::Identity,
                            stream: false,
                            // The kernel reads each row of the residual before storing that
                            // row.
                            res: if accumulate { out } else { std::ptr::null() },
                            ldr: n,
                            a_stride,
                            a_off: 0,
                            resume: false,
                            partial: false,
                        };
                        // SAFETY: each of the `kc` rows of the column block holds `MR`
                        // readable floats from its start (a packed block `MR` wide, or `a`'s
                        // row `m` wide with `g * mr + MR <= m`: groups with fewer columns are
                        // packed); the panel `kc` rows of `NR` floats `ldb` apart (packed, or
                        // a full panel of `b` ending inside it); the tile's `rows` rows of
                        // `cols` outputs lie inside `c`, `n` apart, in this call's panels
                        // only.
                        unsafe { microkernel::run(isa, &tile) };
                    }
                }
            })
        };
        if parallel && count > 1 {
            // Each element's sum is computed by one tile whichever thread runs it: the same
            // result as the sequential loop.
            let per = count.div_ceil(rayon::current_num_threads() * 4).max(1);
            (0..count.div_ceil(per))
                .into_par_iter()
                .for_each(|i| panels(i * per, ((i + 1) * per).min(count)));
        } else {
            panels(0, count);
        }
    });
}

/// The groups of `mr` consecutive columns from `first` on of `a[kc x m]` (row-major) as
/// blocks `[kc][mr]`, the last zero-padded: `out[g - first][k][r] = a[k][g * mr + r]`.
fn pack_columns(a: &[f32], m: usize, (mr, first): (usize, usize), out: &mut [f32], parallel: bool) {
    let block = a.len() / m * mr;
    if block == 0 {
        return;
    }
    let pack = |(i, dst): (usize, &mut [f32])| {
        let c0 = (first + i) * mr;
        let w = (m - c0).min(mr);
        for (d, row) in dst.chunks_exact_mut(mr).zip(a.chunks_exact(m)) {
            d[..w].copy_from_slice(&row[c0..c0 + w]);
            d[w..].fill(0.0);
        }
    };
    if parallel && out.len() > 1 << 16 {
        out.par_chunks_mut(block).enumerate().for_each(pack);
    } else {
        out.chunks_mut(block).enumerate().for_each(pack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a^T b` with `a` read by columns, on every kernel set: shapes with a last group of
    /// fewer than `MR` columns of `a` and a last panel of `b` narrower than `NR` (half-width
    /// and wider), either operand packed or read where it lies, sequential and on the pool,
    /// written and added to what `c` held.
    #[test]
    fn transposed_times_matrix_is_a_transposed_times_b_on_every_isa() {
        for isa in Isa::all_supported() {
            for (kc, m, n) in [
                (1, 1, 1),
                (7, 12, 32),
                (19, 13, 40),
                (33, 29, 57),
                (5, 3, 70),
                // Packed: several groups, one full panel (`b` in place); one full group,
                // two panels (only `a` packed); both packed; an empty reduction.
                (9, 24, 32),
                (9, 12, 64),
                (40, 36, 96),
                (0, 5, 7),
                // `a` packed in parallel.
                (300, 240, 64),
            ] {
                let a: Vec<f32> = (0..kc * m)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                    .collect();
                let b: Vec<f32> = (0..kc * n)
                    .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
                    .collect();
                let prior: Vec<f32> = (0..m * n).map(|i| (i % 11) as f32 - 5.0).collect();
                for (accumulate, parallel, operands) in [false, true].into_iter().flat_map(|acc| {
                    [false, true].into_iter().flat_map(move |par| {
                        [Operands::InPlace, Operands::Packed].map(|o| (acc, par, o))
                    })
                }) {
                    let mut c = if accumulate {
                        prior.clone()
                    } else {
                        vec![f32::NAN; m * n]
                    };
                    transposed_times_matrix(
                        isa,
                        (&a, kc, m),
                        &b,
                        n,
                        &mut c,
                        accumulate,
                        parallel,
                        operands,
                    );
                    for i in 0..m {
                        for j in 0..n {
                            let sum: f64 = (0..kc)
                                .map(|k| a[k * m + i] as f64 * b[k * n + j] as f64)
                                .sum();
                            let want = sum
                                + if accumulate {
                                    prior[i * n + j] as f64
                                } else {
                                    0.0
                                };
                            let got = c[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                "{isa:?} kc {kc} m {m} n {n} accumulate {accumulate} {operands:?}: c[{i}][{j}] = {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A stride-1 `kk x kk` convolution padded to keep the size, `n` images of `side x side`,
    /// with an input, a filter, an output gradient and a prior input gradient of varied
    /// values: `(spec, x, filter, dy, prior)`.
    #[allow(clippy::type_complexity)]
    fn same_padded_case(
        n: usize,
        side: usize,
        (ci, co): (usize, usize),
        kk: usize,
    ) -> (TrainConv, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let t = TrainConv {
            n,
            h: side,
            w: side,
            cin: ci,
            cout: co,
            kh: kk,
            kw: kk,
            stride: [1, 1],
            pads: [kk / 2; 4],
            depthwise: false,
        };
        let (lx, lf, ly) = t.sizes();
        let x = (0..lx)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let f = (0..lf)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
            .collect();
        let dy = (0..ly)
            .map(|i| ((i * 29 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let prior = (0..lx).map(|i| (i % 13) as f32 - 6.0).collect();
        (t, x, f, dy, prior)
    }

    /// Both gradients of a 1x1 convolution in one pass: on a pool of two threads (where the
    /// pixels' chunks make enough groups) the single pass runs and gives the values of the
    /// separate gradients bit for bit, within rounding of float64 sums; with the prior
    /// added; through the dot kernels (3 input channels, 40 output); and the fallbacks (fewer
    /// output channels than input, a prior the dot kernels cannot add, a 3x3 filter, too few
    /// pixels) give the same values too.
    #[test]
    fn pointwise_gradients_in_one_pass_equal_the_separate_gradients() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            // (n, side, cin, cout, kernel, with prior, single pass expected)
            for (n, side, ci, co, kk, with_prior, fused) in [
                (2, 48, 16, 40, 1, false, true),
                (2, 48, 24, 40, 1, true, true),
                (2, 48, 40, 24, 1, true, false),
                (2, 48, 3, 40, 1, false, true),
                (2, 48, 3, 40, 1, true, false),
                (2, 48, 8, 12, 3, false, false),
                (1, 9, 16, 40, 1, true, false),
            ] {
                let (t, x, f, dy, prior) = same_padded_case(n, side, (ci, co), kk);
                let prior = with_prior.then_some(prior.as_slice());
                assert_eq!(
                    t.pointwise_grads_in_one_pass(&x, DyRows::Tensor(&dy), &f, prior)
                        .is_some(),
                    fused,
                    "{ci} -> {co}, {kk}x{kk}, prior {with_prior}"
                );
                let (dx, dw) = t.grad_input_and_filter(&x, &dy, &f, prior);
                assert_eq!(dx, t.grad_input_with(&dy, &f, prior));
                assert_eq!(dw, t.grad_filter(&x, &dy));
                if kk != 1 {
                    continue;
                }
                let rows = n * side * side;
                for r in (0..rows).step_by(97) {
                    for c in 0..ci {
                        let want = (0..co)
                            .map(|o| dy[r * co + o] as f64 * f[c * co + o] as f64)
                            .sum::<f64>()
                            + prior.map_or(0.0, |p| p[r * ci + c] as f64);
                        let got = dx[r * ci + c] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "dx {got} {want}"
                        );
                    }
                }
                for c in 0..ci {
                    for o in 0..co {
                        let want: f64 = (0..rows)
                            .map(|r| x[r * ci + c] as f64 * dy[r * co + o] as f64)
                            .sum();
                        let got = dw[c * co + o] as f64;
                        let scale: f64 = (0..rows)
                            .map(|r| (x[r * ci + c] as f64 * dy[r * co + o] as f64).abs())
                            .sum();
                        assert!((got - want).abs() <= 1e-6 * scale, "dw {got} {want}");
                    }
                }
            }
        });
    }

    /// Both gradients of a convolution under a training batch norm, its input gradient made
    /// chunk by chunk (single pass) or whole: the values of the batch norm's gradient
    /// followed by the convolution's, bit for bit (a ReLU6 mask, a prior, a 1x1 to more
    /// channels, one to fewer, a 3x3).
    #[test]
    fn gradients_after_a_batch_norm_equal_the_two_steps() {
        use crate::train_norm::{self, BatchNormGrad, Rows};
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            for (ci, co, kk) in [(16, 40, 1), (40, 24, 1), (8, 12, 3)] {
                let (t, x, f, d_out, prior) = same_padded_case(2, 48, (ci, co), kk);
                // The convolution's output, the batch norm's input.
                let y = t.forward(&x, &f);
                let moments = train_norm::channel_moments(&y, co);
                let gamma: Vec<f32> = (0..co).map(|j| 0.5 + j as f32 / co as f32).collect();
                let beta: Vec<f32> = (0..co).map(|j| j as f32 / co as f32 - 0.3).collect();
                let bn = BatchNormGrad::new(
                    &y,
                    Rows::of(&d_out, co),
                    &moments,
                    &gamma,
                    &beta,
                    1e-3,
                    Some((0.0, 6.0)),
                    false,
                );
                // The batch norm's input gradient written whole, as its own backward pass
                // writes it (`train_norm::batch_norm_grad`).
                let dy = bn.input_gradient();
                for prior in [None, Some(&prior[..])] {
                    let want = t.grad_input_and_filter(&x, &dy, &f, prior);
                    assert_eq!(t.grad_input_and_filter_after(&x, &bn, &f, prior), want);
                }
                // Frozen statistics: the parameters' gradients summed as the chunks make
                // their rows, against those of the rows made whole.
                let frozen = || {
                    BatchNormGrad::new(
                        &y,
                        Rows::of(&d_out, co),
                        &moments,
                        &gamma,
                        &beta,
                        1e-3,
                        Some((0.0, 6.0)),
                        true,
                    )
                };
                let (bn, whole) = (frozen(), frozen());
                let want = t.grad_input_and_filter(&x, &whole.input_gradient(), &f, None);
                assert_eq!(t.grad_input_and_filter_after(&x, &bn, &f, None), want);
                assert_eq!(bn.parameter_gradients(), whole.parameter_gradients());
            }
        });
    }

    /// The convolution with the inference-mode batch norm in its epilogue gives the values
    /// of the two steps (`forward`, then `train_norm::batch_norm` with the moving moments),
    /// and the batch norm's gradient from that output the values of the gradient from its
    /// input: through the direct tiles (a 1x1; a 3x3 stride 2 over few channels, the padded
    /// rows; a reduction long and wide enough to run in blocks), Winograd F(2x2) (3x3, 128
    /// channels) and the line Winograd (1x7; a narrow 3x3), with no activation, ReLU and
    /// ReLU6, and channel counts that leave a partial panel.
    #[test]
    fn convolution_with_a_frozen_batch_norm_equals_the_two_steps() {
        use crate::train_norm::{self, BatchNormGrad, Rows};
        let cases = [
            // (n, side, cin, cout, kh, kw, stride, pads)
            (2, 9, 24, 40, 1, 1, 1, [0; 4]),
            (2, 17, 3, 32, 3, 3, 2, [0; 4]),
            (2, 10, 1600, 700, 1, 1, 1, [0; 4]),
            (2, 18, 128, 128, 3, 3, 1, [1; 4]),
            (2, 17, 32, 36, 1, 7, 1, [0, 0, 3, 3]),
            (2, 20, 32, 64, 3, 3, 1, [1; 4]),
        ];
        for (n, side, ci, co, kh, kw, stride, pads) in cases {
            let t = TrainConv {
                n,
                h: side,
                w: side,
                cin: ci,
                cout: co,
                kh,
                kw,
                stride: [stride; 2],
                pads,
                depthwise: false,
            };
            let (lx, lf, ly) = t.sizes();
            let x: Vec<f32> = (0..lx)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let f: Vec<f32> = (0..lf)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 240.0)
                .collect();
            let d_out: Vec<f32> = (0..ly)
                .map(|i| ((i * 29 % 89) as f32 - 44.0) / 44.0)
                .collect();
            let y = t.forward(&x, &f);
            // Moving statistics unlike the batch's, so that every bound clamps somewhere.
            let mut moments = train_norm::channel_moments(&y, co);
            for j in 0..co {
                moments[j] += (j % 5) as f32 * 0.1 - 0.2;
                moments[co + j] *= 0.5 + (j % 3) as f32 * 0.5;
            }
            let gamma = vec![1f32; co];
            let beta: Vec<f32> = (0..co).map(|j| j as f32 / co as f32 - 0.3).collect();
            let eps = 1e-3;
            let scale = train_norm::batch_norm_scale(&moments, &gamma, eps);
            for bounds in [
                (f32::NEG_INFINITY, f32::INFINITY),
                (0.0, f32::INFINITY),
                (0.0, 6.0),
            ] {
                let want = train_norm::batch_norm(&y, &moments, &gamma, &beta, eps, bounds);
                let got = t
                    .forward_batch_norm(&x, &f, (&moments[..co], &scale, &beta), bounds)
                    .unwrap();
                assert_eq!(got, want, "{kh}x{kw}/{stride} {ci} -> {co}, {bounds:?}");
                let clamp = bounds.0.is_finite().then_some(bounds);
                let from_input = BatchNormGrad::new(
                    &y,
                    Rows::of(&d_out, co),
                    &moments,
                    &gamma,
                    &beta,
                    eps,
                    clamp,
                    true,
                );
                let from_output = BatchNormGrad::frozen_from_output(
                    &got,
                    Rows::of(&d_out, co),
                    &moments,
                    &gamma,
                    &beta,
                    eps,
                    clamp,
                );
                assert_eq!(from_output.input_gradient(), from_input.input_gradient());
                let (dgamma, dbeta) = from_output.parameter_gradients();
                assert_eq!(dbeta, from_input.parameter_gradients().1);
                assert!(dgamma.is_empty());
                // The gradient passes somewhere and is stopped somewhere.
                if clamp.is_some() {
                    let dx = from_output.input_gradient();
                    assert!(dx.contains(&0.0) && dx.iter().any(|&v| v != 0.0));
                }
            }
            // A clamp the kernels do not apply.
            assert!(t
                .forward_batch_norm(&x, &f, (&moments[..co], &scale, &beta), (-1.0, 1.0))
                .is_none());
        }
    }

    /// Which training convolutions take Winograd (`tests/conv.rs` checks their values).
    #[test]
    fn narrow_3x3_stride_1_convolutions_take_winograd() {
        let conv = |cin: usize, cout: usize, k: usize, s: usize| {
            let g = ConvGeometry::new(k, k, cin).strides([s, s]);
            let w = vec![0.5f32; k * k * cin * cout];
            let seg = ConvWeights {
                hwio: &w,
                bias: None,
                cout,
                act: Act::Identity,
            };
            TrainConv::conv(g, &seg).uses_winograd(2, 16, 17)
        };
        assert!(conv(24, 40, 3, 1));
        assert!(conv(16, 20, 3, 1));
        // Inception's Mixed_7 3x3 (448 -> 384), too wide for F(2x2)'s 16 planes in the
        // cache, and 5x5: the line form along the width, one line per kernel row.
        assert!(conv(448, 384, 3, 1));
        assert!(conv(48, 64, 5, 1));
        assert!(!conv(24, 40, 3, 2));
        assert!(!conv(24, 40, 1, 1));
    }

    #[test]
    fn narrow_3x3_stride_1_filter_gradients_take_winograd() {
        let t = |n: usize, cin: usize, cout: usize, k: usize, s: usize| TrainConv {
            n,
            h: 16,
            w: 17,
            cin,
            cout,
            kh: k,
            kw: k,
            stride: [s, s],
            pads: [1; 4],
            depthwise: false,
        };
        // 16 x 17 outputs: 72 tiles of 2x2 per image, 96 of 3 outputs. F(2x2) with more
        // than 96 channels one way, the line form below that and for wide filters.
        assert!(t(1, 24, 120, 3, 1).winograd_filter_gradient(16, 17));
        assert!(!t(1, 24, 40, 3, 1).winograd_filter_gradient(16, 17));
        assert!(t(1, 24, 40, 3, 1).line_filter_gradient(16, 17).is_some());
        assert!(t(1, 448, 384, 3, 1).line_filter_gradient(16, 17).is_some());
        assert!(!t(1, 8, 40, 3, 1).winograd_filter_gradient(16, 17));
        assert!(t(1, 8, 40, 3, 1).line_filter_gradient(16, 17).is_none());
        assert!(!t(1, 448, 384, 3, 1).winograd_filter_gradient(16, 17));
        assert!(!t(1, 24, 120, 3, 2).winograd_filter_gradient(8, 9));
        assert!(t(1, 24, 40, 3, 2).line_filter_gradient(8, 9).is_none());
        assert!(!t(1, 24, 40, 1, 1).winograd_filter_gradient(16, 17));
        assert!(t(1, 24, 40, 1, 1).line_filter_gradient(16, 17).is_none());
        // Too few tiles: 4 x 5 outputs.
        assert!(!t(2, 24, 120, 3, 1).winograd_filter_gradient(4, 5));
        assert!(t(2, 24, 40, 3, 1).line_filter_gradient(4, 5).is_none());
        let mut d = t(1, 24, 24, 3, 1);
        d.depthwise = true;
        assert!(!d.winograd_filter_gradient(16, 17));
        assert!(d.line_filter_gradient(16, 17).is_none());
    }

    /// Both ways round of the line filter gradient's products give the same bits (the same
    /// products summed in the same order), for kernels with 0, 1 and 2 taps past the last
    /// piece, along either axis, over several chunks; and each way is chosen somewhere.
    #[test]
    fn line_filter_gradient_is_the_same_either_way_round() {
        let isa = Isa::detect();
        let mut chosen = [false; 2];
        for (cin, cout, kh, kw, pads) in [
            (20, 36, 3, 3, [1, 1, 1, 1]),
            (36, 20, 1, 7, [0, 0, 3, 3]),
            (24, 28, 7, 1, [3, 3, 0, 0]),
            (17, 40, 5, 5, [2, 2, 2, 2]),
            (40, 17, 1, 4, [0, 0, 1, 2]),
        ] {
            let t = TrainConv {
                n: 3,
                h: 23,
                w: 29,
                cin,
                cout,
                kh,
                kw,
                stride: [1, 1],
                pads,
                depthwise: false,
            };
            let (oh, ow) = t.out_hw();
            let axis = t.line_filter_gradient(oh, ow).expect("the line form");
            let x: Vec<f32> = (0..t.n * t.h * t.w * cin)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let dy: Vec<f32> = (0..t.n * oh * ow * cout)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
                .collect();
            let a = t.line_grad_filter_with(isa, &x, &dy, (oh, ow), axis, false);
            let b = t.line_grad_filter_with(isa, &x, &dy, (oh, ow), axis, true);
            assert_eq!(a.len(), kh * kw * cin * cout);
            assert!(a.iter().any(|&v| v != 0.0));
            let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{kh}x{kw} {cin}->{cout}: the two ways differ");
            chosen[t.line_grad_by_output(isa) as usize] = true;
        }
        assert_eq!(chosen, [true, true], "each way is chosen for some shape");
    }
}
