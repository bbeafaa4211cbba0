//! Full-size check of the Magenta stylization SavedModel (published widths: Inception-v3
//! at depth multiplier 1, transformer alpha 1; content 384x384, style 256x256, the shared
//! images). Needs `tools/out/stylization_full`, written by
//! `tools/.venv/bin/python tools/make_magenta_fixture.py --full` (or
//! `tools/check_stylization_full.py`); skipped with a message when it is absent.

mod stylization_common;

use models::Backend;
use stylization_common::*;

/// Full-size tolerance (absolute, pixels in [0, 1] and the style bottleneck): measured on AVX2
/// 3.1e-5 (flex) and 4.4e-5 (CPU engine) for pixels, 1.6e-6 for the bottleneck.
const TOL: f32 = 8e-5;

#[test]
fn full_size_stylization_matches_tensorflow_on_flex() {
    let dir = full_dir();
    if !dir.join("saved_model").join("saved_model.pb").is_file()
        || !dir.join("cases.json").is_file()
    {
        eprintln!(
            "SKIPPED: {} is absent; run `tools/.venv/bin/python tools/make_magenta_fixture.py --full` first",
            dir.display()
        );
        return;
    }
    let (db, dy) = check_backend(Backend::Flex, &dir.join("saved_model"), &dir, TOL);
    println!("full size, flex: worst bottleneck diff {db:.3e}, worst pixel diff {dy:.3e}");
    let isa = models::cpu::Isa::detect();
    let (db, dy) = check_cpu(isa, &dir.join("saved_model"), &dir, TOL);
    println!(
        "full size, cpu kernels {isa:?}: worst bottleneck diff {db:.3e}, worst pixel diff {dy:.3e}"
    );
}
