//! The fine-tuning loop: [`Trainer`] runs Keras' Adam ([`KerasAdam`]) one epoch at a time
//! over an [`ImageFolder`], validates after each epoch, appends to its [`TrainingReport`],
//! writes checkpoints (model + optimizer state + epoch counter + report) and exports the
//! model (see [`ImageClassifier::export`]).
//!
//! When neither the backbone nor its batch norms are trained, the backbone is a fixed
//! function: its features are computed once per image (without autodiff) and cached, and
//! only the head is trained. Results are the same as running the backbone every step.

use crate::classifier::{Backbone, BatchNormPolicy, ImageClassifier, GRAPH_BACKBONE_DIR};
use crate::data::{load_image, ImageFolder, SplitMix64};
use crate::keras_adam::{param_ids, KerasAdam};
use crate::report::{EpochRecord, TrainingReport};
use crate::{io, FinetuneError};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor, TensorData};
use models::cpu::{InceptionV3Cpu, Nhwc};
use models::inception_v3::{InceptionV3Config, MIN_INPUT_SIZE};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    /// Images are resized to `image_size x image_size` (>= 75 for Inception-v3).
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
        if self.image_size == 0 {
            return bad("image size must be > 0".into());
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
    /// The Inception-v3 backbone's configuration (`None`: a graph backbone).
    #[serde(default)]
    pub backbone_config: Option<InceptionV3Config>,
    /// A graph backbone: its SavedModel, with the checkpoint's variable values, is the
    /// checkpoint's `backbone/` folder.
    #[serde(default)]
    pub graph_backbone: bool,
    pub metrics: serde_json::Value,
}

/// A fine-tuning run: model on an autodiff device, Adam state, epoch counter, report.
pub struct Trainer {
    pub model: ImageClassifier,
    optim: KerasAdam,
    pub options: FinetuneOptions,
    pub classes: Vec<String>,
    pub report: TrainingReport,
    /// Completed epochs (epoch numbers continue from here).
    pub epochs_done: usize,
    device: Device,
    /// Cached backbone features by item path (frozen backbone only).
    feature_cache: HashMap<PathBuf, Vec<f32>>,
    /// Decoded, resized images by item path, kept between epochs up to
    /// [`PIXEL_CACHE_BYTES`] (as `tf.data`'s `cache()`) when the backbone trains: a later
    /// epoch reads them from memory instead of decoding the files again. A frozen backbone
    /// reads each image once (its features are cached), so nothing is kept then.
    pixel_cache: Mutex<PixelCache>,
    /// How a frozen backbone's features are computed (chosen on first use).
    feature_engine: Option<FeatureEngine>,
    /// The checkpoint folder whose backbone files hold this run's frozen backbone: later
    /// checkpoints into the same folder link them instead of writing them again.
    frozen_backbone_saved: Mutex<Option<PathBuf>>,
}

/// Bytes of decoded images a [`Trainer`] keeps between epochs (about 900 images at 299x299).
pub const PIXEL_CACHE_BYTES: usize = 1 << 30;

/// Decoded images by path, for one image size, up to [`PIXEL_CACHE_BYTES`]; the first
/// images read stay, later ones are decoded each time once it is full.
#[derive(Default)]
struct PixelCache {
    size: usize,
    bytes: usize,
    images: HashMap<PathBuf, Arc<[f32]>>,
}

impl PixelCache {
    fn get(&self, path: &Path, size: usize) -> Option<Arc<[f32]>> {
        (self.size == size).then(|| self.images.get(path).cloned())?
    }

    fn insert(&mut self, path: &Path, size: usize, image: Arc<[f32]>) {
        if self.size != size {
            // Another image size: the images of the old one are of no use.
            *self = PixelCache {
                size,
                ..PixelCache::default()
            };
        }
        let bytes = image.len() * std::mem::size_of::<f32>();
        if self.images.contains_key(path) || self.bytes + bytes > PIXEL_CACHE_BYTES {
            return;
        }
        self.bytes += bytes;
        self.images.insert(path.to_path_buf(), image);
    }
}

/// The forward pass that fills the feature cache of a frozen backbone.
enum FeatureEngine {
    /// A graph backbone's inference graph, loaded on its own (on flex: the CPU engine).
    Graph(tfgraph::Model),
    /// The hand-written Inception-v3 compiled for the CPU kernels (batch norms folded), on a
    /// CPU device.
    Inception(Box<InceptionV3Cpu>),
    /// The backbone's own Burn forward pass (Inception-v3 on a GPU device).
    Burn,
}

impl FeatureEngine {
    fn new(backbone: &Backbone, device: &Device) -> Result<FeatureEngine, FinetuneError> {
        Ok(match backbone {
            Backbone::Graph(g) => FeatureEngine::Graph(g.frozen_features_model(device)?),
            Backbone::Inception(m) if models::cpu::serves(device) => {
                FeatureEngine::Inception(Box::new(InceptionV3Cpu::new(m)))
            }
            Backbone::Inception(_) => FeatureEngine::Burn,
        })
    }
}

/// The checkpoint file of the optimizer state.
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The checkpoint files of the model: the backbone's parameters and the head's. (Earlier
/// versions wrote both into `model.bpk`; such checkpoints still resume.)
const BACKBONE_FILE: &str = "backbone.bpk";
const HEAD_FILE: &str = "head.bpk";
const OLD_MODEL_FILE: &str = "model.bpk";

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
        if model.backbone.inception().is_some() && options.image_size < MIN_INPUT_SIZE {
            return Err(FinetuneError::Options(format!(
                "image size must be >= {MIN_INPUT_SIZE} for Inception-v3, got {}",
                options.image_size
            )));
        }
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
            optim: KerasAdam::new(options.learning_rate as f32),
            options,
            classes,
            report: TrainingReport::new(),
            epochs_done: 0,
            device: device.clone(),
            feature_cache: HashMap::new(),
            pixel_cache: Mutex::default(),
            feature_engine: None,
            frozen_backbone_saved: Mutex::new(None),
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
            model.backbone = model.backbone.frozen();
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
        let pixels = self.load_pixels(data, idx)?;
        let labels: Vec<i64> = idx.iter().map(|&i| data.items[i].1 as i64).collect();
        Ok((
            Tensor::from_data(TensorData::new(pixels, [idx.len(), s, s, 3]), device),
            Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
        ))
    }

    /// The pixels of items `idx`, `[B, S, S, 3]` row-major, the images decoded in parallel
    /// (the first unreadable one in `idx` order is the error).
    fn load_pixels(&self, data: &ImageFolder, idx: &[usize]) -> Result<Vec<f32>, FinetuneError> {
        use rayon::prelude::*;
        let s = self.options.image_size;
        let keep = !self.options.frozen_backbone();
        let cached: Vec<Option<Arc<[f32]>>> = {
            let cache = self.pixel_cache.lock().unwrap_or_else(|e| e.into_inner());
            idx.iter()
                .map(|&i| cache.get(&data.items[i].0, s))
                .collect()
        };
        let images = idx
            .par_iter()
            .zip(cached)
            .map(|(&i, hit)| match hit {
                Some(image) => Ok(image),
                None => load_image(&data.items[i].0, s).map(Arc::from),
            })
            .collect::<Vec<_>>();
        let mut pixels = Vec::with_capacity(idx.len() * s * s * 3);
        let mut cache = self.pixel_cache.lock().unwrap_or_else(|e| e.into_inner());
        for (&i, image) in idx.iter().zip(images) {
            let image = image?;
            pixels.extend_from_slice(&image);
            if keep {
                cache.insert(&data.items[i].0, s, image);
            }
        }
        Ok(pixels)
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
        let inner = self.device.clone().inner();
        if self.feature_engine.is_none() {
            self.feature_engine = Some(FeatureEngine::new(&backbone, &inner)?);
        }
        let s = self.options.image_size;
        let mut done = 0;
        for chunk in missing.chunks(self.options.batch_size) {
            let (v, d) = match (&self.feature_engine, &backbone) {
                (Some(FeatureEngine::Graph(m)), Backbone::Graph(g)) => {
                    let x = tfgraph::HostTensor::f32(
                        vec![chunk.len(), s, s, 3],
                        self.load_pixels(data, chunk)?,
                    );
                    graph_features(m, g.layer.source(), x)?
                }
                (Some(FeatureEngine::Inception(m)), _) => {
                    let x = Nhwc::from_vec(chunk.len(), s, s, 3, self.load_pixels(data, chunk)?)
                        .ok_or_else(|| {
                            FinetuneError::Options(format!("{} images of {s}x{s}", chunk.len()))
                        })?;
                    (m.features(&x)?, m.config().feature_dim())
                }
                _ => {
                    let (x, _) = self.load_batch(data, chunk, &inner)?;
                    let (f, _) = backbone.features(x)?;
                    let [_, d] = f.dims();
                    let v = f
                        .into_data()
                        .try_into_vec::<f32>()
                        .map_err(|e| FinetuneError::Options(format!("{e:?}")))?;
                    (v, d)
                }
            };
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
        let d = self.model.backbone.feature_dim();
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
        if self.options.frozen_backbone() {
            self.cache_features(data, idx, self.epochs_done + 1, &mut |_| {})?;
            let (f, y) = self.cached(data, idx, &device);
            let logits = self.model.forward_head(f);
            Ok(self.apply(logits, y, None))
        } else {
            let (x, y) = self.load_batch(data, idx, &device)?;
            self.step_on(x, y)
        }
    }

    /// One training step on a batch of images `[B, H, W, 3]` in `[0, 1]` (on the trainer's
    /// device) and their labels `[B]`, as `model.fit` takes one: the forward pass (batch
    /// statistics if the policy says so), softmax cross-entropy (mean over the batch), Keras'
    /// Adam on every trainable parameter, then the batch-norm updates of a graph backbone's
    /// training trace. Returns `(sum of losses, correct predictions)`.
    pub fn step_on(
        &mut self,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
    ) -> Result<(f64, usize), FinetuneError> {
        // Denormals flushed to zero through the forward pass, the gradients and the update,
        // as TensorFlow runs a training step (a gradient or activation near 1e-40 otherwise
        // costs a microcode assist per operation).
        rayon::scope(|_| {
            let _flushed = cpu_kernels::flush_denormals();
            let (logits, updates) = self.model.forward(images)?;
            Ok(self.apply(logits, labels, updates))
        })
    }

    fn apply(
        &mut self,
        logits: Tensor<2>,
        labels: Tensor<1, Int>,
        updates: Option<tfgraph::LayerUpdates>,
    ) -> (f64, usize) {
        let n = labels.dims()[0];
        let loss = CrossEntropyLossConfig::new()
            .init(&self.device)
            .forward(logits.clone(), labels.clone());
        let correct = count_correct(logits.detach(), labels);
        let loss_value = scalar(loss.clone().detach());
        let grads = loss.backward();
        let model = self.model.clone();
        self.model = self.optim.step_module(model, &grads).with_updates(updates);
        (loss_value * n as f64, correct)
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
                (eval.forward(x)?.0, y)
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

    /// Writes a checkpoint folder: `backbone.bpk` and `head.bpk` (Burn records, parameter
    /// ids kept so the optimizer state matches; a frozen backbone's files are hard-linked
    /// from this run's previous checkpoint into the same folder), `optimizer.safetensors` (Adam's step count and moments),
    /// `checkpoint.json`
    /// (epoch counter, classes, options, backbone config, metrics), and for a graph backbone
    /// `backbone/` (its SavedModel with the current variables). Atomic (temp + rename).
    pub fn save_checkpoint(&self, dir: &Path) -> Result<(), FinetuneError> {
        let tmp = sibling_tmp(dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let model = self.model.valid();
        // A frozen backbone is the same as in the previous checkpoint of this run into
        // `dir`: its files are linked from there (for Inception-v3, 90 MB per epoch).
        let frozen = self.options.frozen_backbone();
        let previous = self
            .frozen_backbone_saved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let reuse = frozen && previous.as_deref() == Some(dir);
        let result = (|| {
            let mut backbone_files = vec![PathBuf::from(BACKBONE_FILE)];
            if matches!(model.backbone, Backbone::Graph(_)) {
                backbone_files.push(PathBuf::from(GRAPH_BACKBONE_DIR));
            }
            let linked = reuse
                && backbone_files
                    .iter()
                    .all(|f| link_tree(&dir.join(f), &tmp.join(f)).is_ok());
            if !linked {
                for f in &backbone_files {
                    let _ = std::fs::remove_dir_all(tmp.join(f));
                    let _ = std::fs::remove_file(tmp.join(f));
                }
                save_record(model.backbone.clone(), tmp.join(BACKBONE_FILE))?;
                if let Backbone::Graph(g) = &model.backbone {
                    g.write_saved_model(&tmp.join(GRAPH_BACKBONE_DIR))?;
                }
            }
            save_record(model.head.clone(), tmp.join(HEAD_FILE))?;
            self.optim.save(&tmp.join(OPTIMIZER_FILE))?;
            let state = CheckpointState {
                epochs_done: self.epochs_done,
                classes: self.classes.clone(),
                options: self.options.clone(),
                backbone_config: self.model.backbone.inception().map(|m| m.config().clone()),
                graph_backbone: matches!(self.model.backbone, Backbone::Graph(_)),
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
        *self
            .frozen_backbone_saved
            .lock()
            .unwrap_or_else(|e| e.into_inner()) =
            (result.is_ok() && frozen).then(|| dir.to_path_buf());
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
        let model = match (&state.backbone_config, state.graph_backbone) {
            (Some(cfg), false) => {
                ImageClassifier::new(cfg, state.classes.len(), state.options.dropout_rate, device)?
            }
            (None, true) => ImageClassifier::from_saved_model(
                &dir.join(GRAPH_BACKBONE_DIR),
                state.classes.len(),
                state.options.dropout_rate,
                state.options.batch_norm,
                Some(state.options.image_size),
                device,
            )?,
            _ => {
                return Err(FinetuneError::Checkpoint {
                    path: p.clone(),
                    msg: "it names neither one Inception-v3 configuration nor a graph backbone"
                        .into(),
                })
            }
        };
        let load_err = |p: &Path, e: String| FinetuneError::Checkpoint {
            path: p.to_path_buf(),
            msg: format!("cannot load model: {e}"),
        };
        let (bp, hp, old) = (
            dir.join(BACKBONE_FILE),
            dir.join(HEAD_FILE),
            dir.join(OLD_MODEL_FILE),
        );
        let split = bp.is_file() || hp.is_file();
        let model = if split {
            for p in [&bp, &hp] {
                if !p.is_file() {
                    return Err(FinetuneError::Checkpoint {
                        path: p.clone(),
                        msg: "file not found".into(),
                    });
                }
            }
            let mut model = model;
            model.backbone = model
                .backbone
                .try_load_file(&bp)
                .map_err(|e| load_err(&bp, e.to_string()))?;
            model.head = model
                .head
                .try_load_file(&hp)
                .map_err(|e| load_err(&hp, e.to_string()))?;
            model
        } else if old.is_file() {
            model
                .try_load_file(&old)
                .map_err(|e| load_err(&old, e.to_string()))?
        } else {
            return Err(FinetuneError::Checkpoint {
                path: hp,
                msg: "file not found".into(),
            });
        };
        let mut trainer = Trainer::new(model, state.classes, state.options, device)?;
        let op = dir.join(OPTIMIZER_FILE);
        if !op.is_file() {
            let old = dir.join("optimizer.bpk");
            return Err(FinetuneError::Checkpoint {
                path: op,
                msg: if old.is_file() {
                    "file not found: the checkpoint holds Burn's Adam state (optimizer.bpk) of \
                     an earlier version, which steps differently from Keras' Adam; start a new run"
                        .into()
                } else {
                    "file not found".into()
                },
            });
        }
        let ids = param_ids(&trainer.model);
        // The moments live where the gradients do: on the inner (non-autodiff) device.
        trainer.optim = KerasAdam::new(trainer.options.learning_rate as f32).load(
            &op,
            &ids,
            &device.clone().inner(),
        )?;
        trainer.report = report;
        trainer.epochs_done = state.epochs_done;
        if split && trainer.options.frozen_backbone() {
            *trainer
                .frozen_backbone_saved
                .get_mut()
                .unwrap_or_else(|e| e.into_inner()) = Some(dir.to_path_buf());
        }
        Ok(trainer)
    }

    /// Exports the current model (see [`ImageClassifier::export`]).
    pub fn export(&self, dir: &Path) -> Result<(), FinetuneError> {
        self.model.export(dir, &self.classes)
    }
}

/// Features `[B, d]` of a frozen graph backbone's inference graph (the SavedModel in `dir`) for
/// images `x`, as rows and `d`.
fn graph_features(
    m: &tfgraph::Model,
    dir: &Path,
    x: tfgraph::HostTensor,
) -> Result<(Vec<f32>, usize), FinetuneError> {
    let n = x.shape[0];
    let err = |msg: String| FinetuneError::Graph {
        path: dir.to_path_buf(),
        msg,
    };
    let y = m
        .run_host(vec![x])
        .map_err(|e| err(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| err("the model has no output".into()))?;
    match y.shape.as_slice() {
        [b, d] if *b == n => Ok((y.to_f32().map_err(err)?, *d)),
        s => Err(err(format!(
            "the model gives features of shape {s:?} for {n} images"
        ))),
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

fn sibling_tmp(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dir.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Saves `module` as a Burn record file at `path` (parameter ids kept).
fn save_record<M: Module>(module: M, path: PathBuf) -> Result<(), FinetuneError> {
    module
        .save_file(&path)
        .map_err(|e| FinetuneError::Checkpoint {
            msg: format!("cannot save model: {e}"),
            path,
        })
}

/// Hard-links the file or folder tree `src` to `dst` (copies where links are refused).
fn link_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if meta.is_dir() {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            link_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        std::fs::hard_link(src, dst).or_else(|_| std::fs::copy(src, dst).map(|_| ()))
    } else {
        Err(std::io::Error::other("not a file or folder"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let o = FinetuneOptions {
            image_size: 0,
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

    /// Images are kept for their size, up to the byte budget, and dropped when the size
    /// changes.
    #[test]
    fn the_pixel_cache_keeps_images_up_to_its_budget() {
        let mut cache = PixelCache::default();
        let (a, b) = (Path::new("a.png"), Path::new("b.png"));
        let image = |v: f32, len: usize| -> Arc<[f32]> { vec![v; len].into() };
        cache.insert(a, 4, image(1.0, 48));
        assert_eq!(cache.get(a, 4).as_deref(), Some(&[1.0; 48][..]));
        assert!(cache.get(a, 5).is_none(), "another size");
        assert!(cache.get(b, 4).is_none());
        // Past the budget: not kept.
        cache.insert(b, 4, image(2.0, PIXEL_CACHE_BYTES / 4));
        assert!(cache.get(b, 4).is_none());
        assert_eq!(cache.bytes, 48 * 4);
        // A new size starts over.
        cache.insert(b, 5, image(3.0, 75));
        assert!(cache.get(a, 4).is_none() && cache.get(a, 5).is_none());
        assert_eq!(cache.get(b, 5).map(|v| v[0]), Some(3.0));
        assert_eq!(cache.bytes, 75 * 4);
    }
}
