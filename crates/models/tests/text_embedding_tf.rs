//! TensorFlow parity of the text embedding: ids and outputs for every sentence of
//! tests/fixtures/text_embedding/expected.json (made by tools/make_text_embedding_fixture.py
//! from TF 2.21 exports of the TF2 and TF1 hub patterns). Table values come from the
//! fixture JSON, the vocabulary from the export's `assets/tokens.txt`.

use burn::tensor::Device;
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
use serde_json::Value;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/text_embedding")
}

fn expected() -> Value {
    let text =
        std::fs::read_to_string(fixtures().join("expected.json")).expect("fixture expected.json");
    serde_json::from_str(&text).expect("valid json")
}

fn sentences(e: &Value) -> Vec<Vec<u8>> {
    test_support::hex_list(&e["sentences"])
}

fn build(variant: &str, device: &Device) -> (TextEmbedding, Value) {
    let e = expected();
    let v = e[variant].clone();
    let config = TextEmbeddingConfig {
        vocab_size: v["vocab_size"].as_u64().unwrap() as usize,
        oov_buckets: v["oov_buckets"].as_u64().unwrap() as usize,
        dim: v["dim"].as_u64().unwrap() as usize,
        split: if v["skip_empty"].as_bool().unwrap() {
            SplitMode::SkipEmpty
        } else {
            SplitMode::KeepEmpty
        },
        remove_punctuation: true,
        vocab_file: "tokens.txt".into(),
        source_dtype: Some(v["dtype"].as_str().unwrap().into()),
    };
    let vocab = std::fs::read(fixtures().join(variant).join("assets/tokens.txt")).unwrap();
    let table: Vec<f32> = v["table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (
        TextEmbedding::from_parts(config, "tokens.txt", vocab, table, device).unwrap(),
        v,
    )
}

fn check_variant(variant: &str, device: &Device) {
    let e = expected();
    let sents = sentences(&e);
    let (model, v) = build(variant, device);
    // token ids, sentence by sentence
    for (s, want) in sents.iter().zip(v["ids"].as_array().unwrap()) {
        let want: Vec<u32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(
            model.tokenizer().ids(s),
            want,
            "{variant}: ids of {:?}",
            String::from_utf8_lossy(s)
        );
    }
    // outputs
    let out = model.embed(&sents);
    let dim = model.dim();
    assert_eq!(out.dims(), [sents.len(), dim]);
    let got = out.into_data().try_into_vec::<f32>().unwrap();
    let mut worst = 0.0f64;
    for (r, row) in v["outputs"].as_array().unwrap().iter().enumerate() {
        for (c, want) in row.as_array().unwrap().iter().enumerate() {
            let d = (got[r * dim + c] as f64 - want.as_f64().unwrap()).abs();
            worst = worst.max(d);
            assert!(
                d < 1e-6,
                "{variant}: sentence {r} ({:?}) dim {c}: {} vs {}",
                String::from_utf8_lossy(&sents[r]),
                got[r * dim + c],
                want
            );
        }
    }
    println!("{variant}: max |diff| vs TensorFlow = {worst:e}");
    // empty batch
    let empty = model.embed::<&[u8]>(&[]);
    let shape: Vec<usize> = v["empty_batch_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(empty.dims().to_vec(), shape);
}

#[test]
fn tf2_float64_export_with_3_buckets_matches_tensorflow() {
    check_variant("tf2_f64_oov3", &Device::flex());
}

#[test]
fn tf2_float32_export_with_1_bucket_matches_tensorflow() {
    check_variant("tf2_f32_oov1", &Device::flex());
}

#[test]
fn tf1_export_drops_empty_tokens_like_tensorflow() {
    check_variant("tf1_f32_oov2", &Device::flex());
}

#[test]
#[allow(deprecated)]
fn ndarray_backend_matches_tensorflow() {
    check_variant("tf2_f64_oov3", &Device::ndarray());
}

/// Gradients flow into the table: d(sum of outputs)/dE[row] = Σ over tokens of 1/√n.
#[test]
fn gradients_flow_into_the_table_and_freezing_stops_them() {
    use burn::module::Module;
    let device = Device::flex().autodiff();
    let (model, _) = build("tf2_f32_oov1", &device);
    let out = model.embed(&[&b"cat cat is"[..], b"cat"]);
    let grads = out.sum().backward();
    let g = model.embeddings.grad(&grads).expect("table has a gradient");
    let g = g.into_data().try_into_vec::<f32>().unwrap();
    let dim = model.dim();
    let w3 = 1.0 / 3f32.sqrt();
    assert!((g[0] - (2.0 * w3 + 1.0)).abs() < 1e-6, "cat row: {}", g[0]); // "cat" = id 0
    assert!((g[dim] - w3).abs() < 1e-6, "is row: {}", g[dim]); // "is" = id 1
    assert_eq!(g[2 * dim], 0.0);

    let frozen = model.no_grad();
    let out = frozen.embed(&[&b"cat"[..]]);
    assert!(!out.is_require_grad());
}
