//! Magenta's TF Lite stylization networks (being written).
use crate::{ConvertError, Converted};
use std::path::Path;

/// Converts a `.tflite` file (style predictor or style transfer network).
pub fn convert_tflite(path: &Path, _handle: &str) -> Result<Converted, ConvertError> {
    Err(ConvertError::Other(format!("{}: TF Lite conversion is not written yet", path.display())))
}

/// Human-readable (or JSON) description of a `.tflite` file for `convert inspect`.
pub fn inspect_tflite(path: &Path, _json: bool) -> Result<String, ConvertError> {
    Err(ConvertError::Other(format!("{}: TF Lite inspection is not written yet", path.display())))
}
