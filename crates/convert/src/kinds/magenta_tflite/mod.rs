//! Magenta's TF Lite stylization networks
//! (`style_predict_*_256.tflite`, `style_transfer_*_384.tflite`) mapped onto
//! `models::stylization::{MobileNetStylePredictor, Transformer}`.
//!
//! Layout of this module: [`graph`] reads operators and constant tensors, [`predictor`] and
//! [`transfer`] map the two networks; each is a [`Kind`] of [`TfliteSource`] in [`KINDS`].
//! `convert inspect` describes a file with [`crate::inspect::tflite`].
//!
//! Recognition: tensor names under `MobilenetV2/` + `mobilenet_conv/` (style
//! predictor, kind `style_predictor`) or under `transformer/` + `style_params/`
//! (transfer network, kind `style_transfer`). Weights are read through
//! DEQUANTIZE ops (float16 files) or dequantized from their int8/uint8
//! quantization parameters (per-tensor or per-channel; int32 biases with their
//! own scales), so both the f16 and int8 files give float32 parameters.
//!
//! Mapping table (TF Lite tensor → Burn parameter; layouts: CONV_2D weights
//! OHWI → OIHW, DEPTHWISE `[1, kh, kw, C]` → `[C, 1, kh, kw]`, 1x1 convs on a
//! 1x1 map `[C_out, 1, 1, C_in]` → `Linear` `[C_in, C_out]`):
//!
//! | TF Lite | Burn |
//! |---|---|
//! | `MobilenetV2/Conv/weights` (+ conv bias input) | `stem.{weight,bias}` |
//! | `MobilenetV2/expanded_conv[_i]/{expand,depthwise,project}/...` | `blocks.{i}.{expand,depthwise,project}.{weight,bias}` |
//! | `MobilenetV2/Conv_1/weights` | `head.{weight,bias}` |
//! | `mobilenet_conv/Conv/weights` | `bottleneck.{weight,bias}` |
//! | `transformer/contract/conv{k}/weights` (+ folded-BN bias) | `contract.{k-1}.conv.{weight,bias}` |
//! | `transformer/residual/residual{r}/conv{c}/weights` | `residual.{r-1}.conv{c}.conv.weight` |
//! | `transformer/expand/conv{k}/conv/weights` | `expand.{k-1}.conv.weight` |
//! | `style_params/<N>/Conv/weights` (+ bias) | `<layer of N>.beta.{weight,bias}` |
//! | `style_params/<N>/Conv_1/weights` (+ bias) | `<layer of N>.gamma.{weight,bias}` |
//!
//! The residual/expand convs' own bias inputs (a conv followed by instance
//! norm) are dropped: instance norm subtracts the per-channel mean, so a
//! per-channel bias has no effect on the output. The instance norm epsilon is
//! read from the graph (`.../StyleNorm/batchnorm/add/y`).

mod graph;
pub mod predictor;
pub mod transfer;

use super::Kind;
use crate::{ConvertError, Converted};
use std::path::{Path, PathBuf};
use tflite::Model;

/// A `.tflite` file read by the `tflite` crate: what the TF Lite kinds recognise and convert.
pub struct TfliteSource {
    /// The file (named by every error).
    pub path: PathBuf,
    pub model: Model,
}

impl TfliteSource {
    /// Reads `path`.
    pub fn open(path: &Path) -> Result<Self, ConvertError> {
        Ok(Self {
            path: path.to_path_buf(),
            model: Model::open(path)?,
        })
    }

    /// The names of the main subgraph's tensors.
    fn tensor_names(&self) -> Vec<&str> {
        self.model
            .main()
            .tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }
}

/// Magenta's style predictor: kind `style_predictor`.
pub struct StylePredictor;

/// Magenta's style transfer network: kind `style_transfer`.
pub struct StyleTransfer;

impl Kind<TfliteSource> for StylePredictor {
    fn name(&self) -> &'static str {
        predictor::NAME
    }
    fn description(&self) -> &'static str {
        "a style predictor (`MobilenetV2/` + `mobilenet_conv/` tensors)"
    }
    fn recognise(&self, src: &TfliteSource) -> bool {
        predictor::recognise(&src.tensor_names())
    }
    fn convert(&self, src: &TfliteSource) -> Result<Converted, ConvertError> {
        finish(src, predictor::convert(&graph::Graph::new(src)))
    }
}

impl Kind<TfliteSource> for StyleTransfer {
    fn name(&self) -> &'static str {
        transfer::NAME
    }
    fn description(&self) -> &'static str {
        "a style transfer network (`transformer/` + `style_params/` tensors)"
    }
    fn recognise(&self, src: &TfliteSource) -> bool {
        transfer::recognise(&src.tensor_names())
    }
    fn convert(&self, src: &TfliteSource) -> Result<Converted, ConvertError> {
        finish(src, transfer::convert(&graph::Graph::new(src)))
    }
}

/// The errors labelled with the file; the config marked `source_format: tflite`.
fn finish(
    src: &TfliteSource,
    converted: Result<Converted, ConvertError>,
) -> Result<Converted, ConvertError> {
    let mut converted = converted.map_err(|e| e.within(src.path.display()))?;
    if let Some(obj) = converted.config.as_object_mut() {
        obj.insert("source_format".into(), "tflite".into());
    }
    Ok(converted)
}

/// The TF Lite kinds, in the order they are tried.
pub static KINDS: &[&dyn Kind<TfliteSource>] = &[&StylePredictor, &StyleTransfer];

/// The first kind of [`KINDS`] that recognises `src`.
pub fn recognise(src: &TfliteSource) -> Option<&'static dyn Kind<TfliteSource>> {
    KINDS.iter().copied().find(|k| k.recognise(src))
}

/// Converts a `.tflite` file (style predictor or style transfer network).
pub fn convert_tflite(path: &Path, handle: &str) -> Result<Converted, ConvertError> {
    let _ = handle;
    convert_source(&TfliteSource::open(path)?)
}

/// Converts an already-read file with the kind that recognises it.
pub fn convert_source(src: &TfliteSource) -> Result<Converted, ConvertError> {
    match recognise(src) {
        Some(k) => k.convert(src),
        None => Err(ConvertError::Unrecognised {
            expected: format!(
                "Magenta's stylization TF Lite networks: {}",
                super::describe(KINDS)
            ),
        }
        .within(src.path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names() {
        use transfer::transfer_layer;
        assert_eq!(
            transfer_layer("transformer/residual/residual5/conv2/weights").as_deref(),
            Some("residual.4.conv2")
        );
        assert_eq!(
            transfer_layer("transformer/expand/conv3/conv").as_deref(),
            Some("expand.2")
        );
        assert_eq!(
            transfer_layer("transformer/contract/conv1/weights").as_deref(),
            Some("contract.0")
        );
        assert_eq!(transfer_layer("other/x"), None);
    }

    fn shared(name: &str) -> Option<std::path::PathBuf> {
        let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/magenta-tflite")
            .join(name);
        if p.is_file() {
            Some(p)
        } else {
            eprintln!("SKIPPED: {} not found (shared data absent)", p.display());
            None
        }
    }

    #[test]
    fn converts_the_magenta_files() {
        let Some(p) = shared("style_predict_quantized_256.tflite") else {
            return;
        };
        let c = convert_tflite(&p, "x").unwrap();
        assert_eq!(c.kind, "style_predictor");
        assert_eq!(c.config["blocks"].as_array().unwrap().len(), 17);
        assert_eq!(c.config["head"], 1280);
        assert_eq!(c.tensors.len(), 2 * (1 + 17 * 3 - 1 + 1 + 1));
        let bw = c
            .tensors
            .iter()
            .find(|t| t.name == "bottleneck.weight")
            .unwrap();
        assert_eq!(bw.shape, vec![1280, 100]);
        for f in [
            "style_transfer_f16_384.tflite",
            "style_transfer_quantized_384.tflite",
        ] {
            let Some(p) = shared(f) else { return };
            let c = convert_tflite(&p, "x").unwrap();
            assert_eq!(c.kind, "style_transfer");
            assert_eq!(c.config["alpha"], 0.25);
            let eps = c.config["style_norm_epsilon"].as_f64().unwrap();
            // 1e-5 as stored in the graph (float16 in the f16 file: 1.0014e-5).
            assert!((eps - 1e-5).abs() < 2e-8, "{f}: eps {eps}");
            // 3 contract (w+b) + 13 normed convs (w) + 26 style linears (w+b)
            assert_eq!(c.tensors.len(), 6 + 13 + 52, "{f}");
            let g = c
                .tensors
                .iter()
                .find(|t| t.name == "expand.2.gamma.weight")
                .unwrap();
            assert_eq!(g.shape, vec![100, 3]);
        }
        let text = crate::inspect::tflite(&p, false).unwrap();
        assert!(text.contains("recognised as: style_predictor"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&crate::inspect::tflite(&p, true).unwrap()).unwrap();
        assert_eq!(
            json["inputs"][0]["shape"],
            serde_json::json!([1, 256, 256, 3])
        );
    }

    use tflite::build::{TensorSpec, Tflite};

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn constant(m: &mut Tflite, name: &str, shape: &[i32], values: &[f32]) -> i32 {
        let b = m.buffer(f32_bytes(values));
        m.tensor(TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            buffer: b,
            ..Default::default()
        })
    }

    fn activation(m: &mut Tflite, name: &str, shape: &[i32]) -> i32 {
        m.tensor(TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            ..Default::default()
        })
    }

    /// A predictor-looking file: opcodes 0 ADD, 3 CONV_2D, 6 DEQUANTIZE; tensors named so that
    /// it is recognised.
    fn predictor() -> Tflite {
        let mut m = Tflite {
            opcodes: vec![0, 3, 6],
            ..Default::default()
        };
        activation(&mut m, "mobilenet_conv/Conv/input", &[1, 1, 1, 4]);
        m
    }

    /// A predictor whose only operator is a 1x1 stem conv (weights [5, 7], bias 0.5) without
    /// options: no fused RELU6 where the stem has one. Also returns the weights' tensor index.
    fn crafted_stem() -> (Tflite, i32) {
        let mut m = predictor();
        let x = activation(&mut m, "in", &[1, 8, 8, 2]);
        let w = constant(
            &mut m,
            "MobilenetV2/Conv/weights",
            &[1, 1, 1, 2],
            &[5.0, 7.0],
        );
        let b = constant(&mut m, "MobilenetV2/Conv/bias", &[1], &[0.5]);
        let y = activation(&mut m, "out", &[1, 4, 4, 1]);
        m.operators.push((1, vec![x, w, b], vec![y]));
        (m, w)
    }

    /// Converts `m` written to a file; the error (conversion must fail, never panic), whose
    /// text names the file.
    fn convert_error(m: &Tflite) -> ConvertError {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("crafted.tflite");
        std::fs::write(&p, m.bytes()).unwrap();
        let e = match convert_tflite(&p, "x") {
            Ok(_) => panic!("a crafted file was converted"),
            Err(e) => e,
        };
        assert!(e.to_string().contains("crafted.tflite"), "{e}");
        e
    }

    /// The text of [`convert_error`].
    fn convert_err(m: &Tflite) -> String {
        convert_error(m).to_string()
    }

    #[test]
    fn a_file_of_neither_network_is_unrecognised() {
        let mut m = Tflite::default();
        activation(&mut m, "dense/input", &[1, 4]);
        let e = convert_error(&m);
        assert!(
            matches!(e.innermost(), ConvertError::Unrecognised { .. }),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("not one of Magenta's stylization TF Lite networks"),
            "{e}"
        );
        assert!(e.contains("`MobilenetV2/` + `mobilenet_conv/`"), "{e}");
    }

    #[test]
    fn an_operator_outside_the_network_is_a_tflite_unsupported_error() {
        let mut m = Tflite {
            opcodes: vec![1], // AVERAGE_POOL_2D
            ..predictor()
        };
        let x = activation(&mut m, "MobilenetV2/input", &[1, 8, 8, 3]);
        let y = activation(&mut m, "out", &[1, 4, 4, 3]);
        m.operators.push((0, vec![x], vec![y]));
        let e = convert_error(&m);
        assert!(
            matches!(
                &e,
                ConvertError::Tflite(tflite::Error::Unsupported { index: 0, op, .. })
                    if op == "AVERAGE_POOL_2D"
            ),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .contains("not part of Magenta's stylization networks"));
    }

    #[test]
    fn a_conv_with_other_options_is_an_unexpected_graph_naming_it() {
        let (m, _) = crafted_stem();
        let e = convert_error(&m);
        let ConvertError::In { model, error } = &e else {
            panic!("{e:?}")
        };
        assert!(model.ends_with("crafted.tflite"), "{model}");
        match &**error {
            ConvertError::UnexpectedGraph {
                what,
                found,
                expected,
            } => {
                assert_eq!(what, "operator #0 (MobilenetV2/Conv/weights)");
                assert_eq!(found, "activation None");
                assert_eq!(expected, "Relu6");
            }
            other => panic!("{other:?}"),
        }
        // A conv whose bias input is absent names the operator and the input.
        let mut m = predictor();
        let x = activation(&mut m, "in", &[1, 8, 8, 2]);
        let w = constant(
            &mut m,
            "MobilenetV2/Conv/weights",
            &[1, 1, 1, 2],
            &[5.0, 7.0],
        );
        let y = activation(&mut m, "out", &[1, 4, 4, 1]);
        m.operators.push((1, vec![x, w, -1], vec![y]));
        let e = convert_err(&m);
        assert!(
            e.ends_with("operator #0 (CONV_2D): no input 2, expected a constant tensor"),
            "{e}"
        );
    }

    #[test]
    fn add_without_outputs_is_an_error_not_a_panic() {
        let mut m = Tflite {
            opcodes: vec![0],
            ..Default::default()
        };
        let a = activation(&mut m, "transformer/x", &[1]);
        let y = constant(&mut m, "style_params/y", &[1], &[1e-5]);
        m.operators.push((0, vec![a, y], vec![]));
        let e = convert_error(&m);
        assert!(
            matches!(e.innermost(), ConvertError::NotFound { what } if what.contains("contract/conv1")),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("no `transformer/contract/conv1` conv found"),
            "{e}"
        );
    }

    #[test]
    fn scalar_where_a_kernel_is_expected_is_an_error() {
        let mut m = predictor();
        let x = activation(&mut m, "in", &[1, 8, 8, 3]);
        let w = constant(&mut m, "MobilenetV2/Conv/weights", &[], &[1.0]);
        let b = constant(&mut m, "MobilenetV2/Conv/bias", &[1], &[0.0]);
        let y = activation(&mut m, "out", &[1, 4, 4, 1]);
        m.operators.push((1, vec![x, w, b], vec![y]));
        let e = convert_err(&m);
        assert!(
            e.contains("`MobilenetV2/Conv/weights` has shape [], expected a 4-d kernel"),
            "{e}"
        );
        // Same for a transfer network's conv.
        let mut m = Tflite {
            opcodes: vec![3],
            ..Default::default()
        };
        let x = activation(&mut m, "style_params/in", &[1, 8, 8, 3]);
        let w = constant(
            &mut m,
            "transformer/contract/conv1/weights",
            &[2],
            &[1.0, 2.0],
        );
        let y = activation(&mut m, "out", &[1, 8, 8, 1]);
        m.operators.push((0, vec![x, w], vec![y]));
        let e = convert_err(&m);
        assert!(e.contains("has shape [2], expected a 4-d kernel"), "{e}");
    }

    #[test]
    fn dequantize_with_the_wrong_shape_is_an_error() {
        let mut m = predictor();
        let x = activation(&mut m, "in", &[1, 8, 8, 3]);
        let half = m.buffer(vec![0x00, 0x3c]); // one float16 1.0
        let q = m.tensor(TensorSpec {
            name: "MobilenetV2/Conv/weights".into(),
            shape: vec![1],
            dtype: 1,
            buffer: half,
            ..Default::default()
        });
        let w = activation(
            &mut m,
            "MobilenetV2/Conv/weights_dequantize",
            &[32, 3, 3, 3],
        );
        let b = constant(&mut m, "MobilenetV2/Conv/bias", &[32], &[0.0; 32]);
        let y = activation(&mut m, "out", &[1, 4, 4, 32]);
        m.operators.push((2, vec![q], vec![w]));
        m.operators.push((1, vec![x, w, b], vec![y]));
        let e = convert_error(&m);
        assert!(
            matches!(e.innermost(), ConvertError::ValueCount { name, values: 1, .. }
                if name == "MobilenetV2/Conv/weights_dequantize"),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("has shape [32, 3, 3, 3], which does not match the 1 values"),
            "{e}"
        );
        assert!(
            e.contains("DEQUANTIZE of `MobilenetV2/Conv/weights`"),
            "{e}"
        );
    }

    #[test]
    fn dequantize_cycle_is_an_error() {
        let mut m = predictor();
        let x = activation(&mut m, "in", &[1, 8, 8, 3]);
        let a = activation(&mut m, "MobilenetV2/Conv/weights", &[1, 1, 1, 1]);
        let c = activation(&mut m, "loop", &[1, 1, 1, 1]);
        let b = constant(&mut m, "MobilenetV2/Conv/bias", &[1], &[0.0]);
        let y = activation(&mut m, "out", &[1, 4, 4, 1]);
        m.operators.push((2, vec![c], vec![a]));
        m.operators.push((2, vec![a], vec![c]));
        m.operators.push((1, vec![x, a, b], vec![y]));
        let e = convert_err(&m);
        assert!(e.contains("DEQUANTIZE ops in a row (a cycle?)"), "{e}");
        // A tensor that dequantizes itself.
        let mut m = predictor();
        let x = activation(&mut m, "in", &[1, 8, 8, 3]);
        let a = activation(&mut m, "MobilenetV2/Conv/weights", &[1, 1, 1, 1]);
        let b = constant(&mut m, "MobilenetV2/Conv/bias", &[1], &[0.0]);
        let y = activation(&mut m, "out", &[1, 4, 4, 1]);
        m.operators.push((2, vec![a], vec![a]));
        m.operators.push((1, vec![x, a, b], vec![y]));
        assert!(convert_err(&m).contains("a cycle?"));
    }

    #[test]
    fn a_well_formed_crafted_stem_converts_its_weights() {
        // The crafted files above fail for the reason tested, not for a builder defect: the
        // same builder gives a stem conv whose weights come out permuted OHWI -> OIHW.
        let (m, w) = crafted_stem();
        let src = TfliteSource {
            path: "m.tflite".into(),
            model: Model::from_bytes(m.bytes(), "m.tflite").unwrap(),
        };
        let g = graph::Graph::new(&src);
        let c = g.constant(w).unwrap();
        assert_eq!(c.value.shape, vec![1, 1, 1, 2]);
        let (shape, _) = crate::layout::ohwi_to_oihw(&c.name, &c.value).unwrap();
        assert_eq!(shape, vec![1, 2, 1, 1]);
        assert_eq!(g.input(0, 2).unwrap().value.data, vec![0.5]);
    }
}
