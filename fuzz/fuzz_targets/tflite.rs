//! The TF Lite reader must never panic, abort or allocate without bound on arbitrary bytes
//! (the Magenta TF Lite converter on top of it: `tflite_convert`, `--features convert`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = tflite::Model::from_bytes(data.to_vec(), "fuzz.tflite") else {
        return;
    };
    for s in 0..model.subgraphs.len() {
        for t in 0..model.subgraphs[s].tensors.len() {
            let _ = model.tensor_f32(s, t);
        }
    }
});
