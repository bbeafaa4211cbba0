//! Shared by the stylization end-to-end tests (`stylization.rs`, `stylization_full.rs`).
#![allow(dead_code)]

use burn::tensor::{Tensor, TensorData};
use convert::kinds::stylization;
use convert::{Converted, Source};
use models::stylization::inception_predictor::{load_saved_model_halves, InceptionStylePredictor};
use models::stylization::Transformer;
use models::Backend;
use std::path::{Path, PathBuf};

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/stylization")
}

/// Where `tools/make_magenta_fixture.py --full` writes the full-size model and cases.
pub fn full_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/out/stylization_full")
}

/// Unpacks `saved_model.tar.gz` into a temporary folder; returns (guard, SavedModel folder).
pub fn unpack_saved_model() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = std::fs::File::open(fixture_dir().join("saved_model.tar.gz"))
        .expect("fixture saved_model.tar.gz");
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(tmp.path())
        .expect("unpack fixture");
    let dir = tmp.path().join("saved_model");
    (tmp, dir)
}

/// What the converter sees: every float variable by its TensorFlow name.
pub fn source_of(dir: &Path) -> Source {
    let sm = savedmodel::read(dir).expect("read SavedModel");
    convert::from_savedmodel::source_from_savedmodel(&sm, &dir.display().to_string())
        .expect("source")
}

/// Writes `model.safetensors` + `config.json` like `convert` does.
pub fn write_folder(c: &Converted, dir: &Path) {
    convert::write::write_model(dir, c, "fixture", &[]).expect("write model folder");
}

/// A little-endian `.npy` (`<f4` or `|u1`, C order) as f32 values and its shape.
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_txt
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let body = &bytes[start + hlen..];
    let data = if header.contains("'<f4'") {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else if header.contains("'|u1'") {
        body.iter().map(|&b| b as f32 / 255.0).collect()
    } else {
        panic!("{}: unsupported dtype in {header}", path.display())
    };
    (shape, data)
}

pub struct Case {
    pub name: String,
    pub content: (Vec<usize>, Vec<f32>),
    pub style: (Vec<usize>, Vec<f32>),
    pub stylized: (Vec<usize>, Vec<f32>),
    pub bottleneck: (Vec<usize>, Vec<f32>),
}

/// The cases listed in `<dir>/cases.json`.
pub fn cases(dir: &Path) -> Vec<Case> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = |k: &str| read_npy(&dir.join(c[k].as_str().unwrap()));
            Case {
                name: c["name"].as_str().unwrap().to_string(),
                content: f("content"),
                style: f("style"),
                stylized: f("stylized"),
                bottleneck: f("bottleneck"),
            }
        })
        .collect()
}

/// Reads and converts the SavedModel in `dir`.
pub fn converted(dir: &Path) -> Converted {
    let src = source_of(dir);
    assert!(
        stylization::recognise(&src),
        "the Magenta SavedModel is not recognised"
    );
    stylization::convert(&src).expect("convert")
}

pub fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Converts the SavedModel in `saved_model` into a temporary folder and loads both halves
/// on `device` (the guard keeps the folder while it lives).
fn load_converted(
    saved_model: &Path,
    device: &burn::tensor::Device,
) -> (tempfile::TempDir, InceptionStylePredictor, Transformer) {
    let out = tempfile::tempdir().unwrap();
    write_folder(&converted(saved_model), out.path());
    let (predictor, transformer) =
        load_saved_model_halves(out.path(), device).expect("load converted folder");
    (out, predictor, transformer)
}

/// Runs `run` on every case of `cases_dir` (it returns the bottleneck, the stylized
/// image's shape and values) and compares both with TensorFlow's within `tol`; returns
/// the largest differences (bottleneck, image).
fn compare_cases(
    label: &str,
    cases_dir: &Path,
    tol: f32,
    run: impl Fn(&Case) -> (Vec<f32>, Vec<usize>, Vec<f32>),
) -> (f32, f32) {
    let (mut worst_b, mut worst_y) = (0f32, 0f32);
    for case in cases(cases_dir) {
        let (b, shape, y) = run(&case);
        let db = max_abs_diff(&b, &case.bottleneck.1);
        assert_eq!(shape, case.stylized.0, "{}: output shape", case.name);
        let dy = max_abs_diff(&y, &case.stylized.1);
        println!(
            "{label} {}: bottleneck max |diff| {db:.3e}, stylized max |diff| {dy:.3e}",
            case.name
        );
        worst_b = worst_b.max(db);
        worst_y = worst_y.max(dy);
        assert!(
            db <= tol,
            "{label} {}: bottleneck differs from TF by {db}",
            case.name
        );
        assert!(
            dy <= tol,
            "{label} {}: stylized image differs from TF by {dy}",
            case.name
        );
    }
    (worst_b, worst_y)
}

/// Converts the SavedModel in `saved_model`, loads it on `backend` and compares the
/// bottleneck and stylized image of every case of `cases_dir` with TensorFlow's;
/// returns the largest differences (bottleneck, image).
pub fn check_backend(
    backend: Backend,
    saved_model: &Path,
    cases_dir: &Path,
    tol: f32,
) -> (f32, f32) {
    let device = backend.device();
    let (_guard, predictor, transformer) = load_converted(saved_model, &device);
    let tensor = |(shape, data): &(Vec<usize>, Vec<f32>)| {
        Tensor::<4>::from_data(
            TensorData::new(data.clone(), [shape[0], shape[1], shape[2], shape[3]]),
            &device,
        )
    };
    compare_cases(&backend.to_string(), cases_dir, tol, |case| {
        let bottleneck = predictor
            .try_predict_style(tensor(&case.style))
            .expect("predict style");
        assert_eq!(bottleneck.dims(), [1, 100]);
        let b = bottleneck.clone().into_data().try_to_vec::<f32>().unwrap();
        let y = transformer.transfer(tensor(&case.content), bottleneck);
        (b, y.dims().to_vec(), to_vec(y))
    })
}

/// Like [`check_backend`] for the CPU inference graphs (`models::cpu`) compiled from the
/// flex-loaded halves, with the kernels of `isa`.
pub fn check_cpu(
    isa: models::cpu::Isa,
    saved_model: &Path,
    cases_dir: &Path,
    tol: f32,
) -> (f32, f32) {
    use models::cpu::{InceptionPredictorCpu, Nhwc, TransformerCpu};
    let (_guard, predictor, transformer) = load_converted(saved_model, &Backend::Flex.device());
    let predictor = InceptionPredictorCpu::with_isa(&predictor, isa);
    let transformer = TransformerCpu::with_isa(&transformer, isa);
    let nhwc = |(s, d): &(Vec<usize>, Vec<f32>)| {
        Nhwc::from_vec(s[0], s[1], s[2], s[3], d.clone()).unwrap()
    };
    compare_cases(&format!("cpu {isa:?}"), cases_dir, tol, |case| {
        let b = predictor
            .predict_style(&nhwc(&case.style))
            .expect("predict style");
        assert_eq!(b.len(), 100);
        let content = nhwc(&case.content);
        let y = transformer.transfer(&content, &b);
        assert_eq!(
            transformer.output_hw(content.h, content.w),
            Some((y.h, y.w))
        );
        (b, vec![y.n, y.h, y.w, y.c], y.data)
    })
}
