//! The model being fine-tuned: a feature-vector [`Backbone`] (the hand-written
//! [`InceptionV3`], or any TF2 image feature-vector SavedModel run by the graph executor as a
//! trainable [`KerasLayer`]), dropout and a `Linear(feature_dim -> num_classes)` head (logits;
//! softmax cross-entropy loss), and its export: an `inception_v3` model folder, or a
//! [`GRAPH_CLASSIFIER_KIND`] folder (the fine-tuned SavedModel and the head), both loadable by
//! `classify`.
//!
//! Batch-norm policy (TF Hub): by default the backbone's batch norms use their stored
//! moving statistics, even while training ([`BatchNormPolicy::Frozen`]; a graph backbone runs
//! its inference trace, `training=False`). [`BatchNormPolicy::Train`] uses batch statistics
//! and updates the moving averages with the TF convention
//! `moving = momentum * moving + (1 - momentum) * batch` (TF Hub's `batch_norm_momentum`,
//! default 0.99); a graph backbone runs its `training=True` trace, whose own assignments
//! (the momentum the model was exported with) update the moving averages, as Keras' `fit`
//! does. Burn's own `BatchNorm` uses the opposite convention (`momentum` = weight of the new
//! batch, default 0.1), so TF 0.99 would be Burn 0.01; the slim batch norm of
//! [`InceptionV3`] takes the TF value directly.

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
use tfgraph::{KerasLayer, LayerUpdates, Value};

/// The kind (`config.json`) of a fine-tuned graph model's folder: `backbone/` (the SavedModel
/// with its fine-tuned variables), `head.safetensors` (`weight` `[feature_dim, classes]`,
/// `bias`), `labels.txt`.
pub const GRAPH_CLASSIFIER_KIND: &str = "graph_classifier";
/// The SavedModel folder inside a [`GRAPH_CLASSIFIER_KIND`] folder or a checkpoint.
pub const GRAPH_BACKBONE_DIR: &str = "backbone";

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

/// A TF2 image feature-vector SavedModel as a trainable backbone: images `[B, S, S, 3]` in
/// `[0, 1]` to features `[B, feature_dim]`.
#[derive(Module, Debug)]
pub struct GraphBackbone {
    pub layer: KerasLayer,
    /// Batch statistics while training (the `training=True` trace).
    #[module(skip)]
    pub batch_stats: bool,
    #[module(skip)]
    pub feature_dim: usize,
    /// The side of the images it takes.
    #[module(skip)]
    pub image_size: usize,
}

impl GraphBackbone {
    /// Opens the SavedModel in `dir` (trainable on an autodiff `device`) for images of side
    /// `image_size` (default: the size its input signature fixes, else 224; a size the
    /// signature does not allow is refused).
    pub fn open(
        dir: &Path,
        bn: BatchNormPolicy,
        image_size: Option<usize>,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        let graph_err = |e: tfgraph::Error| FinetuneError::Graph {
            path: dir.to_path_buf(),
            msg: e.to_string(),
        };
        let batch_stats = matches!(bn, BatchNormPolicy::Train { .. });
        let layer = KerasLayer::open(dir, device, true).map_err(graph_err)?;
        if batch_stats && !layer.has_training_trace() {
            return Err(FinetuneError::Graph {
                path: dir.to_path_buf(),
                msg: "the SavedModel has no __call__(training=True) trace, so its batch norms                       cannot use batch statistics; train without --train-batch-norm"
                    .into(),
            });
        }
        let entry = layer.entry();
        let dims = match entry.inputs.as_slice() {
            [one] if one.dtype.is_float() => one.shape.clone().unwrap_or(vec![-1, -1, -1, 3]),
            _ => {
                return Err(FinetuneError::Graph {
                    path: dir.to_path_buf(),
                    msg: format!(
                        "its {} does not take one batch of float images [batch, height, width, 3]",
                        entry.label()
                    ),
                })
            }
        };
        if dims.len() != 4 || !(dims[3] == 3 || dims[3] == -1) {
            return Err(FinetuneError::Graph {
                path: dir.to_path_buf(),
                msg: format!(
                    "its input has shape {dims:?}; fine-tuning needs images [batch, height, width, 3]"
                ),
            });
        }
        let fixed = (dims[1] > 0 && dims[1] == dims[2]).then_some(dims[1] as usize);
        let probe_size = match (fixed, image_size) {
            (Some(f), Some(s)) if f != s => {
                return Err(FinetuneError::Options(format!(
                    "{}: the model takes {f}x{f} images; --image-size {s} does not fit",
                    dir.display()
                )))
            }
            (Some(f), _) => f,
            (None, Some(s)) => s,
            (None, None) => 224,
        };
        let mut b = GraphBackbone {
            layer,
            batch_stats,
            feature_dim: 0,
            image_size: probe_size,
        };
        // The feature width: one probe image through the inference trace.
        let x = Tensor::<4>::zeros([1, probe_size, probe_size, 3], &device.clone().inner());
        let probe = b.layer.valid();
        let (f, _) = GraphBackbone {
            layer: probe,
            batch_stats: false,
            feature_dim: 0,
            image_size: probe_size,
        }
        .features(x)
        .map_err(|e| FinetuneError::Graph {
            path: dir.to_path_buf(),
            msg: format!("on a {probe_size}x{probe_size} image: {e}"),
        })?;
        b.feature_dim = f.dims()[1];
        Ok(b)
    }

    /// Features `[B, feature_dim]` and, for the training trace, the batch-norm updates to
    /// apply after the step. Batch statistics only while training on an autodiff device.
    pub fn features(
        &self,
        images: Tensor<4>,
    ) -> Result<(Tensor<2>, Option<LayerUpdates>), FinetuneError> {
        let device = images.device();
        let training = self.batch_stats && device.is_autodiff();
        let graph_err = |e: tfgraph::Error| FinetuneError::Graph {
            path: self.layer.source().to_path_buf(),
            msg: e.to_string(),
        };
        let (outs, updates) = self
            .layer
            .forward_values_in(vec![Value::Dev(images.into_dispatch())], &device, training)
            .map_err(graph_err)?;
        let shape = outs.first().map(|v| v.shape());
        let t = match outs.into_iter().next() {
            Some(Value::Dev(t)) if shape.as_ref().is_some_and(|s| s.len() == 2) => {
                Tensor::<2>::from_dispatch(t)
            }
            _ => {
                return Err(FinetuneError::Graph {
                    path: self.layer.source().to_path_buf(),
                    msg: format!(
                        "the model's first output has shape {shape:?}; a feature-vector model \
                         gives [batch, features]"
                    ),
                })
            }
        };
        Ok((t, training.then_some(updates)))
    }
}

/// What the head sits on.
#[derive(Module, Debug)]
pub enum Backbone {
    /// The hand-written Inception-v3 (TF-Slim checkpoints).
    Inception(InceptionV3),
    /// Any TF2 image feature-vector SavedModel, through the graph executor.
    Graph(GraphBackbone),
}

impl Backbone {
    /// The image side a graph backbone takes (`None`: Inception-v3 takes any size from 75).
    pub fn image_size(&self) -> Option<usize> {
        match self {
            Backbone::Inception(_) => None,
            Backbone::Graph(g) => Some(g.image_size),
        }
    }

    pub fn feature_dim(&self) -> usize {
        match self {
            Backbone::Inception(m) => m.config().feature_dim(),
            Backbone::Graph(g) => g.feature_dim,
        }
    }

    /// Features `[B, feature_dim]` for images `[B, H, W, 3]` in `[0, 1]`, and the batch-norm
    /// updates a graph backbone's training trace made (applied by
    /// [`ImageClassifier::with_updates`] after the step).
    pub fn features(
        &self,
        images: Tensor<4>,
    ) -> Result<(Tensor<2>, Option<LayerUpdates>), FinetuneError> {
        match self {
            Backbone::Inception(m) => Ok((m.features(images)?, None)),
            Backbone::Graph(g) => g.features(images),
        }
    }

    /// The backbone with no gradients into its parameters.
    pub fn frozen(self) -> Self {
        match self {
            Backbone::Inception(m) => Backbone::Inception(m.no_grad()),
            Backbone::Graph(mut g) => {
                g.layer = g.layer.no_grad();
                Backbone::Graph(g)
            }
        }
    }

    /// The hand-written Inception-v3, if that is the backbone.
    pub fn inception(&self) -> Option<&InceptionV3> {
        match self {
            Backbone::Inception(m) => Some(m),
            Backbone::Graph(_) => None,
        }
    }
}

/// [`Backbone`] feature vector -> dropout -> `Linear(feature_dim -> num_classes)`.
#[derive(Module, Debug)]
pub struct ImageClassifier {
    pub backbone: Backbone,
    pub dropout: Dropout,
    /// Dense head; weight `[feature_dim, num_classes]` (TF Dense kernel layout).
    pub head: Linear,
}

impl ImageClassifier {
    /// A randomly initialised Inception-v3 backbone built from `backbone_config` (its
    /// `num_classes` is ignored: the backbone gives the feature vector) and a new head.
    pub fn new(
        backbone_config: &InceptionV3Config,
        num_classes: usize,
        dropout_rate: f64,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        let mut cfg = backbone_config.clone();
        cfg.num_classes = None;
        let backbone = cfg.init(device)?;
        Self::from_backbone(
            Backbone::Inception(backbone),
            num_classes,
            dropout_rate,
            device,
        )
    }

    /// A new head (Keras' Dense initialisation: Glorot uniform kernel, zero bias; drawn from
    /// the device's generator) on an existing backbone (an Inception classifier's logits
    /// layer is dropped).
    pub fn from_backbone(
        backbone: Backbone,
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
        let backbone = match backbone {
            Backbone::Inception(m) => Backbone::Inception(m.with_classes(None, device)),
            g => g,
        };
        let dim = backbone.feature_dim();
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
        Self::from_backbone(
            Backbone::Inception(backbone),
            num_classes,
            dropout_rate,
            device,
        )
    }

    /// Any TF2 image feature-vector SavedModel in `dir` as the backbone (run by the graph
    /// executor, trainable), with the given batch-norm policy; `image_size`: see
    /// [`GraphBackbone::open`].
    pub fn from_saved_model(
        dir: &Path,
        num_classes: usize,
        dropout_rate: f64,
        bn: BatchNormPolicy,
        image_size: Option<usize>,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        let backbone = GraphBackbone::open(dir, bn, image_size, device)?;
        Self::from_backbone(Backbone::Graph(backbone), num_classes, dropout_rate, device)
    }

    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Logits `[B, num_classes]` for images `[B, H, W, 3]` in `[0, 1]`, and the batch-norm
    /// updates of a graph backbone's training trace (for [`ImageClassifier::with_updates`]).
    pub fn forward(
        &self,
        images: Tensor<4>,
    ) -> Result<(Tensor<2>, Option<LayerUpdates>), FinetuneError> {
        let (features, updates) = self.backbone.features(images)?;
        Ok((self.forward_head(features), updates))
    }

    /// The head on features `[B, feature_dim]` (dropout is active only while training on
    /// an autodiff device).
    pub fn forward_head(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(self.dropout.forward(features))
    }

    /// The model with a graph backbone's batch-norm updates applied (as Keras applies a
    /// training call's assignments after it).
    pub fn with_updates(mut self, updates: Option<LayerUpdates>) -> Self {
        if let (Some(u), Backbone::Graph(g)) = (updates, &mut self.backbone) {
            g.layer = g.layer.clone().with_updates(u);
        }
        self
    }

    /// The same network as a plain [`InceptionV3`] classifier whose `Logits/Conv2d_1c_1x1`
    /// is the Dense head (a 1x1 convolution is a dense layer), batch norms frozen.
    /// Identical outputs as long as the last feature map is at most 8x8 (input side up to
    /// about 330), where slim's head average pool is a global mean. `None` for a graph
    /// backbone.
    pub fn to_inception(&self) -> Option<InceptionV3> {
        let backbone = self.backbone.inception()?;
        let device = self.head.weight.device();
        let k = self.num_classes();
        let mut net = backbone.clone().with_classes(Some(k), &device);
        let dim = net.config().feature_dim();
        if let Some(conv) = net.logits.as_mut() {
            let w = self.head.weight.val().transpose().reshape([k, dim, 1, 1]);
            conv.weight = Param::from_tensor(w);
            conv.bias = self.head.bias.as_ref().map(|b| Param::from_tensor(b.val()));
        }
        net.config.train_batch_norm = false;
        net.config.dropout_keep_prob = 1.0 - self.dropout.prob;
        Some(net)
    }

    /// Writes a model folder into `dir` (created if needed) that `classify` loads, with
    /// `labels.txt` (one class name per line, line i = logit i) and `config.json` (written
    /// last): for Inception-v3 an `inception_v3` folder (`model.safetensors`); for a graph
    /// backbone a [`GRAPH_CLASSIFIER_KIND`] folder (`backbone/`: the SavedModel with its
    /// fine-tuned variables, which TensorFlow loads too; `head.safetensors`). Each file goes to
    /// a temporary name first and is then renamed; other files in `dir` (checkpoints, metrics)
    /// are left alone.
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
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let model = self.valid();
        let config = match &model.backbone {
            Backbone::Inception(_) => {
                let Some(net) = model.to_inception() else {
                    unreachable!("an Inception backbone converts")
                };
                save_safetensors(&net, &dir.join("model.safetensors"))?;
                model_folder::FolderConfig::new(INCEPTION_KIND, net.config(), "finetune")
            }
            Backbone::Graph(g) => {
                g.write_saved_model(&dir.join(GRAPH_BACKBONE_DIR))?;
                save_safetensors(&model.head, &dir.join(HEAD_FILE))?;
                model_folder::FolderConfig::new(
                    GRAPH_CLASSIFIER_KIND,
                    GraphClassifierConfig {
                        backbone: GRAPH_BACKBONE_DIR.into(),
                        feature_dim: g.feature_dim,
                        classes: self.num_classes(),
                    },
                    "finetune",
                )
            }
        }
        .map_err(|e| FinetuneError::Options(format!("config.json: {e}")))?;
        let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
        write_atomic(&dir.join("labels.txt"), text.as_bytes())?;
        write_atomic(&dir.join("config.json"), &config.to_bytes())?;
        Ok(())
    }
}

/// The head of a [`GRAPH_CLASSIFIER_KIND`] folder.
pub const HEAD_FILE: &str = "head.safetensors";

/// `config.json` of a [`GRAPH_CLASSIFIER_KIND`] folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphClassifierConfig {
    /// The SavedModel folder (relative).
    pub backbone: String,
    pub feature_dim: usize,
    pub classes: usize,
}

/// A [`GRAPH_CLASSIFIER_KIND`] folder opened for inference (by `classify`): the fine-tuned
/// SavedModel's folder and the head, every size checked against `config.json` before the head
/// is read.
pub struct GraphClassifierFolder {
    /// The SavedModel (feature vector) folder.
    pub backbone: std::path::PathBuf,
    pub config: GraphClassifierConfig,
    /// `Linear(feature_dim -> classes)`.
    pub head: Linear,
}

impl GraphClassifierFolder {
    pub fn open(dir: &Path, device: &Device) -> Result<Self, FinetuneError> {
        let folder = ModelFolder::open(dir, GRAPH_CLASSIFIER_KIND)?;
        let config: GraphClassifierConfig = folder.config()?;
        let bad = |msg: String| {
            FinetuneError::Weights(FolderError::Load {
                path: dir.join("config.json"),
                msg,
            })
        };
        if config.backbone != GRAPH_BACKBONE_DIR {
            return Err(bad(format!(
                "backbone {:?}: expected {GRAPH_BACKBONE_DIR:?}",
                config.backbone
            )));
        }
        let limit = 1usize << 24;
        if config.feature_dim == 0
            || config.feature_dim > limit
            || config.classes == 0
            || config.classes > limit
        {
            return Err(bad(format!(
                "feature_dim {} and classes {} must be in 1..={limit}",
                config.feature_dim, config.classes
            )));
        }
        let (d, k) = (config.feature_dim, config.classes);
        models::weights::expect_shape(&folder, HEAD_FILE, "weight", &[d, k])?;
        models::weights::expect_shape(&folder, HEAD_FILE, "bias", &[k])?;
        let head =
            models::weights::load_into(&folder, LinearConfig::new(d, k).init(device), HEAD_FILE)?;
        Ok(GraphClassifierFolder {
            backbone: dir.join(GRAPH_BACKBONE_DIR),
            config,
            head,
        })
    }
}

impl GraphBackbone {
    /// The inference graph of the SavedModel the layer was loaded from, loaded on its own
    /// onto `device` (on flex: the CPU engine, batch norms folded): the same function as the
    /// layer as long as its variables are those of that SavedModel (a frozen backbone, whose
    /// features are computed once).
    pub fn frozen_features_model(&self, device: &Device) -> Result<tfgraph::Model, FinetuneError> {
        let dir = self.layer.source();
        let err = |msg: String| FinetuneError::Graph {
            path: dir.to_path_buf(),
            msg,
        };
        let sm = savedmodel::read(dir).map_err(|e| err(e.to_string()))?;
        tfgraph::Model::load(&sm, None, device).map_err(|e| err(e.to_string()))
    }

    /// Writes the backbone's SavedModel with its current variables into `dir`.
    pub fn write_saved_model(&self, dir: &Path) -> Result<(), FinetuneError> {
        self.layer
            .write_saved_model(dir)
            .map_err(|e| FinetuneError::Graph {
                path: dir.to_path_buf(),
                msg: e.to_string(),
            })
    }
}

/// Writes `module` as safetensors through a temporary file renamed onto `path`.
fn save_safetensors<M: ModuleSnapshot>(module: &M, path: &Path) -> Result<(), FinetuneError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let mut store = SafetensorsStore::from_file(tmp.clone());
    if let Err(e) = module.save_into(&mut store) {
        let _ = std::fs::remove_file(&tmp);
        return Err(FinetuneError::Weights(FolderError::Load {
            path: path.to_path_buf(),
            msg: format!("cannot save: {e}"),
        }));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })
}
