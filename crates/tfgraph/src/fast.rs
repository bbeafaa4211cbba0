//! The CPU fast path for inference: plan-time rewrites that run the convolutions of a graph
//! on the project's NHWC kernels (`cpu-kernels`) instead of Burn's generic ones.
//!
//! Used on the flex device (not autodiff) for inference entry points. For every `Conv2D` /
//! `DepthwiseConv2dNative` whose filter is a constant or a variable (read once at load):
//! - a zero `Pad` in front of a VALID convolution becomes the kernel's own padding;
//! - the per-channel affine ops after it (`BiasAdd`, `Add`/`AddV2`/`Sub`/`Mul`/`RealDiv` by
//!   a per-channel or scalar constant, an inference `FusedBatchNorm`) are folded into the
//!   filter and a bias (in f64, rounded once);
//! - the activation after that (ReLU, ReLU6, sigmoid, swish `x * sigmoid(x)`, hard-sigmoid
//!   `relu6(x + 3) * (1/6)` and hard-swish `x * hard_sigmoid(x)`, as Keras writes them) is
//!   applied as the kernel stores its output.
//!
//! The last node of such a chain runs the fused kernel on the chain's input; the nodes in
//! between drop out of the plan. A chain only swallows nodes whose outputs nothing else
//! reads. `MaxPool` / `AvgPool` of the common forms run NHWC on `cpu-kernels` too; a
//! stride-1 SAME `AvgPool` whose only reader is a 1x1 convolution (Inception's pool
//! branches) runs after it instead ([`FastOp::PooledConv`]: both are linear per pixel, so
//! they commute, and the pooling then reads the convolution's fewer channels).
//!
//! A `MatMul` / `Einsum` by a constant is such a chain over the rows of its input (a
//! `Reshape` that keeps the last axis, as Keras' `Tensordot` ends, may sit in it: it runs
//! after the folded ops), with `tf.nn.gelu` (exact or tanh) as a possible activation. Keras'
//! `LayerNormalization` ([`crate::fast_norm`]) and inference batch norms that no convolution
//! absorbs (with the ops and activation after them: [`FastOp::ChannelAffine`]) are fast ops
//! of their own.
//! Everything else (and every graph on other devices or in training) runs the Burn ops as
//! before.

use crate::cpu_math;
use crate::dev;
use crate::fast_norm::FusedLayerNorm;
use crate::graph::{Graph, Node, ValueRef};
use crate::host::HostTensor;
use crate::ops::Value;
use burn::tensor::Device;
use cpu_kernels::{
    Act, Bottleneck, Conv2d, ConvGeometry, ConvWeights, DepthwiseConv2d, DepthwiseGeometry,
    GroupedConv2d, Nhwc, Padding, View,
};
use savedmodel::DType;
use std::collections::HashMap;

enum Kernel {
    Dense(Conv2d),
    Grouped(GroupedConv2d),
    Depthwise(DepthwiseConv2d),
}

/// What a kernel is packed from: the folded filter (output channel innermost), bias and
/// activation. Dense filters are packed at the first run, when the input's channel count
/// (and so the number of groups) is known.
struct Raw {
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    act: Act,
    geometry: Geometry,
}

#[derive(Clone, Copy)]
enum Geometry {
    Conv(ConvGeometry),
    Depthwise(DepthwiseGeometry),
}

impl Raw {
    fn pack(&self, channels: usize, cout: usize) -> Result<Kernel, String> {
        let bias = self.bias.as_deref();
        Ok(match self.geometry {
            Geometry::Depthwise(geo) => {
                if channels != geo.channels {
                    return Err(format!(
                        "input has {channels} channels; the depthwise filter takes {}",
                        geo.channels
                    ));
                }
                Kernel::Depthwise(DepthwiseConv2d::new(geo, &self.w, bias, self.act))
            }
            Geometry::Conv(geo) if channels == geo.cin => Kernel::Dense(Conv2d::new(
                geo,
                &[ConvWeights {
                    hwio: &self.w,
                    bias,
                    cout,
                    act: self.act,
                }],
            )),
            Geometry::Conv(geo) => {
                let groups = channels / geo.cin;
                if !channels.is_multiple_of(geo.cin) || groups == 0 || !cout.is_multiple_of(groups)
                {
                    return Err(format!(
                        "input has {channels} channels; the filter takes {} per group for {cout} outputs",
                        geo.cin
                    ));
                }
                let whole = ConvGeometry {
                    cin: channels,
                    ..geo
                };
                Kernel::Grouped(GroupedConv2d::new(
                    whole, groups, &self.w, bias, cout, self.act,
                ))
            }
        })
    }
}

/// A convolution with everything folded into it, ready to run.
pub(crate) struct FusedConv {
    /// Dropped once packed.
    raw: std::sync::Mutex<Option<Raw>>,
    packed: std::sync::OnceLock<(usize, Kernel)>,
    raw_geometry: Geometry,
    cout: usize,
    /// A `MatMul` / `Einsum` with a constant right operand, run as a 1x1 convolution over
    /// the rows of its flattened input.
    flat: Option<Flat>,
    /// Names of the graph nodes it computes.
    pub nodes: Vec<String>,
}

/// How a matrix product maps onto the 1x1 convolution: the input's last `contracted` axes
/// are the channels (their product is the filter's `cin`), the others the rows; the output
/// is the rows' axes followed by `out_dims` (whose product is `cout`).
struct Flat {
    contracted: usize,
    out_dims: Vec<usize>,
    /// The `Reshape` node after the product that keeps its last axis (Keras' `Dense` on
    /// 3-D tensors: `Tensordot` is a 2-D `MatMul` reshaped back), run as the graph has it
    /// after the folded ops and the activation (they act per channel, so they commute with
    /// it); its shape is the fused node's second input.
    reshape: Option<usize>,
}

impl FusedConv {
    /// What the profile calls it.
    pub(crate) fn label(&self) -> &'static str {
        if self.flat.is_some() {
            return "MatMul / Einsum (fused, cpu-kernels)";
        }
        match self.raw_geometry {
            Geometry::Conv(_) => "Conv2D (fused, cpu-kernels)",
            Geometry::Depthwise(_) => "DepthwiseConv2dNative (fused, cpu-kernels)",
        }
    }

    /// The kernel for an input of `channels` channels, packed on first use.
    fn kernel(&self, channels: usize) -> Result<&Kernel, String> {
        if self.packed.get().is_none() {
            let mut raw = self.raw.lock().map_err(|_| "a kernel failed to pack")?;
            if self.packed.get().is_none() {
                let r = raw.as_ref().ok_or("the kernel is not packed")?;
                let k = r.pack(channels, self.cout)?;
                let _ = self.packed.set((channels, k));
                *raw = None;
            }
        }
        let (c, k) = self.packed.get().ok_or("the kernel is not packed")?;
        if *c != channels {
            return Err(format!(
                "input has {channels} channels; the convolution was prepared for {c}"
            ));
        }
        Ok(k)
    }

    /// Runs on an NHWC float input; the output is a device tensor.
    /// A flex input is read in place ([`with_nhwc`]); a matrix product's input is read back
    /// (without a copy when this node holds the only reference).
    pub(crate) fn run(&self, x: Value, device: &Device) -> Result<Value, String> {
        if let Some(flat) = &self.flat {
            return self.run_flat(flat, x, device);
        }
        with_nhwc(x, |x| self.run_view(x, device))
    }

    /// Runs on the fused node's inputs: the input, and for a matrix product with a
    /// `Reshape` after it, the shape (given to the graph's own `Reshape`).
    fn run_node(&self, ins: Vec<Value>, device: &Device, op: &GraphOp) -> Result<Value, String> {
        let mut ins = ins.into_iter();
        let x = ins.next().ok_or("no input")?;
        let y = self.run(x, device)?;
        match self.flat.as_ref().and_then(|f| f.reshape) {
            Some(r) => {
                let shape = ins.next().ok_or("no shape for the reshape")?;
                op(r, vec![y, shape])?
                    .into_iter()
                    .next()
                    .ok_or_else(|| "the Reshape gave no output".into())
            }
            None => Ok(y),
        }
    }

    fn run_view(&self, x: View, device: &Device) -> Result<Value, String> {
        Ok(nhwc_output(self.forward(x)?, device))
    }

    /// The convolution of an NHWC view on the host, its output size checked first.
    fn forward(&self, x: View) -> Result<Nhwc, String> {
        let (n, h, w) = (x.n, x.h, x.w);
        let kernel = self.kernel(x.c)?;
        let hw = match kernel {
            Kernel::Dense(k) => k.output_hw(h, w),
            Kernel::Grouped(k) => k.output_hw(h, w),
            Kernel::Depthwise(k) => k.output_hw(h, w),
        };
        let (ho, wo) =
            hw.ok_or_else(|| format!("input {:?} is too small for the filter", [n, h, w, x.c]))?;
        crate::ops::checked_elements(&[n, ho, wo, self.cout])?;
        Ok(match kernel {
            Kernel::Dense(k) => k.forward(x),
            Kernel::Grouped(k) => k.forward(x),
            Kernel::Depthwise(k) => k.forward(x),
        })
    }

    /// A matrix product: `[rows.., k..] x [k.., out..]` as a 1x1 convolution over `rows`
    /// pixels of `prod(k)` channels.
    fn run_flat(&self, flat: &Flat, x: Value, device: &Device) -> Result<Value, String> {
        // A flex tensor is read in place (attention's query, key and value read the same
        // normalised tensor).
        let (shape, data) = cpu_math::f32_input(&x)?;
        if shape.len() < flat.contracted {
            return Err(format!("input {shape:?} has too few dimensions"));
        }
        let split = shape.len() - flat.contracted;
        let k: usize = shape[split..].iter().product();
        let rows: usize = shape[..split].iter().product();
        let mut out_shape = shape[..split].to_vec();
        out_shape.extend_from_slice(&flat.out_dims);
        crate::ops::checked_elements(&out_shape)?;
        let Geometry::Conv(geo) = self.raw_geometry else {
            return Err("a matrix product without a 1x1 geometry".into());
        };
        if k != geo.cin {
            return Err(format!(
                "input {shape:?} has {k} values to contract; the weights take {}",
                geo.cin
            ));
        }
        if rows == 0 {
            return Ok(Value::Dev(dev::upload(Vec::new(), &out_shape, device)));
        }
        if data.len() != rows * k {
            return Err("input size mismatch".into());
        }
        let x = View {
            data: &data,
            n: 1,
            h: rows,
            w: 1,
            c: k,
            stride: k,
            offset: 0,
        };
        let y = match self.kernel(k)? {
            Kernel::Dense(c) => c.forward(x),
            _ => return Err("a matrix product packed as another kernel".into()),
        };
        Ok(Value::Dev(dev::upload(y.data, &out_shape, device)))
    }
}

/// Runs `f` on a fast op's 4-D float input as an NHWC view: borrowed from a flex tensor
/// (no copy, even when other nodes still read it, as a ResNet block's input is read by
/// the block and its shortcut), otherwise read back ([`nhwc_input`]).
fn with_nhwc<R>(x: Value, f: impl FnOnce(View) -> Result<R, String>) -> Result<R, String> {
    if let Value::Dev(t) = &x {
        let shape = dev::shape(t);
        if let (Some(data), &[n, h, w, c]) = (dev::flex_f32(t), &shape[..]) {
            if data.len() == n * h * w * c {
                return f(View {
                    data,
                    n,
                    h,
                    w,
                    c,
                    stride: c,
                    offset: 0,
                });
            }
        }
    }
    let x = nhwc_input(x)?;
    f(x.view())
}

/// A copy of `v`'s channels as a tensor of its own.
fn owned(v: View) -> Nhwc {
    let mut data = Vec::with_capacity(v.n * v.h * v.w * v.c);
    for b in 0..v.n {
        for y in 0..v.h {
            for x in 0..v.w {
                data.extend_from_slice(v.pixel(b, y, x));
            }
        }
    }
    Nhwc {
        n: v.n,
        h: v.h,
        w: v.w,
        c: v.c,
        data,
    }
}

/// A fast op's input as an NHWC buffer (read back from the device: without a copy when the
/// op holds the only reference).
fn nhwc_input(x: Value) -> Result<Nhwc, String> {
    let (shape, data) = match x {
        Value::Dev(t) => (dev::shape(&t), dev::download(t)?),
        Value::Host(h) => (h.shape.clone(), h.to_f32()?),
        _ => return Err("the input is not a float tensor".into()),
    };
    let [n, h, w, c] = shape[..] else {
        return Err(format!("expects a 4-D NHWC input, got {shape:?}"));
    };
    Nhwc::from_vec(n, h, w, c, data).ok_or_else(|| "input size mismatch".into())
}

/// A fast op's output on the device.
fn nhwc_output(y: Nhwc, device: &Device) -> Value {
    let shape = [y.n, y.h, y.w, y.c];
    Value::Dev(dev::upload(y.data, &shape, device))
}

/// A node the fast path runs: a fused convolution, an inverted-residual block or an NHWC
/// pooling.
#[allow(clippy::large_enum_variant)] // a few dozen per graph
pub(crate) enum FastOp {
    Conv(FusedConv),
    Block(Box<FusedBlock>),
    Residual(Box<FusedResidual>),
    Pool(Pool),
    /// `Mean` of a float32 NHWC tensor over height and width (squeeze-and-excitation,
    /// global pooling), `keep_dims` or not; graph node `node` (run as such on other ranks).
    SpatialMean {
        keep_dims: bool,
        node: usize,
    },
    /// A zero `Pad` of height and width `[top, bottom, left, right]` (ResNet's padding in
    /// front of its max pooling), graph node `node` (run as such on other inputs).
    ZeroPad {
        pads: [usize; 4],
        node: usize,
    },
    /// Keras' `LayerNormalization` over the last axis (see [`crate::fast_norm`]).
    LayerNorm(Box<FusedLayerNorm>),
    /// An inference batch norm no convolution absorbs (ResNet v2's pre-activations), the
    /// per-channel ops after it and an activation: `act(x * scale + shift)` per channel.
    ChannelAffine(Box<FusedAffine>),
    /// A float32 `ConcatV2` along the last axis (Inception's block outputs): the 4-D flex
    /// inputs read in place, the output's rows written in parallel; graph node `node` (run
    /// as such on other inputs).
    ChannelConcat {
        node: usize,
    },
    /// A stride-1 SAME `AvgPool` and the fused 1x1 convolution that alone reads it, run in
    /// the other order: the convolution without its bias and activation, then the pooling
    /// with them (`act(avg(x W) + b) == act(avg(x) W + b)`).
    PooledConv(Box<PooledConv>),
}

/// See [`FastOp::PooledConv`].
pub(crate) struct PooledConv {
    /// Packed without bias and activation.
    conv: FusedConv,
    /// The pooling window's side (odd).
    k: usize,
    bias: Vec<f32>,
    act: Act,
}

impl PooledConv {
    fn run(&self, x: Value, device: &Device) -> Result<Value, String> {
        let y = with_nhwc(x, |x| self.conv.forward(x))?;
        let mut out = Nhwc::zeros(y.n, y.h, y.w, y.c);
        cpu_kernels::ops::avg_pool_same_into(
            y.view(),
            self.k,
            &self.bias,
            self.act,
            &mut out.slot_all(),
        );
        Ok(nhwc_output(out, device))
    }
}

/// `ConcatV2` of 4-D float32 flex tensors of one `[n, h, w]` along the channels (the last
/// input is the axis, checked at plan time); `None` for other inputs.
fn concat_channels(ins: &[Value], device: &Device) -> Option<Value> {
    use rayon::prelude::*;
    let (_, parts) = ins.split_last()?;
    let mut views: Vec<(&[f32], usize)> = Vec::with_capacity(parts.len());
    let mut nhw: Option<[usize; 3]> = None;
    for v in parts {
        let Value::Dev(t) = v else { return None };
        let data = dev::flex_f32(t)?;
        let &[n, h, w, c] = &dev::shape(t)[..] else {
            return None;
        };
        if nhw.is_some_and(|s| s != [n, h, w]) || data.len() != n * h * w * c {
            return None;
        }
        nhw = Some([n, h, w]);
        views.push((data, c));
    }
    let [n, h, w] = nhw?;
    let total: usize = views.iter().map(|v| v.1).sum();
    let rows = n * h * w;
    crate::ops::checked_elements(&[n, h, w, total]).ok()?;
    // Every element is written once below (no zeroing pass first).
    let mut out: Vec<f32> = Vec::with_capacity(rows * total);
    if total > 0 {
        let per = rows
            .div_ceil(4 * rayon::current_num_threads().max(1))
            .max(1);
        out.spare_capacity_mut()[..rows * total]
            .par_chunks_mut(per * total)
            .enumerate()
            .for_each(|(i, chunk)| {
                for (r, dst) in chunk.chunks_exact_mut(total).enumerate() {
                    let row = i * per + r;
                    let mut at = 0;
                    for &(data, c) in &views {
                        for (d, &v) in dst[at..at + c].iter_mut().zip(&data[row * c..][..c]) {
                            d.write(v);
                        }
                        at += c;
                    }
                }
            });
    }
    // SAFETY: the chunks cover all `rows * total` elements, each row's channel ranges
    // (one per input, `total` in all) written above.
    unsafe { out.set_len(rows * total) };
    Some(Value::Dev(dev::upload(out, &[n, h, w, total], device)))
}

/// Swaps each stride-1 SAME `AvgPool` with the fused 1x1 convolution that alone reads it
/// (see [`FastOp::PooledConv`]).
fn join_pooled_convs(g: &mut Graph, table: &mut HashMap<usize, FastOp>) {
    let uses = Uses::new(g);
    let ends: Vec<usize> = table.keys().copied().collect();
    for end in ends {
        let Some(FastOp::Conv(c)) = table.get(&end) else {
            continue;
        };
        let one_by_one = matches!(c.raw_geometry, Geometry::Conv(geo)
            if geo.kh == 1 && geo.kw == 1 && geo.stride == [1, 1]);
        let Some(&x) = g.nodes[end].inputs.first() else {
            continue;
        };
        if c.flat.is_some() || !one_by_one || x.index != 0 || uses.only_reader(x) != Some(end) {
            continue;
        }
        let pool = &g.nodes[x.node];
        let Some(Pool {
            max: false,
            same: true,
            k,
            s: 1,
        }) = Pool::of(pool).filter(|_| pool.inputs.len() == 1 && is_float32(pool))
        else {
            continue;
        };
        if table.contains_key(&x.node) {
            continue;
        }
        let Some(FastOp::Conv(conv)) = table.remove(&end) else {
            unreachable!("checked to be a fused convolution")
        };
        let (bias, act) = {
            let mut raw = conv.raw.lock().map_err(|_| ()).ok();
            match raw.as_mut().and_then(|r| r.as_mut()) {
                Some(r) => (
                    r.bias.take().unwrap_or_else(|| vec![0.0; conv.cout]),
                    std::mem::replace(&mut r.act, Act::Identity),
                ),
                None => {
                    drop(raw);
                    table.insert(end, FastOp::Conv(conv));
                    continue;
                }
            }
        };
        g.nodes[end].inputs = vec![g.nodes[x.node].inputs[0]];
        table.insert(
            end,
            FastOp::PooledConv(Box::new(PooledConv { conv, k, bias, act })),
        );
    }
}

/// See [`FastOp::ChannelAffine`].
pub(crate) struct FusedAffine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Act,
    nodes: usize,
}

impl FusedAffine {
    fn run(&self, x: Value, device: &Device) -> Result<Value, String> {
        let c = self.scale.len();
        let (shape, src) = cpu_math::f32_input(&x)?;
        if shape.len() < 2 || shape.last() != Some(&c) {
            return Err(format!(
                "the batch norm's input {shape:?} does not have {c} channels last"
            ));
        }
        let mut out = vec![0f32; src.len()];
        cpu_kernels::ops::channel_affine(&src, &mut out, &self.scale, &self.shift, self.act);
        Ok(Value::Dev(dev::upload(out, &shape, device)))
    }
}

/// Runs graph node `n`'s own op on the inputs given (the fallback of a fused op).
pub(crate) type GraphOp<'a> = dyn Fn(usize, Vec<Value>) -> Result<Vec<Value>, String> + 'a;

impl FastOp {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            FastOp::Conv(c) => c.label(),
            FastOp::Block(_) => "inverted-residual block (fused, cpu-kernels)",
            FastOp::Residual(_) => "Conv2D + residual Add (+ ReLU) (fused, cpu-kernels)",
            FastOp::Pool(p) => p.label(),
            FastOp::ZeroPad { .. } => "Pad (zeros, height and width, host)",
            FastOp::SpatialMean { .. } => "Mean over height and width (cpu-kernels)",
            FastOp::LayerNorm(_) => "LayerNormalization (fused, cpu-kernels)",
            FastOp::ChannelAffine(_) => "FusedBatchNorm (+ activation) (host)",
            FastOp::PooledConv(_) => "AvgPool + Conv2D 1x1, swapped (fused, cpu-kernels)",
            FastOp::ChannelConcat { .. } => "ConcatV2 along channels (host)",
        }
    }
    /// Graph nodes it computes.
    pub(crate) fn covers(&self) -> usize {
        match self {
            FastOp::Conv(c) => c.nodes.len(),
            FastOp::Block(b) => b.convs().map(|c| c.nodes.len()).sum(),
            FastOp::Residual(r) => r.conv.nodes.len() + 1 + r.relu.is_some() as usize,
            FastOp::Pool(_)
            | FastOp::ZeroPad { .. }
            | FastOp::SpatialMean { .. }
            | FastOp::ChannelConcat { .. } => 1,
            FastOp::LayerNorm(l) => l.covers(),
            FastOp::ChannelAffine(a) => a.nodes,
            FastOp::PooledConv(p) => p.conv.nodes.len() + 1,
        }
    }
    /// Runs on the node's inputs (one, but two for a residual: the convolution's input
    /// and the residual).
    pub(crate) fn run(
        &self,
        ins: Vec<Value>,
        device: &Device,
        op: &GraphOp,
    ) -> Result<Value, String> {
        let first = |ins: Vec<Value>| ins.into_iter().next().ok_or("no input");
        // The graph's own op for node `node` (inputs the fast op does not take).
        let graph_op = |node: usize, ins: Vec<Value>| -> Result<Value, String> {
            op(node, ins)?
                .into_iter()
                .next()
                .ok_or_else(|| "the op gave no output".into())
        };
        // Mean and Pad take device tensors of rank 4; the graph's own op runs the others.
        if let FastOp::SpatialMean { node, .. } | FastOp::ZeroPad { node, .. } = self {
            if !matches!(ins.first(), Some(Value::Dev(t)) if dev::shape(t).len() == 4) {
                return graph_op(*node, ins);
            }
        }
        match self {
            FastOp::Conv(c) => c.run_node(ins, device, op),
            FastOp::Block(b) => b.run(first(ins)?, device),
            FastOp::Residual(r) => r.run(ins, device, op),
            FastOp::LayerNorm(l) => l.run(ins, device, op),
            FastOp::ChannelAffine(a) => a.run(first(ins)?, device),
            FastOp::PooledConv(p) => p.run(first(ins)?, device),
            FastOp::ChannelConcat { node } => match concat_channels(&ins, device) {
                Some(y) => Ok(y),
                None => graph_op(*node, ins),
            },
            FastOp::Pool(p) => p.run(first(ins)?, device),
            FastOp::SpatialMean { keep_dims, .. } => with_nhwc(first(ins)?, |x| {
                let m = cpu_kernels::ops::spatial_mean(x);
                let shape = if *keep_dims {
                    vec![x.n, 1, 1, x.c]
                } else {
                    vec![x.n, x.c]
                };
                Ok(Value::Dev(dev::upload(m, &shape, device)))
            }),
            FastOp::ZeroPad { pads, .. } => {
                let x = nhwc_input(first(ins)?)?;
                let [t, b, l, r] = *pads;
                crate::ops::checked_elements(&[x.n, x.h + t + b, x.w + l + r, x.c])?;
                Ok(nhwc_output(cpu_math::zero_pad(&x, *pads), device))
            }
        }
    }
}

/// A 1x1 convolution (its affine ops folded in, no activation) whose output is added to
/// another tensor of its shape, and the ReLU after the sum (ResNet's block end): the sum
/// and ReLU happen as the kernel stores its output ([`Conv2d::forward_residual`]).
pub(crate) struct FusedResidual {
    conv: FusedConv,
    /// Whether the convolution is the `Add`'s first operand.
    conv_first: bool,
    /// The `Add` node, and the ReLU / ReLU6 node after it with its activation.
    add: usize,
    relu: Option<usize>,
    act: Act,
}

impl FusedResidual {
    fn run(&self, ins: Vec<Value>, device: &Device, op: &GraphOp) -> Result<Value, String> {
        let [x, res]: [Value; 2] = ins
            .try_into()
            .map_err(|_| "a fused residual takes two inputs")?;
        let shape = |v: &Value| match v {
            Value::Dev(t) => Some(dev::shape(t)),
            Value::Host(h) if h.dtype == DType::F32 => Some(h.shape.clone()),
            _ => None,
        };
        let (xs, rs) = (shape(&x), shape(&res));
        let fused = match (&xs, &rs, self.conv.flat.is_none()) {
            (Some(xs), Some(rs), true) if xs.len() == 4 && rs.len() == 4 => {
                let ho_wo = match self.conv.kernel(xs[3])? {
                    Kernel::Dense(k) => k.output_hw(xs[1], xs[2]),
                    _ => None,
                };
                ho_wo.is_some_and(|(ho, wo)| *rs == [xs[0], ho, wo, self.conv.cout])
            }
            _ => false,
        };
        if fused {
            return with_nhwc(x, |xv| {
                with_nhwc(res, |rv| {
                    let Kernel::Dense(k) = self.conv.kernel(xv.c)? else {
                        return Err("a fused residual without a dense kernel".into());
                    };
                    if let Some(y) = k.forward_residual(xv, rv, self.act) {
                        return Ok(nhwc_output(y, device));
                    }
                    // Kernels that take no residual: the graph's ops after the convolution.
                    let y = self.conv.run(nhwc_output(owned(xv), device), device)?;
                    self.finish(y, nhwc_output(owned(rv), device), op)
                })
            });
        }
        let y = self.conv.run(x, device)?;
        self.finish(y, res, op)
    }

    /// The `Add` and the ReLU, as the graph has them.
    fn finish(&self, y: Value, res: Value, op: &GraphOp) -> Result<Value, String> {
        let ins = if self.conv_first {
            vec![y, res]
        } else {
            vec![res, y]
        };
        let mut sum = op(self.add, ins)?;
        if let Some(r) = self.relu {
            sum = op(r, vec![sum.swap_remove(0)])?;
        }
        sum.into_iter()
            .next()
            .ok_or_else(|| "the Add gave no output".into())
    }
}

/// Joins each `Add` of a fused 1x1 convolution without activation and another tensor
/// (and the `Relu` / `Relu6` reading the sum, if it is its only reader) into one
/// [`FusedResidual`].
fn join_residuals(g: &mut Graph, table: &mut HashMap<usize, FastOp>) {
    let uses = Uses::new(g);
    let need = g.needed(false);
    let pointwise = |f: Option<&FastOp>| match f {
        Some(FastOp::Conv(c)) if c.flat.is_none() => {
            let identity = c
                .raw
                .lock()
                .ok()
                .and_then(|r| r.as_ref().map(|r| r.act == Act::Identity))
                .unwrap_or(false);
            matches!(c.raw_geometry, Geometry::Conv(geo) if geo.kh == 1 && geo.kw == 1)
                && c.cout > 4
                && identity
        }
        _ => false,
    };
    for (a, &needed) in need.iter().enumerate() {
        let node = &g.nodes[a];
        if !needed || !matches!(node.op.as_str(), "Add" | "AddV2") || node.inputs.len() != 2 {
            continue;
        }
        let side = (0..2).find(|&s| {
            let c = node.inputs[s];
            c.index == 0
                && node.inputs[1 - s] != c
                && uses.only_reader(c) == Some(a)
                && pointwise(table.get(&c.node))
        });
        let Some(side) = side else { continue };
        let (c, other) = (node.inputs[side].node, node.inputs[1 - side]);
        let sum = ValueRef { node: a, index: 0 };
        let relu = uses.only_reader(sum).filter(|&r| {
            matches!(g.nodes[r].op.as_str(), "Relu" | "Relu6") && g.nodes[r].inputs == [sum]
        });
        let act = match relu.map(|r| g.nodes[r].op.as_str()) {
            Some("Relu") => Act::Relu,
            Some(_) => Act::Relu6,
            None => Act::Identity,
        };
        let Some(FastOp::Conv(conv)) = table.remove(&c) else {
            unreachable!("checked to be a fused convolution")
        };
        let end = relu.unwrap_or(a);
        g.nodes[end].inputs = vec![g.nodes[c].inputs[0], other];
        table.insert(
            end,
            FastOp::Residual(Box::new(FusedResidual {
                conv,
                conv_first: side == 0,
                add: a,
                relu,
                act,
            })),
        );
    }
}

/// An inverted-residual block: a 1x1 expansion, a depthwise convolution and a 1x1
/// projection (either 1x1 may be missing), each fused as [`FusedConv`], run strip by strip
/// as one [`Bottleneck`] so that the expanded tensor stays in cache.
pub(crate) struct FusedBlock {
    expand: Option<FusedConv>,
    depthwise: FusedConv,
    project: Option<FusedConv>,
    /// Joined at the first run, once the kernels are packed; `None` when they turn out not
    /// to form a block (then the three run one after the other).
    block: std::sync::OnceLock<Option<Bottleneck>>,
}

impl FusedBlock {
    fn convs(&self) -> impl Iterator<Item = &FusedConv> {
        self.expand
            .iter()
            .chain(std::iter::once(&self.depthwise))
            .chain(self.project.iter())
    }

    fn block(&self, channels: usize) -> Result<Option<&Bottleneck>, String> {
        if let Some(b) = self.block.get() {
            return Ok(b.as_ref());
        }
        let dense = |k: &Kernel| match k {
            Kernel::Dense(c) => Some(c.clone()),
            _ => None,
        };
        let expand = match &self.expand {
            Some(e) => match dense(e.kernel(channels)?) {
                Some(c) => Some(c),
                None => return Ok(self.block.get_or_init(|| None).as_ref()),
            },
            None => None,
        };
        let mid = expand.as_ref().map_or(channels, |e| e.cout());
        let Kernel::Depthwise(dw) = self.depthwise.kernel(mid)? else {
            return Ok(self.block.get_or_init(|| None).as_ref());
        };
        let project = match &self.project {
            Some(p) => match dense(p.kernel(dw.cout())?) {
                Some(c) => Some(c),
                None => return Ok(self.block.get_or_init(|| None).as_ref()),
            },
            None => None,
        };
        let joined = Bottleneck::new(expand, dw.clone(), project).ok();
        Ok(self.block.get_or_init(|| joined).as_ref())
    }

    fn run(&self, x: Value, device: &Device) -> Result<Value, String> {
        with_nhwc(x, |x| {
            let Some(block) = self.block(x.c)? else {
                let mut v = nhwc_output(owned(x), device);
                for c in self.convs() {
                    v = c.run(v, device)?;
                }
                return Ok(v);
            };
            let (ho, wo) = block.output_hw(x.h, x.w).ok_or_else(|| {
                format!(
                    "input {:?} is too small for the filter",
                    [x.n, x.h, x.w, x.c]
                )
            })?;
            crate::ops::checked_elements(&[x.n, ho, wo, block.cout()])?;
            Ok(nhwc_output(block.forward(x), device))
        })
    }
}

/// Whether node `n` has exactly the two inputs `a` and `b`, in either order.
pub(crate) fn reads_pair(g: &Graph, n: usize, a: ValueRef, b: ValueRef) -> bool {
    let i = &g.nodes[n].inputs;
    i.len() == 2 && ((i[0] == a && i[1] == b) || (i[0] == b && i[1] == a))
}

/// Whether node `n`'s `T` attribute is float32.
pub(crate) fn is_float32(n: &Node) -> bool {
    n.attrs
        .get("T")
        .and_then(|a| a.r#type)
        .map(DType::from_proto)
        == Some(DType::F32)
}

/// A float32 `ConcatV2` of at least two tensors along axis 3 or -1 (4-D inputs on the
/// fast path; other ranks, known at run time, run the graph's op).
fn is_channel_concat(g: &Graph, consts: &Consts, n: &Node) -> bool {
    if n.op != "ConcatV2" || n.inputs.len() < 3 || !is_float32(n) {
        return false;
    }
    let axis = n.inputs[n.inputs.len() - 1];
    consts(g, axis)
        .and_then(|t| t.to_i64().ok())
        .is_some_and(|a| a == [3] || a == [-1])
}

/// A float32 `Mean` over axes {1, 2} (or {-3, -2}): of a 4-D input on the fast path (other
/// ranks, known at run time, run the graph's `Mean`).
fn is_spatial_mean(g: &Graph, consts: &Consts, n: &Node) -> bool {
    if n.op != "Mean" || n.inputs.len() != 2 || !is_float32(n) {
        return false;
    }
    let mut axes = match consts(g, n.inputs[1]).and_then(|t| t.to_i64().ok()) {
        Some(a) if a.len() == 2 => a,
        _ => return false,
    };
    axes.sort_unstable();
    axes == [1, 2] || axes == [-3, -2]
}

/// `[top, bottom, left, right]` of a `Pad` / `PadV2` by zeros of only the middle two axes
/// of a rank-4 tensor (constant paddings), or `None`.
pub(crate) fn zero_pads_hw(g: &Graph, consts: &Consts, n: &Node) -> Option<[usize; 4]> {
    let zero_value = match n.op.as_str() {
        "Pad" => true,
        "PadV2" => n.inputs.get(2).and_then(|&r| scalar_const(g, consts, r)) == Some(0.0),
        _ => false,
    };
    if !zero_value {
        return None;
    }
    let v = consts(g, *n.inputs.get(1)?)?.to_i64().ok()?;
    if v.len() != 8 || v.iter().any(|&x| x < 0) || v[0] + v[1] + v[6] + v[7] != 0 {
        return None;
    }
    Some([v[2] as usize, v[3] as usize, v[4] as usize, v[5] as usize])
}

/// Joins each fused depthwise convolution with the 1x1 convolution feeding it and the 1x1
/// convolution reading it (when each is the other's only reader) into one [`FusedBlock`].
fn join_blocks(g: &mut Graph, table: &mut HashMap<usize, FastOp>) {
    let uses = Uses::new(g);
    let pointwise = |f: Option<&FastOp>| match f {
        Some(FastOp::Conv(c)) if c.flat.is_none() => match c.raw_geometry {
            Geometry::Conv(geo) => {
                geo.kh == 1
                    && geo.kw == 1
                    && geo.stride == [1, 1]
                    && geo.upsample == 1
                    && matches!(geo.padding, Padding::Valid | Padding::Same)
            }
            Geometry::Depthwise(_) => false,
        },
        _ => false,
    };
    let mut depthwise: Vec<usize> = table
        .iter()
        .filter(|(_, f)| match f {
            FastOp::Conv(c) => match c.raw_geometry {
                Geometry::Depthwise(geo) => {
                    geo.dilation == [1, 1]
                        && geo.multiplier == 1
                        && !matches!(geo.padding, Padding::Reflect(_))
                }
                Geometry::Conv(_) => false,
            },
            _ => false,
        })
        .map(|(&i, _)| i)
        .collect();
    depthwise.sort_unstable();
    for d in depthwise {
        let input = g.nodes[d].inputs[0];
        let e = (input.index == 0
            && uses.only_reader(input) == Some(d)
            && pointwise(table.get(&input.node)))
        .then_some(input.node);
        let out = ValueRef { node: d, index: 0 };
        let p = uses
            .only_reader(out)
            .filter(|&p| g.nodes[p].inputs == [out] && pointwise(table.get(&p)));
        if e.is_none() && p.is_none() {
            continue;
        }
        let mut take = |i: usize| match table.remove(&i) {
            Some(FastOp::Conv(c)) => c,
            _ => unreachable!("checked to be a fused convolution"),
        };
        let expand = e.map(&mut take);
        let depthwise = take(d);
        let project = p.map(&mut take);
        let first = e.unwrap_or(d);
        let block_input = g.nodes[first].inputs[0];
        let end = p.unwrap_or(d);
        g.nodes[end].inputs = vec![block_input];
        table.insert(
            end,
            FastOp::Block(Box::new(FusedBlock {
                expand,
                depthwise,
                project,
                block: std::sync::OnceLock::new(),
            })),
        );
    }
}

/// `MaxPool` (VALID) or `AvgPool` (VALID, or SAME with stride 1 and an odd window) of a
/// square window with equal strides, NHWC, on `cpu-kernels` (Burn's pooling runs NCHW,
/// with a transpose each way).
pub(crate) struct Pool {
    max: bool,
    same: bool,
    k: usize,
    s: usize,
}

impl Pool {
    fn of(node: &Node) -> Option<Pool> {
        let max = match node.op.as_str() {
            "MaxPool" => true,
            "AvgPool" => false,
            _ => return None,
        };
        if attr_s(node, "data_format") == "NCHW" {
            return None;
        }
        let k = hw_attr(node, "ksize")?;
        let s = hw_attr(node, "strides")?;
        if k[0] != k[1] || s[0] != s[1] {
            return None;
        }
        let same = match attr_s(node, "padding").as_str() {
            "VALID" => false,
            "SAME" if !max && s[0] == 1 && k[0] % 2 == 1 => true,
            _ => return None,
        };
        Some(Pool {
            max,
            same,
            k: k[0],
            s: s[0],
        })
    }

    fn label(&self) -> &'static str {
        if self.max {
            "MaxPool (cpu-kernels)"
        } else {
            "AvgPool (cpu-kernels)"
        }
    }

    /// The input is read in place (Inception's max pools read a block output that its
    /// sibling branches read too: [`nhwc_input`] would copy it).
    fn run(&self, x: Value, device: &Device) -> Result<Value, String> {
        let y = with_nhwc(x, |x| self.pool(x))?;
        Ok(nhwc_output(y, device))
    }

    fn pool(&self, x: View) -> Result<Nhwc, String> {
        let (n, h, w, c) = (x.n, x.h, x.w, x.c);
        let y = if self.same {
            let mut y = Nhwc::zeros(n, h, w, c);
            let zero = vec![0.0; c];
            cpu_kernels::ops::avg_pool_same_into(
                x,
                self.k,
                &zero,
                Act::Identity,
                &mut y.slot_all(),
            );
            y
        } else {
            let small = || {
                format!(
                    "input {:?} is smaller than the {1}x{1} window",
                    [n, h, w, c],
                    self.k
                )
            };
            cpu_kernels::ops::pool_valid_size(h, self.k, self.s).ok_or_else(small)?;
            cpu_kernels::ops::pool_valid_size(w, self.k, self.s).ok_or_else(small)?;
            if self.max {
                cpu_kernels::ops::max_pool_valid(x, self.k, self.s)
            } else {
                cpu_kernels::ops::avg_pool_valid(x, self.k, self.k, self.s)
            }
        };
        Ok(y)
    }
}

/// Whether the fast path can run on `device`: the flex CPU device without autodiff.
pub(crate) fn applies_to(device: &Device) -> bool {
    matches!(device.as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// The value of a graph constant or variable, as the rewrite sees it.
pub(crate) type Consts<'a> = dyn Fn(&Graph, ValueRef) -> Option<HostTensor> + 'a;

/// Who reads each value of the needed graph.
pub(crate) struct Uses {
    readers: HashMap<ValueRef, Vec<usize>>,
    pub(crate) outputs: std::collections::HashSet<ValueRef>,
}

impl Uses {
    pub(crate) fn new(g: &Graph) -> Uses {
        let need = g.needed(false);
        let mut readers: HashMap<ValueRef, Vec<usize>> = HashMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            if need[i] {
                for r in &n.inputs {
                    readers.entry(*r).or_default().push(i);
                }
            }
        }
        Uses {
            readers,
            outputs: g.outputs.iter().map(|(_, r)| *r).collect(),
        }
    }
    pub(crate) fn readers(&self, r: ValueRef) -> &[usize] {
        self.readers.get(&r).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// The single node reading `r` (once), if `r` is not also a graph output.
    pub(crate) fn only_reader(&self, r: ValueRef) -> Option<usize> {
        match self.readers(r) {
            [one] if !self.outputs.contains(&r) => Some(*one),
            _ => None,
        }
    }
    /// Whether outputs `1..` of `node` are unused.
    pub(crate) fn only_first_output_used(&self, g: &Graph, node: usize) -> bool {
        (1..8).all(|k| {
            let r = ValueRef { node, index: k };
            self.readers(r).is_empty() && !self.outputs.contains(&r)
        }) && g.nodes[node].op != "_Input"
    }
}

/// Replaces `Identity` / `IdentityN` / `Snapshot` / `StopGradient` nodes by their inputs
/// (inference only: they compute nothing).
fn bypass_identities(g: &mut Graph) {
    let forward = |g: &Graph, mut r: ValueRef| -> ValueRef {
        for _ in 0..g.nodes.len() {
            let n = &g.nodes[r.node];
            match n.op.as_str() {
                "Identity" | "Snapshot" | "StopGradient" if r.index == 0 && n.inputs.len() == 1 => {
                    r = n.inputs[0]
                }
                "IdentityN" if r.index < n.inputs.len() => r = n.inputs[r.index],
                _ => break,
            }
        }
        r
    };
    for i in 0..g.nodes.len() {
        let ins = g.nodes[i].inputs.clone();
        let ins = ins.into_iter().map(|r| forward(g, r)).collect();
        g.nodes[i].inputs = ins;
    }
    let outs: Vec<ValueRef> = g.outputs.iter().map(|(_, r)| forward(g, *r)).collect();
    for ((_, r), o) in g.outputs.iter_mut().zip(outs) {
        *r = o;
    }
}

pub(crate) fn attr_s(n: &Node, k: &str) -> String {
    n.attrs
        .get(k)
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default()
}
fn attr_ints(n: &Node, k: &str) -> Vec<i64> {
    n.attrs
        .get(k)
        .and_then(|a| a.list.as_ref())
        .map(|l| l.i.clone())
        .unwrap_or_default()
}

/// `[h, w]` of an NHWC strides / dilations attribute (1 where absent).
fn hw_attr(n: &Node, k: &str) -> Option<[usize; 2]> {
    let v = attr_ints(n, k);
    if v.is_empty() {
        return Some([1, 1]);
    }
    if v.len() != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1 {
        return None;
    }
    Some([v[1] as usize, v[2] as usize])
}

/// A per-channel (or scalar) constant broadcast over the output channels, if `t` is one
/// that does not change an NHWC tensor's shape.
fn channel_vector(t: &HostTensor, cout: usize) -> Option<Vec<f64>> {
    if !t.dtype.is_float() || t.shape.len() > 4 {
        return None;
    }
    let v = t.to_f32().ok()?;
    if v.len() == 1 && t.shape.iter().all(|&d| d == 1) {
        return Some(vec![v[0] as f64; cout]);
    }
    let leading_ones = t.shape.iter().rev().skip(1).all(|&d| d == 1);
    (v.len() == cout && t.shape.last() == Some(&cout) && leading_ones)
        .then(|| v.iter().map(|&x| x as f64).collect())
}

fn scalar_const(g: &Graph, consts: &Consts, r: ValueRef) -> Option<f32> {
    let t = consts(g, r)?;
    let v = t.to_f32().ok()?;
    (v.len() == 1 && t.dtype.is_float()).then(|| v[0])
}

/// Whether the shape `r` given to a `Reshape` ends in `last`: a constant, or a `ConcatV2`
/// on axis 0 whose last part is a constant ending in it (Keras' `Tensordot`: the input's
/// free dimensions, then the output's).
fn keeps_last_axis(g: &Graph, consts: &Consts, r: ValueRef, last: usize) -> bool {
    let ends_in = |r: ValueRef| {
        consts(g, r).is_some_and(|t| {
            t.shape.len() == 1
                && !t.dtype.is_float()
                && t.to_i64().is_ok_and(|v| v.last() == Some(&(last as i64)))
        })
    };
    if ends_in(r) {
        return true;
    }
    let n = &g.nodes[r.node];
    let k = n.inputs.len();
    r.index == 0
        && n.op == "ConcatV2"
        && k >= 2
        && consts(g, n.inputs[k - 1])
            .and_then(|a| a.to_i64().ok())
            .is_some_and(|a| a == [0] || a == [-1])
        && ends_in(n.inputs[k - 2])
}

/// The filter, bias and activation of a chain, in f64 until packed.
struct Chain {
    /// Filter, flattened with the output channel innermost (HWIO, or `[kh, kw, C, M]`).
    w: Vec<f64>,
    bias: Vec<f64>,
    cout: usize,
    act: Act,
    end: usize,
    nodes: Vec<usize>,
    /// The output's rank: a broadcast constant of higher rank would change its shape.
    rank: usize,
    /// A matrix product's output axes after the rows (a constant of exactly these
    /// dimensions is a per-channel vector too); `None` for a convolution.
    out_dims: Option<Vec<usize>>,
    /// The `Reshape` keeping the last axis that the chain has gone through (matrix
    /// products only, see [`Flat::reshape`]).
    reshape: Option<usize>,
}

impl Chain {
    /// The product of node `end` (filter `w`, `cout` outputs of rank `rank`), nothing
    /// absorbed yet.
    fn new(w: Vec<f64>, cout: usize, end: usize, rank: usize) -> Chain {
        Chain {
            w,
            bias: vec![0.0; cout],
            cout,
            act: Act::Identity,
            end,
            nodes: vec![],
            rank,
            out_dims: None,
            reshape: None,
        }
    }

    /// Absorbs the affine ops after the product, then an activation.
    fn absorb_all(&mut self, g: &Graph, consts: &Consts, uses: &Uses) {
        while let Some(n) = uses.only_reader(ValueRef {
            node: self.end,
            index: 0,
        }) {
            if !self.absorb_affine(g, consts, uses, n) {
                break;
            }
        }
        self.absorb_activation(g, consts, uses);
    }

    /// The fused kernel of the chain (its filter, bias and activation in f32), with the
    /// nodes it computes: `nodes` (what precedes the chain, its product first) and the
    /// chain's own.
    fn into_fused(
        mut self,
        g: &Graph,
        mut nodes: Vec<usize>,
        geometry: Geometry,
        flat: Option<Flat>,
        input: ValueRef,
    ) -> (FusedConv, ValueRef, Vec<usize>) {
        nodes.append(&mut self.nodes);
        let flat = flat.map(|f| Flat {
            reshape: self.reshape,
            ..f
        });
        let bias: Vec<f32> = self.bias.iter().map(|&x| x as f32).collect();
        let raw = Raw {
            w: self.w.iter().map(|&x| x as f32).collect(),
            bias: bias.iter().any(|&b| b != 0.0).then_some(bias),
            act: self.act,
            geometry,
        };
        let fused = FusedConv {
            raw_geometry: geometry,
            raw: std::sync::Mutex::new(Some(raw)),
            packed: std::sync::OnceLock::new(),
            cout: self.cout,
            flat,
            nodes: nodes.iter().map(|&n| g.nodes[n].name.clone()).collect(),
        };
        (fused, input, nodes)
    }

    fn scale(&mut self, s: &[f64]) {
        for (i, w) in self.w.iter_mut().enumerate() {
            *w *= s[i % self.cout];
        }
        for (b, s) in self.bias.iter_mut().zip(s) {
            *b *= s;
        }
    }
    fn shift(&mut self, a: &[f64], sign: f64) {
        for (b, a) in self.bias.iter_mut().zip(a) {
            *b += sign * a;
        }
    }

    /// Absorbs the affine node `n` reading the chain's output, if it is one.
    fn absorb_affine(&mut self, g: &Graph, consts: &Consts, uses: &Uses, n: usize) -> bool {
        let node = &g.nodes[n];
        let cur = ValueRef {
            node: self.end,
            index: 0,
        };
        let other = |k: usize| -> Option<Vec<f64>> {
            let r = *node.inputs.get(k)?;
            let t = consts(g, r)?;
            if t.shape.len() > self.rank {
                return None;
            }
            // `[3, 64]` added to an `EinsumDense` output `[.., 3, 64]` (attention's
            // query, key and value).
            let trim = |d: &[usize]| d[d.iter().take_while(|&&x| x == 1).count()..].to_vec();
            if let Some(dims) = &self.out_dims {
                if self.reshape.is_none()
                    && t.dtype.is_float()
                    && trim(&t.shape) == trim(dims)
                    && trim(dims).len() > 1
                {
                    return Some(t.to_f32().ok()?.iter().map(|&x| x as f64).collect());
                }
            }
            channel_vector(&t, self.cout)
        };
        let first = node.inputs.first() == Some(&cur);
        let second = node.inputs.get(1) == Some(&cur);
        match node.op.as_str() {
            "BiasAdd" if first && attr_s(node, "data_format") != "NCHW" => match other(1) {
                Some(b) => self.shift(&b, 1.0),
                None => return false,
            },
            "Add" | "AddV2" if node.inputs.len() == 2 && (first || second) => {
                match other(if first { 1 } else { 0 }) {
                    Some(b) => self.shift(&b, 1.0),
                    None => return false,
                }
            }
            "Sub" if first => match other(1) {
                Some(b) => self.shift(&b, -1.0),
                None => return false,
            },
            "Mul" if node.inputs.len() == 2 && (first || second) => {
                match other(if first { 1 } else { 0 }) {
                    Some(s) => self.scale(&s),
                    None => return false,
                }
            }
            "RealDiv" if first => match other(1) {
                Some(d) if d.iter().all(|&d| d != 0.0) => {
                    let s: Vec<f64> = d.iter().map(|d| 1.0 / d).collect();
                    self.scale(&s)
                }
                _ => return false,
            },
            "Reshape"
                if first
                    && self.out_dims.is_some()
                    && self.reshape.is_none()
                    && node.inputs.len() == 2
                    && keeps_last_axis(g, consts, node.inputs[1], self.cout) =>
            {
                self.reshape = Some(n);
                // Its rank is not known here; constants of rank 0 or 1 never change it.
                self.rank = 1;
            }
            "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" if first => {
                let training = node
                    .attrs
                    .get("is_training")
                    .and_then(|a| a.b)
                    .unwrap_or(true);
                if training
                    || attr_s(node, "data_format") == "NCHW"
                    || !uses.only_first_output_used(g, n)
                {
                    return false;
                }
                let (Some(scale), Some(offset), Some(mean), Some(var)) =
                    (other(1), other(2), other(3), other(4))
                else {
                    return false;
                };
                let eps = node.attrs.get("epsilon").and_then(|a| a.f).unwrap_or(1e-4) as f64;
                let f: Vec<f64> = scale
                    .iter()
                    .zip(&var)
                    .map(|(s, v)| s / (v + eps).sqrt())
                    .collect();
                self.shift(&mean, -1.0);
                self.scale(&f);
                self.shift(&offset, 1.0);
            }
            _ => return false,
        }
        self.end = n;
        self.nodes.push(n);
        true
    }

    /// Absorbs the activation reading the chain's output, if there is one it can apply.
    fn absorb_activation(&mut self, g: &Graph, consts: &Consts, uses: &Uses) {
        let cur = ValueRef {
            node: self.end,
            index: 0,
        };
        let out = |n: usize| ValueRef { node: n, index: 0 };
        let is = |n: usize, op: &str| g.nodes[n].op == op;
        let reads = |n: usize, a: ValueRef, b: ValueRef| reads_pair(g, n, a, b);
        // relu6(v + 3) * (1/6): the node computing it, if `a` starts that pattern on `cur`.
        let hard_sigmoid = |a: usize| -> Option<usize> {
            let add = &g.nodes[a];
            if !(is(a, "AddV2") || is(a, "Add")) || add.inputs.len() != 2 {
                return None;
            }
            let k = if add.inputs[0] == cur { 1 } else { 0 };
            if add.inputs[1 - k] != cur || scalar_const(g, consts, add.inputs[k]) != Some(3.0) {
                return None;
            }
            let r = uses.only_reader(out(a))?;
            if !is(r, "Relu6") {
                return None;
            }
            let q = uses.only_reader(out(r))?;
            let qi = &g.nodes[q].inputs;
            if !is(q, "Mul") || qi.len() != 2 {
                return None;
            }
            let k = if qi[0] == out(r) { 1 } else { 0 };
            let sixth = scalar_const(g, consts, qi[k])?;
            (qi[1 - k] == out(r) && (sixth - 1.0 / 6.0).abs() < 1e-6).then_some(q)
        };
        let readers = uses.readers(cur);
        if uses.outputs.contains(&cur) {
            return;
        }
        // `Mul(v, k)` in either order, `k` a float32 scalar constant equal to `k`.
        let times = |n: usize, v: ValueRef, k: f32| {
            let i = &g.nodes[n].inputs;
            is(n, "Mul")
                && i.len() == 2
                && (0..2).any(|s| i[s] == v && scalar_const(g, consts, i[1 - s]) == Some(k))
        };
        let only = |n: usize| uses.only_reader(out(n));
        // `tf.nn.gelu(x)`: 0.5 x erfc(-x * (1 / sqrt 2)), its Mul by 0.5 and Neg both
        // reading x.
        let gelu = |h: usize, ng: usize| -> Option<(Vec<usize>, usize)> {
            if !times(h, cur, 0.5) || !is(ng, "Neg") || g.nodes[ng].inputs != [cur] {
                return None;
            }
            let m1 = only(ng).filter(|&m| times(m, out(ng), std::f32::consts::FRAC_1_SQRT_2))?;
            let e = only(m1).filter(|&e| is(e, "Erfc") && g.nodes[e].inputs == [out(m1)])?;
            let m2 = only(e).filter(|&m| is(m, "Mul") && reads(m, out(h), out(e)))?;
            (only(h) == Some(m2)).then(|| (vec![h, ng, m1, e], m2))
        };
        // `tf.nn.gelu(x, approximate=True)`: 0.5 x (1 + tanh(0.7978846 (x + 0.044715 x^3))),
        // x read by the Mul by 0.5, the Pow and the inner Add.
        let gelu_tanh = |h: usize, pw: usize, ad: usize| -> Option<(Vec<usize>, usize)> {
            let pi = &g.nodes[pw].inputs;
            if !times(h, cur, 0.5)
                || !is(pw, "Pow")
                || pi.len() != 2
                || pi[0] != cur
                || scalar_const(g, consts, pi[1]) != Some(3.0)
            {
                return None;
            }
            let m1 = only(pw).filter(|&m| times(m, out(pw), cpu_kernels::GELU_TANH_C))?;
            let add = |n: usize| is(n, "AddV2") || is(n, "Add");
            if only(m1) != Some(ad) || !add(ad) || !reads(ad, cur, out(m1)) {
                return None;
            }
            let m2 = only(ad).filter(|&m| times(m, out(ad), cpu_kernels::GELU_TANH_K))?;
            let th = only(m2).filter(|&t| is(t, "Tanh") && g.nodes[t].inputs == [out(m2)])?;
            let a1 = only(th).filter(|&a| {
                let i = &g.nodes[a].inputs;
                add(a)
                    && i.len() == 2
                    && (0..2)
                        .any(|s| i[s] == out(th) && scalar_const(g, consts, i[1 - s]) == Some(1.0))
            })?;
            let m3 = only(a1).filter(|&m| is(m, "Mul") && reads(m, out(h), out(a1)))?;
            (only(h) == Some(m3)).then(|| (vec![h, pw, m1, ad, m2, th, a1], m3))
        };
        let found = match *readers {
            [a, b] => gelu(a, b)
                .or_else(|| gelu(b, a))
                .map(|(e, n)| (Act::Gelu, e, n)),
            [a, b, c] => [
                [a, b, c],
                [a, c, b],
                [b, a, c],
                [b, c, a],
                [c, a, b],
                [c, b, a],
            ]
            .into_iter()
            .find_map(|[h, p, d]| gelu_tanh(h, p, d))
            .map(|(e, n)| (Act::GeluTanh, e, n)),
            _ => None,
        };
        if let Some((act, mut extra, end)) = found {
            self.act = act;
            self.nodes.append(&mut extra);
            self.nodes.push(end);
            self.end = end;
            return;
        }
        let (act, mut extra, end) = match readers {
            [r] => match g.nodes[*r].op.as_str() {
                "Relu" => (Act::Relu, vec![], *r),
                "Relu6" => (Act::Relu6, vec![], *r),
                "Sigmoid" => (Act::Sigmoid, vec![], *r),
                "AddV2" | "Add" => match hard_sigmoid(*r) {
                    Some(q) => (Act::HardSigmoid, vec![*r, uses.readers(out(*r))[0]], q),
                    None => return,
                },
                _ => return,
            },
            [a, b] => {
                let (a, b) = (*a, *b);
                // Swish: Sigmoid(cur) read only by Mul(cur, sigmoid).
                let swish = |s: usize, m: usize| {
                    is(s, "Sigmoid")
                        && is(m, "Mul")
                        && uses.only_reader(out(s)) == Some(m)
                        && reads(m, cur, out(s))
                };
                let hswish = |a: usize, m: usize| {
                    let q = hard_sigmoid(a)?;
                    (uses.only_reader(out(q)) == Some(m) && is(m, "Mul") && reads(m, cur, out(q)))
                        .then_some(q)
                };
                // Swish as `tf.nn.silu` writes it: Mul(x, Sigmoid(Mul(beta, x))), beta = 1.
                let silu = |p: usize, m: usize| -> Option<usize> {
                    let pi = &g.nodes[p].inputs;
                    if !is(p, "Mul") || !is(m, "Mul") || pi.len() != 2 {
                        return None;
                    }
                    let k = if pi[0] == cur { 1 } else { 0 };
                    if pi[1 - k] != cur || scalar_const(g, consts, pi[k]) != Some(1.0) {
                        return None;
                    }
                    let s = uses.only_reader(out(p))?;
                    (is(s, "Sigmoid")
                        && uses.only_reader(out(s)) == Some(m)
                        && reads(m, cur, out(s)))
                    .then_some(s)
                };
                if swish(a, b) {
                    (Act::Swish, vec![a], b)
                } else if swish(b, a) {
                    (Act::Swish, vec![b], a)
                } else if let Some(s) = silu(a, b) {
                    (Act::Swish, vec![a, s], b)
                } else if let Some(s) = silu(b, a) {
                    (Act::Swish, vec![b, s], a)
                } else if let Some(q) = hswish(a, b) {
                    let r = uses.readers(out(a))[0];
                    (Act::HardSwish, vec![a, r, q], b)
                } else if let Some(q) = hswish(b, a) {
                    let r = uses.readers(out(b))[0];
                    (Act::HardSwish, vec![b, r, q], a)
                } else {
                    return;
                }
            }
            _ => return,
        };
        self.act = act;
        self.nodes.append(&mut extra);
        self.nodes.push(end);
        self.end = end;
    }
}

/// Rewrites `g` in place: the last node of every fused chain reads the chain's input and is
/// mapped to its kernel in the returned table. Returns the table (empty when nothing fused).
pub(crate) fn rewrite(g: &mut Graph, consts: &Consts) -> HashMap<usize, FastOp> {
    bypass_identities(g);
    let uses = Uses::new(g);
    let need = g.needed(false);
    let mut table = HashMap::new();
    let mut taken = vec![false; g.nodes.len()];
    for c in 0..g.nodes.len() {
        if !need[c] || taken[c] {
            continue;
        }
        let op = g.nodes[c].op.as_str();
        let planned = match op {
            "Conv2D" => plan_chain(g, consts, &uses, c, false),
            "DepthwiseConv2dNative" => plan_chain(g, consts, &uses, c, true),
            "MatMul" | "Einsum" => plan_matmul(g, consts, &uses, c),
            _ => continue,
        };
        if let Some((fused, input, nodes)) = planned {
            if nodes.iter().any(|&n| taken[n]) {
                continue;
            }
            for &n in &nodes {
                taken[n] = true;
            }
            let end = *nodes.last().expect("a chain has its convolution");
            g.nodes[end].inputs = vec![input];
            if let Some(r) = fused.flat.as_ref().and_then(|f| f.reshape) {
                let shape = g.nodes[r].inputs[1];
                g.nodes[end].inputs.push(shape);
            }
            table.insert(end, FastOp::Conv(fused));
        }
    }
    join_blocks(g, &mut table);
    join_residuals(g, &mut table);
    join_pooled_convs(g, &mut table);
    // Nodes no fused op has taken yet.
    let free = |t: &HashMap<usize, FastOp>, n: usize| !taken[n] && !t.contains_key(&n);
    let uses = Uses::new(g);
    for m in 0..g.nodes.len() {
        if !need[m] || !free(&table, m) {
            continue;
        }
        if let Some((norm, end)) = crate::fast_norm::plan(g, consts, &uses, m) {
            if free(&table, end) {
                g.nodes[end].inputs = norm.inputs().to_vec();
                table.insert(end, FastOp::LayerNorm(Box::new(norm)));
            }
        }
    }
    // Inference batch norms left (their input read elsewhere too), with what follows.
    let uses = Uses::new(g);
    for n in 0..g.nodes.len() {
        let node = &g.nodes[n];
        if !need[n]
            || !free(&table, n)
            || !node.op.starts_with("FusedBatchNorm")
            || !is_float32(node)
        {
            continue;
        }
        let (Some(&x), Some(&s)) = (node.inputs.first(), node.inputs.get(1)) else {
            continue;
        };
        let Some(c) = consts(g, s).map(|t| t.shape.iter().product::<usize>()) else {
            continue;
        };
        if x.index != 0 || c == 0 {
            continue;
        }
        let mut chain = Chain::new(vec![1.0; c], c, x.node, 4);
        if !chain.absorb_affine(g, consts, &uses, n) {
            continue;
        }
        chain.absorb_all(g, consts, &uses);
        if chain.nodes.iter().any(|&k| !free(&table, k)) {
            continue;
        }
        let end = chain.end;
        g.nodes[end].inputs = vec![x];
        let affine = FusedAffine {
            scale: chain.w.iter().map(|&v| v as f32).collect(),
            shift: chain.bias.iter().map(|&v| v as f32).collect(),
            act: chain.act,
            nodes: chain.nodes.len(),
        };
        table.insert(end, FastOp::ChannelAffine(Box::new(affine)));
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if need[i] && !taken[i] && n.inputs.len() == 1 {
            if let Some(p) = Pool::of(n) {
                table.insert(i, FastOp::Pool(p));
            }
        }
        if need[i] && !taken[i] {
            if let Some(pads) = zero_pads_hw(g, consts, n).filter(|_| is_float32(n)) {
                table.insert(i, FastOp::ZeroPad { pads, node: i });
            }
            if is_channel_concat(g, consts, n) {
                table.insert(i, FastOp::ChannelConcat { node: i });
            }
            if is_spatial_mean(g, consts, n) {
                let keep_dims = n.attrs.get("keep_dims").and_then(|a| a.b).unwrap_or(false);
                table.insert(i, FastOp::SpatialMean { keep_dims, node: i });
            }
        }
    }
    table
}

/// The fused kernel of the chain starting at convolution `c`, its input and its nodes.
fn plan_chain(
    g: &Graph,
    consts: &Consts,
    uses: &Uses,
    c: usize,
    depthwise: bool,
) -> Option<(FusedConv, ValueRef, Vec<usize>)> {
    let node = &g.nodes[c];
    if node.inputs.len() != 2 || attr_s(node, "data_format") == "NCHW" {
        return None;
    }
    let filter = consts(g, node.inputs[1])?;
    let [kh, kw, ci, co] = filter.shape[..] else {
        return None;
    };
    if !filter.dtype.is_float() || kh == 0 || kw == 0 || ci == 0 || co == 0 {
        return None;
    }
    let stride = hw_attr(node, "strides")?;
    let dilation = hw_attr(node, "dilations")?;
    if !depthwise && dilation != [1, 1] {
        return None;
    }
    let mut input = node.inputs[0];
    let mut nodes = vec![c];
    let mut padding = match attr_s(node, "padding").as_str() {
        "SAME" => Padding::Same,
        "VALID" => Padding::Valid,
        "EXPLICIT" => {
            let p = attr_ints(node, "explicit_paddings");
            if p.len() != 8 || p.iter().any(|&x| x < 0) || p[0] + p[1] + p[6] + p[7] != 0 {
                return None;
            }
            Padding::Zero([p[2] as usize, p[3] as usize, p[4] as usize, p[5] as usize])
        }
        _ => return None,
    };
    // A zero Pad of H and W in front of a VALID convolution.
    if padding == Padding::Valid && input.index == 0 && uses.only_reader(input) == Some(c) {
        let p = &g.nodes[input.node];
        if let Some(pads) = zero_pads_hw(g, consts, p) {
            padding = Padding::Zero(pads);
            nodes.insert(0, input.node);
            input = p.inputs[0];
        }
    }
    let w: Vec<f64> = filter.to_f32().ok()?.iter().map(|&x| x as f64).collect();
    let cout = if depthwise { ci * co } else { co };
    let mut chain = Chain::new(w, cout, c, 4);
    if !uses.only_first_output_used(g, c) {
        return None;
    }
    chain.absorb_all(g, consts, uses);
    let geometry = if depthwise {
        let mut geo = DepthwiseGeometry::new(kh, kw, ci)
            .multiplier(co)
            .padding(padding);
        geo.stride = stride;
        geo.dilation = dilation;
        Geometry::Depthwise(geo)
    } else {
        Geometry::Conv(
            ConvGeometry::new(kh, kw, ci)
                .strides(stride)
                .padding(padding),
        )
    };
    Some(chain.into_fused(g, nodes, geometry, None, input))
}

/// A `MatMul` (2-D, `transpose_a` false) or an `Einsum` `P C, C Q -> P Q` (no repeated
/// or summed-away letters) whose right operand is a float32 constant or variable, with the
/// affine ops and activation after it: one 1x1 convolution over the rows of the input.
fn plan_matmul(
    g: &Graph,
    consts: &Consts,
    uses: &Uses,
    c: usize,
) -> Option<(FusedConv, ValueRef, Vec<usize>)> {
    let node = &g.nodes[c];
    if node.inputs.len() != 2 || !uses.only_first_output_used(g, c) {
        return None;
    }
    let b = consts(g, node.inputs[1])?;
    if b.dtype != DType::F32 || b.shape.contains(&0) {
        return None;
    }
    let flag = |k: &str| node.attrs.get(k).and_then(|a| a.b).unwrap_or(false);
    let (contracted, w, out_dims, rank) = match node.op.as_str() {
        "MatMul" => {
            let [r0, r1] = b.shape[..] else { return None };
            if flag("transpose_a") {
                return None;
            }
            let v = b.to_f32().ok()?;
            let w: Vec<f64> = if flag("transpose_b") {
                // [n, k] -> [k, n]
                (0..r1 * r0)
                    .map(|i| v[(i % r0) * r1 + i / r0] as f64)
                    .collect()
            } else {
                v.iter().map(|&x| x as f64).collect()
            };
            let n = if flag("transpose_b") { r0 } else { r1 };
            (1, w, vec![n], 2)
        }
        "Einsum" => {
            let eq = attr_s(node, "equation");
            let (ins, out) = eq.split_once("->")?;
            let (lhs, rhs) = ins.split_once(',')?;
            let (lhs, rhs, out) = (lhs.as_bytes(), rhs.as_bytes(), out.as_bytes());
            let all = [lhs, rhs, out].concat();
            if all.iter().any(|ch| !ch.is_ascii_alphabetic()) || rhs.len() != b.shape.len() {
                return None;
            }
            // The longest suffix of lhs that is a prefix of rhs: the contracted letters.
            let nc = (1..=lhs.len().min(rhs.len()))
                .rev()
                .find(|&k| lhs[lhs.len() - k..] == rhs[..k])?;
            let (p, q) = (&lhs[..lhs.len() - nc], &rhs[nc..]);
            let distinct = |v: &[u8]| {
                let mut s = v.to_vec();
                s.sort_unstable();
                s.windows(2).all(|w| w[0] != w[1])
            };
            if out != [p, q].concat().as_slice()
                || !distinct(lhs)
                || !distinct(rhs)
                || !distinct(out)
            {
                return None;
            }
            let w: Vec<f64> = b.to_f32().ok()?.iter().map(|&x| x as f64).collect();
            (nc, w, b.shape[nc..].to_vec(), out.len())
        }
        _ => return None,
    };
    let cout: usize = out_dims.iter().product();
    let cin = w.len() / cout;
    let mut chain = Chain::new(w, cout, c, rank);
    chain.out_dims = Some(out_dims.clone());
    chain.absorb_all(g, consts, uses);
    let flat = Flat {
        contracted,
        out_dims,
        reshape: None,
    };
    let geometry = Geometry::Conv(ConvGeometry::new(1, 1, cin));
    Some(chain.into_fused(g, vec![c], geometry, Some(flat), node.inputs[0]))
}
