//! README's first command (`stylize` with no arguments: the bundled Magenta TF Lite networks,
//! Grace Hopper in the style of the Great Wave, the CPU engine) against `tf.lite.Interpreter`
//! at full resolution, as `tools/tflite_reference.py demo` recorded it
//! (`tests/fixtures/stylization_tflite/demo.*`). Needs nothing beside the repository.

use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use stylize::{load_predictor, load_transfer, open_image, Predictor, Prepare, Transfer};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn reference() -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes =
        std::fs::read(repo().join("tests/fixtures/stylization_tflite/demo.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name.to_string(), (v.shape().to_vec(), data))
        })
        .collect()
}

/// Every `step`-th row and column of an `[h, w, 3]` image.
fn strided(w: usize, h: usize, data: &[f32], step: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for y in (0..h).step_by(step) {
        for x in (0..w).step_by(step) {
            out.extend_from_slice(&data[(y * w + x) * 3..(y * w + x) * 3 + 3]);
        }
    }
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// PSNR in dB of images in `[0, 1]`.
fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn the_bundled_demo_matches_the_tflite_interpreter_at_full_resolution() {
    let r = reference();
    let ex = repo().join("examples/stylize");
    let device = models::Backend::Flex.device();
    let predictor = Predictor::new(
        load_predictor(&ex.join("style_predict_quantized_256.tflite"), &device).unwrap(),
        &device,
        true,
    );
    let transfer = Transfer::new(
        load_transfer(&ex.join("style_transfer_f16_384.tflite"), &device).unwrap(),
        &device,
        true,
    );
    let style_file = ex.join("great_wave.jpg");
    let content = open_image(&ex.join("grace_hopper.jpg"))
        .unwrap()
        .prepare(true, 384, false);
    let style = open_image(&style_file).unwrap().prepare(true, 256, true);

    // Preprocessing, element by element (sampled): the same crop, resize and blur; the
    // JPEG decoders differ by a few levels (see classify's tf_pixels test).
    let c = strided(content.width, content.height, &content.data, 6);
    let s = strided(style.width, style.height, &style.data, 6);
    let (dc, ds) = (
        max_abs(&c, &r["content_sub"].1),
        max_abs(&s, &r["style_sub"].1),
    );
    eprintln!("preprocessing: content max diff {dc:.2e}, style {ds:.2e}");

    // The predictor: our float run of the dequantized int8 weights vs the interpreter's
    // integer kernels.
    let ours = predictor.predict(&style, &style_file).unwrap();
    let theirs = &r["bottleneck"].1;
    let (e, cos) = (rel_l2(&ours, theirs), cosine(&ours, theirs));
    eprintln!("bottleneck: relative L2 error {e:.2e}, cosine {cos:.6}");

    // The transfer network alone, fed the interpreter's bottleneck, then the whole demo.
    let sub = |(h, w, y): (usize, usize, Vec<f32>)| strided(w, h, &y, 4);
    let alone = sub(transfer.transfer(&content, theirs));
    let whole = sub(transfer.transfer(&content, &ours));
    let want = &r["stylized_sub"].1;
    let (p_alone, p_whole) = (psnr(&alone, want), psnr(&whole, want));
    eprintln!("stylized: transfer alone {p_alone:.2} dB, whole demo {p_whole:.2} dB");
    // Measured (flex, AVX2): preprocessing 1.2e-7 / 2.4e-7 (TF's JPEG bytes exactly, then the
    // same crop, resize and blur); bottleneck 1.42e-2 relative L2, cosine 0.99991 (the
    // interpreter runs the int8 predictor with integer kernels, we run its dequantized weights
    // in float32); transfer alone 105.7 dB (a float network: only the summation order
    // differs), the whole demo 44.6 dB (the bottleneck difference, carried through).
    assert!(dc < 1e-6 && ds < 1e-6, "preprocessing {dc} / {ds}");
    assert!(e < 2e-2 && cos > 0.9998, "bottleneck {e} / {cos}");
    assert!(p_alone > 90.0, "transfer alone: {p_alone} dB");
    assert!(p_whole > 42.0, "whole demo: {p_whole} dB");
}
