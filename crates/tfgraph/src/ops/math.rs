//! Reductions, matrix products (MatMul, BatchMatMul, Einsum), softmax, cumulative sums.

use super::{arg, axis, Ctx, OpResult, Value};
use crate::dev::{self, FT};
use crate::host::HostTensor;
use savedmodel::DType;

fn reduce_axes(ctx: &Ctx, v: &Value, rank: usize) -> Result<Vec<usize>, String> {
    let mut axes: Vec<usize> = ctx
        .ints(v)?
        .iter()
        .map(|&a| axis(a, rank))
        .collect::<Result<_, _>>()?;
    axes.sort_unstable();
    axes.dedup();
    Ok(axes)
}

fn reduce_host(op: &str, h: &HostTensor, axes: &[usize], keep: bool) -> Result<HostTensor, String> {
    let s = &h.shape;
    let mut out_keep = s.clone();
    for &a in axes {
        out_keep[a] = 1;
    }
    let n_out: usize = out_keep.iter().product();
    let st = super::array::strides(s);
    let ost = super::array::strides(&out_keep);
    let vals = h.to_f64()?;
    let init = match op {
        "Sum" | "Mean" | "Any" => 0.0,
        "Prod" | "All" => 1.0,
        "Max" => f64::NEG_INFINITY,
        _ => f64::INFINITY,
    };
    let mut acc = vec![init; n_out];
    let mut cnt = vec![0usize; n_out];
    for (f, &x) in vals.iter().enumerate() {
        let mut o = 0;
        for d in 0..s.len() {
            let p = (f / st[d]) % s[d];
            if !axes.contains(&d) {
                o += p * ost[d];
            }
        }
        cnt[o] += 1;
        acc[o] = match op {
            "Sum" | "Mean" => acc[o] + x,
            "Prod" => acc[o] * x,
            "Max" => acc[o].max(x),
            "Min" => acc[o].min(x),
            "All" => ((acc[o] != 0.0) && (x != 0.0)) as u8 as f64,
            _ => ((acc[o] != 0.0) || (x != 0.0)) as u8 as f64,
        };
    }
    if op == "Mean" {
        for (a, &c) in acc.iter_mut().zip(&cnt) {
            if super::is_int(h.dtype) {
                *a = if c > 0 { (*a / c as f64).trunc() } else { 0.0 };
            } else {
                *a /= c as f64;
            }
        }
    }
    let shape = if keep {
        out_keep
    } else {
        (0..s.len())
            .filter(|d| !axes.contains(d))
            .map(|d| s[d])
            .collect()
    };
    let dtype = if matches!(op, "All" | "Any") {
        DType::Bool
    } else {
        h.dtype
    };
    HostTensor::from_f64(dtype, shape, acc)
}

fn reduce_dev(op: &str, mut t: FT, axes: &[usize], keep: bool) -> Result<FT, String> {
    let s = dev::shape(&t);
    let count: usize = axes.iter().map(|&a| s[a]).product();
    for &a in axes {
        t = match op {
            "Sum" | "Mean" => dev::sum_dim(t, a),
            "Max" => dev::max_dim(t, a),
            "Min" => dev::min_dim(t, a),
            "Prod" => dev::prod_dim(t, a),
            _ => return Err(format!("{op} on a float tensor")),
        };
    }
    if op == "Mean" && count > 0 {
        t = dev::div_scalar(t, count as f32);
    }
    if !keep {
        let ns: Vec<usize> = (0..s.len())
            .filter(|d| !axes.contains(d))
            .map(|d| s[d])
            .collect();
        t = dev::reshape(t, &ns);
    }
    Ok(t)
}

/// Swaps the last two axes.
fn swap_last(t: FT) -> FT {
    let r = dev::shape(&t).len();
    let mut p: Vec<usize> = (0..r).collect();
    p.swap(r - 2, r - 1);
    dev::permute(t, &p)
}

fn batch_matmul(a: FT, b: FT) -> Result<FT, String> {
    let (sa, sb) = (dev::shape(&a), dev::shape(&b));
    if sa.len() < 2 || sb.len() < 2 {
        return Err(format!("matrix product of shapes {sa:?} and {sb:?}"));
    }
    if sa[sa.len() - 1] != sb[sb.len() - 2] {
        return Err(format!("inner dimensions differ: {sa:?} x {sb:?}"));
    }
    let ba = &sa[..sa.len() - 2];
    let bb = &sb[..sb.len() - 2];
    let batch = super::elementwise::broadcast_shape(ba, bb)?;
    let mut ta = sa[sa.len() - 2..].to_vec();
    let mut tb = sb[sb.len() - 2..].to_vec();
    let mut fa = batch.clone();
    fa.append(&mut ta);
    let mut fb = batch.clone();
    fb.append(&mut tb);
    let a = super::elementwise::to_rank(a, fa.len());
    let b = super::elementwise::to_rank(b, fb.len());
    let a = if dev::shape(&a) != fa {
        dev::expand(a, &fa)
    } else {
        a
    };
    let b = if dev::shape(&b) != fb {
        dev::expand(b, &fb)
    } else {
        b
    };
    Ok(dev::matmul(a, b))
}

fn parse_einsum(eq: &str, n: usize) -> Result<(Vec<Vec<char>>, Vec<char>), String> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = eq
        .split_once("->")
        .ok_or_else(|| format!("einsum equation {eq:?} has no ->"))?;
    if eq.contains("...") {
        return Err(format!("einsum with an ellipsis ({eq:?}) is not supported"));
    }
    let ins: Vec<Vec<char>> = lhs.split(',').map(|s| s.chars().collect()).collect();
    if ins.len() != n {
        return Err(format!("einsum {eq:?} for {n} inputs"));
    }
    for i in &ins {
        let mut u = i.clone();
        u.sort_unstable();
        u.dedup();
        if u.len() != i.len() {
            return Err(format!(
                "einsum with a repeated index in one operand ({eq:?}) is not supported"
            ));
        }
    }
    Ok((ins, out.chars().collect()))
}

/// Sums out the axes of `t` (labelled `labels`) whose label is not in `keep`.
fn sum_out(t: FT, labels: &[char], keep: &dyn Fn(char) -> bool) -> (FT, Vec<char>) {
    let s = dev::shape(&t);
    let axes: Vec<usize> = (0..labels.len()).filter(|&i| !keep(labels[i])).collect();
    if axes.is_empty() {
        return (t, labels.to_vec());
    }
    let mut t = t;
    for &a in &axes {
        t = dev::sum_dim(t, a);
    }
    let ns: Vec<usize> = (0..s.len())
        .filter(|d| !axes.contains(d))
        .map(|d| s[d])
        .collect();
    let nl: Vec<char> = (0..s.len())
        .filter(|d| !axes.contains(d))
        .map(|d| labels[d])
        .collect();
    (dev::reshape(t, &ns), nl)
}

fn einsum(eq: &str, ts: Vec<FT>) -> Result<FT, String> {
    let (ins, out) = parse_einsum(eq, ts.len())?;
    for (t, l) in ts.iter().zip(&ins) {
        if dev::shape(t).len() != l.len() {
            return Err(format!(
                "einsum {eq:?}: operand of shape {:?}",
                dev::shape(t)
            ));
        }
    }
    let mut ts = ts;
    if ts.len() == 1 {
        let t = ts.remove(0);
        let (t, l) = sum_out(t, &ins[0], &|c| out.contains(&c));
        let perm: Vec<usize> = out
            .iter()
            .map(|c| {
                l.iter()
                    .position(|x| x == c)
                    .ok_or_else(|| format!("einsum {eq:?}: output index {c} not in the input"))
            })
            .collect::<Result<_, _>>()?;
        return Ok(dev::permute(t, &perm));
    }
    let b = ts.pop().ok_or("einsum without inputs")?;
    let a = ts.pop().ok_or("einsum without inputs")?;
    let (la, lb) = (&ins[0], &ins[1]);
    let (a, la) = sum_out(a, la, &|c| out.contains(&c) || lb.contains(&c));
    let (b, lb) = sum_out(b, lb, &|c| out.contains(&c) || la.contains(&c));
    let (sa, sb) = (dev::shape(&a), dev::shape(&b));
    let dim = |c: char| -> usize {
        la.iter()
            .position(|&x| x == c)
            .map(|i| sa[i])
            .or_else(|| lb.iter().position(|&x| x == c).map(|i| sb[i]))
            .unwrap_or(1)
    };
    let batch: Vec<char> = out
        .iter()
        .copied()
        .filter(|c| la.contains(c) && lb.contains(c))
        .collect();
    let contract: Vec<char> = la
        .iter()
        .copied()
        .filter(|c| lb.contains(c) && !out.contains(c))
        .collect();
    let lfree: Vec<char> = la.iter().copied().filter(|c| !lb.contains(c)).collect();
    let rfree: Vec<char> = lb.iter().copied().filter(|c| !la.contains(c)).collect();
    for c in &batch {
        let (x, y) = (
            sa[la.iter().position(|v| v == c).unwrap_or(0)],
            sb[lb.iter().position(|v| v == c).unwrap_or(0)],
        );
        if x != y {
            return Err(format!("einsum {eq:?}: index {c} has sizes {x} and {y}"));
        }
    }
    for c in &contract {
        let (x, y) = (
            sa[la.iter().position(|v| v == c).unwrap_or(0)],
            sb[lb.iter().position(|v| v == c).unwrap_or(0)],
        );
        if x != y {
            return Err(format!("einsum {eq:?}: index {c} has sizes {x} and {y}"));
        }
    }
    let pos = |l: &[char], c: &char| l.iter().position(|x| x == c).unwrap_or(0);
    let pa: Vec<usize> = batch
        .iter()
        .chain(&lfree)
        .chain(&contract)
        .map(|c| pos(&la, c))
        .collect();
    let pb: Vec<usize> = batch
        .iter()
        .chain(&contract)
        .chain(&rfree)
        .map(|c| pos(&lb, c))
        .collect();
    let nb: usize = batch.iter().map(|&c| dim(c)).product();
    let nl: usize = lfree.iter().map(|&c| dim(c)).product();
    let nc: usize = contract.iter().map(|&c| dim(c)).product();
    let nr: usize = rfree.iter().map(|&c| dim(c)).product();
    let a = dev::reshape(dev::permute(a, &pa), &[nb, nl, nc]);
    let b = dev::reshape(dev::permute(b, &pb), &[nb, nc, nr]);
    let prod = dev::matmul(a, b);
    let mut labels: Vec<char> = batch.clone();
    labels.extend(&lfree);
    labels.extend(&rfree);
    let shape: Vec<usize> = labels.iter().map(|&c| dim(c)).collect();
    let prod = dev::reshape(prod, &shape);
    let perm: Vec<usize> = out
        .iter()
        .map(|c| {
            labels
                .iter()
                .position(|x| x == c)
                .ok_or_else(|| format!("einsum {eq:?}: output index {c} not in the inputs"))
        })
        .collect::<Result<_, _>>()?;
    Ok(dev::permute(prod, &perm))
}

fn softmax(t: FT, log: bool) -> FT {
    let r = dev::shape(&t).len();
    let d = r - 1;
    let m = dev::max_dim(dev::detach(t.clone()), d);
    let shifted = dev::sub(t, m);
    let e = dev::exp(shifted.clone());
    let s = dev::sum_dim(e.clone(), d);
    if log {
        dev::sub(shifted, dev::log(s))
    } else {
        dev::div(e, s)
    }
}

pub(super) fn run(op: &str, ctx: &Ctx, inputs: &[Value]) -> Option<OpResult> {
    let r: OpResult = match op {
        "Mean" | "Sum" | "Max" | "Min" | "Prod" | "All" | "Any" => (|| {
            let x = arg(inputs, 0)?;
            let rank = x.shape().len();
            let axes = reduce_axes(ctx, arg(inputs, 1)?, rank.max(1))?;
            let keep = ctx.attr_b("keep_dims");
            if axes.is_empty() {
                return Ok(vec![x.clone()]);
            }
            match x {
                Value::Dev(t) if !matches!(op, "All" | "Any") => {
                    Ok(vec![Value::Dev(reduce_dev(op, t.clone(), &axes, keep)?)])
                }
                v => Ok(vec![Value::Host(reduce_host(
                    op,
                    &ctx.host(v)?,
                    &axes,
                    keep,
                )?)]),
            }
        })(),
        "ArgMax" | "ArgMin" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let a = axis(
                *ctx.ints(arg(inputs, 1)?)?.first().ok_or("no axis")?,
                s.len(),
            )?;
            let dt = ctx.attr_type("output_type").unwrap_or(DType::I64);
            let mut ns = s.clone();
            ns.remove(a);
            let idx = match x {
                Value::Dev(t) => {
                    if op == "ArgMax" {
                        dev::argmax(t.clone(), a)?
                    } else {
                        dev::argmin(t.clone(), a)?
                    }
                }
                v => {
                    let h = ctx.host(v)?;
                    let vals = h.to_f64()?;
                    let st = super::array::strides(&s);
                    let n_out: usize = ns.iter().product();
                    let mut best = vec![(f64::NAN, 0i64); n_out];
                    let mut seen = vec![false; n_out];
                    for (f, &x) in vals.iter().enumerate() {
                        let mut o = 0;
                        let mut m = 1;
                        for d in (0..s.len()).rev() {
                            if d == a {
                                continue;
                            }
                            o += ((f / st[d]) % s[d]) * m;
                            m *= s[d];
                        }
                        let k = ((f / st[a]) % s[a]) as i64;
                        let better = !seen[o]
                            || if op == "ArgMax" {
                                x > best[o].0
                            } else {
                                x < best[o].0
                            };
                        if better {
                            best[o] = (x, k);
                            seen[o] = true;
                        }
                    }
                    best.into_iter().map(|b| b.1).collect()
                }
            };
            Ok(vec![Value::Host(HostTensor::from_i64(dt, ns, idx)?)])
        })(),
        "MatMul" => (|| {
            let (mut a, mut b) = (ctx.float(arg(inputs, 0)?)?, ctx.float(arg(inputs, 1)?)?);
            if dev::shape(&a).len() != 2 || dev::shape(&b).len() != 2 {
                return Err(format!(
                    "MatMul of shapes {:?} and {:?}",
                    dev::shape(&a),
                    dev::shape(&b)
                ));
            }
            if ctx.attr_b("transpose_a") {
                a = swap_last(a);
            }
            if ctx.attr_b("transpose_b") {
                b = swap_last(b);
            }
            Ok(vec![Value::Dev(batch_matmul(a, b)?)])
        })(),
        "BatchMatMul" | "BatchMatMulV2" | "BatchMatMulV3" => (|| {
            let (mut a, mut b) = (ctx.float(arg(inputs, 0)?)?, ctx.float(arg(inputs, 1)?)?);
            if dev::shape(&a).len() < 2 || dev::shape(&b).len() < 2 {
                return Err("BatchMatMul of tensors of rank < 2".into());
            }
            if ctx.attr_b("adj_x") {
                a = swap_last(a);
            }
            if ctx.attr_b("adj_y") {
                b = swap_last(b);
            }
            Ok(vec![Value::Dev(batch_matmul(a, b)?)])
        })(),
        "Einsum" => (|| {
            let eq = ctx.attr_s("equation");
            if let Some(r) = crate::cpu_einsum::einsum(&eq, inputs, ctx.device) {
                return Ok(vec![Value::Dev(r?)]);
            }
            let ts: Result<Vec<FT>, String> = inputs.iter().map(|v| ctx.float(v)).collect();
            Ok(vec![Value::Dev(einsum(&eq, ts?)?)])
        })(),
        "Softmax" | "LogSoftmax" => (|| {
            let t = ctx.float(arg(inputs, 0)?)?;
            if dev::shape(&t).is_empty() {
                return Err("softmax of a scalar".into());
            }
            let log = op == "LogSoftmax";
            match crate::cpu_math::softmax_owned(t, log, ctx.device) {
                Ok(r) => Ok(vec![Value::Dev(r?)]),
                Err(t) => Ok(vec![Value::Dev(softmax(t, log))]),
            }
        })(),
        "Cumsum" => (|| {
            let x = arg(inputs, 0)?;
            let s = x.shape();
            let a = axis(
                *ctx.ints(arg(inputs, 1)?)?.first().ok_or("no axis")?,
                s.len(),
            )?;
            let (excl, rev) = (ctx.attr_b("exclusive"), ctx.attr_b("reverse"));
            match x {
                Value::Host(h) => {
                    let vals = h.to_f64()?;
                    let st = super::array::strides(&s);
                    let mut out = vals.clone();
                    let n = s[a];
                    let outer: usize = s[..a].iter().product();
                    for o in 0..outer {
                        for i in 0..st[a] {
                            let base = o * n * st[a] + i;
                            let mut acc = 0.0;
                            let order: Vec<usize> = if rev {
                                (0..n).rev().collect()
                            } else {
                                (0..n).collect()
                            };
                            for k in order {
                                let p = base + k * st[a];
                                if excl {
                                    out[p] = acc;
                                    acc += vals[p];
                                } else {
                                    acc += vals[p];
                                    out[p] = acc;
                                }
                            }
                        }
                    }
                    Ok(vec![Value::Host(HostTensor::from_f64(h.dtype, s, out)?)])
                }
                v => {
                    let mut t = ctx.float(v)?;
                    if rev {
                        t = dev::flip(t, &[a]);
                    }
                    let c = dev::cumsum(t.clone(), a);
                    let mut c = if excl { dev::sub(c, t) } else { c };
                    if rev {
                        c = dev::flip(c, &[a]);
                    }
                    Ok(vec![Value::Dev(c)])
                }
            }
        })(),
        "L2Loss" => (|| {
            let t = ctx.float(arg(inputs, 0)?)?;
            let n: usize = dev::shape(&t).iter().product();
            let sq = dev::reshape(dev::mul(t.clone(), t), &[n]);
            Ok(vec![Value::Dev(dev::reshape(
                dev::mul_scalar(dev::sum_dim(sq, 0), 0.5),
                &[],
            ))])
        })(),
        "TopKV2" => (|| {
            let h = ctx.host(arg(inputs, 0)?)?;
            let k = *ctx.ints(arg(inputs, 1)?)?.first().ok_or("no k")?;
            let s = h.shape.clone();
            let last = *s.last().ok_or("TopK of a scalar")?;
            if k < 0 || k as usize > last {
                return Err(format!("k = {k} for a last axis of {last}"));
            }
            let k = k as usize;
            let vals = h.to_f64()?;
            let mut ov = Vec::new();
            let mut oi = Vec::new();
            for row in vals.chunks(last.max(1)) {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                for &i in idx.iter().take(k) {
                    ov.push(row[i]);
                    oi.push(i as i64);
                }
            }
            let mut os = s.clone();
            *os.last_mut().unwrap_or(&mut 0) = k;
            Ok(vec![
                Value::Host(HostTensor::from_f64(h.dtype, os.clone(), ov)?),
                Value::Host(HostTensor::from_i64(DType::I32, os, oi)?),
            ])
        })(),
        _ => return None,
    };
    Some(r)
}
