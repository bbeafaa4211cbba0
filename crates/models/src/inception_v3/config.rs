//! [`InceptionV3Config`]: the `config` object of an `inception_v3` folder's `config.json`.

use super::{table, EndPoint, InceptionError, InceptionV3, MIN_INPUT_SIZE};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

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
        table::depth(d, self.depth_multiplier, self.min_depth)
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
