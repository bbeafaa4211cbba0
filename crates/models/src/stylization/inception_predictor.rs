//! inception_predictor (being written)
