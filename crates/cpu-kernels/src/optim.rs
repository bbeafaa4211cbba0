//! Optimiser updates over a parameter's values on the host (the fine-tuning trainer's Keras
//! Adam on flex): one parallel pass instead of a dozen tensor operations.

use rayon::prelude::*;

/// One Keras Adam step in place: `m += (g - m)(1 - b1)`, `v += (g² - v)(1 - b2)`,
/// `p -= (m alpha) / (√v + eps)`, each operation rounded to f32 in this order as
/// TensorFlow's element-wise kernels (and Burn's tensor ops) compute them; chunks of
/// the parameter in parallel.
pub fn keras_adam_step(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    (b1, b2, eps, alpha): (f32, f32, f32, f32),
) {
    assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len());
    const CHUNK: usize = 1 << 14;
    let (c1, c2) = (1.0 - b1, 1.0 - b2);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                *m += (g - *m) * c1;
                *v += (g * g - *v) * c2;
                *p -= (*m * alpha) / (v.sqrt() + eps);
            }
        });
}
