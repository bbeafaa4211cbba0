//! Ops over the last axis of a row-major tensor (rows of `d` values), vectorised and spread
//! over rayon's pool: softmax and log-softmax (attention scores, classifier outputs) and
//! the normalisation of each row by its own mean and variance (layer normalisation).

use crate::microkernel::Isa;
use rayon::prelude::*;

/// Values per work item.
const CHUNK: usize = 16 * 1024;

/// Runs `f` on groups of whole rows in parallel.
fn rows_in_parallel(x: &mut [f32], d: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    let per_item = CHUNK.div_ceil(d).max(1) * d;
    x.par_chunks_mut(per_item).for_each(|rows| {
        for row in rows.chunks_exact_mut(d) {
            f(row)
        }
    });
}

/// Softmax (`log`: log-softmax) of every row of `d` values of `x`, in place, as TensorFlow
/// computes it: `e = exp(x - max)`, then `e * (1 / sum e)` (or `x - max - ln(sum e)`). The
/// vector kernels' `exp` has a relative error of about 2e-7. A trailing partial row is left
/// as it is.
pub fn softmax_rows(x: &mut [f32], d: usize, log: bool) {
    softmax_rows_with(Isa::detect(), x, d, log)
}

/// [`softmax_rows`] with the kernels of `isa` (which must be supported; tests).
pub fn softmax_rows_with(isa: Isa, x: &mut [f32], d: usize, log: bool) {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    if d == 0 {
        return;
    }
    rows_in_parallel(x, d, |row| match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512F was checked above.
        Isa::Avx512 => unsafe { x86::softmax_row_avx512(row, log) },
        _ => softmax_row(row, log),
    });
}

fn softmax_row(row: &mut [f32], log: bool) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if log {
        let s: f32 = row.iter().map(|&x| (x - m).exp()).sum();
        let ls = s.ln();
        for x in row.iter_mut() {
            *x = (*x - m) - ls;
        }
    } else {
        let mut s = 0f32;
        for x in row.iter_mut() {
            *x = (*x - m).exp();
            s += *x;
        }
        let inv = 1.0 / s;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// Layer normalisation of every row of `d` values of `src` into `dst` (of the same
/// length), in the order Keras' `LayerNormalization` computes it (`tf.nn.moments`,
/// `tf.nn.batch_normalization`): `inv = gamma / sqrt(var + eps)`,
/// `x * inv + (beta - mean * inv)`; the row's mean, and the (biased) variance as the mean
/// of the f32 squares of `x - mean`, accumulated in f64; `gamma` / `beta` per position in
/// the row (`None`: 1 / 0). A trailing partial row of `dst` is left as it is.
pub fn layer_norm_rows(
    src: &[f32],
    dst: &mut [f32],
    d: usize,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) {
    assert_eq!(src.len(), dst.len(), "source and destination lengths");
    if d == 0 {
        return;
    }
    assert!(gamma.is_none_or(|g| g.len() == d) && beta.is_none_or(|b| b.len() == d));
    let (ones, zeros) = (vec![1f32; d], vec![0f32; d]);
    let (gamma, beta) = (gamma.unwrap_or(&ones), beta.unwrap_or(&zeros));
    let per_item = CHUNK.div_ceil(d).max(1) * d;
    dst.par_chunks_mut(per_item)
        .zip(src.par_chunks(per_item))
        .for_each(|(out, inp)| {
            for (o, row) in out.chunks_exact_mut(d).zip(inp.chunks_exact(d)) {
                // tf.nn.moments: the mean, then the mean of the f32 squared differences
                // from it.
                let mean = (sum_f64(row, |v| v) / d as f64) as f32;
                let var = sum_f64(row, |v| {
                    let c = v - mean;
                    c * c
                }) / d as f64;
                // tf.nn.batch_normalization's order: inv = rsqrt(var + eps) * gamma,
                // x * inv + (beta - mean * inv).
                let r = 1.0 / (var as f32 + eps).sqrt();
                for (((y, &x), &g), &b) in o.iter_mut().zip(row).zip(gamma).zip(beta) {
                    let inv = r * g;
                    *y = x * inv + (b - mean * inv);
                }
            }
        });
}

/// The sum of `f(v)` over `row` in f64, eight lanes at a time (so the compiler vectorises
/// it).
#[inline(always)]
fn sum_f64(row: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = row.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v) as f64).sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]) as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::simd::exp512;
    use std::arch::x86_64::*;

    /// `exp(x)` for `x <= 0`, 0 where the polynomial `exp` would saturate at its smallest
    /// normal (TensorFlow's `exp` is denormal there, flushed to zero).
    #[inline(always)]
    unsafe fn exp_nonpos(x: __m512) -> __m512 {
        let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(-87.0));
        _mm512_maskz_mov_ps(keep, exp512(x))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_row_avx512(row: &mut [f32], log: bool) {
        let n = row.len();
        let p = row.as_mut_ptr();
        let full = n / 16 * 16;
        let tail: __mmask16 = ((1u32 << (n - full)) - 1) as u16;
        let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            mv = _mm512_max_ps(mv, _mm512_loadu_ps(p.add(i)));
            i += 16;
        }
        if tail != 0 {
            let v = _mm512_mask_loadu_ps(mv, tail, p.add(full));
            mv = _mm512_max_ps(mv, v);
        }
        let m = _mm512_reduce_max_ps(mv);
        let mb = _mm512_set1_ps(m);
        let mut sv = _mm512_setzero_ps();
        let mut i = 0;
        while i < full {
            let e = exp_nonpos(_mm512_sub_ps(_mm512_loadu_ps(p.add(i)), mb));
            sv = _mm512_add_ps(sv, e);
            if !log {
                _mm512_storeu_ps(p.add(i), e);
            }
            i += 16;
        }
        if tail != 0 {
            let x = _mm512_maskz_loadu_ps(tail, p.add(full));
            let e = _mm512_maskz_mov_ps(tail, exp_nonpos(_mm512_sub_ps(x, mb)));
            sv = _mm512_add_ps(sv, e);
            if !log {
                _mm512_mask_storeu_ps(p.add(full), tail, e);
            }
        }
        let s = _mm512_reduce_add_ps(sv);
        if log {
            // (x - max) - ln(sum), as TensorFlow rounds it.
            let ls = _mm512_set1_ps(s.ln());
            let mut i = 0;
            while i < full {
                let v = _mm512_sub_ps(_mm512_loadu_ps(p.add(i)), mb);
                _mm512_storeu_ps(p.add(i), _mm512_sub_ps(v, ls));
                i += 16;
            }
            if tail != 0 {
                let v = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p.add(full)), mb);
                _mm512_mask_storeu_ps(p.add(full), tail, _mm512_sub_ps(v, ls));
            }
        } else {
            let inv = _mm512_set1_ps(1.0 / s);
            let mut i = 0;
            while i < full {
                _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), inv));
                i += 16;
            }
            if tail != 0 {
                let v = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p.add(full)), inv);
                _mm512_mask_storeu_ps(p.add(full), tail, v);
            }
        }
    }
}
