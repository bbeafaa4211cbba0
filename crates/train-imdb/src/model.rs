//! The TF tutorial's classifier ("Text classification with TensorFlow Hub"):
//! text embedding (sqrtn bag) → Dense(16, relu) → Dense(1) logits, binary
//! cross-entropy on logits, and Keras' Adam update rule.

use crate::data::SplitMix64;
use anyhow::{bail, Context, Result};
use burn::module::{Module, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Gradients;
use burn::tensor::{activation, Device, Int, Tensor, TensorData};
use models::text_embedding::{TextEmbedding, TextEmbeddingConfig, TokenBatch};
use models::weights::{check_plain_name, expect_shape, ModelFolder, MAX_ASSET_BYTES};
use std::path::Path;
pub use training::keras_adam::KerasAdam;
use training::report::TrainingReport;

/// `kind` of the trained model's `config.json`.
pub const KIND: &str = "imdb_classifier";

#[derive(Module, Debug)]
pub struct Classifier {
    pub embedding: TextEmbedding,
    /// `[dim, hidden]` (Keras Dense kernel layout).
    pub dense_kernel: Param<Tensor<2>>,
    pub dense_bias: Param<Tensor<1>>,
    /// `[hidden, 1]`.
    pub out_kernel: Param<Tensor<2>>,
    pub out_bias: Param<Tensor<1>>,
}

/// A batch already on the device.
pub struct DeviceBatch {
    pub ids: Tensor<1, Int>,
    pub rows: Tensor<1, Int>,
    pub weights: Tensor<2>,
    /// `[B, 1]` labels as 0/1 floats.
    pub labels: Tensor<2>,
    pub batch: usize,
}

impl DeviceBatch {
    pub fn new(tb: &TokenBatch, labels: &[f32], device: &Device) -> Self {
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(tb.ids.iter().map(|&i| i as i64).collect(), [tb.ids.len()]),
            device,
        );
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(tb.rows.iter().map(|&i| i as i64).collect(), [tb.rows.len()]),
            device,
        );
        let weights = Tensor::<2>::from_data(
            TensorData::new(tb.weights.clone(), [tb.weights.len(), 1]),
            device,
        );
        let labels =
            Tensor::<2>::from_data(TensorData::new(labels.to_vec(), [labels.len(), 1]), device);
        DeviceBatch {
            ids,
            rows,
            weights,
            labels,
            batch: tb.batch,
        }
    }
}

/// The Dense(hidden, relu) -> Dense(1) parameters from their values (kernel `[dim, hidden]`,
/// bias, output kernel `[hidden, 1]`, output bias), in that order.
pub(crate) fn dense_params(
    [dk, db, ok, ob]: [Vec<f32>; 4],
    dim: usize,
    hidden: usize,
    device: &Device,
) -> DenseParams {
    let p2 = |v: Vec<f32>, s: [usize; 2]| {
        Param::from_tensor(Tensor::<2>::from_data(TensorData::new(v, s), device))
    };
    let p1 = |v: Vec<f32>| {
        let n = v.len();
        Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [n]), device))
    };
    (p2(dk, [dim, hidden]), p1(db), p2(ok, [hidden, 1]), p1(ob))
}

/// Dense kernel, dense bias, output kernel, output bias.
pub(crate) type DenseParams = (
    Param<Tensor<2>>,
    Param<Tensor<1>>,
    Param<Tensor<2>>,
    Param<Tensor<1>>,
);

pub(crate) fn glorot(rng: &mut SplitMix64, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    (0..fan_in * fan_out).map(|_| rng.uniform(limit)).collect()
}

impl Classifier {
    /// Keras defaults: Dense kernels glorot-uniform, biases zero (seeded by `seed`).
    pub fn new(embedding: TextEmbedding, hidden: usize, seed: u64, device: &Device) -> Self {
        let mut rng = SplitMix64(seed.wrapping_add(1));
        let dim = embedding.dim();
        let dk = glorot(&mut rng, dim, hidden);
        let ok = glorot(&mut rng, hidden, 1);
        Self::from_values(
            embedding,
            hidden,
            dk,
            vec![0.0; hidden],
            ok,
            vec![0.0],
            device,
        )
    }

    pub fn from_values(
        embedding: TextEmbedding,
        hidden: usize,
        dense_kernel: Vec<f32>,
        dense_bias: Vec<f32>,
        out_kernel: Vec<f32>,
        out_bias: Vec<f32>,
        device: &Device,
    ) -> Self {
        let dim = embedding.dim();
        let (dense_kernel, dense_bias, out_kernel, out_bias) = dense_params(
            [dense_kernel, dense_bias, out_kernel, out_bias],
            dim,
            hidden,
            device,
        );
        Classifier {
            embedding,
            dense_kernel,
            dense_bias,
            out_kernel,
            out_bias,
        }
    }

    pub fn hidden(&self) -> usize {
        self.dense_bias.dims()[0]
    }

    /// One Keras Adam step on every trainable parameter (the table too when
    /// `train_embedding`).
    pub fn step(self, opt: &mut KerasAdam, grads: &Gradients, train_embedding: bool) -> Classifier {
        let alpha = opt.next_step();
        let Classifier {
            mut embedding,
            dense_kernel,
            dense_bias,
            out_kernel,
            out_bias,
        } = self;
        if train_embedding {
            embedding.embeddings = opt.update("embedding", embedding.embeddings, grads, alpha);
        }
        Classifier {
            embedding,
            dense_kernel: opt.update("dense_kernel", dense_kernel, grads, alpha),
            dense_bias: opt.update("dense_bias", dense_bias, grads, alpha),
            out_kernel: opt.update("out_kernel", out_kernel, grads, alpha),
            out_bias: opt.update("out_bias", out_bias, grads, alpha),
        }
    }

    /// Logits `[B, 1]`.
    pub fn forward(&self, b: &DeviceBatch) -> Tensor<2> {
        let x = self.embedding.forward_tensors(
            b.ids.clone(),
            b.rows.clone(),
            b.weights.clone(),
            b.batch,
        ); // [B, D]
        let h = activation::relu(
            x.matmul(self.dense_kernel.val()) + self.dense_bias.val().unsqueeze_dim(0),
        ); // [B, 16]
        h.matmul(self.out_kernel.val()) + self.out_bias.val().unsqueeze_dim(0) // [B, 1]
    }

    /// Loads a folder written by [`Classifier::save`]. Every size in `config.json` (`hidden`,
    /// the embedding's `vocab_size`, `oov_buckets`, `dim`) is checked against the tensor shapes
    /// in `model.safetensors`' header before anything is allocated; `vocab_file` must be a
    /// plain name inside the folder (a regular file, size-capped).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let folder = ModelFolder::open(dir, KIND)?;
        let cfg_path = dir.join("config.json");
        let cfg: TextEmbeddingConfig =
            serde_json::from_value(folder.config["embedding"].clone())
                .with_context(|| format!("{}: config.embedding", cfg_path.display()))?;
        let hidden = folder.config["hidden"]
            .as_u64()
            .and_then(|h| usize::try_from(h).ok())
            .with_context(|| {
                format!(
                    "{}: config.hidden missing or not a size",
                    cfg_path.display()
                )
            })?;
        // Sizes from config.json against the weights file, before any allocation.
        let file = "model.safetensors";
        let (rows, dim) = (cfg.rows(), cfg.dim);
        if cfg.table_len().is_none() || dim.checked_mul(hidden).is_none() {
            bail!(
                "{}: sizes overflow (vocab_size {}, oov_buckets {}, dim {dim}, hidden {hidden})",
                cfg_path.display(),
                cfg.vocab_size,
                cfg.oov_buckets
            );
        }
        expect_shape(&folder, file, "embedding.embeddings", &[rows, dim])?;
        expect_shape(&folder, file, "dense_kernel", &[dim, hidden])?;
        expect_shape(&folder, file, "dense_bias", &[hidden])?;
        expect_shape(&folder, file, "out_kernel", &[hidden, 1])?;
        expect_shape(&folder, file, "out_bias", &[1])?;
        let (vocab_path, vocab) = folder.read_asset(&cfg.vocab_file, MAX_ASSET_BYTES)?;
        let emb = TextEmbedding::from_parts(
            cfg,
            &vocab_path.display().to_string(),
            vocab,
            vec![0.0; rows * dim],
            device,
        )?;
        let m = Self::from_values(
            emb,
            hidden,
            vec![0.0; dim * hidden],
            vec![0.0; hidden],
            vec![0.0; hidden],
            vec![0.0],
            device,
        );
        Ok(models::weights::load_into(&folder, m, file)?)
    }

    /// Writes `config.json`, `model.safetensors` and the vocabulary into `dir` (which exists).
    /// The vocabulary's name (from the embedding's config) must be a plain name: it is written
    /// inside `dir`, never elsewhere.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let vocab_file = &self.embedding.config().vocab_file;
        check_plain_name(vocab_file)
            .map_err(|msg| anyhow::anyhow!("{}: cannot write the model: {msg}", dir.display()))?;
        if matches!(
            vocab_file.as_str(),
            "config.json" | "model.safetensors" | "metrics.json" | "metrics.csv" | "curves.png"
        ) {
            bail!(
                "{}: the vocabulary cannot be named `{vocab_file}` (a file of the model folder)",
                dir.display()
            );
        }
        let cfg = model_folder::FolderConfig::new(
            KIND,
            serde_json::json!({"embedding": self.embedding.config(), "hidden": self.hidden()}),
            "train-imdb",
        )?;
        let vocab_path = dir.join(vocab_file);
        if let Some(parent) = vocab_path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&vocab_path, self.embedding.vocab_bytes())
            .with_context(|| format!("{}: cannot write", vocab_path.display()))?;
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, cfg.to_bytes())
            .with_context(|| format!("{}: cannot write", cfg_path.display()))?;
        let path = dir.join("model.safetensors");
        let mut store = SafetensorsStore::from_file(path.clone());
        self.save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
        Ok(())
    }
}

/// Writes the model (`save_model` into the folder) and the metrics into a fresh sibling folder, then puts it in
/// place of `out` ([`model_folder::outdir::swap_in`]: only a folder we wrote, an empty one, or any with
/// `force`; the previous folder is restored if the new one cannot be renamed in). On any
/// failure the temporary folder is removed and `out` is left as it was.
pub fn write_outputs(
    out: &Path,
    save_model: impl FnOnce(&Path) -> Result<()>,
    report: &TrainingReport,
    force: bool,
) -> Result<()> {
    model_folder::outdir::check_replaceable(out, force).map_err(anyhow::Error::msg)?;
    let tmp = model_folder::outdir::stage(out)?;
    let result = (|| -> Result<()> {
        save_model(&tmp)?;
        report.write_all(&tmp)?;
        model_folder::outdir::swap_in(&tmp, out, force).map_err(anyhow::Error::msg)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("writing {}", out.display())));
    }
    Ok(())
}

/// Keras' binary cross-entropy on logits, mean over the batch:
/// `max(x, 0) - x z + log(1 + exp(-|x|))`.
pub fn bce_with_logits(logits: Tensor<2>, labels: Tensor<2>) -> Tensor<1> {
    let x = logits;
    let loss = activation::relu(x.clone()) - x.clone() * labels + x.abs().neg().exp().log1p();
    loss.mean()
}
