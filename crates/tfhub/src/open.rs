//! One way to open what a program's `--model` names: a folder written by `convert`, a
//! SavedModel folder, an archive, a handle, or a `.tflite` file. A SavedModel that a
//! hand-written kind recognises is converted once into the cache, keyed by its own bytes and
//! the converter version, and reused by every later run of every program.

use crate::{inception_discrepancy, load_converted, model_err, Check, Error, Model};
use crate::{text_embedding_discrepancy, HAND_WRITTEN_TOLERANCE, TEXT_EMBEDDING_TOLERANCE};
use burn::tensor::Device;
use sha1::{Digest, Sha1};
use std::path::{Path, PathBuf};

/// What a `--model` argument names, ready to load.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A model folder of kind `kind`: written by `convert`, or converted from a SavedModel.
    Folder {
        dir: PathBuf,
        kind: String,
        /// For a converted SavedModel: where it came from and whether this call converted it.
        converted: Option<Conversion>,
    },
    /// A SavedModel for the graph executor: no hand-written kind recognises it, or the
    /// hand-written model does not compute what its graph computes (`why`).
    Graph { dir: PathBuf, why: Option<String> },
    /// A single `.tflite` file.
    Tflite(PathBuf),
}

/// How a [`Source::Folder`] came from a SavedModel.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    /// The SavedModel folder it was converted from.
    pub saved_model: PathBuf,
    /// `true`: converted by this call; `false`: the cached conversion was reused.
    pub fresh: bool,
    /// Set when the hand-written model could not be checked against the graph: why.
    pub unverified: Option<String>,
}

impl Source {
    /// One line for stderr saying what was done to get here (`None`: nothing worth saying).
    pub fn notice(&self) -> Option<String> {
        match self {
            Source::Folder {
                dir,
                kind,
                converted: Some(c),
            } => {
                let what = if c.fresh {
                    "converted once into"
                } else {
                    "using the conversion cached at"
                };
                let mut s = format!(
                    "{}: {kind} SavedModel, {what} {}",
                    c.saved_model.display(),
                    dir.display()
                );
                if let Some(why) = &c.unverified {
                    s.push_str(&format!(
                        "; the hand-written model is recognised by its variables; its graph \
                         cannot run here to confirm it ({why})"
                    ));
                }
                Some(s)
            }
            Source::Graph {
                dir,
                why: Some(why),
            } => Some(format!("{}: running its graph: {why}", dir.display())),
            _ => None,
        }
    }

    /// The folder of a [`Source::Folder`] of kind `kind` (for a program that runs one
    /// hand-written kind); anything else is an error naming what it is.
    pub fn into_folder_of(self, kind: &str) -> Result<PathBuf, Error> {
        match self {
            Source::Folder { dir, kind: k, .. } if k == kind => Ok(dir),
            Source::Folder { dir, kind: k, .. } => Err(model_err(
                &dir,
                format!("holds a `{k}` model, expected `{kind}`"),
            )),
            Source::Graph { dir, why } => Err(model_err(
                &dir,
                format!(
                    "a SavedModel that no hand-written `{kind}` model recognises{}",
                    why.map(|w| format!(" ({w})")).unwrap_or_default()
                ),
            )),
            Source::Tflite(p) => Err(model_err(
                &p,
                format!("a TF Lite file, expected a `{kind}` model (a SavedModel, a handle or a converted folder)"),
            )),
        }
    }

    /// The kind of a [`Source::Folder`].
    pub fn kind(&self) -> Option<&str> {
        match self {
            Source::Folder { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Opens `spec` (a handle or a path; `opts` says where the cache is and whether to go
/// online). A converted folder is returned as it is; a SavedModel that a hand-written kind
/// recognises is converted into `<cache>/converted/<source key>-v<converter version>` the first
/// time (written to a temporary folder and renamed) and found there afterwards. An
/// Inception-v3 conversion is first checked against the SavedModel's own graph on a probe
/// batch on `device` ([`inception_discrepancy`]); one that does not match runs as a graph.
/// That a SavedModel runs as a graph is remembered beside the conversions too
/// (`<source key>-v<converter version>.graph`), so later runs go straight to the graph.
pub fn open(spec: &str, opts: &hub::Options, device: &Device) -> Result<Source, Error> {
    let local = Path::new(spec);
    let path = if local.join("config.json").is_file() {
        local.to_path_buf()
    } else {
        hub::resolve(spec, opts)?.path
    };
    if path.is_file() {
        return Ok(Source::Tflite(path));
    }
    if path.join("config.json").is_file() {
        let kind = model_folder::read_kind(&path).map_err(|e| model_err(&path, e))?;
        return Ok(Source::Folder {
            dir: path,
            kind,
            converted: None,
        });
    }
    if !path.join("saved_model.pb").is_file() {
        return Err(model_err(
            &path,
            "neither a converted model folder (config.json) nor a SavedModel (saved_model.pb)",
        ));
    }
    let out = hub::cache_dir(opts)?.join("converted").join(format!(
        "{}-v{}",
        source_key(&path)?,
        convert::CONVERTER_VERSION
    ));
    if out.join("config.json").is_file() {
        let kind = model_folder::read_kind(&out).map_err(|e| model_err(&out, e))?;
        let unverified = model_folder::read_regular_file(&out.join(UNVERIFIED), 1 << 16)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        return Ok(Source::Folder {
            dir: out,
            kind,
            converted: Some(Conversion {
                saved_model: path,
                fresh: false,
                unverified,
            }),
        });
    }
    let verdict = graph_verdict_of(&out);
    if let Ok(why) = model_folder::read_regular_file(&verdict, 1 << 16) {
        let why = String::from_utf8_lossy(&why).into_owned();
        return Ok(Source::Graph {
            dir: path,
            why: (!why.is_empty()).then_some(why),
        });
    }
    let sm = savedmodel::read(&path).map_err(tfgraph::Error::from)?;
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, spec)
        .map_err(|e| model_err(&path, e))?;
    let Some(converted) = convert::kinds::convert_any(&src).map_err(|e| model_err(&path, e))?
    else {
        // A text model that is not the hand-written embedding's graph: say why.
        let why = src
            .assets
            .contains_key(convert::kinds::text_embedding::VOCAB_FILE)
            .then(|| convert::kinds::text_embedding::graph_deviation(&src))
            .flatten()
            .map(|w| format!("not the hand-written text embedding: {w}"));
        remember_graph_verdict(&verdict, why.as_deref().unwrap_or(""));
        return Ok(Source::Graph { dir: path, why });
    };
    let kind = converted.kind.clone();
    let parent = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| model_err(parent, e))?;
    let tmp = model_folder::outdir::sibling(&out, "tmp");
    convert::write::write_model(&tmp, &converted, spec, &[]).map_err(|e| model_err(&tmp, e))?;
    let checked = check_against_graph(&path, &tmp, device);
    let unverified = match checked {
        Ok(Verdict::Same) => None,
        Ok(Verdict::Unverifiable(why)) => {
            let note = tmp.join(UNVERIFIED);
            if let Err(e) = std::fs::write(&note, &why) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(model_err(&note, e));
            }
            Some(why)
        }
        Ok(Verdict::Differs(why)) => {
            let _ = std::fs::remove_dir_all(&tmp);
            remember_graph_verdict(&verdict, &why);
            return Ok(Source::Graph {
                dir: path,
                why: Some(why),
            });
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if std::fs::rename(&tmp, &out).is_err() {
        // Another process published the same conversion first: use theirs.
        let _ = std::fs::remove_dir_all(&tmp);
        if !out.join("config.json").is_file() {
            return Err(model_err(&out, "cannot move the conversion into the cache"));
        }
    }
    Ok(Source::Folder {
        dir: out,
        kind,
        converted: Some(Conversion {
            saved_model: path,
            fresh: true,
            unverified,
        }),
    })
}

/// In a cached conversion: why it could not be checked against its graph (absent: checked).
const UNVERIFIED: &str = "unverified.txt";

/// Beside where a SavedModel's conversion would be: the file that says it runs as a graph
/// (no hand-written kind recognises it, or its graph differs: the text says why), so that
/// later runs neither decode its variables again nor re-run the check.
fn graph_verdict_of(conversion: &Path) -> PathBuf {
    let name = conversion
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    conversion.with_file_name(format!("{name}.graph"))
}

/// Writes the graph verdict (atomically). A cache that cannot be written only costs the
/// next run the same work, so a failure is not an error.
fn remember_graph_verdict(path: &Path, why: &str) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = model_folder::write_file_atomic(path, why.as_bytes());
}

/// [`open`] for a program's `--model`: options from the environment (`offline` added), and
/// what was done to the model (converted, reused, run as a graph) said on stderr as
/// `<program>: ...`.
pub fn open_for_program(
    program: &str,
    spec: &str,
    offline: bool,
    device: &Device,
) -> Result<Source, Error> {
    let mut opts = hub::Options::from_env();
    opts.offline |= offline;
    let source = open(spec, &opts, device)?;
    if let Some(notice) = source.notice() {
        eprintln!("{program}: {notice}");
    }
    Ok(source)
}

enum Verdict {
    Same,
    Differs(String),
    Unverifiable(String),
}

/// Checks a freshly converted folder against the graph of the SavedModel it came from (for
/// the kinds that have such a check: Inception-v3, text embeddings).
fn check_against_graph(
    saved_model: &Path,
    converted: &Path,
    device: &Device,
) -> Result<Verdict, Error> {
    let m = match load_converted(converted, device)? {
        Model::InceptionV3(m) => m,
        Model::TextEmbedding(m) => {
            return Ok(match text_embedding_discrepancy(saved_model, &m, device)? {
                Check::Discrepancy(e) if e <= TEXT_EMBEDDING_TOLERANCE => Verdict::Same,
                Check::Discrepancy(e) => Verdict::Differs(format!(
                    "its variables and ops look like a TF Hub text embedding, but the \
                     hand-written text embedding does not compute what this SavedModel's \
                     graph computes (relative error {e:.2e} on probe sentences)"
                )),
                Check::Unverifiable(why) => Verdict::Unverifiable(why),
            })
        }
        _ => return Ok(Verdict::Same),
    };
    Ok(match inception_discrepancy(saved_model, &m, device)? {
        Check::Discrepancy(e) if e <= HAND_WRITTEN_TOLERANCE => Verdict::Same,
        Check::Discrepancy(e) => Verdict::Differs(format!(
            "its variables look like Inception-v3, but the hand-written Inception-v3 does not \
             compute what this SavedModel's graph computes (relative error {e:.2e} on a probe \
             batch)"
        )),
        Check::Unverifiable(why) => Verdict::Unverifiable(why),
    })
}

/// A key for a SavedModel's contents: SHA-1 over `saved_model.pb`, `variables.index` (whose
/// entries carry every tensor's CRC) and the assets, each with its relative name and length.
fn source_key(dir: &Path) -> Result<String, Error> {
    let mut files: Vec<(String, PathBuf)> = convert::write::source_files(dir)
        .map_err(|e| model_err(dir, e))?
        .into_iter()
        .filter(|(rel, _)| {
            rel == "saved_model.pb"
                || rel == "saved_model.pbtxt"
                || rel == "variables/variables.index"
                || rel.starts_with("assets/")
        })
        .collect();
    files.sort();
    let mut h = Sha1::new();
    for (rel, p) in &files {
        let mut f = std::fs::File::open(p).map_err(|e| model_err(p, e))?;
        let len = f.metadata().map_err(|e| model_err(p, e))?.len();
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update(len.to_le_bytes());
        std::io::copy(&mut f, &mut h).map_err(|e| model_err(p, e))?;
    }
    Ok(hex::encode(h.finalize()))
}
