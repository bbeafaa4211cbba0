//! End to end: Magenta's arbitrary image stylization SavedModel (built by Magenta's own
//! `build_model` and exported by its `export_hub.py`, random weights, reduced width:
//! `tools/make_magenta_fixture.py`) -> `savedmodel::read` -> `kinds::stylization` ->
//! `model.safetensors` + `config.json` -> `models::stylization` -> outputs compared with
//! what TensorFlow computed for the same inputs (`tests/fixtures/stylization`).

mod stylization_common;

use convert::kinds::stylization;
use models::Backend;
use stylization_common::*;

/// TF vs Burn tolerance on the output pixels and the bottleneck.
const TOL: f32 = 1e-4;

#[test]
fn maps_every_magenta_variable() {
    let (_guard, dir) = unpack_saved_model();
    let src = source_of(&dir);
    // 359 model variables (+ save_counter, int64).
    assert_eq!(src.tensors.len(), 359);
    assert!(
        src.other_variables.contains_key("save_counter"),
        "{:?}",
        src.other_variables.keys()
    );
    let c = stylization::convert(&src).unwrap();
    assert_eq!(c.kind, "stylization");
    // The registry tries stylization before inception_v3 (this model holds an Inception-v3).
    assert_eq!(convert::kinds::recognise(&src).unwrap().name(), c.kind);
    // 70 Inception convs x (weight + 3 BN) + bottleneck (2) + 3 contract x (conv + 4 BN)
    // + 13 style-normalized convs x (conv + beta w/b + gamma w/b).
    assert_eq!(c.tensors.len(), 280 + 2 + 15 + 65);
    let cfg = &c.config;
    assert_eq!(cfg["transformer"]["alpha"], 0.25);
    assert_eq!(cfg["transformer"]["contract_batch_norm"], true);
    assert_eq!(cfg["transformer"]["bottleneck"], 100);
    assert_eq!(cfg["predictor"]["backbone"]["depth_multiplier"], 0.0625);
    assert_eq!(cfg["predictor"]["backbone"]["min_depth"], 4);
    assert_eq!(cfg["predictor"]["bottleneck"], 100);
    // Spot-check values: the first conv's kernel is HWIO in TF, OIHW here.
    let tf = src.get("InceptionV3/Conv2d_1a_3x3/weights").unwrap();
    let burn = c
        .tensors
        .iter()
        .find(|t| t.name == "predictor.backbone.conv2d_1a_3x3.conv.weight")
        .unwrap();
    let [kh, kw, ci, co] = [tf.shape[0], tf.shape[1], tf.shape[2], tf.shape[3]];
    assert_eq!(burn.shape, vec![co, ci, kh, kw]);
    let (h, w, i, o) = (2, 1, 2, co - 1);
    assert_eq!(
        burn.data[((o * ci + i) * kh + h) * kw + w],
        tf.data[((h * kw + w) * ci + i) * co + o]
    );
    // The slim batch norm has no gamma: it is written as ones.
    let gamma = c
        .tensors
        .iter()
        .find(|t| t.name == "transformer.contract.0.bn.gamma")
        .unwrap();
    assert!(gamma.data.iter().all(|&g| g == 1.0));
    let var = c
        .tensors
        .iter()
        .find(|t| t.name == "transformer.contract.0.bn.running_var")
        .unwrap();
    assert_eq!(
        var.data,
        src.get("transformer/contract/conv1/BatchNorm/moving_variance")
            .unwrap()
            .data
    );
}

#[test]
fn stylization_matches_tensorflow_on_flex() {
    check_small(Backend::Flex);
}

#[test]
fn stylization_matches_tensorflow_on_ndarray() {
    check_small(Backend::NdArray);
}

#[test]
fn stylization_matches_tensorflow_on_wgpu() {
    check_small(Backend::Wgpu);
}

#[test]
fn stylization_on_cpu_kernels_matches_tensorflow() {
    let (_guard, dir) = unpack_saved_model();
    for isa in models::cpu::Isa::all_supported() {
        let (db, dy) = check_cpu(isa, &dir, &fixture_dir(), TOL);
        println!("cpu {isa:?}: worst bottleneck diff {db:.3e}, worst pixel diff {dy:.3e}");
    }
}

fn check_small(backend: Backend) {
    let (_guard, dir) = unpack_saved_model();
    let (db, dy) = check_backend(backend, &dir, &fixture_dir(), TOL);
    println!("{backend}: worst bottleneck diff {db:.3e}, worst pixel diff {dy:.3e}");
}

#[test]
fn stylization_api_loads_the_converted_folder() {
    use burn::tensor::{Tensor, TensorData};
    use models::stylization::{StylePredictor, Stylization};
    let (_guard, dir) = unpack_saved_model();
    let out = tempfile::tempdir().unwrap();
    write_folder(&converted(&dir), out.path());
    let device = Backend::Flex.device();
    let model = Stylization::load(out.path(), &device).expect("Stylization::load");
    assert!(matches!(model.predictor, StylePredictor::Inception(_)));
    let case = &cases(&fixture_dir())[0];
    let t = |(s, d): &(Vec<usize>, Vec<f32>)| {
        Tensor::<4>::from_data(
            TensorData::new(d.clone(), [s[0], s[1], s[2], s[3]]),
            &device,
        )
    };
    let y = model.stylize(t(&case.content), t(&case.style));
    let d = max_abs_diff(&to_vec(y), &case.stylized.1);
    assert!(d <= TOL, "{}: differs from TF by {d}", case.name);
    // The predictor half alone, from the same folder.
    let p = StylePredictor::load(out.path(), &device).expect("StylePredictor::load");
    let b = p
        .predict_style(t(&case.style))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(max_abs_diff(&b, &case.bottleneck.1) <= TOL);
}
