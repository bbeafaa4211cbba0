//! The `finetune` program end to end on a synthetic image set with a narrow, randomly
//! initialised Inception-v3 feature-vector folder written here.

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use models::inception_v3::{InceptionV3, InceptionV3Config};
use std::path::{Path, PathBuf};
use std::process::Command;

use test_support as common;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("finetune-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn make_images(root: &Path, per_class: usize) {
    for (c, name) in ["red", "green", "blue"].iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = image::RgbImage::from_fn(90, 84, |x, y| {
                let t = ((x * 7 + y * 13 + i as u32 * 31) % 40) as i32 - 20;
                let mut p = [60i32, 60, 60];
                p[c] = 200;
                image::Rgb(p.map(|v| (v + t).clamp(0, 255) as u8))
            });
            img.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// A converted-looking `inception_v3` feature-vector folder with random weights.
fn make_backbone(dir: &Path) {
    let cfg = InceptionV3Config {
        num_classes: None,
        depth_multiplier: 0.1,
        min_depth: 4,
        ..InceptionV3Config::default()
    };
    let net: InceptionV3 = cfg.init(&Device::flex()).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let mut store = SafetensorsStore::from_file(dir.join("model.safetensors"));
    net.save_into(&mut store).unwrap();
    let config = serde_json::json!({"kind": "inception_v3", "config": cfg, "source": "test", "converter_version": "0"});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
}

fn finetune(args: &[&str]) -> (bool, String, String) {
    let out = test_support::program!("finetune")
        .args(args)
        // SavedModels are converted into a cache under the test target folder, never the user's.
        .env(
            "TFHUB_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("tfhub-cache"),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn trains_writes_outputs_and_resumes() {
    let root = tmp("run");
    let data = root.join("data");
    make_images(&data, 10);
    let backbone = root.join("backbone");
    make_backbone(&backbone);
    let out = root.join("out");
    let common = [
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "80",
        "--batch-size",
        "8",
        "--learning-rate",
        "0.01",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut args = vec!["--model", backbone.to_str().unwrap(), "--epochs", "2"];
    args.extend_from_slice(&common);
    let (ok, stdout, stderr) = finetune(&args);
    assert!(ok, "finetune failed: {stderr}");
    assert_eq!(stdout.lines().last().unwrap(), out.to_str().unwrap());
    for f in [
        "config.json",
        "model.safetensors",
        "labels.txt",
        "metrics.json",
        "metrics.csv",
        "curves.png",
        "checkpoint/checkpoint.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("labels.txt")).unwrap(),
        "blue\ngreen\nred\n"
    );
    let m = metrics(&out);
    let epochs = m["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    for key in [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    ] {
        assert!(
            epochs[1][key].is_number(),
            "epochs[1].{key} = {}",
            epochs[1][key]
        );
    }
    assert_eq!(m["train_examples"].as_u64(), Some(24));
    assert_eq!(m["validation_examples"].as_u64(), Some(6));
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );

    // The export is a 3-class inception_v3 folder.
    let net = InceptionV3::load(&out, &Device::flex()).unwrap();
    assert_eq!(net.config().num_classes, Some(3));

    // Resume: epoch numbering continues, earlier records are kept.
    let ckpt = out.join("checkpoint");
    let mut args = vec!["--resume", ckpt.to_str().unwrap(), "--epochs", "3"];
    args.extend_from_slice(&common);
    let (ok, _, stderr) = finetune(&args);
    assert!(ok, "resume failed: {stderr}");
    assert!(stderr.contains("resuming after epoch 2"), "{stderr}");
    let m2 = metrics(&out);
    let e2 = m2["epochs"].as_array().unwrap();
    assert_eq!(e2.len(), 3);
    assert_eq!(e2[2]["epoch"].as_u64(), Some(3));
    assert_eq!(e2[0], epochs[0]);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn errors_name_the_problem() {
    let root = tmp("errors");
    let backbone = root.join("backbone");
    make_backbone(&backbone);
    let missing = root.join("no_such_folder");
    let (ok, _, stderr) = finetune(&[
        "--model",
        backbone.to_str().unwrap(),
        "--data",
        missing.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("no_such_folder") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let data = root.join("data");
    make_images(&data, 2);
    std::fs::create_dir_all(data.join("empty_class")).unwrap();
    let (ok, _, stderr) = finetune(&[
        "--model",
        backbone.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("empty_class"), "{stderr}");
    std::fs::remove_dir_all(data.join("empty_class")).unwrap();

    let other = root.join("embedding");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    let out = root.join("out");
    let (ok, _, stderr) = finetune(&[
        "--model",
        other.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("text_embedding"), "{stderr}");
    assert!(!out.join("config.json").exists());
    std::fs::remove_dir_all(&root).ok();
}

/// `classify --model OUT` reads what finetune exports (labels from `labels.txt`) and gives
/// the probabilities of the exported network. Needs the `classify` binary next to this
/// one (`cargo build -p classify`); skipped with a message otherwise.
#[test]
fn classify_loads_the_export() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_finetune"))
        .parent()
        .unwrap()
        .to_path_buf();
    let classify = bin_dir.join(format!("classify{}", std::env::consts::EXE_SUFFIX));
    if !classify.is_file() {
        eprintln!(
            "SKIPPED: {} not built (run `cargo build -p classify` first)",
            classify.display()
        );
        return;
    }
    let root = tmp("classify");
    let data = root.join("data");
    make_images(&data, 6);
    let backbone = root.join("backbone");
    make_backbone(&backbone);
    let out = root.join("out");
    let (ok, _, stderr) = finetune(&[
        "--model",
        backbone.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "80",
        "--epochs",
        "3",
        "--batch-size",
        "6",
        "--learning-rate",
        "0.05",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let img = data.join("green").join("0.png");
    let res = Command::new(&classify)
        .args([
            "--model",
            out.to_str().unwrap(),
            "--size",
            "80",
            "--top",
            "3",
            "--json",
            img.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "classify failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    let top = json[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    // Reference: the exported network loaded by models, same preprocessing as training.
    let net = InceptionV3::load(&out, &Device::flex()).unwrap();
    let x = training::load_image(&img, 80).unwrap();
    let x = burn::tensor::Tensor::<4>::from_data(
        burn::tensor::TensorData::new(x, [1, 80, 80, 3]),
        &Device::flex(),
    );
    let logits = net
        .forward(x)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    let labels = ["blue", "green", "red"];
    for t in top {
        let i = t["index"].as_u64().unwrap() as usize;
        assert_eq!(t["label"].as_str().unwrap(), labels[i]);
        let p = t["probability"].as_f64().unwrap() as f32;
        assert!(
            (p - e[i] / s).abs() < 1e-3,
            "class {i}: classify {p} vs {}",
            e[i] / s
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

/// Entries of `dir` whose name starts with `.` (left-over temporary or old folders).
fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// `--out` (issue 16): a folder this project did not write is refused unless `--force`; with
/// `--force`, or onto another of our folders, it is replaced as a whole only when training
/// ends, and left as it was when training fails.
#[test]
fn out_replaces_only_our_folders() {
    let root = tmp("out-policy");
    let data = root.join("data");
    make_images(&data, 3);
    let backbone = root.join("backbone");
    make_backbone(&backbone);
    let foreign = root.join("home");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), "precious").unwrap();
    let run = |out: &Path, data: &Path, extra: &[&str]| {
        let mut args = vec![
            "--model",
            backbone.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--image-size",
            "75",
            "--batch-size",
            "16",
            "--validation-fraction",
            "0",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = finetune(&args);
        assert!(!stderr.contains("panicked"), "{stderr}");
        (ok, stderr)
    };

    // Refused before any work, naming the folder and --force.
    let (ok, err) = run(&foreign, &data, &[]);
    assert!(!ok);
    assert!(
        err.contains(foreign.to_str().unwrap()) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("thesis.tex")).unwrap(),
        "precious"
    );
    // A file in the way too.
    let file = root.join("notes.txt");
    std::fs::write(&file, "keep").unwrap();
    let (ok, _) = run(&file, &data, &[]);
    assert!(!ok);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

    // --force, but training fails: the folder is left as it was, nothing left beside it.
    let (ok, err) = run(&foreign, &root.join("no_such_data"), &["--force"]);
    assert!(!ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(foreign.join("thesis.tex")).unwrap(),
        "precious"
    );
    assert!(
        hidden_entries(&root).is_empty(),
        "{:?}",
        hidden_entries(&root)
    );

    // --force: replaced once training ends.
    let (ok, err) = run(&foreign, &data, &["--force"]);
    assert!(ok, "{err}");
    assert!(!foreign.join("thesis.tex").exists());
    assert!(foreign.join("config.json").is_file());
    assert!(foreign.join("checkpoint/checkpoint.json").is_file());
    assert!(
        hidden_entries(&root).is_empty(),
        "{:?}",
        hidden_entries(&root)
    );

    // Another of our folders (a converted model) is replaced as a whole without --force.
    let converted = root.join("converted");
    make_backbone(&converted);
    std::fs::write(converted.join("tokens.txt"), "stale").unwrap();
    let (ok, err) = run(&converted, &data, &[]);
    assert!(ok, "{err}");
    assert!(!converted.join("tokens.txt").exists());
    assert!(converted.join("labels.txt").is_file());

    // Our finetune run folder is written in place (resumable), without --force.
    std::fs::write(converted.join("notes.md"), "mine").unwrap();
    let (ok, err) = run(&converted, &data, &[]);
    assert!(ok, "{err}");
    assert!(converted.join("notes.md").is_file());
    assert!(
        hidden_entries(&root).is_empty(),
        "{:?}",
        hidden_entries(&root)
    );
    std::fs::remove_dir_all(&root).ok();
}

/// `--model` takes a SavedModel folder or handle as every program does: converted once into
/// the cache (the second run, by handle, finds the same conversion), then fine-tuned.
#[test]
fn a_savedmodel_or_handle_is_converted_once_and_fine_tuned() {
    let root = tmp("savedmodel");
    let data = root.join("data");
    make_images(&data, 4);
    let sm = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/inception_v3/small/saved_model");
    let (_server, url) = common::serve_folder(&sm, "/m/inception.tar.gz");
    let cache = root.join("cache");
    let run = |model: &str, out: &Path| {
        let stderr = test_support::program!("finetune")
            .args(["--model", model, "--data", data.to_str().unwrap()])
            .args(["--image-size", "75", "--batch-size", "6", "--epochs", "1"])
            .arg("--out")
            .arg(out)
            .cache(&cache)
            .online()
            .run_ok()
            .1;
        assert!(metrics(out)["epochs"].as_array().unwrap().len() == 1);
        stderr
    };
    let first = run(sm.to_str().unwrap(), &root.join("a"));
    assert!(first.contains("converted once into"), "{first}");
    let second = run(&url, &root.join("b"));
    assert!(
        second.contains("using the conversion cached at"),
        "{second}"
    );
    // A text embedding is refused, naming the kind.
    let text = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/text_embedding/tf2_f32_oov1");
    let (ok, _, stderr) = finetune(&[
        "--model",
        text.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("expected `inception_v3`"), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The MobileNetV2 feature-vector fixture (a TF2 SavedModel, hub layout, with its
/// `training=True` trace): run through the graph executor.
fn graph_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tfgraph/mobilenet_v2_fv_small/saved_model")
}

fn float_variables(dir: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let sm = savedmodel::read(dir).unwrap();
    sm.variables()
        .iter()
        .filter(|v| v.dtype == savedmodel::DType::F32)
        .map(|v| {
            let savedmodel::TensorData::F32(x) = sm.tensor(&v.name).unwrap().data else {
                unreachable!()
            };
            (v.name.clone(), x)
        })
        .collect()
}

/// `finetune --model <any TF2 feature-vector SavedModel>`: the whole network trained through
/// its graph (batch statistics, moving averages from the training trace), checkpointed,
/// resumed, exported as a `graph_classifier` folder whose `backbone/` TensorFlow loads, and
/// `classify` on it gives TensorFlow's probabilities for the exported model. Head-only
/// training leaves the SavedModel's variables as they were.
#[test]
fn a_graph_model_is_fine_tuned_resumed_exported_and_classified_as_tensorflow_does() {
    let root = tmp("graph");
    let data = root.join("data");
    make_images(&data, 4);
    let sm = graph_model();
    let original = float_variables(&sm);
    let out = root.join("out");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--data",
            data.to_str().unwrap(),
            "--image-size",
            "32",
            "--batch-size",
            "4",
            "--validation-fraction",
            "0.25",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = finetune(&args);
        assert!(ok, "{stderr}");
        stderr
    };
    // Whole network, batch statistics: one epoch, then resumed for a second.
    let model = sm.to_str().unwrap();
    let first = [
        "--model",
        model,
        "--train-backbone",
        "--train-batch-norm",
        "--epochs",
        "1",
    ];
    run(&first);
    assert_eq!(metrics(&out)["epochs"].as_array().unwrap().len(), 1);
    let resume = out.to_str().unwrap();
    run(&["--resume", resume, "--epochs", "2"]);
    let m = metrics(&out);
    assert_eq!(m["epochs"].as_array().unwrap().len(), 2);
    assert!(m["epochs"][1]["loss"].as_f64().unwrap().is_finite());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["kind"], "graph_classifier");
    assert_eq!(config["config"]["feature_dim"], 1280);
    assert_eq!(config["config"]["classes"], 3);
    let tuned = float_variables(&out.join("backbone"));
    assert_eq!(tuned.len(), original.len());
    let changed = |name: &str| original[name] != tuned[name];
    assert!(changed("Conv1/kernel"), "trainable weights are trained");
    assert!(
        changed("bn_Conv1/moving_mean"),
        "moving averages are updated"
    );

    // classify on the export, and TensorFlow on the same folder.
    let images: Vec<PathBuf> = ["red", "green", "blue"]
        .iter()
        .map(|c| data.join(c).join("0.png"))
        .collect();
    let classify = Path::new(env!("CARGO_BIN_EXE_finetune"))
        .with_file_name(format!("classify{}", std::env::consts::EXE_SUFFIX));
    if !classify.is_file() {
        eprintln!(
            "SKIPPED: {} not built (run `cargo build -p classify` first)",
            classify.display()
        );
    } else {
        let res = Command::new(&classify)
            .args([
                "--model",
                out.to_str().unwrap(),
                "--size",
                "32",
                "--top",
                "3",
                "--json",
            ])
            .args(&images)
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        let ours: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
        let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/.venv/bin/python");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_finetuned_graph.py");
        let tf = Command::new(&py)
            .arg(&script)
            .arg(&out)
            .arg("32")
            .args(&images)
            .output();
        match tf {
            Ok(r) if r.status.success() => {
                let tf: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
                assert_eq!(tf["labels"], serde_json::json!(["blue", "green", "red"]));
                let mut worst = 0f64;
                for (i, row) in ours.as_array().unwrap().iter().enumerate() {
                    for t in row["top"].as_array().unwrap() {
                        let k = t["index"].as_u64().unwrap() as usize;
                        let p = t["probability"].as_f64().unwrap();
                        let q = tf["probabilities"][i][k].as_f64().unwrap();
                        assert!(
                            (p - q).abs() < 1e-5,
                            "image {i} class {k}: ours {p}, TF {q}"
                        );
                        worst = worst.max((p - q).abs());
                    }
                }
                eprintln!("classify vs TensorFlow on the export: largest difference {worst:.2e}");
            }
            Ok(r) => panic!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&r.stderr)
            ),
            Err(_) => eprintln!(
                "SKIPPED: TensorFlow's view of the export: {} is absent (tools/setup-python.sh)",
                py.display()
            ),
        }
    }

    // Head only (frozen batch norms): the SavedModel's variables are exported unchanged.
    let head_out = root.join("head");
    let (ok, _, stderr) = finetune(&[
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--out",
        head_out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(float_variables(&head_out.join("backbone")), original);

    // What a graph model cannot take is refused, naming it.
    let (ok, _, stderr) = finetune(&[
        "--model",
        model,
        "--data",
        data.to_str().unwrap(),
        "--train-batch-norm",
        "--batch-norm-momentum",
        "0.9",
        "--out",
        root.join("x").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--batch-norm-momentum") && stderr.contains("training"),
        "{stderr}"
    );
    // A text model that runs as a graph (a DAN encoder).
    let text_model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/text_graph/dan_v1split");
    let (ok, _, stderr) = finetune(&[
        "--model",
        text_model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        root.join("y").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("float images"), "{stderr}");
    std::fs::remove_dir_all(&root).ok();
}
