//! Softmax and layer normalisation over the last axis against their definitions in f64, on
//! every kernel set, for row lengths around the vector widths and long rows split across
//! threads.

mod common;

use common::values;
use cpu_kernels::rowwise::{layer_norm_rows, softmax_rows_with};
use cpu_kernels::Isa;

/// Row lengths: one value, shorter than a vector, exactly one or two, one more, and
/// attention's 197 tokens.
const LENGTHS: [usize; 8] = [1, 5, 8, 16, 17, 32, 197, 1000];

fn softmax_f64(row: &[f32], log: bool) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
    row.iter()
        .map(|&v| {
            if log {
                v as f64 - m - s.ln()
            } else {
                (v as f64 - m).exp() / s
            }
        })
        .collect()
}

#[test]
fn softmax_and_log_softmax_of_rows_of_any_length() {
    for isa in Isa::all_supported() {
        for d in LENGTHS {
            for log in [false, true] {
                // Spread up to +-40 so that some values are far below the maximum.
                let rows = 3 + 40_000 / d;
                let x: Vec<f32> = values(rows * d, d as u64)
                    .iter()
                    .map(|v| v * 40.0)
                    .collect();
                let mut y = x.clone();
                softmax_rows_with(isa, &mut y, d, log);
                for (r, (xr, yr)) in x.chunks(d).zip(y.chunks(d)).enumerate() {
                    let want = softmax_f64(xr, log);
                    for (i, (&g, &w)) in yr.iter().zip(&want).enumerate() {
                        let tol = if log {
                            1e-6 * w.abs().max(1.0)
                        } else {
                            1e-6 * w.abs() + 1e-12
                        };
                        assert!(
                            (g as f64 - w).abs() <= tol,
                            "{isa:?} d {d} log {log} row {r} [{i}]: got {g}, want {w}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn softmax_leaves_a_partial_row_and_takes_extreme_logits() {
    for isa in Isa::all_supported() {
        let mut y = vec![1e30, -1e30, 0.0, 88.0, -200.0, 7.0, 7.0];
        softmax_rows_with(isa, &mut y, 3, false);
        assert_eq!(&y[..3], &[1.0, 0.0, 0.0], "{isa:?}");
        let want = softmax_f64(&[88.0, -200.0, 7.0], false);
        for (g, w) in y[3..6].iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * w.abs() + 1e-30,
                "{isa:?}: {y:?}"
            );
        }
        assert_eq!(y[6], 7.0, "{isa:?}: the partial row changed");
    }
}

#[test]
fn layer_norm_of_rows_with_and_without_scale_and_offset() {
    for d in LENGTHS.into_iter().filter(|&d| d > 1) {
        let rows = 3 + 20_000 / d;
        // An offset far from zero, as a residual stream has.
        let x: Vec<f32> = values(rows * d, 50 + d as u64)
            .iter()
            .map(|v| 3.0 * v + 5.0)
            .collect();
        let gamma: Vec<f32> = values(d, 7).iter().map(|v| v + 1.5).collect();
        let beta = values(d, 8);
        for (g, b) in [(Some(&gamma[..]), Some(&beta[..])), (None, None)] {
            let mut y = vec![f32::NAN; x.len()];
            layer_norm_rows(&x, &mut y, d, g, b, 1e-6);
            for (xr, yr) in x.chunks(d).zip(y.chunks(d)) {
                let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                for i in 0..d {
                    let inv = g.map_or(1.0, |g| g[i] as f64) / (var + 1e-6).sqrt();
                    let want = (xr[i] as f64 - mean) * inv + b.map_or(0.0, |b| b[i] as f64);
                    // TensorFlow's order, x * inv + (beta - mean * inv), rounds the two
                    // products before they cancel: a few ulps of their size.
                    let size = (xr[i].abs() as f64 + mean.abs()) * inv.abs() + 1.0;
                    assert!(
                        (yr[i] as f64 - want).abs() <= 5e-7 * size,
                        "d {d} [{i}]: got {}, want {want}",
                        yr[i]
                    );
                }
            }
        }
    }
}

/// Training-mode batch norm and clamps (`cpu_kernels::train_norm`) against f64 definitions:
/// the forward from the batch's moments, the gradient by central differences of the f64
/// loss `sum(dy * y)`.
mod train_norm {
    use super::common::values;
    use cpu_kernels::train_norm;

    /// Batch statistics, or with `frozen` fixed ones (mean 0.1 + 0.2 j, variance 0.5 + j).
    fn bn64(
        x: &[f64],
        g: &[f64],
        b: &[f64],
        eps: f64,
        (lo, hi): (f64, f64),
        frozen: bool,
    ) -> Vec<f64> {
        let c = g.len();
        let rows = x.len() / c;
        let mut y = vec![0f64; x.len()];
        for j in 0..c {
            let (m, v) = if frozen {
                frozen_moments(j)
            } else {
                let m = (0..rows).map(|r| x[r * c + j]).sum::<f64>() / rows as f64;
                let v = (0..rows).map(|r| (x[r * c + j] - m).powi(2)).sum::<f64>() / rows as f64;
                (m, v)
            };
            for r in 0..rows {
                y[r * c + j] = ((x[r * c + j] - m) / (v + eps).sqrt() * g[j] + b[j]).clamp(lo, hi);
            }
        }
        y
    }

    fn frozen_moments(j: usize) -> (f64, f64) {
        (0.1 + 0.2 * j as f64, 0.5 + j as f64)
    }

    /// The normalisation and its gradient are the f32 formulas, operation for operation,
    /// whatever vectors the kernels are compiled for (`simd::vectorised`): no contraction
    /// into FMAs, no reordering. 37 channels: full vectors and a tail.
    #[test]
    fn batch_norm_is_its_f32_formula_bit_for_bit() {
        let (rows, c, eps, (lo, hi)) = (130usize, 37usize, 1e-3f32, (0.0f32, 6.0f32));
        let x: Vec<f32> = values(rows * c, 21).iter().map(|v| v * 3.0 + 1.0).collect();
        let g: Vec<f32> = values(c, 22).iter().map(|v| v + 1.5).collect();
        let b = values(c, 23);
        let dy = values(rows * c, 24);
        let m: Vec<f32> = (0..2 * c)
            .map(|j| if j < c { 0.3 } else { 0.7 } + 0.01 * j as f32)
            .collect();
        let inv: Vec<f32> = m[c..].iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        let scale: Vec<f32> = g.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let y = train_norm::batch_norm(&x, &m, &g, &b, eps, (lo, hi));
        let (rows_of_dy, bounds) = (train_norm::Rows::of(&dy, c), Some((lo, hi)));
        let (dx, _, _) = train_norm::batch_norm_grad(&x, rows_of_dy, &m, &g, &b, eps, bounds, true);
        let mut clamped = 0;
        for i in 0..rows * c {
            let j = i % c;
            let d = x[i] - m[j];
            let pre = d * scale[j] + b[j];
            assert_eq!(y[i].to_bits(), pre.max(lo).min(hi).to_bits(), "y[{i}]");
            let pass = pre > lo && pre < hi;
            clamped += usize::from(!pass);
            let want = scale[j] * ((if pass { dy[i] } else { 0.0 }) - 0.0 - d * inv[j] * 0.0);
            assert_eq!(dx[i].to_bits(), want.to_bits(), "dx[{i}]");
        }
        assert!(clamped > 0 && clamped < rows * c / 2, "{clamped} clamped");
    }

    /// Batch and frozen statistics, without an activation and with ReLU6 after it.
    #[test]
    fn batch_norm_and_its_gradient_match_the_definition() {
        for frozen in [false, true] {
            for (lo, hi) in [(f32::NEG_INFINITY, f32::INFINITY), (0.0, 6.0)] {
                check_batch_norm(lo, hi, frozen);
            }
        }
    }

    fn check_batch_norm(lo: f32, hi: f32, frozen: bool) {
        // 150 rows (blocks of 64 and a remainder), 5 channels, one with a large offset.
        let (rows, c, eps) = (150usize, 5usize, 1e-3f32);
        let mut x = values(rows * c, 11);
        for r in 0..rows {
            x[r * c + 2] = x[r * c + 2] * 0.1 + 3.0;
        }
        let g: Vec<f32> = values(c, 12).iter().map(|v| v + 1.5).collect();
        let b = values(c, 13);
        let dy = values(rows * c, 14);
        let f64s = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
        let (x64, g64, b64) = (f64s(&x), f64s(&g), f64s(&b));
        let bounds = (lo as f64, hi as f64);

        let m = if frozen {
            let (mean, var): (Vec<f32>, Vec<f32>) = (0..c)
                .map(|j| frozen_moments(j))
                .map(|(m, v)| (m as f32, v as f32))
                .unzip();
            [mean, var].concat()
        } else {
            train_norm::channel_moments(&x, c)
        };
        let y = train_norm::batch_norm(&x, &m, &g, &b, eps, (lo, hi));
        let want = bn64(&x64, &g64, &b64, eps as f64, bounds, frozen);
        for (i, (a, w)) in y.iter().zip(&want).enumerate() {
            assert!((*a as f64 - w).abs() < 2e-5, "y[{i}] {a} vs {w}");
        }
        if lo == 0.0 {
            assert!(y.iter().any(|&v| v == 0.0), "some values clamped");
        }

        let clamp = lo.is_finite().then_some((lo, hi));
        let (dx, dg, db) = train_norm::batch_norm_grad(
            &x,
            train_norm::Rows::of(&dy, c),
            &m,
            &g,
            &b,
            eps,
            clamp,
            frozen,
        );
        // The same gradient read as a channel slice of a wider tensor (a concatenation's
        // gradient, 3 channels before and 4 after): the same bits.
        let wide: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let row = &dy[r * c..][..c];
                [vec![9.0; 3], row.to_vec(), vec![-9.0; 4]].concat()
            })
            .collect();
        let rows_view = train_norm::Rows {
            data: &wide,
            offset: 3,
            stride: c + 7,
        };
        let sliced = train_norm::batch_norm_grad(&x, rows_view, &m, &g, &b, eps, clamp, frozen);
        assert_eq!(
            (&sliced.0, &sliced.1, &sliced.2),
            (&dx, &dg, &db),
            "strided rows"
        );
        let loss = |x: &[f64], g: &[f64], b: &[f64]| -> f64 {
            bn64(x, g, b, eps as f64, bounds, frozen)
                .iter()
                .zip(&dy)
                .map(|(y, d)| y * *d as f64)
                .sum()
        };
        let h = 1e-5;
        let diff = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        for i in (0..rows * c).step_by(37) {
            let num = diff(&|d| {
                let mut xp = x64.clone();
                xp[i] += d;
                loss(&xp, &g64, &b64)
            });
            assert!(
                (dx[i] as f64 - num).abs() < 1e-3 * num.abs().max(1.0),
                "dx[{i}] {} vs {num}",
                dx[i]
            );
        }
        for j in 0..c {
            let ng = diff(&|d| {
                let mut gp = g64.clone();
                gp[j] += d;
                loss(&x64, &gp, &b64)
            });
            let nb = diff(&|d| {
                let mut bp = b64.clone();
                bp[j] += d;
                loss(&x64, &g64, &bp)
            });
            assert!(
                (dg[j] as f64 - ng).abs() < 1e-3 * ng.abs().max(1.0),
                "dgamma[{j}] {} vs {ng}",
                dg[j]
            );
            assert!(
                (db[j] as f64 - nb).abs() < 1e-3 * nb.abs().max(1.0),
                "dbeta[{j}] {} vs {nb}",
                db[j]
            );
        }
    }

    /// With frozen statistics gamma's and beta's gradients are summed as the input
    /// gradient's rows are made: the same sums, bit for bit, whether the rows are made
    /// whole, in chunks that cut the 64-row blocks, twice, or not at all (a pass of their
    /// own); from the output as from the input.
    #[test]
    fn frozen_parameter_gradients_do_not_depend_on_how_the_rows_are_made() {
        let (rows, c, eps, bounds) = (700usize, 19usize, 1e-3f32, Some((0.0f32, 6.0f32)));
        let x: Vec<f32> = values(rows * c, 31).iter().map(|v| v * 4.0).collect();
        let g = vec![1f32; c];
        let b = values(c, 32);
        let dy = values(rows * c, 33);
        let m: Vec<f32> = (0..c)
            .map(|j| frozen_moments(j).0 as f32)
            .chain((0..c).map(|j| frozen_moments(j).1 as f32))
            .collect();
        let new = || {
            train_norm::BatchNormGrad::new(
                &x,
                train_norm::Rows::of(&dy, c),
                &m,
                &g,
                &b,
                eps,
                bounds,
                true,
            )
        };
        let whole = new();
        let dx = whole.input_gradient();
        let (dg, db) = whole.parameter_gradients();
        // In uneven chunks (not multiples of 64 rows).
        let chunked = new();
        let mut dx2 = vec![0f32; rows * c];
        for (i, chunk) in dx2.chunks_mut(250 * c).enumerate() {
            chunked.rows(i * 250, chunk);
        }
        assert_eq!(dx2, dx);
        assert_eq!(chunked.parameter_gradients(), (dg.clone(), db.clone()));
        // As the separate backward pass sums them.
        let (_, want_g, want_b) = train_norm::batch_norm_grad(
            &x,
            train_norm::Rows::of(&dy, c),
            &m,
            &g,
            &b,
            eps,
            bounds,
            true,
        );
        assert_eq!((&dg, &db), (&want_g, &want_b));
        // Not made: the same blocks as whole, summed by themselves.
        assert_eq!(new().parameter_gradients(), (dg.clone(), db.clone()));
        // Made twice: summed by themselves.
        let twice = new();
        let _ = (twice.input_gradient(), twice.input_gradient());
        assert_eq!(twice.parameter_gradients(), (dg.clone(), db.clone()));
        // From the clamped output: the same input gradient and beta's gradient.
        let y = train_norm::batch_norm(&x, &m, &g, &b, eps, bounds.unwrap());
        let from_out = train_norm::BatchNormGrad::frozen_from_output(
            &y,
            train_norm::Rows::of(&dy, c),
            &m,
            &g,
            &b,
            eps,
            bounds,
        );
        assert_eq!(from_out.input_gradient(), dx);
        let (dg3, db3) = from_out.parameter_gradients();
        assert!(dg3.is_empty());
        assert_eq!(db3, db);
        let nonzero = |v: &[f32]| v.iter().filter(|v| **v != 0.0).count();
        assert!(
            nonzero(&db) > c / 2 && nonzero(&dg) > c / 2,
            "{db:?} {dg:?}"
        );
    }

    /// The one-pass moments (blocks of 64 rows merged in groups) against f64 two-pass sums:
    /// more blocks than groups, a partial last block, a channel whose mean is 1000 times its
    /// spread (where a sum of squares in f32 would cancel), and a constant channel.
    #[test]
    fn batch_moments_match_two_pass_f64_sums() {
        let (rows, c) = (64 * 40 + 7, 4usize);
        let mut x = values(rows * c, 21);
        for r in 0..rows {
            x[r * c + 1] = 1000.0 + x[r * c + 1];
            x[r * c + 3] = -2.5;
        }
        let m = train_norm::channel_moments(&x, c);
        for j in 0..c {
            let col: Vec<f64> = (0..rows).map(|r| x[r * c + j] as f64).collect();
            let mean = col.iter().sum::<f64>() / rows as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / rows as f64;
            assert!(
                (m[j] as f64 - mean).abs() <= 1e-6 * mean.abs().max(1.0),
                "mean[{j}] {} vs {mean}",
                m[j]
            );
            assert!(
                (m[c + j] as f64 - var).abs() <= 1e-5 * var.max(1e-6),
                "var[{j}] {} vs {var}",
                m[c + j]
            );
        }
        assert_eq!(m[c + 3], 0.0, "a constant channel has no variance");
    }

    #[test]
    fn clamps_pass_the_gradient_strictly_inside_their_range() {
        let x = [-1.0f32, 0.0, 0.5, 6.0, 7.0, 5.999];
        assert_eq!(
            train_norm::clamp(&x, 0.0, 6.0),
            vec![0.0, 0.0, 0.5, 6.0, 6.0, 5.999]
        );
        let dy = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            train_norm::clamp_grad(&x, &dy, 0.0, 6.0),
            vec![0.0, 0.0, 3.0, 0.0, 0.0, 6.0]
        );
        assert_eq!(
            train_norm::clamp_grad(&x, &dy, 0.0, f32::INFINITY),
            vec![0.0, 0.0, 3.0, 4.0, 5.0, 6.0]
        );
    }
}
