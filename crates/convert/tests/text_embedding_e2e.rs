//! End to end: the TF exports in tests/fixtures/text_embedding (tools/make_text_embedding_fixture.py:
//! TF2 `export_v2.py` pattern with float64 and float32 tables, TF1 hub pattern) ->
//! `savedmodel::read` -> `kinds::text_embedding` -> folder -> `TextEmbedding::load` ->
//! outputs compared with TensorFlow's (expected.json) within 1e-6.

use burn::tensor::Device;
use convert::kinds::text_embedding;
use convert::{Converted, Source};
use models::text_embedding::{SplitMode, TextEmbedding};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/text_embedding")
}

fn source_of(dir: &Path) -> Source {
    let sm = savedmodel::read(dir).expect("read SavedModel");
    convert::from_savedmodel::source_from_savedmodel(&sm, &dir.display().to_string())
        .expect("source")
}

fn write_folder(c: &Converted, dir: &Path) {
    convert::write::write_model(dir, c, "fixture", &[]).expect("write model folder");
}

fn check(variant: &str, split: SplitMode) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let v = &expected[variant];
    let src = source_of(&fixtures().join(variant));
    assert!(text_embedding::recognise(&src), "{variant} not recognised");
    let c = text_embedding::convert(&src).unwrap();
    assert_eq!(c.config["vocab_size"], v["vocab_size"]);
    assert_eq!(c.config["oov_buckets"], v["oov_buckets"]);
    assert_eq!(c.config["dim"], v["dim"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    write_folder(&c, &dir);
    let model = TextEmbedding::load(&dir, &Device::flex()).unwrap();
    assert_eq!(model.config().split, split);
    assert!(model.config().remove_punctuation);
    let sentences: Vec<Vec<u8>> = expected["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let h = h.as_str().unwrap();
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    let out = model
        .embed(&sentences)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let dim = model.dim();
    for (r, row) in v["outputs"].as_array().unwrap().iter().enumerate() {
        for (k, want) in row.as_array().unwrap().iter().enumerate() {
            let got = out[r * dim + k] as f64;
            assert!(
                (got - want.as_f64().unwrap()).abs() < 1e-6,
                "{variant} sentence {r} dim {k}: {got} vs TF {want}"
            );
        }
    }
}

#[test]
fn tf2_float64_savedmodel_converts_and_matches_tensorflow() {
    check("tf2_f64_oov3", SplitMode::KeepEmpty);
}

#[test]
fn tf2_float32_savedmodel_converts_and_matches_tensorflow() {
    check("tf2_f32_oov1", SplitMode::KeepEmpty);
}

#[test]
fn tf1_savedmodel_converts_with_skip_empty_split() {
    check("tf1_f32_oov2", SplitMode::SkipEmpty);
}
