//! End to end: TF-Slim Inception-v3 variables (as TensorFlow saved them) -> `convert`'s
//! inception_v3 mapping -> `models::InceptionV3::load` -> outputs equal to what TensorFlow
//! computed, on flex, ndarray and wgpu.
//!
//! Fixture: `tests/fixtures/inception_v3/small/` made by `tools/make_inception_fixture.py`
//! (depth_multiplier 0.05, min_depth 4, 11 classes, random weights and BN statistics).

use burn::tensor::{Device, Tensor, TensorData};
use convert::Source;
use models::inception_v3::{Activation, EndPoint, InceptionV3, InceptionV3Config, Layer};
use models::Backend;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/inception_v3/small")
}

/// Reads a safetensors file as name -> (shape, f32 values); uint8 tensors are returned
/// as u8 / 255 (the fixture's image encoding).
fn read_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::U8 => view.data().iter().map(|&b| b as f32 / 255.0).collect(),
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        out.insert(name.to_string(), (view.shape().to_vec(), data));
    }
    out
}

/// The fixture's SavedModel read by `savedmodel` (object-based checkpoint, names from the
/// object graph: `module/InceptionV3/...`) as the converter's input.
fn source_from_saved_model() -> Source {
    let sm = savedmodel::read(&fixture().join("saved_model")).expect("read SavedModel");
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, "fixture").expect("source");
    assert_eq!(src.tensors.len(), 94 * 4 + 2);
    assert!(src
        .tensors
        .contains_key("module/InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights"));
    src
}

/// Writes a converted model folder the way `convert` lays it out (config.json + model.safetensors).
/// (A folder of its own per call: the tests run in parallel and each removes its folder.)
fn write_folder(conv: &convert::Converted, tag: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "tfhub-rs-inception-{tag}-{}-{n}",
        std::process::id()
    ));
    convert::write::write_model(&dir, &conv, "fixture", &[]).unwrap();
    dir
}

fn converted_folder() -> PathBuf {
    let src = source_from_saved_model();
    assert!(convert::kinds::inception_v3::recognise(&src));
    let conv = convert::kinds::inception_v3::convert(&src).expect("convert");
    // The registry picks the same kind, and its name is the kind written in config.json.
    let kind = convert::kinds::recognise(&src).expect("recognised");
    assert_eq!(kind.name(), conv.kind);
    write_folder(&conv, "small")
}

fn input(t: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, name: &str, dev: &Device) -> Tensor<4> {
    let (shape, data) = &t[name];
    Tensor::from_data(TensorData::new(data.clone(), shape.clone()), dev)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// max |a - b| / max |b|
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale.max(1e-12)
}

fn top5(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
    idx.truncate(5);
    idx
}

fn check(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let e = rel_err(got, want);
    println!("{what}: rel err {e:.2e}");
    assert!(e <= tol, "{what}: max|diff|/max|ref| = {e:.3e} > {tol:e}");
}

/// NHWC reference -> NCHW order.
fn nhwc_to_nchw(shape: &[usize], data: &[f32]) -> Vec<f32> {
    let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = vec![0.0; data.len()];
    for n in 0..b {
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    out[((n * c + k) * h + y) * w + x] = data[((n * h + y) * w + x) * c + k];
                }
            }
        }
    }
    out
}

fn parity_on(backend: Backend, dir: &Path) {
    let dev = backend.device();
    let exp = read_tensors(&fixture().join("expected.safetensors"));
    let model = InceptionV3::load(dir, &dev).expect("load");
    assert_eq!(model.config().num_classes, Some(11));
    assert_eq!(model.config().depth_multiplier, 0.05);
    assert_eq!(model.config().min_depth, 4);

    for case in ["a", "b"] {
        let x = input(&exp, &format!("{case}/input_u8"), &dev);
        let logits = values(model.forward(x.clone()).unwrap());
        let (lshape, want) = &exp[&format!("{case}/logits")];
        check(&format!("{backend} {case}/logits"), &logits, want, 1e-5);
        let classes = lshape[1];
        for (i, (g, w)) in logits.chunks(classes).zip(want.chunks(classes)).enumerate() {
            assert_eq!(
                top5(g),
                top5(w),
                "{backend} {case} image {i}: top-5 differs"
            );
        }
        if case == "a" {
            // The two images' logits differ by under 1 %; the part that depends on the input
            // (each logit minus its batch mean) is checked on its own, so that an error in the
            // input path cannot hide under the common part. Measured 2.3e-5 (flex), 3.4e-5
            // (ndarray), 5.7e-5 (wgpu) of the centred logits' own size.
            let centred = |l: &[f32]| -> Vec<f32> {
                let rows: Vec<&[f32]> = l.chunks(classes).collect();
                (0..l.len())
                    .map(|k| {
                        let (i, j) = (k / classes, k % classes);
                        rows[i][j] - rows.iter().map(|r| r[j]).sum::<f32>() / rows.len() as f32
                    })
                    .collect()
            };
            check(
                &format!("{backend} a/logits minus batch mean"),
                &centred(&logits),
                &centred(want),
                2e-4,
            );
        }
        let feats = values(model.features(x).unwrap());
        check(
            &format!("{backend} {case}/features"),
            &feats,
            &exp[&format!("{case}/features")].1,
            1e-5,
        );
    }

    // Intermediate end points by name (NCHW here, NHWC in TF).
    let x = input(&exp, "a/input_u8", &dev);
    let wanted = [EndPoint::Mixed_5b, EndPoint::Mixed_6e, EndPoint::Mixed_7c];
    let eps = model.forward_end_points(x.clone(), &wanted).unwrap();
    for e in wanted {
        let (shape, want) = &exp[&format!("a/{e}")];
        let got = eps.get(e).unwrap().clone();
        assert_eq!(
            got.dims(),
            [shape[0], shape[3], shape[1], shape[2]],
            "{e} shape"
        );
        check(
            &format!("{backend} a/{e}"),
            &values(got),
            &nhwc_to_nchw(shape, want),
            1e-5,
        );
    }

    // Batch norm folded into the convs: same numbers.
    let fused = model.fuse_for_inference();
    check(
        &format!("{backend} a/logits fused"),
        &values(fused.forward(x).unwrap()),
        &exp["a/logits"].1,
        1e-5,
    );
}

#[test]
fn inception_v3_matches_tensorflow_on_flex_and_ndarray() {
    let dir = converted_folder();
    for backend in [Backend::Flex, Backend::NdArray] {
        parity_on(backend, &dir);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn inception_v3_matches_tensorflow_on_wgpu() {
    let dir = converted_folder();
    parity_on(Backend::Wgpu, &dir);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn magenta_style_backbone_relu6_to_mixed_6e_matches_tensorflow() {
    let dir = converted_folder();
    let exp = read_tensors(&fixture().join("expected.safetensors"));
    let dev = Backend::Flex.device();
    let cfg = InceptionV3Config {
        depth_multiplier: 0.05,
        min_depth: 4,
        ..InceptionV3Config::magenta_style_backbone()
    };
    assert_eq!(cfg.activation, Activation::Relu6);
    let model = InceptionV3::load_expecting(&dir, &dev, &cfg).expect("load backbone");
    // Raw network input (input_u8 / 255 * 2 - 1) * 10, NCHW, as the fixture fed it.
    let raw = InceptionV3::preprocess(input(&exp, "m/input_u8", &dev)).mul_scalar(10.0);
    let out = model.forward_base(raw, &[]).last;
    let (shape, want) = &exp["m/Mixed_6e"];
    assert_eq!(out.dims(), [shape[0], shape[3], shape[1], shape[2]]);
    check(
        "relu6 Mixed_6e",
        &values(out),
        &nhwc_to_nchw(shape, want),
        1e-5,
    );

    // A different width is refused with a clear error.
    let wrong = InceptionV3Config {
        depth_multiplier: 0.1,
        ..cfg
    };
    let err = InceptionV3::load_expecting(&dir, &dev, &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config mismatch") && err.contains("depth_multiplier 0.05"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn loading_another_kind_is_refused() {
    let dir = std::env::temp_dir().join(format!("tfhub-rs-inception-kind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    let err = InceptionV3::load(&dir, &Backend::Flex.device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("text_embedding") && err.contains("inception_v3"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn converter_reads_width_and_classes_off_the_shapes() {
    let conv = convert::kinds::inception_v3::convert(&source_from_saved_model()).unwrap();
    assert_eq!(conv.kind, "inception_v3");
    assert_eq!(conv.config["num_classes"], 11);
    assert_eq!(conv.config["depth_multiplier"], 0.05);
    assert_eq!(conv.config["min_depth"], 4);
    assert_eq!(conv.config["final_endpoint"], "Mixed_7c");
    assert_eq!(conv.tensors.len(), 94 * 4 + 2);
    // The config deserializes into the model's config type.
    let cfg: InceptionV3Config = serde_json::from_value(conv.config.clone()).unwrap();
    assert_eq!(cfg.feature_dim(), exp_feature_dim());
    // Without the logits variables: the feature-vector model.
    let mut src = source_from_saved_model();
    src.tensors.retain(|k, _| !k.contains("/Logits/"));
    let conv = convert::kinds::inception_v3::convert(&src).unwrap();
    assert_eq!(conv.config["num_classes"], serde_json::Value::Null);
    assert_eq!(conv.tensors.len(), 94 * 4);
}

fn exp_feature_dim() -> usize {
    read_tensors(&fixture().join("expected.safetensors"))["a/features"].0[1]
}

fn nhwc(t: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, name: &str) -> models::cpu::Nhwc {
    let (s, data) = &t[name];
    models::cpu::Nhwc::from_vec(s[0], s[1], s[2], s[3], data.clone()).expect("NHWC shape")
}

/// The CPU inference graph (folded batch norms, fused 1x1s, NHWC kernels) against
/// TensorFlow, for every kernel set this CPU runs.
#[test]
fn inception_v3_cpu_kernels_match_tensorflow() {
    use models::cpu::{InceptionV3Cpu, Isa};
    let dir = converted_folder();
    let exp = read_tensors(&fixture().join("expected.safetensors"));
    let dev = Backend::Flex.device();
    let model = InceptionV3::load(&dir, &dev).expect("load");
    let isas = Isa::all_supported();
    assert!(isas.contains(&Isa::Portable));
    for isa in isas {
        // From the model as loaded, and from the Burn-folded one (no batch norms left).
        for (tag, cpu) in [
            ("bn", InceptionV3Cpu::with_isa(&model, isa)),
            (
                "folded",
                InceptionV3Cpu::with_isa(&model.clone().fuse_for_inference(), isa),
            ),
        ] {
            for case in ["a", "b"] {
                let x = nhwc(&exp, &format!("{case}/input_u8"));
                let logits = cpu.forward(&x).unwrap();
                let (lshape, want) = &exp[&format!("{case}/logits")];
                check(
                    &format!("cpu {isa:?} {tag} {case}/logits"),
                    &logits,
                    want,
                    1e-5,
                );
                let classes = lshape[1];
                assert_eq!(cpu.output_dim(), classes);
                for (i, (g, w)) in logits.chunks(classes).zip(want.chunks(classes)).enumerate() {
                    assert_eq!(
                        top5(g),
                        top5(w),
                        "cpu {isa:?} {case} image {i}: top-5 differs"
                    );
                }
                let feats = cpu.features(&x).unwrap();
                check(
                    &format!("cpu {isa:?} {tag} {case}/features"),
                    &feats,
                    &exp[&format!("{case}/features")].1,
                    1e-5,
                );
            }
        }
        // End points by name, NHWC like TensorFlow's.
        let cpu = InceptionV3Cpu::with_isa(&model, isa);
        let x = nhwc(&exp, "a/input_u8");
        let wanted = [
            EndPoint::Mixed_5b,
            EndPoint::Mixed_6a,
            EndPoint::Mixed_6e,
            EndPoint::Mixed_7c,
        ];
        let eps = cpu.forward_base(InceptionV3Cpu::preprocess(&x), &wanted);
        for e in [EndPoint::Mixed_5b, EndPoint::Mixed_6e, EndPoint::Mixed_7c] {
            let (shape, want) = &exp[&format!("a/{e}")];
            let got = eps.get(e).unwrap();
            assert_eq!(
                [got.n, got.h, got.w, got.c],
                [shape[0], shape[1], shape[2], shape[3]],
                "{e}"
            );
            check(&format!("cpu {isa:?} a/{e}"), &got.data, want, 1e-5);
        }
        // Too small: the same clear error as the Burn model.
        let small = models::cpu::Nhwc::zeros(1, 74, 80, 3);
        let err = cpu.forward(&small).unwrap_err().to_string();
        assert!(err.contains("at least 75x75"), "{err}");
        let err = cpu
            .forward(&models::cpu::Nhwc::zeros(1, 80, 80, 4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[1, 80, 80, 4]"), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn magenta_style_backbone_on_cpu_kernels_matches_tensorflow() {
    use models::cpu::{InceptionV3Cpu, Isa};
    let dir = converted_folder();
    let exp = read_tensors(&fixture().join("expected.safetensors"));
    let cfg = InceptionV3Config {
        depth_multiplier: 0.05,
        min_depth: 4,
        ..InceptionV3Config::magenta_style_backbone()
    };
    let model = InceptionV3::load_expecting(&dir, &Backend::Flex.device(), &cfg).unwrap();
    let mut raw = InceptionV3Cpu::preprocess(&nhwc(&exp, "m/input_u8"));
    raw.data.iter_mut().for_each(|v| *v *= 10.0);
    let (shape, want) = &exp["m/Mixed_6e"];
    for isa in Isa::all_supported() {
        let cpu = InceptionV3Cpu::with_isa(&model, isa);
        let out = cpu.forward_base(raw.clone(), &[]).last;
        assert_eq!(
            [out.n, out.h, out.w, out.c],
            [shape[0], shape[1], shape[2], shape[3]]
        );
        check(
            &format!("cpu {isa:?} relu6 Mixed_6e"),
            &out.data,
            want,
            1e-5,
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Every tensor the converter writes is a parameter of the module and every parameter is
/// written (the loader is strict both ways), for a network cut at every end point, with
/// and without logits: the converter and the module read one layer table.
#[test]
fn every_converted_tensor_is_a_parameter_of_the_module_at_every_end_point() {
    use model_folder::inception_v3::{convs, depth, SCOPE};
    let (m, md) = (0.05, 4);
    let dev = Device::flex();
    for last in EndPoint::ALL {
        for logits in [false, true] {
            if logits && last != EndPoint::Mixed_7c {
                continue;
            }
            // Slim's variables of the cut network, shaped by the table.
            let mut src = Source::default();
            let mut put = |name: String, shape: Vec<usize>| {
                let n = shape.iter().product();
                let data = (0..n).map(|i| (i % 7) as f32 * 0.01 + 0.5).collect();
                src.tensors.insert(name, convert::F32Tensor { shape, data });
            };
            let cfg = InceptionV3Config {
                depth_multiplier: m,
                min_depth: md,
                final_endpoint: last,
                num_classes: logits.then_some(5),
                ..Default::default()
            };
            // The input width of every kernel, from the module this config builds (the
            // table's own convolution list, in the module's execution order).
            let module = cfg.init(&dev).unwrap();
            let mut inputs = Vec::new();
            for (_, layer) in module.layers() {
                match layer {
                    Layer::Conv(c) => inputs.push(c.conv.weight.dims()[1]),
                    Layer::Mixed(b) => inputs.extend(
                        b.branches()
                            .into_iter()
                            .flatten()
                            .map(|c| c.conv.weight.dims()[1]),
                    ),
                    Layer::MaxPool => {}
                }
            }
            let table = convs(last);
            assert_eq!(inputs.len(), table.len(), "{last}");
            for (e, c_in) in table.iter().zip(inputs) {
                let co = depth(e.spec.width, m, md);
                let [kh, kw] = e.spec.kernel;
                put(
                    format!("{SCOPE}/{}/weights", e.scope),
                    vec![kh, kw, c_in, co],
                );
                for v in ["beta", "moving_mean", "moving_variance"] {
                    put(format!("{SCOPE}/{}/BatchNorm/{v}", e.scope), vec![co]);
                }
            }
            if logits {
                let feat = cfg.feature_dim();
                put(
                    format!("{SCOPE}/Logits/Conv2d_1c_1x1/weights"),
                    vec![1, 1, feat, 5],
                );
                put(format!("{SCOPE}/Logits/Conv2d_1c_1x1/biases"), vec![5]);
            }
            let conv = convert::kinds::inception_v3::convert(&src)
                .unwrap_or_else(|e| panic!("{last} logits {logits}: {e}"));
            // The network goes as far as the variables do (the stem's max pools end with
            // the convolution before them, as slim's checkpoints cannot tell them apart).
            let found = conv.config["final_endpoint"].as_str().unwrap().to_string();
            let want = match last {
                EndPoint::MaxPool_3a_3x3 => EndPoint::Conv2d_2b_3x3,
                EndPoint::Conv2d_4a_3x3 => EndPoint::MaxPool_5a_3x3,
                e => e,
            };
            assert_eq!(found, want.name(), "{last}");
            let dir = write_folder(&conv, &format!("cut-{}", last.name()));
            let loaded = InceptionV3::load(&dir, &dev)
                .unwrap_or_else(|e| panic!("{last} logits {logits}: {e}"));
            assert_eq!(loaded.config().final_endpoint, want);
            assert_eq!(loaded.logits.is_some(), logits);
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

/// A wider network cut at Mixed_5d (`tools/make_inception_fixture.py --winograd`: depth
/// multiplier 0.25, min_depth 16), whose 3x3 stride-1 stem convolutions have 16+ input
/// channels, so that the CPU engine runs them by Winograd: converted from TF's variables, its
/// end points equal TensorFlow's on every kernel set of this CPU and in the Burn module.
#[test]
fn a_network_that_reaches_winograd_matches_tensorflow() {
    use models::cpu::{InceptionV3Cpu, Isa, Nhwc};
    let dir = fixture().join("../winograd");
    let vars = read_tensors(&dir.join("variables.safetensors"));
    let mut src = Source::default();
    for (name, (shape, data)) in vars {
        src.tensors.insert(name, convert::F32Tensor { shape, data });
    }
    let conv = convert::kinds::inception_v3::convert(&src).unwrap();
    assert_eq!(conv.config["final_endpoint"], "Mixed_5d");
    assert_eq!(conv.config["depth_multiplier"], 0.25);
    assert_eq!(conv.config["min_depth"], 16);
    let folder = write_folder(&conv, "winograd");
    let dev = Device::flex();
    let model = InceptionV3::load(&folder, &dev).unwrap();
    let exp = read_tensors(&dir.join("expected.safetensors"));
    let (shape, x) = &exp["input_u8"];
    let wanted = [
        EndPoint::Conv2d_4a_3x3,
        EndPoint::Mixed_5b,
        EndPoint::Mixed_5d,
    ];
    for isa in Isa::all_supported() {
        let cpu = InceptionV3Cpu::with_isa(&model, isa);
        let layers = cpu.winograd_stem_layers(shape[0], shape[1], shape[2]);
        assert_eq!(
            layers,
            [
                EndPoint::Conv2d_2a_3x3,
                EndPoint::Conv2d_2b_3x3,
                EndPoint::Conv2d_4a_3x3
            ],
            "{isa:?}: the stem's 3x3 convolutions must run by Winograd"
        );
        let input = Nhwc::from_vec(shape[0], shape[1], shape[2], shape[3], x.clone()).unwrap();
        let eps = cpu.forward_base(InceptionV3Cpu::preprocess(&input), &wanted);
        for e in wanted {
            let got = eps.get(e).unwrap();
            check(
                &format!("cpu {isa:?} {e}"),
                &got.data,
                &exp[e.name()].1,
                1e-5,
            );
        }
    }
    // The Burn module (NCHW) on the same variables.
    let eps = model
        .forward_end_points(input(&exp, "input_u8", &dev), &wanted)
        .unwrap();
    for e in wanted {
        let (shape, want) = &exp[e.name()];
        check(
            &format!("burn {e}"),
            &values(eps.get(e).unwrap().clone()),
            &nhwc_to_nchw(shape, want),
            1e-5,
        );
    }
    std::fs::remove_dir_all(&folder).ok();
}
