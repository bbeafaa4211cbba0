//! Batches of small matrix products with strided operands: attention's scores and context,
//! one product per image and head, read straight out of `[batch, tokens, heads, dim]`
//! tensors and written straight into the output's layout. Each product is a 1x1
//! convolution ([`Conv2d`]) on one thread, its right operand packed for it; the products are
//! spread over rayon's pool.

use crate::conv::{Conv2d, SendPtr};
use crate::microkernel::Isa;
use crate::tensor::View;
use rayon::prelude::*;

/// Where a batch of matrices lies in a flat buffer: element `(r, j)` of matrix `b` at
/// `at(b) + r * row + j * col`.
pub struct Layout<'f> {
    pub at: &'f (dyn Fn(usize) -> usize + Sync),
    pub row: usize,
    pub col: usize,
}

impl Layout<'_> {
    /// One past the last element of matrix `b` of `rows x cols` (both non-zero).
    fn end(&self, b: usize, rows: usize, cols: usize) -> Option<usize> {
        (rows - 1)
            .checked_mul(self.row)?
            .checked_add((cols - 1).checked_mul(self.col)?)?
            .checked_add((self.at)(b))?
            .checked_add(1)
    }
}

/// `c[b] = a[b] x b[b]` for `batches` products of an `m x k` by a `k x n` matrix. `a`'s
/// and `c`'s rows must be contiguous (`col == 1`, `row >= k` and `row >= n`); `b` may have
/// any strides. Panics when a matrix reaches past its buffer or two output rows overlap.
#[allow(clippy::too_many_arguments)]
pub fn matmul_batches(
    batches: usize,
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
    c: &mut [f32],
    lc: &Layout,
) {
    if batches == 0 || m == 0 || n == 0 {
        return;
    }
    assert!(la.col == 1 && la.row >= k, "a's rows must be contiguous");
    assert!(lc.col == 1 && lc.row >= n, "c's rows must be contiguous");
    let mut starts = Vec::with_capacity(batches * m);
    for bt in 0..batches {
        assert!(
            lc.end(bt, m, n).is_some_and(|e| e <= c.len()),
            "output matrix {bt} reaches past its buffer"
        );
        starts.extend((0..m).map(|r| (lc.at)(bt) + r * lc.row));
        if k > 0 {
            assert!(
                la.end(bt, m, k).is_some_and(|e| e <= a.len()),
                "left matrix {bt} reaches past its buffer"
            );
            assert!(
                lb.end(bt, k, n).is_some_and(|e| e <= b.len()),
                "right matrix {bt} reaches past its buffer"
            );
        }
    }
    starts.sort_unstable();
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] >= n),
        "output rows overlap"
    );
    let isa = Isa::detect();
    let out = SendPtr(c.as_mut_ptr());
    (0..batches).into_par_iter().for_each(|bt| {
        let dst = out.get();
        let base = (lc.at)(bt);
        if k == 0 {
            for r in 0..m {
                // SAFETY: row r of matrix bt lies in `c` (checked) and no other matrix's
                // rows overlap it.
                unsafe { std::ptr::write_bytes(dst.add(base + r * lc.row), 0, n) };
            }
            return;
        }
        let at = (lb.at)(bt);
        let conv = Conv2d::matrix(isa, (k, n), b, (at, lb.row, lb.col));
        let x = View {
            data: &a[(la.at)(bt)..],
            n: 1,
            h: m,
            w: 1,
            c: k,
            stride: la.row,
            offset: 0,
        };
        // SAFETY: the m rows of n floats, lc.row apart from `base`, lie in `c` (checked)
        // and overlap no other matrix's rows (checked), so the threads write apart.
        unsafe { conv.run_on_this_thread(x, dst.add(base), lc.row) };
    });
}
