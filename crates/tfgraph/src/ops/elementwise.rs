//! Elementwise ops: activations, arithmetic with numpy broadcasting, comparisons, casts.

use super::{arg, is_int, Ctx, OpResult, Value};
use crate::dev::{self, FT};
use crate::host::{numel, HostData, HostTensor};
use savedmodel::DType;

/// The broadcast shape of two shapes (numpy rules).
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(format!("shapes {a:?} and {b:?} cannot be broadcast"));
        };
    }
    Ok(out)
}

/// For each element of `out` (row-major), the flat index into a tensor of shape `inp`
/// broadcast to it.
pub(crate) fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n = numel(out).unwrap_or(0);
    let r = out.len();
    let off = r - inp.len();
    let mut strides = vec![0usize; r];
    let mut s = 1;
    for i in (0..inp.len()).rev() {
        strides[i + off] = if inp[i] == 1 { 0 } else { s };
        s *= inp[i];
    }
    let mut idx = Vec::with_capacity(n);
    let mut pos = vec![0usize; r];
    let mut cur = 0usize;
    for _ in 0..n {
        idx.push(cur);
        for d in (0..r).rev() {
            pos[d] += 1;
            cur += strides[d];
            if pos[d] < out[d] {
                break;
            }
            cur -= strides[d] * pos[d];
            pos[d] = 0;
        }
    }
    idx
}

/// Reshapes `t` to rank `r` with leading ones.
pub(crate) fn to_rank(t: FT, r: usize) -> FT {
    let s = dev::shape(&t);
    if s.len() >= r {
        return t;
    }
    let mut ns = vec![1; r - s.len()];
    ns.extend(s);
    dev::reshape(t, &ns)
}

/// Both operands at the same rank and, where `full`, expanded to the broadcast shape.
pub(crate) fn align(a: FT, b: FT, full: bool) -> Result<(FT, FT), String> {
    let (sa, sb) = (dev::shape(&a), dev::shape(&b));
    let out = broadcast_shape(&sa, &sb)?;
    let r = out.len();
    let (mut a, mut b) = (to_rank(a, r), to_rank(b, r));
    if full {
        if dev::shape(&a) != out {
            a = dev::expand(a, &out);
        }
        if dev::shape(&b) != out {
            b = dev::expand(b, &out);
        }
    }
    Ok((a, b))
}

fn host_binary(
    a: &HostTensor,
    b: &HostTensor,
    out_dtype: Option<DType>,
    f: impl Fn(f64, f64) -> f64,
    fi: Option<&dyn Fn(i64, i64) -> Result<i64, String>>,
) -> Result<HostTensor, String> {
    let shape = broadcast_shape(&a.shape, &b.shape)?;
    let ia = broadcast_index(&shape, &a.shape);
    let ib = broadcast_index(&shape, &b.shape);
    let dtype = out_dtype.unwrap_or(a.dtype);
    if let (Some(fi), true) = (
        fi,
        is_int(a.dtype) && is_int(b.dtype) && out_dtype.is_none(),
    ) {
        let (va, vb) = (a.to_i64()?, b.to_i64()?);
        let mut v = Vec::with_capacity(ia.len());
        for (x, y) in ia.iter().zip(&ib) {
            v.push(fi(va[*x], vb[*y])?);
        }
        return HostTensor::from_i64(dtype, shape, v);
    }
    let (va, vb) = (a.to_f64()?, b.to_f64()?);
    let v = ia.iter().zip(&ib).map(|(x, y)| f(va[*x], vb[*y])).collect();
    HostTensor::from_f64(dtype, shape, v)
}

fn host_unary(a: &HostTensor, f: impl Fn(f64) -> f64) -> Result<HostTensor, String> {
    let v = a.to_f64()?.into_iter().map(f).collect();
    HostTensor::from_f64(a.dtype, a.shape.clone(), v)
}

pub(crate) fn erf64(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse; use the complementary series via libm-free
    // rational approximation (W. J. Cody), accurate to ~1e-15.
    let ax = x.abs();
    let r = if ax < 0.5 {
        let t = x * x;
        let p = [
            3.209377589138469e3,
            3.774852376853020e2,
            1.138641541510502e2,
            3.161123743870566,
            1.857777061846032e-1,
        ];
        let q = [
            2.844236833439171e3,
            1.282616526077372e3,
            2.440246379344442e2,
            2.360129095234412e1,
            1.0,
        ];
        let num = (((p[4] * t + p[3]) * t + p[2]) * t + p[1]) * t + p[0];
        let den = (((q[4] * t + q[3]) * t + q[2]) * t + q[1]) * t + q[0];
        return x * num / den;
    } else if ax < 4.0 {
        let p = [
            1.23033935479799725e3,
            2.05107837782607147e3,
            1.71204761263407058e3,
            8.81952221241769090e2,
            2.98635138197400131e2,
            6.61191906371416295e1,
            8.88314979438837594,
            5.64188496988670089e-1,
            2.15311535474403846e-8,
        ];
        let q = [
            1.23033935480374942e3,
            3.43936767414372164e3,
            4.36261909014324716e3,
            3.29079923573345963e3,
            1.62138957456669019e3,
            5.37181101862009858e2,
            1.17693950891312499e2,
            1.57449261107098347e1,
            1.0,
        ];
        let mut num = p[8];
        let mut den = q[8];
        for i in (0..8).rev() {
            num = num * ax + p[i];
            den = den * ax + q[i];
        }
        (-ax * ax).exp() * num / den
    } else {
        let t = 1.0 / (ax * ax);
        let p = [
            -6.58749161529837803e-4,
            -1.60837851487422766e-2,
            -1.25781726111229246e-1,
            -3.60344899949804439e-1,
            -3.05326634961232344e-1,
            -1.63153871373020978e-2,
        ];
        let q = [
            2.33520497626869185e-3,
            6.05183413124413191e-2,
            5.27905102951428412e-1,
            1.87295284992346725,
            2.56852019228982242,
            1.0,
        ];
        let mut num = p[5];
        let mut den = q[5];
        for i in (0..5).rev() {
            num = num * t + p[i];
            den = den * t + q[i];
        }
        let c = (1.0 / std::f64::consts::PI).sqrt();
        (-ax * ax).exp() / ax * (c + t * num / den)
    };
    // r is erfc(|x|)
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

fn unary_dev(op: &str, ctx: &Ctx, t: FT) -> Result<FT, String> {
    if let Some(r) = crate::cpu_math::unary(op, &t, ctx.device) {
        return r;
    }
    if let Some((lo, hi)) = cpu_train::relu_bounds(op) {
        if cpu_train::runs_on_flex(&t) {
            return Ok(cpu_train::clamp_act(t, lo, hi));
        }
    }
    Ok(match op {
        "Relu" => dev::relu(t),
        "Relu6" => dev::clamp(t, 0.0, 6.0),
        "Elu" => {
            let pos = dev::greater(t.clone(), dev::zeros(&dev::shape(&t), ctx.device));
            let neg = dev::add_scalar(dev::exp(t.clone()), -1.0);
            dev::mask_where(neg, pos, t)
        }
        "Selu" => {
            let (alpha, scale) = (1.673_263_2_f32, 1.050_701_f32);
            let pos = dev::greater(t.clone(), dev::zeros(&dev::shape(&t), ctx.device));
            let neg = dev::mul_scalar(dev::add_scalar(dev::exp(t.clone()), -1.0), alpha);
            dev::mul_scalar(dev::mask_where(neg, pos, t), scale)
        }
        "LeakyRelu" => {
            let alpha = ctx.attr_f("alpha", 0.2);
            let pos = dev::greater(t.clone(), dev::zeros(&dev::shape(&t), ctx.device));
            dev::mask_where(dev::mul_scalar(t.clone(), alpha), pos, t)
        }
        "Sigmoid" => dev::recip(dev::add_scalar(dev::exp(dev::neg(t)), 1.0)),
        "Tanh" => dev::tanh(t),
        "Softplus" => {
            let big = dev::greater(
                t.clone(),
                dev::add_scalar(dev::zeros(&dev::shape(&t), ctx.device), 20.0),
            );
            let soft = dev::log1p(dev::exp(t.clone()));
            dev::mask_where(soft, big, t)
        }
        "Softsign" => dev::div(t.clone(), dev::add_scalar(dev::abs(t), 1.0)),
        "Rsqrt" => dev::recip(dev::sqrt(t)),
        "Sqrt" => dev::sqrt(t),
        "Square" => dev::mul(t.clone(), t),
        "Neg" => dev::neg(t),
        "Exp" => dev::exp(t),
        "Log" => dev::log(t),
        "Log1p" => dev::log1p(t),
        "Expm1" => dev::add_scalar(dev::exp(t), -1.0),
        "Erf" => dev::erf(t),
        "Erfc" => dev::add_scalar(dev::neg(dev::erf(t)), 1.0),
        "Abs" => dev::abs(t),
        "Sign" => dev::sign(t),
        "Reciprocal" | "Inv" => dev::recip(t),
        "Floor" => dev::floor(t),
        "Ceil" => dev::ceil(t),
        "Round" | "Rint" => dev::round(t),
        "Sin" => dev::sin(t),
        "Cos" => dev::cos(t),
        _ => return Err(format!("{op} is not an elementwise op")),
    })
}

fn unary_host(op: &str, ctx: &Ctx, h: &HostTensor) -> Result<HostTensor, String> {
    let alpha = ctx.attr_f("alpha", 0.2) as f64;
    host_unary(h, |x| match op {
        "Relu" => x.max(0.0),
        "Relu6" => x.clamp(0.0, 6.0),
        "Elu" => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        "Selu" => {
            1.0507009873554805
                * if x > 0.0 {
                    x
                } else {
                    1.6732632423543772 * x.exp_m1()
                }
        }
        "LeakyRelu" => {
            if x > 0.0 {
                x
            } else {
                alpha * x
            }
        }
        "Sigmoid" => 1.0 / (1.0 + (-x).exp()),
        "Tanh" => x.tanh(),
        "Softplus" => {
            if x > 20.0 {
                x
            } else {
                x.exp().ln_1p()
            }
        }
        "Softsign" => x / (1.0 + x.abs()),
        "Rsqrt" => 1.0 / x.sqrt(),
        "Sqrt" => x.sqrt(),
        "Square" => x * x,
        "Neg" => -x,
        "Exp" => x.exp(),
        "Log" => x.ln(),
        "Log1p" => x.ln_1p(),
        "Expm1" => x.exp_m1(),
        "Erf" => erf64(x),
        "Erfc" => 1.0 - erf64(x),
        "Abs" => x.abs(),
        "Sign" => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        "Reciprocal" | "Inv" => 1.0 / x,
        "Floor" => x.floor(),
        "Ceil" => x.ceil(),
        "Round" | "Rint" => {
            let r = x.round();
            if (x - x.trunc()).abs() == 0.5 {
                2.0 * (x / 2.0).round()
            } else {
                r
            }
        }
        "Sin" => x.sin(),
        "Cos" => x.cos(),
        _ => f64::NAN,
    })
}

fn binary_host(op: &str, a: &HostTensor, b: &HostTensor) -> Result<HostTensor, String> {
    let int_div = |x: i64, y: i64| -> Result<i64, String> {
        if y == 0 {
            Err("integer division by zero".into())
        } else {
            Ok(x.wrapping_div(y))
        }
    };
    let floor_div = |x: i64, y: i64| -> Result<i64, String> {
        if y == 0 {
            Err("integer division by zero".into())
        } else {
            let (q, r) = (x.wrapping_div(y), x.wrapping_rem(y));
            Ok(if r != 0 && ((r < 0) != (y < 0)) {
                q - 1
            } else {
                q
            })
        }
    };
    let floor_mod = |x: i64, y: i64| -> Result<i64, String> {
        if y == 0 {
            Err("integer division by zero".into())
        } else {
            let r = x % y;
            Ok(if r != 0 && ((r < 0) != (y < 0)) {
                r + y
            } else {
                r
            })
        }
    };
    let cmp = Some(DType::Bool);
    match op {
        "AddV2" | "Add" => host_binary(
            a,
            b,
            None,
            |x, y| x + y,
            Some(&|x: i64, y: i64| Ok(x.wrapping_add(y))),
        ),
        "Sub" => host_binary(
            a,
            b,
            None,
            |x, y| x - y,
            Some(&|x: i64, y: i64| Ok(x.wrapping_sub(y))),
        ),
        "Mul" => host_binary(
            a,
            b,
            None,
            |x, y| x * y,
            Some(&|x: i64, y: i64| Ok(x.wrapping_mul(y))),
        ),
        "RealDiv" | "Div" => host_binary(a, b, None, |x, y| x / y, Some(&int_div)),
        "DivNoNan" => host_binary(a, b, None, |x, y| if y == 0.0 { 0.0 } else { x / y }, None),
        "FloorDiv" => host_binary(a, b, None, |x, y| (x / y).floor(), Some(&floor_div)),
        "FloorMod" => host_binary(a, b, None, |x, y| x - (x / y).floor() * y, Some(&floor_mod)),
        "Maximum" => host_binary(a, b, None, f64::max, Some(&|x: i64, y: i64| Ok(x.max(y)))),
        "Minimum" => host_binary(a, b, None, f64::min, Some(&|x: i64, y: i64| Ok(x.min(y)))),
        "SquaredDifference" => host_binary(a, b, None, |x, y| (x - y) * (x - y), None),
        "Pow" => host_binary(
            a,
            b,
            None,
            f64::powf,
            Some(&|x: i64, y: i64| Ok(x.wrapping_pow(y.clamp(0, 64) as u32))),
        ),
        "Greater" => host_binary(a, b, cmp, |x, y| (x > y) as u8 as f64, None),
        "GreaterEqual" => host_binary(a, b, cmp, |x, y| (x >= y) as u8 as f64, None),
        "Less" => host_binary(a, b, cmp, |x, y| (x < y) as u8 as f64, None),
        "LessEqual" => host_binary(a, b, cmp, |x, y| (x <= y) as u8 as f64, None),
        "Equal" => {
            if let (HostData::Str(x), HostData::Str(y)) = (&a.data, &b.data) {
                let shape = broadcast_shape(&a.shape, &b.shape)?;
                let ia = broadcast_index(&shape, &a.shape);
                let ib = broadcast_index(&shape, &b.shape);
                let v = ia.iter().zip(&ib).map(|(i, j)| x[*i] == y[*j]).collect();
                return Ok(HostTensor::bool(shape, v));
            }
            host_binary(a, b, cmp, |x, y| (x == y) as u8 as f64, None)
        }
        "NotEqual" => host_binary(a, b, cmp, |x, y| (x != y) as u8 as f64, None),
        "LogicalAnd" => host_binary(a, b, cmp, |x, y| (x != 0.0 && y != 0.0) as u8 as f64, None),
        "LogicalOr" => host_binary(a, b, cmp, |x, y| (x != 0.0 || y != 0.0) as u8 as f64, None),
        _ => Err(format!("{op} is not a binary op")),
    }
}

/// `x op c` (and `c op x` for the commutative ops and `c - x`) with a one-element float
/// constant `c` held on the host and a float `x` whose rank is at least `c`'s (so the result
/// has `x`'s shape): a scalar op on the device, instead of uploading `c` and broadcasting it
/// element by element (a preprocessing `x * 2 - 1` on a batch of images took 100x longer that
/// way). The same IEEE operation per element, so the same values.
fn with_scalar(op: &str, ctx: &Ctx, a: &Value, b: &Value) -> Result<Option<Value>, String> {
    let scalar = |v: &Value| match v {
        Value::Host(h) if h.dtype.is_float() && h.shape.iter().product::<usize>() == 1 => {
            Some((h.shape.len(), h.to_f32().ok()?[0]))
        }
        _ => None,
    };
    // `x op c`, or `c op x` (then `scalar_first`).
    let (x, k, (rank, c), scalar_first) = match (scalar(b), scalar(a)) {
        (Some(s), _) => (a, b, s, false),
        (None, Some(s)) => (b, a, s, true),
        (None, None) => return Ok(None),
    };
    let handled = match op {
        "AddV2" | "Add" | "Sub" | "Mul" => true,
        "RealDiv" | "Div" | "Pow" => !scalar_first,
        _ => false,
    };
    // A float device tensor, or a large float host tensor (a model input; the host path is
    // for shape arithmetic, element by element), of at least the constant's rank so that
    // the result has its shape. Checked before anything is uploaded.
    let takes = match x {
        Value::Dev(_) => true,
        Value::Host(h) => h.dtype.is_float() && h.shape.iter().product::<usize>() >= 4096,
        _ => false,
    };
    if !handled || !takes || x.shape().len() < rank {
        return Ok(None);
    }
    let x = ctx.float(x)?;
    Ok(Some(Value::Dev(match (op, scalar_first) {
        ("AddV2" | "Add", _) => dev::add_scalar(x, c),
        ("Mul", _) => dev::mul_scalar(x, c),
        ("Sub", false) => dev::sub_scalar(x, c),
        // c - x = -(x - c), exactly.
        ("Sub", true) => dev::neg(dev::sub_scalar(x, c)),
        ("Pow", _) => match crate::cpu_math::pow_scalar(&x, c, ctx.device) {
            Some(r) => r?,
            // Burn's own power of the tensor already on the device.
            None => return binary_dev(op, ctx, x, ctx.float(k)?).map(Some),
        },
        _ => dev::div_scalar(x, c),
    })))
}

fn binary_dev(op: &str, ctx: &Ctx, a: FT, b: FT) -> Result<Value, String> {
    // Every backend broadcasts size-1 axes of operands of one rank.
    let (a, b) = align(a, b, false)?;
    Ok(match op {
        "AddV2" | "Add" => Value::Dev(dev::add(a, b)),
        "Sub" => Value::Dev(dev::sub(a, b)),
        "Mul" => Value::Dev(dev::mul(a, b)),
        "RealDiv" | "Div" => Value::Dev(dev::div(a, b)),
        "DivNoNan" => {
            let (a, b) = align(a, b, true)?;
            let zero = dev::equal(b.clone(), dev::zeros(&dev::shape(&b), ctx.device));
            let q = dev::div(a, b.clone());
            Value::Dev(dev::mask_where(
                q,
                zero,
                dev::zeros(&dev::shape(&b), ctx.device),
            ))
        }
        "FloorDiv" => Value::Dev(dev::floor(dev::div(a, b))),
        "FloorMod" => {
            let q = dev::floor(dev::div(a.clone(), b.clone()));
            Value::Dev(dev::sub(a, dev::mul(q, b)))
        }
        "Maximum" => {
            let (a, b) = align(a, b, true)?;
            Value::Dev(dev::max_pair(a, b))
        }
        "Minimum" => {
            let (a, b) = align(a, b, true)?;
            Value::Dev(dev::min_pair(a, b))
        }
        "SquaredDifference" => {
            let d = dev::sub(a, b);
            Value::Dev(dev::mul(d.clone(), d))
        }
        "Pow" => {
            let (a, b) = align(a, b, true)?;
            Value::Dev(dev::powf(a, b))
        }
        "Greater" | "GreaterEqual" | "Less" | "LessEqual" | "Equal" | "NotEqual" => {
            let (a, b) = align(a, b, true)?;
            Value::DevBool(match op {
                "Greater" => dev::greater(a, b),
                "GreaterEqual" => dev::greater_equal(a, b),
                "Less" => dev::lower(a, b),
                "LessEqual" => dev::lower_equal(a, b),
                "Equal" => dev::equal(a, b),
                _ => dev::not_equal(a, b),
            })
        }
        "LogicalAnd" => {
            let (a, b) = align(a, b, true)?;
            let m = dev::mul(a, b);
            Value::DevBool(dev::not_equal(
                m.clone(),
                dev::zeros(&dev::shape(&m), ctx.device),
            ))
        }
        "LogicalOr" => {
            let (a, b) = align(a, b, true)?;
            let m = dev::add(dev::abs(a), dev::abs(b));
            Value::DevBool(dev::not_equal(
                m.clone(),
                dev::zeros(&dev::shape(&m), ctx.device),
            ))
        }
        _ => return Err(format!("{op} is not a binary op")),
    })
}

use tfgraph_core::op_set::{BINARY, UNARY};

/// `Mul` of a tensor by a per-channel gate (squeeze-and-excitation), in parallel on the
/// host ([`crate::cpu_math::channel_mul`]). Takes the inputs out of `inputs` so that the
/// large one is read back without a copy; `None`, with `inputs` untouched, when it does not
/// apply.
pub(super) fn gate_mul(ctx: &Ctx, inputs: &mut Vec<Value>) -> Option<OpResult> {
    let (Some(Value::Dev(a)), Some(Value::Dev(b)), 2) =
        (inputs.first(), inputs.get(1), inputs.len())
    else {
        return None;
    };
    let swap = if crate::cpu_math::is_channel_gate(a, b, ctx.device) {
        false
    } else if crate::cpu_math::is_channel_gate(b, a, ctx.device) {
        true
    } else {
        return None;
    };
    let (Some(Value::Dev(b)), Some(Value::Dev(a))) = (inputs.pop(), inputs.pop()) else {
        return Some(Err("the inputs changed while being read".into()));
    };
    let (x, gate) = if swap { (b, a) } else { (a, b) };
    Some(crate::cpu_math::channel_mul(x, gate, ctx.device).map(|t| vec![Value::Dev(t)]))
}

pub(super) fn run(op: &str, ctx: &Ctx, inputs: &[Value]) -> Option<OpResult> {
    if UNARY.contains(&op) {
        return Some((|| {
            let x = arg(inputs, 0)?;
            Ok(vec![match x {
                Value::Host(h) => Value::Host(unary_host(op, ctx, h)?),
                v => Value::Dev(unary_dev(op, ctx, ctx.float(v)?)?),
            }])
        })());
    }
    if BINARY.contains(&op) {
        return Some((|| {
            let (a, b) = (arg(inputs, 0)?, arg(inputs, 1)?);
            if let Some(r) = crate::cpu_math::binary(op, a, b, ctx.device) {
                return Ok(vec![Value::Dev(r?)]);
            }
            if let Some(v) = with_scalar(op, ctx, a, b)? {
                return Ok(vec![v]);
            }
            Ok(vec![match (a, b) {
                (Value::Host(x), Value::Host(y)) => Value::Host(binary_host(op, x, y)?),
                _ => binary_dev(op, ctx, ctx.float(a)?, ctx.float(b)?)?,
            }])
        })());
    }
    let r = match op {
        "BiasAdd" => (|| {
            let (x, b) = (arg(inputs, 0)?, arg(inputs, 1)?);
            let xs = x.shape();
            let bs = b.shape();
            if bs.len() != 1 {
                return Err(format!("bias must be 1-D, got shape {bs:?}"));
            }
            let nchw = ctx.attr_s("data_format") == "NCHW";
            let c = if nchw { xs.get(1) } else { xs.last() };
            if c != Some(&bs[0]) {
                return Err(format!("bias of {} values for input shape {xs:?}", bs[0]));
            }
            let mut s = vec![1; xs.len()];
            if nchw {
                s[1] = bs[0];
            } else {
                s[xs.len() - 1] = bs[0];
            }
            if let (Value::Host(hx), Value::Host(hb)) = (x, b) {
                let hb = HostTensor {
                    shape: s,
                    ..hb.clone()
                };
                return Ok(vec![Value::Host(binary_host("AddV2", hx, &hb)?)]);
            }
            let bt = dev::reshape(ctx.float(b)?, &s);
            Ok(vec![Value::Dev(dev::add(ctx.float(x)?, bt))])
        })(),
        "AddN" => (|| {
            let mut acc = arg(inputs, 0)?.clone();
            for v in &inputs[1..] {
                acc = match (&acc, v) {
                    (Value::Host(x), Value::Host(y)) => Value::Host(binary_host("AddV2", x, y)?),
                    _ => {
                        let (x, y) = align(ctx.float(&acc)?, ctx.float(v)?, false)?;
                        Value::Dev(dev::add(x, y))
                    }
                };
            }
            Ok(vec![acc])
        })(),
        "LogicalNot" => (|| {
            Ok(vec![match arg(inputs, 0)? {
                Value::Host(h) => {
                    let v = h.to_bool()?.into_iter().map(|b| !b).collect();
                    Value::Host(HostTensor::bool(h.shape.clone(), v))
                }
                v => Value::DevBool(dev::bool_not(ctx.boolean(v)?)),
            }])
        })(),
        "Select" | "SelectV2" => (|| {
            let (c, x, y) = (arg(inputs, 0)?, arg(inputs, 1)?, arg(inputs, 2)?);
            let (cs, xs) = (c.shape(), x.shape());
            // Select (v1): a vector condition picks rows.
            let c_shape = if op == "Select" && cs.len() == 1 && xs.len() > 1 {
                let mut s = vec![1; xs.len()];
                s[0] = cs[0];
                s
            } else {
                cs.clone()
            };
            if let (Value::Host(hc), Value::Host(hx), Value::Host(hy)) = (c, x, y) {
                let hc = HostTensor {
                    shape: c_shape.clone(),
                    ..hc.clone()
                };
                let shape = broadcast_shape(&broadcast_shape(&c_shape, &hx.shape)?, &hy.shape)?;
                let ic = broadcast_index(&shape, &hc.shape);
                let ix = broadcast_index(&shape, &hx.shape);
                let iy = broadcast_index(&shape, &hy.shape);
                let cv = hc.to_bool()?;
                // Pick from x or y by position, keeping the dtype.
                let both = HostTensor::concat_flat(hx.dtype, vec![hx.len() + hy.len()], &[hx, hy])?;
                let idx: Vec<usize> = (0..ic.len())
                    .map(|k| if cv[ic[k]] { ix[k] } else { hx.len() + iy[k] })
                    .collect();
                return Ok(vec![Value::Host(both.take(shape, &idx))]);
            }
            let cond = ctx.boolean(c)?;
            let cond = dev::bool_reshape(cond, &c_shape);
            let (xt, yt) = (ctx.float(x)?, ctx.float(y)?);
            let shape = broadcast_shape(
                &broadcast_shape(&c_shape, &dev::shape(&xt))?,
                &dev::shape(&yt),
            )?;
            let r = shape.len();
            let expand_f = |t: FT| {
                let t = to_rank(t, r);
                if dev::shape(&t) != shape {
                    dev::expand(t, &shape)
                } else {
                    t
                }
            };
            let mut cs2 = vec![1; r - c_shape.len()];
            cs2.extend(&c_shape);
            let cond = dev::bool_reshape(cond, &cs2);
            let cond = if cs2 != shape {
                dev::bool_expand(cond, &shape)
            } else {
                cond
            };
            Ok(vec![Value::Dev(dev::mask_where(
                expand_f(yt),
                cond,
                expand_f(xt),
            ))])
        })(),
        "Cast" => (|| {
            let to = ctx.attr_type("DstT").ok_or("Cast without DstT")?;
            let x = arg(inputs, 0)?;
            Ok(vec![match x {
                Value::Host(h) => {
                    if h.dtype == to {
                        Value::Host(h.clone())
                    } else if to == DType::Bool {
                        Value::Host(HostTensor::bool(h.shape.clone(), h.to_bool()?))
                    } else if is_int(to) && is_int(h.dtype) {
                        Value::Host(HostTensor::from_i64(to, h.shape.clone(), h.to_i64()?)?)
                    } else {
                        Value::Host(HostTensor::from_f64(to, h.shape.clone(), h.to_f64()?)?)
                    }
                }
                Value::Dev(t) if to.is_float() => Value::Dev(t.clone()),
                Value::DevBool(t) if to.is_float() => Value::Dev(dev::bool_to_float(t.clone())),
                Value::DevBool(_) if to == DType::Bool => x.clone(),
                Value::Dev(t) if to == DType::Bool => Value::DevBool(dev::not_equal(
                    t.clone(),
                    dev::zeros(&dev::shape(t), ctx.device),
                )),
                v => {
                    let h = ctx.host(v)?;
                    Value::Host(HostTensor::from_f64(to, h.shape.clone(), h.to_f64()?)?)
                }
            }])
        })(),
        "ClipByValue" => (|| {
            let (x, lo, hi) = (arg(inputs, 0)?, arg(inputs, 1)?, arg(inputs, 2)?);
            if let (Value::Host(a), Value::Host(l), Value::Host(h)) = (x, lo, hi) {
                let t = binary_host("Minimum", a, h)?;
                return Ok(vec![Value::Host(binary_host("Maximum", &t, l)?)]);
            }
            let (a, h) = align(ctx.float(x)?, ctx.float(hi)?, true)?;
            let t = dev::min_pair(a, h);
            let (t, l) = align(t, ctx.float(lo)?, true)?;
            Ok(vec![Value::Dev(dev::max_pair(t, l))])
        })(),
        "ZerosLike" | "OnesLike" => (|| {
            let x = arg(inputs, 0)?;
            let fill = if op == "OnesLike" { 1.0 } else { 0.0 };
            Ok(vec![match x {
                Value::Host(h) => {
                    let n = h.len();
                    Value::Host(HostTensor::from_f64(
                        h.dtype,
                        h.shape.clone(),
                        vec![fill; n],
                    )?)
                }
                v => {
                    let s = v.shape();
                    Value::Dev(dev::add_scalar(dev::zeros(&s, ctx.device), fill as f32))
                }
            }])
        })(),
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_index_repeats_size_one_axes() {
        assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        let idx = broadcast_index(&[2, 3], &[3]);
        assert_eq!(idx, vec![0, 1, 2, 0, 1, 2]);
        let idx = broadcast_index(&[2, 3], &[2, 1]);
        assert_eq!(idx, vec![0, 0, 0, 1, 1, 1]);
        assert!(broadcast_shape(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn erf_matches_reference_values() {
        // erf values from tables (Abramowitz & Stegun).
        for (x, e) in [
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (-3.0, -0.9999779095030014),
            (5.0, 0.9999999999984626),
        ] {
            assert!(
                (erf64(x) - e).abs() < 1e-13,
                "erf({x}) = {} not {e}",
                erf64(x)
            );
        }
    }
}
