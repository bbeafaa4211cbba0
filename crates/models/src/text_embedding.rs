//! text_embedding (being written)
