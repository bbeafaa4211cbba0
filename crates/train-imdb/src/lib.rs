//! Library side of `train-imdb`: the IMDB data reader, the classifier with Keras'
//! Adam, and the curves plot (the binary in `main.rs` is a thin CLI over these).

pub mod data;
pub mod model;
pub mod plot;
