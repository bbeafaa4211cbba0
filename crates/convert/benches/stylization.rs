//! Speed of the Magenta stylization SavedModel in Burn: 384x384 content, 256x256 style.
//!
//! `cargo bench -p convert --bench stylization [-- --iters N --backend flex|ndarray|wgpu]`
//! (release), or without a release build of every dependency:
//! `cargo test -p convert --bench stylization -- --iters N` (the workspace builds dependencies
//! at opt-level 3 in the dev profile too, and all the work happens inside Burn).
//!
//! Needs `tools/out/stylization_full` (`tools/make_magenta_fixture.py --full`): the full-width
//! SavedModel is read, converted and loaded exactly as in the tests, then, after 2 warm-up runs,
//! the median of N runs (default 10) is printed for the style predictor (style image ->
//! bottleneck), the transformer (content + bottleneck -> image) and both together.
//! `--engine cpu` (default): the CPU inference graphs of `models::cpu`, what `stylize` runs
//! on flex; `--engine burn`: the Burn modules on `--backend` (predictor batch norms folded).
//! Compare with `tools/bench_stylization_tf.py`, or run both alternating in one run:
//! `tools/.venv/bin/python tools/bench_side_by_side.py stylization`.

use burn::tensor::{Tensor, TensorData};
use models::stylization::inception_predictor::load_saved_model_halves;
use models::Backend;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../tests/stylization_common/mod.rs"]
mod stylization_common;

fn median_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: usize = arg("--iters").and_then(|s| s.parse().ok()).unwrap_or(10);
    let backend: Backend = arg("--backend")
        .map(|s| s.parse().expect("backend"))
        .unwrap_or(Backend::Flex);
    let dir: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/out/stylization_full");
    if !dir.join("cases.json").is_file() {
        eprintln!(
            "{} is absent: run tools/.venv/bin/python tools/make_magenta_fixture.py --full",
            dir.display()
        );
        return;
    }
    let converted = stylization_common::converted(&dir.join("saved_model"));
    let tmp = tempfile::tempdir().expect("temp dir");
    stylization_common::write_folder(&converted, tmp.path());
    let device = backend.device();
    let (predictor, transformer) = load_saved_model_halves(tmp.path(), &device).expect("load");
    let case = &stylization_common::cases(&dir)[0];
    let tensor = |(shape, data): &(Vec<usize>, Vec<f32>)| {
        Tensor::<4>::from_data(
            TensorData::new(data.clone(), [shape[0], shape[1], shape[2], shape[3]]),
            &device,
        )
    };
    let engine = arg("--engine").unwrap_or_else(|| "cpu".into());
    println!(
        "engine {engine}, backend {backend}, content {:?}, style {:?}, {iters} iterations (median)",
        case.content.0, case.style.0
    );
    if engine == "cpu" {
        use models::cpu::{InceptionPredictorCpu, Nhwc, TransformerCpu};
        let nhwc = |(s, d): &(Vec<usize>, Vec<f32>)| {
            Nhwc::from_vec(s[0], s[1], s[2], s[3], d.clone()).expect("shape")
        };
        let (content, style) = (nhwc(&case.content), nhwc(&case.style));
        let predictor = InceptionPredictorCpu::new(&predictor);
        let transformer = TransformerCpu::new(&transformer);
        let bottleneck = predictor.predict_style(&style).expect("predict");
        let p = median_ms(iters, || {
            std::hint::black_box(predictor.predict_style(&style).unwrap());
        });
        let t = median_ms(iters, || {
            std::hint::black_box(transformer.transfer(&content, &bottleneck));
        });
        let both = median_ms(iters, || {
            let b = predictor.predict_style(&style).unwrap();
            std::hint::black_box(transformer.transfer(&content, &b));
        });
        println!("predictor: {p:.1} ms");
        println!("transformer: {t:.1} ms");
        println!("total: {both:.1} ms");
        return;
    }
    let (content, style) = (tensor(&case.content), tensor(&case.style));
    let predictor = predictor.fuse_for_inference();
    let bottleneck = predictor.predict_style(style.clone());
    let sync = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().expect("read");
    let sync4 = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("read");
    let p = median_ms(iters, || {
        sync(predictor.predict_style(style.clone()));
    });
    let t = median_ms(iters, || {
        sync4(transformer.transfer(content.clone(), bottleneck.clone()));
    });
    let both = median_ms(iters, || {
        sync4(transformer.transfer(content.clone(), predictor.predict_style(style.clone())));
    });
    println!("predictor: {p:.1} ms");
    println!("transformer: {t:.1} ms");
    println!("total: {both:.1} ms");
}
