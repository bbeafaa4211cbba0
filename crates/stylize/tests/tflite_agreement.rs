//! Our float pipeline on Magenta's real TF Lite weights vs the TF Lite
//! interpreter (`tools/tflite_reference.py magenta` wrote the reference
//! values into tests/fixtures/stylization_tflite/). Needs ../shared/data;
//! skipped with a message when absent.

use burn::tensor::{Device, Tensor, TensorData};
use std::path::PathBuf;
use stylize::{load_tflite, open_image, to_vec, Half, Prepare};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> Option<PathBuf> {
    let p = root().join("../shared/data");
    if p.join("magenta-tflite").is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found (shared data absent)", p.display());
        None
    }
}

fn reference() -> serde_json::Value {
    let p = root().join("tests/fixtures/stylization_tflite/magenta_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// 384x384x3 in [0,1] -> 96x96x3 uint8 (4x4 mean, rounded), as the reference script does.
fn pool_u8(y: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; 96 * 96 * 3];
    for oy in 0..96 {
        for ox in 0..96 {
            for c in 0..3 {
                let mut s = 0.0f64;
                for dy in 0..4 {
                    for dx in 0..4 {
                        s += y[((oy * 4 + dy) * 384 + ox * 4 + dx) * 3 + c] as f64;
                    }
                }
                out[(oy * 96 + ox) * 3 + c] = (s / 16.0 * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

#[test]
fn magenta_tflite_matches_interpreter() {
    let Some(data) = shared() else { return };
    let device = Device::flex();
    let r = reference();
    let Half::Predictor(predictor) = load_tflite(
        &data.join("magenta-tflite/style_predict_quantized_256.tflite"),
        &device,
    )
    .unwrap() else {
        panic!("predictor expected")
    };
    let content = open_image(&data.join("images/tuebingen.jpg"))
        .unwrap()
        .prepare(true, 384, false);
    let csum: f64 = content.data.iter().map(|v| *v as f64).sum();
    let want = r["content_sum"].as_f64().unwrap();
    // Same decode (TF's default, INTEGER_FAST, which `jpeg-tf` reproduces exactly), crop and
    // resize as the reference: the interpreter saw our inputs (sums differ by float rounding).
    assert!(
        (csum - want).abs() / want < 1e-5,
        "content preprocessing differs: {csum} vs {want}"
    );
    let transfers: Vec<(String, stylize::Half)> = ["f16", "int8"]
        .iter()
        .map(|k| {
            let f = if *k == "f16" {
                "style_transfer_f16_384.tflite"
            } else {
                "style_transfer_quantized_384.tflite"
            };
            (
                k.to_string(),
                load_tflite(&data.join("magenta-tflite").join(f), &device).unwrap(),
            )
        })
        .collect();
    for style in r["styles"].as_array().unwrap() {
        let style = style.as_str().unwrap();
        let img = open_image(&data.join(format!("images/{style}.jpg")))
            .unwrap()
            .prepare(true, 256, false);
        let ssum: f64 = img.data.iter().map(|v| *v as f64).sum();
        let want = r[format!("style_sum_{style}")].as_f64().unwrap();
        assert!(
            (ssum - want).abs() / want < 1e-5,
            "{style}: style preprocessing differs: {ssum} vs {want}"
        );
        let ours = to_vec(predictor.predict_style(img.to_tensor(&device)));
        let theirs = floats(&r[format!("bottleneck_{style}")]);
        let cos = cosine(&ours, &theirs);
        println!("{style}: bottleneck cosine similarity {cos:.5}");
        // The interpreter runs the int8 predictor with int8 activations (57 quantized
        // layers); we run its dequantized weights in float32. Measured 0.99981-0.99993.
        assert!(cos > 0.9997, "{style}: bottleneck cosine {cos}");
        // Transfer stage alone, fed the interpreter's own bottleneck.
        let b = Tensor::<2>::from_data(TensorData::new(theirs.clone(), [1, 100]), &device);
        for (kind, t) in &transfers {
            let Half::Transfer(t) = t else { panic!() };
            let y = to_vec(t.transfer(content.to_tensor(&device), b.clone()));
            let ref_u8 = std::fs::read(root().join(format!(
                "tests/fixtures/stylization_tflite/out_{style}_{kind}.u8"
            )))
            .unwrap();
            let p = psnr(&pool_u8(&y), &ref_u8);
            println!("{style} {kind}: transfer PSNR {p:.2} dB");
            // Our float32 run of the dequantized weights vs the interpreter on the same inputs.
            // Our float32 run of the dequantized weights vs the interpreter on the same inputs
            // (TF's JPEG bytes exactly). Measured (flex, AVX2, 2026-12-02): f16 file
            // 77.8-80.5 dB (float graph: only the summation order differs, plus the reference's
            // 4x4 averaging and 8-bit rounding); int8 file 27.7-33.7 dB (the interpreter runs
            // hybrid int8 kernels that quantize activations on the fly). A wrong layout or op
            // gives < 15 dB.
            let min = if kind == "f16" { 75.0 } else { 25.0 };
            assert!(p > min, "{style} {kind}: PSNR {p} dB below {min}");
        }
    }
}
