//! Conversion: TensorFlow files to a model folder, as `convert` does it.

use crate::timing::median_ms;
use std::path::Path;

/// Milliseconds to read a `.tflite` file, recognise it and map it (no writing).
pub fn tflite(path: &Path, iters: usize) -> Result<f64, String> {
    convert::kinds::magenta_tflite::convert_tflite(path, "bench").map_err(|e| e.to_string())?;
    Ok(median_ms(1, iters, || {
        std::hint::black_box(
            convert::kinds::magenta_tflite::convert_tflite(path, "bench").expect("convert"),
        );
    }))
}

/// Milliseconds to read a SavedModel (every tensor CRC-checked), recognise its kind, map it
/// and write the folder.
pub fn saved_model(dir: &Path, iters: usize) -> Result<f64, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let once = |n: usize| -> Result<(), String> {
        let sm = savedmodel::read(dir).map_err(|e| e.to_string())?;
        let src = convert::from_savedmodel::source_from_savedmodel(&sm, "bench")
            .map_err(|e| e.to_string())?;
        let c = convert::kinds::convert_any(&src)
            .map_err(|e| e.to_string())?
            .ok_or("no converter kind recognises it")?;
        convert::write::write_model(&tmp.path().join(format!("m{n}")), &c, "bench", &[])
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    once(0)?;
    let mut n = 0;
    Ok(median_ms(0, iters, || {
        n += 1;
        once(n).expect("convert");
    }))
}
