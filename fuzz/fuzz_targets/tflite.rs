//! The TF Lite reader must never panic, abort or allocate without bound on arbitrary bytes
//! (the Magenta TF Lite converter on top of it: `tflite_convert`, `--features convert`).
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = common::read_tflite(data);
});
