//! TensorFlow's text kernels, byte for byte: what the TF-Hub text-embedding graphs compute
//! between the sentence strings and the embedding table, and the embedding bag itself in
//! TensorFlow's own summation order.
//!
//! One implementation with two callers: the hand-written text embedding
//! (`models::text_embedding`) and the graph executor's string, table and sparse ops
//! (`tfgraph`).
//!
//! - [`punct`]: RE2's `\pP` as TensorFlow 2.21 sees it (a table computed by running TF on
//!   every Unicode scalar value).
//! - [`regex_replace`]: `StaticRegexReplace` / `RegexReplace`: `\pP` exactly, any other RE2
//!   pattern through the `regex` crate (RE2's syntax family; `\pP` inside a pattern is
//!   replaced by the exact table).
//! - [`split`]: `StringSplitV2` (`tf.strings.split`) and the TF1 `StringSplit`.
//! - [`farmhash`]: `Fingerprint64`, the hash of `StringToHashBucketFast`.
//! - [`vocab`]: `InitializeTableFromTextFileV2`'s reading of a vocabulary file.
//! - [`segment`]: `SparseSegmentSum` / `Mean` / `SqrtN` in the CPU kernel's order.

pub mod farmhash;
pub mod punct;
mod punct_table;
pub mod regex_replace;
pub mod segment;
pub mod split;
pub mod vocab;

pub use farmhash::fingerprint64;
pub use punct::{is_punctuation, remove_punctuation};
pub use regex_replace::RegexReplace;

/// `StringToHashBucketFast`: `Fingerprint64(s) mod buckets` (`buckets` > 0).
pub fn hash_bucket(s: &[u8], buckets: u64) -> u64 {
    fingerprint64(s) % buckets.max(1)
}
