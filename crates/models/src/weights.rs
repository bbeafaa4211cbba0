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

/// Loads a safetensors file into a module strictly: every parameter of the module must be
/// present with the right shape (no partial loads), and every tensor of the file must be used
/// (a tensor nobody reads means the file is not what the module thinks; the error names it).
pub fn load_safetensors<M: Module + ModuleSnapshot>(
    module: M,
    path: &Path,
) -> Result<M, FolderError> {
    load(module, path, false)
}

/// [`load_safetensors`], but tensors of the file that the module has no parameter for are
/// allowed: for a module built as a prefix of the stored network (an Inception-v3 cut at an
/// earlier end point).
pub fn load_safetensors_allowing_unused<M: Module + ModuleSnapshot>(
    module: M,
    path: &Path,
) -> Result<M, FolderError> {
    load(module, path, true)
}

fn load<M: Module + ModuleSnapshot>(
    mut module: M,
    path: &Path,
    allow_unused: bool,
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
    if !allow_unused && !result.unused.is_empty() {
        let mut names = result.unused.clone();
        names.sort();
        let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        return Err(FolderError::Load {
            path: path.to_path_buf(),
            msg: format!(
                "{} tensor(s) that the model has no parameter for: {}{}",
                names.len(),
                shown.join(", "),
                if names.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        });
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    /// A file with a tensor the module does not read is refused, naming it; the explicit
    /// opt-in loads it; a missing tensor is refused either way.
    #[test]
    fn unused_and_missing_tensors_are_errors_unless_allowed() {
        let device = Device::flex();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.safetensors");
        let with_bias: Linear = LinearConfig::new(2, 3).init(&device);
        let mut store = SafetensorsStore::from_file(path.clone());
        with_bias.save_into(&mut store).unwrap();
        let no_bias = || LinearConfig::new(2, 3).with_bias(false).init(&device);
        let e = load_safetensors::<Linear>(no_bias(), &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no parameter for: bias"), "{e}");
        let loaded: Linear = load_safetensors_allowing_unused(no_bias(), &path).unwrap();
        let (a, b) = (
            loaded.weight.val().into_data().try_to_vec::<f32>().unwrap(),
            with_bias
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
        );
        assert_eq!(a, b);
        // The other way round: the bias is missing from the file.
        let path2 = tmp.path().join("no_bias.safetensors");
        let mut store = SafetensorsStore::from_file(path2.clone());
        no_bias().save_into(&mut store).unwrap();
        let fresh: Linear = LinearConfig::new(2, 3).init(&device);
        assert!(load_safetensors_allowing_unused(fresh, &path2).is_err());
    }
}
