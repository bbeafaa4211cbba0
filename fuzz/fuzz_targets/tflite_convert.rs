//! The TF Lite reader and the Magenta TF Lite converter must never panic, abort or allocate
//! without bound on arbitrary bytes. Needs `--features convert` (which builds Burn).
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
    let _ = convert::kinds::magenta_tflite::convert_model(
        std::path::Path::new("fuzz.tflite"),
        &model,
        "fuzz",
    );
});
