//! Training on top of the hand-written models of `models` and of the graph executor, shared by the training programs
//! (`finetune`, `train-imdb`).
//!
//! - [`data`]: a folder of images with one sub-folder per class ([`ImageFolder`]), its seeded
//!   stratified split, and image loading ([`load_image`]).
//! - [`classifier`]: the model being fine-tuned ([`ImageClassifier`]: a feature-vector
//!   [`Backbone`], the hand-written Inception-v3 or any TF2 SavedModel through the graph
//!   executor, dropout and a Dense head) and its export as a model folder `classify` loads.
//! - [`trainer`]: the fine-tuning loop ([`Trainer`]: Adam, one epoch at a time, validation,
//!   checkpoints, feature caching for a frozen backbone) and its [`FinetuneOptions`].
//! - [`report`]: per-epoch metrics ([`TrainingReport`]) written as `metrics.json`,
//!   `metrics.csv` and `curves.png`.
//!
//! Fine-tuning follows the TF Hub blog: `hub.KerasLayer(feature_vector, trainable=...)` +
//! `Dropout(0.2)` + `Dense(num_classes)`; see [`trainer`] for the batch-norm policy.

pub mod classifier;
pub mod data;
pub mod keras_adam;
pub mod report;
pub mod trainer;

pub use classifier::{
    Backbone, BatchNormPolicy, GraphBackbone, GraphClassifierConfig, GraphClassifierFolder,
    ImageClassifier, GRAPH_BACKBONE_DIR, GRAPH_CLASSIFIER_KIND, HEAD_FILE,
};
pub use data::{image_to_tensor_data, load_image, ImageFolder, SplitMix64, IMAGE_EXTENSIONS};
pub use report::{EpochRecord, ReportError, TrainingReport};
pub use trainer::{CheckpointState, FinetuneOptions, Progress, Trainer};

use models::inception_v3::InceptionError;
use models::weights::FolderError;
use std::path::{Path, PathBuf};

/// What can go wrong while loading data, building, training, checkpointing or exporting a
/// fine-tuned model; every message names the file or the option.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: data folder has no class sub-folders (expected one sub-folder of images per class)")]
    NoClasses { path: PathBuf },
    #[error("{path}: class folder holds no readable .jpg/.jpeg/.png image")]
    EmptyClass { path: PathBuf },
    #[error("{path}: cannot decode image: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Model(#[from] InceptionError),
    #[error(transparent)]
    Weights(#[from] FolderError),
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A graph backbone (a TF2 SavedModel run by the graph executor) failed to load or run.
    #[error("{path}: {msg}")]
    Graph { path: PathBuf, msg: String },
    #[error("{path}: invalid checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::Io {
        path: path.to_path_buf(),
        source,
    }
}
