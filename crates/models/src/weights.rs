//! Loading what `convert` writes (`<dir>/model.safetensors`) into Burn modules. Reading the
//! folder itself (`config.json`, assets, the safetensors header) is `model_folder`'s.

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use std::path::Path;

pub use model_folder::{
    check_plain_name, expect_shape, read_regular_file, safetensors_shapes, FolderError,
    ModelFolder, MAX_ASSET_BYTES, MAX_CONFIG_BYTES,
};

/// Loads `<folder>/<file>` (normally `model.safetensors`) into `module`, strictly: every
/// parameter must be present with the right shape.
pub fn load_into<M: Module + ModuleSnapshot>(
    folder: &ModelFolder,
    module: M,
    file: &str,
) -> Result<M, FolderError> {
    load_safetensors(module, &folder.dir.join(file))
}

/// Loads a safetensors file into a module: every parameter of the module must be
/// present with the right shape (no partial loads), unused tensors are an error.
pub fn load_safetensors<M: Module + ModuleSnapshot>(
    mut module: M,
    path: &Path,
) -> Result<M, FolderError> {
    if !path.is_file() {
        return Err(FolderError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let mut store = SafetensorsStore::from_file(path.to_path_buf()).allow_partial(false);
    let result = module
        .load_from(&mut store)
        .map_err(|e| FolderError::Load {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(FolderError::Load {
            path: path.to_path_buf(),
            msg: format!("{result}"),
        });
    }
    Ok(module)
}
