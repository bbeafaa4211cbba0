//! Reading TensorFlow SavedModels without libtensorflow.
//!
//! [`read`] parses `saved_model.pb` (meta graph, tags, signatures, assets, object graph,
//! op types of the graph and its function library) and `variables/variables.index`
//! (a LevelDB-style SSTable of TensorBundle entries), and memory-maps the data shards.
//! [`SavedModel::tensor`] then decodes one variable, checking its CRC32C and
//! reassembling partitioned variables from their slices.
//!
//! Variable names: TF1 checkpoints key variables by name; TF2 (object-based) checkpoints
//! use keys like `model/layer/.ATTRIBUTES/VARIABLE_VALUE`, which are mapped back to the
//! variable's name through the `_CHECKPOINTABLE_OBJECT_GRAPH` entry (its `full_name`), falling
//! back to `SavedVariable.name` of the SavedModel's object graph.
//!
//! ```no_run
//! let sm = savedmodel::read(std::path::Path::new("model_dir"))?;
//! for v in sm.variables() {
//!     let t = sm.tensor(&v.name)?;
//!     println!("{} {:?} {}", v.name, t.shape, t.dtype);
//! }
//! # Ok::<(), savedmodel::Error>(())
//! ```

mod bundle;
mod ordered_code;
pub mod proto;
// The SSTable reader is internal; the fuzz targets reach into it with the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
pub mod sstable;
#[cfg(not(feature = "fuzzing"))]
mod sstable;
mod tensor;

pub use tensor::{DType, Tensor, TensorData};

use bundle::Bundle;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Checkpoint key of the serialized `TrackableObjectGraph` in TF2 checkpoints.
pub const OBJECT_GRAPH_KEY: &str = "_CHECKPOINTABLE_OBJECT_GRAPH";

/// Errors; each names the file (and the tensor, where there is one) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a SavedModel folder (no saved_model.pb in it)")]
    NotSavedModel(PathBuf),
    #[error("{0}: text-format SavedModels (saved_model.pbtxt) are not supported; convert it to saved_model.pb")]
    TextFormat(PathBuf),
    #[error("{path}: cannot parse {what}: {msg}")]
    Proto {
        path: PathBuf,
        what: &'static str,
        msg: String,
    },
    #[error("{path}: corrupt or truncated checkpoint index: {msg}")]
    CorruptIndex { path: PathBuf, msg: String },
    #[error("{path}: checksum mismatch in tensor `{tensor}` (stored crc32c {stored:#010x}, computed {computed:#010x}); the file is corrupt")]
    Crc {
        path: PathBuf,
        tensor: String,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: missing data shard {shard} of {num_shards} (listed by {index})")]
    MissingShard {
        path: PathBuf,
        index: PathBuf,
        shard: usize,
        num_shards: usize,
    },
    #[error("{path}: tensor `{tensor}` has dtype {dtype}, which is not supported")]
    UnsupportedDType {
        path: PathBuf,
        tensor: String,
        dtype: DType,
    },
    #[error("{path}: tensor `{tensor}`: {msg}")]
    CorruptTensor {
        path: PathBuf,
        tensor: String,
        msg: String,
    },
    #[error("{dir}: no variable named `{name}`")]
    NoSuchVariable { dir: PathBuf, name: String },
    #[error("a {0} tensor cannot be converted to numbers")]
    NotNumeric(DType),
}

/// One input or output of a signature.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The signature's alias (map key), e.g. `x`, `default`.
    pub name: String,
    /// The graph tensor, e.g. `serving_default_x:0`.
    pub tensor_name: String,
    pub dtype: DType,
    /// `None` = unknown rank; `-1` = unknown dimension.
    pub shape: Option<Vec<i64>>,
}

/// A `SignatureDef`.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub key: String,
    pub method_name: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// A variable stored in the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableInfo {
    /// TensorFlow variable name, e.g. `InceptionV3/Conv2d_1a_3x3/weights` (the checkpoint key
    /// when no name is known, or when another variable already has the same name).
    pub name: String,
    /// Checkpoint key (TF1: the name; TF2: `.../.ATTRIBUTES/VARIABLE_VALUE`).
    pub key: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Bytes in the data files (sum over slices for a partitioned variable).
    pub stored_bytes: u64,
    /// Number of slices for a partitioned variable, 0 otherwise.
    pub slices: usize,
}

/// An asset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// Name relative to `assets/`, e.g. `tokens.txt`.
    pub filename: String,
    /// Full path of the file.
    pub path: PathBuf,
}

/// A parsed SavedModel with its checkpoint mapped; tensors are decoded on demand.
pub struct SavedModel {
    dir: PathBuf,
    tags: Vec<String>,
    tensorflow_version: String,
    signatures: Vec<Signature>,
    variables: Vec<VariableInfo>,
    by_name: HashMap<String, usize>,
    op_types: BTreeSet<String>,
    assets: Vec<Asset>,
    bundle: Option<Bundle>,
    index_path: PathBuf,
    meta_graph: proto::MetaGraphDef,
    /// Object-graph node id -> checkpoint key of its `VARIABLE_VALUE` (TF2 checkpoints).
    node_keys: BTreeMap<usize, String>,
}

impl std::fmt::Debug for SavedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedModel")
            .field("dir", &self.dir)
            .field("tags", &self.tags)
            .field("variables", &self.variables.len())
            .finish()
    }
}

impl SavedModel {
    /// The SavedModel folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Tags of the meta graph that was read (`serve`, ...).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// TensorFlow version that wrote the model (may be empty).
    pub fn tensorflow_version(&self) -> &str {
        &self.tensorflow_version
    }
    /// Signatures, sorted by key.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }
    /// Variables, sorted by name.
    pub fn variables(&self) -> &[VariableInfo] {
        &self.variables
    }
    /// The variable called `name` (or whose checkpoint key is `name`).
    pub fn variable(&self, name: &str) -> Option<&VariableInfo> {
        self.by_name.get(name).map(|&i| &self.variables[i])
    }
    /// Op types used by the graph's nodes and by the functions of its library.
    pub fn op_types(&self) -> &BTreeSet<String> {
        &self.op_types
    }
    /// Asset files.
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    /// Decodes the variable `name` (a variable name, or a checkpoint key), checking CRCs
    /// and reassembling slices.
    pub fn tensor(&self, name: &str) -> Result<Tensor, Error> {
        let v = self.variable(name).ok_or_else(|| Error::NoSuchVariable {
            dir: self.dir.clone(),
            name: name.to_string(),
        })?;
        let bundle = self.bundle.as_ref().ok_or_else(|| Error::NoSuchVariable {
            dir: self.dir.clone(),
            name: name.to_string(),
        })?;
        bundle.read(v.key.as_bytes(), &v.name)
    }

    /// Reads every variable once (checks all CRCs). Handy to validate a download.
    pub fn verify(&self) -> Result<(), Error> {
        for v in &self.variables {
            self.tensor(&v.name)?;
        }
        Ok(())
    }

    /// Path of `variables/variables.index`.
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    /// The meta graph that was read: graph, function library, object graph, signatures.
    pub fn meta_graph(&self) -> &proto::MetaGraphDef {
        &self.meta_graph
    }

    /// The variable stored for object-graph node `node_id` (TF2 object-based checkpoints:
    /// the node's `VARIABLE_VALUE` attribute), if any.
    pub fn variable_of_node(&self, node_id: usize) -> Option<&VariableInfo> {
        let key = self.node_keys.get(&node_id)?;
        self.variable(key)
    }
}

impl SavedModel {
    /// Writes a copy of this SavedModel into the folder `dst` (created if needed; not this
    /// model's own folder) with new values for some variables: `updates` maps a variable name
    /// (or checkpoint key) to its new value as little-endian bytes of its dtype, exactly as
    /// many as it holds now. `saved_model.pb` and the asset files are copied unchanged, the
    /// checkpoint is written as one data shard (every other entry copied byte for byte after
    /// it was checked). TensorFlow loads the copy as it loads the original. Files are written
    /// under temporary names and renamed.
    pub fn write_with_variables(
        &self,
        dst: &Path,
        updates: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dst.join("variables")).map_err(io(dst))?;
        let same = match (self.dir.canonicalize(), dst.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(Error::Io {
                path: dst.to_path_buf(),
                source: std::io::Error::other("cannot rewrite a SavedModel in its own folder"),
            });
        }
        let mut by_key = BTreeMap::new();
        for (name, bytes) in updates {
            let v = self.variable(name).ok_or_else(|| Error::NoSuchVariable {
                dir: self.dir.clone(),
                name: name.clone(),
            })?;
            by_key.insert(v.key.as_bytes().to_vec(), bytes.clone());
        }
        let bundle = self.bundle.as_ref().ok_or_else(|| Error::CorruptIndex {
            path: self.index_path.clone(),
            msg: "the SavedModel has no checkpoint to rewrite".into(),
        })?;
        bundle.write_updated(&dst.join("variables").join("variables"), &by_key)?;
        for asset in &self.assets {
            let to =
                checked_asset_path(dst, &asset.filename).map_err(|msg| Error::CorruptTensor {
                    path: asset.path.clone(),
                    tensor: asset.filename.clone(),
                    msg,
                })?;
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let bytes = std::fs::read(&asset.path).map_err(io(&asset.path))?;
            bundle::write_via_temp(&to, &bytes)?;
        }
        let pb = self.dir.join("saved_model.pb");
        let bytes = std::fs::read(&pb).map_err(io(&pb))?;
        bundle::write_via_temp(&dst.join("saved_model.pb"), &bytes)
    }
}

/// Parses a `saved_model.pb` from bytes (exposed for fuzzing).
pub fn parse_saved_model_bytes(bytes: &[u8]) -> Result<proto::SavedModel, prost::DecodeError> {
    proto::SavedModel::decode(bytes)
}

/// Parses the entries of a `variables.index` from bytes (for the fuzz targets, with the
/// `fuzzing` feature): returns the shard count and the entry keys with dtype and shape.
#[cfg(feature = "fuzzing")]
#[allow(clippy::type_complexity)]
pub fn parse_index(bytes: &[u8]) -> Result<(usize, Vec<(Vec<u8>, DType)>), Error> {
    let (n, entries) = bundle::parse_index_bytes(bytes, Path::new("<index bytes>"))?;
    Ok((
        n,
        entries
            .into_iter()
            .map(|(k, e)| (k, DType::from_proto(e.dtype)))
            .collect(),
    ))
}

/// Reads the SavedModel in `dir` (its `saved_model.pb` and checkpoint index; data files are
/// memory-mapped, tensors decoded on demand by [`SavedModel::tensor`]).
pub fn read(dir: &Path) -> Result<SavedModel, Error> {
    let pb_path = dir.join("saved_model.pb");
    let bytes = match std::fs::read(&pb_path) {
        Ok(b) => b,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::NotADirectory =>
        {
            if dir.join("saved_model.pbtxt").exists() {
                return Err(Error::TextFormat(dir.join("saved_model.pbtxt")));
            }
            return Err(Error::NotSavedModel(dir.to_path_buf()));
        }
        Err(e) => {
            return Err(Error::Io {
                path: pb_path,
                source: e,
            })
        }
    };
    let sm = parse_saved_model_bytes(&bytes).map_err(|e| Error::Proto {
        path: pb_path.clone(),
        what: "the SavedModel proto",
        msg: e.to_string(),
    })?;
    drop(bytes);
    let mg = choose_meta_graph(sm.meta_graphs).ok_or_else(|| Error::Proto {
        path: pb_path.clone(),
        what: "the SavedModel proto",
        msg: "it has no meta graph".into(),
    })?;

    let info = mg.meta_info_def.clone().unwrap_or_default();
    let signatures = mg
        .signature_def
        .iter()
        .map(|(key, sd)| Signature {
            key: key.clone(),
            method_name: sd.method_name.clone(),
            inputs: sd.inputs.iter().map(|(a, t)| tensor_spec(a, t)).collect(),
            outputs: sd.outputs.iter().map(|(a, t)| tensor_spec(a, t)).collect(),
        })
        .collect();

    let mut op_types = BTreeSet::new();
    if let Some(g) = &mg.graph_def {
        op_types.extend(g.node.iter().map(|n| n.op.clone()));
        if let Some(lib) = &g.library {
            for f in &lib.function {
                op_types.extend(f.node_def.iter().map(|n| n.op.clone()));
            }
        }
    }
    op_types.remove("");

    let assets = collect_assets(dir, &mg, &pb_path)?;

    // Checkpoint.
    let prefix = dir.join("variables").join("variables");
    let index_path = dir.join("variables").join("variables.index");
    let bundle = if index_path.exists() {
        Some(Bundle::open(&prefix)?)
    } else {
        if bundle::data_filename(&prefix, 0, 1).exists() {
            return Err(Error::CorruptIndex {
                path: index_path,
                msg: "the index file is missing".into(),
            });
        }
        None
    };
    let (variables, node_keys) = match &bundle {
        Some(b) => list_variables(b, mg.object_graph_def.as_ref())?,
        None => (Vec::new(), BTreeMap::new()),
    };
    let mut by_name = HashMap::new();
    for (i, v) in variables.iter().enumerate() {
        by_name.insert(v.key.clone(), i);
    }
    for (i, v) in variables.iter().enumerate() {
        by_name.insert(v.name.clone(), i);
    }
    Ok(SavedModel {
        dir: dir.to_path_buf(),
        tags: info.tags,
        tensorflow_version: info.tensorflow_version,
        signatures,
        variables,
        by_name,
        op_types,
        assets,
        bundle,
        index_path,
        meta_graph: mg,
        node_keys,
    })
}

/// Prefers the meta graph tagged `serve`, then an untagged one (TF1 Hub default), then the first.
fn choose_meta_graph(mut graphs: Vec<proto::MetaGraphDef>) -> Option<proto::MetaGraphDef> {
    let tags = |g: &proto::MetaGraphDef| {
        g.meta_info_def
            .as_ref()
            .map(|m| m.tags.clone())
            .unwrap_or_default()
    };
    let pos = graphs
        .iter()
        .position(|g| tags(g).iter().any(|t| t == "serve"))
        .or_else(|| graphs.iter().position(|g| tags(g).is_empty()))
        .unwrap_or(0);
    if pos < graphs.len() {
        Some(graphs.swap_remove(pos))
    } else {
        None
    }
}

fn tensor_spec(alias: &str, t: &proto::TensorInfo) -> TensorSpec {
    let shape = match &t.tensor_shape {
        Some(s) if s.unknown_rank => None,
        Some(s) => Some(s.dim.iter().map(|d| d.size).collect()),
        None => None,
    };
    TensorSpec {
        name: alias.to_string(),
        tensor_name: t.name.clone(),
        dtype: DType::from_proto(t.dtype),
        shape,
    }
}

fn collect_assets(
    dir: &Path,
    mg: &proto::MetaGraphDef,
    pb_path: &Path,
) -> Result<Vec<Asset>, Error> {
    let mut names: Vec<String> = mg
        .asset_file_def
        .iter()
        .map(|a| a.filename.clone())
        .collect();
    // TF1 SavedModelBuilder keeps AssetFileDefs in the `saved_model_assets` collection.
    if let Some(list) = mg
        .collection_def
        .get("saved_model_assets")
        .and_then(|c| c.any_list.as_ref())
    {
        for any in &list.value {
            if any.type_url.ends_with("AssetFileDef") {
                let a = proto::AssetFileDef::decode(any.value.as_slice()).map_err(|e| {
                    Error::Proto {
                        path: pb_path.to_path_buf(),
                        what: "an AssetFileDef",
                        msg: e.to_string(),
                    }
                })?;
                names.push(a.filename);
            }
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in names {
        if n.is_empty() || !seen.insert(n.clone()) {
            continue;
        }
        let path = checked_asset_path(dir, &n).map_err(|msg| Error::Proto {
            path: pb_path.to_path_buf(),
            what: "an asset file name",
            msg,
        })?;
        out.push(Asset { filename: n, path });
    }
    out.sort_by(|a, b| a.filename.cmp(&b.filename));
    Ok(out)
}

/// `dir/assets/<name>` for a plain relative `name` (no `..`, `.`, root or drive, no NUL), with
/// no symbolic link on the way and, if it exists, a regular file (not a device or FIFO).
fn checked_asset_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    use std::path::Component;
    let rel = Path::new(name);
    let plain = !name.contains('\0')
        && !name.contains('\\')
        && rel.components().count() > 0
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "asset `{name}` is not a plain relative name inside assets/"
        ));
    }
    let mut path = dir.join("assets");
    let mut parts = vec![path.clone()];
    for c in rel.components() {
        path.push(c);
        parts.push(path.clone());
    }
    for (i, p) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "asset `{name}`: {} is a symbolic link",
                    p.display()
                ))
            }
            Ok(m) if last && !m.is_file() => {
                return Err(format!(
                    "asset `{name}`: {} is not a regular file",
                    p.display()
                ))
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(format!("asset `{name}`: {} is not a folder", p.display()))
            }
            Ok(_) => {}
            // Missing: reported by whoever reads the asset.
            Err(_) => break,
        }
    }
    Ok(path)
}

/// Maps checkpoint keys to variable names and lists every stored variable; also returns the
/// checkpoint key of each object-graph node's `VARIABLE_VALUE`.
#[allow(clippy::type_complexity)]
fn list_variables(
    b: &Bundle,
    objects: Option<&proto::SavedObjectGraph>,
) -> Result<(Vec<VariableInfo>, BTreeMap<usize, String>), Error> {
    let mut key_to_name: BTreeMap<String, String> = BTreeMap::new();
    let mut node_keys: BTreeMap<usize, String> = BTreeMap::new();
    if b.entries.contains_key(OBJECT_GRAPH_KEY.as_bytes()) {
        let t = b.read(OBJECT_GRAPH_KEY.as_bytes(), OBJECT_GRAPH_KEY)?;
        let bytes = t
            .strings()
            .and_then(|s| s.first())
            .cloned()
            .unwrap_or_default();
        let graph = proto::TrackableObjectGraph::decode(bytes.as_slice()).map_err(|e| {
            Error::CorruptTensor {
                path: b.index_path.clone(),
                tensor: OBJECT_GRAPH_KEY.into(),
                msg: format!("cannot parse the object graph: {e}"),
            }
        })?;
        for (i, node) in graph.nodes.iter().enumerate() {
            for a in &node.attributes {
                if a.checkpoint_key.is_empty() {
                    continue;
                }
                if a.name == "VARIABLE_VALUE" {
                    node_keys.insert(i, a.checkpoint_key.clone());
                }
                let mut name = a.full_name.clone();
                if name.is_empty() && a.name == "VARIABLE_VALUE" {
                    if let Some(v) = objects
                        .and_then(|o| o.nodes.get(i))
                        .and_then(|n| n.variable.as_ref())
                    {
                        name = v.name.clone();
                    }
                }
                if !name.is_empty() {
                    key_to_name.insert(a.checkpoint_key.clone(), name);
                }
            }
        }
    }
    let mut used = HashSet::new();
    let mut out = Vec::new();
    for (k, e) in &b.entries {
        if k.is_empty() || k.first() == Some(&0) || k.as_slice() == OBJECT_GRAPH_KEY.as_bytes() {
            continue;
        }
        let key = String::from_utf8_lossy(k).into_owned();
        let mut name = key_to_name
            .get(&key)
            .cloned()
            .unwrap_or_else(|| key.clone());
        if !used.insert(name.clone()) {
            name = key.clone();
            used.insert(name.clone());
        }
        let (dtype, shape) = b.dtype_shape(k, &name)?;
        let stored_bytes = if e.slices.is_empty() {
            e.size.max(0) as u64
        } else {
            e.slices
                .iter()
                .filter_map(|s| {
                    let enc: Vec<(i64, i64)> = s
                        .extent
                        .iter()
                        .map(|x| (x.start, x.length.unwrap_or(-1)))
                        .collect();
                    b.entries
                        .get(&ordered_code::tensor_name_slice_key(k, &enc))
                        .map(|p| p.size.max(0) as u64)
                })
                .fold(0u64, u64::saturating_add)
        };
        out.push(VariableInfo {
            name,
            key,
            dtype,
            shape,
            stored_bytes,
            slices: e.slices.len(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, node_keys))
}
