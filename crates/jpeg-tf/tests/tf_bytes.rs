//! Bit-exactness against TensorFlow: `tests/fixtures/jpeg/expected.json` holds the SHA-256 of
//! `tf.io.decode_image(channels=3)`'s bytes for each file (`tools/make_jpeg_fixture.py`).

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn expected(part: &str) -> serde_json::Map<String, serde_json::Value> {
    let p = repo().join("tests/fixtures/jpeg/expected.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v[part].as_object().unwrap().clone()
}

#[test]
fn decodes_every_fixture_exactly_as_tensorflow() {
    let mut failed = Vec::new();
    let mut checked = 0;
    for (name, e) in expected("files") {
        let data = std::fs::read(repo().join(e["file"].as_str().unwrap())).unwrap();
        let res = jpeg_tf::decode_rgb(&data, |_, _| Ok(()));
        if !e["exact"].as_bool().unwrap() {
            assert!(
                matches!(res, Err(jpeg_tf::Error::Unsupported(_))),
                "{name}: expected Unsupported, got {res:?}"
            );
            continue;
        }
        let img = res.unwrap_or_else(|err| panic!("{name}: {err}"));
        let shape: Vec<u64> = serde_json::from_value(e["shape"].clone()).unwrap();
        assert_eq!(
            shape,
            vec![img.height as u64, img.width as u64, 3],
            "{name}: shape"
        );
        let sha = hex::encode(Sha256::digest(&img.data));
        if sha != e["sha256"].as_str().unwrap() {
            // With JPEG_TF_RAW=<dir> holding TF's raw bytes (<name>.raw), say how far off.
            let detail = std::env::var("JPEG_TF_RAW")
                .ok()
                .and_then(|d| std::fs::read(Path::new(&d).join(format!("{name}.raw"))).ok())
                .map(|want| {
                    let diff: Vec<(usize, i32)> = img
                        .data
                        .iter()
                        .zip(&want)
                        .enumerate()
                        .filter(|(_, (a, b))| a != b)
                        .map(|(i, (&a, &b))| (i, a as i32 - b as i32))
                        .collect();
                    let max = diff.iter().map(|d| d.1.abs()).max().unwrap_or(0);
                    format!(
                        "{} of {} bytes differ, max {max}, first {:?}",
                        diff.len(),
                        want.len(),
                        &diff[..diff.len().min(5)]
                    )
                })
                .unwrap_or_default();
            failed.push(format!("{name}: {detail}"));
        }
        checked += 1;
    }
    assert!(failed.is_empty(), "not bit-exact:\n{}", failed.join("\n"));
    assert!(checked >= 32, "{checked} files checked");
}

/// Damaged files (a cut, a stray marker, a changed byte, a missing or renumbered restart
/// marker): libjpeg-turbo's recovery (zero bits past a marker, then zero blocks until the
/// next restart; its restart resynchronisation) gives TF's bytes; where TF fails (the data
/// ends before EOI), so do we.
#[test]
fn damaged_files_decode_as_tensorflow_or_fail_as_it() {
    let files = expected("files");
    let damaged = expected("damaged");
    assert!(damaged.len() >= 8);
    for (name, e) in damaged {
        let base = &files[e["base"].as_str().unwrap()];
        let mut data = std::fs::read(repo().join(base["file"].as_str().unwrap())).unwrap();
        let sp = e["splice"].as_array().unwrap();
        let (off, rm) = (
            sp[0].as_u64().unwrap() as usize,
            sp[1].as_u64().unwrap() as usize,
        );
        let ins = hex::decode(sp[2].as_str().unwrap()).unwrap();
        data.splice(off..off + rm, ins);
        let res = jpeg_tf::decode_rgb(&data, |_, _| Ok(()));
        if e.get("error").is_some() {
            assert!(
                matches!(res, Err(jpeg_tf::Error::Invalid(_))),
                "{name}: TF fails, we gave {:?}",
                res.map(|i| (i.width, i.height))
            );
        } else {
            let img = res.unwrap_or_else(|err| panic!("{name}: {err}"));
            let sha = hex::encode(Sha256::digest(&img.data));
            assert_eq!(sha, e["sha256"].as_str().unwrap(), "{name}");
        }
    }
}
