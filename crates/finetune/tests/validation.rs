//! Every validation error of `finetune`, from the command line: exit code 1, one `error: `
//! paragraph naming the option or file and the problem, no panic, and nothing written (no
//! `--out` folder, no staged sibling). (Usage errors that clap reports exit with code 2.)

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use test_support::os;

/// `dir/data`: two classes of two small PNGs each.
fn data(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    for (c, name) in ["red", "blue"].iter().enumerate() {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..2u32 {
            image::RgbImage::from_fn(80, 80, |x, y| {
                let mut p = [40u8, 40, 40];
                p[c * 2] = (150 + (x + y + i) % 100) as u8;
                image::Rgb(p)
            })
            .save(d.join(format!("{i}.png")))
            .unwrap();
        }
    }
    root
}

/// Runs finetune in `dir` (relative `--out out` unless `args` has one), asserts the error
/// convention, every needle, and that nothing under `dir` changed; returns the message.
fn refused(dir: &Path, args: &[&OsStr], needles: &[&str]) -> String {
    let mut p = test_support::program!("finetune");
    p.current_dir(dir).args(args);
    if !args.contains(&os("--out")) {
        p.args(["--out", "out"]);
    }
    p.refused_in(dir, needles)
}

/// `--model /nonexistent/model --data <data>` plus `extra`: an option error is found first.
fn with_option(extra: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let mut args = vec![
        os("--model"),
        os("/nonexistent/model"),
        os("--data"),
        d.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| os(s)));
    refused(tmp.path(), &args, needles);
}

#[test]
fn neither_model_nor_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    refused(
        tmp.path(),
        &[os("--data"), d.as_os_str()],
        &["--model is required", "--resume"],
    );
}

#[test]
fn epochs_zero_is_refused() {
    with_option(&["--epochs", "0"], &["--epochs", "at least 1"]);
}

#[test]
fn batch_size_zero_is_refused() {
    with_option(&["--batch-size", "0"], &["--batch-size", "at least 1"]);
}

#[test]
fn learning_rate_out_of_range_is_refused() {
    for v in ["0", "-0.001", "NaN", "inf"] {
        let arg = format!("--learning-rate={v}");
        with_option(&[&arg], &["--learning-rate", "> 0", &format!("got {v}")]);
    }
}

#[test]
fn validation_fraction_out_of_range_is_refused() {
    for v in ["1", "-0.1", "1.5"] {
        let arg = format!("--validation-fraction={v}");
        with_option(
            &[&arg],
            &["--validation-fraction", "[0, 1)", &format!("got {v}")],
        );
    }
}

#[test]
fn dropout_out_of_range_is_refused() {
    for v in ["1", "-0.5"] {
        let arg = format!("--dropout={v}");
        with_option(&[&arg], &["--dropout", "[0, 1)", &format!("got {v}")]);
    }
}

#[test]
fn batch_norm_momentum_out_of_range_is_refused() {
    with_option(
        &["--train-batch-norm", "--batch-norm-momentum", "2"],
        &["--batch-norm-momentum", "[0, 1]", "got 2"],
    );
}

#[test]
fn image_size_zero_is_refused() {
    with_option(&["--image-size", "0"], &["--image-size", "at least 1"]);
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
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
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
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
            os("--out"),
            out.as_os_str(),
        ],
        &[out.to_str().unwrap(), "--force"],
    );
}

#[test]
fn missing_data_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("no_such_folder");
    refused(
        tmp.path(),
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
        ],
        &[
            d.to_str().unwrap(),
            "cannot read the image folder",
            "No such file",
        ],
    );
}

#[test]
fn data_that_is_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("images.zip");
    std::fs::write(&d, "PK").unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
        ],
        &[d.to_str().unwrap(), "cannot read the image folder"],
    );
}

#[test]
fn data_without_class_folders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("flat");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("a.png"), "x").unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
        ],
        &[d.to_str().unwrap(), "no class sub-folders"],
    );
}

#[test]
fn class_folder_without_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    std::fs::create_dir(d.join("empty_class")).unwrap();
    std::fs::write(d.join("empty_class/readme.txt"), "no pictures").unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
        ],
        &[
            d.join("empty_class").to_str().unwrap(),
            "holds no readable .jpg/.jpeg/.png image",
        ],
    );
}

/// Image files whose header cannot be read do not count: a class of only such files is
/// refused, naming its folder.
#[test]
fn class_folder_with_only_unreadable_images_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    std::fs::create_dir(d.join("broken")).unwrap();
    std::fs::write(d.join("broken/a.jpg"), "not a jpeg").unwrap();
    refused(
        tmp.path(),
        &[
            os("--model"),
            os("/nonexistent/model"),
            os("--data"),
            d.as_os_str(),
        ],
        &[
            d.join("broken").to_str().unwrap(),
            "holds no readable .jpg/.jpeg/.png image",
        ],
    );
}

#[test]
fn missing_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let m = tmp.path().join("no_such_model");
    refused(
        tmp.path(),
        &[os("--model"), m.as_os_str(), os("--data"), d.as_os_str()],
        &[m.to_str().unwrap(), "cannot open the model"],
    );
}

#[test]
fn converted_folder_of_another_kind_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let m = tmp.path().join("embedding");
    std::fs::create_dir(&m).unwrap();
    std::fs::write(
        m.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    refused(
        tmp.path(),
        &[os("--model"), m.as_os_str(), os("--data"), d.as_os_str()],
        &[
            m.to_str().unwrap(),
            "holds a `text_embedding` model, expected `inception_v3`",
        ],
    );
}

#[test]
fn resume_without_a_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let r = tmp.path().join("previous_run");
    std::fs::create_dir(&r).unwrap();
    refused(
        tmp.path(),
        &[os("--resume"), r.as_os_str(), os("--data"), d.as_os_str()],
        &[
            r.join("checkpoint").to_str().unwrap(),
            "cannot resume",
            "checkpoint.json",
        ],
    );
}

#[test]
fn corrupt_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let r = tmp.path().join("previous_run");
    std::fs::create_dir_all(r.join("checkpoint")).unwrap();
    std::fs::write(r.join("checkpoint/checkpoint.json"), "{\"epochs_done\": ").unwrap();
    refused(
        tmp.path(),
        &[os("--resume"), r.as_os_str(), os("--data"), d.as_os_str()],
        &[
            r.join("checkpoint/checkpoint.json").to_str().unwrap(),
            "invalid checkpoint",
        ],
    );
}

/// What clap refuses (a value that does not parse, a missing option) is a usage error: exit
/// code 2, `error: ` naming the option, no panic.
#[test]
fn option_values_that_do_not_parse_are_usage_errors() {
    for (args, needle) in [
        (vec!["--data", "d", "--epochs", "five"], "--epochs"),
        (
            vec!["--data", "d", "--learning-rate", "fast"],
            "--learning-rate",
        ),
        (vec!["--data", "d", "--backend", "tpu"], "--backend"),
        (vec!["--model", "m"], "--data"),
    ] {
        let o = test_support::program!("finetune").args(&args).run();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn model_and_resume_together_are_refused() {
    // A resumed run continues its checkpoint's model: a --model beside it was silently ignored.
    with_option(
        &["--resume", "/nonexistent/run"],
        &[
            "--model /nonexistent/model",
            "--resume /nonexistent/run",
            "give one of them",
        ],
    );
}
