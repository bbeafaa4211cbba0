//! transformer (being written)
