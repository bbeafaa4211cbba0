//! Converted folders (`style_predictor` / `style_transfer` kinds: config.json +
//! model.safetensors, as `convert` writes them) load to the same networks as
//! the in-memory conversion of the `.tflite` files.

use burn::tensor::{Device, Tensor};
use std::path::{Path, PathBuf};
use stylize::{load_half, load_tflite, to_vec, Half};

fn data() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/magenta-tflite");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found (shared data absent)", p.display());
        None
    }
}

fn write_folder(src: &Path, dir: &Path) {
    let c = convert::kinds::magenta_tflite::convert_tflite(src, "test").unwrap();
    convert::write::write_model(dir, &c, "test", &[]).unwrap();
}

#[test]
fn converted_folders_load_like_tflite_files() {
    let Some(d) = data() else { return };
    let device = Device::flex();
    let tmp = tempfile::tempdir().unwrap();
    let pred = d.join("style_predict_quantized_256.tflite");
    let tran = d.join("style_transfer_f16_384.tflite");
    write_folder(&pred, &tmp.path().join("p"));
    write_folder(&tran, &tmp.path().join("t"));
    let style = Tensor::<4>::random(
        [1, 64, 64, 3],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let content = Tensor::<4>::random(
        [1, 32, 40, 3],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let (Half::Predictor(p1), Half::Predictor(p2)) = (
        load_tflite(&pred, &device).unwrap(),
        load_half(&tmp.path().join("p"), &device).unwrap(),
    ) else {
        panic!("predictors expected")
    };
    let b1 = p1.predict_style(style.clone());
    let b2 = p2.predict_style(style);
    assert_eq!(to_vec(b1.clone()), to_vec(b2));
    let (Half::Transfer(t1), Half::Transfer(t2)) = (
        load_tflite(&tran, &device).unwrap(),
        load_half(&tmp.path().join("t"), &device).unwrap(),
    ) else {
        panic!("transfers expected")
    };
    let y1 = to_vec(t1.transfer(content.clone(), b1.clone()));
    assert_eq!(y1, to_vec(t2.transfer(content, b1)));
    assert_eq!(y1.len(), 32 * 40 * 3);
    // The wrong half is refused with the folder named.
    let s = models::stylization::Stylization::load_parts(
        tmp.path().join("t"),
        tmp.path().join("p"),
        &device,
    );
    let e = s.err().expect("wrong kinds must fail").to_string();
    assert!(
        e.contains("style_transfer") || e.contains("style_predictor"),
        "{e}"
    );
}
