//! Sums of per-chunk partial results added in a fixed order, so that a parallel reduction
//! gives the same result on every run and machine (the training kernels' gradients).

use rayon::prelude::*;
use std::ops::AddAssign;

/// Groups of chunks whose sums are added in a fixed order (see [`ordered_sum`]).
pub(crate) const SUM_GROUPS: usize = 16;

/// The element-wise sum of `part(0) .. part(chunks)` (equal-length vectors, `chunks > 0`),
/// added in the same order on every run and machine: the chunks in up to [`SUM_GROUPS`]
/// consecutive groups, each group's in order on one thread, then the groups' in order.
pub(crate) fn ordered_sum<T: Copy + AddAssign + Send + Sync>(
    chunks: usize,
    part: impl Fn(usize) -> Vec<T> + Sync,
) -> Vec<T> {
    in_groups(chunks, 1, |group| {
        group.map(&part).reduce(add).expect("a group holds a chunk")
    })
    .expect("at least one chunk")
}

/// [`ordered_sum`] for chunks that add their part into a running sum themselves:
/// `part(i, acc, first)` adds chunk `i`'s part to `acc` (`len` elements; when `first`,
/// `acc` holds zeros and the part may simply be written), without a vector per chunk. The
/// groups hold at least [`ACCUMULATE_PER_GROUP`] chunks each (as many as
/// [`accumulate_groups`] says): each group's running sum is a vector as long as a filter,
/// zeroed, written and added once more at the end, which cost as much memory traffic as the
/// products when a wide filter's few chunks each had their own group.
///
/// Each group's running sum is cleared on the thread pool ([`crate::ops::zeroed`]): a
/// filter-wide block the caching allocator hands back must be, and with a single group
/// (few chunks: the 8x8 layers' filter gradients, up to 6 MB) the calling thread cleared
/// it alone.
pub(crate) fn ordered_accumulate(
    chunks: usize,
    len: usize,
    part: impl Fn(usize, &mut [f32], bool) + Sync,
) -> Vec<f32> {
    in_groups(chunks, ACCUMULATE_PER_GROUP, |group| {
        let mut acc = crate::ops::zeroed(len);
        for (j, i) in group.enumerate() {
            part(i, &mut acc, j == 0);
        }
        acc
    })
    .unwrap_or_else(|| vec![0.0; len])
}

/// `a + b` element-wise, in `a`.
fn add<T: Copy + AddAssign>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
    a
}

/// Chunks per group: as few as fill at most [`SUM_GROUPS`] groups, at least `min`.
fn per_group(chunks: usize, min: usize) -> usize {
    chunks.div_ceil(SUM_GROUPS).max(min).max(1)
}

/// Least chunks per group of [`ordered_accumulate`].
pub(crate) const ACCUMULATE_PER_GROUP: usize = 4;

/// How to cut `items` into chunks of at most `max_len` for [`ordered_accumulate`]:
/// `(chunk length, chunks)`. Where the chunks fill a few groups of
/// [`ACCUMULATE_PER_GROUP`], their count is rounded up to an even number of full groups
/// (shorter chunks), so that the groups share out evenly over two or four threads: 3,468
/// pixels (Inception's 17x17 layers at batch 12) made 14 chunks of 256, groups of 4, 4, 4
/// and 2, one thread summing 8 chunks while the other summed 6; now 16 of 217. The cut
/// depends on the sizes only, never on the thread count.
pub(crate) fn balanced_chunks(items: usize, max_len: usize) -> (usize, usize) {
    let mut chunks = items.div_ceil(max_len.max(1)).max(1);
    let full = 2 * ACCUMULATE_PER_GROUP;
    if chunks > ACCUMULATE_PER_GROUP && chunks <= SUM_GROUPS * ACCUMULATE_PER_GROUP {
        chunks = chunks.next_multiple_of(full);
    }
    let len = items.div_ceil(chunks).max(1);
    (len, items.div_ceil(len))
}

/// The groups [`ordered_accumulate`] runs `chunks` in (side by side on the thread pool).
pub(crate) fn accumulate_groups(chunks: usize) -> usize {
    chunks.div_ceil(per_group(chunks, ACCUMULATE_PER_GROUP))
}

/// The chunks `0..chunks` in up to [`SUM_GROUPS`] consecutive groups of at least
/// `min_per_group` (but the last), each group's sum by
/// `group_sum` on one thread, then the groups' sums added in order (`None` without chunks).
fn in_groups<T: Copy + AddAssign + Send + Sync>(
    chunks: usize,
    min_per_group: usize,
    group_sum: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync,
) -> Option<Vec<T>> {
    let per_group = per_group(chunks, min_per_group);
    let mut sums: Vec<Vec<T>> = (0..chunks.div_ceil(per_group))
        .into_par_iter()
        .map(|g| group_sum(g * per_group..((g + 1) * per_group).min(chunks)))
        .collect();
    if sums.is_empty() {
        return None;
    }
    let mut total = sums.remove(0);
    // The groups' sums added in order for every element, as `reduce(add)` would, but over
    // pieces of the vector in parallel (a filter gradient's 16 partial sums of a million
    // values each were added on the calling thread alone).
    let add_rest = |i: usize, piece: &mut [T]| {
        for s in &sums {
            for (a, &b) in piece.iter_mut().zip(&s[i * PIECE..]) {
                *a += b;
            }
        }
    };
    if total.len() * sums.len() >= PARALLEL_ADDS {
        total
            .par_chunks_mut(PIECE)
            .enumerate()
            .for_each(|(i, piece)| add_rest(i, piece));
    } else {
        total
            .chunks_mut(PIECE)
            .enumerate()
            .for_each(|(i, piece)| add_rest(i, piece));
    }
    Some(total)
}

/// Elements per piece of the groups' final sum.
const PIECE: usize = 1 << 13;
/// Additions from which the groups' final sum runs on the thread pool.
const PARALLEL_ADDS: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// Values whose f32 sum depends on the order of the additions.
    fn part(i: usize, len: usize) -> Vec<f32> {
        (0..len)
            .map(|j| {
                let x = ((i * 7919 + j * 104_729) % 1000) as f32;
                if (i + j) % 3 == 0 {
                    x * 1e7
                } else {
                    x * 1e-3 - 0.37
                }
            })
            .collect()
    }

    /// The groups as the documentation says, summed one element at a time on one thread.
    fn expected(chunks: usize, len: usize, min_per_group: usize) -> Vec<f32> {
        let per_group = chunks.div_ceil(SUM_GROUPS).max(min_per_group);
        let groups: Vec<Vec<f32>> = (0..chunks)
            .step_by(per_group)
            .map(|g0| {
                (g0..(g0 + per_group).min(chunks))
                    .map(|i| part(i, len))
                    .reduce(add)
                    .unwrap()
            })
            .collect();
        groups.into_iter().reduce(add).unwrap()
    }

    #[test]
    fn sums_repeat_the_documented_order_bit_for_bit() {
        // Small (the groups' sum on the calling thread) and large (over pieces in parallel,
        // the last one partial), fewer chunks than groups and more.
        for (chunks, len) in [(3, 10), (40, 5000), (5, 20_000), (37, 3 * PIECE + 5)] {
            let want = expected(chunks, len, 1);
            let got = ordered_sum(chunks, |i| part(i, len));
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "ordered_sum, {chunks} chunks of {len}"
            );
            let acc = ordered_accumulate(chunks, len, |i, acc: &mut [f32], first| {
                for (a, v) in acc.iter_mut().zip(part(i, len)) {
                    *a = if first { v } else { *a + v };
                }
            });
            let want = expected(chunks, len, ACCUMULATE_PER_GROUP);
            assert!(
                acc.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "ordered_accumulate, {chunks} chunks of {len}"
            );
        }
    }

    #[test]
    fn balanced_chunks_cover_the_items_in_even_full_groups() {
        // Inception's 17x17 layers at batch 12: 14 chunks of 256 became 16 of 217.
        assert_eq!(balanced_chunks(3468, 256), (217, 16));
        assert_eq!(accumulate_groups(16), 4);
        // One group or fewer: as cut before; past 16 groups: as cut before.
        assert_eq!(balanced_chunks(768, 256), (256, 3));
        assert_eq!(balanced_chunks(100, 256), (100, 1));
        assert_eq!(balanced_chunks(259_308, 256), (256, 1013));
        for items in [
            1, 255, 256, 257, 1025, 3468, 14_700, 16_385, 65_712, 300_000,
        ] {
            for max in [128, 256] {
                let (len, chunks) = balanced_chunks(items, max);
                assert!(len <= max && len * chunks >= items && len * (chunks - 1) < items);
                let groups = accumulate_groups(chunks);
                if chunks > ACCUMULATE_PER_GROUP && chunks <= SUM_GROUPS * ACCUMULATE_PER_GROUP {
                    assert_eq!(
                        groups % 2,
                        0,
                        "{items} items in chunks of {len}: {groups} groups"
                    );
                }
            }
        }
    }
}
