//! The full-size Inception-v3 SavedModel made by `tools/make_inception_fixture.py`
//! (`tools/out/inception_v3_full/`): every variable equals the value TensorFlow saved in
//! `variables_tf.safetensors`. Skipped with a message when the folder is absent.

use std::path::Path;

#[test]
fn full_inception_variables_match_tensorflow() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/out/inception_v3_full");
    let st_path = base.join("variables_tf.safetensors");
    if !st_path.is_file() || !base.join("saved_model/saved_model.pb").is_file() {
        eprintln!(
            "SKIPPED: {} absent (run tools/make_inception_fixture.py)",
            base.display()
        );
        return;
    }
    let sm = savedmodel::read(&base.join("saved_model")).unwrap();
    let bytes = std::fs::read(&st_path).unwrap();
    let st = safetensors_lite(&bytes);
    assert_eq!(sm.variables().len(), st.len());
    for (name, shape, data) in st {
        let t = sm.tensor(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(t.to_f32().unwrap(), data, "{name}");
    }
}

/// Minimal safetensors reader (F32 only) so this crate needs no extra dependency.
fn safetensors_lite(b: &[u8]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let data = &b[8 + n..];
    let mut out = Vec::new();
    for (k, v) in header.as_object().unwrap() {
        if k == "__metadata__" {
            continue;
        }
        assert_eq!(v["dtype"], "F32", "{k}");
        let shape: Vec<usize> = v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let off: Vec<usize> = v["data_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let vals = data[off[0]..off[1]]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.push((k.clone(), shape, vals));
    }
    out
}
