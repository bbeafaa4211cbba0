//! The style predictor network (`style_predict_*_256.tflite`, kind `style_predictor`) mapped
//! onto `models::stylization::MobileNetStylePredictor` (table in the parent module).

use super::graph::Graph;
use crate::layout::{conv1x1_to_linear, depthwise_to_oihw, dims4, ohwi_to_oihw};
use crate::{ConvertError, Converted, OutTensor};
use std::collections::BTreeMap;
use tflite::{Activation, Padding};

/// `kind` in `config.json`.
pub const NAME: &str = "style_predictor";

/// Operators that the predictor may use; anything else is refused.
const OPS: &[&str] = &[
    "QUANTIZE",
    "DEQUANTIZE",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "MEAN",
    "RESHAPE",
    "SQUEEZE",
];

/// Recognised by its tensor names.
pub(super) fn recognise(names: &[&str]) -> bool {
    let has = |p: &str| names.iter().any(|n| n.starts_with(p));
    has("MobilenetV2/") && has("mobilenet_conv/")
}

fn out((shape, data): (Vec<usize>, Vec<f32>), name: String) -> OutTensor {
    OutTensor { name, shape, data }
}

/// Block index -> (input width, expand width, output width, stride).
type Blocks = BTreeMap<usize, (Option<usize>, Option<usize>, Option<usize>, usize)>;

pub(super) fn convert(g: &Graph) -> Result<Converted, ConvertError> {
    g.check_ops(OPS)?;
    let mut tensors = Vec::new();
    let mut blocks = Blocks::new();
    let (mut stem, mut head, mut bottleneck) = (None, None, None);
    for i in 0..g.operators().len() {
        let opn = g.op_name(i);
        if opn != "CONV_2D" && opn != "DEPTHWISE_CONV_2D" {
            continue;
        }
        let w = g.input(i, 1)?;
        let b = g.input(i, 2)?;
        let (padding, stride, act) = g.conv_options(i);
        let wname = w.name.trim_end_matches("_dequantize").to_string();
        // Every conv weight is a 4-d kernel: checked before its dims are read below.
        let [w_out, _, _, w_in] =
            dims4(&w.name, &w.value.shape, w.value.data.len(), "a 4-d kernel")?;
        let want_act = |a: Activation, name: &str| -> Result<(), ConvertError> {
            let what = || format!("operator #{i} ({name})");
            if act != a {
                return Err(ConvertError::UnexpectedGraph {
                    what: what(),
                    found: format!("activation {act:?}"),
                    expected: format!("{a:?}"),
                });
            }
            if padding != Padding::Same {
                return Err(ConvertError::UnexpectedGraph {
                    what: what(),
                    found: "VALID padding".into(),
                    expected: "SAME".into(),
                });
            }
            Ok(())
        };
        let unexpected = |found: String, expected: &str| ConvertError::UnexpectedGraph {
            what: format!("operator #{i}"),
            found,
            expected: expected.into(),
        };
        if wname.starts_with("MobilenetV2/Conv/") {
            want_act(Activation::Relu6, &wname)?;
            if stride != (2, 2) {
                return Err(ConvertError::UnexpectedGraph {
                    what: format!("`{wname}`"),
                    found: format!("stride {stride:?}"),
                    expected: "(2, 2)".into(),
                });
            }
            stem = Some(w_out);
            tensors.push(out(ohwi_to_oihw(&w.name, &w.value)?, "stem.weight".into()));
            tensors.push(b.vector("stem.bias".into()));
        } else if wname.starts_with("MobilenetV2/Conv_1/") {
            want_act(Activation::Relu6, &wname)?;
            head = Some(w_out);
            tensors.push(out(ohwi_to_oihw(&w.name, &w.value)?, "head.weight".into()));
            tensors.push(b.vector("head.bias".into()));
        } else if wname.starts_with("mobilenet_conv/Conv/") {
            if act != Activation::None {
                return Err(ConvertError::UnexpectedGraph {
                    what: format!("`{wname}`"),
                    found: format!("activation {act:?}"),
                    expected: "none".into(),
                });
            }
            bottleneck = Some(w_out);
            tensors.push(out(
                conv1x1_to_linear(&w.name, &w.value)?,
                "bottleneck.weight".into(),
            ));
            tensors.push(b.vector("bottleneck.bias".into()));
        } else if let Some(rest) = wname.strip_prefix("MobilenetV2/expanded_conv") {
            const BLOCK: &str = "`MobilenetV2/expanded_conv[_<n>]/<layer>/...` weights";
            let (num, part) = rest
                .split_once('/')
                .ok_or_else(|| unexpected(format!("unexpected tensor `{wname}`"), BLOCK))?;
            let idx: usize = if num.is_empty() {
                0
            } else {
                num.trim_start_matches('_')
                    .parse()
                    .map_err(|_| unexpected(format!("unexpected tensor `{wname}`"), BLOCK))?
            };
            let entry = blocks.entry(idx).or_insert((None, None, None, 1));
            let part = part.split('/').next().unwrap_or("");
            let t = match part {
                "expand" => {
                    want_act(Activation::Relu6, &wname)?;
                    entry.0 = Some(w_in);
                    entry.1 = Some(w_out);
                    ohwi_to_oihw(&w.name, &w.value)?
                }
                "depthwise" => {
                    want_act(Activation::Relu6, &wname)?;
                    if entry.0.is_none() {
                        entry.0 = Some(w_in);
                    }
                    entry.3 = stride.0;
                    depthwise_to_oihw(&w.name, &w.value)?
                }
                "project" => {
                    want_act(Activation::None, &wname)?;
                    entry.2 = Some(w_out);
                    ohwi_to_oihw(&w.name, &w.value)?
                }
                other => {
                    return Err(ConvertError::UnexpectedGraph {
                        what: format!("`{wname}`"),
                        found: format!("unexpected layer `{other}`"),
                        expected: "expand, depthwise or project".into(),
                    })
                }
            };
            tensors.push(out(t, format!("blocks.{idx}.{part}.weight")));
            tensors.push(b.vector(format!("blocks.{idx}.{part}.bias")));
        } else {
            return Err(unexpected(
                format!("unexpected conv weights `{wname}`"),
                "weights under `MobilenetV2/` or `mobilenet_conv/Conv/`",
            ));
        }
    }
    let missing = |what: &str| ConvertError::NotFound {
        what: format!("`{what}` conv"),
    };
    let stem = stem.ok_or_else(|| missing("MobilenetV2/Conv"))?;
    let head = head.ok_or_else(|| missing("MobilenetV2/Conv_1"))?;
    let bottleneck = bottleneck.ok_or_else(|| missing("mobilenet_conv/Conv"))?;
    let mut block_cfg = Vec::new();
    for (n, (i, (input, expand, output, stride))) in blocks.into_iter().enumerate() {
        if i != n {
            return Err(ConvertError::NotFound {
                what: format!("block expanded_conv_{n}"),
            });
        }
        let (Some(input), Some(output)) = (input, output) else {
            return Err(ConvertError::UnexpectedGraph {
                what: format!("block expanded_conv_{i}"),
                found: if input.is_none() {
                    "no expand or depthwise conv"
                } else {
                    "no project conv"
                }
                .into(),
                expected: "a depthwise and a project conv".into(),
            });
        };
        block_cfg.push(serde_json::json!({"input": input, "expand": expand, "output": output, "stride": stride}));
    }
    Ok(Converted {
        typed: Vec::new(),
        kind: NAME.into(),
        config: serde_json::json!({"stem": stem, "blocks": block_cfg, "head": head, "bottleneck": bottleneck}),
        tensors,
        assets: Vec::new(),
    })
}
