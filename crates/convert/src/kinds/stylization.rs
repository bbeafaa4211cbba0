//! Magenta's arbitrary image stylization SavedModel
//! (`google/magenta/arbitrary-image-stylization-v1-256`, exported by Magenta's
//! `export_hub.py`): kind `stylization`, both halves in one folder.
//!
//! TF variables (Magenta's `build_model` scopes: `style_prediction/...`, `transformer/...`) -> Burn parameters (`models::stylization`):
//!
//! | TensorFlow | Burn | layout |
//! |---|---|---|
//! | `InceptionV3/Conv2d_1a_3x3/weights` | `predictor.backbone.conv2d_1a_3x3.conv.weight` | HWIO -> OIHW |
//! | `InceptionV3/<S>/BatchNorm/{beta,moving_mean,moving_variance}` | `predictor.backbone.<s>.bn.{beta,moving_mean,moving_variance}` | |
//! | `InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights` | `predictor.backbone.mixed_5c.branch_1.1.conv.weight` | convs of a branch by execution order |
//! | `Conv/{weights,biases}` | `predictor.bottleneck.{weight,bias}` | `[1,1,768,100]` -> `[768,100]` |
//! | `transformer/contract/conv{i}/weights` | `transformer.contract.{i-1}.conv.weight` | HWIO -> OIHW |
//! | `transformer/contract/conv{i}/BatchNorm/{beta,moving_mean,moving_variance}` | `transformer.contract.{i-1}.bn.{beta,running_mean,running_var}`, `bn.gamma` = 1 | slim BN has no scale |
//! | `transformer/residual/residual{r}/conv{c}/weights` | `transformer.residual.{r-1}.conv{c}.conv.weight` | HWIO -> OIHW |
//! | `transformer/expand/conv{i}/conv/weights` | `transformer.expand.{i-1}.conv.weight` | HWIO -> OIHW |
//! | `style_params/<N>/Conv/{weights,biases}` (beta) | `<layer of N>.beta.{weight,bias}` | `[1,1,100,C]` -> `[100,C]` |
//! | `style_params/<N>/Conv_1/{weights,biases}` (gamma) | `<layer of N>.gamma.{weight,bias}` | same |
//!
//! Widths are read from the shapes: the transformer's `alpha` from `contract/conv1`
//! (32·alpha channels), the Inception `depth_multiplier`/`min_depth` by finding slim's
//! `depth(d) = max(int(d * depth_multiplier), min_depth)` that reproduces every conv width.

use crate::layout::hwio_to_oihw;
use crate::{ConvertError, Converted, F32Tensor, OutTensor, Source};
use model_folder::inception_v3::{self as table, EndPoint};
use serde_json::json;

/// The 13 style-normalized layers: (Magenta scope `N` of `style_params/N/...`, Burn path
/// under `transformer.`). Order of `nza_model.style_normalization_activations`.
fn style_norm_layers() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for r in 1..=5 {
        for c in 1..=2 {
            v.push((
                format!("transformer/residual/residual{r}/conv{c}"),
                format!("residual.{}.conv{c}", r - 1),
            ));
        }
    }
    for i in 1..=3 {
        v.push((
            format!("transformer/expand/conv{i}/conv"),
            format!("expand.{}", i - 1),
        ));
    }
    v
}

/// Recognises Magenta's SavedModel: Inception-v3 style predictor variables, the bottleneck
/// conv, the style parameter convs and the transformer.
pub fn recognise(src: &Source) -> bool {
    [
        "InceptionV3/Mixed_6e/Branch_3/Conv2d_0b_1x1/weights",
        "transformer/contract/conv1/weights",
        "transformer/expand/conv3/conv/weights",
    ]
    .iter()
    .all(|n| src.get(n).is_some())
        && src
            .get("style_params/transformer/expand/conv3/conv/StyleNorm/Conv_1/weights")
            .is_some()
        && src
            .get("InceptionV3/Mixed_7a/Branch_0/Conv2d_0a_1x1/weights")
            .is_none()
}

struct Out(Vec<OutTensor>);

impl Out {
    fn push(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>) {
        self.0.push(OutTensor { name, shape, data });
    }

    /// The conv kernel `tf`, permuted to OIHW.
    fn conv(&mut self, name: String, tf: &str, t: &F32Tensor) -> Result<(), ConvertError> {
        let (shape, data) = hwio_to_oihw(tf, t)?;
        self.push(name, shape, data);
        Ok(())
    }

    /// A 1x1 conv `[1, 1, in, out]` (+ bias) as a Burn `Linear` (`weight [in, out]`).
    fn linear(
        &mut self,
        src: &Source,
        tf: &str,
        burn: &str,
        d_in: usize,
        d_out: Option<usize>,
    ) -> Result<usize, ConvertError> {
        let w = src.kernel(
            &format!("{tf}/weights"),
            [Some(1), Some(1), Some(d_in), d_out],
        )?;
        let out = w.shape[3];
        let b = src.vector(&format!("{tf}/biases"), out)?;
        self.push(format!("{burn}.weight"), vec![d_in, out], w.data.clone());
        self.push(format!("{burn}.bias"), vec![out], b.data.clone());
        Ok(out)
    }
}

fn map_predictor(src: &Source, out: &mut Out) -> Result<serde_json::Value, ConvertError> {
    let convs = table::convs(EndPoint::Mixed_6e);
    let mut widths = Vec::with_capacity(convs.len());
    for c in &convs {
        let scope = format!("{}/{}", table::SCOPE, c.scope);
        let name = format!("{scope}/weights");
        let w = src.kernel(&name, [None, None, None, None])?;
        let co = w.shape[3];
        widths.push((c.spec.width, co));
        let path = format!("predictor.backbone.{}", c.path);
        out.conv(format!("{path}.conv.weight"), &name, w)?;
        for (tf, burn) in [
            ("beta", "beta"),
            ("moving_mean", "moving_mean"),
            ("moving_variance", "moving_variance"),
        ] {
            let t = src.vector(&format!("{scope}/BatchNorm/{tf}"), co)?;
            out.push(format!("{path}.bn.{burn}"), vec![co], t.data.clone());
        }
    }
    let (multiplier, min_depth) =
        table::solve_width(&widths).ok_or_else(|| ConvertError::SlimWidth {
            network: "InceptionV3",
            widths: widths.iter().map(|w| w.1).collect(),
        })?;
    let feature_dim = EndPoint::Mixed_6e.channels(&|d| table::depth(d, multiplier, min_depth));
    let bottleneck = out.linear(src, "Conv", "predictor.bottleneck", feature_dim, None)?;
    Ok(json!({
        "backbone": {
            "num_classes": null,
            "depth_multiplier": multiplier,
            "min_depth": min_depth,
            "activation": "relu6",
            "final_endpoint": "Mixed_6e",
            "batch_norm_epsilon": 0.001,
        },
        "bottleneck": bottleneck,
    }))
}

fn map_transformer(
    src: &Source,
    out: &mut Out,
    bottleneck: usize,
) -> Result<serde_json::Value, ConvertError> {
    let c1 = src
        .kernel(
            "transformer/contract/conv1/weights",
            [Some(9), Some(9), Some(3), None],
        )?
        .shape[3];
    // Magenta: 32·alpha, 64·alpha, 128·alpha channels.
    let alpha = c1 as f64 / 32.0;
    let widths = [c1, 2 * c1, 4 * c1];
    let has_bn = src
        .get("transformer/contract/conv1/BatchNorm/moving_mean")
        .is_some();
    let mut cin = 3;
    for (i, (&c, k)) in widths.iter().zip([9, 3, 3]).enumerate() {
        let scope = format!("transformer/contract/conv{}", i + 1);
        let name = format!("{scope}/weights");
        let w = src.kernel(&name, [Some(k), Some(k), Some(cin), Some(c)])?;
        out.conv(format!("transformer.contract.{i}.conv.weight"), &name, w)?;
        if has_bn {
            out.push(
                format!("transformer.contract.{i}.bn.gamma"),
                vec![c],
                vec![1.0; c],
            );
            for (tf, burn) in [
                ("beta", "beta"),
                ("moving_mean", "running_mean"),
                ("moving_variance", "running_var"),
            ] {
                let t = src.vector(&format!("{scope}/BatchNorm/{tf}"), c)?;
                out.push(
                    format!("transformer.contract.{i}.bn.{burn}"),
                    vec![c],
                    t.data.clone(),
                );
            }
        } else {
            let b = src.vector(&format!("{scope}/biases"), c)?;
            out.push(
                format!("transformer.contract.{i}.conv.bias"),
                vec![c],
                b.data.clone(),
            );
        }
        cin = c;
    }
    let [w1, w2, w3] = widths;
    // (in, out, kernel) of the 13 style-normalized convs, Magenta's order.
    let mut convs = vec![(w3, w3, 3); 10];
    convs.extend([(w3, w2, 3), (w2, w1, 3), (w1, 3, 9)]);
    for ((tf_scope, burn), (ci, co, k)) in style_norm_layers().into_iter().zip(convs) {
        let name = format!("{tf_scope}/weights");
        let w = src.kernel(&name, [Some(k), Some(k), Some(ci), Some(co)])?;
        out.conv(format!("transformer.{burn}.conv.weight"), &name, w)?;
        let params = format!("style_params/{tf_scope}/StyleNorm");
        out.linear(
            src,
            &format!("{params}/Conv"),
            &format!("transformer.{burn}.beta"),
            bottleneck,
            Some(co),
        )?;
        out.linear(
            src,
            &format!("{params}/Conv_1"),
            &format!("transformer.{burn}.gamma"),
            bottleneck,
            Some(co),
        )?;
    }
    Ok(json!({
        "alpha": alpha,
        "contract_batch_norm": has_bn,
        "batch_norm_epsilon": 0.001,
        "style_norm_epsilon": 1e-5,
        "bottleneck": bottleneck,
    }))
}

/// Maps every variable of Magenta's SavedModel onto the Burn `stylization` model.
pub fn convert(src: &Source) -> Result<Converted, ConvertError> {
    let mut out = Out(Vec::new());
    let predictor = map_predictor(src, &mut out)?;
    let bottleneck = predictor["bottleneck"].as_u64().unwrap_or(100) as usize;
    let transformer = map_transformer(src, &mut out, bottleneck)?;
    Ok(Converted {
        typed: Vec::new(),
        kind: "stylization".into(),
        config: json!({ "predictor": predictor, "transformer": transformer }),
        tensors: out.0,
        assets: Vec::new(),
    })
}

/// The kind `stylization` in [`super::KINDS`]: [`recognise`] and [`convert`].
pub struct Stylization;

impl super::Kind for Stylization {
    fn name(&self) -> &'static str {
        "stylization"
    }
    fn description(&self) -> &'static str {
        "Magenta stylization"
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

    #[test]
    fn hwio_to_oihw_moves_every_element() {
        // [kh=1, kw=2, cin=2, cout=3], value = 1000h + 100w + 10i + o
        let mut data = Vec::new();
        for w in 0..2 {
            for i in 0..2 {
                for o in 0..3 {
                    data.push((100 * w + 10 * i + o) as f32);
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
        // out[o][i][0][w]
        assert_eq!(out[((2 * 2 + 1) * 1) * 2 + 1], 112.0);
        assert_eq!(out[0..4], [0.0, 100.0, 10.0, 110.0]);
    }

    #[test]
    fn not_recognised_without_the_transformer() {
        let mut src = Source::default();
        src.tensors.insert(
            "InceptionV3/Mixed_6e/Branch_3/Conv2d_0b_1x1/weights".into(),
            F32Tensor {
                shape: vec![1, 1, 768, 192],
                data: vec![],
            },
        );
        assert!(!recognise(&src));
    }
}
