//! Burn implementations of TensorFlow Hub's classic models.
//!
//! Each model lives in one module (config, layers, forward pass, `load` from a
//! folder written by `convert`). Shared pieces: [`backend`] (explicit device
//! choice) and [`weights`] (reading `config.json` + `model.safetensors`).

pub mod backend;
pub mod cpu;
pub mod weights;

pub mod imageops;
pub mod inception_v3;
pub mod rng;
pub mod stylization;
pub mod text_embedding;

pub use backend::Backend;
pub use weights::FolderError;
