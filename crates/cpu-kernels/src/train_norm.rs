//! Training-mode batch normalisation over the last axis (channels) of a row-major tensor,
//! and clamping activations (ReLU, ReLU6) with their gradients: one pass per quantity,
//! spread over rayon's pool in blocks of rows, per-block sums in f32 added in f64 in a fixed
//! order.
//!
//! The batch norm is TensorFlow's `FusedBatchNormV3` with `is_training`: batch mean and
//! biased variance, `y = (x - mean) / sqrt(var + eps) * gamma + beta`; its gradient is the
//! closed form (`dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))`).

use crate::ordered::{ordered_sum, SUM_GROUPS};
use crate::simd::vectorised;
use rayon::prelude::*;

/// Rows per block of the channel sums.
const BLOCK_ROWS: usize = 64;

/// Per-channel sums over all rows of what `f(row, sums)` adds to `sums` (`K` arrays of `c`
/// channels, `[k * c + channel]`): each block's in f32, the blocks' in f64 in a fixed order
/// ([`ordered_sum`]). Returns `K * c` sums.
fn channel_sums<const K: usize>(
    rows: usize,
    c: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f64> {
    if rows == 0 {
        return vec![0f64; K * c];
    }
    ordered_sum(rows.div_ceil(BLOCK_ROWS), |b| {
        let mut block = vec![0f32; K * c];
        vectorised(
            #[inline(always)]
            || {
                for r in b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(rows) {
                    f(r, &mut block);
                }
            },
        );
        block.iter().map(|&s| s as f64).collect()
    })
}

/// Per-channel mean and biased variance (`[mean..., var...]`, `2 * c` values) of `x`
/// (rows of `c` channels), in one pass over memory: each block of rows is summed, then
/// summed again about its own mean while it is in the cache (both in f32); the blocks'
/// counts, means and squared deviations are merged in f64 (Chan et al.'s update), in
/// consecutive groups on the thread pool, then the groups in order: the same result on
/// every run.
pub fn channel_moments(x: &[f32], c: usize) -> Vec<f32> {
    assert!(c > 0 && x.len().is_multiple_of(c), "rows of {c} channels");
    let rows = x.len() / c;
    let mut out = vec![0f32; 2 * c];
    if rows == 0 {
        return out;
    }
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let per_group = blocks.div_ceil(SUM_GROUPS).max(1);
    let groups: Vec<Moments> = (0..blocks.div_ceil(per_group))
        .into_par_iter()
        .map(|g| {
            let mut sum = vec![0f32; c];
            let mut dev = vec![0f32; c];
            let mut sq = vec![0f32; c];
            let mut acc = Moments::empty(c);
            for b in g * per_group..((g + 1) * per_group).min(blocks) {
                let block = &x[b * BLOCK_ROWS * c..((b + 1) * BLOCK_ROWS).min(rows) * c];
                let m = vectorised(
                    #[inline(always)]
                    || Moments::of_block(block, c, [&mut sum, &mut dev, &mut sq]),
                );
                acc.merge(&m);
            }
            acc
        })
        .collect();
    let mut total = Moments::empty(c);
    for g in &groups {
        total.merge(g);
    }
    for j in 0..c {
        out[j] = total.mean[j] as f32;
        out[c + j] = (total.m2[j] / total.n) as f32;
    }
    out
}

/// A count of rows with their per-channel mean and sum of squared deviations from it.
struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn empty(c: usize) -> Moments {
        Moments {
            n: 0.0,
            mean: vec![0.0; c],
            m2: vec![0.0; c],
        }
    }

    /// The moments of a block's rows (`sum`, `dev`, `sq`: `c`-long buffers to reuse).
    #[inline(always)]
    fn of_block(block: &[f32], c: usize, [sum, dev, sq]: [&mut Vec<f32>; 3]) -> Moments {
        let n = block.len() / c;
        sum.fill(0.0);
        for row in block.chunks_exact(c) {
            add_row(sum, row);
        }
        let shift: Vec<f32> = sum.iter().map(|s| s / n as f32).collect();
        dev.fill(0.0);
        sq.fill(0.0);
        for row in block.chunks_exact(c) {
            deviations_row(row, &shift, dev, sq);
        }
        // About the exact block mean `shift + dev / n`: m2 = sq - dev^2 / n.
        let nf = n as f64;
        Moments {
            n: nf,
            mean: shift
                .iter()
                .zip(dev.iter())
                .map(|(&m, &d)| m as f64 + d as f64 / nf)
                .collect(),
            m2: sq
                .iter()
                .zip(dev.iter())
                .map(|(&q, &d)| (q as f64 - (d as f64) * (d as f64) / nf).max(0.0))
                .collect(),
        }
    }

    /// Adds `other`'s rows.
    fn merge(&mut self, other: &Moments) {
        if other.n == 0.0 {
            return;
        }
        let n = self.n + other.n;
        let (wa, wb) = (self.n * other.n / n, other.n / n);
        for ((m, q), (om, oq)) in self
            .mean
            .iter_mut()
            .zip(self.m2.iter_mut())
            .zip(other.mean.iter().zip(&other.m2))
        {
            let delta = om - *m;
            *m += delta * wb;
            *q += oq + delta * delta * wa;
        }
        self.n = n;
    }
}

/// `sum += row`, both `c` long (checked first: the loop runs without bounds checks).
#[inline(always)]
fn add_row(sum: &mut [f32], row: &[f32]) {
    let c = row.len();
    let sum = &mut sum[..c];
    for j in 0..c {
        sum[j] += row[j];
    }
}

/// `dev += row - shift`, `sq += (row - shift)^2`, all `c` long.
#[inline(always)]
fn deviations_row(row: &[f32], shift: &[f32], dev: &mut [f32], sq: &mut [f32]) {
    let c = row.len();
    let (shift, dev, sq) = (&shift[..c], &mut dev[..c], &mut sq[..c]);
    for j in 0..c {
        let d = row[j] - shift[j];
        dev[j] += d;
        sq[j] += d * d;
    }
}

/// `1 / sqrt(var + eps)` per channel.
fn inverse_std(moments: &[f32], c: usize, eps: f32) -> Vec<f32> {
    moments[c..]
        .iter()
        .map(|v| 1.0 / (v + eps).sqrt())
        .collect()
}

/// `gamma / sqrt(var + eps)` per channel for `moments` (`[2, c]`: mean, variance): the scale
/// of [`batch_norm`], and what [`crate::TrainConv::forward_batch_norm`] takes.
pub fn batch_norm_scale(moments: &[f32], gamma: &[f32], eps: f32) -> Vec<f32> {
    let c = gamma.len();
    assert_eq!(moments.len(), 2 * c, "mean and variance per channel");
    let inv = inverse_std(moments, c, eps);
    gamma.iter().zip(&inv).map(|(g, i)| g * i).collect()
}

/// The normalised, scaled and shifted `x` for the `moments` of [`channel_moments`],
/// clamped to `[lo, hi]` (the activation after it; infinite bounds for none):
/// `(x - mean) * (gamma / sqrt(var + eps)) + beta`, as TensorFlow's fused batch norm.
pub fn batch_norm(
    x: &[f32],
    moments: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    (lo, hi): (f32, f32),
) -> Vec<f32> {
    let c = gamma.len();
    assert!(c > 0 && x.len().is_multiple_of(c) && beta.len() == c && moments.len() == 2 * c);
    let scale = batch_norm_scale(moments, gamma, eps);
    let mean = &moments[..c];
    // Written once in parallel, not zeroed first (a buffer the caching allocator hands back
    // would be cleared on the calling thread alone).
    let mut y = Vec::with_capacity(x.len());
    y.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(c * BLOCK_ROWS)
        .zip(x.par_chunks(c * BLOCK_ROWS))
        .for_each(|(y, x)| {
            vectorised(
                #[inline(always)]
                || {
                    for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                        forward_row(x, (mean, &scale, beta), (lo, hi), y);
                    }
                },
            )
        });
    // SAFETY: the chunks cover all x.len() elements (a multiple of c, checked above) and
    // each was written.
    unsafe { y.set_len(x.len()) };
    y
}

/// Rows of `c` values `stride` apart from `offset` in `data`: a tensor's own rows
/// (`stride == c`), or a channel slice of a wider one (a concatenation's gradient).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub stride: usize,
}

impl<'a> Rows<'a> {
    /// The rows of a tensor of `c` channels itself.
    pub fn of(data: &'a [f32], c: usize) -> Self {
        Rows {
            data,
            offset: 0,
            stride: c,
        }
    }

    /// Row `r`, `c` values.
    #[inline(always)]
    fn row(&self, r: usize, c: usize) -> &'a [f32] {
        &self.data[self.offset + r * self.stride..][..c]
    }
}

/// `(dx, dgamma, dbeta)` of [`batch_norm`]: in training mode (`frozen` false) the moments
/// are the batch's and depend on `x`; frozen, they are constants (moving statistics) and
/// `dx = gamma / sqrt(var + eps) * dy`. With an activation clamping to `bounds`, the
/// gradient passes where its input lies strictly inside them (TensorFlow's `ReluGrad` /
/// `Relu6Grad` on the output): recomputed from `x`, `beta` and the moments as
/// [`batch_norm`] computes it, so the output need not be kept or read.
///
/// The output's gradient is read as rows of `dy` ([`Rows::of`] a tensor's own; a slice of a
/// concatenation's gradient where it lies, without gathering it first).
///
/// Panics when `dy` does not hold `x`'s rows of `c = gamma.len()` values.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_grad(
    x: &[f32],
    dy: Rows,
    moments: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    bounds: Option<(f32, f32)>,
    frozen: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = BatchNormGrad::new(x, dy, moments, gamma, beta, eps, bounds, frozen);
    let dx = g.input_gradient();
    let (dgamma, dbeta) = g.parameter_gradients();
    (dx, dgamma, dbeta)
}

/// [`batch_norm_grad`] in two steps, for a caller that consumes the input gradient a block
/// of rows at a time (the convolution before the batch norm, [`crate::TrainConv`]): the
/// channel sums (one pass over `x` and `dy`) on construction, then any rows of `dx`
/// ([`BatchNormGrad::rows`]), each value as [`batch_norm_grad`] computes it. With frozen
/// statistics the rows need no sums, so they are taken while the rows are made, and gamma's
/// and beta's gradients are read after them ([`BatchNormGrad::parameter_gradients`]).
pub struct BatchNormGrad<'a> {
    /// The scale's gradient (the sums of `dy * xhat`), taken on construction; with frozen
    /// statistics, empty until [`BatchNormGrad::parameter_gradients`].
    dgamma: Vec<f32>,
    /// The offset's gradient (the sums of `dy`), as `dgamma`.
    dbeta: Vec<f32>,
    /// Frozen statistics: the f32 channel sums (`[dbeta.., dgamma..]`) of each
    /// [`BLOCK_ROWS`] block of rows that a call making rows of the input gradient covered
    /// whole (the input gradient does not need them, so they are taken in the same pass
    /// over `x` and `dy`); the blocks [`channel_sums`] sums.
    block_sums: Vec<std::sync::OnceLock<Vec<f32>>>,
    frozen: bool,
    x: &'a [f32],
    dy: Rows<'a>,
    mean: &'a [f32],
    beta: &'a [f32],
    scale: Vec<f32>,
    inv: Vec<f32>,
    bounds: Option<(f32, f32)>,
    /// `mean(g)`, `mean(g * xhat)` (zeros for frozen statistics).
    mdy: Vec<f32>,
    mdyx: Vec<f32>,
    /// `x` is the batch norm's clamped output ([`BatchNormGrad::frozen_from_output`]).
    from_output: bool,
}

impl<'a> BatchNormGrad<'a> {
    /// The channel sums of [`batch_norm_grad`]'s arguments. Panics as it does.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        x: &'a [f32],
        dy: Rows<'a>,
        moments: &'a [f32],
        gamma: &[f32],
        beta: &'a [f32],
        eps: f32,
        bounds: Option<(f32, f32)>,
        frozen: bool,
    ) -> Self {
        Self::build(x, dy, moments, gamma, beta, eps, bounds, frozen, false)
    }

    /// [`BatchNormGrad::new`] with frozen statistics from the batch norm's clamped output
    /// `out` (as [`crate::TrainConv::forward_batch_norm`] returns it) instead of its input:
    /// the activation passes the gradient where `lo < out < hi`, exactly where its input
    /// lay strictly inside the bounds. The same input gradient and `dbeta`, values and
    /// order of sums; `dgamma` is left empty (it needs the input): for a batch norm whose
    /// scale is a constant. Panics as [`BatchNormGrad::new`] does.
    pub fn frozen_from_output(
        out: &'a [f32],
        dy: Rows<'a>,
        moments: &'a [f32],
        gamma: &[f32],
        beta: &'a [f32],
        eps: f32,
        bounds: Option<(f32, f32)>,
    ) -> Self {
        Self::build(out, dy, moments, gamma, beta, eps, bounds, true, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        x: &'a [f32],
        dy: Rows<'a>,
        moments: &'a [f32],
        gamma: &[f32],
        beta: &'a [f32],
        eps: f32,
        bounds: Option<(f32, f32)>,
        frozen: bool,
        from_output: bool,
    ) -> Self {
        let c = gamma.len();
        assert!(
            c > 0
                && x.len().is_multiple_of(c)
                && beta.len() == c
                && moments.len() == 2 * c
                && dy.stride >= c
        );
        let rows = x.len() / c;
        if rows > 0 {
            // One past the last row's last value.
            let end = (rows - 1)
                .checked_mul(dy.stride)
                .and_then(|e| e.checked_add(dy.offset)?.checked_add(c));
            assert!(
                end.is_some_and(|e| e <= dy.data.len()),
                "the output gradient's rows lie outside its data"
            );
        }
        let inv = inverse_std(moments, c, eps);
        let scale: Vec<f32> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let mut g = BatchNormGrad {
            dgamma: Vec::new(),
            dbeta: Vec::new(),
            x,
            dy,
            mean: &moments[..c],
            beta,
            scale,
            inv,
            bounds,
            mdy: Vec::new(),
            mdyx: Vec::new(),
            from_output,
            block_sums: if frozen {
                (0..rows.div_ceil(BLOCK_ROWS))
                    .map(|_| Default::default())
                    .collect()
            } else {
                Vec::new()
            },
            frozen,
        };
        if frozen {
            // The input gradient needs no sums: they are taken as its rows are made.
            (g.mdy, g.mdyx) = (vec![0.0; c], vec![0.0; c]);
            return g;
        }
        let p = g.params();
        let sums = channel_sums::<2>(
            rows,
            c,
            #[inline(always)]
            |r, s| {
                let (s0, s1) = s.split_at_mut(c);
                grad_sums_row(&p, &x[r * c..][..c], dy.row(r, c), s0, s1);
            },
        );
        let n = rows.max(1) as f64;
        let (mdy, mdyx) = (
            sums[..c].iter().map(|&s| (s / n) as f32).collect(),
            sums[c..].iter().map(|&s| (s / n) as f32).collect(),
        );
        g.dbeta = sums[..c].iter().map(|&s| s as f32).collect();
        g.dgamma = sums[c..].iter().map(|&s| s as f32).collect();
        (g.mdy, g.mdyx) = (mdy, mdyx);
        g
    }

    fn params(&self) -> Params<'_> {
        let (masked, lo, hi) = match self.bounds {
            Some((lo, hi)) => (true, lo, hi),
            None => (false, 0.0, 0.0),
        };
        Params {
            mean: self.mean,
            scale: &self.scale,
            beta: self.beta,
            inv: &self.inv,
            lo,
            hi,
            masked,
            from_output: self.from_output,
        }
    }

    /// Rows of the input gradient from row `r0` on, as many as `dx` holds (whole rows of
    /// `c` values), each written.
    fn write_rows(&self, r0: usize, dx: &mut [std::mem::MaybeUninit<f32>]) {
        let c = self.scale.len();
        let p = self.params();
        if self.frozen {
            return self.write_rows_summed(&p, r0, dx);
        }
        vectorised(
            #[inline(always)]
            || {
                for (k, dx) in dx.chunks_exact_mut(c).enumerate() {
                    let r = r0 + k;
                    let x = &self.x[r * c..][..c];
                    grad_input_row(&p, x, self.dy.row(r, c), (&self.mdy, &self.mdyx), dx);
                }
            },
        )
    }

    /// [`BatchNormGrad::write_rows`] with frozen statistics: the rows of `dx` and, in the
    /// same pass, the channel sums of each [`BLOCK_ROWS`] block they cover whole (summed in
    /// f32 from zeros in row order, as [`channel_sums`] sums a block).
    fn write_rows_summed(&self, p: &Params, r0: usize, dx: &mut [std::mem::MaybeUninit<f32>]) {
        let c = self.scale.len();
        let k = if p.from_output { 1 } else { 2 };
        let end = r0 + dx.len() / c;
        let mut r = r0;
        while r < end {
            let b = r / BLOCK_ROWS;
            let stop = ((b + 1) * BLOCK_ROWS).min(end);
            let whole = r == b * BLOCK_ROWS && stop == ((b + 1) * BLOCK_ROWS).min(self.x.len() / c);
            let mut block = vec![0f32; k * c];
            self.rows_summed(p, r, &mut dx[(r - r0) * c..(stop - r0) * c], &mut block);
            if whole {
                // A block made twice has the same sums both times.
                let _ = self.block_sums[b].set(block);
            }
            r = stop;
        }
    }

    /// The f32 channel sums of block `b` by themselves (a block no call made whole).
    fn block_sums_alone(&self, p: &Params, b: usize) -> Vec<f32> {
        let c = self.scale.len();
        let k = if p.from_output { 1 } else { 2 };
        let rows = self.x.len() / c;
        let n = BLOCK_ROWS.min(rows - b * BLOCK_ROWS);
        let mut block = vec![0f32; k * c];
        let mut dx = vec![std::mem::MaybeUninit::new(0f32); n * c];
        self.rows_summed(p, b * BLOCK_ROWS, &mut dx, &mut block);
        block
    }

    /// The rows of the input gradient from row `r` on (as many as `dx` holds) with frozen
    /// statistics, their channel sums added to `block` (`[dbeta.., dgamma..]`) in row order.
    fn rows_summed(
        &self,
        p: &Params,
        r: usize,
        dx: &mut [std::mem::MaybeUninit<f32>],
        block: &mut [f32],
    ) {
        let c = self.scale.len();
        vectorised(
            #[inline(always)]
            || {
                for (i, dx) in dx.chunks_exact_mut(c).enumerate() {
                    let row = r + i;
                    let x = &self.x[row * c..][..c];
                    let dy = self.dy.row(row, c);
                    if p.from_output {
                        output_row_summed(p, x, dy, block, dx);
                    } else {
                        let (s0, s1) = block.split_at_mut(c);
                        frozen_row_summed(p, x, dy, (s0, s1), dx);
                    }
                }
            },
        )
    }

    /// `(dgamma, dbeta)`. With frozen statistics, the sums of the blocks the input
    /// gradient's rows were made in ([`BatchNormGrad::input_gradient`],
    /// [`BatchNormGrad::rows`]), the others summed now, all added as [`channel_sums`] adds
    /// its blocks: the same values as summed on construction, whichever rows were made.
    /// `dgamma` is empty from [`BatchNormGrad::frozen_from_output`].
    pub fn parameter_gradients(&self) -> (Vec<f32>, Vec<f32>) {
        if !self.frozen {
            return (self.dgamma.clone(), self.dbeta.clone());
        }
        let c = self.scale.len();
        let k = if self.from_output { 1 } else { 2 };
        let p = self.params();
        let sums = if self.block_sums.is_empty() {
            vec![0f64; k * c]
        } else {
            crate::ordered::ordered_sum(self.block_sums.len(), |b| {
                let made = self.block_sums[b].get();
                let alone;
                let block = match made {
                    Some(v) => v,
                    None => {
                        alone = self.block_sums_alone(&p, b);
                        &alone
                    }
                };
                block.iter().map(|&s| s as f64).collect()
            })
        };
        let dbeta = sums[..c].iter().map(|&s| s as f32).collect();
        let dgamma = sums[c..].iter().map(|&s| s as f32).collect();
        (dgamma, dbeta)
    }

    /// Elements of the input gradient (as of the batch norm's input).
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Whether the batch norm's input is empty.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// The whole input gradient, written once in parallel (as [`batch_norm`]'s output).
    pub fn input_gradient(&self) -> Vec<f32> {
        let (len, c) = (self.x.len(), self.scale.len());
        let mut dx = Vec::with_capacity(len);
        dx.spare_capacity_mut()[..len]
            .par_chunks_mut(c * BLOCK_ROWS)
            .enumerate()
            .for_each(|(b, dx)| self.write_rows(b * BLOCK_ROWS, dx));
        // SAFETY: the blocks cover all `len` elements, each written by write_rows.
        unsafe { dx.set_len(len) };
        dx
    }

    /// [`BatchNormGrad::write_rows`] into initialised memory.
    pub fn rows(&self, r0: usize, dx: &mut [f32]) {
        // SAFETY: f32 and MaybeUninit<f32> have the same layout; only initialised values
        // are written.
        let dx = unsafe {
            std::slice::from_raw_parts_mut(
                dx.as_mut_ptr() as *mut std::mem::MaybeUninit<f32>,
                dx.len(),
            )
        };
        self.write_rows(r0, dx);
    }
}

/// Writes a row's `(x - mean) * scale + beta` clamped to `[lo, hi]`. Every slice is
/// checked to be `c` long first, so the loop runs without bounds checks, vectorised. The
/// expression before the clamp is [`passed`]'s, operation for operation.
#[inline(always)]
fn forward_row(
    x: &[f32],
    (mean, scale, beta): (&[f32], &[f32], &[f32]),
    (lo, hi): (f32, f32),
    y: &mut [std::mem::MaybeUninit<f32>],
) {
    let c = x.len();
    let (mean, scale, beta, y) = (&mean[..c], &scale[..c], &beta[..c], &mut y[..c]);
    for j in 0..c {
        let d = x[j] - mean[j];
        y[j].write((d * scale[j] + beta[j]).max(lo).min(hi));
    }
}

/// A batch norm's per-channel constants for its gradient rows.
struct Params<'a> {
    mean: &'a [f32],
    /// `gamma / sqrt(var + eps)`.
    scale: &'a [f32],
    beta: &'a [f32],
    /// `1 / sqrt(var + eps)`.
    inv: &'a [f32],
    /// The activation's bounds, when `masked`.
    lo: f32,
    hi: f32,
    masked: bool,
    /// The rows read are the batch norm's clamped output, not its input (frozen statistics,
    /// [`BatchNormGrad::frozen_from_output`]).
    from_output: bool,
}

/// The gradient reaching the normalisation at channel `j` of a row: `dy`, or zero where the
/// activation clamped its input `(x - mean) * scale + beta` (as [`forward_row`] computes it).
/// Non-short-circuit `|` and `&`: a select the loops vectorise, not a branch.
#[inline(always)]
fn passed(p: &Params, j: usize, d: f32, dy: f32) -> f32 {
    let pre = d * p.scale[j] + p.beta[j];
    if !p.masked | ((pre > p.lo) & (pre < p.hi)) {
        dy
    } else {
        0.0
    }
}

/// Adds a row's `dy` and `dy * xhat` (masked) to the channel sums `s0`, `s1`. Every slice
/// is checked to be `c` long first, so the loop runs without bounds checks, vectorised.
#[inline(always)]
fn grad_sums_row(p: &Params, x: &[f32], dy: &[f32], s0: &mut [f32], s1: &mut [f32]) {
    let c = x.len();
    let (dy, s0, s1) = (&dy[..c], &mut s0[..c], &mut s1[..c]);
    let (mean, inv) = (&p.mean[..c], &p.inv[..c]);
    let _ = (&p.scale[..c], &p.beta[..c]);
    for j in 0..c {
        let d = x[j] - mean[j];
        let g = passed(p, j, d, dy[j]);
        s0[j] += g;
        s1[j] += g * (d * inv[j]);
    }
}

/// A row of the input gradient with frozen statistics, as [`grad_input_row`] writes it
/// (the means zero), and its part of [`grad_sums_row`]'s sums added to `s0`, `s1`.
#[inline(always)]
fn frozen_row_summed(
    p: &Params,
    x: &[f32],
    dy: &[f32],
    (s0, s1): (&mut [f32], &mut [f32]),
    dx: &mut [std::mem::MaybeUninit<f32>],
) {
    let c = x.len();
    let (dy, dx, s0, s1) = (&dy[..c], &mut dx[..c], &mut s0[..c], &mut s1[..c]);
    let (mean, inv, scale, beta) = (&p.mean[..c], &p.inv[..c], &p.scale[..c], &p.beta[..c]);
    // Constants in registers (read through `p` they were reloaded every element, and the
    // loop ran on scalars).
    let (lo, hi, masked) = (p.lo, p.hi, p.masked);
    for j in 0..c {
        let d = x[j] - mean[j];
        // `passed`, operation for operation.
        let pre = d * scale[j] + beta[j];
        let g = if !masked | ((pre > lo) & (pre < hi)) {
            dy[j]
        } else {
            0.0
        };
        s0[j] += g;
        s1[j] += g * (d * inv[j]);
        dx[j].write(scale[j] * (g - 0.0 - d * inv[j] * 0.0));
    }
}

/// [`frozen_row_summed`] from a row of the clamped output: `dx = scale * g`, `g` added to
/// `s0` (no `dgamma`).
#[inline(always)]
fn output_row_summed(
    p: &Params,
    out: &[f32],
    dy: &[f32],
    s0: &mut [f32],
    dx: &mut [std::mem::MaybeUninit<f32>],
) {
    let c = out.len();
    let (dy, dx, s0, scale) = (&dy[..c], &mut dx[..c], &mut s0[..c], &p.scale[..c]);
    let (lo, hi, masked) = (p.lo, p.hi, p.masked);
    for j in 0..c {
        // [`passed`]'s test on the output: a value strictly inside the bounds is the
        // unclamped `pre` itself, a clamped one equals a bound.
        let g = if !masked | ((out[j] > lo) & (out[j] < hi)) {
            dy[j]
        } else {
            0.0
        };
        s0[j] += g;
        dx[j].write(scale[j] * g);
    }
}

/// Writes a row's input gradient `scale * (g - mean(g) - xhat * mean(g * xhat))`, `g` the
/// masked `dy` (the means zero for frozen statistics).
#[inline(always)]
fn grad_input_row(
    p: &Params,
    x: &[f32],
    dy: &[f32],
    (mdy, mdyx): (&[f32], &[f32]),
    dx: &mut [std::mem::MaybeUninit<f32>],
) {
    let c = x.len();
    let (dy, dx, mdy, mdyx) = (&dy[..c], &mut dx[..c], &mdy[..c], &mdyx[..c]);
    let (mean, inv, scale) = (&p.mean[..c], &p.inv[..c], &p.scale[..c]);
    let _ = &p.beta[..c];
    for j in 0..c {
        let d = x[j] - mean[j];
        let g = passed(p, j, d, dy[j]);
        dx[j].write(scale[j] * (g - mdy[j] - d * inv[j] * mdyx[j]));
    }
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
