//! `train-imdb` on a text SavedModel run through its graph (`hub.KerasLayer(trainable=True)`).
//!
//! - A training step through the graph equals the step through the hand-written embedding on
//!   the same Swivel-pattern SavedModel (tests/fixtures/text_graph): the same logits, loss
//!   and updated table and dense layers, so gradients reach the table through the graph's
//!   gather and sqrtn segment sum as they do by hand (which matches Keras:
//!   tests/keras_parity.rs).
//! - Frozen, the graph's variables do not move.
//! - The program trains a DAN encoder (dense layers after the bag, TF1 `StringSplit`: no
//!   hand-written model computes it) end to end and `predict` runs the saved folder.

use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};
use train_imdb::graph::GraphClassifier;
use train_imdb::model::{bce_with_logits, Classifier, DeviceBatch, KerasAdam};

fn text_graph(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/text_graph")
        .join(name)
}

const SENTENCES: [&[u8]; 6] = [
    b"the cat sat on the mat",
    b"Hello, world!",
    b"",
    b"a  dog and a cat",
    b"zebra unknown words 101",
    b"cat cat cat cat cat cat cat cat cat cat cat",
];
const LABELS: [f32; 6] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_step_through_the_graph_equals_the_hand_written_step() {
    let device = Device::flex().autodiff();
    let sm = text_graph("swivel_f32_oov1_d20");
    // The hand-written embedding of the same SavedModel (converted into a private cache).
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = hub::Options::from_env();
    opts.cache_dir = Some(tmp.path().to_path_buf());
    let dir = tfhub::open(sm.to_str().unwrap(), &opts, &Device::flex())
        .unwrap()
        .into_folder_of(models::text_embedding::KIND)
        .unwrap();
    let emb = models::text_embedding::TextEmbedding::load(&dir, &device).unwrap();
    let hand = Classifier::new(emb, 16, 7, &device);
    let graph = GraphClassifier::open(&sm, true, 16, 7, &device).unwrap();
    assert_eq!(
        graph.embedding.variables.len(),
        1,
        "the table is the only variable"
    );

    let labels = Tensor::<2>::from_data(TensorData::new(LABELS.to_vec(), [6, 1]), &device);
    let tb = hand.embedding.tokenize(&SENTENCES);
    let b = DeviceBatch::new(&tb, &LABELS, &device);
    let (lh, lg) = (hand.forward(&b), graph.forward(&SENTENCES).unwrap());
    assert!(max_diff(&values(lh.clone().inner()), &values(lg.clone().inner())) < 1e-6);
    let (loss_h, loss_g) = (
        bce_with_logits(lh, labels.clone()),
        bce_with_logits(lg, labels),
    );
    let (gh, gg) = (loss_h.backward(), loss_g.backward());
    let (mut oh, mut og) = (KerasAdam::new(1e-2), KerasAdam::new(1e-2));
    let hand = hand.step(&mut oh, &gh, true);
    let graph = graph.step(&mut og, &gg, true);
    let table_h = values(hand.embedding.embeddings.val().inner());
    let table_g: Vec<f32> = graph.embedding.variables[0]
        .val()
        .inner()
        .into_data()
        .try_into_vec()
        .unwrap();
    let before = values(
        models::text_embedding::TextEmbedding::load(&dir, &Device::flex())
            .unwrap()
            .embeddings
            .val(),
    );
    assert!(
        max_diff(&table_h, &before) > 1e-3,
        "the step moved the table"
    );
    assert!(
        max_diff(&table_h, &table_g) < 1e-6,
        "tables after one step differ by {}",
        max_diff(&table_h, &table_g)
    );
    assert!(
        max_diff(
            &values(hand.dense_kernel.val().inner()),
            &values(graph.dense_kernel.val().inner())
        ) < 1e-6
    );
}

#[test]
fn a_frozen_graph_embedding_does_not_move() {
    let device = Device::flex().autodiff();
    let sm = text_graph("dan_v1split");
    let graph = GraphClassifier::open(&sm, true, 16, 7, &device)
        .unwrap()
        .freeze_embedding();
    let before: Vec<Vec<f32>> = graph
        .embedding
        .variables
        .iter()
        .map(|p| p.val().inner().into_data().try_into_vec().unwrap())
        .collect();
    assert_eq!(before.len(), 5, "table and two dense layers");
    let labels = Tensor::<2>::from_data(TensorData::new(LABELS.to_vec(), [6, 1]), &device);
    let loss = bce_with_logits(graph.forward(&SENTENCES).unwrap(), labels);
    let grads = loss.backward();
    let kernel = values(graph.dense_kernel.val().inner());
    let graph = graph.step(&mut KerasAdam::new(1e-2), &grads, false);
    for (p, b) in graph.embedding.variables.iter().zip(&before) {
        let now: Vec<f32> = p.val().inner().into_data().try_into_vec().unwrap();
        assert_eq!(&now, b);
    }
    assert!(max_diff(&kernel, &values(graph.dense_kernel.val().inner())) > 1e-4);
}

fn make_data(root: &Path) {
    let pos = [
        "a great movie loved it",
        "wonderful acting and a great story",
    ];
    let neg = ["an awful movie hated it", "boring and awful story"];
    for split in ["train", "test"] {
        for (label, texts) in [("pos", &pos), ("neg", &neg)] {
            let d = root.join("aclImdb").join(split).join(label);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..4 {
                std::fs::write(
                    d.join(format!("{k}_{}.txt", if label == "pos" { 9 } else { 2 })),
                    texts[k % 2],
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn the_program_trains_a_dan_encoder_through_its_graph_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    make_data(tmp.path());
    let out = tmp.path().join("run");
    let (_, stderr) = test_support::program!("train-imdb")
        .args(["--data", tmp.path().to_str().unwrap()])
        .arg("--embedding")
        .arg(text_graph("dan_v1split"))
        .args(["--epochs", "20", "--batch-size", "4", "--validation", "2"])
        .args(["--learning-rate", "0.03"])
        .arg("--out")
        .arg(&out)
        .cache(&tmp.path().join("cache"))
        .run_ok();
    assert!(
        stderr.contains("running its graph") || stderr.contains("epoch 20/20"),
        "{stderr}"
    );
    assert!(out.join("embedding/saved_model.pb").is_file());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let epochs = m["epochs"].as_array().unwrap();
    let (first, last) = (
        epochs[0]["loss"].as_f64().unwrap(),
        epochs[19]["loss"].as_f64().unwrap(),
    );
    assert!(
        last < first,
        "training loss did not fall: {first} -> {last}"
    );
    let (stdout, _) = test_support::program!("train-imdb")
        .args(["predict", "--model", out.to_str().unwrap()])
        .args(["the cat is on the mat", "the dog is on the mat"])
        .run_ok();
    let probs: Vec<f64> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(probs.len(), 2);
    assert!(probs[0] > probs[1], "{probs:?}");
}
