//! The `classify` CLI on the small Inception-v3 fixture (converted in the test from the
//! TensorFlow variables): JSON shape, labels.txt, --features, error messages.

use test_support as common;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Converts tests/fixtures/inception_v3/small into a model folder under a temp dir.
fn small_model(tag: &str) -> PathBuf {
    let sm =
        savedmodel::read(&repo().join("tests/fixtures/inception_v3/small/saved_model")).unwrap();
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, "fixture").unwrap();
    let conv = convert::kinds::inception_v3::convert(&src).unwrap();
    let dir = std::env::temp_dir().join(format!("tfhub-rs-classify-{tag}-{}", std::process::id()));
    convert::write::write_model(&dir, &conv, "fixture", &[]).unwrap();
    dir
}

fn shared_images() -> Option<Vec<PathBuf>> {
    let dir = repo().join("../shared/data/images");
    let imgs: Vec<PathBuf> = ["grace_hopper.jpg", "YellowLabradorLooking_new.jpg"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    if imgs.iter().all(|p| p.is_file()) {
        Some(imgs)
    } else {
        eprintln!("SKIPPED: {} not found", dir.display());
        None
    }
}

/// A float32 `.npy` written by `classify --features`: (header, values).
fn read_npy(path: &Path) -> (String, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen])
        .unwrap()
        .to_string();
    let vals = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (header, vals)
}

/// The classify binary; SavedModels are converted into a cache under the test target folder
/// (never the user's).
fn classify(args: &[&std::ffi::OsStr]) -> std::process::Output {
    test_support::program!("classify")
        .args(args)
        .env(
            "TFHUB_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("tfhub-cache"),
        )
        .output()
        .unwrap()
}

#[test]
fn json_output_has_one_entry_per_image_with_sorted_top_k_and_own_labels() {
    let Some(images) = shared_images() else {
        return;
    };
    let model = small_model("json");
    let names: Vec<String> = (0..11).map(|i| format!("label {i}")).collect();
    std::fs::write(model.join("labels.txt"), names.join("\n")).unwrap();
    let npy = model.join("out.npy");
    let out = classify(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--json".as_ref(),
        "--top".as_ref(),
        "3".as_ref(),
        "--batch".as_ref(),
        "1".as_ref(),
        "--features".as_ref(),
        npy.as_os_str(),
        images[0].as_os_str(),
        images[1].as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = doc.as_array().unwrap();
    assert_eq!(list.len(), 2);
    // --features: float32 [2, 11] logits; each printed entry is the top 3 of the softmax of its
    // row, in order, with its own probability and label.
    let (header, vals) = read_npy(&npy);
    assert!(header.contains("'shape': (2, 11)"), "{header}");
    assert_eq!(vals.len(), 22);
    for ((entry, img), row) in list.iter().zip(&images).zip(vals.chunks(11)) {
        assert_eq!(entry["file"], img.display().to_string());
        let m = row.iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = row.iter().map(|v| ((v - m) as f64).exp()).sum();
        let softmax: Vec<f64> = row.iter().map(|v| ((v - m) as f64).exp() / z).collect();
        let mut order: Vec<usize> = (0..11).collect();
        order.sort_by(|&a, &b| softmax[b].total_cmp(&softmax[a]));
        let top = entry["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        for (t, &want) in top.iter().zip(&order) {
            let i = t["index"].as_u64().unwrap() as usize;
            assert_eq!(i, want, "{entry}");
            let p = t["probability"].as_f64().unwrap();
            assert!((p - softmax[i]).abs() < 1e-6, "{p} vs {}", softmax[i]);
            assert_eq!(t["label"], format!("label {i}"));
        }
    }
    let _ = std::fs::remove_dir_all(model);
}

#[test]
fn batching_does_not_change_results() {
    let Some(images) = shared_images() else {
        return;
    };
    let model = small_model("batch");
    let run = |batch: &str| {
        let out = classify(&[
            "--model".as_ref(),
            model.as_os_str(),
            "--json".as_ref(),
            "--batch".as_ref(),
            batch.as_ref(),
            images[0].as_os_str(),
            images[1].as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (a, b) = (run("1"), run("2"));
    for k in 0..2 {
        assert_eq!(a[k]["top"][0]["index"], b[k]["top"][0]["index"]);
        let (pa, pb) = (
            a[k]["top"][0]["probability"].as_f64().unwrap(),
            b[k]["top"][0]["probability"].as_f64().unwrap(),
        );
        assert!((pa - pb).abs() < 1e-5);
        // 11 classes without labels.txt: generic names.
        assert!(a[k]["top"][0]["label"]
            .as_str()
            .unwrap()
            .starts_with("class_"));
    }
    let _ = std::fs::remove_dir_all(model);
}

#[test]
fn undecodable_image_is_named_in_the_error() {
    let model = small_model("bad");
    let bad = model.join("not_an_image.jpg");
    std::fs::write(&bad, b"this is not a jpeg").unwrap();
    let out = classify(&["--model".as_ref(), model.as_os_str(), bad.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not_an_image.jpg") && err.contains("image"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = classify(&[
        "--model".as_ref(),
        "/nonexistent/model".as_ref(),
        bad.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"));
    let _ = std::fs::remove_dir_all(model);
}

#[test]
fn a_savedmodel_folder_or_handle_is_converted_once_into_the_cache() {
    let Some(images) = shared_images() else {
        return;
    };
    let model = small_model("sm");
    let sm = repo().join("tests/fixtures/inception_v3/small/saved_model");
    let cache = model.join("cache");
    let (_server, url) = common::serve_folder(&sm, "/m/inception.tar.gz");
    let run = |m: &std::ffi::OsStr, out: &Path| {
        test_support::program!("classify")
            .arg("--model")
            .arg(m)
            .arg("--features")
            .arg(out)
            .arg(&images[0])
            .cache(&cache)
            .online()
            .run_ok()
            .1
    };
    let converted = |stderr: &str| {
        (
            stderr.contains("converted once into"),
            stderr.contains("using the conversion cached at"),
        )
    };
    let outs: Vec<PathBuf> = (0..4).map(|i| model.join(format!("{i}.npy"))).collect();
    // The converted folder itself: no conversion, nothing to say.
    assert_eq!(converted(&run(model.as_os_str(), &outs[0])), (false, false));
    // The SavedModel: converted the first time, found in the cache the second.
    let first = run(sm.as_os_str(), &outs[1]);
    assert_eq!(converted(&first), (true, false), "{first}");
    // This SavedModel holds variables only (no signature, no `__call__`): the hand-written
    // model runs unconfirmed by the graph, and says so, on every run.
    assert!(
        first.contains("recognised by its variables; its graph cannot run here"),
        "{first}"
    );
    let second = run(sm.as_os_str(), &outs[2]);
    assert_eq!(converted(&second), (false, true), "{second}");
    assert!(second.contains("its graph cannot run here"), "{second}");
    // The same SavedModel as a handle: downloaded, and its conversion found by content.
    let third = run(url.as_ref(), &outs[3]);
    assert_eq!(converted(&third), (false, true), "{third}");
    let conversions: Vec<_> = std::fs::read_dir(cache.join("converted"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(conversions.len(), 1, "{conversions:?}");
    for o in &outs[1..] {
        assert_eq!(std::fs::read(&outs[0]).unwrap(), std::fs::read(o).unwrap());
    }
    let _ = std::fs::remove_dir_all(model);
}

/// `--engine cpu` (models::cpu, the default on flex) and `--engine burn` (the Burn module)
/// give the same logits; an unknown engine is refused.
#[test]
fn cpu_kernels_and_burn_engines_agree() {
    let Some(images) = shared_images() else {
        return;
    };
    let model = small_model("engines");
    let run = |engine: &str| {
        let npy = model.join(format!("{engine}.npy"));
        let out = classify(&[
            "--model".as_ref(),
            model.as_os_str(),
            "--engine".as_ref(),
            engine.as_ref(),
            "--features".as_ref(),
            npy.as_os_str(),
            images[0].as_os_str(),
            images[1].as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        read_npy(&npy).1
    };
    let (cpu, burn) = (run("cpu"), run("burn"));
    assert_eq!(cpu.len(), 22);
    let scale = burn.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = cpu
        .iter()
        .zip(&burn)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "engines differ by {diff} (scale {scale})"
    );
    let out = classify(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--engine".as_ref(),
        "fast".as_ref(),
        images[0].as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fast"));
    let _ = std::fs::remove_dir_all(model);
}

/// A TF2 SavedModel that is not Inception-v3 (the small Keras MobileNetV2 of the graph
/// executor's fixtures, 64x64 input, 11 logits): classify runs its graph.
#[test]
fn any_tf2_image_savedmodel_runs_through_the_graph_executor() {
    let Some(images) = shared_images() else {
        return;
    };
    let model = repo().join("tests/fixtures/tfgraph/mobilenet_v2_small/saved_model");
    let out = classify(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--json".as_ref(),
        "--top".as_ref(),
        "3".as_ref(),
        images[0].as_os_str(),
        images[1].as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = doc.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for entry in list {
        let top = entry["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let p: Vec<f64> = top
            .iter()
            .map(|t| t["probability"].as_f64().unwrap())
            .collect();
        assert!(
            p[0] >= p[1] && p[1] >= p[2] && p[0] < 1.0 && p[2] > 0.0,
            "{p:?}"
        );
        for t in top {
            let i = t["index"].as_u64().unwrap();
            assert!(i < 11);
            assert_eq!(t["label"], format!("class_{i}"));
        }
    }

    // --features: the 11 logits of each image; the model's fixed 64x64 input refuses --size 32.
    let npy = std::env::temp_dir().join(format!(
        "tfhub-rs-graph-features-{}.npy",
        std::process::id()
    ));
    let out = classify(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--features".as_ref(),
        npy.as_os_str(),
        images[0].as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, vals) = read_npy(&npy);
    assert!(header.contains("(1, 11)"), "{header}");
    assert!(vals.iter().any(|v| v.abs() > 1e-3));
    let _ = std::fs::remove_file(&npy);
    let out = classify(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--size".as_ref(),
        "32".as_ref(),
        images[0].as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("64x64") && err.contains("--size 32"), "{err}");
}

/// A SavedModel with an op the executor lacks is refused before anything runs, naming the op.
#[test]
fn unsupported_ops_are_named_before_running() {
    let Some(images) = shared_images() else {
        return;
    };
    let model = repo().join("tests/fixtures/tfgraph/op_resize_antialias/saved_model");
    if !model.is_dir() {
        panic!("fixture {} is missing", model.display());
    }
    let out = classify(&["--model".as_ref(), model.as_os_str(), images[0].as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        (err.contains("ResizeArea") || err.contains("ScaleAndTranslate"))
            && err.contains("unsupported"),
        "{err}"
    );
}

/// A SavedModel with Inception-v3's variables runs on the hand-written model only when that
/// computes what the SavedModel's graph computes: the TF-Slim fixture does; a copy whose
/// preprocessing constant is changed (`x * 2.5 - 1`) runs its own graph, with a notice.
#[test]
fn a_look_alike_inception_savedmodel_runs_its_own_graph() {
    let tmp = std::env::temp_dir().join(format!("tfhub-rs-lookalike-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let png = tmp.join("gradient.png");
    image::RgbImage::from_fn(120, 100, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
    })
    .save(&png)
    .unwrap();
    let real = repo().join("tests/fixtures/tfgraph/slim_inception_v3_small/saved_model");
    let fake = tmp.join("lookalike");
    assert!(tfhub::testing::with_constant_changed(&real, &fake, 2.0, 2.5).unwrap() > 0);
    let notice = "does not compute what this SavedModel's graph computes";
    for (model, expect_notice) in [(&real, false), (&fake, true)] {
        let out = classify(&[
            "--model".as_ref(),
            model.as_os_str(),
            "--json".as_ref(),
            png.as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", model.display());
        assert_eq!(
            stderr.contains(notice),
            expect_notice,
            "{}: {stderr}",
            model.display()
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc.as_array().unwrap().len(), 1);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `--model` as a handle: a SavedModel archive served on loopback is downloaded into the
/// cache once and run through the graph executor.
#[test]
fn a_handle_is_downloaded_and_run_through_the_graph() {
    let tmp = std::env::temp_dir().join(format!("tfhub-rs-handle-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let png = tmp.join("gradient.png");
    image::RgbImage::from_fn(90, 70, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, 40])
    })
    .save(&png)
    .unwrap();
    let dir = repo().join("tests/fixtures/tfgraph/mobilenet_v2_small/saved_model");
    let files: Vec<(&str, Vec<u8>)> = [
        "saved_model.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    ]
    .into_iter()
    .map(|rel| (rel, std::fs::read(dir.join(rel)).unwrap()))
    .collect();
    let tgz = common::gzip(&common::tar_of(&files));
    let server = common::Server::start(|_| {
        vec![(
            "/m/mobilenet.tar.gz".to_string(),
            common::Reply::Ok {
                body: tgz,
                content_type: "application/gzip",
            },
        )]
    });
    let url = format!("{}/m/mobilenet.tar.gz", server.base);
    let run = || {
        test_support::program!("classify")
            .args(["--model", &url, "--json", png.to_str().unwrap()])
            .env("TFHUB_CACHE_DIR", tmp.join("cache"))
            .env_remove("TFHUB_OFFLINE")
            .output()
            .unwrap()
    };
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(doc[0]["top"].as_array().unwrap().len(), 5);
    let second = run();
    assert!(second.status.success());
    assert_eq!(first.stdout, second.stdout);
    assert_eq!(
        server.hits("/m/mobilenet.tar.gz"),
        1,
        "the second run must use the cache"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The programs' shared conventions (crate `program`): `--backend`/`--engine` are value enums
/// whose errors list the choices; a failure is one `error: ` paragraph and exit code 1.
#[test]
fn backend_engine_choices_and_the_error_convention() {
    for (flag, value, choices) in [
        ("--backend", "tpu", "flex, ndarray, wgpu"),
        ("--engine", "fast", "cpu, burn"),
    ] {
        let out = classify(&[
            "--model".as_ref(),
            "m".as_ref(),
            flag.as_ref(),
            value.as_ref(),
            "x.jpg".as_ref(),
        ]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(value) && err.contains(choices), "{err}");
    }
    let out = classify(&[
        "--model".as_ref(),
        "/nonexistent/model".as_ref(),
        "--backend".as_ref(),
        "cpu".as_ref(),
        "x.jpg".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("/nonexistent/model"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
