//! From a SavedModel's function library to one flat, topologically ordered graph.
//!
//! A TF2 SavedModel stores its callables as `FunctionDef`s. An entry point (a signature or a
//! `__call__` concrete function) is a function whose leading inputs are the user's tensors and
//! whose trailing inputs are captured resources (variables, tables), bound to object-graph
//! nodes by `SavedConcreteFunction.bound_inputs`. Calls (`StatefulPartitionedCall`,
//! `PartitionedCall`, or a node whose op is a library function) are inlined here; references
//! `node:out_arg:idx` are resolved to flat output indices through the op's `OpDef`; attributes
//! stripped because they equal their default are filled back from the `OpDef`.

use crate::error::Error;
use savedmodel::proto::{self, AttrValue, FunctionDef, NodeDef, OpDef};
use std::collections::{BTreeMap, HashMap};

/// Output `index` of node `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueRef {
    pub node: usize,
    pub index: usize,
}

/// What a graph input is bound to.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// The i-th user input.
    Input(usize),
    /// A captured object-graph node (variable, table, asset, constant).
    Object(usize),
}

/// One operation of the flat graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// Path of the node: `function/node`, nested for inlined calls.
    pub name: String,
    /// Op type; `_Input` for the entry's arguments.
    pub op: String,
    /// Attributes, defaults filled in.
    pub attrs: BTreeMap<String, AttrValue>,
    pub inputs: Vec<ValueRef>,
    /// Nodes that must run before this one (control inputs).
    pub controls: Vec<usize>,
    /// The function the node was defined in.
    pub function: String,
    /// For `_Input` nodes: what they are bound to.
    pub binding: Option<Binding>,
    /// The op's `OpDef` is stateful (assignments, random numbers).
    pub stateful: bool,
    /// For control flow (`If`, `While`): indices into [`Graph::subgraphs`] of the branch /
    /// cond and body functions.
    pub subgraphs: Vec<usize>,
}

/// A flat graph: nodes in an order where every input comes first.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Named outputs, in the entry function's output order.
    pub outputs: Vec<(String, ValueRef)>,
    /// Nodes that the entry function must run although no output depends on them
    /// (`control_ret`: variable assignments of training traces).
    pub control_outputs: Vec<usize>,
    /// The entry function's user inputs: argument names.
    pub input_names: Vec<String>,
    /// Functions of control-flow nodes, each built as a graph of its own (all its
    /// arguments are inputs).
    pub subgraphs: Vec<Graph>,
}

/// Control-flow ops and the attributes naming their functions.
pub(crate) fn control_flow_functions(op: &str) -> Option<&'static [&'static str]> {
    match op {
        "If" | "StatelessIf" => Some(&["then_branch", "else_branch"]),
        "While" | "StatelessWhile" => Some(&["cond", "body"]),
        _ => None,
    }
}

/// Limit on nested calls (a function calling itself is an error well before this).
const MAX_CALL_DEPTH: usize = 64;
/// Limit on inlined nodes, against call fan-out bombs.
const MAX_NODES: usize = 2_000_000;

/// The functions and op definitions of a meta graph, by name.
pub struct Library<'a> {
    functions: HashMap<&'a str, &'a FunctionDef>,
    ops: HashMap<&'a str, &'a OpDef>,
}

impl<'a> Library<'a> {
    pub fn new(mg: &'a proto::MetaGraphDef) -> Library<'a> {
        let mut functions = HashMap::new();
        if let Some(lib) = mg.graph_def.as_ref().and_then(|g| g.library.as_ref()) {
            for f in &lib.function {
                if let Some(sig) = &f.signature {
                    functions.insert(sig.name.as_str(), f);
                }
            }
        }
        let mut ops = HashMap::new();
        if let Some(list) = mg
            .meta_info_def
            .as_ref()
            .and_then(|m| m.stripped_op_list.as_ref())
        {
            for op in &list.op {
                ops.insert(op.name.as_str(), op);
            }
        }
        Library { functions, ops }
    }

    pub(crate) fn function(&self, name: &str) -> Option<&'a FunctionDef> {
        self.functions.get(name).copied()
    }

    pub(crate) fn op_def(&self, name: &str) -> Option<&'a OpDef> {
        self.ops.get(name).copied()
    }
}

/// The callee of a call node, if the node is one.
fn callee<'a>(lib: &Library<'a>, n: &NodeDef) -> Option<&'a FunctionDef> {
    if let Some(f) = lib.function(&n.op) {
        return Some(f);
    }
    if matches!(n.op.as_str(), "StatefulPartitionedCall" | "PartitionedCall") {
        let name = n.attr.get("f")?.func.as_ref()?.name.as_str();
        return lib.function(name);
    }
    None
}

struct Builder<'a, 'l> {
    lib: &'l Library<'a>,
    graph: Graph,
    stack: Vec<String>,
}

/// What a body node resolved to: the flat outputs and how `out_arg` names map onto them.
struct Resolved {
    /// Flat outputs (for calls: the callee's outputs).
    outputs: Vec<ValueRef>,
    /// `out_arg` name -> first flat index (single-tensor args: count 1).
    arg_offsets: HashMap<String, usize>,
    /// The node id to depend on for control edges (last node created).
    control: Option<usize>,
}

impl<'a, 'l> Builder<'a, 'l> {
    /// The function `fname` as a graph of its own (for control flow).
    fn build_sub(&mut self, fname: &str) -> Result<Graph, Error> {
        if self.stack.iter().any(|s| s == fname) || self.stack.len() >= MAX_CALL_DEPTH {
            return Err(Error::Graph(format!(
                "control-flow function `{fname}` is used recursively (call chain: {})",
                self.stack.join(" -> ")
            )));
        }
        let mut sub = Builder {
            lib: self.lib,
            graph: Graph::default(),
            stack: self.stack.clone(),
        };
        sub.entry(fname, &[])?;
        Ok(sub.graph)
    }

    /// Makes `fname` the graph's entry: `_Input` nodes for its arguments (the trailing
    /// `bound.len()` bound to objects), then its body.
    fn entry(&mut self, entry: &str, bound: &[usize]) -> Result<(), Error> {
        let f = self
            .lib
            .function(entry)
            .ok_or_else(|| Error::Graph(format!("function `{entry}` is not in the library")))?;
        let sig = f
            .signature
            .as_ref()
            .ok_or_else(|| Error::Graph(format!("function `{entry}` has no signature")))?;
        let n_in = sig.input_arg.len();
        if bound.len() > n_in {
            return Err(Error::Graph(format!(
                "function `{entry}` has {n_in} inputs but {} bound objects",
                bound.len()
            )));
        }
        let n_user = n_in - bound.len();
        let mut args = Vec::with_capacity(n_in);
        for (i, a) in sig.input_arg.iter().enumerate() {
            let binding = if i < n_user {
                self.graph.input_names.push(a.name.clone());
                Binding::Input(i)
            } else {
                Binding::Object(bound[i - n_user])
            };
            let mut attrs = BTreeMap::new();
            attrs.insert(
                "dtype".to_string(),
                AttrValue {
                    r#type: Some(a.r#type),
                    ..Default::default()
                },
            );
            let id = self.push(Node {
                name: format!("{entry}/{}", a.name),
                op: "_Input".into(),
                attrs,
                inputs: Vec::new(),
                controls: Vec::new(),
                function: entry.to_string(),
                binding: Some(binding),
                stateful: false,
                subgraphs: Vec::new(),
            })?;
            args.push(ValueRef { node: id, index: 0 });
        }
        let (outputs, controls) = self.inline(entry, &args, "")?;
        self.graph.outputs = sig
            .output_arg
            .iter()
            .map(|a| a.name.clone())
            .zip(outputs)
            .collect();
        self.graph.control_outputs = controls;
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<usize, Error> {
        if self.graph.nodes.len() >= MAX_NODES {
            return Err(Error::Graph(format!(
                "more than {MAX_NODES} nodes after inlining (function `{}`)",
                node.function
            )));
        }
        self.graph.nodes.push(node);
        Ok(self.graph.nodes.len() - 1)
    }

    /// Inlines function `fname` applied to `args`; returns its outputs (signature order) and
    /// the nodes its `control_ret` names.
    fn inline(
        &mut self,
        fname: &str,
        args: &[ValueRef],
        prefix: &str,
    ) -> Result<(Vec<ValueRef>, Vec<usize>), Error> {
        let f = self
            .lib
            .function(fname)
            .ok_or_else(|| Error::Graph(format!("function `{fname}` is not in the library")))?;
        if self.stack.iter().any(|s| s == fname) {
            return Err(Error::Graph(format!(
                "function `{fname}` calls itself (call chain: {})",
                self.stack.join(" -> ")
            )));
        }
        if self.stack.len() >= MAX_CALL_DEPTH {
            return Err(Error::Graph(format!(
                "calls nested deeper than {MAX_CALL_DEPTH} at `{fname}`"
            )));
        }
        self.stack.push(fname.to_string());
        let r = self.inline_body(f, fname, args, prefix);
        self.stack.pop();
        r
    }

    fn inline_body(
        &mut self,
        f: &'a FunctionDef,
        fname: &str,
        args: &[ValueRef],
        prefix: &str,
    ) -> Result<(Vec<ValueRef>, Vec<usize>), Error> {
        let sig = f
            .signature
            .as_ref()
            .ok_or_else(|| Error::Graph(format!("function `{fname}` has no signature")))?;
        if sig.input_arg.len() != args.len() {
            return Err(Error::Graph(format!(
                "function `{fname}` takes {} inputs, called with {}",
                sig.input_arg.len(),
                args.len()
            )));
        }
        let mut arg_map: HashMap<&str, ValueRef> = HashMap::new();
        for (a, v) in sig.input_arg.iter().zip(args) {
            arg_map.insert(a.name.as_str(), *v);
        }
        let by_name: HashMap<&str, &NodeDef> =
            f.node_def.iter().map(|n| (n.name.as_str(), n)).collect();
        if by_name.len() != f.node_def.len() {
            return Err(Error::Graph(format!(
                "function `{fname}` has two nodes with the same name"
            )));
        }

        // Iterative depth-first post-order over the body (no recursion: bodies can be long).
        let mut resolved: HashMap<&str, Resolved> = HashMap::new();
        let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
        let mut roots: Vec<&str> = Vec::new();
        for r in f.ret.values() {
            if let Some(n) = ref_node(r) {
                if !arg_map.contains_key(n) {
                    roots.push(n);
                }
            }
        }
        for n in f.control_ret.values() {
            roots.push(n.as_str());
        }
        for root in roots {
            if !by_name.contains_key(root) {
                return Err(Error::Graph(format!(
                    "function `{fname}` returns `{root}`, which is not one of its nodes"
                )));
            }
            let mut stack: Vec<(&str, bool)> = vec![(root, false)];
            while let Some((name, expanded)) = stack.pop() {
                if expanded {
                    let node = by_name[name];
                    let res = self.resolve_node(node, fname, prefix, &arg_map, &resolved)?;
                    resolved.insert(name, res);
                    state.insert(name, 2);
                    continue;
                }
                match state.get(name) {
                    Some(2) => continue,
                    Some(1) => {
                        return Err(Error::Graph(format!(
                            "cycle through node `{name}` in function `{fname}`"
                        )))
                    }
                    _ => {}
                }
                state.insert(name, 1);
                stack.push((name, true));
                let node = by_name[name];
                for inp in &node.input {
                    let dep = inp.strip_prefix('^').unwrap_or(inp);
                    let Some(dep) = ref_node(dep) else { continue };
                    if arg_map.contains_key(dep) && !inp.starts_with('^') {
                        continue;
                    }
                    if !by_name.contains_key(dep) {
                        if arg_map.contains_key(dep) {
                            continue;
                        }
                        return Err(Error::Graph(format!(
                            "node `{}` in function `{fname}` reads `{inp}`, which is neither an input nor a node",
                            node.name
                        )));
                    }
                    match state.get(dep) {
                        Some(2) => {}
                        Some(1) => {
                            return Err(Error::Graph(format!(
                                "cycle through node `{dep}` in function `{fname}`"
                            )))
                        }
                        _ => stack.push((dep, false)),
                    }
                }
            }
        }

        let mut outputs = Vec::with_capacity(sig.output_arg.len());
        for a in &sig.output_arg {
            let r = f.ret.get(&a.name).ok_or_else(|| {
                Error::Graph(format!(
                    "function `{fname}` has no value for its output `{}`",
                    a.name
                ))
            })?;
            outputs.push(lookup(r, fname, &arg_map, &resolved)?);
        }
        let mut controls = Vec::new();
        for n in f.control_ret.values() {
            if let Some(c) = resolved.get(n.as_str()).and_then(|r| r.control) {
                controls.push(c);
            }
        }
        Ok((outputs, controls))
    }

    fn resolve_node(
        &mut self,
        node: &'a NodeDef,
        fname: &str,
        prefix: &str,
        arg_map: &HashMap<&str, ValueRef>,
        resolved: &HashMap<&str, Resolved>,
    ) -> Result<Resolved, Error> {
        let mut inputs = Vec::new();
        let mut controls = Vec::new();
        for inp in &node.input {
            if let Some(c) = inp.strip_prefix('^') {
                if let Some(r) = resolved.get(c) {
                    if let Some(id) = r.control {
                        controls.push(id);
                    }
                }
                continue;
            }
            inputs.push(lookup(inp, fname, arg_map, resolved).map_err(|e| {
                Error::Graph(format!("node `{}` in function `{fname}`: {e}", node.name))
            })?);
        }
        let path = format!("{prefix}{}", node.name);
        if let Some(callee_fn) = callee(self.lib, node) {
            let cname = callee_fn
                .signature
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let (outputs, ctl) = self.inline(&cname, &inputs, &format!("{path}/"))?;
            let mut arg_offsets = HashMap::new();
            if let Some(sig) = &callee_fn.signature {
                for (i, a) in sig.output_arg.iter().enumerate() {
                    arg_offsets.insert(a.name.clone(), i);
                }
            }
            // `StatefulPartitionedCall` refers to its outputs as `output:i`.
            arg_offsets.entry("output".into()).or_insert(0);
            // Control edges on a call wait for the callee's outputs and stateful ops.
            let mut deps: Vec<usize> = outputs.iter().map(|v| v.node).collect();
            deps.extend(ctl);
            deps.extend(controls);
            let control = if deps.is_empty() {
                None
            } else {
                Some(self.push(Node {
                    name: format!("{path}/^done"),
                    op: "NoOp".into(),
                    attrs: BTreeMap::new(),
                    inputs: Vec::new(),
                    controls: deps,
                    function: fname.to_string(),
                    binding: None,
                    stateful: false,
                    subgraphs: Vec::new(),
                })?)
            };
            return Ok(Resolved {
                outputs,
                arg_offsets,
                control,
            });
        }

        let mut attrs = node.attr.clone();
        let mut subgraphs = Vec::new();
        if let Some(names) = control_flow_functions(&node.op) {
            for a in names {
                let f = attrs
                    .get(*a)
                    .and_then(|v| v.func.as_ref())
                    .map(|f| f.name.clone())
                    .ok_or_else(|| {
                        Error::Graph(format!(
                            "node `{}` ({}) in function `{fname}` has no `{a}` function",
                            node.name, node.op
                        ))
                    })?;
                let sub = self.build_sub(&f)?;
                self.graph.subgraphs.push(sub);
                subgraphs.push(self.graph.subgraphs.len() - 1);
            }
        }
        let op_def = self.lib.op_def(&node.op);
        let mut arg_offsets = HashMap::new();
        let mut n_out = 0usize;
        let mut stateful = false;
        if let Some(od) = op_def {
            stateful = od.is_stateful;
            for ad in &od.attr {
                if !attrs.contains_key(&ad.name) {
                    if let Some(d) = &ad.default_value {
                        attrs.insert(ad.name.clone(), d.clone());
                    }
                }
            }
            for a in &od.output_arg {
                arg_offsets.insert(a.name.clone(), n_out);
                let count = if !a.number_attr.is_empty() {
                    attrs
                        .get(&a.number_attr)
                        .and_then(|v| v.i)
                        .filter(|&n| (0..=1_000_000).contains(&n))
                        .ok_or_else(|| {
                            Error::Graph(format!(
                                "node `{}` ({}) in function `{fname}`: bad list length attribute `{}`",
                                node.name, node.op, a.number_attr
                            ))
                        })? as usize
                } else if !a.type_list_attr.is_empty() {
                    attrs
                        .get(&a.type_list_attr)
                        .and_then(|v| v.list.as_ref())
                        .map(|l| l.r#type.len())
                        .unwrap_or(0)
                } else {
                    1
                };
                n_out += count;
            }
        } else if let Some(args) = crate::op_set::output_args(&node.op) {
            // Not in the SavedModel's op list (TF leaves out some ops that only library
            // functions use): the executor's own record of the op's outputs.
            for a in args {
                arg_offsets.insert(a.to_string(), n_out);
                n_out += 1;
            }
        } else {
            // Unknown op (reported as unsupported before running): assume one output per
            // `out:idx` reference.
            n_out = 1;
        }
        let id = self.push(Node {
            name: path,
            op: node.op.clone(),
            attrs,
            inputs,
            controls,
            function: fname.to_string(),
            binding: None,
            stateful,
            subgraphs,
        })?;
        Ok(Resolved {
            outputs: (0..n_out)
                .map(|index| ValueRef { node: id, index })
                .collect(),
            arg_offsets,
            control: Some(id),
        })
    }
}

/// The node name a reference `node`, `node:idx` or `node:out:idx` names.
fn ref_node(r: &str) -> Option<&str> {
    let r = r.strip_prefix('^').unwrap_or(r);
    let n = r.split(':').next()?;
    if n.is_empty() {
        None
    } else {
        Some(n)
    }
}

fn lookup(
    r: &str,
    fname: &str,
    arg_map: &HashMap<&str, ValueRef>,
    resolved: &HashMap<&str, Resolved>,
) -> Result<ValueRef, Error> {
    let parts: Vec<&str> = r.split(':').collect();
    let bad = || Error::Graph(format!("bad reference `{r}` in function `{fname}`"));
    match parts.as_slice() {
        [name] => {
            if let Some(v) = arg_map.get(name) {
                return Ok(*v);
            }
            let res = resolved.get(name).ok_or_else(bad)?;
            res.outputs.first().copied().ok_or_else(bad)
        }
        [name, idx] => {
            let idx: usize = idx.parse().map_err(|_| bad())?;
            if let Some(v) = arg_map.get(name) {
                return if idx == 0 { Ok(*v) } else { Err(bad()) };
            }
            let res = resolved.get(name).ok_or_else(bad)?;
            res.outputs.get(idx).copied().ok_or_else(bad)
        }
        [name, out, idx] => {
            let idx: usize = idx.parse().map_err(|_| bad())?;
            let res = resolved.get(name).ok_or_else(bad)?;
            let off = match res.arg_offsets.get(*out) {
                Some(o) => *o,
                None if res.arg_offsets.is_empty() => 0,
                None => return Err(bad()),
            };
            res.outputs.get(off + idx).copied().ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// Builds the flat graph of function `entry` whose first `n_user` inputs are user inputs and
/// whose remaining inputs are bound to the object-graph nodes `bound`.
pub fn build(lib: &Library<'_>, entry: &str, bound: &[usize]) -> Result<Graph, Error> {
    let mut b = Builder {
        lib,
        graph: Graph::default(),
        stack: Vec::new(),
    };
    b.entry(entry, bound)?;
    Ok(b.graph)
}

impl Graph {
    /// The nodes the outputs need (and, with `with_controls`, the control outputs), in order.
    pub fn needed(&self, with_controls: bool) -> Vec<bool> {
        let mut need = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = self.outputs.iter().map(|(_, v)| v.node).collect();
        if with_controls {
            stack.extend(&self.control_outputs);
        }
        while let Some(n) = stack.pop() {
            if need[n] {
                continue;
            }
            need[n] = true;
            stack.extend(self.nodes[n].inputs.iter().map(|v| v.node));
            if with_controls {
                stack.extend(&self.nodes[n].controls);
            }
        }
        need
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use savedmodel::proto::{ArgDef, FunctionDefLibrary, GraphDef, MetaGraphDef, NameAttrList};

    fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
        NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn function(
        name: &str,
        ins: &[&str],
        outs: &[(&str, &str)],
        body: Vec<NodeDef>,
    ) -> FunctionDef {
        FunctionDef {
            signature: Some(OpDef {
                name: name.into(),
                input_arg: ins
                    .iter()
                    .map(|n| ArgDef {
                        name: n.to_string(),
                        r#type: 1,
                        ..Default::default()
                    })
                    .collect(),
                output_arg: outs
                    .iter()
                    .map(|(n, _)| ArgDef {
                        name: n.to_string(),
                        r#type: 1,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            node_def: body,
            ret: outs
                .iter()
                .map(|(n, r)| (n.to_string(), r.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn meta(functions: Vec<FunctionDef>) -> MetaGraphDef {
        let relu = OpDef {
            name: "Relu".into(),
            input_arg: vec![ArgDef {
                name: "features".into(),
                ..Default::default()
            }],
            output_arg: vec![ArgDef {
                name: "activations".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        MetaGraphDef {
            meta_info_def: Some(proto::MetaInfoDef {
                stripped_op_list: Some(proto::OpList { op: vec![relu] }),
                ..Default::default()
            }),
            graph_def: Some(GraphDef {
                node: vec![],
                library: Some(FunctionDefLibrary {
                    function: functions,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    fn call(name: &str, f: &str, inputs: &[&str]) -> NodeDef {
        let mut n = node(name, "StatefulPartitionedCall", inputs);
        n.attr.insert(
            "f".into(),
            AttrValue {
                func: Some(NameAttrList {
                    name: f.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        n
    }

    #[test]
    fn calls_are_inlined_and_outputs_resolved_through_op_defs() {
        let inner = function(
            "inner",
            &["x"],
            &[("y", "r:activations:0")],
            vec![node("r", "Relu", &["x"])],
        );
        let outer = function(
            "outer",
            &["a"],
            &[("out", "c:output:0")],
            vec![call("c", "inner", &["a"])],
        );
        let mg = meta(vec![inner, outer]);
        let lib = Library::new(&mg);
        let g = build(&lib, "outer", &[]).unwrap();
        let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.as_str()).collect();
        assert_eq!(ops, vec!["_Input", "Relu", "NoOp"]);
        assert_eq!(
            g.outputs,
            vec![("out".to_string(), ValueRef { node: 1, index: 0 })]
        );
        assert_eq!(g.nodes[1].inputs, vec![ValueRef { node: 0, index: 0 }]);
        assert_eq!(g.nodes[1].name, "c/r");
    }

    #[test]
    fn cycles_and_self_calls_are_errors_not_hangs() {
        let cyc = function(
            "cyc",
            &["x"],
            &[("y", "a:activations:0")],
            vec![
                node("a", "Relu", &["b:activations:0"]),
                node("b", "Relu", &["a:activations:0"]),
            ],
        );
        let mg = meta(vec![cyc]);
        let e = build(&Library::new(&mg), "cyc", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle"), "{e}");

        let selfcall = function(
            "rec",
            &["x"],
            &[("y", "c:output:0")],
            vec![call("c", "rec", &["x"])],
        );
        let mg = meta(vec![selfcall]);
        let e = build(&Library::new(&mg), "rec", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("calls itself"), "{e}");
    }

    #[test]
    fn dangling_references_and_missing_functions_are_named() {
        let f = function(
            "f",
            &["x"],
            &[("y", "r:activations:0")],
            vec![node("r", "Relu", &["nowhere:activations:0"])],
        );
        let mg = meta(vec![f]);
        let e = build(&Library::new(&mg), "f", &[]).unwrap_err().to_string();
        assert!(e.contains("nowhere") && e.contains("`f`"), "{e}");
        let e = build(&Library::new(&mg), "missing", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        let g = function(
            "g",
            &["x"],
            &[("y", "c:output:0")],
            vec![call("c", "absent", &["x"])],
        );
        let mg = meta(vec![g]);
        // An unknown callee is an op of its own (reported as unsupported), not a crash.
        let graph = build(&Library::new(&mg), "g", &[]).unwrap();
        assert!(graph
            .nodes
            .iter()
            .any(|n| n.op == "StatefulPartitionedCall"));
    }
}
