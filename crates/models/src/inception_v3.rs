//! inception_v3 (being written)
