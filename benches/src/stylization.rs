//! Magenta stylization: README's first command (the bundled TF Lite networks through the CPU
//! engine, as `stylize` runs them) and the full-width Magenta SavedModel
//! (`tools/out/stylization_full`).

use crate::timing::median_ms;
use burn::tensor::{Device, Tensor, TensorData};
use models::stylization::inception_predictor::load_saved_model_halves;
use models::Backend;
use std::path::Path;
use stylize::Prepare;

/// Milliseconds per call of the style predictor, the transfer network and both.
#[derive(Debug, Clone, Copy)]
pub struct StyleTimes {
    pub predictor_ms: f64,
    pub transformer_ms: f64,
    pub total_ms: f64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// README's first command: `examples/stylize`'s TF Lite predictor and transfer network on
/// Grace Hopper (384 content, cropped) and the Great Wave (256 style, blurred), on the
/// device and engine `stylize` picks by default (the CPU engine on flex).
pub fn demo(iters: usize) -> Result<StyleTimes, String> {
    let ex = crate::repo().join("examples/stylize");
    let device = Backend::Flex.device();
    let predictor =
        stylize::load_predictor(&ex.join("style_predict_quantized_256.tflite"), &device)
            .map_err(err)?;
    let transfer =
        stylize::load_transfer(&ex.join("style_transfer_f16_384.tflite"), &device).map_err(err)?;
    let predictor = stylize::Predictor::new(predictor, &device, true);
    let transfer = stylize::Transfer::new(transfer, &device, true);
    let style_file = ex.join("great_wave.jpg");
    let style = stylize::open_image(&style_file)
        .map_err(err)?
        .prepare(true, 256, true);
    let content = stylize::open_image(&ex.join("grace_hopper.jpg"))
        .map_err(err)?
        .prepare(true, 384, false);
    let b = predictor.predict(&style, &style_file).map_err(err)?;
    Ok(StyleTimes {
        predictor_ms: median_ms(1, iters, || {
            std::hint::black_box(predictor.predict(&style, &style_file).unwrap());
        }),
        transformer_ms: median_ms(1, iters, || {
            std::hint::black_box(transfer.transfer(&content, &b));
        }),
        total_ms: median_ms(1, iters, || {
            let b = predictor.predict(&style, &style_file).unwrap();
            std::hint::black_box(transfer.transfer(&content, &b));
        }),
    })
}

/// A full-width Magenta SavedModel folder made by `tools/make_magenta_fixture.py --full`:
/// its first case's content and style (`[1, H, W, 3]` in `[0, 1]`).
pub struct SavedModelCase {
    pub saved_model: std::path::PathBuf,
    pub content: (Vec<usize>, Vec<f32>),
    pub style: (Vec<usize>, Vec<f32>),
}

/// Reads `dir/cases.json`'s first case.
pub fn saved_model_case(dir: &Path) -> Result<SavedModelCase, String> {
    let cases = dir.join("cases.json");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&cases).map_err(|e| format!("{}: {e}", cases.display()))?,
    )
    .map_err(|e| format!("{}: {e}", cases.display()))?;
    let case = &meta["cases"][0];
    let npy = |k: &str| -> Result<(Vec<usize>, Vec<f32>), String> {
        let rel = case[k]
            .as_str()
            .ok_or(format!("{}: no {k}", cases.display()))?;
        let path = dir.join(rel);
        let a = model_folder::npy::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((a.shape, a.data))
    };
    Ok(SavedModelCase {
        saved_model: dir.join("saved_model"),
        content: npy("content")?,
        style: npy("style")?,
    })
}

/// The SavedModel, converted and loaded as `stylize` does, timed on `engine_cpu` (the CPU
/// inference graphs) or the Burn modules on `backend`.
pub fn saved_model(
    case: &SavedModelCase,
    engine_cpu: bool,
    backend: Backend,
    iters: usize,
) -> Result<StyleTimes, String> {
    let sm = savedmodel::read(&case.saved_model).map_err(err)?;
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, "bench").map_err(err)?;
    let converted = convert::kinds::stylization::convert(&src).map_err(err)?;
    let tmp = tempfile::tempdir().map_err(err)?;
    let folder = tmp.path().join("model");
    convert::write::write_model(&folder, &converted, "bench", &[]).map_err(err)?;
    let device: Device = backend.device();
    let (predictor, transformer) = load_saved_model_halves(&folder, &device).map_err(err)?;
    if engine_cpu {
        use models::cpu::{InceptionPredictorCpu, Nhwc, TransformerCpu};
        let nhwc = |(s, d): &(Vec<usize>, Vec<f32>)| {
            Nhwc::from_vec(s[0], s[1], s[2], s[3], d.clone()).expect("shape")
        };
        let (content, style) = (nhwc(&case.content), nhwc(&case.style));
        let predictor = InceptionPredictorCpu::new(&predictor);
        let transformer = TransformerCpu::new(&transformer);
        let bottleneck = predictor.predict_style(&style).map_err(err)?;
        return Ok(StyleTimes {
            predictor_ms: median_ms(2, iters, || {
                std::hint::black_box(predictor.predict_style(&style).unwrap());
            }),
            transformer_ms: median_ms(2, iters, || {
                std::hint::black_box(transformer.transfer(&content, &bottleneck));
            }),
            total_ms: median_ms(2, iters, || {
                let b = predictor.predict_style(&style).unwrap();
                std::hint::black_box(transformer.transfer(&content, &b));
            }),
        });
    }
    let tensor = |(shape, data): &(Vec<usize>, Vec<f32>)| {
        Tensor::<4>::from_data(
            TensorData::new(data.clone(), [shape[0], shape[1], shape[2], shape[3]]),
            &device,
        )
    };
    let (content, style) = (tensor(&case.content), tensor(&case.style));
    let predictor = predictor.fuse_for_inference();
    let bottleneck = predictor.predict_style(style.clone());
    let sync2 = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().expect("read");
    let sync4 = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().expect("read");
    Ok(StyleTimes {
        predictor_ms: median_ms(2, iters, || {
            sync2(predictor.predict_style(style.clone()));
        }),
        transformer_ms: median_ms(2, iters, || {
            sync4(transformer.transfer(content.clone(), bottleneck.clone()));
        }),
        total_ms: median_ms(2, iters, || {
            sync4(transformer.transfer(content.clone(), predictor.predict_style(style.clone())));
        }),
    })
}
