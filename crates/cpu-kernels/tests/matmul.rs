//! Batched strided matrix products against a direct f64 sum, in attention's layouts: the
//! scores `[batch, heads, q, k]` from queries and keys `[batch, tokens, heads, dim]`, and the
//! context `[batch, q, heads, dim]` from the scores and values.

mod common;

use common::values;
use cpu_kernels::{matmul_batches, Layout};

/// (batch, tokens, heads, dim) layout helpers: element index.
fn bthd(t: usize, h: usize, d: usize) -> impl Fn(usize, usize, usize, usize) -> usize {
    move |b, i, hh, j| ((b * t + i) * h + hh) * d + j
}

/// Within 1e-6 of the sum of the products' magnitudes (f32 rounding as the sum goes).
fn assert_close(got: &[f32], want: &[(f64, f64)], what: &str) {
    for (i, (g, (w, size))) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= 1e-6 * size.max(1e-3),
            "{what} [{i}]: got {g}, want {w}"
        );
    }
}

/// The sum of the products and of their magnitudes.
fn dot(terms: impl Iterator<Item = f64>) -> (f64, f64) {
    terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()))
}

#[test]
fn attention_scores_and_context_in_place() {
    // Token counts around the tile sizes (12 rows, 32 columns) and a ViT's 197.
    for (nb, t, h, d) in [(2, 5, 3, 4), (1, 197, 3, 64), (3, 13, 2, 33), (2, 40, 4, 1)] {
        let idx = bthd(t, h, d);
        let q = values(nb * t * h * d, 1);
        let kt = values(nb * t * h * d, 2);
        let v = values(nb * t * h * d, 3);
        // scores[b, hh, i, j] = sum_e q[b, i, hh, e] k[b, j, hh, e]
        let mut s = vec![f32::NAN; nb * h * t * t];
        let qa = |bh: usize| idx(bh / h, 0, bh % h, 0);
        let sa = |bh: usize| bh * t * t;
        matmul_batches(
            nb * h,
            (t, d, t),
            &q,
            &Layout {
                at: &qa,
                row: h * d,
                col: 1,
            },
            &kt,
            &Layout {
                at: &qa,
                row: 1,
                col: h * d,
            },
            &mut s,
            &Layout {
                at: &sa,
                row: t,
                col: 1,
            },
        );
        let mut want = vec![(0f64, 0f64); s.len()];
        for b in 0..nb {
            for hh in 0..h {
                for i in 0..t {
                    for j in 0..t {
                        want[((b * h + hh) * t + i) * t + j] = dot((0..d)
                            .map(|e| q[idx(b, i, hh, e)] as f64 * kt[idx(b, j, hh, e)] as f64));
                    }
                }
            }
        }
        assert_close(&s, &want, &format!("scores {nb} {t} {h} {d}"));
        // context[b, i, hh, e] = sum_j s[b, hh, i, j] v[b, j, hh, e]
        let mut ctx = vec![f32::NAN; nb * t * h * d];
        let ca = |bh: usize| idx(bh / h, 0, bh % h, 0);
        matmul_batches(
            nb * h,
            (t, t, d),
            &s,
            &Layout {
                at: &sa,
                row: t,
                col: 1,
            },
            &v,
            &Layout {
                at: &ca,
                row: h * d,
                col: 1,
            },
            &mut ctx,
            &Layout {
                at: &ca,
                row: h * d,
                col: 1,
            },
        );
        let mut want = vec![(0f64, 0f64); ctx.len()];
        for b in 0..nb {
            for hh in 0..h {
                for i in 0..t {
                    for e in 0..d {
                        want[idx(b, i, hh, e)] = dot((0..t).map(|j| {
                            s[((b * h + hh) * t + i) * t + j] as f64 * v[idx(b, j, hh, e)] as f64
                        }));
                    }
                }
            }
        }
        assert_close(&ctx, &want, &format!("context {nb} {t} {h} {d}"));
    }
}

#[test]
fn nothing_to_contract_gives_zeros() {
    let mut c = vec![f32::NAN; 6];
    let at = |b: usize| b * 3;
    let l = Layout {
        at: &at,
        row: 3,
        col: 1,
    };
    matmul_batches(2, (1, 0, 3), &[], &l, &[], &l, &mut c, &l);
    assert_eq!(c, vec![0.0; 6]);
}

#[test]
#[should_panic(expected = "output rows overlap")]
fn overlapping_outputs_are_refused() {
    let a = values(8, 4);
    let at = |_: usize| 0;
    let l = Layout {
        at: &at,
        row: 2,
        col: 1,
    };
    let mut c = vec![0f32; 8];
    matmul_batches(2, (2, 2, 2), &a, &l, &a, &l, &mut c, &l);
}

#[test]
#[should_panic(expected = "reaches past its buffer")]
fn operands_past_their_buffer_are_refused() {
    let a = values(8, 5);
    let at = |b: usize| b * 4;
    let l = Layout {
        at: &at,
        row: 2,
        col: 1,
    };
    let mut c = vec![0f32; 16];
    let lc = Layout {
        at: &|b: usize| b * 8,
        row: 2,
        col: 1,
    };
    matmul_batches(3, (2, 2, 2), &a, &l, &a, &l, &mut c, &lc);
}
