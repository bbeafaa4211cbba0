//! inception_v3 (being written)
use crate::{ConvertError, Converted, Source};

pub fn recognise(_src: &Source) -> bool {
    false
}

pub fn convert(_src: &Source) -> Result<Converted, ConvertError> {
    Err(ConvertError::Other("inception_v3 conversion is not written yet".into()))
}
