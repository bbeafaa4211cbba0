//! `classify` end to end against TensorFlow: decoding (a JPEG, an RGBA PNG), central crop and
//! resize (`tf.io.decode_image` -> `convert_image_dtype` -> `tf.image.central_crop` ->
//! `tf.image.resize(bilinear)`), and the logits of the small Inception-v3 on those pixels, as
//! `tools/make_classify_fixture.py` recorded them (`tests/fixtures/classify`).

use models::imageops::{decode_rgb8, Image};
use safetensors::SafeTensors;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> (serde_json::Value, BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let dir = repo().join("tests/fixtures/classify");
    let meta = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::U8 => view.data().iter().map(|&b| b as f32).collect(),
            other => panic!("{name}: {other:?}"),
        };
        out.insert(name.to_string(), (view.shape().to_vec(), data));
    }
    (meta, out)
}

/// Every `step`-th row and column of an `[h, w, 3]` image.
fn strided(h: usize, w: usize, data: &[f32], step: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for y in (0..h).step_by(step) {
        for x in (0..w).step_by(step) {
            out.extend_from_slice(&data[(y * w + x) * 3..(y * w + x) * 3 + 3]);
        }
    }
    out
}

/// PNG (the `image` crate) and JPEG (`jpeg-tf`: libjpeg-turbo's fast integer IDCT and fancy
/// upsampling, TF's defaults) decode to TF's bytes exactly.
#[test]
fn decoding_is_bit_exact() {
    let (meta, t) = fixture();
    for (name, img) in meta["images"].as_object().unwrap() {
        let path = repo().join(img["file"].as_str().unwrap());
        let rgb = decode_rgb8(&path).unwrap();
        let (w, h) = rgb.dimensions();
        let shape: Vec<usize> = serde_json::from_value(img["shape"].clone()).unwrap();
        assert_eq!(vec![h as usize, w as usize, 3], shape, "{name}");
        let (_, want) = &t[&format!("{name}/decoded_sub")];
        let got = strided(
            h as usize,
            w as usize,
            &rgb.as_raw().iter().map(|&b| b as f32).collect::<Vec<_>>(),
            5,
        );
        assert_eq!(&got, want, "{name}: sampled bytes");
        let ours = hex::encode(Sha256::digest(rgb.as_raw()));
        assert_eq!(
            ours,
            img["sha256"].as_str().unwrap(),
            "{name}: decoded bytes"
        );
    }
}

/// `decode_rgb8` on every file of `tests/fixtures/jpeg` (`tools/make_jpeg_fixture.py`): TF's
/// bytes exactly where `jpeg-tf` decodes the file; the progressive one cut short goes to the `image`
/// crate (right size; its bytes differ from TF's by a few levels).
#[test]
fn every_jpeg_fixture_decodes_as_tensorflow() {
    let p = repo().join("tests/fixtures/jpeg/expected.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    let mut exact = 0;
    for (name, e) in v["files"].as_object().unwrap() {
        let rgb = decode_rgb8(&repo().join(e["file"].as_str().unwrap())).unwrap();
        let shape: Vec<u32> = serde_json::from_value(e["shape"].clone()).unwrap();
        assert_eq!(vec![rgb.height(), rgb.width(), 3], shape, "{name}");
        if e["exact"].as_bool().unwrap() {
            let ours = hex::encode(Sha256::digest(rgb.as_raw()));
            assert_eq!(ours, e["sha256"].as_str().unwrap(), "{name}");
            exact += 1;
        }
    }
    assert!(exact >= 32);
}

#[test]
fn crop_and_resize_match_tensorflow() {
    let (meta, t) = fixture();
    for (case, c) in meta["cases"].as_object().unwrap() {
        let file = &meta["images"][c["image"].as_str().unwrap()]["file"];
        let size = c["size"].as_u64().unwrap() as usize;
        let img = Image::open(&repo().join(file.as_str().unwrap()))
            .unwrap()
            .central_crop(c["central_crop"].as_f64().unwrap())
            .resize_bilinear(size, size);
        let got = strided(size, size, &img.data, 6);
        let (_, want) = &t[&format!("{case}/pixels_sub")];
        assert_eq!(got.len(), want.len(), "{case}");
        let max = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Decoding is exact, so crop and resize are too (within float rounding).
        assert!(max <= 1e-6, "{case}: pixels differ from TF's by {max}");
    }
}

/// The small Inception-v3 converted from its committed SavedModel.
fn small_model(dir: &Path) -> PathBuf {
    let sm =
        savedmodel::read(&repo().join("tests/fixtures/inception_v3/small/saved_model")).unwrap();
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, "fixture").unwrap();
    let conv = convert::kinds::inception_v3::convert(&src).unwrap();
    let out = dir.join("model");
    convert::write::write_model(&out, &conv, "fixture", &[]).unwrap();
    out
}

#[test]
fn classify_gives_tensorflows_logits_for_each_file_crop_and_size() {
    let (meta, t) = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let model = small_model(tmp.path());
    for (case, c) in meta["cases"].as_object().unwrap() {
        let file = repo().join(
            meta["images"][c["image"].as_str().unwrap()]["file"]
                .as_str()
                .unwrap(),
        );
        let npy = tmp.path().join(format!("{case}.npy"));
        test_support::program!("classify")
            .arg("--model")
            .arg(&model)
            .args(["--central-crop", &c["central_crop"].to_string()])
            .args(["--size", &c["size"].to_string()])
            .arg("--features")
            .arg(&npy)
            .arg(&file)
            .run_ok();
        let got = model_folder::npy::read(&npy).unwrap();
        let (shape, want) = &t[&format!("{case}/logits")];
        assert_eq!(got.shape, *shape, "{case}");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = got
            .data
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / scale)
            .fold(0.0f32, f32::max);
        assert!(
            err < 1e-4,
            "{case}: logits differ from TF's by {err:.2e} (relative)"
        );
    }
    // The cases differ from each other by far more than the tolerance, so a wrong crop,
    // size or decoding would show.
    let a = &t["jpeg_full_299/logits"].1;
    let b = &t["jpeg_crop_299/logits"].1;
    let gap = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        gap / scale > 1e-3,
        "crop changes the logits by only {:.2e}",
        gap / scale
    );
}
