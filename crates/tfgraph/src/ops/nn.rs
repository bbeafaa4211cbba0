//! Convolutions, batch norm, pooling and image resizing (TensorFlow's NHWC semantics).

use super::{arg, checked_elements, Ctx, OpResult, Value};
use crate::dev::{self, FT};
use burn::tensor::ops::ConvOptions;

/// Output size and (before, after) padding of one spatial axis.
pub(crate) fn same_or_valid(
    padding: &str,
    input: usize,
    k: usize,
    stride: usize,
    dilation: usize,
) -> Result<(usize, usize, usize), String> {
    let ek = (k - 1) * dilation + 1;
    match padding {
        "SAME" => {
            let out = input.div_ceil(stride);
            let total = ((out.saturating_sub(1)) * stride + ek).saturating_sub(input);
            Ok((out, total / 2, total - total / 2))
        }
        "VALID" => {
            if input < ek {
                return Err(format!(
                    "input size {input} is smaller than the kernel extent {ek}"
                ));
            }
            Ok(((input - ek) / stride + 1, 0, 0))
        }
        p => Err(format!("padding {p:?} is not supported")),
    }
}

struct Conv {
    nchw: bool,
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: [(usize, usize); 2],
}

fn conv_geometry(ctx: &Ctx, xs: &[usize], kh: usize, kw: usize) -> Result<Conv, String> {
    let nchw = ctx.attr_s("data_format") == "NCHW";
    let (hi, wi) = if nchw { (2, 3) } else { (1, 2) };
    let st = ctx.attr_ints("strides");
    let dl = ctx.attr_ints("dilations");
    let get = |v: &[i64], i: usize| -> Result<usize, String> {
        match v.get(i) {
            None if v.is_empty() => Ok(1),
            Some(&x) if x >= 1 => Ok(x as usize),
            _ => Err(format!("bad strides/dilations {v:?}")),
        }
    };
    let stride = [get(&st, hi)?, get(&st, wi)?];
    let dilation = [get(&dl, hi)?, get(&dl, wi)?];
    let padding = ctx.attr_s("padding");
    let pads = if padding == "EXPLICIT" {
        let p = ctx.attr_ints("explicit_paddings");
        if p.len() != 8 || p.iter().any(|&x| x < 0) {
            return Err(format!("bad explicit_paddings {p:?}"));
        }
        let pads = [
            (p[2 * hi] as usize, p[2 * hi + 1] as usize),
            (p[2 * wi] as usize, p[2 * wi + 1] as usize),
        ];
        // The padded sizes must be representable (every convolution path adds them up).
        for (len, (before, after)) in [(xs[hi], pads[0]), (xs[wi], pads[1])] {
            if len
                .checked_add(before)
                .and_then(|v| v.checked_add(after))
                .is_none()
            {
                return Err(format!("explicit_paddings {p:?} too large"));
            }
        }
        pads
    } else {
        let (_, t, b) = same_or_valid(&padding, xs[hi], kh, stride[0], dilation[0])?;
        let (_, l, r) = same_or_valid(&padding, xs[wi], kw, stride[1], dilation[1])?;
        [(t, b), (l, r)]
    };
    Ok(Conv {
        nchw,
        stride,
        dilation,
        pads,
    })
}

/// The convolution as a [`cpu_kernels::TrainConv`] when the CPU kernels run it (NHWC, no
/// dilation, one group or a depthwise filter of multiplier 1), its output size checked.
fn kernel_conv(
    g: &Conv,
    xs: &[usize],
    ws: &[usize],
    depthwise: bool,
) -> Result<Option<cpu_kernels::TrainConv>, String> {
    if g.nchw || g.dilation != [1, 1] || ws[2] != xs[3] || (depthwise && ws[3] != 1) {
        return Ok(None);
    }
    let spec = cpu_kernels::TrainConv {
        n: xs[0],
        h: xs[1],
        w: xs[2],
        cin: xs[3],
        cout: if depthwise { xs[3] } else { ws[3] },
        kh: ws[0],
        kw: ws[1],
        stride: g.stride,
        pads: [g.pads[0].0, g.pads[0].1, g.pads[1].0, g.pads[1].1],
        depthwise,
    };
    let Some((oh, ow)) = spec.output_hw() else {
        return Ok(None);
    };
    checked_elements(&[xs[0], oh, ow, spec.cout])?;
    Ok(Some(spec))
}

fn to_nchw(t: FT) -> FT {
    dev::permute(t, &[0, 3, 1, 2])
}
fn to_nhwc(t: FT) -> FT {
    dev::permute(t, &[0, 2, 3, 1])
}

/// [`conv2d`] of an NHWC `VALID` convolution (either kind) whose input is to be read as if
/// zero-padded by `[top, bottom, left, right]` (a folded `Pad`).
pub(super) fn conv2d_padded(ctx: &Ctx, inputs: &[Value], pads: [usize; 4]) -> OpResult {
    let depthwise = ctx.node.op == "DepthwiseConv2dNative";
    conv2d_with(ctx, inputs, depthwise, pads)
}

fn conv2d(ctx: &Ctx, inputs: &[Value], depthwise: bool) -> OpResult {
    conv2d_with(ctx, inputs, depthwise, [0; 4])
}

/// The convolution, its input read with `extra` zero padding (`[top, bottom, left, right]`)
/// besides its own.
fn conv2d_with(ctx: &Ctx, inputs: &[Value], depthwise: bool, extra: [usize; 4]) -> OpResult {
    let x = ctx.float(arg(inputs, 0)?)?;
    let w = ctx.float(arg(inputs, 1)?)?;
    let (xs, ws) = (dev::shape(&x), dev::shape(&w));
    if xs.len() != 4 || ws.len() != 4 {
        return Err(format!(
            "expects 4-D input and filter, got {xs:?} and {ws:?}"
        ));
    }
    // The geometry of the padded input (its sizes representable, as for explicit
    // paddings), then the extra padding added to the convolution's own.
    let add = |a: usize, b: usize| {
        a.checked_add(b)
            .ok_or_else(|| format!("padding {extra:?} too large"))
    };
    let padded = [
        xs[0],
        add(add(xs[1], extra[0])?, extra[1])?,
        add(add(xs[2], extra[2])?, extra[3])?,
        xs[3],
    ];
    let mut g = conv_geometry(ctx, &padded, ws[0], ws[1])?;
    g.pads = [
        (add(g.pads[0].0, extra[0])?, add(g.pads[0].1, extra[1])?),
        (add(g.pads[1].0, extra[2])?, add(g.pads[1].1, extra[3])?),
    ];
    if let Some(spec) = kernel_conv(&g, &xs, &ws, depthwise)? {
        if cpu_train::runs_on_flex(&x) && cpu_train::runs_on_flex(&w) {
            return Ok(vec![Value::Dev(cpu_train::conv(x, w, spec))]);
        }
    }
    let c = if g.nchw { xs[1] } else { xs[3] };
    let (weight, groups) = if depthwise {
        // [kh, kw, C, M] -> [C*M, 1, kh, kw]; output channel c*M + m.
        if ws[2] != c {
            return Err(format!("filter {ws:?} for {c} input channels"));
        }
        let w = dev::reshape(w, &[ws[0], ws[1], 1, ws[2] * ws[3]]);
        (dev::permute(w, &[3, 2, 0, 1]), c)
    } else {
        if ws[2] == 0 || c % ws[2] != 0 {
            return Err(format!("filter {ws:?} for {c} input channels"));
        }
        let groups = c / ws[2];
        if ws[3] % groups != 0 {
            return Err(format!("{} output channels in {groups} groups", ws[3]));
        }
        (dev::permute(w, &[3, 2, 0, 1]), groups)
    };
    let xin = if g.nchw { x } else { to_nchw(x) };
    let opts = ConvOptions::new_with_padding(g.stride, g.pads, g.dilation, groups);
    let y = dev::conv2d(xin, weight, None, opts);
    Ok(vec![Value::Dev(if g.nchw { y } else { to_nhwc(y) })])
}

/// `FusedBatchNorm*`; in training, `act` clamps its output to `[lo, hi]` (a ReLU / ReLU6
/// that reads only this output, fused by the training plan).
pub(super) fn batch_norm(ctx: &Ctx, inputs: &[Value], act: Option<(f32, f32)>) -> OpResult {
    batch_norm_after(ctx, inputs, act, None)
}

/// A training trace's `Conv2D` (`conv`: its node, `conv_inputs` its input and filter) and
/// the `FusedBatchNorm*` that alone reads its output (`bn`, `bn_inputs` but for the first),
/// fused by the training plan: where the CPU kernels run the convolution (on flex, NHWC),
/// the batch norm takes it ([`batch_norm_after`]); otherwise the convolution runs, then the
/// batch norm.
pub(super) fn conv_batch_norm(
    conv: &Ctx,
    conv_inputs: &[Value],
    bn: &Ctx,
    mut bn_inputs: Vec<Value>,
    act: Option<(f32, f32)>,
) -> OpResult {
    let x = conv.float(arg(conv_inputs, 0)?)?;
    let w = conv.float(arg(conv_inputs, 1)?)?;
    let (xs, ws) = (dev::shape(&x), dev::shape(&w));
    if xs.len() == 4 && ws.len() == 4 {
        let g = conv_geometry(conv, &xs, ws[0], ws[1])?;
        if let Some(spec) = kernel_conv(&g, &xs, &ws, false)? {
            if cpu_train::runs_on_flex(&x) && cpu_train::runs_on_flex(&w) {
                if bn_inputs.is_empty() {
                    return Err("expects an input".into());
                }
                bn_inputs[0] = Value::Dev(x);
                return batch_norm_after(bn, &bn_inputs, act, Some((w, spec)));
            }
        }
    }
    let y = conv2d(conv, conv_inputs, false)?;
    match (bn_inputs.first_mut(), y.into_iter().next()) {
        (Some(first), Some(y)) => *first = y,
        _ => return Err("expects an input".into()),
    }
    batch_norm(bn, &bn_inputs, act)
}

/// [`batch_norm`], its input `x` the input of the convolution `conv` (filter, geometry on
/// the CPU kernels) when given (see [`conv_batch_norm`]): one op with a training-mode NHWC
/// batch norm on flex, otherwise the convolution runs first.
fn batch_norm_after(
    ctx: &Ctx,
    inputs: &[Value],
    act: Option<(f32, f32)>,
    conv: Option<(FT, cpu_kernels::TrainConv)>,
) -> OpResult {
    let x = ctx.float(arg(inputs, 0)?)?;
    let xs = match &conv {
        // The batch norm's input is the convolution's output.
        Some((_, spec)) => {
            let (oh, ow) = spec
                .output_hw()
                .ok_or("convolution larger than its input")?;
            vec![spec.n, oh, ow, spec.cout]
        }
        None => dev::shape(&x),
    };
    if xs.len() != 4 {
        return Err(format!("expects a 4-D input, got {xs:?}"));
    }
    let nchw = ctx.attr_s("data_format") == "NCHW";
    let c = if nchw { xs[1] } else { xs[3] };
    let bshape = if nchw {
        vec![1, c, 1, 1]
    } else {
        vec![1, 1, 1, c]
    };
    let vec_of = |i: usize| -> Result<FT, String> {
        let t = ctx.float(arg(inputs, i)?)?;
        if dev::shape(&t) != [c] {
            return Err(format!(
                "input {i} has shape {:?}, expected [{c}]",
                dev::shape(&t)
            ));
        }
        Ok(dev::reshape(t, &bshape))
    };
    let eps = ctx.attr_f("epsilon", 1e-4);
    let scale = vec_of(1)?;
    let offset = vec_of(2)?;
    // `is_training` defaults to true in the OpDef (stripped from nodes when true).
    let training = ctx.attr("is_training").and_then(|a| a.b).unwrap_or(true);
    // The moving mean and variance, with frozen statistics.
    let moving = if training {
        None
    } else {
        Some((vec_of(3)?, vec_of(4)?))
    };
    let on_flex = [&x, &scale, &offset]
        .into_iter()
        .chain(moving.iter().flat_map(|(m, v)| [m, v]))
        .all(cpu_train::runs_on_flex);
    // A convolution the one op cannot take here runs first.
    let (x, conv) = match conv {
        Some((w, spec)) if nchw || !on_flex => (cpu_train::conv(x, w, spec), None),
        conv => (x, conv),
    };
    if let Some((mean, var)) = moving {
        let r = |t: FT| dev::reshape(t, &[c]);
        let (y, m, v) = if !nchw && on_flex {
            // The kernels' pass (a gradient through Burn's broadcast ops otherwise).
            let (m, v) = (r(mean), r(var));
            let (scale, offset) = (r(scale), r(offset));
            let bounds = act.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
            // With the convolution that produced `x` (not run yet: `x` is its input) as
            // one op.
            let y = cpu_train::batch_norm_frozen(
                x,
                conv,
                scale,
                offset,
                m.clone(),
                v.clone(),
                eps,
                bounds,
            );
            (y, m, v)
        } else {
            let factor = dev::mul(
                dev::recip(dev::sqrt(dev::add_scalar(var.clone(), eps))),
                scale,
            );
            let y = dev::add(dev::mul(dev::sub(x, mean.clone()), factor), offset);
            (activate(y, act), r(mean), r(var))
        };
        return Ok(vec![
            Value::Dev(y),
            Value::Dev(m.clone()),
            Value::Dev(v.clone()),
            Value::Dev(m),
            Value::Dev(v),
            Value::Dev(dev::zeros(&[c], ctx.device)),
        ]);
    }
    // Training: batch statistics (biased variance to normalise, Bessel-corrected for the
    // moving average), as FusedBatchNormV3 does.
    let axes: [usize; 3] = if nchw { [0, 2, 3] } else { [0, 1, 2] };
    let n: usize = axes.iter().map(|&a| xs[a]).product();
    let (y, mean, var) = if !nchw && on_flex {
        let (scale, offset) = (dev::reshape(scale, &[c]), dev::reshape(offset, &[c]));
        let bounds = act.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        match conv {
            // The convolution that produced `x` (not run yet: `x` is its input) and this
            // batch norm as one op.
            Some((w, spec)) => {
                cpu_train::conv_batch_norm_train(x, w, spec, scale, offset, eps, bounds)
            }
            None => cpu_train::batch_norm_train(x, scale, offset, eps, bounds),
        }
    } else {
        let (y, mean, var) = batch_norm_composite(x, scale, offset, &axes, n, eps);
        (activate(y, act), mean, var)
    };
    let unbiased = dev::mul_scalar(var.clone(), n as f32 / (n.max(2) - 1) as f32);
    let (bm, bv) = (dev::reshape(mean, &[c]), dev::reshape(unbiased, &[c]));
    let f = ctx.attr_f("exponential_avg_factor", 1.0);
    let (out_m, out_v) = if (f - 1.0).abs() > 0.0 {
        let old_m = ctx.float(arg(inputs, 3)?)?;
        let old_v = ctx.float(arg(inputs, 4)?)?;
        if dev::shape(&old_m) != [c] || dev::shape(&old_v) != [c] {
            return Err("moving statistics of the wrong shape".into());
        }
        (
            dev::add(
                dev::mul_scalar(old_m, 1.0 - f),
                dev::mul_scalar(bm.clone(), f),
            ),
            dev::add(
                dev::mul_scalar(old_v, 1.0 - f),
                dev::mul_scalar(bv.clone(), f),
            ),
        )
    } else {
        (bm.clone(), bv.clone())
    };
    let bvar = dev::reshape(var, &[c]);
    Ok(vec![
        Value::Dev(y),
        Value::Dev(out_m),
        Value::Dev(out_v),
        Value::Dev(bm),
        Value::Dev(bvar),
        Value::Dev(dev::zeros(&[c], ctx.device)),
    ])
}

/// `y` clamped to `[lo, hi]` as the graph's ReLU (`hi` infinite) or ReLU6 would.
fn activate(y: FT, act: Option<(f32, f32)>) -> FT {
    match act {
        Some((lo, hi)) if hi.is_finite() => dev::clamp(y, lo, hi),
        Some(_) => dev::relu(y),
        None => y,
    }
}

/// Training-mode batch normalisation as Burn ops (any device, either layout): `(y, batch
/// mean, biased batch variance)`, the statistics shaped as `scale` (broadcastable to `x`).
fn batch_norm_composite(
    x: FT,
    scale: FT,
    offset: FT,
    axes: &[usize; 3],
    n: usize,
    eps: f32,
) -> (FT, FT, FT) {
    let mut mean = x.clone();
    for &a in axes {
        mean = dev::sum_dim(mean, a);
    }
    let mean = dev::div_scalar(mean, n as f32);
    let centered = dev::sub(x, mean.clone());
    let mut var = dev::mul(centered.clone(), centered.clone());
    for &a in axes {
        var = dev::sum_dim(var, a);
    }
    let var = dev::div_scalar(var, n as f32);
    let inv = dev::recip(dev::sqrt(dev::add_scalar(var.clone(), eps)));
    let y = dev::add(dev::mul(dev::mul(centered, inv), scale), offset);
    (y, mean, var)
}

fn pool(ctx: &Ctx, inputs: &[Value], max: bool) -> OpResult {
    let x = ctx.float(arg(inputs, 0)?)?;
    let xs = dev::shape(&x);
    if xs.len() != 4 {
        return Err(format!("expects a 4-D input, got {xs:?}"));
    }
    let nchw = ctx.attr_s("data_format") == "NCHW";
    let (hi, wi) = if nchw { (2, 3) } else { (1, 2) };
    let k = ctx.attr_ints("ksize");
    let s = ctx.attr_ints("strides");
    if k.len() != 4 || s.len() != 4 || k.iter().chain(&s).any(|&v| v < 1) {
        return Err(format!("bad ksize {k:?} / strides {s:?}"));
    }
    if k[0] != 1 || k[if nchw { 1 } else { 3 }] != 1 {
        return Err("pooling over the batch or channel axis is not supported".into());
    }
    let (kh, kw, sh, sw) = (
        k[hi] as usize,
        k[wi] as usize,
        s[hi] as usize,
        s[wi] as usize,
    );
    let padding = ctx.attr_s("padding");
    let (oh, t, b) = same_or_valid(&padding, xs[hi], kh, sh, 1)?;
    let (ow, l, r) = same_or_valid(&padding, xs[wi], kw, sw, 1)?;
    if !nchw && cpu_train::runs_on_flex(&x) {
        let spec = cpu_kernels::TrainPool {
            n: xs[0],
            h: xs[1],
            w: xs[2],
            c: xs[3],
            kh,
            kw,
            stride: [sh, sw],
            pads: [t, b, l, r],
            max,
        };
        if spec.output_hw() == Some((oh, ow)) {
            return Ok(vec![Value::Dev(cpu_train::pool(x, spec))]);
        }
    }
    let xin = if nchw { x } else { to_nchw(x) };
    let y = if max {
        let xp = if t + b + l + r > 0 {
            let pads = [(0, 0), (0, 0), (t, b), (l, r)];
            super::array::pad_dev(ctx, xin, &pads, f32::NEG_INFINITY)
        } else {
            xin
        };
        dev::max_pool2d(xp, [kh, kw], [sh, sw])
    } else if t + b + l + r == 0 {
        dev::avg_pool2d(xin, [kh, kw], [sh, sw])
    } else {
        // SAME average pooling divides by the number of real (unpadded) cells.
        let pads = [(0, 0), (0, 0), (t, b), (l, r)];
        let xp = super::array::pad_dev(ctx, xin, &pads, 0.0);
        let sum = dev::mul_scalar(dev::avg_pool2d(xp, [kh, kw], [sh, sw]), (kh * kw) as f32);
        let count = |o: usize, st: usize, k: usize, before: usize, n: usize| -> f32 {
            let lo = (o * st) as i64 - before as i64;
            let hi = lo + k as i64;
            (hi.min(n as i64) - lo.max(0)) as f32
        };
        let mut inv = Vec::with_capacity(oh * ow);
        for i in 0..oh {
            for j in 0..ow {
                inv.push(count(i, sh, kh, t, xs[hi]) * count(j, sw, kw, l, xs[wi]));
            }
        }
        let cnt = dev::upload(inv, &[1, 1, oh, ow], ctx.device);
        dev::div(sum, cnt)
    };
    Ok(vec![Value::Dev(if nchw { y } else { to_nhwc(y) })])
}

/// Source index and weights of one output axis of a bilinear resize (TF's formula).
fn bilinear_axis(
    out: usize,
    input: usize,
    align: bool,
    half: bool,
) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let scale = if align && out > 1 {
        (input as f32 - 1.0) / (out as f32 - 1.0)
    } else {
        input as f32 / out as f32
    };
    let mut lo = Vec::with_capacity(out);
    let mut hi = Vec::with_capacity(out);
    let mut w = Vec::with_capacity(out);
    for i in 0..out {
        let src = if half {
            (i as f32 + 0.5) * scale - 0.5
        } else {
            i as f32 * scale
        };
        let f = src.floor();
        lo.push((f as i64).clamp(0, input as i64 - 1));
        hi.push((src.ceil() as i64).clamp(0, input as i64 - 1));
        w.push(src - f);
    }
    (lo, hi, w)
}

fn resize(ctx: &Ctx, inputs: &[Value], bilinear: bool) -> OpResult {
    let x = ctx.float(arg(inputs, 0)?)?;
    let xs = dev::shape(&x);
    let size = ctx.ints(arg(inputs, 1)?)?;
    if xs.len() != 4 || size.len() != 2 || size.iter().any(|&v| v <= 0) || xs[1] == 0 || xs[2] == 0
    {
        return Err(format!("resize of {xs:?} to {size:?}"));
    }
    let (oh, ow) = (size[0] as usize, size[1] as usize);
    checked_elements(&[xs[0], oh, ow, xs[3]])?;
    let align = ctx.attr_b("align_corners");
    let half = ctx.attr_b("half_pixel_centers");
    if bilinear {
        let (x0, x1, wx) = bilinear_axis(ow, xs[2], align, half);
        let (y0, y1, wy) = bilinear_axis(oh, xs[1], align, half);
        let left = dev::select(x.clone(), 2, &x0, ctx.device);
        let right = dev::select(x, 2, &x1, ctx.device);
        let wx = dev::upload(wx, &[1, 1, ow, 1], ctx.device);
        let row = dev::add(left.clone(), dev::mul(dev::sub(right, left), wx));
        let top = dev::select(row.clone(), 1, &y0, ctx.device);
        let bottom = dev::select(row, 1, &y1, ctx.device);
        let wy = dev::upload(wy, &[1, oh, 1, 1], ctx.device);
        Ok(vec![Value::Dev(dev::add(
            top.clone(),
            dev::mul(dev::sub(bottom, top), wy),
        ))])
    } else {
        let idx = |out: usize, input: usize| -> Vec<i64> {
            let scale = if align && out > 1 {
                (input as f32 - 1.0) / (out as f32 - 1.0)
            } else {
                input as f32 / out as f32
            };
            (0..out)
                .map(|i| {
                    let src = if half {
                        (i as f32 + 0.5) * scale
                    } else {
                        i as f32 * scale
                    };
                    let v = if align { src.round() } else { src.floor() };
                    (v as i64).clamp(0, input as i64 - 1)
                })
                .collect()
        };
        let t = dev::select(x, 2, &idx(ow, xs[2]), ctx.device);
        Ok(vec![Value::Dev(dev::select(
            t,
            1,
            &idx(oh, xs[1]),
            ctx.device,
        ))])
    }
}

/// `Conv2DBackpropInput` (Keras `Conv2DTranspose`): the gradient of a convolution with
/// respect to its input, as a transposed convolution cropped / padded to `input_sizes`.
fn conv2d_backprop_input(ctx: &Ctx, inputs: &[Value]) -> OpResult {
    let sizes = ctx.ints(arg(inputs, 0)?)?;
    let w = ctx.float(arg(inputs, 1)?)?;
    let dy = ctx.float(arg(inputs, 2)?)?;
    let (ws, ds) = (dev::shape(&w), dev::shape(&dy));
    if sizes.len() != 4 || ws.len() != 4 || ds.len() != 4 || sizes.iter().any(|&v| v < 0) {
        return Err(format!(
            "input_sizes {sizes:?}, filter {ws:?}, out_backprop {ds:?}"
        ));
    }
    if ctx.attr_s("data_format") == "NCHW" {
        return Err("NCHW transposed convolution is not supported".into());
    }
    let xs: Vec<usize> = sizes.iter().map(|&v| v as usize).collect();
    checked_elements(&xs)?;
    if ws[3] != ds[3] || ws[2] != xs[3] {
        return Err(format!(
            "filter {ws:?} does not fit out_backprop {ds:?} and input {xs:?}"
        ));
    }
    let g = conv_geometry(ctx, &xs, ws[0], ws[1])?;
    // [kh, kw, Cin, Cout] -> [Cout, Cin, kh, kw]: the transposed conv maps Cout -> Cin.
    let weight = dev::permute(w, &[3, 2, 0, 1]);
    let opts =
        burn::tensor::ops::ConvTransposeOptions::new(g.stride, [0, 0], [0, 0], g.dilation, 1);
    let full = dev::conv_transpose2d(to_nchw(dy), weight, opts);
    let fs = dev::shape(&full);
    // Keep rows [pad_before, pad_before + H) (zeros past the end of the full result).
    let mut t = full;
    for (axis, (before, want)) in [(2usize, (g.pads[0].0, xs[1])), (3, (g.pads[1].0, xs[2]))] {
        let have = fs[axis];
        let end = (before + want).min(have);
        let mut sl: Vec<burn::tensor::Slice> = dev::shape(&t)
            .iter()
            .map(|&n| burn::tensor::Slice::new(0, Some(n as isize), 1))
            .collect();
        sl[axis] = burn::tensor::Slice::new(before.min(end) as isize, Some(end as isize), 1);
        t = dev::slice(t, &sl);
        let got = end - before.min(end);
        if got < want {
            let mut pads = [(0, 0); 4];
            pads[axis] = (0, want - got);
            t = super::array::pad_dev(ctx, t, &pads, 0.0);
        }
    }
    Ok(vec![Value::Dev(to_nhwc(t))])
}

/// `DepthToSpace` / `SpaceToDepth` (NHWC, DCR order as TensorFlow).
fn depth_space(ctx: &Ctx, inputs: &[Value], to_space: bool) -> OpResult {
    let x = ctx.float(arg(inputs, 0)?)?;
    let s = dev::shape(&x);
    let b = ctx.attr_i("block_size")?;
    if s.len() != 4 || b < 1 || ctx.attr_s("data_format") == "NCHW" {
        return Err(format!("{s:?} with block {b} (NHWC only)"));
    }
    let b = b as usize;
    let (n, h, w, c) = (s[0], s[1], s[2], s[3]);
    if to_space {
        if c % (b * b) != 0 {
            return Err(format!("{c} channels for block {b}"));
        }
        let t = dev::reshape(x, &[n, h, w, b, b, c / (b * b)]);
        let t = dev::permute(t, &[0, 1, 3, 2, 4, 5]);
        Ok(vec![Value::Dev(dev::reshape(
            t,
            &[n, h * b, w * b, c / (b * b)],
        ))])
    } else {
        if h % b != 0 || w % b != 0 {
            return Err(format!("{h}x{w} for block {b}"));
        }
        let t = dev::reshape(x, &[n, h / b, b, w / b, b, c]);
        let t = dev::permute(t, &[0, 1, 3, 2, 4, 5]);
        Ok(vec![Value::Dev(dev::reshape(
            t,
            &[n, h / b, w / b, c * b * b],
        ))])
    }
}

pub(super) fn run(op: &str, ctx: &Ctx, inputs: &[Value]) -> Option<OpResult> {
    Some(match op {
        "Conv2DBackpropInput" => conv2d_backprop_input(ctx, inputs),
        "DepthToSpace" => depth_space(ctx, inputs, true),
        "SpaceToDepth" => depth_space(ctx, inputs, false),
        "Conv2D" => conv2d(ctx, inputs, false),
        "DepthwiseConv2dNative" => conv2d(ctx, inputs, true),
        "FusedBatchNorm" | "FusedBatchNormV2" | "FusedBatchNormV3" => batch_norm(ctx, inputs, None),
        "AvgPool" => pool(ctx, inputs, false),
        "MaxPool" => pool(ctx, inputs, true),
        "ResizeBilinear" => resize(ctx, inputs, true),
        "ResizeNearestNeighbor" => resize(ctx, inputs, false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_puts_the_odd_pixel_at_the_end() {
        assert_eq!(same_or_valid("SAME", 8, 3, 2, 1).unwrap(), (4, 0, 1));
        assert_eq!(same_or_valid("SAME", 7, 3, 2, 1).unwrap(), (4, 1, 1));
        assert_eq!(same_or_valid("SAME", 9, 5, 1, 2).unwrap(), (9, 4, 4));
        assert_eq!(same_or_valid("VALID", 7, 3, 2, 1).unwrap(), (3, 0, 0));
        assert!(same_or_valid("VALID", 2, 3, 1, 1).is_err());
    }
}
