//! TF Hub for Rust in one dependency: `tfhub::load(handle, &device)` does what
//! `hub.load(handle)` does in Python (resolve the handle, download and cache it, load it),
//! for the models written by hand in `models` and for any TF2 SavedModel through the
//! graph executor `tfgraph`.
//!
//! ```no_run
//! use tfhub::burn::tensor::Device;
//! let device = Device::flex();
//! // Any TF2 SavedModel (folder, .tar.gz, tfhub.dev / Kaggle handle): its graph, run exactly.
//! let model = tfhub::load_graph("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5", &device)?;
//! let x = tfhub::tfgraph::HostTensor::f32(vec![1, 224, 224, 3], vec![0.5; 224 * 224 * 3]);
//! let logits = model.run_host(vec![x])?;
//! // The same as a layer of a Burn network (hub.KerasLayer), trainable:
//! let layer = tfhub::keras_layer("path/to/feature_vector", &device.autodiff(), true)?;
//! # Ok::<(), tfhub::Error>(())
//! ```
//!
//! Which code runs a model is decided honestly: a folder written by `convert` (its
//! `config.json` names the kind) loads the hand-written model of that kind; a SavedModel
//! runs through the graph executor, which computes exactly what its graph says.
//! [`load_hand_written`] converts a SavedModel that a hand-written kind recognises (once,
//! into the cache) and loads that instead; use it for the hand-written fast paths.

pub use burn;
pub use catalog;
pub use convert;
/// A global allocator that reuses freed activation buffers (as TensorFlow's BFC allocator
/// does); the programs install it, and so can an application:
/// `#[global_allocator] static ALLOC: tfhub::CachingAllocator = tfhub::CachingAllocator::new();`
pub use cpu_kernels::CachingAllocator;
pub use hub;
pub use models;
pub use savedmodel;
pub use tfgraph;

use burn::tensor::Device;
use std::path::{Path, PathBuf};

mod open;
pub use open::{open, open_for_program, Conversion, Source};

/// What can go wrong; every message names the handle or path and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Hub(#[from] hub::Error),
    #[error(transparent)]
    Graph(#[from] tfgraph::Error),
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
}

fn model_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

/// A loaded model.
#[derive(Debug)]
pub enum Model {
    /// Any TF2 SavedModel, through the graph executor.
    Graph(tfgraph::Model),
    /// Inception-v3 (classification or feature vector), hand-written.
    InceptionV3(models::inception_v3::InceptionV3),
    /// Magenta arbitrary image stylization, hand-written.
    Stylization(models::stylization::Stylization),
    /// A Swivel-style text embedding, hand-written.
    TextEmbedding(models::text_embedding::TextEmbedding),
}

/// Resolves `handle` (tfhub.dev or Kaggle URL, http(s) URL of an archive, `file://`, a
/// local folder or archive) to a local path, downloading into the cache when needed.
/// Settings from the environment: `TFHUB_CACHE_DIR`, `TFHUB_OFFLINE`.
pub fn resolve(handle: &str) -> Result<PathBuf, Error> {
    Ok(hub::resolve(handle, &hub::Options::from_env())?.path)
}

/// Loads `handle` onto `device`: a converted folder as its hand-written model, a SavedModel
/// through the graph executor (its default entry point: `serving_default`, else
/// `__call__`).
pub fn load(handle: &str, device: &Device) -> Result<Model, Error> {
    let path = resolve(handle)?;
    if path.join("config.json").is_file() {
        return load_converted(&path, device);
    }
    Ok(Model::Graph(open_graph(&path, device)?))
}

/// Loads `handle`'s SavedModel through the graph executor (CPU fast path on flex).
pub fn load_graph(handle: &str, device: &Device) -> Result<tfgraph::Model, Error> {
    open_graph(&resolve(handle)?, device)
}

/// `handle`'s SavedModel as a Burn module (`hub.KerasLayer(handle, trainable=...)`).
pub fn keras_layer(
    handle: &str,
    device: &Device,
    trainable: bool,
) -> Result<tfgraph::KerasLayer, Error> {
    let path = resolve(handle)?;
    check_saved_model(&path)?;
    Ok(tfgraph::KerasLayer::open(&path, device, trainable)?)
}

/// Loads `handle` with a hand-written model: a converted folder as it is; a SavedModel that
/// a hand-written kind recognises is converted once into the cache
/// (`<cache>/converted/<content key>-v<converter version>`, see [`open`]) and loaded from there. Refuses a SavedModel that no
/// hand-written kind recognises (use [`load`] or [`load_graph`]), and an Inception-v3 whose
/// hand-written forward pass does not compute what the SavedModel's graph computes on a
/// probe batch ([`inception_discrepancy`], relative error above 1e-4).
pub fn load_hand_written(handle: &str, device: &Device) -> Result<Model, Error> {
    match open(handle, &hub::Options::from_env(), device)? {
        Source::Folder { dir, .. } => load_converted(&dir, device),
        Source::Graph { dir, why } => Err(model_err(
            &dir,
            why.unwrap_or_else(|| {
                "no hand-written model recognises this SavedModel; load it through the graph \
                 executor (tfhub::load)"
                    .into()
            }),
        )),
        Source::Tflite(p) => Err(model_err(
            &p,
            "a single .tflite file: no hand-written model loads it alone (stylize takes the \
             predictor and transfer files together)",
        )),
    }
}

/// Largest discrepancy between a hand-written model and the graph it stands for.
pub const HAND_WRITTEN_TOLERANCE: f64 = 1e-4;

/// How far the hand-written Inception-v3 `model` is from the default entry point of the
/// SavedModel in `saved_model` (run by the graph executor), on a probe batch of two
/// deterministic images at the signature's size (299 where open): the largest difference
/// relative to the graph output's largest magnitude, or why the graph cannot run here. This is what makes recognition
/// honest: a SavedModel whose variables look like Inception-v3 but whose graph computes
/// something else (other preprocessing, an extra softmax, other ops) is caught here.
pub fn inception_discrepancy(
    saved_model: &Path,
    model: &models::inception_v3::InceptionV3,
    device: &Device,
) -> Result<Check, Error> {
    let graph = match graph_to_check(saved_model, device)? {
        Ok(g) => g,
        Err(why) => return Ok(why),
    };
    let dims = graph
        .entry()
        .inputs
        .first()
        .and_then(|a| a.shape.clone())
        .unwrap_or_default();
    let side = |i: usize| match dims.get(i) {
        Some(&d) if d > 0 => d as usize,
        _ => 299,
    };
    let (h, w) = (side(1), side(2));
    let n = 2 * h * w * 3;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 2_654_435_761) % 1000) as f32 / 999.0)
        .collect();
    let x = tfgraph::HostTensor::f32(vec![2, h, w, 3], data.clone());
    let g = graph
        .run_host(vec![x])?
        .into_iter()
        .next()
        .ok_or_else(|| model_err(saved_model, "the graph has no output"))?;
    let g = g.to_f32().map_err(|e| model_err(saved_model, e))?;
    // On a CPU device the hand-written model runs on the CPU engine (what `classify` and
    // `finetune` run there; 2 images at 299 in a fraction of Burn's time); elsewhere Burn's.
    let hand = if models::cpu::serves(device) {
        let x = models::cpu::Nhwc::from_vec(2, h, w, 3, data)
            .ok_or_else(|| model_err(saved_model, "probe size"))?;
        models::cpu::InceptionV3Cpu::new(model)
            .forward(&x)
            .map_err(|e| model_err(saved_model, e))?
    } else {
        let images = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(data, [2, h, w, 3]),
            device,
        );
        model
            .forward(images)
            .map_err(|e| model_err(saved_model, e))?
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| model_err(saved_model, format!("{e:?}")))?
    };
    if hand.len() != g.len() {
        return Ok(Check::Discrepancy(f64::INFINITY));
    }
    let scale = g
        .iter()
        .fold(0f64, |m, &v| m.max(v.abs() as f64))
        .max(1e-12);
    Ok(Check::Discrepancy(
        g.iter()
            .zip(&hand)
            .map(|(&a, &b)| (a as f64 - b as f64).abs() / scale)
            .fold(0.0, f64::max),
    ))
}

/// Largest discrepancy between the hand-written text embedding and the graph it stands for
/// (both compute TF's bag exactly; float32 tables and outputs on a float64 model).
pub const TEXT_EMBEDDING_TOLERANCE: f64 = 1e-5;

/// How far the hand-written text embedding `model` is from the default entry point of the
/// SavedModel in `saved_model` (run by the graph executor) on probe sentences made from its
/// own vocabulary: known tokens in several cases, with punctuation, digits, tabs, doubled
/// and leading spaces, unknown words, an empty sentence and a long row. The largest
/// difference relative to the graph output's largest magnitude (at least 1), or why the
/// graph cannot run here. With the structural check of `convert` (op types, the regex),
/// this is what makes text recognition honest: another separator, combiner, casing or
/// anything after the bag shows here.
pub fn text_embedding_discrepancy(
    saved_model: &Path,
    model: &models::text_embedding::TextEmbedding,
    device: &Device,
) -> Result<Check, Error> {
    let graph = match graph_to_check(saved_model, device)? {
        Ok(g) => g,
        Err(why) => return Ok(why),
    };
    let probe = text_probe(model.vocab_bytes());
    let x = tfgraph::HostTensor {
        dtype: savedmodel::DType::String,
        shape: vec![probe.len()],
        data: tfgraph::HostData::Str(probe.clone()),
    };
    let g = match graph.run_host(vec![x]) {
        Ok(out) => out.into_iter().next(),
        Err(e) => return Ok(Check::Unverifiable(e.to_string())),
    };
    let Some(g) = g else {
        return Ok(Check::Discrepancy(f64::INFINITY));
    };
    let g = g.to_f64().map_err(|e| model_err(saved_model, e))?;
    let hand = model.embed_values(&probe);
    if hand.len() != g.len() {
        return Ok(Check::Discrepancy(f64::INFINITY));
    }
    let scale = g.iter().fold(1f64, |m, &v| m.max(v.abs()));
    Ok(Check::Discrepancy(
        g.iter()
            .zip(&hand)
            .map(|(&a, &b)| (a - b as f64).abs() / scale)
            .fold(0.0, f64::max),
    ))
}

/// Probe sentences from a vocabulary file's first tokens.
fn text_probe(vocab: &[u8]) -> Vec<Vec<u8>> {
    let toks: Vec<&[u8]> = vocab
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .take(12)
        .collect();
    let t = |i: usize| toks.get(i % toks.len().max(1)).copied().unwrap_or(b"a");
    let join = |parts: &[&[u8]], sep: &[u8]| parts.join(sep);
    let upper = |s: &[u8]| s.to_ascii_uppercase();
    let mut out: Vec<Vec<u8>> = vec![
        join(&[t(0), t(1), t(2)], b" "),
        join(&[t(0), t(1)], b"  "),
        [b" ", t(2), b" "].concat(),
        join(&[t(3), t(4)], b"\t"),
        join(&[t(5), t(6)], b","),
        [t(7), b"! ", t(8), b"?"].concat(),
        join(&[&upper(t(0)), &upper(t(1)), t(2)], b" "),
        [t(9), b" 101 ", t(10), b"3"].concat(),
        b"".to_vec(),
        b" ".to_vec(),
        b"!!! ...".to_vec(),
        "caf\u{e9} na\u{ef}ve \u{201c}quoted\u{201d} \u{65e5}\u{672c}"
            .as_bytes()
            .to_vec(),
        b"zzqxunknown wordsnotinvocab".to_vec(),
    ];
    let long: Vec<&[u8]> = (0..300)
        .map(|i| if i % 7 == 3 { &b"oovtoken"[..] } else { t(i) })
        .collect();
    out.push(join(&long, b" "));
    out.push(join(&vec![t(11); 50], b" "));
    out
}

/// The SavedModel's graph to check a hand-written model against, or why it cannot run here.
fn graph_to_check(
    saved_model: &Path,
    device: &Device,
) -> Result<Result<tfgraph::Model, Check>, Error> {
    match tfgraph::Model::open(saved_model, device) {
        Ok(g) => Ok(Ok(g)),
        Err(e @ (tfgraph::Error::Model { .. } | tfgraph::Error::Unsupported(_))) => {
            Ok(Err(Check::Unverifiable(e.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

/// What checking a hand-written model against a SavedModel's graph found.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Largest difference relative to the graph output's largest magnitude.
    Discrepancy(f64),
    /// The graph cannot run here (no TF2 entry point, unsupported ops): why.
    Unverifiable(String),
}

fn check_saved_model(path: &Path) -> Result<(), Error> {
    if path.join("saved_model.pb").is_file() {
        Ok(())
    } else {
        Err(model_err(
            path,
            "not a SavedModel folder (no saved_model.pb) nor a converted folder (no config.json)",
        ))
    }
}

fn open_graph(path: &Path, device: &Device) -> Result<tfgraph::Model, Error> {
    check_saved_model(path)?;
    Ok(tfgraph::Model::open(path, device)?)
}

fn load_converted(dir: &Path, device: &Device) -> Result<Model, Error> {
    let kind = model_folder::read_kind(dir).map_err(|e| model_err(dir, e))?;
    match kind.as_str() {
        "inception_v3" => models::inception_v3::InceptionV3::load(dir, device)
            .map(Model::InceptionV3)
            .map_err(|e| model_err(dir, e)),
        "stylization" => models::stylization::Stylization::load(dir, device)
            .map(Model::Stylization)
            .map_err(|e| model_err(dir, e)),
        "text_embedding" => models::text_embedding::TextEmbedding::load(dir, device)
            .map(Model::TextEmbedding)
            .map_err(|e| model_err(dir, e)),
        k => Err(model_err(
            dir,
            format!("a converted folder of kind `{k}` has no model to load here (for `raw`, load the SavedModel itself)"),
        )),
    }
}

/// Helpers for tests of crates built on this one (not part of the API).
#[doc(hidden)]
pub mod testing {
    use std::path::Path;

    /// A copy of a fixture's SavedModel in `dst` whose graph has every scalar float constant
    /// `from` replaced by `to` (the variables stay as they are); how many were replaced.
    pub fn with_constant_changed(
        src: &Path,
        dst: &Path,
        from: f32,
        to: f32,
    ) -> std::io::Result<usize> {
        edited_copy(src, dst, |t| {
            if t.float_val == [from] {
                t.float_val = vec![to];
                true
            } else if t.tensor_content == from.to_le_bytes() {
                t.tensor_content = to.to_le_bytes().to_vec();
                true
            } else {
                false
            }
        })
    }

    /// [`with_constant_changed`] for scalar string constants (a text model's separator).
    pub fn with_string_constant_changed(
        src: &Path,
        dst: &Path,
        from: &[u8],
        to: &[u8],
    ) -> std::io::Result<usize> {
        edited_copy(src, dst, |t| {
            if t.string_val == [from.to_vec()] {
                t.string_val = vec![to.to_vec()];
                true
            } else {
                false
            }
        })
    }

    /// A copy of the SavedModel `src` (variables and assets) in `dst` with `edit` applied to
    /// the value of every constant in its function library; how many it changed.
    fn edited_copy(
        src: &Path,
        dst: &Path,
        mut edit: impl FnMut(&mut savedmodel::proto::TensorProto) -> bool,
    ) -> std::io::Result<usize> {
        use prost::Message;
        for sub in ["variables", "assets"] {
            let from = src.join(sub);
            if !from.is_dir() {
                continue;
            }
            std::fs::create_dir_all(dst.join(sub))?;
            for e in std::fs::read_dir(&from)? {
                let e = e?;
                if e.file_type()?.is_file() {
                    std::fs::copy(e.path(), dst.join(sub).join(e.file_name()))?;
                }
            }
        }
        let bytes = std::fs::read(src.join("saved_model.pb"))?;
        let mut sm = savedmodel::proto::SavedModel::decode(&bytes[..])
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut changed = 0;
        for mg in &mut sm.meta_graphs {
            let Some(lib) = mg.graph_def.as_mut().and_then(|g| g.library.as_mut()) else {
                continue;
            };
            for f in &mut lib.function {
                for n in &mut f.node_def {
                    let Some(t) = n.attr.get_mut("value").and_then(|a| a.tensor.as_mut()) else {
                        continue;
                    };
                    if edit(t) {
                        changed += 1;
                    }
                }
            }
        }
        std::fs::write(dst.join("saved_model.pb"), sm.encode_to_vec())?;
        Ok(changed)
    }
}
