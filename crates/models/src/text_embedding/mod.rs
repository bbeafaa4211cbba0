//! Token-based text embeddings in the TF-Hub format of `google/tf2-preview/gnews-swivel-20dim`
//! (also nnlm-*/Wiki-words: any vocabulary size and dimension).
//!
//! Sentences (bytes) in, `[batch, dim]` out, computed as the hub module does
//! (tensorflow/hub `examples/text_embeddings_v2/export_v2.py`, TF1 `examples/text_embeddings/export.py`):
//! `\pP` removal → split on `' '` → `tokens.txt` lookup with FarmHash OOV buckets →
//! `sqrtn` combiner (`Σ E[id] / √n` per sentence, repeats counted). See [`tokenizer`].
//!
//! The table is one trainable parameter (`embeddings`, `[vocab + oov_buckets, dim]`), so
//! gradients flow into it for fine-tuning; [`Module::no_grad`] freezes it. Float64 tables
//! (what `export_v2.py` writes) are converted to float32 by `convert`.

pub mod tokenizer;
pub use tf_text::farmhash;

use crate::weights::{FolderError, ModelFolder};
use burn::module::{Module, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use tokenizer::{SplitMode, Tokenizer, VocabError};

/// The `kind` in `config.json`.
pub const KIND: &str = "text_embedding";

/// Configuration (the `config` object of `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextEmbeddingConfig {
    /// Number of vocabulary lines in the vocabulary file (`V`).
    pub vocab_size: usize,
    /// Number of OOV hash buckets (rows after the vocabulary).
    pub oov_buckets: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// `keep_empty` (TF2 `StringSplitV2`) or `skip_empty` (TF1 `StringSplit`).
    #[serde(default)]
    pub split: SplitMode,
    /// Whether the graph removes `\pP` punctuation (`StaticRegexReplace`).
    #[serde(default = "default_true")]
    pub remove_punctuation: bool,
    /// Vocabulary file name inside the model folder.
    #[serde(default = "default_vocab_file")]
    pub vocab_file: String,
    /// The table's dtype in the source model (informational; always loaded as f32).
    #[serde(default)]
    pub source_dtype: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_vocab_file() -> String {
    "tokens.txt".into()
}

impl TextEmbeddingConfig {
    /// Rows of the embedding table (saturating: a hostile config cannot overflow it; sizes are
    /// checked with [`TextEmbeddingConfig::table_len`]).
    pub fn rows(&self) -> usize {
        self.vocab_size.saturating_add(self.oov_buckets)
    }

    /// `rows * dim`, `None` when it overflows.
    pub fn table_len(&self) -> Option<usize> {
        self.vocab_size
            .checked_add(self.oov_buckets)?
            .checked_mul(self.dim)
    }
}

/// Errors of loading or building a text embedding.
#[derive(Debug, thiserror::Error)]
pub enum TextEmbeddingError {
    #[error(transparent)]
    Weights(#[from] FolderError),
    #[error(transparent)]
    Vocab(#[from] VocabError),
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Tokenized sentences as one flat list: the embedding-bag input.
/// Token `t` belongs to sentence `rows[t]` and is weighted by `weights[t] = 1/√n(row)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub rows: Vec<u32>,
    pub weights: Vec<f32>,
    /// Number of sentences.
    pub batch: usize,
}

impl TokenBatch {
    /// Builds the batch from each sentence's ids (sqrtn weights).
    pub fn from_id_lists<'a>(lists: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut b = TokenBatch::default();
        for (row, ids) in lists.into_iter().enumerate() {
            b.push_sentence(row as u32, ids);
            b.batch += 1;
        }
        b
    }

    fn push_sentence(&mut self, row: u32, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        let w = 1.0 / (ids.len() as f32).sqrt();
        self.ids.extend_from_slice(ids);
        self.rows.extend(std::iter::repeat_n(row, ids.len()));
        self.weights.extend(std::iter::repeat_n(w, ids.len()));
    }
}

/// The embedding table plus the preprocessing that maps sentences to rows.
#[derive(Module, Debug)]
pub struct TextEmbedding {
    /// `[vocab + oov_buckets, dim]`.
    pub embeddings: Param<Tensor<2>>,
    #[module(skip)]
    tokenizer: Arc<Tokenizer>,
    #[module(skip)]
    config: TextEmbeddingConfig,
    #[module(skip)]
    vocab_bytes: Arc<Vec<u8>>,
}

impl TextEmbedding {
    /// Builds the module from its parts: the vocabulary file's bytes and a row-major
    /// `[rows, dim]` table. `vocab_name` only names the vocabulary in errors.
    pub fn from_parts(
        config: TextEmbeddingConfig,
        vocab_name: &str,
        vocab: Vec<u8>,
        table: Vec<f32>,
        device: &Device,
    ) -> Result<Self, TextEmbeddingError> {
        let tokenizer = Tokenizer::from_vocab_bytes(
            vocab_name,
            &vocab,
            config.oov_buckets,
            config.split,
            config.remove_punctuation,
        )?;
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(TextEmbeddingError::Invalid {
                path: vocab_name.into(),
                msg: format!(
                    "has {} tokens, config says vocab_size = {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        if config.table_len() != Some(table.len()) {
            return Err(TextEmbeddingError::Invalid {
                path: vocab_name.into(),
                msg: format!(
                    "table has {} values, expected {} x {}",
                    table.len(),
                    config.rows(),
                    config.dim
                ),
            });
        }
        let t = Tensor::<2>::from_data(TensorData::new(table, [config.rows(), config.dim]), device);
        Ok(TextEmbedding {
            embeddings: Param::from_tensor(t),
            tokenizer: Arc::new(tokenizer),
            config,
            vocab_bytes: Arc::new(vocab),
        })
    }

    /// A table of the same shape initialised like Keras' `uniform(-0.05, 0.05)`
    /// (for training from scratch), deterministic in `seed`.
    pub fn random_like(
        config: TextEmbeddingConfig,
        vocab_name: &str,
        vocab: Vec<u8>,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TextEmbeddingError> {
        let n = config
            .table_len()
            .ok_or_else(|| TextEmbeddingError::Invalid {
                path: vocab_name.into(),
                msg: "table size overflows".into(),
            })?;
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let table = (0..n)
            .map(|_| {
                // splitmix64 → uniform in [-0.05, 0.05)
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect();
        Self::from_parts(config, vocab_name, vocab, table, device)
    }

    /// Loads a folder written by `convert` (kind `text_embedding`): `config.json`,
    /// `model.safetensors` (`embeddings`) and the vocabulary file.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self, TextEmbeddingError> {
        let folder = ModelFolder::open(dir.as_ref(), KIND)?;
        let config: TextEmbeddingConfig = folder.config()?;
        // Sizes from config.json are checked against the weights file before allocating.
        crate::weights::expect_shape(
            &folder,
            "model.safetensors",
            "embeddings",
            &[config.rows(), config.dim],
        )?;
        let (vocab_path, vocab) =
            folder.read_asset(&config.vocab_file, crate::weights::MAX_ASSET_BYTES)?;
        let zeros = vec![0.0f32; config.rows() * config.dim];
        let module = Self::from_parts(
            config,
            &vocab_path.display().to_string(),
            vocab,
            zeros,
            device,
        )?;
        Ok(crate::weights::load_into(
            &folder,
            module,
            "model.safetensors",
        )?)
    }

    /// Writes `config.json`, `model.safetensors` and the vocabulary into `dir`
    /// (a new folder written next to it, then renamed into place).
    pub fn save(&self, dir: impl AsRef<Path>, source: &str) -> Result<(), TextEmbeddingError> {
        let dir = dir.as_ref();
        crate::weights::check_plain_name(&self.config.vocab_file).map_err(|msg| {
            TextEmbeddingError::Invalid {
                path: dir.to_path_buf(),
                msg,
            }
        })?;
        let config = model_folder::FolderConfig::new(KIND, &self.config, source).map_err(|e| {
            TextEmbeddingError::Invalid {
                path: dir.to_path_buf(),
                msg: format!("config.json: {e}"),
            }
        })?;
        write_folder(dir, |tmp| {
            let io = |path: PathBuf| move |source| TextEmbeddingError::Io { path, source };
            let cfg = tmp.join("config.json");
            std::fs::write(&cfg, config.to_bytes()).map_err(io(cfg.clone()))?;
            let voc = tmp.join(&self.config.vocab_file);
            std::fs::write(&voc, self.vocab_bytes.as_slice()).map_err(io(voc.clone()))?;
            self.save_weights(&tmp.join("model.safetensors"))
        })
    }

    /// Writes the table alone as a safetensors file (`embeddings`).
    pub fn save_weights(&self, path: &Path) -> Result<(), TextEmbeddingError> {
        let mut store = SafetensorsStore::from_file(path.to_path_buf());
        self.save_into(&mut store)
            .map_err(|e| TextEmbeddingError::Invalid {
                path: path.to_path_buf(),
                msg: format!("cannot write: {e}"),
            })
    }

    pub fn config(&self) -> &TextEmbeddingConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The vocabulary file's bytes.
    pub fn vocab_bytes(&self) -> &[u8] {
        &self.vocab_bytes
    }

    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// Tokenizes sentences into an embedding-bag batch.
    pub fn tokenize<S: AsRef<[u8]>>(&self, sentences: &[S]) -> TokenBatch {
        let mut b = TokenBatch::default();
        let mut ids = Vec::new();
        for (row, s) in sentences.iter().enumerate() {
            ids.clear();
            self.tokenizer.ids_into(s.as_ref(), &mut ids);
            b.push_sentence(row as u32, &ids);
        }
        b.batch = sentences.len();
        b
    }

    /// Sentence embeddings `[batch, dim]`. When the table records gradients (a trainable
    /// table on an autodiff device) this is [`TextEmbedding::forward`]; otherwise it gives
    /// TensorFlow's numbers exactly: the bag is summed on the host in the order of TF's
    /// `SparseSegmentSqrtN` kernel (in float64 when the source table was float64, as TF sums
    /// it), from the rows the batch uses.
    pub fn embed<S: AsRef<[u8]>>(&self, sentences: &[S]) -> Tensor<2> {
        if self.embeddings.val().is_require_grad() {
            return self.forward(&self.tokenize(sentences));
        }
        let device = self.embeddings.device();
        let dim = self.config.dim;
        let values = self.embed_values(sentences);
        Tensor::<2>::from_data(TensorData::new(values, [sentences.len(), dim]), &device)
    }

    /// [`TextEmbedding::embed`] as row-major values.
    pub fn embed_values<S: AsRef<[u8]>>(&self, sentences: &[S]) -> Vec<f32> {
        let batch = self.tokenize(sentences);
        let dim = self.config.dim;
        if batch.ids.is_empty() {
            return vec![0.0; sentences.len() * dim];
        }
        // The distinct rows, in first-use order (TF's `Unique`), and each token's position.
        let mut slot: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
        let mut unique = Vec::new();
        let indices: Vec<i64> = batch
            .ids
            .iter()
            .map(|&id| {
                *slot.entry(id).or_insert_with(|| {
                    unique.push(id as i64);
                    unique.len() as i64 - 1
                })
            })
            .collect();
        let device = self.embeddings.device();
        let ids =
            Tensor::<1, Int>::from_data(TensorData::new(unique.clone(), [unique.len()]), &device);
        let rows: Vec<f32> = self
            .embeddings
            .val()
            .select(0, ids)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap_or_else(|_| vec![0.0; unique.len() * dim]);
        let segments: Vec<i64> = batch.rows.iter().map(|&r| r as i64).collect();
        let n = Some(sentences.len());
        let combiner = tf_text::segment::Combiner::SqrtN;
        let reduced = if self.config.source_dtype.as_deref() == Some("float64") {
            let rows: Vec<f64> = rows.iter().map(|&x| x as f64).collect();
            tf_text::segment::reduce(&rows, dim, &indices, &segments, n, combiner)
                .map(|(v, _)| v.into_iter().map(|x| x as f32).collect())
        } else {
            tf_text::segment::reduce(&rows, dim, &indices, &segments, n, combiner).map(|(v, _)| v)
        };
        // The tokenizer gives sorted rows and in-range positions: the reduction cannot fail.
        reduced.unwrap_or_else(|_| vec![0.0; sentences.len() * dim])
    }

    /// Embedding bag: `out[r] = Σ_{t: rows[t]=r} weights[t] · E[ids[t]]`.
    ///
    /// # Shapes
    /// - output: `[batch.batch, dim]` (a sentence without ids gives zeros)
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<2> {
        let device = self.embeddings.device();
        let ids = Tensor::<1, Int>::from_data(
            TensorData::new(
                batch.ids.iter().map(|&i| i as i64).collect(),
                [batch.ids.len()],
            ),
            &device,
        );
        let rows = Tensor::<1, Int>::from_data(
            TensorData::new(
                batch.rows.iter().map(|&i| i as i64).collect(),
                [batch.rows.len()],
            ),
            &device,
        );
        let weights = Tensor::<2>::from_data(
            TensorData::new(batch.weights.clone(), [batch.weights.len(), 1]),
            &device,
        );
        self.forward_tensors(ids, rows, weights, batch.batch)
    }

    /// [`TextEmbedding::forward`] on tensors already on the device.
    ///
    /// # Shapes
    /// - ids, rows: `[T]`; weights: `[T, 1]`
    /// - output: `[batch, dim]`
    pub fn forward_tensors(
        &self,
        ids: Tensor<1, Int>,
        rows: Tensor<1, Int>,
        weights: Tensor<2>,
        batch: usize,
    ) -> Tensor<2> {
        let device = self.embeddings.device();
        let dim = self.config.dim;
        let out = Tensor::<2>::zeros([batch, dim], &device);
        if batch == 0 || ids.dims()[0] == 0 {
            return out;
        }
        let gathered = self.embeddings.val().select(0, ids) * weights; // [T, dim]
        out.select_assign(0, rows, gathered, IndexingUpdateOp::Add)
    }
}

/// Runs `fill` on a fresh sibling folder of `dir`, then renames it to `dir` (replacing an
/// existing folder only when this project wrote it: see [`model_folder::outdir`]).
pub(crate) fn write_folder(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), TextEmbeddingError>,
) -> Result<(), TextEmbeddingError> {
    let invalid = |msg: String| TextEmbeddingError::Invalid {
        path: dir.to_path_buf(),
        msg,
    };
    // Refused before any work is done.
    model_folder::outdir::check_replaceable(dir, false).map_err(invalid)?;
    let tmp = model_folder::outdir::stage(dir).map_err(|e| TextEmbeddingError::Io {
        path: e.path,
        source: e.source,
    })?;
    let result =
        fill(&tmp).and_then(|()| model_folder::outdir::swap_in(&tmp, dir, false).map_err(invalid));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(buckets: usize, dim: usize) -> TextEmbeddingConfig {
        TextEmbeddingConfig {
            vocab_size: 8,
            oov_buckets: buckets,
            dim,
            split: SplitMode::KeepEmpty,
            remove_punctuation: true,
            vocab_file: "tokens.txt".into(),
            source_dtype: None,
        }
    }

    /// Spec §3.7 worked example (TensorFlow's outputs): E[i] = [i+1, 10(i+1), -(i+1)],
    /// OOV row [100, 0.5, 7].
    #[test]
    fn worked_example_matches_tensorflow() {
        let device = Device::flex();
        let mut table = Vec::new();
        for i in 0..8 {
            let v = (i + 1) as f32;
            table.extend([v, 10.0 * v, -v]);
        }
        table.extend([100.0, 0.5, 7.0]);
        let vocab = b"cat\nis\non\nthe\nmat\nHello\nworld\ndog\n".to_vec();
        let m =
            TextEmbedding::from_parts(config(1, 3), "tokens.txt", vocab, table, &device).unwrap();
        let sentences: [&[u8]; 5] = [
            b"cat is on the mat",
            b"cat  is",
            b" cat",
            b"",
            b"Hello, world.",
        ];
        let out = m
            .embed(&sentences)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let want = [
            [6.7082, 67.082, -6.7082],
            [59.4671, 17.6092, 2.3094],
            [71.4178, 7.4246, 4.2426],
            [100.0, 0.5, 7.0],
            [9.1924, 91.9239, -9.1924],
        ];
        for (r, w) in want.iter().enumerate() {
            for c in 0..3 {
                assert!(
                    (out[r * 3 + c] - w[c]).abs() < 1e-3,
                    "row {r} col {c}: {} vs {}",
                    out[r * 3 + c],
                    w[c]
                );
            }
        }
    }

    #[test]
    fn empty_batch_gives_zero_rows() {
        let device = Device::flex();
        let m = TextEmbedding::from_parts(
            config(1, 3),
            "v",
            b"cat\nis\non\nthe\nmat\nHello\nworld\ndog\n".to_vec(),
            vec![1.0; 27],
            &device,
        )
        .unwrap();
        let out = m.embed::<&[u8]>(&[]);
        assert_eq!(out.dims(), [0, 3]);
    }

    #[test]
    fn vocab_size_mismatch_is_an_error() {
        let device = Device::flex();
        let err = TextEmbedding::from_parts(
            config(1, 3),
            "v.txt",
            b"cat\n".to_vec(),
            vec![0.0; 27],
            &device,
        )
        .unwrap_err();
        assert!(err.to_string().contains("v.txt"), "{err}");
    }
}
