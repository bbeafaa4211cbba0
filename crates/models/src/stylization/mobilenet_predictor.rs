//! Magenta's distilled MobileNetV2 style predictor (the TF Lite file
//! `style_predict_*_256.tflite`).
//!
//! Graph (read from the TF Lite file; scopes `MobilenetV2/...`): the standard
//! MobileNetV2 (Sandler et al. 2018, TF-Slim `mobilenet_v2`, depth multiplier
//! 1) up to `Conv_1` (1280 channels), every conv with its batch norm folded
//! into a bias and ReLU6 after the expand / depthwise / stem / `Conv_1` convs
//! (linear after the project convs), SAME padding; then `bottleneck/Mean`
//! (spatial mean) and `mobilenet_conv/Conv` (1x1 conv 1280 -> 100, with bias,
//! no activation) = the style bottleneck.
//!
//! Parameter names: `stem.{weight,bias}`, `blocks.{i}.expand.{weight,bias}`
//! (blocks with an expansion), `blocks.{i}.depthwise.{weight,bias}`,
//! `blocks.{i}.project.{weight,bias}`, `head.{weight,bias}` (`Conv_1`),
//! `bottleneck.{weight,bias}` (a `Linear` `[1280, 100]`). Conv weights OIHW
//! (depthwise `[C, 1, 3, 3]`).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// One inverted residual block (`expanded_conv[_i]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockConfig {
    pub input: usize,
    /// Channels after the 1x1 expand conv (`None`: no expand conv, the first block).
    pub expand: Option<usize>,
    pub output: usize,
    /// Stride of the 3x3 depthwise conv.
    pub stride: usize,
}

impl BlockConfig {
    /// A block adds its input when it keeps the shape.
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.input == self.output
    }
}

/// Configuration of the MobileNetV2 style predictor (serialized in `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileNetPredictorConfig {
    /// Output channels of the 3x3 stride-2 stem conv (`MobilenetV2/Conv`).
    pub stem: usize,
    pub blocks: Vec<BlockConfig>,
    /// Output channels of `MobilenetV2/Conv_1` (1x1).
    pub head: usize,
    /// Length of the style bottleneck (100).
    pub bottleneck: usize,
}

impl Default for MobileNetPredictorConfig {
    /// The layout of Magenta's `style_predict_*_256.tflite` (MobileNetV2, depth multiplier 1).
    fn default() -> Self {
        // (expansion t, output c, repeats n, first stride s), MobileNetV2 table 2.
        let table = [
            (1, 16, 1, 1),
            (6, 24, 2, 2),
            (6, 32, 3, 2),
            (6, 64, 4, 2),
            (6, 96, 3, 1),
            (6, 160, 3, 2),
            (6, 320, 1, 1),
        ];
        let mut blocks = Vec::new();
        let mut input = 32;
        for (t, c, n, s) in table {
            for i in 0..n {
                blocks.push(BlockConfig {
                    input,
                    expand: (t != 1).then_some(input * t),
                    output: c,
                    stride: if i == 0 { s } else { 1 },
                });
                input = c;
            }
        }
        Self {
            stem: 32,
            blocks,
            head: 1280,
            bottleneck: 100,
        }
    }
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(true)
        .init(device)
}

impl MobileNetPredictorConfig {
    /// A predictor with freshly initialised (random) parameters.
    pub fn init(&self, device: &Device) -> MobileNetStylePredictor {
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let mid = b.expand.unwrap_or(b.input);
                InvertedResidual {
                    expand: b.expand.map(|e| conv(b.input, e, 1, 1, 1, device)),
                    depthwise: conv(mid, mid, 3, b.stride, mid, device),
                    project: conv(mid, b.output, 1, 1, 1, device),
                    residual: b.residual(),
                }
            })
            .collect();
        let last = self.blocks.last().map(|b| b.output).unwrap_or(self.stem);
        MobileNetStylePredictor {
            stem: conv(3, self.stem, 3, 2, 1, device),
            blocks,
            head: conv(last, self.head, 1, 1, 1, device),
            bottleneck: LinearConfig::new(self.head, self.bottleneck).init(device),
        }
    }
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// `expanded_conv`: [1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1 project (linear) [+ input].
#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub expand: Option<Conv2d>,
    pub depthwise: Conv2d,
    pub project: Conv2d,
    pub residual: bool,
}

impl InvertedResidual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = match &self.expand {
            Some(e) => relu6(e.forward(x.clone())),
            None => x.clone(),
        };
        let h = relu6(self.depthwise.forward(h));
        let h = self.project.forward(h);
        if self.residual {
            h + x
        } else {
            h
        }
    }
}

/// The MobileNetV2 style predictor. See the module docs.
#[derive(Module, Debug)]
pub struct MobileNetStylePredictor {
    pub stem: Conv2d,
    pub blocks: Vec<InvertedResidual>,
    pub head: Conv2d,
    pub bottleneck: Linear,
}

impl MobileNetStylePredictor {
    /// Style bottleneck of a batch of style images.
    ///
    /// # Shapes
    /// - `style`: `[B, H, W, 3]` in [0, 1] (the TF Lite file fixes 256x256; any size >= 32 works here)
    /// - returns `[B, 100]`
    pub fn predict_style(&self, style: Tensor<4>) -> Tensor<2> {
        let x = style.permute([0, 3, 1, 2]); // [B, 3, H, W]
        let mut x = relu6(self.stem.forward(x)); // [B, 32, H/2, W/2]
        for block in &self.blocks {
            x = block.forward(x); // ... [B, 320, H/32, W/32]
        }
        let x = relu6(self.head.forward(x)); // [B, 1280, H/32, W/32]
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(2).mean_dim(3).reshape([b, c]); // [B, 1280]
        self.bottleneck.forward(pooled) // [B, 100]
    }

    /// Loads from a folder written by `convert` with kind `style_predictor`.
    pub fn load(
        dir: impl AsRef<std::path::Path>,
        device: &Device,
    ) -> Result<Self, crate::FolderError> {
        let folder = crate::weights::ModelFolder::open(dir, super::KIND_STYLE_PREDICTOR)?;
        let config: MobileNetPredictorConfig = folder.config()?;
        crate::weights::load_into(&folder, config.init(device), "model.safetensors")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_mobilenet_v2() {
        let c = MobileNetPredictorConfig::default();
        assert_eq!(c.blocks.len(), 17);
        assert_eq!(c.blocks.iter().filter(|b| b.residual()).count(), 10);
        assert_eq!(c.blocks[16].output, 320);
        assert_eq!(c.blocks[13].expand, Some(576));
    }

    #[test]
    fn predicts_a_bottleneck_per_image() {
        let device = Device::flex();
        let p = MobileNetPredictorConfig::default().init(&device);
        let y = p.predict_style(Tensor::<4>::zeros([2, 64, 64, 3], &device));
        assert_eq!(y.dims(), [2, 100]);
    }
}
