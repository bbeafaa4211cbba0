//! The `train-imdb` binary end to end on a tiny aclImdb-layout folder (and on the real
//! archive in ../shared/data when present, 1 epoch): outputs, metrics schema, `predict`.

use std::path::{Path, PathBuf};

fn make_data(root: &Path) {
    let pos = [
        "a great movie, loved it",
        "wonderful acting and a great story",
        "great fun",
        "loved every minute",
    ];
    let neg = [
        "an awful movie, hated it",
        "boring and awful story",
        "terrible acting",
        "hated every minute",
    ];
    for split in ["train", "test"] {
        for (label, texts) in [("pos", &pos), ("neg", &neg)] {
            let d = root.join("aclImdb").join(split).join(label);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..6 {
                let t = texts[k % texts.len()];
                std::fs::write(
                    d.join(format!("{k}_{}.txt", if label == "pos" { 9 } else { 2 })),
                    format!("{t} <br />{k}"),
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn trains_writes_outputs_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    make_data(tmp.path());
    let out = tmp.path().join("run");
    let o = test_support::program!("train-imdb")
        .args([
            "--data",
            tmp.path().to_str().unwrap(),
            "--epochs",
            "30",
            "--batch-size",
            "4",
            "--validation",
            "4",
        ])
        .args([
            "--out",
            out.to_str().unwrap(),
            "--vocab-size",
            "50",
            "--dim",
            "8",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "config.json",
        "model.safetensors",
        "tokens.txt",
        "metrics.json",
        "metrics.csv",
        "curves.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["train_examples"], 8);
    assert_eq!(m["validation_examples"], 4);
    assert_eq!(m["test_examples"], 12);
    let epochs = m["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 30);
    for k in [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    ] {
        assert!(epochs[0].get(k).is_some(), "epoch record lacks {k}");
    }
    let first = epochs[0]["loss"].as_f64().unwrap();
    let last = epochs[29]["loss"].as_f64().unwrap();
    assert!(
        last < first,
        "training loss did not fall: {first} -> {last}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        31
    );

    let p = test_support::program!("train-imdb")
        .args([
            "predict",
            "--model",
            out.to_str().unwrap(),
            "a great movie",
            "an awful movie",
        ])
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let probs: Vec<f64> = String::from_utf8(p.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(probs.len(), 2);
    assert!(probs[0] > probs[1], "{probs:?}");
}

#[test]
fn missing_data_is_a_clean_error() {
    let o = test_support::program!("train-imdb")
        .args(["--data", "/nonexistent/aclImdb.tar.gz"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/aclImdb.tar.gz") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn reads_the_real_archive() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/aclImdb_v1_labeled.tar.gz");
    if !p.is_file() {
        eprintln!("SKIPPED: {} is absent", p.display());
        return;
    }
    let d = train_imdb::data::Imdb::load(&p).unwrap();
    assert_eq!(d.train.len(), 25000);
    assert_eq!(d.test.len(), 25000);
    assert_eq!(d.train.iter().filter(|r| r.label == 1).count(), 12500);
    assert_eq!(d.train[0].path, "train/neg/0_3.txt");
}

/// `--embedding DIR --freeze-embedding`: starts from a converted folder and leaves its table unchanged.
#[test]
fn frozen_pretrained_embedding_stays_unchanged() {
    use burn::tensor::Device;
    use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
    let tmp = tempfile::tempdir().unwrap();
    make_data(tmp.path());
    let vocab = b"a\ngreat\nmovie\nawful\nloved\nhated\nit\n".to_vec();
    let config = TextEmbeddingConfig {
        vocab_size: 7,
        oov_buckets: 2,
        dim: 3,
        split: SplitMode::KeepEmpty,
        remove_punctuation: true,
        vocab_file: "tokens.txt".into(),
        source_dtype: None,
    };
    let table: Vec<f32> = (0..27).map(|i| (i as f32 * 0.37).sin()).collect();
    let emb =
        TextEmbedding::from_parts(config, "tokens.txt", vocab, table.clone(), &Device::flex())
            .unwrap();
    let emb_dir = tmp.path().join("emb");
    emb.save(&emb_dir, "test").unwrap();
    let out = tmp.path().join("run");
    let o = test_support::program!("train-imdb")
        .args([
            "--data",
            tmp.path().to_str().unwrap(),
            "--embedding",
            emb_dir.to_str().unwrap(),
            "--freeze-embedding",
        ])
        .args([
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--validation",
            "4",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = safetensors::SafeTensors::deserialize(
        &std::fs::read(out.join("model.safetensors")).unwrap(),
    )
    .unwrap()
    .tensor("embedding.embeddings")
    .unwrap()
    .data()
    .to_vec();
    let saved: Vec<f32> = st
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(saved, table);
}

/// `--embedding` takes a SavedModel (folder or handle) as every program's `--model` does:
/// converted once into the cache, found there the second time; another kind is refused.
#[test]
fn embedding_savedmodel_is_converted_once() {
    let tmp = tempfile::tempdir().unwrap();
    make_data(tmp.path());
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let cache = tmp.path().join("cache");
    let run = |embedding: &Path, out: &str| {
        test_support::program!("train-imdb")
            .arg("--data")
            .arg(tmp.path())
            .args(["--epochs", "1", "--batch-size", "4", "--validation", "4"])
            .arg("--embedding")
            .arg(embedding)
            .arg("--out")
            .arg(tmp.path().join(out))
            .env("TFHUB_CACHE_DIR", &cache)
            .output()
            .unwrap()
    };
    let sm = fixtures.join("text_embedding/tf2_f32_oov1");
    for (out, said) in [
        ("a", "converted once into"),
        ("b", "using the conversion cached at"),
    ] {
        let o = run(&sm, out);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(tmp.path().join(out).join("metrics.json").is_file());
    }
    let o = run(&fixtures.join("inception_v3/small/saved_model"), "c");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("expected `text_embedding`"), "{stderr}");
}
