//! The tutorial's classifier on any TF2 text SavedModel run through its own graph, as
//! `hub.KerasLayer(handle, trainable=True)` does: NNLM with another normalisation, a DAN
//! encoder, anything the hand-written embedding does not compute. The SavedModel's float
//! variables are parameters (gradients reach the table through the graph's gather and
//! segment sum), or frozen; Dense(16, relu) → Dense(1) on top, Keras' Adam.
//!
//! A trained folder holds the SavedModel itself (`embedding/`) beside `model.safetensors`
//! (its trained variables and the dense layers), so `predict` runs the same graph.

use crate::model::KerasAdam;
use anyhow::{bail, Context, Result};
use burn::module::{Module, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Gradients;
use burn::tensor::{activation, Device, Tensor, TensorData};
use models::weights::{expect_shape, ModelFolder};
use std::path::{Path, PathBuf};
use tfhub::tfgraph::{HostData, HostTensor, KerasLayer, Value};

/// The folder (inside a trained model) that holds the embedding's SavedModel.
pub const GRAPH_DIR: &str = "embedding";

#[derive(Module, Debug)]
pub struct GraphClassifier {
    pub embedding: KerasLayer,
    /// `[dim, hidden]`.
    pub dense_kernel: Param<Tensor<2>>,
    pub dense_bias: Param<Tensor<1>>,
    /// `[hidden, 1]`.
    pub out_kernel: Param<Tensor<2>>,
    pub out_bias: Param<Tensor<1>>,
    /// The SavedModel the layer runs.
    #[module(skip)]
    source: PathBuf,
}

/// A batch of sentences as the graph's input.
fn strings(sentences: &[&[u8]]) -> Value {
    Value::Host(HostTensor {
        dtype: tfhub::savedmodel::DType::String,
        shape: vec![sentences.len()],
        data: HostData::Str(sentences.iter().map(|s| s.to_vec()).collect()),
    })
}

impl GraphClassifier {
    /// Opens the SavedModel in `dir` as a layer (`trainable`: its float variables record
    /// gradients on an autodiff `device`) and puts Keras-initialised dense layers on it,
    /// seeded as [`crate::model::Classifier::new`] is.
    pub fn open(
        dir: &Path,
        trainable: bool,
        hidden: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let layer = KerasLayer::open(dir, device, trainable)
            .with_context(|| format!("{}: cannot load its graph", dir.display()))?;
        let dim = embedding_dim(&layer, dir, device)?;
        let mut rng = crate::data::SplitMix64(seed.wrapping_add(1));
        let dk = crate::model::glorot(&mut rng, dim, hidden);
        let ok = crate::model::glorot(&mut rng, hidden, 1);
        Ok(Self::from_values(
            layer,
            dir,
            [dk, vec![0.0; hidden], ok, vec![0.0]],
            hidden,
            device,
        ))
    }

    /// The classifier from its layer and dense values (kernel `[dim, hidden]`, bias, output
    /// kernel `[hidden, 1]`, output bias).
    pub fn from_values(
        embedding: KerasLayer,
        source: &Path,
        [dk, db, ok, ob]: [Vec<f32>; 4],
        hidden: usize,
        device: &Device,
    ) -> Self {
        let dim = dk.len() / hidden.max(1);
        let (dense_kernel, dense_bias, out_kernel, out_bias) =
            crate::model::dense_params([dk, db, ok, ob], dim, hidden, device);
        GraphClassifier {
            embedding,
            dense_kernel,
            dense_bias,
            out_kernel,
            out_bias,
            source: source.to_path_buf(),
        }
    }

    /// The same classifier with the embedding's variables frozen (no gradients).
    pub fn freeze_embedding(mut self) -> Self {
        self.embedding = self.embedding.no_grad();
        self
    }

    pub fn hidden(&self) -> usize {
        self.dense_bias.dims()[0]
    }

    /// The sentence embeddings `[B, dim]` on the parameters' device.
    pub fn embed(&self, sentences: &[&[u8]]) -> Result<Tensor<2>> {
        let device = self.dense_kernel.device();
        let out = self
            .embedding
            .forward_values(vec![strings(sentences)], &device)?
            .into_iter()
            .next()
            .context("the embedding's graph has no output")?;
        let t = match out {
            Value::Dev(t) => Tensor::<2>::from_dispatch(t),
            Value::Host(h) => {
                let shape = h.shape.clone();
                let v = h.to_f32().map_err(anyhow::Error::msg)?;
                if shape.len() != 2 {
                    bail!("the embedding gives an output of shape {shape:?}, not [batch, dim]");
                }
                Tensor::<2>::from_data(TensorData::new(v, [shape[0], shape[1]]), &device)
            }
            _ => bail!("the embedding's output is not a float tensor"),
        };
        let [b, d] = t.dims();
        if b != sentences.len() || d != self.dense_kernel.dims()[0] {
            bail!(
                "the embedding gives [{b}, {d}] for {} sentences; the classifier takes [{}, {}]",
                sentences.len(),
                sentences.len(),
                self.dense_kernel.dims()[0]
            );
        }
        Ok(t)
    }

    /// Logits `[B, 1]`.
    pub fn forward(&self, sentences: &[&[u8]]) -> Result<Tensor<2>> {
        let x = self.embed(sentences)?;
        let h = activation::relu(
            x.matmul(self.dense_kernel.val()) + self.dense_bias.val().unsqueeze_dim(0),
        );
        Ok(h.matmul(self.out_kernel.val()) + self.out_bias.val().unsqueeze_dim(0))
    }

    /// One Keras Adam step (the embedding's variables too when `train_embedding`).
    pub fn step(self, opt: &mut KerasAdam, grads: &Gradients, train_embedding: bool) -> Self {
        let alpha = opt.next_step();
        let GraphClassifier {
            mut embedding,
            dense_kernel,
            dense_bias,
            out_kernel,
            out_bias,
            source,
        } = self;
        if train_embedding {
            embedding.variables = std::mem::take(&mut embedding.variables)
                .into_iter()
                .enumerate()
                .map(|(i, p)| opt.update(&format!("embedding.{i}"), p, grads, alpha))
                .collect();
        }
        GraphClassifier {
            embedding,
            dense_kernel: opt.update("dense_kernel", dense_kernel, grads, alpha),
            dense_bias: opt.update("dense_bias", dense_bias, grads, alpha),
            out_kernel: opt.update("out_kernel", out_kernel, grads, alpha),
            out_bias: opt.update("out_bias", out_bias, grads, alpha),
            source,
        }
    }

    /// Writes `config.json`, `model.safetensors` and the SavedModel (`embedding/`) into
    /// `dir` (which exists).
    pub fn save(&self, dir: &Path) -> Result<()> {
        copy_saved_model(&self.source, &dir.join(GRAPH_DIR))?;
        let dim = self.dense_kernel.dims()[0];
        let cfg = model_folder::FolderConfig::new(
            crate::model::KIND,
            serde_json::json!({"graph_embedding": GRAPH_DIR, "dim": dim, "hidden": self.hidden()}),
            "train-imdb",
        )?;
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, cfg.to_bytes())
            .with_context(|| format!("{}: cannot write", cfg_path.display()))?;
        let path = dir.join("model.safetensors");
        let mut store = SafetensorsStore::from_file(path.clone());
        self.save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
        Ok(())
    }

    /// Loads a folder written by [`GraphClassifier::save`]: the graph from `embedding/`, every
    /// tensor of `model.safetensors` checked against the shapes the graph and `config.json`
    /// give before it is read.
    pub fn load(folder: &ModelFolder, device: &Device) -> Result<Self> {
        let dir = folder.dir.clone();
        let cfg_path = dir.join("config.json");
        let size = |k: &str| {
            folder.config[k]
                .as_u64()
                .and_then(|h| usize::try_from(h).ok())
                .filter(|&h| h > 0 && h <= 1 << 20)
                .with_context(|| {
                    format!("{}: config.{k} missing or not a size", cfg_path.display())
                })
        };
        let (hidden, dim) = (size("hidden")?, size("dim")?);
        let graph = dir.join(GRAPH_DIR);
        let layer = KerasLayer::open(&graph, device, false)
            .with_context(|| format!("{}: cannot load its graph", graph.display()))?;
        let file = "model.safetensors";
        for (i, s) in layer.variable_shapes().iter().enumerate() {
            let n: usize = s.iter().product();
            expect_shape(folder, file, &format!("embedding.variables.{i}"), &[n])?;
        }
        expect_shape(folder, file, "dense_kernel", &[dim, hidden])?;
        expect_shape(folder, file, "dense_bias", &[hidden])?;
        expect_shape(folder, file, "out_kernel", &[hidden, 1])?;
        expect_shape(folder, file, "out_bias", &[1])?;
        let m = Self::from_values(
            layer,
            &graph,
            [
                vec![0.0; dim * hidden],
                vec![0.0; hidden],
                vec![0.0; hidden],
                vec![0.0],
            ],
            hidden,
            device,
        );
        Ok(models::weights::load_into(folder, m, file)?)
    }
}

/// The width of the layer's output: run on an empty batch.
fn embedding_dim(layer: &KerasLayer, dir: &Path, device: &Device) -> Result<usize> {
    if !layer.entry().takes_one_string_batch() {
        bail!(
            "{}: its {} does not take one batch of strings (is it a text model?)",
            dir.display(),
            layer.entry().label()
        );
    }
    let out = layer.forward_values(vec![strings(&[])], device)?;
    match out.first().map(|v| v.shape()).as_deref() {
        Some([0, d]) if *d > 0 => Ok(*d),
        s => bail!(
            "{}: the embedding gives an output of shape {s:?} for no sentences; expected [0, dim]",
            dir.display()
        ),
    }
}

/// Copies a SavedModel's own files (`saved_model.pb`, `variables/`, `assets/`) into `dst`.
fn copy_saved_model(src: &Path, dst: &Path) -> Result<()> {
    let files = tfhub::convert::write::source_files(src)
        .map_err(|e| anyhow::anyhow!("{}: {e}", src.display()))?;
    for (rel, path) in files {
        let keep =
            rel == "saved_model.pb" || rel.starts_with("variables/") || rel.starts_with("assets/");
        if !keep {
            continue;
        }
        let to = dst.join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::copy(&path, &to)
            .with_context(|| format!("cannot copy {} to {}", path.display(), to.display()))?;
    }
    Ok(())
}
