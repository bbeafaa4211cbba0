//! Hostile model folders, outputs, images and .npy files through the `models` crate's public
//! API: config.json sizes checked against the weights before allocating, `vocab_file` kept
//! inside the folder, output folders replaced only when ours, image dimensions checked before
//! decoding, .npy shapes with checked arithmetic.

use burn::tensor::Device;
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig};
use std::path::{Path, PathBuf};

const VOCAB: &[u8] = b"cat\nis\non\nthe\nmat\nHello\nworld\ndog\n";

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hostile-models-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(vocab_file: &str) -> TextEmbeddingConfig {
    TextEmbeddingConfig {
        vocab_size: 8,
        oov_buckets: 1,
        dim: 3,
        split: SplitMode::KeepEmpty,
        remove_punctuation: true,
        vocab_file: vocab_file.into(),
        source_dtype: None,
    }
}

/// A text embedding saved into `<base>/m`; returns that folder.
fn saved(base: &Path) -> PathBuf {
    let m = TextEmbedding::from_parts(
        config("tokens.txt"),
        "v",
        VOCAB.to_vec(),
        (0..27).map(|v| v as f32).collect(),
        &Device::flex(),
    )
    .unwrap();
    let dir = base.join("m");
    m.save(&dir, "test").unwrap();
    dir
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> String {
    match TextEmbedding::load(dir, &Device::flex()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_sizes_are_checked_against_the_weights_before_allocating() {
    let base = scratch("sizes");
    let dir = saved(&base);
    let m = TextEmbedding::load(&dir, &Device::flex()).unwrap();
    let t = m
        .embeddings
        .val()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(t[26], 26.0);
    // 4e12 OOV buckets would be a 48 TB table.
    edit_config(&dir, |v| {
        v["config"]["oov_buckets"] = serde_json::json!(4_000_000_000_000u64)
    });
    let e = load_err(&dir);
    assert!(
        e.contains("the shape [4000000000008, 3]") && e.contains("holds [9, 3]"),
        "{e}"
    );
    edit_config(&dir, |v| {
        v["config"]["oov_buckets"] = serde_json::json!(1);
        v["config"]["dim"] = serde_json::json!(u64::MAX);
    });
    assert!(load_err(&dir).contains("config.json"));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn safetensors_headers_that_promise_missing_data_are_refused() {
    let base = scratch("st");
    let st = base.join("model.safetensors");
    let header =
        br#"{"embeddings":{"dtype":"F32","shape":[4000000000000,3],"data_offsets":[0,108]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend([0u8; 108]);
    std::fs::write(&st, b).unwrap();
    let e = models::weights::safetensors_shapes(&st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not hold"), "{e}");
    std::fs::write(&st, u64::MAX.to_le_bytes()).unwrap();
    let e = models::weights::safetensors_shapes(&st)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not fit the file"), "{e}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn vocab_file_must_stay_inside_the_folder() {
    let base = scratch("vocab");
    let dir = saved(&base);
    std::fs::create_dir_all(base.join("payload")).unwrap();
    std::fs::write(base.join("payload/tokens.txt"), VOCAB).unwrap();
    for bad in ["../payload/tokens.txt", "/etc/passwd", "./tokens.txt", ""] {
        edit_config(&dir, |v| v["config"]["vocab_file"] = serde_json::json!(bad));
        let e = load_err(&dir);
        assert!(e.contains("not a plain relative name"), "{bad}: {e}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        edit_config(&dir, |v| {
            v["config"]["vocab_file"] = serde_json::json!("zero")
        });
        assert!(load_err(&dir).contains("symbolic link"));
    }
    // Writing: a module whose vocab_file escapes is refused, and nothing is written.
    let m = TextEmbedding::from_parts(
        config("../payload2/tokens.txt"),
        "v",
        VOCAB.to_vec(),
        vec![0.0; 27],
        &Device::flex(),
    )
    .unwrap();
    let out = base.join("out");
    let e = m.save(&out, "t").unwrap_err().to_string();
    assert!(e.contains("not a plain relative name"), "{e}");
    assert!(!out.exists() && !base.join("payload2").exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn save_replaces_only_folders_of_ours() {
    let base = scratch("replace");
    let dir = saved(&base);
    let m = TextEmbedding::load(&dir, &Device::flex()).unwrap();
    m.save(&dir, "again").unwrap();
    let other = base.join("photos");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("a.jpg"), b"x").unwrap();
    let e = m.save(&other, "t").unwrap_err().to_string();
    assert!(e.contains("not written by tfhub-rs"), "{e}");
    assert_eq!(std::fs::read(other.join("a.jpg")).unwrap(), b"x");
    assert_eq!(
        std::fs::read_dir(&base).unwrap().count(),
        2,
        "a temporary folder was left"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn outdir_swap_replaces_only_ours_and_restores_on_failure() {
    use model_folder::outdir::swap_in;
    let base = scratch("outdir");
    let foreign = base.join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("holiday.jpg"), b"jpg").unwrap();
    let tmp = base.join(".new");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(tmp.join("config.json"), br#"{"kind":"x"}"#).unwrap();
    let e = swap_in(&tmp, &foreign, false).unwrap_err();
    assert!(e.contains("photos") && e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(foreign.join("holiday.jpg")).unwrap(), b"jpg");
    let ours = base.join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::fs::write(ours.join("config.json"), br#"{"kind":"old"}"#).unwrap();
    // The temporary folder is missing: the second rename fails, the old folder comes back.
    let e = swap_in(&base.join(".missing"), &ours, false).unwrap_err();
    assert!(e.contains("previous folder was left in place"), "{e}");
    assert_eq!(
        std::fs::read(ours.join("config.json")).unwrap(),
        br#"{"kind":"old"}"#
    );
    swap_in(&tmp, &ours, false).unwrap();
    assert_eq!(
        std::fs::read(ours.join("config.json")).unwrap(),
        br#"{"kind":"x"}"#
    );
    let tmp2 = base.join(".new2");
    std::fs::create_dir(&tmp2).unwrap();
    swap_in(&tmp2, &foreign, true).unwrap();
    assert!(!foreign.join("holiday.jpg").exists());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn npy_shapes_that_overflow_are_refused() {
    for shape in [
        "(4611686018427387904, 4)",
        "(18446744073709551615, 2)",
        "(4294967296, 4294967296, 1)",
    ] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend([0u8; 16]);
        let e = model_folder::npy::from_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("data holds 16 bytes"), "{shape}: {e}");
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A grey 8-bit PNG (valid CRCs) declaring `w x h` pixels whose IDAT holds `rows`.
fn png(w: u32, h: u32, rows: &[u8]) -> Vec<u8> {
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let mut p = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut p, b"IHDR", &ihdr);
    // zlib, one stored block, adler32.
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend((rows.len() as u16).to_le_bytes());
    z.extend((!(rows.len() as u16)).to_le_bytes());
    z.extend_from_slice(rows);
    let (mut a, mut b) = (1u32, 0u32);
    for &x in rows {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend(((b << 16) | a).to_be_bytes());
    chunk(&mut p, b"IDAT", &z);
    chunk(&mut p, b"IEND", &[]);
    p
}

#[test]
fn oversized_images_are_refused_before_decoding() {
    let base = scratch("img");
    for (w, h) in [(23000, 23000), (20000, 10), (12000, 12000)] {
        let p = base.join(format!("{w}x{h}.png"));
        std::fs::write(&p, png(w, h, &[0, 0])).unwrap();
        let e = models::imageops::decode_rgb8(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{w} x {h} pixels is larger than the limit")),
            "{e}"
        );
        assert!(e.contains(&p.display().to_string()), "{e}");
    }
    // A real 2x1 grey image still decodes, expanded to RGB.
    let p = base.join("small.png");
    std::fs::write(&p, png(2, 1, &[0, 10, 200])).unwrap();
    let rgb = models::imageops::decode_rgb8(&p).unwrap();
    assert_eq!(rgb.dimensions(), (2, 1));
    assert_eq!(rgb.get_pixel(1, 0).0, [200, 200, 200]);
    let img = models::imageops::Image::from_rgb8(&rgb).into_central_crop(1.0);
    assert_eq!((img.height, img.width, img.data.len()), (1, 2, 6));
    std::fs::remove_dir_all(&base).unwrap();
}
