//! Resolving TF Hub / Kaggle handles, URLs, archives and local folders to a
//! local path, with a cache shared with Python `tensorflow_hub`.
//! (being written; this is the public contract other crates build against)

use std::path::PathBuf;

/// How to resolve a handle.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Use the cache only (also set by `TFHUB_OFFLINE=1`).
    pub offline: bool,
    /// Cache folder; `None` = `TFHUB_CACHE_DIR` or the per-user cache folder.
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar (only ever drawn on a terminal).
    pub progress: bool,
}

/// What a handle resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// A SavedModel folder, or a single model file (e.g. `.tflite`).
    pub path: PathBuf,
    /// The handle as given.
    pub handle: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Other(String),
}

/// Resolves `handle` to a local path (downloading and caching if needed).
pub fn resolve(handle: &str, _opts: &Options) -> Result<Resolved, Error> {
    let p = PathBuf::from(handle);
    if p.exists() {
        return Ok(Resolved { path: p, handle: handle.to_string() });
    }
    Err(Error::Other(format!("{handle}: not found (hub resolution not written yet)")))
}
