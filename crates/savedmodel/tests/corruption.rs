//! Damaged SavedModels: truncations and byte flips of the index, data shards and
//! saved_model.pb are always an `Err` (never a panic); a flipped data byte is a CRC error
//! naming the tensor; a missing shard is named.

use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/savedmodel")
        .join(name)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// Reads the model and every tensor; `Err` at the first failure.
fn read_all(dir: &Path) -> Result<usize, savedmodel::Error> {
    let sm = savedmodel::read(dir)?;
    for v in sm.variables() {
        sm.tensor(&v.name)?;
    }
    Ok(sm.variables().len())
}

fn shards(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("variables"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".data-"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_index_byte_flip_and_truncation_is_handled() {
    for model in ["tf1", "tf2"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(model);
        copy_dir(&fixture(model), &dir);
        let good = read_all(&dir).unwrap();
        let index = dir.join("variables/variables.index");
        let orig = std::fs::read(&index).unwrap();
        let mut errors = 0;
        for i in 0..orig.len() {
            let mut b = orig.clone();
            b[i] ^= 0x5a;
            std::fs::write(&index, &b).unwrap();
            match read_all(&dir) {
                Err(e) => {
                    errors += 1;
                    assert!(!e.to_string().is_empty());
                }
                Ok(n) => assert_eq!(
                    n, good,
                    "flip at {i} of {model} index changed the variables silently"
                ),
            }
        }
        // Not covered by a checksum (and not needed): the footer padding, the metaindex block and its handle.
        assert!(
            errors >= orig.len() - 60,
            "{model}: only {errors} of {} flips detected",
            orig.len()
        );
        for n in (0..orig.len()).step_by(7) {
            std::fs::write(&index, &orig[..n]).unwrap();
            let e = read_all(&dir).unwrap_err().to_string();
            assert!(e.contains("variables.index"), "{e}");
        }
    }
}

#[test]
fn every_data_byte_flip_is_a_crc_error_naming_the_tensor() {
    for model in ["tf1", "tf2"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(model);
        copy_dir(&fixture(model), &dir);
        for shard in shards(&dir) {
            let orig = std::fs::read(&shard).unwrap();
            for i in 0..orig.len() {
                let mut b = orig.clone();
                b[i] ^= 0x01;
                std::fs::write(&shard, &b).unwrap();
                let e = read_all(&dir).expect_err("flipped data byte must be detected");
                let msg = e.to_string();
                assert!(
                    matches!(
                        e,
                        savedmodel::Error::Crc { .. } | savedmodel::Error::CorruptTensor { .. }
                    ),
                    "{msg}"
                );
                assert!(msg.contains("tensor `"), "{msg}");
                assert!(msg.contains(".data-"), "{msg}");
            }
            for n in (0..orig.len()).step_by(5) {
                std::fs::write(&shard, &orig[..n]).unwrap();
                assert!(read_all(&dir).is_err(), "truncated shard accepted");
            }
            std::fs::write(&shard, &orig).unwrap();
        }
    }
}

#[test]
fn crc_error_names_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tf1");
    copy_dir(&fixture("tf1"), &dir);
    let sm = savedmodel::read(&dir).unwrap();
    let before = sm.tensor("dense/kernel").unwrap();
    drop(sm);
    // dense/kernel is at offset 16 of shard 0 (after dense/bias); flip its first byte.
    let shard = dir.join("variables/variables.data-00000-of-00003");
    let mut b = std::fs::read(&shard).unwrap();
    b[16] ^= 0x40;
    std::fs::write(&shard, &b).unwrap();
    let sm = savedmodel::read(&dir).unwrap();
    let e = sm.tensor("dense/kernel").unwrap_err();
    assert!(matches!(e, savedmodel::Error::Crc { .. }), "{e}");
    assert!(e.to_string().contains("`dense/kernel`"), "{e}");
    assert_eq!(before.shape, vec![3, 4]);
}

#[test]
fn missing_shard_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tf2");
    copy_dir(&fixture("tf2"), &dir);
    std::fs::remove_file(dir.join("variables/variables.data-00002-of-00004")).unwrap();
    let e = savedmodel::read(&dir).unwrap_err();
    assert!(
        matches!(
            e,
            savedmodel::Error::MissingShard {
                shard: 2,
                num_shards: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("variables.data-00002-of-00004"),
        "{e}"
    );
}

#[test]
fn saved_model_pb_damage_is_an_error_or_harmless() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tf2");
    copy_dir(&fixture("tf2"), &dir);
    let pb = dir.join("saved_model.pb");
    let orig = std::fs::read(&pb).unwrap();
    for n in (0..orig.len()).step_by(97) {
        std::fs::write(&pb, &orig[..n]).unwrap();
        let _ = read_all(&dir); // must not panic
    }
    for i in (0..orig.len()).step_by(13) {
        let mut b = orig.clone();
        b[i] = b[i].wrapping_add(0x81);
        std::fs::write(&pb, &b).unwrap();
        let _ = read_all(&dir);
    }
    std::fs::write(&pb, b"garbage\xff\xff\xff").unwrap();
    let e = savedmodel::read(&dir).unwrap_err().to_string();
    assert!(e.contains("saved_model.pb"), "{e}");
}
