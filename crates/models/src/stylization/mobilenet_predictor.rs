//! mobilenet_predictor (being written)
