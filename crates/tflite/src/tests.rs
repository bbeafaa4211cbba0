//! Tests against fixtures written by `tools/tflite_reference.py fixtures`
//! (values as TensorFlow's TF Lite interpreter reports them) and the real
//! Magenta files in `../shared/data/magenta-tflite` (skipped when absent).

use super::*;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stylization_tflite")
        .join(name)
}

fn shared(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/magenta-tflite")
        .join(name);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {} not found (shared data absent)", p.display());
        None
    }
}

fn expected() -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixture("tiny_expected.json")).expect("fixture tiny_expected.json");
    serde_json::from_str(&text).expect("valid json")
}

fn find(model: &Model, name: &str) -> Option<usize> {
    model.main().tensors.iter().position(|t| t.name == name)
}

fn check_model(kind: &str) {
    let exp = expected();
    let m = &exp["models"][kind];
    let model = Model::open(fixture(m["file"].as_str().unwrap())).expect("parse");
    assert_eq!(model.version, 3);
    // Operators, as the interpreter lists them (minus the delegate nodes it appends).
    let ops: Vec<String> = model
        .main()
        .operators
        .iter()
        .map(|o| model.op_name(o))
        .collect();
    let want: Vec<String> = m["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|s| s != "DELEGATE")
        .collect();
    assert_eq!(ops, want);
    let mut checked = 0;
    for t in m["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let idx = find(&model, name).unwrap_or_else(|| panic!("tensor {name} not found"));
        let info = &model.main().tensors[idx];
        let shape: Vec<i32> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect();
        assert_eq!(info.shape, shape, "{name}");
        assert_eq!(
            info.dtype.to_string(),
            t["dtype"]
                .as_str()
                .unwrap()
                .replace("float", "float")
                .to_string(),
            "{name}"
        );
        let scales: Vec<f32> = t["scales"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        match &info.quantization {
            Some(q) => {
                assert_eq!(q.scale, scales, "{name}");
                assert_eq!(
                    q.quantized_dimension as i64,
                    t["quantized_dimension"].as_i64().unwrap()
                );
            }
            None => assert!(scales.is_empty(), "{name}: expected scales"),
        }
        if model.tensor_data(0, idx).is_none() {
            continue; // an activation
        }
        let want = t
            .get("dequantized")
            .or(Some(&t["raw"]))
            .unwrap()
            .as_array()
            .unwrap();
        let got = model.tensor_f32(0, idx).expect("dequantize");
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(want) {
            let w = w.as_f64().unwrap() as f32;
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name}: {g} vs {w}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} constant tensors checked");
}

#[test]
fn float16_weights_match_interpreter() {
    check_model("f16");
}

#[test]
fn int8_per_channel_weights_match_interpreter() {
    check_model("int8");
    let model = Model::open(fixture("tiny_int8.tflite")).unwrap();
    let per_channel = model
        .main()
        .tensors
        .iter()
        .filter(|t| t.quantization.as_ref().is_some_and(|q| q.scale.len() > 1))
        .count();
    assert!(per_channel >= 2);
}

#[test]
fn conv_options_are_decoded() {
    let model = Model::open(fixture("tiny_f16.tflite")).unwrap();
    let ops = &model.main().operators;
    let conv = ops.iter().find(|o| model.op_name(o) == "CONV_2D").unwrap();
    assert_eq!(
        conv.options,
        Options::Conv2d {
            padding: Padding::Same,
            stride: (1, 1),
            dilation: (1, 1),
            activation: Activation::Relu6
        }
    );
    let dw = ops
        .iter()
        .find(|o| model.op_name(o) == "DEPTHWISE_CONV_2D")
        .unwrap();
    match dw.options {
        Options::DepthwiseConv2d {
            padding,
            stride,
            activation,
            ..
        } => {
            assert_eq!(
                (padding, stride, activation),
                (Padding::Same, (2, 2), Activation::None)
            );
        }
        ref o => panic!("{o:?}"),
    }
    let mean = ops.iter().find(|o| model.op_name(o) == "MEAN").unwrap();
    assert_eq!(mean.options, Options::Reducer { keep_dims: true });
    assert_eq!(model.main().inputs.len(), 1);
    assert_eq!(
        model.main().tensors[model.main().inputs[0] as usize].shape,
        vec![1, 8, 8, 3]
    );
}

/// Every truncation and many single-byte corruptions give `Ok` or `Err`, never a panic.
#[test]
fn truncated_and_corrupted_files_do_not_panic() {
    let bytes = std::fs::read(fixture("tiny_int8.tflite")).unwrap();
    for len in 0..bytes.len() {
        let r = Model::from_bytes(bytes[..len].to_vec(), "cut.tflite");
        if len < bytes.len() / 2 {
            let e = r.expect_err("a truncated file must fail");
            assert!(e.to_string().starts_with("cut.tflite: "), "{e}");
        }
    }
    // TF Lite has no checksums: a flipped byte of tensor data cannot be detected, but it must
    // change exactly that element (of every tensor sharing the buffer) and nothing else; a
    // flipped byte of the structure must give an error or a model whose tensors all read
    // without a panic.
    let original = Model::from_bytes(bytes.clone(), "fixture.tflite").unwrap();
    let sg = original.main().tensors.clone();
    let values = |m: &Model| -> Vec<Option<Vec<u32>>> {
        (0..sg.len())
            .map(|t| {
                m.tensor_f32(0, t)
                    .ok()
                    .map(|v| v.iter().map(|x| x.to_bits()).collect())
            })
            .collect()
    };
    let before = values(&original);
    assert!(
        before.iter().flatten().count() >= 2,
        "the fixture has constant tensors"
    );
    let buffer_of = |i: usize| {
        original
            .buffers
            .iter()
            .position(|b| b.len > 0 && (b.offset..b.offset + b.len).contains(&i))
    };
    let (mut data_flips, mut structure_errors, mut structure_flips) = (0, 0, 0);
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let parsed = Model::from_bytes(b, "flip.tflite");
            match buffer_of(i) {
                Some(buf) => {
                    data_flips += 1;
                    let m = parsed.unwrap_or_else(|e| panic!("data byte {i} flipped: {e}"));
                    assert_eq!(m.main().tensors, sg, "data byte {i} changed the structure");
                    for (t, (new, old)) in values(&m).iter().zip(&before).enumerate() {
                        let (Some(new), Some(old)) = (new, old) else {
                            assert_eq!(new.is_some(), old.is_some(), "tensor {t}");
                            continue;
                        };
                        let changed = new.iter().zip(old).filter(|(a, b)| a != b).count();
                        let uses = sg[t].buffer as usize == buf;
                        assert_eq!(
                            changed,
                            usize::from(uses),
                            "byte {i} ^ {flip:#x}: tensor {t} ({}) changed in {changed} elements",
                            sg[t].name
                        );
                    }
                }
                None => {
                    structure_flips += 1;
                    match parsed {
                        Ok(m) => {
                            for t in 0..m.main().tensors.len() {
                                let _ = m.tensor_f32(0, t);
                            }
                        }
                        Err(e) => {
                            structure_errors += 1;
                            assert!(e.to_string().starts_with("flip.tflite: "), "{e}");
                        }
                    }
                }
            }
        }
    }
    assert!(data_flips > 0 && structure_flips > 0);
    // Many structure flips land in offsets, vtables and sizes, which are checked; the others
    // change a field's value (a name, a scale, an option), which nothing can detect.
    // Measured: 3,632 of 8,184 (44 %) are errors.
    assert!(
        structure_errors * 5 >= structure_flips * 2,
        "only {structure_errors} of {structure_flips} structure flips were errors"
    );
}

#[test]
fn wrong_identifier_and_version_are_named() {
    let mut bytes = std::fs::read(fixture("tiny_f16.tflite")).unwrap();
    let e = Model::from_bytes(b"not a flatbuffer at all".to_vec(), "x.bin").unwrap_err();
    assert!(
        e.to_string().contains("x.bin") && e.to_string().contains("TFL3"),
        "{e}"
    );
    // Patch the version field (slot 0 of the root table) to 2.
    let root = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let vt = (root as i64 - i32::from_le_bytes(bytes[root..root + 4].try_into().unwrap()) as i64)
        as usize;
    let off = u16::from_le_bytes(bytes[vt + 4..vt + 6].try_into().unwrap()) as usize;
    bytes[root + off..root + off + 4].copy_from_slice(&2u32.to_le_bytes());
    let e = Model::from_bytes(bytes, "v2.tflite").unwrap_err();
    assert!(matches!(e, Error::Version { version: 2, .. }), "{e}");
}

#[test]
fn magenta_files_parse() {
    for (file, must) in [
        (
            "style_predict_quantized_256.tflite",
            &[
                "CONV_2D",
                "DEPTHWISE_CONV_2D",
                "MEAN",
                "QUANTIZE",
                "DEQUANTIZE",
                "ADD",
            ][..],
        ),
        (
            "style_transfer_f16_384.tflite",
            &[
                "MIRROR_PAD",
                "CONV_2D",
                "DEQUANTIZE",
                "SQUARED_DIFFERENCE",
                "RSQRT",
                "LOGISTIC",
            ][..],
        ),
        (
            "style_transfer_quantized_384.tflite",
            &["MIRROR_PAD", "CONV_2D", "RESIZE_NEAREST_NEIGHBOR", "MEAN"][..],
        ),
    ] {
        let Some(p) = shared(file) else { return };
        let m = Model::open(&p).unwrap();
        let ops: std::collections::BTreeSet<String> =
            m.main().operators.iter().map(|o| m.op_name(o)).collect();
        for op in must {
            assert!(ops.contains(*op), "{file}: no {op} in {ops:?}");
        }
        // Every constant tensor with a supported dtype dequantizes.
        for (i, t) in m.main().tensors.iter().enumerate() {
            if m.tensor_data(0, i).is_some() && t.dtype.size().is_some() {
                let v = m.tensor_f32(0, i).unwrap();
                assert_eq!(v.len(), t.num_elements());
                assert!(v.iter().all(|x| x.is_finite()), "{}", t.name);
            }
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn built_files_round_trip() {
    let mut m = build::Tflite {
        opcodes: vec![0, 6],
        ..Default::default()
    };
    let w = m.buffer(f32_bytes(&[1.0, -2.0, 3.5]));
    let q = m.buffer(vec![0x80, 0x7f]);
    let a = m.tensor(build::TensorSpec {
        name: "w".into(),
        shape: vec![3],
        buffer: w,
        ..Default::default()
    });
    let b = m.tensor(build::TensorSpec {
        name: "q".into(),
        shape: vec![2],
        dtype: 9,
        buffer: q,
        scale: vec![0.5],
        zero_point: vec![1],
        ..Default::default()
    });
    let out = m.tensor(build::TensorSpec {
        name: "out".into(),
        shape: vec![3],
        ..Default::default()
    });
    m.operators.push((0, vec![a, b], vec![out]));
    m.outputs = vec![out];
    let model = Model::from_bytes(m.bytes(), "built.tflite").unwrap();
    assert_eq!(model.main().tensors.len(), 3);
    assert_eq!(model.op_name(&model.main().operators[0]), "ADD");
    assert_eq!(model.main().operators[0].inputs, vec![0, 1]);
    assert_eq!(model.tensor_f32(0, 0).unwrap(), vec![1.0, -2.0, 3.5]);
    // int8 -128 and 127 with scale 0.5, zero point 1.
    assert_eq!(model.tensor_f32(0, 1).unwrap(), vec![-64.5, 63.0]);
}

/// A 12 KB file whose 1000 subgraph slots point at one subgraph whose 1000 tensor slots point
/// at one tensor with a 1000-entry shape would decode to 4 GB of shapes: refused.
#[test]
fn vectors_sharing_one_table_are_not_decoded_without_bound() {
    use build::{Builder, Field};
    let mut b = Builder::new();
    let shape = b.i32s(&[1; 1000]);
    let tensor = b.table(&[(0, Field::Ref(shape))]);
    let tensors = b.refs(&[tensor; 1000]);
    let sg = b.table(&[(0, Field::Ref(tensors))]);
    let sgs = b.refs(&[sg; 1000]);
    let buf = b.table(&[]);
    let bufs = b.refs(&[buf]);
    let root = b.table(&[
        (0, Field::U32(3)),
        (2, Field::Ref(sgs)),
        (4, Field::Ref(bufs)),
    ]);
    let bytes = b.finish(root, b"TFL3");
    assert!(bytes.len() < 16_000, "{}", bytes.len());
    let started = std::time::Instant::now();
    let e = Model::from_bytes(bytes, "shared.tflite")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("shared.tflite: "), "{e}");
    assert!(e.contains("decodes to more than"), "{e}");
    assert!(started.elapsed().as_secs() < 10);
    // A few shared slots (within the budget) are fine: the budget is not a blanket refusal.
    let mut b = Builder::new();
    let shape = b.i32s(&[2, 3]);
    let tensor = b.table(&[(0, Field::Ref(shape))]);
    let tensors = b.refs(&[tensor; 10]);
    let sg = b.table(&[(0, Field::Ref(tensors))]);
    let sgs = b.refs(&[sg; 2]);
    let buf = b.table(&[]);
    let bufs = b.refs(&[buf]);
    let root = b.table(&[
        (0, Field::U32(3)),
        (2, Field::Ref(sgs)),
        (4, Field::Ref(bufs)),
    ]);
    let m = Model::from_bytes(b.finish(root, b"TFL3"), "few.tflite").unwrap();
    assert_eq!(m.subgraphs.len(), 2);
    assert_eq!(m.subgraphs[1].tensors[9].shape, vec![2, 3]);
}
