//! Magenta arbitrary image stylization (Ghiasi et al. 2017, "Exploring the
//! structure of a real-time, arbitrary neural artistic stylization network";
//! magenta/magenta `models/arbitrary_image_stylization`).
//!
//! Two halves: a **style predictor** maps a style image to a 100-d style
//! bottleneck, a **transformer** ([`transformer::Transformer`]) renders a
//! content image with that bottleneck. The TF-Hub SavedModel uses an
//! Inception-v3 predictor ([`inception_predictor`]) with a full-width
//! transformer; Magenta's TF Lite files use a MobileNetV2 predictor
//! ([`mobilenet_predictor`]) with a quarter-width transformer. Any predictor
//! can be combined with any transformer ([`Stylization::from_parts`]).
//!
//! Converted folders (`config.json` `kind`):
//! - `stylization`: both halves (SavedModel);
//! - `style_predictor`: a predictor alone (MobileNet, from TF Lite);
//! - `style_transfer`: a transformer alone (from TF Lite).
//!
//! All images are `[B, H, W, 3]` float tensors in [0, 1] (NHWC, like TF).

pub mod inception_predictor;
pub mod mobilenet_predictor;
pub mod transformer;

use burn::tensor::{Device, Tensor};
use std::path::Path;

pub use mobilenet_predictor::{MobileNetPredictorConfig, MobileNetStylePredictor};
pub use transformer::{Transformer, TransformerConfig};

use crate::weights::FolderError;

/// `config.json` kind of a folder holding both halves (the SavedModel).
pub const KIND_STYLIZATION: &str = "stylization";
/// `config.json` kind of a folder holding a style predictor alone.
pub const KIND_STYLE_PREDICTOR: &str = "style_predictor";
/// `config.json` kind of a folder holding a style transfer network alone.
pub const KIND_STYLE_TRANSFER: &str = "style_transfer";

/// A style prediction network: style image -> bottleneck `[B, 100]`.
#[derive(Debug)]
pub enum StylePredictor {
    /// Magenta's distilled MobileNetV2 predictor (TF Lite).
    MobileNet(MobileNetStylePredictor),
    /// The TF-Hub SavedModel's Inception-v3 predictor.
    Inception(inception_predictor::InceptionStylePredictor),
}

impl StylePredictor {
    /// Style bottleneck of a batch of style images.
    ///
    /// # Shapes
    /// - `style`: `[B, H, W, 3]` in [0, 1] (256x256 is what the networks were trained with)
    /// - returns `[B, 100]`
    pub fn predict_style(&self, style: Tensor<4>) -> Tensor<2> {
        match self {
            StylePredictor::MobileNet(p) => p.predict_style(style),
            StylePredictor::Inception(p) => p.predict_style(style),
        }
    }

    /// Loads a predictor from a converted folder of kind `style_predictor`, or the
    /// predictor half of a `stylization` folder (the SavedModel).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self, FolderError> {
        let dir = dir.as_ref();
        let kind = model_folder::read_kind(dir)?;
        match kind.as_str() {
            KIND_STYLE_PREDICTOR => Ok(StylePredictor::MobileNet(MobileNetStylePredictor::load(
                dir, device,
            )?)),
            KIND_STYLIZATION => Ok(StylePredictor::Inception(
                inception_predictor::load_saved_model_halves(dir, device)?.0,
            )),
            other => Err(FolderError::WrongKind {
                path: dir.to_path_buf(),
                found: other.to_string(),
                expected: KIND_STYLE_PREDICTOR.into(),
            }),
        }
    }
}

/// A complete stylization model: a style predictor plus a transformer.
#[derive(Debug)]
pub struct Stylization {
    pub predictor: StylePredictor,
    pub transformer: Transformer,
}

impl Stylization {
    /// Combines any predictor with any transformer (both must use the same
    /// bottleneck length, 100 for every Magenta model).
    pub fn from_parts(predictor: StylePredictor, transformer: Transformer) -> Self {
        Self {
            predictor,
            transformer,
        }
    }

    /// Loads a converted SavedModel folder (kind `stylization`: both halves).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self, FolderError> {
        let (predictor, transformer) = inception_predictor::load_saved_model_halves(dir, device)?;
        Ok(Self::from_parts(
            StylePredictor::Inception(predictor),
            transformer,
        ))
    }

    /// Loads from two converted folders (`style_predictor` + `style_transfer`).
    pub fn load_parts(
        predictor_dir: impl AsRef<Path>,
        transfer_dir: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, FolderError> {
        let predictor = StylePredictor::load(predictor_dir, device)?;
        let transformer = Transformer::load(transfer_dir, device)?;
        Ok(Self::from_parts(predictor, transformer))
    }

    /// Style bottleneck `[B, 100]` of style images `[B, H, W, 3]` in [0, 1].
    pub fn predict_style(&self, style: Tensor<4>) -> Tensor<2> {
        self.predictor.predict_style(style)
    }

    /// Renders `content` `[B, H, W, 3]` with `bottleneck` `[B, 100]` (or `[1, 100]`).
    /// Returns `[B, 4*ceil(H/4), 4*ceil(W/4), 3]` in (0, 1).
    pub fn transfer(&self, content: Tensor<4>, bottleneck: Tensor<2>) -> Tensor<4> {
        self.transformer.transfer(content, bottleneck)
    }

    /// `transfer(content, predict_style(style))`.
    pub fn stylize(&self, content: Tensor<4>, style: Tensor<4>) -> Tensor<4> {
        let bottleneck = self.predict_style(style);
        self.transfer(content, bottleneck)
    }

    /// Stylizes with a weaker style: the bottleneck is
    /// `strength * style + (1 - strength) * content_own`, where `content_own`
    /// is the bottleneck predicted from the content image itself (the TF Lite
    /// Magenta example's "style blending"). `content_for_style` is the content
    /// image prepared like a style image (e.g. 256x256). `strength` 1 = full style.
    pub fn stylize_blended(
        &self,
        content: Tensor<4>,
        content_for_style: Tensor<4>,
        style: Tensor<4>,
        strength: f32,
    ) -> Tensor<4> {
        let style_b = self.predict_style(style);
        let own = self.predict_style(content_for_style);
        self.transfer(content, blend_bottlenecks(style_b, own, strength))
    }
}

/// `strength * style + (1 - strength) * content_own`, both `[B, 100]` (or one of them `[1, 100]`).
pub fn blend_bottlenecks(style: Tensor<2>, content_own: Tensor<2>, strength: f32) -> Tensor<2> {
    let [bs, d] = style.dims();
    let [bc, _] = content_own.dims();
    let b = bs.max(bc);
    let style = if bs < b { style.expand([b, d]) } else { style };
    let own = if bc < b {
        content_own.expand([b, d])
    } else {
        content_own
    };
    style * strength + own * (1.0 - strength)
}
