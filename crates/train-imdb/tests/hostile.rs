//! Hostile inputs for `train-imdb` (issue 16): `--out` onto a folder this project did not write,
//! sizes and file names in a trained model's `config.json`, and IMDB archives whose tar headers
//! lie about their members. Every crafted input is built here.

use burn::tensor::Device;
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
use std::path::Path;
use std::process::Command;
use train_imdb::data::Imdb;
use train_imdb::model::{write_outputs, Classifier};
use training::report::{EpochRecord, TrainingReport};

fn embedding_config(vocab_file: &str) -> TextEmbeddingConfig {
    TextEmbeddingConfig {
        vocab_size: 4,
        oov_buckets: 1,
        dim: 3,
        split: SplitMode::KeepEmpty,
        remove_punctuation: true,
        vocab_file: vocab_file.into(),
        source_dtype: None,
    }
}

fn classifier(vocab_file: &str) -> Classifier {
    let device = Device::flex();
    let emb = TextEmbedding::from_parts(
        embedding_config(vocab_file),
        "tokens.txt",
        b"good\nbad\nmovie\nfun\n".to_vec(),
        (0..15).map(|i| i as f32 * 0.1).collect(),
        &device,
    )
    .unwrap();
    Classifier::new(emb, 4, 7, &device)
}

fn report() -> TrainingReport {
    let mut r = TrainingReport::new();
    r.push(EpochRecord {
        epoch: 1,
        loss: 0.5,
        accuracy: 0.5,
        val_loss: Some(0.5),
        val_accuracy: Some(0.5),
        seconds: 0.1,
        train_seconds: Some(0.1),
    });
    r
}

/// A trained-model folder written the way `train-imdb` writes it.
fn model_folder(dir: &Path) {
    write_outputs(dir, |d| classifier("tokens.txt").save(d), &report(), false).unwrap();
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> String {
    match Classifier::load(dir, &Device::flex()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

/// Entries of `dir` whose name starts with `.` (left-over temporary or old folders).
fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn make_data(root: &Path) {
    for split in ["train", "test"] {
        for (label, text) in [("pos", "a great movie"), ("neg", "an awful movie")] {
            let d = root.join("aclImdb").join(split).join(label);
            std::fs::create_dir_all(&d).unwrap();
            for k in 0..4 {
                std::fs::write(d.join(format!("{k}_5.txt")), format!("{text} {k}")).unwrap();
            }
        }
    }
}

fn train_imdb(args: &[&str]) -> (bool, String) {
    let o = test_support::program!("train-imdb")
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (o.status.success(), err)
}

// ---------------------------------------------------------------------------------------------
// --out

#[test]
fn out_onto_a_foreign_folder_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    make_data(tmp.path());
    let data = tmp.path().to_str().unwrap();
    let out = tmp.path().join("home");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "precious").unwrap();
    let common = [
        "--data",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--validation",
        "2",
        "--dim",
        "4",
        "--out",
    ];
    let mut args = common.to_vec();
    args.push(out.to_str().unwrap());

    // Refused, naming the folder and --force; nothing touched or left behind.
    let (ok, err) = train_imdb(&args);
    assert!(!ok);
    assert!(
        err.contains(out.to_str().unwrap()) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("thesis.tex")).unwrap(),
        "precious"
    );
    assert!(hidden_entries(tmp.path()).is_empty());

    // A plain file in the way is refused too.
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "keep").unwrap();
    let mut fargs = common.to_vec();
    fargs.push(file.to_str().unwrap());
    let (ok, err) = train_imdb(&fargs);
    assert!(!ok, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");

    // --force replaces it.
    let mut forced = args.clone();
    forced.push("--force");
    let (ok, err) = train_imdb(&forced);
    assert!(ok, "{err}");
    assert!(!out.join("thesis.tex").exists());
    assert!(out.join("config.json").is_file());
    assert!(hidden_entries(tmp.path()).is_empty());

    // Our own folder is replaced without --force.
    let (ok, err) = train_imdb(&args);
    assert!(ok, "{err}");
    assert!(out.join("model.safetensors").is_file());
    assert!(hidden_entries(tmp.path()).is_empty());
}

/// A vocabulary name from a config (`--embedding` folders are read from anywhere) is never
/// written outside the output folder; the failed write leaves the previous folder and no
/// temporary folder behind.
#[test]
fn vocab_file_cannot_escape_the_output_folder_and_failures_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs").join("model");
    model_folder(&out);
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    for name in ["../payload/tokens.txt", "/tmp/evil.txt", "", "config.json"] {
        let err = write_outputs(&out, |d| classifier(name).save(d), &report(), true).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("plain relative name") || err.contains("cannot be named"),
            "{name}: {err}"
        );
        assert!(!tmp.path().join("runs/payload").exists());
        assert_eq!(
            std::fs::read(out.join("model.safetensors")).unwrap(),
            before
        );
        assert!(hidden_entries(&out.parent().unwrap()).is_empty());
    }
    // A plain name in a sub-folder stays inside.
    write_outputs(
        &out,
        |d| classifier("vocab/tokens.txt").save(d),
        &report(),
        false,
    )
    .unwrap();
    assert!(out.join("vocab/tokens.txt").is_file());
    Classifier::load(&out, &Device::flex()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// config.json of a trained model

#[test]
fn config_sizes_are_checked_against_the_weights_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    model_folder(&good);
    Classifier::load(&good, &Device::flex()).unwrap();

    let cases: Vec<(&str, Box<dyn Fn(&mut serde_json::Value)>)> = vec![
        (
            "hidden",
            Box::new(|v| v["config"]["hidden"] = 4_000_000_000_000u64.into()),
        ),
        (
            "hidden",
            Box::new(|v| v["config"]["hidden"] = u64::MAX.into()),
        ),
        ("hidden", Box::new(|v| v["config"]["hidden"] = (-1).into())),
        (
            "embedding",
            Box::new(|v| v["config"]["embedding"]["oov_buckets"] = 4_000_000_000_000u64.into()),
        ),
        (
            "embedding",
            Box::new(|v| v["config"]["embedding"]["vocab_size"] = u64::MAX.into()),
        ),
        (
            "dense_kernel",
            Box::new(|v| v["config"]["embedding"]["dim"] = (1u64 << 40).into()),
        ),
        ("dense_bias", Box::new(|v| v["config"]["hidden"] = 5.into())),
    ];
    for (i, (what, edit)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        for f in ["config.json", "model.safetensors", "tokens.txt"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        edit_config(&dir, edit);
        let err = load_err(&dir);
        assert!(err.contains("config.json"), "case {i} ({what}): {err}");
    }

    // The program: a clear error, no abort.
    let dir = tmp.path().join("case0");
    let o = test_support::program!("train-imdb")
        .args(["predict", "--model", dir.to_str().unwrap(), "great"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("config.json") && err.contains("dense_kernel"),
        "{err}"
    );
}

#[test]
fn vocab_file_from_config_must_be_a_plain_regular_file_inside_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    model_folder(&good);
    std::fs::write(tmp.path().join("secret.txt"), "good\nbad\nmovie\nfun\n").unwrap();
    for (i, name) in ["../secret.txt", "/etc/passwd", "a/../../secret.txt", ""]
        .iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("name{i}"));
        std::fs::create_dir(&dir).unwrap();
        for f in ["config.json", "model.safetensors", "tokens.txt"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        edit_config(&dir, |v| {
            v["config"]["embedding"]["vocab_file"] = (*name).into()
        });
        let err = load_err(&dir);
        assert!(err.contains("plain relative name"), "{name}: {err}");
    }
    // A symbolic link to a file outside, and a folder in place of the file.
    let dir = tmp.path().join("link");
    std::fs::create_dir(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(good.join(f), dir.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), dir.join("tokens.txt")).unwrap();
    assert!(load_err(&dir).contains("symbolic link"));
    std::fs::remove_file(dir.join("tokens.txt")).unwrap();
    std::fs::create_dir(dir.join("tokens.txt")).unwrap();
    assert!(load_err(&dir).contains("not a regular file"));
}

// ---------------------------------------------------------------------------------------------
// IMDB archives

/// A ustar header block; `size` is the raw 12-byte size field.
fn header(name: &str, size: [u8; 12], typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(&size);
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn octal_size(n: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[..11].copy_from_slice(format!("{n:011o}").as_bytes());
    f
}

/// GNU base-256 size field.
fn binary_size(n: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[0] = 0x80;
    f[4..].copy_from_slice(&n.to_be_bytes());
    f
}

/// A valid member (header, data, padding).
fn member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(&header(name, octal_size(data.len() as u64), b'0'));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// Enough valid reviews for a dataset, with `tail` (crafted members) appended.
fn archive(tail: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    for split in ["train", "test"] {
        for label in ["pos", "neg"] {
            member(
                &mut t,
                &format!("aclImdb/{split}/{label}/0_5.txt"),
                b"a fine movie",
            );
        }
    }
    t.extend_from_slice(tail);
    t
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn load_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<Imdb, String> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    Imdb::load(&p).map_err(|e| format!("{e:#}"))
}

#[test]
fn archives_are_read_without_trusting_member_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();

    // A well-formed archive (plain and gzipped, with a end-of-archive marker).
    let mut ok = archive(&[]);
    ok.extend_from_slice(&[0u8; 1024]);
    let data = load_bytes(d, "ok.tar", &ok).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (2, 2));
    assert_eq!(data.train[0].text, b"a fine movie");
    let data = load_bytes(d, "ok.tar.gz", &gzip(&ok)).unwrap();
    assert_eq!(data.test[1].path, "test/pos/0_5.txt");

    // A review whose header claims 2^62 bytes (the old reader's Vec::with_capacity aborted).
    let mut tail = header("aclImdb/train/pos/1_9.txt", binary_size(1 << 62), b'0').to_vec();
    tail.extend_from_slice(b"short");
    let err = load_bytes(d, "huge.tar", &archive(&tail)).unwrap_err();
    assert!(err.contains("more than"), "{err}");

    // A header that claims 100 MB (within the limits) over 5 bytes: truncated, no allocation of
    // the claimed size.
    let mut tail = header("aclImdb/train/pos/1_9.txt", octal_size(100 << 20), b'0').to_vec();
    tail.extend_from_slice(b"short");
    let err = load_bytes(d, "trunc.tar.gz", &gzip(&archive(&tail))).unwrap_err();
    assert!(
        err.contains("truncated") || err.contains("review of more"),
        "{err}"
    );

    // A review larger than any IMDB review (the bytes are there, gzip makes them cheap).
    let mut tail = Vec::new();
    member(
        &mut tail,
        "aclImdb/train/neg/2_1.txt",
        &vec![b'a'; (train_imdb::data::MAX_REVIEW_BYTES + 1) as usize],
    );
    let err = load_bytes(d, "long.tar.gz", &gzip(&archive(&tail))).unwrap_err();
    assert!(
        err.contains("2_1.txt") && err.contains("review of more"),
        "{err}"
    );

    // A 64 MiB GNU long name (the tar crate read such names whole into memory).
    let tail = header("././@LongLink", octal_size(64 << 20), b'L').to_vec();
    let err = load_bytes(d, "longname.tar.gz", &gzip(&archive(&tail))).unwrap_err();
    assert!(err.contains("GNU long name"), "{err}");

    // Links are refused, not followed.
    let tail = header("aclImdb/train/pos/3_9.txt", octal_size(0), b'2').to_vec();
    let err = load_bytes(d, "link.tar", &archive(&tail)).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");

    // Not an archive at all.
    let err = load_bytes(d, "junk.tar.gz", b"<html>not found</html>").unwrap_err();
    assert!(err.contains("junk.tar.gz"), "{err}");
}

#[test]
fn dataset_folders_hold_regular_bounded_files() {
    let tmp = tempfile::tempdir().unwrap();
    make_data(tmp.path());
    Imdb::load(tmp.path()).unwrap();
    let big = tmp.path().join("aclImdb/train/pos/9_9.txt");
    std::fs::write(
        &big,
        vec![b'a'; (train_imdb::data::MAX_REVIEW_BYTES + 1) as usize],
    )
    .unwrap();
    let err = format!("{:#}", Imdb::load(tmp.path()).unwrap_err());
    assert!(
        err.contains("9_9.txt") && err.contains("review of more"),
        "{err}"
    );
    std::fs::remove_file(&big).unwrap();
    // A FIFO would block a plain read forever.
    let fifo = tmp.path().join("aclImdb/test/neg/9_1.txt");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let err = format!("{:#}", Imdb::load(tmp.path()).unwrap_err());
        assert!(err.contains("not a regular file"), "{err}");
    } else {
        eprintln!("SKIPPED: the FIFO case: mkfifo is unavailable");
    }
}
