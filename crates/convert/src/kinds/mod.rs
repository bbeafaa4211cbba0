//! The model kinds: each recognises a source and maps its tensors onto a Burn module's
//! parameters ([`Kind`]). [`KINDS`] lists the SavedModel kinds in the order they are tried;
//! [`magenta_tflite::KINDS`] the TF Lite ones.

pub mod inception_v3;
pub mod magenta_tflite;
pub mod stylization;
pub mod text_embedding;

use crate::{ConvertError, Converted, Source};

/// A model kind that recognises sources of type `S` (a SavedModel's [`Source`] unless said
/// otherwise) and converts them.
pub trait Kind<S: ?Sized = Source>: Sync {
    /// The kind as written in `config.json` (`inception_v3`, `stylization`, ...): what
    /// [`Kind::convert`] puts in [`Converted::kind`].
    fn name(&self) -> &'static str;
    /// What the kind converts, for messages (`Inception-v3`, `a text embedding`).
    fn description(&self) -> &'static str;
    /// Whether `src` looks like this kind (cheap: names and shapes, no mapping).
    fn recognise(&self, src: &S) -> bool;
    /// Maps `src` onto the Burn module's parameter names and layouts.
    fn convert(&self, src: &S) -> Result<Converted, ConvertError>;
}

/// The SavedModel kinds, in the order they are tried: the first that recognises a source
/// converts it (the stylization model holds an Inception-v3, so it comes first).
pub static KINDS: &[&dyn Kind] = &[
    &stylization::Stylization,
    &inception_v3::InceptionV3,
    &text_embedding::TextEmbedding,
];

/// The first kind of [`KINDS`] that recognises `src`.
pub fn recognise(src: &Source) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.recognise(src))
}

/// The SavedModel kind named `name` (as in `config.json`).
pub fn by_name(name: &str) -> Option<&'static dyn Kind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The descriptions of `kinds` as one list: `A, B or C`.
pub fn describe<S: ?Sized>(kinds: &[&dyn Kind<S>]) -> String {
    let d: Vec<&str> = kinds.iter().map(|k| k.description()).collect();
    match d.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Tries every known kind in turn; `Ok(None)` when none recognises the source.
pub fn convert_any(src: &Source) -> Result<Option<Converted>, ConvertError> {
    recognise(src).map(|k| k.convert(src)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_name_each_kind_once_in_recognition_order() {
        let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        assert_eq!(names, ["stylization", "inception_v3", "text_embedding"]);
        let tflite: Vec<&str> = magenta_tflite::KINDS.iter().map(|k| k.name()).collect();
        assert_eq!(tflite, ["style_predictor", "style_transfer"]);
        assert_eq!(by_name("inception_v3").unwrap().name(), "inception_v3");
        assert!(by_name("raw").is_none());
        assert_eq!(
            describe(KINDS),
            "Magenta stylization, Inception-v3 or a text embedding"
        );
    }

    #[test]
    fn an_empty_source_is_recognised_by_no_kind() {
        let src = Source::default();
        assert!(recognise(&src).is_none());
        assert!(convert_any(&src).unwrap().is_none());
    }
}
