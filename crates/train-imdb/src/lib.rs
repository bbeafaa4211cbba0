//! Library side of `train-imdb`: the IMDB data reader, the classifier with Keras' Adam on
//! the hand-written embedding ([`model`]) or on any text SavedModel's graph ([`graph`]).
//! The binary in `main.rs` is a thin CLI over these; metrics.json, metrics.csv and
//! curves.png come from `training::report`.

pub mod data;
pub mod graph;
pub mod model;
