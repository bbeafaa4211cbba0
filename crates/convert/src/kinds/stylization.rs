//! stylization (being written)
use crate::{ConvertError, Converted, Source};

pub fn recognise(_src: &Source) -> bool {
    false
}

pub fn convert(_src: &Source) -> Result<Converted, ConvertError> {
    Err(ConvertError::Other("stylization conversion is not written yet".into()))
}
