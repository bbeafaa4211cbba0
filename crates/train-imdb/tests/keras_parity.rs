//! Gradient parity with Keras: tests/fixtures/text_embedding/keras_adam_step.json
//! (tools/keras_imdb.py --fixture, TF 2.21 / Keras 3) holds one batch, fixed initial
//! weights, and Keras' loss and weights after one and two Adam steps.

use burn::tensor::{Device, Tensor};
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
use serde_json::Value;
use std::path::PathBuf;
use train_imdb::model::{bce_with_logits, Classifier, DeviceBatch, KerasAdam};

fn fixture() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/text_embedding/keras_adam_step.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(name: &str, got: Tensor<2>, want: &[f32], tol: f32) {
    let got = got.into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}]: {g} vs Keras {w}");
    }
}

fn check_params(m: &Classifier, want: &Value) {
    let tol = 1e-5;
    assert_close(
        "table",
        m.embedding.embeddings.val().inner(),
        &floats(&want["table"]),
        tol,
    );
    assert_close(
        "dense_kernel",
        m.dense_kernel.val().inner(),
        &floats(&want["dense_kernel"]),
        tol,
    );
    assert_close(
        "dense_bias",
        m.dense_bias.val().inner().unsqueeze_dim(0),
        &floats(&want["dense_bias"]),
        tol,
    );
    assert_close(
        "out_kernel",
        m.out_kernel.val().inner(),
        &floats(&want["out_kernel"]),
        tol,
    );
    assert_close(
        "out_bias",
        m.out_bias.val().inner().unsqueeze_dim(0),
        &floats(&want["out_bias"]),
        tol,
    );
}

#[test]
fn one_and_two_adam_steps_match_keras() {
    let f = fixture();
    let device = Device::flex().autodiff();
    let dim = f["dim"].as_u64().unwrap() as usize;
    let hidden = f["hidden"].as_u64().unwrap() as usize;
    let vocab = f["vocab"].as_str().unwrap().as_bytes().to_vec();
    let v = vocab.iter().filter(|&&b| b == b'\n').count();
    let config = TextEmbeddingConfig {
        vocab_size: v,
        oov_buckets: f["oov_buckets"].as_u64().unwrap() as usize,
        dim,
        split: SplitMode::KeepEmpty,
        remove_punctuation: true,
        vocab_file: "tokens.txt".into(),
        source_dtype: None,
    };
    let init = &f["initial"];
    let emb =
        TextEmbedding::from_parts(config, "tokens.txt", vocab, floats(&init["table"]), &device)
            .unwrap();
    let mut model = Classifier::from_values(
        emb,
        hidden,
        floats(&init["dense_kernel"]),
        floats(&init["dense_bias"]),
        floats(&init["out_kernel"]),
        floats(&init["out_bias"]),
        &device,
    );
    let sentences = test_support::hex_list(&f["sentences"]);
    // the tokenizer agrees with TF's lookup
    for (s, ids) in sentences.iter().zip(f["ids"].as_array().unwrap()) {
        let want: Vec<u32> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(model.embedding.tokenizer().ids(s), want);
    }
    let labels = floats(&f["labels"]);
    let tb = model.embedding.tokenize(&sentences);
    let batch = DeviceBatch::new(&tb, &labels, &device);
    let mut opt = KerasAdam::new(1e-3);
    for (step, loss_key, upd_key) in [(1, "loss", "updated"), (2, "loss_2", "updated_2")] {
        let logits = model.forward(&batch);
        if step == 1 {
            assert_close(
                "logits",
                logits.clone().inner(),
                &floats(&f["logits"]),
                1e-6,
            );
        }
        let loss = bce_with_logits(logits, batch.labels.clone());
        let grads = loss.backward();
        let lv = loss.into_scalar::<f32>();
        let want = f[loss_key].as_f64().unwrap() as f32;
        assert!(
            (lv - want).abs() < 1e-6,
            "step {step}: loss {lv} vs Keras {want}"
        );
        model = model.step(&mut opt, &grads, true);
        check_params(&model, &f[upd_key]);
    }
}
