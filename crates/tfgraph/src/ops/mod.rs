//! The op registry: one function per TensorFlow op type (families in the sub-modules).
//!
//! Values live either on the Burn device (float tensors, computed with the dispatch backend's
//! ops, so autodiff sees them) or on the host (constants, shapes, integers, bools, strings).
//! An op whose inputs are all on the host computes on the host (shape arithmetic); otherwise
//! host inputs are uploaded.

mod array;
mod elementwise;
#[cfg(test)]
pub(crate) use elementwise::erf64;
mod math;
mod nn;
mod text;
pub use text::{LookupTable, TableRef};

use crate::dev::{self, BT, FT};
use crate::graph::Node;
use crate::host::HostTensor;
use burn::tensor::Device;
use savedmodel::proto::AttrValue;
use savedmodel::DType;

/// A value flowing along an edge of the graph.
#[derive(Clone, Debug)]
pub enum Value {
    /// f32 tensor on the device.
    Dev(FT),
    /// bool tensor on the device.
    DevBool(BT),
    /// Tensor on the host.
    Host(HostTensor),
    /// A variable (resource handle): its slot.
    Var(usize),
    /// A lookup table (resource).
    Table(TableRef),
}

impl Value {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Dev(t) | Value::DevBool(t) => dev::shape(t),
            Value::Host(h) => h.shape.clone(),
            Value::Var(_) | Value::Table(_) => Vec::new(),
        }
    }
    pub fn is_host(&self) -> bool {
        matches!(self, Value::Host(_))
    }
}

/// What an op sees: the device, its node, the variables.
pub struct Ctx<'a> {
    pub device: &'a Device,
    pub node: &'a Node,
    pub vars: &'a [Value],
    /// Training mode: dropout etc. are live (the trace decides most of it).
    pub training: bool,
    /// The SavedModel's `assets` folder: the only place table files are read from.
    pub assets: Option<&'a std::path::Path>,
    /// Where `AssignVariableOp` puts the new value of a variable slot (a training trace's
    /// batch-norm moving averages); `None`: assignments are not kept.
    pub assigned: Option<&'a std::cell::RefCell<Vec<(usize, Value)>>>,
}

pub type OpResult = Result<Vec<Value>, String>;

impl<'a> Ctx<'a> {
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.node.attrs.get(name)
    }
    pub fn attr_i(&self, name: &str) -> Result<i64, String> {
        self.attr(name)
            .and_then(|a| a.i)
            .ok_or_else(|| format!("missing int attribute `{name}`"))
    }
    pub fn attr_f(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }
    pub fn attr_b(&self, name: &str) -> bool {
        self.attr(name).and_then(|a| a.b).unwrap_or(false)
    }
    pub fn attr_s(&self, name: &str) -> String {
        self.attr(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default()
    }
    pub fn attr_ints(&self, name: &str) -> Vec<i64> {
        self.attr(name)
            .and_then(|a| a.list.as_ref())
            .map(|l| l.i.clone())
            .unwrap_or_default()
    }
    pub fn attr_type(&self, name: &str) -> Option<DType> {
        self.attr(name)
            .and_then(|a| a.r#type)
            .map(DType::from_proto)
    }

    /// The file `name` (from the graph) if it lies inside the model's `assets` folder.
    pub fn asset_path(&self, name: &[u8]) -> Result<std::path::PathBuf, String> {
        let shown = String::from_utf8_lossy(name).into_owned();
        let outside = || format!("file {shown:?} is not inside the model's assets folder");
        let assets = self.assets.ok_or_else(outside)?;
        let name = std::str::from_utf8(name).map_err(|_| outside())?;
        let path = std::path::Path::new(name);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            assets.join(path)
        };
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let root = assets
            .canonicalize()
            .map_err(|e| format!("{}: {e}", assets.display()))?;
        if !real.starts_with(&root) || !real.is_file() {
            return Err(outside());
        }
        Ok(real)
    }

    /// The value as a device float tensor (uploading host values).
    pub fn float(&self, v: &Value) -> Result<FT, String> {
        match v {
            Value::Dev(t) => Ok(t.clone()),
            Value::DevBool(t) => Ok(dev::bool_to_float(t.clone())),
            Value::Host(h) => Ok(dev::upload(h.to_f32()?, &h.shape, self.device)),
            Value::Var(_) | Value::Table(_) => {
                Err("expected a tensor, got a resource handle".into())
            }
        }
    }
    /// The value as a device bool tensor.
    pub fn boolean(&self, v: &Value) -> Result<BT, String> {
        match v {
            Value::DevBool(t) => Ok(t.clone()),
            Value::Dev(t) => Ok(dev::not_equal(
                t.clone(),
                dev::zeros(&dev::shape(t), self.device),
            )),
            Value::Host(h) => Ok(dev::upload_bool(h.to_bool()?, &h.shape, self.device)),
            Value::Var(_) | Value::Table(_) => {
                Err("expected a tensor, got a resource handle".into())
            }
        }
    }
    /// The value on the host (reading device tensors back).
    pub fn host(&self, v: &Value) -> Result<HostTensor, String> {
        match v {
            Value::Host(h) => Ok(h.clone()),
            Value::Dev(t) => {
                let s = dev::shape(t);
                Ok(HostTensor::f32(s, dev::download(t.clone())?))
            }
            Value::DevBool(t) => {
                let s = dev::shape(t);
                Ok(HostTensor::bool(s, dev::download_bool(t.clone())?))
            }
            Value::Var(_) | Value::Table(_) => {
                Err("expected a tensor, got a resource handle".into())
            }
        }
    }
    /// The value on the host, borrowed when it is there already (strings, ids: no copy).
    pub fn host_ref<'v>(&self, v: &'v Value) -> Result<std::borrow::Cow<'v, HostTensor>, String> {
        match v {
            Value::Host(h) => Ok(std::borrow::Cow::Borrowed(h)),
            _ => self.host(v).map(std::borrow::Cow::Owned),
        }
    }
    /// Integer values of a (small, host) tensor: shapes, axes, sizes.
    pub fn ints(&self, v: &Value) -> Result<Vec<i64>, String> {
        match v {
            Value::Host(h) => h.to_i64(),
            _ => self.host(v)?.to_i64(),
        }
    }
}

/// Most elements an op may create from sizes written in the graph or computed from its
/// values (1 GiB of f32): a hostile graph cannot make it allocate without bound.
pub(crate) const MAX_ELEMENTS: usize = 1 << 28;

/// The element count of an output of `shape`, refused above [`MAX_ELEMENTS`].
pub(crate) fn checked_elements(shape: &[usize]) -> Result<usize, String> {
    crate::host::numel(shape)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("an output of shape {shape:?} would exceed {MAX_ELEMENTS} elements"))
}

pub(crate) fn arg(inputs: &[Value], i: usize) -> Result<&Value, String> {
    inputs
        .get(i)
        .ok_or_else(|| format!("expected at least {} inputs, got {}", i + 1, inputs.len()))
}

/// Normalises a possibly negative axis for rank `rank`.
pub(crate) fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        return Err(format!("axis {a} is out of range for rank {rank}"));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Runs a `FusedBatchNorm*` node with the ReLU (`hi` infinite) or ReLU6 that alone reads
/// its output fused in (`[lo, hi]`: its output clamped; see `Plan::bn_act`).
pub(crate) fn run_batch_norm_act(ctx: &Ctx, inputs: Vec<Value>, lo: f32, hi: f32) -> OpResult {
    nn::batch_norm(ctx, &inputs, Some((lo, hi)))
}

/// A `Conv2D` (`conv`, its input and filter) and the `FusedBatchNorm*` that alone reads its
/// output (`bn`, its inputs but for the first), with the activation after it if fused
/// (see `Plan::conv_bn`).
pub(crate) fn run_conv_batch_norm(
    conv: &Ctx,
    conv_inputs: Vec<Value>,
    bn: &Ctx,
    bn_inputs: Vec<Value>,
    act: Option<(f32, f32)>,
) -> OpResult {
    nn::conv_batch_norm(conv, &conv_inputs, bn, bn_inputs, act)
}

/// A `VALID` `Conv2D` / `DepthwiseConv2dNative` whose input was zero-padded by `pads`
/// (`[top, bottom, left, right]`) in a `Pad` node folded into it: `inputs[0]` is the
/// unpadded input.
pub(crate) fn run_conv_padded(ctx: &Ctx, inputs: Vec<Value>, pads: [usize; 4]) -> OpResult {
    nn::conv2d_padded(ctx, &inputs, pads)
}

/// Runs op `node.op` on `inputs`.
pub fn run(ctx: &Ctx, mut inputs: Vec<Value>) -> OpResult {
    let op = ctx.node.op.as_str();
    if op == "Mul" {
        if let Some(r) = elementwise::gate_mul(ctx, &mut inputs) {
            return r;
        }
    }
    // Softmax takes its input by value: the scores are read back without a copy.
    if matches!(op, "Softmax" | "LogSoftmax") && matches!(inputs[..], [Value::Dev(_)]) {
        let Some(Value::Dev(t)) = inputs.pop() else {
            unreachable!("checked to be one device tensor")
        };
        match crate::cpu_math::softmax_owned(t, op == "LogSoftmax", ctx.device) {
            Ok(r) => return r.map(|t| vec![Value::Dev(t)]),
            Err(t) => inputs.push(Value::Dev(t)),
        }
    }
    if let Some(r) = elementwise::run(op, ctx, &inputs) {
        return r;
    }
    if let Some(r) = array::run(op, ctx, &inputs) {
        return r;
    }
    if let Some(r) = math::run(op, ctx, &inputs) {
        return r;
    }
    if let Some(r) = nn::run(op, ctx, &inputs) {
        return r;
    }
    if let Some(r) = text::run(op, ctx, &inputs) {
        return r;
    }
    match op {
        "Identity" | "Snapshot" | "PreventGradient" | "CheckNumerics" | "EnsureShape" => {
            arg(&inputs, 0)?;
            Ok(inputs.into_iter().take(1).collect())
        }
        "StopGradient" => Ok(vec![match arg(&inputs, 0)? {
            Value::Dev(t) => Value::Dev(dev::detach(t.clone())),
            v => v.clone(),
        }]),
        "IdentityN" => Ok(inputs),
        "NoOp" => Ok(Vec::new()),
        "Const" => {
            let t = ctx
                .attr("value")
                .and_then(|a| a.tensor.as_ref())
                .ok_or("Const without a value")?;
            Ok(vec![Value::Host(
                HostTensor::from_proto(t).map_err(|e| e.to_string())?,
            )])
        }
        "AssignVariableOp" | "AssignAddVariableOp" | "AssignSubVariableOp" => {
            let Value::Var(slot) = arg(&inputs, 0)? else {
                return Err(format!("{op} of something that is not a variable"));
            };
            let value = arg(&inputs, 1)?.clone();
            let Some(sink) = ctx.assigned else {
                return Ok(Vec::new());
            };
            let value = if op == "AssignVariableOp" {
                value
            } else {
                let old = ctx
                    .vars
                    .get(*slot)
                    .ok_or_else(|| format!("variable slot {slot} is not loaded"))?;
                let (a, b) = (ctx.float(old)?, ctx.float(&value)?);
                Value::Dev(if op == "AssignAddVariableOp" {
                    dev::add(a, b)
                } else {
                    dev::sub(a, b)
                })
            };
            // Values read in later steps are the new ones, not part of this step's graph.
            let value = match value {
                Value::Dev(t) => Value::Dev(dev::detach(t)),
                v => v,
            };
            sink.borrow_mut().push((*slot, value));
            Ok(Vec::new())
        }
        "ReadVariableOp" => match arg(&inputs, 0)? {
            Value::Var(slot) => ctx
                .vars
                .get(*slot)
                .cloned()
                .map(|v| vec![v])
                .ok_or_else(|| format!("variable slot {slot} is not loaded")),
            _ => Err("ReadVariableOp of something that is not a variable".into()),
        },
        _ => Err(format!("op type {op} is not implemented")),
    }
}

pub use tfgraph_core::op_set::{supported, OTHER as SUPPORTED};

pub(crate) fn is_int(d: DType) -> bool {
    matches!(
        d,
        DType::I32
            | DType::I64
            | DType::U8
            | DType::I8
            | DType::I16
            | DType::U16
            | DType::U32
            | DType::U64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use savedmodel::proto::{AttrList, AttrValue};

    fn ints(i: Vec<i64>) -> AttrValue {
        AttrValue {
            list: Some(AttrList {
                i,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn string(s: &str) -> AttrValue {
        AttrValue {
            s: Some(s.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    /// A node of op `op` with `attrs` and no inputs, for running ops directly.
    fn node(op: &str, attrs: Vec<(&str, AttrValue)>) -> Node {
        Node {
            name: op.to_lowercase(),
            op: op.into(),
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            inputs: vec![],
            controls: vec![],
            function: "f".into(),
            binding: None,
            stateful: false,
            subgraphs: vec![],
        }
    }

    /// An inference context for `node` on `device`.
    fn ctx<'a>(device: &'a Device, node: &'a Node) -> Ctx<'a> {
        Ctx {
            device,
            node,
            vars: &[],
            training: false,
            assets: None,
            assigned: None,
        }
    }

    /// A `Conv2D` whose explicit padding (from the graph) overflows the padded size: an
    /// error naming the padding, on flex (the CPU kernels' path) and ndarray (Burn's).
    #[test]
    fn convolutions_refuse_padding_that_overflows() {
        let huge = i64::MAX;
        let node = node(
            "Conv2D",
            vec![
                ("strides", ints(vec![1, 1, 1, 1])),
                (
                    "explicit_paddings",
                    ints(vec![0, 0, huge, huge, 0, 0, 0, 0]),
                ),
                ("padding", string("EXPLICIT")),
            ],
        );
        #[allow(deprecated)]
        for device in [Device::flex(), Device::ndarray()] {
            let ctx = ctx(&device, &node);
            let x = dev::upload(vec![1.0; 2 * 2 * 3], &[1, 2, 2, 3], &device);
            let w = dev::upload(vec![1.0; 3 * 3 * 3 * 4], &[3, 3, 3, 4], &device);
            let err = run(&ctx, vec![Value::Dev(x), Value::Dev(w)]).unwrap_err();
            assert!(err.contains("too large"), "{err}");
        }
    }

    /// A `VALID` convolution with a folded `Pad` (`run_conv_padded`): the same output as the
    /// convolution of the zero-padded input, on flex (the CPU kernels) and ndarray (Burn's),
    /// an input smaller than the kernel until padded included; paddings from a hostile graph
    /// that overflow the padded size give an error.
    #[test]
    fn a_folded_pad_reads_as_the_padded_input() {
        let node = node(
            "DepthwiseConv2dNative",
            vec![
                ("strides", ints(vec![1, 2, 2, 1])),
                ("padding", string("VALID")),
            ],
        );
        let (h, w, c) = (2usize, 3usize, 2usize);
        let pads = [1usize, 2, 0, 1];
        let xv: Vec<f32> = (0..h * w * c).map(|i| i as f32 * 0.5 - 1.0).collect();
        let wv: Vec<f32> = (0..9 * c).map(|i| (i % 7) as f32 - 3.0).collect();
        // The input zero-padded by hand: [1, 5, 4, c].
        let (hp, wp) = (h + pads[0] + pads[1], w + pads[2] + pads[3]);
        let mut padded = vec![0f32; hp * wp * c];
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    padded[((y + pads[0]) * wp + x + pads[2]) * c + k] = xv[(y * w + x) * c + k];
                }
            }
        }
        #[allow(deprecated)]
        for device in [Device::flex(), Device::ndarray()] {
            let ctx = ctx(&device, &node);
            let filter = || Value::Dev(dev::upload(wv.clone(), &[3, 3, c, 1], &device));
            let x = Value::Dev(dev::upload(xv.clone(), &[1, h, w, c], &device));
            let got = run_conv_padded(&ctx, vec![x, filter()], pads).unwrap();
            let xp = Value::Dev(dev::upload(padded.clone(), &[1, hp, wp, c], &device));
            let want = run(&ctx, vec![xp, filter()]).unwrap();
            let host = |v: &Value| match v {
                Value::Dev(t) => dev::download(t.clone()).unwrap(),
                _ => panic!("a device tensor"),
            };
            assert_eq!(host(&got[0]), host(&want[0]), "{device:?}");
            let x = Value::Dev(dev::upload(xv.clone(), &[1, h, w, c], &device));
            let err = run_conv_padded(&ctx, vec![x, filter()], [usize::MAX, 1, 0, 0]).unwrap_err();
            assert!(err.contains("too large"), "{err}");
        }
    }

    #[test]
    fn sizes_from_the_graph_are_bounded() {
        assert_eq!(checked_elements(&[2, 3, 4]), Ok(24));
        assert!(checked_elements(&[1 << 20, 1 << 20])
            .unwrap_err()
            .contains("exceed"));
        assert!(checked_elements(&[usize::MAX, 2]).is_err());
    }
}
