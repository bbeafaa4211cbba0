//! `saved_model.pb` decoding must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = savedmodel::parse_saved_model_bytes(data);
});
