//! The model being fine-tuned: an [`InceptionV3`] feature-vector backbone, dropout and a
//! `Linear(feature_dim -> num_classes)` head (logits; softmax cross-entropy loss), and its
//! export as an `inception_v3` model folder with `labels.txt` (loadable by
//! [`InceptionV3::load`]).
//!
//! Batch-norm policy (TF Hub): by default the backbone's batch norms use their stored
//! moving statistics, even while training ([`BatchNormPolicy::Frozen`]).
//! [`BatchNormPolicy::Train`] uses batch statistics and updates the moving averages with
//! the TF convention `moving = momentum * moving + (1 - momentum) * batch` (TF Hub's
//! `batch_norm_momentum`, default 0.99). Burn's own `BatchNorm` uses the opposite
//! convention (`momentum` = weight of the new batch, default 0.1), so TF 0.99 would be
//! Burn 0.01; the slim batch norm of [`InceptionV3`] takes the TF value directly.

use crate::report::write_atomic;
use crate::{io, FinetuneError};
use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use models::inception_v3::{InceptionV3, InceptionV3Config, KIND as INCEPTION_KIND};
use models::weights::{FolderError, ModelFolder};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How the backbone's batch norms behave while training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum BatchNormPolicy {
    /// Use the stored moving statistics (TF Hub default for fine-tuning in this project).
    Frozen,
    /// Batch statistics; moving averages updated with TF decay `momentum` (TF Hub: 0.99).
    Train { momentum: f64 },
}

impl BatchNormPolicy {
    /// Sets the training options of a backbone configuration.
    pub fn apply(self, cfg: &mut InceptionV3Config) {
        match self {
            BatchNormPolicy::Frozen => cfg.train_batch_norm = false,
            BatchNormPolicy::Train { momentum } => {
                cfg.train_batch_norm = true;
                cfg.batch_norm_momentum = momentum;
            }
        }
    }
}

/// `InceptionV3` feature vector -> dropout -> `Linear(feature_dim -> num_classes)`.
#[derive(Module, Debug)]
pub struct ImageClassifier {
    pub backbone: InceptionV3,
    pub dropout: Dropout,
    /// Dense head; weight `[feature_dim, num_classes]` (TF Dense kernel layout).
    pub head: Linear,
}

impl ImageClassifier {
    /// A randomly initialised backbone built from `backbone_config` (its `num_classes` is
    /// ignored: the backbone gives the feature vector) and a new head.
    pub fn new(
        backbone_config: &InceptionV3Config,
        num_classes: usize,
        dropout_rate: f64,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        let mut cfg = backbone_config.clone();
        cfg.num_classes = None;
        let backbone = cfg.init(device)?;
        Self::from_backbone(backbone, num_classes, dropout_rate, device)
    }

    /// A new head on an existing backbone (whose logits layer, if any, is dropped).
    pub fn from_backbone(
        backbone: InceptionV3,
        num_classes: usize,
        dropout_rate: f64,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        if num_classes == 0 {
            return Err(FinetuneError::Options("num_classes must be > 0".into()));
        }
        if !(0.0..1.0).contains(&dropout_rate) {
            return Err(FinetuneError::Options(format!(
                "dropout rate must be in [0, 1), got {dropout_rate}"
            )));
        }
        let backbone = backbone.with_classes(None, device);
        let dim = backbone.config().feature_dim();
        Ok(ImageClassifier {
            head: LinearConfig::new(dim, num_classes).init(device),
            dropout: DropoutConfig::new(dropout_rate).init(),
            backbone,
        })
    }

    /// Loads the backbone from a converted `inception_v3` folder (feature vector or
    /// classifier; a classifier's logits are dropped), with the given batch-norm policy.
    pub fn from_folder(
        dir: &Path,
        num_classes: usize,
        dropout_rate: f64,
        bn: BatchNormPolicy,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        let folder = ModelFolder::open(dir, INCEPTION_KIND)?;
        let mut cfg: InceptionV3Config = folder.config()?;
        cfg.num_classes = None;
        bn.apply(&mut cfg);
        let backbone = InceptionV3::load_expecting(dir, device, &cfg)?;
        Self::from_backbone(backbone, num_classes, dropout_rate, device)
    }

    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Logits `[B, num_classes]` for images `[B, H, W, 3]` in `[0, 1]`.
    pub fn forward(&self, images: Tensor<4>) -> Result<Tensor<2>, FinetuneError> {
        let features = self.backbone.features(images)?;
        Ok(self.forward_head(features))
    }

    /// The head on features `[B, feature_dim]` (dropout is active only while training on
    /// an autodiff device).
    pub fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(self.dropout.forward(features))
    }

    /// The same network as a plain [`InceptionV3`] classifier whose `Logits/Conv2d_1c_1x1`
    /// is the Dense head (a 1x1 convolution is a dense layer), batch norms frozen.
    /// Identical outputs as long as the last feature map is at most 8x8 (input side up to
    /// about 330), where slim's head average pool is a global mean.
    pub fn to_inception(&self) -> InceptionV3 {
        let device = self.head.weight.device();
        let k = self.num_classes();
        let mut net = self.backbone.clone().with_classes(Some(k), &device);
        let dim = net.config().feature_dim();
        if let Some(conv) = net.logits.as_mut() {
            let w = self.head.weight.val().transpose().reshape([k, dim, 1, 1]);
            conv.weight = Param::from_tensor(w);
            conv.bias = self.head.bias.as_ref().map(|b| Param::from_tensor(b.val()));
        }
        net.config.train_batch_norm = false;
        net.config.dropout_keep_prob = 1.0 - self.dropout.prob;
        net
    }

    /// Writes an `inception_v3` model folder into `dir` (created if needed):
    /// `model.safetensors`, `labels.txt` (one class name per line, line i = logit i) and
    /// `config.json` (written last). Each file goes to a temporary name first and is then
    /// renamed; other files in `dir` (checkpoints, metrics) are left alone.
    pub fn export(&self, dir: &Path, labels: &[String]) -> Result<(), FinetuneError> {
        if labels.len() != self.num_classes() {
            return Err(FinetuneError::Options(format!(
                "{} labels for {} classes",
                labels.len(),
                self.num_classes()
            )));
        }
        if let Some(bad) = labels.iter().find(|l| l.contains('\n') || l.contains('\r')) {
            return Err(FinetuneError::Options(format!(
                "class name {bad:?} contains a line break"
            )));
        }
        let net = self.valid().to_inception();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".model.safetensors.tmp{}", std::process::id()));
        let saved = save_safetensors(&net, &tmp);
        if saved.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return saved;
        }
        let target = dir.join("model.safetensors");
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
        write_atomic(&dir.join("labels.txt"), text.as_bytes())?;
        let config = model_folder::FolderConfig::new(INCEPTION_KIND, net.config(), "finetune")
            .map_err(|e| FinetuneError::Options(format!("config.json: {e}")))?;
        write_atomic(&dir.join("config.json"), &config.to_bytes())?;
        Ok(())
    }
}

fn save_safetensors<M: ModuleSnapshot>(module: &M, path: &Path) -> Result<(), FinetuneError> {
    let mut store = SafetensorsStore::from_file(path.to_path_buf());
    module.save_into(&mut store).map_err(|e| {
        FinetuneError::Weights(FolderError::Load {
            path: path.to_path_buf(),
            msg: format!("cannot save: {e}"),
        })
    })
}
