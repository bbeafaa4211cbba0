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

use rayon::prelude::*;

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
        let mut y = crate::ops::zeroed(self.n * oh * ow * c);
        if c == 0 {
            return y;
        }
        let image = self.h * self.w * c;
        y.par_chunks_mut(ow * c).enumerate().for_each(|(r, row)| {
            let (b, oy) = (r / oh, r % oh);
            let x = &x[b * image..][..image];
            let (y0, y1) = Self::span(oy, self.stride[0], self.kh, self.pads[0], self.h);
            for (ox, o) in row.chunks_exact_mut(c).enumerate() {
                let (x0, x1) = Self::span(ox, self.stride[1], self.kw, self.pads[2], self.w);
                let mut first = true;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let p = &x[(iy * self.w + ix) * c..][..c];
                        if first {
                            o.copy_from_slice(p);
                            first = false;
                        } else if self.max {
                            for (o, &v) in o.iter_mut().zip(p) {
                                // NaN propagates, as TF's max pool does.
                                if v > *o || v.is_nan() {
                                    *o = v;
                                }
                            }
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
            }
        });
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
        let mut dx = crate::ops::zeroed(self.n * image);
        if c == 0 {
            return dx;
        }
        dx.par_chunks_mut(image).enumerate().for_each(|(b, dx)| {
            let dy = &dy[b * oh * ow * c..][..oh * ow * c];
            let x = if self.max {
                &x[b * image..][..image]
            } else {
                &[][..]
            };
            let mut best = vec![0usize; if self.max { c } else { 0 }];
            let mut top = vec![0f32; best.len()];
            for oy in 0..oh {
                let (y0, y1) = Self::span(oy, self.stride[0], self.kh, self.pads[0], self.h);
                for ox in 0..ow {
                    let (x0, x1) = Self::span(ox, self.stride[1], self.kw, self.pads[2], self.w);
                    let g = &dy[(oy * ow + ox) * c..][..c];
                    if self.max {
                        let mut first = true;
                        for iy in y0..y1 {
                            for ix in x0..x1 {
                                let at = (iy * self.w + ix) * c;
                                let p = &x[at..][..c];
                                for ch in 0..c {
                                    let v = p[ch];
                                    if first || v > top[ch] || (v.is_nan() && !top[ch].is_nan()) {
                                        top[ch] = v;
                                        best[ch] = at + ch;
                                    }
                                }
                                first = false;
                            }
                        }
                        for (&i, &g) in best.iter().zip(g) {
                            dx[i] += g;
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
        });
        dx
    }
}
