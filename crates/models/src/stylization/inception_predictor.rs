//! The style prediction network of the TF-Hub SavedModel
//! `google/magenta/arbitrary-image-stylization-v1-256` (magenta/magenta
//! `models/arbitrary_image_stylization/arbitrary_image_stylization_build_model.py`,
//! `style_prediction`).
//!
//! Dataflow:
//! 1. TF-Slim Inception-v3 base ([`crate::inception_v3`]) up to `Mixed_6e`, with
//!    Magenta's arg scope: **ReLU6** after every batch norm (eps 0.001, no gamma). The
//!    style image is consumed as given, in [0, 1] (no `x * 2 - 1` as in the TF Hub
//!    Inception classifiers).
//! 2. `bottleneck_feat = reduce_mean(Mixed_6e, axis=[1, 2])` (spatial mean).
//! 3. `slim.conv2d(bottleneck_feat, 100, [1, 1], activation_fn=None, normalizer_fn=None)`:
//!    a 1x1 conv with bias and no activation on a 1x1 map, i.e. a linear layer
//!    (TF variables `Conv/weights [1, 1, 768, 100]`, `Conv/biases [100]`), stored here as
//!    a `Linear` `[768, 100]`.
//!
//! The per-layer `beta`/`gamma` 1x1 convs (`style_params/*`) that Magenta builds inside
//! `style_prediction` belong to the transformer here
//! ([`super::transformer::NormConv`]), so the predictor's output is the 100-d bottleneck.
//!
//! Parameter names: `backbone.<InceptionV3 names>` (e.g. `backbone.conv2d_1a_3x3.conv.weight`,
//! `backbone.mixed_6e.branch_2.4.bn.moving_variance`), `bottleneck.{weight,bias}`.
//! In a converted `stylization` folder (the SavedModel, both halves in one
//! `model.safetensors`) every name is prefixed by `predictor.`, and the transformer's
//! by `transformer.`; `config.json` `config` = [`SavedModelStylizationConfig`].

use crate::inception_v3::{Activation, EndPoint, InceptionError, InceptionV3, InceptionV3Config};
use crate::weights::{FolderError, ModelFolder};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

use super::transformer::{Transformer, TransformerConfig};

/// Configuration of [`InceptionStylePredictor`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InceptionPredictorConfig {
    /// The Inception-v3 backbone: no head, ReLU6, final end point `Mixed_6e` for Magenta.
    pub backbone: InceptionV3Config,
    /// Length of the style bottleneck (Magenta `style_prediction_bottleneck`, 100).
    pub bottleneck: usize,
}

impl Default for InceptionPredictorConfig {
    /// The published model: full width, `Mixed_6e`, ReLU6, bottleneck 100.
    fn default() -> Self {
        Self {
            backbone: InceptionV3Config::magenta_style_backbone(),
            bottleneck: 100,
        }
    }
}

impl InceptionPredictorConfig {
    /// Channels of the backbone's last block (768 for `Mixed_6e` at full width).
    pub fn feature_dim(&self) -> usize {
        self.backbone.feature_dim()
    }

    /// Checks the configuration: the backbone must be a headless feature extractor.
    pub fn validate(&self) -> Result<(), InceptionError> {
        self.backbone.validate()?;
        if self.backbone.has_logits() {
            return Err(InceptionError::Config(
                "the style predictor's backbone must have no logits (num_classes null)".into(),
            ));
        }
        if self.bottleneck == 0 {
            return Err(InceptionError::Config("bottleneck must be > 0".into()));
        }
        Ok(())
    }

    /// A predictor with freshly initialised parameters.
    pub fn init(&self, device: &Device) -> Result<InceptionStylePredictor, InceptionError> {
        self.validate()?;
        Ok(InceptionStylePredictor {
            backbone: self.backbone.init(device)?,
            bottleneck: LinearConfig::new(self.feature_dim(), self.bottleneck).init(device),
        })
    }
}

/// Magenta's Inception-v3 style predictor: style image `[B, H, W, 3]` in [0, 1] -> `[B, 100]`.
#[derive(Module, Debug)]
pub struct InceptionStylePredictor {
    /// `InceptionV3/*` up to `Mixed_6e` (ReLU6).
    pub backbone: InceptionV3,
    /// `Conv` (1x1 conv with bias) as a linear layer `[768, 100]`.
    pub bottleneck: Linear,
}

impl InceptionStylePredictor {
    /// Style bottleneck of a batch of style images.
    ///
    /// # Shapes
    /// - `style`: `[B, H, W, 3]`, values in [0, 1], H and W at least
    ///   [`InceptionStylePredictor::min_input_size`] (43 for `Mixed_6e`)
    /// - returns `[B, 100]`
    ///
    /// Panics only through Burn on an input below the minimum size; use
    /// [`InceptionStylePredictor::try_predict_style`] for a checked call.
    pub fn predict_style(&self, style: Tensor<4>) -> Tensor<2> {
        let x = style.permute([0, 3, 1, 2]); // [B, 3, H, W], values as given (no x*2-1)
        let feat = self.backbone.forward_base(x, &[]).last; // [B, 768, h, w]
        let pooled = feat.mean_dim(2).mean_dim(3); // [B, 768, 1, 1]
        let [b, c, _, _] = pooled.dims();
        self.bottleneck.forward(pooled.reshape([b, c])) // [B, 100]
    }

    /// [`InceptionStylePredictor::predict_style`] after checking the input's shape.
    pub fn try_predict_style(&self, style: Tensor<4>) -> Result<Tensor<2>, InceptionError> {
        let [b, h, w, c] = style.dims();
        if c != 3 || b == 0 {
            return Err(InceptionError::InputShape(vec![b, h, w, c]));
        }
        let min = self.min_input_size();
        if h < min || w < min {
            return Err(InceptionError::InputTooSmall {
                height: h,
                width: w,
                min,
                end_point: self.backbone.config().final_endpoint,
            });
        }
        Ok(self.predict_style(style))
    }

    /// Smallest style image side the backbone accepts.
    pub fn min_input_size(&self) -> usize {
        self.backbone.config().min_input_size()
    }

    /// Folds the backbone's batch norms into its convolutions (inference only).
    pub fn fuse_for_inference(self) -> Self {
        Self {
            backbone: self.backbone.fuse_for_inference(),
            bottleneck: self.bottleneck,
        }
    }
}

/// `config.json` `config` of a converted SavedModel (`kind` `stylization`): both halves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedModelStylizationConfig {
    pub predictor: InceptionPredictorConfig,
    pub transformer: TransformerConfig,
}

impl Default for SavedModelStylizationConfig {
    /// The published TF-Hub model.
    fn default() -> Self {
        Self {
            predictor: InceptionPredictorConfig::default(),
            transformer: TransformerConfig::saved_model(),
        }
    }
}

/// Both halves as one module, so one strict load checks every parameter of the file
/// (`predictor.*`, `transformer.*`).
#[derive(Module, Debug)]
struct BothHalves {
    predictor: InceptionStylePredictor,
    transformer: Transformer,
}

/// Loads a converted SavedModel folder (`config.json` kind `stylization`,
/// `model.safetensors` with `predictor.*` and `transformer.*`).
pub fn load_saved_model_halves(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<(InceptionStylePredictor, Transformer), FolderError> {
    let folder = ModelFolder::open(dir, super::KIND_STYLIZATION)?;
    let cfg: SavedModelStylizationConfig = folder.config()?;
    let config_err = |msg: String| FolderError::Config {
        path: folder.file("config.json"),
        msg,
    };
    let predictor = cfg
        .predictor
        .init(device)
        .map_err(|e| config_err(e.to_string()))?;
    if cfg.predictor.bottleneck != cfg.transformer.bottleneck {
        return Err(config_err(format!(
            "predictor bottleneck {} differs from the transformer's {}",
            cfg.predictor.bottleneck, cfg.transformer.bottleneck
        )));
    }
    let both = BothHalves {
        predictor,
        transformer: cfg.transformer.init(device),
    };
    let both = crate::weights::load_into(&folder, both, "model.safetensors")?;
    Ok((both.predictor, both.transformer))
}

/// The backbone configuration Magenta uses, at a given slim width
/// (`depth_multiplier`, `min_depth`; 1.0 / 16 for the published model).
pub fn magenta_backbone(depth_multiplier: f64, min_depth: usize) -> InceptionV3Config {
    InceptionV3Config {
        num_classes: None,
        depth_multiplier,
        min_depth,
        activation: Activation::Relu6,
        final_endpoint: EndPoint::Mixed_6e,
        ..InceptionV3Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_published_layout() {
        let cfg = InceptionPredictorConfig::default();
        assert_eq!(cfg.feature_dim(), 768);
        assert_eq!(cfg.backbone.activation, Activation::Relu6);
        assert_eq!(cfg.backbone.final_endpoint, EndPoint::Mixed_6e);
        assert!(!cfg.backbone.has_logits());
        assert_eq!(cfg.bottleneck, 100);
    }

    #[test]
    fn bottleneck_shape_and_no_input_rescale() {
        let device = Device::flex();
        let cfg = InceptionPredictorConfig {
            backbone: magenta_backbone(0.0625, 4),
            bottleneck: 7,
        };
        let p = cfg.init(&device).unwrap();
        assert_eq!(p.min_input_size(), 43);
        let style = Tensor::<4>::ones([2, 50, 47, 3], &device).mul_scalar(0.5);
        let y = p.try_predict_style(style).unwrap();
        assert_eq!(y.dims(), [2, 7]);
        let small = Tensor::<4>::ones([1, 42, 60, 3], &device);
        assert!(matches!(
            p.try_predict_style(small),
            Err(InceptionError::InputTooSmall { .. })
        ));
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = SavedModelStylizationConfig::default();
        let json = serde_json::to_value(&cfg).unwrap();
        let back: SavedModelStylizationConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, cfg);
    }
}
