//! Tar / tar.gz extraction (what `hub` does with downloads and local archives) must refuse
//! unsafe or oversized archives without panicking and never write outside its folder.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let tmp = common::TempDir::new("tar");
    let dest = tmp.0.join("out");
    std::fs::create_dir(&dest).unwrap();
    let _ = hub::extract_archive_bytes(data, &dest, 16 << 20);
    // Nothing may appear beside the destination folder.
    let names: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().flatten().collect();
    assert_eq!(names.len(), 1, "an archive wrote outside its folder");
});
