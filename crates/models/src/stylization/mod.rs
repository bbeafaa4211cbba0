//! Magenta arbitrary image stylization (being written).
pub mod inception_predictor;
pub mod mobilenet_predictor;
pub mod transformer;
