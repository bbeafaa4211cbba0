//! The ImageNet label sets: a 1001-class model (TF Hub's, index 0 = background) and a
//! 1000-class one (Keras') both print the label of the class they score highest.

use burn::module::Param;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use models::inception_v3::{InceptionV3, InceptionV3Config};
use std::path::{Path, PathBuf};

/// A narrow Inception-v3 folder whose logits are a constant vector peaking at `winner`.
fn rigged(dir: &Path, classes: usize, winner: usize) -> PathBuf {
    let cfg = InceptionV3Config {
        num_classes: Some(classes),
        depth_multiplier: 0.05,
        min_depth: 4,
        ..InceptionV3Config::default()
    };
    let dev = Device::flex();
    let mut net: InceptionV3 = cfg.init(&dev).unwrap();
    let logits = net.logits.as_mut().unwrap();
    logits.weight = Param::from_tensor(logits.weight.val().zeros_like());
    let mut bias = vec![0.0f32; classes];
    bias[winner] = 20.0;
    logits.bias = Some(Param::from_tensor(Tensor::from_floats(
        bias.as_slice(),
        &dev,
    )));
    let model = dir.join(format!("model{classes}-{winner}"));
    std::fs::create_dir_all(&model).unwrap();
    net.save_into(&mut SafetensorsStore::from_file(
        model.join("model.safetensors"),
    ))
    .unwrap();
    let config = model_folder::FolderConfig::new("inception_v3", &cfg, "test").unwrap();
    std::fs::write(model.join("config.json"), config.to_bytes()).unwrap();
    model
}

fn top_label(model: &Path) -> (u64, String) {
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/stylize/great_wave.jpg");
    let (out, _) = test_support::program!("classify")
        .arg("--model")
        .arg(model)
        .args(["--json", "--top", "1"])
        .arg(img)
        .run_ok();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let top = &doc[0]["top"][0];
    (
        top["index"].as_u64().unwrap(),
        top["label"].as_str().unwrap().to_string(),
    )
}

#[test]
fn imagenet_labels_follow_the_class_count() {
    let tmp = tempfile::tempdir().unwrap();
    // 1001 classes: index 0 is "background", 1 "tench", 2 "goldfish".
    assert_eq!(
        top_label(&rigged(tmp.path(), 1001, 2)),
        (2, "goldfish".into())
    );
    assert_eq!(
        top_label(&rigged(tmp.path(), 1001, 1000)),
        (1000, "toilet tissue".into())
    );
    // 1000 classes: no background, so index 1 is "goldfish" and 999 "toilet tissue".
    assert_eq!(
        top_label(&rigged(tmp.path(), 1000, 1)),
        (1, "goldfish".into())
    );
    assert_eq!(
        top_label(&rigged(tmp.path(), 1000, 999)),
        (999, "toilet tissue".into())
    );
}
