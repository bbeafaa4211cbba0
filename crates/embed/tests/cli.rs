//! The `embed` binary on a model folder built from the TF2 fixture export's table and
//! vocabulary (tests/fixtures/text_embedding/tf2_f32_oov1): `.npy` and JSON-lines
//! output compared with TensorFlow's outputs for the same sentences (raw bytes, one per line).

use burn::tensor::Device;
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

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

    // sentences without '\n' (a line cannot hold one)
    let mut input = Vec::new();
    let mut rows = Vec::new();
    for (i, h) in e["sentences"].as_array().unwrap().iter().enumerate() {
        let h = h.as_str().unwrap();
        let s: Vec<u8> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect();
        if s.contains(&b'\n') {
            continue;
        }
        input.extend_from_slice(&s);
        input.push(b'\n');
        rows.push(i);
    }
    let inp = tmp.path().join("in.txt");
    std::fs::write(&inp, &input).unwrap();
    let out = tmp.path().join("out.npy");
    let st = Command::new(env!("CARGO_BIN_EXE_embed"))
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
    let o = Command::new(env!("CARGO_BIN_EXE_embed"))
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
    let o = Command::new(env!("CARGO_BIN_EXE_embed"))
        .args(["--model", "/nonexistent/model"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/model"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
