//! The `config.json` of a model folder, as every writer writes it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `config.json`: `{"kind", "config", "source", "source_sha256", "converter_version"}`.
///
/// Readers ([`crate::ModelFolder`], [`crate::read_kind`]) only need `kind` and `config` and
/// accept folders without the rest; every writer (`convert`, the training programs, the text
/// embedding's `save`) builds its file through this struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderConfig {
    /// The model family, e.g. `inception_v3`.
    pub kind: String,
    /// The family's own configuration.
    pub config: serde_json::Value,
    /// Where the model came from: the handle or path converted, or the program that trained it.
    pub source: String,
    /// SHA-256 of every source file by its relative name (conversions only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_sha256: BTreeMap<String, String>,
    /// The version of this project that wrote the folder.
    pub converter_version: String,
}

impl FolderConfig {
    /// The version written into every `config.json` (the cache of conversions is keyed by it).
    pub const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    /// A `config.json` of `kind` with `config`, written by this version.
    pub fn new(
        kind: &str,
        config: impl Serialize,
        source: &str,
    ) -> Result<FolderConfig, serde_json::Error> {
        Ok(FolderConfig {
            kind: kind.to_string(),
            config: serde_json::to_value(config)?,
            source: source.to_string(),
            source_sha256: BTreeMap::new(),
            converter_version: Self::VERSION.to_string(),
        })
    }

    /// Adds the SHA-256 of the source files.
    pub fn with_source_sha256(mut self, hashes: BTreeMap<String, String>) -> FolderConfig {
        self.source_sha256 = hashes;
        self
    }

    /// The file's bytes (pretty JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a JSON value serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_leaves_out_empty_hashes() {
        let c = FolderConfig::new(
            "text_embedding",
            serde_json::json!({"dim": 20}),
            "train-imdb",
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&c.to_bytes()).unwrap();
        assert_eq!(v["kind"], "text_embedding");
        assert_eq!(v["config"]["dim"], 20);
        assert_eq!(v["converter_version"], env!("CARGO_PKG_VERSION"));
        assert!(v.get("source_sha256").is_none());
        let mut h = BTreeMap::new();
        h.insert("saved_model.pb".to_string(), "ab".repeat(32));
        let c = c.with_source_sha256(h);
        let back: FolderConfig = serde_json::from_slice(&c.to_bytes()).unwrap();
        assert_eq!(back, c);
    }
}
