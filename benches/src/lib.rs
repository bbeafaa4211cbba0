//! The speed suite of tfhub-rs (not tests: nothing here asserts a speed).
//!
//! - `cargo bench -p benches --bench suite [-- --quick] [--out FILE]`: every measurement below
//!   on this machine, printed and written as one JSON file (default `target/speed.json`):
//!   Inception-v3 inference, README's first command (Magenta's TF Lite stylization), the
//!   Magenta SavedModel stylization, conversion, `train-imdb` epochs and fine-tuning steps.
//!   What needs data that is absent (`../shared/data`, `tools/out`) is skipped and said so.
//! - `cargo bench -p benches --bench inception|stylization [-- ...]`: one area with its own
//!   options, printing the lines `tools/bench_side_by_side.py` parses.
//!
//! The peers (TensorFlow, Keras, ONNX Runtime, OpenVINO) are Python: `tools/bench_*.py` and
//! `tools/bench_side_by_side.py` run them, side by side with these benchmarks.

pub mod conversion;
pub mod inception;
pub mod programs;
pub mod report;
pub mod stylization;
pub mod timing;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the repository")
        .to_path_buf()
}

/// `../shared/data/<rel>` beside the repository, if present.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/data").join(rel);
    p.exists().then_some(p)
}

/// `tools/out/<rel>` (made by the tools scripts), if present.
pub fn tools_out(rel: &str) -> Option<PathBuf> {
    let p = repo().join("tools/out").join(rel);
    p.exists().then_some(p)
}
