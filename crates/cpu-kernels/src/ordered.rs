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
    in_groups(chunks, |group| {
        group.map(&part).reduce(add).expect("a group holds a chunk")
    })
    .expect("at least one chunk")
}

/// [`ordered_sum`] for chunks that add their part into a running sum themselves:
/// `part(i, acc, first)` adds chunk `i`'s part to `acc` (`len` elements; when `first`,
/// `acc` holds zeros and the part may simply be written). The same groups and the same
/// order of additions as [`ordered_sum`], so the same result bit for bit, without a vector
/// per chunk.
pub(crate) fn ordered_accumulate<T: Copy + AddAssign + Send + Default>(
    chunks: usize,
    len: usize,
    part: impl Fn(usize, &mut [T], bool) + Sync,
) -> Vec<T> {
    in_groups(chunks, |group| {
        let mut acc = vec![T::default(); len];
        for (j, i) in group.enumerate() {
            part(i, &mut acc, j == 0);
        }
        acc
    })
    .unwrap_or_else(|| vec![T::default(); len])
}

/// `a + b` element-wise, in `a`.
fn add<T: Copy + AddAssign>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
    a
}

/// The chunks `0..chunks` in up to [`SUM_GROUPS`] consecutive groups, each group's sum by
/// `group_sum` on one thread, then the groups' sums added in order (`None` without chunks).
fn in_groups<T: Copy + AddAssign + Send>(
    chunks: usize,
    group_sum: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync,
) -> Option<Vec<T>> {
    let per_group = chunks.div_ceil(SUM_GROUPS).max(1);
    let sums: Vec<Vec<T>> = (0..chunks.div_ceil(per_group))
        .into_par_iter()
        .map(|g| group_sum(g * per_group..((g + 1) * per_group).min(chunks)))
        .collect();
    sums.into_iter().reduce(add)
}
