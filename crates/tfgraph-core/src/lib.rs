//! The Burn-free half of the graph executor `tfgraph`: the entry points of a TF2 SavedModel
//! (signatures and the object graph's `__call__` traces), its functions inlined into one
//! flat graph ([`graph`]), and the op set the executor runs ([`op_set`]). `convert inspect`
//! and the fuzz targets use it without pulling in Burn.

mod error;
pub mod graph;
pub mod op_set;

pub use error::Error;

use graph::Graph;
use savedmodel::proto::{MetaGraphDef, SavedObjectGraph, StructuredValue};
use savedmodel::{DType, SavedModel};
use std::collections::BTreeMap;
use std::path::Path;

/// Which callable of the SavedModel an entry point is.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// A serving signature (`serving_default`, ...).
    Signature(String),
    /// A concrete function of the root object's `__call__`; `training` is the Python bool
    /// baked into the trace, if it has one.
    Call { training: Option<bool> },
}

/// One input of an entry point.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgSpec {
    pub name: String,
    pub dtype: DType,
    /// `None` = unknown rank; -1 = any size.
    pub shape: Option<Vec<i64>>,
}

/// A callable of the SavedModel.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryPoint {
    pub kind: EntryKind,
    /// The library function that implements it.
    pub function: String,
    /// Object-graph nodes bound to the function's captured inputs.
    pub bound: Vec<usize>,
    pub inputs: Vec<ArgSpec>,
    pub outputs: Vec<String>,
}

impl EntryPoint {
    /// Whether it takes one batch of strings (a text model's sentences).
    pub fn takes_one_string_batch(&self) -> bool {
        matches!(self.inputs.as_slice(), [a] if a.dtype == DType::String)
    }

    /// `serving_default`, `__call__(training=False)`, ...
    pub fn label(&self) -> String {
        match &self.kind {
            EntryKind::Signature(k) => format!("signature {k}"),
            EntryKind::Call { training: Some(t) } => {
                format!("__call__(training={})", if *t { "True" } else { "False" })
            }
            EntryKind::Call { training: None } => "__call__".into(),
        }
    }
}

fn spec_of(v: &StructuredValue, name: &str) -> Option<ArgSpec> {
    let t = v.tensor_spec_value.as_ref()?;
    let shape = t.shape.as_ref().and_then(|s| {
        if s.unknown_rank {
            None
        } else {
            Some(s.dim.iter().map(|d| d.size).collect())
        }
    });
    Some(ArgSpec {
        name: if t.name.is_empty() {
            name.to_string()
        } else {
            t.name.clone()
        },
        dtype: DType::from_proto(t.dtype),
        shape,
    })
}

/// The `training` bool of a canonicalized input signature `((args...), {kwargs})`.
fn training_flag(sig: &StructuredValue) -> Option<bool> {
    let parts = &sig.tuple_value.as_ref()?.values;
    if let Some(kw) = parts.get(1).and_then(|k| k.dict_value.as_ref()) {
        if let Some(b) = kw.fields.get("training").and_then(|v| v.bool_value) {
            return Some(b);
        }
    }
    parts
        .first()
        .and_then(|a| a.tuple_value.as_ref())
        .and_then(|t| t.values.iter().find_map(|v| v.bool_value))
}

fn call_inputs(sig: &StructuredValue) -> Vec<ArgSpec> {
    let mut out = Vec::new();
    let Some(parts) = sig.tuple_value.as_ref().map(|t| &t.values) else {
        return out;
    };
    let walk = |v: &StructuredValue, name: String, out: &mut Vec<ArgSpec>| {
        fn rec(v: &StructuredValue, name: &str, out: &mut Vec<ArgSpec>) {
            if let Some(s) = spec_of(v, name) {
                out.push(s);
            } else if let Some(l) = v.tuple_value.as_ref().or(v.list_value.as_ref()) {
                for (i, x) in l.values.iter().enumerate() {
                    rec(x, &format!("{name}_{i}"), out);
                }
            } else if let Some(d) = &v.dict_value {
                for (k, x) in &d.fields {
                    rec(x, k, out);
                }
            }
        }
        rec(v, &name, out)
    };
    if let Some(args) = parts.first() {
        walk(args, "input".into(), &mut out);
    }
    if let Some(kw) = parts.get(1) {
        walk(kw, "kw".into(), &mut out);
    }
    out
}

fn child(og: &SavedObjectGraph, node: usize, name: &str) -> Option<usize> {
    og.nodes
        .get(node)?
        .children
        .iter()
        .find(|c| c.local_name == name)
        .map(|c| c.node_id as usize)
}

/// Every callable entry point of the SavedModel: its signatures and the root's `__call__`
/// concrete functions.
pub fn entry_points(sm: &SavedModel) -> Result<Vec<EntryPoint>, Error> {
    entry_points_of(sm.meta_graph(), sm.dir())
}

/// [`entry_points`] of a meta graph read from `path` (named in errors).
pub fn entry_points_of(mg: &MetaGraphDef, path: &Path) -> Result<Vec<EntryPoint>, Error> {
    let og = mg.object_graph_def.as_ref().ok_or_else(|| Error::Model {
        path: path.to_path_buf(),
        msg: "the SavedModel has no object graph (a TF1 SavedModel); only TF2 SavedModels can run through the graph executor".into(),
    })?;
    let lib = graph::Library::new(mg);
    let mut out = Vec::new();
    // Signatures.
    if let Some(sigs) = child(og, 0, "signatures") {
        for c in og
            .nodes
            .get(sigs)
            .map(|n| n.children.as_slice())
            .unwrap_or(&[])
        {
            let key = c.local_name.clone();
            let Some(node) = og.nodes.get(c.node_id as usize) else {
                continue;
            };
            let fname = if let Some(b) = &node.bare_concrete_function {
                b.concrete_function_name.clone()
            } else if let Some(f) = &node.function {
                match f.concrete_functions.first() {
                    Some(n) => n.clone(),
                    None => continue,
                }
            } else {
                continue;
            };
            let bound: Vec<usize> = og
                .concrete_functions
                .get(&fname)
                .map(|cf| cf.bound_inputs.iter().map(|&b| b.max(0) as usize).collect())
                .unwrap_or_default();
            let sd = mg.signature_def.get(&key);
            let f = lib.function(&fname);
            let n_user = f
                .and_then(|f| f.signature.as_ref())
                .map(|s| s.input_arg.len().saturating_sub(bound.len()))
                .unwrap_or(0);
            let arg_names: Vec<String> = f
                .and_then(|f| f.signature.as_ref())
                .map(|s| {
                    s.input_arg
                        .iter()
                        .take(n_user)
                        .map(|a| a.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            let inputs = arg_names
                .iter()
                .map(|a| {
                    let info = sd.and_then(|sd| sd.inputs.get(a));
                    ArgSpec {
                        name: a.clone(),
                        dtype: info
                            .map(|i| DType::from_proto(i.dtype))
                            .unwrap_or(DType::Invalid),
                        shape: info.and_then(|i| i.tensor_shape.as_ref()).and_then(|s| {
                            if s.unknown_rank {
                                None
                            } else {
                                Some(s.dim.iter().map(|d| d.size).collect())
                            }
                        }),
                    }
                })
                .collect();
            let outputs = f
                .and_then(|f| f.signature.as_ref())
                .map(|s| s.output_arg.iter().map(|a| a.name.clone()).collect())
                .unwrap_or_default();
            out.push(EntryPoint {
                kind: EntryKind::Signature(key),
                function: fname,
                bound,
                inputs,
                outputs,
            });
        }
    }
    // __call__.
    if let Some(call) = child(og, 0, "__call__") {
        if let Some(f) = og.nodes.get(call).and_then(|n| n.function.as_ref()) {
            for fname in &f.concrete_functions {
                let Some(cf) = og.concrete_functions.get(fname) else {
                    continue;
                };
                let sig = cf.canonicalized_input_signature.clone().unwrap_or_default();
                let outputs = lib
                    .function(fname)
                    .and_then(|f| f.signature.as_ref())
                    .map(|s| s.output_arg.iter().map(|a| a.name.clone()).collect())
                    .unwrap_or_default();
                out.push(EntryPoint {
                    kind: EntryKind::Call {
                        training: training_flag(&sig),
                    },
                    function: fname.clone(),
                    bound: cf.bound_inputs.iter().map(|&b| b.max(0) as usize).collect(),
                    inputs: call_inputs(&sig),
                    outputs,
                });
            }
        }
    }
    Ok(out)
}

/// The entry point used by default: `serving_default`, else any signature, else
/// `__call__(training=False)`, else `__call__`.
pub fn default_entry(entries: &[EntryPoint]) -> Option<&EntryPoint> {
    entries
        .iter()
        .find(|e| e.kind == EntryKind::Signature("serving_default".into()))
        .or_else(|| {
            entries
                .iter()
                .find(|e| matches!(e.kind, EntryKind::Signature(_)))
        })
        .or_else(|| {
            entries.iter().find(|e| {
                e.kind
                    == EntryKind::Call {
                        training: Some(false),
                    }
            })
        })
        .or_else(|| {
            entries
                .iter()
                .find(|e| matches!(e.kind, EntryKind::Call { .. }))
        })
}

/// Builds the flat graph of an entry point.
pub fn build_graph(sm: &SavedModel, entry: &EntryPoint) -> Result<Graph, Error> {
    build_graph_of(sm.meta_graph(), entry)
}

/// [`build_graph`] on a meta graph.
pub fn build_graph_of(mg: &MetaGraphDef, entry: &EntryPoint) -> Result<Graph, Error> {
    let lib = graph::Library::new(mg);
    graph::build(&lib, &entry.function, &entry.bound)
}

/// `(op, node, function)` of every node the outputs need whose op is not implemented.
pub fn unsupported_ops(g: &Graph, with_controls: bool) -> Vec<(String, String, String)> {
    let need = g.needed(with_controls);
    let mut out = Vec::new();
    for (n, &k) in g.nodes.iter().zip(&need) {
        if !k || n.op == "_Input" {
            continue;
        }
        if n.subgraphs.is_empty() && !op_set::supported(&n.op) {
            out.push((n.op.clone(), n.name.clone(), n.function.clone()));
        }
        for &s in &n.subgraphs {
            if let Some(sub) = g.subgraphs.get(s) {
                out.extend(unsupported_ops(sub, with_controls));
            }
        }
    }
    out
}

/// Op type -> number of nodes the outputs need.
pub fn op_histogram(g: &Graph) -> BTreeMap<String, usize> {
    let need = g.needed(false);
    let mut h = BTreeMap::new();
    for (n, k) in g.nodes.iter().zip(need) {
        if k && n.op != "_Input" {
            *h.entry(n.op.clone()).or_insert(0) += 1;
            for &s in &n.subgraphs {
                if let Some(sub) = g.subgraphs.get(s) {
                    for (op, c) in op_histogram(sub) {
                        *h.entry(op).or_insert(0) += c;
                    }
                }
            }
        }
    }
    h
}
