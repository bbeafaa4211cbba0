//! Inception-v3 exactly as TF-Slim builds it (`tf_slim.nets.inception_v3`), the
//! network behind TF Hub's `google/imagenet/inception_v3/{classification,feature_vector}`.
//!
//! Paper: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision"
//! (<https://arxiv.org/abs/1512.00567>). Reference code: `tensorflow/models`
//! `research/slim/nets/inception_v3.py` (identical to `tf_slim` 1.1.0).
//!
//! Faithful to slim in every detail that changes numbers:
//! - every conv is `conv (no bias) -> BatchNorm (beta only, no gamma, eps 1e-3) -> ReLU`
//!   (ReLU6 selectable, as Magenta's style predictor uses);
//! - padding VALID in the stem except `Conv2d_2b_3x3`, SAME (stride 1) inside the
//!   Mixed blocks, VALID for the stride-2 convs of Mixed_6a/7a;
//! - the 3x3 average pools of the blocks do not count padded cells (TF `avg_pool` SAME);
//! - the width multiplier `depth(d) = max(int(d * depth_multiplier), min_depth)`;
//! - head: `AvgPool_1a` with kernel `min(H, 8) x min(W, 8)`, stride 2, VALID; dropout
//!   (training only); 1x1 conv with bias to `num_classes`; spatial squeeze.
//!
//! Input follows the TF Hub image convention: `[batch, height, width, 3]` RGB in
//! `[0, 1]`, rescaled inside to `[-1, 1]` (the hub modules' `x * 2 - 1`). Any size
//! from 75x75 up (when building up to `Mixed_7c`).
//!
//! Deviations, documented: when the input is so large that slim's head `AvgPool`
//! leaves more than 1x1 (TF's `SpatialSqueeze` then fails), the remaining positions
//! are averaged. The feature-vector model (`num_classes: None`) global-averages
//! `Mixed_7c` like the hub `feature_vector` modules.
//!
//! The architecture is one table, [`model_folder::inception_v3`] (re-exported here as
//! [`table`]): every layer with its slim scope, width, kernel, stride and padding, and its
//! parameter path (`InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights` is
//! `mixed_5c.branch_1.1.conv.weight`). The network is built from it ([`InceptionV3::layers`]
//! walks it), and the CPU compiler and both converter kinds read the same table.
//!
//! Modules: [`config`] (the `config.json` object), [`layers`] (slim's batch norm and
//! `conv2d`), [`mixed`] (the Mixed blocks); the network is here.

pub mod config;
pub mod layers;
pub mod mixed;

pub use config::{Activation, InceptionV3Config};
pub use layers::{BasicConv, Layout, SlimBatchNorm};
pub use mixed::Mixed;
pub use model_folder::inception_v3 as table;
pub use table::{BlockKind, EndPoint, KIND};

use crate::weights::{FolderError, ModelFolder};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Tensor};
use std::path::Path;
use table::StemLayer;

/// Smallest input side the full network (up to `Mixed_7c`) accepts.
pub const MIN_INPUT_SIZE: usize = 75;

/// Errors of building, loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum InceptionError {
    #[error("invalid Inception-v3 config: {0}")]
    Config(String),
    #[error(transparent)]
    Weights(#[from] FolderError),
    #[error("{path}: config mismatch: the folder holds {found}, expected {expected}")]
    Mismatch {
        path: std::path::PathBuf,
        found: String,
        expected: String,
    },
    #[error("input must be [batch, height, width, 3], got {0:?}")]
    InputShape(Vec<usize>),
    #[error("input {height}x{width} is too small: Inception-v3 up to {end_point} needs at least {min}x{min}")]
    InputTooSmall {
        height: usize,
        width: usize,
        min: usize,
        end_point: EndPoint,
    },
}

/// A built layer of [`InceptionV3`] (see [`InceptionV3::layer`]).
#[derive(Debug, Clone, Copy)]
pub enum Layer<'a> {
    Conv(&'a BasicConv),
    /// 3x3 max pool, stride 2, VALID.
    MaxPool,
    Mixed(&'a Mixed),
}

/// A field of [`InceptionV3`] by end point.
enum FieldRef<'a> {
    First(&'a BasicConv),
    Conv(&'a Option<BasicConv>),
    Mixed(&'a Option<Mixed>),
    MaxPool,
}

/// A field of [`InceptionV3`] by end point, to build or fold it.
enum Slot<'a> {
    First(&'a mut BasicConv),
    Conv(&'a mut Option<BasicConv>),
    Mixed(&'a mut Option<Mixed>),
    MaxPool,
}

/// The one map from end points to the fields of [`InceptionV3`] (Burn modules need named
/// fields; their names are the parameter paths of the folder). `ref` gives a
/// [`FieldRef`], `mut` a [`Slot`].
macro_rules! end_point_field {
    ($model:expr, $e:expr, ref) => {
        end_point_field!(@map $model, $e, FieldRef, &)
    };
    ($model:expr, $e:expr, mut) => {
        end_point_field!(@map $model, $e, Slot, &mut)
    };
    (@map $model:expr, $e:expr, $ty:ident, $($r:tt)+) => {
        match $e {
            EndPoint::Conv2d_1a_3x3 => $ty::First($($r)+ $model.conv2d_1a_3x3),
            EndPoint::Conv2d_2a_3x3 => $ty::Conv($($r)+ $model.conv2d_2a_3x3),
            EndPoint::Conv2d_2b_3x3 => $ty::Conv($($r)+ $model.conv2d_2b_3x3),
            EndPoint::MaxPool_3a_3x3 | EndPoint::MaxPool_5a_3x3 => $ty::MaxPool,
            EndPoint::Conv2d_3b_1x1 => $ty::Conv($($r)+ $model.conv2d_3b_1x1),
            EndPoint::Conv2d_4a_3x3 => $ty::Conv($($r)+ $model.conv2d_4a_3x3),
            EndPoint::Mixed_5b => $ty::Mixed($($r)+ $model.mixed_5b),
            EndPoint::Mixed_5c => $ty::Mixed($($r)+ $model.mixed_5c),
            EndPoint::Mixed_5d => $ty::Mixed($($r)+ $model.mixed_5d),
            EndPoint::Mixed_6a => $ty::Mixed($($r)+ $model.mixed_6a),
            EndPoint::Mixed_6b => $ty::Mixed($($r)+ $model.mixed_6b),
            EndPoint::Mixed_6c => $ty::Mixed($($r)+ $model.mixed_6c),
            EndPoint::Mixed_6d => $ty::Mixed($($r)+ $model.mixed_6d),
            EndPoint::Mixed_6e => $ty::Mixed($($r)+ $model.mixed_6e),
            EndPoint::Mixed_7a => $ty::Mixed($($r)+ $model.mixed_7a),
            EndPoint::Mixed_7b => $ty::Mixed($($r)+ $model.mixed_7b),
            EndPoint::Mixed_7c => $ty::Mixed($($r)+ $model.mixed_7c),
        }
    };
}

/// TF-Slim Inception-v3 (see the module docs). Blocks after `final_endpoint` are `None`.
#[derive(Module, Debug)]
pub struct InceptionV3 {
    pub conv2d_1a_3x3: BasicConv,
    pub conv2d_2a_3x3: Option<BasicConv>,
    pub conv2d_2b_3x3: Option<BasicConv>,
    pub conv2d_3b_1x1: Option<BasicConv>,
    pub conv2d_4a_3x3: Option<BasicConv>,
    pub mixed_5b: Option<Mixed>,
    pub mixed_5c: Option<Mixed>,
    pub mixed_5d: Option<Mixed>,
    pub mixed_6a: Option<Mixed>,
    pub mixed_6b: Option<Mixed>,
    pub mixed_6c: Option<Mixed>,
    pub mixed_6d: Option<Mixed>,
    pub mixed_6e: Option<Mixed>,
    pub mixed_7a: Option<Mixed>,
    pub mixed_7b: Option<Mixed>,
    pub mixed_7c: Option<Mixed>,
    /// `Logits/Conv2d_1c_1x1` (1x1 conv with bias), absent for the feature vector.
    pub logits: Option<Conv2d>,
    pub dropout: Dropout,
    #[module(skip)]
    pub config: InceptionV3Config,
}

/// Output of [`InceptionV3::forward_end_points`].
#[derive(Debug, Clone)]
pub struct EndPoints {
    /// `(end point, activation [B, C, H, W])` for every requested end point, in execution order.
    pub maps: Vec<(EndPoint, Tensor<4>)>,
    /// Output of the last block built, `[B, C, H, W]`.
    pub last: Tensor<4>,
}

impl EndPoints {
    /// The activation of one end point (NCHW), if it was requested.
    pub fn get(&self, e: EndPoint) -> Option<&Tensor<4>> {
        self.maps.iter().find(|(k, _)| *k == e).map(|(_, t)| t)
    }
}

impl InceptionV3 {
    fn build(cfg: &InceptionV3Config, device: &Device) -> Self {
        let depth = |d: usize| cfg.depth(d);
        let stem_conv = |e: EndPoint| match e.stem_layer() {
            Some(StemLayer::Conv(spec)) => {
                BasicConv::new(cfg, e.input_channels(&depth), &spec, device)
            }
            _ => unreachable!("{e} is a stem convolution"),
        };
        let mut model = InceptionV3 {
            conv2d_1a_3x3: stem_conv(EndPoint::Conv2d_1a_3x3),
            conv2d_2a_3x3: None,
            conv2d_2b_3x3: None,
            conv2d_3b_1x1: None,
            conv2d_4a_3x3: None,
            mixed_5b: None,
            mixed_5c: None,
            mixed_5d: None,
            mixed_6a: None,
            mixed_6b: None,
            mixed_6c: None,
            mixed_6d: None,
            mixed_6e: None,
            mixed_7a: None,
            mixed_7b: None,
            mixed_7c: None,
            logits: cfg.num_classes.filter(|_| cfg.has_logits()).map(|n| {
                Conv2dConfig::new([cfg.feature_dim(), n], [1, 1])
                    .with_bias(true)
                    .with_initializer(burn::nn::Initializer::Normal {
                        mean: 0.0,
                        std: 0.01,
                    })
                    .init(device)
            }),
            dropout: DropoutConfig::new(1.0 - cfg.dropout_keep_prob).init(),
            config: cfg.clone(),
        };
        for e in EndPoint::ALL
            .into_iter()
            .filter(|&e| e <= cfg.final_endpoint)
        {
            match model.slot(e) {
                Slot::Conv(c) => *c = Some(stem_conv(e)),
                Slot::Mixed(m) => {
                    let spec = e.block().expect("a Mixed end point has its block");
                    let c_in = e.input_channels(&depth);
                    *m = Some(Mixed::new(cfg, spec, c_in, device));
                }
                Slot::First(_) | Slot::MaxPool => {}
            }
        }
        model
    }

    /// The layer of end point `e`, or `None` when the network stops before it.
    pub fn layer(&self, e: EndPoint) -> Option<Layer<'_>> {
        if e > self.config.final_endpoint {
            return None;
        }
        match end_point_field!(self, e, ref) {
            FieldRef::First(c) => Some(Layer::Conv(c)),
            FieldRef::Conv(c) => c.as_ref().map(Layer::Conv),
            FieldRef::Mixed(m) => m.as_ref().map(Layer::Mixed),
            FieldRef::MaxPool => Some(Layer::MaxPool),
        }
    }

    /// The built layers in execution order.
    pub fn layers(&self) -> impl Iterator<Item = (EndPoint, Layer<'_>)> {
        EndPoint::ALL
            .into_iter()
            .map_while(move |e| self.layer(e).map(|l| (e, l)))
    }

    fn slot(&mut self, e: EndPoint) -> Slot<'_> {
        end_point_field!(self, e, mut)
    }

    /// Loads a folder written by `convert` (`config.json` kind `inception_v3` +
    /// `model.safetensors`).
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self, InceptionError> {
        let folder = ModelFolder::open(dir.as_ref(), KIND)?;
        let cfg: InceptionV3Config = folder.config()?;
        cfg.validate().map_err(|e| {
            InceptionError::Weights(FolderError::Config {
                path: folder.file("config.json"),
                msg: e.to_string(),
            })
        })?;
        let model = InceptionV3::build(&cfg, device);
        Ok(crate::weights::load_into(
            &folder,
            model,
            "model.safetensors",
        )?)
    }

    /// Like [`InceptionV3::load`], but the folder's width, classes and final end point
    /// must equal `expected`'s (its activation and training options are taken from `expected`).
    pub fn load_expecting(
        dir: impl AsRef<Path>,
        device: &Device,
        expected: &InceptionV3Config,
    ) -> Result<Self, InceptionError> {
        let folder = ModelFolder::open(dir.as_ref(), KIND)?;
        let found: InceptionV3Config = folder.config()?;
        let key = |c: &InceptionV3Config| {
            format!(
                "depth_multiplier {} / min_depth {} / num_classes {:?}",
                c.depth_multiplier, c.min_depth, c.num_classes
            )
        };
        let same_width = (0..=448usize).all(|n| found.depth(n) == expected.depth(n));
        let enough_blocks = found.final_endpoint >= expected.final_endpoint;
        let classes_ok = !expected.has_logits() || found.num_classes == expected.num_classes;
        if !same_width || !enough_blocks || !classes_ok {
            return Err(InceptionError::Mismatch {
                path: folder.dir.clone(),
                found: key(&found),
                expected: key(expected),
            });
        }
        expected.validate()?;
        let mut build_cfg = expected.clone();
        build_cfg.num_classes = if expected.has_logits() {
            found.num_classes
        } else {
            None
        };
        let model = InceptionV3::build(&build_cfg, device);
        // Extra blocks / logits in the folder are tolerated only when they are cut off here.
        if found.final_endpoint == build_cfg.final_endpoint
            && found.has_logits() == build_cfg.has_logits()
        {
            Ok(crate::weights::load_into(
                &folder,
                model,
                "model.safetensors",
            )?)
        } else {
            // Tensors of blocks the model does not build are ignored.
            Ok(crate::weights::load_safetensors_allowing_unused(
                model,
                &folder.file("model.safetensors"),
            )?)
        }
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &InceptionV3Config {
        &self.config
    }

    /// Replaces the head with a fresh `num_classes` logits layer (`None` removes it).
    pub fn with_classes(mut self, num_classes: Option<usize>, device: &Device) -> Self {
        self.config.num_classes = num_classes;
        self.logits = num_classes
            .filter(|_| self.config.final_endpoint == EndPoint::Mixed_7c)
            .map(|n| {
                Conv2dConfig::new([self.config.feature_dim(), n], [1, 1])
                    .with_bias(true)
                    .with_initializer(burn::nn::Initializer::Normal {
                        mean: 0.0,
                        std: 0.01,
                    })
                    .init(device)
            });
        self
    }

    /// Folds every batch norm into its convolution (weight * scale, bias = beta - mean * scale).
    /// For inference only: the result has no batch-norm state to train.
    pub fn fuse_for_inference(mut self) -> Self {
        for e in EndPoint::ALL {
            match self.slot(e) {
                Slot::First(c) => c.fuse(),
                Slot::Conv(Some(c)) => c.fuse(),
                Slot::Mixed(Some(m)) => m.fuse(),
                Slot::Conv(None) | Slot::Mixed(None) | Slot::MaxPool => {}
            }
        }
        self
    }

    /// Checks the shape of hub-convention input `[B, H, W, 3]`.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<(), InceptionError> {
        let [_, h, w, c] = dims;
        if c != 3 {
            return Err(InceptionError::InputShape(dims.to_vec()));
        }
        let e = self.config.final_endpoint;
        if e.output_size(h).is_none() || e.output_size(w).is_none() {
            return Err(InceptionError::InputTooSmall {
                height: h,
                width: w,
                min: self.config.min_input_size(),
                end_point: e,
            });
        }
        Ok(())
    }

    /// Hub convention `[B, H, W, 3]` in `[0, 1]` -> network input `[B, 3, H, W]` in `[-1, 1]`.
    pub fn preprocess(images: Tensor<4>) -> Tensor<4> {
        // Scaled while contiguous (on flex a permuted view goes element by element), then
        // viewed NCHW.
        images.mul_scalar(2.0).sub_scalar(1.0).permute([0, 3, 1, 2])
    }

    /// The main entry point.
    ///
    /// # Shapes
    /// - `images`: `[B, H, W, 3]`, RGB in `[0, 1]`, H and W >= 75 (for `Mixed_7c`).
    /// - returns `[B, num_classes]` logits, or `[B, C]` features (global mean of the last
    ///   block; `[B, 2048]` for the default width) when `num_classes` is `None`.
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, InceptionError> {
        self.check_input(images.dims())?;
        let x = self.forward_base(Self::preprocess(images), &[]).last;
        Ok(self.head(x))
    }

    /// The 2048-d (times width) feature vector: global mean of the last block, `[B, C]`,
    /// whatever the head.
    pub fn features(&self, images: Tensor<4>) -> Result<Tensor<2>, InceptionError> {
        self.check_input(images.dims())?;
        let x = self.forward_base(Self::preprocess(images), &[]).last;
        Ok(global_mean(x))
    }

    /// Runs the backbone up to `final_endpoint` on hub-convention input and returns the
    /// last block's activation `[B, C, H', W']` (NCHW), e.g. `[B, 768, 17, 17]` for
    /// `Mixed_6e` at 299 input. (Magenta's style predictor uses this.)
    pub fn backbone(&self, images: Tensor<4>) -> Result<Tensor<4>, InceptionError> {
        self.check_input(images.dims())?;
        Ok(self.forward_base(Self::preprocess(images), &[]).last)
    }

    /// Runs the backbone on hub-convention input and keeps the requested end points.
    pub fn forward_end_points(
        &self,
        images: Tensor<4>,
        wanted: &[EndPoint],
    ) -> Result<EndPoints, InceptionError> {
        self.check_input(images.dims())?;
        Ok(self.forward_base(Self::preprocess(images), wanted))
    }

    /// The backbone on already-preprocessed input: `x` is `[B, 3, H, W]` in the network's
    /// own range (`[-1, 1]` for the hub weights). No size check.
    /// The layers run in the device's [`Layout`] (NHWC on flex), the end points come back
    /// NCHW.
    pub fn forward_base(&self, x: Tensor<4>, wanted: &[EndPoint]) -> EndPoints {
        let mut maps = Vec::new();
        let layout = Layout::of(&x);
        let mut x = layout.from_nchw(x);
        for (e, layer) in self.layers() {
            x = match layer {
                Layer::Conv(c) => c.forward(x, layout),
                Layer::MaxPool => mixed::max_pool_3x3_s2(x, layout),
                Layer::Mixed(m) => m.forward(x, layout),
            };
            if wanted.contains(&e) {
                maps.push((e, layout.to_nchw(x.clone())));
            }
        }
        EndPoints {
            maps,
            last: layout.to_nchw(x),
        }
    }

    /// The head on the last block's output `[B, C, H, W]`: logits `[B, num_classes]`
    /// (slim `AvgPool_1a` + dropout + `Conv2d_1c_1x1` + squeeze) or the global mean.
    pub fn head(&self, x: Tensor<4>) -> Tensor<2> {
        let Some(logits) = &self.logits else {
            return global_mean(x);
        };
        let [_, _, h, w] = x.dims();
        let (kh, kw) = (h.min(8), w.min(8));
        let x = avg_pool2d(
            x,
            AvgPoolOptions {
                kernel_size: [kh, kw],
                stride: [2, 2],
                padding: [(0, 0), (0, 0)],
                count_include_pad: true,
                ceil_mode: false,
            },
        );
        let x = self.dropout.forward(x);
        let x = logits.forward(x); // [B, classes, h', w']
        let [b, c, ph, pw] = x.dims();
        if ph == 1 && pw == 1 {
            x.reshape([b, c])
        } else {
            global_mean(x)
        }
    }
}

/// Mean over the spatial axes: `[B, C, H, W]` -> `[B, C]`.
pub fn global_mean(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).mean_dim(2).reshape([b, c])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_input_size_follows_the_final_end_point() {
        assert_eq!(InceptionV3Config::default().min_input_size(), 75);
        let cfg = InceptionV3Config::magenta_style_backbone();
        assert_eq!(cfg.min_input_size(), 43);
    }

    #[test]
    fn built_layers_follow_the_table() {
        let dev = Device::flex();
        let cfg = InceptionV3Config {
            depth_multiplier: 0.05,
            min_depth: 4,
            final_endpoint: EndPoint::Mixed_6a,
            num_classes: None,
            ..Default::default()
        };
        let m = cfg.init(&dev).unwrap();
        let built: Vec<EndPoint> = m.layers().map(|(e, _)| e).collect();
        assert_eq!(built, EndPoint::ALL[..=10].to_vec());
        let depth = |d: usize| cfg.depth(d);
        // Every convolution's shape is the table's: the parameter paths and shapes of the
        // module are exactly those `convs()` lists.
        let mut seen = 0;
        for (e, layer) in m.layers() {
            let convs: Vec<&BasicConv> = match layer {
                Layer::Conv(c) => vec![c],
                Layer::Mixed(b) => b.branches().into_iter().flatten().collect(),
                Layer::MaxPool => vec![],
            };
            for c in convs {
                let entry = &table::convs(e)[seen];
                let [o, _, kh, kw] = c.conv.weight.dims();
                assert_eq!(
                    (o, [kh, kw]),
                    (depth(entry.spec.width), entry.spec.kernel),
                    "{}",
                    entry.path
                );
                seen += 1;
            }
        }
        assert_eq!(seen, table::convs(EndPoint::Mixed_6a).len());
        let x = Tensor::<4>::zeros([1, 3, 75, 75], &dev);
        assert_eq!(
            m.forward_base(x, &[]).last.dims(),
            [1, cfg.feature_dim(), 3, 3]
        );
    }

    #[test]
    fn config_json_round_trip_uses_slim_names() {
        let c = InceptionV3Config::magenta_style_backbone();
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["final_endpoint"], "Mixed_6e");
        assert_eq!(j["activation"], "relu6");
        assert_eq!(j["num_classes"], serde_json::Value::Null);
        let back: InceptionV3Config = serde_json::from_value(j).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn too_small_input_is_a_clear_error() {
        let dev = Device::flex();
        let cfg = InceptionV3Config {
            depth_multiplier: 0.05,
            min_depth: 4,
            num_classes: Some(3),
            ..Default::default()
        };
        let m = cfg.init(&dev).unwrap();
        let err = m.forward(Tensor::zeros([1, 74, 80, 3], &dev)).unwrap_err();
        assert!(err.to_string().contains("at least 75x75"), "{err}");
        let out = m.forward(Tensor::zeros([2, 75, 80, 3], &dev)).unwrap();
        assert_eq!(out.dims(), [2, 3]);
    }

    #[test]
    fn trainable_on_autodiff_with_frozen_or_training_batch_norm() {
        let ad = Device::flex().autodiff();
        let base = InceptionV3Config {
            depth_multiplier: 0.05,
            min_depth: 4,
            num_classes: Some(3),
            ..Default::default()
        };
        let x = || {
            Tensor::<4>::random(
                [2, 75, 75, 3],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &ad,
            )
        };
        // Frozen BN (default): gradients reach the first conv and beta; moving stats stay.
        let m = base.init(&ad).unwrap();
        let before = m
            .conv2d_1a_3x3
            .bn
            .as_ref()
            .unwrap()
            .moving_mean
            .value()
            .into_data();
        let grads = m.forward(x()).unwrap().sum().backward();
        let g = m.conv2d_1a_3x3.conv.weight.grad(&grads).expect("conv grad");
        assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
        assert!(m
            .conv2d_1a_3x3
            .bn
            .as_ref()
            .unwrap()
            .beta
            .grad(&grads)
            .is_some());
        assert_eq!(
            m.conv2d_1a_3x3
                .bn
                .as_ref()
                .unwrap()
                .moving_mean
                .value()
                .into_data(),
            before
        );
        // Training BN: batch statistics update the moving averages.
        let m = InceptionV3Config {
            train_batch_norm: true,
            batch_norm_momentum: 0.9,
            ..base
        }
        .init(&ad)
        .unwrap();
        let _ = m.forward(x()).unwrap();
        assert_ne!(
            m.conv2d_1a_3x3
                .bn
                .as_ref()
                .unwrap()
                .moving_mean
                .value_sync()
                .into_data(),
            before
        );
    }
}
