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
//! Parameter names mirror the TF scopes: `InceptionV3/Conv2d_1a_3x3/weights` is
//! `conv2d_1a_3x3.conv.weight`; inside the Mixed blocks the convs of a branch are a
//! list in execution order (`InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights` is
//! `mixed_5c.branch_1.1.conv.weight`), so slim's irregular names need no special cases
//! here; the converter (`convert::kinds::inception_v3`) holds the name table.

use crate::weights::{FolderError, ModelFolder};
use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, PaddingConfig2d};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `kind` written by `convert` into `config.json` for this model.
pub const KIND: &str = "inception_v3";

/// Smallest input side the full network (up to `Mixed_7c`) accepts.
pub const MIN_INPUT_SIZE: usize = 75;

/// Activation after every batch norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `tf.nn.relu` (slim default, TF Hub models).
    #[default]
    Relu,
    /// `tf.nn.relu6` (Magenta's style prediction network).
    Relu6,
}

/// The end points of `inception_v3_base`, in execution order, named as in slim.
#[allow(non_camel_case_types)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum EndPoint {
    Conv2d_1a_3x3,
    Conv2d_2a_3x3,
    Conv2d_2b_3x3,
    MaxPool_3a_3x3,
    Conv2d_3b_1x1,
    Conv2d_4a_3x3,
    MaxPool_5a_3x3,
    Mixed_5b,
    Mixed_5c,
    Mixed_5d,
    Mixed_6a,
    Mixed_6b,
    Mixed_6c,
    Mixed_6d,
    Mixed_6e,
    Mixed_7a,
    Mixed_7b,
    #[default]
    Mixed_7c,
}

impl EndPoint {
    /// All end points in execution order.
    pub const ALL: [EndPoint; 18] = [
        EndPoint::Conv2d_1a_3x3,
        EndPoint::Conv2d_2a_3x3,
        EndPoint::Conv2d_2b_3x3,
        EndPoint::MaxPool_3a_3x3,
        EndPoint::Conv2d_3b_1x1,
        EndPoint::Conv2d_4a_3x3,
        EndPoint::MaxPool_5a_3x3,
        EndPoint::Mixed_5b,
        EndPoint::Mixed_5c,
        EndPoint::Mixed_5d,
        EndPoint::Mixed_6a,
        EndPoint::Mixed_6b,
        EndPoint::Mixed_6c,
        EndPoint::Mixed_6d,
        EndPoint::Mixed_6e,
        EndPoint::Mixed_7a,
        EndPoint::Mixed_7b,
        EndPoint::Mixed_7c,
    ];

    /// The slim name, e.g. `"Mixed_6e"`.
    pub fn name(self) -> &'static str {
        match self {
            EndPoint::Conv2d_1a_3x3 => "Conv2d_1a_3x3",
            EndPoint::Conv2d_2a_3x3 => "Conv2d_2a_3x3",
            EndPoint::Conv2d_2b_3x3 => "Conv2d_2b_3x3",
            EndPoint::MaxPool_3a_3x3 => "MaxPool_3a_3x3",
            EndPoint::Conv2d_3b_1x1 => "Conv2d_3b_1x1",
            EndPoint::Conv2d_4a_3x3 => "Conv2d_4a_3x3",
            EndPoint::MaxPool_5a_3x3 => "MaxPool_5a_3x3",
            EndPoint::Mixed_5b => "Mixed_5b",
            EndPoint::Mixed_5c => "Mixed_5c",
            EndPoint::Mixed_5d => "Mixed_5d",
            EndPoint::Mixed_6a => "Mixed_6a",
            EndPoint::Mixed_6b => "Mixed_6b",
            EndPoint::Mixed_6c => "Mixed_6c",
            EndPoint::Mixed_6d => "Mixed_6d",
            EndPoint::Mixed_6e => "Mixed_6e",
            EndPoint::Mixed_7a => "Mixed_7a",
            EndPoint::Mixed_7b => "Mixed_7b",
            EndPoint::Mixed_7c => "Mixed_7c",
        }
    }

    /// Parses a slim end point name.
    pub fn from_name(name: &str) -> Option<EndPoint> {
        EndPoint::ALL.iter().copied().find(|e| e.name() == name)
    }

    /// Output spatial size of this end point for an input of side `n`, or `None` when the
    /// input is too small for it (slim's chain of VALID and stride-2 layers).
    pub fn output_size(self, n: usize) -> Option<usize> {
        let valid =
            |n: usize, k: usize, s: usize| if n >= k { Some((n - k) / s + 1) } else { None };
        let mut n = n;
        for e in EndPoint::ALL {
            n = match e {
                EndPoint::Conv2d_1a_3x3 => valid(n, 3, 2)?,
                EndPoint::Conv2d_2a_3x3 => valid(n, 3, 1)?,
                EndPoint::MaxPool_3a_3x3
                | EndPoint::MaxPool_5a_3x3
                | EndPoint::Mixed_6a
                | EndPoint::Mixed_7a => valid(n, 3, 2)?,
                EndPoint::Conv2d_4a_3x3 => valid(n, 3, 1)?,
                _ => n,
            };
            if e == self {
                break;
            }
        }
        Some(n)
    }

    /// Number of output channels of this end point for a given width.
    pub fn channels(self, depth: &dyn Fn(usize) -> usize) -> usize {
        match self {
            EndPoint::Conv2d_1a_3x3 | EndPoint::Conv2d_2a_3x3 => depth(32),
            EndPoint::Conv2d_2b_3x3 | EndPoint::MaxPool_3a_3x3 => depth(64),
            EndPoint::Conv2d_3b_1x1 => depth(80),
            EndPoint::Conv2d_4a_3x3 | EndPoint::MaxPool_5a_3x3 => depth(192),
            EndPoint::Mixed_5b => depth(64) + depth(64) + depth(96) + depth(32),
            EndPoint::Mixed_5c | EndPoint::Mixed_5d => {
                depth(64) + depth(64) + depth(96) + depth(64)
            }
            EndPoint::Mixed_6a => depth(384) + depth(96) + EndPoint::Mixed_5d.channels(depth),
            EndPoint::Mixed_6b | EndPoint::Mixed_6c | EndPoint::Mixed_6d | EndPoint::Mixed_6e => {
                4 * depth(192)
            }
            EndPoint::Mixed_7a => depth(320) + depth(192) + EndPoint::Mixed_6e.channels(depth),
            EndPoint::Mixed_7b | EndPoint::Mixed_7c => {
                depth(320) + 2 * depth(384) + 2 * depth(384) + depth(192)
            }
        }
    }
}

impl std::fmt::Display for EndPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Configuration of [`InceptionV3`]; serialized as the `config` object of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InceptionV3Config {
    /// Classes of the logits layer (1001 with background for the TF Hub classifier);
    /// `None` for the 2048-d feature vector (global mean of `Mixed_7c`).
    pub num_classes: Option<usize>,
    /// slim `depth_multiplier` (width multiplier), > 0.
    pub depth_multiplier: f64,
    /// slim `min_depth`.
    pub min_depth: usize,
    /// Activation after every batch norm.
    pub activation: Activation,
    /// Last block built (slim `final_endpoint`); anything before `Mixed_7c` has no head.
    pub final_endpoint: EndPoint,
    /// Dropout keep probability before the logits (training only; slim 0.8).
    pub dropout_keep_prob: f64,
    /// Train batch-norm statistics (batch statistics + moving-average update) on an
    /// autodiff device. `false` (default, as TF Hub fine-tuning does unless asked):
    /// batch norm always uses the stored moving statistics.
    pub train_batch_norm: bool,
    /// TF-style decay of the moving averages when `train_batch_norm` is set:
    /// `moving = decay * moving + (1 - decay) * batch` (TF Hub default 0.99).
    pub batch_norm_momentum: f64,
    /// Batch-norm epsilon (slim: 0.001).
    pub batch_norm_epsilon: f64,
}

impl Default for InceptionV3Config {
    fn default() -> Self {
        InceptionV3Config {
            num_classes: Some(1001),
            depth_multiplier: 1.0,
            min_depth: 16,
            activation: Activation::Relu,
            final_endpoint: EndPoint::Mixed_7c,
            dropout_keep_prob: 0.8,
            train_batch_norm: false,
            batch_norm_momentum: 0.99,
            batch_norm_epsilon: 0.001,
        }
    }
}

impl InceptionV3Config {
    /// The TF Hub classifier: 1001 classes (index 0 = background).
    pub fn classification() -> Self {
        Self::default()
    }

    /// The TF Hub feature vector: `[batch, 2048]`.
    pub fn feature_vector() -> Self {
        InceptionV3Config {
            num_classes: None,
            ..Self::default()
        }
    }

    /// The backbone of Magenta's style predictor: ReLU6, built up to `Mixed_6e`, no head.
    pub fn magenta_style_backbone() -> Self {
        InceptionV3Config {
            num_classes: None,
            activation: Activation::Relu6,
            final_endpoint: EndPoint::Mixed_6e,
            ..Self::default()
        }
    }

    /// slim's `depth(d) = max(int(d * depth_multiplier), min_depth)`.
    pub fn depth(&self, d: usize) -> usize {
        ((d as f64 * self.depth_multiplier) as usize).max(self.min_depth)
    }

    /// Width of the output of the last block (2048 for the default model).
    pub fn feature_dim(&self) -> usize {
        self.final_endpoint.channels(&|d| self.depth(d))
    }

    /// Whether the classification head (logits) exists.
    pub fn has_logits(&self) -> bool {
        self.num_classes.is_some() && self.final_endpoint == EndPoint::Mixed_7c
    }

    /// Smallest input side for this configuration.
    pub fn min_input_size(&self) -> usize {
        (1..=MIN_INPUT_SIZE)
            .find(|&n| self.final_endpoint.output_size(n).is_some_and(|s| s >= 1))
            .unwrap_or(MIN_INPUT_SIZE)
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), InceptionError> {
        let bad = |msg: String| Err(InceptionError::Config(msg));
        if !(self.depth_multiplier > 0.0 && self.depth_multiplier.is_finite()) {
            return bad(format!(
                "depth_multiplier must be > 0, got {}",
                self.depth_multiplier
            ));
        }
        if self.min_depth == 0 {
            return bad("min_depth must be > 0".into());
        }
        if self.num_classes == Some(0) {
            return bad("num_classes must be > 0 (or null for the feature vector)".into());
        }
        if self.num_classes.is_some() && self.final_endpoint != EndPoint::Mixed_7c {
            return bad(format!(
                "num_classes needs final_endpoint Mixed_7c, got {}",
                self.final_endpoint
            ));
        }
        if !(self.dropout_keep_prob > 0.0 && self.dropout_keep_prob <= 1.0) {
            return bad(format!(
                "dropout_keep_prob must be in (0, 1], got {}",
                self.dropout_keep_prob
            ));
        }
        if !(0.0..=1.0).contains(&self.batch_norm_momentum) {
            return bad(format!(
                "batch_norm_momentum must be in [0, 1], got {}",
                self.batch_norm_momentum
            ));
        }
        if !(self.batch_norm_epsilon > 0.0) {
            return bad(format!(
                "batch_norm_epsilon must be > 0, got {}",
                self.batch_norm_epsilon
            ));
        }
        Ok(())
    }

    /// Builds the network with slim-like random initialisation (truncated-normal-ish
    /// variance scaling for convs, beta 0, moving mean 0, moving variance 1).
    pub fn init(&self, device: &Device) -> Result<InceptionV3, InceptionError> {
        self.validate()?;
        Ok(InceptionV3::build(self, device))
    }
}

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

/// slim `batch_norm` with `center=True, scale=False`: `beta` only, no `gamma`.
#[derive(Module, Debug)]
pub struct SlimBatchNorm {
    /// `BatchNorm/beta`.
    pub beta: Param<Tensor<1>>,
    /// `BatchNorm/moving_mean`.
    pub moving_mean: RunningState<Tensor<1>>,
    /// `BatchNorm/moving_variance`.
    pub moving_variance: RunningState<Tensor<1>>,
    /// Epsilon (0.001).
    pub epsilon: f64,
    /// TF decay of the moving averages (used only when `train_stats`).
    pub decay: f64,
    /// Use batch statistics and update the moving averages on an autodiff device.
    pub train_stats: bool,
}

impl SlimBatchNorm {
    fn new(channels: usize, cfg: &InceptionV3Config, device: &Device) -> Self {
        SlimBatchNorm {
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            moving_mean: RunningState::new(Tensor::zeros([channels], device)),
            moving_variance: RunningState::new(Tensor::ones([channels], device)),
            epsilon: cfg.batch_norm_epsilon,
            decay: cfg.batch_norm_momentum,
            train_stats: cfg.train_batch_norm,
        }
    }

    /// Per-channel `(scale, shift)` so that `bn(x) = x * scale + shift` at inference.
    pub fn inference_affine(&self) -> (Tensor<1>, Tensor<1>) {
        let mean = self.moving_mean.value_sync();
        let var = self.moving_variance.value_sync();
        let scale = var.add_scalar(self.epsilon).sqrt().recip();
        let shift = self.beta.val() - mean * scale.clone();
        (scale, shift)
    }

    /// `x`: `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let channels = self.beta.dims()[0];
        if self.train_stats && device.is_autodiff() {
            let ones = Tensor::ones([channels], &device);
            let out = burn::tensor::module::batch_norm_train(
                x.clone(),
                ones,
                self.beta.val(),
                self.epsilon,
            );
            // TF's fused batch norm updates the moving variance with the unbiased variance.
            let [b, _, h, w] = x.dims();
            let n = (b * h * w) as f64;
            let unbiased = if n > 1.0 {
                out.variance.mul_scalar(n / (n - 1.0))
            } else {
                out.variance
            };
            let d = self.decay;
            let mm = self
                .moving_mean
                .value_sync()
                .to_device(&device)
                .mul_scalar(d)
                + out.mean.mul_scalar(1.0 - d);
            let mv = self
                .moving_variance
                .value_sync()
                .to_device(&device)
                .mul_scalar(d)
                + unbiased.mul_scalar(1.0 - d);
            self.moving_mean.update(mm.detach());
            self.moving_variance.update(mv.detach());
            return out.output;
        }
        let (scale, shift) = self.inference_affine();
        x * scale.to_device(&device).reshape([1, channels, 1, 1])
            + shift.to_device(&device).reshape([1, channels, 1, 1])
    }
}

/// One slim `conv2d`: convolution without bias, batch norm, activation. After
/// [`InceptionV3::fuse_for_inference`] the batch norm is folded into the convolution's
/// weight and bias and `bn` is `None`.
#[derive(Module, Debug)]
pub struct BasicConv {
    pub conv: Conv2d,
    pub bn: Option<SlimBatchNorm>,
    /// `true` = ReLU6, `false` = ReLU.
    pub relu6: bool,
}

/// How a conv pads (all Inception-v3 SAME convs have stride 1 and odd kernels).
#[derive(Clone, Copy)]
enum Pad {
    Valid,
    Same,
}

impl BasicConv {
    fn new(
        cfg: &InceptionV3Config,
        c_in: usize,
        c_out: usize,
        k: [usize; 2],
        stride: usize,
        pad: Pad,
        device: &Device,
    ) -> Self {
        let padding = match pad {
            Pad::Valid => PaddingConfig2d::Valid,
            // stride 1, odd kernel: symmetric (k-1)/2, same as TF SAME.
            Pad::Same => PaddingConfig2d::Explicit(
                (k[0] - 1) / 2,
                (k[1] - 1) / 2,
                (k[0] - 1) / 2,
                (k[1] - 1) / 2,
            ),
        };
        let fan_in = (c_in * k[0] * k[1]) as f64;
        let conv = Conv2dConfig::new([c_in, c_out], k)
            .with_stride([stride, stride])
            .with_padding(padding)
            .with_bias(false)
            .with_initializer(burn::nn::Initializer::Normal {
                mean: 0.0,
                std: (2.0 / fan_in).sqrt(),
            })
            .init(device);
        BasicConv {
            conv,
            bn: Some(SlimBatchNorm::new(c_out, cfg, device)),
            relu6: cfg.activation == Activation::Relu6,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        if self.relu6 {
            x.clamp(0.0, 6.0)
        } else {
            burn::tensor::activation::relu(x)
        }
    }

    /// Folds the batch norm into the convolution (inference only).
    fn fuse(mut self) -> Self {
        if let Some(bn) = self.bn.take() {
            let (scale, shift) = bn.inference_affine();
            let [o, ..] = self.conv.weight.dims();
            let w = self.conv.weight.val() * scale.reshape([o, 1, 1, 1]);
            let b = match &self.conv.bias {
                Some(b) => b.val() * bn.inference_affine().0 + shift,
                None => shift,
            };
            self.conv.weight = Param::from_tensor(w);
            self.conv.bias = Some(Param::from_tensor(b));
        }
        self
    }
}

/// The kinds of Mixed blocks (their dataflow; the convs are in the branch lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Mixed_5b/5c/5d: 1x1 | 1x1,5x5 | 1x1,3x3,3x3 | avgpool,1x1.
    A,
    /// Mixed_6a: 3x3/2 | 1x1,3x3,3x3/2 | maxpool/2.
    ReductionA,
    /// Mixed_6b..6e: 1x1 | 1x1,1x7,7x1 | 1x1,7x1,1x7,7x1,1x7 | avgpool,1x1.
    C,
    /// Mixed_7a: 1x1,3x3/2 | 1x1,1x7,7x1,3x3/2 | maxpool/2.
    ReductionB,
    /// Mixed_7b/7c: 1x1 | 1x1,[1x3,3x1] | 1x1,3x3,[1x3,3x1] | avgpool,1x1.
    E,
}

/// One Mixed block: up to four branches, each a list of convs in execution order.
#[derive(Module, Debug)]
pub struct Mixed {
    pub branch_0: Vec<BasicConv>,
    pub branch_1: Vec<BasicConv>,
    pub branch_2: Vec<BasicConv>,
    pub branch_3: Vec<BasicConv>,
    #[module(skip)]
    pub kind: BlockKind,
}

fn avg_pool_3x3_same(x: Tensor<4>) -> Tensor<4> {
    avg_pool2d(
        x,
        AvgPoolOptions {
            kernel_size: [3, 3],
            stride: [1, 1],
            padding: [(1, 1), (1, 1)],
            count_include_pad: false,
            ceil_mode: false,
        },
    )
}

fn max_pool_3x3_s2(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions {
            kernel_size: [3, 3],
            stride: [2, 2],
            padding: [(0, 0), (0, 0)],
            dilation: [1, 1],
            ceil_mode: false,
        },
    )
}

fn chain(convs: &[BasicConv], x: Tensor<4>) -> Tensor<4> {
    convs.iter().fold(x, |x, c| c.forward(x))
}

impl Mixed {
    fn new(
        cfg: &InceptionV3Config,
        kind: BlockKind,
        c_in: usize,
        variant: usize,
        device: &Device,
    ) -> Self {
        let d = |n: usize| cfg.depth(n);
        let conv = |ci: usize, co: usize, k: [usize; 2]| {
            BasicConv::new(cfg, ci, co, k, 1, Pad::Same, device)
        };
        let conv_s2 =
            |ci: usize, co: usize| BasicConv::new(cfg, ci, co, [3, 3], 2, Pad::Valid, device);
        let (b0, b1, b2, b3) = match kind {
            BlockKind::A => {
                // variant: Branch_3 width (32 for 5b, 64 for 5c/5d)
                (
                    vec![conv(c_in, d(64), [1, 1])],
                    vec![conv(c_in, d(48), [1, 1]), conv(d(48), d(64), [5, 5])],
                    vec![
                        conv(c_in, d(64), [1, 1]),
                        conv(d(64), d(96), [3, 3]),
                        conv(d(96), d(96), [3, 3]),
                    ],
                    vec![conv(c_in, d(variant), [1, 1])],
                )
            }
            BlockKind::ReductionA => (
                vec![conv_s2(c_in, d(384))],
                vec![
                    conv(c_in, d(64), [1, 1]),
                    conv(d(64), d(96), [3, 3]),
                    conv_s2(d(96), d(96)),
                ],
                vec![],
                vec![],
            ),
            BlockKind::C => {
                let n = d(variant);
                (
                    vec![conv(c_in, d(192), [1, 1])],
                    vec![
                        conv(c_in, n, [1, 1]),
                        conv(n, n, [1, 7]),
                        conv(n, d(192), [7, 1]),
                    ],
                    vec![
                        conv(c_in, n, [1, 1]),
                        conv(n, n, [7, 1]),
                        conv(n, n, [1, 7]),
                        conv(n, n, [7, 1]),
                        conv(n, d(192), [1, 7]),
                    ],
                    vec![conv(c_in, d(192), [1, 1])],
                )
            }
            BlockKind::ReductionB => (
                vec![conv(c_in, d(192), [1, 1]), conv_s2(d(192), d(320))],
                vec![
                    conv(c_in, d(192), [1, 1]),
                    conv(d(192), d(192), [1, 7]),
                    conv(d(192), d(192), [7, 1]),
                    conv_s2(d(192), d(192)),
                ],
                vec![],
                vec![],
            ),
            BlockKind::E => (
                vec![conv(c_in, d(320), [1, 1])],
                vec![
                    conv(c_in, d(384), [1, 1]),
                    conv(d(384), d(384), [1, 3]),
                    conv(d(384), d(384), [3, 1]),
                ],
                vec![
                    conv(c_in, d(448), [1, 1]),
                    conv(d(448), d(384), [3, 3]),
                    conv(d(384), d(384), [1, 3]),
                    conv(d(384), d(384), [3, 1]),
                ],
                vec![conv(c_in, d(192), [1, 1])],
            ),
        };
        Mixed {
            branch_0: b0,
            branch_1: b1,
            branch_2: b2,
            branch_3: b3,
            kind,
        }
    }

    /// `x`: `[B, C_in, H, W]` -> `[B, C_out, H', W']` (channels concatenated in branch order).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self.kind {
            BlockKind::A | BlockKind::C => {
                let b0 = chain(&self.branch_0, x.clone());
                let b1 = chain(&self.branch_1, x.clone());
                let b2 = chain(&self.branch_2, x.clone());
                let b3 = chain(&self.branch_3, avg_pool_3x3_same(x));
                Tensor::cat(vec![b0, b1, b2, b3], 1)
            }
            BlockKind::ReductionA | BlockKind::ReductionB => {
                let b0 = chain(&self.branch_0, x.clone());
                let b1 = chain(&self.branch_1, x.clone());
                let b2 = max_pool_3x3_s2(x);
                Tensor::cat(vec![b0, b1, b2], 1)
            }
            BlockKind::E => {
                let b0 = chain(&self.branch_0, x.clone());
                let b1 = self.branch_1[0].forward(x.clone());
                let b1 = Tensor::cat(
                    vec![
                        self.branch_1[1].forward(b1.clone()),
                        self.branch_1[2].forward(b1),
                    ],
                    1,
                );
                let b2 = chain(&self.branch_2[..2], x.clone());
                let b2 = Tensor::cat(
                    vec![
                        self.branch_2[2].forward(b2.clone()),
                        self.branch_2[3].forward(b2),
                    ],
                    1,
                );
                let b3 = chain(&self.branch_3, avg_pool_3x3_same(x));
                Tensor::cat(vec![b0, b1, b2, b3], 1)
            }
        }
    }

    fn fuse(self) -> Self {
        let f = |v: Vec<BasicConv>| v.into_iter().map(BasicConv::fuse).collect();
        Mixed {
            branch_0: f(self.branch_0),
            branch_1: f(self.branch_1),
            branch_2: f(self.branch_2),
            branch_3: f(self.branch_3),
            kind: self.kind,
        }
    }
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
        let upto = |e: EndPoint| cfg.final_endpoint >= e;
        let d = |n: usize| cfg.depth(n);
        let conv = |ci, co, k, s, p| BasicConv::new(cfg, ci, co, k, s, p, device);
        let mixed = |e: EndPoint, kind, c_in, variant| {
            if upto(e) {
                Some(Mixed::new(cfg, kind, c_in, variant, device))
            } else {
                None
            }
        };
        let ch = |e: EndPoint| e.channels(&d);
        InceptionV3 {
            conv2d_1a_3x3: conv(3, d(32), [3, 3], 2, Pad::Valid),
            conv2d_2a_3x3: upto(EndPoint::Conv2d_2a_3x3)
                .then(|| conv(d(32), d(32), [3, 3], 1, Pad::Valid)),
            conv2d_2b_3x3: upto(EndPoint::Conv2d_2b_3x3)
                .then(|| conv(d(32), d(64), [3, 3], 1, Pad::Same)),
            conv2d_3b_1x1: upto(EndPoint::Conv2d_3b_1x1)
                .then(|| conv(d(64), d(80), [1, 1], 1, Pad::Valid)),
            conv2d_4a_3x3: upto(EndPoint::Conv2d_4a_3x3)
                .then(|| conv(d(80), d(192), [3, 3], 1, Pad::Valid)),
            mixed_5b: mixed(
                EndPoint::Mixed_5b,
                BlockKind::A,
                ch(EndPoint::MaxPool_5a_3x3),
                32,
            ),
            mixed_5c: mixed(EndPoint::Mixed_5c, BlockKind::A, ch(EndPoint::Mixed_5b), 64),
            mixed_5d: mixed(EndPoint::Mixed_5d, BlockKind::A, ch(EndPoint::Mixed_5c), 64),
            mixed_6a: mixed(
                EndPoint::Mixed_6a,
                BlockKind::ReductionA,
                ch(EndPoint::Mixed_5d),
                0,
            ),
            mixed_6b: mixed(
                EndPoint::Mixed_6b,
                BlockKind::C,
                ch(EndPoint::Mixed_6a),
                128,
            ),
            mixed_6c: mixed(
                EndPoint::Mixed_6c,
                BlockKind::C,
                ch(EndPoint::Mixed_6b),
                160,
            ),
            mixed_6d: mixed(
                EndPoint::Mixed_6d,
                BlockKind::C,
                ch(EndPoint::Mixed_6c),
                160,
            ),
            mixed_6e: mixed(
                EndPoint::Mixed_6e,
                BlockKind::C,
                ch(EndPoint::Mixed_6d),
                192,
            ),
            mixed_7a: mixed(
                EndPoint::Mixed_7a,
                BlockKind::ReductionB,
                ch(EndPoint::Mixed_6e),
                0,
            ),
            mixed_7b: mixed(EndPoint::Mixed_7b, BlockKind::E, ch(EndPoint::Mixed_7a), 0),
            mixed_7c: mixed(EndPoint::Mixed_7c, BlockKind::E, ch(EndPoint::Mixed_7b), 0),
            logits: cfg.num_classes.filter(|_| cfg.has_logits()).map(|n| {
                Conv2dConfig::new([ch(EndPoint::Mixed_7c), n], [1, 1])
                    .with_bias(true)
                    .with_initializer(burn::nn::Initializer::Normal {
                        mean: 0.0,
                        std: 0.01,
                    })
                    .init(device)
            }),
            dropout: DropoutConfig::new(1.0 - cfg.dropout_keep_prob).init(),
            config: cfg.clone(),
        }
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
    pub fn fuse_for_inference(self) -> Self {
        let f = |m: Option<Mixed>| m.map(Mixed::fuse);
        let g = |c: Option<BasicConv>| c.map(BasicConv::fuse);
        InceptionV3 {
            conv2d_1a_3x3: self.conv2d_1a_3x3.fuse(),
            conv2d_2a_3x3: g(self.conv2d_2a_3x3),
            conv2d_2b_3x3: g(self.conv2d_2b_3x3),
            conv2d_3b_1x1: g(self.conv2d_3b_1x1),
            conv2d_4a_3x3: g(self.conv2d_4a_3x3),
            mixed_5b: f(self.mixed_5b),
            mixed_5c: f(self.mixed_5c),
            mixed_5d: f(self.mixed_5d),
            mixed_6a: f(self.mixed_6a),
            mixed_6b: f(self.mixed_6b),
            mixed_6c: f(self.mixed_6c),
            mixed_6d: f(self.mixed_6d),
            mixed_6e: f(self.mixed_6e),
            mixed_7a: f(self.mixed_7a),
            mixed_7b: f(self.mixed_7b),
            mixed_7c: f(self.mixed_7c),
            logits: self.logits,
            dropout: self.dropout,
            config: self.config,
        }
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
        images.permute([0, 3, 1, 2]).mul_scalar(2.0).sub_scalar(1.0)
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
    pub fn forward_base(&self, x: Tensor<4>, wanted: &[EndPoint]) -> EndPoints {
        let mut maps = Vec::new();
        let mut keep = |e: EndPoint, t: &Tensor<4>| {
            if wanted.contains(&e) {
                maps.push((e, t.clone()));
            }
        };
        let mut x = self.conv2d_1a_3x3.forward(x);
        keep(EndPoint::Conv2d_1a_3x3, &x);
        let stem: [(EndPoint, Option<&BasicConv>); 6] = [
            (EndPoint::Conv2d_2a_3x3, self.conv2d_2a_3x3.as_ref()),
            (EndPoint::Conv2d_2b_3x3, self.conv2d_2b_3x3.as_ref()),
            (EndPoint::MaxPool_3a_3x3, None),
            (EndPoint::Conv2d_3b_1x1, self.conv2d_3b_1x1.as_ref()),
            (EndPoint::Conv2d_4a_3x3, self.conv2d_4a_3x3.as_ref()),
            (EndPoint::MaxPool_5a_3x3, None),
        ];
        for (e, conv) in stem {
            if e > self.config.final_endpoint {
                return EndPoints { maps, last: x };
            }
            x = match conv {
                Some(c) => c.forward(x),
                None => max_pool_3x3_s2(x),
            };
            keep(e, &x);
        }
        let blocks = [
            (EndPoint::Mixed_5b, &self.mixed_5b),
            (EndPoint::Mixed_5c, &self.mixed_5c),
            (EndPoint::Mixed_5d, &self.mixed_5d),
            (EndPoint::Mixed_6a, &self.mixed_6a),
            (EndPoint::Mixed_6b, &self.mixed_6b),
            (EndPoint::Mixed_6c, &self.mixed_6c),
            (EndPoint::Mixed_6d, &self.mixed_6d),
            (EndPoint::Mixed_6e, &self.mixed_6e),
            (EndPoint::Mixed_7a, &self.mixed_7a),
            (EndPoint::Mixed_7b, &self.mixed_7b),
            (EndPoint::Mixed_7c, &self.mixed_7c),
        ];
        for (e, block) in blocks {
            let Some(block) = block else { break };
            x = block.forward(x);
            keep(e, &x);
        }
        EndPoints { maps, last: x }
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
    fn end_point_sizes_match_slim_at_299_and_75() {
        let s = |e: EndPoint| e.output_size(299).unwrap();
        assert_eq!(s(EndPoint::Conv2d_1a_3x3), 149);
        assert_eq!(s(EndPoint::Conv2d_2b_3x3), 147);
        assert_eq!(s(EndPoint::MaxPool_3a_3x3), 73);
        assert_eq!(s(EndPoint::Conv2d_4a_3x3), 71);
        assert_eq!(s(EndPoint::Mixed_5d), 35);
        assert_eq!(s(EndPoint::Mixed_6e), 17);
        assert_eq!(s(EndPoint::Mixed_7c), 8);
        assert_eq!(EndPoint::Mixed_7c.output_size(75), Some(1));
        assert_eq!(EndPoint::Mixed_7c.output_size(74), None);
        assert_eq!(InceptionV3Config::default().min_input_size(), 75);
    }

    #[test]
    fn channels_match_slim() {
        let c = InceptionV3Config::default();
        let ch = |e: EndPoint| e.channels(&|d| c.depth(d));
        assert_eq!(ch(EndPoint::Mixed_5b), 256);
        assert_eq!(ch(EndPoint::Mixed_5c), 288);
        assert_eq!(ch(EndPoint::Mixed_6a), 768);
        assert_eq!(ch(EndPoint::Mixed_6e), 768);
        assert_eq!(ch(EndPoint::Mixed_7a), 1280);
        assert_eq!(ch(EndPoint::Mixed_7c), 2048);
        let small = InceptionV3Config {
            depth_multiplier: 0.1,
            min_depth: 8,
            ..c
        };
        assert_eq!(small.depth(32), 8);
        assert_eq!(small.depth(192), 19);
        assert_eq!(small.depth(448), 44);
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
