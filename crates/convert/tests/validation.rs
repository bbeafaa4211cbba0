//! Every validation error of `convert` (and `convert inspect|search|show`), from the command
//! line: exit code 1, one `error: ` paragraph naming the option or file and the problem, no
//! panic, and nothing written in the current folder (no `weights/`, no `--out`). (Usage errors
//! that clap reports exit with code 2.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use test_support::os;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn savedmodel(name: &str) -> PathBuf {
    repo().join("tests/fixtures/savedmodel").join(name)
}

/// Runs convert in `dir` with `args`, asserts the error convention, every needle, and that
/// nothing under `dir` changed; returns the message.
fn refused(dir: &Path, args: &[&OsStr], needles: &[&str]) -> String {
    test_support::program!("convert")
        .current_dir(dir)
        .args(args)
        .refused_in(dir, needles)
}

/// The files of the tf2 SavedModel fixture, as (relative name, bytes).
fn tf2_files() -> Vec<(String, Vec<u8>)> {
    let root = savedmodel("tf2");
    let mut out = Vec::new();
    let mut todo = vec![root.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
                if rel != "expected.json" {
                    out.push((rel, std::fs::read(&p).unwrap()));
                }
            }
        }
    }
    out.sort();
    out
}

fn tgz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    test_support::gzip(&test_support::tar_of(&files))
}

#[test]
fn name_that_is_not_a_plain_folder_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sm = savedmodel("tf2");
    for name in ["a/b", "..", ".", "", "a\\b"] {
        refused(
            tmp.path(),
            &[sm.as_os_str(), os("--raw"), os("--name"), os(name)],
            &[&format!("--name `{name}`"), "plain folder name"],
        );
    }
}

#[test]
fn out_onto_a_foreign_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("photos");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("holiday.jpg"), "jpg").unwrap();
    refused(
        tmp.path(),
        &[
            savedmodel("tf2").as_os_str(),
            os("--raw"),
            os("--out"),
            out.as_os_str(),
        ],
        &[out.to_str().unwrap(), "not written by tfhub-rs", "--force"],
    );
}

#[test]
fn out_onto_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("notes.txt");
    std::fs::write(&out, "keep").unwrap();
    refused(
        tmp.path(),
        &[
            savedmodel("tf2").as_os_str(),
            os("--raw"),
            os("--out"),
            out.as_os_str(),
        ],
        &[out.to_str().unwrap(), "--force"],
    );
}

#[test]
fn missing_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("no_such_model");
    refused(
        tmp.path(),
        &[m.as_os_str(), os("--raw")],
        &[m.to_str().unwrap(), "no such file or folder"],
    );
}

#[test]
fn handle_not_in_the_cache_is_refused_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let handle = "https://tfhub.dev/google/no-such-model/1";
    refused(
        tmp.path(),
        &[os(handle)],
        &[handle, "not in the cache", "offline"],
    );
}

#[test]
fn raw_with_a_tflite_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = repo().join("examples/stylize/style_predict_quantized_256.tflite");
    refused(
        tmp.path(),
        &[f.as_os_str(), os("--raw")],
        &[
            "style_predict_quantized_256.tflite",
            "--raw is for SavedModels",
        ],
    );
}

#[test]
fn folder_that_is_not_a_savedmodel_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("empty");
    std::fs::create_dir(&d).unwrap();
    refused(
        tmp.path(),
        &[d.as_os_str(), os("--raw")],
        &[d.to_str().unwrap(), "not a SavedModel folder"],
    );
}

/// A local archive needs no network: offline (as every test runs) it is read, and a corrupt
/// one is named without its binary content.
#[test]
fn corrupt_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("model.tar.gz");
    let junk: Vec<u8> = (0..200u32).map(|i| (i * 73 % 251) as u8).collect();
    std::fs::write(&f, junk).unwrap();
    let err = refused(
        tmp.path(),
        &[f.as_os_str(), os("--raw")],
        &[
            f.to_str().unwrap(),
            "not appear to be a valid tar or tar.gz archive",
        ],
    );
    assert!(
        !err.contains("offline") && !err.contains('\u{FFFD}'),
        "{err}"
    );
}

#[test]
fn truncated_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("model.tar.gz");
    let bytes = tgz(&tf2_files());
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let err = refused(
        tmp.path(),
        &[f.as_os_str(), os("--raw")],
        &[f.to_str().unwrap()],
    );
    assert!(!err.contains("offline"), "{err}");
}

#[test]
fn archive_without_a_savedmodel_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("model.tar.gz");
    std::fs::write(
        &f,
        tgz(&[("README.md".to_string(), b"no model here".to_vec())]),
    )
    .unwrap();
    let err = refused(
        tmp.path(),
        &[f.as_os_str(), os("--raw")],
        &[f.to_str().unwrap(), "saved_model.pb"],
    );
    assert!(!err.contains("offline"), "{err}");
}

#[test]
fn corrupt_tflite_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("fake.tflite");
    std::fs::write(&f, "not a flatbuffer").unwrap();
    refused(
        tmp.path(),
        &[f.as_os_str()],
        &[f.to_str().unwrap(), "not a valid TF Lite file", "TFL3"],
    );
}

#[test]
fn unrecognised_model_without_raw_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    refused(
        tmp.path(),
        &[savedmodel("tf1").as_os_str()],
        &["tf1", "unrecognised model", "--raw"],
    );
}

#[test]
fn inspect_of_a_missing_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("no_such_model");
    refused(
        tmp.path(),
        &[os("inspect"), m.as_os_str()],
        &[m.to_str().unwrap(), "no such file or folder"],
    );
}

#[test]
fn inspect_of_a_folder_that_is_not_a_savedmodel_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("empty");
    std::fs::create_dir(&d).unwrap();
    refused(
        tmp.path(),
        &[os("inspect"), d.as_os_str()],
        &[d.to_str().unwrap(), "not a SavedModel folder"],
    );
}

#[test]
fn inspect_of_a_corrupt_tflite_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("fake.tflite");
    std::fs::write(&f, "not a flatbuffer").unwrap();
    refused(
        tmp.path(),
        &[os("inspect"), f.as_os_str()],
        &[
            f.to_str().unwrap(),
            "cannot inspect the TF Lite model",
            "TFL3",
        ],
    );
}

#[test]
fn search_with_an_unknown_filter_value_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (opt, value, known) in [
        ("--format", "onnx", "saved_model_2"),
        ("--task", "classification", "image-classification"),
        ("--publisher", "nobody-at-all", "google"),
        ("--architecture", "no-such-net", "bert"),
    ] {
        let field = opt.trim_start_matches("--");
        refused(
            tmp.path(),
            &[os("search"), os(opt), os(value)],
            &[&format!("unknown {field} `{value}`"), known],
        );
    }
}

#[test]
fn show_of_an_unknown_handle_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    refused(
        tmp.path(),
        &[os("show"), os("google/no-such-model/3")],
        &[
            "`google/no-such-model/3` is not in the catalogue",
            "convert search",
        ],
    );
}

/// What clap refuses (a value that does not parse, a missing argument) is a usage error: exit
/// code 2, `error: ` naming the option, no panic.
#[test]
fn option_values_that_do_not_parse_are_usage_errors() {
    for (args, needle) in [
        (vec![], "<HANDLE>"),
        (vec!["inspect"], "<HANDLE>"),
        (vec!["search", "--limit", "some"], "--limit"),
        (vec!["m", "--colour"], "--colour"),
    ] {
        let o = test_support::program!("convert").args(&args).run();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
