//! The memory-bound NHWC operations around the convolutions: pooling, means, instance
//! norm, elementwise maps. Rows of pixels are spread over the rayon pool.

use crate::conv::SendPtr;
use crate::microkernel::{act_scalar, Act};
use crate::tensor::{Nhwc, Slot, View};
use crate::transpose::transpose_block;
use rayon::prelude::*;

/// Pixels below which an operation runs on the calling thread.
const PARALLEL_ABOVE: usize = 4096;

/// Runs `f(b, y, row)` for every output row `(b, y)` of a `[n, h, w, c]` tensor whose
/// rows are `row_len` floats, in parallel when it is large.
fn for_rows(
    data: &mut [f32],
    n: usize,
    h: usize,
    row_len: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let data = &mut data[..n * h * row_len];
    if n * h * row_len < PARALLEL_ABOVE * 16 {
        data.chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, r)| f(i / h, i % h, r));
    } else {
        data.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, r)| f(i / h, i % h, r));
    }
}

/// Runs `f(row)` for `rows` output rows of `row_len` floats each, in parallel when large.
fn for_each_row(rows: usize, row_len: usize, f: impl Fn(usize) + Sync + Send) {
    if rows * row_len < PARALLEL_ABOVE * 16 {
        (0..rows).for_each(f);
    } else {
        (0..rows).into_par_iter().for_each(f);
    }
}

/// Output side of a VALID pooling window, or `None` if the input is smaller than the window.
pub fn pool_valid_size(len: usize, k: usize, s: usize) -> Option<usize> {
    (len >= k && k > 0 && s > 0).then(|| (len - k) / s + 1)
}

/// Max pooling with a `k x k` window, stride `s`, VALID padding, written into `out`
/// (which must be `[n, ho, wo, x.c]`; it may be a channel slice of a wider tensor).
pub fn max_pool_valid_into(x: View, k: usize, s: usize, out: &mut Slot) {
    x.check();
    out.check();
    let ho = pool_valid_size(x.h, k, s).expect("input smaller than the pooling window");
    let wo = pool_valid_size(x.w, k, s).expect("input smaller than the pooling window");
    assert_eq!(
        (out.n, out.h, out.w, out.c),
        (x.n, ho, wo, x.c),
        "output slot shape"
    );
    let c = x.c;
    let pixel = |oy: usize, ox: usize, b: usize, o: &mut [f32]| {
        o.copy_from_slice(x.pixel(b, oy * s, ox * s));
        for dy in 0..k {
            for dx in 0..k {
                if dy == 0 && dx == 0 {
                    continue;
                }
                let p = x.pixel(b, oy * s + dy, ox * s + dx);
                for (o, &v) in o.iter_mut().zip(p) {
                    *o = o.max(v);
                }
            }
        }
    };
    let out: &Slot = out;
    for_each_row(x.n * ho, wo * c, |r| {
        let (b, oy) = (r / ho, r % ho);
        for ox in 0..wo {
            // SAFETY: each row writes its own pixels only.
            pixel(oy, ox, b, unsafe { out.pixel_shared(r * wo + ox) });
        }
    });
}

/// Max pooling into a new tensor (see [`max_pool_valid_into`]).
pub fn max_pool_valid(x: View, k: usize, s: usize) -> Nhwc {
    let ho = pool_valid_size(x.h, k, s).expect("input smaller than the pooling window");
    let wo = pool_valid_size(x.w, k, s).expect("input smaller than the pooling window");
    let mut out = Nhwc::zeros(x.n, ho, wo, x.c);
    max_pool_valid_into(x, k, s, &mut out.slot_all());
    out
}

/// Average pooling `k x k` (odd), stride 1, TensorFlow SAME padding, padded cells not
/// counted (`tf.nn.avg_pool(..., padding="SAME")`), followed by `act(pooled + bias[c])`,
/// written into `out` (which must be `[n, h, w, x.c]`; it may be a channel slice of a
/// wider tensor).
pub fn avg_pool_same_into(x: View, k: usize, bias: &[f32], act: Act, out: &mut Slot) {
    x.check();
    out.check();
    assert!(k % 2 == 1, "odd window");
    assert_eq!(
        (out.n, out.h, out.w, out.c),
        (x.n, x.h, x.w, x.c),
        "output slot shape"
    );
    assert_eq!(bias.len(), x.c, "bias length");
    let r = k / 2;
    let out: &Slot = out;
    for_each_row(x.n * x.h, x.w * x.c, |i| {
        let (b, y) = (i / x.h, i % x.h);
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(x.h));
        for ox in 0..x.w {
            let (x0, x1) = (ox.saturating_sub(r), (ox + r + 1).min(x.w));
            // SAFETY: each row writes its own pixels only.
            let o = unsafe { out.pixel_shared(i * x.w + ox) };
            o.fill(0.0);
            for yy in y0..y1 {
                for xx in x0..x1 {
                    for (o, &v) in o.iter_mut().zip(x.pixel(b, yy, xx)) {
                        *o += v;
                    }
                }
            }
            let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
            for (o, &bv) in o.iter_mut().zip(bias) {
                *o = act_scalar(*o * inv + bv, act);
            }
        }
    });
}

/// Average pooling `kh x kw`, stride `s`, VALID padding.
pub fn avg_pool_valid(x: View, kh: usize, kw: usize, s: usize) -> Nhwc {
    x.check();
    let ho = pool_valid_size(x.h, kh, s).expect("input smaller than the pooling window");
    let wo = pool_valid_size(x.w, kw, s).expect("input smaller than the pooling window");
    let c = x.c;
    let mut out = Nhwc::zeros(x.n, ho, wo, c);
    let inv = 1.0 / (kh * kw) as f32;
    for_rows(&mut out.data, x.n, ho, wo * c, |b, oy, row| {
        for ox in 0..wo {
            let o = &mut row[ox * c..][..c];
            for dy in 0..kh {
                for dx in 0..kw {
                    for (o, &v) in o.iter_mut().zip(x.pixel(b, oy * s + dy, ox * s + dx)) {
                        *o += v;
                    }
                }
            }
            o.iter_mut().for_each(|v| *v *= inv);
        }
    });
    out
}

/// Mean over height and width: `[n, h, w, c]` -> `[n][c]` (row-major `n * c`); the
/// images in parallel.
pub fn spatial_mean(x: View) -> Vec<f32> {
    x.check();
    let mut out = vec![0f32; x.n * x.c];
    if x.c == 0 {
        return out;
    }
    let image = |(b, out): (usize, &mut [f32])| {
        let mut acc = vec![0f64; x.c];
        let mut row = vec![0f32; x.c];
        for y in 0..x.h {
            row.fill(0.0);
            for xx in 0..x.w {
                for (a, &v) in row.iter_mut().zip(x.pixel(b, y, xx)) {
                    *a += v;
                }
            }
            for (a, &v) in acc.iter_mut().zip(&row) {
                *a += v as f64;
            }
        }
        let inv = 1.0 / (x.h * x.w) as f64;
        for (o, a) in out.iter_mut().zip(acc) {
            *o = (a * inv) as f32;
        }
    };
    if x.n > 1 && x.n * x.h * x.w * x.c >= 1 << 16 {
        out.par_chunks_mut(x.c).enumerate().for_each(image);
    } else {
        out.chunks_mut(x.c).enumerate().for_each(image);
    }
    out
}

/// Conditional instance norm in place: per image and channel, population mean and
/// variance over height and width, then `act((x - mean) / sqrt(var + eps) * gamma + beta)`.
/// `gamma` and `beta` are `[n][c]`.
pub fn instance_norm(x: &mut Nhwc, gamma: &[f32], beta: &[f32], eps: f32, act: Act) {
    let (n, c, hw) = (x.n, x.c, x.h * x.w);
    assert_eq!(gamma.len(), n * c, "gamma must be [n, c]");
    assert_eq!(beta.len(), n * c, "beta must be [n, c]");
    for b in 0..n {
        let img = &mut x.data[b * hw * c..(b + 1) * hw * c];
        let mean = channel_sums(img, c, |v, _| v as f64)
            .into_iter()
            .map(|s| s / hw as f64)
            .collect::<Vec<_>>();
        let mean32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let var = channel_sums(img, c, |v, ch| {
            let d = v - mean32[ch];
            (d * d) as f64
        });
        let mut scale = vec![0f32; c];
        let mut shift = vec![0f32; c];
        for ch in 0..c {
            let inv = 1.0 / ((var[ch] / hw as f64) as f32 + eps).sqrt();
            scale[ch] = inv * gamma[b * c + ch];
            shift[ch] = beta[b * c + ch] - mean32[ch] * scale[ch];
        }
        let apply = |px: &mut [f32]| {
            for (ch, v) in px.iter_mut().enumerate() {
                *v = act_scalar(*v * scale[ch] + shift[ch], act);
            }
        };
        if hw * c < PARALLEL_ABOVE * 16 {
            img.chunks_mut(c).for_each(apply);
        } else {
            img.par_chunks_mut(c * 64)
                .for_each(|rows| rows.chunks_mut(c).for_each(apply));
        }
    }
}

/// Per-channel sums of `f(value, channel)` over the pixels of one image (f32 within
/// blocks of pixels, f64 across blocks).
fn channel_sums(img: &[f32], c: usize, f: impl Fn(f32, usize) -> f64 + Sync) -> Vec<f64> {
    let block = c * 256;
    let partial = |chunk: &[f32]| {
        let mut s = vec![0f32; c];
        for px in chunk.chunks_exact(c) {
            for (ch, (a, &v)) in s.iter_mut().zip(px).enumerate() {
                *a += f(v, ch) as f32;
            }
        }
        s
    };
    let add = |mut a: Vec<f64>, b: Vec<f32>| {
        a.iter_mut().zip(b).for_each(|(a, b)| *a += b as f64);
        a
    };
    if img.len() < PARALLEL_ABOVE * 16 {
        img.chunks(block).map(partial).fold(vec![0f64; c], add)
    } else {
        img.par_chunks(block)
            .map(partial)
            .fold(|| vec![0f64; c], add)
            .reduce(
                || vec![0f64; c],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            )
    }
}

/// `x = f(x)` for every element, in parallel when large.
pub fn map_inplace(x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    if x.len() < PARALLEL_ABOVE * 16 {
        x.iter_mut().for_each(|v| *v = f(*v));
    } else {
        x.par_chunks_mut(16 * 1024)
            .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
    }
}

/// `dst = act(src * scale + shift)` with `scale` / `shift` per channel (the last axis,
/// `scale.len()` channels): an inference batch norm and the activation after it, where no
/// convolution before it can absorb them (ResNet v2's pre-activations). In parallel.
pub fn channel_affine(src: &[f32], dst: &mut [f32], scale: &[f32], shift: &[f32], act: Act) {
    let c = scale.len();
    assert!(c > 0 && shift.len() == c, "one scale and shift per channel");
    assert!(
        src.len() == dst.len() && src.len().is_multiple_of(c),
        "whole pixels of {c} channels"
    );
    let per_item = (16 * 1024usize).div_ceil(c) * c;
    let run = |(o, i): (&mut [f32], &[f32])| {
        for (op, ip) in o.chunks_exact_mut(c).zip(i.chunks_exact(c)) {
            for (((y, &x), &s), &b) in op.iter_mut().zip(ip).zip(scale).zip(shift) {
                *y = x * s + b;
            }
            if act != Act::Identity {
                op.iter_mut().for_each(|y| *y = act_scalar(*y, act));
            }
        }
    };
    if src.len() < PARALLEL_ABOVE * 16 {
        run((dst, src));
    } else {
        dst.par_chunks_mut(per_item)
            .zip(src.par_chunks(per_item))
            .for_each(run);
    }
}

/// `len` zeros, written on the thread pool when there are many: a block the caching
/// allocator hands back must be cleared, which `vec![0.0; len]` does on the calling thread
/// alone (the training step's gradients are allocated on its main thread).
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    const PIECE: usize = 1 << 15;
    if len < 4 * PIECE {
        return vec![0f32; len];
    }
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(PIECE)
        .for_each(|piece| {
            for z in piece {
                z.write(0.0);
            }
        });
    // SAFETY: the pieces cover all `len` elements, each written.
    unsafe { v.set_len(len) };
    v
}

/// The elements of a strided view in row-major order: element `(i0, .., in)` of `shape` at
/// `src[offset + i0 * strides[0] + .. + in * strides[n]]` (strides in elements, none
/// negative). Size-1 axes are dropped and axes that step as one are merged first; the
/// leading axis is shared out over the thread pool when the view is large. Burn's flex
/// backend copies such views (a permuted filter, a channel slice of a concatenation's
/// gradient) on one thread, element by element where the view is not a plain transpose.
///
/// Panics when an element lies outside `src`.
pub fn gather_strided(src: &[f32], offset: usize, shape: &[usize], strides: &[usize]) -> Vec<f32> {
    assert_eq!(shape.len(), strides.len(), "one stride per axis");
    let len: usize = shape.iter().product();
    if len == 0 {
        return Vec::new();
    }
    let last = offset
        + shape
            .iter()
            .zip(strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum::<usize>();
    assert!(last < src.len(), "strided view past its buffer");
    // Drop size-1 axes; merge an axis into the one before when it steps as their product.
    let mut axes: Vec<(usize, usize)> = Vec::new();
    for (&d, &s) in shape.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        match axes.last_mut() {
            Some((pd, ps)) if *ps == s * d => {
                *pd *= d;
                *ps = s;
            }
            _ => axes.push((d, s)),
        }
    }
    if axes.is_empty() {
        return vec![src[offset]];
    }
    // A permuted view (a filter read as HWIO, its gradient read back in Burn's axis order,
    // an activation between NCHW and NHWC): a row-by-row walk reads each element from
    // another cache line. Transposed by 8x8 blocks of the last axis and the source's
    // contiguous one instead, whatever the last axis' step: a 384 x 384 3x3 gradient went
    // from 1.1-1.3 ns an element to 0.3; steps under 1,024 floats, which had kept the walk,
    // walked at 0.6-1.0 ns an element against 0.2-0.45 by blocks (the 1x1 768 -> 192 filter
    // and its gradient 0.73 -> 0.17-0.20, 12x17x17x768 NHWC to NCHW 2.1-4.1 -> 0.8-1.2 ms).
    if let Some(k) = axes.iter().position(|&(_, s)| s == 1) {
        if k + 1 < axes.len() {
            return gather_transposed(src, offset, &axes, k, len);
        }
    }
    let mut out = zeroed(len);
    // Fills `dst` (the elements of axes[1..] at `base`).
    fn fill(src: &[f32], base: usize, axes: &[(usize, usize)], dst: &mut [f32]) {
        match axes {
            [] => dst[0] = src[base],
            [(d, 1)] => dst.copy_from_slice(&src[base..base + d]),
            [(_, s)] => dst
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = src[base + i * s]),
            [(_, s), rest @ ..] => {
                let inner = dst.len() / axes[0].0;
                for (i, d) in dst.chunks_mut(inner).enumerate() {
                    fill(src, base + i * s, rest, d);
                }
            }
        }
    }
    let (_, s0) = axes[0];
    let inner = len / axes[0].0;
    let rest = &axes[1..];
    let run = |(i, d): (usize, &mut [f32])| fill(src, offset + i * s0, rest, d);
    if len < PARALLEL_ABOVE * 16 {
        out.chunks_mut(inner).enumerate().for_each(run);
    } else {
        out.par_chunks_mut(inner).enumerate().for_each(run);
    }
    out
}

/// [`gather_strided`] of merged `axes` whose axis `k` (not the last) steps by one in the
/// source: for each element of the other axes, a block of axis `k` by the last axis,
/// transposed by [`transpose_block`] (8x8 blocks: each reads 8 short source runs and writes
/// 8 short destination runs), the blocks shared out over the thread pool.
fn gather_transposed(
    src: &[f32],
    offset: usize,
    axes: &[(usize, usize)],
    k: usize,
    len: usize,
) -> Vec<f32> {
    let n = axes.len();
    // Destination strides (row-major over `axes`).
    let mut dst_strides = vec![1usize; n];
    for i in (0..n - 1).rev() {
        dst_strides[i] = dst_strides[i + 1] * axes[i + 1].0;
    }
    let (dk, ds_k) = (axes[k].0, dst_strides[k]);
    let (dl, sl) = axes[n - 1];
    // The other axes (not `k`, not the last), their source and destination strides.
    let others: Vec<(usize, usize, usize)> = (0..n - 1)
        .filter(|&i| i != k)
        .map(|i| (axes[i].0, axes[i].1, dst_strides[i]))
        .collect();
    let combos: usize = others.iter().map(|o| o.0).product();
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    // One block: the other axes' element `c`, rows `a0..a1` of axis `k`.
    let block = |c: usize, a0: usize, a1: usize| {
        let (mut sbase, mut dbase, mut rest) = (offset, 0usize, c);
        for &(d, s, ds) in others.iter().rev() {
            sbase += (rest % d) * s;
            dbase += (rest % d) * ds;
            rest /= d;
        }
        // The block as a matrix of `dl` source rows `sl` apart (the last axis) by axis `k`'s
        // rows a0..a1, contiguous in the source, transposed into destination rows `ds_k`
        // apart.
        // SAFETY: the source reads `sbase + a + b * sl` lie inside `src` (the caller checked
        // the view's last element); the destination positions `dbase + a * ds_k + b` are
        // row-major positions over `axes`, below `len`, written by this block only.
        unsafe {
            transpose_block(
                src.as_ptr().add(sbase + a0),
                sl,
                dst.get().add(dbase + a0 * ds_k),
                ds_k,
                dl,
                a1 - a0,
            )
        };
    };
    let rows_per_task = (PARALLEL_ABOVE * 16 / (dl.max(1))).max(8);
    let tasks_per_combo = dk.div_ceil(rows_per_task);
    let tasks = combos * tasks_per_combo;
    let run = |t: usize| {
        let (c, r) = (t / tasks_per_combo, t % tasks_per_combo);
        block(c, r * rows_per_task, ((r + 1) * rows_per_task).min(dk));
    };
    if len < PARALLEL_ABOVE * 16 {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
    // SAFETY: the blocks cover every (other axes, k, last axis) position once: `len`
    // elements written.
    unsafe { out.set_len(len) };
    out
}

/// `a += b` elementwise (residual connections).
pub fn add_inplace(a: &mut [f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "residual shapes differ");
    if a.len() < PARALLEL_ABOVE * 16 {
        a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    } else {
        a.par_chunks_mut(16 * 1024)
            .zip(b.par_chunks(16 * 1024))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
    }
}

/// The logistic sigmoid `1 / (1 + exp(-x))`.
pub fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major walk of the view, one element at a time.
    fn walk(src: &[f32], offset: usize, shape: &[usize], strides: &[usize]) -> Vec<f32> {
        let len: usize = shape.iter().product();
        (0..len)
            .map(|mut i| {
                let mut at = offset;
                for (&d, &s) in shape.iter().zip(strides).rev() {
                    at += (i % d) * s;
                    i /= d;
                }
                src[at]
            })
            .collect()
    }

    #[test]
    fn strided_views_are_gathered_in_row_major_order() {
        let src: Vec<f32> = (0..300_000).map(|i| i as f32).collect();
        let cases: [(usize, &[usize], &[usize]); 11] = [
            // An OIHW filter [80, 96, 3, 3] read as HWIO (permute [2, 3, 1, 0]), large.
            (0, &[3, 3, 96, 80], &[3, 1, 9, 864]),
            // A channel slice (channels 5..21 of 40) of an NHWC tensor, large.
            (5, &[4, 30, 50, 16], &[60_000, 2000, 40, 1]),
            // Size-1 axes, an offset, a small transpose.
            (7, &[1, 5, 1, 3], &[999, 1, 17, 5]),
            // Axes that merge into one contiguous run.
            (3, &[2, 3, 4], &[12, 4, 1]),
            // One element.
            (11, &[1, 1], &[4, 1]),
            // Empty.
            (0, &[3, 0, 2], &[0, 2, 1]),
            // A 1x1 OIHW filter [192, 1100] read as HWIO: a plain transpose by tiles, large.
            (0, &[1, 1, 1100, 192], &[1, 1, 1, 1100]),
            // An HWIO [3, 3, 40, 50] gradient read back as OIHW [50, 40, 3, 3] (by tiles).
            (2, &[50, 40, 3, 3], &[1, 50, 6000, 2000]),
            // A 7x1 filter's gradient, ragged tiles (neither side a multiple of 16).
            (1, &[37, 29, 7, 1], &[1, 37, 1073, 1073]),
            // A 1x1 gradient [30, 20] read back (steps of 30, by tiles), ragged.
            (0, &[30, 20, 1, 1], &[1, 30, 600, 600]),
            // An NHWC activation [2, 5, 7, 9] read as NCHW.
            (4, &[2, 9, 5, 7], &[315, 1, 63, 9]),
        ];
        for (offset, shape, strides) in cases {
            assert_eq!(
                gather_strided(&src, offset, shape, strides),
                walk(&src, offset, shape, strides),
                "{shape:?} {strides:?}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "past its buffer")]
    fn a_view_past_its_buffer_is_refused() {
        gather_strided(&[0.0; 10], 2, &[3, 3], &[3, 1]);
    }
}
