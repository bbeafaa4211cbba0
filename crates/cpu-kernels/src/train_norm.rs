//! Training-mode batch normalisation over the last axis (channels) of a row-major tensor,
//! and clamping activations (ReLU, ReLU6) with their gradients: one pass per quantity,
//! spread over rayon's pool in blocks of rows, per-block sums in f32 added in f64 in a fixed
//! order.
//!
//! The batch norm is TensorFlow's `FusedBatchNormV3` with `is_training`: batch mean and
//! biased variance, `y = (x - mean) / sqrt(var + eps) * gamma + beta`; its gradient is the
//! closed form (`dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))`).

use rayon::prelude::*;

/// Rows per block of the channel sums.
const BLOCK_ROWS: usize = 64;

/// Groups of row blocks summed on one thread each, their sums added in order.
const SUM_GROUPS: usize = 16;

/// Per-channel sums of `f(row, channel)` over all rows: each block's in f32, the blocks'
/// in f64 in a fixed order (the same result on every run and machine).
fn channel_sums<const K: usize>(
    rows: usize,
    c: usize,
    f: impl Fn(usize, &mut [[f32; K]]) + Sync,
) -> Vec<[f64; K]> {
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let per_group = blocks.div_ceil(SUM_GROUPS).max(1);
    let groups: Vec<Vec<[f64; K]>> = (0..blocks.div_ceil(per_group))
        .into_par_iter()
        .map(|g| {
            let mut total = vec![[0f64; K]; c];
            let mut block = vec![[0f32; K]; c];
            for b in g * per_group..((g + 1) * per_group).min(blocks) {
                block.fill([0f32; K]);
                for r in b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(rows) {
                    f(r, &mut block);
                }
                for (t, s) in total.iter_mut().zip(&block) {
                    for k in 0..K {
                        t[k] += s[k] as f64;
                    }
                }
            }
            total
        })
        .collect();
    let mut sum = vec![[0f64; K]; c];
    for g in groups {
        for (a, b) in sum.iter_mut().zip(&g) {
            for k in 0..K {
                a[k] += b[k];
            }
        }
    }
    sum
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
    let sums = channel_sums::<1>(rows, c, |r, s| {
        for (s, v) in s.iter_mut().zip(&x[r * c..][..c]) {
            s[0] += v;
        }
    });
    for (m, s) in out[..c].iter_mut().zip(&sums) {
        *m = (s[0] / rows as f64) as f32;
    }
    let mean = &out[..c].to_vec();
    let sq = channel_sums::<1>(rows, c, |r, s| {
        for ((s, v), m) in s.iter_mut().zip(&x[r * c..][..c]).zip(mean) {
            let d = v - m;
            s[0] += d * d;
        }
    });
    for (v, s) in out[c..].iter_mut().zip(&sq) {
        *v = (s[0] / rows as f64) as f32;
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

/// The normalised, scaled and shifted `x` for the `moments` of [`channel_moments`].
pub fn batch_norm(x: &[f32], moments: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let c = gamma.len();
    assert!(c > 0 && x.len() % c == 0 && beta.len() == c && moments.len() == 2 * c);
    let inv = inverse_std(moments, c, eps);
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(c * BLOCK_ROWS)
        .zip(x.par_chunks(c * BLOCK_ROWS))
        .for_each(|(y, x)| {
            for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for j in 0..c {
                    y[j] = (x[j] - moments[j]) * inv[j] * gamma[j] + beta[j];
                }
            }
        });
    y
}

/// `(dx, dgamma, dbeta)` of [`batch_norm`] in training mode (the moments depend on `x`).
pub fn batch_norm_grad(
    x: &[f32],
    dy: &[f32],
    moments: &[f32],
    gamma: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = gamma.len();
    assert!(c > 0 && x.len() % c == 0 && dy.len() == x.len() && moments.len() == 2 * c);
    let rows = x.len() / c;
    let inv = inverse_std(moments, c, eps);
    let mean = &moments[..c];
    let sums = channel_sums::<2>(rows, c, |r, s| {
        let (x, g) = (&x[r * c..][..c], &dy[r * c..][..c]);
        for j in 0..c {
            s[j][0] += g[j];
            s[j][1] += g[j] * (x[j] - mean[j]) * inv[j];
        }
    });
    let dbeta: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s[1] as f32).collect();
    let n = rows.max(1) as f32;
    let (mdy, mdyx): (Vec<f32>, Vec<f32>) = sums
        .iter()
        .map(|s| ((s[0] / n as f64) as f32, (s[1] / n as f64) as f32))
        .unzip();
    let scale: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(c * BLOCK_ROWS)
        .zip(
            x.par_chunks(c * BLOCK_ROWS)
                .zip(dy.par_chunks(c * BLOCK_ROWS)),
        )
        .for_each(|(dx, (x, dy))| {
            for ((dx, x), g) in dx
                .chunks_exact_mut(c)
                .zip(x.chunks_exact(c))
                .zip(dy.chunks_exact(c))
            {
                for j in 0..c {
                    let xhat = (x[j] - mean[j]) * inv[j];
                    dx[j] = scale[j] * (g[j] - mdy[j] - xhat * mdyx[j]);
                }
            }
        });
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
