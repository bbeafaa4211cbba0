//! Magenta's style transfer network (`nza_model.transform`), shared by the
//! TF-Hub SavedModel (`alpha = 1`: 32/64/128 channels, contract convs with
//! batch norm) and the TF Lite file `style_transfer_*_384.tflite` (`alpha =
//! 0.25`: 8/16/32 channels, batch norms folded into conv biases).
//!
//! Reference: magenta/magenta `models/arbitrary_image_stylization/nza_model.py`
//! (`transform`, `style_normalization_activations`), `models/image_stylization/
//! ops.py` (`conditional_style_norm`). Layout:
//!
//! | field | TF scope | op |
//! |---|---|---|
//! | `contract.{0,1,2}` | `transformer/contract/conv{1,2,3}` | reflect pad, conv 9x9 s1 / 3x3 s2 / 3x3 s2, BN (or bias), ReLU |
//! | `residual.{0..4}.conv{1,2}` | `transformer/residual/residual{1..5}/conv{1,2}` | reflect pad 1, conv 3x3, style norm (+ReLU on conv1), `x + h` |
//! | `expand.{0,1,2}` | `transformer/expand/conv{1,2,3}/conv` | nearest x2 (x2, x2, x1), reflect pad, conv 3x3/3x3/9x9, style norm, ReLU/ReLU/sigmoid |
//!
//! Each style-normalized conv owns the two 1x1 convs that map the 100-d style
//! bottleneck to its `beta` (`style_params/<N>/Conv`) and `gamma`
//! (`style_params/<N>/Conv_1`), stored here as `Linear` layers `[100, C]`.
//! Conditional instance norm: `(x - mean) / sqrt(var + eps) * gamma + beta`
//! with per-sample, per-channel population moments over H and W.
//!
//! Parameter names (what `convert` writes):
//! `contract.{i}.conv.{weight,bias}`, `contract.{i}.bn.{gamma,beta,running_mean,running_var}`
//! (only with `contract_batch_norm`), `residual.{i}.conv{1,2}.conv.weight`,
//! `residual.{i}.conv{1,2}.{beta,gamma}.{weight,bias}`, `expand.{i}.conv.weight`,
//! `expand.{i}.{beta,gamma}.{weight,bias}`. Conv weights are OIHW, linear weights `[in, out]`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::{conv2d, interpolate};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions, PadMode};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Configuration of the transformer network (serialized in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Width multiplier: channels are 32α / 64α / 128α (1.0 for the SavedModel,
    /// 0.25 for the TF Lite file).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Contract convs are conv (no bias) + batch norm (SavedModel) instead of
    /// conv with bias (TF Lite, batch norm folded).
    #[serde(default)]
    pub contract_batch_norm: bool,
    /// Epsilon of the contract batch norms (TF-Slim default 0.001).
    #[serde(default = "default_bn_eps")]
    pub batch_norm_epsilon: f64,
    /// Epsilon of the conditional instance norms (Magenta: 1e-5).
    #[serde(default = "default_norm_eps")]
    pub style_norm_epsilon: f64,
    /// Length of the style bottleneck (100).
    #[serde(default = "default_bottleneck")]
    pub bottleneck: usize,
}

fn default_alpha() -> f64 {
    1.0
}
fn default_bn_eps() -> f64 {
    1e-3
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_bottleneck() -> usize {
    100
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self::saved_model()
    }
}

impl TransformerConfig {
    /// The TF-Hub SavedModel's transformer (alpha 1, batch norm in the contract convs).
    pub fn saved_model() -> Self {
        Self {
            alpha: 1.0,
            contract_batch_norm: true,
            batch_norm_epsilon: 1e-3,
            style_norm_epsilon: 1e-5,
            bottleneck: 100,
        }
    }

    /// Magenta's TF Lite transfer network (alpha 0.25, folded batch norms).
    pub fn tflite() -> Self {
        Self {
            alpha: 0.25,
            contract_batch_norm: false,
            ..Self::saved_model()
        }
    }

    fn width(&self, base: usize) -> usize {
        ((base as f64) * self.alpha).round().max(1.0) as usize
    }

    /// Channel widths `[contract1, contract2, contract3 (= residual)]`.
    pub fn widths(&self) -> [usize; 3] {
        [self.width(32), self.width(64), self.width(128)]
    }

    /// Output channels of each of the 13 style-normalized convs, in Magenta's
    /// order (`residual1/conv1 .. residual5/conv2, expand/conv1..3`), with their
    /// TF scope names `N` (`style_params/N/...`).
    pub fn style_norm_layers(&self) -> Vec<(String, usize)> {
        let [c1, c2, c3] = self.widths();
        let mut out = Vec::new();
        for r in 1..=5 {
            for c in 1..=2 {
                out.push((
                    format!("transformer/residual/residual{r}/conv{c}/StyleNorm"),
                    c3,
                ));
            }
        }
        out.push(("transformer/expand/conv1/conv/StyleNorm".into(), c2));
        out.push(("transformer/expand/conv2/conv/StyleNorm".into(), c1));
        out.push(("transformer/expand/conv3/conv/StyleNorm".into(), 3));
        out
    }

    /// A transformer with freshly initialised (random) parameters.
    pub fn init(&self, device: &Device) -> Transformer {
        let [c1, c2, c3] = self.widths();
        let bn = self.contract_batch_norm;
        let contract = vec![
            ContractConv::new(3, c1, 9, 1, bn, self.batch_norm_epsilon, device),
            ContractConv::new(c1, c2, 3, 2, bn, self.batch_norm_epsilon, device),
            ContractConv::new(c2, c3, 3, 2, bn, self.batch_norm_epsilon, device),
        ];
        let residual = (0..5)
            .map(|_| ResidualBlock {
                conv1: NormConv::new(c3, c3, 3, self.bottleneck, device),
                conv2: NormConv::new(c3, c3, 3, self.bottleneck, device),
            })
            .collect();
        let expand = vec![
            NormConv::new(c3, c2, 3, self.bottleneck, device),
            NormConv::new(c2, c1, 3, self.bottleneck, device),
            NormConv::new(c1, 3, 9, self.bottleneck, device),
        ];
        Transformer {
            contract,
            residual,
            expand,
            style_norm_epsilon: self.style_norm_epsilon,
        }
    }
}

/// Contract conv: reflect pad k/2, conv (stride 1 for the 9x9, 2 for the 3x3s), BN or bias, ReLU.
#[derive(Module, Debug)]
pub struct ContractConv {
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
    pub pad: usize,
}

impl ContractConv {
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        bn: bool,
        eps: f64,
        device: &Device,
    ) -> Self {
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Valid)
            .with_bias(!bn)
            .init(device);
        let bn = bn.then(|| BatchNormConfig::new(cout).with_epsilon(eps).init(device));
        Self {
            conv,
            bn,
            pad: k / 2,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let p = self.pad;
        let x = self.conv.forward(x.pad([(p, p), (p, p)], PadMode::Reflect));
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        relu(x)
    }
}

/// Reflect-padded stride-1 conv followed by conditional instance norm whose
/// `gamma`/`beta` are linear functions of the style bottleneck.
#[derive(Module, Debug)]
pub struct NormConv {
    /// Conv without bias (a bias would be cancelled by the norm).
    pub conv: Conv2d,
    /// `style_params/<N>/Conv`: bottleneck -> beta.
    pub beta: Linear,
    /// `style_params/<N>/Conv_1`: bottleneck -> gamma.
    pub gamma: Linear,
    pub pad: usize,
}

impl NormConv {
    fn new(cin: usize, cout: usize, k: usize, bottleneck: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [k, k])
                .with_padding(PaddingConfig2d::Valid)
                .with_bias(false)
                .init(device),
            beta: LinearConfig::new(bottleneck, cout).init(device),
            gamma: LinearConfig::new(bottleneck, cout).init(device),
            pad: k / 2,
        }
    }

    /// conv + conditional instance norm (no activation).
    ///
    /// # Shapes
    /// - `x`: `[B, C_in, H, W]`, `style`: `[B, 100]` -> `[B, C_out, H, W]`
    fn forward(&self, x: Tensor<4>, style: &Tensor<2>, eps: f64) -> Tensor<4> {
        let p = self.pad;
        let x = x.pad([(p, p), (p, p)], PadMode::Reflect);
        let [cout, _, kh, kw] = self.conv.weight.dims();
        let x = if kh * kw >= 25 && cout <= 4 {
            conv_by_shifted_sums(x, self.conv.weight.val())
        } else {
            self.conv.forward(x)
        }; // [B, C, H, W]
        let [b, c, _, _] = x.dims();
        let mean = x.clone().mean_dim(2).mean_dim(3); // [B, C, 1, 1]
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(2).mean_dim(3); // [B, C, 1, 1]
        let normed = centered * (var + eps).sqrt().recip();
        let gamma = self.gamma.forward(style.clone()).reshape([b, c, 1, 1]);
        let beta = self.beta.forward(style.clone()).reshape([b, c, 1, 1]);
        normed * gamma + beta
    }
}

/// A VALID stride-1 convolution with a large kernel and very few output channels (the
/// network's last layer: 9x9, 32 -> 3), computed as one 1x1 convolution to `kh*kw*c_out`
/// channels followed by `kh*kw` shifted sums. Same result as `conv2d`, but a matrix
/// product with a wide right-hand side instead of an im2col matrix `kh*kw*c_in` wide
/// feeding only `c_out` columns, which is memory-bound on the CPU backends.
///
/// # Shapes
/// - `x`: `[B, C_in, H + kh - 1, W + kw - 1]`, `weight`: `[C_out, C_in, kh, kw]` -> `[B, C_out, H, W]`
fn conv_by_shifted_sums(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [cout, cin, kh, kw] = weight.dims();
    let [b, _, hp, wp] = x.dims();
    let (h, w) = (hp + 1 - kh, wp + 1 - kw);
    // Row (i*kw + j)*cout + c of the 1x1 kernel is weight[c, :, i, j].
    let w1 = weight
        .permute([2, 3, 0, 1])
        .reshape([kh * kw * cout, cin, 1, 1]);
    let z = conv2d(x, w1, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
    let mut out: Option<Tensor<4>> = None;
    for i in 0..kh {
        for j in 0..kw {
            let c0 = (i * kw + j) * cout;
            let part = z.clone().slice([0..b, c0..c0 + cout, i..i + h, j..j + w]);
            out = Some(match out {
                None => part,
                Some(acc) => acc + part,
            });
        }
    }
    out.expect("kernel has at least one tap")
}

/// `residual_block`: `x + norm(conv2(relu(norm(conv1(x)))))`.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub conv1: NormConv,
    pub conv2: NormConv,
}

/// The style transfer network. See the module docs for the layout.
#[derive(Module, Debug)]
pub struct Transformer {
    pub contract: Vec<ContractConv>,
    pub residual: Vec<ResidualBlock>,
    pub expand: Vec<NormConv>,
    pub style_norm_epsilon: f64,
}

impl Transformer {
    /// Stylizes `content` with the style `bottleneck`.
    ///
    /// # Shapes
    /// - `content`: `[B, H, W, 3]`, values in [0, 1] (H, W >= 5)
    /// - `bottleneck`: `[B, 100]` (or `[1, 100]`, broadcast to the batch)
    /// - returns `[B, 4*ceil(H/4), 4*ceil(W/4), 3]` in (0, 1)
    pub fn transfer(&self, content: Tensor<4>, bottleneck: Tensor<2>) -> Tensor<4> {
        let [b, _, _, _] = content.dims();
        let [bs, d] = bottleneck.dims();
        let style = if bs == 1 && b > 1 {
            bottleneck.expand([b, d])
        } else {
            bottleneck
        };
        let eps = self.style_norm_epsilon;
        let mut x = content.permute([0, 3, 1, 2]); // [B, 3, H, W]
        for layer in &self.contract {
            x = layer.forward(x); // [B, 32α|64α|128α, H/1|2|4, W/1|2|4]
        }
        for block in &self.residual {
            let h = relu(block.conv1.forward(x.clone(), &style, eps));
            let h = block.conv2.forward(h, &style, eps);
            x = x + h; // [B, 128α, H/4, W/4]
        }
        let n = self.expand.len();
        for (i, layer) in self.expand.iter().enumerate() {
            if i + 1 < n {
                let [_, _, h, w] = x.dims();
                x = interpolate(
                    x,
                    InterpolateOptions::new(InterpolateMode::Nearest)
                        .with_output_size([2 * h, 2 * w]),
                );
                x = relu(layer.forward(x, &style, eps)); // [B, 64α|32α, 2H, 2W]
            } else {
                x = sigmoid(layer.forward(x, &style, eps)); // [B, 3, H, W]
            }
        }
        x.permute([0, 2, 3, 1]) // [B, H, W, 3]
    }

    /// Loads a transformer from a folder written by `convert` with kind
    /// `style_transfer` (`config.json` `config` = [`TransformerConfig`]).
    pub fn load(
        dir: impl AsRef<std::path::Path>,
        device: &Device,
    ) -> Result<Self, crate::FolderError> {
        let folder = crate::weights::ModelFolder::open(dir, super::KIND_STYLE_TRANSFER)?;
        let config: TransformerConfig = folder.config()?;
        crate::weights::load_into(&folder, config.init(device), "model.safetensors")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shape_rounds_up_to_multiple_of_four() {
        let device = Device::flex();
        let t = TransformerConfig::tflite().init(&device);
        let content = Tensor::<4>::zeros([1, 37, 42, 3], &device);
        let style = Tensor::<2>::zeros([1, 100], &device);
        let y = t.transfer(content, style);
        assert_eq!(y.dims(), [1, 40, 44, 3]);
    }

    #[test]
    fn widths_follow_alpha() {
        assert_eq!(TransformerConfig::tflite().widths(), [8, 16, 32]);
        assert_eq!(TransformerConfig::saved_model().widths(), [32, 64, 128]);
        assert_eq!(
            TransformerConfig::saved_model().style_norm_layers().len(),
            13
        );
    }
}
