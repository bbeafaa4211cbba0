//! Fine-tuning Inception-v3 on a folder of images, as the TF Hub blog does with
//! `hub.KerasLayer(feature_vector, trainable=...)` + `Dropout(0.2)` + `Dense(num_classes)`.
//!
//! - [`ImageClassifier`]: an [`InceptionV3`] feature-vector backbone, dropout and a
//!   `Linear(feature_dim -> num_classes)` head (logits; softmax cross-entropy loss).
//! - [`ImageFolder`]: one sub-folder per class (sorted names = class indices). Files whose
//!   extension is not `.jpg`/`.jpeg`/`.png` are ignored; image files whose header cannot be
//!   read are **skipped with a warning** (listed in [`ImageFolder::skipped`]); an image that
//!   fails to decode later, during training, is an error naming the file.
//! - [`Trainer`]: Adam (Keras epsilon 1e-7), one epoch at a time, validation per epoch,
//!   checkpoints (model + optimizer state + epoch counter + report) and export as an
//!   `inception_v3` model folder with `labels.txt` (loadable by [`InceptionV3::load`]).
//!
//! Batch-norm policy (TF Hub): by default the backbone's batch norms use their stored
//! moving statistics, even while training ([`BatchNormPolicy::Frozen`]).
//! [`BatchNormPolicy::Train`] uses batch statistics and updates the moving averages with
//! the TF convention `moving = momentum * moving + (1 - momentum) * batch` (TF Hub's
//! `batch_norm_momentum`, default 0.99). Burn's own `BatchNorm` uses the opposite
//! convention (`momentum` = weight of the new batch, default 0.1), so TF 0.99 would be
//! Burn 0.01; the slim batch norm of [`InceptionV3`] takes the TF value directly.
//!
//! When neither the backbone nor its batch norms are trained, the backbone is a fixed
//! function: its features are computed once per image (without autodiff) and cached, and
//! only the head is trained. Results are the same as running the backbone every step.

use crate::imageops::{self, Image, ImageError};
use crate::inception_v3::{InceptionError, InceptionV3, InceptionV3Config, KIND as INCEPTION_KIND};
use crate::report::{EpochRecord, ReportError, TrainingReport};
use crate::weights::{FolderError, ModelFolder};
use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Image file extensions read from the data folder (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: data folder has no class sub-folders (expected one sub-folder of images per class)")]
    NoClasses { path: PathBuf },
    #[error("{path}: class folder holds no readable .jpg/.jpeg/.png image")]
    EmptyClass { path: PathBuf },
    #[error("{path}: cannot decode image: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Model(#[from] InceptionError),
    #[error(transparent)]
    Weights(#[from] FolderError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{path}: invalid checkpoint: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Data

/// A folder with one sub-folder of images per class.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// Class names (sub-folder names, sorted); the index is the label.
    pub classes: Vec<String>,
    /// `(file, class index)`, sorted by class then file name.
    pub items: Vec<(PathBuf, usize)>,
    /// Image files skipped because their header could not be read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl ImageFolder {
    /// Lists the classes and images of `root`. Errors: `root` missing or not a folder, no
    /// class sub-folder, a class without any readable image.
    pub fn scan(root: impl AsRef<Path>) -> Result<Self, FinetuneError> {
        let root = root.as_ref().to_path_buf();
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(io(&root))? {
            let entry = entry.map_err(io(&root))?;
            let path = entry.path();
            if path.is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    dirs.push((name, path));
                }
            }
        }
        dirs.sort();
        if dirs.is_empty() {
            return Err(FinetuneError::NoClasses { path: root });
        }
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        let mut classes = Vec::new();
        for (class, (name, dir)) in dirs.into_iter().enumerate() {
            let mut files: Vec<PathBuf> = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let path = entry.map_err(io(&dir))?.path();
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                if path.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    files.push(path);
                }
            }
            files.sort();
            let mut n = 0;
            for f in files {
                match image::ImageReader::open(&f).and_then(|r| r.with_guessed_format()) {
                    Ok(r) => match r.into_dimensions() {
                        Ok(_) => {
                            items.push((f, class));
                            n += 1;
                        }
                        Err(e) => skipped.push((f, e.to_string())),
                    },
                    Err(e) => skipped.push((f, e.to_string())),
                }
            }
            if n == 0 {
                return Err(FinetuneError::EmptyClass { path: dir });
            }
            classes.push(name);
        }
        Ok(ImageFolder {
            root,
            classes,
            items,
            skipped,
        })
    }

    /// Seeded, stratified split: in each class, `round(n * fraction)` images (at most n - 1)
    /// go to validation. Returns `(train, validation)` indices into `items`, both shuffled.
    pub fn split(&self, validation_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let mut rng = SplitMix64(seed);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for c in 0..self.classes.len() {
            let mut idx: Vec<usize> = (0..self.items.len())
                .filter(|&i| self.items[i].1 == c)
                .collect();
            rng.shuffle(&mut idx);
            let n_val = ((idx.len() as f64 * validation_fraction).round() as usize)
                .min(idx.len().saturating_sub(1));
            val.extend_from_slice(&idx[..n_val]);
            train.extend_from_slice(&idx[n_val..]);
        }
        rng.shuffle(&mut train);
        rng.shuffle(&mut val);
        (train, val)
    }
}

/// Decodes an image file, resizes it (bilinear) to `size x size` and returns HWC RGB
/// values in `[0, 1]`.
pub fn load_image(path: &Path, size: usize) -> Result<Vec<f32>, FinetuneError> {
    let img = imageops::decode_rgb8(path).map_err(|e| match e {
        ImageError::Read { path, source } => FinetuneError::Io { path, source },
        ImageError::Decode { path, msg } => FinetuneError::Image { path, msg },
    })?;
    Ok(image_to_tensor_data(&img, size))
}

/// `u8 * (1/255)` (TF `convert_image_dtype`), then resized to `size x size` like
/// `tf.image.resize(..., "bilinear", antialias=False)` (half-pixel centres): HWC RGB in
/// `[0, 1]`. The same preprocessing as `classify` (without central crop); see [`imageops`].
pub fn image_to_tensor_data(img: &image::RgbImage, size: usize) -> Vec<f32> {
    Image::from_rgb8(img).resize_bilinear(size, size).data
}

/// Small deterministic generator for seeded shuffles (kept here for existing users).
pub use crate::rng::SplitMix64;

// ---------------------------------------------------------------------------------------------
// Model

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
        crate::report::write_atomic(&dir.join("labels.txt"), text.as_bytes())?;
        let config = serde_json::json!({
            "kind": INCEPTION_KIND,
            "config": net.config(),
            "source": "finetune",
            "converter_version": env!("CARGO_PKG_VERSION"),
        });
        crate::report::write_atomic(
            &dir.join("config.json"),
            &serde_json::to_vec_pretty(&config).unwrap_or_default(),
        )?;
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

fn sibling_tmp(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dir.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Renames `tmp` onto `dir`, replacing an existing `dir`.
fn replace_dir(tmp: &Path, dir: &Path) -> Result<(), FinetuneError> {
    if dir.exists() {
        let old = dir.with_file_name(format!(
            ".{}.old{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(dir, &old).map_err(io(dir))?;
        std::fs::rename(tmp, dir).map_err(io(dir))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(tmp, dir).map_err(io(dir))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Training

/// Options of a fine-tuning run (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneOptions {
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Train the whole network (otherwise only the head).
    pub train_backbone: bool,
    pub batch_norm: BatchNormPolicy,
    pub validation_fraction: f64,
    pub seed: u64,
    /// Images are resized to `image_size x image_size` (>= 75).
    pub image_size: usize,
    /// Dropout before the head (the TF Hub blog uses 0.2).
    pub dropout_rate: f64,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            batch_size: 32,
            learning_rate: 1e-3,
            train_backbone: false,
            batch_norm: BatchNormPolicy::Frozen,
            validation_fraction: 0.2,
            seed: 42,
            image_size: 299,
            dropout_rate: 0.2,
        }
    }
}

impl FinetuneOptions {
    pub fn validate(&self) -> Result<(), FinetuneError> {
        let bad = |m: String| Err(FinetuneError::Options(m));
        if self.batch_size == 0 {
            return bad("batch size must be > 0".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(format!(
                "learning rate must be > 0, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad(format!(
                "validation fraction must be in [0, 1), got {}",
                self.validation_fraction
            ));
        }
        if self.image_size < crate::inception_v3::MIN_INPUT_SIZE {
            return bad(format!(
                "image size must be >= {}, got {}",
                crate::inception_v3::MIN_INPUT_SIZE,
                self.image_size
            ));
        }
        if let BatchNormPolicy::Train { momentum } = self.batch_norm {
            if !(0.0..=1.0).contains(&momentum) {
                return bad(format!(
                    "batch-norm momentum must be in [0, 1], got {momentum}"
                ));
            }
        }
        Ok(())
    }

    /// Whether the backbone is a fixed function (features can be cached).
    pub fn frozen_backbone(&self) -> bool {
        !self.train_backbone && self.batch_norm == BatchNormPolicy::Frozen
    }
}

/// Progress of the current epoch, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub epoch: usize,
    /// Images processed so far in this phase, out of `total`.
    pub done: usize,
    pub total: usize,
    /// `"features"` (computing cached features), `"train"` or `"validate"`.
    pub phase: &'static str,
    /// Mean training loss so far in this epoch.
    pub loss: f64,
}

/// What a checkpoint folder's `checkpoint.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub epochs_done: usize,
    pub classes: Vec<String>,
    pub options: FinetuneOptions,
    pub backbone_config: InceptionV3Config,
    pub metrics: serde_json::Value,
}

/// A fine-tuning run: model on an autodiff device, Adam state, epoch counter, report.
pub struct Trainer {
    pub model: ImageClassifier,
    optim: ModuleOptimizer,
    pub options: FinetuneOptions,
    pub classes: Vec<String>,
    pub report: TrainingReport,
    /// Completed epochs (epoch numbers continue from here).
    pub epochs_done: usize,
    device: Device,
    /// Cached backbone features by item path (frozen backbone only).
    feature_cache: HashMap<PathBuf, Vec<f32>>,
}

fn adam() -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(1e-7).init()
}

impl Trainer {
    /// `model` may live on any device; it is moved to `device` (an autodiff device) and
    /// its backbone frozen unless `options.train_backbone`.
    pub fn new(
        model: ImageClassifier,
        classes: Vec<String>,
        options: FinetuneOptions,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        options.validate()?;
        if classes.len() != model.num_classes() {
            return Err(FinetuneError::Options(format!(
                "{} classes for a {}-class head",
                classes.len(),
                model.num_classes()
            )));
        }
        if !device.is_autodiff() {
            return Err(FinetuneError::Options(
                "training needs an autodiff device (`device.autodiff()`)".into(),
            ));
        }
        let model = Self::prepare(model, &options, device);
        Ok(Trainer {
            model,
            optim: adam(),
            options,
            classes,
            report: TrainingReport::new(),
            epochs_done: 0,
            device: device.clone(),
            feature_cache: HashMap::new(),
        })
    }

    fn prepare(
        model: ImageClassifier,
        options: &FinetuneOptions,
        device: &Device,
    ) -> ImageClassifier {
        // Through a plain device: `train()` on parameters created on an autodiff device panics.
        let mut model = model.valid().to_device(device).train();
        if !options.train_backbone {
            model.backbone = model.backbone.no_grad();
        }
        model
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Images `[B, S, S, 3]` and labels `[B]` for the given items.
    fn load_batch(
        &self,
        data: &ImageFolder,
        idx: &[usize],
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<1, Int>), FinetuneError> {
        let s = self.options.image_size;
        let mut pixels = Vec::with_capacity(idx.len() * s * s * 3);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            let (path, label) = &data.items[i];
            pixels.extend(load_image(path, s)?);
            labels.push(*label as i64);
        }
        Ok((
            Tensor::from_data(TensorData::new(pixels, [idx.len(), s, s, 3]), device),
            Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
        ))
    }

    /// Fills the feature cache for `idx` (frozen backbone, run without autodiff).
    fn cache_features(
        &mut self,
        data: &ImageFolder,
        idx: &[usize],
        epoch: usize,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), FinetuneError> {
        let missing: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| !self.feature_cache.contains_key(&data.items[i].0))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let backbone = self.model.backbone.valid();
        let inner = backbone.conv2d_1a_3x3.conv.weight.device();
        let mut done = 0;
        for chunk in missing.chunks(self.options.batch_size) {
            let (x, _) = self.load_batch(data, chunk, &inner)?;
            let f = backbone.features(x)?;
            let [_, d] = f.dims();
            let v = f
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| FinetuneError::Options(format!("{e:?}")))?;
            for (k, &i) in chunk.iter().enumerate() {
                self.feature_cache
                    .insert(data.items[i].0.clone(), v[k * d..(k + 1) * d].to_vec());
            }
            done += chunk.len();
            progress(Progress {
                epoch,
                done,
                total: missing.len(),
                phase: "features",
                loss: 0.0,
            });
        }
        Ok(())
    }

    fn cached(
        &self,
        data: &ImageFolder,
        idx: &[usize],
        device: &Device,
    ) -> (Tensor<2>, Tensor<1, Int>) {
        let d = self.model.backbone.config().feature_dim();
        let mut v = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            v.extend_from_slice(&self.feature_cache[&data.items[i].0]);
        }
        let labels: Vec<i64> = idx.iter().map(|&i| data.items[i].1 as i64).collect();
        (
            Tensor::from_data(TensorData::new(v, [idx.len(), d]), device),
            Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
        )
    }

    /// One training step on items `idx`; returns `(sum of losses, correct predictions)`.
    pub fn step(
        &mut self,
        data: &ImageFolder,
        idx: &[usize],
    ) -> Result<(f64, usize), FinetuneError> {
        let device = self.device.clone();
        let (logits, labels) = if self.options.frozen_backbone() {
            self.cache_features(data, idx, self.epochs_done + 1, &mut |_| {})?;
            let (f, y) = self.cached(data, idx, &device);
            (self.model.forward_head(f), y)
        } else {
            let (x, y) = self.load_batch(data, idx, &device)?;
            (self.model.forward(x)?, y)
        };
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(logits.clone(), labels.clone());
        let correct = count_correct(logits.detach(), labels);
        let loss_value = scalar(loss.clone().detach());
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let model = self.model.clone();
        self.model = self.optim.step(self.options.learning_rate, model, grads);
        Ok((loss_value * idx.len() as f64, correct))
    }

    /// Mean loss and accuracy of the current model on `idx` (inference mode).
    pub fn evaluate(
        &mut self,
        data: &ImageFolder,
        idx: &[usize],
        epoch: usize,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(f64, f64), FinetuneError> {
        if idx.is_empty() {
            return Ok((f64::NAN, f64::NAN));
        }
        let eval = self.model.valid();
        let inner = eval.head.weight.device();
        let (mut loss_sum, mut correct, mut done) = (0.0, 0usize, 0usize);
        let frozen = self.options.frozen_backbone();
        if frozen {
            self.cache_features(data, idx, epoch, progress)?;
        }
        for chunk in idx.chunks(self.options.batch_size) {
            let (logits, y) = if frozen {
                let (f, y) = self.cached(data, chunk, &inner);
                (eval.forward_head(f), y)
            } else {
                let (x, y) = self.load_batch(data, chunk, &inner)?;
                (eval.forward(x)?, y)
            };
            let loss = CrossEntropyLossConfig::new()
                .init(&inner)
                .forward(logits.clone(), y.clone());
            loss_sum += scalar(loss) * chunk.len() as f64;
            correct += count_correct(logits, y);
            done += chunk.len();
            progress(Progress {
                epoch,
                done,
                total: idx.len(),
                phase: "validate",
                loss: 0.0,
            });
        }
        Ok((
            loss_sum / idx.len() as f64,
            correct as f64 / idx.len() as f64,
        ))
    }

    /// Trains one epoch over `train` (shuffled with the seed and the epoch number), then
    /// evaluates on `val`; appends the record to the report and returns it.
    pub fn train_epoch(
        &mut self,
        data: &ImageFolder,
        train: &[usize],
        val: &[usize],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<EpochRecord, FinetuneError> {
        if train.is_empty() {
            return Err(FinetuneError::Options("no training images".into()));
        }
        let epoch = self.epochs_done + 1;
        let start = Instant::now();
        if self.options.frozen_backbone() {
            self.cache_features(data, train, epoch, progress)?;
        }
        let mut order = train.to_vec();
        SplitMix64(self.options.seed ^ (epoch as u64).wrapping_mul(0x2545_F491_4F6C_DD1D))
            .shuffle(&mut order);
        let (mut loss_sum, mut correct, mut done) = (0.0, 0usize, 0usize);
        for chunk in order.chunks(self.options.batch_size) {
            let (l, c) = self.step(data, chunk)?;
            loss_sum += l;
            correct += c;
            done += chunk.len();
            progress(Progress {
                epoch,
                done,
                total: order.len(),
                phase: "train",
                loss: loss_sum / done as f64,
            });
        }
        let (val_loss, val_acc) = self.evaluate(data, val, epoch, progress)?;
        let record = EpochRecord {
            epoch,
            loss: loss_sum / done as f64,
            accuracy: correct as f64 / done as f64,
            val_loss: (!val.is_empty()).then_some(val_loss),
            val_accuracy: (!val.is_empty()).then_some(val_acc),
            seconds: start.elapsed().as_secs_f64(),
            train_seconds: None,
        };
        self.report.push(record.clone());
        self.epochs_done = epoch;
        Ok(record)
    }

    /// Writes a checkpoint folder: `model.bpk` (Burn record, parameter ids kept so the
    /// optimizer state matches), `optimizer.bpk` (Adam moments), `checkpoint.json`
    /// (epoch counter, classes, options, backbone config, metrics). Atomic (temp + rename).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), FinetuneError> {
        let tmp = sibling_tmp(dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let result = (|| {
            let p = tmp.join("model.bpk");
            self.model
                .valid()
                .save_file(&p)
                .map_err(|e| FinetuneError::Checkpoint {
                    path: p.clone(),
                    msg: format!("cannot save model: {e}"),
                })?;
            let p = tmp.join("optimizer.bpk");
            self.optim.save(&p).map_err(|e| FinetuneError::Checkpoint {
                path: p.clone(),
                msg: format!("cannot save optimizer: {e}"),
            })?;
            let state = CheckpointState {
                epochs_done: self.epochs_done,
                classes: self.classes.clone(),
                options: self.options.clone(),
                backbone_config: self.model.backbone.config().clone(),
                metrics: self.report.to_json(),
            };
            let p = tmp.join("checkpoint.json");
            std::fs::write(&p, serde_json::to_vec_pretty(&state).unwrap_or_default())
                .map_err(io(&p))?;
            replace_dir(&tmp, dir)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Restores a run from a checkpoint folder onto the autodiff `device`; training goes on
    /// from epoch `epochs_done + 1` with the saved options, classes and metrics.
    pub fn resume(dir: &Path, device: &Device) -> Result<Self, FinetuneError> {
        let p = dir.join("checkpoint.json");
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| FinetuneError::Checkpoint {
                path: p.clone(),
                msg: e.to_string(),
            })?;
        let report =
            TrainingReport::from_json(&state.metrics).map_err(|msg| FinetuneError::Checkpoint {
                path: p.clone(),
                msg,
            })?;
        let model = ImageClassifier::new(
            &state.backbone_config,
            state.classes.len(),
            state.options.dropout_rate,
            device,
        )?;
        let mp = dir.join("model.bpk");
        if !mp.is_file() {
            return Err(FinetuneError::Checkpoint {
                path: mp,
                msg: "file not found".into(),
            });
        }
        let model = model
            .try_load_file(&mp)
            .map_err(|e| FinetuneError::Checkpoint {
                path: mp.clone(),
                msg: format!("cannot load model: {e}"),
            })?;
        let mut trainer = Trainer::new(model, state.classes, state.options, device)?;
        let op = dir.join("optimizer.bpk");
        if !op.is_file() {
            return Err(FinetuneError::Checkpoint {
                path: op,
                msg: "file not found".into(),
            });
        }
        let optim = adam().load(&op).map_err(|e| FinetuneError::Checkpoint {
            path: op.clone(),
            msg: format!("cannot load optimizer: {e}"),
        })?;
        trainer.optim = optim;
        trainer.report = report;
        trainer.epochs_done = state.epochs_done;
        Ok(trainer)
    }

    /// Exports the current model (see [`ImageClassifier::export`]).
    pub fn export(&self, dir: &Path) -> Result<(), FinetuneError> {
        self.model.export(dir, &self.classes)
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f32::NAN) as f64
}

fn count_correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let [b, _] = logits.dims();
    let pred = logits.argmax(1).reshape([b]);
    pred.equal(labels)
        .int()
        .sum()
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_stratified_and_disjoint() {
        let mut items = Vec::new();
        for c in 0..3 {
            for i in 0..10 {
                items.push((PathBuf::from(format!("{c}/{i}.png")), c));
            }
        }
        let data = ImageFolder {
            root: "x".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            items,
            skipped: vec![],
        };
        let (t1, v1) = data.split(0.2, 7);
        let (t2, v2) = data.split(0.2, 7);
        assert_eq!((t1.clone(), v1.clone()), (t2, v2));
        assert_eq!(v1.len(), 6);
        assert_eq!(t1.len(), 24);
        for c in 0..3 {
            assert_eq!(v1.iter().filter(|&&i| data.items[i].1 == c).count(), 2);
        }
        let mut all: Vec<usize> = t1.iter().chain(v1.iter()).copied().collect();
        all.sort();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        let (_, v3) = data.split(0.2, 8);
        assert_ne!(v1, v3);
    }

    #[test]
    fn resize_matches_tf_half_pixel_bilinear() {
        // tf.image.resize([[0,1],[2,3]] / 255 as [1,2,2,1], [4,4], "bilinear") (TF 2.21):
        // rows [0, .25, .75, 1], [.5, .75, 1.25, 1.5], ..., [2, 2.25, 2.75, 3] (times 1/255).
        let img = image::RgbImage::from_fn(2, 2, |x, y| {
            let v = (y * 2 + x) as u8;
            image::Rgb([v, v, v])
        });
        let out = image_to_tensor_data(&img, 4);
        let ch0: Vec<f32> = out.iter().step_by(3).map(|v| v * 255.0).collect();
        let want = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5];
        for (g, w) in ch0[..8].iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{ch0:?}");
        }
        assert!((ch0[15] - 3.0).abs() < 1e-4);
    }

    #[test]
    fn options_are_checked() {
        let o = FinetuneOptions {
            image_size: 60,
            ..Default::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("image size"));
        let o = FinetuneOptions {
            validation_fraction: 1.0,
            ..Default::default()
        };
        assert!(o.validate().is_err());
        assert!(FinetuneOptions::default().validate().is_ok());
    }
}
