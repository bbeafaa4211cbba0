//! `convert search` and `convert show` on the embedded catalogue (offline; no model files).

use serde_json::Value;
use std::process::Output;

fn convert(args: &[&str]) -> Output {
    test_support::program!("convert")
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("TFHUB_OFFLINE", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(args: &[&str]) -> Value {
    let out = convert(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn search_table_has_the_runs_here_column() {
    let out = convert(&["search", "inception_v3", "--task", "image-classification"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let mut lines = s.lines();
    let header = lines.next().unwrap();
    for col in ["HANDLE", "TASK", "FORMAT", "ARCHITECTURE", "RUNS HERE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = s
        .lines()
        .find(|l| l.starts_with("google/imagenet/inception_v3/classification/5 "))
        .unwrap_or_else(|| panic!("no row for classification/5 in\n{s}"));
    assert!(
        row.contains("saved_model_2") && row.ends_with("hand-written"),
        "{row}"
    );
    let tf1 = s
        .lines()
        .find(|l| l.starts_with("google/imagenet/inception_v3/classification/1 "))
        .unwrap();
    assert!(tf1.contains("not yet: TF1 hub format"), "{tf1}");
    assert!(s.lines().last().unwrap().contains("handles"), "{s}");
}

#[test]
fn search_json_filters_combine() {
    let all = json(&["search", "--json", "--task", "image-feature-vector"]);
    let narrow = json(&[
        "search",
        "--json",
        "--task",
        "image-feature-vector",
        "--format",
        "tf2",
        "--publisher",
        "google",
        "--architecture",
        "mobilenet-v2",
        "--fine-tunable",
        "100",
    ]);
    let (all, narrow) = (all.as_array().unwrap(), narrow.as_array().unwrap());
    assert!(!narrow.is_empty() && narrow.len() < all.len());
    for m in narrow {
        for key in [
            "handle",
            "task",
            "publisher",
            "format",
            "architecture",
            "runs_here",
        ] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
        assert_eq!(m["format"], "saved_model_2");
        assert_eq!(m["publisher"], "google");
        assert_eq!(m["fine_tunable"], true);
        assert!(m["task"]
            .as_array()
            .unwrap()
            .contains(&"image-feature-vector".into()));
        assert!(m["architecture"]
            .as_array()
            .unwrap()
            .contains(&"mobilenet-v2".into()));
        assert!(m["handle"].as_str().unwrap().contains("100"));
        assert!(["hand-written", "graph", "not yet"].contains(&m["runs_here"].as_str().unwrap()));
    }
    let limited = json(&["search", "--json", "--limit", "3"]);
    assert_eq!(limited.as_array().unwrap().len(), 3);
    // --runs keeps only what runs here.
    let runs = json(&["search", "--json", "--runs", "--publisher", "google"]);
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["runs_here"] != "not yet"));
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["handle"] == "google/tf2-preview/gnews-swivel-20dim/1"));
}

#[test]
fn search_rejects_unknown_filter_values() {
    let out = convert(&["search", "--format", "onnx"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown format `onnx`") && err.contains("saved_model_2"),
        "{err}"
    );
    let out = convert(&["search", "--task", "classification"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown task `classification`") && err.contains("image-classification"),
        "{err}"
    );
}

#[test]
fn show_prints_metadata_input_and_commands() {
    let out = convert(&[
        "show",
        "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for want in [
        "google/imagenet/inception_v3/feature_vector/5",
        "saved_model_2 (TF2 SavedModel)",
        "inception-v3",
        "hand-written",
        "[B, 299, 299, 3] float32 RGB in [0, 1]",
        "classify --model https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5 --features",
        "finetune --model https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5 --data DIR",
        "InceptionV3::load(",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // Versionless handle: the newest version; JSON carries the same.
    let v = json(&["show", "google/tf2-preview/gnews-swivel-20dim", "--json"]);
    assert_eq!(v["handle"], "google/tf2-preview/gnews-swivel-20dim/1");
    assert_eq!(v["runs_here"], "hand-written");
    assert!(v["input"].as_str().unwrap().contains("strings"));
    assert!(v["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c.as_str().unwrap().starts_with("embed --model ")));
    // A TF Lite Magenta half names its partner.
    let out = convert(&[
        "show",
        "google/lite-model/magenta/arbitrary-image-stylization-v1-256/int8/prediction/1",
    ]);
    let s = text(&out.stdout);
    assert!(s.contains("--transfer https://tfhub.dev/google/lite-model/magenta/arbitrary-image-stylization-v1-256/int8/transfer/1"), "{s}");
}

#[test]
fn show_unknown_handle_is_a_clear_error() {
    let out = convert(&["show", "google/no-such-model/3"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(
        err.contains("`google/no-such-model/3` is not in the catalogue"),
        "{err}"
    );
    assert!(err.contains("convert search"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one paragraph: {err}");
    let out = convert(&[
        "show",
        "https://www.kaggle.com/models/google/inception-v3/TensorFlow2/classification/2",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("google/imagenet/inception_v3/classification"),
        "suggests the tfhub.dev handle: {err}"
    );
}
