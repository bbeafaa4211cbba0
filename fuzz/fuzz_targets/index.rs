//! `variables.index` parsing (SSTable + TensorBundle entries) must never panic, abort or
//! allocate without bound. Each input is tried as it is (checksums checked) and with its block
//! checksums recomputed (what a crafted index with valid checksums reaches).
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let _ = savedmodel::sstable::read_table(data);
    let _ = savedmodel::parse_index(data);
    let mut fixed = data.to_vec();
    common::fix_sstable_crcs(&mut fixed);
    if fixed != data {
        let _ = savedmodel::sstable::read_table(&fixed);
        let _ = savedmodel::parse_index(&fixed);
    }
});
