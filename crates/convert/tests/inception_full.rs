//! Full-size Inception-v3 (depth 1.0, 1001 classes, 299x299) against TensorFlow, on the
//! artefacts of `tools/make_inception_fixture.py --full` (tools/out/inception_v3_full/).
//! Skips with a message when they are absent. Also writes the converted folder to
//! tools/out/inception_v3_full/converted/ for `tools/check_inception_full.py` (classify CLI).

use burn::tensor::{Tensor, TensorData};
use models::inception_v3::InceptionV3;
use models::Backend;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn read_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, (v.shape().to_vec(), data))
        })
        .collect()
}

fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale.max(1e-12)
}

fn top5(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(5);
    idx
}

fn write_folder(conv: &convert::Converted, dir: &Path) {
    convert::write::write_model(dir, conv, "tools/out/inception_v3_full", &[]).unwrap();
}

#[test]
fn full_size_inception_v3_matches_tensorflow_on_every_image() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/out/inception_v3_full");
    let exp_path = root.join("expected.safetensors");
    if !exp_path.is_file() {
        eprintln!(
            "SKIPPED: {} absent (run tools/make_inception_fixture.py --full)",
            exp_path.display()
        );
        return;
    }
    let sm = savedmodel::read(&root.join("saved_model")).expect("read SavedModel");
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, &root.display().to_string())
        .expect("source");
    let conv = convert::kinds::inception_v3::convert(&src).expect("convert");
    assert_eq!(conv.config["num_classes"], 1001);
    assert_eq!(conv.config["depth_multiplier"], 1.0);
    let dir: PathBuf = root.join("converted");
    write_folder(&conv, &dir);
    let exp = read_tensors(&exp_path);
    let dev = Backend::Flex.device();
    let model = InceptionV3::load(&dir, &dev)
        .expect("load")
        .fuse_for_inference();
    let cpu = models::cpu::InceptionV3Cpu::new(&model);
    let inputs: Vec<&String> = exp.keys().filter(|k| k.ends_with("/input")).collect();
    for key in inputs {
        let case = key.trim_end_matches("/input");
        let (shape, data) = &exp[key.as_str()];
        let x = Tensor::<4>::from_data(TensorData::new(data.clone(), shape.clone()), &dev);
        let got = model
            .forward(x)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want = &exp[&format!("{case}/logits")].1;
        let e = rel_err(&got, want);
        println!("{case}: logits rel err {e:.2e}");
        // Measured 4.0-5.8e-7 (AVX2) and up to 1.2e-6 (AVX-512): README's figures.
        assert!(e <= 3e-6, "{case}: rel err {e:e}");
        for (g, w) in got.chunks(1001).zip(want.chunks(1001)) {
            assert_eq!(top5(g), top5(w), "{case}: top-5");
        }
        // The CPU inference graph on the same input.
        let x = models::cpu::Nhwc::from_vec(shape[0], shape[1], shape[2], shape[3], data.clone())
            .unwrap();
        let got = cpu.forward(&x).unwrap();
        let e = rel_err(&got, want);
        println!("{case}: cpu kernels logits rel err {e:.2e}");
        // Measured 1.1-1.8e-6 (AVX2, Winograd included) and up to 2.2e-6 (AVX-512).
        assert!(e <= 5e-6, "{case}: cpu kernels rel err {e:e}");
        for (g, w) in got.chunks(1001).zip(want.chunks(1001)) {
            assert_eq!(top5(g), top5(w), "{case}: cpu kernels top-5");
        }
    }
}
