//! Every validation error of `stylize`, from the command line: exit code 1, one `error: `
//! paragraph naming the option or file and the problem, no panic, and nothing written into
//! the folder of the output. The networks are the bundled TF Lite pair (examples/stylize).
//! (Usage errors that clap reports exit with code 2.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use test_support::os;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/stylize")
}

fn predictor() -> PathBuf {
    examples().join("style_predict_quantized_256.tflite")
}

fn transfer() -> PathBuf {
    examples().join("style_transfer_f16_384.tflite")
}

fn picture() -> PathBuf {
    examples().join("grace_hopper.jpg")
}

/// Runs stylize with `args` in `dir`, asserts the error convention, every needle in the
/// message, and that nothing under `dir` changed; returns the message.
fn refused(dir: &Path, args: &[&OsStr], needles: &[&str]) -> String {
    test_support::program!("stylize")
        .current_dir(dir)
        .args(args)
        .refused_in(dir, needles)
}

/// A float32 `.npy` of `shape` holding `values` values (the header may promise more).
fn npy(path: &Path, shape: &str, values: usize) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for i in 0..values {
        b.extend_from_slice(&(i as f32 / 100.0).to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// `--predictor P --transfer T --content C --style S -o out.png` plus `extra`.
fn halves<'a>(c: &'a Path, s: &'a Path, extra: &[&'a OsStr]) -> Vec<&'a OsStr> {
    // The bundled networks live as long as the test binary; leak their paths for `'a`.
    let p: &'static Path = Box::leak(predictor().into_boxed_path());
    let t: &'static Path = Box::leak(transfer().into_boxed_path());
    let mut v = vec![
        os("--predictor"),
        p.as_os_str(),
        os("--transfer"),
        t.as_os_str(),
        os("--content"),
        c.as_os_str(),
        os("--style"),
        s.as_os_str(),
        os("-o"),
        os("out.png"),
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn strength_out_of_range_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = (picture(), picture());
    for v in ["1.5", "-0.1", "NaN"] {
        let arg = format!("--strength={v}");
        refused(
            tmp.path(),
            &halves(&c, &s, &[os(&arg)]),
            &["--strength", "[0, 1]", &format!("got {v}")],
        );
    }
}

#[test]
fn content_without_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    refused(
        tmp.path(),
        &[os("--content"), picture().as_os_str()],
        &["-o/--output"],
    );
}

#[test]
fn model_or_style_option_without_content_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for opt in [
        "--model",
        "--predictor",
        "--transfer",
        "--style",
        "--style-vector",
    ] {
        refused(
            tmp.path(),
            &[os(opt), picture().as_os_str(), os("-o"), os("out.png")],
            &["--content"],
        );
    }
}

#[test]
fn model_with_predictor_or_transfer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = (picture(), picture());
    let ex = examples();
    refused(
        tmp.path(),
        &halves(&c, &s, &[os("--model"), ex.as_os_str()]),
        &["--model", "--predictor/--transfer", "exclude each other"],
    );
}

#[test]
fn predictor_without_transfer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, c) = (predictor(), picture());
    refused(
        tmp.path(),
        &[
            os("--predictor"),
            p.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &["--predictor needs --transfer"],
    );
}

#[test]
fn transfer_alone_without_style_vector_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, c) = (transfer(), picture());
    refused(
        tmp.path(),
        &[
            os("--transfer"),
            t.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &["--transfer alone needs --style-vector"],
    );
}

#[test]
fn strength_below_one_without_a_predictor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vector = tmp.path().join("style.npy");
    npy(&vector, "(1, 100)", 100);
    let (t, c) = (transfer(), picture());
    refused(
        tmp.path(),
        &[
            os("--transfer"),
            t.as_os_str(),
            os("--style-vector"),
            vector.as_os_str(),
            os("--strength"),
            os("0.5"),
            os("--content"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &["--strength 0.5", "style predictor", "--predictor"],
    );
}

#[test]
fn no_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = picture();
    refused(
        tmp.path(),
        &[
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &["give --model, or both --predictor and --transfer"],
    );
}

#[test]
fn no_style_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ex, c) = (examples(), picture());
    refused(
        tmp.path(),
        &[
            os("--model"),
            ex.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &["--style IMAGE or --style-vector IN.npy"],
    );
}

/// Refused before anything runs, so `--save-style` is not written either.
#[test]
fn unknown_output_type_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ex, c) = (examples(), picture());
    refused(
        tmp.path(),
        &[
            os("--model"),
            ex.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("--save-style"),
            os("style.npy"),
            os("-o"),
            os("out.bmp"),
        ],
        &["out.bmp", "unknown output type", ".png, .jpg or .npy"],
    );
}

#[test]
fn output_onto_a_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("pictures.png")).unwrap();
    let (ex, c) = (examples(), picture());
    refused(
        tmp.path(),
        &[
            os("--model"),
            ex.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("pictures.png"),
        ],
        &["-o pictures.png", "is a folder"],
    );
}

#[test]
fn output_in_a_missing_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ex, c) = (examples(), picture());
    refused(
        tmp.path(),
        &[
            os("--model"),
            ex.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("no_such_folder/out.png"),
        ],
        &["-o no_such_folder/out.png", "does not exist"],
    );
}

#[test]
fn save_style_in_a_missing_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = (picture(), picture());
    refused(
        tmp.path(),
        &halves(
            &c,
            &s,
            &[os("--save-style"), os("no_such_folder/style.npy")],
        ),
        &["--save-style no_such_folder/style.npy", "does not exist"],
    );
}

#[test]
fn several_contents_into_a_file_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "keep").unwrap();
    let (ex, c) = (examples(), picture());
    refused(
        tmp.path(),
        &[
            os("--model"),
            ex.as_os_str(),
            os("--content"),
            c.as_os_str(),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("notes.txt"),
        ],
        &["-o notes.txt", "is a file", "several --content images"],
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "keep"
    );
}

fn with_style_vector(tmp: &Path, vector: &Path, needles: &[&str]) {
    let (t, c) = (transfer(), picture());
    refused(
        tmp,
        &[
            os("--transfer"),
            t.as_os_str(),
            os("--style-vector"),
            vector.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        needles,
    );
}

#[test]
fn style_vector_that_is_not_npy_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("style.npy");
    std::fs::write(&v, "0.1, 0.2, 0.3").unwrap();
    with_style_vector(tmp.path(), &v, &[v.to_str().unwrap(), "not a .npy file"]);
}

#[test]
fn truncated_style_vector_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("style.npy");
    npy(&v, "(1, 100)", 10);
    with_style_vector(
        tmp.path(),
        &v,
        &[v.to_str().unwrap(), "data holds 40 bytes", "[1, 100]"],
    );
}

#[test]
fn style_vector_of_the_wrong_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("style.npy");
    npy(&v, "(50,)", 50);
    with_style_vector(
        tmp.path(),
        &v,
        &[
            v.to_str().unwrap(),
            "--style-vector has shape [50]",
            "[1, 100] or [100]",
        ],
    );
}

#[test]
fn style_vector_of_the_wrong_shape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("style.npy");
    npy(&v, "(10, 10)", 100);
    with_style_vector(
        tmp.path(),
        &v,
        &[
            v.to_str().unwrap(),
            "--style-vector has shape [10, 10]",
            "[1, 100] or [100]",
        ],
    );
}

#[test]
fn missing_style_vector_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("no_such_style.npy");
    with_style_vector(tmp.path(), &v, &[v.to_str().unwrap(), "No such file"]);
}

#[test]
fn missing_content_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("no_such_content.jpg");
    let s = picture();
    refused(
        tmp.path(),
        &halves(&c, &s, &[]),
        &[c.to_str().unwrap(), "No such file"],
    );
}

#[test]
fn undecodable_content_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("content.jpg");
    std::fs::write(&c, b"not a jpeg").unwrap();
    let s = picture();
    refused(
        tmp.path(),
        &halves(&c, &s, &[]),
        &[c.to_str().unwrap(), "cannot decode image"],
    );
}

#[test]
fn undecodable_style_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("style.png");
    std::fs::write(&s, b"not a png").unwrap();
    let c = picture();
    refused(
        tmp.path(),
        &halves(&c, &s, &[]),
        &[s.to_str().unwrap(), "cannot decode image"],
    );
}

#[test]
fn content_too_small_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (c, s) = (picture(), picture());
    refused(
        tmp.path(),
        &halves(&c, &s, &[os("--content-size"), os("4")]),
        &[
            "grace_hopper.jpg",
            "4x4 after preprocessing",
            "at least 5x5",
        ],
    );
}

#[test]
fn missing_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("no_such_model");
    let c = picture();
    refused(
        tmp.path(),
        &[
            os("--model"),
            m.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &[m.to_str().unwrap()],
    );
}

#[test]
fn folder_that_holds_no_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("empty");
    std::fs::create_dir(&m).unwrap();
    let c = picture();
    refused(
        tmp.path(),
        &[
            os("--model"),
            m.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &[m.to_str().unwrap(), "neither a converted model folder"],
    );
}

#[test]
fn converted_folder_of_another_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("embedding");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    let c = picture();
    refused(
        tmp.path(),
        &[
            os("--model"),
            m.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &[
            m.to_str().unwrap(),
            "holds a `text_embedding` model, expected `stylization`",
        ],
    );
}

#[test]
fn predictor_that_is_a_transfer_network_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, c) = (transfer(), picture());
    refused(
        tmp.path(),
        &[
            os("--predictor"),
            t.as_os_str(),
            os("--transfer"),
            t.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &[
            "style_transfer_f16_384.tflite",
            "is a style transfer network, expected a style predictor",
        ],
    );
}

#[test]
fn transfer_that_is_a_predictor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (p, c) = (predictor(), picture());
    refused(
        tmp.path(),
        &[
            os("--predictor"),
            p.as_os_str(),
            os("--transfer"),
            p.as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &[
            "style_predict_quantized_256.tflite",
            "is a style predictor, expected a style transfer network",
        ],
    );
}

#[test]
fn corrupt_tflite_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("fake.tflite");
    std::fs::write(&fake, b"xxxxxxxxTFL3 truncated").unwrap();
    let c = picture();
    refused(
        tmp.path(),
        &[
            os("--predictor"),
            fake.as_os_str(),
            os("--transfer"),
            transfer().as_os_str(),
            os("--content"),
            c.as_os_str(),
            os("--style"),
            c.as_os_str(),
            os("-o"),
            os("out.png"),
        ],
        &[fake.to_str().unwrap()],
    );
}

/// What clap refuses (a value that does not parse, an unknown option) is a usage error: exit
/// code 2, `error: ` naming the option, no panic.
#[test]
fn option_values_that_do_not_parse_are_usage_errors() {
    for (args, needle) in [
        (
            vec!["--content", "c.jpg", "-o", "o.png", "--strength", "strong"],
            "--strength",
        ),
        (
            vec!["--content", "c.jpg", "-o", "o.png", "--content-size=-1"],
            "--content-size",
        ),
        (
            vec!["--content", "c.jpg", "-o", "o.png", "--backend", "tpu"],
            "--backend",
        ),
        (vec!["--colour", "red"], "--colour"),
    ] {
        let o = test_support::program!("stylize").args(&args).run();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
