//! TF-Slim Inception-v3 (`google/imagenet/inception_v3/{classification,feature_vector}`
//! and any slim `inception_v3` export) -> `models::InceptionV3`.
//!
//! Mapping (TF variable -> Burn parameter path, layout):
//! - `InceptionV3/<Stem>/weights [kh,kw,cin,cout]` -> `<stem lower-cased>.conv.weight [cout,cin,kh,kw]`
//!   (stem scopes: `Conv2d_1a_3x3`, `Conv2d_2a_3x3`, `Conv2d_2b_3x3`, `Conv2d_3b_1x1`, `Conv2d_4a_3x3`);
//! - `InceptionV3/<Mixed_x>/Branch_<b>/<conv>/weights` -> `<mixed_x>.branch_<b>.<i>.conv.weight`
//!   where `i` is the conv's position in the branch (the layer table `model_folder::inception_v3`,
//!   slim's irregular names included);
//! - `.../BatchNorm/{beta,moving_mean,moving_variance}` -> `....bn.{beta,moving_mean,moving_variance}`;
//! - `InceptionV3/Logits/Conv2d_1c_1x1/{weights,biases}` -> `logits.{weight,bias}`.
//!
//! Config: `depth_multiplier` and `min_depth` are solved from the conv widths (all of them
//! must agree), `num_classes` from the logits weights (absent -> feature vector). AuxLogits
//! variables (training-only head) are ignored. A hub prefix such as `module/` is fine
//! ([`Source::get`] matches a unique `/suffix`).

use crate::layout::hwio_to_oihw;
use crate::{ConvertError, Converted, OutTensor, Source};
use model_folder::inception_v3::{self as table, convs, depth, solve_width, EndPoint};
use serde_json::json;

/// The anchor variable that identifies the model.
pub const ANCHOR: &str = "InceptionV3/Conv2d_1a_3x3/weights";

pub fn recognise(src: &Source) -> bool {
    src.get(ANCHOR).is_some()
}

pub fn convert(src: &Source) -> Result<Converted, ConvertError> {
    // How far the network goes: the last layer whose first convolution exists (a max
    // pool goes as far as the convolution before it).
    let has = |scope: &str| {
        src.get(&format!("{}/{scope}/weights", table::SCOPE))
            .is_some()
    };
    let mut last = EndPoint::Conv2d_1a_3x3;
    let mut previous = None;
    for c in convs(EndPoint::Mixed_7c) {
        // Each layer's first convolution decides (max pools have none: only the stem's last
        // one counts, as below).
        if previous == Some(c.end_point) {
            continue;
        }
        previous = Some(c.end_point);
        if !has(&c.scope) {
            break;
        }
        last = c.end_point;
    }
    if last == EndPoint::Conv2d_4a_3x3 {
        last = EndPoint::MaxPool_5a_3x3;
    }
    let table = convs(last);
    let mut tensors = Vec::with_capacity(table.len() * 4 + 2);
    let mut widths = Vec::with_capacity(table.len());
    for e in &table {
        let tf_scope = format!("{}/{}", table::SCOPE, e.scope);
        let wname = format!("{tf_scope}/weights");
        let w = src.require(&wname)?;
        let (shape, data) = hwio_to_oihw(&wname, w)?;
        let cout = shape[0];
        widths.push((e.spec.width, cout));
        tensors.push(OutTensor {
            name: format!("{}.conv.weight", e.path),
            shape,
            data,
        });
        for (tf, burn) in [
            ("beta", "beta"),
            ("moving_mean", "moving_mean"),
            ("moving_variance", "moving_variance"),
        ] {
            let name = format!("{tf_scope}/BatchNorm/{tf}");
            let data = src.vector(&name, cout)?.data.clone();
            if tf == "moving_variance" && data.iter().any(|v| !(*v >= 0.0)) {
                return Err(ConvertError::BadValues {
                    name,
                    problem: "a negative or NaN variance".into(),
                });
            }
            tensors.push(OutTensor {
                name: format!("{}.bn.{burn}", e.path),
                shape: vec![cout],
                data,
            });
        }
    }
    let (depth_multiplier, min_depth) =
        solve_width(&widths).ok_or_else(|| ConvertError::SlimWidth {
            network: "InceptionV3",
            widths: widths.iter().map(|w| w.1).collect(),
        })?;
    // Input channels must chain (catches a mixed-up checkpoint).
    if tensors[0].shape[1] != 3 {
        return Err(ConvertError::Shape {
            name: ANCHOR.into(),
            found: src.require(ANCHOR)?.shape.clone(),
            expected: "[3, 3, 3, c_out]".into(),
        });
    }

    let logits_w = "InceptionV3/Logits/Conv2d_1c_1x1/weights";
    let mut num_classes = None;
    if last == EndPoint::Mixed_7c {
        if let Some(w) = src.get(logits_w) {
            let (shape, data) = hwio_to_oihw(logits_w, w)?;
            let feat = EndPoint::Mixed_7c.channels(&|d| depth(d, depth_multiplier, min_depth));
            if shape[1] != feat || shape[2] != 1 || shape[3] != 1 {
                return Err(ConvertError::Shape {
                    name: logits_w.into(),
                    found: w.shape.clone(),
                    expected: format!("[1, 1, {feat}, num_classes]"),
                });
            }
            let n = shape[0];
            let bias = src
                .vector("InceptionV3/Logits/Conv2d_1c_1x1/biases", n)?
                .data
                .clone();
            tensors.push(OutTensor {
                name: "logits.weight".into(),
                shape,
                data,
            });
            tensors.push(OutTensor {
                name: "logits.bias".into(),
                shape: vec![n],
                data: bias,
            });
            num_classes = Some(n);
        }
    }

    let config = json!({
        "num_classes": num_classes,
        "depth_multiplier": depth_multiplier,
        "min_depth": min_depth,
        "activation": "relu",
        "final_endpoint": last,
        "dropout_keep_prob": 0.8,
        "train_batch_norm": false,
        "batch_norm_momentum": 0.99,
        "batch_norm_epsilon": 0.001,
    });
    Ok(Converted {
        typed: Vec::new(),
        kind: table::KIND.into(),
        config,
        tensors,
        assets: Vec::new(),
    })
}

/// The kind `inception_v3` in [`super::KINDS`]: [`recognise`] and [`convert`].
pub struct InceptionV3;

impl super::Kind for InceptionV3 {
    fn name(&self) -> &'static str {
        table::KIND
    }
    fn description(&self) -> &'static str {
        "Inception-v3"
    }
    fn recognise(&self, src: &Source) -> bool {
        recognise(src)
    }
    fn convert(&self, src: &Source) -> Result<Converted, ConvertError> {
        convert(src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::F32Tensor;

    #[test]
    fn hwio_permutes_to_oihw() {
        // [kh=1, kw=2, ci=2, co=3], value = y*1000 + x*100 + i*10 + o
        let mut data = Vec::new();
        for x in 0..2 {
            for i in 0..2 {
                for o in 0..3 {
                    data.push((x * 100 + i * 10 + o) as f32);
                }
            }
        }
        let (shape, out) = hwio_to_oihw(
            "w",
            &F32Tensor {
                shape: vec![1, 2, 2, 3],
                data,
            },
        )
        .unwrap();
        assert_eq!(shape, vec![3, 2, 1, 2]);
        // out[o][i][0][x]
        assert_eq!(out[((2 * 2 + 1) * 1) * 2 + 1], 112.0);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], 100.0);
    }

    #[test]
    fn missing_variable_is_named() {
        let mut src = Source::default();
        src.tensors.insert(
            ANCHOR.into(),
            F32Tensor {
                shape: vec![3, 3, 3, 32],
                data: vec![0.0; 864],
            },
        );
        assert!(recognise(&src));
        let err = convert(&src).unwrap_err().to_string();
        assert!(
            err.contains("InceptionV3/Conv2d_1a_3x3/BatchNorm/beta"),
            "{err}"
        );
    }
}
