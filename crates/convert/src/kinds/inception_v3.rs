//! TF-Slim Inception-v3 (`google/imagenet/inception_v3/{classification,feature_vector}`
//! and any slim `inception_v3` export) -> `models::InceptionV3`.
//!
//! Mapping (TF variable -> Burn parameter path, layout):
//! - `InceptionV3/<Stem>/weights [kh,kw,cin,cout]` -> `<stem lower-cased>.conv.weight [cout,cin,kh,kw]`
//!   (stem scopes: `Conv2d_1a_3x3`, `Conv2d_2a_3x3`, `Conv2d_2b_3x3`, `Conv2d_3b_1x1`, `Conv2d_4a_3x3`);
//! - `InceptionV3/<Mixed_x>/Branch_<b>/<conv>/weights` -> `<mixed_x>.branch_<b>.<i>.conv.weight`
//!   where `i` is the conv's position in the branch ([`BLOCKS`], slim's irregular names included);
//! - `.../BatchNorm/{beta,moving_mean,moving_variance}` -> `....bn.{beta,moving_mean,moving_variance}`;
//! - `InceptionV3/Logits/Conv2d_1c_1x1/{weights,biases}` -> `logits.{weight,bias}`.
//!
//! Config: `depth_multiplier` and `min_depth` are solved from the conv widths (all of them
//! must agree), `num_classes` from the logits weights (absent -> feature vector). AuxLogits
//! variables (training-only head) are ignored. A hub prefix such as `module/` is fine
//! ([`Source::get`] matches a unique `/suffix`).

use crate::layout::hwio_to_oihw;
use crate::{ConvertError, Converted, OutTensor, Source};
use serde_json::json;

/// The anchor variable that identifies the model.
pub const ANCHOR: &str = "InceptionV3/Conv2d_1a_3x3/weights";

/// The stem convs: (TF scope, nominal width).
pub const STEM: [(&str, usize); 5] = [
    ("Conv2d_1a_3x3", 32),
    ("Conv2d_2a_3x3", 32),
    ("Conv2d_2b_3x3", 64),
    ("Conv2d_3b_1x1", 80),
    ("Conv2d_4a_3x3", 192),
];

/// One conv of a Mixed block: (TF name inside its branch, nominal output width).
type ConvSpec = (&'static str, usize);

/// The Mixed blocks in execution order: scope and, per branch, its convs in execution
/// order (the Burn list index). Irregular slim names: Mixed_5c Branch_1
/// `Conv2d_0b_1x1`/`Conv_1_0c_5x5`; Mixed_6a `Conv2d_1a_1x1` are 3x3 stride-2 convs;
/// Mixed_7b Branch_1 `Conv2d_0b_3x1` vs Mixed_7c `Conv2d_0c_3x1`.
#[rustfmt::skip]
pub const BLOCKS: [(&str, [&[ConvSpec]; 4]); 11] = [
    ("Mixed_5b", [&[("Conv2d_0a_1x1", 64)], &[("Conv2d_0a_1x1", 48), ("Conv2d_0b_5x5", 64)],
                  &[("Conv2d_0a_1x1", 64), ("Conv2d_0b_3x3", 96), ("Conv2d_0c_3x3", 96)], &[("Conv2d_0b_1x1", 32)]]),
    ("Mixed_5c", [&[("Conv2d_0a_1x1", 64)], &[("Conv2d_0b_1x1", 48), ("Conv_1_0c_5x5", 64)],
                  &[("Conv2d_0a_1x1", 64), ("Conv2d_0b_3x3", 96), ("Conv2d_0c_3x3", 96)], &[("Conv2d_0b_1x1", 64)]]),
    ("Mixed_5d", [&[("Conv2d_0a_1x1", 64)], &[("Conv2d_0a_1x1", 48), ("Conv2d_0b_5x5", 64)],
                  &[("Conv2d_0a_1x1", 64), ("Conv2d_0b_3x3", 96), ("Conv2d_0c_3x3", 96)], &[("Conv2d_0b_1x1", 64)]]),
    ("Mixed_6a", [&[("Conv2d_1a_1x1", 384)], &[("Conv2d_0a_1x1", 64), ("Conv2d_0b_3x3", 96), ("Conv2d_1a_1x1", 96)], &[], &[]]),
    ("Mixed_6b", [&[("Conv2d_0a_1x1", 192)], &[("Conv2d_0a_1x1", 128), ("Conv2d_0b_1x7", 128), ("Conv2d_0c_7x1", 192)],
                  &[("Conv2d_0a_1x1", 128), ("Conv2d_0b_7x1", 128), ("Conv2d_0c_1x7", 128), ("Conv2d_0d_7x1", 128), ("Conv2d_0e_1x7", 192)],
                  &[("Conv2d_0b_1x1", 192)]]),
    ("Mixed_6c", [&[("Conv2d_0a_1x1", 192)], &[("Conv2d_0a_1x1", 160), ("Conv2d_0b_1x7", 160), ("Conv2d_0c_7x1", 192)],
                  &[("Conv2d_0a_1x1", 160), ("Conv2d_0b_7x1", 160), ("Conv2d_0c_1x7", 160), ("Conv2d_0d_7x1", 160), ("Conv2d_0e_1x7", 192)],
                  &[("Conv2d_0b_1x1", 192)]]),
    ("Mixed_6d", [&[("Conv2d_0a_1x1", 192)], &[("Conv2d_0a_1x1", 160), ("Conv2d_0b_1x7", 160), ("Conv2d_0c_7x1", 192)],
                  &[("Conv2d_0a_1x1", 160), ("Conv2d_0b_7x1", 160), ("Conv2d_0c_1x7", 160), ("Conv2d_0d_7x1", 160), ("Conv2d_0e_1x7", 192)],
                  &[("Conv2d_0b_1x1", 192)]]),
    ("Mixed_6e", [&[("Conv2d_0a_1x1", 192)], &[("Conv2d_0a_1x1", 192), ("Conv2d_0b_1x7", 192), ("Conv2d_0c_7x1", 192)],
                  &[("Conv2d_0a_1x1", 192), ("Conv2d_0b_7x1", 192), ("Conv2d_0c_1x7", 192), ("Conv2d_0d_7x1", 192), ("Conv2d_0e_1x7", 192)],
                  &[("Conv2d_0b_1x1", 192)]]),
    ("Mixed_7a", [&[("Conv2d_0a_1x1", 192), ("Conv2d_1a_3x3", 320)],
                  &[("Conv2d_0a_1x1", 192), ("Conv2d_0b_1x7", 192), ("Conv2d_0c_7x1", 192), ("Conv2d_1a_3x3", 192)], &[], &[]]),
    ("Mixed_7b", [&[("Conv2d_0a_1x1", 320)], &[("Conv2d_0a_1x1", 384), ("Conv2d_0b_1x3", 384), ("Conv2d_0b_3x1", 384)],
                  &[("Conv2d_0a_1x1", 448), ("Conv2d_0b_3x3", 384), ("Conv2d_0c_1x3", 384), ("Conv2d_0d_3x1", 384)],
                  &[("Conv2d_0b_1x1", 192)]]),
    ("Mixed_7c", [&[("Conv2d_0a_1x1", 320)], &[("Conv2d_0a_1x1", 384), ("Conv2d_0b_1x3", 384), ("Conv2d_0c_3x1", 384)],
                  &[("Conv2d_0a_1x1", 448), ("Conv2d_0b_3x3", 384), ("Conv2d_0c_1x3", 384), ("Conv2d_0d_3x1", 384)],
                  &[("Conv2d_0b_1x1", 192)]]),
];

/// One conv+BN unit: TF scope (under `InceptionV3/`), Burn path prefix, nominal width.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvEntry {
    pub tf_scope: String,
    pub burn_path: String,
    pub nominal: usize,
}

/// Every conv+BN unit of the network up to and including `last_block` (a slim end point
/// name such as `Mixed_6e`; `Mixed_7c` for all 94), in execution order.
pub fn conv_table(last_block: &str) -> Vec<ConvEntry> {
    let mut out: Vec<ConvEntry> = STEM
        .iter()
        .map(|(s, n)| ConvEntry {
            tf_scope: format!("InceptionV3/{s}"),
            burn_path: s.to_lowercase(),
            nominal: *n,
        })
        .collect();
    if let Some(i) = STEM.iter().position(|(s, _)| *s == last_block) {
        out.truncate(i + 1);
        return out;
    }
    if last_block == "MaxPool_3a_3x3" {
        out.truncate(3);
        return out;
    }
    for (block, branches) in BLOCKS {
        for (b, convs) in branches.iter().enumerate() {
            for (i, (name, nominal)) in convs.iter().enumerate() {
                out.push(ConvEntry {
                    tf_scope: format!("InceptionV3/{block}/Branch_{b}/{name}"),
                    burn_path: format!("{}.branch_{b}.{i}", block.to_lowercase()),
                    nominal: *nominal,
                });
            }
        }
        if block == last_block {
            break;
        }
    }
    out
}

pub fn recognise(src: &Source) -> bool {
    src.get(ANCHOR).is_some()
}

/// slim's `depth(d) = max(int(d * multiplier), min_depth)`.
fn depth(d: usize, multiplier: f64, min_depth: usize) -> usize {
    ((d as f64 * multiplier) as usize).max(min_depth)
}

/// Finds `(depth_multiplier, min_depth)` reproducing every `(nominal, actual)` width.
/// Prefers round multipliers (1.0, 0.5, 0.75, 0.35, ...) and slim's default min_depth 16.
pub fn solve_width(pairs: &[(usize, usize)]) -> Option<(f64, usize)> {
    let amin = pairs.iter().map(|p| p.1).min()?;
    let fits = |m: f64, md: usize| pairs.iter().all(|&(d, a)| depth(d, m, md) == a);
    let mut min_depths = vec![16usize.min(amin), amin];
    min_depths.dedup();
    // Round candidates first, in increasing number of decimals.
    for denom in [1u32, 4, 10, 20, 100, 1000, 10000] {
        for k in 1..=(8 * denom) {
            let m = k as f64 / denom as f64;
            for &md in &min_depths {
                if fits(m, md) {
                    return Some((m, md));
                }
            }
        }
    }
    // Otherwise the lower end of the feasible interval of the unclamped widths.
    let lo = pairs
        .iter()
        .filter(|p| p.1 > amin)
        .map(|&(d, a)| a as f64 / d as f64)
        .fold(0.0, f64::max);
    min_depths
        .into_iter()
        .find(|&md| fits(lo, md))
        .map(|md| (lo, md))
}

pub fn convert(src: &Source) -> Result<Converted, ConvertError> {
    // How far the network goes: the last block whose first conv exists.
    let mut last_block = "Conv2d_1a_3x3".to_string();
    for stem in [
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
    ] {
        if src.get(&format!("InceptionV3/{stem}/weights")).is_some() {
            last_block = stem.into();
        }
    }
    if last_block == "Conv2d_4a_3x3" {
        last_block = "MaxPool_5a_3x3".into();
        for (block, branches) in BLOCKS {
            if src
                .get(&format!(
                    "InceptionV3/{block}/Branch_0/{}/weights",
                    branches[0][0].0
                ))
                .is_some()
            {
                last_block = block.into();
            } else {
                break;
            }
        }
    }
    let table = conv_table(if last_block == "MaxPool_5a_3x3" {
        "Conv2d_4a_3x3"
    } else {
        &last_block
    });

    let mut tensors = Vec::with_capacity(table.len() * 4 + 2);
    let mut widths = Vec::with_capacity(table.len());
    for e in &table {
        let wname = format!("{}/weights", e.tf_scope);
        let w = src.require(&wname)?;
        let (shape, data) = hwio_to_oihw(&wname, w)?;
        let cout = shape[0];
        widths.push((e.nominal, cout));
        tensors.push(OutTensor {
            name: format!("{}.conv.weight", e.burn_path),
            shape,
            data,
        });
        for (tf, burn) in [
            ("beta", "beta"),
            ("moving_mean", "moving_mean"),
            ("moving_variance", "moving_variance"),
        ] {
            let name = format!("{}/BatchNorm/{tf}", e.tf_scope);
            let data = src.vector(&name, cout)?.data.clone();
            if tf == "moving_variance" && data.iter().any(|v| !(*v >= 0.0)) {
                return Err(ConvertError::BadValues {
                    name,
                    problem: "a negative or NaN variance".into(),
                });
            }
            tensors.push(OutTensor {
                name: format!("{}.bn.{burn}", e.burn_path),
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
    if last_block == "Mixed_7c" {
        if let Some(w) = src.get(logits_w) {
            let (shape, data) = hwio_to_oihw(logits_w, w)?;
            let feat = depth(320, depth_multiplier, min_depth)
                + 4 * depth(384, depth_multiplier, min_depth)
                + depth(192, depth_multiplier, min_depth);
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
        "final_endpoint": last_block,
        "dropout_keep_prob": 0.8,
        "train_batch_norm": false,
        "batch_norm_momentum": 0.99,
        "batch_norm_epsilon": 0.001,
    });
    Ok(Converted {
        typed: Vec::new(),
        kind: "inception_v3".into(),
        config,
        tensors,
        assets: Vec::new(),
    })
}

/// The kind `inception_v3` in [`super::KINDS`]: [`recognise`] and [`convert`].
pub struct InceptionV3;

impl super::Kind for InceptionV3 {
    fn name(&self) -> &'static str {
        "inception_v3"
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
    fn table_has_all_94_convs_with_irregular_names() {
        let t = conv_table("Mixed_7c");
        assert_eq!(t.len(), 94);
        let find = |s: &str| {
            t.iter()
                .find(|e| e.tf_scope == s)
                .map(|e| e.burn_path.clone())
        };
        assert_eq!(
            find("InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5").as_deref(),
            Some("mixed_5c.branch_1.1")
        );
        assert_eq!(
            find("InceptionV3/Mixed_5c/Branch_1/Conv2d_0b_1x1").as_deref(),
            Some("mixed_5c.branch_1.0")
        );
        assert_eq!(
            find("InceptionV3/Mixed_6a/Branch_1/Conv2d_1a_1x1").as_deref(),
            Some("mixed_6a.branch_1.2")
        );
        assert_eq!(
            find("InceptionV3/Mixed_7b/Branch_1/Conv2d_0b_3x1").as_deref(),
            Some("mixed_7b.branch_1.2")
        );
        assert_eq!(
            find("InceptionV3/Mixed_7c/Branch_1/Conv2d_0c_3x1").as_deref(),
            Some("mixed_7c.branch_1.2")
        );
        assert_eq!(find("InceptionV3/Mixed_7b/Branch_1/Conv2d_0c_3x1"), None);
        assert_eq!(conv_table("Mixed_6e").len(), 70);
    }

    #[test]
    fn width_is_solved_from_shapes() {
        let pairs = |m: f64, md: usize| -> Vec<(usize, usize)> {
            conv_table("Mixed_7c")
                .iter()
                .map(|e| (e.nominal, depth(e.nominal, m, md)))
                .collect()
        };
        assert_eq!(solve_width(&pairs(1.0, 16)), Some((1.0, 16)));
        assert_eq!(solve_width(&pairs(0.5, 16)), Some((0.5, 16)));
        assert_eq!(solve_width(&pairs(0.05, 4)).map(|(m, _)| m), Some(0.05));
        let (m, md) = solve_width(&pairs(0.1, 8)).unwrap();
        assert!(pairs(m, md) == pairs(0.1, 8));
    }

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
