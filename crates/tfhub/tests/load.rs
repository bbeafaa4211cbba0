//! One-call loading (`tfhub::load`, `load_graph`, `keras_layer`, `load_hand_written`) of
//! committed TensorFlow fixtures, from folders and from handles served on loopback, checked
//! against TensorFlow's recorded outputs.

use test_support as common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{gzip, tar_of, with_env, Reply, Server};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use tfhub::tfgraph::HostTensor;

const ENV: &[&str] = &["TFHUB_CACHE_DIR", "TFHUB_OFFLINE", "XDG_CACHE_HOME"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tfgraph")
        .join(name)
}

/// `(input, TF output, TF training-trace output)` of a tfgraph fixture.
fn expected(name: &str) -> (HostTensor, HostTensor, Option<HostTensor>) {
    let bytes = std::fs::read(fixture(name).join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let get = |k: &str| {
        st.tensor(k).ok().map(|t| {
            let data: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            HostTensor::f32(t.shape().to_vec(), data)
        })
    };
    (
        get("input").unwrap(),
        get("output").unwrap(),
        get("output_training"),
    )
}

/// Largest difference relative to the largest magnitude of `want`.
fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "output sizes differ");
    let scale = want
        .iter()
        .fold(0f64, |m, &x| m.max(x.abs() as f64))
        .max(1e-12);
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b as f64).abs() / scale)
        .fold(0.0, f64::max)
}

fn cache() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_saved_model_folder_runs_through_the_graph_executor() {
    let tmp = cache();
    let (x, want, _) = expected("mobilenet_v2_small");
    let dir = fixture("mobilenet_v2_small").join("saved_model");
    let model = with_env(
        ENV,
        &[("TFHUB_CACHE_DIR", tmp.path().to_str().unwrap())],
        || tfhub::load(dir.to_str().unwrap(), &Device::flex()),
    )
    .unwrap();
    let tfhub::Model::Graph(m) = model else {
        panic!("a SavedModel must load through the graph executor, got {model:?}")
    };
    let got = m.run_host(vec![x]).unwrap().remove(0);
    assert_eq!(got.shape, want.shape);
    let e = rel_error(&got.to_f32().unwrap(), &want.to_f32().unwrap());
    assert!(e < 1e-4, "rel. error {e:.2e}");
}

#[test]
fn a_handle_is_downloaded_once_cached_and_run() {
    let tmp = cache();
    let dir = fixture("resnet50_v2_small").join("saved_model");
    let mut files = Vec::new();
    for rel in [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ] {
        files.push((rel, std::fs::read(dir.join(rel)).unwrap()));
    }
    let tgz = gzip(&tar_of(&files));
    let server = Server::start(|_| {
        vec![(
            "/models/resnet.tar.gz".to_string(),
            Reply::Ok {
                body: tgz,
                content_type: "application/gzip",
            },
        )]
    });
    let url = format!("{}/models/resnet.tar.gz", server.base);
    let (x, want, _) = expected("resnet50_v2_small");
    let run = || {
        with_env(
            ENV,
            &[("TFHUB_CACHE_DIR", tmp.path().to_str().unwrap())],
            || tfhub::load_graph(&url, &Device::flex()),
        )
        .unwrap()
        .run_host(vec![x.clone()])
        .unwrap()
        .remove(0)
    };
    let got = run();
    let e = rel_error(&got.to_f32().unwrap(), &want.to_f32().unwrap());
    assert!(e < 1e-4, "rel. error {e:.2e}");
    assert_eq!(server.hits("/models/resnet.tar.gz"), 1);
    // The second load comes from the cache.
    let again = run();
    assert_eq!(again.to_f32().unwrap(), got.to_f32().unwrap());
    assert_eq!(server.hits("/models/resnet.tar.gz"), 1, "downloaded twice");
}

#[test]
fn a_missing_or_foreign_folder_is_named_in_the_error() {
    let tmp = cache();
    let e = with_env(
        ENV,
        &[("TFHUB_CACHE_DIR", tmp.path().to_str().unwrap())],
        || tfhub::load(tmp.path().to_str().unwrap(), &Device::flex()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(tmp.path().to_str().unwrap()) && e.contains("saved_model.pb"),
        "{e}"
    );
}

#[test]
fn keras_layer_runs_the_training_trace_and_its_gradients_are_right() {
    let tmp = cache();
    let name = "mobilenet_v2_fv_small";
    let (x, want, want_training) = expected(name);
    let dir = fixture(name).join("saved_model");
    let ad = Device::flex().autodiff();
    let load = |device: &Device, trainable: bool| {
        with_env(
            ENV,
            &[("TFHUB_CACHE_DIR", tmp.path().to_str().unwrap())],
            || tfhub::keras_layer(dir.to_str().unwrap(), device, trainable),
        )
        .unwrap()
    };
    let input = |device: &Device| {
        Tensor::<4>::from_data(
            TensorData::new(x.to_f32().unwrap(), x.shape.clone()),
            device,
        )
    };
    // Frozen: the inference trace, even on an autodiff device.
    let frozen = load(&ad, false);
    let y: Tensor<2> = frozen.forward(input(&ad)).unwrap();
    let e = rel_error(
        &y.into_data().try_to_vec::<f32>().unwrap(),
        &want.to_f32().unwrap(),
    );
    assert!(e < 1e-4, "inference trace: rel. error {e:.2e}");

    // Trainable on an autodiff device: the training trace (batch statistics), as Keras'
    // fit does.
    let layer = load(&ad, true);
    assert!(!layer.variables.is_empty());
    let y: Tensor<2> = layer.forward(input(&ad)).unwrap();
    let want_training = want_training.expect("the fixture records the training trace");
    let e = rel_error(
        &y.clone().into_data().try_to_vec::<f32>().unwrap(),
        &want_training.to_f32().unwrap(),
    );
    assert!(e < 1e-4, "training trace: rel. error {e:.2e}");

    // d(sum(y * w))/d(variable) against a central difference, at the largest gradient of
    // the last variable that gets one (the final block: smooth enough for a finite
    // difference; the first layers feed several batch normalisations over tiny maps).
    let dims = y.dims();
    let w: Vec<f32> = (0..dims[0] * dims[1])
        .map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.4)
        .collect();
    let weights = |d: &Device| Tensor::<2>::from_data(TensorData::new(w.clone(), dims), d);
    let loss_of = |l: &tfhub::tfgraph::KerasLayer| -> f64 {
        let y: Tensor<2> = l.forward(input(&ad)).unwrap();
        (y * weights(&ad))
            .sum()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[0] as f64
    };
    let grads = (y * weights(&ad)).sum().backward();
    let mut best = (0usize, 0usize, 0f32);
    for (k, p) in layer.variables.iter().enumerate().rev() {
        if best.2 != 0.0 {
            break;
        }
        if let Some(g) = p.grad(&grads) {
            for (i, &v) in g
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .iter()
                .enumerate()
            {
                if v.abs() > best.2.abs() {
                    best = (k, i, v);
                }
            }
        }
    }
    let (k, i, g) = best;
    assert!(g != 0.0, "no gradient reached the variables");
    let h = 1e-2f32;
    let shifted = |delta: f32| {
        let mut l = layer.clone();
        let mut v = l.variables[k]
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        v[i] += delta;
        let n = v.len();
        l.variables[k] =
            burn::module::Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [n]), &ad));
        loss_of(&l)
    };
    let numeric = (shifted(h) - shifted(-h)) / (2.0 * h as f64);
    let rel = (numeric - g as f64).abs() / (g as f64).abs();
    assert!(
        rel < 2e-2,
        "variable {k}[{i}]: gradient {g}, central difference {numeric}"
    );
}

#[test]
fn hand_written_inception_and_the_graph_agree_on_the_same_saved_model() {
    let tmp = cache();
    let name = "slim_inception_v3_small";
    let (x, want, _) = expected(name);
    let dir = fixture(name).join("saved_model");
    let device = Device::flex();
    let (graph, hand) = with_env(
        ENV,
        &[("TFHUB_CACHE_DIR", tmp.path().to_str().unwrap())],
        || {
            (
                tfhub::load(dir.to_str().unwrap(), &device).unwrap(),
                tfhub::load_hand_written(dir.to_str().unwrap(), &device).unwrap(),
            )
        },
    );
    let tfhub::Model::Graph(graph) = graph else {
        panic!("tfhub::load of a SavedModel must use the graph executor")
    };
    let tfhub::Model::InceptionV3(hand) = hand else {
        panic!("load_hand_written must give Inception-v3, got {hand:?}")
    };
    // Converted once, into the cache.
    assert!(tmp.path().join("converted").is_dir());
    let g = graph
        .run_host(vec![x.clone()])
        .unwrap()
        .remove(0)
        .to_f32()
        .unwrap();
    let images = Tensor::<4>::from_data(
        TensorData::new(x.to_f32().unwrap(), x.shape.clone()),
        &device,
    );
    let h = hand
        .forward(images)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let tf = want.to_f32().unwrap();
    for (label, got) in [("graph", &g), ("hand-written", &h)] {
        let e = rel_error(got, &tf);
        assert!(e < 1e-4, "{label}: rel. error {e:.2e} against TensorFlow");
    }
    let e = rel_error(&g, &h);
    assert!(e < 1e-4, "graph vs hand-written: {e:.2e}");
}

#[test]
fn a_look_alike_inception_whose_graph_differs_is_not_run_by_the_hand_written_model() {
    let tmp = cache();
    let src = fixture("slim_inception_v3_small").join("saved_model");
    let dir = tmp.path().join("lookalike");
    // Preprocessing `x * 2.5 - 1` instead of `x * 2 - 1`: the variables are Inception-v3's,
    // the function is not.
    assert!(
        tfhub::testing::with_constant_changed(&src, &dir, 2.0, 2.5).unwrap() > 0,
        "no constant 2.0 in the graph"
    );
    let device = Device::flex();
    let cache_dir = tmp.path().join("cache");
    let (hand, graph) = with_env(
        ENV,
        &[("TFHUB_CACHE_DIR", cache_dir.to_str().unwrap())],
        || {
            (
                tfhub::load_hand_written(dir.to_str().unwrap(), &device),
                tfhub::load(dir.to_str().unwrap(), &device),
            )
        },
    );
    let e = hand
        .expect_err("the hand-written model must refuse it")
        .to_string();
    assert!(
        e.contains("does not compute what this SavedModel's graph computes"),
        "{e}"
    );
    assert!(matches!(graph, Ok(tfhub::Model::Graph(_))));
    // Nothing half-converted is left in the cache: only the verdict, with its reason.
    let converted = cache_dir.join("converted");
    let left: Vec<String> = std::fs::read_dir(&converted)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.len() == 1 && left[0].ends_with(".graph"),
        "left in the cache: {left:?}"
    );
    let why = std::fs::read_to_string(converted.join(&left[0])).unwrap();
    assert!(why.contains("does not compute what"), "{why}");
}

/// A SavedModel that runs as a graph is recognised as such once: later opens read the
/// cached verdict, not its variables (here: made unreadable after the first open).
#[test]
fn a_graph_verdict_is_cached_and_the_variables_are_not_decoded_again() {
    let tmp = cache();
    let dir = tmp.path().join("mobilenet");
    let src = fixture("mobilenet_v2_small").join("saved_model");
    std::fs::create_dir_all(dir.join("variables")).unwrap();
    for rel in [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ] {
        std::fs::copy(src.join(rel), dir.join(rel)).unwrap();
    }
    let cache_dir = tmp.path().join("cache");
    let open = || {
        with_env(
            ENV,
            &[("TFHUB_CACHE_DIR", cache_dir.to_str().unwrap())],
            || {
                tfhub::open(
                    dir.to_str().unwrap(),
                    &tfhub::hub::Options::from_env(),
                    &Device::flex(),
                )
            },
        )
    };
    let first = open().unwrap();
    assert!(
        matches!(first, tfhub::Source::Graph { why: None, .. }),
        "{first:?}"
    );
    // The data file's bytes are not part of the cache key; truncated, any decode fails.
    std::fs::write(dir.join("variables/variables.data-00000-of-00001"), b"").unwrap();
    let again = open().expect("the cached verdict, without reading the variables");
    assert_eq!(again, first);
    // Without the verdict the variables are read, and the truncation is found.
    let converted = cache_dir.join("converted");
    for e in std::fs::read_dir(&converted).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let err = open().expect_err("truncated variables").to_string();
    assert!(err.contains("variables"), "{err}");
}

fn text_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/text_graph")
        .join(name)
}

fn cached(cache_dir: &Path, spec: &Path, device: &Device) -> tfhub::Source {
    let mut opts = hub::Options::from_env();
    opts.cache_dir = Some(cache_dir.to_path_buf());
    tfhub::open(spec.to_str().unwrap(), &opts, device).unwrap()
}

/// A text embedding of the hub's pattern is converted for the hand-written embedding after
/// both ran on probe sentences and agreed; one whose split separator is a tab (same ops,
/// same regex: only the probe can tell) and one with dense layers after the bag (refused
/// from its op types) run as graphs, each with its reason.
#[test]
fn text_embeddings_are_claimed_only_when_the_graph_computes_the_same() {
    let tmp = cache();
    let device = Device::flex();
    let cache_dir = tmp.path().join("cache");
    let swivel = text_fixture("swivel_f32_oov1_d20");
    match cached(&cache_dir, &swivel, &device) {
        tfhub::Source::Folder {
            kind, converted, ..
        } => {
            assert_eq!(kind, "text_embedding");
            let c = converted.unwrap();
            assert_eq!(c.unverified, None, "checked against its graph");
        }
        s => panic!("swivel: {s:?}"),
    }
    let tab = tmp.path().join("tab_split");
    assert_eq!(
        tfhub::testing::with_string_constant_changed(&swivel, &tab, b" ", b"\t").unwrap(),
        1
    );
    match cached(&cache_dir, &tab, &device) {
        tfhub::Source::Graph { why: Some(why), .. } => {
            assert!(why.contains("probe sentences"), "{why}")
        }
        s => panic!("tab split: {s:?}"),
    }
    match cached(&cache_dir, &text_fixture("dev_dense"), &device) {
        tfhub::Source::Graph { why: Some(why), .. } => assert!(why.contains("MatMul"), "{why}"),
        s => panic!("dense head: {s:?}"),
    }
}
