//! One module per model kind. Each has
//! `pub fn recognise(src: &Source) -> bool` and
//! `pub fn convert(src: &Source) -> Result<Converted, ConvertError>`.

pub mod inception_v3;
pub mod stylization;
pub mod text_embedding;

use crate::{ConvertError, Converted, Source};

/// Tries every known kind in turn; `Ok(None)` when none recognises the source.
pub fn convert_any(src: &Source) -> Result<Option<Converted>, ConvertError> {
    if stylization::recognise(src) {
        return stylization::convert(src).map(Some);
    }
    if inception_v3::recognise(src) {
        return inception_v3::convert(src).map(Some);
    }
    if text_embedding::recognise(src) {
        return text_embedding::convert(src).map(Some);
    }
    Ok(None)
}

pub mod magenta_tflite;
