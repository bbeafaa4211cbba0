//! Filling a [`Source`] from a SavedModel read by the `savedmodel` crate.

use crate::{F32Tensor, Source};
use savedmodel::SavedModel;

/// Errors while building a [`Source`]; each names the file or tensor.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    SavedModel(#[from] savedmodel::Error),
    #[error("{path}: cannot read asset: {source}")]
    Asset {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Reads every variable of `sm` (float32/float64/float16/bfloat16 into `tensors` as f32,
/// other dtypes into `other_variables`), its op types and its asset files' contents.
pub fn source_from_savedmodel(sm: &SavedModel, handle: &str) -> Result<Source, SourceError> {
    let mut src = Source {
        handle: handle.to_string(),
        op_types: sm.op_types().clone(),
        ..Source::default()
    };
    for v in sm.variables() {
        if v.dtype.is_float() {
            let t = sm.tensor(&v.name)?;
            src.tensors.insert(
                v.name.clone(),
                F32Tensor {
                    shape: t.shape.clone(),
                    data: t.to_f32()?,
                },
            );
        } else {
            src.other_variables
                .insert(v.name.clone(), (v.dtype.name(), v.shape.clone()));
        }
    }
    for a in sm.assets() {
        let bytes = std::fs::read(&a.path).map_err(|e| SourceError::Asset {
            path: a.path.clone(),
            source: e,
        })?;
        src.assets.insert(a.filename.clone(), bytes);
    }
    Ok(src)
}
