//! Training-mode batch normalisation over the last axis (channels) of a row-major tensor,
//! and clamping activations (ReLU, ReLU6) with their gradients: one pass per quantity,
//! spread over rayon's pool in blocks of rows, per-block sums in f32 added in f64 in a fixed
//! order.
//!
//! The batch norm is TensorFlow's `FusedBatchNormV3` with `is_training`: batch mean and
//! biased variance, `y = (x - mean) / sqrt(var + eps) * gamma + beta`; its gradient is the
//! closed form (`dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))`).

use crate::ordered::ordered_sum;
use rayon::prelude::*;

/// Rows per block of the channel sums.
const BLOCK_ROWS: usize = 64;

/// Per-channel sums over all rows of what `f(row, sums, scratch)` adds to `sums` (`K`
/// arrays of `c` channels, `[k * c + channel]`; `scratch` is the block's to reuse): each
/// block's in f32, the blocks' in f64 in a fixed order ([`ordered_sum`]). Returns `K * c`
/// sums.
fn channel_sums<const K: usize>(
    rows: usize,
    c: usize,
    f: impl Fn(usize, &mut [f32], &mut Vec<f32>) + Sync,
) -> Vec<f64> {
    if rows == 0 {
        return vec![0f64; K * c];
    }
    ordered_sum(rows.div_ceil(BLOCK_ROWS), |b| {
        let mut block = vec![0f32; K * c];
        let mut scratch = Vec::new();
        for r in b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(rows) {
            f(r, &mut block, &mut scratch);
        }
        block.iter().map(|&s| s as f64).collect()
    })
}

/// Per-channel mean and biased variance (`[mean..., var...]`, `2 * c` values) of `x`
/// (rows of `c` channels).
pub fn channel_moments(x: &[f32], c: usize) -> Vec<f32> {
    assert!(c > 0 && x.len() % c == 0, "rows of {c} channels");
    let rows = x.len() / c;
    let mut out = vec![0f32; 2 * c];
    if rows == 0 {
        return out;
    }
    let sums = channel_sums::<1>(rows, c, |r, s, _| {
        for (s, v) in s.iter_mut().zip(&x[r * c..][..c]) {
            *s += v;
        }
    });
    for (m, s) in out[..c].iter_mut().zip(&sums) {
        *m = (s / rows as f64) as f32;
    }
    let mean = &out[..c].to_vec();
    let sq = channel_sums::<1>(rows, c, |r, s, _| {
        for ((s, v), m) in s.iter_mut().zip(&x[r * c..][..c]).zip(mean) {
            let d = v - m;
            *s += d * d;
        }
    });
    for (v, s) in out[c..].iter_mut().zip(&sq) {
        *v = (s / rows as f64) as f32;
    }
    out
}

/// `1 / sqrt(var + eps)` per channel.
fn inverse_std(moments: &[f32], c: usize, eps: f32) -> Vec<f32> {
    moments[c..]
        .iter()
        .map(|v| 1.0 / (v + eps).sqrt())
        .collect()
}

/// The normalised, scaled and shifted `x` for the `moments` of [`channel_moments`],
/// clamped to `[lo, hi]` (the activation after it; infinite bounds for none).
pub fn batch_norm(
    x: &[f32],
    moments: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    let c = gamma.len();
    assert!(c > 0 && x.len() % c == 0 && beta.len() == c && moments.len() == 2 * c);
    let inv = inverse_std(moments, c, eps);
    // Written once in parallel, not zeroed first (a buffer the caching allocator hands back
    // would be cleared on the calling thread alone).
    let mut y = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(c * BLOCK_ROWS)
        .zip(x.par_chunks(c * BLOCK_ROWS))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for j in 0..c {
                    y[j].write(
                        ((x[j] - moments[j]) * inv[j] * gamma[j] + beta[j])
                            .max(lo)
                            .min(hi),
                    );
                }
            }
        });
    // SAFETY: the chunks cover all x.len() elements (a multiple of c, checked above) and
    // each was written.
    unsafe { y.set_len(x.len()) };
    y
}

/// `(dx, dgamma, dbeta)` of [`batch_norm`]: in training mode (`frozen` false) the moments
/// are the batch's and depend on `x`; frozen, they are constants (moving statistics) and
/// `dx = gamma / sqrt(var + eps) * dy`. With an activation, `clamped` is its output `y` and
/// bounds: the gradient passes where `lo < y < hi` (TensorFlow's `ReluGrad` / `Relu6Grad`).
pub fn batch_norm_grad(
    x: &[f32],
    dy: &[f32],
    moments: &[f32],
    gamma: &[f32],
    eps: f32,
    clamped: Option<(&[f32], f32, f32)>,
    frozen: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = gamma.len();
    assert!(c > 0 && x.len() % c == 0 && dy.len() == x.len() && moments.len() == 2 * c);
    if let Some((y, _, _)) = clamped {
        assert_eq!(y.len(), x.len());
    }
    // Row r's gradient reaching the normalisation: dy, or zero where the activation clamped.
    let masked = |r: usize, buf: &mut Vec<f32>| -> bool {
        let Some((y, lo, hi)) = clamped else {
            return false;
        };
        buf.clear();
        buf.extend(y[r * c..][..c].iter().zip(&dy[r * c..][..c]).map(|(y, g)| {
            if *y > lo && *y < hi {
                *g
            } else {
                0.0
            }
        }));
        true
    };
    let rows = x.len() / c;
    let inv = inverse_std(moments, c, eps);
    let mean = &moments[..c];
    let sums = channel_sums::<2>(rows, c, |r, s, buf| {
        let g = if masked(r, buf) {
            &buf[..]
        } else {
            &dy[r * c..][..c]
        };
        let x = &x[r * c..][..c];
        let (s0, s1) = s.split_at_mut(c);
        for j in 0..c {
            s0[j] += g[j];
            s1[j] += g[j] * (x[j] - mean[j]) * inv[j];
        }
    });
    let dbeta: Vec<f32> = sums[..c].iter().map(|&s| s as f32).collect();
    let dgamma: Vec<f32> = sums[c..].iter().map(|&s| s as f32).collect();
    let n = rows.max(1) as f64;
    let (mdy, mdyx): (Vec<f32>, Vec<f32>) = if frozen {
        (vec![0.0; c], vec![0.0; c])
    } else {
        (
            sums[..c].iter().map(|&s| (s / n) as f32).collect(),
            sums[c..].iter().map(|&s| (s / n) as f32).collect(),
        )
    };
    let scale: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    // Written once in parallel, as batch_norm's output.
    let mut dx = Vec::with_capacity(x.len());
    dx.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(c * BLOCK_ROWS)
        .enumerate()
        .for_each(|(b, dx)| {
            let mut buf = Vec::with_capacity(c);
            for (k, dx) in dx.chunks_exact_mut(c).enumerate() {
                let r = b * BLOCK_ROWS + k;
                let g = if masked(r, &mut buf) {
                    &buf[..]
                } else {
                    &dy[r * c..][..c]
                };
                let x = &x[r * c..][..c];
                for j in 0..c {
                    let xhat = (x[j] - mean[j]) * inv[j];
                    dx[j].write(scale[j] * (g[j] - mdy[j] - xhat * mdyx[j]));
                }
            }
        });
    // SAFETY: as in batch_norm, every element was written.
    unsafe { dx.set_len(x.len()) };
    (dx, dgamma, dbeta)
}

/// Elements per parallel piece at least of the elementwise maps (which collect straight
/// into their output: no zero-filled buffer first).
const PIECE: usize = 1 << 14;

/// `x` clamped to `[lo, hi]` (ReLU: `lo = 0`, `hi = inf`; ReLU6: `hi = 6`).
pub fn clamp(x: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    x.par_iter()
        .with_min_len(PIECE)
        .map(|x| x.max(lo).min(hi))
        .collect()
}

/// The gradient of [`clamp`]: `dy` where `lo < x < hi`, zero elsewhere (TensorFlow's
/// `ReluGrad` / `Relu6Grad`).
pub fn clamp_grad(x: &[f32], dy: &[f32], lo: f32, hi: f32) -> Vec<f32> {
    assert_eq!(x.len(), dy.len());
    x.par_iter()
        .zip(dy)
        .with_min_len(PIECE)
        .map(|(x, g)| if *x > lo && *x < hi { *g } else { 0.0 })
        .collect()
}
