//! stylization (being written)
