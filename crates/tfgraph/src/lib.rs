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

mod cpu_einsum;
mod cpu_math;
mod dev;
mod fast;
mod fast_norm;
mod host;
mod layer;
pub mod ops;

pub use host::{HostData, HostTensor};
pub use layer::{KerasLayer, LayerUpdates};
pub use ops::Value;
pub use tfgraph_core::{
    build_graph, default_entry, entry_points, graph, op_histogram, unsupported_ops, ArgSpec,
    EntryKind, EntryPoint, Error,
};

use burn::tensor::Device;
use graph::{Binding, Graph};
use savedmodel::proto::SavedObjectGraph;
use savedmodel::{DType, SavedModel};
use std::collections::{BTreeMap, HashMap};

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
    /// Nodes that run a fused CPU kernel on their (rewritten) first input instead of
    /// their op ([`fast`]).
    fast: HashMap<usize, fast::FastOp>,
    /// Whether nodes that only the control outputs need run too (a resource initializer).
    with_controls: bool,
    /// Batch norms with the ReLU / ReLU6 that alone reads their output fused in
    /// (`[lo, hi]`): one kernel pass and one backward pass less on flex ([`cpu_train`]);
    /// the activation nodes pass their input through (`passed`).
    bn_act: HashMap<usize, (f32, f32)>,
    passed: std::collections::HashSet<usize>,
    /// `VALID` NHWC convolutions whose input a zero `Pad` (its only reader's) padded: they
    /// read the unpadded input with these `[top, bottom, left, right]` pads instead, and
    /// the `Pad` passes its input through (`passed`): no padded copy, and no strided slice
    /// of its gradient (Keras' MobileNetV2 pads before each stride-2 depthwise convolution).
    pad_conv: HashMap<usize, [usize; 4]>,
    /// Batch norms (NHWC; batch or frozen statistics) whose input is a `Conv2D` read by
    /// nothing else: the batch norm node runs both as one op (`ops::run_conv_batch_norm`),
    /// whose backward pass hands the batch norm's input gradient to the convolution's a
    /// block of pixels at a time; the convolution node only passes its input and filter on
    /// (`deferred`).
    conv_bn: HashMap<usize, usize>,
    deferred: std::collections::HashSet<usize>,
}

impl Plan {
    /// Finds the `FusedBatchNorm*` nodes whose output is read only by one `Relu` / `Relu6`
    /// (and is no graph output), for [`Plan::bn_act`].
    fn fuse_batch_norm_activations(&mut self) {
        let uses = fast::Uses::new(&self.graph);
        for (i, n) in self.graph.nodes.iter().enumerate() {
            if !n.op.starts_with("FusedBatchNorm") {
                continue;
            }
            let y = graph::ValueRef { node: i, index: 0 };
            let Some(reader) = uses.only_reader(y) else {
                continue;
            };
            let r = &self.graph.nodes[reader];
            let Some(bounds) = cpu_train::relu_bounds(&r.op) else {
                continue;
            };
            if r.inputs.len() == 1 && r.inputs[0] == y && r.subgraphs.is_empty() {
                self.bn_act.insert(i, bounds);
                self.passed.insert(reader);
            }
        }
    }

    /// Finds the NHWC `FusedBatchNorm*` nodes (batch or frozen statistics) whose input is
    /// the output of a `Conv2D` (NHWC, its input not a folded `Pad`) that nothing else reads,
    /// for [`Plan::conv_bn`]. Runs after [`Plan::fold_pads_into_convolutions`], on plans the
    /// inference rewrite does not take.
    fn fuse_convolutions_into_batch_norms(&mut self) {
        let uses = fast::Uses::new(&self.graph);
        for (i, n) in self.graph.nodes.iter().enumerate() {
            if !n.op.starts_with("FusedBatchNorm") || n.inputs.is_empty() || !n.subgraphs.is_empty()
            {
                continue;
            }
            let x = n.inputs[0];
            let p = &self.graph.nodes[x.node];
            if fast::attr_s(n, "data_format") == "NCHW"
                || p.op != "Conv2D"
                || p.inputs.len() != 2
                || !p.subgraphs.is_empty()
                || fast::attr_s(p, "data_format") == "NCHW"
                || x.index != 0
                || uses.only_reader(x) != Some(i)
                || self.pad_conv.contains_key(&x.node)
                || self.deferred.contains(&x.node)
            {
                continue;
            }
            self.conv_bn.insert(i, x.node);
            self.deferred.insert(x.node);
        }
    }

    /// Finds the zero `Pad`s of the height and width read only by a `VALID` NHWC `Conv2D` /
    /// `DepthwiseConv2dNative`, for [`Plan::pad_conv`].
    fn fold_pads_into_convolutions(&mut self, consts: &fast::Consts) {
        let uses = fast::Uses::new(&self.graph);
        for (i, n) in self.graph.nodes.iter().enumerate() {
            let conv = matches!(n.op.as_str(), "Conv2D" | "DepthwiseConv2dNative");
            if !conv
                || fast::attr_s(n, "padding") != "VALID"
                || fast::attr_s(n, "data_format") == "NCHW"
                || n.inputs.is_empty()
                || !n.subgraphs.is_empty()
            {
                continue;
            }
            let x = n.inputs[0];
            let p = &self.graph.nodes[x.node];
            if x.index != 0 || uses.only_reader(x) != Some(i) || !fast::is_float32(p) {
                continue;
            }
            if let Some(pads) = fast::zero_pads_hw(&self.graph, consts, p) {
                self.pad_conv.insert(i, pads);
                self.passed.insert(x.node);
            }
        }
    }

    fn new(mut graph: Graph, with_controls: bool) -> Plan {
        let subplans = std::mem::take(&mut graph.subgraphs)
            .into_iter()
            .map(|g| Plan::new(g, false))
            .collect();
        let mut plan = Plan {
            graph,
            order: Vec::new(),
            last_use: Vec::new(),
            subplans,
            fast: HashMap::new(),
            with_controls,
            bn_act: HashMap::new(),
            passed: Default::default(),
            pad_conv: HashMap::new(),
            conv_bn: HashMap::new(),
            deferred: Default::default(),
        };
        plan.schedule();
        plan
    }

    /// (Re)computes the execution order and last uses from the graph.
    fn schedule(&mut self) {
        let graph = &self.graph;
        let need = graph.needed(self.with_controls);
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
        self.order = order;
        self.last_use = last_use;
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
    assets: Option<&'a std::path::Path>,
    /// Where assignments to variables go (training traces).
    assigned: Option<&'a std::cell::RefCell<Vec<(usize, Value)>>>,
    /// Time per op type, when profiling.
    profile: Option<&'a std::cell::RefCell<BTreeMap<String, (std::time::Duration, usize)>>>,
    /// Profile rows per node (op and node name) instead of per op type.
    profile_nodes: bool,
}

impl Env<'_> {
    fn ctx<'n>(&'n self, node: &'n graph::Node) -> ops::Ctx<'n> {
        ops::Ctx {
            device: self.device,
            node,
            vars: self.vars,
            training: self.training,
            assets: self.assets,
            assigned: self.assigned,
        }
    }
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
                for (k, r) in node.inputs.iter().enumerate() {
                    let v = values[r.node]
                        .as_mut()
                        .and_then(|o| o.get_mut(r.index))
                        .ok_or_else(|| {
                            op_error(
                                node,
                                format!(
                                    "input {} of node {} is missing",
                                    r.index, nodes[r.node].name
                                ),
                            )
                        })?;
                    // A value read for the last time moves into the op (a host tensor of
                    // strings or ids is not copied); otherwise it is shared.
                    let last = plan.last_use[r.node] == pos && !node.inputs[k + 1..].contains(r);
                    ins.push(if last {
                        std::mem::replace(v, Value::Var(usize::MAX))
                    } else {
                        v.clone()
                    });
                }
                // A fused convolution's filter (its second output, read by nobody else).
                let conv_filter = match plan.conv_bn.get(&i) {
                    Some(&c) => Some(
                        values[c]
                            .as_mut()
                            .and_then(|o| o.get_mut(1))
                            .map(|v| std::mem::replace(v, Value::Var(usize::MAX)))
                            .ok_or_else(|| {
                                op_error(node, "the fused convolution's filter is missing".into())
                            })?,
                    ),
                    None => None,
                };
                // Values read for the last time are dropped before the op runs, so that
                // the op holds the only reference to them.
                for r in &node.inputs {
                    if plan.last_use[r.node] == pos {
                        values[r.node] = None;
                    }
                }
                let start = env.profile.map(|_| std::time::Instant::now());
                let outs = if plan.passed.contains(&i) {
                    ins.into_iter().take(1).collect()
                } else if plan.deferred.contains(&i) {
                    // Input and filter, for the batch norm that runs this convolution.
                    ins
                } else if let (Some(&c), Some(filter)) = (plan.conv_bn.get(&i), conv_filter) {
                    let mut ins = ins;
                    let x = std::mem::replace(&mut ins[0], Value::Var(usize::MAX));
                    ops::run_conv_batch_norm(
                        &env.ctx(&nodes[c]),
                        vec![x, filter],
                        &env.ctx(node),
                        ins,
                        plan.bn_act.get(&i).copied(),
                    )
                    .map_err(|msg| op_error(node, msg))?
                } else if let Some(&(lo, hi)) = plan.bn_act.get(&i) {
                    ops::run_batch_norm_act(&env.ctx(node), ins, lo, hi)
                        .map_err(|msg| op_error(node, msg))?
                } else if let Some(&pads) = plan.pad_conv.get(&i) {
                    ops::run_conv_padded(&env.ctx(node), ins, pads)
                        .map_err(|msg| op_error(node, msg))?
                } else if let Some(f) = plan.fast.get(&i) {
                    // The graph's own op, for a fused op that cannot take its input.
                    let op =
                        |n: usize, ins: Vec<Value>| ops::run(&env.ctx(&plan.graph.nodes[n]), ins);
                    vec![f
                        .run(ins, env.device, &op)
                        .map_err(|msg| op_error(node, msg))?]
                } else if node.subgraphs.is_empty() {
                    ops::run(&env.ctx(node), ins).map_err(|msg| op_error(node, msg))?
                } else {
                    run_control_flow(plan, env, node, ins)?
                };
                if let (Some(p), Some(t)) = (env.profile, start) {
                    let mut key = match plan.fast.get(&i) {
                        Some(f) => f.label().to_string(),
                        None => node.op.clone(),
                    };
                    if env.profile_nodes {
                        key = format!("{key} {}", node.name);
                    }
                    let mut p = p.borrow_mut();
                    let e = p.entry(key).or_default();
                    e.0 += t.elapsed();
                    e.1 += 1;
                }
                outs
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
    let h = env.ctx(node).host(v).map_err(|m| op_error(node, m))?;
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

/// How [`Model::load_with`] prepares a model.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run convolutions with their batch norms, biases and activations folded in on the
    /// project's CPU kernels, where that applies: the flex device (not autodiff) and an
    /// inference entry point. Default: on.
    pub cpu_fast_path: bool,
    /// Keep float64 variables in float64 on the host (ops on them then compute in float64,
    /// as TensorFlow does: a float64 embedding table). Off: they are float32 on the device
    /// like every other float variable (what a module that trains them needs). Default: on.
    pub float64_on_host: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cpu_fast_path: true,
            float64_on_host: true,
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
    /// Slot -> object-graph node.
    objects: Vec<usize>,
    training: bool,
    /// The SavedModel's `assets` folder.
    assets: std::path::PathBuf,
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
        Model::load_with(sm, entry, device, &Options::default())
    }

    /// [`Model::load`] with options.
    pub fn load_with(
        sm: &SavedModel,
        entry: Option<&EntryPoint>,
        device: &Device,
        options: &Options,
    ) -> Result<Model, Error> {
        // A training trace's control outputs are its variable assignments (batch-norm
        // moving averages): they run too.
        let training = matches!(
            entry.map(|e| &e.kind),
            Some(EntryKind::Call {
                training: Some(true)
            })
        );
        Model::load_inner(sm, entry, device, options, &HashMap::new(), training)
    }

    /// [`Model::load_with`], with the values of some captured objects given (`preset`: a
    /// resource being initialised), running the control outputs too when `with_controls`.
    fn load_inner(
        sm: &SavedModel,
        entry: Option<&EntryPoint>,
        device: &Device,
        options: &Options,
        preset: &HashMap<usize, Value>,
        with_controls: bool,
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
        let bad = unsupported_ops(&graph, with_controls);
        if !bad.is_empty() {
            return Err(Error::Unsupported(bad));
        }
        let mut plan = Plan::new(graph, with_controls);
        let (graph, order) = (&plan.graph, &plan.order);
        // Captured objects the pruned graph reads.
        let og = sm.meta_graph().object_graph_def.as_ref();
        let mut vars = Vec::new();
        let mut handles = Vec::new();
        let mut slot_of = HashMap::new();
        let mut by_object: HashMap<usize, usize> = HashMap::new();
        let mut objects = Vec::new();
        for &i in order {
            let n = &graph.nodes[i];
            let Some(Binding::Object(obj)) = n.binding else {
                continue;
            };
            if let Some(&s) = by_object.get(&obj) {
                slot_of.insert(i, s);
                continue;
            }
            let (v, handle) = match preset.get(&obj) {
                Some(v) => (v.clone(), false),
                None => load_object(sm, og, obj, device, options)?,
            };
            vars.push(v);
            handles.push(handle);
            objects.push(obj);
            let slot = vars.len() - 1;
            by_object.insert(obj, slot);
            slot_of.insert(i, slot);
        }
        let inference_rewrite = options.cpu_fast_path && !training && fast::applies_to(device);
        let consts = |g: &Graph, r: graph::ValueRef| constant(g, r, &vars, &slot_of);
        if !inference_rewrite {
            // Batch norms with their activation wherever the inference rewrite does not run
            // (training traces; inference traces on autodiff or other devices), also without
            // the CPU fast path: `KerasLayer` (and so `finetune`) loads its traces without it
            // (they take variables), and the fusion computes exactly what the two ops do.
            plan.fuse_batch_norm_activations();
            plan.fold_pads_into_convolutions(&consts);
            plan.fuse_convolutions_into_batch_norms();
        }
        if inference_rewrite {
            plan.fast = fast::rewrite(&mut plan.graph, &consts);
            plan.schedule();
            {
                // Variables only the folded nodes read are no longer needed on the device.
                let mut used = vec![false; vars.len()];
                for &i in &plan.order {
                    if let Some(&s) = slot_of.get(&i) {
                        used[s] = true;
                    }
                }
                for (v, u) in vars.iter_mut().zip(used) {
                    if !u {
                        *v = released();
                    }
                }
            }
        }
        Ok(Model {
            plan,
            entry,
            device: device.clone(),
            vars,
            handles,
            slot_of,
            objects,
            training,
            assets: sm.dir().join("assets"),
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
    /// How many nodes run on the CPU kernels (fused convolutions, poolings), and the graph
    /// nodes they cover.
    pub fn fused(&self) -> (usize, usize) {
        let nodes = self.plan.fast.values().map(|f| f.covers()).sum();
        (self.plan.fast.len(), nodes)
    }

    /// Whether graph node `node` (an index into [`Model::graph`]) is run by the CPU fast
    /// path: as the last node of a fused chain, the nodes before it are no longer needed.
    pub fn runs_on_fast_path(&self, node: usize) -> bool {
        self.plan.fast.contains_key(&node)
    }

    /// How many inverted-residual blocks (1x1 expansion, depthwise, 1x1 projection, one of
    /// the 1x1s possibly absent) run as one strip-by-strip kernel on the CPU fast path.
    pub fn fused_blocks(&self) -> usize {
        self.plan
            .fast
            .values()
            .filter(|f| matches!(f, fast::FastOp::Block(_)))
            .count()
    }

    /// How many `Add`s of a 1x1 convolution's output and another tensor (with the ReLU
    /// after them) run in the convolution's store on the CPU fast path.
    pub fn fused_residuals(&self) -> usize {
        self.plan
            .fast
            .values()
            .filter(|f| matches!(f, fast::FastOp::Residual(_)))
            .count()
    }

    /// How many stride-1 SAME `AvgPool`s run after the 1x1 convolution that reads them,
    /// swapped on the CPU fast path (Inception's pool branches).
    pub fn fused_pooled_convs(&self) -> usize {
        self.plan
            .fast
            .values()
            .filter(|f| matches!(f, fast::FastOp::PooledConv(_)))
            .count()
    }

    /// How many zero `Pad`s were folded into the convolution reading them (graphs the
    /// inference rewrite does not run on: training traces, other devices).
    pub fn folded_pads(&self) -> usize {
        self.plan.pad_conv.len()
    }

    /// How many `Conv2D` nodes run with the batch norm that alone reads them as one op
    /// (wherever the inference rewrite does not run; see `Plan::conv_bn`).
    pub fn fused_conv_batch_norms(&self) -> usize {
        self.plan.conv_bn.len()
    }

    /// Whether this is a `training=True` trace.
    pub fn is_training_trace(&self) -> bool {
        self.training
    }

    /// The captured variables the graph reads: object-graph node and current value
    /// (float variables on the device).
    pub fn variables(&self) -> impl Iterator<Item = (usize, &Value)> {
        self.objects
            .iter()
            .zip(&self.vars)
            .zip(&self.handles)
            .filter(|(_, &h)| h)
            .map(|((&o, v), _)| (o, v))
    }

    /// Drops the loaded values of the float variables: a module that owns them as
    /// parameters ([`KerasLayer`]) passes them to [`Model::run_with_variables`].
    pub(crate) fn release_float_variables(&mut self) {
        for (v, &handle) in self.vars.iter_mut().zip(&self.handles) {
            if handle && matches!(v, Value::Dev(_)) {
                *v = released();
            }
        }
    }

    /// [`Model::run`] with the float variables of object-graph nodes taken from `vars`
    /// (others as loaded), on `device` (the variables' device). This is how a module that
    /// owns the variables as parameters ([`KerasLayer`]) calls the graph; the CPU fast path
    /// (which bakes the loaded values in) must be off.
    pub fn run_with_variables(
        &self,
        vars: &HashMap<usize, Value>,
        device: &Device,
        inputs: Vec<Value>,
    ) -> Result<Vec<Value>, Error> {
        self.run_given(vars, device, inputs, None)
    }

    /// [`Model::run_with_variables`] that also returns the training trace's assignments: the
    /// new value of each assigned variable, by object-graph node (a batch norm's moving mean
    /// and variance after this batch), detached from the gradient tape.
    pub fn run_training(
        &self,
        vars: &HashMap<usize, Value>,
        device: &Device,
        inputs: Vec<Value>,
    ) -> Result<(Vec<Value>, Assignments), Error> {
        let assigned = std::cell::RefCell::new(Vec::new());
        let outs = self.run_given(vars, device, inputs, Some(&assigned))?;
        let updates = assigned
            .into_inner()
            .into_iter()
            .filter_map(|(slot, v)| self.objects.get(slot).map(|&o| (o, v)))
            .collect();
        Ok((outs, updates))
    }

    /// Runs with the float variables given by object-graph node, keeping assignments in
    /// `assigned` when given.
    fn run_given(
        &self,
        vars: &HashMap<usize, Value>,
        device: &Device,
        inputs: Vec<Value>,
        assigned: Option<&std::cell::RefCell<Vec<(usize, Value)>>>,
    ) -> Result<Vec<Value>, Error> {
        if !self.plan.fast.is_empty() {
            return Err(Error::Graph(
                "this model was loaded with the CPU fast path; load it with `cpu_fast_path: false` to pass variables".into(),
            ));
        }
        self.check_inputs(&inputs)?;
        let values: Vec<Value> = self
            .objects
            .iter()
            .zip(&self.vars)
            .map(|(o, v)| vars.get(o).cloned().unwrap_or_else(|| v.clone()))
            .collect();
        let env = Env {
            device,
            vars: &values,
            handles: &self.handles,
            slot_of: &self.slot_of,
            training: self.training,
            assets: Some(&self.assets),
            assigned,
            profile: None,
            profile_nodes: false,
        };
        let _flushed = cpu_kernels::flush_denormals();
        run_plan(&self.plan, &env, &inputs, true)
    }

    fn env<'a>(
        &'a self,
        profile: Option<&'a std::cell::RefCell<BTreeMap<String, (std::time::Duration, usize)>>>,
    ) -> Env<'a> {
        Env {
            device: &self.device,
            vars: &self.vars,
            handles: &self.handles,
            slot_of: &self.slot_of,
            training: self.training,
            assets: Some(&self.assets),
            assigned: None,
            profile,
            profile_nodes: false,
        }
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
        // Denormals flushed to zero, as TensorFlow runs (and ~100x faster where a gate
        // underflows).
        let _flushed = cpu_kernels::flush_denormals();
        run_plan(&self.plan, &self.env(None), &inputs, true)
    }

    /// [`Model::run`], also returning the time spent per op type (with the number of
    /// nodes run), slowest first; with `by_node`, per node (op type and node name).
    /// Meaningful on CPU devices, which run ops as they come.
    pub fn profile(
        &self,
        inputs: Vec<Value>,
        by_node: bool,
    ) -> Result<(Vec<Value>, Vec<(String, std::time::Duration, usize)>), Error> {
        self.check_inputs(&inputs)?;
        let p = std::cell::RefCell::new(BTreeMap::new());
        let env = Env {
            profile_nodes: by_node,
            ..self.env(Some(&p))
        };
        let _flushed = cpu_kernels::flush_denormals();
        let outs = run_plan(&self.plan, &env, &inputs, true)?;
        let mut times: Vec<_> = p
            .into_inner()
            .into_iter()
            .map(|(k, (t, n))| (k, t, n))
            .collect();
        times.sort_by(|a, b| b.1.cmp(&a.1));
        Ok((outs, times))
    }

    /// [`Model::run`] on host tensors, returning host tensors.
    pub fn run_host(&self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, Error> {
        let outs = self.run(inputs.into_iter().map(Value::Host).collect())?;
        outs.iter()
            .map(|v| {
                self.env(None)
                    .ctx(&self.plan.graph.nodes[0])
                    .host(v)
                    .map_err(|e| Error::Graph(format!("reading an output: {e}")))
            })
            .collect()
    }
}

/// The new values a training call assigned: object-graph node and value.
pub type Assignments = Vec<(usize, Value)>;

/// What stands in for a variable value that is no longer needed.
fn released() -> Value {
    Value::Host(HostTensor::f32(vec![0], vec![]))
}

/// The value of `r` if it is a constant: a `Const` node, a captured tensor, or a variable
/// read through `ReadVariableOp` (inference: variables do not change).
fn constant(
    g: &Graph,
    r: graph::ValueRef,
    vars: &[Value],
    slot_of: &HashMap<usize, usize>,
) -> Option<HostTensor> {
    let n = g.nodes.get(r.node)?;
    let slot_value = |i: usize| -> Option<HostTensor> {
        match vars.get(*slot_of.get(&i)?)? {
            Value::Host(h) => Some(h.clone()),
            Value::Dev(t) => Some(HostTensor::f32(
                dev::shape(t),
                dev::download(t.clone()).ok()?,
            )),
            _ => None,
        }
    };
    match n.op.as_str() {
        "Const" if r.index == 0 => {
            HostTensor::from_proto(n.attrs.get("value")?.tensor.as_ref()?).ok()
        }
        "ReadVariableOp" if r.index == 0 => {
            let h = n.inputs.first()?;
            let src = g.nodes.get(h.node)?;
            matches!(src.binding, Some(Binding::Object(_))).then_some(())?;
            slot_value(h.node)
        }
        "_Input" if matches!(n.binding, Some(Binding::Object(_))) => {
            let v = slot_value(r.node)?;
            (v.dtype != DType::String).then_some(v)
        }
        _ => None,
    }
}

/// The value of captured object `obj`, and whether it is a variable (read through a handle)
/// rather than a tensor (constant, asset path).
fn load_object(
    sm: &SavedModel,
    og: Option<&SavedObjectGraph>,
    obj: usize,
    device: &Device,
    options: &Options,
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
        let value = if h.dtype == DType::F64 && options.float64_on_host {
            Value::Host(h)
        } else if h.dtype.is_float() {
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
        return Ok((load_resource(sm, og, obj, device, options)?, false));
    }
    Err(err(format!(
        "captured object {obj} is neither a variable, a constant, an asset nor a resource"
    )))
}

/// A captured resource (a lookup table): its `_create_resource` function makes it, its
/// `_initialize` function fills it (reading its asset), as `tf.saved_model.load` does.
fn load_resource(
    sm: &SavedModel,
    og: Option<&SavedObjectGraph>,
    obj: usize,
    device: &Device,
    options: &Options,
) -> Result<Value, Error> {
    let err = |msg: String| Error::Model {
        path: sm.dir().to_path_buf(),
        msg: format!("resource (object {obj}): {msg}"),
    };
    let og = og.ok_or_else(|| err("no object graph".into()))?;
    let entry = |child: &str| -> Result<EntryPoint, Error> {
        let node = og
            .nodes
            .get(obj)
            .and_then(|n| n.children.iter().find(|c| c.local_name == child))
            .and_then(|c| og.nodes.get(c.node_id as usize))
            .ok_or_else(|| err(format!("no `{child}` function")))?;
        let name = match (&node.bare_concrete_function, &node.function) {
            (Some(b), _) => Some(b.concrete_function_name.clone()),
            (None, Some(f)) => f.concrete_functions.first().cloned(),
            _ => None,
        }
        .ok_or_else(|| err(format!("`{child}` is not a function")))?;
        let bound = og
            .concrete_functions
            .get(&name)
            .map(|c| c.bound_inputs.iter().map(|&b| b.max(0) as usize).collect())
            .unwrap_or_default();
        Ok(EntryPoint {
            kind: EntryKind::Call { training: None },
            function: name,
            bound,
            inputs: Vec::new(),
            outputs: Vec::new(),
        })
    };
    let none = HashMap::new();
    let creator = Model::load_inner(
        sm,
        Some(&entry("_create_resource")?),
        device,
        options,
        &none,
        true,
    )?;
    let table = creator
        .run(Vec::new())?
        .into_iter()
        .find(|v| matches!(v, Value::Table(_)))
        .ok_or_else(|| err("`_create_resource` made no lookup table".into()))?;
    let preset = HashMap::from([(obj, table.clone())]);
    let init = Model::load_inner(
        sm,
        Some(&entry("_initialize")?),
        device,
        options,
        &preset,
        true,
    )?;
    init.run(Vec::new())?;
    Ok(table)
}
