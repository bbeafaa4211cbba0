//! Shapes and data movement: reshape, transpose, slicing, concatenation, padding, gathers.

use super::{arg, axis, checked_elements, Ctx, OpResult, Value};
use crate::dev::{self, FT};
use crate::host::{numel, HostTensor};
use burn::tensor::Slice;
use savedmodel::DType;

/// Row-major strides.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Flat indices of the elements `start[d] + k * step[d]`, `k < count[d]`, row-major.
fn strided_indices(shape: &[usize], start: &[i64], step: &[i64], count: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let n = numel(count).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let r = count.len();
    let mut pos = vec![0usize; r];
    loop {
        let mut flat = 0i64;
        for d in 0..r {
            flat += (start[d] + pos[d] as i64 * step[d]) * st[d] as i64;
        }
        out.push(flat as usize);
        let mut d = r;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            pos[d] += 1;
            if pos[d] < count[d] {
                break;
            }
            pos[d] = 0;
        }
    }
}

/// Same as `strided_indices` with a permutation: output axis `i` walks input axis `perm[i]`.
fn permuted_indices(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let pst: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let pshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let start = vec![0i64; shape.len()];
    let ones = vec![1i64; shape.len()];
    // Walk the permuted shape with the permuted strides.
    let n = numel(&pshape).unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    let _ = (&start, &ones);
    if n == 0 {
        return out;
    }
    let r = pshape.len();
    let mut pos = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..n {
        out.push(cur);
        for d in (0..r).rev() {
            pos[d] += 1;
            cur += pst[d];
            if pos[d] < pshape[d] {
                break;
            }
            cur -= pst[d] * pos[d];
            pos[d] = 0;
        }
    }
    out
}

/// Runs a float op on a device bool tensor by way of 0/1 floats.
fn via_float(
    ctx: &Ctx,
    v: &Value,
    f: impl FnOnce(FT) -> Result<FT, String>,
) -> Result<Value, String> {
    match v {
        Value::DevBool(_) => {
            let t = f(ctx.float(v)?)?;
            let z = dev::zeros(&dev::shape(&t), ctx.device);
            Ok(Value::DevBool(dev::not_equal(t, z)))
        }
        _ => Ok(Value::Dev(f(ctx.float(v)?)?)),
    }
}

fn reshape_value(ctx: &Ctx, v: &Value, shape: Vec<usize>) -> Result<Value, String> {
    let n = numel(&v.shape()).unwrap_or(0);
    if numel(&shape) != Some(n) {
        return Err(format!("cannot reshape {:?} to {shape:?}", v.shape()));
    }
    Ok(match v {
        Value::Host(h) => Value::Host(HostTensor { shape, ..h.clone() }),
        Value::DevBool(t) => Value::DevBool(dev::bool_reshape(t.clone(), &shape)),
        _ => Value::Dev(dev::reshape(ctx.float(v)?, &shape)),
    })
}

/// Resolves a Reshape target (one -1 allowed) against `n` elements.
fn reshape_target(target: &[i64], n: usize) -> Result<Vec<usize>, String> {
    let mut known = 1usize;
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        if d == -1 {
            if infer.is_some() {
                return Err(format!("target shape {target:?} has two -1"));
            }
            infer = Some(i);
        } else if d < 0 {
            return Err(format!("bad dimension {d} in target shape {target:?}"));
        } else {
            known = known
                .checked_mul(d as usize)
                .ok_or_else(|| format!("target shape {target:?} overflows"))?;
        }
    }
    let mut out: Vec<usize> = target.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = infer {
        if known == 0 || n % known != 0 {
            return Err(format!("cannot reshape {n} elements to {target:?}"));
        }
        out[i] = n / known;
    } else if known != n {
        return Err(format!("cannot reshape {n} elements to {target:?}"));
    }
    Ok(out)
}

fn transpose_value(ctx: &Ctx, v: &Value, perm: &[usize]) -> Result<Value, String> {
    let s = v.shape();
    let mut seen = vec![false; s.len()];
    if perm.len() != s.len()
        || perm
            .iter()
            .any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!("bad permutation {perm:?} for shape {s:?}"));
    }
    match v {
        Value::Host(h) => {
            let idx = permuted_indices(&s, perm);
            Ok(Value::Host(
                h.take(perm.iter().map(|&p| s[p]).collect(), &idx),
            ))
        }
        _ => via_float(ctx, v, |t| Ok(dev::permute(t, perm))),
    }
}

/// Per-axis `(start, step, count)` of a strided slice, plus the final shape.
struct SliceSpec {
    start: Vec<i64>,
    step: Vec<i64>,
    count: Vec<usize>,
    out_shape: Vec<usize>,
}

fn slice_value(ctx: &Ctx, v: &Value, spec: &SliceSpec) -> Result<Value, String> {
    let s = v.shape();
    match v {
        Value::Host(h) => {
            let idx = strided_indices(&s, &spec.start, &spec.step, &spec.count);
            Ok(Value::Host(h.take(spec.out_shape.clone(), &idx)))
        }
        _ => via_float(ctx, v, |t| {
            let mut flip_axes = Vec::new();
            let mut slices = Vec::with_capacity(s.len());
            for d in 0..s.len() {
                let (st, step, c) = (spec.start[d], spec.step[d], spec.count[d] as i64);
                if c == 0 {
                    slices.push(Slice::new(0, Some(0), 1));
                } else if step > 0 {
                    slices.push(Slice::new(
                        st as isize,
                        Some((st + (c - 1) * step + 1) as isize),
                        step as isize,
                    ));
                } else {
                    let lo = st + (c - 1) * step;
                    slices.push(Slice::new(
                        lo as isize,
                        Some((st + 1) as isize),
                        (-step) as isize,
                    ));
                    flip_axes.push(d);
                }
            }
            let mut t = dev::slice(t, &slices);
            if !flip_axes.is_empty() {
                t = dev::flip(t, &flip_axes);
            }
            Ok(dev::reshape(t, &spec.out_shape))
        }),
    }
}

fn strided_slice(
    ctx: &Ctx,
    shape: &[usize],
    begin: &[i64],
    end: &[i64],
    strides: &[i64],
) -> Result<SliceSpec, String> {
    let n = begin.len();
    if end.len() != n || strides.len() != n {
        return Err("begin, end and strides differ in length".into());
    }
    let m = |name: &str| ctx.attr(name).and_then(|a| a.i).unwrap_or(0);
    let (bm, em, ellm, nam, sam) = (
        m("begin_mask"),
        m("end_mask"),
        m("ellipsis_mask"),
        m("new_axis_mask"),
        m("shrink_axis_mask"),
    );
    // Expand the sparse spec (with ellipsis and new axes) to one entry per input axis.
    let r = shape.len();
    let mut start = Vec::with_capacity(r);
    let mut step = Vec::with_capacity(r);
    let mut count = Vec::with_capacity(r);
    let mut out_shape = Vec::new();
    let n_real = (0..n)
        .filter(|&i| nam & (1 << i) == 0 && ellm & (1 << i) == 0)
        .count();
    let mut d = 0usize; // input axis
    for i in 0..n {
        if ellm & (1 << i) != 0 {
            let fill = r
                .checked_sub(n_real + d)
                .ok_or("slice spec longer than the input rank")?;
            for _ in 0..fill {
                start.push(0);
                step.push(1);
                count.push(shape[d]);
                out_shape.push(shape[d]);
                d += 1;
            }
            continue;
        }
        if nam & (1 << i) != 0 {
            out_shape.push(1);
            continue;
        }
        if d >= r {
            return Err(format!("slice spec longer than the input rank {r}"));
        }
        let dim = shape[d] as i64;
        let s = strides[i];
        if s == 0 {
            return Err("stride 0".into());
        }
        if sam & (1 << i) != 0 {
            let mut b = begin[i];
            if b < 0 {
                b += dim;
            }
            if b < 0 || b >= dim {
                return Err(format!(
                    "index {} out of range for axis of size {dim}",
                    begin[i]
                ));
            }
            start.push(b);
            step.push(1);
            count.push(1);
            d += 1;
            continue;
        }
        let (lo, hi) = if s > 0 { (0, dim) } else { (-1, dim - 1) };
        let norm = |x: i64| {
            let x = if x < 0 { x + dim } else { x };
            x.clamp(lo, hi)
        };
        let b = if bm & (1 << i) != 0 {
            if s > 0 {
                lo
            } else {
                hi
            }
        } else {
            norm(begin[i])
        };
        let e = if em & (1 << i) != 0 {
            if s > 0 {
                hi
            } else {
                lo
            }
        } else {
            norm(end[i])
        };
        let c = if s > 0 {
            if e > b {
                (e - b + s - 1) / s
            } else {
                0
            }
        } else if b > e {
            (b - e + (-s) - 1) / (-s)
        } else {
            0
        };
        start.push(if c == 0 { 0 } else { b });
        step.push(s);
        count.push(c as usize);
        out_shape.push(c as usize);
        d += 1;
    }
    while d < r {
        start.push(0);
        step.push(1);
        count.push(shape[d]);
        out_shape.push(shape[d]);
        d += 1;
    }
    Ok(SliceSpec {
        start,
        step,
        count,
        out_shape,
    })
}

fn concat_values(ctx: &Ctx, vals: &[&Value], ax: usize) -> Result<Value, String> {
    let first = vals.first().ok_or("nothing to concatenate")?.shape();
    let mut out_shape = first.clone();
    out_shape[ax] = 0;
    for v in vals {
        let s = v.shape();
        if s.len() != first.len() || (0..s.len()).any(|d| d != ax && s[d] != first[d]) {
            return Err(format!(
                "cannot concatenate shapes {first:?} and {s:?} on axis {ax}"
            ));
        }
        out_shape[ax] += s[ax];
    }
    if vals.iter().all(|v| v.is_host()) {
        let hs: Vec<&HostTensor> = vals
            .iter()
            .map(|v| match v {
                Value::Host(h) => h,
                _ => unreachable!(),
            })
            .collect();
        let dtype = hs[0].dtype;
        let outer: usize = first[..ax].iter().product();
        let mut idx = Vec::new();
        let mut base = 0usize;
        let mut bases = Vec::new();
        for h in &hs {
            bases.push(base);
            base += h.len();
        }
        let all = HostTensor::concat_flat(dtype, vec![base], &hs)?;
        for o in 0..outer {
            for (k, h) in hs.iter().enumerate() {
                let inner: usize = h.shape[ax..].iter().product();
                for j in 0..inner {
                    idx.push(bases[k] + o * inner + j);
                }
            }
        }
        return Ok(Value::Host(all.take(out_shape, &idx)));
    }
    let any_bool = vals.iter().all(|v| matches!(v, Value::DevBool(_)));
    let ts: Result<Vec<FT>, String> = vals.iter().map(|v| ctx.float(v)).collect();
    let t = dev::cat(ts?, ax);
    Ok(if any_bool {
        let z = dev::zeros(&dev::shape(&t), ctx.device);
        Value::DevBool(dev::not_equal(t, z))
    } else {
        Value::Dev(t)
    })
}

/// Constant padding of a device tensor by concatenation (any rank).
pub(super) fn pad_dev(ctx: &Ctx, mut t: FT, pads: &[(usize, usize)], value: f32) -> FT {
    for (d, &(b, a)) in pads.iter().enumerate() {
        if b == 0 && a == 0 {
            continue;
        }
        let s = dev::shape(&t);
        let mut parts = Vec::new();
        if b > 0 {
            let mut ps = s.clone();
            ps[d] = b;
            parts.push(dev::add_scalar(dev::zeros(&ps, ctx.device), value));
        }
        parts.push(t);
        if a > 0 {
            let mut ps = s.clone();
            ps[d] = a;
            parts.push(dev::add_scalar(dev::zeros(&ps, ctx.device), value));
        }
        t = dev::cat(parts, d);
    }
    t
}

fn full_slices(s: &[usize]) -> Vec<Slice> {
    s.iter()
        .map(|&n| Slice::new(0, Some(n as isize), 1))
        .collect()
}

/// REFLECT / SYMMETRIC padding of a device tensor.
fn mirror_pad_dev(mut t: FT, pads: &[(usize, usize)], symmetric: bool) -> Result<FT, String> {
    let off = if symmetric { 0 } else { 1 };
    for (d, &(b, a)) in pads.iter().enumerate() {
        if b == 0 && a == 0 {
            continue;
        }
        let s = dev::shape(&t);
        let n = s[d];
        if b + off > n || a + off > n {
            return Err(format!(
                "mirror padding ({b}, {a}) too large for axis of size {n}"
            ));
        }
        let mut parts = Vec::new();
        if b > 0 {
            let mut sl = full_slices(&s);
            sl[d] = Slice::new(off as isize, Some((off + b) as isize), 1);
            parts.push(dev::flip(dev::slice(t.clone(), &sl), &[d]));
        }
        parts.push(t.clone());
        if a > 0 {
            let mut sl = full_slices(&s);
            sl[d] = Slice::new((n - off - a) as isize, Some((n - off) as isize), 1);
            parts.push(dev::flip(dev::slice(t.clone(), &sl), &[d]));
        }
        t = dev::cat(parts, d);
    }
    Ok(t)
}

/// The `(before, after)` paddings of a tensor of `shape`, its padded size within bounds.
fn pads_of(ctx: &Ctx, v: &Value, shape: &[usize]) -> Result<Vec<(usize, usize)>, String> {
    let p = ctx.ints(v)?;
    let rank = shape.len();
    if p.len() != 2 * rank || p.iter().any(|&x| x < 0) {
        return Err(format!("paddings {p:?} do not fit rank {rank}"));
    }
    let pads: Vec<(usize, usize)> = p
        .chunks(2)
        .map(|c| (c[0] as usize, c[1] as usize))
        .collect();
    let out: Vec<usize> = shape
        .iter()
        .zip(&pads)
        .map(|(&d, &(b, a))| {
            d.checked_add(b)
                .and_then(|x| x.checked_add(a))
                .ok_or("paddings overflow")
        })
        .collect::<Result<_, _>>()?;
    checked_elements(&out)?;
    Ok(pads)
}

pub(super) fn run(op: &str, ctx: &Ctx, inputs: &[Value]) -> Option<OpResult> {
    let out_int = |v: Vec<i64>, shape: Vec<usize>| -> Result<Value, String> {
        let dt = ctx.attr_type("out_type").unwrap_or(DType::I32);
        Ok(Value::Host(HostTensor::from_i64(dt, shape, v)?))
    };
    let r: OpResult = match op {
        "Shape" => (|| {
            let s = arg(inputs, 0)?.shape();
            Ok(vec![out_int(
                s.iter().map(|&d| d as i64).collect(),
                vec![s.len()],
            )?])
        })(),
        "ShapeN" => inputs
            .iter()
            .map(|v| {
                let s = v.shape();
                out_int(s.iter().map(|&d| d as i64).collect(), vec![s.len()])
            })
            .collect(),
        "Size" => (|| {
            let n = numel(&arg(inputs, 0)?.shape()).unwrap_or(0);
            Ok(vec![out_int(vec![n as i64], vec![])?])
        })(),
        "Rank" => (|| {
            Ok(vec![Value::Host(HostTensor::i32(
                vec![],
                vec![arg(inputs, 0)?.shape().len() as i32],
            ))])
        })(),
        "Reshape" => (|| {
            let x = arg(inputs, 0)?;
            let target = ctx.ints(arg(inputs, 1)?)?;
            let n = numel(&x.shape()).unwrap_or(0);
            Ok(vec![reshape_value(ctx, x, reshape_target(&target, n)?)?])
        })(),
        "ExpandDims" => (|| {
            let x = arg(inputs, 0)?;
            let mut s = x.shape();
            let a = *ctx.ints(arg(inputs, 1)?)?.first().ok_or("no axis")?;
            let a = axis(a, s.len() + 1)?;
            s.insert(a, 1);
            Ok(vec![reshape_value(ctx, x, s)?])
        })(),
        "Squeeze" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let dims = ctx.attr_ints("squeeze_dims");
            let drop: Vec<usize> = if dims.is_empty() {
                (0..s.len()).filter(|&d| s[d] == 1).collect()
            } else {
                dims.iter()
                    .map(|&d| axis(d, s.len()))
                    .collect::<Result<_, _>>()?
            };
            if drop.iter().any(|&d| s[d] != 1) {
                return Err(format!("cannot squeeze axes {drop:?} of shape {s:?}"));
            }
            let ns = (0..s.len())
                .filter(|d| !drop.contains(d))
                .map(|d| s[d])
                .collect();
            Ok(vec![reshape_value(ctx, x, ns)?])
        })(),
        "Transpose" => (|| {
            let x = arg(inputs, 0)?;
            let perm: Vec<usize> = ctx
                .ints(arg(inputs, 1)?)?
                .iter()
                .map(|&p| p.max(0) as usize)
                .collect();
            Ok(vec![transpose_value(ctx, x, &perm)?])
        })(),
        "ConcatV2" | "Concat" => (|| {
            let (vals, a) = if op == "ConcatV2" {
                let n = inputs.len().checked_sub(1).ok_or("no inputs")?;
                (&inputs[..n], arg(inputs, n)?)
            } else {
                (&inputs[1..], arg(inputs, 0)?)
            };
            let first = vals.first().ok_or("nothing to concatenate")?;
            let a = axis(*ctx.ints(a)?.first().ok_or("no axis")?, first.shape().len())?;
            let refs: Vec<&Value> = vals
                .iter()
                .filter(|v| numel(&v.shape()) != Some(0) || vals.len() == 1)
                .collect();
            let refs = if refs.is_empty() { vec![first] } else { refs };
            Ok(vec![concat_values(ctx, &refs, a)?])
        })(),
        "Pack" => (|| {
            let first = arg(inputs, 0)?;
            let s = first.shape();
            let a = axis(ctx.attr("axis").and_then(|v| v.i).unwrap_or(0), s.len() + 1)?;
            let mut ns = s.clone();
            ns.insert(a, 1);
            let vals: Result<Vec<Value>, String> = inputs
                .iter()
                .map(|v| {
                    if v.shape() != s {
                        return Err(format!("cannot pack shapes {s:?} and {:?}", v.shape()));
                    }
                    reshape_value(ctx, v, ns.clone())
                })
                .collect();
            let vals = vals?;
            let refs: Vec<&Value> = vals.iter().collect();
            Ok(vec![concat_values(ctx, &refs, a)?])
        })(),
        "Unpack" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let a = axis(ctx.attr("axis").and_then(|v| v.i).unwrap_or(0), s.len())?;
            let mut out = Vec::new();
            for k in 0..s[a] {
                let mut start = vec![0i64; s.len()];
                start[a] = k as i64;
                let mut count = s.clone();
                count[a] = 1;
                let mut os = s.clone();
                os.remove(a);
                out.push(slice_value(
                    ctx,
                    x,
                    &SliceSpec {
                        start,
                        step: vec![1; s.len()],
                        count,
                        out_shape: os,
                    },
                )?);
            }
            Ok(out)
        })(),
        "StridedSlice" => (|| {
            let x = arg(inputs, 0)?;
            let b = ctx.ints(arg(inputs, 1)?)?;
            let e = ctx.ints(arg(inputs, 2)?)?;
            let st = ctx.ints(arg(inputs, 3)?)?;
            let spec = strided_slice(ctx, &x.shape(), &b, &e, &st)?;
            Ok(vec![slice_value(ctx, x, &spec)?])
        })(),
        "Slice" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let b = ctx.ints(arg(inputs, 1)?)?;
            let size = ctx.ints(arg(inputs, 2)?)?;
            if b.len() != s.len() || size.len() != s.len() {
                return Err(format!(
                    "begin {b:?} / size {size:?} do not fit shape {s:?}"
                ));
            }
            let mut count = Vec::new();
            for d in 0..s.len() {
                let c = if size[d] == -1 {
                    s[d] as i64 - b[d]
                } else {
                    size[d]
                };
                if b[d] < 0 || c < 0 || b[d] + c > s[d] as i64 {
                    return Err(format!(
                        "slice begin {b:?} size {size:?} out of range for {s:?}"
                    ));
                }
                count.push(c as usize);
            }
            let spec = SliceSpec {
                start: b,
                step: vec![1; s.len()],
                count: count.clone(),
                out_shape: count,
            };
            Ok(vec![slice_value(ctx, x, &spec)?])
        })(),
        "GatherV2" | "Gather" => (|| {
            let p = arg(inputs, 0)?;
            let ih = ctx.host(arg(inputs, 1)?)?;
            let idx = ih.to_i64()?;
            let ps = p.shape();
            let a = if op == "GatherV2" {
                axis(
                    *ctx.ints(arg(inputs, 2)?)?.first().ok_or("no axis")?,
                    ps.len(),
                )?
            } else {
                0
            };
            if let Some(bad) = idx.iter().find(|&&i| i < 0 || i as usize >= ps[a]) {
                return Err(format!(
                    "index {bad} out of range for axis of size {}",
                    ps[a]
                ));
            }
            let bd = ctx.attr("batch_dims").and_then(|v| v.i).unwrap_or(0);
            if bd != 0 {
                // Element-wise gather: the flat source of every output element.
                let bd = axis(bd, ih.shape.len() + 1)?;
                if bd > a || ih.shape[..bd] != ps[..bd] {
                    return Err(format!(
                        "batch_dims {bd} for params {ps:?} and indices {:?}",
                        ih.shape
                    ));
                }
                let mut out_shape: Vec<usize> = ps[..a].to_vec();
                out_shape.extend(&ih.shape[bd..]);
                out_shape.extend(&ps[a + 1..]);
                let batch: usize = ps[..bd].iter().product();
                let mid: usize = ps[bd..a].iter().product();
                let inner: usize = ps[a + 1..].iter().product();
                let per: usize = ih.shape[bd..].iter().product();
                let mut flat = Vec::new();
                for b in 0..batch {
                    for m in 0..mid {
                        for k in 0..per {
                            let i = idx[b * per + k] as usize;
                            for j in 0..inner {
                                flat.push((((b * mid + m) * ps[a] + i) * inner + j) as i64);
                            }
                        }
                    }
                }
                let n: usize = ps.iter().product();
                return match p {
                    Value::Host(h) => {
                        let f: Vec<usize> = flat.iter().map(|&x| x as usize).collect();
                        Ok(vec![Value::Host(h.take(out_shape, &f))])
                    }
                    v => via_float(ctx, v, |t| {
                        let t = dev::reshape(t, &[n]);
                        Ok(dev::reshape(
                            dev::select(t, 0, &flat, ctx.device),
                            &out_shape,
                        ))
                    })
                    .map(|v| vec![v]),
                };
            }
            let mut out_shape: Vec<usize> = ps[..a].to_vec();
            out_shape.extend(&ih.shape);
            out_shape.extend(&ps[a + 1..]);
            match p {
                Value::Host(h) => {
                    let outer: usize = ps[..a].iter().product();
                    let inner: usize = ps[a + 1..].iter().product();
                    let mut flat = Vec::new();
                    for o in 0..outer {
                        for &i in &idx {
                            for j in 0..inner {
                                flat.push((o * ps[a] + i as usize) * inner + j);
                            }
                        }
                    }
                    Ok(vec![Value::Host(h.take(out_shape, &flat))])
                }
                v => via_float(ctx, v, |t| {
                    Ok(dev::reshape(
                        dev::select(t, a, &idx, ctx.device),
                        &out_shape,
                    ))
                })
                .map(|v| vec![v]),
            }
        })(),
        "Fill" => (|| {
            let dims: Vec<usize> = ctx
                .ints(arg(inputs, 0)?)?
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let n = checked_elements(&dims)?;
            let v = arg(inputs, 1)?;
            match v {
                Value::Host(h) if n <= 1 << 16 => {
                    let idx = vec![0usize; n];
                    if h.is_empty() {
                        return Err("Fill with an empty value".into());
                    }
                    Ok(vec![Value::Host(h.take(dims, &idx))])
                }
                _ => {
                    let t = dev::reshape(ctx.float(v)?, &[1]);
                    let t = dev::reshape(t, &vec![1; dims.len()]);
                    Ok(vec![Value::Dev(dev::expand(t, &dims))])
                }
            }
        })(),
        "Range" => (|| {
            let (s, l, d) = (
                ctx.host(arg(inputs, 0)?)?,
                ctx.host(arg(inputs, 1)?)?,
                ctx.host(arg(inputs, 2)?)?,
            );
            let dt = s.dtype;
            let (s, l, d) = (s.to_f64()?[0], l.to_f64()?[0], d.to_f64()?[0]);
            if d == 0.0 {
                return Err("Range with delta 0".into());
            }
            let n = ((l - s) / d).ceil().max(0.0);
            if n > 1e8 {
                return Err(format!("Range of {n} elements"));
            }
            let v: Vec<f64> = (0..n as usize).map(|i| s + i as f64 * d).collect();
            Ok(vec![Value::Host(HostTensor::from_f64(
                dt,
                vec![v.len()],
                v,
            )?)])
        })(),
        "Tile" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let m = ctx.ints(arg(inputs, 1)?)?;
            if m.len() != s.len() || m.iter().any(|&k| k < 0) {
                return Err(format!("multiples {m:?} do not fit shape {s:?}"));
            }
            let out: Vec<usize> = s
                .iter()
                .zip(&m)
                .map(|(&d, &k)| d.checked_mul(k as usize).ok_or("multiples overflow"))
                .collect::<Result<_, _>>()?;
            checked_elements(&out)?;
            match x {
                Value::Host(h) => {
                    let st = strides(&s);
                    let n = numel(&out).ok_or("too large")?;
                    let mut idx = Vec::with_capacity(n);
                    let ost = strides(&out);
                    for f in 0..n {
                        let mut src = 0;
                        for d in 0..s.len() {
                            let p = (f / ost[d]) % out[d];
                            src += (p % s[d]) * st[d];
                        }
                        idx.push(src);
                    }
                    Ok(vec![Value::Host(h.take(out, &idx))])
                }
                v => via_float(ctx, v, |t| {
                    let mut inter = Vec::new();
                    let mut exp = Vec::new();
                    for d in 0..s.len() {
                        inter.push(1);
                        inter.push(s[d]);
                        exp.push(m[d] as usize);
                        exp.push(s[d]);
                    }
                    let t = dev::reshape(t, &inter);
                    Ok(dev::reshape(dev::expand(t, &exp), &out))
                })
                .map(|v| vec![v]),
            }
        })(),
        "Split" | "SplitV" => (|| {
            let (x, sizes, a) = if op == "Split" {
                let x = arg(inputs, 1)?;
                let a = axis(
                    *ctx.ints(arg(inputs, 0)?)?.first().ok_or("no axis")?,
                    x.shape().len(),
                )?;
                let n = ctx.attr_i("num_split")?;
                let d = x.shape()[a] as i64;
                if n <= 0 || d % n != 0 {
                    return Err(format!("cannot split axis of size {d} in {n}"));
                }
                (x, vec![d / n; n as usize], a)
            } else {
                let x = arg(inputs, 0)?;
                let a = axis(
                    *ctx.ints(arg(inputs, 2)?)?.first().ok_or("no axis")?,
                    x.shape().len(),
                )?;
                let mut sz = ctx.ints(arg(inputs, 1)?)?;
                let d = x.shape()[a] as i64;
                let known: i64 = sz.iter().filter(|&&v| v >= 0).sum();
                if let Some(p) = sz.iter().position(|&v| v == -1) {
                    sz[p] = d - known;
                }
                if sz.iter().sum::<i64>() != d || sz.iter().any(|&v| v < 0) {
                    return Err(format!("split sizes {sz:?} do not add up to {d}"));
                }
                (x, sz, a)
            };
            let s = x.shape();
            let mut out = Vec::new();
            let mut off = 0i64;
            for &k in &sizes {
                let mut start = vec![0i64; s.len()];
                start[a] = off;
                let mut count = s.clone();
                count[a] = k as usize;
                out.push(slice_value(
                    ctx,
                    x,
                    &SliceSpec {
                        start,
                        step: vec![1; s.len()],
                        count: count.clone(),
                        out_shape: count,
                    },
                )?);
                off += k;
            }
            Ok(out)
        })(),
        "Pad" | "PadV2" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let pads = pads_of(ctx, arg(inputs, 1)?, &s)?;
            let cv = if op == "PadV2" {
                ctx.host(arg(inputs, 2)?)?
                    .to_f64()?
                    .first()
                    .copied()
                    .unwrap_or(0.0)
            } else {
                0.0
            };
            match x {
                Value::Host(h) => {
                    let out: Vec<usize> =
                        s.iter().zip(&pads).map(|(&d, &(b, a))| d + b + a).collect();
                    let n = numel(&out).ok_or("too large")?;
                    let ost = strides(&out);
                    let st = strides(&s);
                    let fillv = HostTensor::from_f64(h.dtype, vec![1], vec![cv])?;
                    let both = HostTensor::concat_flat(h.dtype, vec![h.len() + 1], &[h, &fillv])?;
                    let mut idx = Vec::with_capacity(n);
                    for f in 0..n {
                        let mut src = 0;
                        let mut inside = true;
                        for d in 0..s.len() {
                            let p = (f / ost[d]) % out[d];
                            if p < pads[d].0 || p >= pads[d].0 + s[d] {
                                inside = false;
                                break;
                            }
                            src += (p - pads[d].0) * st[d];
                        }
                        idx.push(if inside { src } else { h.len() });
                    }
                    Ok(vec![Value::Host(both.take(out, &idx))])
                }
                v => Ok(vec![Value::Dev(pad_dev(
                    ctx,
                    ctx.float(v)?,
                    &pads,
                    cv as f32,
                ))]),
            }
        })(),
        "MirrorPad" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let pads = pads_of(ctx, arg(inputs, 1)?, &s)?;
            let mode = ctx.attr_s("mode");
            let sym = match mode.as_str() {
                "SYMMETRIC" => true,
                "REFLECT" => false,
                m => return Err(format!("mirror pad mode {m:?}")),
            };
            Ok(vec![Value::Dev(mirror_pad_dev(ctx.float(x)?, &pads, sym)?)])
        })(),
        "BroadcastTo" => (|| {
            let x = arg(inputs, 0)?;
            let target: Vec<usize> = ctx
                .ints(arg(inputs, 1)?)?
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let s = x.shape();
            checked_elements(&target)?;
            let out = super::elementwise::broadcast_shape(&s, &target)?;
            if out != target {
                return Err(format!("cannot broadcast {s:?} to {target:?}"));
            }
            match x {
                Value::Host(h) => {
                    let idx = super::elementwise::broadcast_index(&out, &s);
                    Ok(vec![Value::Host(h.take(out, &idx))])
                }
                v => via_float(ctx, v, |t| {
                    Ok(dev::expand(super::elementwise::to_rank(t, out.len()), &out))
                })
                .map(|v| vec![v]),
            }
        })(),
        "BroadcastArgs" => (|| {
            let a: Vec<usize> = ctx
                .ints(arg(inputs, 0)?)?
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let b: Vec<usize> = ctx
                .ints(arg(inputs, 1)?)?
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let out = super::elementwise::broadcast_shape(&a, &b)?;
            let dt = ctx.host(arg(inputs, 0)?)?.dtype;
            Ok(vec![Value::Host(HostTensor::from_i64(
                dt,
                vec![out.len()],
                out.iter().map(|&d| d as i64).collect(),
            )?)])
        })(),
        "OneHot" => (|| {
            let ih = ctx.host(arg(inputs, 0)?)?;
            let idx = ih.to_i64()?;
            let depth = *ctx.ints(arg(inputs, 1)?)?.first().ok_or("no depth")?;
            let on = ctx.host(arg(inputs, 2)?)?;
            let off = ctx.host(arg(inputs, 3)?)?;
            let a = ctx.attr("axis").and_then(|v| v.i).unwrap_or(-1);
            if !(0..=1 << 24).contains(&depth) || a != -1 {
                return Err("OneHot: only axis -1 and a sane depth are supported".into());
            }
            let (onv, offv) = (on.to_f64()?[0], off.to_f64()?[0]);
            let depth = depth as usize;
            let mut shape = ih.shape.clone();
            shape.push(depth);
            checked_elements(&shape)?;
            let mut v = vec![offv; idx.len() * depth];
            for (k, &i) in idx.iter().enumerate() {
                if i >= 0 && (i as usize) < depth {
                    v[k * depth + i as usize] = onv;
                }
            }
            Ok(vec![Value::Host(HostTensor::from_f64(on.dtype, shape, v)?)])
        })(),
        "Where" => (|| {
            let h = ctx.host(arg(inputs, 0)?)?;
            let b = h.to_bool()?;
            let st = strides(&h.shape);
            let mut v = Vec::new();
            for (f, &x) in b.iter().enumerate() {
                if x {
                    for d in 0..h.shape.len() {
                        v.push(((f / st[d]) % h.shape[d]) as i64);
                    }
                }
            }
            let n = v.len() / h.shape.len().max(1);
            Ok(vec![Value::Host(HostTensor::i64(
                vec![n, h.shape.len()],
                v,
            ))])
        })(),
        "ReverseV2" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let mut axes: Vec<usize> = ctx
                .ints(arg(inputs, 1)?)?
                .iter()
                .map(|&a| axis(a, s.len()))
                .collect::<Result<_, _>>()?;
            axes.sort_unstable();
            axes.dedup();
            if axes.is_empty() {
                return Ok(vec![x.clone()]);
            }
            match x {
                Value::Host(h) => {
                    let start: Vec<i64> = (0..s.len())
                        .map(|d| {
                            if axes.contains(&d) {
                                s[d] as i64 - 1
                            } else {
                                0
                            }
                        })
                        .collect();
                    let step: Vec<i64> = (0..s.len())
                        .map(|d| if axes.contains(&d) { -1 } else { 1 })
                        .collect();
                    let idx = strided_indices(&s, &start, &step, &s);
                    Ok(vec![Value::Host(h.take(s.clone(), &idx))])
                }
                v => via_float(ctx, v, |t| Ok(dev::flip(t, &axes))).map(|v| vec![v]),
            }
        })(),
        "GatherNd" => (|| {
            let p = arg(inputs, 0)?;
            let ih = ctx.host(arg(inputs, 1)?)?;
            let idx = ih.to_i64()?;
            let ps = p.shape();
            let k = *ih
                .shape
                .last()
                .ok_or("GatherNd indices must have rank >= 1")?;
            if k > ps.len() {
                return Err(format!("index depth {k} for params of rank {}", ps.len()));
            }
            let lead: Vec<usize> = ps[..k].to_vec();
            let st = strides(&lead);
            let mut flat = Vec::new();
            for row in idx.chunks(k.max(1)) {
                let mut f = 0usize;
                for d in 0..k {
                    let i = row[d];
                    if i < 0 || i as usize >= lead[d] {
                        return Err(format!(
                            "index {i} out of range for axis of size {}",
                            lead[d]
                        ));
                    }
                    f += i as usize * st[d];
                }
                flat.push(f as i64);
            }
            let n_lead: usize = lead.iter().product();
            let rest: Vec<usize> = ps[k..].to_vec();
            let mut out_shape: Vec<usize> = ih.shape[..ih.shape.len() - 1].to_vec();
            out_shape.extend(&rest);
            let mut flat_shape = vec![n_lead];
            flat_shape.extend(&rest);
            match p {
                Value::Host(h) => {
                    let inner: usize = rest.iter().product();
                    let mut all = Vec::new();
                    for &f in &flat {
                        for j in 0..inner {
                            all.push(f as usize * inner + j);
                        }
                    }
                    Ok(vec![Value::Host(h.take(out_shape, &all))])
                }
                v => via_float(ctx, v, |t| {
                    let t = dev::reshape(t, &flat_shape);
                    Ok(dev::reshape(
                        dev::select(t, 0, &flat, ctx.device),
                        &out_shape,
                    ))
                })
                .map(|v| vec![v]),
            }
        })(),
        "SpaceToBatchND" | "BatchToSpaceND" => (|| {
            let x = ctx.float(arg(inputs, 0)?)?;
            let s = dev::shape(&x);
            let block = ctx.ints(arg(inputs, 1)?)?;
            let pads = ctx.ints(arg(inputs, 2)?)?;
            if s.len() != 4
                || block.len() != 2
                || pads.len() != 4
                || block.iter().any(|&b| b < 1)
                || pads.iter().any(|&p| p < 0)
            {
                return Err(format!("{op} of {s:?} with block {block:?} and paddings/crops {pads:?} (only 4-D NHWC with 2 block dims is supported)"));
            }
            let (bh, bw) = (block[0] as usize, block[1] as usize);
            let p: Vec<usize> = pads.iter().map(|&v| v as usize).collect();
            checked_elements(&[s[0], s[1] + p[0] + p[1], s[2] + p[2] + p[3], s[3]])?;
            if op == "SpaceToBatchND" {
                let x = pad_dev(ctx, x, &[(0, 0), (p[0], p[1]), (p[2], p[3]), (0, 0)], 0.0);
                let (b, h, w, c) = (s[0], s[1] + p[0] + p[1], s[2] + p[2] + p[3], s[3]);
                if h % bh != 0 || w % bw != 0 {
                    return Err(format!(
                        "padded size {h}x{w} is not a multiple of the block {bh}x{bw}"
                    ));
                }
                let t = dev::reshape(x, &[b, h / bh, bh, w / bw, bw, c]);
                let t = dev::permute(t, &[2, 4, 0, 1, 3, 5]);
                Ok(vec![Value::Dev(dev::reshape(
                    t,
                    &[bh * bw * b, h / bh, w / bw, c],
                ))])
            } else {
                let (bb, h, w, c) = (s[0], s[1], s[2], s[3]);
                if bb % (bh * bw) != 0 {
                    return Err(format!(
                        "batch {bb} is not a multiple of the block {bh}x{bw}"
                    ));
                }
                let b = bb / (bh * bw);
                let t = dev::reshape(x, &[bh, bw, b, h, w, c]);
                let t = dev::permute(t, &[2, 3, 0, 4, 1, 5]);
                let t = dev::reshape(t, &[b, h * bh, w * bw, c]);
                let (hh, ww) = (h * bh, w * bw);
                if p[0] + p[1] > hh || p[2] + p[3] > ww {
                    return Err("crops larger than the output".into());
                }
                let sl = [
                    Slice::new(0, Some(b as isize), 1),
                    Slice::new(p[0] as isize, Some((hh - p[1]) as isize), 1),
                    Slice::new(p[2] as isize, Some((ww - p[3]) as isize), 1),
                    Slice::new(0, Some(c as isize), 1),
                ];
                Ok(vec![Value::Dev(dev::slice(t, &sl))])
            }
        })(),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_target_infers_one_axis() {
        assert_eq!(reshape_target(&[2, -1], 6).unwrap(), vec![2, 3]);
        assert!(reshape_target(&[4, -1], 6).is_err());
        assert!(reshape_target(&[-1, -1], 6).is_err());
        assert_eq!(reshape_target(&[0, -1], 0).is_err(), true);
    }

    #[test]
    fn permuted_indices_transpose_a_matrix() {
        assert_eq!(permuted_indices(&[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn strided_indices_walk_backwards() {
        assert_eq!(strided_indices(&[5], &[4], &[-2], &[3]), vec![4, 2, 0]);
    }
}
