//! Pooling for training: the forward pass and the input gradient of an NHWC max or
//! average pool with strides and explicit padding, as TensorFlow defines them:
//! - average pooling divides by the number of real (unpadded) cells under the window
//!   (`tf.nn.avg_pool` SAME; VALID windows hold only real cells), and its gradient gives
//!   each of them `dy / count`;
//! - max pooling ignores padded cells, and its gradient goes to the first cell (in the
//!   window's row-major order) holding the maximum, as TensorFlow's `MaxPoolGrad` does.
//!
//! The images run in parallel; the gradient is scattered within one image, so a run
//! repeats bit for bit.

use crate::simd::vectorised;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// One pooling layer of a training graph: input `[n, h, w, c]`, window `kh x kw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainPool {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    /// `[vertical, horizontal]`.
    pub stride: [usize; 2],
    /// Padding `[top, bottom, left, right]`: cells outside the input, never counted.
    pub pads: [usize; 4],
    /// Max pooling (else average).
    pub max: bool,
}

impl TrainPool {
    /// `(oh, ow)`, or `None` when a size is zero, the padded input is smaller than the
    /// window, a window would hold padding only or the sizes overflow.
    pub fn output_hw(&self) -> Option<(usize, usize)> {
        let [t, b, l, r] = self.pads;
        if self.kh == 0 || self.kw == 0 || self.stride.contains(&0) || self.h == 0 || self.w == 0 {
            return None;
        }
        // A padding as wide as the window would leave windows of padding only.
        if t.max(b) >= self.kh || l.max(r) >= self.kw {
            return None;
        }
        let ph = self.h.checked_add(t)?.checked_add(b)?;
        let pw = self.w.checked_add(l)?.checked_add(r)?;
        if ph < self.kh || pw < self.kw {
            return None;
        }
        let (oh, ow) = (
            (ph - self.kh) / self.stride[0] + 1,
            (pw - self.kw) / self.stride[1] + 1,
        );
        self.n
            .checked_mul(oh)?
            .checked_mul(ow)?
            .checked_mul(self.c)?;
        self.n
            .checked_mul(self.h)?
            .checked_mul(self.w)?
            .checked_mul(self.c)?;
        Some((oh, ow))
    }

    fn hw(&self) -> (usize, usize) {
        self.output_hw().expect("a valid pooling geometry")
    }

    /// The input rows (or columns) `[lo, hi)` under output row `o` of an axis of `len`
    /// cells, window `k`, stride `s`, padding `before`.
    fn span(o: usize, s: usize, k: usize, before: usize, len: usize) -> (usize, usize) {
        let start = o * s;
        let lo = start.saturating_sub(before);
        let hi = (start + k).saturating_sub(before).min(len);
        (lo, hi)
    }

    /// The output `[n, oh, ow, c]`.
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (oh, ow) = self.hw();
        let c = self.c;
        assert_eq!(x.len(), self.n * self.h * self.w * c, "input size");
        let len = self.n * oh * ow * c;
        if c == 0 {
            return vec![0f32; len];
        }
        let image = self.h * self.w * c;
        // Every output is written once (each window holds a real cell), not zeroed first.
        let mut y: Vec<f32> = Vec::with_capacity(len);
        y.spare_capacity_mut()[..len]
            .par_chunks_mut(ow * c)
            .enumerate()
            .for_each(|(r, row)| {
                vectorised(
                    #[inline(always)]
                    || {
                        let (b, oy) = (r / oh, r % oh);
                        let x = &x[b * image..][..image];
                        let (y0, y1) =
                            Self::span(oy, self.stride[0], self.kh, self.pads[0], self.h);
                        let (mut o, mut spare) = (vec![0f32; c], vec![0f32; c]);
                        for (ox, out) in row.chunks_exact_mut(c).enumerate() {
                            let (x0, x1) =
                                Self::span(ox, self.stride[1], self.kw, self.pads[2], self.w);
                            let mut first = true;
                            for iy in y0..y1 {
                                for ix in x0..x1 {
                                    let p = &x[(iy * self.w + ix) * c..][..c];
                                    if first {
                                        o.copy_from_slice(p);
                                        first = false;
                                    } else if self.max {
                                        max_step(&o, p, &mut spare);
                                        std::mem::swap(&mut o, &mut spare);
                                    } else {
                                        for (o, &v) in o.iter_mut().zip(p) {
                                            *o += v;
                                        }
                                    }
                                }
                            }
                            if !self.max {
                                // TF's average pool divides the sum (its gradient multiplies by the
                                // reciprocal).
                                let count = ((y1 - y0) * (x1 - x0)) as f32;
                                o.iter_mut().for_each(|v| *v /= count);
                            }
                            for (out, &v) in out.iter_mut().zip(o.iter()) {
                                out.write(v);
                            }
                        }
                    },
                )
            });
        // SAFETY: the rows cover all `len` outputs, each written above.
        unsafe { y.set_len(len) };
        y
    }

    /// The input gradient `[n, h, w, c]` for the output gradient `dy` (`x`, the forward
    /// input, is read by max pooling only).
    pub fn grad_input(&self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let (oh, ow) = self.hw();
        let c = self.c;
        let image = self.h * self.w * c;
        assert_eq!(dy.len(), self.n * oh * ow * c, "output gradient size");
        assert!(!self.max || x.len() == self.n * image, "input size");
        let len = self.n * image;
        if c == 0 {
            return vec![0f32; len];
        }
        // Each image's rows are zeroed just before the first window reaching them (no pass
        // over the whole gradient first: the rows are still in the cache when the windows
        // add to them).
        let mut dx: Vec<f32> = Vec::with_capacity(len);
        let row = self.w * c;
        dx.spare_capacity_mut()[..len]
            .par_chunks_mut(image)
            .enumerate()
            .for_each(|(b, rows)| {
                vectorised(
                    #[inline(always)]
                    || {
                        let mut ready = 0;
                        let mut zero_to = |rows: &mut [MaybeUninit<f32>], to: usize| -> usize {
                            for v in &mut rows[ready * row..to * row] {
                                v.write(0.0);
                            }
                            ready = ready.max(to);
                            ready
                        };
                        self.image_grad(
                            b,
                            x,
                            dy,
                            (oh, ow),
                            #[inline(always)]
                            |y1| {
                                let done = zero_to(rows, y1);
                                // SAFETY: rows `0..done` were written above.
                                unsafe {
                                    &mut *(&mut rows[..done * row] as *mut [MaybeUninit<f32>]
                                        as *mut [f32])
                                }
                            },
                        );
                        zero_to(rows, self.h);
                    },
                )
            });
        // SAFETY: every image's rows `0..h` were written (zeroed, then added to).
        unsafe { dx.set_len(len) };
        dx
    }

    /// Adds image `b`'s gradient onto its input rows: `rows(y1)` gives the image's gradient
    /// rows `0..y1`, zeroed the first time they are reached.
    #[inline(always)]
    fn image_grad<'a>(
        &self,
        b: usize,
        x: &[f32],
        dy: &[f32],
        (oh, ow): (usize, usize),
        mut rows: impl FnMut(usize) -> &'a mut [f32],
    ) {
        let c = self.c;
        let image = self.h * self.w * c;
        {
            let dy = &dy[b * oh * ow * c..][..oh * ow * c];
            let x = if self.max {
                &x[b * image..][..image]
            } else {
                &[][..]
            };
            // Per channel: the window's maximum so far and the cell holding it (its index
            // in `cells`, the window's cells in row-major order).
            let mut best = vec![0u32; if self.max { c } else { 0 }];
            let mut top = vec![0f32; best.len()];
            // The next cell's running maxima are written here, then swapped in.
            let (mut best2, mut top2) = (best.clone(), top.clone());
            let mut cells = Vec::with_capacity(self.kh * self.kw);
            for oy in 0..oh {
                let (y0, y1) = Self::span(oy, self.stride[0], self.kh, self.pads[0], self.h);
                let dx = rows(y1);
                for ox in 0..ow {
                    let (x0, x1) = Self::span(ox, self.stride[1], self.kw, self.pads[2], self.w);
                    let g = &dy[(oy * ow + ox) * c..][..c];
                    if self.max {
                        cells.clear();
                        cells.extend(
                            (y0..y1).flat_map(|iy| (x0..x1).map(move |ix| (iy * self.w + ix) * c)),
                        );
                        // The first maximum (a later cell takes over only when greater, or
                        // when it is NaN and the maximum so far is not), without branches.
                        top.copy_from_slice(&x[cells[0]..][..c]);
                        best.fill(0);
                        for (t, &at) in cells.iter().enumerate().skip(1) {
                            let p = &x[at..][..c];
                            argmax_step((&top, &best), p, t as u32, (&mut top2, &mut best2));
                            std::mem::swap(&mut top, &mut top2);
                            std::mem::swap(&mut best, &mut best2);
                        }
                        // Each cell gets the gradient of the channels it holds the maximum
                        // of (adding zero leaves the others exactly as they are).
                        for (t, &at) in cells.iter().enumerate() {
                            let d = &mut dx[at..][..c];
                            for ((d, &b), &g) in d.iter_mut().zip(&best).zip(g) {
                                *d += if b == t as u32 { g } else { 0.0 };
                            }
                        }
                    } else {
                        let inv = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let d = &mut dx[(iy * self.w + ix) * c..][..c];
                                for (d, &g) in d.iter_mut().zip(g) {
                                    *d += g * inv;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `out = max(top, p)` per channel, NaN propagating as TensorFlow's max pool does, by
/// bitwise selects into another buffer than `top`, which the compiler vectorises: `if`s
/// updating `top` in place compiled to a branch per lane, unpredictable on activations
/// (the gradient ran 3.7x slower on Inception's real ones than on noise).
#[inline(always)]
fn max_step(top: &[f32], p: &[f32], out: &mut [f32]) {
    let c = top.len();
    let (p, out) = (&p[..c], &mut out[..c]);
    for j in 0..c {
        let (v, o) = (p[j], top[j]);
        out[j] = select(((v > o) as u32) | (v.is_nan() as u32), v, o);
    }
}

/// `a` where `take` is 1, else `b`, by masks (an `if` here became a branch per lane).
#[inline(always)]
fn select(take: u32, a: f32, b: f32) -> f32 {
    f32::from_bits(select_u32(take, a.to_bits(), b.to_bits()))
}

#[inline(always)]
fn select_u32(take: u32, a: u32, b: u32) -> u32 {
    let mask = take.wrapping_neg();
    (a & mask) | (b & !mask)
}

/// The running maximum and its cell index after cell `t` (values `p`): the first maximum
/// stays, the first NaN wins (the gradient of TensorFlow's max pool); written to other
/// buffers, as [`max_step`].
#[inline(always)]
fn argmax_step(
    (top, best): (&[f32], &[u32]),
    p: &[f32],
    t: u32,
    (top_out, best_out): (&mut [f32], &mut [u32]),
) {
    let c = top.len();
    let (best, p) = (&best[..c], &p[..c]);
    let (top_out, best_out) = (&mut top_out[..c], &mut best_out[..c]);
    for j in 0..c {
        let (v, o) = (p[j], top[j]);
        let take = ((v > o) as u32) | ((v.is_nan() & !o.is_nan()) as u32);
        top_out[j] = select(take, v, o);
        best_out[j] = select_u32(take, t, best[j]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TensorFlow's max pool propagates NaN, and its gradient goes to the first NaN of the
    /// window (the first maximum otherwise).
    #[test]
    fn max_pool_propagates_nan_and_its_gradient_reaches_the_first_nan() {
        let t = TrainPool {
            n: 1,
            h: 2,
            w: 2,
            c: 2,
            kh: 2,
            kw: 2,
            stride: [1, 1],
            pads: [0; 4],
            max: true,
        };
        let nan = f32::NAN;
        // Pixels (row-major) of two channels: channel 0 reads 1, NaN, 3, NaN; channel 1
        // reads 0.5, 2, NaN, 1.
        let x = [1.0, 0.5, nan, 2.0, 3.0, nan, nan, 1.0];
        let y = t.forward(&x);
        assert!(y.len() == 2 && y[0].is_nan() && y[1].is_nan(), "{y:?}");
        let dx = t.grad_input(&x, &[10.0, 20.0]);
        assert_eq!(dx, [0.0, 0.0, 10.0, 0.0, 0.0, 20.0, 0.0, 0.0]);
        // Without NaN: the first of equal maxima.
        let x = [4.0, 1.0, 4.0, 7.0, 2.0, 7.0, 4.0, 0.0];
        assert_eq!(t.forward(&x), [4.0, 7.0]);
        assert_eq!(
            t.grad_input(&x, &[10.0, 20.0]),
            [10.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
