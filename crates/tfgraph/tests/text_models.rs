//! Text-embedding SavedModels through the graph executor, against TensorFlow 2.21:
//! tests/fixtures/text_graph (tools/make_text_graph_fixtures.py): the NNLM, Swivel and
//! Wiki-words patterns of TF Hub's `export_v2.py` (float32 and float64 tables, 1 to 5 OOV
//! buckets), a TF1-split bag, deviations (another regex, mean and sum combiners,
//! lowercasing, dense layers after the bag) and a DAN-style encoder with the TF1
//! `StringSplit`. 58 sentences: every edge case of the hand-written tokenizer's fixture plus
//! rows of 1,045 to 6,292 tokens. Every bag within 1e-6 of TensorFlow's (they match bit for
//! bit), dense layers after a bag within 1e-5 of their scale.

use burn::tensor::Device;
use serde_json::Value as Json;
use std::path::PathBuf;
use tfgraph::{HostData, HostTensor, Model};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/text_graph")
}

fn expected() -> Json {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn sentences(e: &Json) -> Vec<Vec<u8>> {
    test_support::hex_list(&e["sentences"])
}

fn strings(v: Vec<Vec<u8>>) -> HostTensor {
    HostTensor {
        dtype: savedmodel::DType::String,
        shape: vec![v.len()],
        data: HostData::Str(v),
    }
}

const VARIANTS: &[&str] = &[
    "nnlm_f32_oov1_d50",
    "nnlm_norm_f64_oov3_d128",
    "swivel_f32_oov1_d20",
    "swivel_v1split_f32_oov1_d20",
    "wiki_f64_oov5_d16",
    "dev_regex_digits",
    "dev_mean",
    "dev_sum",
    "dev_lower",
    "dev_dense",
    "dan_v1split",
];

/// Runs `variant` on every sentence and on an empty batch; returns the worst difference.
fn check(variant: &str, device: &Device) -> f64 {
    let e = expected();
    let v = &e[variant];
    let sents = sentences(&e);
    let model = Model::open(&fixtures().join(variant), device)
        .unwrap_or_else(|err| panic!("{variant}: {err}"));
    let out = model.run_host(vec![strings(sents.clone())]).unwrap();
    let out = &out[0];
    let want_dtype = v["output_dtype"].as_str().unwrap();
    assert_eq!(out.dtype.name(), want_dtype, "{variant}: output dtype");
    let dim = v["out_dim"].as_u64().unwrap() as usize;
    assert_eq!(out.shape, vec![sents.len(), dim], "{variant}: output shape");
    let got = out.to_f64().unwrap();
    // The bags within 1e-6 (they come out bit for bit); dense layers after them within 1e-5
    // of the output's scale: their products round differently from TF's GEMM, and a bag of
    // 4,000 equal tokens feeds them values near 60 (4e-6 relative measured).
    let layers = v["layers"].as_array().map_or(0, |l| l.len());
    let tol = if layers > 0 { 1e-5 } else { 1e-6 };
    let mut worst = 0f64;
    for (r, row) in v["outputs"].as_array().unwrap().iter().enumerate() {
        for (c, w) in row.as_array().unwrap().iter().enumerate() {
            let w = w.as_f64().unwrap();
            let d = (got[r * dim + c] - w).abs();
            worst = worst.max(d);
            assert!(
                d <= tol * w.abs().max(1.0),
                "{variant}: sentence {r} ({} bytes) dim {c}: {} vs TF {w}",
                sents[r].len(),
                got[r * dim + c]
            );
        }
    }
    let empty = model.run_host(vec![strings(Vec::new())]).unwrap();
    let shape: Vec<usize> = v["empty_batch_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(empty[0].shape, shape, "{variant}: empty batch");
    worst
}

#[test]
fn text_models_match_tensorflow_on_flex() {
    for variant in VARIANTS {
        let worst = check(variant, &Device::flex());
        println!("{variant}: max |diff| vs TensorFlow = {worst:e}");
    }
}

#[test]
#[allow(deprecated)] // burn-ndarray: still a supported device of the executor
fn text_models_match_tensorflow_on_ndarray() {
    for variant in ["swivel_f32_oov1_d20", "wiki_f64_oov5_d16", "dan_v1split"] {
        check(variant, &Device::ndarray());
    }
}

/// The long rows are where summation order shows (the fixture script reports TF's float32
/// sums 1e-5 to 1.5e-2 away from float64 ones): the plain-sum bag of the longest row is
/// TensorFlow's, bit for bit.
#[test]
fn long_rows_need_tensorflows_summation_order() {
    let e = expected();
    let sents = sentences(&e);
    let long = sents.iter().filter(|s| s.len() > 5000).count();
    assert!(long >= 3, "the fixture has {long} long rows");
    let v = &e["dev_sum"];
    let dim = v["out_dim"].as_u64().unwrap() as usize;
    let model = Model::open(&fixtures().join("dev_sum"), &Device::flex()).unwrap();
    let out = model.run_host(vec![strings(sents.clone())]).unwrap();
    let got = out[0].to_f64().unwrap();
    let rows = v["outputs"].as_array().unwrap();
    let (r, _) = sents
        .iter()
        .enumerate()
        .max_by_key(|(_, s)| s.len())
        .unwrap();
    let tf: Vec<f64> = rows[r]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(
        &got[r * dim..(r + 1) * dim],
        tf.as_slice(),
        "longest row, bit for bit"
    );
}
