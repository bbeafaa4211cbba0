//! Recognising TensorFlow models and converting them to what `models` loads:
//! `weights/<name>/{model.safetensors, config.json, assets...}`.
//!
//! Flow: a format reader (`savedmodel`, `tflite`) fills a [`Source`] (a
//! [`kinds::magenta_tflite::TfliteSource`] for `.tflite` files); each model kind in
//! [`kinds`] (a [`kinds::Kind`], listed in [`kinds::KINDS`]) checks whether it
//! recognises the source and maps the TensorFlow variables onto the Burn module's
//! parameter names and layouts ([`layout`], [`Source::vector`], [`Source::kernel`]),
//! giving a [`Converted`]; [`write`] puts that on disk atomically. [`inspect`]
//! describes a model for `convert inspect`.

pub mod from_savedmodel;
pub mod inspect;
pub mod kinds;
pub mod layout;
pub mod source;
pub mod write;

pub use source::{F32Tensor, RegexRewrite, Source};

/// The version written into every `config.json`.
pub const CONVERTER_VERSION: &str = model_folder::FolderConfig::VERSION;

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

/// Errors of recognition and mapping. Each names the variable, tensor or operator and the
/// problem; the TF Lite kinds and the text embedding's checks name the file or handle through
/// [`ConvertError::In`].
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A variable the kind needs is absent.
    #[error("variable `{0}` is missing")]
    Missing(String),
    /// A variable or tensor has the wrong shape.
    #[error("variable `{name}` has shape {found:?}, expected {expected}")]
    Shape {
        name: String,
        found: Vec<usize>,
        /// The expected shape, e.g. `[3, 3, 3, c_out]` or `a 4-d kernel`.
        expected: String,
    },
    /// A tensor's shape does not match the number of values it holds.
    #[error("{what} `{name}` has shape {shape:?}, which does not match the {values} values")]
    ValueCount {
        /// What the tensor is: `tensor`, `variable`, `DEQUANTIZE of `x`: output`.
        what: String,
        name: String,
        shape: Vec<i64>,
        values: usize,
    },
    /// A variable's values cannot be used (e.g. a negative variance).
    #[error("variable `{name}` has {problem}")]
    BadValues { name: String, problem: String },
    /// The conv widths of a slim network fit no `depth_multiplier`/`min_depth`.
    #[error("{network} conv widths {widths:?} fit no slim depth_multiplier/min_depth")]
    SlimWidth {
        network: &'static str,
        /// Output channels of every conv, in the network's order.
        widths: Vec<usize>,
    },
    /// An asset file the kind needs is absent.
    #[error("no `{file}` asset ({why})")]
    MissingAsset { file: String, why: String },
    /// The graph (its operators, their options or the tensors they use) is not the one the
    /// kind maps.
    #[error("{what}: {found}, expected {expected}")]
    UnexpectedGraph {
        /// The operator, tensor or layer, e.g. ``operator #3 (`MobilenetV2/Conv/weights`)``.
        what: String,
        found: String,
        expected: String,
    },
    /// A layer or value the kind needs is not in the graph.
    #[error("no {what} found")]
    NotFound {
        /// E.g. ``the `transformer/contract/conv1` conv``.
        what: String,
    },
    /// No kind recognises the model.
    #[error("not one of {expected}")]
    Unrecognised {
        /// The models that would have been recognised.
        expected: String,
    },
    /// The TF Lite file cannot be read (names the file itself).
    #[error(transparent)]
    Tflite(#[from] tflite::Error),
    /// An error of the model at `model` (a file or handle).
    #[error("{model}: {error}")]
    In {
        model: String,
        error: Box<ConvertError>,
    },
}

impl ConvertError {
    /// This error labelled with the file or handle it is about (a [`ConvertError::Tflite`]
    /// error names its file already and is returned as is).
    pub fn within(self, model: impl std::fmt::Display) -> Self {
        match self {
            e @ (ConvertError::Tflite(_) | ConvertError::In { .. }) => e,
            e => ConvertError::In {
                model: model.to_string(),
                error: Box::new(e),
            },
        }
    }

    /// The error without its [`ConvertError::In`] labels.
    pub fn innermost(&self) -> &ConvertError {
        match self {
            ConvertError::In { error, .. } => error.innermost(),
            e => e,
        }
    }
}
