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
        let text = std::fs::read_to_string(&path).map_err(|source| WeightsError::Io {
            path: path.clone(),
            source,
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

    /// Path of a file in the folder (e.g. an asset).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

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
