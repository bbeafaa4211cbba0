//! MobileNet's inverted-residual block, run strip by strip so that its wide middle tensors
//! never leave the cache.
//!
//! The block is a 1x1 *expansion* (few channels to many, with its activation), a
//! *depthwise* convolution over the expanded channels and a 1x1 *projection* back to few
//! channels; either 1x1 may be absent. Run one layer after the other over a batch, the
//! expanded tensor (e.g. 16 images of 112x112x96, 77 MB) is written to memory by the
//! expansion and read back by the depthwise convolution, and the depthwise output again
//! by the projection: at batch 16 those layers wait on memory, not on arithmetic.
//! [`Bottleneck`] instead computes each strip of output rows of one image from end to
//! end: the expanded input rows the strip needs (its halo rows are computed by both
//! neighbouring strips), the strip's depthwise output, and its projection, with the
//! intermediate rows in per-thread buffers sized for the L2 cache.
//!
//! Small images (whose expanded tensor fits in cache anyway) run layer by layer.
//!
//! Every output value is computed by the same kernels, with the same reduction order, as
//! the three layers run one after the other: the result is the same bit for bit.

use crate::conv::{Conv2d, Padding, SendPtr, ITEMS_PER_THREAD};
use crate::depthwise::{DepthwiseConv2d, DepthwiseGeometry};
use crate::tensor::{Nhwc, View};
use rayon::prelude::*;

/// Bytes of expanded rows one strip aims for (with the depthwise output rows about as
/// much again, this keeps a strip within a 2 MiB L2).
const STRIP_BYTES: usize = 512 * 1024;

/// Bytes of one image's expanded tensor below which the layers run one after the other
/// over the whole batch: it stays in cache anyway, and the 1x1 kernels run faster over
/// many images' rows than over one strip's (measured on MobileNetV2 at batch 16: 28x28x192
/// is faster strip by strip, 14x14x384 layer by layer).
const MIN_IMAGE_BYTES: usize = 512 * 1024;

/// An inverted-residual block: `project(depthwise(expand(x)))`, see the module docs.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    expand: Option<Conv2d>,
    depthwise: DepthwiseConv2d,
    project: Option<Conv2d>,
    /// Target bytes of a strip's expanded rows, and of one image's expanded tensor below
    /// which the block runs layer by layer.
    strip_bytes: usize,
    min_image_bytes: usize,
}

impl Bottleneck {
    /// Joins the block's layers, or says why they do not form one: the 1x1 convolutions
    /// must be 1x1, stride 1, unpadded, one segment each, and the depthwise convolution
    /// undilated with zero padding and multiplier 1; the channel counts must chain.
    pub fn new(
        expand: Option<Conv2d>,
        depthwise: DepthwiseConv2d,
        project: Option<Conv2d>,
    ) -> Result<Bottleneck, String> {
        let pointwise = |c: &Conv2d, what: &str| -> Result<(), String> {
            let g = c.geometry();
            if g.kh != 1 || g.kw != 1 || g.stride != [1, 1] || g.upsample != 1 {
                return Err(format!("the {what} is not a 1x1 stride-1 convolution"));
            }
            if !matches!(g.padding, Padding::Valid | Padding::Same)
                && g.padding != Padding::Zero([0; 4])
            {
                return Err(format!("the {what} is padded"));
            }
            if c.couts().len() != 1 {
                return Err(format!("the {what} has several segments"));
            }
            Ok(())
        };
        let d = depthwise.geometry();
        if d.dilation != [1, 1] || d.multiplier != 1 || matches!(d.padding, Padding::Reflect(_)) {
            return Err("the depthwise convolution is dilated, multiplied or reflects".into());
        }
        if let Some(e) = &expand {
            pointwise(e, "expansion")?;
            if e.cout() != d.channels {
                return Err(format!(
                    "the expansion makes {} channels; the depthwise convolution takes {}",
                    e.cout(),
                    d.channels
                ));
            }
        }
        if let Some(p) = &project {
            pointwise(p, "projection")?;
            if p.geometry().cin != depthwise.cout() {
                return Err(format!(
                    "the depthwise convolution makes {} channels; the projection takes {}",
                    depthwise.cout(),
                    p.geometry().cin
                ));
            }
        }
        Ok(Bottleneck {
            expand,
            depthwise,
            project,
            strip_bytes: STRIP_BYTES,
            min_image_bytes: MIN_IMAGE_BYTES,
        })
    }

    /// The same block, run strip by strip whatever the image size, with strips of about
    /// `bytes` of expanded rows (at least one output row): to check or time other cuts.
    pub fn in_strips_of(mut self, bytes: usize) -> Bottleneck {
        self.strip_bytes = bytes;
        self.min_image_bytes = 0;
        self
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        match &self.expand {
            Some(e) => e.geometry().cin,
            None => self.depthwise.geometry().channels,
        }
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        match &self.project {
            Some(p) => p.cout(),
            None => self.depthwise.cout(),
        }
    }

    /// Output `(height, width)` for an input of `h x w`, or `None` when it is too small.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        self.depthwise.output_hw(h, w)
    }

    /// Runs the block into a new `[n, ho, wo, cout]` tensor.
    ///
    /// Panics when `x` has other than [`Bottleneck::cin`] channels or is too small (check
    /// with [`Bottleneck::output_hw`] first).
    pub fn forward(&self, x: View) -> Nhwc {
        x.check();
        assert_eq!(x.c, self.cin(), "input channels");
        let (ho, wo) = self
            .output_hw(x.h, x.w)
            .expect("input too small for the convolution");
        let cout = self.cout();
        let d = *self.depthwise.geometry();
        if x.h * x.w * d.channels * 4 < self.min_image_bytes {
            let e = self.expand.as_ref().map(|e| e.forward(x));
            let m = self.depthwise.forward(e.as_ref().map_or(x, |e| e.view()));
            return match &self.project {
                Some(p) => p.forward(m.view()),
                None => m,
            };
        }
        let ext = d.extent();
        let (zh, zw) = ext.zero_pads();
        let (pad_top, _) = ext.axis(x.h, ext.kh, d.stride[0], zh).expect("checked");
        let (pad_left, _) = ext.axis(x.w, ext.kw, d.stride[1], zw).expect("checked");
        let pad_right = ((wo - 1) * d.stride[1] + d.kw).saturating_sub(x.w + pad_left);
        // The depthwise convolution of one strip: its rows come with their vertical
        // padding already in place (zero rows), the horizontal padding as before.
        let strip_geo = DepthwiseGeometry {
            padding: Padding::Zero([0, 0, pad_left, pad_right]),
            ..d
        };
        let ce = d.channels;
        let sy = d.stride[0];
        let in_rows = |rows_out: usize| (rows_out - 1) * sy + d.kh;
        let row_bytes = x.w * ce * 4;
        let mut rows_out = 1;
        while rows_out < ho && in_rows(rows_out + 1) * row_bytes <= self.strip_bytes {
            rows_out += 1;
        }
        let threads = rayon::current_num_threads().max(1);
        while rows_out > 1 && x.n * ho.div_ceil(rows_out) < ITEMS_PER_THREAD * threads {
            rows_out = rows_out.div_ceil(2);
        }
        let strips = ho.div_ceil(rows_out);
        let max_in = in_rows(rows_out);
        let (h, w) = (x.h, x.w);
        // SAFETY: every item writes its own rows `oy0 .. oy1` of image `b`, all `cout`
        // floats of each of their pixels, and nothing else.
        unsafe {
            Nhwc::filled_by(x.n, ho, wo, cout, |dst| {
                let dst = SendPtr(dst);
                let item = |(e, m): &mut (Vec<f32>, Vec<f32>), item: usize| {
                    let (b, s) = (item / strips, item % strips);
                    let oy0 = s * rows_out;
                    let oy1 = (oy0 + rows_out).min(ho);
                    let p0 = oy0 * sy;
                    let rows_in = in_rows(oy1 - oy0);
                    // Input rows `iy0 .. iy1` land at rows `at ..` of the strip.
                    let iy0 = p0.saturating_sub(pad_top).min(h);
                    let iy1 = (p0 + rows_in).saturating_sub(pad_top).min(h).max(iy0);
                    let at = (iy0 + pad_top) - p0;
                    e.resize(max_in * w * ce, 0.0);
                    let strip = &mut e[..rows_in * w * ce];
                    strip[..at * w * ce].fill(0.0);
                    strip[(at + iy1 - iy0) * w * ce..].fill(0.0);
                    let rows = View {
                        data: &x.data[(b * h + iy0) * w * x.stride..],
                        n: 1,
                        h: iy1 - iy0,
                        ..x
                    };
                    let target = strip[at * w * ce..].as_mut_ptr();
                    match &self.expand {
                        Some(conv) => conv.run_on_this_thread(rows, target, ce),
                        None => {
                            for p in 0..(iy1 - iy0) * w {
                                let src = &rows.data[rows.offset + p * x.stride..][..ce];
                                std::ptr::copy_nonoverlapping(src.as_ptr(), target.add(p * ce), ce);
                            }
                        }
                    }
                    let expanded = View {
                        data: strip,
                        n: 1,
                        h: rows_in,
                        w,
                        c: ce,
                        stride: ce,
                        offset: 0,
                    };
                    let out = dst.get().add((b * ho + oy0) * wo * cout);
                    match &self.project {
                        Some(conv) => {
                            let dc = self.depthwise.cout();
                            m.resize(rows_out * wo * dc, 0.0);
                            self.depthwise
                                .run_as(&strip_geo, expanded, m.as_mut_ptr(), dc, false);
                            let mid = View {
                                data: &m[..(oy1 - oy0) * wo * dc],
                                n: 1,
                                h: oy1 - oy0,
                                w: wo,
                                c: dc,
                                stride: dc,
                                offset: 0,
                            };
                            conv.run_on_this_thread(mid, out, cout);
                        }
                        None => self
                            .depthwise
                            .run_as(&strip_geo, expanded, out, cout, false),
                    }
                };
                let items = x.n * strips;
                if items == 1 || threads == 1 {
                    let mut bufs = Default::default();
                    (0..items).for_each(|i| item(&mut bufs, i));
                } else {
                    (0..items)
                        .into_par_iter()
                        .for_each_init(Default::default, item);
                }
            })
        }
    }
}
