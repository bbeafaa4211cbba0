//! `.npy` parsing (style vectors, features) must never panic or misread a shape.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = model_folder::npy::from_bytes(data) {
        let n = a.shape.iter().try_fold(1usize, |x, &d| x.checked_mul(d));
        assert_eq!(n, Some(a.data.len()));
    }
});
