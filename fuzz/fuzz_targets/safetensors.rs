//! Reading a safetensors header (what the loaders check sizes against) must bound what it
//! reads by the file and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let tmp = common::TempDir::new("st");
    let path = tmp.0.join("model.safetensors");
    std::fs::write(&path, data).unwrap();
    if let Ok(shapes) = model_folder::safetensors_shapes(&path) {
        for shape in shapes.values() {
            let bytes = shape.iter().try_fold(4usize, |a, &d| a.checked_mul(d));
            assert!(bytes.is_some_and(|b| b <= data.len()));
        }
    }
});
