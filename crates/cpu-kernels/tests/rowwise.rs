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
