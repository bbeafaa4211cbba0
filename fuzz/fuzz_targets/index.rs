//! `variables.index` parsing (SSTable + TensorBundle entries) must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = savedmodel::sstable::read_table(data);
    let _ = savedmodel::parse_index(data);
});
