//! Optimiser updates over a parameter's values on the host (the fine-tuning trainer's Keras
//! Adam on flex): one parallel pass instead of a dozen tensor operations.

use crate::simd::vectorised;
use rayon::prelude::*;

/// One Keras Adam step: the moments in place, `m += (g - m)(1 - b1)`, `v += (g² - v)(1 - b2)`,
/// and the updated parameter `p - (m alpha) / (√v + eps)` returned (written once, not copied
/// from `p` first), each operation rounded to f32 in this order as TensorFlow's element-wise
/// kernels (and Burn's tensor ops) compute them; chunks of the parameter in parallel.
pub fn keras_adam_step(
    p: &[f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    (b1, b2, eps, alpha): (f32, f32, f32, f32),
) -> Vec<f32> {
    assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len());
    const CHUNK: usize = 1 << 14;
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    let mut out = Vec::with_capacity(p.len());
    out.spare_capacity_mut()[..p.len()]
        .par_chunks_mut(CHUNK)
        .zip(p.par_chunks(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|((((o, p), g), m), v)| {
            // Compiled for the CPU's widest vectors: with SSE2 the square roots and
            // divisions ran four at a time.
            vectorised(
                #[inline(always)]
                || {
                    let n = o.len();
                    let (p, g, m, v) = (&p[..n], &g[..n], &mut m[..n], &mut v[..n]);
                    for i in 0..n {
                        m[i] += (g[i] - m[i]) * c1;
                        v[i] += (g[i] * g[i] - v[i]) * c2;
                        o[i].write(p[i] - (m[i] * alpha) / (v[i].sqrt() + eps));
                    }
                },
            )
        });
    // SAFETY: the chunks cover all `p.len()` elements, each written.
    unsafe { out.set_len(p.len()) };
    out
}

#[cfg(test)]
mod tests {
    /// The update against the rule written out element by element (in f32, in Keras'
    /// order), over more than one chunk; the moments updated in place.
    #[test]
    fn keras_adam_step_follows_the_rule() {
        let n = (1 << 14) + 37;
        let p: Vec<f32> = (0..n)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 10.0)
            .collect();
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 100.0)
            .collect();
        let mut m: Vec<f32> = (0..n).map(|i| (i % 5) as f32 / 1000.0).collect();
        let mut v: Vec<f32> = (0..n).map(|i| (i % 3) as f32 / 10000.0).collect();
        let (m0, v0) = (m.clone(), v.clone());
        let h = (0.9f32, 0.999f32, 1e-7f32, 0.01f32);
        let out = super::keras_adam_step(&p, &g, &mut m, &mut v, h);
        for i in [0, 1, 5000, 1 << 14, n - 1] {
            let mi = m0[i] + (g[i] - m0[i]) * (1.0 - h.0);
            let vi = v0[i] + (g[i] * g[i] - v0[i]) * (1.0 - h.1);
            assert_eq!(m[i], mi);
            assert_eq!(v[i], vi);
            assert_eq!(out[i], p[i] - (mi * h.3) / (vi.sqrt() + h.2));
        }
        assert!(out.iter().zip(&p).filter(|(a, b)| a != b).count() > n / 2);
    }
}
