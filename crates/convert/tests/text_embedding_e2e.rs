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
    let sentences = test_support::hex_list(&expected["sentences"]);
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

/// tests/fixtures/text_graph (tools/make_text_graph_fixtures.py): the NNLM, Swivel and
/// Wiki-words patterns (float32 and float64 tables, 1 to 5 OOV buckets, with and without
/// `\pP` removal, TF2 and TF1 splits) are claimed and give TensorFlow's outputs within 1e-6
/// (of the value's scale above 1: float32 output) on all 58 sentences, rows of 1,045 to 6,292 tokens included; every deviation (another
/// regex, mean and sum combiners, lowercasing, dense layers after the bag, a DAN encoder)
/// is refused with the reason, so it runs through the graph executor instead.
#[test]
fn hand_written_path_claims_exactly_the_equivalent_graphs() {
    let root = fixtures().join("../text_graph");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    let sentences = test_support::hex_list(&expected["sentences"]);
    let mut claimed = 0;
    for (variant, v) in expected.as_object().unwrap() {
        if variant == "sentences" {
            continue;
        }
        let src = source_of(&root.join(variant));
        let equivalent = v["hand_written_equivalent"].as_bool().unwrap();
        assert_eq!(
            text_embedding::recognise(&src),
            equivalent,
            "{variant}: {:?}",
            text_embedding::graph_deviation(&src)
        );
        if !equivalent {
            let why = text_embedding::graph_deviation(&src).expect("a reason");
            let err = text_embedding::convert(&src).unwrap_err().to_string();
            assert!(err.contains(&why), "{variant}: {err}");
            continue;
        }
        claimed += 1;
        let c = text_embedding::convert(&src).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("model");
        write_folder(&c, &dir);
        let model = TextEmbedding::load(&dir, &Device::flex()).unwrap();
        assert_eq!(model.config().remove_punctuation, !v["pattern"].is_null());
        let out = model
            .embed(&sentences)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let dim = model.dim();
        for (r, row) in v["outputs"].as_array().unwrap().iter().enumerate() {
            for (k, want) in row.as_array().unwrap().iter().enumerate() {
                let got = out[r * dim + k] as f64;
                let want = want.as_f64().unwrap();
                // Float32 tables and outputs: on a float64 model, 1e-6 of the value's scale
                // (a bag of 4,000 equal tokens reaches 30, where one float32 step is 2e-6).
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{variant} sentence {r} ({} bytes) dim {k}: {got} vs TF {want}",
                    sentences[r].len()
                );
            }
        }
    }
    assert_eq!(claimed, 5);
}
