//! Sums of per-chunk partial results added in a fixed order, so that a parallel reduction
//! gives the same result on every run and machine (the training kernels' gradients).

use rayon::prelude::*;
use std::ops::AddAssign;

/// Groups of chunks whose sums are added in a fixed order (see [`ordered_sum`]).
pub(crate) const SUM_GROUPS: usize = 16;

/// The element-wise sum of `part(0) .. part(chunks)` (equal-length vectors, `chunks > 0`),
/// added in the same order on every run and machine: the chunks in up to [`SUM_GROUPS`]
/// consecutive groups, each group's in order on one thread, then the groups' in order.
pub(crate) fn ordered_sum<T: Copy + AddAssign + Send>(
    chunks: usize,
    part: impl Fn(usize) -> Vec<T> + Sync,
) -> Vec<T> {
    let add = |mut a: Vec<T>, b: Vec<T>| {
        for (a, b) in a.iter_mut().zip(b) {
            *a += b;
        }
        a
    };
    let per_group = chunks.div_ceil(SUM_GROUPS).max(1);
    let sums: Vec<Vec<T>> = (0..chunks.div_ceil(per_group))
        .into_par_iter()
        .map(|g| {
            (g * per_group..((g + 1) * per_group).min(chunks))
                .map(&part)
                .reduce(add)
                .expect("a group holds a chunk")
        })
        .collect();
    sums.into_iter().reduce(add).expect("at least one chunk")
}
