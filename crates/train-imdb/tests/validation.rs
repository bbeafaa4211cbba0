//! Every validation error of `train-imdb` (and `train-imdb predict`), from the command line:
//! exit code 1, one `error: ` paragraph naming the option or file and the problem, no panic,
//! and nothing written (no `--out` folder, no staged sibling). (Usage errors that clap
//! reports exit with code 2.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use test_support::os;

/// The reviews of a tiny aclImdb: 3 per split and label (6 training reviews).
fn reviews() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for split in ["train", "test"] {
        for (label, text) in [("pos", "a great movie"), ("neg", "an awful movie")] {
            for k in 0..3 {
                v.push((
                    format!("aclImdb/{split}/{label}/{k}_5.txt"),
                    format!("{text} {k}").into_bytes(),
                ));
            }
        }
    }
    v
}

/// `dir/imdb/aclImdb/...`; returns `dir/imdb`.
fn data(dir: &Path) -> PathBuf {
    let root = dir.join("imdb");
    for (name, text) in reviews() {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

/// The tiny aclImdb as `.tar.gz` bytes.
fn archive() -> Vec<u8> {
    let r = reviews();
    let files: Vec<(&str, Vec<u8>)> = r.iter().map(|(n, t)| (n.as_str(), t.clone())).collect();
    test_support::gzip(&test_support::tar_of(&files))
}

/// Runs train-imdb in `dir` (relative `--out out` unless `args` has one or is `predict`),
/// asserts the error convention, every needle, and that nothing under `dir` changed.
fn refused(dir: &Path, args: &[&OsStr], needles: &[&str]) -> String {
    let mut p = test_support::program!("train-imdb");
    p.current_dir(dir).args(args);
    if !args.contains(&os("--out")) && args.first() != Some(&os("predict")) {
        p.args(["--out", "out"]);
    }
    p.refused_in(dir, needles)
}

/// `--data <tiny aclImdb> --validation 2` plus `extra`.
fn with_data(extra: &[&str], needles: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let mut args = vec![os("--data"), d.as_os_str(), os("--validation"), os("2")];
    args.extend(extra.iter().map(|s| os(s)));
    refused(tmp.path(), &args, needles)
}

/// `--data <file written with bytes> --validation 2`.
fn with_archive(name: &str, bytes: &[u8], needles: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join(name);
    std::fs::write(&f, bytes).unwrap();
    let mut n = vec![f.to_str().unwrap()];
    n.extend_from_slice(needles);
    refused(
        tmp.path(),
        &[os("--data"), f.as_os_str(), os("--validation"), os("2")],
        &n,
    )
}

#[test]
fn epochs_zero_is_refused() {
    with_data(&["--epochs", "0"], &["--epochs", "at least 1"]);
}

#[test]
fn batch_size_zero_is_refused() {
    with_data(&["--batch-size", "0"], &["--batch-size", "at least 1"]);
}

#[test]
fn learning_rate_out_of_range_is_refused() {
    for v in ["0", "-0.001", "NaN"] {
        let arg = format!("--learning-rate={v}");
        with_data(&[&arg], &["--learning-rate", "> 0", &format!("got {v}")]);
    }
}

#[test]
fn dim_zero_is_refused() {
    with_data(&["--dim", "0"], &["--dim", "at least 1"]);
}

#[test]
fn vocab_size_zero_is_refused() {
    with_data(&["--vocab-size", "0"], &["--vocab-size", "at least 1"]);
}

#[test]
fn out_onto_a_foreign_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let out = tmp.path().join("home");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "precious").unwrap();
    refused(
        tmp.path(),
        &[
            os("--data"),
            d.as_os_str(),
            os("--validation"),
            os("2"),
            os("--out"),
            out.as_os_str(),
        ],
        &[out.to_str().unwrap(), "not written by tfhub-rs", "--force"],
    );
}

#[test]
fn out_onto_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let out = tmp.path().join("notes.txt");
    std::fs::write(&out, "keep").unwrap();
    refused(
        tmp.path(),
        &[
            os("--data"),
            d.as_os_str(),
            os("--validation"),
            os("2"),
            os("--out"),
            out.as_os_str(),
        ],
        &[out.to_str().unwrap(), "--force"],
    );
}

#[test]
fn missing_data_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("aclImdb_v1.tar.gz");
    refused(
        tmp.path(),
        &[os("--data"), d.as_os_str()],
        &[d.to_str().unwrap()],
    );
}

#[test]
fn no_data_offline_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    refused(
        tmp.path(),
        &[os("--epochs"), os("1")],
        &[
            "cannot download the IMDB dataset",
            "aclImdb_v1.tar.gz",
            "--data",
        ],
    );
}

#[test]
fn data_folder_that_is_not_aclimdb_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("photos");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("a.jpg"), "jpg").unwrap();
    refused(
        tmp.path(),
        &[os("--data"), d.as_os_str()],
        &[
            d.join("train/pos").to_str().unwrap(),
            "not an aclImdb folder?",
        ],
    );
}

/// A file that is no archive at all: named, without its binary content in the message.
#[test]
fn corrupt_archive_is_refused() {
    let junk: Vec<u8> = (0..200u32).map(|i| (i * 73 % 251) as u8).collect();
    let err = with_archive(
        "aclImdb_v1.tar.gz",
        &junk,
        &[
            "cannot read the IMDB archive",
            "not appear to be a valid tar or tar.gz archive",
        ],
    );
    assert!(
        !err.contains('\u{FFFD}') && !err.contains("HTTP 0"),
        "binary garbage or HTTP details in: {err}"
    );
}

#[test]
fn truncated_archive_is_refused() {
    let tgz = archive();
    with_archive(
        "aclImdb_v1.tar.gz",
        &tgz[..tgz.len() / 2],
        &["cannot read the IMDB archive"],
    );
}

#[test]
fn archive_without_reviews_is_refused() {
    let tgz = test_support::gzip(&test_support::tar_of(&[(
        "notes/readme.txt",
        b"no reviews here".to_vec(),
    )]));
    with_archive(
        "other.tar.gz",
        &tgz,
        &["found 0 train and 0 test reviews", "aclImdb layout"],
    );
}

#[test]
fn validation_too_large_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    for v in ["6", "7"] {
        refused(
            tmp.path(),
            &[os("--data"), d.as_os_str(), os("--validation"), os(v)],
            &[
                &format!("--validation {v}"),
                "leaves no training reviews",
                "the data has 6",
            ],
        );
    }
}

#[test]
fn missing_embedding_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("no_such_embedding");
    with_data(
        &["--embedding", m.to_str().unwrap()],
        &[m.to_str().unwrap(), "cannot open the embedding"],
    );
}

#[test]
fn embedding_folder_of_another_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let m = tmp.path().join("inception");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"kind": "inception_v3", "config": {}}"#,
    )
    .unwrap();
    refused(
        tmp.path(),
        &[
            os("--data"),
            d.as_os_str(),
            os("--validation"),
            os("2"),
            os("--embedding"),
            m.as_os_str(),
        ],
        &[
            m.to_str().unwrap(),
            "holds a `inception_v3` model, expected `text_embedding`",
        ],
    );
}

#[test]
fn predict_with_a_missing_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("no_such_model");
    refused(
        tmp.path(),
        &[os("predict"), os("--model"), m.as_os_str(), os("great")],
        &[m.to_str().unwrap(), "config.json"],
    );
}

#[test]
fn predict_with_a_model_of_another_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("embedding");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    refused(
        tmp.path(),
        &[os("predict"), os("--model"), m.as_os_str(), os("great")],
        &[
            m.to_str().unwrap(),
            "holds a `text_embedding` model, expected `imdb_classifier`",
        ],
    );
}

/// What clap refuses (a value that does not parse, exclusive options, a missing option) is a
/// usage error: exit code 2, `error: ` naming the option, no panic.
#[test]
fn option_values_that_do_not_parse_are_usage_errors() {
    for (args, needle) in [
        (vec!["--epochs", "many"], "--epochs"),
        (vec!["--validation=-1"], "--validation"),
        (vec!["--embedding", "e", "--from-scratch"], "--from-scratch"),
        (vec!["predict", "great"], "--model"),
    ] {
        let o = test_support::program!("train-imdb").args(&args).run();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `--validation 0` trains without a validation set: `metrics.json` has no validation
/// figures (null), not zeros from an empty set.
#[test]
fn validation_zero_reports_no_validation_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    test_support::program!("train-imdb")
        .current_dir(tmp.path())
        .arg("--data")
        .arg(&d)
        .args([
            "--from-scratch",
            "--validation",
            "0",
            "--epochs",
            "1",
            "--out",
            "out",
        ])
        .run_ok();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("out/metrics.json")).unwrap())
            .unwrap();
    let e = &m["epochs"][0];
    assert!(
        e["val_loss"].is_null() && e["val_accuracy"].is_null(),
        "{e}"
    );
    assert!(e["loss"].as_f64().unwrap() > 0.0, "{e}");
    assert_eq!(m["validation_examples"], 0);
}
