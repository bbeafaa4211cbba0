//! Reading a model folder: `config.json`, assets, the safetensors header.

use serde::de::DeserializeOwned;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of reading a model folder; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid config.json: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: holds a `{found}` model, expected `{expected}`")]
    WrongKind {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: cannot load weights: {msg}")]
    Load { path: PathBuf, msg: String },
}

/// The parsed `config.json` of a converted model folder.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub kind: String,
    pub config: serde_json::Value,
    pub raw: serde_json::Value,
}

impl ModelFolder {
    /// Reads `<dir>/config.json` and checks its `kind` is `expected`.
    pub fn open(dir: impl AsRef<Path>, expected: &str) -> Result<Self, FolderError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join("config.json");
        let bytes = read_regular_file(&path, MAX_CONFIG_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| FolderError::Config {
            path: path.clone(),
            msg: "not UTF-8".into(),
        })?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| FolderError::Config {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        let kind = raw
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| FolderError::Config {
                path: path.clone(),
                msg: "missing string field `kind`".into(),
            })?
            .to_string();
        if kind != expected {
            return Err(FolderError::WrongKind {
                path: dir,
                found: kind,
                expected: expected.into(),
            });
        }
        let config = raw
            .get("config")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        Ok(ModelFolder {
            dir,
            kind,
            config,
            raw,
        })
    }

    /// Deserializes the `config` object into the model's config type.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, FolderError> {
        serde_json::from_value(self.config.clone()).map_err(|e| FolderError::Config {
            path: self.dir.join("config.json"),
            msg: format!("field `config`: {e}"),
        })
    }

    /// Path of a file in the folder (e.g. an asset). `name` must come from us, not from a
    /// file: names read from `config.json` go through [`ModelFolder::asset`].
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Path of the file `name` (e.g. `vocab_file` from `config.json`): a plain relative name
    /// inside the folder ([`check_plain_name`]), no symbolic link, a regular file.
    pub fn asset(&self, name: &str) -> Result<PathBuf, FolderError> {
        let cfg = self.dir.join("config.json");
        check_plain_name(name).map_err(|msg| FolderError::Config {
            path: cfg.clone(),
            msg,
        })?;
        let mut p = self.dir.clone();
        for c in Path::new(name).components() {
            p.push(c);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(FolderError::Config {
                    path: cfg,
                    msg: format!("`{name}`: {} is a symbolic link", p.display()),
                });
            }
        }
        Ok(p)
    }

    /// The bytes of the file `name` (see [`ModelFolder::asset`]), at most `cap` bytes.
    pub fn read_asset(&self, name: &str, cap: u64) -> Result<(PathBuf, Vec<u8>), FolderError> {
        let p = self.asset(name)?;
        let bytes = read_regular_file(&p, cap)?;
        Ok((p, bytes))
    }

    /// Shapes of the float32 tensors in `<dir>/<file>`, read from the safetensors header
    /// alone (to check sizes from `config.json` before allocating anything).
    pub fn tensor_shapes(
        &self,
        file: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<usize>>, FolderError> {
        safetensors_shapes(&self.dir.join(file))
    }
}

/// Largest `config.json` read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest vocabulary or other asset read from a model folder.
pub const MAX_ASSET_BYTES: u64 = 256 << 20;

/// `Ok` for a plain relative file name: non-empty, only normal components (no `..`, `.`, root,
/// drive), no backslash or NUL.
pub fn check_plain_name(name: &str) -> Result<(), String> {
    use std::path::Component;
    let ok = !name.is_empty()
        && !name.contains(['\\', '\0'])
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "file name `{name}` is not a plain relative name inside the model folder"
        ))
    }
}

/// Reads a regular file (not a device, FIFO or folder) of at most `cap` bytes.
pub fn read_regular_file(path: &Path, cap: u64) -> Result<Vec<u8>, FolderError> {
    read_capped(path, cap).map_err(|source| FolderError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// [`read_regular_file`] with a plain I/O error: the file must be regular (checked on the
/// opened file too, so a swap for a FIFO or device is caught) and at most `cap` bytes, and
/// the read stops after `cap` bytes whatever the file says.
pub fn read_capped(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    if !std::fs::metadata(path)?.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    if meta.len() > cap {
        return Err(invalid(format!(
            "{} bytes, more than the {cap}-byte limit",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(invalid(format!("more than the {cap}-byte limit")));
    }
    Ok(bytes)
}

/// Float32 tensor shapes from a safetensors file's header (the data is not read). The header
/// length is checked against the file's size before it is read.
pub fn safetensors_shapes(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>, FolderError> {
    use std::io::Read;
    let io = |source| FolderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |msg: String| FolderError::Load {
        path: path.to_path_buf(),
        msg,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(io)?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > MAX_CONFIG_BYTES {
        return Err(bad(format!("header of {n} bytes does not fit the file")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    let mut out = std::collections::BTreeMap::new();
    for (name, t) in v.as_object().into_iter().flatten() {
        if name == "__metadata__" || t.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
            continue;
        }
        let shape: Option<Vec<usize>> = t.get("shape").and_then(|s| s.as_array()).and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        });
        let Some(shape) = shape else { continue };
        // The data the header promises must be in the file.
        let bytes = shape
            .iter()
            .try_fold(4usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("tensor `{name}`: shape {shape:?} overflows")))?;
        let offsets: Option<(u64, u64)> = t
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
        let data_len = len - 8 - n;
        match offsets {
            Some((b, e)) if b <= e && e <= data_len && e - b == bytes as u64 => {}
            _ => {
                return Err(bad(format!(
                    "tensor `{name}` of shape {shape:?} needs {bytes} bytes that the file does not hold"
                )))
            }
        }
        out.insert(name.clone(), shape);
    }
    Ok(out)
}

/// Checks that `file` of `folder` holds a float32 tensor `name` of exactly `shape` (computed
/// from `config.json`) before anything of that size is allocated.
pub fn expect_shape(
    folder: &ModelFolder,
    file: &str,
    name: &str,
    shape: &[usize],
) -> Result<(), FolderError> {
    let shapes = folder.tensor_shapes(file)?;
    match shapes.get(name) {
        Some(s) if s == shape => Ok(()),
        found => Err(FolderError::Config {
            path: folder.dir.join("config.json"),
            msg: format!(
                "the sizes in config.json give `{name}` the shape {shape:?}, but {} holds {}",
                folder.dir.join(file).display(),
                match found {
                    Some(s) => format!("{s:?}"),
                    None => "no such float32 tensor".into(),
                }
            ),
        }),
    }
}

/// The `kind` of the folder `dir` (from its `config.json`, read as a regular file of at most
/// [`MAX_CONFIG_BYTES`]).
pub fn read_kind(dir: &Path) -> Result<String, FolderError> {
    let path = dir.join("config.json");
    let bytes = read_regular_file(&path, MAX_CONFIG_BYTES)?;
    let raw: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| FolderError::Config {
            path: path.clone(),
            msg: e.to_string(),
        })?;
    raw.get("kind")
        .and_then(|k| k.as_str())
        .map(str::to_string)
        .ok_or_else(|| FolderError::Config {
            path,
            msg: "missing string field `kind`".into(),
        })
}

/// Writes `bytes` to `path` through a temporary file in the same folder (synced, then renamed
/// onto `path`), so that `path` is either its old content or the whole new one. The temporary
/// file is removed on failure. The error is the I/O error of the step that failed.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = crate::outdir::sibling(path, "tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_read_from_a_bounded_regular_config() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(read_kind(d.path()), Err(FolderError::Io { .. })));
        std::fs::write(d.path().join("config.json"), br#"{"kind": "inception_v3"}"#).unwrap();
        assert_eq!(read_kind(d.path()).unwrap(), "inception_v3");
        std::fs::write(d.path().join("config.json"), br#"{"config": {}}"#).unwrap();
        let e = read_kind(d.path()).unwrap_err().to_string();
        assert!(e.contains("missing string field `kind`"), "{e}");
        // A folder named config.json is not read.
        let d2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(d2.path().join("config.json")).unwrap();
        let e = read_kind(d2.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        // Larger than the cap: refused before it is read.
        let f = std::fs::File::create(d2.path().join("big")).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let e = read_regular_file(&d2.path().join("big"), MAX_CONFIG_BYTES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.bin");
        write_file_atomic(&p, b"first").unwrap();
        write_file_atomic(&p, b"second!").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second!");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        // Into a missing folder: an error, nothing written.
        assert!(write_file_atomic(&d.path().join("missing/a.bin"), b"x").is_err());
    }

    #[test]
    fn plain_names_only() {
        for ok in ["vocab.txt", "assets/tokens.txt"] {
            assert!(check_plain_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "/etc/passwd", "a/../b", "./a", "a\\b", "a\0b"] {
            assert!(check_plain_name(bad).is_err(), "{bad:?}");
        }
    }
}
