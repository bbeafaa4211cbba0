//! Every validation error of `embed`, from the command line: exit code 1, one `error: `
//! paragraph naming the option or file and the problem, no panic, and no `-o` file written.
//! (Usage errors that clap reports exit with code 2.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use test_support::os;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The TF2 text-embedding SavedModel fixture (converted when opened: only the errors found
/// before that use it).
fn savedmodel() -> PathBuf {
    fixtures().join("text_embedding/tf2_f32_oov1")
}

/// Runs embed in `dir` with `args`, asserts the error convention and every needle, and that
/// nothing under `dir` changed; returns the message.
fn refused(dir: &Path, args: &[&OsStr], needles: &[&str]) -> String {
    test_support::program!("embed")
        .current_dir(dir)
        .args(args)
        .refused_in(dir, needles)
}

/// `dir/in.txt` with two sentences.
fn input(dir: &Path) -> PathBuf {
    let p = dir.join("in.txt");
    std::fs::write(&p, "a sentence\nanother one\n").unwrap();
    p
}

fn with_model(dir: &Path, model: &Path, needles: &[&str]) {
    let inp = input(dir);
    refused(
        dir,
        &[
            os("--model"),
            model.as_os_str(),
            os("--input"),
            inp.as_os_str(),
            os("-o"),
            os("out.npy"),
        ],
        needles,
    );
}

#[test]
fn batch_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = input(tmp.path());
    refused(
        tmp.path(),
        &[
            os("--model"),
            savedmodel().as_os_str(),
            os("--input"),
            inp.as_os_str(),
            os("--batch"),
            os("0"),
            os("-o"),
            os("out.npy"),
        ],
        &["--batch", "at least 1"],
    );
}

#[test]
fn missing_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            savedmodel().as_os_str(),
            os("--input"),
            os("no_such_input.txt"),
            os("-o"),
            os("out.npy"),
        ],
        &["--input no_such_input.txt", "cannot read", "No such file"],
    );
}

#[test]
fn input_that_is_a_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sentences")).unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            savedmodel().as_os_str(),
            os("--input"),
            os("sentences"),
            os("-o"),
            os("out.npy"),
        ],
        &["--input sentences", "cannot read", "directory"],
    );
}

#[test]
fn output_in_a_missing_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = input(tmp.path());
    refused(
        tmp.path(),
        &[
            os("--model"),
            savedmodel().as_os_str(),
            os("--input"),
            inp.as_os_str(),
            os("-o"),
            os("no_such_folder/out.npy"),
        ],
        &["-o no_such_folder/out.npy", "does not exist"],
    );
}

#[test]
fn output_onto_a_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = input(tmp.path());
    std::fs::create_dir(tmp.path().join("out.npy")).unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            savedmodel().as_os_str(),
            os("--input"),
            inp.as_os_str(),
            os("-o"),
            os("out.npy"),
        ],
        &["-o out.npy", "is a folder"],
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("out.npy"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn missing_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("no_such_model");
    with_model(
        tmp.path(),
        &m,
        &[m.to_str().unwrap(), "cannot open the model"],
    );
}

#[test]
fn folder_that_holds_no_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("empty");
    std::fs::create_dir(&m).unwrap();
    with_model(
        tmp.path(),
        &m,
        &[m.to_str().unwrap(), "neither a converted model folder"],
    );
}

#[test]
fn converted_folder_of_another_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("stylization");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"kind": "stylization", "config": {}}"#,
    )
    .unwrap();
    with_model(
        tmp.path(),
        &m,
        &[
            m.to_str().unwrap(),
            "holds a `stylization` model, expected `text_embedding`",
        ],
    );
}

#[test]
fn malformed_model_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("broken");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"kind": "text_embedding", "config": {"dim": 4}}"#,
    )
    .unwrap();
    with_model(
        tmp.path(),
        &m,
        &[
            m.join("config.json").to_str().unwrap(),
            "invalid config.json",
            "vocab_size",
        ],
    );
}

#[test]
fn tflite_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/stylize/style_predict_quantized_256.tflite");
    with_model(
        tmp.path(),
        &m,
        &[
            "style_predict_quantized_256.tflite",
            "a TF Lite file, expected a `text_embedding` model",
        ],
    );
}

#[test]
fn savedmodel_of_another_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = fixtures().join("savedmodel/tf2");
    with_model(
        tmp.path(),
        &m,
        &[
            m.to_str().unwrap(),
            "does not take one batch of strings (is it a text model?)",
        ],
    );
}

#[test]
fn handle_not_in_the_cache_is_refused_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let inp = input(tmp.path());
    let handle = "https://tfhub.dev/google/no-such-embedding/1";
    refused(
        tmp.path(),
        &[
            os("--model"),
            os(handle),
            os("--input"),
            inp.as_os_str(),
            os("-o"),
            os("out.npy"),
        ],
        &[handle, "not in the cache", "offline"],
    );
}

/// What clap refuses (a value that does not parse, a missing option) is a usage error: exit
/// code 2, `error: ` naming the option, no panic.
#[test]
fn option_values_that_do_not_parse_are_usage_errors() {
    for (args, needle) in [
        (vec!["--model", "m", "--batch", "all"], "--batch"),
        (vec!["--model", "m", "--backend", "tpu"], "--backend"),
        (vec!["--input", "in.txt"], "--model"),
    ] {
        let o = test_support::program!("embed").args(&args).run();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
