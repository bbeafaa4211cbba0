//! The model folder: what `convert` (and the programs that train or export) write, and what
//! every model loads. No Burn.
//!
//! A folder holds `config.json` and `model.safetensors` (float32 tensors under the Burn
//! parameter names), plus the assets a model needs (a vocabulary, labels). `config.json` is
//! `{"kind", "config", "source", "source_sha256", "converter_version"}`: `kind` names the model
//! family (`inception_v3`, `text_embedding`, ...), `config` is that family's own configuration.
//!
//! Everything here treats a folder as untrusted input: `config.json` and assets are read with a
//! size cap and only as regular files; names that come from `config.json` must be plain relative
//! names inside the folder; sizes in `config.json` are checked against the safetensors header
//! ([`safetensors_shapes`], [`expect_shape`]) before anything of that size is allocated.
//!
//! Writing: [`outdir`] replaces an output folder only when this project wrote it (staged in a
//! sibling folder and swapped in, with a complete rollback); [`write_file_atomic`] writes a
//! single file through a temporary sibling; [`safetensors`] writes tensors of every dtype;
//! [`npy`] reads and writes NumPy arrays.

mod config;
mod folder;
pub mod inception_v3;
pub mod npy;
pub mod outdir;
pub mod safetensors;

pub use config::FolderConfig;
pub use folder::{
    check_plain_name, expect_shape, read_capped, read_kind, read_regular_file, safetensors_shapes,
    write_file_atomic, FolderError, ModelFolder, MAX_ASSET_BYTES, MAX_CONFIG_BYTES,
};
