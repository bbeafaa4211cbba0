//! The TF Lite reader and the Magenta TF Lite converter must never panic, abort or allocate
//! without bound on arbitrary bytes. Needs `--features convert`.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(model) = common::read_tflite(data) else {
        return;
    };
    let _ = convert::kinds::magenta_tflite::convert_model(
        std::path::Path::new("fuzz.tflite"),
        &model,
        "fuzz",
    );
});
