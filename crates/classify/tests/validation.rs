//! Every validation error of `classify`, from the command line: exit code 1, one `error: `
//! paragraph naming the option or file and the problem, no panic, and no `--features` file
//! written. (Usage errors that clap reports exit with code 2.)

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use models::inception_v3::{InceptionV3, InceptionV3Config};
use std::path::{Path, PathBuf};
use test_support::os;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn graph_fixture(name: &str) -> PathBuf {
    let p = repo()
        .join("tests/fixtures/tfgraph")
        .join(name)
        .join("saved_model");
    assert!(p.is_dir(), "fixture {} is missing", p.display());
    p
}

/// A fresh, empty folder of the test target dir.
fn scratch(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("classify-validation-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small gradient PNG.
fn image(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    image::RgbImage::from_fn(96, 80, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    })
    .save(&p)
    .unwrap();
    p
}

/// A narrow, randomly initialised Inception-v3 folder: `Some(11)` classes or a feature vector.
fn inception(dir: &Path, num_classes: Option<usize>) -> PathBuf {
    let cfg = InceptionV3Config {
        num_classes,
        depth_multiplier: 0.05,
        min_depth: 4,
        ..InceptionV3Config::default()
    };
    let net: InceptionV3 = cfg.init(&Device::flex()).unwrap();
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let mut store = SafetensorsStore::from_file(model.join("model.safetensors"));
    net.save_into(&mut store).unwrap();
    let config = serde_json::json!({"kind": "inception_v3", "config": cfg, "source": "test", "converter_version": "0"});
    std::fs::write(
        model.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    model
}

/// Runs classify with `args` plus `--features <dir>/features.npy`, asserts the error convention,
/// that every needle is in the message, and that nothing under `dir` (the features file
/// included) was written.
fn refused(dir: &Path, args: &[&std::ffi::OsStr], needles: &[&str]) -> String {
    test_support::program!("classify")
        .arg("--features")
        .arg(dir.join("features.npy"))
        .args(args)
        .refused_in(dir, needles)
}

#[test]
fn central_crop_out_of_range_is_refused() {
    let dir = scratch("crop");
    for v in ["0", "-0.5", "1.5", "NaN"] {
        refused(
            &dir,
            &[
                os("--model"),
                os("/nonexistent/model"),
                os(&format!("--central-crop={v}")),
                os("x.jpg"),
            ],
            &["--central-crop", "(0, 1]", &format!("got {v}")],
        );
    }
}

#[test]
fn batch_zero_is_refused() {
    let dir = scratch("batch");
    refused(
        &dir,
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--batch"),
            os("0"),
            os("x.jpg"),
        ],
        &["--batch", "at least 1"],
    );
}

#[test]
fn size_zero_is_refused() {
    let dir = scratch("size0");
    refused(
        &dir,
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--size"),
            os("0"),
            os("x.jpg"),
        ],
        &["--size", "at least 1"],
    );
}

#[test]
fn size_too_small_for_inception_is_refused() {
    let dir = scratch("size-inception");
    let model = inception(&dir, Some(11));
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            model.as_os_str(),
            os("--size"),
            os("10"),
            img.as_os_str(),
        ],
        &["--size 10", "too small", "75x75"],
    );
}

#[test]
fn size_that_does_not_fit_a_fixed_input_is_refused() {
    let dir = scratch("size-graph");
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            graph_fixture("mobilenet_v2_small").as_os_str(),
            os("--size"),
            os("32"),
            img.as_os_str(),
        ],
        &["mobilenet_v2_small", "64x64", "--size 32"],
    );
}

#[test]
fn missing_model_is_refused() {
    let dir = scratch("missing-model");
    let img = image(&dir, "a.png");
    let missing = dir.join("no_such_model");
    refused(
        &dir,
        &[os("--model"), missing.as_os_str(), img.as_os_str()],
        &[missing.to_str().unwrap()],
    );
}

#[test]
fn folder_that_holds_no_model_is_refused() {
    let dir = scratch("empty-model");
    let img = image(&dir, "a.png");
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(
        &dir,
        &[os("--model"), empty.as_os_str(), img.as_os_str()],
        &[
            empty.to_str().unwrap(),
            "neither a converted model folder",
            "saved_model.pb",
        ],
    );
}

#[test]
fn tflite_model_is_refused() {
    let dir = scratch("tflite");
    let img = image(&dir, "a.png");
    let tflite = repo().join("examples/stylize/style_predict_quantized_256.tflite");
    refused(
        &dir,
        &[os("--model"), tflite.as_os_str(), img.as_os_str()],
        &["style_predict_quantized_256.tflite", "a TF Lite file"],
    );
}

#[test]
fn converted_folder_of_another_kind_is_refused() {
    let dir = scratch("other-kind");
    let img = image(&dir, "a.png");
    let other = dir.join("embedding");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    refused(
        &dir,
        &[os("--model"), other.as_os_str(), img.as_os_str()],
        &[
            other.to_str().unwrap(),
            "holds a `text_embedding` model, expected `inception_v3`",
        ],
    );
}

#[test]
fn feature_vector_model_without_features_is_refused() {
    let dir = scratch("feature-vector");
    let model = inception(&dir, None);
    let img = image(&dir, "a.png");
    let err = test_support::program!("classify")
        .arg("--model")
        .arg(&model)
        .arg(&img)
        .run_err();
    assert!(
        err.contains(model.to_str().unwrap())
            && err.contains("feature-vector model has no classes")
            && err.contains("--features OUT.npy"),
        "{err}"
    );
}

#[test]
fn fewer_labels_than_classes_are_refused() {
    let dir = scratch("labels");
    let model = inception(&dir, Some(11));
    std::fs::write(model.join("labels.txt"), "cat\ndog\n").unwrap();
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[os("--model"), model.as_os_str(), img.as_os_str()],
        &[
            model.join("labels.txt").to_str().unwrap(),
            "2 labels for 11 classes",
        ],
    );
}

#[test]
fn missing_image_is_refused() {
    let dir = scratch("missing-image");
    let model = inception(&dir, Some(11));
    let good = image(&dir, "a.png");
    let missing = dir.join("no_such_image.jpg");
    refused(
        &dir,
        &[
            os("--model"),
            model.as_os_str(),
            good.as_os_str(),
            missing.as_os_str(),
        ],
        &[missing.to_str().unwrap(), "cannot read image"],
    );
}

#[test]
fn undecodable_image_is_refused() {
    let dir = scratch("bad-image");
    let model = inception(&dir, Some(11));
    let bad = dir.join("not_an_image.png");
    std::fs::write(&bad, b"this is not a png").unwrap();
    refused(
        &dir,
        &[os("--model"), model.as_os_str(), bad.as_os_str()],
        &[bad.to_str().unwrap(), "cannot decode image"],
    );
}

#[test]
fn features_in_a_missing_folder_is_refused() {
    let dir = scratch("features-missing-folder");
    let img = image(&dir, "a.png");
    let out = dir.join("no_such_folder/features.npy");
    let err = test_support::program!("classify")
        .args([
            os("--model"),
            graph_fixture("mobilenet_v2_small").as_os_str(),
        ])
        .arg("--features")
        .arg(&out)
        .arg(&img)
        .run_err();
    assert!(
        err.contains("--features")
            && err.contains(out.to_str().unwrap())
            && err.contains("does not exist"),
        "{err}"
    );
    assert!(!dir.join("no_such_folder").exists());
}

#[test]
fn features_onto_a_folder_is_refused() {
    let dir = scratch("features-folder");
    let img = image(&dir, "a.png");
    let err = test_support::program!("classify")
        .args([
            os("--model"),
            graph_fixture("mobilenet_v2_small").as_os_str(),
        ])
        .arg("--features")
        .arg(&dir)
        .arg(&img)
        .run_err();
    assert!(
        err.contains("--features")
            && err.contains(dir.to_str().unwrap())
            && err.contains("is a folder"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "wrote into {}",
        dir.display()
    );
}

#[test]
fn graph_model_with_two_inputs_is_refused() {
    let dir = scratch("two-inputs");
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            graph_fixture("op_add_broadcast").as_os_str(),
            img.as_os_str(),
        ],
        &["op_add_broadcast", "takes 2 inputs", "one image input"],
    );
}

#[test]
fn graph_model_without_an_image_input_is_refused() {
    let dir = scratch("not-images");
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            graph_fixture("op_abs").as_os_str(),
            img.as_os_str(),
        ],
        &[
            "op_abs",
            "input `x` is float32 [3, 5, 7]",
            "[batch, height, width, 3]",
        ],
    );
}

#[test]
fn graph_model_with_a_fixed_batch_needs_that_batch() {
    let dir = scratch("fixed-batch");
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            graph_fixture("op_avgpool_same_k3_s2").as_os_str(),
            img.as_os_str(),
            img.as_os_str(),
            img.as_os_str(),
        ],
        &[
            "op_avgpool_same_k3_s2",
            "batches of exactly 2",
            "pass --batch 2",
        ],
    );
}

#[test]
fn graph_model_whose_output_is_not_a_vector_is_refused() {
    let dir = scratch("image-output");
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            graph_fixture("op_conv2d_transpose_keras_s2_same").as_os_str(),
            img.as_os_str(),
        ],
        &[
            "op_conv2d_transpose_keras_s2_same",
            "output has shape [1, 10, 14, 4]",
            "expected [batch, classes or features]",
        ],
    );
}

#[test]
fn graph_model_with_unsupported_ops_is_refused() {
    let dir = scratch("unsupported");
    let img = image(&dir, "a.png");
    refused(
        &dir,
        &[
            os("--model"),
            graph_fixture("op_resize_antialias").as_os_str(),
            img.as_os_str(),
        ],
        &["op_resize_antialias", "unsupported op", "ResizeArea"],
    );
}

/// What clap refuses (a value that does not parse, a missing argument) is a usage error: exit
/// code 2, `error: ` naming the option, no panic.
#[test]
fn option_values_that_do_not_parse_are_usage_errors() {
    for (args, needle) in [
        (vec!["--model", "m", "--top", "many", "x.jpg"], "--top"),
        (vec!["--model", "m", "--batch=-1", "x.jpg"], "--batch"),
        (
            vec!["--model", "m", "--central-crop", "half", "x.jpg"],
            "--central-crop",
        ),
        (vec!["--model", "m"], "<IMAGES>"),
        (vec!["x.jpg"], "--model"),
    ] {
        let o = test_support::program!("classify").args(&args).run();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A `graph_classifier` folder as `finetune` writes it (the MobileNetV2 fixture as `backbone/`,
/// a head `[1280, 2]`), with `config` merged into its configuration and the head's tensors
/// given as `(name, shape)`.
fn graph_classifier(dir: &Path, config: serde_json::Value, head: &[(&str, Vec<usize>)]) -> PathBuf {
    let model = dir.join("tuned");
    let backbone = model.join("backbone");
    std::fs::create_dir_all(backbone.join("variables")).unwrap();
    let src = graph_fixture("mobilenet_v2_fv_small");
    for f in [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ] {
        std::fs::copy(src.join(f), backbone.join(f)).unwrap();
    }
    let data: Vec<Vec<u8>> = head
        .iter()
        .map(|(_, s)| vec![0u8; 4 * s.iter().product::<usize>()])
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = head
        .iter()
        .zip(&data)
        .map(|((n, s), d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &model.join("head.safetensors")).unwrap();
    let mut cfg = serde_json::json!({"backbone": "backbone", "feature_dim": 1280, "classes": 2});
    for (k, v) in config.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let doc = serde_json::json!({"kind": "graph_classifier", "config": cfg, "source": "finetune", "converter_version": "0"});
    std::fs::write(model.join("config.json"), doc.to_string()).unwrap();
    std::fs::write(model.join("labels.txt"), "a\nb\n").unwrap();
    model
}

#[test]
fn a_broken_fine_tuned_graph_folder_is_refused_naming_the_file() {
    let dir = scratch("graph-classifier");
    let img = image(&dir, "x.png");
    let good_head = [("weight", vec![1280, 2]), ("bias", vec![2])];
    let cases: Vec<(serde_json::Value, Vec<(&str, Vec<usize>)>, Vec<&str>)> = vec![
        // A backbone path that leaves the folder.
        (
            serde_json::json!({"backbone": "../elsewhere"}),
            good_head.to_vec(),
            vec!["config.json", "../elsewhere"],
        ),
        // Sizes that are not sizes.
        (
            serde_json::json!({"classes": 0}),
            good_head.to_vec(),
            vec!["config.json", "classes 0"],
        ),
        // A head whose shape is not the configuration's.
        (
            serde_json::json!({}),
            vec![("weight", vec![1280, 3]), ("bias", vec![2])],
            vec!["head.safetensors", "weight"],
        ),
        // A head for other features than the SavedModel gives.
        (
            serde_json::json!({"feature_dim": 7}),
            vec![("weight", vec![7, 2]), ("bias", vec![2])],
            vec!["gives 1280 features", "the head takes 7"],
        ),
    ];
    for (config, head, needles) in cases {
        let model = graph_classifier(&dir, config, &head);
        refused(
            &dir,
            &[
                os("--model"),
                model.as_os_str(),
                os("--size"),
                os("32"),
                img.as_os_str(),
            ],
            &needles,
        );
        std::fs::remove_dir_all(&model).unwrap();
    }
    // Its SavedModel missing.
    let model = graph_classifier(&dir, serde_json::json!({}), &good_head);
    std::fs::remove_dir_all(model.join("backbone")).unwrap();
    refused(
        &dir,
        &[os("--model"), model.as_os_str(), img.as_os_str()],
        &["backbone", "saved_model.pb"],
    );
    std::fs::remove_dir_all(&dir).ok();
}
