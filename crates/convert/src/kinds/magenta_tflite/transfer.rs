//! The style transfer network (`style_transfer_*_384.tflite`, kind `style_transfer`) mapped
//! onto `models::stylization::Transformer` (table in the parent module).

use super::graph::Graph;
use crate::layout::{conv1x1_to_linear, dims4, ohwi_to_oihw};
use crate::{ConvertError, Converted, OutTensor};
use std::collections::BTreeSet;
use tflite::{Activation, Options, Padding};

/// `kind` in `config.json`.
pub const NAME: &str = "style_transfer";

/// Operators that the transfer network may use; anything else is refused.
const OPS: &[&str] = &[
    "QUANTIZE",
    "DEQUANTIZE",
    "MIRROR_PAD",
    "PAD",
    "CONV_2D",
    "MEAN",
    "SQUARED_DIFFERENCE",
    "RSQRT",
    "MUL",
    "ADD",
    "SUB",
    "RESIZE_NEAREST_NEIGHBOR",
    "LOGISTIC",
    "RELU",
    "RESHAPE",
    "SQUEEZE",
];

/// Recognised by its tensor names.
pub(super) fn recognise(names: &[&str]) -> bool {
    let has = |p: &str| names.iter().any(|n| n.starts_with(p));
    has("transformer/") && has("style_params/")
}

/// `transformer/residual/residual3/conv2` -> `residual.2.conv2`, etc.
pub(super) fn transfer_layer(scope: &str) -> Option<String> {
    let parts: Vec<&str> = scope.split('/').collect();
    match parts.as_slice() {
        ["transformer", "contract", conv, ..] => {
            let k: usize = conv.strip_prefix("conv")?.parse().ok()?;
            Some(format!("contract.{}", k.checked_sub(1)?))
        }
        ["transformer", "residual", res, conv, ..] => {
            let r: usize = res.strip_prefix("residual")?.parse().ok()?;
            let c: usize = conv.strip_prefix("conv")?.parse().ok()?;
            Some(format!("residual.{}.conv{c}", r.checked_sub(1)?))
        }
        ["transformer", "expand", conv, ..] => {
            let k: usize = conv.strip_prefix("conv")?.parse().ok()?;
            Some(format!("expand.{}", k.checked_sub(1)?))
        }
        _ => None,
    }
}

fn out((shape, data): (Vec<usize>, Vec<f32>), name: String) -> OutTensor {
    OutTensor { name, shape, data }
}

pub(super) fn convert(g: &Graph) -> Result<Converted, ConvertError> {
    g.check_ops(OPS)?;
    let sg = g.model().main();
    let mut tensors = Vec::new();
    let mut contract_width = None;
    let mut bottleneck = None;
    let mut eps: Option<f32> = None;
    let mut seen = BTreeSet::new();
    for (i, op) in g.operators().iter().enumerate() {
        let opn = g.op_name(i);
        if opn == "MIRROR_PAD" {
            if let Options::MirrorPad { reflect: false } = op.options {
                return Err(ConvertError::UnexpectedGraph {
                    what: format!("operator #{i}"),
                    found: "MIRROR_PAD SYMMETRIC".into(),
                    expected: "REFLECT".into(),
                });
            }
        }
        if opn == "ADD" {
            // StyleNorm epsilon: `.../StyleNorm/batchnorm/add` = variance + y.
            let out = op
                .outputs
                .first()
                .and_then(|&o| usize::try_from(o).ok())
                .and_then(|o| sg.tensors.get(o))
                .map_or("", |t| t.name.as_str());
            if out.ends_with("StyleNorm/batchnorm/add") {
                for &inp in &op.inputs {
                    if let Ok(c) = g.constant(inp) {
                        if c.value.data.len() == 1 {
                            let v = c.value.data[0];
                            if let Some(prev) = eps {
                                if (prev - v).abs() > 1e-12 {
                                    return Err(ConvertError::UnexpectedGraph {
                                        what: format!("style norm epsilon of `{out}`"),
                                        found: v.to_string(),
                                        expected: format!("{prev} (as in the earlier layers)"),
                                    });
                                }
                            }
                            eps = Some(v);
                        }
                    }
                }
            }
        }
        if opn != "CONV_2D" {
            continue;
        }
        let w = g.input(i, 1)?;
        let wname = w.name.trim_end_matches("_dequantize").to_string();
        let unexpected = |found: String, expected: &str| ConvertError::UnexpectedGraph {
            what: format!("operator #{i}"),
            found,
            expected: expected.into(),
        };
        let twice = || ConvertError::UnexpectedGraph {
            what: format!("`{wname}`"),
            found: "appears twice".into(),
            expected: "once".into(),
        };
        let [w_out, _, _, w_in] =
            dims4(&w.name, &w.value.shape, w.value.data.len(), "a 4-d kernel")?;
        if let Some(scope) = wname.strip_prefix("style_params/") {
            // style_params/<N>/Conv[_1]/weights
            const PARAM: &str = "`style_params/<layer>/StyleNorm/Conv[_1]/weights`";
            let bad = || unexpected(format!("unexpected style parameter `{wname}`"), PARAM);
            let (layer_scope, which) =
                if let Some(s) = scope.strip_suffix("/StyleNorm/Conv/weights") {
                    (s, "beta")
                } else if let Some(s) = scope.strip_suffix("/StyleNorm/Conv_1/weights") {
                    (s, "gamma")
                } else {
                    return Err(bad());
                };
            let layer = transfer_layer(layer_scope).ok_or_else(bad)?;
            let b = g.input(i, 2)?;
            bottleneck = Some(w_in);
            let key = format!("{layer}.{which}");
            if !seen.insert(key.clone()) {
                return Err(twice());
            }
            tensors.push(out(
                conv1x1_to_linear(&w.name, &w.value)?,
                format!("{key}.weight"),
            ));
            tensors.push(b.vector(format!("{key}.bias")));
        } else if wname.starts_with("transformer/") {
            let layer = transfer_layer(&wname).ok_or_else(|| {
                unexpected(
                    format!("unexpected conv weights `{wname}`"),
                    "`transformer/{contract/conv<k>,residual/residual<r>/conv<c>,expand/conv<k>}/...`",
                )
            })?;
            let (padding, stride, act) = g.conv_options(i);
            let what = || format!("operator #{i} (`{wname}`)");
            if padding != Padding::Valid {
                return Err(ConvertError::UnexpectedGraph {
                    what: what(),
                    found: "SAME padding".into(),
                    expected: "VALID after MIRROR_PAD".into(),
                });
            }
            let k = layer.clone() + ".conv";
            if !seen.insert(k.clone()) {
                return Err(twice());
            }
            tensors.push(out(ohwi_to_oihw(&w.name, &w.value)?, format!("{k}.weight")));
            if layer.starts_with("contract.") {
                if act != Activation::Relu {
                    return Err(ConvertError::UnexpectedGraph {
                        what: what(),
                        found: format!("activation {act:?}"),
                        expected: "Relu".into(),
                    });
                }
                let want_stride = if layer == "contract.0" { 1 } else { 2 };
                if stride != (want_stride, want_stride) {
                    return Err(ConvertError::UnexpectedGraph {
                        what: what(),
                        found: format!("stride {stride:?}"),
                        expected: format!("{:?}", (want_stride, want_stride)),
                    });
                }
                if layer == "contract.0" {
                    contract_width = Some(w_out);
                }
                let b = g.input(i, 2)?;
                tensors.push(b.vector(format!("{k}.bias")));
            }
        } else {
            return Err(unexpected(
                format!("unexpected conv weights `{wname}`"),
                "weights under `transformer/` or `style_params/`",
            ));
        }
    }
    let width = contract_width.ok_or_else(|| ConvertError::NotFound {
        what: "`transformer/contract/conv1` conv".into(),
    })?;
    let eps = eps.ok_or_else(|| ConvertError::NotFound {
        what: "style norm epsilon (`StyleNorm/batchnorm/add/y`)".into(),
    })?;
    let expected = 3 + 3 + 10 + 2 * 13;
    if seen.len() != expected {
        return Err(ConvertError::UnexpectedGraph {
            what: "transformer layers/style parameters".into(),
            found: format!("{} found", seen.len()),
            expected: expected.to_string(),
        });
    }
    Ok(Converted {
        typed: Vec::new(),
        kind: NAME.into(),
        config: serde_json::json!({
            "alpha": width as f64 / 32.0,
            "contract_batch_norm": false,
            "batch_norm_epsilon": 1e-3,
            "style_norm_epsilon": eps as f64,
            "bottleneck": bottleneck.unwrap_or(100),
        }),
        tensors,
        assets: Vec::new(),
    })
}
