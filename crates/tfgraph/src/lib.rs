//! Runs the callable graph of any TF2 SavedModel on a Burn device.
//!
//! ```no_run
//! use burn::tensor::Device;
//! let sm = savedmodel::read(std::path::Path::new("model_dir"))?;
//! let model = tfgraph::Model::load(&sm, None, &Device::flex())?;
//! let x = tfgraph::HostTensor::f32(vec![1, 224, 224, 3], vec![0.5; 224 * 224 * 3]);
//! let outputs = model.run_host(vec![x])?;
//! println!("{:?}", outputs[0].shape);
//! # Ok::<(), tfgraph::Error>(())
//! ```
//!
//! Loading: the entry point (a signature such as `serving_default`, or the object graph's
//! `__call__` with its `training` variant) is looked up in the object graph; its function is
//! inlined with every function it calls into one flat graph ([`graph`]); the captured
//! variables are read from the checkpoint once and kept on the device; every op the outputs
//! need is checked against the registry and all unsupported ones are reported together
//! before anything runs. Running interprets the pruned graph: float tensors on the device
//! through the dispatch backend's ops (so an autodiff device records gradients), shapes and
//! integers on the host.

mod dev;
mod error;
pub mod graph;
mod host;
pub mod ops;

pub use error::Error;
pub use host::{HostData, HostTensor};
pub use ops::Value;

use burn::tensor::Device;
use graph::{Binding, Graph};
use savedmodel::proto::{SavedObjectGraph, StructuredValue};
use savedmodel::{DType, SavedModel};
use std::collections::{BTreeMap, HashMap};

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
    let mg = sm.meta_graph();
    let og = mg.object_graph_def.as_ref().ok_or_else(|| Error::Model {
        path: sm.dir().to_path_buf(),
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
    let lib = graph::Library::new(sm.meta_graph());
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
        if n.subgraphs.is_empty() && !ops::supported(&n.op) {
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

/// Most iterations a `While` loop may run.
const MAX_LOOP_ITERATIONS: usize = 1_000_000;

/// A graph with its execution order (pruned to what the outputs need) and the sub-plans of
/// its control-flow functions.
struct Plan {
    graph: Graph,
    order: Vec<usize>,
    /// For each node, the position in `order` after which its outputs are no longer needed.
    last_use: Vec<usize>,
    subplans: Vec<Plan>,
}

impl Plan {
    fn new(mut graph: Graph) -> Plan {
        let need = graph.needed(false);
        let order: Vec<usize> = (0..graph.nodes.len()).filter(|&i| need[i]).collect();
        let mut last_use = vec![usize::MAX; graph.nodes.len()];
        for (pos, &i) in order.iter().enumerate() {
            for v in &graph.nodes[i].inputs {
                last_use[v.node] = pos;
            }
        }
        for (_, v) in &graph.outputs {
            last_use[v.node] = usize::MAX;
        }
        let subplans = std::mem::take(&mut graph.subgraphs)
            .into_iter()
            .map(Plan::new)
            .collect();
        Plan {
            graph,
            order,
            last_use,
            subplans,
        }
    }
}

/// What every node of a run shares.
struct Env<'a> {
    device: &'a Device,
    vars: &'a [Value],
    /// Per slot: a variable (read through a handle) rather than a captured tensor.
    handles: &'a [bool],
    slot_of: &'a HashMap<usize, usize>,
    training: bool,
}

fn op_error(node: &graph::Node, msg: String) -> Error {
    Error::Op {
        op: node.op.clone(),
        node: node.name.clone(),
        function: node.function.clone(),
        msg,
    }
}

fn run_plan(plan: &Plan, env: &Env, inputs: &[Value], top: bool) -> Result<Vec<Value>, Error> {
    let nodes = &plan.graph.nodes;
    let mut values: Vec<Option<Vec<Value>>> = vec![None; nodes.len()];
    for (pos, &i) in plan.order.iter().enumerate() {
        let node = &nodes[i];
        let outs = match &node.binding {
            Some(Binding::Input(k)) => vec![inputs
                .get(*k)
                .cloned()
                .ok_or_else(|| op_error(node, format!("input {k} is missing")))?],
            Some(Binding::Object(_)) if top => {
                let slot = env.slot_of.get(&i).copied().unwrap_or(usize::MAX);
                match (env.handles.get(slot), env.vars.get(slot)) {
                    (Some(false), Some(v)) => vec![v.clone()],
                    _ => vec![Value::Var(slot)],
                }
            }
            Some(Binding::Object(_)) => {
                return Err(op_error(
                    node,
                    "captured object inside a control-flow function".into(),
                ))
            }
            None => {
                let mut ins = Vec::with_capacity(node.inputs.len());
                for r in &node.inputs {
                    let v = values[r.node]
                        .as_ref()
                        .and_then(|o| o.get(r.index))
                        .ok_or_else(|| {
                            op_error(
                                node,
                                format!(
                                    "input {} of node {} is missing",
                                    r.index, nodes[r.node].name
                                ),
                            )
                        })?;
                    ins.push(v.clone());
                }
                if node.subgraphs.is_empty() {
                    let ctx = ops::Ctx {
                        device: env.device,
                        node,
                        vars: env.vars,
                        training: env.training,
                    };
                    ops::run(&ctx, ins).map_err(|msg| op_error(node, msg))?
                } else {
                    run_control_flow(plan, env, node, ins)?
                }
            }
        };
        values[i] = Some(outs);
        for r in &node.inputs {
            if plan.last_use[r.node] == pos {
                values[r.node] = None;
            }
        }
    }
    plan.graph
        .outputs
        .iter()
        .map(|(name, r)| {
            values[r.node]
                .as_ref()
                .and_then(|o| o.get(r.index))
                .cloned()
                .ok_or_else(|| Error::Graph(format!("output `{name}` was not computed")))
        })
        .collect()
}

/// The truth value of a control-flow condition (a scalar, or TF's non-empty rule).
fn truth(env: &Env, node: &graph::Node, v: &Value) -> Result<bool, Error> {
    let ctx = ops::Ctx {
        device: env.device,
        node,
        vars: env.vars,
        training: env.training,
    };
    let h = ctx.host(v).map_err(|m| op_error(node, m))?;
    let b = h.to_bool().map_err(|m| op_error(node, m))?;
    Ok(match b.as_slice() {
        [x] => *x,
        v => !v.is_empty(),
    })
}

fn run_control_flow(
    plan: &Plan,
    env: &Env,
    node: &graph::Node,
    ins: Vec<Value>,
) -> Result<Vec<Value>, Error> {
    let sub = |k: usize| {
        node.subgraphs
            .get(k)
            .and_then(|&s| plan.subplans.get(s))
            .ok_or_else(|| op_error(node, "missing control-flow function".into()))
    };
    match node.op.as_str() {
        "If" | "StatelessIf" => {
            let c = ins
                .first()
                .ok_or_else(|| op_error(node, "no condition".into()))?;
            let branch = if truth(env, node, c)? {
                sub(0)?
            } else {
                sub(1)?
            };
            run_plan(branch, env, &ins[1..], false)
        }
        _ => {
            let (cond, body) = (sub(0)?, sub(1)?);
            let mut state = ins;
            for _ in 0..MAX_LOOP_ITERATIONS {
                let c = run_plan(cond, env, &state, false)?;
                let c = c
                    .first()
                    .ok_or_else(|| op_error(node, "the loop condition has no output".into()))?;
                if !truth(env, node, c)? {
                    return Ok(state);
                }
                let next = run_plan(body, env, &state, false)?;
                if next.len() != state.len() {
                    return Err(op_error(
                        node,
                        format!(
                            "the loop body returns {} values for {} loop variables",
                            next.len(),
                            state.len()
                        ),
                    ));
                }
                state = next;
            }
            Err(op_error(
                node,
                format!("the loop ran more than {MAX_LOOP_ITERATIONS} iterations"),
            ))
        }
    }
}

/// A loaded entry point, ready to run.
pub struct Model {
    plan: Plan,
    entry: EntryPoint,
    device: Device,
    vars: Vec<Value>,
    handles: Vec<bool>,
    /// `_Input` node -> variable slot.
    slot_of: HashMap<usize, usize>,
    training: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("entry", &self.entry.label())
            .field("nodes", &self.plan.order.len())
            .field("variables", &self.vars.len())
            .finish()
    }
}

impl Model {
    /// Loads `entry` (default: [`default_entry`]) of `sm` onto `device`.
    pub fn load(
        sm: &SavedModel,
        entry: Option<&EntryPoint>,
        device: &Device,
    ) -> Result<Model, Error> {
        let entries;
        let entry = match entry {
            Some(e) => e.clone(),
            None => {
                entries = entry_points(sm)?;
                default_entry(&entries)
                    .ok_or_else(|| Error::Model {
                        path: sm.dir().to_path_buf(),
                        msg: "no signature and no __call__ function to run".into(),
                    })?
                    .clone()
            }
        };
        let graph = build_graph(sm, &entry)?;
        let training = matches!(
            entry.kind,
            EntryKind::Call {
                training: Some(true)
            }
        );
        let bad = unsupported_ops(&graph, false);
        if !bad.is_empty() {
            return Err(Error::Unsupported(bad));
        }
        let plan = Plan::new(graph);
        let (graph, order) = (&plan.graph, &plan.order);
        // Captured objects the pruned graph reads.
        let og = sm.meta_graph().object_graph_def.as_ref();
        let mut vars = Vec::new();
        let mut handles = Vec::new();
        let mut slot_of = HashMap::new();
        let mut by_object: HashMap<usize, usize> = HashMap::new();
        for &i in order {
            let n = &graph.nodes[i];
            let Some(Binding::Object(obj)) = n.binding else {
                continue;
            };
            if let Some(&s) = by_object.get(&obj) {
                slot_of.insert(i, s);
                continue;
            }
            let (v, handle) = load_object(sm, og, obj, device)?;
            vars.push(v);
            handles.push(handle);
            let slot = vars.len() - 1;
            by_object.insert(obj, slot);
            slot_of.insert(i, slot);
        }
        Ok(Model {
            plan,
            entry,
            device: device.clone(),
            vars,
            handles,
            slot_of,
            training,
        })
    }

    /// Reads the SavedModel in `dir` and loads its default entry point.
    pub fn open(dir: &std::path::Path, device: &Device) -> Result<Model, Error> {
        let sm = savedmodel::read(dir)?;
        Model::load(&sm, None, device)
    }

    pub fn entry(&self) -> &EntryPoint {
        &self.entry
    }
    pub fn graph(&self) -> &Graph {
        &self.plan.graph
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn check_inputs(&self, inputs: &[Value]) -> Result<(), Error> {
        let n = self.plan.graph.input_names.len();
        if inputs.len() != n {
            return Err(Error::Input(format!(
                "{} takes {n} input(s) ({}), got {}",
                self.entry.label(),
                self.plan.graph.input_names.join(", "),
                inputs.len()
            )));
        }
        for (i, (v, spec)) in inputs.iter().zip(&self.entry.inputs).enumerate() {
            let s = v.shape();
            if let Some(want) = &spec.shape {
                let ok = want.len() == s.len()
                    && want.iter().zip(&s).all(|(&w, &d)| w < 0 || w as usize == d);
                if !ok {
                    return Err(Error::Input(format!(
                        "input {i} (`{}`) has shape {s:?}; the model takes {want:?} (-1 = any size)",
                        spec.name
                    )));
                }
            }
            let host_dtype = match v {
                Value::Host(h) => Some(h.dtype),
                Value::Dev(_) => Some(DType::F32),
                _ => None,
            };
            if let Some(d) = host_dtype {
                let float = |x: DType| x.is_float();
                if spec.dtype != DType::Invalid && float(spec.dtype) != float(d) {
                    return Err(Error::Input(format!(
                        "input {i} (`{}`) is {d}; the model takes {}",
                        spec.name, spec.dtype
                    )));
                }
            }
        }
        Ok(())
    }

    /// Runs the graph on `inputs` (in the entry's input order); returns its outputs in order.
    pub fn run(&self, inputs: Vec<Value>) -> Result<Vec<Value>, Error> {
        self.check_inputs(&inputs)?;
        let env = Env {
            device: &self.device,
            vars: &self.vars,
            handles: &self.handles,
            slot_of: &self.slot_of,
            training: self.training,
        };
        run_plan(&self.plan, &env, &inputs, true)
    }

    /// [`Model::run`] on host tensors, returning host tensors.
    pub fn run_host(&self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, Error> {
        let outs = self.run(inputs.into_iter().map(Value::Host).collect())?;
        outs.iter()
            .map(|v| {
                let ctx = ops::Ctx {
                    device: &self.device,
                    node: &self.plan.graph.nodes[0],
                    vars: &self.vars,
                    training: self.training,
                };
                ctx.host(v)
                    .map_err(|e| Error::Graph(format!("reading an output: {e}")))
            })
            .collect()
    }
}

/// The value of captured object `obj`, and whether it is a variable (read through a handle)
/// rather than a tensor (constant, asset path).
fn load_object(
    sm: &SavedModel,
    og: Option<&SavedObjectGraph>,
    obj: usize,
    device: &Device,
) -> Result<(Value, bool), Error> {
    let err = |msg: String| Error::Model {
        path: sm.dir().to_path_buf(),
        msg,
    };
    let node = og
        .and_then(|g| g.nodes.get(obj))
        .ok_or_else(|| err(format!("captured object {obj} is not in the object graph")))?;
    if node.variable.is_some() {
        let v = sm
            .variable_of_node(obj)
            .ok_or_else(|| err(format!("variable of object {obj} is not in the checkpoint")))?;
        let t = sm.tensor(&v.name)?;
        let h = HostTensor::from_checkpoint(t)
            .map_err(|e| err(format!("variable `{}`: {e}", v.name)))?;
        let value = if h.dtype.is_float() {
            Value::Dev(dev::upload(h.to_f32().map_err(err)?, &h.shape, device))
        } else {
            Value::Host(h)
        };
        return Ok((value, true));
    }
    if let Some(c) = &node.constant {
        let g = sm.meta_graph().graph_def.as_ref();
        let cn = g
            .and_then(|g| g.node.iter().find(|n| n.name == c.operation))
            .ok_or_else(|| err(format!("constant `{}` is not in the graph", c.operation)))?;
        let t = cn
            .attr
            .get("value")
            .and_then(|a| a.tensor.as_ref())
            .ok_or_else(|| err(format!("constant `{}` has no value", c.operation)))?;
        return Ok((Value::Host(HostTensor::from_proto(t)?), false));
    }
    if let Some(a) = &node.asset {
        let assets = sm.assets();
        let idx = a.asset_file_def_index.max(0) as usize;
        let name = sm
            .meta_graph()
            .asset_file_def
            .get(idx)
            .map(|f| f.filename.clone())
            .ok_or_else(|| err(format!("asset {idx} is not listed")))?;
        let path = assets
            .iter()
            .find(|x| x.filename == name)
            .map(|x| x.path.to_string_lossy().into_owned())
            .ok_or_else(|| err(format!("asset `{name}` is missing")))?;
        return Ok((
            Value::Host(HostTensor {
                dtype: DType::String,
                shape: vec![],
                data: HostData::Str(vec![path.into_bytes()]),
            }),
            false,
        ));
    }
    if node.resource.is_some() {
        return Err(Error::Unsupported(vec![(
            "captured resource (lookup table)".into(),
            format!("object {obj}"),
            "(object graph)".into(),
        )]));
    }
    Err(err(format!(
        "captured object {obj} is neither a variable, a constant, an asset nor a resource"
    )))
}
