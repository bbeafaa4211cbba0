//! Keras' `LayerNormalization` over the last axis as one fast op (transformers normalise
//! twice per block): the eleven graph nodes `tf.nn.moments` and `tf.nn.batch_normalization`
//! write (`Mean`, `SquaredDifference`, `Mean`, `AddV2` eps, `Rsqrt`, `Mul` gamma, `Mul` x,
//! `Mul` mean, `Sub` from beta, `AddV2`) run as [`cpu_kernels::rowwise::layer_norm_rows`] in
//! TensorFlow's order of operations. Inputs the kernel does not take (another axis than the
//! last, a channel count that does not match gamma, a host tensor) replay the graph's own
//! nodes.

use crate::dev;
use crate::fast::{is_float32, reads_pair, Consts, GraphOp, Uses};
use crate::graph::{Graph, ValueRef};
use crate::ops::Value;
use burn::tensor::Device;
use savedmodel::DType;
use std::collections::HashMap;

/// A matched layer normalisation.
pub(crate) struct FusedLayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
    /// The reduction axis as the graph gives it (the last axis, checked at run time).
    axis: i64,
    /// The graph's nodes in dependency order with their inputs, and the values from
    /// outside them (`x` first): the fallback replays them.
    nodes: Vec<(usize, Vec<ValueRef>)>,
    externals: Vec<ValueRef>,
}

impl FusedLayerNorm {
    /// The external values the fused node reads (`x` first), in [`FusedLayerNorm::run`]'s
    /// order.
    pub(crate) fn inputs(&self) -> &[ValueRef] {
        &self.externals
    }
    pub(crate) fn covers(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn run(
        &self,
        ins: Vec<Value>,
        device: &Device,
        op: &GraphOp,
    ) -> Result<Value, String> {
        let c = self.gamma.len();
        let shape = match ins.first() {
            Some(Value::Dev(t)) => dev::shape(t),
            Some(Value::Host(h)) if h.dtype == DType::F32 => h.shape.clone(),
            _ => return self.replay(ins, op),
        };
        let r = shape.len() as i64;
        if r == 0 || !(self.axis == r - 1 || self.axis == -1) || shape[shape.len() - 1] != c {
            return self.replay(ins, op);
        }
        // The input is read in place (a transformer's residual stream is read by the norm
        // and by the residual add after the block).
        let (_, src) = crate::cpu_math::f32_input(&ins[0])?;
        let mut out = vec![0f32; src.len()];
        cpu_kernels::rowwise::layer_norm_rows(
            &src,
            &mut out,
            c,
            Some(&self.gamma),
            Some(&self.beta),
            self.eps,
        );
        Ok(Value::Dev(dev::upload(out, &shape, device)))
    }

    /// The graph's own nodes, one after the other.
    fn replay(&self, ins: Vec<Value>, op: &GraphOp) -> Result<Value, String> {
        let mut vals: HashMap<ValueRef, Value> = self.externals.iter().copied().zip(ins).collect();
        let mut last = None;
        for (n, inputs) in &self.nodes {
            let args = inputs
                .iter()
                .map(|r| vals.get(r).cloned().ok_or("a layer norm input is missing"))
                .collect::<Result<Vec<_>, _>>()?;
            let out = op(*n, args)?
                .into_iter()
                .next()
                .ok_or("the op gave no output")?;
            vals.insert(ValueRef { node: *n, index: 0 }, out.clone());
            last = Some(out);
        }
        last.ok_or_else(|| "an empty layer norm".into())
    }
}

/// The layer normalisation whose first `Mean` is node `m`, if the nodes after it are
/// Keras' (with gamma and beta constants of one channel count and a scalar epsilon), each
/// read only inside it. Returns it and its last node.
pub(crate) fn plan(
    g: &Graph,
    consts: &Consts,
    uses: &Uses,
    m: usize,
) -> Option<(FusedLayerNorm, usize)> {
    let node = |n: usize| &g.nodes[n];
    let out = |n: usize| ValueRef { node: n, index: 0 };
    let is = |n: usize, op: &str| node(n).op == op;
    let keep_dims = |n: usize| node(n).attrs.get("keep_dims").and_then(|a| a.b) == Some(true);
    let reads = |n: usize, a: ValueRef, b: ValueRef| reads_pair(g, n, a, b);
    let axis_of = |n: usize| -> Option<i64> {
        let a = consts(g, *node(n).inputs.get(1)?)?.to_i64().ok()?;
        (a.len() == 1).then(|| a[0])
    };
    if !is(m, "Mean") || node(m).inputs.len() != 2 || !keep_dims(m) || !is_float32(node(m)) {
        return None;
    }
    let x = node(m).inputs[0];
    let axis = axis_of(m)?;
    // The mean is read by the squared difference and by `mean * inv`.
    let [a, b] = uses.readers(out(m)) else {
        return None;
    };
    let (sqd, mul2) = if is(*a, "SquaredDifference") {
        (*a, *b)
    } else {
        (*b, *a)
    };
    if !is(sqd, "SquaredDifference") || !reads(sqd, x, out(m)) || !is(mul2, "Mul") {
        return None;
    }
    let var = uses.only_reader(out(sqd)).filter(|&v| {
        is(v, "Mean") && node(v).inputs[0] == out(sqd) && keep_dims(v) && axis_of(v) == Some(axis)
    })?;
    let add = uses
        .only_reader(out(var))
        .filter(|&a| is(a, "AddV2") || is(a, "Add"))?;
    let ai = &node(add).inputs;
    let k = (0..2).find(|&k| ai.len() == 2 && ai[k] == out(var))?;
    let eps = consts(g, ai[1 - k]).and_then(|t| {
        let v = t.to_f32().ok()?;
        (t.dtype == DType::F32 && v.len() == 1).then(|| v[0])
    })?;
    let rsqrt = uses.only_reader(out(add)).filter(|&r| is(r, "Rsqrt"))?;
    let mul = uses.only_reader(out(rsqrt)).filter(|&n| is(n, "Mul"))?;
    let mi = &node(mul).inputs;
    let k = (0..2).find(|&k| mi.len() == 2 && mi[k] == out(rsqrt))?;
    let gamma_ref = mi[1 - k];
    let vector = |r: ValueRef| -> Option<Vec<f32>> {
        let t = consts(g, r)?;
        (t.dtype == DType::F32 && t.shape.len() == 1).then(|| t.to_f32().ok())?
    };
    let gamma = vector(gamma_ref)?;
    // `inv` is read by `x * inv` and `mean * inv`.
    let [p, q] = uses.readers(out(mul)) else {
        return None;
    };
    let mul1 = if *p == mul2 { *q } else { *p };
    if !is(mul1, "Mul") || !reads(mul1, x, out(mul)) || !reads(mul2, out(m), out(mul)) {
        return None;
    }
    let sub = uses.only_reader(out(mul2)).filter(|&s| is(s, "Sub"))?;
    let si = &node(sub).inputs;
    if si.len() != 2 || si[1] != out(mul2) {
        return None;
    }
    let beta_ref = si[0];
    let beta = vector(beta_ref)?;
    let end = uses
        .only_reader(out(mul1))
        .filter(|&e| (is(e, "AddV2") || is(e, "Add")) && reads(e, out(mul1), out(sub)))?;
    if uses.only_reader(out(sub)) != Some(end) || gamma.len() != beta.len() || gamma.is_empty() {
        return None;
    }
    let order = [m, sqd, var, add, rsqrt, mul, mul1, mul2, sub, end];
    if order[..order.len() - 1]
        .iter()
        .any(|&n| !uses.only_first_output_used(g, n))
        || uses
            .outputs
            .iter()
            .any(|r| order[..order.len() - 1].contains(&r.node))
    {
        return None;
    }
    let inside = |r: &ValueRef| order.contains(&r.node);
    let mut externals = vec![x];
    let nodes: Vec<(usize, Vec<ValueRef>)> =
        order.iter().map(|&n| (n, node(n).inputs.clone())).collect();
    for (_, ins) in &nodes {
        for r in ins {
            if !inside(r) && !externals.contains(r) {
                externals.push(*r);
            }
        }
    }
    let fused = FusedLayerNorm {
        gamma,
        beta,
        eps,
        axis,
        nodes,
        externals,
    };
    Some((fused, end))
}
