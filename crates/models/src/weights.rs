//! Reading what `convert` writes: `<dir>/config.json` + `<dir>/model.safetensors`.
//!
//! `config.json` always has `"kind"` (e.g. `"inception_v3"`), `"config"` (the
//! model's own configuration object), `"source"` and `"converter_version"`.

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
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
    pub fn open(dir: impl AsRef<Path>, expected: &str) -> Result<Self, WeightsError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join("config.json");
        let bytes = read_regular_file(&path, MAX_CONFIG_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| WeightsError::Config {
            path: path.clone(),
            msg: "not UTF-8".into(),
        })?;
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| WeightsError::Config {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        let kind = raw
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| WeightsError::Config {
                path: path.clone(),
                msg: "missing string field `kind`".into(),
            })?
            .to_string();
        if kind != expected {
            return Err(WeightsError::WrongKind {
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
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, WeightsError> {
        serde_json::from_value(self.config.clone()).map_err(|e| WeightsError::Config {
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
    pub fn asset(&self, name: &str) -> Result<PathBuf, WeightsError> {
        let cfg = self.dir.join("config.json");
        check_plain_name(name).map_err(|msg| WeightsError::Config {
            path: cfg.clone(),
            msg,
        })?;
        let mut p = self.dir.clone();
        for c in Path::new(name).components() {
            p.push(c);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(WeightsError::Config {
                    path: cfg,
                    msg: format!("`{name}`: {} is a symbolic link", p.display()),
                });
            }
        }
        Ok(p)
    }

    /// The bytes of the file `name` (see [`ModelFolder::asset`]), at most `cap` bytes.
    pub fn read_asset(&self, name: &str, cap: u64) -> Result<(PathBuf, Vec<u8>), WeightsError> {
        let p = self.asset(name)?;
        let bytes = read_regular_file(&p, cap)?;
        Ok((p, bytes))
    }

    /// Shapes of the float32 tensors in `<dir>/<file>`, read from the safetensors header
    /// alone (to check sizes from `config.json` before allocating anything).
    pub fn tensor_shapes(
        &self,
        file: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<usize>>, WeightsError> {
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
pub fn read_regular_file(path: &Path, cap: u64) -> Result<Vec<u8>, WeightsError> {
    use std::io::Read;
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |msg: String| io(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
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
    f.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(invalid(format!("more than the {cap}-byte limit")));
    }
    Ok(bytes)
}

/// Float32 tensor shapes from a safetensors file's header (the data is not read). The header
/// length is checked against the file's size before it is read.
pub fn safetensors_shapes(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>, WeightsError> {
    use std::io::Read;
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |msg: String| WeightsError::Load {
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
) -> Result<(), WeightsError> {
    let shapes = folder.tensor_shapes(file)?;
    match shapes.get(name) {
        Some(s) if s == shape => Ok(()),
        found => Err(WeightsError::Config {
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

impl ModelFolder {
    /// Loads `<dir>/<file>` (normally `model.safetensors`) into `module`, strictly:
    /// every parameter must be present with the right shape.
    pub fn load_into<M: Module + ModuleSnapshot>(
        &self,
        module: M,
        file: &str,
    ) -> Result<M, WeightsError> {
        load_safetensors(module, &self.dir.join(file))
    }
}

/// Loads a safetensors file into a module: every parameter of the module must be
/// present with the right shape (no partial loads), unused tensors are an error.
pub fn load_safetensors<M: Module + ModuleSnapshot>(
    mut module: M,
    path: &Path,
) -> Result<M, WeightsError> {
    if !path.is_file() {
        return Err(WeightsError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let mut store = SafetensorsStore::from_file(path.to_path_buf()).allow_partial(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| WeightsError::Load {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(WeightsError::Load {
            path: path.to_path_buf(),
            msg: format!("{result}"),
        });
    }
    Ok(module)
}
