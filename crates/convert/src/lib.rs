//! Recognising TensorFlow models and converting them to what `models` loads:
//! `weights/<name>/{model.safetensors, config.json, assets...}`.
//!
//! Flow: a format reader (`savedmodel`, `tflite`) fills a [`Source`]; each model
//! kind in [`kinds`] checks whether it recognises the source and maps the
//! TensorFlow variables onto the Burn module's parameter names and layouts,
//! giving a [`Converted`]; [`write`] puts that on disk atomically.

pub mod from_savedmodel;
pub mod inspect;
pub mod kinds;
pub mod layout;
pub mod source;
pub mod write;

pub use source::{F32Tensor, Source};

/// The version written into every `config.json`.
pub const CONVERTER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One tensor of the output file, already in the Burn module's name and layout.
#[derive(Debug, Clone, PartialEq)]
pub struct OutTensor {
    /// Burn parameter path, e.g. `stem.0.conv.weight`.
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A recognised and mapped model, ready to be written.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Model kind as `models` expects it in `config.json`: `inception_v3`,
    /// `stylization`, `text_embedding`, ... (`raw` for `--raw`).
    pub kind: String,
    /// The model's configuration (deserialized by `models` into its config type).
    pub config: serde_json::Value,
    /// Tensors for `model.safetensors`.
    pub tensors: Vec<OutTensor>,
    /// Tensors of other dtypes for `model.safetensors` (only `--raw` has them: every variable
    /// keeps its own dtype there).
    pub typed: Vec<model_folder::safetensors::Tensor>,
    /// Extra files (relative path, bytes), e.g. `tokens.txt`.
    pub assets: Vec<(String, Vec<u8>)>,
}

/// Errors of recognition and mapping. Each names the variable and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("variable `{0}` is missing")]
    Missing(String),
    #[error("variable `{name}` has shape {found:?}, expected {expected}")]
    Shape {
        name: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("{0}")]
    Other(String),
}
