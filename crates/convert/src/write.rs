//! Writing a converted model folder atomically (temporary folder + rename).
//!
//! Layout: `model.safetensors` (float32 tensors under the Burn parameter names),
//! `config.json` (`{"kind", "config", "source", "source_sha256", "converter_version"}`)
//! and the assets. Everything is written into a hidden temporary folder beside the
//! destination, then renamed into place; an existing destination is replaced only when this
//! project wrote it (a `config.json` with a `"kind"` in it) or it is empty, unless forced: it is
//! renamed away first, renamed back if the new folder cannot be put in place, and deleted only
//! once the new folder is in place. On any error the temporary folder is removed, so no
//! half-written output is ever left behind. The rules are `model_folder::outdir`'s, shared with
//! every program that writes a folder.

use crate::Converted;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of writing; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: no space left on the device while writing the converted model; free some space or choose another --out folder")]
    DiskFull { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Maps an I/O error on `path` to a [`WriteError`], recognising a full disk (ENOSPC).
pub fn io_error(path: &Path, e: std::io::Error) -> WriteError {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        WriteError::DiskFull {
            path: path.to_path_buf(),
        }
    } else {
        WriteError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Every regular file under `root` (or `root` itself when it is a file) as
/// (path relative to `root` with `/` separators, full path), sorted.
pub fn source_files(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    if root.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, root.to_path_buf()));
        return Ok(out);
    }
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = e.file_type()?;
            if ft.is_dir() {
                walk(&e.path(), &r, out)?;
            } else if ft.is_file() {
                out.push((r, e.path()));
            }
        }
        Ok(())
    }
    walk(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

fn sha256_file(path: &Path) -> Result<String, WriteError> {
    let mut f = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| io_error(path, e))?;
    Ok(hex::encode(h.finalize()))
}

fn check_relative(name: &str) -> Result<(), WriteError> {
    model_folder::check_plain_name(name).map_err(WriteError::Invalid)
}

/// The safetensors bytes of `converted.tensors` (float32) and `converted.typed`.
pub fn safetensors_bytes(converted: &Converted) -> Result<Vec<u8>, WriteError> {
    let mut all = Vec::with_capacity(converted.tensors.len() + converted.typed.len());
    for t in &converted.tensors {
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(WriteError::Invalid(format!(
                "tensor `{}` has shape {:?} ({n} elements) but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        all.push(model_folder::safetensors::Tensor::f32(
            t.name.clone(),
            t.shape.clone(),
            &t.data,
        ));
    }
    all.extend(converted.typed.iter().cloned());
    model_folder::safetensors::to_bytes(&all).map_err(WriteError::Invalid)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut f = std::fs::File::create(path).map_err(|e| io_error(path, e))?;
    f.write_all(bytes).map_err(|e| io_error(path, e))?;
    f.sync_all().map_err(|e| io_error(path, e))?;
    Ok(())
}

/// Writes `converted` to `out_dir` (replacing an existing folder only when this project wrote
/// it, see [`check_replaceable`]) and returns `out_dir`. `handle` is recorded as `source`;
/// `source_files` (relative name, path) are hashed into `source_sha256`.
pub fn write_model(
    out_dir: &Path,
    converted: &Converted,
    handle: &str,
    source_files: &[(String, PathBuf)],
) -> Result<PathBuf, WriteError> {
    write_model_with(out_dir, converted, handle, source_files, false)
}

pub use model_folder::outdir::written_by_us;

/// `Ok` when `dir` may be replaced: absent, an empty folder, a folder this project wrote, or
/// anything with `force` ([`model_folder::outdir::check_replaceable`]). The error names the
/// folder and says how to override.
pub fn check_replaceable(dir: &Path, force: bool) -> Result<(), WriteError> {
    model_folder::outdir::check_replaceable(dir, force).map_err(WriteError::Invalid)
}

/// [`write_model`], replacing any existing `out_dir` when `force` is set.
pub fn write_model_with(
    out_dir: &Path,
    converted: &Converted,
    handle: &str,
    source_files: &[(String, PathBuf)],
    force: bool,
) -> Result<PathBuf, WriteError> {
    check_replaceable(out_dir, force)?;
    if out_dir.file_name().is_none() {
        return Err(WriteError::Invalid(format!(
            "{}: output path has no folder name",
            out_dir.display()
        )));
    }
    let tmp = model_folder::outdir::stage(out_dir).map_err(|e| io_error(&e.path, e.source))?;
    // Checked again by swap_in right before replacing: the folder may have changed meanwhile.
    let result = fill(&tmp, converted, handle, source_files).and_then(|()| {
        model_folder::outdir::swap_in(&tmp, out_dir, force).map_err(WriteError::Invalid)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| out_dir.to_path_buf())
}

fn fill(
    tmp: &Path,
    converted: &Converted,
    handle: &str,
    source_files: &[(String, PathBuf)],
) -> Result<(), WriteError> {
    write_file(
        &tmp.join("model.safetensors"),
        &safetensors_bytes(converted)?,
    )?;
    let mut hashes = BTreeMap::new();
    for (rel, path) in source_files {
        hashes.insert(rel.clone(), sha256_file(path)?);
    }
    let config = model_folder::FolderConfig::new(&converted.kind, &converted.config, handle)
        .map_err(|e| WriteError::Invalid(e.to_string()))?
        .with_source_sha256(hashes);
    write_file(&tmp.join("config.json"), &config.to_bytes())?;
    for (rel, bytes) in &converted.assets {
        check_relative(rel)?;
        if rel == "model.safetensors" || rel == "config.json" {
            return Err(WriteError::Invalid(format!(
                "asset name `{rel}` clashes with an output file"
            )));
        }
        let path = tmp.join(rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| io_error(p, e))?;
        }
        write_file(&path, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutTensor;

    fn sample() -> Converted {
        Converted {
            kind: "raw".into(),
            config: serde_json::json!({"a": 1}),
            typed: Vec::new(),
            tensors: vec![OutTensor {
                name: "w".into(),
                shape: vec![2, 2],
                data: vec![1.0, 2.0, 3.0, -4.5],
            }],
            assets: vec![("tokens.txt".into(), b"a\nb\n".to_vec())],
        }
    }

    #[test]
    fn enospc_maps_to_a_disk_full_message() {
        let e = io_error(
            Path::new("/x/model.safetensors"),
            std::io::Error::from_raw_os_error(28),
        );
        assert!(matches!(e, WriteError::DiskFull { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("/x/model.safetensors") && msg.contains("no space left"),
            "{msg}"
        );
        let other = io_error(Path::new("/x"), std::io::Error::from_raw_os_error(13));
        assert!(matches!(other, WriteError::Io { .. }));
    }

    #[test]
    fn writes_and_replaces_atomically() {
        let base = std::env::temp_dir().join(format!("convert-write-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let out = base.join("weights/m");
        let p = write_model(&out, &sample(), "h", &[]).unwrap();
        assert_eq!(p, out);
        let st = std::fs::read(out.join("model.safetensors")).unwrap();
        let t = safetensors::SafeTensors::deserialize(&st).unwrap();
        let w = t.tensor("w").unwrap();
        assert_eq!(w.shape(), &[2, 2]);
        assert_eq!(&w.data()[12..16], &(-4.5f32).to_le_bytes());
        assert_eq!(std::fs::read(out.join("tokens.txt")).unwrap(), b"a\nb\n");
        // Replace: the old folder's extra file disappears, nothing temporary is left.
        std::fs::write(out.join("stale"), b"x").unwrap();
        let mut c = sample();
        c.assets.clear();
        write_model(&out, &c, "h2", &[]).unwrap();
        assert!(!out.join("stale").exists() && !out.join("tokens.txt").exists());
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["source"], "h2");
        assert_eq!(cfg["kind"], "raw");
        let left: Vec<_> = std::fs::read_dir(base.join("weights")).unwrap().collect();
        assert_eq!(left.len(), 1);
        // An invalid conversion leaves the previous output untouched and no temp folder.
        let mut bad = sample();
        bad.tensors[0].data.pop();
        assert!(write_model(&out, &bad, "h3", &[]).is_err());
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["source"], "h2");
        assert_eq!(std::fs::read_dir(base.join("weights")).unwrap().count(), 1);
        let mut evil = sample();
        evil.assets[0].0 = "../escape".into();
        assert!(write_model(&out, &evil, "h4", &[]).is_err());
        assert!(!base.join("weights/escape").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_unrelated_folder_is_not_replaced_without_force() {
        let base = tempfile::tempdir().unwrap();
        let out = base.path().join("photos");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("holiday.jpg"), b"jpg").unwrap();
        let e = write_model(&out, &sample(), "h", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("photos") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read(out.join("holiday.jpg")).unwrap(), b"jpg");
        // Nothing temporary left beside it.
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 1);
        // A file in the way, and a config.json that is not ours, are refused too.
        let file = base.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert!(write_model(&file, &sample(), "h", &[]).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
        std::fs::write(out.join("config.json"), b"[1, 2]").unwrap();
        assert!(write_model(&out, &sample(), "h", &[]).is_err());
        // An empty folder is fine; --force replaces anything.
        let empty = base.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_model(&empty, &sample(), "h", &[]).unwrap();
        assert!(written_by_us(&empty));
        write_model_with(&out, &sample(), "h", &[], true).unwrap();
        assert!(!out.join("holiday.jpg").exists() && written_by_us(&out));
    }
}
