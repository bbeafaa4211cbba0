//! The `embed` binary on a model folder built from the TF2 fixture export's table and
//! vocabulary (tests/fixtures/text_embedding/tf2_f32_oov1): `.npy` and JSON-lines
//! output compared with TensorFlow's outputs for the same sentences (raw bytes, one per line).

use burn::tensor::Device;
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};

use test_support as common;

/// The fixture sentences that fit on a line, as embed's input, and their rows in expected.json.
fn input_lines(e: &Value) -> (Vec<u8>, Vec<usize>) {
    let mut input = Vec::new();
    let mut rows = Vec::new();
    for (i, s) in test_support::hex_list(&e["sentences"])
        .into_iter()
        .enumerate()
    {
        if s.contains(&b'\n') {
            continue;
        }
        input.extend_from_slice(&s);
        input.push(b'\n');
        rows.push(i);
    }
    (input, rows)
}

/// Runs embed on `input` with `--model model`, the cache in `cache`; (npy values, stderr).
fn embed(model: &std::ffi::OsStr, input: &Path, out: &Path, cache: &Path) -> (Vec<f32>, String) {
    let stderr = test_support::program!("embed")
        .arg("--model")
        .arg(model)
        .arg("--input")
        .arg(input)
        .arg("-o")
        .arg(out)
        .cache(cache)
        .online()
        .run_ok()
        .1;
    (model_folder::npy::read(out).unwrap().data, stderr)
}

#[test]
fn a_savedmodel_or_handle_is_converted_once_and_embeds_like_tensorflow() {
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let want = e["tf2_f32_oov1"]["outputs"].as_array().unwrap();
    let (input, rows) = input_lines(&e);
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.txt");
    std::fs::write(&inp, &input).unwrap();
    let cache = tmp.path().join("cache");
    let sm = fixtures().join("tf2_f32_oov1");
    let (_server, url) = common::serve_folder(&sm, "/m/swivel.tar.gz");
    let forms: [(&std::ffi::OsStr, &str); 3] = [
        (sm.as_os_str(), "converted once into"),
        (sm.as_os_str(), "using the conversion cached at"),
        (url.as_ref(), "using the conversion cached at"),
    ];
    for (i, (model, said)) in forms.into_iter().enumerate() {
        let (got, stderr) = embed(model, &inp, &tmp.path().join(format!("{i}.npy")), &cache);
        assert!(stderr.contains(said), "run {i}: {stderr}");
        for (k, &r) in rows.iter().enumerate() {
            for d in 0..4 {
                let w = want[r][d].as_f64().unwrap();
                let g = got[k * 4 + d] as f64;
                assert!(
                    (g - w).abs() < 1e-6,
                    "run {i} line {k} dim {d}: {g} vs TF {w}"
                );
            }
        }
    }
    // A SavedModel of another kind is refused, naming what it is.
    let inception = fixtures().join("../inception_v3/small/saved_model");
    let o = test_support::program!("embed")
        .arg("--model")
        .arg(&inception)
        .arg("--input")
        .arg(&inp)
        .env("TFHUB_CACHE_DIR", &cache)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("holds a `inception_v3` model, expected `text_embedding`"),
        "{stderr}"
    );
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/text_embedding")
}

#[test]
fn embeds_lines_like_tensorflow() {
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let v = &e["tf2_f32_oov1"];
    let config = TextEmbeddingConfig {
        vocab_size: v["vocab_size"].as_u64().unwrap() as usize,
        oov_buckets: 1,
        dim: v["dim"].as_u64().unwrap() as usize,
        split: SplitMode::KeepEmpty,
        remove_punctuation: true,
        vocab_file: "tokens.txt".into(),
        source_dtype: None,
    };
    let vocab = std::fs::read(fixtures().join("tf2_f32_oov1/assets/tokens.txt")).unwrap();
    let table: Vec<f32> = v["table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let model =
        TextEmbedding::from_parts(config, "tokens.txt", vocab, table, &Device::flex()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("swivel");
    model.save(&dir, "test").unwrap();

    let (input, rows) = input_lines(&e);
    let inp = tmp.path().join("in.txt");
    std::fs::write(&inp, &input).unwrap();
    let out = tmp.path().join("out.npy");
    let st = test_support::program!("embed")
        .args([
            "--model",
            dir.to_str().unwrap(),
            "--input",
            inp.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let arr = model_folder::npy::read(&out).unwrap();
    assert_eq!(arr.shape, vec![rows.len(), 4]);
    let want = v["outputs"].as_array().unwrap();
    for (k, &r) in rows.iter().enumerate() {
        for d in 0..4 {
            let w = want[r][d].as_f64().unwrap();
            assert!(
                (arr.data[k * 4 + d] as f64 - w).abs() < 1e-6,
                "line {k} dim {d}: {} vs TF {w}",
                arr.data[k * 4 + d]
            );
        }
    }

    // JSON lines on stdout
    let o = test_support::program!("embed")
        .args([
            "--model",
            dir.to_str().unwrap(),
            "--input",
            inp.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), rows.len());
    let first: Vec<f64> = serde_json::from_str(lines[0]).unwrap();
    assert!((first[0] - want[rows[0]][0].as_f64().unwrap()).abs() < 1e-6);
}

#[test]
fn missing_model_is_a_clean_error() {
    let o = test_support::program!("embed")
        .args(["--model", "/nonexistent/model"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/model"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every text_graph fixture (tools/make_text_graph_fixtures.py) through `embed --model
/// <SavedModel>`: the hub patterns on the hand-written embedding (converted and checked),
/// the deviations and the DAN encoder through their graphs (said on stderr); each within
/// 1e-6 of TensorFlow's outputs (of the value's scale above 1; 1e-5 for dense heads), long
/// rows included.
#[test]
fn any_text_savedmodel_embeds_like_tensorflow() {
    let root = fixtures().join("../text_graph");
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    let (input, rows) = input_lines(&e);
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.txt");
    std::fs::write(&inp, &input).unwrap();
    let cache = tmp.path().join("cache");
    for (variant, v) in e.as_object().unwrap() {
        if variant == "sentences" {
            continue;
        }
        let sm = root.join(variant);
        let out = tmp.path().join(format!("{variant}.npy"));
        let (got, stderr) = embed(sm.as_os_str(), &inp, &out, &cache);
        let hand = v["hand_written_equivalent"].as_bool().unwrap();
        assert_eq!(
            stderr.contains("converted once into"),
            hand,
            "{variant}: {stderr}"
        );
        if !hand {
            assert!(
                stderr.contains("running its graph") || stderr.is_empty(),
                "{variant}: {stderr}"
            );
        }
        let dim = v["out_dim"].as_u64().unwrap() as usize;
        assert_eq!(got.len(), rows.len() * dim, "{variant}");
        let tol = if v["layers"].as_array().is_some_and(|l| !l.is_empty()) {
            1e-5
        } else {
            1e-6
        };
        let want = v["outputs"].as_array().unwrap();
        for (k, &r) in rows.iter().enumerate() {
            for d in 0..dim {
                let w = want[r][d].as_f64().unwrap();
                let g = got[k * dim + d] as f64;
                assert!(
                    (g - w).abs() <= tol * w.abs().max(1.0),
                    "{variant} line {k} dim {d}: {g} vs TF {w}"
                );
            }
        }
    }
    // An image model is not a text model: named as such.
    let mobilenet = fixtures().join("../tfgraph/mobilenet_v2_small/saved_model");
    if mobilenet.is_dir() {
        let o = test_support::program!("embed")
            .arg("--model")
            .arg(&mobilenet)
            .arg("--input")
            .arg(&inp)
            .env("TFHUB_CACHE_DIR", &cache)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(
            stderr.contains("does not take one batch of strings"),
            "{stderr}"
        );
    }
}
